//! The store's signing keys: `keys/<name>.key` under the store root, one unencrypted v4 Ed25519
//! secret key each (ASCII-armoured TSK, mode 0600, directory mode 0700), used to clearsign
//! filtered metadata; their binary public keyring is what MAAS takes as `keyring_filename` /
//! `keyring_data`.
//!
//! Filtered publishes are signed by default ([`ensure_default`]): without `--sign-key` (and
//! without `--unsigned`) the key [`DEFAULT_KEY`] is used, generated on first use. Every key a
//! publish signs with has its binary public keyring written to `keyrings/<name>.gpg`
//! ([`write_public_keyring`], mode 0644 in a 0755 directory: MAAS on the same host can read it
//! as `keyring_filename`); the armoured export is for humans, MAAS's `gpgv` needs the binary form.
//!
//! Protects the key files: a name is validated like a source name before it becomes a file name,
//! a key file appears only complete (temp file, fsync, link to its name, which never replaces an
//! existing key), and nothing here prints or logs secret material.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoResultExt, Result};
use crate::openpgp::SigningKey;
use crate::store::{Layout, sync_dir};

/// The key a filtered publish signs with when no `--sign-key` is given.
pub const DEFAULT_KEY: &str = "default";

/// The key `name`, or for [`DEFAULT_KEY`] the default key, generated when it does not exist yet
/// (`true`: it was generated now). Two concurrent first uses end with the same key.
pub(crate) fn ensure_default(layout: &Layout, name: &str) -> Result<(SigningKey, bool)> {
    match load(layout, name) {
        Err(Error::UnknownKey(_)) if name == DEFAULT_KEY => match generate(layout, name, None) {
            Ok(_) => Ok((load(layout, name)?, true)),
            Err(Error::KeyExists(_)) => Ok((load(layout, name)?, false)),
            Err(e) => Err(e),
        },
        other => other.map(|k| (k, false)),
    }
}

/// Write the binary public keyring of `key` (named `name`) to `keyrings/<name>.gpg` unless it is
/// already there with the same bytes (temp file, fsync, rename); returns its path.
pub(crate) fn write_public_keyring(
    layout: &Layout,
    name: &str,
    key: &SigningKey,
) -> Result<PathBuf> {
    check_key_name(name)?;
    let bytes = key
        .public_keyring_binary()
        .map_err(|e| Error::Signing { source: e })?;
    let dir = layout.keyrings();
    let path = layout.keyring(name);
    if fs::read(&path).is_ok_and(|b| b == bytes) {
        return Ok(path);
    }
    match fs::create_dir(&dir) {
        Ok(()) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                // Best effort, as elsewhere in the store: a directory another user owns stays.
                let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o755));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(Error::Io {
                op: "create directory",
                path: dir,
                source: e,
            });
        }
    }
    let tmp = dir.join(format!(".{name}.gpg.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o644);
    }
    let written = opts
        .open(&tmp)
        .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
        .with_path("write", &tmp)
        .and_then(|()| fs::rename(&tmp, &path).with_path("rename", &path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    sync_dir(&dir)?;
    Ok(path)
}

/// A key of the store, as `key list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    pub name: String,
    pub fingerprint: String,
    pub user_id: Option<String>,
    pub path: PathBuf,
}

/// How to export a public keyring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// OpenPGP binary (what MAAS and `gpgv --keyring` take).
    Binary,
    /// ASCII armour.
    Armor,
}

/// Key names become file names: the rules of source names.
pub fn check_key_name(name: &str) -> Result<()> {
    crate::catalog::check_source_name(name).map_err(|_| Error::BadKeyName(name.to_string()))
}

fn key_path(layout: &Layout, name: &str) -> Result<PathBuf> {
    check_key_name(name)?;
    Ok(layout.key(name))
}

