//! SPEC §9's test images: a static site in layers, as a Hugo blog in nginx
//! is built (a base layer shared by every version, then the site's own
//! layer), pushed to the real registry the tests run (docker-registry).
//! The layers are real tar+gzip archives, whiteouts included, as the OCI
//! image spec writes them.

use crate::registry::Access;
use anyhow::{Context as _, Result};
use oci_client::client::{
    Certificate, CertificateEncoding, ClientConfig, ClientProtocol, Config, ImageLayer,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use std::io::Write as _;

/// One entry of a layer: a file with its content, or a whiteout of a path.
pub enum LayerEntry<'a> {
    File(&'a str, &'a [u8]),
    /// `.wh.<name>` in the path's directory: the path is removed.
    Whiteout(&'a str),
}

/// A gzip tar layer of these entries.
pub fn layer(entries: &[LayerEntry<'_>]) -> Result<Vec<u8>> {
    let gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut builder = tar::Builder::new(gzip);
    for entry in entries {
        let (path, content): (String, &[u8]) = match entry {
            LayerEntry::File(path, content) => ((*path).to_owned(), content),
            LayerEntry::Whiteout(path) => {
                let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
                (format!("{dir}/.wh.{name}"), b"")
            }
        };
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(content.len() as u64);
        builder.append_data(&mut header, &path, content)?;
    }
    let mut gzip = builder.into_inner()?;
    gzip.flush()?;
    Ok(gzip.finish()?)
}

/// The base every version of the test blog shares, as nginx's image would
/// be: its configuration, a 2 MB library (incompressible, so that reading it
/// would show in the bytes downloaded) and its 50x page under the site's
/// directory.
pub fn nginx_base() -> Result<Vec<u8>> {
    let library: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    layer(&[
        LayerEntry::File("etc/nginx/nginx.conf", b"events {}"),
        LayerEntry::File("usr/lib/libbase.so", &library),
        LayerEntry::File("usr/share/nginx/html/50x.html", b"<h1>error</h1>"),
    ])
}

/// Pushes an image of these layers (bottom first) to `registry` (plain
/// HTTP, as the cluster's registry serves) as `<repository>:<tag>`;
/// returns the image's reference.
pub async fn push(
    registry: &str,
    repository: &str,
    tag: &str,
    layers: &[Vec<u8>],
) -> Result<String> {
    push_to(registry, &Access::Http, repository, tag, layers).await
}

/// [`push`] to a registry reached as `access` says: over TLS with its CA
/// and its account, for a private one.
pub async fn push_to(
    registry: &str,
    access: &Access,
    repository: &str,
    tag: &str,
    layers: &[Vec<u8>],
) -> Result<String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (config, auth) = match access {
        Access::Http => (
            ClientConfig {
                protocol: ClientProtocol::Http,
                ..ClientConfig::default()
            },
            RegistryAuth::Anonymous,
        ),
        Access::Private(private) => (
            ClientConfig {
                protocol: ClientProtocol::Https,
                extra_root_certificates: vec![Certificate {
                    encoding: CertificateEncoding::Pem,
                    data: private.ca_pem.as_bytes().to_vec(),
                }],
                ..ClientConfig::default()
            },
            RegistryAuth::Basic(private.user.clone(), private.password.clone()),
        ),
    };
    let client = Client::try_from(config)?;
    let image = format!("{registry}/{repository}:{tag}");
    let reference: Reference = image.parse()?;
    let layers: Vec<ImageLayer> = layers
        .iter()
        .map(|layer| ImageLayer::oci_v1_gzip(layer.clone(), None))
        .collect();
    let config = Config::oci_v1(
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec(),
        None,
    );
    client
        .push(&reference, &layers, config, &auth, None)
        .await
        .with_context(|| format!("pushing {image}"))?;
    Ok(image)
}
