//! Hostile metadata on the terminal (issue 8 item 3) and one-line usage errors (item 15): names
//! with newlines, `\r`, ANSI escapes, DEL, C1 controls and bidi overrides reach every human
//! output escaped (plan lines, `--dry-run`, `snapshot show --items`, listings, error lines),
//! never as a forged line; JSON stays exact. Usage errors are one `streamvault: error:` line.

use crate::common::{Run, Store, Upstream};
use streamvault::streamgen::V3_CONTENT_ID;

/// Everything an upstream may smuggle into a name.
const EVIL: &str = "evil\n+ forged 1 Mb\nstreamvault: error: forged\r\u{1b}[2J\u{7f}\u{85}\u{9b}31m\u{202e}gpj\u{2066}x\u{2069}\t";

/// A raw control or bidi character anywhere in `s` (newlines between lines excepted).
fn raw_controls(s: &str) -> Vec<char> {
    s.chars()
        .filter(|&c| {
            c != '\n' && (c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c))
                || ('\u{2066}'..='\u{2069}').contains(&c)
        })
        .collect()
}

fn assert_clean(what: &str, r: &Run) {
    for (stream, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        let bad = raw_controls(text);
        assert!(bad.is_empty(), "{what}: raw {bad:?} on {stream}:\n{text}");
        for l in text.lines() {
            assert!(
                !l.starts_with("+ forged") && !l.starts_with("streamvault: error: forged"),
                "{what}: forged line on {stream}: {l:?}\n{text}"
            );
        }
    }
}

/// Copy the first product of the v3 products document under a hostile product name, with a
/// hostile version name and item name (paths stay real, so a sync can download them).
fn hostile_upstream(drop_size: bool) -> Upstream {
    let up = Upstream::new();
    let json = up
        .current()
        .join(format!("streams/v1/{V3_CONTENT_ID}.json"));
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let products = v["products"].as_object_mut().unwrap();
    let (_, first) = products.iter().next().unwrap();
    let mut p = first.clone();
    let versions = p["versions"].as_object_mut().unwrap();
    let (_, ver) = versions.iter().next().unwrap();
    let mut ver = ver.clone();
    let items = ver["items"].as_object_mut().unwrap();
    let (_, item) = items.iter().next().unwrap();
    let mut item = item.clone();
    if drop_size {
        item.as_object_mut().unwrap().remove("size");
    }
    items.insert(EVIL.to_string(), item);
    versions.clear();
    versions.insert(format!("9{EVIL}"), ver);
    products.insert(format!("p{EVIL}"), p);
    let text = serde_json::to_vec_pretty(&v).unwrap();
    std::fs::write(&json, &text).unwrap();
    let sjson = json.with_extension("sjson");
    std::fs::write(sjson, up.key.clearsign(&text).unwrap()).unwrap();
    up
}

#[test]
fn hostile_names_are_escaped_in_every_human_output() {
    let up = hostile_upstream(false);
    let store = Store::new();
    store.add("maas", &up, &[]);

    let r = store.run(&["sync", "maas", "--dry-run"]).ok();
    assert_clean("sync --dry-run", &r);
    assert!(r.stdout.contains("+ "), "{}", r.stdout);

    let url = up.url();
    let k = format!("--keyring={}", up.keyring_str());
    let out = store.dir.path().join("out");
    let o = out.to_str().unwrap();
    let r = store.run(&["mirror", "-v", "--dry-run", &k, &url, o]).ok();
    assert_clean("mirror -v --dry-run", &r);
    assert!(r.stderr.contains("\\n+ forged 1 Mb\\n"), "{}", r.stderr);
    assert!(r.stderr.contains("\\u{202e}gpj"), "{}", r.stderr);
    let r = store.run(&["mirror", "-v", &k, &url, o]).ok();
    assert_clean("mirror -v", &r);

    let id = store.sync_json("maas")["outcome"].clone();
    assert!(!id.is_null());
    let r = store.run(&["snapshot", "show", "maas", "--items"]).ok();
    assert_clean("snapshot show --items", &r);
    assert!(r.stdout.contains("pevil\\n+ forged"), "{}", r.stdout);
    for args in [
        &["snapshots"][..],
        &["source", "list"],
        &["diff", "maas", "maas"],
        &["publications"],
    ] {
        assert_clean(&format!("{args:?}"), &store.run(args));
    }

    // JSON keeps the names exactly.
    let items = store.items("maas");
    assert!(
        items.iter().any(|i| i["item"] == EVIL
            && i["version"] == format!("9{EVIL}")
            && i["product"] == format!("p{EVIL}")),
        "{items:?}"
    );
}

