//! The reading layer: the object under review read only as deep as the
//! decision needs (SPEC §1–§3). Its top level and `metadata` are split into
//! raw JSON members as the payload is read; labels, name and namespace, the
//! containers' names and images and the policy's own annotations are then
//! read as typed values. `oldObject`, `userInfo`, the rest of the spec and
//! every other annotation stay unread JSON text; the stamped annotations
//! (the Job: the longest string of the request, full of escapes) are compared
//! as JSON text, and unescaped only when that comparison is not conclusive.

use super::skim::{Cursor, NotJson, Raw};
use crate::deployment::stamp_keys;
use crate::error::PolicyError;
use crate::settings::Settings;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// A JSON object read one level deep: each member stays raw JSON text, its
/// name borrowed from the request unless it had to be unescaped.
pub(super) type Members<'a> = BTreeMap<Cow<'a, str>, Raw<'a>>;

/// A JSON object read one level deep in one pass: its members stay raw JSON
/// text, except the member `M::NAME`, read as `M::Value`.
///
/// Reading the object as raw members and then the member again from its text
/// is simpler, but scans `metadata` twice and the annotations (the stale Job:
/// long and full of escapes) three times: callgrind counts 21 % more
/// instructions per stamping evaluation and 9 % more per pass-through (see
/// the commit that kept this).
pub(super) struct Split<'a, M: Member<'a>> {
    pub(super) members: Members<'a>,
    member: Option<M::Value>,
}

/// Which member a `Split` reads, and as what.
pub(super) trait Member<'de> {
    /// What the split object is, for error messages.
    const WITHIN: &'static str;
    const NAME: &'static str;
    type Value: Deserialize<'de>;
    /// Reads the member's value (an object) at the cursor.
    fn skim(cursor: &mut Cursor<'de>) -> Result<Self::Value, NotJson>;
}

/// `request.object`: its `metadata` is split in turn.
pub(super) type ObjectParts<'a> = Split<'a, MetadataMember>;
/// `metadata`: its annotations are split too, each value kept as JSON text
/// until the decision needs it.
pub(super) type MetadataParts<'a> = Split<'a, AnnotationsMember>;

pub(super) struct MetadataMember;
impl<'de> Member<'de> for MetadataMember {
    const WITHIN: &'static str = "a Kubernetes object";
    const NAME: &'static str = "metadata";
    type Value = MetadataParts<'de>;
    fn skim(cursor: &mut Cursor<'de>) -> Result<Self::Value, NotJson> {
        Split::skim(cursor)
    }
}

pub(super) struct AnnotationsMember;
impl<'de> Member<'de> for AnnotationsMember {
    const WITHIN: &'static str = "object metadata";
    const NAME: &'static str = "annotations";
    type Value = Members<'de>;
    fn skim(cursor: &mut Cursor<'de>) -> Result<Self::Value, NotJson> {
        skim_members(cursor, None)
    }
}

/// The object at the cursor, its members as JSON text; `likely` says what
/// they probably are (`Cursor::value_like`).
pub(super) fn skim_members<'a>(
    cursor: &mut Cursor<'a>,
    likely: Option<&Members<'_>>,
) -> Result<Members<'a>, NotJson> {
    let mut members = Members::new();
    cursor.begin_object()?;
    let mut first = true;
    while let Some(name) = cursor.next_member(&mut first)? {
        let expected = likely.and_then(|likely| likely.get(name.as_ref()).copied());
        let value = cursor.value_like(expected)?;
        members.insert(name, value);
    }
    Ok(members)
}

impl<'a, M: Member<'a>> Split<'a, M> {
    /// The object at the cursor, split in the same pass (the reading
    /// layer's fast path; `Deserialize` is the precise one).
    pub(super) fn skim(cursor: &mut Cursor<'a>) -> Result<Self, NotJson> {
        let mut split = Split {
            members: Members::new(),
            member: None,
        };
        cursor.begin_object()?;
        let mut first = true;
        while let Some(name) = cursor.next_member(&mut first)? {
            if name == M::NAME {
                split.member = cursor.object_or_null(M::skim)?;
            } else {
                split.members.insert(name, cursor.value()?);
            }
        }
        Ok(split)
    }
}

impl<'de, M: Member<'de>> Deserialize<'de> for Split<'de, M> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(SplitVisitor(std::marker::PhantomData::<M>))
    }
}

struct SplitVisitor<M>(std::marker::PhantomData<M>);

impl<'de, M: Member<'de>> serde::de::Visitor<'de> for SplitVisitor<M> {
    type Value = Split<'de, M>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str(M::WITHIN)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut split = Split {
            members: Members::new(),
            member: None,
        };
        while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
            if key == M::NAME {
                split.member = map.next_value::<Option<M::Value>>()?;
            } else {
                let raw: &'de RawValue = map.next_value()?;
                split.members.insert(key, Raw::from_serde(raw));
            }
        }
        Ok(split)
    }
}

/// A JSON string, borrowed from the request where it has no escape: serde's
/// own `Cow<str>` borrows only as a field of a derived struct, never as a
/// map's key or value.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Str<'a>(pub Cow<'a, str>);

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Str<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(StrVisitor)
    }
}

struct StrVisitor;

impl<'de> serde::de::Visitor<'de> for StrVisitor {
    type Value = Str<'de>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a string")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Str(Cow::Borrowed(text)))
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Str(Cow::Owned(text.to_owned())))
    }
}

