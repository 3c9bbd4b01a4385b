//! AWS answers read with a tiny tag reader: the fields read are flat and
//! unambiguous (quick-xml would be the move if more is read).

/// The text of the first `<tag>…</tag>` of an AWS answer (their XML is
/// flat and unambiguous for the fields read here: `Id`, `Status`, `Code`,
/// and STS's credentials).
pub fn xml_text<'a>(answer: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = answer.find(&open)? + open.len();
    let end = answer[start..].find(&format!("</{tag}>"))? + start;
    Some(&answer[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_from_aws_answers() {
        let answer = "<?xml version=\"1.0\"?><Invalidation xmlns=\"http://cloudfront.amazonaws.com/doc/2020-05-31/\">\
                      <Id>I2J0I21PCUYOIK</Id><Status>InProgress</Status></Invalidation>";
        assert_eq!(xml_text(answer, "Id"), Some("I2J0I21PCUYOIK"));
        assert_eq!(xml_text(answer, "Status"), Some("InProgress"));
        assert_eq!(xml_text(answer, "Code"), None);
    }
}
