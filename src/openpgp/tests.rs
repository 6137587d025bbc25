//! Cross-module tests of `openpgp`: the real Ubuntu fixtures, generated keys and documents, and
//! `gpgv`/`gpg` 2.2 as the reference implementation (skipped with a note when absent).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use sequoia_openpgp as openpgp;

use super::*;

const REAL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/real");
const UBUNTU_FPR: &str = "4A3CE3CD565D7EB5C810E2B97FF3F408476CF100";
const JUJU_FPR: &str = "D279259D4169F5843DBDD45CB8ADEEA9607AEAF0";

fn real(path: &str) -> Vec<u8> {
    std::fs::read(Path::new(REAL).join(path)).unwrap()
}

fn index() -> Vec<u8> {
    real("cloud-images-released-2016/streams/v1/index.sjson")
}

fn products() -> Vec<u8> {
    real("cloud-images-released-2016/streams/v1/com.ubuntu.cloud:released:download.sjson")
}

fn ubuntu_keyring() -> Keyring {
    Keyring::open(&Path::new(REAL).join("keys/ubuntu-cloud-image-builder-7FF3F408476CF100.gpg"))
        .unwrap()
}

/// Verifies and checks that `unwrap_cleartext` gives the very same bytes, and that sequoia's
/// own cleartext verifier (the reference, `verify::verify_csf`) reaches the same verdict with
/// the same payload and signer.
fn verify_both(keyring: &Keyring, doc: &[u8]) -> Result<Verified, Error> {
    let verified = verify_cleartext(keyring, doc);
    if let Ok(v) = &verified {
        assert_eq!(
            unwrap_cleartext(doc).unwrap(),
            v.payload,
            "unwrap != verified payload"
        );
    }
    let reference = verify::verify_csf(keyring, doc, &policy::StreamPolicy::new());
    match (&verified, &reference) {
        (Ok(v), Ok(r)) => assert_eq!(v, r, "verify != sequoia's cleartext verifier"),
        (Err(_), Err(_)) => {}
        (v, r) => panic!("verify: {v:?}, sequoia's cleartext verifier: {r:?}"),
    }
    // The fast path accepts only what sequoia's detached verifier accepts, with its signer.
    if let Ok((Some(fast), full)) =
        verify::fast_and_full(keyring, doc, &policy::StreamPolicy::new())
    {
        assert_eq!(full.ok().as_ref(), Some(&fast), "fast path accepted alone");
    }
    // Verify-and-read gives the same verdict, signer, text and error.
    let with = verify_cleartext_with(keyring, doc, <[u8]>::to_vec);
    match (&verified, &with) {
        (Ok(v), Ok(w)) => assert_eq!((&v.payload, &v.signer), (&w.value, &w.signer)),
        (Err(v), Err(w)) => assert_eq!(chain(v), chain(w)),
        (v, w) => panic!("verify: {v:?}, verify_cleartext_with: {w:?}"),
    }
    verified
}

/// An error and its causes, one line (no backtrace).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(&format!(": {c}"));
        cause = c.source();
    }
    out
}

/// Whether the fast path alone accepts `doc` (the real documents must not fall back to the
/// slow line-by-line hashing).
fn fast_accepts(keyring: &Keyring, doc: &[u8]) -> bool {
    matches!(
        verify::fast_and_full(keyring, doc, &policy::StreamPolicy::new()),
        Ok((Some(_), Ok(_)))
    )
}

/// The text a sequoia clearsignature covers: `text` with trailing blanks cut from each line.
fn signed_text(text: &str) -> Vec<u8> {
    text.split_inclusive('\n')
        .flat_map(|l| {
            let (body, eol) = l.strip_suffix('\n').map_or((l, ""), |b| (b, "\n"));
            [
                body.trim_end_matches([' ', '\t']).as_bytes(),
                eol.as_bytes(),
            ]
            .concat()
        })
        .collect()
}

const TRICKY: &str = "-leading dash\n- dash space\n-----BEGIN PGP SIGNATURE-----\n\
From the start\nFrom: header-like\ntrailing spaces   \ntrailing tab\t\n\
non-ASCII: Grüße, 東京, ✓\n\n  indented\nlast line without newline";

#[test]
fn real_documents_verify_with_binary_and_armored_keyring() {
    let binary = ubuntu_keyring();
    let armored = Keyring::open(
        &Path::new(REAL).join("keys/ubuntu-cloud-image-builder-7FF3F408476CF100.asc"),
    )
    .unwrap();
    assert_eq!(binary.fingerprints(), vec![UBUNTU_FPR.to_owned()]);
    assert_eq!(armored.fingerprints(), vec![UBUNTU_FPR.to_owned()]);

    let index = index();
    let products = products();
    for keyring in [&binary, &armored] {
        let v = verify_both(keyring, &index).unwrap();
        assert_eq!(v.signer, UBUNTU_FPR);
        assert_eq!(v.payload.len(), 16_076);
        assert!(fast_accepts(keyring, &index) && fast_accepts(keyring, &products));
        let json: serde_json::Value = serde_json::from_slice(&v.payload).unwrap();
        assert!(json["index"]["com.ubuntu.cloud:released:download"].is_object());

        let started = Instant::now();
        let v = verify_cleartext(keyring, &products).unwrap();
        let verify_time = started.elapsed();
        let started = Instant::now();
        let unwrapped = unwrap_cleartext(&products).unwrap();
        let unwrap_time = started.elapsed();
        println!(
            "timing (debug build): verify {} bytes: {verify_time:?}, unwrap: {unwrap_time:?}",
            products.len()
        );
        assert_eq!(unwrapped, v.payload);
        assert_eq!(v.signer, UBUNTU_FPR);
        let json: serde_json::Value = serde_json::from_slice(&v.payload).unwrap();
        assert!(json["products"].as_object().unwrap().len() > 50);
    }
}

