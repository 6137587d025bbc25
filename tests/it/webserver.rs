//! A web server running as `www-data` reads published trees through DEST (issue 9 item 3):
//! the store under `/var/lib/<random>/`, DEST under `/var/www/html/<random>/`, Debian's apache2
//! (its default configuration, copied to a temp dir so the test has its own port, pid file and
//! logs) and nginx-light, each started on a random 127.0.0.1 port and stopped by pid; every
//! item is fetched through both and compared with the store's bytes. Needs root (to start the
//! servers as www-data) and the packages (scripts/test.sh installs them); skipped otherwise.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{Upstream, bin, free_port, start_apache, start_nginx};

/// Directories removed on drop (also when the test fails).
struct Cleanup(Vec<PathBuf>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
/// `GET path` over HTTP/1.0: (status, body).
fn get(port: u16, path: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, buf[end + 4..].to_vec())
}

fn skip_reason() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root (the servers run as www-data)".into());
    }
    for b in ["/usr/sbin/apache2", "/usr/sbin/nginx"] {
        if !Path::new(b).exists() {
            return Some(format!(
                "{b} missing (scripts/test.sh installs apache2 nginx-light)"
            ));
        }
    }
    None
}

#[test]
fn apache_and_nginx_as_www_data_serve_every_published_item() {
    if let Some(why) = skip_reason() {
        assert!(std::env::var_os("CI").is_none(), "skipped under CI: {why}");
        eprintln!("skipped: {why}");
        return;
    }
    let rnd = format!("streamvault-test-{:016x}", fastrand::u64(..));
    let lib = PathBuf::from("/var/lib").join(&rnd);
    let www = PathBuf::from("/var/www/html").join(&rnd);
    let _cleanup = Cleanup(vec![lib.clone(), www.clone()]);
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::create_dir_all(&www).unwrap();
    let root = lib.join("store");
    let dest = www.join("maas");
    let up = Upstream::new();
    let sv = |args: &[&str]| {
        let out = Command::new(bin())
            .arg("--root")
            .arg(&root)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sv(&[
        "source",
        "add",
        "maas",
        &up.url(),
        "--keyring",
        up.keyring_str(),
    ]);
    sv(&["key", "generate", "--name", "k"]);
    sv(&["sync", "maas"]);
    sv(&["publish", "maas", dest.to_str().unwrap()]);

    // Every file a client can reach through DEST.
    let files: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(&dest)
        .follow_links(true)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(&dest).unwrap().display().to_string();
            (rel, std::fs::read(e.path()).unwrap())
        })
        .collect();
    assert!(files.len() > 10, "{files:?}");

    let work = tempfile::tempdir().unwrap();
    let apache_port = free_port();
    let apache = start_apache(work.path(), apache_port);
    let nginx_port = free_port();
    let nginx = start_nginx(work.path(), nginx_port);
    for (name, port) in [("apache2", apache_port), ("nginx", nginx_port)] {
        for (rel, bytes) in &files {
            let (status, body) = get(port, &format!("/{rnd}/maas/{rel}"));
            assert_eq!(status, 200, "{name}: /{rnd}/maas/{rel}");
            assert!(body == *bytes, "{name}: {rel} differs");
        }
        // The secrets stay secret from the web server's user.
        for secret in ["catalog.db", "keys/k.key"] {
            let p = root.join(secret);
            let out = Command::new("runuser")
                .args(["-u", "www-data", "--", "cat"])
                .arg(&p)
                .output()
                .unwrap();
            assert!(
                !out.status.success(),
                "{name}: www-data reads {}",
                p.display()
            );
        }
    }
    drop(apache);
    drop(nginx);
}
