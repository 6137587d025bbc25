//! `~/.aws` profiles, which `object_store` does not read: the profile `AWS_PROFILE` (else
//! `default`) of the credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else
//! `~/.aws/credentials`: `aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`) and
//! of the config file (`AWS_CONFIG_FILE`, else `~/.aws/config`, section `[profile NAME]` or
//! `[default]`: `region`, `endpoint_url`, also as `endpoint_url` under an `s3 =` block, and the
//! credential keys too). Environment variables win over the files; the credentials file wins over
//! the config file. A file that is missing or unreadable is taken as empty; values are never
//! printed (they hold secrets).

use std::collections::HashMap;
use std::path::PathBuf;

/// What the files give, for the keys the environment does not set.
#[derive(Default, Clone, PartialEq, Eq)]
pub(super) struct Profile {
    pub(crate) access_key_id: Option<String>,
    pub(crate) secret_access_key: Option<String>,
    pub(crate) session_token: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) endpoint_url: Option<String>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the values: they hold secrets.
        f.debug_struct("Profile")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// One INI file's sections: name → key → value. `[profile x]` is stored as `x`. A value
/// indented under a key with an empty value (`s3 =`) is stored as `KEY.SUBKEY`.
fn parse(text: &str, config: bool) -> HashMap<String, HashMap<String, String>> {
    let mut out: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut section: Option<String> = None;
    let mut parent: Option<String> = None;
    for raw in text.lines() {
        let line = raw.trim_end();
        let body = line.trim_start();
        if body.is_empty() || body.starts_with('#') || body.starts_with(';') {
            continue;
        }
        if let Some(name) = body.strip_prefix('[').and_then(|b| b.strip_suffix(']')) {
            let name = name.trim();
            let name = if config {
                name.strip_prefix("profile ").map(str::trim).unwrap_or(name)
            } else {
                name
            };
            section = Some(name.to_string());
            parent = None;
            continue;
        }
        let Some(sec) = &section else { continue };
        let Some((k, v)) = body.split_once('=') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
        let nested = line.starts_with([' ', '\t']);
        let entry = out.entry(sec.clone()).or_default();
        match (&parent, nested) {
            (Some(p), true) => {
                entry.insert(format!("{p}.{k}"), v);
            }
            _ => {
                parent = v.is_empty().then(|| k.clone());
                entry.insert(k, v);
            }
        }
    }
    out
}

fn home_file(env: &dyn Fn(&str) -> Option<String>, var: &str, name: &str) -> Option<PathBuf> {
    env(var)
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".aws").join(name)))
}

/// The profile's values from the files (see the module documentation); `env` reads a variable.
pub(super) fn load(env: &dyn Fn(&str) -> Option<String>) -> Profile {
    let name = env("AWS_PROFILE").unwrap_or_else(|| "default".to_string());
    let read = |p: Option<PathBuf>, config: bool| {
        p.and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| parse(&t, config))
            .unwrap_or_default()
            .remove(&name)
            .unwrap_or_default()
    };
    let creds = read(
        home_file(env, "AWS_SHARED_CREDENTIALS_FILE", "credentials"),
        false,
    );
    let conf = read(home_file(env, "AWS_CONFIG_FILE", "config"), true);
    let get = |k: &str| {
        creds
            .get(k)
            .or_else(|| conf.get(k))
            .filter(|v| !v.is_empty())
            .cloned()
    };
    Profile {
        access_key_id: get("aws_access_key_id"),
        secret_access_key: get("aws_secret_access_key"),
        session_token: get("aws_session_token"),
        region: get("region"),
        endpoint_url: get("s3.endpoint_url").or_else(|| get("endpoint_url")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_of_both_files_env_names_the_profile() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("credentials");
        let conf = dir.path().join("config");
        std::fs::write(
            &creds,
            "[default]\naws_access_key_id = AKD\naws_secret_access_key = SD\n\n\
             [ceph]\naws_access_key_id=AKC\naws_secret_access_key = SC # not a comment\n",
        )
        .unwrap();
        std::fs::write(
            &conf,
            "[default]\nregion = eu-west-1\n[profile ceph]\nregion = rgw\ns3 =\n  endpoint_url = http://rgw:7480\n\
             [profile minio]\nendpoint_url = http://minio:9000\naws_access_key_id = AKM\n",
        )
        .unwrap();
        let vars = |profile: Option<&'static str>| {
            let creds = creds.clone();
            let conf = conf.clone();
            move |k: &str| match k {
                "AWS_PROFILE" => profile.map(str::to_string),
                "AWS_SHARED_CREDENTIALS_FILE" => Some(creds.display().to_string()),
                "AWS_CONFIG_FILE" => Some(conf.display().to_string()),
                _ => None,
            }
        };
        let d = load(&vars(None));
        assert_eq!(d.access_key_id.as_deref(), Some("AKD"));
        assert_eq!(d.region.as_deref(), Some("eu-west-1"));
        assert_eq!(d.endpoint_url, None);
        let c = load(&vars(Some("ceph")));
        assert_eq!(c.access_key_id.as_deref(), Some("AKC"));
        assert_eq!(c.secret_access_key.as_deref(), Some("SC # not a comment"));
        assert_eq!(c.region.as_deref(), Some("rgw"));
        assert_eq!(c.endpoint_url.as_deref(), Some("http://rgw:7480"));
        let m = load(&vars(Some("minio")));
        assert_eq!(m.endpoint_url.as_deref(), Some("http://minio:9000"));
        assert_eq!(m.access_key_id.as_deref(), Some("AKM"));
        assert_eq!(m.secret_access_key, None);
        assert!(!format!("{c:?}").contains("SC"));
        assert_eq!(load(&vars(Some("nope"))), Profile::default());
    }
}
