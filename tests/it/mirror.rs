//! `streamvault mirror` and the binary invoked as `sstream-mirror`: the MAAS docs' command lines,
//! exit codes (2 usage, 1 other errors), publishing to OUTPUT_DIR, grace items and gc, and the
//! side-by-side harness against the python tool when it is installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{Store, Upstream, bin, item_gets, sstream_mirror};

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            e.path()
                .strip_prefix(dir)
                .ok()
                .map(|p| p.display().to_string())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn maas_docs_lines_publish_images_and_bootloaders_into_one_dir() {
    let up = Upstream::new();
    let store = Store::new();
    let out: PathBuf = store.dir.path().join("www/maas/images/ephemeral-v3/stable");
    let k = format!("--keyring={}", up.keyring_str());
    let url = up.url();
    let o = out.to_str().unwrap();
    let r = sstream_mirror(
        &store,
        &[
            &k,
            &url,
            o,
            "arch=amd64",
            "release~(jammy|noble)",
            "--max=1",
            "--progress",
        ],
    )
    .ok();
    let plus = r.stderr.lines().filter(|l| l.starts_with("+ ")).count();
    assert_eq!(plus, 8, "{}", r.stderr);
    let r = sstream_mirror(&store, &[&k, &url, o, "os~(grub*|pxelinux)", "--max=1"]).ok();
    assert!(r.stderr.ends_with("Mb change\n"), "{}", r.stderr);
    assert!(
        std::fs::symlink_metadata(&out)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let f = files(&out);
    // 8 boot files + 3 bootloaders + index + 2 products documents, verbatim
    assert_eq!(f.len(), 14, "{f:?}");
    for doc in [
        "streams/v1/index.sjson",
        "streams/v1/com.example.maas:stable:v3:download.sjson",
    ] {
        assert_eq!(
            std::fs::read(out.join(doc)).unwrap(),
            std::fs::read(up.current().join(doc)).unwrap()
        );
    }
    // An unchanged re-run fetches metadata only.
    up.clear();
    sstream_mirror(&store, &[&k, &url, o, "os~(grub*|pxelinux)", "--max=1"]).ok();
    assert_eq!(item_gets(&up.requests()), 0);
    store.run(&["verify"]).ok();
}

#[test]
fn exit_codes_follow_sstream_mirror() {
    let up = Upstream::new();
    let store = Store::new();
    let url = up.url();
    let out = store.dir.path().join("out");
    let o = out.to_str().unwrap();
    let k = format!("--keyring={}", up.keyring_str());
    // usage errors: 2
    for args in [
        vec![url.as_str()],
        vec!["--max=x", url.as_str(), o],
        vec!["--bogus", url.as_str(), o],
    ] {
        let r = store.run(&[&["mirror"], args.as_slice()].concat());
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.starts_with("streamvault: error:"), "{}", r.stderr);
    }
    // other errors: 1, one line, before any request for filters and --keep without --max
    for args in [
        vec![k.as_str(), url.as_str(), o, "arch"],
        vec![k.as_str(), "--keep", url.as_str(), o],
    ] {
        let r = store.run(&[&["mirror"], args.as_slice()].concat());
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
    }
    assert!(up.requests().is_empty());
    let r = store.run(&["mirror", "--keyring=/nonexistent.gpg", &url, o]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(!out.exists());
    // --help: exit 0
    assert_eq!(store.run(&["mirror", "--help"]).code, 0);
}

#[test]
fn removed_versions_stay_for_the_grace_period_then_gc_removes_them() {
    let up = Upstream::new();
    let store = Store::new();
    let out = store.dir.path().join("out");
    let o = out.to_str().unwrap();
    let k = format!("--keyring={}", up.keyring_str());
    let url = up.url();
    store
        .run(&["mirror", &k, &url, o, "release=jammy", "arch=amd64"])
        .ok();
    up.flip(2);
    store
        .run(&["mirror", &k, &url, o, "release=jammy", "arch=amd64"])
        .ok();
    let f = files(&out);
    assert!(f.iter().any(|p| p.contains("/20240401/")));
    assert!(
        f.iter().any(|p| p.contains("/20240101/")),
        "grace items: {f:?}"
    );
    // Within the grace period gc keeps them; with --grace 0 they go, and the store verifies.
    store.run(&["gc"]).ok();
    assert!(files(&out).iter().any(|p| p.contains("/20240101/")));
    let r = store.run(&["gc", "--grace", "0", "--json"]).ok();
    assert!(
        r.json()["grace_files_dropped"].as_u64().unwrap() >= 4,
        "{}",
        r.stdout
    );
    let f = files(&out);
    assert!(!f.iter().any(|p| p.contains("/20240101/")), "{f:?}");
    assert_eq!(f.len(), 3 * 4 + 3);
    store.run(&["verify"]).ok();
}

/// The side-by-side harness against python-simplestreams, when the reference tool is installed
/// (`scripts/test.sh` installs it into `target/compat-venv`; set SSTREAM_MIRROR to use another).
#[test]
fn side_by_side_with_the_python_tool() {
    let top = Path::new(env!("CARGO_MANIFEST_DIR"));
    let reference = std::env::var_os("SSTREAM_MIRROR")
        .map(PathBuf::from)
        .unwrap_or_else(|| top.join("target/compat-venv/bin/sstream-mirror"));
    if !reference.exists() {
        // CI installs it (scripts/test.sh): there a missing tool is a failure, not a skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "reference sstream-mirror missing at `{}` under CI",
            reference.display()
        );
        eprintln!("skipped: reference sstream-mirror not installed (run scripts/test.sh)");
        return;
    }
    let out = Command::new("bash")
        .arg(top.join("scripts/compat.sh"))
        .env("SSTREAM_MIRROR", &reference)
        .env("STREAMVAULT", bin())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("every scenario is the same or an intended difference"));
}

/// Every file under `dir` with its bytes (a store that was not written to compares equal).
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    files(dir)
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(dir.join(&f)).unwrap();
            (f, bytes)
        })
        .collect()
}

#[test]
fn dry_run_touches_no_store() {
    let up = Upstream::new();
    let store = Store::new();
    let k = format!("--keyring={}", up.keyring_str());
    let url = up.url();
    let out = store.dir.path().join("out");
    let o = out.to_str().unwrap();
    // A fresh root: the plan is printed, no store (no catalogue file) is created.
    let r = sstream_mirror(&store, &["--dry-run", &k, &url, o, "--max=1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("+ "), "{}", r.stderr);
    assert!(!store.root().exists(), "{:?}", files(&store.root()));
    assert!(!out.exists());
    // An existing store: a dry run for another OUTPUT_DIR adds no source row, writes no byte.
    let r = sstream_mirror(&store, &[&k, &url, o, "--max=1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let before = contents(&store.root());
    let other = store.dir.path().join("other");
    let r = sstream_mirror(&store, &["--dry-run", &k, &url, other.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("+ "), "{}", r.stderr);
    assert!(
        before == contents(&store.root()),
        "the dry run wrote to the store"
    );
    assert!(!other.exists());
}
