//! One image layer read for the content purge (SPEC §9): its whiteouts,
//! opaque directories and files under the site's directories, as the OCI
//! image spec's layer rules name them. File contents are hashed, not kept;
//! entries outside the directories are skipped unread.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;

/// What a path holds after a layer: a regular file (its content's
/// SHA-256), a symbolic link (its target, never followed), or a hard link
/// to a file outside this layer, whose content this layer does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    File([u8; 32]),
    Symlink(String),
    /// Never proven equal to anything: such a path is always purged.
    Unknown,
}

/// One layer's changes, paths relative to the root without `./` or `/`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerChanges {
    /// `.wh.<name>`: `<name>` is removed from the layers below.
    pub whiteouts: Vec<String>,
    /// `.wh..wh..opq`: the directory's content in the layers below is hidden.
    pub opaque: Vec<String>,
    /// The layer's own files and links (directories are not kept).
    pub entries: BTreeMap<String, Entry>,
}

/// How a layer's tar is compressed (its media type says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayerError {
    #[error("the layer is not a tar archive: {0}")]
    NotATar(String),
    #[error("the layer has an entry whose path holds ..: {0:?}")]
    DotDot(String),
}

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Reads a layer. `wanted(path)` says whether a path (of an entry, or of a
/// whiteout's target) matters: under a site directory, or one of its
/// ancestors (whose removal removes the directory).
pub fn read_layer(
    blob: impl Read,
    compression: Compression,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<LayerChanges, LayerError> {
    match compression {
        Compression::None => read_tar(blob, wanted),
        Compression::Gzip => read_tar(flate2::read::GzDecoder::new(blob), wanted),
    }
}

fn read_tar(tar: impl Read, wanted: &dyn Fn(&str) -> bool) -> Result<LayerChanges, LayerError> {
    let not_a_tar = |error: std::io::Error| LayerError::NotATar(error.to_string());
    let mut archive = tar::Archive::new(tar);
    let mut changes = LayerChanges::default();
    for entry in archive.entries().map_err(not_a_tar)? {
        let mut entry = entry.map_err(not_a_tar)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = normalized(&raw)?;
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", &path));
        if name == OPAQUE {
            if wanted(parent) {
                changes.opaque.push(parent.to_owned());
            }
            continue;
        }
        if let Some(removed) = name.strip_prefix(WHITEOUT) {
            let removed = join(parent, removed);
            if wanted(&removed) {
                changes.whiteouts.push(removed);
            }
            continue;
        }
        if !wanted(&path) {
            continue;
        }
        let header = entry.header();
        let kind = header.entry_type();
        let found = if kind.is_file() || kind == tar::EntryType::Continuous {
            Entry::File(content_hash(&mut entry).map_err(not_a_tar)?)
        } else if kind.is_symlink() {
            let target = entry.link_name_bytes().unwrap_or_default();
            Entry::Symlink(String::from_utf8_lossy(&target).into_owned())
        } else if kind.is_hard_link() {
            // A hard link is the file it links to: in this layer, its content.
            let target = entry.link_name_bytes().unwrap_or_default();
            let target = normalized(&String::from_utf8_lossy(&target))?;
            changes
                .entries
                .get(&target)
                .cloned()
                .unwrap_or(Entry::Unknown)
        } else {
            // Directories, devices, FIFOs: no page.
            changes.entries.remove(&path);
            continue;
        };
        changes.entries.insert(path, found);
    }
    Ok(changes)
}

fn content_hash(content: &mut impl Read) -> std::io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match content.read(&mut buffer)? {
            0 => return Ok(hasher.finalize().into()),
            read => hasher.update(buffer.get(..read).unwrap_or_default()),
        }
    }
}

