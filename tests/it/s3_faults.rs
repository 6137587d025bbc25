//! S3 publish through a faulty network: a proxy in front of moto answers about 10 % of the
//! requests with `500 InternalError` or `503 SlowDown`, or drops the connection (a RST when the
//! request had a body). Publish, republish of a newer snapshot and rollback retry and converge,
//! and what a client then reads from the bucket is one complete, consistent tree (index →
//! products → every item present with its sha256).

use crate::common::faultproxy::{Fault, FaultProxy};
use crate::common::s3tree::{Items, moto_with_snapshots, read_tree, s3_run};

#[test]
fn publish_and_rollback_converge_through_500s_503s_and_resets() {
    let Some((moto, _up, store)) = moto_with_snapshots("flaky", 2) else {
        return;
    };
    let proxy = FaultProxy::start(moto.port, 100, 0x5eed_0011);
    let ep = proxy.endpoint();
    let base = "/flaky/maas";
    let dest = "s3://flaky/maas";

    let mut seen = Vec::new();
    for (step, args) in [
        ("publish 1", vec!["publish", "1", dest, "--json"]),
        ("publish 2", vec!["publish", "2", dest, "--json"]),
        ("rollback", vec!["rollback", dest, "--json"]),
        (
            "publish 2 filtered",
            vec!["publish", "2", dest, "--metadata", "filtered", "--json"],
        ),
    ] {
        let r = s3_run(&store, &ep, &args);
        assert_eq!(
            r.code,
            0,
            "{step} did not converge ({}):\n{}{}",
            proxy.counts.summary(),
            r.stdout,
            r.stderr
        );
        let t = read_tree(&moto, base, Items::All);
        assert!(t.ok(), "{step}: {:?}", t.problems);
        assert!(t.items > 0 && t.documents > 0, "{step}: {t:?}");
        assert_eq!(
            t.unpaired, 0,
            "{step}: index and products of different publishes"
        );
        seen.push(r.json()["snapshot"].clone());
        let st = s3_run(&store, &moto.endpoint(), &["status", dest]);
        assert_eq!(st.code, 0, "{step}: {}{}", st.stdout, st.stderr);
    }
    assert_eq!(seen, [1, 2, 1, 2]);
    // The faults really happened, of every kind.
    let c = &proxy.counts;
    eprintln!("fault proxy: {}", c.summary());
    assert!(c.faults() >= 5, "{}", c.summary());
    for (kind, n) in [("500", &c.err500), ("503", &c.err503), ("reset", &c.resets)] {
        assert!(
            n.load(std::sync::atomic::Ordering::SeqCst) > 0,
            "no {kind}: {}",
            c.summary()
        );
    }
}

/// The conditional index write is the one request a client cannot blindly repeat (S3 may have
/// applied it): each kind of fault on it — including a write S3 applied whose answer was lost —
/// for the first index (`If-None-Match: *`) and for a switch (`If-Match`), still ends with the
/// new index live, the publish successful and the catalogue agreeing with the bucket.
#[test]
fn a_fault_on_the_conditional_index_write_still_converges() {
    let Some((moto, _up, store)) = moto_with_snapshots("cond", 2) else {
        return;
    };
    let proxy = FaultProxy::start(moto.port, 0, 7);
    for (i, fault) in [Fault::E500, Fault::E503, Fault::Reset, Fault::Lost]
        .into_iter()
        .enumerate()
    {
        let dest = format!("s3://cond/p{i}");
        let base = format!("/cond/p{i}");
        for (snapshot, header) in [("1", "if-none-match"), ("2", "if-match")] {
            proxy.target(header, fault, 1);
            let r = s3_run(
                &store,
                &proxy.endpoint(),
                &["publish", snapshot, &dest, "--json"],
            );
            assert_eq!(
                proxy.targeted_left(),
                0,
                "{fault:?}: no `{header}` request seen"
            );
            assert_eq!(
                r.code, 0,
                "{fault:?} on the `{header}` index write: {}{}",
                r.stdout, r.stderr
            );
            assert_eq!(r.json()["snapshot"], snapshot.parse::<i64>().unwrap());
            let t = read_tree(&moto, &base, Items::All);
            assert!(t.ok(), "{:?}", t.problems);
            let st = s3_run(&store, &moto.endpoint(), &["status", &dest, "--json"]);
            assert_eq!(st.code, 0, "{}{}", st.stdout, st.stderr);
            assert_eq!(
                st.json()["live"]["snapshot_id"],
                snapshot.parse::<i64>().unwrap()
            );
        }
    }
}
