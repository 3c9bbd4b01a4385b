//! Which requests the policy looks at (SPEC §1), and reading the `validate`
//! payload: an apps/v1 Deployment being created or updated is evaluated;
//! every other kind, operation or subresource passes unread.
//!
//! The payload is read in one pass, the object split into raw members as it
//! is read (`object`). A payload that does not read that way (an object that
//! is no Kubernetes object, perhaps of a request the policy lets pass) is
//! read again in two steps, which let such requests pass and word the error
//! of the others precisely.

use super::object::{ObjectParts, read};
use super::unchanged::OldObject;
use crate::deployment::RequestContext;
use crate::error::PolicyError;
use serde::Deserialize;
use serde::de::IgnoredAny;
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
    pub settings: Option<&'a RawValue>,
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
    if let Ok(payload) =
        serde_json::from_slice::<ValidatePayload<'_, ObjectParts<'_>, OldObject<'_>>>(payload)
    {
        return payload.into_request(Ok, Some);
    }
    // Read so, an oldObject is never compared: the request is derived.
    let payload: ValidatePayload<'_, &RawValue, IgnoredAny> = serde_json::from_slice(payload)
        .map_err(|error| PolicyError::UnreadableRequest(error.to_string()))?;
    payload.into_request(|object| read(object, "request.object"), |_| None)
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

#[derive(Deserialize, Default)]
struct GroupVersionKind {
    #[serde(default)]
    group: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    kind: String,
}

impl<'a, O, Old> ValidatePayload<'a, O, Old> {
    /// SPEC §1: the request with its object read by `parts`, or `None` for a
    /// request the policy lets pass without looking.
    fn into_request(
        self,
        parts: impl FnOnce(O) -> Result<ObjectParts<'a>, PolicyError>,
        old: impl FnOnce(Old) -> Option<OldObject<'a>>,
    ) -> Result<Option<Request<'a>>, PolicyError> {
        let request = self.request;
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
            settings: self.settings,
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
