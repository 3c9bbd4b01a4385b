//! Where the Job's pod may run and what it carries for the cluster's own
//! machinery (SPEC §6): a private mirror's pull Secret, node selection and
//! tolerations, a priority class, and pod annotations (to keep a service
//! mesh's sidecar, which would never exit, out of the Job). Each value is
//! checked here as the API server would check it, so that a bad setting is
//! refused when the policy is loaded rather than on every Job's creation.

use crate::names::{is_dns1123_subdomain, is_label_value, is_qualified_name};
use k8s_openapi::api::core::v1::{LocalObjectReference, Toleration};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const OPERATORS: [&str; 2] = ["Equal", "Exists"];
const EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// An entry of `imagePullSecrets`, written as in a pod spec.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ImagePullSecret {
    pub name: String,
}

/// A toleration, written as in a pod spec; unknown fields are refused
/// (k8s-openapi's own type would ignore a misspelt one).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TolerationSetting {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

impl From<&ImagePullSecret> for LocalObjectReference {
    fn from(secret: &ImagePullSecret) -> Self {
        LocalObjectReference {
            name: secret.name.clone(),
        }
    }
}

impl From<&TolerationSetting> for Toleration {
    fn from(toleration: &TolerationSetting) -> Self {
        Toleration {
            key: toleration.key.clone(),
            operator: toleration.operator.clone(),
            value: toleration.value.clone(),
            effect: toleration.effect.clone(),
            toleration_seconds: toleration.toleration_seconds,
        }
    }
}

pub fn image_pull_secret_problems(secrets: &[ImagePullSecret]) -> Vec<String> {
    secrets
        .iter()
        .enumerate()
        .filter(|(_, secret)| !is_dns1123_subdomain(&secret.name))
        .map(|(index, secret)| {
            format!(
                "imagePullSecrets[{index}].name: {:?} is not a valid Secret name; expected a DNS-1123 subdomain such as registry-mirror",
                secret.name
            )
        })
        .collect()
}

pub fn node_selector_problems(selector: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, value) in selector {
        if !is_qualified_name(key) {
            problems.push(format!(
                "nodeSelector: {key:?} is not a valid label key; expected [prefix/]name such as kubernetes.io/arch"
            ));
        } else if !is_label_value(value) {
            problems.push(format!(
                "nodeSelector.{key}: {value:?} is not a valid label value; expected at most 63 letters, digits, '-', '_' or '.', beginning and ending with a letter or digit"
            ));
        }
    }
    problems
}

/// The API server's rules for a toleration, one message each.
pub fn toleration_problems(tolerations: &[TolerationSetting]) -> Vec<String> {
    let mut problems = Vec::new();
    for (index, toleration) in tolerations.iter().enumerate() {
        let at = format!("tolerations[{index}]");
        let key = toleration.key.as_deref().unwrap_or("");
        let operator = toleration.operator.as_deref().unwrap_or("Equal");
        let value = toleration.value.as_deref().unwrap_or("");
        let effect = toleration.effect.as_deref().unwrap_or("");
        if !key.is_empty() && !is_qualified_name(key) {
            problems.push(format!(
                "{at}.key: {key:?} is not a valid taint key; expected [prefix/]name such as node-role.kubernetes.io/batch"
            ));
        }
        if !OPERATORS.contains(&operator) {
            problems.push(format!(
                "{at}.operator: {operator:?} is not an operator; expected Equal or Exists"
            ));
        } else if key.is_empty() && operator != "Exists" {
            problems.push(format!(
                "{at}.operator: {operator:?} with no key; expected Exists, the only operator that tolerates every taint"
            ));
        } else if operator == "Exists" && !value.is_empty() {
            problems.push(format!(
                "{at}.value: {value:?} is given with operator Exists; expected no value"
            ));
        } else if operator == "Equal" && !is_label_value(value) {
            problems.push(format!(
                "{at}.value: {value:?} is not a valid taint value; expected at most 63 letters, digits, '-', '_' or '.'"
            ));
        }
        if !effect.is_empty() && !EFFECTS.contains(&effect) {
            problems.push(format!(
                "{at}.effect: {effect:?} is not a taint effect; expected NoSchedule, PreferNoSchedule or NoExecute (or none for all three)"
            ));
        }
        if let Some(seconds) = toleration.toleration_seconds
            && effect != "NoExecute"
        {
            problems.push(format!(
                "{at}.tolerationSeconds: {seconds} is given with effect {effect:?}; expected tolerationSeconds only with effect NoExecute"
            ));
        }
    }
    problems
}

pub fn priority_class_problems(name: Option<&str>) -> Vec<String> {
    match name {
        Some(name) if !is_dns1123_subdomain(name) => vec![format!(
            "priorityClassName: {name:?} is not a valid PriorityClass name; expected a DNS-1123 subdomain such as batch-low"
        )],
        _ => Vec::new(),
    }
}

/// Pod annotations: valid keys, and none under the policy's own prefix,
/// which names what the policy stamps.
pub fn annotation_problems(annotations: &BTreeMap<String, String>, prefix: &str) -> Vec<String> {
    let own = format!("{prefix}/");
    annotations
        .keys()
        .filter_map(|key| {
            if !is_qualified_name(key) {
                Some(format!(
                    "annotations: {key:?} is not a valid annotation key; expected [prefix/]name such as sidecar.istio.io/inject"
                ))
            } else if key.starts_with(&own) {
                Some(format!(
                    "annotations: {key:?} is under the policy's own prefix {prefix}; expected a key of another prefix"
                ))
            } else {
                None
            }
        })
        .collect()
}
