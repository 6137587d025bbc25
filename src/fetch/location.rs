//! Where documents and items come from: the source base, its `--mirror` fallbacks, the start
//! document rules of spec §2.1, and the kind of each URL (http(s), `file://`, local path).
//!
//! Protects invariant 6 by construction of URLs only: joining is plain string concatenation, as
//! in sstream-mirror, so the bytes asked for are exactly `base + path`; passwords never reach a
//! message ([`redact`]). Path safety of `rel` (invariant 5) is checked by the caller, and every
//! http(s) URL built here is checked once more as the HTTP client will see it (WHATWG parsing,
//! which resolves `..`, `%2e%2e` and `\\`): it must stay under the directory of its base, for the
//! source and for each `--mirror` alike ([`Error::OutsideBase`]). A base with an authority but no
//! path (`http://host:8080`) means the root (`http://host:8080/`).

use std::path::PathBuf;

use super::error::{Error, Result};

/// Default start document when the source names none (spec §2.1).
pub const DEFAULT_START: &str = "streams/v1/index.sjson";

/// A source base plus its `--mirror` fallbacks; URLs are `base + rel`.
///
/// A base should end with `/`. [`Fetcher::get_document`](super::Fetcher::get_document) fixes a
/// base that does not, the first time it meets a 404 (sstream-mirror's trailing-slash probe).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// `http(s)://…`, `file://…` or a local directory path.
    pub base: String,
    /// Tried in order after a 404 (or a missing local file) on `base + rel`.
    pub mirrors: Vec<String>,
}

impl Location {
    pub fn new(base: impl Into<String>) -> Self {
        Location {
            base: root_slash(base.into()),
            mirrors: Vec::new(),
        }
    }

    pub fn with_mirrors(mut self, mirrors: Vec<String>) -> Self {
        self.mirrors = mirrors.into_iter().map(root_slash).collect();
        self
    }

    /// Every URL of `rel`, in the order they are tried; an error if one of them would leave
    /// its base.
    pub fn urls(&self, rel: &str) -> Result<Vec<String>> {
        std::iter::once(&self.base)
            .chain(&self.mirrors)
            .map(|base| join(base, rel))
            .collect()
    }
}

/// `http://host[:port]` (an authority and nothing after it) gets the `/` of its root path, so
/// that `base + rel` is `http://host:port/rel`, not `http://host:portrel`.
fn root_slash(mut base: String) -> String {
    if let Some((scheme, rest)) = base.split_once("://")
        && matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#'])
    {
        base.push('/');
    }
    base
}

/// `base + rel`, refused when (as the HTTP client parses it) it is not under the directory of
/// `base`: same scheme, host and port, and a path starting with the base's path up to its last
/// `/`. Local paths and `file://` URLs are not normalised by anyone, so `rel` (already checked
/// by `check_path`) cannot leave them.
pub(super) fn join(base: &str, rel: &str) -> Result<String> {
    let joined = format!("{base}{rel}");
    if !matches!(Scheme::of(&joined)?, Scheme::Http) {
        return Ok(joined);
    }
    let outside = || Error::OutsideBase {
        url: redact(&joined),
        base: redact(base),
    };
    // A base that does not parse makes the request fail with its own error, not this one.
    let Ok(b) = url::Url::parse(base) else {
        return Ok(joined);
    };
    let u = url::Url::parse(&joined).map_err(|_| outside())?;
    let dir = b
        .path()
        .rfind('/')
        .and_then(|i| b.path().get(..=i))
        .unwrap_or("/");
    let same_origin = u.scheme() == b.scheme()
        && u.host_str() == b.host_str()
        && u.port_or_known_default() == b.port_or_known_default()
        && u.username() == b.username()
        && u.password() == b.password();
    if same_origin && u.path().starts_with(dir) {
        Ok(joined)
    } else {
        Err(outside())
    }
}