#[test]
fn keyring_load_timing() {
    let bytes = real("keys/ubuntu-cloud-image-builder-7FF3F408476CF100.gpg");
    let started = Instant::now();
    for _ in 0..10 {
        Keyring::from_bytes(&bytes).unwrap();
    }
    println!(
        "timing (debug build): keyring load {:?}",
        started.elapsed() / 10
    );
}

#[test]
fn the_ubuntu_key_needs_the_sha1_self_signature_exception() {
    let strict = openpgp::policy::StandardPolicy::new();
    match verify::verify(&ubuntu_keyring(), &index(), &strict) {
        Err(Error::KeyRejected { signer, .. }) => assert_eq!(signer, UBUNTU_FPR),
        other => panic!("expected the strict policy to reject the key, got {other:?}"),
    }
}

#[test]
fn unknown_signer_is_named() {
    let doc = real("negative/index-2016-minus-joyent-signed-by-juju-test-key.sjson");
    let err = verify_both(&ubuntu_keyring(), &doc).unwrap_err();
    match &err {
        Error::UnknownKey { issuers } => {
            assert!(
                issuers.iter().any(|i| JUJU_FPR.ends_with(i.as_str())),
                "{issuers:?}"
            );
        }
        other => panic!("expected an unknown key, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("B8ADEEA9607AEAF0"), "{msg}");
    println!("{msg}");
    // --no-verify still reads it.
    let payload = unwrap_cleartext(&doc).unwrap();
    serde_json::from_slice::<serde_json::Value>(&payload).unwrap();
}

#[test]
fn one_byte_tamper_in_the_body_is_a_bad_signature() {
    let mut doc = index();
    let at = doc
        .windows(6)
        .position(|w| w == b"\"2016")
        .map(|p| p + 4)
        .or_else(|| doc.iter().position(|&b| b == b'7'))
        .unwrap();
    doc[at] = if doc[at] == b'6' { b'7' } else { b'6' };
    match verify_both(&ubuntu_keyring(), &doc) {
        Err(e @ Error::BadSignature { .. }) => {
            assert_eq!(e.to_string(), format!("bad signature by `{UBUNTU_FPR}`"));
        }
        other => panic!("expected a bad signature, got {other:?}"),
    }
    // Whitespace at line ends and dash-escaping do not change what is signed.
    let doc = String::from_utf8(index()).unwrap();
    let spaced = doc.replacen("\"index\": {\n", "\"index\": {  \t \n", 1);
    let escaped = spaced.replacen("\n {\n", "\n- {\n", 1);
    assert_ne!(escaped, doc);
    let v = verify_both(&ubuntu_keyring(), escaped.as_bytes()).unwrap();
    assert_eq!(v.payload.len(), 16_076);
}

#[test]
fn tampered_signature_block_fails() {
    let doc = index();
    let text = String::from_utf8(doc.clone()).unwrap();
    let begin = text.find("-----BEGIN PGP SIGNATURE-----").unwrap();
    let first_b64 = text[begin..].find("\n\n").unwrap() + begin + 2;
    let end = text.find("-----END PGP SIGNATURE-----").unwrap();
    let crc = text[..end - 1].rfind('\n').unwrap() + 1;
    let keyring = ubuntu_keyring();
    // The RSA signature value fills the last base64 lines before the CRC: any change is fatal.
    for at in (crc - 300..crc - 1).step_by(7) {
        let mut d = doc.clone();
        d[at] = if d[at] == b'A' { b'B' } else { b'A' };
        assert!(
            verify_both(&keyring, &d).is_err(),
            "tamper at {at} accepted"
        );
    }
    // Elsewhere in the block some bytes are not covered (CRC, unhashed issuer subpacket):
    // never a panic, and whatever verifies still yields the unchanged payload.
    let mut kinds = std::collections::BTreeMap::new();
    for at in first_b64..end {
        if !doc[at].is_ascii_alphanumeric() {
            continue;
        }
        let mut d = doc.clone();
        d[at] = if d[at] == b'A' { b'B' } else { b'A' };
        let kind = match verify_both(&keyring, &d) {
            Ok(v) => {
                assert_eq!(v.payload.len(), 16_076);
                "still valid".to_owned()
            }
            Err(e) => e.to_string(),
        };
        *kinds.entry(kind).or_insert(0) += 1;
    }
    println!("one-byte changes in the signature block: {kinds:#?}");
    // The armour CRC (`=xxxx`) is not checked: the signature is.
    let mut d = doc.clone();
    d[crc + 2] = if d[crc + 2] == b'A' { b'B' } else { b'A' };
    assert!(verify_both(&keyring, &d).is_ok());
    // The signature armor header ("Version: GnuPG v1.4.11") may change: it is not signed.
    let v = verify_both(
        &keyring,
        &text.replace("GnuPG v1.4.11", "anything").into_bytes(),
    );
    assert!(v.is_ok());
}

#[test]
fn truncated_empty_and_garbage_input_fail_without_panicking() {
    let keyring = ubuntu_keyring();
    let doc = index();
    for cut in [
        0,
        1,
        20,
        35,
        36,
        50,
        8_000,
        doc.len() - 900,
        doc.len() - 400,
        doc.len() - 30,
    ] {
        assert!(verify_both(&keyring, &doc[..cut]).is_err(), "cut at {cut}");
        assert!(unwrap_cleartext(&doc[..cut]).is_err(), "cut at {cut}");
    }
    // Only the final newline missing: still a complete document.
    assert!(verify_both(&keyring, &doc[..doc.len() - 1]).is_ok());
    for garbage in [
        &b""[..],
        b"{}",
        b"\xEF\xBB\xBF-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n{}\n",
        b"-----BEGIN PGP SIGNED MESSAGE-----",
        b"-----BEGIN PGP SIGNED MESSAGE-----\n\n\n-----BEGIN PGP SIGNATURE-----\n\n-----END PGP SIGNATURE-----\n",
        b"-----BEGIN PGP SIGNED MESSAGE-----\n\nx\n-----BEGIN PGP SIGNATURE-----\n\n!!!!\n-----END PGP SIGNATURE-----\n",
        b"\x00\xFF\x99\x01",
    ] {
        let err = verify_both(&keyring, garbage).unwrap_err();
        println!("{:?} -> {err}", String::from_utf8_lossy(&garbage[..garbage.len().min(20)]));
    }
    assert!(matches!(
        verify_cleartext(&keyring, b""),
        Err(Error::NotClearsigned)
    ));
    assert!(!is_clearsigned(
        b"\xEF\xBB\xBF-----BEGIN PGP SIGNED MESSAGE-----\n"
    ));
    assert!(is_clearsigned(&doc));
}

#[test]
fn empty_signature_block_is_no_signature() {
    let key = SigningKey::generate("x <x@example.org>").unwrap();
    let doc = b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nx\n\
                -----BEGIN PGP SIGNATURE-----\n\n-----END PGP SIGNATURE-----\n";
    let err = verify_both(&key.keyring(), doc).unwrap_err();
    println!("empty signature block -> {err:?}");
    assert!(matches!(
        err,
        Error::NoSignature | Error::SignatureBlock { .. }
    ));
}

#[test]
fn random_mutations_never_panic_and_never_split_the_payload() {
    let keyring = ubuntu_keyring();
    let key = SigningKey::generate("fuzz").unwrap();
    let keyring = keyring.merge(key.keyring());
    let small = key.clearsign(TRICKY.as_bytes()).unwrap();
    let mut rng = fastrand::Rng::with_seed(42);
    let mut accepted = 0;
    for round in 0..400 {
        let mut d = if round % 4 == 0 {
            index()
        } else {
            small.clone()
        };
        for _ in 0..rng.usize(1..3) {
            let i = rng.usize(..d.len());
            match rng.u8(..4) {
                0 => d[i] = rng.u8(..),
                1 => {
                    d.remove(i);
                }
                2 => d.insert(i, *rng.choice(b"-\r\n \t:=\xFF".iter()).unwrap()),
                _ => d.truncate(i),
            }
        }
        if verify_both(&keyring, &d).is_ok() {
            accepted += 1;
        }
        let _ = unwrap_cleartext(&d);
    }
    println!("random mutations: {accepted} of 400 still verify (whitespace-only changes)");
}

#[test]
fn keyring_with_two_certificates() {
    let key = SigningKey::generate("Stream Test <test@example.org>").unwrap();
    let generated_doc = key.clearsign(b"{\"x\": 1}\n").unwrap();
    let ubuntu_bin = real("keys/ubuntu-cloud-image-builder-7FF3F408476CF100.gpg");
    let ubuntu_asc = real("keys/ubuntu-cloud-image-builder-7FF3F408476CF100.asc");
    let binary = [ubuntu_bin, key.public_keyring_binary().unwrap()].concat();
    let armored = [ubuntu_asc, key.public_keyring_armored().unwrap()].concat();
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [("two.gpg", binary), ("two.asc", armored)] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let keyring = Keyring::open(&path).unwrap();
        assert_eq!(
            keyring.fingerprints(),
            vec![UBUNTU_FPR.to_owned(), key.fingerprint()]
        );
        assert_eq!(verify_both(&keyring, &index()).unwrap().signer, UBUNTU_FPR);
        assert_eq!(
            verify_both(&keyring, &generated_doc).unwrap().signer,
            key.fingerprint()
        );
    }
    // The same certificate twice is merged.
    let twice = [
        key.public_keyring_binary().unwrap(),
        key.public_keyring_binary().unwrap(),
    ]
    .concat();
    assert_eq!(Keyring::from_bytes(&twice).unwrap().fingerprints().len(), 1);
}

#[test]
fn keyring_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.gpg");
    let err = Keyring::open(&missing).unwrap_err();
    assert!(matches!(err, Error::KeyringUnreadable { .. }));
    assert_eq!(
        err.to_string(),
        format!("cannot read keyring `{}`", missing.display())
    );

    let garbage = dir.path().join("garbage.gpg");
    std::fs::write(&garbage, b"\x99\x01\x02 not a key at all").unwrap();
    let err = Keyring::open(&garbage).unwrap_err();
    assert!(
        matches!(err, Error::KeyringInvalid { path: Some(_), .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("invalid keyring `{}`", garbage.display())
    );
    assert!(std::error::Error::source(&err).is_some());

    let empty = dir.path().join("empty.gpg");
    std::fs::write(&empty, b"").unwrap();
    let err = Keyring::open(&empty).unwrap_err();
    println!("{err}");
    assert!(matches!(
        err,
        Error::KeyringEmpty { path: Some(_) } | Error::KeyringInvalid { path: Some(_), .. }
    ));

    assert!(Keyring::from_bytes(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n").is_err());
    assert!(Keyring::from_bytes(&index()).is_err());
}

#[test]
fn generate_clearsign_verify_round_trip() {
    let key = SigningKey::generate("Stream Publisher <publisher@example.org>").unwrap();
    assert_eq!(
        key.user_id().as_deref(),
        Some("Stream Publisher <publisher@example.org>")
    );
    assert_eq!(key.fingerprint().len(), 40);
    let doc = key.clearsign(TRICKY.as_bytes()).unwrap();
    let text = String::from_utf8(doc.clone()).unwrap();
    assert!(
        text.starts_with("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n"),
        "{text}"
    );
    assert!(text.contains("\n- -leading dash\n"), "{text}");
    let v = verify_both(&key.keyring(), &doc).unwrap();
    assert_eq!(v.signer, key.fingerprint());
    assert_eq!(v.payload, signed_text(TRICKY));

    // Secret key round trip: the reloaded key signs documents the original's keyring accepts.
    let secret = key.to_armored_secret().unwrap();
    assert!(secret.starts_with(b"-----BEGIN PGP PRIVATE KEY BLOCK-----"));
    let reloaded = SigningKey::from_bytes(&secret).unwrap();
    assert_eq!(reloaded.fingerprint(), key.fingerprint());
    assert!(!format!("{reloaded:?}").contains("secret"));
    let doc = reloaded.clearsign(b"{}").unwrap();
    assert_eq!(verify_both(&key.keyring(), &doc).unwrap().payload, b"{}");
    let doc = reloaded.clearsign(b"{}\n").unwrap();
    assert_eq!(verify_both(&key.keyring(), &doc).unwrap().payload, b"{}\n");

    // Empty text.
    let doc = key.clearsign(b"").unwrap();
    let v = verify_both(&key.keyring(), &doc).unwrap();
    println!(
        "clearsign(\"\") payload: {:?}",
        String::from_utf8_lossy(&v.payload)
    );

    // A key from a keyring it is not in.
    let other = SigningKey::generate("other").unwrap();
    match verify_both(&other.keyring(), &doc) {
        Err(Error::UnknownKey { issuers }) => assert_eq!(issuers.len(), 1),
        r => panic!("{r:?}"),
    }
}

#[test]
fn signing_key_errors() {
    assert!(matches!(
        SigningKey::from_bytes(b"junk"),
        Err(Error::SecretKeyInvalid { .. })
    ));
    let key = SigningKey::generate("k").unwrap();
    let public = key.public_keyring_armored().unwrap();
    let err = SigningKey::from_bytes(&public).unwrap_err();
    assert!(matches!(err, Error::NoSigningKey { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "key `{}` has no usable unencrypted secret signing key",
            key.fingerprint()
        )
    );
}

/// Rewrites a signed document: CRLF endings, trailing blanks, extra armor headers.
fn variants(doc: &str) -> Vec<String> {
    let (head, rest) = doc.split_once("\n\n").unwrap();
    let (body, sig) = rest.rsplit_once("-----BEGIN PGP SIGNATURE-----\n").unwrap();
    let crlf = doc.replace('\n', "\r\n");
    let blanks: String = body
        .split_inclusive('\n')
        .map(|l| l.replace('\n', " \t  \n"))
        .collect();
    vec![
        crlf.clone(),
        format!("{head}\n\n{blanks}-----BEGIN PGP SIGNATURE-----\n{sig}"),
        format!(
            "{head}\nComment: a second header\nHash: SHA256, SHA512\n\n{body}\
             -----BEGIN PGP SIGNATURE-----\nComment: in the signature block\n{sig}"
        ),
        // CRLF on the text only.
        format!(
            "{head}\n\n{}-----BEGIN PGP SIGNATURE-----\n{sig}",
            body.replace('\n', "\r\n")
        ),
        // No armor header at all, blanks on the empty line and after the end.
        format!(
            "-----BEGIN PGP SIGNED MESSAGE-----\n \t\n{body}-----BEGIN PGP SIGNATURE-----\n{sig}\n\n"
        ),
    ]
}

#[test]
fn rewritten_documents_verify_with_the_same_payload_as_unwrap() {
    let key = SigningKey::generate("variants").unwrap();
    let keyring = key.keyring();
    for text in [TRICKY, "{\n \"a\": \"b\"\n}\n", "- \n-\n--\n\n\n"] {
        let doc = String::from_utf8(key.clearsign(text.as_bytes()).unwrap()).unwrap();
        let base = verify_both(&keyring, doc.as_bytes()).unwrap().payload;
        for (i, variant) in variants(&doc).into_iter().enumerate() {
            let v = verify_both(&keyring, variant.as_bytes())
                .unwrap_or_else(|e| panic!("variant {i} of {text:?}: {e}\n{variant}"));
            let expected = if i == 0 || i == 3 {
                String::from_utf8(base.clone())
                    .unwrap()
                    .replace('\n', "\r\n")
                    .into_bytes()
            } else {
                base.clone()
            };
            assert_eq!(v.payload, expected, "variant {i}");
        }
    }
    // The real index with CRLF endings.
    let crlf = String::from_utf8(index()).unwrap().replace('\n', "\r\n");
    let v = verify_both(&ubuntu_keyring(), crlf.as_bytes()).unwrap();
    assert_eq!(
        v.payload.len(),
        16_076 + v.payload.iter().filter(|&&b| b == b'\n').count()
    );
}

#[test]
fn hash_header_must_announce_the_signature_hash() {
    let key = SigningKey::generate("hash").unwrap();
    let doc = String::from_utf8(key.clearsign(b"{}\n").unwrap()).unwrap();
    let lying = doc.replacen("Hash: SHA512\n", "Hash: SHA256\n", 1);
    let err = verify_both(&key.keyring(), lying.as_bytes()).unwrap_err();
    assert!(matches!(err, Error::HashNotAnnounced { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "the signature by `{}` uses SHA512, which the `Hash` armor header does not announce",
            key.fingerprint()
        )
    );
    // gpgv agrees.
    if let Some((ok, stderr)) = gpgv(&key.public_keyring_binary().unwrap(), lying.as_bytes()) {
        assert!(!ok, "gpgv accepted it:\n{stderr}");
    }
    let listed = doc.replacen("Hash: SHA512\n", "Hash: SHA1,sha512\n", 1);
    assert!(verify_both(&key.keyring(), listed.as_bytes()).is_ok());
}

#[test]
fn several_signatures_any_valid_one_from_the_keyring_suffices() {
    use openpgp::serialize::stream::{Message, Signer};
    use std::io::Write as _;
    let a = SigningKey::generate("a").unwrap();
    let b = SigningKey::generate("b").unwrap();
    let mut doc = Vec::new();
    {
        let mut signer = Signer::new(Message::new(&mut doc), a.keypair().unwrap())
            .unwrap()
            .add_signer(b.keypair().unwrap())
            .unwrap()
            .cleartext()
            .build()
            .unwrap();
        signer.write_all(b"two signatures\n").unwrap();
        signer.finalize().unwrap();
    }
    assert_eq!(
        verify_both(&a.keyring(), &doc).unwrap().signer,
        a.fingerprint()
    );
    assert_eq!(
        verify_both(&b.keyring(), &doc).unwrap().signer,
        b.fingerprint()
    );
    let stranger = SigningKey::generate("c").unwrap();
    match verify_both(&stranger.keyring(), &doc) {
        Err(Error::UnknownKey { issuers }) => assert_eq!(issuers.len(), 2),
        r => panic!("{r:?}"),
    }
}

/// A throw-away GnuPG home; `None` (with a note) when `tool` is not installed.
fn gnupg_home(tool: &str) -> Option<tempfile::TempDir> {
    if Command::new(tool).arg("--version").output().is_err() {
        println!("note: `{tool}` not found, skipping the comparison with it");
        return None;
    }
    let dir = tempfile::Builder::new().prefix("sv-gpg").tempdir().unwrap();
    let mut perms = std::fs::metadata(dir.path()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o700);
    std::fs::set_permissions(dir.path(), perms).unwrap();
    Some(dir)
}

/// Runs `gpgv --keyring=<binary keyring>` on `doc`; `None` when gpgv is absent.
fn gpgv(keyring: &[u8], doc: &[u8]) -> Option<(bool, String)> {
    let home = gnupg_home("gpgv")?;
    let keyring_path = home.path().join("keyring.gpg");
    let doc_path = home.path().join("doc.sjson");
    std::fs::write(&keyring_path, keyring).unwrap();
    std::fs::write(&doc_path, doc).unwrap();
    let out = Command::new("gpgv")
        .env("GNUPGHOME", home.path())
        .arg("--homedir")
        .arg(home.path())
        .arg(format!("--keyring={}", keyring_path.display()))
        .arg(&doc_path)
        .output()
        .unwrap();
    Some((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn gpgv_accepts_what_we_sign() {
    let key = SigningKey::generate("Stream Publisher <publisher@example.org>").unwrap();
    let keyring = key.public_keyring_binary().unwrap();
    let doc = key.clearsign(TRICKY.as_bytes()).unwrap();
    let Some((ok, stderr)) = gpgv(&keyring, &doc) else {
        return;
    };
    assert!(ok, "gpgv refused our document:\n{stderr}");
    assert!(stderr.contains("Good signature"), "{stderr}");
    // ... and it is really checking.
    let tampered = String::from_utf8(doc.clone())
        .unwrap()
        .replace("Grüße", "Gruße");
    let (ok, _) = gpgv(&keyring, tampered.as_bytes()).unwrap();
    assert!(!ok, "gpgv accepted a tampered document");
    assert!(verify_both(&key.keyring(), tampered.as_bytes()).is_err());
    // Our verifier and gpgv agree on the real documents too.
    let ubuntu = real("keys/ubuntu-cloud-image-builder-7FF3F408476CF100.gpg");
    assert!(gpgv(&ubuntu, &index()).unwrap().0);
    let negative = real("negative/index-2016-minus-joyent-signed-by-juju-test-key.sjson");
    assert!(!gpgv(&ubuntu, &negative).unwrap().0);
}

#[test]
fn we_accept_what_gpg_signs() {
    let Some(home) = gnupg_home("gpg") else {
        return;
    };
    let key = SigningKey::generate("Gpg Signer <gpg@example.org>").unwrap();
    let secret = home.path().join("secret.asc");
    let input = home.path().join("in.txt");
    let output = home.path().join("out.asc");
    std::fs::write(&secret, key.to_armored_secret().unwrap()).unwrap();
    std::fs::write(&input, TRICKY).unwrap();
    let gpg = |args: &[&str]| {
        Command::new("gpg")
            .env("GNUPGHOME", home.path())
            .arg("--homedir")
            .arg(home.path())
            .args([
                "--batch",
                "--yes",
                "--no-tty",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args)
            .output()
            .unwrap()
    };
    let import = gpg(&["--import", secret.to_str().unwrap()]);
    let sign = gpg(&[
        "--local-user",
        &key.fingerprint(),
        "--digest-algo",
        "SHA256",
        "--output",
        output.to_str().unwrap(),
        "--clearsign",
        input.to_str().unwrap(),
    ]);
    // Stop the agent this test started in its own home.
    let _ = Command::new("gpgconf")
        .arg("--homedir")
        .arg(home.path())
        .args(["--kill", "gpg-agent"])
        .output();
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    assert!(
        sign.status.success(),
        "{}",
        String::from_utf8_lossy(&sign.stderr)
    );
    let doc = std::fs::read(&output).unwrap();
    let text = String::from_utf8_lossy(&doc);
    assert!(text.contains("Hash: SHA256\n"), "{text}");
    println!("gpg's clearsigned document:\n{text}");
    let v = verify_both(&key.keyring(), &doc).unwrap();
    assert_eq!(v.signer, key.fingerprint());
    // The same text as sequoia signs, although gpg also dash-escapes `From ` lines.
    let expected = signed_text(TRICKY);
    assert_eq!(
        String::from_utf8_lossy(&v.payload),
        String::from_utf8_lossy(&expected)
    );
}

#[test]
fn error_messages_follow_the_style() {
    let samples = [
        Error::NotClearsigned.to_string(),
        Error::Framing {
            line: 3,
            problem: "x",
        }
        .to_string(),
        Error::NoSignature.to_string(),
        Error::UnknownKey {
            issuers: vec![JUJU_FPR.to_owned()],
        }
        .to_string(),
        Error::UnknownKey { issuers: vec![] }.to_string(),
        Error::KeyringEmpty { path: None }.to_string(),
    ];
    for msg in samples {
        assert!(msg.starts_with(|c: char| c.is_lowercase()), "{msg}");
        assert!(!msg.ends_with('.'), "{msg}");
    }
    assert_eq!(
        Error::UnknownKey {
            issuers: vec![JUJU_FPR.to_owned()]
        }
        .to_string(),
        format!("signed only by keys not in the keyring: `{JUJU_FPR}`")
    );
}

#[test]
fn documents_larger_than_the_verifier_buffer() {
    // sequoia's verifier buffers 25 MiB before it streams; cross that line once.
    let line =
        "  \"sha256\": \"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\n";
    let text = line.repeat(27 * 1024 * 1024 / line.len());
    let key = SigningKey::generate("big").unwrap();
    let started = Instant::now();
    let doc = key.clearsign(text.as_bytes()).unwrap();
    let signed = started.elapsed();
    let started = Instant::now();
    let v = verify_both(&key.keyring(), &doc).unwrap();
    println!(
        "timing (debug build): {} MB: clearsign {signed:?}, verify + unwrap {:?}",
        doc.len() >> 20,
        started.elapsed()
    );
    assert_eq!(v.payload, text.as_bytes());
    let tampered = String::from_utf8(doc).unwrap().replacen("0123", "0124", 1);
    assert!(matches!(
        verify_both(&key.keyring(), tampered.as_bytes()),
        Err(Error::BadSignature { .. })
    ));
}

/// The text a clearsignature covers, with either line ending: each line's trailing spaces and
/// tabs cut (its `\n` or `\r\n` kept), the final line ending dropped.
fn canonical_payload(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in text.split_inclusive(|&b| b == b'\n') {
        let (body, eol) = match line.strip_suffix(b"\n") {
            Some(b) => match b.strip_suffix(b"\r") {
                Some(b) => (b, &b"\r\n"[..]),
                None => (b, &b"\n"[..]),
            },
            None => (line, &b""[..]),
        };
        let end = body
            .iter()
            .rposition(|&c| c != b' ' && c != b'\t')
            .map_or(0, |i| i + 1);
        out.extend_from_slice(&body[..end]);
        out.extend_from_slice(eol);
    }
    // The final line ending separates the text from the signature: not signed.
    if text.ends_with(b"\r\n") {
        out.truncate(out.len() - 2);
    } else if text.ends_with(b"\n") {
        out.pop();
    }
    out
}

/// Documents GnuPG 2.2 clearsigned (`gpg --digest-algo SHA512 --clearsign` with an Ed25519 key
/// made by `gpg --quick-gen-key … ed25519 sign never`, public key `testdata/canon-key.gpg`), each
/// checked "Good signature" by `gpgv` when it was made: trailing spaces and tabs, `- ` escaped
/// lines (gpg escapes every line starting with `-` or `From `), CRLF and mixed line endings, a
/// last line with and without a newline. A mistake in the text we hand to the signature check
/// (a blank not cut, an escape not undone, a line ending hashed wrong, the final newline kept)
/// makes one of them fail.
const CANON: [(&str, &[u8], &[u8]); 4] = [
    (
        "lf-nonl",
        include_bytes!("testdata/canon-lf-nonl.asc"),
        include_bytes!("testdata/canon-lf-nonl.txt"),
    ),
    (
        "lf-nl",
        include_bytes!("testdata/canon-lf-nl.asc"),
        include_bytes!("testdata/canon-lf-nl.txt"),
    ),
    (
        "crlf-nl",
        include_bytes!("testdata/canon-crlf-nl.asc"),
        include_bytes!("testdata/canon-crlf-nl.txt"),
    ),
    (
        "mixed-nonl",
        include_bytes!("testdata/canon-mixed-nonl.asc"),
        include_bytes!("testdata/canon-mixed-nonl.txt"),
    ),
];

#[test]
fn gpg_canonicalisation_fixtures() {
    let key = include_bytes!("testdata/canon-key.gpg");
    let keyring = Keyring::from_bytes(key).unwrap();
    for (name, doc, input) in CANON {
        let v = verify_both(&keyring, doc).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            fast_accepts(&keyring, doc),
            "{name}: not accepted by the fast path"
        );
        assert_eq!(
            String::from_utf8_lossy(&v.payload),
            String::from_utf8_lossy(&canonical_payload(input)),
            "{name}"
        );
        assert_eq!(v.signer, keyring.fingerprints()[0]);
        if let Some((ok, stderr)) = gpgv(key, doc) {
            assert!(ok, "{name}: gpgv refuses the fixture:\n{stderr}");
        }
        let text = String::from_utf8(doc.to_vec()).unwrap();
        let (head, rest) = text.split_once("\n\n").unwrap();
        let (body, sig) = rest.rsplit_once("-----BEGIN PGP SIGNATURE-----").unwrap();
        let with_body = |b: &str| format!("{head}\n\n{b}-----BEGIN PGP SIGNATURE-----{sig}");
        // Still the same signed text: more blanks at line ends, LF <-> CRLF, more escapes.
        let same = [
            with_body(
                &body
                    .split_inclusive('\n')
                    .map(|l| match (l.strip_suffix("\r\n"), l.strip_suffix('\n')) {
                        (Some(x), _) => format!("{x} \t\r\n"),
                        (None, Some(x)) => format!("{x} \t\n"),
                        _ => l.to_owned(),
                    })
                    .collect::<String>(),
            ),
            with_body(&body.replace("\r\n", "\n")),
            with_body(&body.replace("\r\n", "\n").replace('\n', "\r\n")),
            with_body(
                &body
                    .split_inclusive('\n')
                    .map(|l| match l.starts_with('-') {
                        true => l.to_owned(),
                        false => format!("- {l}"),
                    })
                    .collect::<String>(),
            ),
        ];
        for (i, d) in same.iter().enumerate() {
            let v = verify_both(&keyring, d.as_bytes())
                .unwrap_or_else(|e| panic!("{name}: same text {i}: {e}"));
            assert!(
                fast_accepts(&keyring, d.as_bytes()),
                "{name}: same text {i}"
            );
            let lf = |p: &[u8]| String::from_utf8_lossy(p).replace("\r\n", "\n");
            assert_eq!(lf(&v.payload), lf(&canonical_payload(input)), "{name} {i}");
            if let Some((ok, stderr)) = gpgv(key, d.as_bytes()) {
                assert!(ok, "{name}: same text {i}: gpgv refuses it:\n{stderr}");
            }
        }
        // Another signed text: a letter changed, an escape undone twice, an empty last line,
        // the first line's ending dropped.
        let first_eol = body.find('\n').unwrap();
        let cr = usize::from(body[..first_eol].ends_with('\r'));
        let other = [
            with_body(&body.replacen('a', "b", 1)),
            with_body(&body.replacen("- -", "", 1)),
            with_body(&format!("{body}\n")),
            with_body(&format!(
                "{}{}",
                &body[..first_eol - cr],
                &body[first_eol + 1..]
            )),
        ];
        for (i, d) in other.iter().enumerate() {
            if d.as_bytes() == doc {
                continue; // the change did not apply to this fixture
            }
            let err = verify_both(&keyring, d.as_bytes()).unwrap_err();
            assert!(
                matches!(err, Error::BadSignature { .. }),
                "{name}: other text {i}: {err:?}"
            );
            if let Some((ok, _)) = gpgv(key, d.as_bytes()) {
                assert!(!ok, "{name}: other text {i}: gpgv accepts it");
            }
        }
    }
}

/// The fast path's text-mode hashing (64 KiB blocks, every `\r\n`, lone `\r` and lone `\n`
/// hashed as `\r\n`) against sequoia's: detached text signatures over texts with every kind of
/// line break, lines longer than a block and breaks across block boundaries; the fast path must
/// reach sequoia's verdict on the text and on texts that differ by one byte or one break.
#[test]
fn text_mode_hashing_matches_sequoia_on_every_line_break() {
    use openpgp::packet::signature::SignatureBuilder;
    use openpgp::serialize::stream::{Message, Signer};
    use openpgp::types::SignatureType;
    use std::io::Write as _;
    let key = SigningKey::generate("text").unwrap();
    let keyring = key.keyring();
    let policy = policy::StreamPolicy::new();
    let long = "x".repeat(70_000);
    let blocks = "ab\r\n\r\rc\n\n\r".repeat(30_000);
    let texts = [
        String::new(),
        "a".to_owned(),
        "\r".to_owned(),
        "\n".to_owned(),
        "\r\n".to_owned(),
        "\n\r".to_owned(),
        "a\rb".to_owned(),
        "a\r\r\nb\n".to_owned(),
        "a\n\r\nb\r".to_owned(),
        format!("{long}\r\n{long}\r"),
        blocks,
    ];
    for (kind, typ) in [
        ("text", SignatureType::Text),
        ("binary", SignatureType::Binary),
    ] {
        for text in &texts {
            let mut sig = Vec::new();
            let mut signer = Signer::with_template(
                Message::new(&mut sig),
                key.keypair().unwrap(),
                SignatureBuilder::new(typ),
            )
            .unwrap()
            .detached()
            .build()
            .unwrap();
            signer.write_all(text.as_bytes()).unwrap();
            signer.finalize().unwrap();
            let short = &text[..text.len().min(12)];
            let verdicts = verify::detached_verdicts(&keyring, &sig, text.as_bytes(), &policy);
            assert_eq!(verdicts, (true, true), "{kind} {short:?}");
            let changed = [
                format!("{text}x"),
                format!("x{text}"),
                text.replace("\r\n", "\n"),
                text.replacen('\r', "\n", 1),
                text.replacen('\n', "\r", 1),
                text.replacen('\n', "", 1),
                text.replacen('\r', "\r\r", 1),
            ];
            for (i, other) in changed.iter().enumerate() {
                let (sequoia, fast) =
                    verify::detached_verdicts(&keyring, &sig, other.as_bytes(), &policy);
                assert_eq!(sequoia, fast, "{kind} {short:?}: change {i}");
                if typ == SignatureType::Binary && other != text {
                    assert!(!fast, "{kind} {short:?}: change {i}");
                }
            }
        }
    }
}

/// `verify_cleartext_with` runs the reader beside the check only for a well-framed document
/// with a signature by a usable key of the keyring: a stranger's document, a broken frame or
/// no signature at all are refused without reading their text; a bad signature by a keyring
/// key may be read, but its result is dropped and the error is `verify_cleartext`'s.
#[test]
fn the_reader_never_sees_a_strangers_document_and_its_result_needs_a_valid_signature() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let key = SigningKey::generate("reader").unwrap();
    let stranger = SigningKey::generate("stranger").unwrap();
    let keyring = key.keyring();
    let reads = AtomicUsize::new(0);
    let read = |text: &[u8]| {
        reads.fetch_add(1, Ordering::SeqCst);
        text.len()
    };
    let good = key.clearsign(b"{\"a\": 1}\n").unwrap();
    let v = verify_cleartext_with(&keyring, &good, read).unwrap();
    let whole = verify_cleartext(&keyring, &good).unwrap();
    assert_eq!((v.value, &v.signer), (whole.payload.len(), &whole.signer));
    assert_eq!(v.signer, key.fingerprint());
    assert_eq!(reads.swap(0, Ordering::SeqCst), 1);

    let strangers = stranger.clearsign(b"{\"a\": 1}\n").unwrap();
    let unframed = b"{\"a\": 1}\n".to_vec();
    let unsigned = b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nx\n\
                    -----BEGIN PGP SIGNATURE-----\n\n-----END PGP SIGNATURE-----\n"
        .to_vec();
    for doc in [strangers, unframed, unsigned] {
        let err = verify_cleartext_with(&keyring, &doc, read).unwrap_err();
        assert_eq!(
            chain(&err),
            chain(&verify_cleartext(&keyring, &doc).unwrap_err())
        );
        assert_eq!(reads.load(Ordering::SeqCst), 0, "{err}");
    }

    let tampered = String::from_utf8(good).unwrap().replacen("1}", "2}", 1);
    let err = verify_cleartext_with(&keyring, tampered.as_bytes(), read).unwrap_err();
    assert!(matches!(err, Error::BadSignature { .. }), "{err:?}");
}
