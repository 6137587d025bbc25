//! The test server of the fetch tests: a tiny hand-written HTTP/1.1 server on 127.0.0.1 whose
//! handler decides each reply, so every misbehaviour (short bodies, stalls, 200 to Range,
//! foreign ranges, 5xx, 404) is exact. One request per connection; every request is logged.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone)]
pub(super) struct Req {
    pub(super) path: String,
    pub(super) headers: Vec<(String, String)>,
}

impl Req {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `(a, b)` from `Range: bytes=a-b` (`b` `None` for `bytes=a-`).
    pub(super) fn range(&self) -> Option<(usize, Option<usize>)> {
        let (a, b) = self
            .header("range")?
            .strip_prefix("bytes=")?
            .split_once('-')?;
        let b = match b {
            "" => None,
            b => Some(b.parse().ok()?),
        };
        Some((a.parse().ok()?, b))
    }

    /// `n` from `Range: bytes=n-`.
    pub(super) fn range_from(&self) -> Option<usize> {
        self.header("range")?
            .strip_prefix("bytes=")?
            .strip_suffix('-')?
            .parse()
            .ok()
    }
}

/// One response, possibly misbehaving.
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
    /// Announce no length: the body ends when the connection closes.
    no_length: bool,
    /// Send only this many body bytes, then close.
    cut: Option<usize>,
    /// After this many body bytes, sleep this long.
    stall: Option<(usize, Duration)>,
}

impl Reply {
    pub(super) fn status(status: u16) -> Self {
        Reply {
            status,
            headers: vec![],
            body: format!("status {status}\n").into_bytes(),
            no_length: false,
            cut: None,
            stall: None,
        }
    }

    pub(super) fn ok(body: &[u8]) -> Self {
        Reply {
            body: body.to_vec(),
            ..Reply::status(200)
        }
    }

    /// A correct answer to the request: 206 from its Range, else 200.
    pub(super) fn serve(req: &Req, body: &[u8]) -> Self {
        match req.range_from() {
            Some(n) => Reply::partial(body, n),
            None => Reply::ok(body),
        }
    }

    /// A correct answer to any `bytes=a-b` or `bytes=a-`: 206 with exactly that range, else 200.
    pub(super) fn serve_ranges(req: &Req, body: &[u8]) -> Self {
        match req.range() {
            Some((from, to)) => {
                let end = to.unwrap_or(usize::MAX).min(body.len() - 1);
                let mut r = Reply::partial(&body[..=end], from);
                r.headers = vec![(
                    "Content-Range".into(),
                    format!("bytes {from}-{end}/{}", body.len()),
                )];
                r
            }
            None => Reply::ok(body),
        }
    }

    /// 206 with `body[from..]` and a matching Content-Range.
    pub(super) fn partial(body: &[u8], from: usize) -> Self {
        Reply::partial_claiming(body, from, from)
    }

    /// 206 with `body[send_from..]` but claiming to start at `claim`.
    pub(super) fn partial_claiming(body: &[u8], send_from: usize, claim: usize) -> Self {
        let rest = body.get(send_from..).unwrap_or_default().to_vec();
        let end = claim + rest.len() - 1;
        Reply {
            headers: vec![(
                "Content-Range".into(),
                format!("bytes {claim}-{end}/{}", body.len()),
            )],
            body: rest,
            ..Reply::status(206)
        }
    }

    pub(super) fn no_length(mut self) -> Self {
        self.no_length = true;
        self
    }

    pub(super) fn cut(mut self, at: usize) -> Self {
        self.cut = Some(at);
        self
    }

    pub(super) fn stall(mut self, at: usize, d: Duration) -> Self {
        self.stall = Some((at, d));
        self
    }
}

type Handler = dyn Fn(usize, &Req) -> Reply + Send + Sync;

pub(super) struct Server {
    pub(super) port: u16,
    log: Arc<Mutex<Vec<Req>>>,
}

impl Server {
    pub(super) async fn start(
        handler: impl Fn(usize, &Req) -> Reply + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let log2 = log.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let (log, handler) = (log2.clone(), handler.clone());
                tokio::spawn(async move {
                    let _ = connection(sock, log, handler).await;
                });
            }
        });
        Server { port, log }
    }

    pub(super) fn base(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub(super) fn requests(&self) -> Vec<Req> {
        self.log.lock().unwrap().clone()
    }

    pub(super) fn paths(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.path).collect()
    }
}

async fn connection(
    mut sock: TcpStream,
    log: Arc<Mutex<Vec<Req>>>,
    handler: Arc<Handler>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if sock.read(&mut byte).await? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let mut lines = text.split("\r\n");
    let path = lines.next().unwrap().split(' ').nth(1).unwrap().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let req = Req { path, headers };
    let index = {
        let mut log = log.lock().unwrap();
        log.push(req.clone());
        log.len() - 1
    };
    let reply = handler(index, &req);
    let mut out = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", reply.status);
    if !reply.no_length {
        out.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
    }
    for (k, v) in &reply.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    sock.write_all(out.as_bytes()).await?;
    let body = &reply.body[..reply.cut.unwrap_or(reply.body.len()).min(reply.body.len())];
    match reply.stall {
        Some((at, d)) if at < body.len() => {
            sock.write_all(&body[..at]).await?;
            sock.flush().await?;
            tokio::time::sleep(d).await;
            sock.write_all(&body[at..]).await?;
        }
        _ => sock.write_all(body).await?,
    }
    sock.flush().await?;
    sock.shutdown().await
}
