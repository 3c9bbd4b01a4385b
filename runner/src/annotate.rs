//! `kwrun annotate`: embeds policy metadata in a module the way
//! `kwctl annotate` does: the metadata (with the protocol version read from
//! the module, the usage text and the annotating tool) as JSON in the custom
//! section `io.kubewarden.metadata`, written with walrus.

use crate::host::{Limits, LoadedPolicy};
use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The custom section kwctl, policy-server and `kwctl inspect` read.
pub const METADATA_SECTION: &str = "io.kubewarden.metadata";
/// kwctl records its version here; kwrun records itself the same way.
pub const ANNOTATING_TOOL: &str = "io.kubewarden.kwctl";
pub const USAGE: &str = "io.kubewarden.policy.usage";
const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "info"];
const EXECUTION_MODES: [&str; 4] = ["kubewarden-wapc", "opa", "gatekeeper", "wasi"];
const POLICY_TYPES: [&str; 2] = ["kubernetes", "raw"];

/// policy-evaluator's `Metadata`, camelCase on the wire.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    #[serde(default)]
    pub protocol_version: Option<String>,
    pub rules: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    pub mutating: bool,
    #[serde(default = "yes")]
    pub background_audit: bool,
    #[serde(default)]
    pub context_aware_resources: BTreeSet<ContextAwareResource>,
    #[serde(default = "wapc")]
    pub execution_mode: String,
    #[serde(default = "kubernetes")]
    pub policy_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_kubewarden_version: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_capabilities: Vec<String>,
}

fn yes() -> bool {
    true
}
fn wapc() -> String {
    "kubewarden-wapc".to_owned()
}
fn kubernetes() -> String {
    "kubernetes".to_owned()
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub api_groups: Vec<String>,
    pub api_versions: Vec<String>,
    pub resources: Vec<String>,
    pub operations: Vec<Operation>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    #[serde(rename = "CREATE")]
    Create,
    #[serde(rename = "UPDATE")]
    Update,
    #[serde(rename = "DELETE")]
    Delete,
    #[serde(rename = "CONNECT")]
    Connect,
    #[serde(rename = "*")]
    All,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct ContextAwareResource {
    pub api_version: String,
    pub kind: String,
}

impl Metadata {
    pub fn from_yaml(text: &str) -> Result<Self> {
        serde_yaml::from_str(text).map_err(|error| anyhow!("Metadata is invalid: {error}"))
    }

    /// The checks of policy-evaluator's metadata validation; every problem
    /// is listed.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        if self.execution_mode == "kubewarden-wapc"
            && self.protocol_version.as_deref() != Some("v1")
        {
            problems.push(format!(
                "protocolVersion: {:?} is not a valid protocol for a kubewarden-wapc policy; expected \"v1\"",
                self.protocol_version
            ));
        }
        if !EXECUTION_MODES.contains(&self.execution_mode.as_str()) {
            problems.push(format!(
                "executionMode: {:?} is unknown; expected one of {}",
                self.execution_mode,
                EXECUTION_MODES.join(", ")
            ));
        }
        if !POLICY_TYPES.contains(&self.policy_type.as_str()) {
            problems.push(format!(
                "policyType: {:?} is unknown; expected kubernetes or raw",
                self.policy_type
            ));
        }
        for (index, rule) in self.rules.iter().enumerate() {
            problems.extend(
                rule.problems()
                    .into_iter()
                    .map(|problem| format!("rules[{index}].{problem}")),
            );
        }
        for resource in &self.context_aware_resources {
            if resource.api_version.is_empty() || resource.kind.is_empty() {
                problems.push(format!(
                    "contextAwareResources: {resource:?} needs both apiVersion and kind"
                ));
            }
        }
        if let Some(version) = &self.minimum_kubewarden_version
            && !is_semver(version)
        {
            problems.push(format!(
                "minimumKubewardenVersion: {version:?} is not a semantic version"
            ));
        }
        if let Some(annotations) = &self.annotations {
            problems.extend(annotation_problems(annotations));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            bail!("Metadata is invalid: {}", problems.join("; "))
        }
    }
}

