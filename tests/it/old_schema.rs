//! A catalogue of an older schema opened read-only (`sync --dry-run`, which must not write): it
//! cannot be migrated, so the command fails with one line naming both schema versions and a
//! hint, writes nothing, and the catalogue keeps its version. A writing `sync` then upgrades it.

use std::path::Path;

use rusqlite::Connection;
use streamvault::catalog::SCHEMA_VERSION;

use crate::common::{migrations, with_source};

/// Replace `db` by a catalogue with only the first `version` migrations applied, holding the
/// sources of the current one.
fn downgrade(db: &Path, version: i64) {
    let sources: Vec<(String, String, Option<String>, String)> = {
        let c = Connection::open(db).unwrap();
        let mut st = c
            .prepare("SELECT name, url, keyring, filters FROM sources")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    };
    for ext in ["db", "db-wal", "db-shm"] {
        let _ = std::fs::remove_file(db.with_extension(ext));
    }
    let c = Connection::open(db).unwrap();
    for (i, sql) in migrations().iter().take(version as usize).enumerate() {
        c.execute_batch(sql).unwrap();
        c.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
            .unwrap();
    }
    for (name, url, keyring, filters) in sources {
        c.execute(
            "INSERT INTO sources (name, url, keyring, filters, created_at)
             VALUES (?1, ?2, ?3, ?4, 0)",
            rusqlite::params![name, url, keyring, filters],
        )
        .unwrap();
    }
}

fn user_version(db: &Path) -> i64 {
    Connection::open(db)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn dry_run_on_an_older_catalogue_fails_with_one_line_and_a_hint() {
    for version in [1, 3, SCHEMA_VERSION - 1] {
        let (_up, store) = with_source("maas", &["arch=amd64"]);
        let db = store.root().join("catalog.db");
        downgrade(&db, version);

        let r = store.run(&["sync", "maas", "--dry-run"]).fails();
        let want =
            format!("has schema version {version}, older than this streamvault ({SCHEMA_VERSION})");
        assert!(r.stderr.contains(&want), "v{version}: {}", r.stderr);
        assert!(
            r.stderr
                .lines()
                .any(|l| l.starts_with("hint:") && l.contains("without `--dry-run`")),
            "v{version}: {}",
            r.stderr
        );
        assert!(r.stdout.is_empty(), "v{version}: {}", r.stdout);
        assert_eq!(
            user_version(&db),
            version,
            "a dry run migrated the catalogue"
        );

        // A writing sync upgrades it and works.
        let r = store.sync_json("maas");
        assert_eq!(r["outcome"]["kind"], "snapshot", "v{version}: {r}");
        assert_eq!(user_version(&db), SCHEMA_VERSION);
        store.run(&["sync", "maas", "--dry-run"]).ok();
    }
}
