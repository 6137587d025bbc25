//! TLS material for the HTTPS tests: a throw-away CA and a leaf for 127.0.0.1 made with
//! `openssl` (scripts/test.sh installs it).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Run `script` with `sh -c` in `dir`; a failure fails the test with the script's stderr.
fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA `NAME-ca.pem` and a chain `NAME-chain.pem` (leaf for 127.0.0.1 + CA), key `NAME-key.pem`,
/// in `dir`: returned as `(ca, chain, key)`.
pub fn certs(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    sh(
        dir,
        &format!(
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
             -keyout {name}-ca.key -out {name}-ca.pem -days 2 -subj /CN={name}-ca \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
             && openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
             -keyout {name}-key.pem -out {name}.csr -subj /CN=127.0.0.1 \
             && openssl x509 -req -in {name}.csr -CA {name}-ca.pem -CAkey {name}-ca.key \
             -CAcreateserial -out {name}-leaf.pem -days 2 -extfile ext.cnf \
             && cat {name}-leaf.pem {name}-ca.pem > {name}-chain.pem"
        ),
    );
    (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}-chain.pem")),
        dir.join(format!("{name}-key.pem")),
    )
}