/// Split a `source_mirror` argument into (base, start path), following sstream-mirror's
/// `path_from_mirror_url` (spec §2.1):
/// - `path` given: `(source, path)` verbatim;
/// - else the first match of `streams/v1/.*[.](sjson|json)$` splits the source;
/// - else the start path is `streams/v1/index.sjson`.
pub fn split_start(source: &str, path: Option<&str>) -> (String, String) {
    if let Some(path) = path {
        return (source.to_owned(), path.to_owned());
    }
    const MARK: &str = "streams/v1/";
    let json = source.ends_with(".json") || source.ends_with(".sjson");
    if json {
        // `.*` is greedy and anchored at the end, so the leftmost `streams/v1/` that leaves room
        // for `.json` after it is the match (`.` does not match a newline).
        let mut from = 0;
        while let Some(found) = source.get(from..).and_then(|s| s.find(MARK)) {
            let at = from + found;
            let rest = source.get(at + MARK.len()..).unwrap_or_default();
            let fits = rest.len() >= ".json".len() && !rest.contains('\n');
            if fits && let (Some(base), Some(start)) = (source.get(..at), source.get(at..)) {
                return (base.to_owned(), start.to_owned());
            }
            from = at + 1;
        }
    }
    (source.to_owned(), DEFAULT_START.to_owned())
}

/// How one URL is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Scheme {
    Http,
    Local(PathBuf),
}

impl Scheme {
    pub(super) fn of(url: &str) -> Result<Scheme> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Ok(Scheme::Local(PathBuf::from(url)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "http" | "https" => Ok(Scheme::Http),
            "file" => {
                // file:///abs/path or file://localhost/abs/path; no other host makes sense
                let path = rest.strip_prefix("localhost").unwrap_or(rest);
                if path.starts_with('/') {
                    Ok(Scheme::Local(PathBuf::from(path)))
                } else {
                    Err(Error::UnsupportedScheme {
                        url: url.to_owned(),
                    })
                }
            }
            _ => Err(Error::UnsupportedScheme { url: redact(url) }),
        }
    }
}

