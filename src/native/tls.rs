//! What the native host's TLS clients trust: Mozilla's root certificates (compiled in, so a
//! container with no system store behaves like any other machine), plus, per upstream, an
//! optional PEM file of extra CA certificates (`origin_ca_file`, `redis_ca_file`) for
//! private CAs. Certificates are always verified, with the host name checked; there is no
//! way to turn that off. Everything here runs on rustls with the ring provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use rustls::client::ClientConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

/// The crypto provider of every TLS client here.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process-wide rustls provider, for clients that take the default (redis-rs
/// builds its own `ClientConfig`). Harmless when one is installed already.
pub fn install_default_provider() {
    if CryptoProvider::get_default().is_none() {
        // Losing a race to another thread installing one is fine: there is one either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A PEM file of CA certificates, read and checked at start.
#[derive(Clone)]
pub struct CaFile {
    path: PathBuf,
    certs: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for CaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaFile")
            .field("path", &self.path)
            .field("certificates", &self.certs.len())
            .finish()
    }
}

impl CaFile {
    /// Reads `path`: at least one `CERTIFICATE` section, each one usable as a trust anchor
    /// (other sections, such as a key, are ignored). The error says what is wrong and where,
    /// for the caller to prefix with the field's name.
    pub fn load(path: &Path) -> Result<CaFile, String> {
        let shown = path.display();
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        let certs = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{shown} is not valid PEM: {e}"))?;
        if certs.is_empty() {
            return Err(format!(
                "{shown} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
            ));
        }
        let mut check = RootCertStore::empty();
        for (i, cert) in certs.iter().enumerate() {
            check.add(cert.clone()).map_err(|e| {
                format!(
                    "certificate {} of {shown} is not a usable CA certificate: {e}",
                    i + 1
                )
            })?;
        }
        Ok(CaFile {
            path: path.to_path_buf(),
            certs,
        })
    }

    /// Where it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many certificates it holds.
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// Never true for a loaded file (loading refuses one without certificates).
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }
}

/// The CA files `edgecache serve` was configured with, one per upstream.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    /// Extra CAs for an `https://` origin.
    pub origin: Option<CaFile>,
    /// Extra CAs for a `rediss://` shared tier.
    pub redis: Option<CaFile>,
}

/// Mozilla's roots, plus the certificates of `extra`.
fn roots(extra: Option<&CaFile>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(file) = extra {
        for cert in &file.certs {
            // Checked by `CaFile::load`; kept as an error, never a panic.
            store
                .add(cert.clone())
                .map_err(|e| format!("{}: {e}", file.path.display()))?;
        }
    }
    Ok(store)
}

/// The client configuration for an `https://` origin: TLS 1.2 or 1.3, ALPN `http/1.1`, the
/// server's certificate verified against Mozilla's roots and `extra`, and against the
/// origin's host name (sent as SNI unless it is an IP address, which the certificate must
/// then name).
pub fn origin_client_config(extra: Option<&CaFile>) -> Result<ClientConfig, String> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .with_root_certificates(roots(extra)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The roots for a `rediss://` tier with a CA file, as the PEM text redis-rs takes: the
/// file's certificates and then Mozilla's (redis-rs uses PEM it is given *instead of* its
/// own roots, so they are handed over too, to keep the file's meaning "in addition").
pub fn redis_roots_pem(extra: &CaFile) -> Vec<u8> {
    let mut pem = String::new();
    for cert in extra
        .certs
        .iter()
        .chain(webpki_root_certs::TLS_SERVER_ROOT_CERTS)
    {
        pem_encode(cert, &mut pem);
    }
    pem.into_bytes()
}

/// Appends `cert` as a PEM `CERTIFICATE` section (RFC 7468: base64 in 64-column lines).
fn pem_encode(cert: &CertificateDer<'_>, out: &mut String) {
    let encoded = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    let mut rest = encoded.as_str();
    while !rest.is_empty() {
        // Base64 is ASCII, so any byte index is a character boundary.
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str("-----END CERTIFICATE-----\n");
}

/// The causes of `error`, outermost first, joined with `: ` (client libraries wrap the
/// certificate verdict a few levels deep). For errors whose text carries no secret only.
pub fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let part = cause.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, contents: &[u8]) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("edgecache-tls-{}-{name}.pem", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// One of Mozilla's roots, as PEM.
    fn a_root_pem() -> String {
        let mut pem = String::new();
        pem_encode(&webpki_root_certs::TLS_SERVER_ROOT_CERTS[0], &mut pem);
        pem
    }

    #[test]
    fn a_pem_bundle_loads_and_other_sections_are_ignored() {
        let pem = format!(
            "{}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n{}",
            a_root_pem(),
            a_root_pem()
        );
        let path = write("bundle", pem.as_bytes());
        let file = CaFile::load(&path).unwrap();
        assert_eq!(file.len(), 2);
        assert!(origin_client_config(Some(&file)).is_ok());
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn missing_empty_garbled_and_non_ca_files_are_clear_errors() {
        let missing = std::env::temp_dir().join("edgecache-tls-does-not-exist.pem");
        let e = CaFile::load(&missing).unwrap_err();
        assert!(
            e.contains("cannot read") && e.contains("does-not-exist"),
            "{e}"
        );

        let empty = write("empty", b"just some text\n");
        let e = CaFile::load(&empty).unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");

        let garbled = write(
            "garbled",
            b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        );
        let e = CaFile::load(&garbled).unwrap_err();
        assert!(e.contains("not valid PEM"), "{e}");

        let not_der = write(
            "notder",
            b"-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
        );
        let e = CaFile::load(&not_der).unwrap_err();
        assert!(
            e.contains("certificate 1") && e.contains("not a usable CA"),
            "{e}"
        );
        for p in [empty, garbled, not_der] {
            let _ = std::fs::remove_file(p);
        }
    }

    #[test]
    fn the_redis_pem_holds_the_file_then_every_mozilla_root_and_parses_back() {
        let path = write("redis", a_root_pem().as_bytes());
        let file = CaFile::load(&path).unwrap();
        let pem = redis_roots_pem(&file);
        let back = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        assert_eq!(
            back.len(),
            1 + webpki_root_certs::TLS_SERVER_ROOT_CERTS.len()
        );
        assert_eq!(back[0], file.certs[0]);
        assert_eq!(&back[1..], webpki_root_certs::TLS_SERVER_ROOT_CERTS);
        assert!(std::str::from_utf8(&pem)
            .unwrap()
            .lines()
            .all(|l| l.len() <= 64));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn the_origin_config_offers_http_1_1_only() {
        let config = origin_client_config(None).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn causes_are_joined_without_repeats() {
        let inner = std::io::Error::other("invalid peer certificate: UnknownIssuer");
        let outer = std::io::Error::new(std::io::ErrorKind::InvalidData, inner);
        assert_eq!(causes(&outer), "invalid peer certificate: UnknownIssuer");
    }
}
