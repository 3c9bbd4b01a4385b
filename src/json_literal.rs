//! A value's JSON written as a JSON string literal, in one pass. The stamped
//! Job is an annotation, so its JSON is a string inside the Deployment's
//! JSON: serialising the Job and then escaping the result reads and copies
//! each of its some 2,800 bytes twice, and in Wasm every copied run is a call
//! out of the module (`memory.copy`). A serde_json `Formatter` that escapes
//! as it writes does the work once.

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter};
use std::io;

/// `serde_json::to_string(&serde_json::to_string(value)?)`, byte for byte.
pub fn to_json_literal<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let mut out = Vec::with_capacity(4096);
    out.push(b'"');
    value.serialize(&mut serde_json::Serializer::with_formatter(
        &mut out,
        EscapedCompact,
    ))?;
    out.push(b'"');
    String::from_utf8(out).map_err(serde::ser::Error::custom)
}

/// serde_json's compact format with every character of the output that a
/// JSON string must escape (its quotes and backslashes) escaped: the inner
/// JSON's fragments hold none, so only strings' delimiters and escapes
/// change.
struct EscapedCompact;

impl Formatter for EscapedCompact {
    fn begin_string<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(br#"\""#)
    }

    fn end_string<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(br#"\""#)
    }

    /// The inner escape `\x`, escaped again: `\\` then `x`, where a quote
    /// or a backslash for `x` is escaped in turn.
    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        char_escape: CharEscape,
    ) -> io::Result<()> {
        match char_escape {
            CharEscape::Quote => writer.write_all(br#"\\\""#),
            CharEscape::ReverseSolidus => writer.write_all(br"\\\\"),
            CharEscape::Solidus => writer.write_all(br"\\/"),
            CharEscape::Backspace => writer.write_all(br"\\b"),
            CharEscape::FormFeed => writer.write_all(br"\\f"),
            CharEscape::LineFeed => writer.write_all(br"\\n"),
            CharEscape::CarriageReturn => writer.write_all(br"\\r"),
            CharEscape::Tab => writer.write_all(br"\\t"),
            CharEscape::AsciiControl(byte) => {
                writer.write_all(br"\\u00")?;
                writer.write_all(&[hex_digit(byte >> 4), hex_digit(byte)])
            }
        }
    }

    /// A raw JSON fragment (`serde_json::value::RawValue`) may hold any
    /// JSON text, strings included: escaped as a string's contents are.
    fn write_raw_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let escaped = serde_json::to_string(fragment).map_err(io::Error::other)?;
        let contents = escaped
            .strip_prefix('"')
            .and_then(|escaped| escaped.strip_suffix('"'))
            .unwrap_or_default();
        writer.write_all(contents.as_bytes())
    }
}

fn hex_digit(nibble: u8) -> u8 {
    b"0123456789abcdef"
        .get(usize::from(nibble & 0xf))
        .copied()
        .unwrap_or(b'0')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn escaped_twice(value: &impl Serialize) -> String {
        serde_json::to_string(&serde_json::to_string(value).unwrap()).unwrap()
    }

    #[test]
    fn a_job_is_the_string_of_its_json() {
        let job = json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "shop-cache-buster-b4612648a6", "labels": {"a/b": "c"}},
            "spec": {"backoffLimit": 3, "suspend": false, "x": null, "ratio": 0.5,
                     "args": ["--url=https://shop.example.com/?a=1&b=\"2\"", "tab\there", "back\\slash", "\u{1}\u{7f}é😀/"]}
        });
        let literal = to_json_literal(&job).unwrap();
        assert_eq!(literal, escaped_twice(&job));
        let inner: String = serde_json::from_str(&literal).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&inner).unwrap(), job);
    }

    #[test]
    fn a_raw_fragment_is_escaped_as_a_string() {
        let raw =
            serde_json::value::RawValue::from_string(r#"{"a": "\"q\"\\"}"#.to_owned()).unwrap();
        assert_eq!(to_json_literal(&raw).unwrap(), escaped_twice(&raw));
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "\\PC*|[\"\\\\a\\u{0}-\\u{1f}é/]{0,20}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map("[a-z\"\\\\\\u{1}]{0,6}", inner, 0..6)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_value_is_the_string_of_its_json(value in any_json()) {
            prop_assert_eq!(to_json_literal(&value).unwrap(), escaped_twice(&value));
        }
    }
}
