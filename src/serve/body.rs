//! Response bodies: small fixed texts, or a byte range of an open file streamed in 512 KiB chunks
//! (positioned reads, one blocking-pool hop per chunk), optionally cut short or paused half-way
//! (fault injection). A body carries the request's [`Finish`] guard: when hyper drops it (sent
//! in full, cut short, or the client went away) the access log line and the metrics are written
//! with the bytes actually sent, and the connection counts as idle again.
//!
//! Protects: a large file is never read whole into memory, the body comes from the one descriptor
//! opened for the request, and a truncated body ends the connection with an error (so the client
//! sees fewer bytes than `Content-Length`, never a quietly complete-looking short response).

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

const CHUNK: u64 = 512 * 1024;

/// Why a body stopped early (hyper then closes the connection).
#[derive(Debug, thiserror::Error)]
pub(super) enum BodyError {
    #[error("response truncated on purpose (injected fault)")]
    Truncated,
    #[error("cannot read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` ended before the announced length", path.display())]
    ShortFile { path: PathBuf },
}

/// How to mangle a streamed body.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Mangle {
    /// Stop with an error after this many bytes.
    pub(crate) truncate_at: Option<u64>,
    /// Pause this long after this many bytes.
    pub(crate) stall: Option<(u64, Duration)>,
}

pub(super) struct ServeBody {
    inner: Inner,
    /// Announced length (`size_hint`).
    len: u64,
    /// Bytes handed to the connection so far (shared with the request log).
    sent: Arc<AtomicU64>,
    /// Runs when the body is dropped (logs, metrics, connection idle again).
    finish: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Drop for ServeBody {
    fn drop(&mut self) {
        if let Some(finish) = self.finish.take() {
            finish();
        }
    }
}

enum Inner {
    Fixed(Option<Bytes>),
    Stream(mpsc::Receiver<Result<Bytes, BodyError>>),
}

impl ServeBody {
    pub(super) fn empty(sent: Arc<AtomicU64>) -> Self {
        ServeBody {
            inner: Inner::Fixed(None),
            len: 0,
            sent,
            finish: None,
        }
    }

    pub(super) fn text(text: &'static str, sent: Arc<AtomicU64>) -> Self {
        Self::bytes(Bytes::from_static(text.as_bytes()), sent)
    }

    pub(super) fn bytes(bytes: Bytes, sent: Arc<AtomicU64>) -> Self {
        ServeBody {
            len: bytes.len() as u64,
            inner: Inner::Fixed(Some(bytes)),
            sent,
            finish: None,
        }
    }

    /// Run `finish` once, when the body is dropped.
    pub(super) fn on_finish(&mut self, finish: impl FnOnce() + Send + Sync + 'static) {
        self.finish = Some(Box::new(finish));
    }

    /// Stream `len` bytes of `file` from `start`, read by a task on the current runtime.
    pub(super) fn file(
        file: std::fs::File,
        path: PathBuf,
        start: u64,
        len: u64,
        mangle: Mangle,
        sent: Arc<AtomicU64>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(produce(Arc::new(file), path, start, len, mangle, tx));
        ServeBody {
            inner: Inner::Stream(rx),
            len,
            sent,
            finish: None,
        }
    }
}

impl Body for ServeBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let next = match &mut this.inner {
            Inner::Fixed(bytes) => Poll::Ready(bytes.take().map(Ok)),
            Inner::Stream(rx) => rx.poll_recv(cx),
        };
        if let Poll::Ready(Some(Ok(data))) = &next {
            this.sent.fetch_add(data.len() as u64, Ordering::SeqCst);
        }
        next.map(|o| o.map(|r| r.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.inner, Inner::Fixed(None))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

/// Read the range chunk by chunk into the channel; stops quietly when the client has gone.
async fn produce(
    file: Arc<std::fs::File>,
    path: PathBuf,
    start: u64,
    len: u64,
    mangle: Mangle,
    tx: mpsc::Sender<Result<Bytes, BodyError>>,
) {
    let stop = mangle.truncate_at.map_or(len, |t| t.min(len));
    let mut stall = mangle.stall;
    let mut pos = 0u64;
    while pos < stop {
        let mut want = (stop - pos).min(CHUNK);
        if let Some((at, pause)) = stall {
            if pos >= at {
                tokio::time::sleep(pause).await;
                stall = None;
            } else {
                want = want.min(at - pos);
            }
        }
        let file = Arc::clone(&file);
        let offset = start + pos;
        let read = tokio::task::spawn_blocking(move || {
            // want <= CHUNK, so it fits
            let mut buf = vec![0u8; usize::try_from(want).unwrap_or(64 * 1024)];
            read_at(&file, &mut buf, offset).map(|n| {
                buf.truncate(n);
                buf
            })
        })
        .await;
        let buf = match read {
            Ok(Ok(buf)) if buf.is_empty() => {
                let _ = tx.send(Err(BodyError::ShortFile { path })).await;
                return;
            }
            Ok(Ok(buf)) => buf,
            Ok(Err(source)) => {
                let _ = tx
                    .send(Err(BodyError::Read {
                        path: path.clone(),
                        source,
                    }))
                    .await;
                return;
            }
            Err(_) => {
                let source = std::io::Error::other("reader task failed");
                let _ = tx.send(Err(BodyError::Read { path, source })).await;
                return;
            }
        };
        let n = buf.len() as u64;
        if tx.send(Ok(Bytes::from(buf))).await.is_err() {
            return;
        }
        pos += n;
    }
    if stop < len {
        let _ = tx.send(Err(BodyError::Truncated)).await;
    }
}

/// Fill as much of `buf` as the file has from `offset` (0 only at end of file).
fn read_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt as _;
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
