//! Products expansion under a memory limit: `_aliases` merging and inherited fields must never
//! panic nor allocate without bound. The input is parsed as is, and also spliced in as the
//! `_aliases` table of a fixed tree whose objects name aliases `a`, `b` and `c` at every level,
//! so that most runs exercise the merge (and its 64x budget). Run with `-malloc_limit_mb`
//! (scripts/fuzz.sh does): an allocation beyond the limit is a crash.
#![no_main]
use libfuzzer_sys::fuzz_target;
use streamvault::streams::{self, Document, Filters};

const TREE: &str = r#""products":{"p":{"a":"x","versions":{"v":{"b":"y","items":{
    "i":{"c":"z","path":"f/i"},"j":{"a":"y","b":"x","list":[{"c":"x"},{"a":"z"}]}}}}},
    "q":{"c":"x","versions":{"w":{"items":{"k":{"a":"x"}}}}}}"#;

fn exercise(doc: &[u8]) {
    if let Ok(Document::Products(p)) = streams::parse("fuzz", doc) {
        let mut fields = 0usize;
        for it in p.items() {
            // Every inherited value is a borrow of the parsed document, never a copy.
            fields += it.fields().len();
            let _ = (it.get("a"), it.get("item_name"), it.size, it.path);
        }
        let _ = fields;
        let filters = Filters::parse_all(["a~."]).expect("static filter");
        let sel = streams::select(&p, &filters);
        assert!(sel.iter().map(|s| s.versions.len()).sum::<usize>() <= p.version_count());
    }
}

fuzz_target!(|data: &[u8]| {
    exercise(data);
    if let Ok(table) = std::str::from_utf8(data) {
        let doc = format!(
            r#"{{"format":"products:1.0","content_id":"c","_aliases":{table},{TREE}}}"#
        );
        exercise(doc.as_bytes());
    }
});
