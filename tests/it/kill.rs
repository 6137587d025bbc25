//! `kill -9` of a sync at random moments: after each kill the store holds no blob row without
//! its complete file and no partial snapshot; a normal sync afterwards completes the snapshot.

use std::time::Duration;

use crate::common::{Store, Upstream};
use streamvault::serve::Faults;
use streamvault::streamgen::{Bulk, StreamSpec};

#[test]
fn kill_dash_nine_at_random_points_never_corrupts() {
    let up = Upstream::with_spec(StreamSpec {
        bulk: Some(Bulk {
            products: 2,
            versions: 2,
            files_per_version: 10,
            file_size: 64 * 1024,
        }),
        ..StreamSpec::generation(1)
    });
    // Slow the upstream down so that kills land during downloads, commits and the snapshot.
    up.faults(Faults {
        seed: 3,
        stall: Some((0.2, Duration::from_millis(150))),
        ..Faults::default()
    });
    let store = Store::new();
    store.add("maas", &up, &[]);
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut completed_early = 0;
    for round in 0..24 {
        let mut child = store
            .cmd(&["sync", "maas", "--limit-rate", "2M", "--jobs", "4"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let delay = rng.u64(20..900);
        std::thread::sleep(Duration::from_millis(delay));
        if child.try_wait().unwrap().is_some() {
            completed_early += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        store.check_invariants();
        let snaps = store.snapshots("maas");
        assert!(snaps.len() <= 1, "round {round}: more than one snapshot");
        if snaps.len() == 1 {
            // Once a snapshot exists it is complete; later runs are "unchanged".
            assert_eq!(snaps[0]["items"], 76, "round {round}");
        }
    }
    up.faults(Faults::default());
    let r = store.sync_json("maas");
    let kind = r["outcome"]["kind"].as_str().unwrap().to_string();
    assert!(kind == "snapshot" || kind == "unchanged", "{r}");
    let snaps = store.snapshots("maas");
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["items"], 76);
    store.check_invariants();
    assert!(completed_early < 24, "no kill landed during a sync");
}
