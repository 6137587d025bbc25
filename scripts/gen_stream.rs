//! Test-stream generator for scripts (compat.sh, bench-compat.sh): the same generator the tests
//! and the demo use (`streamvault::streamgen`), signed in process.
//!
//! Usage: gen_stream OUT GENERATION --key SECRET.asc [--keyring PUBLIC.gpg] [--bulk P V F SIZE]
//! The secret key file is created on first use and reused afterwards, so that every generation
//! of a stream is signed by the same key; `--keyring` writes the binary public keyring (what
//! gpgv and MAAS take).

use std::path::PathBuf;

use streamvault::openpgp::SigningKey;
use streamvault::streamgen::{self, Bulk, StreamSpec};

type R<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> R<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let (Some(out), Some(generation)) = (argv.first(), argv.get(1)) else {
        return Err("usage: gen_stream OUT GENERATION --key SECRET.asc [--keyring PUBLIC.gpg] [--bulk P V F SIZE]".into());
    };
    let mut spec = StreamSpec::generation(generation.parse()?);
    let mut key_path: Option<PathBuf> = None;
    let mut keyring: Option<PathBuf> = None;
    let mut i = 2;
    while let Some(a) = argv.get(i) {
        match a.as_str() {
            "--key" => key_path = argv.get(i + 1).map(PathBuf::from),
            "--keyring" => keyring = argv.get(i + 1).map(PathBuf::from),
            "--bulk" => {
                let n = |k: usize| -> R<u64> {
                    Ok(argv.get(i + k).ok_or("--bulk needs 4 numbers")?.parse()?)
                };
                spec.bulk = Some(Bulk {
                    products: n(1)? as usize,
                    versions: n(2)? as usize,
                    files_per_version: n(3)? as usize,
                    file_size: n(4)?,
                });
                i += 3;
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
        i += 2;
    }
    let key_path = key_path.ok_or("--key SECRET.asc is required")?;
    let key = match std::fs::read(&key_path) {
        Ok(b) => SigningKey::from_bytes(&b)?,
        Err(_) => {
            let k = SigningKey::generate("streamvault test stream <test@example.invalid>")?;
            std::fs::write(&key_path, k.to_armored_secret()?)?;
            k
        }
    };
    if let Some(k) = keyring {
        std::fs::write(k, key.public_keyring_binary()?)?;
    }
    let sign = |b: &[u8]| key.clearsign(b).map_err(|e| e.to_string());
    let s = streamgen::generate(std::path::Path::new(out), &spec, Some(&sign))?;
    eprintln!(
        "generated {out}: generation {generation}, {} files, {} bytes",
        s.files, s.bytes
    );
    Ok(())
}
