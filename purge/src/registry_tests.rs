use super::*;

#[test]
fn a_docker_config_gives_each_registrys_user_and_password() {
    let dir = tempfile::tempdir().unwrap();
    // `auth` (base64 of user:password), as `kubectl create secret
    // docker-registry` writes it; username and password, as some tools do.
    std::fs::write(
        dir.path().join("00-ghcr.json"),
        r#"{"auths":{"ghcr.io":{"auth":"Ym90OnMzY3JldA=="},"https://index.docker.io/v1/":{"username":"hub","password":"pw"}}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("01-other.json"),
        r#"{"auths":{"ghcr.io":{"username":"second","password":"ignored"}}}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("02-broken.json"), "not json").unwrap();
    let credentials = read_pull_secrets(dir.path());
    assert_eq!(
        credentials.get("ghcr.io"),
        Some(&("bot".to_owned(), "s3cret".to_owned()))
    );
    assert_eq!(
        credentials.get("docker.io"),
        Some(&("hub".to_owned(), "pw".to_owned()))
    );
    assert_eq!(credentials.len(), 2);
}

#[test]
fn no_mounted_secrets_is_anonymous() {
    assert!(read_pull_secrets(Path::new("/nonexistent/cache-buster")).is_empty());
}

#[test]
fn a_layer_is_read_by_its_media_type() {
    for (media_type, expected) in [
        (
            "application/vnd.oci.image.layer.v1.tar+gzip",
            Some(Compression::Gzip),
        ),
        (
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            Some(Compression::Gzip),
        ),
        (
            "application/vnd.oci.image.layer.v1.tar",
            Some(Compression::None),
        ),
        ("application/vnd.oci.image.layer.v1.tar+zstd", None),
        ("application/vnd.oci.image.config.v1+json", None),
    ] {
        assert_eq!(compression_of(media_type), expected, "{media_type}");
    }
}

#[test]
fn docker_hubs_names_are_one_registry() {
    for key in [
        "https://index.docker.io/v1/",
        "docker.io",
        "registry-1.docker.io",
    ] {
        assert_eq!(config_host(key), "docker.io", "{key}");
    }
    assert_eq!(config_host("registry.local:5000"), "registry.local:5000");
}
