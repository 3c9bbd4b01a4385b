//! What a container of a Job's pod sees, resolved as the kubelet resolves
//! it: the pod's volumes written at their `mountPath`s (Secrets, ConfigMaps,
//! projected service account tokens, the downward API), and its environment
//! (`env`, `envFrom`, the downward API, `$(VAR)` expansion).

use anyhow::{Result, anyhow, bail};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, ServiceAccount, Volume};
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub(crate) enum MountError {
    /// The kubelet reports it and tries again.
    Retry(String),
    Fatal(anyhow::Error),
}

impl From<anyhow::Error> for MountError {
    fn from(error: anyhow::Error) -> Self {
        MountError::Fatal(error)
    }
}

impl From<std::io::Error> for MountError {
    fn from(error: std::io::Error) -> Self {
        MountError::Fatal(error.into())
    }
}

/// A volume ready to be mounted: its files on the host, and whether only
/// reading is allowed whatever the mount says.
pub(crate) struct Mounted {
    pub(crate) dir: PathBuf,
    pub(crate) read_only: bool,
}

/// Writes every volume's files, as the kubelet's volume plugins do.
pub(crate) async fn mount_volumes(
    client: &Client,
    pod: &Pod,
    pod_dir: &Path,
) -> Result<HashMap<String, Mounted>, MountError> {
    let namespace = pod.namespace().unwrap_or_default();
    let mut mounted = HashMap::new();
    for volume in pod
        .spec
        .iter()
        .flat_map(|spec| spec.volumes.iter().flatten())
    {
        let dir = pod_dir.join("volumes").join(&volume.name);
        std::fs::create_dir_all(&dir)?;
        let read_only = write_volume(client, pod, &namespace, volume, &dir).await?;
        mounted.insert(volume.name.clone(), Mounted { dir, read_only });
    }
    Ok(mounted)
}

async fn write_volume(
    client: &Client,
    pod: &Pod,
    namespace: &str,
    volume: &Volume,
    dir: &Path,
) -> Result<bool, MountError> {
    if volume.empty_dir.is_some() {
        return Ok(false);
    }
    if let Some(source) = &volume.secret {
        let secret_name = source.secret_name.clone().unwrap_or_default();
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let Some(secret) = secrets
            .get_opt(&secret_name)
            .await
            .map_err(anyhow::Error::from)?
        else {
            if source.optional == Some(true) {
                return Ok(true);
            }
            return Err(MountError::Retry(format!(
                "MountVolume.SetUp failed for volume \"{}\" : secret \"{secret_name}\" not found",
                volume.name
            )));
        };
        let data = secret.data.unwrap_or_default();
        match &source.items {
            None => {
                for (key, value) in &data {
                    std::fs::write(dir.join(key), &value.0)?;
                }
            }
            Some(items) => {
                for item in items {
                    let Some(value) = data.get(&item.key) else {
                        return Err(MountError::Retry(format!(
                            "MountVolume.SetUp failed for volume \"{}\" : references non-existent secret key: {}",
                            volume.name, item.key
                        )));
                    };
                    std::fs::write(dir.join(&item.path), &value.0)?;
                }
            }
        }
        return Ok(true);
    }
    if let Some(projected) = &volume.projected {
        for source in projected.sources.iter().flatten() {
            if let Some(token) = &source.service_account_token {
                let account = pod
                    .spec
                    .as_ref()
                    .and_then(|spec| spec.service_account_name.clone())
                    .unwrap_or_else(|| "default".to_owned());
                let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
                let request = TokenRequest {
                    spec: Some(TokenRequestSpec {
                        audiences: token.audience.clone().map(|audience| vec![audience]),
                        expiration_seconds: token.expiration_seconds,
                        bound_object_ref: Some(BoundObjectReference {
                            api_version: Some("v1".to_owned()),
                            kind: Some("Pod".to_owned()),
                            name: Some(pod.name_any()),
                            uid: pod.uid(),
                        }),
                    }),
                    ..TokenRequest::default()
                };
                let issued = accounts
                    .create_token_request(&account, &PostParams::default(), &request)
                    .await
                    .map_err(|error| {
                        MountError::Retry(format!(
                            "MountVolume.SetUp failed for volume \"{}\" : failed to fetch token: {error}",
                            volume.name
                        ))
                    })?;
                let value = issued
                    .status
                    .and_then(|status| status.token)
                    .unwrap_or_default();
                std::fs::write(dir.join(&token.path), value)?;
            }
            if let Some(source) = &source.config_map {
                let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
                let map = maps
                    .get_opt(&source.name)
                    .await
                    .map_err(anyhow::Error::from)?
                    .ok_or_else(|| {
                        MountError::Retry(format!(
                            "MountVolume.SetUp failed for volume \"{}\" : configmap \"{}\" not found",
                            volume.name, source.name
                        ))
                    })?;
                let data = map.data.unwrap_or_default();
                for item in source.items.iter().flatten() {
                    let value = data.get(&item.key).cloned().unwrap_or_default();
                    std::fs::write(dir.join(&item.path), value)?;
                }
            }
            if let Some(downward) = &source.downward_api {
                for item in downward.items.iter().flatten() {
                    let value = match item.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                        Some("metadata.namespace") => namespace.to_owned(),
                        Some("metadata.name") => pod.name_any(),
                        other => {
                            return Err(MountError::Fatal(anyhow!(
                                "the test node does not project {other:?}"
                            )));
                        }
                    };
                    std::fs::write(dir.join(&item.path), value)?;
                }
            }
        }
        return Ok(true);
    }
    Err(MountError::Fatal(anyhow!(
        "the test node does not mount volume {:?}",
        volume.name
    )))
}

