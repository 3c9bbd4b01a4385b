//! `--content` (SPEC §9): what the purge sends for a site's content, and
//! what its outcome says of it. Two site images in the real registry
//! (docker-registry), compared by the program: exactly the changed pages
//! are purged. Where the images cannot be compared, the purge falls back to
//! the base URLs as prefixes, or to everything where a layer cannot purge
//! prefixes, and says why.

use super::*;
use cache_buster_e2e_cluster::ecr;
use cache_buster_e2e_cluster::registry::{self, TestRegistry};
use cache_buster_e2e_cluster::site_images::{LayerEntry, layer, nginx_base, push, push_to};
use cache_buster_e2e_cluster::tools::real_tools_required;

const HTML: &str = "usr/share/nginx/html";

/// The real registry on a free loopback port (`registry::start_registry`):
/// Debian's docker-registry, or REGISTRY. None, with the reason printed,
/// where it is not installed. `private`: TLS with its own CA, and one
/// account.
fn start_registry(dir: &Path, private: Option<(&Pki, &str, &str)>) -> Option<TestRegistry> {
    let program = std::env::var_os("REGISTRY").map(PathBuf::from).or_else(|| {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|dir| dir.join("docker-registry"))
            .find(|path| path.is_file())
    });
    let Some(program) = program else {
        assert!(
            !real_tools_required(),
            "docker-registry is missing (Debian: docker-registry)"
        );
        println!(
            "skipped: docker-registry is not installed (Debian: docker-registry, or set REGISTRY)"
        );
        return None;
    };
    Some(registry::start_registry(&program, dir, private).unwrap())
}

/// A Hugo-like blog in nginx: a base layer shared by every version (nginx's
/// files, its 50x page, a 2 MB library), then each version's site layer.
struct Blog {
    base: Vec<u8>,
    a: Vec<u8>,
    b: Vec<u8>,
}

fn blog() -> Blog {
    let base = nginx_base().unwrap();
    let file = |path: &str| format!("{HTML}/{path}");
    let (index, feed, hello, about) = (
        file("index.html"),
        file("index.xml"),
        file("posts/hello/index.html"),
        file("about.html"),
    );
    let a = layer(&[
        LayerEntry::File(&index, b"<a href=/posts/hello/>hello</a>"),
        LayerEntry::File(&feed, b"<rss>hello</rss>"),
        LayerEntry::File(&hello, b"<h1>hello</h1>"),
        LayerEntry::File(&about, b"<h1>about</h1>"),
    ])
    .unwrap();
    // B: one post added, the index and the feed changed, about.html left
    // out, the base's 50x page removed (a whiteout).
    let new_post = file("posts/new/index.html");
    let b = layer(&[
        LayerEntry::File(
            &index,
            b"<a href=/posts/new/>new</a><a href=/posts/hello/>hello</a>",
        ),
        LayerEntry::File(&feed, b"<rss>new hello</rss>"),
        LayerEntry::File(&hello, b"<h1>hello</h1>"),
        LayerEntry::File(&new_post, b"<h1>new</h1>"),
        LayerEntry::Whiteout(&file("50x.html")),
    ])
    .unwrap();
    Blog { base, a, b }
}

/// "466 B", "2.3 kB": as the outcome says the bytes downloaded.
fn downloaded(bytes: usize) -> String {
    match bytes {
        0..1_000 => format!("{bytes} B"),
        _ => format!("{:.1} kB", bytes as f64 / 1e3),
    }
}

