//! `gc s3://…` against a real moto_server: content-hashed filtered documents, the grace period
//! (a retired publication's objects and a fresh stray stay), a dry run printing exactly the plan
//! the real run then executes, and the live index's closure surviving a collection with no grace.

use std::collections::BTreeSet;

use crate::common::s3tree::moto_with_snapshots;
use crate::common::{Moto, Store};

/// The streamvault command for a store, configured for moto.
pub(crate) fn sv(store: &Store, moto: &Moto, args: &[&str]) -> std::process::Output {
    store
        .cmd(args)
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "very-secret-key-9f2c")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap()
}

pub(crate) fn ok(o: &std::process::Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{text}");
    assert!(!text.contains("very-secret-key"), "{text}");
    text
}

pub(crate) fn json(o: &std::process::Output) -> serde_json::Value {
    let text = ok(o);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Every key the bucket's live index reaches (index, products documents, items), each checked
/// present with a GET.
fn live_closure(moto: &Moto, base: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let (st, body) = moto.http("GET", &format!("{base}/streams/v1/index.json"));
    assert_eq!(st, 200);
    out.insert("streams/v1/index.json".to_string());
    let index: serde_json::Value = serde_json::from_slice(&body).unwrap();
    for e in index["index"].as_object().unwrap().values() {
        let p = e["path"].as_str().unwrap().to_string();
        let (st, body) = moto.http("GET", &format!("{base}/{p}"));
        assert_eq!(st, 200, "{p}");
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        for prod in doc["products"].as_object().unwrap().values() {
            for v in prod["versions"].as_object().unwrap().values() {
                for it in v["items"].as_object().unwrap().values() {
                    let ip = it["path"].as_str().unwrap().to_string();
                    let (st, _) = moto.http("GET", &format!("{base}/{ip}"));
                    assert_eq!(st, 200, "{ip}");
                    out.insert(ip);
                }
            }
        }
        out.insert(p);
    }
    out
}

#[test]
fn filtered_documents_are_named_by_content_hash() {
    let Some((moto, _up, store)) = moto_with_snapshots("hashed", 1) else {
        return;
    };
    let dest = "s3://hashed/m";
    let r = json(&sv(
        &store,
        &moto,
        &["publish", "1", dest, "--metadata", "filtered", "--json"],
    ));
    assert_eq!(r["changed"], true, "{r}");
    // Signed by the store's default key, as for a local DEST; its keyring is reported for MAAS.
    assert_eq!(r["key_created"], true, "{r}");
    assert!(
        r["keyring"].as_str().unwrap().ends_with("default.gpg"),
        "{r}"
    );
    let (_, body) = moto.http("GET", "/hashed/m/streams/v1/index.json");
    let index: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut n = 0;
    for e in index["index"].as_object().unwrap().values() {
        let p = e["path"].as_str().unwrap();
        // streams/v1/<content-id>.<16 hex>.json
        let stem = p.strip_suffix(".json").unwrap();
        let (plain, hash) = stem.rsplit_once('.').unwrap();
        assert_eq!(hash.len(), 16, "{p}");
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{p}");
        assert_eq!(moto.http("GET", &format!("/hashed/m/{p}")).0, 200, "{p}");
        assert_eq!(
            moto.http("GET", &format!("/hashed/m/{stem}.sjson")).0,
            200,
            "{p}"
        );
        // The unhashed name is not uploaded.
        assert_eq!(
            moto.http("GET", &format!("/hashed/m/{plain}.json")).0,
            404,
            "{p}"
        );
        n += 1;
    }
    assert!(n > 0);
    // The signed index names the same documents.
    let (_, signed) = moto.http("GET", "/hashed/m/streams/v1/index.sjson");
    let signed = String::from_utf8_lossy(&signed).into_owned();
    assert!(
        signed.starts_with("-----BEGIN PGP SIGNED MESSAGE-----"),
        "{signed}"
    );
    for e in index["index"].as_object().unwrap().values() {
        let p = e["path"].as_str().unwrap().replace(".json", ".sjson");
        assert!(signed.contains(&p), "{p} not in {signed}");
    }
    // python sstream-mirror follows the hashed names through our re-signed index.
    let py = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/compat-venv/bin/sstream-mirror");
    if py.exists() {
        let w = tempfile::tempdir().unwrap();
        let gnupg = w.path().join("gnupg");
        std::fs::create_dir_all(&gnupg).unwrap();
        let out_dir = w.path().join("out");
        let o = std::process::Command::new(&py)
            .arg(format!("--keyring={}", r["keyring"].as_str().unwrap()))
            .arg(format!("{}/hashed/m/", moto.endpoint()))
            .arg(&out_dir)
            .env("GNUPGHOME", &gnupg)
            .env("HOME", w.path())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "{text}");
        for e in index["index"].as_object().unwrap().values() {
            let p = e["path"].as_str().unwrap().replace(".json", ".sjson");
            assert!(out_dir.join(&p).is_file(), "{p} not mirrored: {text}");
        }
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "sstream-mirror missing under CI"
        );
    }
    // An unchanged filtered republish writes nothing (the signed index is not signed again).
    let mark = moto.log_text().len();
    let r = json(&sv(
        &store,
        &moto,
        &["publish", "1", dest, "--metadata", "filtered", "--json"],
    ));
    assert_eq!(r["changed"], false, "{r}");
    assert_eq!(moto.count(mark, "PUT"), 0, "{}", moto.log_text());
}

