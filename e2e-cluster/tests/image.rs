//! The image of `make image` (cli/Containerfile), as users get it: its
//! OCI layout unpacked as a runtime unpacks it, and its program run from
//! that root file system in bubblewrap, read-only, as the image's user,
//! with no network but what the CDN double needs. `make image-tests` runs
//! it with IMAGE_LAYOUT; it fails on an image that is missing, holds more
//! than the program, a program that needs a libc, or a wrong entrypoint,
//! user or label.

use cache_buster_e2e_cluster::cdn::CdnDouble;
use cache_buster_e2e_cluster::oci::{EntryKind, Image, elf_is_static, find_command};
use cache_buster_e2e_cluster::pki::Pki;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));
const PROGRAM: &str = "/usr/local/bin/cache-buster";
/// SPEC §4 and the target: the compressed image at most 12 MiB.
const MAX_COMPRESSED: u64 = 12 * 1024 * 1024;

fn layout() -> PathBuf {
    layout_of("IMAGE_LAYOUT")
}

/// The layout a variable names: IMAGE_LAYOUT (the released image) or
/// TEST_HOOKS_LAYOUT (the tests' variant, whose program reads the CDN
/// double's CA and address).
fn layout_of(variable: &str) -> PathBuf {
    let layout = std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!("{variable}: an OCI layout of `make image` (make image-tests sets it)")
        });
    assert!(
        layout.join("index.json").is_file(),
        "{} holds no OCI layout: run `make image`",
        layout.display()
    );
    layout
}

fn image() -> Image {
    Image::open(&layout(), Some(VERSION)).unwrap()
}

fn image_with_test_hooks() -> Image {
    Image::open(&layout_of("TEST_HOOKS_LAYOUT"), Some(VERSION)).unwrap()
}

/// The image unpacked into a fresh root of its own (a sandbox makes its
/// mount points in it).
fn unpacked(image: &Image) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    image.unpack(&root).unwrap();
    (dir, root)
}

