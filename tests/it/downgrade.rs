//! Downgrade protection (issue 8 item 6b): metadata whose `updated` instant is older than the
//! source's last snapshot (a replay of an older, validly signed generation) is refused with one
//! line naming both dates, unless `--allow-downgrade` (on `sync` and on the `mirror` drop-in).

use crate::common::{Store, Upstream, with_source};
use streamvault::streamgen::{StreamSpec, default_updated};

fn kind(store: &Store, args: &[&str]) -> String {
    let r = store.run(args).ok();
    r.json()[0]["outcome"]["kind"].as_str().unwrap().to_string()
}

#[test]
fn an_older_generation_is_refused_unless_allowed() {
    let (up, store) = with_source("maas", &[]);
    up.flip(2);
    assert_eq!(kind(&store, &["sync", "maas", "--json"]), "snapshot");
    up.flip(1);
    let r = store.run(&["sync", "maas"]).fails();
    assert!(
        r.stderr.contains("older than the last snapshot"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains(&default_updated(1)), "{}", r.stderr);
    assert!(r.stderr.contains(&default_updated(2)), "{}", r.stderr);
    assert!(r.stderr.contains("--allow-downgrade"), "{}", r.stderr);
    assert_eq!(store.snapshots("maas").len(), 1);
    // --dry-run says the same, and writes nothing
    store.run(&["sync", "maas", "--dry-run"]).fails();
    assert_eq!(
        kind(&store, &["sync", "maas", "--json", "--allow-downgrade"]),
        "snapshot"
    );
    assert_eq!(store.snapshots("maas").len(), 2);
    // equal dates are fine: the same generation again
    assert_eq!(kind(&store, &["sync", "maas", "--json"]), "unchanged");
    store.check_invariants();
}

#[test]
fn dates_are_compared_as_instants_and_unparseable_means_no_check() {
    let up = Upstream::with_spec(StreamSpec {
        // a wrong weekday name (1 Jan 2030 is a Tuesday)
        updated: Some("Mon, 01 Jan 2030 00:00:00 +0000".into()),
        ..StreamSpec::generation(1)
    });
    let store = Store::new();
    store.add("maas", &up, &[]);
    assert_eq!(kind(&store, &["sync", "maas", "--json"]), "snapshot");
    // ISO form, other zone: 2029-12-31T23:30-02:00 is 2030-01-01T01:30Z, later: accepted
    up.build(&StreamSpec {
        updated: Some("2029-12-31T23:30:00-02:00".into()),
        ..StreamSpec::generation(2)
    });
    up.flip(2);
    assert_eq!(kind(&store, &["sync", "maas", "--json"]), "snapshot");
    // 2030-01-01T00:30+01:00 is 2029-12-31T23:30Z: earlier, although the text sorts later
    up.build(&StreamSpec {
        updated: Some("2030-01-01T00:30:00+01:00".into()),
        ..StreamSpec::generation(3)
    });
    up.flip(3);
    let r = store.run(&["sync", "maas"]).fails();
    assert!(
        r.stderr.contains("2030-01-01T00:30:00+01:00"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("2029-12-31T23:30:00-02:00"),
        "{}",
        r.stderr
    );
    // an unparseable date means no check
    up.build(&StreamSpec {
        updated: Some("some day".into()),
        ..StreamSpec::generation(4)
    });
    up.flip(4);
    assert_eq!(kind(&store, &["sync", "maas", "--json"]), "snapshot");
    store.check_invariants();
}

#[test]
fn the_mirror_drop_in_refuses_too_and_takes_allow_downgrade() {
    let up = Upstream::new();
    let store = Store::new();
    let out = store.dir.path().join("out");
    let o = out.to_str().unwrap();
    let k = format!("--keyring={}", up.keyring_str());
    let url = up.url();
    up.flip(2);
    store.run(&["mirror", &k, &url, o, "release=noble"]).ok();
    up.flip(1);
    let r = store.run(&["mirror", &k, &url, o, "release=noble"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("older than the last snapshot"),
        "{}",
        r.stderr
    );
    store
        .run(&["mirror", &k, "--allow-downgrade", &url, o, "release=noble"])
        .ok();
    let index = std::fs::read_to_string(out.join("streams/v1/index.sjson")).unwrap();
    assert!(index.contains(&default_updated(1)), "{index}");
}
