//! The writer: the mutated object is the original JSON with only
//! `metadata.annotations` rewritten (SPEC §3.4–3.5, and §1 for a removed
//! label). Every other member, and every annotation but the policy's, is
//! copied verbatim, so fields this build of k8s-openapi does not know (a
//! newer cluster's) and explicit nulls survive, and the patch Kubewarden
//! computes touches only `/metadata/annotations`. Copying unread members
//! needs one check of its own: their `\\u` escapes (`check_unicode_escapes`).

use super::object::{Members, ObjectParts};
use super::skim::{Raw, next_to_escape};
use crate::error::PolicyError;
use std::collections::BTreeMap;

/// A piece of the mutated object: JSON text copied as it came, a string
/// the policy writes, JSON text the policy wrote, or an object of such
/// pieces.
pub(super) enum Piece<'a> {
    Raw(Raw<'a>),
    Text(&'a str),
    JsonText(&'a str),
    Object(BTreeMap<&'a str, Piece<'a>>),
}

impl<'a> Piece<'a> {
    pub(super) fn object(members: &'a Members<'_>) -> BTreeMap<&'a str, Piece<'a>> {
        members
            .iter()
            .map(|(key, raw)| (key.as_ref(), Piece::Raw(*raw)))
            .collect()
    }

    /// Appends the piece's JSON text: raw text as it came (the cursor or
    /// serde_json read it as one JSON value), strings escaped by serde_json.
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Piece::Raw(raw) => out.extend_from_slice(raw.get().as_bytes()),
            Piece::JsonText(json) => out.extend_from_slice(json.as_bytes()),
            Piece::Text(text) => write_string(out, text),
            Piece::Object(members) => {
                out.push(b'{');
                for (index, (name, piece)) in members.iter().enumerate() {
                    if index > 0 {
                        out.push(b',');
                    }
                    write_string(out, name);
                    out.push(b':');
                    piece.write(out);
                }
                out.push(b'}');
            }
        }
    }
}

/// `text` as a JSON string, escaped exactly as serde_json escapes it, the
/// runs between characters to escape copied whole: a stamped Job is some
/// 2,800 characters with 340 quotes, and serde_json looks every byte up in
/// a table.
fn write_string(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut at = 0;
    loop {
        let next = next_to_escape(bytes, at);
        out.extend_from_slice(bytes.get(at..next).unwrap_or_default());
        let Some(&byte) = bytes.get(next) else {
            break;
        };
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                let hex = |nibble: u8| HEX.get(usize::from(nibble & 0xf)).copied().unwrap_or(b'0');
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hex(byte >> 4), hex(byte)]);
            }
        }
        at = next + 1;
    }
    out.push(b'"');
}

/// The original object with `metadata.annotations` replaced by `annotations`;
/// every other member is copied as it came. Written in one go, so the Job is
/// escaped straight into the result.
pub(super) fn splice_annotations(
    parts: &ObjectParts<'_>,
    annotations: BTreeMap<&str, Piece<'_>>,
) -> Result<String, PolicyError> {
    let empty = Members::new();
    let mut metadata = Piece::object(
        parts
            .metadata()
            .map_or(&empty, |metadata| &metadata.members),
    );
    metadata.insert("annotations", Piece::Object(annotations));
    let mut object = Piece::object(&parts.members);
    object.insert("metadata", Piece::Object(metadata));
    // Sized once: the object's members but metadata, and room for the
    // metadata with the Job it gains.
    let copied: usize = parts.members.values().map(|raw| raw.get().len()).sum();
    let mut spliced = Vec::with_capacity(copied + 8192);
    Piece::Object(object).write(&mut spliced);
    let spliced = String::from_utf8(spliced)
        .map_err(|error| PolicyError::JobSerialization(error.to_string()))?;
    check_unicode_escapes(&spliced)?;
    Ok(spliced)
}

/// Members are copied unread, and skipping a JSON string does not check its
/// `\u` escapes: a lone UTF-16 surrogate (`"\udaaa"`) would pass into the
/// answer, which the host could then not read (found by fuzzing). The API
/// server writes such characters as UTF-8, so escapes of surrogates are rare:
/// only when one may be there is the object read in full, strings and all.
fn check_unicode_escapes(json: &str) -> Result<(), PolicyError> {
    let may_hold_surrogate = memchr::memmem::find_iter(json.as_bytes(), b"\\u").any(|at| {
        json.as_bytes().get(at + 2..at + 4).is_some_and(|hex| {
            matches!(hex, [b'd' | b'D', b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F'])
        })
    });
    if !may_hold_surrogate {
        return Ok(());
    }
    serde_json::from_str::<serde_json::Value>(json)
        .map(drop)
        .map_err(|error| {
            PolicyError::UnreadableDeployment(format!(
                "a string holds a \\u escape that is not valid UTF-16 ({error} of the object); expected characters, or escapes of surrogate pairs"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn escaped(text: &str) -> String {
        let mut out = Vec::new();
        write_string(&mut out, text);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let every_control: String = (0u8..0x20).map(char::from).collect();
        for text in [
            "",
            "plain",
            r#"{"apiVersion":"batch/v1","kind":"Job"}"#,
            "back\\slash \\\" and \u{7f} é 😀",
            &every_control,
            "12345678\"",
            "1234567\"8",
        ] {
            assert_eq!(
                escaped(text),
                serde_json::to_string(text).unwrap(),
                "{text:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn any_string_is_escaped_as_serde_json_escapes_it(text in "\\PC*|[\"\\\\a\\u{0}-\\u{1f}é]{0,40}") {
            prop_assert_eq!(escaped(&text), serde_json::to_string(&text).unwrap());
        }
    }
}
