//! Sources (the `sources` table): the configured upstreams, added, updated in place, listed and
//! removed; a source's filter groups (`source edit NAME --set-filters …`).
//!
//! The filter groups live in the `filters` column as a JSON list of strings in which the token
//! `--or` separates groups ([`crate::streams::FilterGroups`]), so a row written before groups
//! existed reads as one group. Reading a damaged `filters` or `mirrors` value is an error, never
//! "no filters" (the next sync would mirror everything upstream).

use std::collections::BTreeMap;
use std::path::PathBuf;

use rusqlite::params;

use super::ids::SourceId;
use super::ops::{AutoPublish, split_credentials};
use super::{Catalog, MetadataMode, json_list, now, parse_list_strict};
use crate::error::{Error, Result};

/// A configured upstream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Source {
    pub(crate) id: SourceId,
    pub name: String,
    pub url: String,
    pub path: Option<String>,
    pub keyring: Option<PathBuf>,
    pub max: Option<i64>,
    pub keep: bool,
    pub no_verify: bool,
    pub mirrors: Vec<String>,
    pub filters: Vec<String>,
    pub created_at: i64,
    /// The implicit source of a `mirror` OUTPUT_DIR: retention keeps only what it serves.
    pub implicit: bool,
    /// Publish each new snapshot here after a sync (`source add … --publish DEST`).
    pub publish: Option<AutoPublish>,
    /// User info per URL (`url`, a mirror), from the credentials file; never printed.
    #[serde(skip)]
    pub(crate) credentials: BTreeMap<String, String>,
}

/// What `source add` records.
#[derive(Debug, Clone, Default)]
pub struct NewSource {
    pub name: String,
    pub url: String,
    pub path: Option<String>,
    pub keyring: Option<PathBuf>,
    pub max: Option<i64>,
    pub keep: bool,
    pub no_verify: bool,
    pub mirrors: Vec<String>,
    pub filters: Vec<String>,
}

/// Source names become lock-file names and appear in commands: keep them plain.
pub fn check_source_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadSourceName(name.to_string()))
    }
}

const SOURCE_COLUMNS: &str = "SELECT id, name, url, path, keyring, max_versions, keep,
    no_verify, mirrors, filters, created_at, implicit, publish_dest, publish_metadata,
    publish_sign_key FROM sources";

impl Catalog {
    pub fn add_source(&self, s: &NewSource) -> Result<SourceId> {
        check_source_name(&s.name)?;
        let exists = self.row("SELECT id FROM sources WHERE name = ?1", [&s.name], |r| {
            r.get::<_, SourceId>(0)
        })?;
        if exists.is_some() {
            return Err(Error::SourceExists(s.name.clone()));
        }
        Ok(self.upsert_source(s)?.id)
    }

    /// Create a source or update its settings in place (the implicit sources of `mirror`, whose
    /// command line may change between runs); snapshots keep what each run used.
    pub(crate) fn upsert_source(&self, s: &NewSource) -> Result<Source> {
        check_source_name(&s.name)?;
        // Credentials go to the credentials file, never into the catalogue.
        let mut creds = BTreeMap::new();
        let mut clean = |u: &str| {
            let (c, info) = split_credentials(u);
            if let Some(i) = info {
                creds.insert(c.clone(), i);
            }
            c
        };
        let url = clean(&s.url);
        let mirrors: Vec<String> = s.mirrors.iter().map(|m| clean(m)).collect();
        self.store_credentials(&s.name, creds)?;
        self.exec(
            "INSERT INTO sources (name, url, path, keyring, max_versions, keep, no_verify,
                                  mirrors, filters, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT(name) DO UPDATE SET url = excluded.url, path = excluded.path,
               keyring = excluded.keyring, max_versions = excluded.max_versions,
               keep = excluded.keep, no_verify = excluded.no_verify,
               mirrors = excluded.mirrors, filters = excluded.filters",
            params![
                s.name,
                url,
                s.path,
                s.keyring.as_ref().map(|p| p.to_string_lossy().into_owned()),
                s.max,
                s.keep,
                s.no_verify,
                json_list(&mirrors),
                json_list(&s.filters),
                now(),
            ],
        )?;
        self.source(&s.name)
    }

    pub fn sources(&self) -> Result<Vec<Source>> {
        let mut list = self.rows(
            &format!("{SOURCE_COLUMNS} ORDER BY name"),
            [],
            source_from_row,
        )?;
        let mut creds = self.read_credentials()?;
        for s in &mut list {
            s.credentials = creds.remove(&s.name).unwrap_or_default();
        }
        Ok(list)
    }

    pub fn source(&self, name: &str) -> Result<Source> {
        let mut s = self
            .row(
                &format!("{SOURCE_COLUMNS} WHERE name = ?1"),
                [name],
                source_from_row,
            )?
            .ok_or_else(|| Error::UnknownSource(name.to_string()))?;
        s.credentials = self.read_credentials()?.remove(name).unwrap_or_default();
        Ok(s)
    }

    /// Remove a source; its snapshots stay (with the name recorded) until `gc` drops them.
    pub fn remove_source(&self, name: &str) -> Result<()> {
        let n = self.exec("DELETE FROM sources WHERE name = ?1", [name])?;
        if n == 0 {
            return Err(Error::UnknownSource(name.to_string()));
        }
        self.forget_credentials(name)
    }

    /// Replace the filter list of source `name` (already checked by the caller).
    pub fn set_source_filters(&self, name: &str, filters: &[String]) -> Result<()> {
        let n = self.exec(
            "UPDATE sources SET filters = ?2 WHERE name = ?1",
            params![name, json_list(filters)],
        )?;
        if n == 0 {
            return Err(Error::UnknownSource(name.to_string()));
        }
        Ok(())
    }
}

fn source_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Source> {
    let keyring: Option<String> = r.get(4)?;
    let mirrors: String = r.get(8)?;
    let mirrors = parse_list_strict(&mirrors, 8)?;
    let filters: String = r.get(9)?;
    let filters = parse_list_strict(&filters, 9)?;
    // A damaged `publish_metadata` is an error (FromSql), never "verbatim".
    let publish = match r.get::<_, Option<String>>(12)? {
        Some(dest) => Some(AutoPublish {
            dest: PathBuf::from(dest),
            metadata: r.get::<_, Option<MetadataMode>>(13)?.unwrap_or_default(),
            sign_key: r.get(14)?,
        }),
        None => None,
    };
    Ok(Source {
        id: r.get(0)?,
        name: r.get(1)?,
        url: r.get(2)?,
        path: r.get(3)?,
        keyring: keyring.map(PathBuf::from),
        max: r.get(5)?,
        keep: r.get(6)?,
        no_verify: r.get(7)?,
        mirrors,
        filters,
        created_at: r.get(10)?,
        implicit: r.get(11)?,
        publish,
        credentials: BTreeMap::new(),
    })
}
