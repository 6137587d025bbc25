//! Catalogue queries for unattended operation: store settings, the run history of syncs and
//! mirror runs, the implicit (`mirror`) and auto-publish marks of sources, and the credentials
//! file that keeps URL passwords out of the catalogue.
//!
//! Credentials: `source add NAME http://user:pw@host/…` stores the URL without its user info in
//! `sources` and the user info in `<root>/credentials` (JSON, mode 0600, written by temp file
//! and rename), keyed by source name and the URL it belongs to. [`Catalog::source`] puts them
//! back into [`Source::credentials`] (never serialized); the fetcher asks for
//! [`Source::fetch_url`]. Everything that prints a source prints `url` without them.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rusqlite::params;

use super::ids::{RunId, SnapshotId};
use super::{Catalog, MetadataMode, Source, json_list, now, parse_list_strict};
use crate::error::{Error, IoResultExt, Result};

/// Where a source's new snapshots are published after each sync (`source add … --publish`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AutoPublish {
    pub dest: PathBuf,
    pub metadata: MetadataMode,
    pub sign_key: Option<String>,
}

/// One sync or mirror attempt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Run {
    pub(crate) id: RunId,
    pub(crate) source: String,
    pub started_at: i64,
    pub(crate) finished_at: Option<i64>,
    pub result: RunResult,
    pub error: Option<String>,
    pub(crate) fetched_bytes: i64,
    pub(crate) items: i64,
    pub(crate) snapshot: Option<SnapshotId>,
}

/// How a run ended (`runs.result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunResult {
    /// Still running, or killed before it could record its end.
    Running,
    /// A new snapshot.
    Snapshot,
    /// Upstream unchanged (or a dry run).
    Unchanged,
    Failed,
}

impl RunResult {
    /// Every result, in the order the metrics list them.
    pub(crate) const ALL: [RunResult; 4] = [
        RunResult::Snapshot,
        RunResult::Unchanged,
        RunResult::Failed,
        RunResult::Running,
    ];
}

stored_enum!(RunResult, "run result", {
    Running => "running",
    Snapshot => "snapshot",
    Unchanged => "unchanged",
    Failed => "failed",
});

/// `scheme://user:pw@host/x` → (`scheme://host/x`, `Some("user:pw")`); other strings unchanged.
pub fn split_credentials(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None);
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if !userinfo.is_empty() => (
            format!("{scheme}://{host}{tail}"),
            Some(userinfo.to_string()),
        ),
        _ => (url.to_string(), None),
    }
}

/// `url` with `userinfo` put back (the inverse of [`split_credentials`]).
pub fn join_credentials(url: &str, userinfo: Option<&str>) -> String {
    match (userinfo, url.split_once("://")) {
        (Some(u), Some((scheme, rest))) => format!("{scheme}://{u}@{rest}"),
        _ => url.to_string(),
    }
}

/// `url` without its user info (for anything recorded or printed).
pub fn strip_credentials(url: &str) -> String {
    split_credentials(url).0
}

impl Source {
    /// The URL the fetcher uses: `url` with its credentials.
    pub(crate) fn fetch_url(&self) -> String {
        join_credentials(
            &self.url,
            self.credentials.get(&self.url).map(String::as_str),
        )
    }

    /// The fallback mirrors with their credentials.
    pub(crate) fn fetch_mirrors(&self) -> Vec<String> {
        self.mirrors
            .iter()
            .map(|m| join_credentials(m, self.credentials.get(m).map(String::as_str)))
            .collect()
    }

    /// Whether any of its URLs carries credentials (kept in the credentials file).
    pub fn has_credentials(&self) -> bool {
        !self.credentials.is_empty()
    }
}

type CredMap = BTreeMap<String, BTreeMap<String, String>>;

