//! The keyring (the certificates the operator trusts) and the signature check of a
//! cleartext-signed document against it.
//!
//! Invariant: a payload leaves [`verify`] only if sequoia's verifier found at least one valid
//! signature by a certificate of the keyring over exactly that payload, the text the strict
//! framing parser (`cleartext`) reads from the document.
//!
//! Speed (issue 13 item 5): the document is read once, by `cleartext`, which builds the signed
//! text in one pass; sequoia then checks the signature block as a detached signature over that
//! text (`DetachedVerifier`: the same key selection, policy, expiry and revocation checks as
//! its cleartext verifier, and the same text-mode hashing: line endings hashed as CRLF).
//! Sequoia's own cleartext reader is not run: it re-read the document line by line and copied
//! the text several times, three quarters of the time of a verify. Tests keep it as the
//! reference: on every document they verify, both paths must agree ([`verify_csf`]).
//! The detached verifier in turn hashes a text signature line by line (two hash updates per
//! line after a byte-by-byte scan), a third of the remaining time: `fast` hashes the text in
//! 64 KiB blocks and runs the verifier's checks itself; when it does not accept, the detached
//! verifier decides ([`full_check`]), so verdicts and errors are the verifier's. What is left
//! is SHA-512 itself (~5 ms of CPU for the 2.5 MB real products document here), which
//! [`verify_with`] overlaps with the parse on a second thread.

use sequoia_openpgp as openpgp;

use openpgp::parse::Parse as _;
use openpgp::parse::stream::{
    DetachedVerifierBuilder, GoodChecksum, MessageLayer, MessageStructure, VerificationError,
    VerificationHelper,
};
use openpgp::policy::Policy;
use openpgp::types::HashAlgorithm;
use openpgp::{Cert, KeyHandle, cert::CertParser, packet::Signature};

use super::{BoxError, Error, cleartext, fast};

/// A set of OpenPGP certificates (public keys) trusted to sign stream documents.
#[derive(Debug, Clone)]
pub struct Keyring {
    certs: Vec<Cert>,
}

/// A document whose signature checked out.
#[derive(Clone, PartialEq, Eq)]
pub struct Verified {
    /// The signed text (see [`super::unwrap_cleartext`] for its exact form).
    pub payload: Vec<u8>,
    /// Primary-key fingerprint (uppercase hex) of a certificate that made a valid signature.
    pub signer: String,
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verified")
            .field("payload_len", &self.payload.len())
            .field("signer", &self.signer)
            .finish()
    }
}

impl Keyring {
    /// Parses a keyring: binary or ASCII-armoured, one or several certificates (concatenated
    /// binary certificates, or several armoured blocks). Secret key material is dropped.
    pub fn from_bytes(bytes: &[u8]) -> Result<Keyring, Error> {
        fn invalid(e: impl Into<BoxError>) -> Error {
            Error::KeyringInvalid {
                path: None,
                source: e.into(),
            }
        }
        let mut certs: Vec<Cert> = Vec::new();
        for cert in CertParser::from_bytes(bytes).map_err(invalid)? {
            let cert = cert.map_err(invalid)?.strip_secret_key_material();
            match certs
                .iter_mut()
                .find(|c| c.fingerprint() == cert.fingerprint())
            {
                Some(known) => {
                    *known = known.clone().merge_public(cert).map_err(invalid)?;
                }
                None => certs.push(cert),
            }
        }
        if certs.is_empty() {
            return Err(Error::KeyringEmpty { path: None });
        }
        Ok(Keyring { certs })
    }

    /// A keyring of already parsed certificates (secret key material is dropped).
    pub(super) fn from_certs(certs: impl IntoIterator<Item = Cert>) -> Keyring {
        Keyring {
            certs: certs
                .into_iter()
                .map(Cert::strip_secret_key_material)
                .collect(),
        }
    }

    /// The certificates, in keyring order.
    pub(super) fn certs(&self) -> &[Cert] {
        &self.certs
    }