#[tokio::test]
async fn a_content_purge_purges_exactly_the_pages_that_changed_between_the_images() {
    let setup = setup().await;
    let Some(running) = start_registry(setup.dir.path(), None) else {
        return;
    };
    let registry = &running.address;
    let blog = blog();
    let a = push(registry, "blog", "a", &[blog.base.clone(), blog.a.clone()])
        .await
        .unwrap();
    let b = push(registry, "blog", "b", &[blog.base.clone(), blog.b.clone()])
        .await
        .unwrap();
    let changed_pages = [
        "https://www.example.com/",
        "https://www.example.com/50x.html",
        // Left out of B's site layer: only the base could prove it gone.
        "https://www.example.com/about.html",
        "https://www.example.com/index.html",
        "https://www.example.com/index.xml",
        "https://www.example.com/posts/new/",
        "https://www.example.com/posts/new/index.html",
    ];

    for (previous, image, counts) in [
        // A post only in B's site layer might have been in the shared
        // base: not provably added, so counted as changed (and purged).
        (&a, &b, "0 added, 4 changed, 1 removed"),
        // The rollback B → A: what differs, the other way round.
        (&b, &a, "1 added, 4 changed, 0 removed"),
    ] {
        let before = setup.cdn.requests("api.cloudflare.com").len();
        let ran = setup
            .purge_cloudflare(&[
                "--url=https://www.example.com/feed.xml",
                "--content=/usr/share/nginx/html=https://www.example.com/",
                "--content-max-urls=500",
                &format!("--insecure-registry={registry}"),
                &format!("--image={image}"),
                &format!("--previous-image={previous}"),
            ])
            .await;
        assert!(ran.success, "{}", ran.output);
        let requests = setup.cdn.requests("api.cloudflare.com").split_off(before);
        let files: Vec<String> = bodies(&requests)
            .iter()
            .flat_map(|body| body["files"].as_array().cloned().unwrap_or_default())
            .map(|url| url.as_str().unwrap().to_owned())
            .collect();
        let mut expected: Vec<String> = changed_pages.iter().map(|url| (*url).to_owned()).collect();
        expected.insert(0, "https://www.example.com/feed.xml".to_owned());
        assert_eq!(files, expected, "{}", ran.output);
        // Whited out in B: had it been a directory, its files would be the
        // base's, unread. Purged as a prefix too (Cloudflare takes them).
        let prefixes: Vec<Value> = bodies(&requests)
            .into_iter()
            .filter_map(|body| body.get("prefixes").cloned())
            .collect();
        assert_eq!(
            prefixes,
            [json!(["www.example.com/50x.html/"])],
            "{}",
            ran.output
        );
        let line = ran.outcome["content"].as_str().unwrap().to_owned();
        let downloaded = downloaded(blog.a.len() + blog.b.len());
        assert!(
            line.starts_with(&format!("content: {registry}/blog@sha256:")),
            "{line}"
        );
        // The shared 2 MB base is never downloaded: the two site layers are.
        assert!(
            line.contains(&format!(
                "{counts}, {downloaded} downloaded; 7 URLs purged: https://www.example.com/ "
            )),
            "{line}"
        );
    }
}

#[tokio::test]
async fn an_image_the_registry_cannot_give_falls_back_and_says_which() {
    let setup = setup().await;
    let Some(running) = start_registry(setup.dir.path(), None) else {
        return;
    };
    let registry = &running.address;
    let blog = blog();
    let a = push(registry, "blog", "a", &[blog.base.clone(), blog.a.clone()])
        .await
        .unwrap();
    let ran = setup
        .purge_cloudflare(&[
            "--content=/usr/share/nginx/html=https://www.example.com/",
            &format!("--insecure-registry={registry}"),
            &format!("--image={registry}/blog:missing"),
            &format!("--previous-image={a}"),
        ])
        .await;
    assert!(ran.success, "{}", ran.output);
    assert_eq!(
        bodies(&setup.cdn.requests("api.cloudflare.com")),
        [json!({"prefixes": ["www.example.com/"]})]
    );
    let line = ran.outcome["content"].as_str().unwrap();
    assert!(
        line.starts_with(&format!(
            "content: fell back to the prefixes www.example.com/ (the images were not compared: \
             the manifest of {registry}/blog:missing cannot be read: "
        )),
        "{line}"
    );
}

