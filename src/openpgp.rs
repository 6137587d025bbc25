//! OpenPGP for SimpleStreams: reading keyrings, checking and unwrapping cleartext-signed
//! (`.sjson`) documents, and clearsigning re-published metadata with a v4 key.
//!
//! Protects invariant 6 (a signature that does not verify is an error, and the parser gets
//! exactly the verified text): [`verify_cleartext`] returns the payload only when at least one signature by a key
//! of the caller's [`Keyring`] checks out, and the payload it returns is exactly the text that
//! signature covers. [`unwrap_cleartext`] (for `--no-verify`) returns the same bytes for every
//! document `verify_cleartext` accepts: both go through one strict RFC 4880 §7 framing parser,
//! and `verify_cleartext` hands sequoia exactly that parser's text to check the signatures
//! against (as detached signatures: one pass over the document, see `verify`; the text itself
//! is hashed by `fast` in large blocks, with sequoia's own key and signature checks, and only
//! an acceptance comes from there: every other verdict and every error is the detached
//! verifier's). [`verify_cleartext_with`] runs the caller's reader (the stream parser) over
//! the same text while the signature is checked on a second thread, and hands its result back
//! only with a valid signature: nothing read from a document is used before it verified.
//!
//! Decisions:
//! - A document is clearsigned only when its very first bytes are
//!   `-----BEGIN PGP SIGNED MESSAGE-----`: no leading UTF-8 BOM, blank line or quoting, exactly as
//!   `sstream-mirror` decides (`read_signed`, spec §1.7). gpg would skip such a prefix.
//! - The framing is strict where sequoia and gpg are lenient (armor headers must be `Key: Value`
//!   and end with an empty line, nothing but whitespace after `-----END PGP SIGNATURE-----`),
//!   so that a document is never read two different ways.
//! - SHA-1 is accepted only on self-signatures and binding signatures made before 2023-02-01
//!   (the 2012 Ubuntu cloud-image key needs it); data signatures stay under sequoia's
//!   `StandardPolicy`.
//! - Like gpg, a valid signature counts only if the `Hash` armor header (when present) names its
//!   hash algorithm. The armour CRC of the signature block is not checked (RFC 9580 drops it);
//!   the signature itself is.
//! - Only v4 keys and signatures are emitted: gpg 2.2 refuses v6.
//!
//! Both [`unwrap_cleartext`] and [`verify_cleartext`] take arbitrary bytes and never panic; they
//! are the fuzz entry points of this module.

mod cleartext;
mod fast;
mod policy;
mod sign;
mod verify;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use sign::SigningKey;
pub use verify::{Keyring, Verified};

/// A boxed cause, as sequoia reports its errors.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong while reading keys, checking or making signatures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(
        "not a clearsigned document: it does not start with `-----BEGIN PGP SIGNED MESSAGE-----`"
    )]
    NotClearsigned,

    #[error("malformed cleartext framing at line {line}: {problem}")]
    Framing { line: usize, problem: &'static str },

    /// Sequoia's cleartext reader read another text than the framing parser. Since issue 13
    /// sequoia checks the framing parser's text itself, so [`verify_cleartext`] no longer
    /// returns this; the tests' reference verifier (sequoia's cleartext reader) still does.
    #[error(
        "ambiguous cleartext framing: the signed text differs from the text between the markers"
    )]
    FramingMismatch,

    #[error("unreadable signature block")]
    SignatureBlock {
        #[source]
        source: BoxError,
    },

    #[error("the document carries no signature")]
    NoSignature,

    #[error("signed only by keys not in the keyring: {}", backticked(.issuers))]
    UnknownKey { issuers: Vec<String> },

    #[error("bad signature by `{signer}`")]
    BadSignature {
        signer: String,
        #[source]
        source: BoxError,
    },

    #[error(
        "the signature by `{signer}` uses {algo}, which the `Hash` armor header does not announce"
    )]
    HashNotAnnounced { signer: String, algo: String },

    #[error("key `{signer}` from the keyring is not valid for this signature")]
    KeyRejected {
        signer: String,
        #[source]
        source: BoxError,
    },

    #[error("malformed signature")]
    MalformedSignature {
        #[source]
        source: BoxError,
    },

    #[error("cannot read keyring `{}`", .path.display())]
    KeyringUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid keyring{}", in_path(.path))]
    KeyringInvalid {
        path: Option<PathBuf>,
        #[source]
        source: BoxError,
    },

    #[error("keyring{} holds no certificate", in_path(.path))]
    KeyringEmpty { path: Option<PathBuf> },

    #[error("cannot generate a signing key")]
    KeyGeneration {
        #[source]
        source: BoxError,
    },

    #[error("invalid secret key")]
    SecretKeyInvalid {
        #[source]
        source: BoxError,
    },

    #[error("key `{fingerprint}` has no usable unencrypted secret signing key")]
    NoSigningKey { fingerprint: String },

    #[error("cannot serialize key `{fingerprint}`")]
    Serialize {
        fingerprint: String,
        #[source]
        source: BoxError,
    },

    #[error("cannot clearsign with key `{fingerprint}`")]
    Signing {
        fingerprint: String,
        #[source]
        source: BoxError,
    },
}

