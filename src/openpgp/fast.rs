//! The signature check of a cleartext-signed document with the signed text hashed here, in
//! large blocks (issue 13 item 5): sequoia's verifier hashes a text signature line by line
//! (two hash updates per line, a byte-by-byte scan for line breaks), so the SHA-512 ran one
//! 128-byte block at a time and the scan cost as much again; hashed here, the same bytes go
//! through the same sequoia hash context 64 KiB at a time.
//!
//! Invariant: this path only ever ACCEPTS, and it accepts only what sequoia's detached verifier
//! (`verify::full_check`) accepts, with the same signer. It runs the very checks of that
//! verifier (sequoia-openpgp 2.4, `parse::stream::Decryptor::verify_signatures`) with the same
//! sequoia calls — the packet policy on every packet of the signature block; per signature its
//! creation time, its issuers looked up in the keyring in keyring order, each key under the
//! policy at the signature's time, certificate and key alive and not revoked, signing-capable,
//! the signature alive now (with sequoia's clock-skew tolerance), the signature's own policy,
//! then the cryptographic check of the digest (`Signature::verify_hash`, which hashes the
//! signature's trailer itself) — and the same `Hash` header rule. Only the hashing of the text
//! is its own: OpenPGP text mode, every line break (`\r\n`, a lone `\r` or `\n`) hashed as
//! `\r\n`, exactly as sequoia's `HashingMode::Text`. Whatever it does not handle (a marker or
//! unknown packet, a v3/v6 signature, a signature type other than binary or text, no good
//! signature, any error) gives `None`, and the caller runs the full verifier, whose verdict
//! and error then stand: an error is never produced here.

use std::time::SystemTime;

use sequoia_openpgp as openpgp;

use openpgp::Packet;
use openpgp::cert::amalgamation::{ValidAmalgamation as _, ValidateAmalgamation as _};
use openpgp::cert::prelude::ValidErasedKeyAmalgamation;
use openpgp::crypto::hash::Context;
use openpgp::packet::Signature;
use openpgp::packet::key::PublicParts;
use openpgp::packet::signature::subpacket::CLOCK_SKEW_TOLERANCE;
use openpgp::parse::{PacketParser, PacketParserResult, Parse as _};
use openpgp::policy::Policy;
use openpgp::types::{HashAlgorithm, RevocationStatus, SignatureType};

use super::verify::Keyring;

/// Bytes handed to the hash context at a time.
const BLOCK: usize = 64 * 1024;

/// One signature of the block that may verify: the keys of the keyring that pass every check
/// but the cryptographic one, in the order sequoia tries them.
struct Candidate<'k> {
    sig: Signature,
    keys: Vec<ValidErasedKeyAmalgamation<'k, PublicParts>>,
}

/// The signatures of a signature block that could be good, before any text is hashed: cheap
/// (packet parsing and key checks), so a caller can tell a document signed by a stranger from
/// one worth hashing.
pub(super) struct Prepared<'k> {
    /// Every signature of the block, in order; `None` for one that cannot be good.
    sigs: Vec<Option<Candidate<'k>>>,
    policy: &'k dyn Policy,
}

/// Parses the signature block and runs every check that does not need the text. `None` when
/// the block holds anything this path does not handle, or when no signature has a usable key.
pub(super) fn prepare<'k>(
    keyring: &'k Keyring,
    signature: &[u8],
    policy: &'k dyn Policy,
) -> Option<Prepared<'k>> {
    let time = SystemTime::now();
    let mut sigs = Vec::new();
    let mut ppr = PacketParser::from_bytes(signature).ok()?;
    while let PacketParserResult::Some(pp) = ppr {
        policy.packet(&pp.packet).ok()?;
        let (packet, next) = pp.recurse().ok()?;
        ppr = next;
        let Packet::Signature(sig) = packet else {
            return None;
        };
        sigs.push(candidate(keyring, sig, policy, time)?);
    }
    sigs.iter()
        .any(Option::is_some)
        .then_some(Prepared { sigs, policy })
}