/// A registry with a private CA and an account, as a company's is: read
/// with the CA of `--registry-ca-file` (setting `contentRegistryCA`) and
/// the Deployment's pull secret. A refused password, a CA not given, or a
/// CA file that is missing (its ConfigMap is not there) fall back, each
/// saying why; the password shows nowhere.
#[tokio::test]
async fn a_private_registry_is_read_with_its_ca_and_pull_secret_and_a_refusal_falls_back() {
    const USER: &str = "puller";
    const PASSWORD: &str = "registry-s3cret-9f2c";
    let setup = setup().await;
    // Its own CA: not the test CA the program trusts for the CDN double.
    let ca_dir = setup.dir.path().join("registry-pki");
    std::fs::create_dir_all(&ca_dir).unwrap();
    let registry_pki = Pki::new(&ca_dir).unwrap();
    let Some(running) = start_registry(setup.dir.path(), Some((&registry_pki, USER, PASSWORD)))
    else {
        return;
    };
    let registry = &running.address;
    let blog = blog();
    let mut pushed = Vec::new();
    for (tag, site) in [("a", &blog.a), ("b", &blog.b)] {
        let layers = [blog.base.clone(), site.clone()];
        pushed.push(
            push_to(registry, &running.access, "blog", tag, &layers)
                .await
                .unwrap(),
        );
    }
    let [a, b] = <[String; 2]>::try_from(pushed).unwrap();
    // The pull secret as the Job mounts it: one docker config JSON file.
    let pull_secrets = |name: &str, password: &str| {
        let dir = setup.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let config =
            json!({"auths": {registry.as_str(): {"username": USER, "password": password}}});
        std::fs::write(dir.join("00-pull.json"), config.to_string()).unwrap();
        format!("--pull-secrets={}", dir.display())
    };
    let (right, wrong) = (
        pull_secrets("right", PASSWORD),
        pull_secrets("wrong", "not-the-password"),
    );
    let ca = format!("--registry-ca-file={}", registry_pki.ca_file().display());
    let missing_ca = format!(
        "--registry-ca-file={}",
        setup.dir.path().join("no-configmap/ca.crt").display()
    );
    let fell_back =
        "content: fell back to the prefixes www.example.com/ (the images were not compared: ";
    // The image last purged is read first.
    let manifest = format!("the manifest of {a} cannot be read: ");
    let missing_file = setup.dir.path().join("no-configmap/ca.crt");

    // (case, flags, the outcome's line starts, and then holds)
    for (case, flags, starts, holds) in [
        (
            "its CA and its pull secret",
            [ca.as_str(), right.as_str()],
            format!("content: {registry}/blog@sha256:"),
            "0 added, 4 changed, 1 removed",
        ),
        (
            "a password it refuses",
            [ca.as_str(), wrong.as_str()],
            format!("{fell_back}{manifest}"),
            "Not authorized",
        ),
        (
            "no CA for its certificate",
            ["--content-max-urls=500", right.as_str()],
            format!("{fell_back}{manifest}"),
            "certificate",
        ),
        (
            "a CA file that is missing",
            [missing_ca.as_str(), right.as_str()],
            format!(
                "content: fell back to the prefixes www.example.com/ (the registries' CA file {} \
                 (setting contentRegistryCA) is missing: is the ConfigMap there?; expected PEM \
                 certificates, the ConfigMap's key mounted there)",
                missing_file.display()
            ),
            "",
        ),
    ] {
        let ran = setup
            .purge_cloudflare(&[
                "--content=/usr/share/nginx/html=https://www.example.com/",
                &format!("--image={b}"),
                &format!("--previous-image={a}"),
                flags[0],
                flags[1],
            ])
            .await;
        // A content purge never fails the Job: it falls back.
        assert!(ran.success, "{case}: {}", ran.output);
        let line = ran.outcome["content"].as_str().unwrap();
        assert!(line.starts_with(&starts), "{case}: {line}");
        assert!(line.contains(holds), "{case}: {holds:?} in {line}");
        for shown in [&ran.output, &ran.outcome.to_string(), &ran.message] {
            assert!(!shown.contains(PASSWORD), "{case}: the password in {shown}");
            assert!(!shown.contains("not-the-password"), "{case}: {shown}");
        }
    }
}

