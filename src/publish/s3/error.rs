//! What can go wrong publishing to S3, one line each, with a hint where one helps.

use super::*;

/// Errors of S3 publishing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum S3Error {
    #[error("`{dest}` is not a DEST streamvault can publish to")]
    UnsupportedDest { dest: String },

    #[error("`{dest}` is not a valid S3 DEST: {why}")]
    BadUrl { dest: String, why: &'static str },

    #[error("cannot configure S3 access for `{dest}`")]
    Config {
        dest: String,
        #[source]
        source: object_store::Error,
    },

    #[error("S3 {op} of `{key}` failed")]
    Request {
        op: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },

    #[error("`{key}` in the bucket has {got} bytes after its upload, not {expected}")]
    SizeMismatch {
        key: String,
        expected: u64,
        got: u64,
    },

    #[error(
        "publication {publication} of `{dest}` was recorded before streamvault kept what each S3 publication lists"
    )]
    NoListing {
        dest: String,
        publication: S3PublicationId,
    },

    #[error(
        "cannot roll `{dest}` back to publication {publication}: {missing} objects it lists are gone from the bucket (e.g. `{example}`)"
    )]
    RollbackIncomplete {
        dest: String,
        publication: S3PublicationId,
        missing: usize,
        example: String,
    },

    #[error("another publisher won: the index of `{dest}` changed while this publish ran")]
    Lost { dest: String },

    #[error(
        "refusing to overwrite `{key}` in `{dest}`: publication {publication} lists it with other bytes"
    )]
    Overwrite {
        dest: String,
        key: String,
        publication: S3PublicationId,
    },
}

impl S3Error {
    pub(crate) fn hint(&self) -> Option<String> {
        match self {
            S3Error::UnsupportedDest { .. } => Some(
                "publish to a local directory, or to s3://BUCKET/PREFIX (endpoint from AWS_ENDPOINT_URL)"
                    .into(),
            ),
            S3Error::BadUrl { .. } => Some("write it as s3://BUCKET/PREFIX".into()),
            S3Error::NoListing { .. } => Some(
                "publish the live snapshot again (it records the listing), then run gc after the grace period"
                    .into(),
            ),
            S3Error::RollbackIncomplete { .. } => Some(
                "`gc s3://…` collected them after the grace period: publish that snapshot again instead"
                    .into(),
            ),
            S3Error::SizeMismatch { .. } => Some("publish again; `verify DEST` checks every object".into()),
            S3Error::Config { .. } | S3Error::Request { .. } => Some(
                "check AWS_ENDPOINT_URL, AWS_REGION and the credentials in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or the ~/.aws profile AWS_PROFILE names)"
                    .into(),
            ),
            S3Error::Lost { .. } => {
                Some("`streamvault status DEST` shows what is live; publish again if needed".into())
            }
            S3Error::Overwrite { .. } => {
                Some("publish with `--metadata filtered`, or to another prefix".into())
            }
        }
    }
}