impl Rule {
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (field, values) in [
            ("apiGroups", &self.api_groups),
            ("apiVersions", &self.api_versions),
        ] {
            if values.is_empty() {
                problems.push(format!("{field}: must not be empty"));
            }
            if values.iter().any(|value| value == "*") && values.len() > 1 {
                problems.push(format!(
                    "{field}: no other elements can be defined when '*' is used"
                ));
            }
        }
        if self.operations.is_empty() {
            problems.push("operations: must not be empty".to_owned());
        }
        if self.operations.contains(&Operation::All) && self.operations.len() > 1 {
            problems
                .push("operations: no other elements can be defined when '*' is used".to_owned());
        }
        if self.resources.is_empty() {
            problems.push("resources: must not be empty".to_owned());
        }
        if let Err(problem) = check_resources(&self.resources) {
            problems.push(format!("resources: {problem}"));
        }
        problems
    }
}

/// Kubernetes' (and policy-evaluator's) rules for wildcards in resources.
fn check_resources(resources: &[String]) -> Result<(), String> {
    let mut wildcard_subresource_of = BTreeSet::new();
    let mut wildcard_resource_for = BTreeSet::new();
    let mut has_double_wildcard = false;
    let mut has_single_wildcard = false;
    let mut has_resource_without_subresource = false;
    for resource in resources {
        if resource.is_empty() {
            return Err("empty resource is not allowed".to_owned());
        }
        match resource.as_str() {
            "*/*" => has_double_wildcard = true,
            "*" => has_single_wildcard = true,
            _ => {}
        }
        let Some((name, subresource)) = resource.split_once('/') else {
            has_resource_without_subresource = resource != "*";
            continue;
        };
        if wildcard_subresource_of.contains(name) {
            return Err(format!(
                "if '{name}/*' is present, must not specify {resource}"
            ));
        }
        if wildcard_resource_for.contains(subresource) {
            return Err(format!(
                "if '*/{subresource}' is present, must not specify {resource}"
            ));
        }
        if subresource == "*" {
            wildcard_subresource_of.insert(name);
        }
        if name == "*" {
            wildcard_resource_for.insert(subresource);
        }
    }
    if resources.len() > 1 && has_double_wildcard {
        return Err("if '*/*' is present, must not specify other resources".to_owned());
    }
    if has_single_wildcard && has_resource_without_subresource {
        return Err(
            "if '*' is present, must not specify other resources without subresources".to_owned(),
        );
    }
    Ok(())
}

fn annotation_problems(annotations: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(severity) = annotations.get("io.kubewarden.policy.severity")
        && !SEVERITIES.contains(&severity.as_str())
    {
        problems.push(format!(
            "annotation io.kubewarden.policy.severity: {severity:?} is not one of {}",
            SEVERITIES.join(", ")
        ));
    }
    if let Some(authors) = annotations.get("io.kubewarden.policy.author")
        && let Some(author) = authors
            .split(',')
            .map(str::trim)
            .find(|author| !is_mailbox(author))
    {
        problems.push(format!(
            "annotation io.kubewarden.policy.author: {author:?} is not an RFC 5322 mailbox such as \"Jane Doe <jane@example.com>\""
        ));
    }
    if let Some(keywords) = annotations.get("io.artifacthub.keywords")
        && keywords.split(',').any(|keyword| keyword.trim().is_empty())
    {
        problems.push(format!(
            "annotation io.artifacthub.keywords: {keywords:?} has an empty keyword"
        ));
    }
    problems
}

/// `Name <local@domain>` or `local@domain`.
fn is_mailbox(author: &str) -> bool {
    let address = match (author.find('<'), author.strip_suffix('>')) {
        (Some(open), Some(inner)) => inner.get(open + 1..).unwrap_or_default(),
        (None, None) => author,
        _ => return false,
    };
    matches!(address.split_once('@'), Some((local, domain))
        if !local.is_empty() && domain.contains('.') && !address.contains(char::is_whitespace))
}