impl Catalog {
    // ------------------------------------------------------------------ settings

    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        self.row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
            r.get(0)
        })
    }

    /// The slice of `blobs/` the next automatic gc walks for orphans: the hex digit (0–15) its
    /// prefix directories start with (schema 0019). No row reads as 0 (the next advance writes
    /// it again); a value out of range is an error, never a default.
    pub(crate) fn gc_orphan_slice(&self) -> Result<u8> {
        let v: Option<i64> =
            self.row("SELECT orphan_slice FROM gc_state WHERE id = 1", [], |r| {
                r.get(0)
            })?;
        match v {
            None => Ok(0),
            Some(v) => u8::try_from(v)
                .ok()
                .filter(|v| *v < 16)
                .ok_or_else(|| self.err(rusqlite::Error::IntegralValueOutOfRange(0, v))),
        }
    }

    /// After an automatic gc walked slice `done`: the next one walks the next digit. Committed
    /// without the WAL's fsync ([`Catalog::unsynced`]): a power cut that loses it only walks the
    /// same slice again.
    pub(crate) fn advance_gc_orphan_slice(&self, done: u8) -> Result<()> {
        self.unsynced(|c| {
            c.exec(
                "INSERT INTO gc_state (id, orphan_slice) VALUES (1, ?1)
                 ON CONFLICT(id) DO UPDATE SET orphan_slice = excluded.orphan_slice",
                [i64::from((done + 1) % 16)],
            )
        })?;
        Ok(())
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.exec(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    pub fn unset_setting(&self, key: &str) -> Result<()> {
        self.exec("DELETE FROM settings WHERE key = ?1", [key])?;
        Ok(())
    }

    // ------------------------------------------------------------------ sources

    /// Mark a source as the implicit source of a `mirror` OUTPUT_DIR.
    pub(crate) fn mark_implicit(&self, name: &str) -> Result<()> {
        self.exec("UPDATE sources SET implicit = 1 WHERE name = ?1", [name])?;
        Ok(())
    }

    /// Set (or with `None` clear) a source's auto-publish target.
    pub fn set_auto_publish(&self, name: &str, p: Option<&AutoPublish>) -> Result<()> {
        let n = self.exec(
            "UPDATE sources SET publish_dest = ?2, publish_metadata = ?3, publish_sign_key = ?4
             WHERE name = ?1",
            params![
                name,
                p.map(|p| p.dest.to_string_lossy().into_owned()),
                p.map(|p| p.metadata),
                p.and_then(|p| p.sign_key.clone()),
            ],
        )?;
        if n == 0 {
            return Err(Error::UnknownSource(name.to_string()));
        }
        Ok(())
    }

    // ------------------------------------------------------------------ credentials

    /// `<root>/credentials`, beside the catalogue.
    pub fn credentials_path(&self) -> PathBuf {
        crate::store::Layout::new(self.path.parent().unwrap_or(Path::new("."))).credentials()
    }

    /// Every source's credentials. A damaged file is an error: read as "none", the next write
    /// would replace every other source's credentials with nothing.
    pub(super) fn read_credentials(&self) -> Result<CredMap> {
        let p = self.credentials_path();
        let damaged = |e: serde_json::Error| Error::Io {
            op: "parse credentials",
            path: p.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        };
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(damaged),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CredMap::new()),
            Err(e) => Err(Error::Io {
                op: "read credentials",
                path: p,
                source: e,
            }),
        }
    }

    /// Record the credentials of a source's URLs (replacing the previous ones); nothing is
    /// written when there are none to record or remove.
    pub(super) fn store_credentials(
        &self,
        name: &str,
        creds: BTreeMap<String, String>,
    ) -> Result<()> {
        let mut all = self.read_credentials()?;
        let old = all.get(name).cloned().unwrap_or_default();
        if old == creds {
            return Ok(());
        }
        if creds.is_empty() {
            all.remove(name);
        } else {
            all.insert(name.to_string(), creds);
        }
        let p = self.credentials_path();
        let tmp = p.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_path("create", &tmp)?;
        // The umask only ever narrows `mode`; set it exactly.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_path("chmod", &tmp)?;
        let text = serde_json::to_vec_pretty(&all).unwrap_or_default();
        f.write_all(&text)
            .and_then(|()| f.sync_all())
            .with_path("write", &tmp)?;
        std::fs::rename(&tmp, &p).with_path("rename", &p)?;
        Ok(())
    }

    /// A catalogue written before credentials moved out: re-record every source whose URL or
    /// mirrors carry user info (moving it to the credentials file). Snapshot rows are never
    /// changed (invariant 2): the URL an old one recorded is stripped when it is read. Nothing is
    /// written when there is nothing to move; a damaged `mirrors` value is an error (rewriting
    /// it as an empty list would lose the mirrors).
    pub(super) fn move_credentials_out(&self) -> Result<()> {
        let rows: Vec<(String, String, Vec<String>)> = self.rows(
            "SELECT name, url, mirrors FROM sources
             WHERE url LIKE '%://%@%' OR mirrors LIKE '%://%@%'",
            [],
            |r| {
                let mirrors: String = r.get(2)?;
                Ok((r.get(0)?, r.get(1)?, parse_list_strict(&mirrors, 2)?))
            },
        )?;
        for (name, url, mirrors) in rows {
            let mut creds = self.read_credentials()?.remove(&name).unwrap_or_default();
            let mut clean = |u: &str| {
                let (c, info) = split_credentials(u);
                if let Some(i) = info {
                    creds.insert(c.clone(), i);
                }
                c
            };
            let url = clean(&url);
            let list: Vec<String> = mirrors.iter().map(|m| clean(m)).collect();
            self.store_credentials(&name, creds)?;
            self.exec(
                "UPDATE sources SET url = ?2, mirrors = ?3 WHERE name = ?1",
                params![name, url, json_list(&list)],
            )?;
        }
        Ok(())
    }

    pub(super) fn forget_credentials(&self, name: &str) -> Result<()> {
        self.store_credentials(name, BTreeMap::new())
    }

    // ------------------------------------------------------------------ runs

    /// Record the start of a sync or mirror run.
    pub(crate) fn start_run(&self, source: &str) -> Result<RunId> {
        self.sql(|c| {
            c.execute(
                "INSERT INTO runs (source_name, started_at, result) VALUES (?1, ?2, ?3)",
                params![source, now(), RunResult::Running],
            )?;
            Ok(RunId(c.last_insert_rowid()))
        })
    }

    /// Record how a run ended. `error` must already be free of credentials.
    pub(crate) fn finish_run(
        &self,
        id: RunId,
        result: RunResult,
        error: Option<&str>,
        fetched_bytes: u64,
        items: u64,
        snapshot: Option<SnapshotId>,
    ) -> Result<()> {
        self.exec(
            "UPDATE runs SET finished_at = ?2, result = ?3, error = ?4, fetched_bytes = ?5,
                             items = ?6, snapshot_id = ?7 WHERE id = ?1",
            params![
                id,
                now(),
                result,
                error,
                i64::try_from(fetched_bytes).unwrap_or(i64::MAX),
                i64::try_from(items).unwrap_or(i64::MAX),
                snapshot
            ],
        )?;
        // The history stays bounded: the last 100 runs per source.
        self.exec(
            "DELETE FROM runs WHERE source_name = (SELECT source_name FROM runs WHERE id = ?1)
               AND id <= (SELECT id FROM runs WHERE source_name =
                          (SELECT source_name FROM runs WHERE id = ?1)
                          ORDER BY id DESC LIMIT 1 OFFSET 100)",
            [id],
        )?;
        Ok(())
    }

    /// The newest run of each source (sorted by source name).
    pub(crate) fn last_runs(&self) -> Result<Vec<Run>> {
        self.rows(
            "SELECT id, source_name, started_at, finished_at, result, error, fetched_bytes,
                    items, snapshot_id FROM runs r
             WHERE id = (SELECT max(id) FROM runs x WHERE x.source_name = r.source_name)
             ORDER BY source_name",
            [],
            |r| {
                Ok(Run {
                    id: r.get(0)?,
                    source: r.get(1)?,
                    started_at: r.get(2)?,
                    finished_at: r.get(3)?,
                    result: r.get(4)?,
                    error: r.get(5)?,
                    fetched_bytes: r.get(6)?,
                    items: r.get(7)?,
                    snapshot: r.get(8)?,
                })
            },
        )
    }

    /// When a source last finished a run successfully.
    pub(crate) fn last_success(&self, source: &str) -> Result<Option<i64>> {
        self.sql(|c| {
            c.query_row(
                "SELECT max(finished_at) FROM runs WHERE source_name = ?1
                   AND result IN (?2, ?3)",
                params![source, RunResult::Snapshot, RunResult::Unchanged],
                |r| r.get(0),
            )
        })
    }
}
