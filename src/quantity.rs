//! Kubernetes resource quantities (`resource.Quantity`), parsed far enough to
//! validate them and compare a request with its limit.

/// The value of a quantity in base units (cores, bytes), or `None` when the
/// text is not a quantity: `<number><suffix>` with the suffixes `n u m k M G T
/// P E`, `Ki Mi Gi Ti Pi Ei` or an exponent `e<int>` / `E<int>`.
pub fn parse_quantity(text: &str) -> Option<f64> {
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at_checked(number_end)?;
    let value = parse_number(number)?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent => {
            let digits = exponent.strip_prefix(['e', 'E'])?;
            let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            10f64.powi(digits.parse::<i32>().ok()?)
        }
    };
    Some(value * multiplier)
}

fn parse_number(number: &str) -> Option<f64> {
    let unsigned = number.strip_prefix(['+', '-']).unwrap_or(number);
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits_only = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits_only(whole) || !digits_only(fraction) {
        return None;
    }
    number.parse::<f64>().ok().or_else(|| {
        // "5." is a quantity but not a Rust float literal.
        format!("{number}0").parse::<f64>().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("100m", 0.1)]
    #[case("1", 1.0)]
    #[case("0.5", 0.5)]
    #[case(".5", 0.5)]
    #[case("5.", 5.0)]
    #[case("64Mi", 67_108_864.0)]
    #[case("1Gi", 1_073_741_824.0)]
    #[case("128M", 128e6)]
    #[case("1e3", 1000.0)]
    #[case("1E-3", 0.001)]
    #[case("+2k", 2000.0)]
    fn quantities(#[case] text: &str, #[case] value: f64) {
        let parsed = parse_quantity(text).unwrap();
        assert!(
            (parsed - value).abs() < 1e-9 * value.max(1.0),
            "{text}: {parsed}"
        );
    }

    #[rstest]
    #[case("")]
    #[case("m")]
    #[case("1x")]
    #[case("1 Mi")]
    #[case("1.2.3")]
    #[case("1MiB")]
    #[case("1e")]
    #[case("1e+")]
    #[case("ten")]
    fn not_quantities(#[case] text: &str) {
        assert_eq!(parse_quantity(text), None);
    }
}