    /// The primary-key fingerprints (uppercase hex), in keyring order.
    pub fn fingerprints(&self) -> Vec<String> {
        self.certs
            .iter()
            .map(|c| c.fingerprint().to_hex())
            .collect()
    }

    /// This keyring plus the certificates of `other` (merged when both hold one).
    pub fn merge(mut self, other: Keyring) -> Keyring {
        for cert in other.certs {
            match self
                .certs
                .iter_mut()
                .find(|c| c.fingerprint() == cert.fingerprint())
            {
                Some(known) => {
                    // Same fingerprint, so merging cannot fail; keep ours if it does.
                    if let Ok(merged) = known.clone().merge_public(cert) {
                        *known = merged;
                    }
                }
                None => self.certs.push(cert),
            }
        }
        self
    }
}

/// What the verifier reported about the signatures, gathered by [`Helper::check`].
#[derive(Default)]
struct Outcome {
    /// Whether sequoia reached the signature check at all.
    checked: bool,
    signatures: usize,
    /// Signer fingerprint and hash algorithm of each valid signature.
    good: Vec<(String, HashAlgorithm)>,
    bad: Option<(String, BoxError)>,
    rejected: Option<(String, BoxError)>,
    malformed: Option<BoxError>,
    missing: Vec<String>,
}

impl Outcome {
    /// The most telling error when no signature was good.
    fn into_error(self, sequoia: Option<BoxError>) -> Error {
        if !self.checked {
            let source = sequoia.unwrap_or_else(|| "the verifier stopped early".into());
            return Error::SignatureBlock { source };
        }
        if let Some((signer, source)) = self.bad {
            return Error::BadSignature { signer, source };
        }
        if let Some((signer, source)) = self.rejected {
            return Error::KeyRejected { signer, source };
        }
        if let Some(source) = self.malformed {
            return Error::MalformedSignature { source };
        }
        if self.signatures == 0 {
            return Error::NoSignature;
        }
        Error::UnknownKey {
            issuers: self.missing,
        }
    }
}

/// The issuer of a signature: its fingerprint if it names one, else its key id.
fn issuer(sig: &Signature) -> Option<String> {
    sig.get_issuers().first().map(KeyHandle::to_hex)
}

struct Helper<'a> {
    keyring: &'a Keyring,
    outcome: &'a mut Outcome,
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(self.keyring.certs.clone())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        let o = &mut *self.outcome;
        o.checked = true;
        for layer in structure {
            let MessageLayer::SignatureGroup { results } = layer else {
                continue;
            };
            for result in results {
                o.signatures += 1;
                match result {
                    Ok(GoodChecksum { ka, sig }) => {
                        o.good
                            .push((ka.cert().fingerprint().to_hex(), sig.hash_algo()));
                    }
                    Err(VerificationError::MissingKey { sig }) => {
                        if let Some(id) = issuer(sig).filter(|id| !o.missing.contains(id)) {
                            o.missing.push(id);
                        }
                    }
                    Err(VerificationError::BadSignature { ka, error, .. }) => {
                        let signer = ka.cert().fingerprint().to_hex();
                        o.bad.get_or_insert((signer, error.into()));
                    }
                    Err(VerificationError::BadKey { ka, error, .. }) => {
                        let signer = ka.cert().fingerprint().to_hex();
                        o.rejected.get_or_insert((signer, error.into()));
                    }
                    Err(VerificationError::UnboundKey { cert, error, .. }) => {
                        let signer = cert.fingerprint().to_hex();
                        o.rejected.get_or_insert((signer, error.into()));
                    }
                    Err(VerificationError::MalformedSignature { error, .. }) => {
                        o.malformed.get_or_insert(error.into());
                    }
                    Err(VerificationError::UnknownSignature { sig }) => {
                        o.malformed.get_or_insert(sig.error().to_string().into());
                    }
                    Err(other) => {
                        o.malformed.get_or_insert(other.to_string().into());
                    }
                }
            }
        }
        if !o.good.is_empty() {
            Ok(())
        } else {
            Err(openpgp::Error::BadSignature("no valid signature from the keyring".into()).into())
        }
    }
}

