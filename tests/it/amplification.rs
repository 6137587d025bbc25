//! Memory amplification (issue 8 item 4) through the real binary: a signed products document
//! whose `_aliases` would copy a 1 MiB entry 200 times (200 MiB out of ~1 MiB) is refused with
//! one line naming the document, no abort; a document whose items inherit a 1 MiB field syncs.

use crate::common::{Store, Upstream};
use streamvault::streamgen::V3_CONTENT_ID;

fn rewrite(up: &Upstream, f: impl FnOnce(&mut serde_json::Value)) {
    let json = up
        .current()
        .join(format!("streams/v1/{V3_CONTENT_ID}.json"));
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    f(&mut v);
    let text = serde_json::to_vec(&v).unwrap();
    std::fs::write(&json, &text).unwrap();
    std::fs::write(
        json.with_extension("sjson"),
        up.key.clearsign(&text).unwrap(),
    )
    .unwrap();
}

#[test]
fn an_alias_bomb_is_refused_with_one_line() {
    let up = Upstream::new();
    rewrite(&up, |v| {
        v["_aliases"] = serde_json::json!({"blob": {"big": {"junk": "x".repeat(1 << 20)}}});
        v["pad"] = serde_json::Value::Array(vec![serde_json::json!({"blob": "big"}); 200]);
    });
    let store = Store::new();
    store.add("maas", &up, &[]);
    let r = store.run(&["sync", "maas"]).fails();
    assert!(
        r.stderr.contains("would expand to more than")
            && r.stderr.contains("64 times its size")
            && r.stderr.contains(V3_CONTENT_ID),
        "{}",
        r.stderr
    );
    assert!(store.snapshots("maas").is_empty());
}

#[test]
fn a_large_inherited_field_is_shared_and_syncs() {
    let up = Upstream::new();
    rewrite(&up, |v| {
        for p in v["products"].as_object_mut().unwrap().values_mut() {
            p["blob"] = serde_json::Value::String("y".repeat(1 << 20));
        }
    });
    let store = Store::new();
    store.add("maas", &up, &[]);
    let r = store.sync_json("maas");
    assert!(r["items"].as_u64().unwrap() > 0, "{r}");
    store.check_invariants();
}
