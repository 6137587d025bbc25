//! TLS for `serve --tls-cert FILE --tls-key FILE`: rustls with the ring provider, PEM files (the
//! certificate file may hold the whole chain), reloaded on SIGHUP. ALPN offers `http/1.1`, and
//! with `--http2` first `h2` (the connection is then served as HTTP/2).
//!
//! Protects running clients across a reload: each new connection takes the configuration current
//! at its handshake; connections already open keep theirs, so a reload drops nothing. A reload
//! that fails (missing or bad file) keeps the previous configuration and says why.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::ServeError;

/// The certificate and key files, and the configuration loaded from them.
#[derive(Debug)]
pub(super) struct Tls {
    cert: PathBuf,
    key: PathBuf,
    /// Offer `h2` by ALPN.
    http2: bool,
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    pub(super) fn load(cert: &Path, key: &Path, http2: bool) -> Result<Self, ServeError> {
        Ok(Tls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            http2,
            current: RwLock::new(Arc::new(config(cert, key, http2)?)),
        })
    }

    /// The configuration for a new connection.
    pub(super) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let cfg = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tokio_rustls::TlsAcceptor::from(Arc::clone(&cfg))
    }

    /// Read the files again; on failure the old configuration stays.
    pub(super) fn reload(&self) -> Result<(), ServeError> {
        let fresh = Arc::new(config(&self.cert, &self.key, self.http2)?);
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        Ok(())
    }
}

fn config(cert: &Path, key: &Path, http2: bool) -> Result<ServerConfig, ServeError> {
    let bad = |path: &Path, reason: String| ServeError::Tls {
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(cert, "no PEM certificate in the file".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| bad(key, format!("does not fit the certificate: {e}")))?;
    // With HTTP/2, h2 first: a client offering both gets h2 (curl, browsers, Go's LXD client).
    cfg.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(cfg)
}