/// `./usr/share/` → `usr/share`; a `..` component is refused.
fn normalized(raw: &str) -> Result<String, LayerError> {
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(LayerError::DotDot(raw.to_owned())),
            part => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

fn join(parent: &str, name: &str) -> String {
    match parent {
        "" => name.to_owned(),
        parent => [parent, "/", name].concat(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A layer's tar, from (path, content) pairs: `->target` makes a
    /// symbolic link, `=>target` a hard link, a path ending in `/` a
    /// directory.
    pub(crate) fn tar_of(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, content) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o644);
            if let Some(target) = content.strip_prefix("->") {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder.append_link(&mut header, path, target).unwrap();
            } else if let Some(target) = content.strip_prefix("=>") {
                header.set_entry_type(tar::EntryType::Link);
                header.set_size(0);
                builder.append_link(&mut header, path, target).unwrap();
            } else if path.ends_with('/') {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                builder.append_data(&mut header, path, &[][..]).unwrap();
            } else {
                header.set_size(content.len() as u64);
                builder
                    .append_data(&mut header, path, content.as_bytes())
                    .unwrap();
            }
        }
        builder.into_inner().unwrap()
    }

    fn under_html(path: &str) -> bool {
        let dir = "usr/share/nginx/html";
        path == dir || path.starts_with("usr/share/nginx/html/") || dir.starts_with(path)
    }

    fn sha(content: &str) -> Entry {
        Entry::File(Sha256::digest(content.as_bytes()).into())
    }

    #[test]
    fn files_links_and_whiteouts_under_the_directory_are_read_the_rest_skipped() {
        let layer = tar_of(&[
            ("etc/nginx/nginx.conf", "worker_processes 1;"),
            ("./usr/share/nginx/html/", ""),
            ("./usr/share/nginx/html/index.html", "<h1>home</h1>"),
            ("usr/share/nginx/html/latest", "->posts/new/"),
            (
                "usr/share/nginx/html/copy.html",
                "=>usr/share/nginx/html/index.html",
            ),
            ("usr/share/nginx/html/posts/.wh.old", ""),
            ("usr/share/nginx/html/tags/.wh..wh..opq", ""),
            ("var/log/.wh.nginx", ""),
        ]);
        let changes = read_layer(&layer[..], Compression::None, &under_html).unwrap();
        assert_eq!(changes.whiteouts, ["usr/share/nginx/html/posts/old"]);
        assert_eq!(changes.opaque, ["usr/share/nginx/html/tags"]);
        assert_eq!(
            changes.entries,
            BTreeMap::from([
                (
                    "usr/share/nginx/html/copy.html".to_owned(),
                    sha("<h1>home</h1>")
                ),
                (
                    "usr/share/nginx/html/index.html".to_owned(),
                    sha("<h1>home</h1>")
                ),
                (
                    "usr/share/nginx/html/latest".to_owned(),
                    Entry::Symlink("posts/new/".to_owned())
                ),
            ])
        );
    }

    #[test]
    fn a_gzip_layer_reads_as_its_tar() {
        use std::io::Write;
        let tar = tar_of(&[("usr/share/nginx/html/a.html", "a")]);
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(&tar).unwrap();
        let gzip = gzip.finish().unwrap();
        let changes = read_layer(&gzip[..], Compression::Gzip, &under_html).unwrap();
        assert_eq!(
            changes.entries,
            BTreeMap::from([("usr/share/nginx/html/a.html".to_owned(), sha("a"))])
        );
    }

    #[test]
    fn a_path_with_dot_dot_or_a_blob_that_is_no_tar_is_refused() {
        let mut bad = tar_of(&[("usr/share/nginx/html/a.html", "a")]);
        // The header's name field, rewritten past the tar crate's own check
        // (a registry serves whatever a builder wrote).
        bad[..100].fill(0);
        bad[..7].copy_from_slice(b"../../x");
        let mut header = tar::Header::from_byte_slice(&bad[..512]).clone();
        header.set_cksum();
        bad[..512].copy_from_slice(header.as_bytes());
        assert_eq!(
            read_layer(&bad[..], Compression::None, &under_html),
            Err(LayerError::DotDot("../../x".to_owned()))
        );
        let gzip_garbage = b"\x1f\x8b not really gzip";
        assert!(matches!(
            read_layer(&gzip_garbage[..], Compression::Gzip, &under_html),
            Err(LayerError::NotATar(_))
        ));
    }
}