/// The keys that may have made `sig` (outer `None`: a signature this path does not handle;
/// inner `None`: one that cannot be good).
fn candidate<'k>(
    keyring: &'k Keyring,
    sig: Signature,
    policy: &'k dyn Policy,
    time: SystemTime,
) -> Option<Option<Candidate<'k>>> {
    if sig.version() != 4 || !matches!(sig.typ(), SignatureType::Binary | SignatureType::Text) {
        return None;
    }
    // Checks of the signature alone (sequoia makes them per key; they do not depend on it).
    // Its policy is checked after the cryptographic check, as sequoia does.
    let Some(sig_time) = sig.signature_creation_time() else {
        return Some(None);
    };
    if sig.signature_alive(time, CLOCK_SKEW_TOLERANCE).is_err() {
        return Some(None);
    }
    let issuers = sig.get_issuers();
    if issuers.is_empty() {
        return Some(None);
    }
    let mut keys = Vec::new();
    for ka in keyring
        .certs()
        .iter()
        .flat_map(|c| c.keys().key_handles(issuers.clone()))
    {
        let Ok(ka) = ka.with_policy(policy, sig_time) else {
            continue;
        };
        let usable = ka.valid_cert().alive().is_ok()
            && ka.alive().is_ok()
            && !matches!(
                ka.valid_cert().revocation_status(),
                RevocationStatus::Revoked(_)
            )
            && !matches!(ka.revocation_status(), RevocationStatus::Revoked(_))
            && ka.for_signing();
        if usable {
            keys.push(ka);
        }
    }
    Some((!keys.is_empty()).then_some(Candidate { sig, keys }))
}

impl Prepared<'_> {
    /// Hashes `text` for every signature and checks them; the good signatures' signer
    /// fingerprints (uppercase hex) and hash algorithms, in block order, as sequoia's verifier
    /// reports them. `None` on any error.
    pub(super) fn check(&self, text: &[u8]) -> Option<Vec<(String, HashAlgorithm)>> {
        let mut hashed: Vec<((HashAlgorithm, SignatureType), Context)> = Vec::new();
        let mut good = Vec::new();
        for c in self.sigs.iter().flatten() {
            let mode = (c.sig.hash_algo(), c.sig.typ());
            let ctx = match hashed.iter().find(|(m, _)| *m == mode) {
                Some((_, ctx)) => ctx.clone(),
                None => {
                    let mut ctx = mode.0.context().ok()?.for_digest();
                    match mode.1 {
                        SignatureType::Text => hash_text(&mut ctx, text),
                        _ => ctx.update(text),
                    }
                    hashed.push((mode, ctx.clone()));
                    ctx
                }
            };
            // The first key that verifies made the signature (sequoia's order); then the
            // signature's own policy, as sequoia checks it after the cryptographic check.
            if let Some(ka) = c.keys.iter().find(|ka| {
                c.sig.verify_hash(ka.key(), ctx.clone()).is_ok()
                    && self.policy.signature(&c.sig, Default::default()).is_ok()
            }) {
                good.push((ka.cert().fingerprint().to_hex(), c.sig.hash_algo()));
            }
        }
        Some(good)
    }
}

/// Feeds `text` to `ctx` in OpenPGP text mode, as sequoia's `HashingMode::Text` does: each
/// `\r\n`, lone `\r` and lone `\n` is hashed as `\r\n`. The normalised text is staged in
/// blocks of [`BLOCK`] bytes, so the hash runs on large inputs.
pub(super) fn hash_text(ctx: &mut Context, text: &[u8]) {
    let mut block = Vec::with_capacity(BLOCK);
    let mut put = |ctx: &mut Context, bytes: &[u8]| {
        if block.len() + bytes.len() > BLOCK {
            ctx.update(&block);
            block.clear();
        }
        if bytes.len() > BLOCK {
            ctx.update(bytes);
        } else {
            block.extend_from_slice(bytes);
        }
    };
    let mut rest = text;
    while let Some(at) = memchr::memchr2(b'\r', b'\n', rest) {
        let (line, tail) = rest.split_at(at);
        put(ctx, line);
        put(ctx, b"\r\n");
        let skip = if tail.starts_with(b"\r\n") { 2 } else { 1 };
        rest = tail.get(skip..).unwrap_or_default();
    }
    put(ctx, rest);
    ctx.update(&block);
}
