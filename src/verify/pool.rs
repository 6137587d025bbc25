//! A small bounded thread pool: `jobs` worker threads fed through bounded channels, so that
//! memory stays flat however many jobs there are (verify hashes every blob through it). Generic:
//! nothing here knows about blobs or trees.

use std::io;
use std::sync::{Mutex, mpsc};

use crate::error::{Error, Result};

/// Run `work` over what `feed` sends on `jobs` threads through bounded channels; `fold` gathers
/// the results into `init` on a thread of its own. `feed` runs on the caller's thread (it may
/// hold a SQLite statement) and gets `false` back once the workers are gone.
pub(super) fn pool<J, R, S, W, F, G>(
    jobs: usize,
    work: W,
    feed: F,
    init: S,
    mut fold: G,
) -> Result<S>
where
    J: Send,
    R: Send,
    S: Send,
    W: Fn(J) -> R + Sync,
    F: FnOnce(&dyn Fn(J) -> bool) -> Result<()>,
    G: FnMut(&mut S, R) + Send,
{
    let threads = |source| Error::Threads {
        what: "verify",
        source,
    };
    let (job_tx, job_rx) = mpsc::sync_channel::<J>(jobs * 4);
    let (res_tx, res_rx) = mpsc::sync_channel::<R>(jobs * 4);
    let job_rx = Mutex::new(job_rx);
    let job_rx = &job_rx;
    let work = &work;
    // Everything that keeps a worker waiting (the job sender) is moved into the scope, so an
    // early return drops it and the workers end.
    std::thread::scope(move |s| {
        let collector = std::thread::Builder::new()
            .spawn_scoped(s, move || {
                let mut state = init;
                for r in res_rx {
                    fold(&mut state, r);
                }
                state
            })
            .map_err(threads)?;
        for _ in 0..jobs {
            let res_tx = res_tx.clone();
            std::thread::Builder::new()
                .spawn_scoped(s, move || {
                    loop {
                        let next = match job_rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = next else { return };
                        if res_tx.send(work(job)).is_err() {
                            return;
                        }
                    }
                })
                .map_err(threads)?;
        }
        drop(res_tx);
        let fed = feed(&|job| job_tx.send(job).is_ok());
        drop(job_tx);
        let state = collector.join().map_err(|_| {
            threads(io::Error::other(
                "the result collector stopped unexpectedly",
            ))
        })?;
        fed.map(|()| state)
    })
}