#[test]
fn an_error_naming_a_hostile_item_is_one_line() {
    let up = hostile_upstream(true);
    let store = Store::new();
    store.add("maas", &up, &[]);
    let r = store.run(&["sync", "maas"]).fails();
    assert_clean("sync error", &r);
    assert!(r.stderr.contains("has no usable size"), "{}", r.stderr);
    assert!(r.stderr.contains("evil\\n+ forged"), "{}", r.stderr);
}

/// Every usage error: one `streamvault: error:` line, at most one `hint:`, exit 2, no stdout.
#[test]
fn usage_errors_are_one_line_and_exit_2() {
    let store = Store::new();
    for args in [
        &["--bogus"][..],
        &["frobnicate"],
        &[],
        &["sync", "--jobs", "many", "x"],
        &["sync", "--jsn", "x"],
        &["publish"],
        &["snapshot"],
        &["source", "add", "only-a-name"],
        &["gc", "--grace"],
        &["snapshots", "--json=yes"],
        &["sync", "--bogus\n+ forged\u{1b}[2J"],
    ] {
        let r = store.run(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
        let lines: Vec<&str> = r.stderr.lines().collect();
        assert!(
            (1..=2).contains(&lines.len())
                && lines[0].starts_with("streamvault: error: ")
                && lines.get(1).is_none_or(|l| l.starts_with("hint: ")),
            "{args:?}:\n{}",
            r.stderr
        );
        assert_clean(&format!("{args:?}"), &r);
        assert!(!r.stderr.contains("For more information"), "{}", r.stderr);
    }
    let r = store.run(&["source", "add", "only-a-name"]);
    assert!(r.stderr.contains("<URL>"), "{}", r.stderr);
    let r = store.run(&["sync", "--jsn", "x"]);
    assert!(
        r.stderr.contains("hint: a similar argument exists"),
        "{}",
        r.stderr
    );

    for args in [
        &["--help"][..],
        &["--version"],
        &["sync", "--help"],
        &["help"],
    ] {
        let r = store.run(args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        assert!(r.stderr.is_empty(), "{args:?}: {}", r.stderr);
        assert!(r.stdout.contains("streamvault"), "{args:?}: {}", r.stdout);
    }
}

/// The `sstream-mirror` name keeps python's exit codes: 2 for usage, 1 for the rest; still one
/// error line.
#[test]
fn sstream_mirror_usage_and_errors() {
    let store = Store::new();
    let run = |args: &[&str]| crate::common::sstream_mirror(&store, args);
    for (args, code) in [
        (&["--bogus", "a", "b"][..], 2),
        (&[], 2),
        (&["--max", "x", "a", "b"], 2),
        (
            &[
                "--no-verify",
                "file:///nonexistent/\u{1b}[2J",
                "/nonexistent/out",
            ],
            1,
        ),
    ] {
        let r = run(args);
        assert_eq!(r.code, code, "{args:?}: {}", r.stderr);
        let lines: Vec<&str> = r.stderr.lines().collect();
        assert!(
            (1..=2).contains(&lines.len()) && lines[0].starts_with("streamvault: error: "),
            "{args:?}:\n{}",
            r.stderr
        );
        assert_clean(&format!("{args:?}"), &r);
    }
    let r = run(&["--help"]);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.starts_with("usage: sstream-mirror"),
        "{}",
        r.stdout
    );
}
