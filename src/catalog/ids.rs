//! Typed row ids: a snapshot id cannot be passed where a tree or publication id is meant.
//!
//! Each id wraps the SQLite `INTEGER PRIMARY KEY` it names and converts to and from SQL
//! (`ToSql`/`FromSql`) as that integer. `Display` and `serde` print the bare integer, so every
//! output and `--json` field reads exactly as it did when ids were plain `i64`s. Counts, sizes
//! and times stay plain integers.

use rusqlite::types::{FromSql, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

macro_rules! row_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl $name {
            /// The integer stored in the catalogue.
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                self.0.to_sql()
            }
        }

        impl FromSql for $name {
            fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
                i64::column_result(v).map($name)
            }
        }
    };
}

row_id!(
    /// `sources.id`.
    SourceId
);
row_id!(
    /// `snapshots.id` (what `snapshot show ID`, `publish ID` and `rollback --to ID` name).
    SnapshotId
);
row_id!(
    /// `trees.id`.
    TreeId
);
row_id!(
    /// `publications.id`: one flip of a local DEST link.
    PublicationId
);
row_id!(
    /// `s3_publications.id`: one publish or rollback to an `s3://` DEST.
    S3PublicationId
);
row_id!(
    /// `runs.id`: one recorded sync run.
    RunId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_and_serialize_as_the_bare_integer() {
        assert_eq!(SnapshotId(42).to_string(), "42");
        assert_eq!(serde_json::to_string(&PublicationId(7)).unwrap(), "7");
        assert_eq!(
            serde_json::to_string(&Some(S3PublicationId(3))).unwrap(),
            "3"
        );
        assert_eq!("12".parse::<TreeId>().unwrap(), TreeId(12));
        assert!("x".parse::<SourceId>().is_err());
    }

    #[test]
    fn ids_round_trip_through_sqlite() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        let back: SnapshotId = c
            .query_row("SELECT ?1", [SnapshotId(9)], |r| r.get(0))
            .unwrap();
        assert_eq!(back, SnapshotId(9));
        let text: rusqlite::Result<RunId> = c.query_row("SELECT 'nine'", [], |r| r.get(0));
        assert!(text.is_err(), "a damaged id is an error, never a default");
    }
}
