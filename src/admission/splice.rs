//! The writer: the mutated object is the original JSON with only
//! `metadata.annotations` rewritten (SPEC §3.4–3.5, and §1 for a removed
//! label). Every other member, and every annotation but the policy's, is
//! copied verbatim, so fields this build of k8s-openapi does not know (a
//! newer cluster's) and explicit nulls survive, and the patch Kubewarden
//! computes touches only `/metadata/annotations`. Copying unread members
//! needs one check of its own: their `\\u` escapes (`check_unicode_escapes`).

use super::object::{Members, ObjectParts};
use crate::error::PolicyError;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// A piece of the mutated object: JSON text copied as it came, a string
/// the policy writes, or an object of such pieces.
#[derive(serde::Serialize)]
#[serde(untagged)]
pub(super) enum Piece<'a> {
    Raw(&'a RawValue),
    Text(&'a str),
    Object(BTreeMap<&'a str, Piece<'a>>),
}

impl<'a> Piece<'a> {
    pub(super) fn object(members: &'a Members<'_>) -> BTreeMap<&'a str, Piece<'a>> {
        members
            .iter()
            .map(|(key, raw)| (key.as_ref(), Piece::Raw(raw)))
            .collect()
    }
}

/// The original object with `metadata.annotations` replaced by `annotations`;
/// every other member is copied as it came. Written in one go, so the Job is
/// escaped straight into the result.
pub(super) fn splice_annotations(
    parts: &ObjectParts<'_>,
    annotations: BTreeMap<&str, Piece<'_>>,
) -> Result<Box<RawValue>, PolicyError> {
    let empty = Members::new();
    let mut metadata = Piece::object(
        parts
            .metadata()
            .map_or(&empty, |metadata| &metadata.members),
    );
    metadata.insert("annotations", Piece::Object(annotations));
    let mut object = Piece::object(&parts.members);
    object.insert("metadata", Piece::Object(metadata));
    let spliced = to_raw(&Piece::Object(object))?;
    check_unicode_escapes(spliced.get())?;
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

fn to_raw(value: &impl serde::Serialize) -> Result<Box<RawValue>, PolicyError> {
    serde_json::value::to_raw_value(value)
        .map_err(|error| PolicyError::JobSerialization(error.to_string()))
}
