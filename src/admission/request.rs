//! Which requests the policy looks at (SPEC §1), and reading the `validate`
//! payload: an apps/v1 Deployment being created or updated is evaluated;
//! every other kind, operation or subresource passes unread.
//!
//! The payload is read in one pass by the cursor (`skim`), the object split
//! into raw members as it is read (`object`), `oldObject` as far as the
//! reconcile compares it (`unchanged`). A payload that does not read that
//! way (not JSON, an object that is no Kubernetes object, perhaps of a
//! request the policy lets pass) is read again with serde_json in two
//! steps, which let such requests pass and word the error of the others
//! precisely.

use super::object::{ObjectParts, read};
use super::skim::{Cursor, NotJson, Raw};
use super::unchanged::OldObject;
use crate::deployment::RequestContext;
use crate::error::PolicyError;
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::value::RawValue;

/// A request to evaluate: its object, where it is, and the settings.
pub(super) struct Request<'a> {
    pub object: ObjectParts<'a>,
    name: Option<String>,
    namespace: Option<String>,
    /// `oldObject` of an UPDATE, read in the same pass as far as a stamped
    /// Deployment's reconcile compares it (`unchanged`): its stamp is
    /// scanned once. `None` when it does not read so.
    pub old_object: Option<OldObject<'a>>,
    pub settings: Option<Raw<'a>>,
}

impl Request<'_> {
    pub fn context(&self) -> RequestContext<'_> {
        RequestContext {
            name: self.name.as_deref(),
            namespace: self.namespace.as_deref(),
        }
    }
}

/// SPEC §1: the request to evaluate, or `None` for one the policy lets pass.
pub(super) fn read_request(payload: &[u8]) -> Result<Option<Request<'_>>, PolicyError> {
    if let Ok((request, settings)) = skim_payload(payload) {
        return into_request(request, settings, Ok, Some);
    }
    // Read so, an oldObject is never compared: the request is derived.
    let payload: ValidatePayload<'_, &RawValue, IgnoredAny> = serde_json::from_slice(payload)
        .map_err(|error| PolicyError::UnreadableRequest(error.to_string()))?;
    into_request(
        payload.request,
        payload.settings.map(Raw::from_serde),
        |object| read(Raw::from_serde(object), "request.object"),
        |_| None,
    )
}

type Skimmed<'a> = (
    AdmissionRequest<ObjectParts<'a>, OldObject<'a>>,
    Option<Raw<'a>>,
);

/// The payload read by the cursor: `Err` for anything unusual (not JSON, a
/// member of another type, a name twice), which the precise reading then
/// words.
fn skim_payload(payload: &[u8]) -> Result<Skimmed<'_>, NotJson> {
    let text = std::str::from_utf8(payload).map_err(|error| NotJson(error.valid_up_to()))?;
    let mut cursor = Cursor::new(text);
    let (mut request, mut settings) = (None, None);
    cursor.begin_object()?;
    let mut first = true;
    while let Some(name) = cursor.next_member(&mut first)? {
        match name.as_ref() {
            "request" => once(&mut request, skim_admission_request(&mut cursor)?, &cursor)?,
            "settings" => once(&mut settings, cursor.value()?, &cursor)?,
            _ => drop(cursor.value()?),
        }
    }
    cursor.end()?;
    // As serde reads `Option<&RawValue>`: null is none.
    let settings = settings.filter(|raw| raw.get() != "null");
    Ok((request.ok_or(NotJson(0))?, settings))
}

