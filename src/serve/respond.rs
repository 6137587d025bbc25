//! One request to one response: method and auth checks, path resolution, injected faults,
//! conditional requests, ranges, and the headers of a static file server.
//!
//! Protects: every response is logged with the status actually sent before the client can see it,
//! and a file response is built from the metadata of the same open descriptor its body is read
//! from (length, `ETag` and `Last-Modified` always describe the bytes sent).

use std::convert::Infallible;
use std::fs::Metadata;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::body::{Mangle, ServeBody};
use super::faults::FaultKind;
use super::range::{self, RangeRequest};
use super::resolve::{self, Refusal};
use super::{RequestRecord, State, lock};

type Reply = (Response<ServeBody>, Option<FaultKind>);

/// The hyper service: answer, then log.
pub(super) async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<ServeBody>, Infallible> {
    let sent = Arc::new(AtomicU64::new(0));
    let raw = req.uri().path().to_owned();
    let decoded = resolve::decode(&raw);
    let log_path = decoded.clone().unwrap_or(raw);
    let (response, fault) = answer(&state, &req, decoded, Arc::clone(&sent)).await;
    let record = RequestRecord {
        method: req.method().to_string(),
        path: log_path,
        range: header_str(&req, &header::RANGE).map(str::to_owned),
        status: response.status().as_u16(),
        bytes_sent: 0,
        fault,
    };
    state.record(record, sent);
    Ok(response)
}

async fn answer(
    state: &State,
    req: &Request<Incoming>,
    decoded: Result<String, Refusal>,
    sent: Arc<AtomicU64>,
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
    };
    let decoded = match decoded {
        Ok(d) => d,
        Err(r) => return (refuse(r), None),
    };
    let components = match resolve::components(&decoded) {
        Ok(c) => c,
        Err(r) => return (refuse(r), None),
    };

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

    let root = state.root.clone();
    let opened = match tokio::task::spawn_blocking(move || resolve::open(&root, &components)).await
    {
        Ok(Ok(opened)) => opened,
        Ok(Err(r)) => return (refuse(r), None),
        Err(_) => {
            return (
                plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n"),
                None,
            );
        }
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
    if status == StatusCode::PARTIAL_CONTENT {
        set(
            &mut r,
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{len}", start + count - 1),
        );
    }
    (r, fault)
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
    if path.ends_with(".json") {
        "application/json"
    } else {
        "application/octet-stream"
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
