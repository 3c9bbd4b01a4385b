//! AWS answers (CloudFront's invalidations, STS's credentials) read with
//! quick-xml: text is unescaped as XML says, and a tag's name is matched
//! whole, never as a substring of another.

use quick_xml::events::Event;
use quick_xml::reader::Reader;
use std::borrow::Cow;

/// The text of the first element named `tag` (its local name, whatever the
/// namespace prefix), unescaped. None when no such element, or when the
/// answer is not XML up to it.
pub fn xml_text<'a>(answer: &'a str, tag: &str) -> Option<Cow<'a, str>> {
    let mut reader = Reader::from_str(answer);
    loop {
        match reader.read_event().ok()? {
            Event::Start(start) if start.local_name().as_ref() == tag => {
                let end = start.to_end().into_owned();
                let text = reader.read_text(end.name()).ok()?.into_inner();
                return match text {
                    Cow::Borrowed(raw) => quick_xml::escape::unescape(raw).ok(),
                    Cow::Owned(raw) => quick_xml::escape::unescape(&raw)
                        .ok()
                        .map(|text| Cow::Owned(text.into_owned())),
                };
            }
            Event::Empty(empty) if empty.local_name().as_ref() == tag => {
                return Some(Cow::Borrowed(""));
            }
            Event::Eof => return None,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVALIDATION: &str = "<?xml version=\"1.0\"?><Invalidation xmlns=\"http://cloudfront.amazonaws.com/doc/2020-05-31/\">\
                      <Id>I2J0I21PCUYOIK</Id><Status>InProgress</Status></Invalidation>";

    #[test]
    fn fields_are_read_from_aws_answers() {
        assert_eq!(
            xml_text(INVALIDATION, "Id").as_deref(),
            Some("I2J0I21PCUYOIK")
        );
        assert_eq!(
            xml_text(INVALIDATION, "Status").as_deref(),
            Some("InProgress")
        );
        assert_eq!(xml_text(INVALIDATION, "Code"), None);
    }

    #[test]
    fn text_is_unescaped_and_names_match_whole() {
        let answer = "<ErrorResponse><Error><CodeDetail>x</CodeDetail><Code>Throttling</Code>\
                      <Message>Rate &amp; burst &lt;exceeded&gt;</Message></Error></ErrorResponse>";
        assert_eq!(xml_text(answer, "Code").as_deref(), Some("Throttling"));
        assert_eq!(
            xml_text(answer, "Message").as_deref(),
            Some("Rate & burst <exceeded>")
        );
    }

    #[test]
    fn a_prefixed_or_empty_element_is_read_and_broken_xml_is_none() {
        assert_eq!(xml_text("<a:Id>7</a:Id>", "Id").as_deref(), Some("7"));
        assert_eq!(xml_text("<R><Id/></R>", "Id").as_deref(), Some(""));
        assert_eq!(xml_text("<R><Other></Id></R>", "Id"), None);
        assert_eq!(xml_text("not xml at all", "Id"), None);
    }
}
