//! Parse (and, for `.sjson`, verify) one products document and select its items; print the
//! counts and the milliseconds. Used by scripts/mem-products.sh for peak RSS and speed figures
//! (run it under `/usr/bin/time -v`) and by scripts/bench-metadata.sh (`--repeat N`: the
//! verify + parse pass N times in one process, the minimum and median of each step printed:
//! on a loaded machine the minimum is the figure closest to a quiet one; see `repeated`);
//! never a timed test.
//!
//! Usage: parse_products FILE [--keyring KEYRING] [--repeat N] [FILTER…]

use std::time::{Duration, Instant};

use streamvault::openpgp::{self, Keyring};
use streamvault::streams::{self, Document, Filters};

type R<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> R<()> {
    let mut argv = std::env::args().skip(1);
    let file = argv
        .next()
        .ok_or("usage: parse_products FILE [--keyring K] [--repeat N] [FILTER…]")?;
    let mut keyring = None;
    let mut repeat = 1usize;
    let mut filters = Vec::new();
    while let Some(a) = argv.next() {
        if a == "--keyring" {
            keyring = Some(argv.next().ok_or("--keyring needs a file")?);
        } else if a == "--repeat" {
            repeat = argv.next().ok_or("--repeat needs a number")?.parse()?;
        } else {
            filters.push(a);
        }
    }
    let bytes = std::fs::read(&file)?;
    let ring = match &keyring {
        Some(k) => Some(Keyring::open(std::path::Path::new(k))?),
        None => None,
    };
    if repeat > 1 {
        return repeated(&file, &bytes, ring.as_ref(), repeat);
    }
    let t0 = Instant::now();
    let payload = match &ring {
        Some(ring) => openpgp::verify_cleartext(ring, &bytes)?.payload,
        None => bytes,
    };
    let t1 = Instant::now();
    let Document::Products(p) = streams::parse(&file, &payload)? else {
        return Err("not a products document".into());
    };
    drop(payload);
    let t2 = Instant::now();
    let filters = Filters::parse_all(&filters)?;
    let sel = streams::select(&p, &filters);
    let selected: usize = sel
        .iter()
        .flat_map(|s| &s.versions)
        .map(|v| v.items.len())
        .sum();
    let t3 = Instant::now();
    let ms = |a: Instant, b: Instant| b.duration_since(a).as_secs_f64() * 1000.0;
    println!(
        "{} items, {} selected; verify {:.1} ms, parse {:.1} ms, select {:.1} ms, total {:.1} ms",
        p.item_count(),
        selected,
        ms(t0, t1),
        ms(t1, t2),
        ms(t2, t3),
        ms(t0, t3)
    );
    Ok(())
}

/// `repeat` passes of verify (when a keyring is given) + parse; prints
/// `verify+parse min X ms median Y ms; verify min … median …; parse min … median …; one after
/// the other min … median …`. The first figure is `openpgp::verify_cleartext_with` (the
/// signature checked on a second thread while this one parses); then, in the same pass, verify
/// alone (`verify_cleartext`), parse alone, and their sum (verify, then parse).
fn repeated(file: &str, bytes: &[u8], ring: Option<&Keyring>, repeat: usize) -> R<()> {
    let (mut verify, mut parse, mut both, mut serial) = (vec![], vec![], vec![], vec![]);
    for _ in 0..repeat {
        let t0 = Instant::now();
        let doc = match ring {
            Some(ring) => {
                openpgp::verify_cleartext_with(ring, bytes, |p| streams::parse(file, p))?.value?
            }
            None => streams::parse(file, bytes)?,
        };
        both.push(t0.elapsed());
        drop(doc);
        let t0 = Instant::now();
        let verified;
        let payload = match ring {
            Some(ring) => {
                verified = openpgp::verify_cleartext(ring, bytes)?;
                &verified.payload
            }
            None => bytes,
        };
        let t1 = Instant::now();
        let doc = streams::parse(file, payload)?;
        let t2 = Instant::now();
        drop(doc);
        verify.push(t1 - t0);
        parse.push(t2 - t1);
        serial.push(t2 - t0);
    }
    let stats = |v: &mut Vec<Duration>| {
        v.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        (ms(v[0]), ms(v[v.len() / 2]))
    };
    let (b, v, p) = (stats(&mut both), stats(&mut verify), stats(&mut parse));
    let s = stats(&mut serial);
    println!(
        "verify+parse min {:.1} ms median {:.1} ms; verify min {:.1} median {:.1}; parse min {:.1} median {:.1}; one after the other min {:.1} median {:.1} ({repeat} runs)",
        b.0, b.1, v.0, v.1, p.0, p.1, s.0, s.1
    );
    Ok(())
}
