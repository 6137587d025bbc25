//! `~/.aws` profiles for S3 DESTs: `AWS_PROFILE` picks the section of `~/.aws/credentials` and
//! `~/.aws/config` (region, endpoint_url), environment variables win, and a profile's secret is
//! never printed, not even when the endpoint fails.

use std::process::Output;

use crate::common::Store;
use crate::common::s3tree::moto_with_snapshots;

const SECRET: &str = "profile-secret-4b1e77";

/// The command with only a HOME holding `~/.aws` (no AWS_* variable from outside).
fn with_profile(store: &Store, home: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut c = store.cmd(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            c.env_remove(&k);
        }
    }
    c.env("HOME", home).env("AWS_PROFILE", "mirror");
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn write_profile(home: &std::path::Path, endpoint: &str) {
    let aws = home.join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(
        aws.join("credentials"),
        format!(
            "[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n\
             [mirror]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = {SECRET}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        aws.join("config"),
        format!("[profile mirror]\nregion = us-east-1\nendpoint_url = {endpoint}\n"),
    )
    .unwrap();
}

#[test]
fn a_profile_configures_the_endpoint_and_credentials_and_its_secret_is_never_printed() {
    let Some((moto, _up, store)) = moto_with_snapshots("prof", 1) else {
        return;
    };
    let home = tempfile::tempdir().unwrap();

    // The profile alone reaches moto.
    write_profile(home.path(), &moto.endpoint());
    let o = with_profile(
        &store,
        home.path(),
        &["publish", "1", "s3://prof/a", "--json"],
    )
    .output()
    .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(!t.contains(SECRET), "{t}");
    assert_eq!(moto.http("GET", "/prof/a/streams/v1/index.sjson").0, 200);

    // A failing endpoint from the profile: one error line, no secret.
    write_profile(home.path(), "http://127.0.0.1:9");
    for args in [
        vec!["publish", "1", "s3://prof/b"],
        vec!["verify", "s3://prof/a"],
        vec!["gc", "s3://prof/a", "--dry-run"],
    ] {
        let o = with_profile(&store, home.path(), &args).output().unwrap();
        let t = text(&o);
        assert!(!o.status.success(), "{args:?}: {t}");
        assert!(t.starts_with("streamvault: error: "), "{args:?}: {t}");
        assert!(!t.contains(SECRET), "{args:?}: {t}");
        assert!(!t.contains("AKIAPROFILE"), "{args:?}: {t}");
    }

    // The environment wins over the profile's (failing) endpoint.
    let o = with_profile(&store, home.path(), &["publish", "1", "s3://prof/c"])
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(!t.contains(SECRET), "{t}");
    assert_eq!(moto.http("GET", "/prof/c/streams/v1/index.sjson").0, 200);
}