impl<'a> ObjectParts<'a> {
    pub(super) fn metadata(&self) -> Option<&MetadataParts<'a>> {
        self.member.as_ref()
    }

    /// `metadata.name` and the like: a member of `metadata` that is not null.
    pub(super) fn metadata_field(&self, name: &str) -> Option<Raw<'a>> {
        self.metadata()
            .and_then(|metadata| metadata.members.get(name).copied())
            .filter(|raw| raw.get() != "null")
    }

    /// The annotations, each value as JSON text.
    pub(super) fn annotations(&self) -> Option<&Members<'a>> {
        self.metadata()
            .and_then(|metadata| metadata.member.as_ref())
    }
}

/// The part of the Deployment spec the decision reads: container names and
/// images. Everything else is the API server's to validate.
#[derive(Deserialize, Default)]
struct SpecView {
    #[serde(default)]
    template: TemplateView,
}

#[derive(Deserialize, Default)]
struct TemplateView {
    #[serde(default)]
    spec: Option<PodView>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PodView {
    #[serde(default)]
    containers: Option<Vec<ContainerView>>,
    #[serde(default)]
    init_containers: Option<Vec<ContainerView>>,
}

#[derive(Deserialize)]
struct ContainerView {
    #[serde(default)]
    name: String,
    #[serde(default)]
    image: Option<String>,
}

impl From<ContainerView> for Container {
    fn from(view: ContainerView) -> Self {
        Container {
            name: view.name,
            image: view.image,
            ..Container::default()
        }
    }
}

/// The labels, the only member read before the decision whether the object
/// takes part.
pub(super) fn labels(
    parts: &ObjectParts<'_>,
) -> Result<Option<BTreeMap<String, String>>, PolicyError> {
    parts
        .metadata_field("labels")
        .map(|raw| read(raw, "metadata.labels"))
        .transpose()
}

/// The typed view of a site Deployment the decision reads.
pub(super) fn deployment(
    parts: &ObjectParts<'_>,
    settings: &Settings,
    labels: Option<BTreeMap<String, String>>,
) -> Result<Deployment, PolicyError> {
    check_type(&parts.members)?;
    let spec: SpecView = match parts.members.get("spec") {
        Some(raw) if raw.get() != "null" => read(*raw, "spec")?,
        _ => SpecView::default(),
    };
    Ok(Deployment {
        metadata: object_meta(parts, settings, labels)?,
        spec: Some(deployment_spec(spec)),
        status: None,
    })
}

/// Whether the JSON text `raw` is the string `value`. The policy's own
/// escaping is tried first, as it is what the policy wrote; the API server
/// may have escaped more (Go escapes `&`, `<` and `>`), so a mismatch is
/// settled by unescaping.
pub(super) fn is_json_string(raw: Raw<'_>, value: &str) -> bool {
    let text = raw.get();
    let mut escaped = Vec::with_capacity(text.len());
    let canonical =
        serde_json::to_writer(&mut escaped, value).is_ok() && escaped == text.as_bytes();
    canonical || serde_json::from_str::<String>(text).is_ok_and(|unescaped| unescaped == value)
}

pub(super) fn read<'a, T: Deserialize<'a>>(raw: Raw<'a>, field: &str) -> Result<T, PolicyError> {
    serde_json::from_str(raw.get())
        .map_err(|error| PolicyError::UnreadableDeployment(format!("{field}: {error}")))
}

/// The metadata the decision reads: name, namespace, labels, and the
/// policy's own annotations (`P/…`) but the three it writes.
fn object_meta(
    parts: &ObjectParts<'_>,
    settings: &Settings,
    labels: Option<BTreeMap<String, String>>,
) -> Result<ObjectMeta, PolicyError> {
    let text = |name: &str, field: &str| -> Result<Option<String>, PolicyError> {
        parts
            .metadata_field(name)
            .map(|raw| read(raw, field))
            .transpose()
    };
    let prefix = [settings.annotation_prefix.as_str(), "/"].concat();
    let written = stamp_keys(settings);
    let annotations = parts
        .annotations()
        .map(|annotations| {
            annotations
                .iter()
                .filter(|(key, _)| {
                    key.starts_with(&prefix) && !written.iter().any(|w| w == key.as_ref())
                })
                .map(|(key, raw)| {
                    serde_json::from_str::<String>(raw.get())
                        .map(|value| (key.to_string(), value))
                        .map_err(|error| {
                            PolicyError::UnreadableDeployment(format!(
                                "metadata.annotations[{key:?}]: {error}"
                            ))
                        })
                })
                .collect::<Result<BTreeMap<_, _>, _>>()
        })
        .transpose()?;
    Ok(ObjectMeta {
        name: text("name", "metadata.name")?,
        namespace: text("namespace", "metadata.namespace")?,
        labels,
        annotations,
        ..ObjectMeta::default()
    })
}

/// The request says it is an apps/v1 Deployment; so must the object.
pub(super) fn check_type(top: &Members<'_>) -> Result<(), PolicyError> {
    let member = |name: &str| top.get(name).map(|raw| raw.get()).unwrap_or("null");
    let (api_version, kind) = (member("apiVersion"), member("kind"));
    if api_version == "\"apps/v1\"" && kind == "\"Deployment\"" {
        Ok(())
    } else {
        Err(PolicyError::UnreadableDeployment(format!(
            "its apiVersion is {api_version} and its kind {kind}; expected \"apps/v1\" and \"Deployment\""
        )))
    }
}

fn deployment_spec(view: SpecView) -> DeploymentSpec {
    let pod = view.template.spec.unwrap_or_default();
    let containers = |list: Option<Vec<ContainerView>>| {
        list.map(|list| list.into_iter().map(Container::from).collect::<Vec<_>>())
    };
    DeploymentSpec {
        template: PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                containers: containers(pod.containers).unwrap_or_default(),
                init_containers: containers(pod.init_containers),
                ..PodSpec::default()
            }),
        },
        ..DeploymentSpec::default()
    }
}
