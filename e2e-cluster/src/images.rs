//! The test node's images, as a kubelet's runtime keeps them: an image is
//! pulled from its registry by the reference a pod names (skopeo, the
//! registry's own HTTP API), once per reference; unpacked once per digest;
//! and each container gets a root of its own, hard links to the unpacked
//! files, where its mount points are made.

use crate::oci::{Image, find_command};
use anyhow::{Context as _, Result, bail};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An image pulled and unpacked.
#[derive(Debug)]
pub struct Pulled {
    pub reference: String,
    pub image: Image,
    pub rootfs: PathBuf,
}

impl Pulled {
    /// The host path of the entrypoint's program in the unpacked root.
    pub fn entrypoint_program(&self) -> Result<PathBuf> {
        let name = self
            .image
            .config
            .entrypoint
            .first()
            .with_context(|| format!("image {} has no entrypoint", self.reference))?;
        let inside = find_command(&self.rootfs, self.image.env("PATH"), name)
            .with_context(|| format!("image {}: {name:?} is not on its PATH", self.reference))?;
        Ok(self.rootfs.join(inside.trim_start_matches('/')))
    }

    /// A root for one container at `root`: every directory made, every file
    /// a hard link to the unpacked one (a copy where a link cannot be).
    pub fn container_root(&self, root: &Path) -> Result<()> {
        link_tree(&self.rootfs, root)
    }
}

fn link_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            link_tree(&source, &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&source)?, &target)?;
        } else if std::fs::hard_link(&source, &target).is_err() {
            std::fs::copy(&source, &target)?;
        }
    }
    Ok(())
}

pub struct ImageStore {
    skopeo: PathBuf,
    dir: PathBuf,
    pulled: tokio::sync::Mutex<HashMap<String, Arc<Pulled>>>,
}

impl ImageStore {
    pub fn new(skopeo: PathBuf, dir: PathBuf) -> ImageStore {
        ImageStore {
            skopeo,
            dir,
            pulled: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// `reference` (a plain-HTTP registry on loopback, as the tests run
    /// theirs), pulled once and unpacked once per digest.
    pub async fn pull(&self, reference: &str) -> Result<Arc<Pulled>> {
        let mut pulled = self.pulled.lock().await;
        if let Some(known) = pulled.get(reference) {
            return Ok(known.clone());
        }
        let name: String = reference
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let layout = self.dir.join("layouts").join(name);
        let _ = std::fs::remove_dir_all(&layout);
        std::fs::create_dir_all(&layout)?;
        let output = tokio::process::Command::new(&self.skopeo)
            .args([
                "--insecure-policy",
                "copy",
                "--quiet",
                "--src-tls-verify=false",
            ])
            .arg(format!("docker://{reference}"))
            .arg(format!("oci:{}:pulled", layout.display()))
            .output()
            .await
            .with_context(|| format!("running {}", self.skopeo.display()))?;
        if !output.status.success() {
            bail!(
                "pulling {reference}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let image = Image::open(&layout, Some("pulled"))?;
        let hex = image.digest.trim_start_matches("sha256:");
        let rootfs = self.dir.join("rootfs").join(hex);
        if !rootfs.exists() {
            let unpacking = self.dir.join("rootfs").join(format!("{hex}.unpacking"));
            let _ = std::fs::remove_dir_all(&unpacking);
            image.unpack(&unpacking)?;
            std::fs::rename(&unpacking, &rootfs)?;
        }
        let known = Arc::new(Pulled {
            reference: reference.to_owned(),
            image,
            rootfs,
        });
        pulled.insert(reference.to_owned(), known.clone());
        Ok(known)
    }
}

/// Pushes the image of an OCI layout to a plain-HTTP registry on loopback,
/// as `reference`.
pub fn push(skopeo: &Path, layout: &Path, tag: &str, reference: &str) -> Result<()> {
    let output = std::process::Command::new(skopeo)
        .args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
        ])
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{reference}"))
        .output()
        .with_context(|| format!("running {}", skopeo.display()))?;
    if !output.status.success() {
        bail!(
            "pushing {} to {reference}: {}",
            layout.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}