/// The blog's images A and B in a private registry (TLS with its own CA)
/// whose one account is `account`, standing for the cloud registry `name`:
/// the registry, the flags that compare B with A under that name, and the
/// variable that maps the name to the registry's address (test-only).
async fn in_cloud_registry(
    setup: &Setup,
    name: &str,
    account: (&str, &str),
) -> Option<(TestRegistry, Vec<String>, (&'static str, PathBuf))> {
    let pki_dir = setup.dir.path().join("registry-pki");
    std::fs::create_dir_all(&pki_dir).unwrap();
    let registry_pki = Pki::new(&pki_dir).unwrap();
    let running = start_registry(
        setup.dir.path(),
        Some((&registry_pki, account.0, account.1)),
    )?;
    let blog = blog();
    for (tag, site) in [("a", &blog.a), ("b", &blog.b)] {
        let layers = [blog.base.clone(), site.clone()];
        push_to(
            &running.address,
            &running.access,
            "shop/sites/blog",
            tag,
            &layers,
        )
        .await
        .unwrap();
    }
    let flags = vec![
        "--content=/usr/share/nginx/html=https://www.example.com/".to_owned(),
        format!("--image={name}/shop/sites/blog:b"),
        format!("--previous-image={name}/shop/sites/blog:a"),
        format!("--registry-ca-file={}", registry_pki.ca_file().display()),
    ];
    let alias = PathBuf::from(format!("{name}={}", running.address));
    Some((
        running,
        flags,
        ("CACHE_BUSTER_TEST_REGISTRY_ALIASES", alias),
    ))
}

/// `provider` and the content flags, as `purge_with` takes them.
fn with_provider<'a>(provider: &'a str, flags: &'a [String]) -> Vec<&'a str> {
    let mut args = vec![provider];
    args.extend(flags.iter().map(String::as_str));
    args
}

/// The line of a purge that read B and A with the Job's identity.
fn compared_in(ran: &Ran, registry: &str) {
    assert!(ran.success, "{}", ran.output);
    ran.reveals_nothing();
    let line = ran.outcome["content"].as_str().unwrap();
    assert!(
        line.starts_with(&format!("content: {registry}/shop/sites/blog@sha256:")),
        "{line}"
    );
    assert!(line.contains("0 added, 4 changed, 1 removed"), "{line}");
}

/// A site that purges Cloud CDN (layer gcp) reads its images from Artifact
/// Registry with the Job's Google identity, here GKE Workload Identity's
/// metadata server: its token is the password of user `oauth2accesstoken`,
/// as Google's registries take it; no pull secret. A site without the gcp
/// layer has no such identity: the registry refuses it, and it falls back.
#[tokio::test]
async fn an_artifact_registry_image_is_read_with_the_jobs_google_identity() {
    const ARTIFACT_REGISTRY: &str = "europe-docker.pkg.dev";
    let setup = setup().await;
    let account = ("oauth2accesstoken", google::METADATA_TOKEN);
    let Some((_registry, flags, alias)) =
        in_cloud_registry(&setup, ARTIFACT_REGISTRY, account).await
    else {
        return;
    };
    let metadata = google::MetadataServer::start().await.unwrap();
    let metadata_host = PathBuf::from(&metadata.host);
    let env = [
        ("GCE_METADATA_HOST", metadata_host.as_path()),
        (alias.0, alias.1.as_path()),
    ];
    let secret = super::gcp::gcp(&setup, "gcp-identity", None);
    let ran = setup
        .purge_with(&secret, &with_provider("--provider=gcp", &flags), &env)
        .await;
    compared_in(&ran, ARTIFACT_REGISTRY);

    let ran = setup
        .purge_with(
            &cloudflare(&setup),
            &with_provider("--provider=cloudflare", &flags),
            &env,
        )
        .await;
    assert!(ran.success, "{}", ran.output);
    let line = ran.outcome["content"].as_str().unwrap();
    assert!(
        line.starts_with(
            "content: fell back to the prefixes www.example.com/ (the images were not compared: \
             the manifest of europe-docker.pkg.dev/shop/sites/blog:a cannot be read: Not authorized"
        ),
        "{line}"
    );
}

/// A site that purges CloudFront reads its images from ECR with the Job's
/// AWS credentials (the Secret's keys here): ECR's GetAuthorizationToken,
/// signed for the registry's region, gives the password of user `AWS`.
#[tokio::test]
async fn an_ecr_image_is_read_with_the_jobs_aws_credentials() {
    let setup = setup().await;
    let account = (ecr::USER, ecr::PASSWORD);
    let Some((_registry, flags, alias)) = in_cloud_registry(&setup, ecr::REGISTRY, account).await
    else {
        return;
    };
    let secret = super::cloudfront(
        &setup,
        "cloudfront-keys",
        Some((aws::ACCESS_KEY_ID, aws::SECRET_ACCESS_KEY)),
    );
    let ran = setup
        .purge_with(
            &secret,
            &with_provider("--provider=cloudfront", &flags),
            &[(alias.0, alias.1.as_path())],
        )
        .await;
    compared_in(&ran, ecr::REGISTRY);
    let token_requests = setup.cdn.requests(ecr::API_HOST);
    assert_eq!(token_requests.len(), 1, "one token for both images");
    assert!(
        token_requests[0]
            .header("authorization")
            .is_some_and(|signature| signature.contains("/eu-west-1/ecr/aws4_request")),
        "{:?}",
        token_requests[0].header("authorization")
    );
}

/// A site that purges Azure Front Door reads its images from Azure
/// Container Registry with the Job's Entra ID token (the Secret's client
/// secret here), exchanged at the registry's `/oauth2/exchange` for the
/// refresh token that is the password of the null GUID.
#[tokio::test]
async fn an_acr_image_is_read_with_the_jobs_entra_id_token() {
    let setup = setup().await;
    let account = (azure_double::ACR_USER, azure_double::ACR_REFRESH_TOKEN);
    let Some((_registry, flags, alias)) =
        in_cloud_registry(&setup, azure_double::ACR_HOST, account).await
    else {
        return;
    };
    let secret = super::azure::azure(&setup, "azure-secret", Some(azure_double::CLIENT_SECRET));
    let ran = setup
        .purge_with(
            &secret,
            &with_provider("--provider=azure", &flags),
            &[(alias.0, alias.1.as_path())],
        )
        .await;
    compared_in(&ran, azure_double::ACR_HOST);
    let exchanges = setup.cdn.requests("/oauth2/exchange");
    assert_eq!(exchanges.len(), 1, "one exchange for both images");
    assert_eq!(exchanges[0].form()["service"], azure_double::ACR_HOST);
}

#[tokio::test]
async fn a_content_purge_falls_back_to_the_base_urls_as_prefixes_and_says_why() {
    let setup = setup().await;
    let ran = setup
        .purge_cloudflare(&[
            "--url=https://www.example.com/feed.xml",
            "--content=/usr/share/nginx/html=https://www.example.com/",
            "--content-max-urls=500",
        ])
        .await;
    assert!(ran.success, "{}", ran.output);
    assert_eq!(
        bodies(&setup.cdn.requests("api.cloudflare.com")),
        [
            json!({"files": ["https://www.example.com/feed.xml"]}),
            json!({"prefixes": ["www.example.com/"]})
        ]
    );
    assert_eq!(ran.outcome["purged"], json!(["1 URL", "1 prefix"]));
    // Outside a cluster, no Job says which image was purged last.
    assert!(
        ran.outcome["content"]
            .as_str()
            .unwrap()
            .starts_with("content: fell back to the prefixes www.example.com/ (the image last purged cannot be looked up: "),
        "{}",
        ran.outcome["content"]
    );
}

#[tokio::test]
async fn a_layer_without_prefixes_makes_the_fallback_everything() {
    let setup = setup().await;
    let secret = setup.secret(
        "layers",
        &[
            ("CLOUDFLARE_ZONE_ID", "zone-1"),
            ("CLOUDFLARE_API_TOKEN", CLOUDFLARE_TOKEN),
            ("FASTLY_SERVICE_ID", "service-1"),
            ("FASTLY_API_TOKEN", "fastly-token"),
        ],
    );
    let ran = setup
        .purge(
            &secret,
            &[
                "--provider=fastly,cloudflare",
                "--content=/srv=https://www.example.com/",
                "--warm",
            ],
        )
        .await;
    assert!(ran.success, "{}", ran.output);
    assert_eq!(
        bodies(&setup.cdn.requests("api.cloudflare.com")),
        [json!({"purge_everything": true})]
    );
    let fastly = setup.cdn.requests("api.fastly.com");
    assert_eq!(fastly.len(), 1, "{fastly:?}");
    assert!(fastly[0].path.ends_with("/purge_all"), "{}", fastly[0].path);
    let line = ran.outcome["content"].as_str().unwrap();
    assert!(
        line.starts_with(
            "content: fell back to everything (the image last purged cannot be looked up: "
        ),
        "{line}"
    );
    assert!(
        line.ends_with("; no page warmed: this release does not fetch pages yet"),
        "{line}"
    );
}

#[tokio::test]
async fn a_malformed_content_pair_is_refused_before_anything_is_sent() {
    let setup = setup().await;
    let ran = setup
        .purge_cloudflare(&["--content=html=https://www.example.com/"])
        .await;
    assert!(!ran.success);
    assert!(
        ran.output.contains("has a directory that is not absolute"),
        "{}",
        ran.output
    );
    assert!(setup.cdn.requests("api.cloudflare.com").is_empty());
}
