//! Issue 12 accepted as a MAAS admin would: the README walk-through "MAAS boot source in one
//! stream" run as written (its shell block, with the upstream URL, keyring and paths replaced by
//! the test's), what MAAS 3.8 parses (`updated` with `%a, %d %b %Y %H:%M:%S %z`, checked by
//! python's own `strptime`), every re-signed document of a composition, `verify` and grace items
//! across a composition change, MAAS 3.8's one-model-per-document rule on a composition that
//! merges a custom image into an upstream content id, the S3 target refusing what MAAS would
//! refuse and signing a verbatim composition's index, `--unsigned` compositions, and auto-publish
//! from a source that is not an input.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use streamvault::serve::{self, ServeOptions};

use crate::common::compose::{
    BOOTLOADERS, CustomStream, JAMMY, add_custom_source, bootloaders_and_jammy,
    bootloaders_jammy_and_noble, compose_filtered, dest, item_files, python_mirror,
};
use crate::common::s3tree::s3_run;
use crate::common::{
    Moto, Store, Upstream, assert_complete, bin, gpgv, linked_tree, p, reference_sstream_mirror,
    synced_source,
};

/// A local stream of custom images (`streams/v1/index.json`, one products document of content
/// id `cid` at `streams/v1/custom.json`, one product with the item names `items`).
fn custom_stream(dir: &Path, cid: &str, items: &[&str]) -> BTreeSet<String> {
    let items: Vec<(&str, &str)> = items.iter().map(|n| (*n, *n)).collect();
    CustomStream {
        cid,
        doc: "custom.json",
        pid: "com.example.custom:mycloud:amd64",
        fields: json!({
            "arch": "amd64", "os": "custom", "release": "mycloud", "release_title": "My cloud",
            "subarch": "generic", "subarches": "generic", "label": "stable", "version": "1"
        }),
        prefix: "custom/amd64/mycloud",
        items: &items,
    }
    .write(dir)
}

/// The JSON of a document, unwrapped when clearsigned.
fn doc_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    let body = match text.find("-----BEGIN PGP SIGNATURE-----") {
        Some(end) if text.starts_with("-----BEGIN PGP SIGNED MESSAGE-----") => {
            &text[text.find('{').unwrap()..end]
        }
        _ => &text[..],
    };
    serde_json::from_str(body).unwrap()
}

/// Every `updated` MAAS 3.8 reads from the tree at `dest` (each index's, each entry's, each
/// products document's) parses with python's `strptime(v, "%a, %d %b %Y %H:%M:%S %z")`, the
/// format MAAS 3.8 tries first (its fallback, `fromisoformat`, never takes RFC 2822 dates).
fn assert_maas_dates(dest: &Path) {
    let v1 = dest.join("streams/v1");
    let mut dates = Vec::new();
    for e in std::fs::read_dir(&v1).unwrap() {
        let f = e.unwrap().path();
        let d = doc_json(&f);
        dates.push(d["updated"].as_str().unwrap_or("missing").to_string());
        if let Some(entries) = d["index"].as_object() {
            for (cid, e) in entries {
                assert!(e["path"].is_string(), "{f:?} {cid}");
                assert!(e["products"].is_array(), "{f:?} {cid}");
                dates.push(e["updated"].as_str().unwrap_or("missing").to_string());
            }
        }
    }
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, datetime\n\
             for v in sys.argv[1:]:\n    datetime.datetime.strptime(v, '%a, %d %b %Y %H:%M:%S %z')",
        )
        .args(&dates)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "MAAS 3.8 cannot parse one of {dates:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The README's shell block of "MAAS boot source in one stream", its paths replaced.
fn readme_walk_through() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split("### MAAS boot source in one stream")
        .nth(1)
        .expect("README section");
    let start = section.find("```sh\n").expect("a shell block") + 6;
    let len = section[start..].find("```").unwrap();
    section[start..start + len].to_string()
}

