//! The client's TLS configuration: rustls with the process's crypto provider (ring), TLS 1.2 and
//! 1.3, HTTP/1.1 by ALPN, and certificates verified against the platform's roots by
//! `rustls-platform-verifier`, as reqwest itself would configure it, with one difference: the
//! roots are loaded by the first certificate to verify ([`LazyRoots`]), not when the client is
//! built. Loading them reads the CA bundle and every file of the certificate directory (~290
//! files on Debian, 5–8 ms); a sync from an `http://` upstream never needs them, and an
//! `https://` one pays it once, at its first handshake. `SSL_CERT_FILE` and `SSL_CERT_DIR` are
//! read then, as before.

use std::sync::{Arc, OnceLock};

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// The rustls configuration the reqwest client is built with.
pub(super) fn client_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(LazyRoots {
            provider,
            platform: OnceLock::new(),
        }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The platform verifier, built (roots loaded) by the first certificate it is asked to verify.
/// The handshake signatures need no roots: they are checked with the provider's algorithms,
/// exactly as the platform verifier checks them.
#[derive(Debug)]
struct LazyRoots {
    provider: Arc<CryptoProvider>,
    platform: OnceLock<Result<rustls_platform_verifier::Verifier, rustls::Error>>,
}

impl LazyRoots {
    /// The platform verifier. Not finding any root certificate (no CA bundle installed, an
    /// `SSL_CERT_FILE` that does not exist) is reported as a certificate error, so that the
    /// request fails at once instead of being retried like a network error.
    fn platform(&self) -> Result<&rustls_platform_verifier::Verifier, rustls::Error> {
        self.platform
            .get_or_init(|| {
                rustls_platform_verifier::Verifier::new(self.provider.clone()).map_err(|e| {
                    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(
                        rustls::OtherError(Arc::new(e)),
                    ))
                })
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl ServerCertVerifier for LazyRoots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.platform()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_roots_are_not_loaded_until_a_certificate_is_verified() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let provider = CryptoProvider::get_default().cloned().unwrap();
        let lazy = LazyRoots {
            provider,
            platform: OnceLock::new(),
        };
        assert!(!lazy.supported_verify_schemes().is_empty());
        assert!(lazy.platform.get().is_none());
        // a certificate that is not one: refused, and the roots were loaded to refuse it
        let r = lazy.verify_server_cert(
            &CertificateDer::from(vec![0x30, 0x00]),
            &[],
            &ServerName::try_from("example.org").unwrap(),
            &[],
            UnixTime::now(),
        );
        assert!(r.is_err());
        assert!(lazy.platform.get().is_some());
        let config = client_config().unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
