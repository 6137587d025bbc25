//! Secrets (issue 9 item 3): URL credentials never appear in any output and never in the
//! catalogue; catalog.db (+ -wal/-shm) and the credentials file 0600, keys/ 0700, key files
//! 0600, whatever the umask; the root and trees/ stay traversable for a web server.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::{Store, Upstream};
use streamvault::serve::{self, ServeOptions};

const PW: &str = "s3cr3t-Pw9";

/// Run the binary under umask 000 (the worst case for file modes): exit code, stdout + stderr.
fn run_umask0(store: &Store, args: &[&str]) -> (i32, String) {
    let r = crate::common::run_umask0(store, args);
    (r.code, format!("{}{}", r.stdout, r.stderr))
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn credentials_never_printed_nor_stored_in_the_catalogue_and_modes_are_private() {
    let up = Upstream::new();
    let authed = serve::spawn(ServeOptions {
        basic_auth: Some(("maas".into(), PW.into())),
        ..ServeOptions::new(up.dir.path().join("current"))
    })
    .unwrap();
    let base = authed.url();
    let with_pw = base.replacen("http://", &format!("http://maas:{PW}@"), 1);
    let wrong = base.replacen("http://", "http://maas:wrong-Pw7@", 1);
    let store = Store::new();
    let mut outputs = Vec::new();
    let mut ok = |args: &[&str]| {
        let (code, text) = run_umask0(&store, args);
        assert_eq!(code, 0, "{args:?}: {text}");
        outputs.push((args.join(" "), text));
    };
    ok(&[
        "source",
        "add",
        "c",
        &with_pw,
        "--keyring",
        up.keyring_str(),
        "arch=amd64",
    ]);
    ok(&["source", "list"]);
    ok(&["source", "list", "--json"]);
    ok(&["source", "show", "c"]);
    ok(&["source", "show", "c", "--json"]);
    ok(&["sync", "c", "-v"]);
    ok(&["sync", "c", "--json"]);
    ok(&["snapshots", "--json"]);
    ok(&["snapshot", "show", "c", "--json"]);
    ok(&["snapshot", "show", "c"]);
    ok(&["status"]);
    ok(&["status", "--json"]);
    ok(&["key", "generate", "--name", "k1"]);
    // The wrong password: one error line, without it.
    let (code, text) = run_umask0(
        &store,
        &[
            "source",
            "add",
            "bad",
            &wrong,
            "--keyring",
            up.keyring_str(),
        ],
    );
    assert_eq!(code, 0, "{text}");
    let (code, text) = run_umask0(&store, &["sync", "bad"]);
    assert_ne!(code, 0, "{text}");
    assert!(text.starts_with("streamvault: error:"), "{text}");
    assert!(!text.contains("wrong-Pw7"), "{text}");
    outputs.push(("sync bad".into(), text));
    let (_, text) = run_umask0(&store, &["status", "--json"]);
    assert!(!text.contains("wrong-Pw7"), "{text}");
    for (cmd, text) in &outputs {
        assert!(!text.contains(PW), "`{cmd}` printed the password: {text}");
    }
    let show = &outputs
        .iter()
        .find(|(c, _)| c == "source show c")
        .unwrap()
        .1;
    assert!(show.contains("login:"), "{show}");

    // Not in the catalogue, its WAL or anywhere in the store but the credentials file.
    let root = store.root();
    for entry in walkdir::WalkDir::new(&root)
        .into_iter()
        .filter_map(Result::ok)
    {
        if !entry.file_type().is_file() || entry.file_name() == "credentials" {
            continue;
        }
        let data = std::fs::read(entry.path()).unwrap_or_default();
        assert!(
            !data.windows(PW.len()).any(|w| w == PW.as_bytes()),
            "password in {}",
            entry.path().display()
        );
    }
    let creds = root.join("credentials");
    assert!(std::fs::read_to_string(&creds).unwrap().contains(PW));
    assert_eq!(mode(&creds), 0o600);
    for f in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] {
        let p = root.join(f);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{f}");
        }
    }
    assert_eq!(mode(&root.join("keys")), 0o700);
    assert_eq!(mode(&root.join("keys/k1.key")), 0o600);
    // Traversable for a web server, writable by nobody else.
    assert_eq!(mode(&root) & 0o711, 0o711, "root {:o}", mode(&root));
    assert_eq!(mode(&root) & 0o022, 0);
    assert_eq!(mode(&root.join("trees")), 0o755);
    assert_eq!(mode(&root.join("blobs")) & 0o022, 0);
    // `source remove` forgets the credentials.
    ok_remove(&store);
    assert!(!std::fs::read_to_string(&creds).unwrap().contains(PW));
}

fn ok_remove(store: &Store) {
    let (code, text) = run_umask0(store, &["source", "remove", "c"]);
    assert_eq!(code, 0, "{text}");
}

/// A catalogue from before the credentials file (the URL with its password in `sources`): the
/// next command that opens the store for writing moves the password out; syncs keep working.
#[test]
fn an_older_catalogue_has_its_credentials_moved_out() {
    let up = Upstream::new();
    let authed = serve::spawn(ServeOptions {
        basic_auth: Some(("maas".into(), PW.into())),
        ..ServeOptions::new(up.dir.path().join("current"))
    })
    .unwrap();
    let with_pw = authed
        .url()
        .replacen("http://", &format!("http://maas:{PW}@"), 1);
    let store = Store::new();
    store.add("old", &up, &[]);
    let db = rusqlite::Connection::open(store.root().join("catalog.db")).unwrap();
    db.execute("UPDATE sources SET url = ?1 WHERE name = 'old'", [&with_pw])
        .unwrap();
    drop(db);
    store.run(&["config", "set", "grace", "6h"]).ok();
    let db = rusqlite::Connection::open(store.root().join("catalog.db")).unwrap();
    let url: String = db
        .query_row("SELECT url FROM sources WHERE name = 'old'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(!url.contains(PW) && !url.contains('@'), "{url}");
    drop(db);
    let r = store.run(&["sync", "old"]).ok();
    assert!(!r.stdout.contains(PW) && !r.stderr.contains(PW));
    let r = store.run(&["snapshot", "show", "old"]).ok();
    assert!(!r.stdout.contains(PW), "{}", r.stdout);
    assert_eq!(mode(&store.root().join("credentials")), 0o600);
}