/// `` `A`, `B` `` for the issuers of an [`Error::UnknownKey`].
fn backticked(ids: &[String]) -> String {
    if ids.is_empty() {
        return "no issuer named in the signature".to_owned();
    }
    ids.iter()
        .map(|id| format!("`{id}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `` ` `path` `` or nothing, for keyrings read from a file or from memory.
fn in_path(path: &Option<PathBuf>) -> String {
    path.as_deref()
        .map(|p| format!(" `{}`", p.display()))
        .unwrap_or_default()
}

/// Whether `bytes` claims to be a cleartext-signed document: it starts exactly with
/// `-----BEGIN PGP SIGNED MESSAGE-----` (no BOM, no leading whitespace), as `sstream-mirror`
/// decides. It says nothing about whether the rest is well formed.
pub fn is_clearsigned(bytes: &[u8]) -> bool {
    bytes.starts_with(cleartext::BEGIN_SIGNED)
}

/// The signed text of a cleartext-signed document, without checking any signature (for
/// `--no-verify`). Byte-identical to [`Verified::payload`] for every document
/// [`verify_cleartext`] accepts: dash-escapes removed, trailing spaces and tabs of each line
/// removed, line endings (LF or CRLF) kept, except the one before
/// `-----BEGIN PGP SIGNATURE-----`, which is not signed. The signature block is only checked
/// for its `BEGIN`/`END` lines, not decoded.
pub fn unwrap_cleartext(doc: &[u8]) -> Result<Vec<u8>, Error> {
    cleartext::parse(doc).map(|framed| framed.payload.into_owned())
}

/// Checks a cleartext-signed document against `keyring` (at the current time) and returns the
/// signed text with the primary fingerprint of a key that made a valid signature. Signatures
/// by other keys are ignored as long as one is valid.
pub fn verify_cleartext(keyring: &Keyring, doc: &[u8]) -> Result<Verified, Error> {
    verify::verify(keyring, doc, &policy::StreamPolicy::new())
}

/// [`verify_cleartext`] and `read` over the signed text at the same time (the signature is
/// checked on a second thread while `read` runs on this one): `read`'s result comes back only
/// with the signer of a valid signature, and is dropped when the document does not verify,
/// whose error is then exactly [`verify_cleartext`]'s. `read` gets the bytes
/// [`Verified::payload`] would hold (without their copy when no line needed a change), and
/// starts only for a well-framed document with a signature by a usable key of `keyring`
/// (otherwise only once the check passed), so it must be fit for untrusted input: it is meant
/// for the stream parser, which is.
pub fn verify_cleartext_with<T>(
    keyring: &Keyring,
    doc: &[u8],
    read: impl FnOnce(&[u8]) -> T,
) -> Result<VerifiedWith<T>, Error> {
    let (signer, value) = verify::verify_with(keyring, doc, &policy::StreamPolicy::new(), read)?;
    Ok(VerifiedWith { value, signer })
}

/// What [`verify_cleartext_with`] returns: `read`'s result over a document whose signature
/// checked out.
#[derive(Debug)]
pub struct VerifiedWith<T> {
    /// What `read` returned for the signed text.
    pub value: T,
    /// As [`Verified::signer`].
    pub signer: String,
}

impl Keyring {
    /// Reads a keyring file: binary or ASCII-armoured, one or several certificates.
    pub fn open(path: &Path) -> Result<Keyring, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::KeyringUnreadable {
            path: path.to_owned(),
            source,
        })?;
        Keyring::from_bytes(&bytes).map_err(|e| e.with_path(path))
    }
}

impl Error {
    /// Names the keyring file in a keyring error raised while parsing its bytes.
    fn with_path(self, file: &Path) -> Error {
        match self {
            Error::KeyringInvalid { path: None, source } => Error::KeyringInvalid {
                path: Some(file.to_owned()),
                source,
            },
            Error::KeyringEmpty { path: None } => Error::KeyringEmpty {
                path: Some(file.to_owned()),
            },
            other => other,
        }
    }
}
