//! One request to one response: method and auth checks, the server's own pages (`/-/metrics`,
//! `/-/status`), the mount a path belongs to, path resolution, injected faults, directory
//! listings, conditional requests, ranges, and the headers of a static file server (content
//! types; `Cache-Control: no-cache` on `streams/v1/`, long on item files).
//!
//! Protects: every response is logged with the status actually sent before the client can see it,
//! a file response is built from the metadata of the same open descriptor its body is read from
//! (length, `ETag` and `Last-Modified` always describe the bytes sent), and a failure of the
//! server is `503` + `Retry-After`, never `404`.

use std::convert::Infallible;
use std::fs::Metadata;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::body::{Mangle, ServeBody};
use super::conns::Conn;
use super::faults::FaultKind;
use super::range::{self, RangeRequest};
use super::resolve::{self, Found, Refusal};
use super::{RequestRecord, State, accesslog, listing, lock, metrics, status};

type Reply = (Response<ServeBody>, Option<FaultKind>);

/// The hyper service: answer, then log (the access log and metrics when the body is dropped).
pub(super) async fn handle(
    state: Arc<State>,
    conn: Arc<Conn>,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<ServeBody>, Infallible> {
    conn.begin();
    state.metrics.in_flight.fetch_add(1, Ordering::SeqCst);
    let sent = Arc::new(AtomicU64::new(0));
    let raw = req.uri().path().to_owned();
    let decoded = resolve::decode(&raw);
    let log_path = decoded.clone().unwrap_or(raw);
    let (mut response, fault, mount) = answer(&state, &req, decoded, Arc::clone(&sent)).await;
    let status = response.status().as_u16();
    let record = RequestRecord {
        method: req.method().to_string(),
        path: log_path,
        range: header_str(&req, &header::RANGE).map(str::to_owned),
        status,
        bytes_sent: 0,
        fault,
    };
    state.record(record, Arc::clone(&sent));
    let line = state.access.is_some().then(|| {
        let target = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let user = header_str(&req, &header::AUTHORIZATION)
            .and_then(basic_user)
            .map(str::to_owned);
        (
            req.method().to_string(),
            target,
            format!("{:?}", req.version()),
            user,
            header_str(&req, &header::REFERER).map(str::to_owned),
            header_str(&req, &header::USER_AGENT).map(str::to_owned),
            std::time::SystemTime::now(),
        )
    });
    let done_state = Arc::clone(&state);
    response.body_mut().on_finish(move || {
        let bytes = sent.load(Ordering::SeqCst);
        done_state.metrics.count(&mount, status, bytes);
        done_state.metrics.in_flight.fetch_sub(1, Ordering::SeqCst);
        conn.end();
        if let (Some(access), Some((method, target, version, user, referer, agent, when))) =
            (&done_state.access, line)
        {
            access.line(accesslog::combined(&accesslog::Fields {
                remote: remote.ip(),
                user: user.as_deref(),
                when,
                method: &method,
                target: &target,
                version: &version,
                status,
                bytes,
                referer: referer.as_deref(),
                agent: agent.as_deref(),
            }));
        }
    });
    Ok(response)
}

/// The user name of an `Authorization: Basic` header (for the access log; never the password).
fn basic_user(value: &str) -> Option<&'static str> {
    // Decoding base64 only to log a name is not worth it: say that someone authenticated.
    value
        .trim()
        .to_ascii_lowercase()
        .starts_with("basic ")
        .then_some("basic")
}

/// Where a request path leads.
enum Route<'s> {
    /// A mounted tree and the components under it.
    Mount(&'s super::Mount, Vec<String>),
    /// A path above some mounts (e.g. `/` with only `--mount /maas/stable=…`): their next names.
    Above(Vec<String>),
    None,
}

fn route<'s>(state: &'s State, components: &[String]) -> Route<'s> {
    for m in &state.mounts {
        if components.starts_with(&m.prefix) {
            return Route::Mount(m, components[m.prefix.len()..].to_vec());
        }
    }
    let mut above: Vec<String> = state
        .mounts
        .iter()
        .filter(|m| m.prefix.len() > components.len() && m.prefix.starts_with(components))
        .filter_map(|m| m.prefix.get(components.len()).cloned())
        .collect();
    above.sort();
    above.dedup();
    if above.is_empty() {
        Route::None
    } else {
        Route::Above(above)
    }
}

