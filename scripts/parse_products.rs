//! Parse (and, for `.sjson`, verify) one products document and select its items; print the
//! counts and the milliseconds. Used by scripts/mem-products.sh for peak RSS and speed figures
//! (run it under `/usr/bin/time -v`); never a timed test.
//!
//! Usage: parse_products FILE [--keyring KEYRING] [FILTER…]

use std::time::Instant;

use streamvault::openpgp::{self, Keyring};
use streamvault::streams::{self, Document, Filters};

type R<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> R<()> {
    let mut argv = std::env::args().skip(1);
    let file = argv
        .next()
        .ok_or("usage: parse_products FILE [--keyring K] [FILTER…]")?;
    let mut keyring = None;
    let mut filters = Vec::new();
    while let Some(a) = argv.next() {
        if a == "--keyring" {
            keyring = Some(argv.next().ok_or("--keyring needs a file")?);
        } else {
            filters.push(a);
        }
    }
    let bytes = std::fs::read(&file)?;
    let t0 = Instant::now();
    let payload = match &keyring {
        Some(k) => {
            let ring = Keyring::open(std::path::Path::new(k))?;
            openpgp::verify_cleartext(&ring, &bytes)?.payload
        }
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
