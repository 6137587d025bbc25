//! The cleartext-signature framing parser must never panic, and verification of garbage must
//! fail cleanly.
#![no_main]
use libfuzzer_sys::fuzz_target;
use streamvault::openpgp;

fuzz_target!(|data: &[u8]| {
    let _ = openpgp::is_clearsigned(data);
    let _ = openpgp::unwrap_cleartext(data);
});
