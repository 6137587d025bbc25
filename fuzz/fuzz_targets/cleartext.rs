//! The cleartext-signature framing parser and the verifier must never panic: garbage fails
//! cleanly, and whenever both unwrap and verify succeed they agree on the payload.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use streamvault::openpgp::{self, Keyring};

fn keyring() -> &'static Keyring {
    static KR: OnceLock<Keyring> = OnceLock::new();
    KR.get_or_init(|| {
        Keyring::from_bytes(include_bytes!(
            "../../../shared/fixtures/real/keys/ubuntu-cloud-image-builder-7FF3F408476CF100.gpg"
        ))
        .expect("fixture keyring")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = openpgp::is_clearsigned(data);
    let unwrapped = openpgp::unwrap_cleartext(data);
    if let Ok(v) = openpgp::verify_cleartext(keyring(), data) {
        assert_eq!(unwrapped.ok().as_deref(), Some(v.payload.as_slice()));
    }
});