fn wants_json(req: &Request<Incoming>) -> bool {
    let query_json = req.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|kv| kv == "json" || kv.starts_with("json=") || kv == "format=json")
    });
    query_json || header_str(req, &header::ACCEPT).is_some_and(|a| a.contains("application/json"))
}

async fn answer(
    state: &State,
    req: &Request<Incoming>,
    decoded: Result<String, Refusal>,
    sent: Arc<AtomicU64>,
) -> (Response<ServeBody>, Option<FaultKind>, String) {
    let mut mount = "-".to_owned();
    let (r, fault) = answer_in(state, req, decoded, sent, &mut mount).await;
    (r, fault, mount)
}

async fn answer_in(
    state: &State,
    req: &Request<Incoming>,
    decoded: Result<String, Refusal>,
    sent: Arc<AtomicU64>,
    mount_label: &mut String,
) -> Reply {
    let head = req.method() == Method::HEAD;
    let plain = |status, text: &'static str| plain(status, text, head, Arc::clone(&sent));
    if req.method() != Method::GET && !head {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        set(&mut r, header::ALLOW, "GET, HEAD".into());
        return (r, None);
    }
    if let Some(expected) = &state.auth
        && !authorized(req, expected)
    {
        let mut r = plain(StatusCode::UNAUTHORIZED, "unauthorized\n");
        set(
            &mut r,
            header::WWW_AUTHENTICATE,
            "Basic realm=\"streamvault\"".into(),
        );
        return (r, None);
    }
    let refuse = |refusal| match refusal {
        Refusal::BadRequest => plain(StatusCode::BAD_REQUEST, "bad request\n"),
        Refusal::Forbidden => plain(StatusCode::FORBIDDEN, "forbidden\n"),
        Refusal::NotFound => plain(StatusCode::NOT_FOUND, "not found\n"),
        Refusal::Unavailable => {
            let mut r = plain(StatusCode::SERVICE_UNAVAILABLE, "server busy, try again\n");
            set(&mut r, header::RETRY_AFTER, "1".into());
            r
        }
    };
    let decoded = match decoded {
        Ok(d) => d,
        Err(r) => return (refuse(r), None),
    };
    let components = match resolve::components(&decoded) {
        Ok(c) => c,
        Err(r) => return (refuse(r), None),
    };

    // The server's own pages.
    if components.first().is_some_and(|c| c == "-") {
        let rest: Vec<&str> = components.iter().skip(1).map(String::as_str).collect();
        let (body, ctype) = match rest.as_slice() {
            ["metrics"] => (
                state.metrics.render(&metrics::Gauges {
                    connections: state.conns.len(),
                    max_connections: state.conns.max(),
                    evicted: state.conns.evicted.load(Ordering::Relaxed),
                    rejected: state.conns.rejected.load(Ordering::Relaxed),
                    log_dropped: state
                        .access
                        .as_ref()
                        .map_or(0, |a| a.dropped.load(Ordering::Relaxed)),
                }),
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            ["status"] => {
                let json = wants_json(req);
                let live: Vec<(String, std::path::PathBuf)> = state
                    .mounts
                    .iter()
                    .map(|m| (m.label.clone(), m.dest.clone()))
                    .collect();
                let store = state.store_root.clone();
                let started = state.started;
                let page = tokio::task::spawn_blocking(move || {
                    let report = status::gather(store.as_deref(), &live, started);
                    if json {
                        status::json(&report)
                    } else {
                        status::html(&report)
                    }
                })
                .await;
                match page {
                    Ok(page) => (
                        page,
                        if json {
                            "application/json"
                        } else {
                            "text/html; charset=utf-8"
                        },
                    ),
                    Err(_) => return (refuse(Refusal::Unavailable), None),
                }
            }
            _ => return (refuse(Refusal::NotFound), None),
        };
        let mut r = owned(StatusCode::OK, body, ctype, head, Arc::clone(&sent));
        set(&mut r, header::CACHE_CONTROL, "no-cache".into());
        return (r, None);
    }

    let decision = lock(&state.faults).decide(&decoded);
    match decision.early {
        Some(FaultKind::NotFound) => {
            return (
                plain(StatusCode::NOT_FOUND, "not found\n"),
                Some(FaultKind::NotFound),
            );
        }
        Some(kind) => {
            return (
                plain(StatusCode::INTERNAL_SERVER_ERROR, "injected error\n"),
                Some(kind),
            );
        }
        None => {}
    }

    let (dest, rest) = match route(state, &components) {
        Route::Mount(m, rest) => {
            mount_label.clone_from(&m.label);
            (m.dest.clone(), rest)
        }
        Route::Above(names) => {
            if !req.uri().path().ends_with('/') {
                return (redirect_to_dir(req, head, sent), None);
            }
            let entries: Vec<listing::Entry> = names
                .into_iter()
                .map(|name| listing::Entry {
                    name,
                    dir: true,
                    size: 0,
                    modified: None,
                })
                .collect();
            return (listing_response(req, &decoded, &entries, head, sent), None);
        }
        Route::None => return (refuse(Refusal::NotFound), None),
    };
    let opened = match tokio::task::spawn_blocking(move || resolve::open(&dest, &rest)).await {
        Ok(Ok(Found::File(opened))) => opened,
        Ok(Ok(Found::Dir { path, root })) => {
            if !req.uri().path().ends_with('/') {
                return (redirect_to_dir(req, head, sent), None);
            }
            let entries =
                match tokio::task::spawn_blocking(move || listing::read(&path, &root)).await {
                    Ok(Ok(entries)) => entries,
                    Ok(Err(r)) => return (refuse(r), None),
                    Err(_) => return (refuse(Refusal::Unavailable), None),
                };
            return (listing_response(req, &decoded, &entries, head, sent), None);
        }
        Ok(Err(r)) => return (refuse(r), None),
        Err(_) => return (refuse(Refusal::Unavailable), None),
    };
    let len = opened.meta.len();
    let etag = etag(&opened.meta);
    let last_modified = opened
        .meta
        .modified()
        .ok()
        .map(httpdate::fmt_http_date)
        .unwrap_or_default();
    let validators = |r: &mut Response<ServeBody>| {
        set(r, header::ETAG, etag.clone());
        if !last_modified.is_empty() {
            set(r, header::LAST_MODIFIED, last_modified.clone());
        }
        set(r, header::ACCEPT_RANGES, "bytes".into());
    };

    if let Some(value) = header_str(req, &header::IF_NONE_MATCH)
        && range::none_match_hits(value, &etag)
    {
        let mut r = Response::new(ServeBody::empty(sent));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        validators(&mut r);
        return (r, None);
    }

    let mut fault = None;
    let mut wanted = RangeRequest::Full;
    if let Some(value) = header_str(req, &header::RANGE) {
        let still_valid = header_str(req, &header::IF_RANGE)
            .is_none_or(|v| range::if_range_matches(v, &etag, &last_modified));
        if decision.ignore_range {
            fault = Some(FaultKind::IgnoreRange);
        } else if still_valid {
            wanted = range::parse(value, len);
        }
    }
    let (status, start, count) = match wanted {
        RangeRequest::Full => (StatusCode::OK, 0, len),
        RangeRequest::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        RangeRequest::Unsatisfiable => {
            let mut r = Response::new(ServeBody::empty(sent));
            *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            validators(&mut r);
            set(&mut r, header::CONTENT_RANGE, format!("bytes */{len}"));
            set(&mut r, header::CONTENT_LENGTH, "0".into());
            return (r, fault);
        }
    };

    let body = if head || count == 0 {
        ServeBody::empty(sent)
    } else {
        let mut mangle = Mangle::default();
        if decision.truncate {
            mangle.truncate_at = Some(count / 2);
            fault = Some(FaultKind::Truncate);
        } else if let Some(pause) = decision.stall {
            mangle.stall = Some((count / 2, pause));
            fault = Some(FaultKind::Stall);
        }
        ServeBody::file(opened.file, opened.path, start, count, mangle, sent)
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    validators(&mut r);
    set(&mut r, header::CONTENT_LENGTH, count.to_string());
    set(&mut r, header::CONTENT_TYPE, content_type(&decoded).into());
    set(
        &mut r,
        header::CACHE_CONTROL,
        cache_control(&decoded).into(),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        set(
            &mut r,
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{len}", start + count - 1),
        );
    }
    (r, fault)
}

fn redirect_to_dir(
    req: &Request<Incoming>,
    head: bool,
    sent: Arc<AtomicU64>,
) -> Response<ServeBody> {
    let mut location = format!("{}/", req.uri().path());
    if let Some(q) = req.uri().query() {
        location.push('?');
        location.push_str(q);
    }
    let mut r = plain(StatusCode::MOVED_PERMANENTLY, "moved\n", head, sent);
    set(&mut r, header::LOCATION, location);
    r
}

fn listing_response(
    req: &Request<Incoming>,
    decoded: &str,
    entries: &[listing::Entry],
    head: bool,
    sent: Arc<AtomicU64>,
) -> Response<ServeBody> {
    let mut url_path = decoded.to_owned();
    if !url_path.ends_with('/') {
        url_path.push('/');
    }
    let (body, ctype) = if wants_json(req) {
        (listing::json(&url_path, entries), "application/json")
    } else {
        (
            listing::html(&url_path, entries),
            "text/html; charset=utf-8",
        )
    };
    let mut r = owned(StatusCode::OK, body, ctype, head, sent);
    set(&mut r, header::CACHE_CONTROL, "no-cache".into());
    set(&mut r, header::VARY, "Accept".into());
    r
}

fn owned(
    status: StatusCode,
    body: String,
    ctype: &str,
    head: bool,
    sent: Arc<AtomicU64>,
) -> Response<ServeBody> {
    let len = body.len();
    let body = if head {
        ServeBody::empty(sent)
    } else {
        ServeBody::bytes(bytes::Bytes::from(body), sent)
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    set(&mut r, header::CONTENT_TYPE, ctype.to_owned());
    set(&mut r, header::CONTENT_LENGTH, len.to_string());
    r
}

fn plain(
    status: StatusCode,
    text: &'static str,
    head: bool,
    sent: Arc<AtomicU64>,
) -> Response<ServeBody> {
    let body = if head {
        ServeBody::empty(sent)
    } else {
        ServeBody::text(text, sent)
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    set(
        &mut r,
        header::CONTENT_TYPE,
        "text/plain; charset=utf-8".into(),
    );
    r
}

fn set(r: &mut Response<ServeBody>, name: HeaderName, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        r.headers_mut().insert(name, v);
    }
}

fn header_str<'r>(req: &'r Request<Incoming>, name: &HeaderName) -> Option<&'r str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn authorized(req: &Request<Incoming>, expected: &str) -> bool {
    header_str(req, &header::AUTHORIZATION)
        .and_then(|v| v.trim().split_once(' '))
        .is_some_and(|(scheme, token)| {
            scheme.eq_ignore_ascii_case("basic") && token.trim() == expected
        })
}

fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
    match ext {
        "json" => "application/json",
        // clearsigned JSON: text, as Apache and nginx send it
        "sjson" | "txt" | "asc" => "text/plain; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "gpg" => "application/pgp-keys",
        _ => "application/octet-stream",
    }
}

/// Metadata changes in place on every publish; item files never change under their path.
fn cache_control(path: &str) -> &'static str {
    if path.contains("streams/v1/") || path.ends_with(".gpg") {
        "no-cache"
    } else {
        "public, max-age=604800"
    }
}

/// `"<inode>-<size>-<mtime ns>"` in hex: changes whenever the file behind the path does.
fn etag(meta: &Metadata) -> String {
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(meta);
    #[cfg(not(unix))]
    let ino = 0u64;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("\"{ino:x}-{:x}-{mtime:x}\"", meta.len())
}
