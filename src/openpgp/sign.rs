//! Signing keys: generating a v4 Ed25519 key, loading and saving it (unencrypted TSK), exporting
//! its public keyring, and clearsigning documents with it.
//!
//! Invariant: only v4 keys (`Profile::RFC4880`) and v4 signatures with SHA-512 are emitted, so
//! that `gpgv` 2.2 (what MAAS and `sstream-mirror` run) accepts what we publish; the secret key
//! is never printed by `Debug`.

use std::fmt;
use std::io::Write as _;

use sequoia_openpgp as openpgp;

use openpgp::cert::{CertBuilder, CipherSuite};
use openpgp::crypto::KeyPair;
use openpgp::parse::Parse as _;
use openpgp::serialize::stream::{Message, Signer};
use openpgp::serialize::{Serialize as _, SerializeInto as _};
use openpgp::types::HashAlgorithm;
use openpgp::{Cert, Profile};

use super::policy::StreamPolicy;
use super::{BoxError, Error, Keyring};

/// An OpenPGP certificate with its unencrypted secret signing key.
#[derive(Clone)]
pub struct SigningKey {
    cert: Cert,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("fingerprint", &self.fingerprint())
            .field("user_id", &self.user_id())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a v4 key: an Ed25519 certification primary key with an Ed25519 signing subkey,
    /// one user ID, no expiry, no password.
    pub fn generate(user_id: &str) -> Result<SigningKey, Error> {
        let generation = |e: openpgp::anyhow::Error| Error::KeyGeneration { source: e.into() };
        let (cert, _revocation) = CertBuilder::new()
            .set_profile(Profile::RFC4880)
            .map_err(generation)?
            .set_cipher_suite(CipherSuite::Cv25519)
            .add_userid(user_id)
            .add_signing_subkey()
            .generate()
            .map_err(generation)?;
        SigningKey::from_cert(cert)
    }

    /// Loads a secret key (TSK), binary or ASCII-armoured, as written by
    /// [`SigningKey::to_armored_secret`] or `gpg --export-secret-keys`. The signing key must
    /// be unencrypted and valid now.
    pub fn from_bytes(bytes: &[u8]) -> Result<SigningKey, Error> {
        let cert =
            Cert::from_bytes(bytes).map_err(|e| Error::SecretKeyInvalid { source: e.into() })?;
        SigningKey::from_cert(cert)
    }

    fn from_cert(cert: Cert) -> Result<SigningKey, Error> {
        if cert.primary_key().key().version() != 4 {
            return Err(Error::SecretKeyInvalid {
                source: "only v4 keys are supported (gpg 2.2 refuses v6)".into(),
            });
        }
        let key = SigningKey { cert };
        key.keypair()?;
        Ok(key)
    }

    /// The first valid, unencrypted, signing-capable secret key of the certificate.
    pub(super) fn keypair(&self) -> Result<KeyPair, Error> {
        let policy = StreamPolicy::new();
        let no_key = || Error::NoSigningKey {
            fingerprint: self.fingerprint(),
        };
        let ka = self
            .cert
            .keys()
            .with_policy(&policy, None)
            .supported()
            .alive()
            .revoked(false)
            .for_signing()
            .unencrypted_secret()
            .find(|ka| ka.key().version() == 4)
            .ok_or_else(no_key)?;
        ka.key().clone().into_keypair().map_err(|_| no_key())
    }

    /// The primary-key fingerprint, uppercase hex.
    pub fn fingerprint(&self) -> String {
        self.cert.fingerprint().to_hex()
    }

    /// The primary user ID (lossily decoded), if the certificate has a valid one.
    pub fn user_id(&self) -> Option<String> {
        let policy = StreamPolicy::new();
        let valid = self.cert.with_policy(&policy, None).ok()?;
        let uid = valid.primary_userid().ok()?;
        Some(String::from_utf8_lossy(uid.userid().value()).into_owned())
    }

    fn serialize_error(&self, source: BoxError) -> Error {
        Error::Serialize {
            fingerprint: self.fingerprint(),
            source,
        }
    }

    /// The transferable secret key, ASCII-armoured and unencrypted: keep it private.
    pub fn to_armored_secret(&self) -> Result<Vec<u8>, Error> {
        self.cert
            .as_tsk()
            .armored()
            .to_vec()
            .map_err(|e| self.serialize_error(e.into()))
    }

    /// The public certificate in binary form: a keyring file for `gpgv --keyring=` and for
    /// MAAS's `keyring_filename`.
    pub fn public_keyring_binary(&self) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        self.cert
            .serialize(&mut out)
            .map_err(|e| self.serialize_error(e.into()))?;
        Ok(out)
    }

    /// The public certificate, ASCII-armoured (`-----BEGIN PGP PUBLIC KEY BLOCK-----`).
    pub fn public_keyring_armored(&self) -> Result<Vec<u8>, Error> {
        self.cert
            .armored()
            .to_vec()
            .map_err(|e| self.serialize_error(e.into()))
    }

    /// A [`Keyring`] holding this key's public certificate.
    pub fn keyring(&self) -> Keyring {
        Keyring::from_certs([self.cert.clone()])
    }

    /// Clearsigns `text` (`Hash: SHA512`, a v4 text signature). The signed text, as
    /// [`super::verify_cleartext`] returns it, is `text` with trailing spaces and tabs removed
    /// from each line; line endings, including a final one, are kept.
    pub fn clearsign(&self, text: &[u8]) -> Result<Vec<u8>, Error> {
        let signing = |e: openpgp::anyhow::Error| Error::Signing {
            fingerprint: self.fingerprint(),
            source: e.into(),
        };
        let keypair = self.keypair()?;
        let mut out = Vec::with_capacity(text.len() + 1024);
        let message = Message::new(&mut out);
        let mut signer = Signer::new(message, keypair)
            .and_then(|s| s.hash_algo(HashAlgorithm::SHA512))
            .map_err(signing)?
            .cleartext()
            .build()
            .map_err(signing)?;
        signer.write_all(text).map_err(|e| signing(e.into()))?;
        signer.finalize().map_err(signing)?;
        Ok(out)
    }
}
