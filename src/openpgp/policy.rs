//! The cryptographic policy used for every check: sequoia's `StandardPolicy`, except that SHA-1
//! is accepted on self-signatures and binding signatures made before 2023-02-01.
//!
//! Invariant: data signatures (the signatures over stream documents) are judged by the strict
//! `StandardPolicy` alone; the SHA-1 exception can only make an old certificate usable (the
//! Ubuntu cloud-image key's only user-ID self-signature, 2012, is SHA-1), never a new signature.
//! The exception trusts the creation time written in the signature: acceptable because the
//! certificates come from a keyring the operator installed, not from the network.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sequoia_openpgp as openpgp;

use openpgp::cert::prelude::ValidErasedKeyAmalgamation;
use openpgp::packet::{Signature, key};
use openpgp::policy::{HashAlgoSecurity, Policy, StandardPolicy};
use openpgp::types::{AEADAlgorithm, HashAlgorithm, SignatureType, SymmetricAlgorithm};

/// 2023-02-01T00:00:00Z: self-signatures using SHA-1 made before this are still accepted.
const SHA1_SELF_SIG_CUTOFF: Duration = Duration::from_secs(1_675_209_600);

/// `StandardPolicy`, plus SHA-1 on old self-signatures and binding signatures.
#[derive(Debug)]
pub(super) struct StreamPolicy {
    strict: StandardPolicy<'static>,
    legacy: StandardPolicy<'static>,
}

impl StreamPolicy {
    pub(super) fn new() -> StreamPolicy {
        let mut legacy = StandardPolicy::new();
        legacy.accept_hash(HashAlgorithm::SHA1);
        StreamPolicy {
            strict: StandardPolicy::new(),
            legacy,
        }
    }

    /// Whether `sig` is an old SHA-1 self-signature or binding signature.
    fn is_legacy_self_signature(sig: &Signature) -> bool {
        let binding = matches!(
            sig.typ(),
            SignatureType::GenericCertification
                | SignatureType::PersonaCertification
                | SignatureType::CasualCertification
                | SignatureType::PositiveCertification
                | SignatureType::SubkeyBinding
                | SignatureType::PrimaryKeyBinding
                | SignatureType::DirectKey
        );
        let cutoff = UNIX_EPOCH + SHA1_SELF_SIG_CUTOFF;
        binding
            && sig.hash_algo() == HashAlgorithm::SHA1
            && sig
                .signature_creation_time()
                .is_some_and(|t: SystemTime| t < cutoff)
    }
}

impl Policy for StreamPolicy {
    fn signature(&self, sig: &Signature, sec: HashAlgoSecurity) -> openpgp::Result<()> {
        if Self::is_legacy_self_signature(sig) {
            self.legacy.signature(sig, sec)
        } else {
            self.strict.signature(sig, sec)
        }
    }

    fn key(&self, ka: &ValidErasedKeyAmalgamation<key::PublicParts>) -> openpgp::Result<()> {
        self.strict.key(ka)
    }

    fn symmetric_algorithm(&self, algo: SymmetricAlgorithm) -> openpgp::Result<()> {
        self.strict.symmetric_algorithm(algo)
    }

    fn aead_algorithm(&self, algo: AEADAlgorithm) -> openpgp::Result<()> {
        self.strict.aead_algorithm(algo)
    }

    fn packet(&self, packet: &openpgp::Packet) -> openpgp::Result<()> {
        self.strict.packet(packet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openpgp::packet::signature::SignatureBuilder;

    fn sig(typ: SignatureType, hash: HashAlgorithm, secs: u64) -> Signature {
        let (cert, _) = openpgp::cert::CertBuilder::new().generate().unwrap();
        let mut signer = cert
            .primary_key()
            .key()
            .clone()
            .parts_into_secret()
            .unwrap()
            .into_keypair()
            .unwrap();
        SignatureBuilder::new(typ)
            .set_hash_algo(hash)
            .set_signature_creation_time(UNIX_EPOCH + Duration::from_secs(secs))
            .unwrap()
            .sign_hash(&mut signer, hash.context().unwrap().for_signature(4))
            .unwrap()
    }

    #[test]
    fn sha1_only_on_old_self_signatures() {
        let p = StreamPolicy::new();
        let cr = HashAlgoSecurity::CollisionResistance;
        let old = 1_351_296_000; // 2012-10-27
        let new = 1_700_000_000; // 2023-11-14
        let sha1 = HashAlgorithm::SHA1;
        assert!(
            p.signature(&sig(SignatureType::PositiveCertification, sha1, old), cr)
                .is_ok()
        );
        assert!(
            p.signature(&sig(SignatureType::SubkeyBinding, sha1, old), cr)
                .is_ok()
        );
        assert!(
            p.signature(&sig(SignatureType::PositiveCertification, sha1, new), cr)
                .is_err()
        );
        assert!(
            p.signature(&sig(SignatureType::Text, sha1, old), cr)
                .is_err()
        );
        assert!(
            p.signature(&sig(SignatureType::Binary, sha1, old), cr)
                .is_err()
        );
        let sha512 = HashAlgorithm::SHA512;
        assert!(
            p.signature(&sig(SignatureType::Text, sha512, new), cr)
                .is_ok()
        );
    }
}
