//! `key generate|list|export`: the store's signing keys.

use std::path::{Path, PathBuf};

use streamvault::error::{Error, IoResultExt, Result};
use streamvault::vault::Vault;

use super::args::KeyCommand;
use super::output::table;
use super::status::ExitStatus;
use super::{json_out, out};
use streamvault::keys;

pub(super) fn key(root: &Path, cmd: KeyCommand) -> Result<ExitStatus> {
    let layout = streamvault::store::Layout::new(root);
    match cmd {
        KeyCommand::Generate { name, user_id } => {
            keys::check_key_name(&name)?;
            // Creates the store root if needed (keys live in it).
            let vault = Vault::open(root)?;
            let k = keys::generate(&vault.layout, &name, user_id.as_deref())?;
            out!(
                "generated key {} {} ({}) in {}",
                k.name,
                k.fingerprint,
                k.user_id.as_deref().unwrap_or("-"),
                k.path.display()
            );
            Ok(ExitStatus::Success)
        }
        KeyCommand::List { json } => {
            let list = keys::list(&layout)?;
            if json {
                return json_out(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|k| {
                    vec![
                        k.name.clone(),
                        k.fingerprint.clone(),
                        k.user_id.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            table(&["NAME", "FINGERPRINT", "USER ID"], &rows);
            Ok(ExitStatus::Success)
        }
        KeyCommand::Export {
            name,
            binary,
            armor: _,
            output,
        } => {
            let format = if binary {
                keys::KeyFormat::Binary
            } else {
                keys::KeyFormat::Armor
            };
            let bytes = keys::export(&layout, &name, format)?;
            if format == keys::KeyFormat::Armor {
                eprintln!(
                    "streamvault: warning: an ASCII-armoured keyring does not work for MAAS (its gpgv needs the binary form: `--binary`)"
                );
            }
            match output {
                Some(path) => std::fs::write(&path, &bytes).with_path("write", &path)?,
                None => {
                    use std::io::Write as _;
                    let mut o = std::io::stdout().lock();
                    if let Err(e) = o.write_all(&bytes).and_then(|()| o.flush())
                        && e.kind() != std::io::ErrorKind::BrokenPipe
                    {
                        return Err(Error::Io {
                            op: "write",
                            path: PathBuf::from("<stdout>"),
                            source: e,
                        });
                    }
                }
            }
            Ok(ExitStatus::Success)
        }
    }
}
