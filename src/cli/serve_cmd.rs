//! `serve`: the mounts checked, the limits from the flags, the server run until SIGTERM.

use std::path::{Path, PathBuf};

use streamvault::error::{Error, Result};

use super::args::ServeArgs;
use super::runtime;
use super::status::ExitStatus;

pub(super) fn serve(root: &Path, a: ServeArgs) -> Result<ExitStatus> {
    use streamvault::serve::{AccessLogTarget, Limits, ServeError, ServeOptions};
    let not_dir = |path: &Path| Error::Io {
        op: "serve",
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
    };
    let mut mounts = Vec::new();
    for m in &a.mounts {
        let Some((prefix, dest)) = m.split_once('=') else {
            return Err(ServeError::Mount {
                mount: m.clone(),
                reason: "expected PREFIX=DEST, e.g. /maas/stable=/srv/maas".into(),
            }
            .into());
        };
        if !prefix.starts_with('/') {
            return Err(ServeError::Mount {
                mount: m.clone(),
                reason: "the prefix must start with `/`".into(),
            }
            .into());
        }
        mounts.push((prefix.to_owned(), PathBuf::from(dest)));
    }
    if a.dest.is_none() && mounts.is_empty() {
        return Err(ServeError::Mount {
            mount: String::new(),
            reason: "nothing to serve: give a DIR or at least one --mount PREFIX=DEST".into(),
        }
        .into());
    }
    for dest in a.dest.iter().chain(mounts.iter().map(|(_, d)| d)) {
        if !dest.is_dir() {
            return Err(not_dir(dest));
        }
    }
    let nofile = streamvault::serve::raise_nofile_limit();
    let opts = ServeOptions {
        mounts,
        listen: a.listen,
        tls: a.tls_cert.zip(a.tls_key),
        http2: a.http2,
        limits: Limits {
            max_connections: Some(
                a.max_connections
                    .unwrap_or_else(|| streamvault::serve::default_max_connections(nofile)),
            ),
            max_header_bytes: a.max_header_bytes.max(8192),
            header_timeout: std::time::Duration::from_secs(a.header_timeout.max(1)),
            idle_timeout: std::time::Duration::from_secs(a.idle_timeout.max(1)),
        },
        access_log: a.access_log.map(|l| {
            if l == "-" {
                AccessLogTarget::Stdout
            } else {
                AccessLogTarget::File(PathBuf::from(l))
            }
        }),
        store_root: Some(root.to_path_buf()),
        reload_on_sighup: true,
        grace: std::time::Duration::from_secs(10),
        ..ServeOptions::new(a.dest.clone().unwrap_or_default())
    };
    let rt = runtime()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: opts.listen,
                source,
            })?;
        let addr = listener.local_addr().unwrap_or(opts.listen);
        let scheme = if opts.tls.is_some() { "https" } else { "http" };
        let what = match &a.dest {
            Some(d) => format!(
                "`{}`",
                streamvault::escape::Escaped(&d.display().to_string())
            ),
            None => format!("{} mount(s)", opts.mounts.len()),
        };
        let max = opts.limits.max_connections.unwrap_or(0);
        let serving = streamvault::serve::run_announced(
            listener,
            opts,
            async {
                #[cfg(unix)]
                {
                    use tokio::signal::unix::{SignalKind, signal};
                    match signal(SignalKind::terminate()) {
                        Ok(mut term) => {
                            tokio::select! {
                                _ = tokio::signal::ctrl_c() => {}
                                _ = term.recv() => {}
                            }
                        }
                        Err(_) => {
                            let _ = tokio::signal::ctrl_c().await;
                        }
                    }
                }
                #[cfg(not(unix))]
                let _ = tokio::signal::ctrl_c().await;
            },
            || {
                eprintln!(
                    "serving {what} at {scheme}://{addr}/ (max {max} connections, open-file limit \
             {nofile}; Ctrl-C or SIGTERM to stop)"
                );
            },
        );
        serving.await?;
        Ok::<_, Error>(())
    })?;
    Ok(ExitStatus::Success)
}