/// Generate a key `name` (refused if it exists) with `user_id`, or
/// `streamvault <name> <streamvault@HOST>`.
pub fn generate(layout: &Layout, name: &str, user_id: Option<&str>) -> Result<KeyInfo> {
    let path = key_path(layout, name)?;
    if fs::symlink_metadata(&path).is_ok() {
        return Err(Error::KeyExists(name.to_string()));
    }
    let uid = match user_id {
        Some(u) => u.to_string(),
        None => format!(
            "streamvault {name} <streamvault@{}>",
            crate::host::hostname()
        ),
    };
    let key = SigningKey::generate(&uid).map_err(|e| Error::Signing { source: e })?;
    let secret = key
        .to_armored_secret()
        .map_err(|e| Error::Signing { source: e })?;
    let dir = layout.keys();
    create_private_dir(&dir)?;
    let tmp = dir.join(format!(".{name}.key.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    private_mode(&mut opts);
    let mut f = opts.open(&tmp).with_path("create", &tmp)?;
    let written = f
        .write_all(&secret)
        .and_then(|()| f.sync_all())
        .with_path("write", &tmp);
    drop(f);
    // A hard link never replaces an existing file: two concurrent `generate`s cannot clobber.
    let linked = written.and_then(|()| match fs::hard_link(&tmp, &path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(Error::KeyExists(name.to_string()))
        }
        Err(e) => Err(Error::Io {
            op: "create",
            path: path.clone(),
            source: e,
        }),
    });
    let _ = fs::remove_file(&tmp);
    linked?;
    sync_dir(&dir)?;
    Ok(KeyInfo {
        name: name.to_string(),
        fingerprint: key.fingerprint(),
        user_id: key.user_id(),
        path,
    })
}

/// Load the key `name`.
pub fn load(layout: &Layout, name: &str) -> Result<SigningKey> {
    let path = key_path(layout, name)?;
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::UnknownKey(name.to_string()));
        }
        Err(e) => {
            return Err(Error::Io {
                op: "read",
                path,
                source: e,
            });
        }
    };
    SigningKey::from_bytes(&bytes).map_err(|e| Error::KeyFile { path, source: e })
}

/// Every key of the store, by name.
pub fn list(layout: &Layout) -> Result<Vec<KeyInfo>> {
    let dir = layout.keys();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::Io {
                op: "list",
                path: dir,
                source: e,
            });
        }
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.with_path("list", &dir)?;
        let file = entry.file_name();
        let Some(name) = file.to_str().and_then(|f| f.strip_suffix(".key")) else {
            continue;
        };
        if check_key_name(name).is_err() {
            continue;
        }
        let key = load(layout, name)?;
        out.push(KeyInfo {
            name: name.to_string(),
            fingerprint: key.fingerprint(),
            user_id: key.user_id(),
            path: entry.path(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The public keyring of key `name`.
pub fn export(layout: &Layout, name: &str, format: KeyFormat) -> Result<Vec<u8>> {
    let key = load(layout, name)?;
    match format {
        KeyFormat::Binary => key.public_keyring_binary(),
        KeyFormat::Armor => key.public_keyring_armored(),
    }
    .map_err(|e| Error::Signing { source: e })
}

fn create_private_dir(dir: &Path) -> Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                    .with_path("chmod", dir)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::Io {
            op: "create directory",
            path: dir.to_path_buf(),
            source: e,
        }),
    }
}

#[cfg(unix)]
fn private_mode(opts: &mut OpenOptions) {
    use std::os::unix::fs::OpenOptionsExt;
    opts.mode(0o600);
}

#[cfg(not(unix))]
fn private_mode(_opts: &mut OpenOptions) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_list_load_export() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        assert!(list(&layout).unwrap().is_empty());
        let k = generate(&layout, "default", None).unwrap();
        assert!(
            k.user_id
                .as_deref()
                .unwrap()
                .contains("streamvault default")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&k.path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            generate(&layout, "default", None),
            Err(Error::KeyExists(_))
        ));
        assert!(matches!(
            generate(&layout, "../x", None),
            Err(Error::BadKeyName(_))
        ));
        assert!(matches!(load(&layout, "nope"), Err(Error::UnknownKey(_))));
        let listed = list(&layout).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].fingerprint, k.fingerprint);
        let bin = export(&layout, "default", KeyFormat::Binary).unwrap();
        let ring = crate::openpgp::Keyring::from_bytes(&bin).unwrap();
        let key = load(&layout, "default").unwrap();
        let signed = key.clearsign(b"{}\n").unwrap();
        crate::openpgp::verify_cleartext(&ring, &signed).unwrap();
        let arm = export(&layout, "default", KeyFormat::Armor).unwrap();
        assert!(arm.starts_with(b"-----BEGIN PGP PUBLIC KEY BLOCK-----"));
    }

    #[test]
    fn the_default_key_is_created_once_and_its_binary_keyring_written() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        // Only the default key is created on demand.
        assert!(matches!(
            ensure_default(&layout, "other"),
            Err(Error::UnknownKey(_))
        ));
        let (k1, created) = ensure_default(&layout, DEFAULT_KEY).unwrap();
        assert!(created);
        let (k2, created) = ensure_default(&layout, DEFAULT_KEY).unwrap();
        assert!(!created);
        assert_eq!(k1.fingerprint(), k2.fingerprint());
        let path = write_public_keyring(&layout, DEFAULT_KEY, &k1).unwrap();
        assert_eq!(path, layout.keyrings().join("default.gpg"));
        let bin = fs::read(&path).unwrap();
        assert_eq!(
            bin,
            export(&layout, DEFAULT_KEY, KeyFormat::Binary).unwrap()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644);
        }
        // Idempotent.
        assert_eq!(
            write_public_keyring(&layout, DEFAULT_KEY, &k1).unwrap(),
            path
        );
    }
}
