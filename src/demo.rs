//! The demo behind the README's first command: a signed MAAS stream generated in process, shaped
//! as MAAS 3.8 reads it ([`streamgen::generate_for_maas`]: it keeps every MAAS client rule, so
//! the filtered publish warns of nothing and the boot source shown at the end is one MAAS
//! accepts), served on 127.0.0.1, added as a source and synced (then unchanged, then a new
//! generation), plus a verified dry run over the real signed Ubuntu cloud-images metadata.
//!
//! Everything runs through the same library calls as the CLI; nothing here is demo-only logic
//! beyond choosing the steps.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::catalog::NewSource;
use crate::error::{Error, IoResultExt, Result};
use crate::openpgp::SigningKey;
use crate::serve::{self, ServeOptions};
use crate::streamgen::{self, StreamSpec};
use crate::sync::{self, Outcome, Quiet, SyncOptions};
use crate::vault::Vault;

/// Where the demo keeps its files.
pub(crate) struct DemoDirs {
    pub(crate) base: PathBuf,
    pub(crate) upstream: PathBuf,
    pub(crate) store: PathBuf,
    pub(crate) keyring: PathBuf,
}

impl DemoDirs {
    pub(crate) fn new(base: &Path) -> DemoDirs {
        DemoDirs {
            base: base.to_path_buf(),
            upstream: base.join("upstream"),
            store: base.join("store"),
            keyring: base.join("demo-keyring.gpg"),
        }
    }
}

fn say(out: &mut dyn Write, line: impl AsRef<str>) {
    let _ = writeln!(out, "{}", line.as_ref());
}