fn skim_admission_request<'a>(
    cursor: &mut Cursor<'a>,
) -> Result<AdmissionRequest<ObjectParts<'a>, OldObject<'a>>, NotJson> {
    let mut request = AdmissionRequest::default();
    let mut seen = 0u8;
    cursor.begin_object()?;
    let mut first = true;
    while let Some(name) = cursor.next_member(&mut first)? {
        let index = match name.as_ref() {
            "kind" => {
                request.kind = typed(cursor)?;
                0
            }
            "subResource" => {
                request.sub_resource = typed(cursor)?;
                1
            }
            "name" => {
                request.name = typed(cursor)?;
                2
            }
            "namespace" => {
                request.namespace = typed(cursor)?;
                3
            }
            "operation" => {
                request.operation = typed(cursor)?;
                4
            }
            "object" => {
                request.object = cursor.object_or_null(ObjectParts::skim)?;
                5
            }
            "oldObject" => {
                let object = request.object.as_ref();
                request.old_object =
                    cursor.object_or_null(|cursor| OldObject::skim(cursor, object))?;
                6
            }
            _ => {
                cursor.value()?;
                continue;
            }
        };
        // serde refuses a field given twice; so does the precise reading.
        let field = 1u8 << index;
        if seen & field != 0 {
            return Err(NotJson(cursor.position()));
        }
        seen |= field;
    }
    Ok(request)
}

/// A small member read as `T` from its text.
fn typed<T: DeserializeOwned>(cursor: &mut Cursor<'_>) -> Result<T, NotJson> {
    let raw = cursor.value()?;
    serde_json::from_str(raw.get()).map_err(|_| NotJson(cursor.position()))
}

fn once<T>(slot: &mut Option<T>, value: T, cursor: &Cursor<'_>) -> Result<(), NotJson> {
    match slot.replace(value) {
        None => Ok(()),
        Some(_) => Err(NotJson(cursor.offset())),
    }
}

/// The `validate` payload, with `request.object` read as `O`, and
/// `request.oldObject` as `Old`.
#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a, O: Deserialize<'de>, Old: Deserialize<'de>"))]
struct ValidatePayload<'a, O, Old> {
    request: AdmissionRequest<O, Old>,
    #[serde(default)]
    settings: Option<&'a RawValue>,
}

/// The fields of admission/v1 AdmissionRequest the decision needs.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(bound(deserialize = "O: Deserialize<'de>, Old: Deserialize<'de>"))]
struct AdmissionRequest<O, Old> {
    #[serde(default)]
    kind: GroupVersionKind,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    operation: String,
    #[serde(default = "Option::default")]
    object: Option<O>,
    #[serde(default = "Option::default")]
    old_object: Option<Old>,
}

impl<O, Old> Default for AdmissionRequest<O, Old> {
    fn default() -> Self {
        AdmissionRequest {
            kind: GroupVersionKind::default(),
            sub_resource: None,
            name: None,
            namespace: None,
            operation: String::new(),
            object: None,
            old_object: None,
        }
    }
}

#[derive(Deserialize, Default)]
struct GroupVersionKind {
    #[serde(default)]
    group: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    kind: String,
}

/// SPEC §1: the request with its object read by `parts`, or `None` for a
/// request the policy lets pass without looking.
fn into_request<'a, O, Old>(
    request: AdmissionRequest<O, Old>,
    settings: Option<Raw<'a>>,
    parts: impl FnOnce(O) -> Result<ObjectParts<'a>, PolicyError>,
    old: impl FnOnce(Old) -> Option<OldObject<'a>>,
) -> Result<Option<Request<'a>>, PolicyError> {
    {
        if !request.is_evaluated() {
            return Ok(None);
        }
        let object = request.object.ok_or_else(|| {
            PolicyError::UnreadableRequest(format!(
                "request.object is missing from a {} request; expected the Deployment",
                request.operation
            ))
        })?;
        let old_object = (request.operation == "UPDATE")
            .then_some(request.old_object)
            .flatten()
            .and_then(old);
        Ok(Some(Request {
            object: parts(object)?,
            old_object,
            name: request.name,
            namespace: request.namespace,
            settings,
        }))
    }
}