/// The image's entrypoint with `args`, run as a runtime would: from its
/// root, read-only, as its user, with its environment, in new user, PID,
/// IPC, UTS, cgroup and network namespaces (the network shared only when
/// asked); `binds` are (host path, path inside, writable).
fn run(
    image: &Image,
    root: &Path,
    args: &[&str],
    binds: &[(&Path, &str, bool)],
    network: bool,
) -> (i32, String) {
    let (uid, gid) = image
        .config
        .user
        .split_once(':')
        .unwrap_or((&image.config.user, &image.config.user));
    let entrypoint = &image.config.entrypoint;
    let program = find_command(root, image.env("PATH"), &entrypoint[0])
        .unwrap_or_else(|| panic!("{:?} is not on the image's PATH", entrypoint[0]));
    let mut command = Command::new("bwrap");
    command
        .arg("--bind")
        .arg(root)
        .arg("/")
        .args(["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]);
    for (host, inside, writable) in binds {
        command
            .arg(if *writable { "--bind" } else { "--ro-bind" })
            .arg(host)
            .arg(inside);
    }
    command.args(["--remount-ro", "/", "--unshare-all"]);
    if network {
        command.arg("--share-net");
    }
    command
        .args([
            "--uid",
            uid,
            "--gid",
            gid,
            "--cap-drop",
            "ALL",
            "--die-with-parent",
        ])
        .arg("--clearenv");
    for (name, value) in &image.config.env {
        command.args(["--setenv", name, value]);
    }
    command
        .arg("--")
        .arg(program)
        .args(&entrypoint[1..])
        .args(args);
    let output = command
        .output()
        .expect("bwrap runs (scripts/setup.sh --tests installs it)");
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[test]
fn the_image_holds_one_static_program_and_nothing_else() {
    let image = image();
    let (_dir, root) = unpacked(&image);
    let entries = image
        .unpack(&tempfile::tempdir().unwrap().path().join("again"))
        .unwrap();
    let files: Vec<&str> = entries
        .iter()
        .filter(|entry| entry.kind != EntryKind::Directory)
        .map(|entry| entry.path.as_str())
        .collect();
    assert_eq!(files, [PROGRAM.trim_start_matches('/')], "{entries:#?}");
    let program = entries
        .iter()
        .find(|entry| entry.kind == EntryKind::File)
        .unwrap();
    assert_eq!(program.mode & 0o777, 0o755);
    assert_eq!(program.uid, 0, "owned by root: user 65532 cannot change it");
    assert!(
        elf_is_static(&root.join(PROGRAM.trim_start_matches('/'))).unwrap(),
        "the program asks for a program interpreter: it needs a libc the image lacks"
    );
}

#[test]
fn the_config_is_what_users_and_the_job_rely_on() {
    let image = image();
    assert_eq!(image.config.user, "65532:65532");
    assert_eq!(image.config.entrypoint, ["cache-buster"]);
    assert!(image.config.cmd.is_empty(), "{:?}", image.config.cmd);
    assert_eq!(image.config.exposed_ports, ["8080/tcp"]);
    let (_dir, root) = unpacked(&image);
    // The Job's containers run `command: [cache-buster]`: on the image's PATH.
    assert_eq!(
        find_command(&root, image.env("PATH"), "cache-buster").as_deref(),
        Some(PROGRAM)
    );
    assert_eq!(
        image.label("org.opencontainers.image.source"),
        Some("https://github.com/cache-buster/cache-buster-policy")
    );
    assert_eq!(
        image.label("org.opencontainers.image.version"),
        Some(VERSION)
    );
    assert_eq!(
        image.label("org.opencontainers.image.licenses"),
        Some("Apache-2.0")
    );
    let revision = image
        .label("org.opencontainers.image.revision")
        .unwrap_or_default();
    assert!(
        revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit()),
        "revision {revision:?}"
    );
    assert!(
        image.compressed_size <= MAX_COMPRESSED,
        "{} bytes compressed, more than 12 MiB",
        image.compressed_size
    );
    // The policy's default is this very image and version.
    let settings = cache_buster::settings::Settings::default();
    assert_eq!(
        settings.image,
        format!("ghcr.io/cache-buster/cache-buster:{VERSION}")
    );
}

#[test]
fn each_subcommand_answers_from_the_image_without_a_network() {
    let image = image();
    let (_dir, root) = unpacked(&image);
    for (subcommand, said) in [
        ("launcher", "Usage: cache-buster launcher [OPTIONS]"),
        ("wait-rollout", "Usage: cache-buster wait-rollout [OPTIONS]"),
        ("purge", "Usage: cache-buster purge [OPTIONS]"),
    ] {
        let (code, output) = run(&image, &root, &[subcommand, "--help"], &[], false);
        assert_eq!(code, 0, "{subcommand}: {output}");
        assert!(output.contains(said), "{subcommand}: {output}");
    }
    let (code, output) = run(&image, &root, &["--version"], &[], false);
    assert_eq!(code, 0, "{output}");
    assert_eq!(
        output.trim(),
        format!("cache-buster {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_dry_run_writes_its_outcome_from_a_read_only_root() {
    let image = image();
    let (dir, root) = unpacked(&image);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let (code, output) = run(
        &image,
        &root,
        &[
            "purge",
            "--provider=cloudflare",
            "--secret=cache-buster-credentials",
            "--dry-run",
            "--url=https://shop.example.com/",
            "--termination-log=/out/termination-log",
        ],
        &[(&out, "/out", true)],
        false,
    );
    assert_eq!(code, 0, "{output}");
    let outcome: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("termination-log")).unwrap())
            .unwrap();
    assert_eq!(outcome["result"], "dry-run");
    assert_eq!(
        outcome["wouldSend"],
        json!([
            "POST https://api.cloudflare.com/client/v4/zones/<CLOUDFLARE_ZONE_ID>/purge_cache \
             (Authorization: Bearer <CLOUDFLARE_API_TOKEN>) {\"files\":[\"https://shop.example.com/\"]}"
        ])
    );
    // Nothing else is writable: the program cannot leave anything behind.
    let (code, output) = run(
        &image,
        &root,
        &[
            "purge",
            "--provider=cloudflare",
            "--secret=x",
            "--dry-run",
            "--url=https://a.example/",
            "--termination-log=/usr/local/bin/log",
        ],
        &[],
        false,
    );
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("cannot write the outcome to /usr/local/bin/log"),
        "{output}"
    );
}

/// The image's purge, told by the tests' variables to trust the double's
/// CA and connect to it: the tests' variant does; the released image's
/// program has no such variables, and reaches no double.
#[tokio::test]
async fn the_purge_from_the_image_reaches_the_cdn_double() {
    let (code, output, requests) = purge_with_test_variables(image_with_test_hooks()).await;
    assert_eq!(code, 0, "{output}");
    assert_eq!(requests, 1, "{output}");
}

#[tokio::test]
async fn the_released_image_ignores_the_test_hooks() {
    let image = image();
    let (_dir, root) = unpacked(&image);
    let program = std::fs::read(root.join(PROGRAM.trim_start_matches('/'))).unwrap();
    for variable in [
        "CACHE_BUSTER_TEST_CA_FILE",
        "CACHE_BUSTER_TEST_CONNECT_TO",
        "CACHE_BUSTER_TEST_REGISTRY_ALIASES",
    ] {
        assert!(
            !program
                .windows(variable.len())
                .any(|window| window == variable.as_bytes()),
            "the released program knows {variable}"
        );
    }
    let (code, output, requests) = purge_with_test_variables(image).await;
    assert_ne!(code, 0, "{output}");
    assert_eq!(requests, 0, "{output}");
}

/// Runs a Cloudflare purge from `image` with the test variables set to
/// the CDN double: exit code, output, and the requests the double got.
async fn purge_with_test_variables(image: Image) -> (i32, String, usize) {
    let (dir, root) = unpacked(&image);
    let pki = Pki::new(dir.path()).unwrap();
    let cdn = CdnDouble::start(&pki, 0).await.unwrap();
    let secret = dir.path().join("secret");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("CLOUDFLARE_ZONE_ID"), "zone-image\n").unwrap();
    std::fs::write(secret.join("CLOUDFLARE_API_TOKEN"), "cf-token-image-9d2e\n").unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let image_with_test_network = Image {
        config: cache_buster_e2e_cluster::oci::RunConfig {
            env: [
                image.config.env.clone(),
                vec![
                    ("CACHE_BUSTER_TEST_CA_FILE".into(), "/ca.crt".into()),
                    (
                        "CACHE_BUSTER_TEST_CONNECT_TO".into(),
                        cdn.address.to_string(),
                    ),
                ],
            ]
            .concat(),
            ..image.config.clone()
        },
        ..image.clone()
    };
    let run_purge = {
        let (root, secret, out) = (root.clone(), secret.clone(), out.clone());
        let ca = pki.ca_file();
        tokio::task::spawn_blocking(move || {
            run(
                &image_with_test_network,
                &root,
                &[
                    "purge",
                    "--provider=cloudflare",
                    "--secret=cache-buster-credentials",
                    "--url=https://shop.example.com/",
                    "--termination-log=/out/termination-log",
                    "--budget-seconds=5",
                ],
                &[
                    (&secret, "/var/run/secrets/cache-buster", false),
                    (&ca, "/ca.crt", false),
                    (&out, "/out", true),
                ],
                true,
            )
        })
    };
    let (code, output) = run_purge.await.unwrap();
    let seen = cdn.requests("/client/v4/zones/zone-image/purge_cache");
    if code != 0 {
        return (code, output, seen.len());
    }
    assert_eq!(seen.len(), 1, "{output}");
    assert_eq!(
        seen[0].header("authorization"),
        Some("Bearer cf-token-image-9d2e")
    );
    let outcome: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("termination-log")).unwrap())
            .unwrap();
    assert_eq!(outcome["result"], "purged");
    assert_eq!(outcome["purged"], json!(["1 URL"]));
    assert!(!output.contains("cf-token-image-9d2e"), "{output}");
    (code, output, seen.len())
}