fn flip(upstream: &Path, generation: u32) -> Result<()> {
    let link = upstream.join("current");
    let tmp = upstream.join("current.tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("gen{generation}"), &tmp).with_path("symlink", &tmp)?;
    std::fs::rename(&tmp, &link).with_path("rename", &link)
}

/// Run the demo in `dir` (a new temporary directory when `None`), writing a narrative to `out`.
pub fn run(rt: &tokio::runtime::Runtime, dir: Option<&Path>, keep_serving: bool) -> Result<()> {
    let base = match dir {
        Some(d) => d.to_path_buf(),
        None => {
            // Kept after the demo so that its store can be explored.
            tempfile::Builder::new()
                .prefix("streamvault-demo-")
                .tempdir()
                .map_err(|e| Error::Io {
                    op: "create temp dir",
                    path: std::env::temp_dir(),
                    source: e,
                })?
                .keep()
        }
    };
    let out = &mut std::io::stdout();
    let d = DemoDirs::new(&base);
    std::fs::create_dir_all(&d.upstream).with_path("create directory", &d.upstream)?;

    say(out, format!("== streamvault demo in {}", base.display()));
    let key = SigningKey::generate("streamvault demo <demo@example.invalid>")
        .map_err(|e| Error::Signing { source: e })?;
    let keyring = key
        .public_keyring_binary()
        .map_err(|e| Error::Signing { source: e })?;
    std::fs::write(&d.keyring, keyring).with_path("write", &d.keyring)?;
    say(
        out,
        format!(
            "signing key {} (keyring {})",
            key.fingerprint(),
            d.keyring.display()
        ),
    );

    let sign = |b: &[u8]| key.clearsign(b).map_err(|e| e.to_string());
    for g in [1, 2] {
        // Shaped as MAAS 3.8 reads it: the boot source shown below is one MAAS accepts.
        let s = streamgen::generate_for_maas(
            &d.upstream.join(format!("gen{g}")),
            &StreamSpec::generation(g),
            Some(&sign),
        )?;
        say(
            out,
            format!(
                "generated upstream generation {g}: {} files, {} bytes, signed",
                s.files, s.bytes
            ),
        );
    }
    flip(&d.upstream, 1)?;
    let server = serve::spawn(ServeOptions::new(d.upstream.join("current")))?;
    let url = server.url();
    say(out, format!("serving the upstream at {url}"));

    let mut vault = Vault::open(&d.store)?;
    // A re-run in the same directory serves on a new port: re-add the source (snapshots stay).
    let _ = vault.catalog.remove_source("demo");
    vault.catalog.add_source(&NewSource {
        name: "demo".into(),
        url: url.clone(),
        keyring: Some(d.keyring.clone()),
        ..NewSource::default()
    })?;
    say(
        out,
        format!(
            "$ streamvault --root {} source add demo {url} --keyring {}",
            d.store.display(),
            d.keyring.display()
        ),
    );

    let sync_once = |vault: &mut Vault, label: &str, out: &mut dyn Write| -> Result<()> {
        let source = vault.catalog.source("demo")?;
        let r = rt.block_on(sync::sync(
            vault,
            &source,
            &SyncOptions::default(),
            Arc::new(Quiet),
        ))?;
        let what = match r.outcome {
            Outcome::Snapshot(id) => format!("new snapshot {id}"),
            Outcome::Unchanged(id) => format!("unchanged (still snapshot {id})"),
            Outcome::DryRun => "dry run".into(),
        };
        say(
            out,
            format!(
                "$ streamvault sync demo    # {label}\n  {what}: {} items, fetched {} files / {} bytes, {} requests, signer {}",
                r.items,
                r.fetched_items,
                r.fetched_bytes,
                r.requests,
                r.signer.as_deref().unwrap_or("-")
            ),
        );
        Ok(())
    };
    sync_once(&mut vault, "first run", out)?;
    sync_once(&mut vault, "again: nothing changed upstream", out)?;
    flip(&d.upstream, 2)?;
    say(
        out,
        "upstream moves to generation 2 (+jammy 20240401, -jammy 20240101)",
    );
    sync_once(&mut vault, "after the upstream changed", out)?;

    say(out, "$ streamvault snapshots");
    for s in vault.catalog.snapshots(None)? {
        say(
            out,
            format!(
                "  {}  {}  {} products, {} versions, {} items, {} bytes, fetched {} bytes",
                s.id, s.source, s.products, s.versions, s.items, s.bytes, s.fetched_bytes
            ),
        );
    }
    let snaps = vault.catalog.snapshots(Some("demo"))?;
    if let [.., a, b] = snaps.as_slice() {
        let diff = crate::diff::diff(&vault.catalog, a.id, b.id)?;
        say(out, format!("$ streamvault diff {} {}", a.id, b.id));
        for v in &diff.versions_added {
            say(out, format!("  + version {v}"));
        }
        for v in &diff.versions_removed {
            say(out, format!("  - version {v}"));
        }
    }

    let (mirror_url, mirror_keyring, mirror_server) = publish_steps(&mut vault, &d, out)?;

    real_fixture_dry_run(rt, &d, out)?;

    say(
        out,
        format!(
            "\nTry it yourself: export STREAMVAULT_ROOT={}",
            d.store.display()
        ),
    );
    say(
        out,
        "A MAAS admin would paste into the boot source settings:",
    );
    say(out, format!("  URL:     {mirror_url}"));
    say(
        out,
        format!(
            "  keyring: {}   (binary, keyring_filename)",
            mirror_keyring.display()
        ),
    );
    if keep_serving {
        say(
            out,
            format!("upstream at {url} and the mirror at {mirror_url} served until Ctrl-C"),
        );
        let _ = rt.block_on(tokio::signal::ctrl_c());
    }
    drop(mirror_server);
    drop(server);
    Ok(())
}

/// Publish verbatim, then filtered + re-signed with a store key, serve the published link,
/// roll back and forward again: the admin's side of the demo.
fn publish_steps(
    vault: &mut Vault,
    d: &DemoDirs,
    out: &mut dyn Write,
) -> Result<(String, PathBuf, serve::ServerHandle)> {
    use crate::publish::{self, MetadataMode, PublishOptions, RollbackOptions};
    let www = d.base.join("www");
    std::fs::create_dir_all(&www).with_path("create directory", &www)?;
    let dest = www.join("stable");
    let snaps = vault.catalog.snapshots(Some("demo"))?;
    let (first, last) = match (snaps.first(), snaps.last()) {
        (Some(a), Some(b)) => (a.id, b.id),
        _ => return Err(Error::UnknownSnapshot("demo".into())),
    };
    let verbatim = publish::publish(
        vault,
        &PublishOptions {
            snapshot: first.to_string(),
            dest: dest.clone(),
            ..PublishOptions::default()
        },
    )?;
    say(
        out,
        format!(
            "$ streamvault publish {first} {}    # verbatim: the upstream signed documents\n  publication {}: tree {} ({} files)",
            dest.display(),
            verbatim.publication,
            verbatim.tree,
            verbatim.files
        ),
    );
    if crate::keys::list(&vault.layout)?
        .iter()
        .all(|k| k.name != "demo")
    {
        crate::keys::generate(&vault.layout, "demo", None)?;
    }
    let keyring = d.base.join("mirror-keyring.gpg");
    let bytes = crate::keys::export(&vault.layout, "demo", crate::keys::KeyFormat::Binary)?;
    std::fs::write(&keyring, bytes).with_path("write", &keyring)?;
    let filtered = publish::publish(
        vault,
        &PublishOptions {
            snapshot: last.to_string(),
            dest: dest.clone(),
            mode: MetadataMode::Filtered,
            sign_key: Some("demo".into()),
            ..PublishOptions::default()
        },
    )?;
    say(
        out,
        format!(
            "$ streamvault publish {last} {} --metadata filtered --sign-key demo\n  publication {}: metadata rewritten to what the snapshot holds, clearsigned by {}",
            dest.display(),
            filtered.publication,
            filtered.signer.as_deref().unwrap_or("-")
        ),
    );
    // The MAAS client rules (none broken by this stream; shown if ever one is).
    for w in &filtered.warnings {
        say(out, format!("  warning: {w}"));
    }
    let server = serve::spawn(ServeOptions::new(&dest))?;
    let mirror_url = server.url();
    say(
        out,
        format!("$ streamvault serve {}    # {mirror_url}", dest.display()),
    );
    let back = publish::rollback(
        vault,
        &RollbackOptions {
            dest: dest.clone(),
            to: None,
        },
    )?;
    say(
        out,
        format!(
            "$ streamvault rollback {}\n  live again: snapshot {} (one rename, {} ms)",
            dest.display(),
            back.snapshot,
            back.duration_ms
        ),
    );
    let again = publish::rollback(
        vault,
        &RollbackOptions {
            dest: dest.clone(),
            to: Some(filtered.publication.to_string()),
        },
    )?;
    say(
        out,
        format!(
            "$ streamvault rollback {} --to {}\n  live: snapshot {}",
            dest.display(),
            filtered.publication,
            again.snapshot
        ),
    );
    Ok((mirror_url, keyring, server))
}

/// The real signed cloud-images products file (2.5 MB), verified with the Ubuntu key and
/// planned with a filter: shows signature checking on real data. Skipped when the fixtures are
/// not beside the project.
fn real_fixture_dry_run(
    rt: &tokio::runtime::Runtime,
    d: &DemoDirs,
    out: &mut dyn Write,
) -> Result<()> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/real");
    let tree = fixtures.join("cloud-images-released-2016");
    let key = fixtures.join("keys/ubuntu-cloud-image-builder-7FF3F408476CF100.gpg");
    if !tree.is_dir() || !key.is_file() {
        say(
            out,
            "(real fixtures not found beside the project: skipping the cloud-images dry run)",
        );
        return Ok(());
    }
    let server = serve::spawn(ServeOptions::new(&tree))?;
    let mut vault = Vault::open(&d.store)?;
    let _ = vault.catalog.remove_source("cloud-images");
    {
        vault.catalog.add_source(&NewSource {
            name: "cloud-images".into(),
            url: server.url(),
            path: Some("streams/v1/com.ubuntu.cloud:released:download.sjson".into()),
            keyring: Some(key),
            max: Some(1),
            filters: vec![
                "release~(trusty|xenial)".into(),
                "arch=amd64".into(),
                "ftype=disk1.img".into(),
            ],
            ..NewSource::default()
        })?;
    }
    let source = vault.catalog.source("cloud-images")?;
    let opts = SyncOptions {
        dry_run: true,
        ..SyncOptions::default()
    };
    let r = rt.block_on(sync::sync(&mut vault, &source, &opts, Arc::new(Quiet)))?;
    say(
        out,
        "$ streamvault sync cloud-images --dry-run   # real 2016 Ubuntu cloud-images metadata, 2.5 MB, signed",
    );
    say(
        out,
        format!(
            "  signature verified: {}",
            r.signer.as_deref().unwrap_or("-")
        ),
    );
    for p in &r.plan {
        say(out, format!("  + {} ({} bytes)", p.path, p.size));
    }
    say(
        out,
        format!(
            "  would fetch {} files, {} bytes",
            r.fetched_items, r.fetched_bytes
        ),
    );
    Ok(())
}