impl<O, Old> AdmissionRequest<O, Old> {
    /// An apps/v1 Deployment being created or updated, not a subresource.
    fn is_evaluated(&self) -> bool {
        let is_deployment = self.kind.group == "apps"
            && self.kind.version == "v1"
            && self.kind.kind == "Deployment";
        let is_write = matches!(self.operation.as_str(), "CREATE" | "UPDATE");
        let is_subresource = self.sub_resource.as_deref().is_some_and(|s| !s.is_empty());
        is_deployment && is_write && !is_subresource
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// The members as the precise reading (serde_json) splits them.
    fn precise(payload: &[u8]) -> Option<(Request<'_>, Value)> {
        let payload: ValidatePayload<'_, ObjectParts<'_>, IgnoredAny> =
            serde_json::from_slice(payload).unwrap();
        let request = into_request(
            payload.request,
            payload.settings.map(Raw::from_serde),
            Ok,
            |_| None,
        )
        .unwrap()?;
        let seen = seen(&request);
        Some((request, seen))
    }

    /// What a reading found, as JSON: every split member's text.
    fn seen(request: &Request<'_>) -> Value {
        let texts = |members: &super::super::object::Members<'_>| {
            members
                .iter()
                .map(|(name, raw)| (name.to_string(), Value::from(raw.get())))
                .collect::<serde_json::Map<_, _>>()
        };
        let metadata = request.object.metadata();
        json!({
            "object": texts(&request.object.members),
            "metadata": metadata.map(|metadata| texts(&metadata.members)),
            "annotations": request.object.annotations().map(texts),
            "name": request.context().name,
            "namespace": request.context().namespace,
            "settings": request.settings.map(Raw::get),
        })
    }

    fn payload(request: &Value, settings: &Value) -> Vec<u8> {
        serde_json::to_vec_pretty(&json!({"request": request, "settings": settings})).unwrap()
    }

    /// Both readings find the same request in every fixture, pretty or
    /// compact, with and without settings.
    #[test]
    fn the_cursor_reads_what_serde_json_reads() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e-tests/fixtures");
        let mut evaluated = 0;
        for entry in std::fs::read_dir(fixtures).unwrap() {
            let path = entry.unwrap().path();
            let review: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            for settings in [json!({}), json!({"provider": "fastly"}), Value::Null] {
                let pretty = payload(&review["request"], &settings);
                let compact =
                    serde_json::to_vec(&serde_json::from_slice::<Value>(&pretty).unwrap()).unwrap();
                for text in [pretty, compact] {
                    let (skimmed, settings_read) = skim_payload(&text).unwrap();
                    let skimmed = into_request(skimmed, settings_read, Ok, Some).unwrap();
                    let precise = precise(&text);
                    assert_eq!(
                        skimmed.as_ref().map(seen),
                        precise.as_ref().map(|(_, seen)| seen.clone()),
                        "{}",
                        path.display()
                    );
                    evaluated += usize::from(skimmed.is_some());
                }
            }
        }
        assert!(evaluated > 40, "only {evaluated} fixtures were Deployments");
    }

    /// Anything unusual leaves the cursor's reading to the precise one:
    /// each of these is then read (or refused) as serde_json reads it.
    #[test]
    fn the_unusual_is_left_to_the_precise_reading() {
        let usual = r#"{"request": {"kind": {"group": "apps", "version": "v1", "kind": "Deployment"}, "operation": "CREATE", "object": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"}}}, "settings": {}}"#;
        assert!(skim_payload(usual.as_bytes()).is_ok());
        for (unusual, with) in [
            (
                r#""operation": "CREATE","#,
                r#""operation": "CREATE", "operation": "UPDATE","#,
            ),
            (r#""metadata": {"name": "a"}"#, r#""metadata": 7"#),
            (r#""kind": {"group""#, r#""kind": ["group""#),
            (r#""settings": {}"#, r#""settings": {}, "settings": {}"#),
            (r#""object": {"#, r#""object": ["#),
            ("}}}", "}}}}"),
            (r#"{"request""#, r#"{"request": 1, "request""#),
        ] {
            assert!(usual.contains(unusual), "{unusual}");
            let text = usual.replacen(unusual, with, 1);
            assert!(skim_payload(text.as_bytes()).is_err(), "{text}");
        }
        assert!(skim_payload(format!("{usual} trailing").as_bytes()).is_err());
        // Not UTF-8: said by the precise reading.
        assert!(skim_payload(b"{\"request\": \"\xff\"}").is_err());
        assert!(matches!(
            read_request(b"{\"request\": \"\xff\"}"),
            Err(PolicyError::UnreadableRequest(_))
        ));
    }
}
