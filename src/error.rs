//! The library's error type: every variant carries the object it is about (a path, a URL, a
//! source name), messages start lowercase with no final period, and the cause comes from
//! `source()`, never repeated in the message. The CLI prints the chain on one line (invariant 7),
//! formatted by [`chain_line`], the one error chain formatter (CLI, verify, gc, run history).

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error and its causes on one line, `what: cause: cause`; a cause whose text the line
/// already holds is not repeated.
pub fn chain_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot {op} `{}`", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("catalogue `{}`", path.display())]
    Db {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    #[error("catalogue `{}` has schema version {found}, newer than this streamvault ({known})", path.display())]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },

    /// An older catalogue opened read-only: it cannot be migrated, and the queries expect the
    /// current schema.
    #[error("catalogue `{}` has schema version {found}, older than this streamvault ({known}), and a read-only command cannot upgrade it", path.display())]
    SchemaTooOld {
        path: PathBuf,
        found: i64,
        known: i64,
    },

    #[error("`{}` is locked by {holder}", path.display())]
    Locked { path: PathBuf, holder: String },

    #[error("`{0}` is not a BLAKE3 digest")]
    BadDigest(String),

    #[error("no source named `{0}`")]
    UnknownSource(String),

    #[error("a source named `{0}` already exists")]
    SourceExists(String),

    #[error("invalid source name `{0}` (use letters, digits, `.`, `_`, `-`)")]
    BadSourceName(String),

    #[error("no snapshot `{0}`")]
    UnknownSnapshot(String),

    #[error("`--keep` needs `--max`")]
    KeepWithoutMax,

    #[error("no source given (name sources or pass `--all`)")]
    NoSourceGiven,

    #[error(transparent)]
    Filter(#[from] crate::streams::FilterError),

    #[error(transparent)]
    FilterGroup(#[from] crate::streams::GroupError),

    #[error(transparent)]
    Select(#[from] crate::streams::SelectError),

    #[error(transparent)]
    Parse(#[from] crate::streams::ParseError),

    #[error(transparent)]
    Fetch(#[from] crate::fetch::Error),

    #[error("cannot read keyring `{}`", path.display())]
    Keyring {
        path: PathBuf,
        #[source]
        source: crate::openpgp::Error,
    },

    #[error(
        "`{url}` is signed but no keyring was given (pass `--keyring FILE`, or `--no-verify` to skip the check)"
    )]
    NoKeyring { url: String },

    #[error("`{url}` is not clearsigned, but the start document of this run is signed")]
    Unsigned { url: String },

    #[error("signature check failed for `{url}`")]
    Signature {
        url: String,
        #[source]
        source: crate::openpgp::Error,
    },

    #[error("`{url}` does not match its index entry: {what}")]
    DocumentMismatch { url: String, what: String },

    #[error("index `{url}` nests indexes too deeply or in a cycle")]
    IndexLoop { url: String },

    #[error("`{url}` is older than the last snapshot: updated `{new}`, last snapshot `{old}`")]
    Downgrade {
        url: String,
        new: String,
        old: String,
    },

    #[error(
        "item `{item}` has no usable {what} (every item with a path needs a size and an md5, sha256 or sha512)"
    )]
    ItemIncomplete { item: String, what: &'static str },

    #[error(
        "{failed} of {total} downloads failed; {done} finished downloads are kept for the next run (first failure: {first})"
    )]
    Downloads {
        failed: usize,
        total: usize,
        done: usize,
        first: String,
    },

    #[error("the sync was interrupted")]
    Interrupted,

    /// A task of ours panicked: never an answer from outside, always a bug.
    #[error("a {0} task panicked (a bug in streamvault: please report it)")]
    TaskPanicked(&'static str),

    #[error(transparent)]
    Serve(#[from] crate::serve::ServeError),

    #[error(transparent)]
    Generate(#[from] crate::streamgen::GenError),

    #[error("cannot create or use a signing key")]
    Signing {
        #[source]
        source: crate::openpgp::Error,
    },

    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),

    // ------------------------------------------------------------------ publish
    #[error("the directory of `{}` does not exist", dest.display())]
    DestParentMissing { dest: PathBuf },

    #[error("`{}` is a file, not a published link; refusing to replace it", dest.display())]
    DestIsFile { dest: PathBuf },

    #[error("`{}` is a real directory, not a published link", dest.display())]
    DestIsDirectory { dest: PathBuf },

    #[error("`{}` is a symbolic link to `{}`, which is not a tree of this store", dest.display(), target.display())]
    DestForeignLink { dest: PathBuf, target: PathBuf },

    #[error("`{}` is not published by this store", dest.display())]
    NotPublished { dest: PathBuf },

    #[error("`{}` {} the store root `{}`; refusing to publish there", dest.display(), relation, root.display())]
    DestInStore {
        dest: PathBuf,
        root: PathBuf,
        relation: &'static str,
    },

    #[error("`{}` has no earlier publication to roll back to", dest.display())]
    NothingToRollBack { dest: PathBuf },

    #[error("no publication or snapshot `{spec}` on `{}`", dest.display())]
    UnknownPublication { dest: PathBuf, spec: String },

    #[error("tree `{}` of publication {publication} no longer exists", tree.display())]
    TreeGone {
        publication: crate::catalog::PublicationId,
        tree: PathBuf,
    },

    #[error(
        "the tree for snapshot {snapshot} lacks {missing} of the {listed} items its {mode} metadata lists (e.g. {examples}); clients would get 404s"
    )]
    TreeIncomplete {
        snapshot: crate::catalog::SnapshotId,
        mode: &'static str,
        listed: usize,
        missing: usize,
        examples: String,
    },

    #[error("tree `{}` has no index document (looked for {looked})", root.display())]
    NoIndex { root: PathBuf, looked: String },

    #[error(
        "path `{path}` is used twice in snapshot {snapshot} with different contents (or as a file and a directory)"
    )]
    PathConflict {
        snapshot: crate::catalog::SnapshotId,
        path: String,
    },

    #[error("item `{item}` of snapshot {snapshot} has a path but no blob")]
    ItemWithoutBlob {
        snapshot: crate::catalog::SnapshotId,
        item: String,
    },

    #[error("snapshot {snapshot} holds no items; there is nothing to publish")]
    EmptySnapshot {
        snapshot: crate::catalog::SnapshotId,
    },

    #[error(
        "`--sign-key` needs `--metadata filtered` (verbatim documents keep their upstream signatures)"
    )]
    SignKeyNeedsFiltered,

    #[error(
        "the filtered metadata breaks {count} MAAS client rule(s) the upstream keeps, e.g. {examples}"
    )]
    MaasRules { count: usize, examples: String },

    #[error("`--unsigned` and `--sign-key` contradict each other")]
    UnsignedWithSignKey,

    #[error("cannot write the metadata document `{path}`")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },

    #[error(
        "stored document `{path}` of snapshot {snapshot} is not a readable clearsigned document"
    )]
    StoredDocument {
        snapshot: crate::catalog::SnapshotId,
        path: String,
        #[source]
        source: crate::openpgp::Error,
    },

    // --------------------------------------------------------------------- keys
    #[error("invalid key name `{0}` (use letters, digits, `.`, `_`, `-`)")]
    BadKeyName(String),

    #[error("no signing key named `{0}`")]
    UnknownKey(String),

    #[error("a signing key named `{0}` already exists")]
    KeyExists(String),

    #[error("cannot use the signing key `{}`", path.display())]
    KeyFile {
        path: PathBuf,
        #[source]
        source: crate::openpgp::Error,
    },

    // ---------------------------------------------------------------- gc/verify
    #[error("no store at `{}` (it has no catalogue)", .0.display())]
    NoStore(PathBuf),

    #[error(
        "invalid duration `{0}` (use a number with s, m, h, d or w, e.g. `24h`, `30m`, `7d`, or `0`)"
    )]
    BadDuration(String),

    // ---------------------------------------------------------------------- s3
    #[error(transparent)]
    S3(#[from] crate::publish::s3::S3Error),

    // ------------------------------------------------------- composed publications
    #[error(transparent)]
    Compose(#[from] crate::publish::compose::ComposeError),

    #[error("cannot start {what} worker threads")]
    Threads {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },

    // ------------------------------------------------------- unattended operation (ops)
    #[error("unknown setting `{0}` (known: grace, keep-last, auto-gc, reserve, metrics-file)")]
    UnknownSetting(String),

    #[error("invalid value `{value}` for `{key}`")]
    BadSetting { key: String, value: String },

    #[error("not enough space on {fs}: need {need}, have {have}")]
    NotEnoughSpace {
        fs: String,
        need: String,
        have: String,
    },

    #[error("`--publish` is not valid for an implicit `mirror` source `{0}`")]
    ImplicitSource(String),
}

impl Error {
    /// The error of a task that did not finish: a panic is a bug ([`Error::TaskPanicked`]), a
    /// cancellation an interruption.
    pub(crate) fn from_join(e: tokio::task::JoinError, what: &'static str) -> Error {
        if e.is_panic() {
            Error::TaskPanicked(what)
        } else {
            Error::Interrupted
        }
    }

    /// A hint for the user, printed on its own line after the error.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Locked { .. } => {
                Some("wait for it to finish, or pass `--wait` to queue behind it".to_string())
            }
            Error::UnknownSource(_) => Some("`streamvault source list` shows the sources".into()),
            Error::SchemaTooOld { .. } => Some(
                "run one command that writes (e.g. `streamvault sync NAME` without `--dry-run`) with this streamvault to upgrade it".into(),
            ),
            Error::UnknownSnapshot(_) => Some("`streamvault snapshots` lists the snapshots".into()),
            Error::DestIsDirectory { .. } => Some(
                "pass `--adopt` to import its files into the store and replace it with the link"
                    .into(),
            ),
            Error::DestInStore { .. } => {
                Some("publish to a directory outside the store (e.g. under /srv/www)".into())
            }
            Error::DestIsFile { .. } | Error::DestForeignLink { .. } => {
                Some("move it away, or publish to another path".into())
            }
            Error::NotPublished { .. } | Error::UnknownPublication { .. } => {
                Some("`streamvault publications` lists what was published where".into())
            }
            Error::MaasRules { .. } => Some(
                "widen the filters so each image version keeps boot-kernel, boot-initrd, manifest and squashfs (README: MAAS client rules), or `--force` to publish anyway".into(),
            ),
            Error::TreeIncomplete { .. } => Some(
                "publish with `--metadata filtered` (metadata rewritten to what the snapshot holds), or `--force` to publish anyway".into(),
            ),
            Error::TreeGone { .. } => Some("publish the snapshot again to rebuild its tree".into()),
            Error::UnknownKey(_) => Some(
                "`streamvault key list` shows the keys; `streamvault key generate --name NAME` makes one".into(),
            ),
            Error::NothingToRollBack { .. } => {
                Some("`streamvault publications DEST` lists what was published there".into())
            }
            Error::NotEnoughSpace { .. } => Some(
                "`streamvault gc --dry-run` shows what gc would free; or free space, or lower `streamvault config set reserve SIZE`".into(),
            ),
            Error::ImplicitSource(_) => Some(
                "a `mirror` run already publishes to its OUTPUT_DIR; add a source with `source add … --publish DEST` instead".into(),
            ),
            Error::UnknownSetting(_) | Error::BadSetting { .. } => Some(
                "`streamvault config get` lists the settings; e.g. `config set grace 6h`, `keep-last 3`, `auto-gc off`, `reserve 512M`".into(),
            ),
            Error::Downgrade { .. } => Some(
                "a replay of older metadata? pass `--allow-downgrade` to accept it".into(),
            ),
            Error::S3(e) => e.hint(),
            Error::Compose(e) => e.hint(),
            Error::NoStore(_) => {
                Some("pass `--root DIR` or set `STREAMVAULT_ROOT` to the store's root".into())
            }
            _ => None,
        }
    }
}

/// Attach an operation and a path to an `io::Error` (there is no blanket `From<io::Error>`).
pub trait IoResultExt<T> {
    fn with_path(self, op: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoResultExt<T> for std::result::Result<T, std::io::Error> {
    fn with_path(self, op: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| Error::Io {
            op,
            path: path.to_path_buf(),
            source,
        })
    }
}
