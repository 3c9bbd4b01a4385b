//! The test cluster's certificates and keys, made fresh for each run: one CA
//! that signs the serving certificates of kube-apiserver, policy-server and
//! the CDN double, and the service-account signing key.

use anyhow::Result;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    pub ca_pem: String,
    pub dir: PathBuf,
}

/// A serving certificate and its key, as files.
pub struct ServingCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Result<Pki> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "cache-buster test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let ca_pem = ca.pem();
        std::fs::write(dir.join("ca.crt"), &ca_pem)?;
        Ok(Pki {
            ca,
            ca_pem,
            dir: dir.to_path_buf(),
        })
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A certificate for `names` (host names and IP addresses), signed by the CA.
    pub fn serving(&self, file_stem: &str, names: &[&str]) -> Result<ServingCert> {
        let mut params = CertificateParams::new(
            names
                .iter()
                .map(|name| (*name).to_owned())
                .collect::<Vec<_>>(),
        )?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("localhost"),
        );
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.ca)?;
        let served = ServingCert {
            cert: self.dir.join(format!("{file_stem}.crt")),
            key: self.dir.join(format!("{file_stem}.key")),
        };
        std::fs::write(&served.cert, cert.pem())?;
        std::fs::write(&served.key, key.serialize_pem())?;
        Ok(served)
    }

    /// The service-account token signing key pair: (private, public) files.
    pub fn service_account_keys(&self) -> Result<(PathBuf, PathBuf)> {
        let key = KeyPair::generate()?;
        let private = self.dir.join("sa.key");
        let public = self.dir.join("sa.pub");
        std::fs::write(&private, key.serialize_pem())?;
        std::fs::write(&public, key.public_key_pem())?;
        Ok((private, public))
    }
}