fn is_semver(version: &str) -> bool {
    let core = version.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

/// Annotates `wasm` with `metadata_path` (and `usage_path` as usage) into
/// `output`.
pub fn annotate(
    wasm: &Path,
    metadata_path: &Path,
    usage_path: Option<&Path>,
    output: &Path,
) -> Result<Metadata> {
    let text = std::fs::read_to_string(metadata_path)
        .with_context(|| format!("cannot read metadata file {}", metadata_path.display()))?;
    let mut metadata = Metadata::from_yaml(&text)?;

    let wasm_text = wasm.to_string_lossy();
    let policy = LoadedPolicy::load(&wasm_text)?.instantiate(Limits::default())?;
    metadata.protocol_version = Some(policy.protocol_version().map_err(|error| {
        anyhow!("Cannot compute ProtocolVersion used by the policy: {error:#}")
    })?);
    let annotations = metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(
        ANNOTATING_TOOL.to_owned(),
        format!("kwrun {}", env!("CARGO_PKG_VERSION")),
    );
    if let Some(usage_path) = usage_path {
        let usage = std::fs::read_to_string(usage_path)
            .with_context(|| format!("cannot read usage file {}", usage_path.display()))?;
        annotations.insert(USAGE.to_owned(), usage);
    }
    metadata.validate()?;

    let bytes = std::fs::read(wasm)
        .with_context(|| format!("cannot read policy file {}", wasm.display()))?;
    let annotated = write_metadata_section(&bytes, &metadata)?;
    std::fs::write(output, annotated)
        .with_context(|| format!("cannot write {}", output.display()))?;
    Ok(metadata)
}

/// The module with its `io.kubewarden.metadata` section set to `metadata`
/// (an existing one is replaced).
pub fn write_metadata_section(module: &[u8], metadata: &Metadata) -> Result<Vec<u8>> {
    let mut module = walrus::Module::from_buffer(module)
        .map_err(|error| anyhow!("cannot read the module: {error}"))?;
    let existing: Vec<_> = module
        .customs
        .iter()
        .filter(|(_, section)| section.name() == METADATA_SECTION)
        .map(|(id, _)| id)
        .collect();
    for id in existing {
        module.customs.delete(id);
    }
    module.customs.add(walrus::RawCustomSection {
        name: METADATA_SECTION.to_owned(),
        data: serde_json::to_vec(metadata)?,
    });
    Ok(module.emit_wasm())
}

/// The metadata a module carries, if any.
pub fn read_metadata_section(module: &[u8]) -> Result<Option<Metadata>> {
    let module = walrus::Module::from_buffer(module)
        .map_err(|error| anyhow!("cannot read the module: {error}"))?;
    let section = module
        .customs
        .iter()
        .find(|(_, section)| section.name() == METADATA_SECTION);
    match section {
        Some((_, section)) => Ok(Some(serde_json::from_slice(
            &section.data(&Default::default()),
        )?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const VALID: &str = r#"
rules:
  - apiGroups: ["apps"]
    apiVersions: ["v1"]
    resources: ["deployments"]
    operations: ["CREATE", "UPDATE"]
mutating: true
annotations:
  io.kubewarden.policy.severity: low
  io.kubewarden.policy.author: Jane Doe <jane@example.com>, ops@example.com
  io.artifacthub.keywords: cdn, cache
"#;

    fn with_protocol(text: &str) -> Metadata {
        let mut metadata = Metadata::from_yaml(text).unwrap();
        metadata.protocol_version = Some("v1".to_owned());
        metadata
    }

    #[test]
    fn valid_metadata_gets_kwctl_defaults() {
        let metadata = with_protocol(VALID);
        metadata.validate().unwrap();
        assert!(metadata.background_audit);
        assert_eq!(metadata.execution_mode, "kubewarden-wapc");
        assert_eq!(metadata.policy_type, "kubernetes");
        let wire = serde_json::to_value(&metadata).unwrap();
        assert_eq!(wire["protocolVersion"], "v1");
        assert_eq!(
            wire["rules"][0]["operations"],
            serde_json::json!(["CREATE", "UPDATE"])
        );
    }

    #[test]
    fn a_wapc_policy_needs_a_protocol() {
        let error = Metadata::from_yaml(VALID)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("protocolVersion: None is not a valid protocol"),
            "{error}"
        );
    }

    #[rstest]
    #[case::empty_groups(r#"{"apiGroups": [], "apiVersions": ["v1"], "resources": ["pods"], "operations": ["CREATE"]}"#, "rules[0].apiGroups: must not be empty")]
    #[case::star_with_others(r#"{"apiGroups": ["*", "apps"], "apiVersions": ["v1"], "resources": ["pods"], "operations": ["CREATE"]}"#, "rules[0].apiGroups: no other elements can be defined when '*' is used")]
    #[case::operations_star(r#"{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "operations": ["*", "CREATE"]}"#, "rules[0].operations: no other elements")]
    #[case::resources_star(r#"{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["*", "pods"], "operations": ["CREATE"]}"#, "if '*' is present, must not specify other resources without subresources")]
    #[case::double_star(r#"{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["*/*", "pods"], "operations": ["CREATE"]}"#, "if '*/*' is present, must not specify other resources")]
    #[case::subresource_star(r#"{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods/*", "pods/log"], "operations": ["CREATE"]}"#, "if 'pods/*' is present, must not specify pods/log")]
    fn rules_kwctl_refuses(#[case] rule: &str, #[case] problem: &str) {
        let metadata = with_protocol(&format!("rules: [{rule}]\nmutating: true\n"));
        let error = metadata.validate().unwrap_err().to_string();
        assert!(error.contains(problem), "{error}");
    }

    #[rstest]
    #[case::star_and_subresources(r#"["*", "pods/log"]"#)]
    #[case::resource_and_its_wildcard(r#"["pods/*", "pods"]"#)]
    fn rules_kwctl_accepts(#[case] resources: &str) {
        let metadata = with_protocol(&format!(
            "rules: [{{apiGroups: [\"\"], apiVersions: [v1], resources: {resources}, operations: [CREATE]}}]\nmutating: false\n"
        ));
        metadata.validate().unwrap();
    }

    #[rstest]
    #[case::severity(
        "io.kubewarden.policy.severity: urgent",
        "io.kubewarden.policy.severity: \"urgent\" is not one of"
    )]
    #[case::author(
        "io.kubewarden.policy.author: Jane Doe",
        "io.kubewarden.policy.author: \"Jane Doe\" is not an RFC 5322 mailbox"
    )]
    #[case::keywords("io.artifacthub.keywords: cdn,,cache", "has an empty keyword")]
    fn annotations_kwctl_refuses(#[case] annotation: &str, #[case] problem: &str) {
        let metadata = with_protocol(&format!(
            "rules: []\nmutating: true\nannotations:\n  {annotation}\n"
        ));
        let error = metadata.validate().unwrap_err().to_string();
        assert!(error.contains(problem), "{error}");
    }

    #[rstest]
    #[case::mode("executionMode: lua", "executionMode: \"lua\" is unknown")]
    #[case::policy_type("policyType: yaml", "policyType: \"yaml\" is unknown")]
    #[case::version(
        "minimumKubewardenVersion: 1.x",
        "minimumKubewardenVersion: \"1.x\" is not a semantic version"
    )]
    fn top_level_fields_kwctl_refuses(#[case] field: &str, #[case] problem: &str) {
        let metadata = with_protocol(&format!("rules: []\nmutating: true\n{field}\n"));
        let error = metadata.validate().unwrap_err().to_string();
        assert!(error.contains(problem), "{error}");
    }

    #[test]
    fn undecodable_metadata_is_refused() {
        let error = Metadata::from_yaml("rules: []\n").unwrap_err().to_string();
        assert!(
            error.starts_with("Metadata is invalid: missing field `mutating`"),
            "{error}"
        );
        let error = Metadata::from_yaml("rules: [{apiGroups: [], apiVersions: [], resources: [], operations: [PATCH]}]\nmutating: true").unwrap_err();
        assert!(
            error.to_string().contains("unknown variant `PATCH`"),
            "{error}"
        );
    }

    #[test]
    fn the_section_is_written_and_read_back_and_replaced() {
        let module =
            wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "wapc_init")))"#)
                .unwrap();
        let mut metadata = with_protocol(VALID);
        let annotated = write_metadata_section(&module, &metadata).unwrap();
        assert_eq!(
            read_metadata_section(&annotated).unwrap(),
            Some(metadata.clone())
        );
        metadata.mutating = false;
        let again = write_metadata_section(&annotated, &metadata).unwrap();
        assert_eq!(read_metadata_section(&again).unwrap(), Some(metadata));
        let sections = walrus::Module::from_buffer(&again).unwrap();
        assert_eq!(
            sections
                .customs
                .iter()
                .filter(|(_, s)| s.name() == METADATA_SECTION)
                .count(),
            1
        );
        assert_eq!(read_metadata_section(&module).unwrap(), None);
    }
}