/// Checks the signature block as detached signatures over `payload` (text signatures hashed
/// in text mode, as sequoia's cleartext verifier does).
fn run_verifier(
    keyring: &Keyring,
    signature: &[u8],
    payload: &[u8],
    policy: &dyn Policy,
    outcome: &mut Outcome,
) -> Result<(), BoxError> {
    let helper = Helper { keyring, outcome };
    let mut verifier =
        DetachedVerifierBuilder::from_bytes(signature)?.with_policy(policy, None, helper)?;
    verifier.verify_bytes(payload)?;
    Ok(())
}

/// The hash algorithms the `Hash` armor headers announce (empty: no `Hash` header).
fn announced_hashes<'a>(framed: &cleartext::Framed<'a>) -> Vec<&'a str> {
    framed
        .headers
        .iter()
        .filter(|(key, _)| key.eq_ignore_ascii_case("Hash"))
        .flat_map(|(_, value)| value.split(','))
        .map(str::trim)
        .collect()
}

/// Like gpg, a good signature counts only if the `Hash` header (when present) announces its
/// hash: the signer of the first such one.
fn announced_signer(framed: &cleartext::Framed<'_>, outcome: Outcome) -> Result<String, Error> {
    let announced = announced_hashes(framed);
    let is_announced = |algo: &HashAlgorithm| {
        announced.is_empty()
            || algo
                .text_name()
                .is_ok_and(|name| announced.iter().any(|a| a.eq_ignore_ascii_case(name)))
    };
    if let Some((signer, _)) = outcome.good.iter().find(|(_, algo)| is_announced(algo)) {
        return Ok(signer.clone());
    }
    Err(match outcome.good.first().cloned() {
        Some((signer, algo)) => Error::HashNotAnnounced {
            signer,
            algo: algo.to_string(),
        },
        None => outcome.into_error(None),
    })
}

/// Checks `doc` against `keyring` under `policy` at the current time.
pub(super) fn verify(
    keyring: &Keyring,
    doc: &[u8],
    policy: &dyn Policy,
) -> Result<Verified, Error> {
    let framed = cleartext::parse(doc)?;
    let signer = match fast::prepare(keyring, framed.signature, policy) {
        Some(prepared) => accept(&framed, prepared.check(&framed.payload)),
        None => None,
    };
    let signer = match signer {
        Some(signer) => signer,
        None => full_check(keyring, &framed, policy)?,
    };
    Ok(Verified {
        payload: framed.payload.into_owned(),
        signer,
    })
}

/// Checks `doc` against `keyring` and, at the same time, runs `read` over the signed text on
/// this thread while the signature is checked on a second one; `read`'s result is returned
/// only with the signer of a valid signature, and dropped otherwise (the error is then the one
/// [`verify`] gives). `read` starts only once the framing is sound and a signature of the block
/// names a usable key of the keyring; otherwise the full check runs first and `read` only
/// after it passed. When no thread can be started, the check runs on this thread after `read`.
pub(super) fn verify_with<T>(
    keyring: &Keyring,
    doc: &[u8],
    policy: &dyn Policy,
    read: impl FnOnce(&[u8]) -> T,
) -> Result<(String, T), Error> {
    let framed = cleartext::parse(doc)?;
    let payload: &[u8] = &framed.payload;
    let Some(prepared) = fast::prepare(keyring, framed.signature, policy) else {
        let signer = full_check(keyring, &framed, policy)?;
        return Ok((signer, read(payload)));
    };
    let (signer, value) = std::thread::scope(|scope| {
        let check = || accept(&framed, prepared.check(payload));
        let checker = std::thread::Builder::new()
            .name("sv-verify".into())
            .spawn_scoped(scope, check);
        let value = read(payload);
        let signer = match checker {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => check(),
        };
        (signer, value)
    });
    let signer = match signer {
        Some(signer) => signer,
        None => full_check(keyring, &framed, policy)?,
    };
    Ok((signer, value))
}