#[test]
fn gc_keeps_grace_and_live_closure_and_dry_run_equals_gc() {
    let Some((moto, up, store)) = moto_with_snapshots("gcb", 1) else {
        return;
    };
    let dest = "s3://gcb/maas";
    ok(&sv(
        &store,
        &moto,
        &["publish", "1", dest, "--metadata", "filtered"],
    ));
    let (_, first_index) = moto.http("GET", "/gcb/maas/streams/v1/index.json");
    up.flip(2);
    store.sync_json("maas");
    ok(&sv(
        &store,
        &moto,
        &["publish", "2", dest, "--metadata", "filtered"],
    ));
    // What a killed publish could leave: an object nothing records.
    let (st, _) = moto.http_body("PUT", "/gcb/maas/stray/left-behind.bin", b"orphan bytes");
    assert_eq!(st, 200);
    // A document of the first publication that the second does not name.
    let first: serde_json::Value = serde_json::from_slice(&first_index).unwrap();
    let old_docs: Vec<String> = first["index"]
        .as_object()
        .unwrap()
        .values()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    let live = live_closure(&moto, "/gcb/maas");
    let old_only: Vec<&String> = old_docs.iter().filter(|p| !live.contains(*p)).collect();
    assert!(
        !old_only.is_empty(),
        "the flip changed no products document"
    );

    // Default grace (24 h): the retired publication and the fresh stray stay.
    let r = json(&sv(&store, &moto, &["gc", dest, "--dry-run", "--json"]));
    assert_eq!(r["objects_deleted"], 0, "{r}");
    assert_eq!(r["publications_kept"].as_array().unwrap().len(), 2, "{r}");
    let r = json(&sv(&store, &moto, &["gc", dest, "--json"]));
    assert_eq!(r["objects_deleted"], 0, "{r}");
    for p in &old_only {
        assert_eq!(moto.http("GET", &format!("/gcb/maas/{p}")).0, 200, "{p}");
    }

    // Another DEST of this store nested under the prefix is not collected with it.
    ok(&sv(
        &store,
        &moto,
        &["publish", "1", "s3://gcb/maas/nested"],
    ));

    // No grace, keep only the newest: the dry run's plan is exactly what gc then deletes.
    let args = ["gc", dest, "--grace", "0s", "--keep-last", "1", "--json"];
    let mut dry_args = args.to_vec();
    dry_args.push("--dry-run");
    let dry = json(&sv(&store, &moto, &dry_args));
    assert_eq!(dry["dry_run"], true);
    let real = json(&sv(&store, &moto, &args));
    assert_eq!(real["dry_run"], false);
    let mut dry_cmp = dry.clone();
    dry_cmp["dry_run"] = serde_json::Value::Bool(false);
    assert_eq!(dry_cmp, real, "dry run {dry}\nreal {real}");
    let deleted: BTreeSet<String> = real["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap().to_string())
        .collect();
    assert!(deleted.contains("stray/left-behind.bin"), "{real}");
    for p in &old_only {
        assert!(deleted.contains(*p), "{p} not collected: {real}");
        assert_eq!(moto.http("GET", &format!("/gcb/maas/{p}")).0, 404, "{p}");
    }
    let bytes: u64 = real["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["size"].as_u64().unwrap())
        .sum();
    assert_eq!(real["bytes_deleted"].as_u64().unwrap(), bytes);
    // Nothing the live index reaches was touched, and it is all still there.
    assert!(deleted.is_disjoint(&live), "{real}");
    assert_eq!(live_closure(&moto, "/gcb/maas"), live);
    // Items of the first snapshot went too, so a rollback to it is refused (one line, the
    // bucket untouched) rather than flipping to an index whose items are gone.
    assert!(
        deleted
            .iter()
            .any(|k| !k.starts_with("streams/") && !k.starts_with("stray/")),
        "{real}"
    );
    let (_, before) = moto.http("GET", "/gcb/maas/streams/v1/index.sjson");
    let o = sv(&store, &moto, &["rollback", dest]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "{err}");
    assert!(err.starts_with("streamvault: error: cannot roll"), "{err}");
    assert!(err.contains("are gone from the bucket"), "{err}");
    let (_, after) = moto.http("GET", "/gcb/maas/streams/v1/index.sjson");
    assert_eq!(before, after);
    assert!(!deleted.iter().any(|k| k.starts_with("nested/")), "{real}");
    assert_eq!(
        moto.http("GET", "/gcb/maas/nested/streams/v1/index.sjson")
            .0,
        200
    );
    // The collected publication is not checked (nor kept) any more, with the store's settings
    // (keep-last 3, grace 24 h): verify is clean.
    let v = json(&sv(&store, &moto, &["verify", dest, "--json"]));
    assert_eq!(v["findings"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(v["publications"].as_array().unwrap().len(), 1, "{v}");
    // A second run finds nothing more.
    let again = json(&sv(&store, &moto, &args));
    assert_eq!(again["objects_deleted"], 0, "{again}");
}

#[test]
fn gc_and_verify_refuse_a_local_dest_with_one_line() {
    let store = Store::new();
    store.cmd(&["source", "list"]).output().unwrap();
    for verb in ["gc", "verify"] {
        let out = store.cmd(&[verb, "/var/www/html/x"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{err}");
        assert!(err.starts_with("streamvault: error: "), "{err}");
        assert!(err.lines().count() <= 2, "{err}");
    }
}
