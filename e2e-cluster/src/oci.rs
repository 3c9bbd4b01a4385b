//! An OCI image as a container runtime reads it: from an image layout
//! (`index.json`, the manifest, the config, the layers as blobs), its
//! layers unpacked in order into a root file system, and what its config
//! says about running it (user, environment, entrypoint). The image tests
//! read `make image`'s layout with it; the test node the images it pulls.

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// What the image's config says about running it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunConfig {
    pub user: String,
    pub env: Vec<(String, String)>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub exposed_ports: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Image {
    /// `sha256:…` of the manifest: the image's digest.
    pub digest: String,
    pub config: RunConfig,
    /// The layer blobs, bottom first.
    pub layers: Vec<PathBuf>,
    /// Config and layers as stored (compressed): what a pull transfers.
    pub compressed_size: u64,
}

/// One entry of an unpacked layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Directory,
    Symlink,
    Other,
}

fn blob(layout: &Path, digest: &str) -> Result<PathBuf> {
    let (algorithm, hex) = digest
        .split_once(':')
        .ok_or_else(|| anyhow!("{digest:?} is not a digest"))?;
    ensure!(
        algorithm == "sha256" && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "{digest:?} is not a sha256 digest"
    );
    Ok(layout.join("blobs").join(algorithm).join(hex))
}

fn json(path: &Path) -> Result<Value> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("{} is not JSON", path.display()))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item.as_str().map(str::to_owned))
        .collect()
}

