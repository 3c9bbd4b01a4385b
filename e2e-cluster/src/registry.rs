//! The real OCI registry (Debian's docker-registry) the tests push to: on
//! plain HTTP without accounts, as the cluster's registry serves the policy
//! and the images, or private: TLS with a certificate of its own CA and one
//! htpasswd account, as a company's registry is.

use crate::pki::Pki;
use crate::process::{Process, free_port};
use anyhow::{Context as _, Result};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A private registry's CA and its one account.
#[derive(Clone)]
pub struct Private {
    pub ca_pem: String,
    pub user: String,
    pub password: String,
}

/// How a client reaches the registry.
#[derive(Clone)]
pub enum Access {
    Http,
    Private(Private),
}

/// A running registry: its process, `127.0.0.1:<port>` and how it is reached.
pub struct TestRegistry {
    _process: Process,
    pub address: String,
    pub access: Access,
}

/// The registry's configuration file in `dir`, serving on `port`: plain
/// HTTP, or TLS with `pki`'s certificate for 127.0.0.1 and an htpasswd
/// account (docker-registry takes bcrypt hashes only, and accounts only
/// over TLS).
pub fn write_config(dir: &Path, port: u16, private: Option<(&Pki, &str, &str)>) -> Result<PathBuf> {
    let mut config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
        dir.join("registry").display()
    );
    if let Some((pki, user, password)) = private {
        let served = pki.serving("registry", &["127.0.0.1"])?;
        let htpasswd = dir.join("htpasswd");
        // The lowest cost bcrypt allows: the registry checks it per request.
        let hash = bcrypt::hash(password, 4).context("hashing the registry's password")?;
        std::fs::write(&htpasswd, format!("{user}:{hash}\n"))?;
        config.push_str(&format!(
            "  tls:\n    certificate: {}\n    key: {}\nauth:\n  htpasswd:\n    realm: test-registry\n    path: {}\n",
            served.cert.display(),
            served.key.display(),
            htpasswd.display()
        ));
    }
    let file = dir.join("registry.yml");
    std::fs::write(&file, config)?;
    Ok(file)
}

/// Starts `program` (docker-registry) in `dir`, as `write_config` says,
/// and waits until it listens.
pub fn start_registry(
    program: &Path,
    dir: &Path,
    private: Option<(&Pki, &str, &str)>,
) -> Result<TestRegistry> {
    let port = free_port()?;
    let config = write_config(dir, port, private)?;
    let mut process = Process::start(
        "registry",
        program,
        [OsStr::new("serve"), config.as_os_str()],
        &[],
        dir,
    )?;
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if !process.is_running() || started.elapsed() > Duration::from_secs(30) {
            return Err(process.failure("did not listen"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let access = match private {
        None => Access::Http,
        Some((pki, user, password)) => Access::Private(Private {
            ca_pem: pki.ca_pem.clone(),
            user: user.to_owned(),
            password: password.to_owned(),
        }),
    };
    Ok(TestRegistry {
        _process: process,
        address: format!("127.0.0.1:{port}"),
        access,
    })
}
