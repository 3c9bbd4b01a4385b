//! SPEC §9: the comparison of a content purge, from the registry. Reads the
//! manifests of the image last purged and the new one, then only the layers
//! they do not share (a rebuilt site layer over a shared base never reads
//! the base), and compares what each image's own layers make of the site's
//! directories.

use crate::content::ContentRoot;
use crate::image_diff::{Changes, Overlay, compare, shared_layers};
use crate::registry::{Registries, RegistryError, RegistryImage};
use std::sync::Arc;

/// What the comparison found, and what it cost.
#[derive(Debug, Clone)]
pub struct Compared {
    /// Both images, pinned by digest.
    pub old: String,
    pub new: String,
    pub changes: Changes,
    /// The compressed bytes of the layers read.
    pub downloaded: u64,
}

/// Whether a layer's path matters: under a site directory, or one of its
/// ancestors (whose removal or opaque replacement reaches the site).
pub fn wanted_paths(roots: &[ContentRoot]) -> Arc<dyn Fn(&str) -> bool + Send + Sync> {
    let dirs: Vec<String> = roots
        .iter()
        .map(|root| root.dir().trim_matches('/').to_owned())
        .collect();
    Arc::new(move |path: &str| {
        dirs.iter()
            .any(|dir| dir.is_empty() || under(path, dir) || path.is_empty() || under(dir, path))
    })
}

/// `path` is `dir` or below it.
fn under(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// An image's own layers (those after the shared ones), applied in order.
async fn overlay(
    registries: &Registries,
    image: &RegistryImage,
    shared: usize,
    wanted: &Arc<dyn Fn(&str) -> bool + Send + Sync>,
    downloaded: &mut u64,
) -> Result<Overlay, RegistryError> {
    let mut overlay = Overlay::default();
    for layer in image.layers.iter().skip(shared) {
        let changes = registries.read_layer(image, layer, wanted.clone()).await?;
        *downloaded += u64::try_from(layer.size).unwrap_or(0);
        overlay.apply(changes);
    }
    Ok(overlay)
}

/// Compares `old` (the image last purged) with `new` under `roots`.
pub async fn compare_images(
    registries: &Registries,
    old: &str,
    new: &str,
    roots: &[ContentRoot],
) -> Result<Compared, RegistryError> {
    let old = registries.image(old).await?;
    let new = registries.image(new).await?;
    let digests = |image: &RegistryImage| -> Vec<String> {
        image
            .layers
            .iter()
            .map(|layer| layer.digest.clone())
            .collect()
    };
    let shared = shared_layers(&digests(&old), &digests(&new));
    let wanted = wanted_paths(roots);
    let mut downloaded = 0;
    let old_overlay = overlay(registries, &old, shared, &wanted, &mut downloaded).await?;
    let new_overlay = overlay(registries, &new, shared, &wanted, &mut downloaded).await?;
    Ok(Compared {
        old: old.pinned(),
        new: new.pinned(),
        changes: compare(&old_overlay, &new_overlay),
        downloaded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_wanted_under_a_site_directory_or_above_it() {
        let roots = [ContentRoot::parse("/usr/share/nginx/html=https://www.example.com/").unwrap()];
        let wanted = wanted_paths(&roots);
        for path in [
            "usr/share/nginx/html",
            "usr/share/nginx/html/posts/index.html",
            "usr/share",
            "usr",
            "",
        ] {
            assert!(wanted(path), "{path}");
        }
        for path in [
            "usr/share/nginx/html2/index.html",
            "etc/nginx/nginx.conf",
            "usr/lib/libc.so",
        ] {
            assert!(!wanted(path), "{path}");
        }
    }
}