impl Image {
    /// The image of `layout` tagged `tag` (its `org.opencontainers.image.ref.name`),
    /// or its only image.
    pub fn open(layout: &Path, tag: Option<&str>) -> Result<Image> {
        let index = json(&layout.join("index.json"))?;
        let manifests = index["manifests"]
            .as_array()
            .ok_or_else(|| anyhow!("{}: no manifests", layout.display()))?;
        let chosen = match tag {
            Some(tag) => manifests
                .iter()
                .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
                .ok_or_else(|| anyhow!("{} has no image tagged {tag}", layout.display()))?,
            None => match manifests.as_slice() {
                [only] => only,
                _ => bail!(
                    "{} holds {} images: name one",
                    layout.display(),
                    manifests.len()
                ),
            },
        };
        let digest = chosen["digest"]
            .as_str()
            .ok_or_else(|| anyhow!("a manifest without digest"))?
            .to_owned();
        let manifest = json(&blob(layout, &digest)?)?;
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .ok_or_else(|| anyhow!("manifest {digest} has no config"))?;
        let config = json(&blob(layout, config_digest)?)?;
        let run = &config["config"];
        let env = strings(&run["Env"])
            .into_iter()
            .map(|pair| match pair.split_once('=') {
                Some((name, value)) => (name.to_owned(), value.to_owned()),
                None => (pair, String::new()),
            })
            .collect();
        let labels = run["Labels"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, value)| (name.clone(), value.as_str().unwrap_or_default().to_owned()))
            .collect();
        let mut compressed_size = manifest["config"]["size"].as_u64().unwrap_or(0);
        let mut layers = Vec::new();
        for layer in manifest["layers"].as_array().into_iter().flatten() {
            let media_type = layer["mediaType"].as_str().unwrap_or_default();
            ensure!(
                media_type.ends_with("tar+gzip") || media_type.ends_with(".tar.gzip"),
                "layer of media type {media_type:?}: only gzip tar layers are read"
            );
            compressed_size += layer["size"].as_u64().unwrap_or(0);
            layers.push(blob(layout, layer["digest"].as_str().unwrap_or_default())?);
        }
        Ok(Image {
            digest,
            config: RunConfig {
                user: run["User"].as_str().unwrap_or_default().to_owned(),
                env,
                entrypoint: strings(&run["Entrypoint"]),
                cmd: strings(&run["Cmd"]),
                labels,
                exposed_ports: run["ExposedPorts"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(port, _)| port.clone())
                    .collect(),
            },
            layers,
            compressed_size,
        })
    }

    /// Unpacks the layers, bottom first, into `root` (which it creates);
    /// the entries of every layer, in order. Whiteouts are applied.
    pub fn unpack(&self, root: &Path) -> Result<Vec<Entry>> {
        std::fs::create_dir_all(root)?;
        let mut entries = Vec::new();
        for layer in &self.layers {
            let file = std::fs::File::open(layer)?;
            let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
            archive.set_preserve_permissions(true);
            archive.set_unpack_xattrs(false);
            for entry in archive.entries()? {
                let mut entry = entry?;
                let path = entry.path()?.to_string_lossy().into_owned();
                let name = Path::new(&path)
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if let Some(hidden) = name.strip_prefix(".wh.") {
                    let parent = Path::new(&path).parent().unwrap_or(Path::new(""));
                    let _ = std::fs::remove_dir_all(root.join(parent).join(hidden));
                    let _ = std::fs::remove_file(root.join(parent).join(hidden));
                    continue;
                }
                let header = entry.header();
                let kind = match header.entry_type() {
                    tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
                    tar::EntryType::Directory => EntryKind::Directory,
                    tar::EntryType::Symlink => EntryKind::Symlink,
                    _ => EntryKind::Other,
                };
                entries.push(Entry {
                    path: path.trim_end_matches('/').to_owned(),
                    kind,
                    mode: header.mode()?,
                    uid: header.uid()?,
                });
                entry.unpack_in(root)?;
            }
        }
        Ok(entries)
    }

    /// The value of the config's variable `name`.
    pub fn env(&self, name: &str) -> Option<&str> {
        self.config
            .env
            .iter()
            .find(|(variable, _)| variable == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.config
            .labels
            .iter()
            .find(|(label, _)| label == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Where a runtime finds `command` in `root`: as given when it has a `/`,
/// else in the image's `PATH` (a runtime's default when it has none).
pub fn find_command(root: &Path, path_variable: Option<&str>, command: &str) -> Option<String> {
    if command.contains('/') {
        return Some(command.to_owned());
    }
    path_variable
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .split(':')
        .map(|dir| format!("{}/{command}", dir.trim_end_matches('/')))
        .find(|candidate| root.join(candidate.trim_start_matches('/')).is_file())
}

/// Whether the ELF file at `path` is static: it asks for no program
/// interpreter (no `PT_INTERP` header), so it runs without a libc in the image.
pub fn elf_is_static(path: &Path) -> Result<bool> {
    let bytes = std::fs::read(path)?;
    ensure!(
        bytes.starts_with(b"\x7fELF"),
        "{} is not ELF",
        path.display()
    );
    ensure!(
        bytes.get(4) == Some(&2),
        "{} is not a 64-bit ELF",
        path.display()
    );
    let little = bytes.get(5) == Some(&1);
    let number = |at: usize, width: usize| -> Result<u64> {
        let field = bytes
            .get(at..at + width)
            .ok_or_else(|| anyhow!("{} is cut short", path.display()))?;
        let mut value = 0u64;
        for (index, byte) in field.iter().enumerate() {
            let shift = if little { index } else { width - 1 - index } * 8;
            value |= u64::from(*byte) << shift;
        }
        Ok(value)
    };
    let table = usize::try_from(number(0x20, 8)?)?;
    let entry_size = usize::try_from(number(0x36, 2)?)?;
    let count = usize::try_from(number(0x38, 2)?)?;
    const PT_INTERP: u64 = 3;
    for index in 0..count {
        if number(table + index * entry_size, 4)? == PT_INTERP {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test programs here are dynamic; a static one has no interpreter.
    #[test]
    fn a_dynamic_program_is_told_from_a_static_one() {
        let this = std::env::current_exe().unwrap();
        // Built for the gnu target: the loader is its interpreter.
        assert!(!elf_is_static(&this).unwrap());
        assert!(!elf_is_static(Path::new("/bin/sh")).unwrap_or(false));
    }

    #[test]
    fn commands_are_found_on_the_images_path() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("usr/local/bin")).unwrap();
        std::fs::write(root.path().join("usr/local/bin/cache-buster"), "").unwrap();
        assert_eq!(
            find_command(root.path(), Some("/usr/local/bin"), "cache-buster").as_deref(),
            Some("/usr/local/bin/cache-buster")
        );
        assert_eq!(
            find_command(root.path(), Some("/bin"), "cache-buster"),
            None
        );
        assert_eq!(
            find_command(root.path(), None, "cache-buster").as_deref(),
            Some("/usr/local/bin/cache-buster")
        );
    }
}
