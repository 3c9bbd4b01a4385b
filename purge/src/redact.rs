//! Redaction: every credential value hidden from what the purge reports
//! (the outcome, the Event, the logs), wherever it appears, whole or in part.

const REDACTED: &str = "[redacted]";

/// From this many characters a secret value is hidden wherever it appears,
/// even inside a longer word: no real token, key or id is shorter, and one
/// this long does not occur in ordinary text by chance.
const HIDDEN_ANYWHERE_FROM: usize = 8;

/// Hides every secret value in `text`. A value of `HIDDEN_ANYWHERE_FROM`
/// characters or more is hidden wherever it appears; a shorter one (a test
/// token `t`, a numeric pull zone id) only where it stands whole, between
/// characters that are not letters or digits, so that the `t`s of `https`
/// and `tries` stay readable. Every place is found in the original text and
/// hidden in one pass: one value inside another, or overlapping it, is
/// hidden with it.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut hidden: Vec<std::ops::Range<usize>> = Vec::new();
    for secret in secrets.iter().filter(|secret| !secret.is_empty()) {
        let anywhere = secret.chars().count() >= HIDDEN_ANYWHERE_FROM;
        for form in encoded_forms(secret) {
            hidden.extend(
                text.match_indices(form.as_str())
                    .map(|(start, found)| start..start + found.len())
                    .filter(|place| anywhere || stands_whole(text, place)),
            );
        }
    }
    hidden.sort_by_key(|place| (place.start, std::cmp::Reverse(place.end)));
    let mut redacted = String::with_capacity(text.len());
    let mut copied = 0;
    for place in hidden {
        if place.end <= copied {
            continue;
        }
        if place.start >= copied {
            redacted.push_str(&text[copied..place.start]);
            redacted.push_str(REDACTED);
        }
        copied = place.end;
    }
    redacted.push_str(&text[copied..]);
    redacted
}

/// A secret as an answer may quote it back: as sent, JSON-escaped (a
/// JSON error body), form-encoded (`a+b%2Fc`, an OAuth error echoing the
/// request) and percent-encoded (`a%20b%2Fc`, a URL's path or query).
fn encoded_forms(secret: &str) -> Vec<String> {
    let json = serde_json::Value::from(secret).to_string();
    let json = json
        .strip_prefix('"')
        .and_then(|quoted| quoted.strip_suffix('"'))
        .unwrap_or(secret)
        .to_owned();
    let form: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let percent = crate::request::path_segment(secret);
    let mut forms = vec![secret.to_owned()];
    for form in [json, form, percent.clone(), percent.to_ascii_lowercase()] {
        if !forms.contains(&form) {
            forms.push(form);
        }
    }
    forms
}

/// Whether `place` in `text` has no letter or digit right before or after it.
fn stands_whole(text: &str, place: &std::ops::Range<usize>) -> bool {
    let word = |c: char| c.is_alphanumeric();
    !text[..place.start].chars().next_back().is_some_and(word)
        && !text[place.end..].chars().next().is_some_and(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A secret quoted back encoded is hidden as well as one quoted as sent.
    #[test]
    fn a_secret_quoted_back_encoded_is_hidden() {
        let secret = "p4ss/w0rd+\"quoted\" value";
        for answer in [
            r#"{"error":"invalid token p4ss/w0rd+\"quoted\" value"}"#,
            "error=invalid&token=p4ss%2Fw0rd%2B%22quoted%22+value",
            "GET /hook/p4ss%2Fw0rd%2B%22quoted%22%20value: 404",
            "GET /hook/p4ss%2fw0rd%2b%22quoted%22%20value: 404",
        ] {
            let redacted = redact(answer, &[secret]);
            assert!(redacted.contains(REDACTED), "{answer} -> {redacted}");
            for piece in ["p4ss", "w0rd", "quoted"] {
                assert!(!redacted.contains(piece), "{answer} -> {redacted}");
            }
        }
    }

    #[test]
    fn a_secret_inside_another_is_hidden_with_it() {
        let secrets = ["s3cret", "https://hooks.example.test/s3cret-path"];
        assert_eq!(
            redact(
                "POST https://hooks.example.test/s3cret-path: token s3cret refused",
                &secrets
            ),
            "POST [redacted]: token [redacted] refused"
        );
        // Overlapping values: one mark for both.
        assert_eq!(
            redact("key abcdefgh12345678 end", &["abcdefgh1234", "gh12345678"]),
            "key [redacted] end"
        );
    }

    /// The cases of SPEC §4's "redacted wherever they appear, whole or in
    /// part", for values long and short.
    #[test]
    fn long_secrets_are_hidden_anywhere_and_short_ones_where_they_stand_whole() {
        let cases: &[(&str, &[&str], &str)] = &[
            // A token of one character (the tests' `t`): the word, not the letters.
            (
                "POST https://api.cloudflare.com/client/v4/zones/z/purge_cache: HTTP 503; gave up after 6 tries",
                &["t", "z"],
                "POST https://api.cloudflare.com/client/v4/zones/[redacted]/purge_cache: HTTP 503; gave up after 6 tries",
            ),
            (
                "Authorization: Bearer t",
                &["t"],
                "Authorization: Bearer [redacted]",
            ),
            ("token=t&x=1", &["t"], "token=[redacted]&x=1"),
            // Two characters, a numeric id: whole only.
            (
                "pull zone 42 of 4242",
                &["42"],
                "pull zone [redacted] of 4242",
            ),
            // Eight characters or more: also inside a longer word.
            ("id=XXab12cd34efYY", &["ab12cd34ef"], "id=XX[redacted]YY"),
            ("%3Dab12cd34ef%26", &["ab12cd34ef"], "%3D[redacted]%26"),
            // Nothing secret: the text as it was.
            ("HTTP 403", &[], "HTTP 403"),
            ("naïve", &["ï"], "naïve"),
            ("€t€", &["t"], "€[redacted]€"),
        ];
        for (text, secrets, expected) in cases {
            assert_eq!(&redact(text, secrets), expected, "{text} {secrets:?}");
        }
    }
}