/// The signer the fast path found, under the `Hash` header rule; `None` (the full check then
/// decides) when it found none or the rule refuses them all.
fn accept(
    framed: &cleartext::Framed<'_>,
    good: Option<Vec<(String, HashAlgorithm)>>,
) -> Option<String> {
    let good = good.filter(|good| !good.is_empty())?;
    let outcome = Outcome {
        checked: true,
        signatures: good.len(),
        good,
        ..Outcome::default()
    };
    announced_signer(framed, outcome).ok()
}

/// Sequoia's detached verifier over the framing parser's text: the verdict and the error
/// whenever the fast path does not accept.
fn full_check(
    keyring: &Keyring,
    framed: &cleartext::Framed<'_>,
    policy: &dyn Policy,
) -> Result<String, Error> {
    let mut outcome = Outcome::default();
    let result = run_verifier(
        keyring,
        framed.signature,
        &framed.payload,
        policy,
        &mut outcome,
    );
    match result {
        Ok(()) if !outcome.good.is_empty() => {}
        Ok(()) => return Err(outcome.into_error(None)),
        // A good signature, then a failure: do not trust it.
        Err(source) if !outcome.good.is_empty() => return Err(Error::SignatureBlock { source }),
        Err(e) => return Err(outcome.into_error(Some(e))),
    }
    announced_signer(framed, outcome)
}

/// The reference for tests: sequoia's own cleartext verifier over the whole document (what
/// [`verify`] did before issue 13), its text compared with the framing parser's. [`verify`]
/// must accept exactly the documents this accepts, with the same payload and signer.
#[cfg(test)]
pub(super) fn verify_csf(
    keyring: &Keyring,
    doc: &[u8],
    policy: &dyn Policy,
) -> Result<Verified, Error> {
    use std::io::Read as _;
    let framed = cleartext::parse(doc)?;
    let mut outcome = Outcome::default();
    let result = (|| -> Result<Vec<u8>, BoxError> {
        let helper = Helper {
            keyring,
            outcome: &mut outcome,
        };
        let mut verifier = openpgp::parse::stream::VerifierBuilder::from_bytes(doc)?
            .with_policy(policy, None, helper)?;
        let mut payload = Vec::new();
        verifier.read_to_end(&mut payload)?;
        Ok(payload)
    })();
    let payload = match result {
        Ok(payload) if !outcome.good.is_empty() => payload,
        Ok(_) => return Err(outcome.into_error(None)),
        Err(source) if !outcome.good.is_empty() => return Err(Error::SignatureBlock { source }),
        Err(e) => return Err(outcome.into_error(Some(e))),
    };
    let signer = announced_signer(&framed, outcome)?;
    if payload != *framed.payload {
        return Err(Error::FramingMismatch);
    }
    Ok(Verified { payload, signer })
}

/// For tests: the signer the fast path alone accepts (`None`: it leaves the verdict to the
/// full check), and the full check alone.
#[cfg(test)]
pub(super) fn fast_and_full(
    keyring: &Keyring,
    doc: &[u8],
    policy: &dyn Policy,
) -> Result<(Option<String>, Result<String, Error>), Error> {
    let framed = cleartext::parse(doc)?;
    let fast = fast::prepare(keyring, framed.signature, policy)
        .and_then(|prepared| accept(&framed, prepared.check(&framed.payload)));
    Ok((fast, full_check(keyring, &framed, policy)))
}

/// For tests: whether sequoia's detached verifier finds a good signature in `signature` over
/// `data`, and whether the fast path does.
#[cfg(test)]
pub(super) fn detached_verdicts(
    keyring: &Keyring,
    signature: &[u8],
    data: &[u8],
    policy: &dyn Policy,
) -> (bool, bool) {
    let mut outcome = Outcome::default();
    let sequoia = run_verifier(keyring, signature, data, policy, &mut outcome).is_ok()
        && !outcome.good.is_empty();
    let fast = fast::prepare(keyring, signature, policy)
        .and_then(|p| p.check(data))
        .is_some_and(|good| !good.is_empty());
    (sequoia, fast)
}
