//! `source add|edit --publish s3://…`: a sync that makes a snapshot publishes it to the bucket,
//! an unchanged sync publishes nothing more, a rollback stays rolled back, and the DEST is kept
//! as the URL (never a relative `s3:` path).

use crate::common::{Moto, Store, Upstream};
use crate::s3_gc::{json, ok, sv};

#[test]
fn source_publish_s3_auto_publishes_after_sync() {
    let Some(moto) = Moto::start() else { return };
    moto.public_bucket("auto");
    let up = Upstream::new();
    let store = Store::new();
    let dest = "s3://auto/maas/stable";
    store.add("maas", &up, &["--publish", dest, "--metadata", "filtered"]);
    let show = json(&sv(&store, &moto, &["source", "show", "maas", "--json"]));
    assert!(show.to_string().contains(dest), "{show}");
    assert!(!std::path::Path::new("s3:").exists());

    ok(&sv(&store, &moto, &["sync", "maas"]));
    assert_eq!(
        moto.http("GET", "/auto/maas/stable/streams/v1/index.sjson")
            .0,
        200
    );
    let list = json(&sv(&store, &moto, &["publications", dest, "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["snapshot_id"], 1, "{list}");
    assert_eq!(list[0]["mode"], "filtered", "{list}");

    // Unchanged: nothing more.
    ok(&sv(&store, &moto, &["sync", "maas"]));
    let list = json(&sv(&store, &moto, &["publications", dest, "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");

    // A new snapshot is published; after a rollback an unchanged sync leaves it rolled back.
    up.flip(2);
    ok(&sv(&store, &moto, &["sync", "maas"]));
    let st = json(&sv(&store, &moto, &["status", dest, "--json"]));
    assert_eq!(st["live"]["snapshot_id"], 2, "{st}");
    ok(&sv(&store, &moto, &["rollback", dest]));
    ok(&sv(&store, &moto, &["sync", "maas"]));
    let st = json(&sv(&store, &moto, &["status", dest, "--json"]));
    assert_eq!(st["live"]["snapshot_id"], 1, "{st}");

    // source edit moves the target to another prefix; the next sync publishes there.
    ok(&sv(
        &store,
        &moto,
        &["source", "edit", "maas", "--publish", "s3://auto/other"],
    ));
    ok(&sv(&store, &moto, &["sync", "maas"]));
    let st = json(&sv(&store, &moto, &["status", "s3://auto/other", "--json"]));
    assert_eq!(st["live"]["snapshot_id"], 2, "{st}");
}
