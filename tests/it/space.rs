//! Free space checked before the first byte (issue 9 item 2): a sync that cannot fit on the
//! store's filesystem is refused with one line and a hint, without requesting any item.

use crate::common::{Run, Store, Upstream, cmd_at, item_gets, tmpfs};
use streamvault::streamgen::{Bulk, StreamSpec};

#[test]
fn a_sync_that_cannot_fit_is_refused_before_any_item_request() {
    let store = Store::new();
    let Some(fs) = tmpfs(&store.dir.path().join("small"), "size=24m") else {
        return;
    };
    // 40 MiB of items into a 24 MiB filesystem.
    let up = Upstream::with_spec(StreamSpec {
        bulk: Some(Bulk {
            products: 1,
            versions: 2,
            files_per_version: 10,
            file_size: 2 * 1024 * 1024,
        }),
        ..StreamSpec::generation(1)
    });
    let root = fs.0.join("store");
    let run = |args: &[&str]| {
        let r = Run::from(
            cmd_at(&root, args)
                .env_remove("STREAMVAULT_GRACE")
                .output()
                .unwrap(),
        );
        (r.code, r.stderr)
    };
    let (code, err) = run(&[
        "source",
        "add",
        "big",
        &up.url(),
        "--keyring",
        up.keyring_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    up.clear();
    let (code, err) = run(&["sync", "big"]);
    assert_eq!(code, 2, "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    let want = format!(
        "streamvault: error: not enough space on {}: need ",
        fs.0.display()
    );
    assert!(lines[0].starts_with(&want), "{err}");
    assert!(lines[0].contains(", have "), "{err}");
    assert!(
        lines[1].starts_with("hint:") && lines[1].contains("gc --dry-run"),
        "{err}"
    );
    assert_eq!(item_gets(&up.requests()), 0, "items were requested");
    // Without a reserve it still does not fit; nothing was written into blobs/.
    let (code, err) = run(&["config", "set", "reserve", "0"]);
    assert_eq!(code, 0, "{err}");
    let (code, err) = run(&["sync", "big"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(item_gets(&up.requests()), 0);
    let blobs = walkdir::WalkDir::new(root.join("blobs"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .count();
    assert_eq!(blobs, 0);
    drop(fs);
}
