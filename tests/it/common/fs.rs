//! Filesystem helpers of the harness: shared fixtures, paths as `&str`, symlink flips, tree
//! listings, and mounts (a tmpfs or a bind mount) that are undone when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Path of a shared fixture (`../shared/fixtures/...` beside the project root).
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures")
        .join(rel)
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Write `bytes` to `path`, creating its parent directories.
pub fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Point `dest` at a tree directory (symlink + rename).
pub fn point(dest: &Path, target: &Path) {
    let tmp = dest.with_extension("tmp-link");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

/// `(relative path, blake3)` of every file under `dir` (following links, without `.data/`),
/// sorted.
/// `(relative path, BLAKE3 of the content)` of every file under `dir` (symlinks followed,
/// `.data/` of the python tool left out), sorted.
pub fn tree_of(dir: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            let rel = e.path().strip_prefix(dir).ok()?.display().to_string();
            if rel.starts_with(".data/") {
                return None;
            }
            let data = std::fs::read(e.path()).ok()?;
            Some((rel, blake3::hash(&data).to_hex().to_string()))
        })
        .collect();
    v.sort();
    v
}

/// A mount (a tmpfs, a bind mount) undone when dropped (also when the test fails).
pub struct Mounted(pub PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Run `mount ARGS… AT`; `None` (with the reason printed) when that is not permitted here.
pub fn mount(args: &[&str], at: &Path) -> Option<Mounted> {
    let out = Command::new("mount").args(args).arg(at).output();
    match out {
        Ok(o) if o.status.success() => Some(Mounted(at.to_path_buf())),
        Ok(o) => {
            eprintln!(
                "skipped: cannot mount here: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            None
        }
        Err(e) => {
            eprintln!("skipped: no mount command: {e}");
            None
        }
    }
}

/// A tmpfs with mount options `opts` (e.g. `size=24m`) at `at` (created first); root only.
pub fn tmpfs(at: &Path, opts: &str) -> Option<Mounted> {
    std::fs::create_dir_all(at).ok()?;
    mount(&["-t", "tmpfs", "-o", opts, "tmpfs"], at)
}

impl Mounted {
    pub fn remount(&self, opts: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Inodes in use.
    pub fn inodes_used(&self) -> u64 {
        let out = Command::new("stat")
            .args(["-f", "-c", "%c %d"])
            .arg(&self.0)
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&out.stdout);
        let v: Vec<u64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect();
        v[0] - v[1]
    }
}

/// The relative path of every regular file under `root` (links not followed), sorted.
pub fn files_under(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            e.path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}
