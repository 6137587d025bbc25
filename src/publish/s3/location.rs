//! An `s3://BUCKET/PREFIX` DEST: recognising a URL-shaped DEST, parsing and checking an `s3://`
//! one (a URL's user info is never echoed in an error), and the object key of a path under it.

use std::path::Path;

use object_store::path::Path as ObjPath;

use super::S3Error;

/// An `s3://BUCKET/PREFIX` DEST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Dest {
    pub(crate) bucket: String,
    /// Without leading or trailing `/`; may be empty.
    pub(crate) prefix: String,
}

/// Is `dest` URL-shaped (`scheme://…`)?
pub fn is_url(dest: &Path) -> bool {
    let s = dest.to_string_lossy();
    let Some((scheme, _)) = s.split_once("://") else {
        return false;
    };
    let mut c = scheme.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic())
        && c.all(|ch| ch.is_ascii_alphanumeric() || "+.-".contains(ch))
}

impl S3Dest {
    /// `Ok(None)` for a local path; an error for a URL that is not a valid `s3://` DEST.
    pub fn parse(dest: &Path) -> std::result::Result<Option<S3Dest>, S3Error> {
        if !is_url(dest) {
            return Ok(None);
        }
        let s = dest.to_string_lossy();
        let Some(rest) = s.strip_prefix("s3://") else {
            // Never echo a URL's user-info (it may hold a password).
            let shown = match s.split_once("://") {
                Some((scheme, r)) => match r.split_once('@') {
                    Some((_, host)) => format!("{scheme}://…@{host}"),
                    None => s.to_string(),
                },
                None => s.to_string(),
            };
            return Err(S3Error::UnsupportedDest { dest: shown });
        };
        let bad = |why| S3Error::BadUrl {
            dest: s.to_string(),
            why,
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket"));
        }
        if !bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
        {
            return Err(bad("a bucket name has only letters, digits, `.`, `-`, `_`"));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
            return Err(bad("the prefix has an empty, `.` or `..` part"));
        }
        if prefix.contains(['?', '#']) {
            return Err(bad("the prefix has `?` or `#`"));
        }
        Ok(Some(S3Dest {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        }))
    }

    /// `s3://BUCKET/PREFIX`, the key publications are recorded under.
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    pub(super) fn key(&self, rel: &str) -> ObjPath {
        if self.prefix.is_empty() {
            ObjPath::from(rel)
        } else {
            ObjPath::from(format!("{}/{rel}", self.prefix))
        }
    }
}
