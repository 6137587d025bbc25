//! Index/products parser + inherited-field expansion + selection must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use streamvault::streams::{self, Document, Filters};

fuzz_target!(|data: &[u8]| {
    if let Ok(Document::Products(p)) = streams::parse("fuzz", data) {
        // Flatten every item (expansion), then run a selection over them.
        let n = p.items().filter(|i| i.path.is_some()).count();
        let filters = Filters::parse_all(&["arch~.".to_string()]).expect("static filter");
        let sel = streams::select(&p, &filters);
        assert!(sel.iter().map(|s| s.versions.len()).sum::<usize>() <= p.version_count());
        let _ = n;
    }
});