#[test]
fn the_readme_walk_through_runs_as_written_and_prints_what_it_says() {
    let up = Upstream::new();
    let s = Store::new();
    let custom_dir = s.dir.path().join("srv/custom-images");
    let custom = custom_stream(
        &custom_dir,
        "com.example.maas:custom",
        &["boot-kernel", "boot-initrd", "squashfs", "manifest"],
    );
    let www = s.dir.path().join("html");
    let d = www.join("maas/stable");
    std::fs::create_dir_all(d.parent().unwrap()).unwrap();
    let bindir = s.dir.path().join("bin");
    std::fs::create_dir_all(&bindir).unwrap();
    std::os::unix::fs::symlink(bin(), bindir.join("streamvault")).unwrap();
    let block = readme_walk_through();
    let script = block
        .replace("https://images.maas.io/ephemeral-v3/stable/", &up.url())
        .replace(
            "/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg",
            up.keyring_str(),
        )
        .replace("/srv/custom-images", p(&custom_dir))
        .replace("/var/www/html", p(&www));
    assert_ne!(
        script, block,
        "the README block names the paths replaced here"
    );
    let run = |script: &str| {
        let o = Command::new("bash")
            .args(["-euo", "pipefail", "-c", script])
            .env("PATH", format!("{}:/usr/bin:/bin", p(&bindir)))
            .env("STREAMVAULT_ROOT", s.root())
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{out}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    };
    let out = run(&script);

    // What the README's comments say the publish prints (snapshot numbers aside).
    let norm = |t: &str| {
        let mut o = String::new();
        let mut digits = false;
        for c in t.chars() {
            if c.is_ascii_digit() {
                if !digits {
                    o.push('N');
                }
                digits = true;
            } else {
                digits = false;
                o.push(c);
            }
        }
        o
    };
    let root = s.root();
    for comment in block.lines().filter_map(|l| l.strip_prefix("#   ")) {
        let want = comment
            .trim_end_matches(" …")
            .replace("/var/lib/streamvault", p(&root))
            .replace("/var/www/html", p(&www));
        assert!(
            out.lines().any(|l| norm(l).starts_with(&norm(&want))),
            "README says `{want}`; the output:\n{out}"
        );
    }

    // One URL, one keyring: every item of the three sources, every document signed.
    let ring = root.join("keyrings/default.gpg");
    assert!(
        out.contains(&format!(
            "keyring for MAAS (keyring_filename): {}",
            ring.display()
        )),
        "{out}"
    );
    let items = item_files(&d);
    assert!(custom.is_subset(&items), "{items:?}");
    assert!(
        items.iter().any(|f| f.contains("bootloaders/pxe/i386")),
        "{items:?}"
    );
    assert!(items.iter().any(|f| f.contains("noble/amd64")), "{items:?}");
    assert!(!items.iter().any(|f| f.contains("arm64")), "{items:?}");
    for e in std::fs::read_dir(d.join("streams/v1")).unwrap() {
        let f = e.unwrap().path();
        if f.extension().is_some_and(|x| x == "sjson") {
            assert!(gpgv(&ring, &f).status.success(), "{f:?}");
        }
    }
    assert_maas_dates(&d);
    // The one-screen status names the composition.
    let st = s.run(&["status"]).ok();
    assert!(
        st.stdout.lines().any(|l| l.starts_with("dest:")
            && l.contains("serves the composition of snapshot ")
            && l.contains("(images), snapshot ")
            && l.contains("(bootloaders), snapshot ")
            && l.contains("(custom) (published ")),
        "{}",
        st.stdout
    );

    // The loop made each source auto-publish the whole composition: a new upstream generation
    // and the cron line `sync --all` rebuild it with every input's newest snapshot.
    let before = linked_tree(&d);
    up.flip(2);
    run("streamvault sync --all -q");
    assert_ne!(linked_tree(&d), before);
    let st = s.run(&["status", p(&d), "--json"]).ok().json();
    let sources: Vec<&str> = st["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["images", "bootloaders", "custom"], "{st}");
    assert_complete(&d);

    // MAAS ≤ 3.7 reads it through python-simplestreams: the URL and keyring the README gives.
    if let Some(py) = reference_sstream_mirror() {
        let server = serve::spawn(ServeOptions::new(d.clone())).unwrap();
        let url = format!("{}/", server.url());
        let out_p = python_mirror(&py, &url, &ring, s.dir.path(), "py/stable", &[]);
        assert!(custom.is_subset(&item_files(&out_p)));
    }
}

#[test]
fn a_composition_is_dated_as_maas_3_8_parses_it_and_every_document_is_signed_with_its_twin() {
    let (_up, s) = bootloaders_and_jammy();
    let d = dest(&s, "c");
    let r = compose_filtered(&s, &d, &["--json"]).ok().json();
    assert_maas_dates(&d);
    // Every `.json` has its `.sjson` twin, gpgv accepts each, and the signed text is the twin
    // (the index's paths aside, which name the `.sjson` documents).
    let ring = PathBuf::from(r["keyring"].as_str().unwrap());
    let v1 = d.join("streams/v1");
    let mut n = 0;
    for e in std::fs::read_dir(&v1).unwrap() {
        let f = e.unwrap().path();
        if f.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let twin = f.with_extension("sjson");
        assert!(gpgv(&ring, &twin).status.success(), "{twin:?}");
        let (plain, signed) = (doc_json(&f), doc_json(&twin));
        if f.ends_with("index.json") {
            for (cid, e) in signed["index"].as_object().unwrap() {
                let path = e["path"].as_str().unwrap();
                assert!(path.ends_with(".sjson") && d.join(path).is_file(), "{path}");
                assert_eq!(
                    plain["index"][cid]["path"].as_str().unwrap(),
                    path.replace(".sjson", ".json")
                );
            }
        } else {
            assert_eq!(plain, signed, "{f:?}");
        }
        n += 1;
    }
    assert_eq!(n, 3, "the index and two products documents");

    // Verbatim composition: the new index is dated the same way.
    let dv = dest(&s, "v");
    s.run(&["publish", "jammy", "bootloaders", p(&dv), "--force"])
        .ok();
    let index = doc_json(&dv.join("streams/v1/index.sjson"));
    assert!(
        index["updated"].as_str().unwrap().ends_with("+0000"),
        "{index}"
    );
}

#[test]
fn verify_checks_every_input_of_a_composition_and_repair_restores_it() {
    let (_up, s) = bootloaders_and_jammy();
    let d = dest(&s, "c");
    compose_filtered(&s, &d, &[]).ok();
    s.run(&["verify"]).ok();
    // An item of the second input (not the tree's own snapshot) goes missing from the tree,
    // and a stray file appears.
    let tree = s.root().join("trees").join(linked_tree(&d));
    let gone = item_files(&d)
        .into_iter()
        .find(|f| f.contains("jammy/amd64"))
        .unwrap();
    std::fs::remove_file(tree.join(&gone)).unwrap();
    std::fs::write(tree.join("jammy/stray"), b"x").unwrap();
    let r = s.run(&["verify"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!("`{gone}` is missing")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("jammy/stray"), "{}", r.stdout);
    let r = s.run(&["verify", "--repair"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(tree.join(&gone).is_file());
    assert!(!tree.join("jammy/stray").exists());
    s.run(&["verify"]).ok();
    assert_complete(&d);
}

#[test]
fn grace_items_bridge_a_change_of_composition_and_of_its_inputs() {
    let (up, s) = bootloaders_jammy_and_noble();
    s.sync_json("noble");
    let d = dest(&s, "c");
    let publish = |inputs: &[&str]| {
        let mut a = vec!["publish"];
        a.extend_from_slice(inputs);
        a.extend([p(&d), "--metadata", "filtered", "--json"]);
        s.run(&a).ok().json()
    };
    publish(&["bootloaders", "jammy"]);
    let first = item_files(&d);
    // A new jammy snapshot (another newest version): the new composition also links the items
    // of the one it replaces, which a MAAS that read the old index is still downloading.
    up.flip(2);
    assert_eq!(s.sync_json("jammy")["outcome"]["kind"], "snapshot");
    let r = publish(&["bootloaders", "jammy"]);
    assert!(r["grace_files"].as_u64().unwrap() > 0, "{r}");
    let second = item_files(&d);
    assert!(first.is_subset(&second), "{first:?}\n{second:?}");
    // Another set of inputs: noble replaces jammy; jammy's items stay reachable.
    let r = publish(&["bootloaders", "noble"]);
    assert!(r["grace_files"].as_u64().unwrap() > 0, "{r}");
    let third = item_files(&d);
    assert!(second.is_subset(&third), "{second:?}\n{third:?}");
    assert!(third.iter().any(|f| f.contains("noble/")), "{third:?}");
    let st = s.run(&["status", p(&d)]).ok();
    assert!(st.stdout.contains("composed:"), "{}", st.stdout);
    s.run(&["verify"]).ok();
    // After the grace period gc drops the bridges, never the live composition's own items.
    s.run(&["gc", "--grace", "0"]).ok();
    assert_complete(&d);
    let after = item_files(&d);
    assert!(after.iter().all(|f| !f.contains("jammy/")), "{after:?}");
    assert!(after.iter().any(|f| f.contains("noble/")), "{after:?}");
    s.run(&["verify"]).ok();
}

/// MAAS 3.8 reads a products document as one of its three product lists: a custom single-file
/// image merged into the upstream's multi-file content id makes a document that fits none, and
/// MAAS would drop every image of it. Refused before the flip, naming the rule.
#[test]
fn a_composition_mixing_maas_models_in_one_document_is_refused() {
    let up = Upstream::new();
    let s = Store::new();
    let dir = s.dir.path().join("custom-src");
    custom_stream(
        &dir,
        "com.example.maas:stable:v3:download",
        &["manifest", "root-tgz"],
    );
    s.add("jammy", &up, &JAMMY);
    add_custom_source(&s, &dir, &[]);
    s.sync_json("jammy");
    s.sync_json("custom");
    let d = dest(&s, "c");
    let r = s
        .run(&[
            "publish",
            "jammy",
            "custom",
            p(&d),
            "--metadata",
            "filtered",
        ])
        .fails();
    assert!(
        r.stderr
            .contains("document-model:MultiFileProduct+SingleFileProduct"),
        "{}",
        r.stderr
    );
    assert!(std::fs::symlink_metadata(&d).is_err(), "DEST untouched");
    // Each alone is fine: the custom image is a valid single-file document of its own.
    s.run(&["publish", "custom", p(&d), "--metadata", "filtered"])
        .ok();
}

#[test]
fn the_s3_target_refuses_what_maas_would_refuse_and_signs_a_verbatim_compositions_index() {
    let Some(moto) = Moto::start() else { return };
    moto.public_bucket("maas");
    let (up, s) = synced_source("nomani", &["arch=amd64", "ftype!=manifest"]);
    let r = s_run(
        &s,
        &moto,
        &["publish", "nomani", "s3://maas/a", "--metadata", "filtered"],
    );
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(r.stderr.contains("version-item:manifest"), "{}", r.stderr);
    assert_eq!(moto.http("GET", "/maas/a/streams/v1/index.json").0, 404);
    let r = s_run(
        &s,
        &moto,
        &[
            "publish",
            "nomani",
            "s3://maas/a",
            "--metadata",
            "filtered",
            "--force",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with("streamvault: warning: MAAS rule broken by the filters")),
        "{}",
        r.stderr
    );

    // A verbatim composition: the new index is signed by the store's key, as on a local DEST.
    s.add("bootloaders", &up, &BOOTLOADERS);
    s.add("jammy", &up, &JAMMY);
    s.sync_json("bootloaders");
    s.sync_json("jammy");
    let r = s_run(
        &s,
        &moto,
        &[
            "publish",
            "jammy",
            "bootloaders",
            "s3://maas/v",
            "--force",
            "--json",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ring = PathBuf::from(r.json()["keyring"].as_str().expect("a keyring").to_string());
    let (st, body) = moto.http("GET", "/maas/v/streams/v1/index.sjson");
    assert_eq!(st, 200);
    let f = s.dir.path().join("index.sjson");
    std::fs::write(&f, body).unwrap();
    assert!(gpgv(&ring, &f).status.success());
}

fn s_run(s: &Store, moto: &Moto, args: &[&str]) -> crate::common::Run {
    s3_run(s, &moto.endpoint(), args)
}

#[test]
fn an_unsigned_composition_writes_only_json_for_the_index_json_url() {
    let (_up, s) = bootloaders_and_jammy();
    let d = dest(&s, "u");
    let r = compose_filtered(&s, &d, &["--unsigned", "--json"])
        .ok()
        .json();
    assert!(r["keyring"].is_null() && r["signer"].is_null(), "{r}");
    let names: Vec<String> = std::fs::read_dir(d.join("streams/v1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| n.ends_with(".json")), "{names:?}");
    let index = doc_json(&d.join("streams/v1/index.json"));
    assert_eq!(index["index"].as_object().unwrap().len(), 2, "{index}");
    assert!(!s.root().join("keys/default.key").exists());
}

#[test]
fn auto_publish_from_a_source_that_is_not_an_input_fails_clearly_and_keeps_the_composition() {
    let (_up, s) = bootloaders_jammy_and_noble();
    let d = dest(&s, "c");
    compose_filtered(&s, &d, &[]).ok();
    let live = linked_tree(&d);
    s.run(&[
        "source",
        "edit",
        "noble",
        "--publish",
        p(&d),
        "--metadata",
        "filtered",
    ])
    .ok();
    let r = s.run(&["sync", "noble"]);
    assert_ne!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let line = r
        .stderr
        .lines()
        .find(|l| l.contains("not one of its inputs"))
        .unwrap_or_else(|| panic!("{}", r.stderr));
    assert!(line.contains("`noble`"), "{}", r.stderr);
    assert!(r.stderr.contains("hint: "), "{}", r.stderr);
    // The sync itself made its snapshot; DEST still serves the composition.
    assert_eq!(s.snapshots("noble").len(), 1);
    assert_eq!(linked_tree(&d), live);
    let st = s.run(&["status", p(&d), "--json"]).ok().json();
    assert_eq!(st["inputs"].as_array().unwrap().len(), 2, "{st}");
}

/// Auto-publish to an S3 DEST serving a composition rebuilds the whole composition, as for a
/// local DEST: the bucket's index keeps every input's content id.
#[test]
fn auto_publish_to_an_s3_composition_rebuilds_it_whole() {
    let Some(moto) = Moto::start() else { return };
    moto.public_bucket("maas");
    let (up, s) = bootloaders_jammy_and_noble();
    let dest = "s3://maas/c";
    let r = s_run(
        &s,
        &moto,
        &[
            "publish",
            "bootloaders",
            "jammy",
            dest,
            "--metadata",
            "filtered",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let cids = || {
        let (st, body) = moto.http("GET", "/maas/c/streams/v1/index.json");
        assert_eq!(st, 200);
        let v: Value = serde_json::from_slice(&body).unwrap();
        v["index"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>()
    };
    let before = cids();
    assert_eq!(before.len(), 2, "{before:?}");
    for n in ["jammy", "noble"] {
        s.run(&[
            "source",
            "edit",
            n,
            "--publish",
            dest,
            "--metadata",
            "filtered",
        ])
        .ok();
    }
    up.flip(2);
    let r = s_run(&s, &moto, &["sync", "jammy", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(cids(), before, "still the composition");
    let jammy2 = s.snapshots("jammy").last().unwrap()["id"].as_i64().unwrap();
    let st = s_run(&s, &moto, &["status", dest, "--json"]).json();
    let tree = st["live"]["tree"].as_str().unwrap().to_string();
    assert!(tree.contains(&format!("+{jammy2}-")), "{st}");
    // A source that is not an input fails and leaves the composition.
    let r = s_run(&s, &moto, &["sync", "noble"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("not one of its inputs"), "{}", r.stderr);
    assert_eq!(cids(), before);
}

/// `--max`/`--keep` work per product with filter groups as without: each product keeps its
/// newest `--max` versions of what any group took, and `--keep` carries a version that vanished
/// upstream while it is still among the newest `--max` (as `sstream-mirror --keep`).
#[test]
fn max_and_keep_work_per_product_with_filter_groups() {
    let up = Upstream::new();
    let s = Store::new();
    let groups = ["arch=amd64", "release~jammy", "--or", "os~grub"];
    let mut keep = vec!["--max", "4", "--keep"];
    keep.extend(groups);
    let mut plain = vec!["--max", "4"];
    plain.extend(groups);
    s.add("keep", &up, &keep);
    s.add("plain", &up, &plain);
    s.sync_json("keep");
    s.sync_json("plain");
    up.flip(2);
    s.sync_json("keep");
    s.sync_json("plain");
    let jammy = "com.example.maas.stable:v3:boot:22.04:amd64:ga-22.04";
    let grub = "com.example.maas.stable:1:grub-efi-signed:uefi:amd64";
    let last = |n: &str| s.snapshots(n).last().unwrap()["id"].to_string();
    let (k, p) = (last("keep"), last("plain"));
    assert_eq!(
        s.versions(&k, jammy),
        ["20240101", "20240201", "20240301", "20240401"]
    );
    assert_eq!(s.versions(&p, jammy), ["20240201", "20240301", "20240401"]);
    // The other group's product: its own versions, untouched by jammy's.
    assert_eq!(s.versions(&k, grub), ["20210819.0", "20221029.0"]);
    assert_eq!(s.versions(&p, grub), ["20210819.0", "20221029.0"]);
}

/// A product upstream withdrew, carried by `--max 1 --keep`, is published by `--metadata
/// filtered` as it was synced (its product fields and its items' `ftype`), so MAAS's rules see
/// nothing the admin broke: no refusal, no warning about it — also once retention (gc) dropped
/// the older snapshot whose upstream document described it.
#[test]
fn a_version_kept_after_upstream_dropped_it_keeps_its_maas_fields() {
    let s = Store::new();
    let dir = s.dir.path().join("custom-src");
    custom_stream(
        &dir,
        "com.example.maas:custom",
        &["boot-kernel", "boot-initrd", "squashfs", "manifest"],
    );
    add_custom_source(&s, &dir, &["--max", "1", "--keep"]);
    s.sync_json("custom");
    // Upstream withdraws the product (a new one takes its place, same files).
    let old = "com.example.custom:mycloud:amd64";
    let new = "com.example.custom:mycloud2:amd64";
    for f in ["custom.json", "index.json"] {
        let f = dir.join("streams/v1").join(f);
        let text = std::fs::read_to_string(&f).unwrap().replace(old, new);
        std::fs::write(&f, text).unwrap();
    }
    s.sync_json("custom");
    let last = s.snapshots("custom").last().unwrap()["id"].to_string();
    assert_eq!(s.versions(&last, old), ["20261128"], "kept by --keep");
    let publish = |name: &str| {
        let d = dest(&s, name);
        // --rebuild: a new tree from the catalogue, not the one the first publish built.
        let r = s
            .run(&[
                "publish",
                "custom",
                p(&d),
                "--metadata",
                "filtered",
                "--rebuild",
            ])
            .ok();
        assert!(!r.stderr.contains("MAAS rule"), "{}", r.stderr);
        let doc = doc_json(&d.join("streams/v1/custom.json"));
        let prod = &doc["products"][old];
        assert_eq!(prod["label"], "stable", "{doc}");
        assert_eq!(
            prod["versions"]["20261128"]["items"]["manifest"]["ftype"], "manifest",
            "{doc}"
        );
    };
    publish("before-gc");
    // Retention drops the snapshot that had the upstream document of the kept product.
    s.run(&["gc", "--keep-last", "1", "--grace", "0"]).ok();
    assert_eq!(s.snapshots("custom").len(), 1);
    publish("after-gc");
}

/// A republish to an S3 DEST that changes nothing prints the MAAS rule warnings, as a local
/// republish does (the report returned before them).
#[test]
fn an_unchanged_s3_republish_prints_the_maas_rule_warnings() {
    let Some(moto) = Moto::start() else { return };
    moto.public_bucket("maas");
    let (_up, s) = synced_source("nomani", &["arch=amd64", "ftype!=manifest"]);
    let args = [
        "publish",
        "nomani",
        "s3://maas/a",
        "--metadata",
        "filtered",
        "--force",
    ];
    let warned = |r: &crate::common::Run| {
        r.stderr
            .lines()
            .filter(|l| l.starts_with("streamvault: warning: MAAS rule broken by the filters"))
            .count()
    };
    let first = s_run(&s, &moto, &args);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(warned(&first) > 0, "{}", first.stderr);
    let again = s_run(&s, &moto, &args);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("already serves"), "{}", again.stdout);
    assert_eq!(warned(&again), warned(&first), "{}", again.stderr);
    // As a local republish of the same snapshot.
    let d = dest(&s, "local");
    let local = |s: &Store| {
        s.run(&[
            "publish",
            "nomani",
            p(&d),
            "--metadata",
            "filtered",
            "--force",
        ])
        .ok()
    };
    let l1 = local(&s);
    let l2 = local(&s);
    assert_eq!(warned(&l1), warned(&first));
    assert_eq!(warned(&l2), warned(&first));
}