/// The container's environment as the kubelet makes it: `value` with
/// `$(VAR)` expanded against what is defined before it, `secretKeyRef`
/// (an optional one missing is left out), then the service variables.
pub(crate) async fn environment(
    client: &Client,
    api_port: u16,
    namespace: &str,
    pod: &Pod,
    container: &Container,
    image_env: &[(String, String)],
) -> Result<Result<Vec<(String, String)>, String>> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    // The image's own variables first (its PATH), as a runtime sets them.
    let mut env: Vec<(String, String)> = image_env.to_vec();
    env.extend([
        ("HOSTNAME".into(), pod.name_any()),
        ("HOME".into(), "/".into()),
        // The purge trusts the public roots compiled into the program; here
        // it is told to trust the CDN double's test CA too, through its
        // test-only variable (cli/src/purge.rs).
        (
            "CACHE_BUSTER_TEST_CA_FILE".into(),
            "/etc/ssl/certs/ca-certificates.crt".into(),
        ),
    ]);
    for var in container.env.iter().flatten() {
        if let Some(value) = &var.value {
            let defined: HashMap<String, String> = env.iter().cloned().collect();
            env.push((var.name.clone(), expand(value, &defined)));
            continue;
        }
        if let Some(field) = var
            .value_from
            .as_ref()
            .and_then(|from| from.field_ref.as_ref())
        {
            env.push((var.name.clone(), downward_field(pod, &field.field_path)?));
            continue;
        }
        let Some(reference) = var
            .value_from
            .as_ref()
            .and_then(|from| from.secret_key_ref.as_ref())
        else {
            if var.value_from.is_some() {
                bail!(
                    "the test node resolves only secretKeyRef, not {:?}",
                    var.value_from
                );
            }
            env.push((var.name.clone(), String::new()));
            continue;
        };
        let optional = reference.optional == Some(true);
        let secret = secrets.get_opt(&reference.name).await?;
        let value = match secret {
            None if optional => continue,
            None => return Ok(Err(format!("secret \"{}\" not found", reference.name))),
            Some(secret) => match secret.data.unwrap_or_default().get(&reference.key) {
                None if optional => continue,
                None => {
                    return Ok(Err(format!(
                        "couldn't find key {} in Secret {namespace}/{}",
                        reference.key, reference.name
                    )));
                }
                Some(value) => String::from_utf8_lossy(&value.0).into_owned(),
            },
        };
        env.push((var.name.clone(), value));
    }
    env.push(("KUBERNETES_SERVICE_HOST".into(), "127.0.0.1".into()));
    env.push(("KUBERNETES_SERVICE_PORT".into(), api_port.to_string()));
    env.push(("KUBERNETES_SERVICE_PORT_HTTPS".into(), api_port.to_string()));
    Ok(Ok(env))
}

/// A pod's field as the downward API gives it to a variable: its name,
/// namespace, uid, or one of its labels (`metadata.labels['key']`, empty
/// when it has no such label).
fn downward_field(pod: &Pod, path: &str) -> Result<String> {
    let metadata = &pod.metadata;
    if let Some(key) = path
        .strip_prefix("metadata.labels['")
        .and_then(|rest| rest.strip_suffix("']"))
    {
        return Ok(metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(key))
            .cloned()
            .unwrap_or_default());
    }
    Ok(match path {
        "metadata.name" => pod.name_any(),
        "metadata.namespace" => metadata.namespace.clone().unwrap_or_default(),
        "metadata.uid" => metadata.uid.clone().unwrap_or_default(),
        other => bail!("the test node does not give a variable {other:?}"),
    })
}

/// The kubelet's `$(VAR)` expansion: a defined variable is replaced, `$$`
/// is a `$`, anything else stays as written.
pub fn expand(text: &str, defined: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
            && let Some(value) = defined.get(&inner[..end])
        {
            out.push_str(value);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}
