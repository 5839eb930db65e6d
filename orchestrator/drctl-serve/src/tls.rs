//! TLS with rustls: the controller's own certificate chain and key, and
//! the roots it trusts when it forwards to another controller.

use crate::Error;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

pub fn config(cert: &Path, key: &Path) -> Result<Arc<tokio_rustls::rustls::ServerConfig>, Error> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| Error::Tls(format!("{}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Tls(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!("{}: no certificate in it (expected PEM `BEGIN CERTIFICATE`)", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        Error::Tls(format!("{}: {e} (expected a PEM private key: PKCS#8, PKCS#1 or SEC1)", key.display()))
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut cfg = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Tls(format!("the certificate and key do not go together: {e}")))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The client a follower forwards operator requests to the leader with:
/// the public web roots, plus the CA certificates in `peer_ca` (PEM) when
/// the controllers serve HTTPS under a private CA. A bad file stops the
/// controller at start, not at the first forwarded request.
pub fn forwarder(peer_ca: Option<&Path>) -> Result<reqwest::Client, Error> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(std::time::Duration::from_secs(30))
        .connect_timeout(std::time::Duration::from_secs(2))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = peer_ca {
        let pem = std::fs::read(path).map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(Error::Tls(format!(
                "{}: no certificate in it (expected PEM `BEGIN CERTIFICATE`)",
                path.display()
            )));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| Error::Tls(e.to_string()))
}