/// `url` with the password of its user info replaced by `***` (for messages and records).
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // Up to the first `/`, not `?` or `#`: a password typed with a raw `?` or `#` is still
    // user info to whoever reads the message (and `@` never ends a host).
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str, p: Option<&str>) -> (String, String) {
        split_start(s, p)
    }

    #[test]
    fn start_document_rules() {
        let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(
            split("http://h/stable/streams/v1/index.json", None),
            s("http://h/stable/", "streams/v1/index.json")
        );
        assert_eq!(
            split("http://h/streams/v1/com.ubuntu:released.sjson", None),
            s("http://h/", "streams/v1/com.ubuntu:released.sjson")
        );
        assert_eq!(
            split("http://h/stable", None),
            s("http://h/stable", "streams/v1/index.sjson")
        );
        assert_eq!(
            split("http://h/stable/", None),
            s("http://h/stable/", "streams/v1/index.sjson")
        );
        // no file after streams/v1/, or not json: default start
        assert_eq!(
            split("http://h/streams/v1/", None),
            s("http://h/streams/v1/", "streams/v1/index.sjson")
        );
        assert_eq!(
            split("http://h/streams/v1/index.yaml", None),
            s("http://h/streams/v1/index.yaml", "streams/v1/index.sjson")
        );
        // first match wins
        assert_eq!(
            split("/srv/a/streams/v1/b/streams/v1/x.json", None),
            s("/srv/a/", "streams/v1/b/streams/v1/x.json")
        );
        assert_eq!(
            split("streams/v1/index.json", None),
            s("", "streams/v1/index.json")
        );
        // --path: verbatim, no splitting
        assert_eq!(
            split(
                "http://h/stable/streams/v1/index.json",
                Some("streams/v1/x.sjson")
            ),
            s(
                "http://h/stable/streams/v1/index.json",
                "streams/v1/x.sjson"
            )
        );
        assert_eq!(
            split("http://h/m", Some("p.json")),
            s("http://h/m", "p.json")
        );
    }

    #[test]
    fn urls_and_sources() {
        let loc = Location::new("http://a/").with_mirrors(vec!["file:///m/".into(), "/n/".into()]);
        assert_eq!(
            loc.urls("x").unwrap(),
            ["http://a/x", "file:///m/x", "/n/x"]
        );
        assert_eq!(Scheme::of("HTTPS://a/x").unwrap(), Scheme::Http);
        assert_eq!(
            Scheme::of("file:///m/x").unwrap(),
            Scheme::Local(PathBuf::from("/m/x"))
        );
        assert_eq!(
            Scheme::of("file://localhost/m/x").unwrap(),
            Scheme::Local(PathBuf::from("/m/x"))
        );
        assert_eq!(
            Scheme::of("rel/x").unwrap(),
            Scheme::Local(PathBuf::from("rel/x"))
        );
        assert!(matches!(
            Scheme::of("ftp://a/x"),
            Err(Error::UnsupportedScheme { .. })
        ));
        assert!(Scheme::of("file://host/x").is_err());
    }

    #[test]
    fn bases_without_path_mean_the_root() {
        let loc = Location::new("http://127.0.0.1:8080")
            .with_mirrors(vec!["https://mirror.invalid".into(), "http://m/x".into()]);
        assert_eq!(
            loc.urls("streams/v1/index.json").unwrap(),
            [
                "http://127.0.0.1:8080/streams/v1/index.json",
                "https://mirror.invalid/streams/v1/index.json",
                "http://m/xstreams/v1/index.json",
            ]
        );
        assert_eq!(Location::new("http://h/").base, "http://h/");
        assert_eq!(Location::new("http://h?x").base, "http://h?x");
        assert_eq!(Location::new("/srv/m").base, "/srv/m");
        assert_eq!(Location::new("file:///srv").base, "file:///srv");
    }

    #[test]
    fn urls_never_leave_their_base() {
        let loc = Location::new("http://h/mirror/stable/")
            .with_mirrors(vec!["http://u:pw@m:81/pub/".into()]);
        assert!(loc.urls("a/b%2ec").is_ok());
        for rel in [
            "prod/%2e%2e/%2e%2e/secret",
            "prod/%2E%2E/%2e%2E/%2e%2e/x",
            "a/../../../secret",
            "a\\..\\..\\..\\x",
            "%2e%2e/x",
        ] {
            let e = loc.urls(rel).unwrap_err();
            assert!(matches!(e, Error::OutsideBase { .. }), "{rel}: {e}");
        }
        // a mirror is checked like the base, and its password stays hidden
        let only_mirror = Location {
            base: "http://h/a/".into(),
            mirrors: vec!["http://u:pw@m/p/".into()],
        };
        assert!(join(&only_mirror.base, "x/%2e%2e/y").is_ok());
        assert!(join(&only_mirror.mirrors[0], "x/%2e%2e/%2e%2e/y").is_err());
        let only_mirror = Location::new("http://u:pw@m/p/");
        let e = only_mirror.urls("x/%2e%2e/%2e%2e/y").unwrap_err();
        assert!(e.to_string().contains("u:***@m"), "{e}");
        assert!(!e.to_string().contains("pw"), "{e}");
        // sstream-mirror's first try without the slash stays under the base's directory
        assert!(join("http://h/stable", "streams/v1/index.json").is_ok());
    }

    #[test]
    fn redaction() {
        assert_eq!(redact("http://u:p@h/x"), "http://u:***@h/x");
        assert_eq!(redact("http://u@h/x"), "http://u@h/x");
        assert_eq!(redact("http://h/x@y"), "http://h/x@y");
        assert_eq!(redact("/local/path"), "/local/path");
        assert_eq!(redact("http://u:p%3Fs%23w@h:1/x"), "http://u:***@h:1/x");
        assert_eq!(redact("http://u:pa?ss@h:1/x"), "http://u:***@h:1/x");
        assert_eq!(redact("http://u:pa#ss@h/x"), "http://u:***@h/x");
        assert_eq!(redact("http://u:p@ss@h/x"), "http://u:***@h/x");
        assert_eq!(redact("http://h?q=a@b"), "http://h?q=a@b");
    }
}
