//! `verify s3://…` against a real moto_server: a deleted and a truncated object are found by
//! size, a same-size corruption only with `--deep`, and `--repair` uploads all three again from
//! the store; findings use the local verify's JSON shape (`problem.kind`, `repair`, `orphan`).

use crate::common::s3tree::moto_with_snapshots;
use crate::common::{Moto, Store, Upstream};
use crate::s3_gc::{json, ok, sv};
use streamvault::streamgen::{Bulk, StreamSpec};

/// Delete (`body` None) or overwrite an object with a signed request (moto refuses unsigned
/// ones on existing objects): boto3 from moto's own virtualenv.
fn boto(moto: &Moto, bucket: &str, key: &str, body: Option<&[u8]>) {
    use std::io::Write;
    let python = std::env::var_os("MOTO_SERVER")
        .map(|m| std::path::PathBuf::from(m).with_file_name("python"))
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/s3-venv/bin/python")
        });
    let script = "import sys, boto3\n\
c = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='t', aws_secret_access_key='t')\n\
if sys.argv[4] == 'delete':\n    c.delete_object(Bucket=sys.argv[2], Key=sys.argv[3])\n\
else:\n    c.put_object(Bucket=sys.argv[2], Key=sys.argv[3], Body=sys.stdin.buffer.read())\n";
    let mut child = std::process::Command::new(python)
        .args([
            "-c",
            script,
            &moto.endpoint(),
            bucket,
            key,
            if body.is_some() { "put" } else { "delete" },
        ])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(body.unwrap_or_default()).unwrap();
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn kinds(r: &serde_json::Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["problem"]["kind"].as_str().unwrap().to_string(),
                f["problem"]["key"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn verify_finds_deleted_truncated_and_corrupt_objects_and_repair_fixes_them() {
    let Some((moto, _up, store)) = moto_with_snapshots("ver", 1) else {
        return;
    };
    let dest = "s3://ver/p";
    ok(&sv(
        &store,
        &moto,
        &["publish", "1", dest, "--metadata", "filtered"],
    ));
    let clean = json(&sv(&store, &moto, &["verify", dest, "--deep", "--json"]));
    assert_eq!(clean["findings"].as_array().unwrap().len(), 0, "{clean}");
    assert!(clean["objects_checked"].as_u64().unwrap() >= 4, "{clean}");

    // Three items of the tree, each as uploaded.
    let tree = std::fs::read_dir(store.root().join("trees"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.is_dir() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .unwrap();
    let mut items: Vec<String> = walkdir::WalkDir::new(&tree)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            e.path()
                .strip_prefix(&tree)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|p| !p.starts_with("streams/"))
        .filter(|p| std::fs::metadata(tree.join(p)).unwrap().len() > 2)
        .collect();
    items.sort();
    assert!(items.len() >= 3, "{items:?}");
    let (gone, short, flipped) = (&items[0], &items[1], &items[2]);
    let orig = |p: &str| std::fs::read(tree.join(p)).unwrap();
    boto(&moto, "ver", &format!("p/{gone}"), None);
    assert_eq!(moto.http("GET", &format!("/ver/p/{gone}")).0, 404);
    let o = orig(short);
    boto(&moto, "ver", &format!("p/{short}"), Some(&o[..o.len() / 2]));
    let mut o = orig(flipped);
    o[0] ^= 0xff;
    boto(&moto, "ver", &format!("p/{flipped}"), Some(&o));

    // Sizes only: the deleted and the truncated object; exit 1.
    let out = sv(&store, &moto, &["verify", dest, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        kinds(&r),
        vec![
            ("s3_object_missing".to_string(), gone.clone()),
            ("s3_object_size".to_string(), short.clone()),
        ],
        "{r}"
    );
    assert_eq!(r["findings"][0]["orphan"], false, "{r}");
    assert!(r["findings"][0]["repair"].is_null(), "{r}");
    // --deep also finds the same-size corruption.
    let out = sv(&store, &moto, &["verify", dest, "--deep", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut want = vec![
        ("s3_object_corrupt".to_string(), flipped.clone()),
        ("s3_object_missing".to_string(), gone.clone()),
        ("s3_object_size".to_string(), short.clone()),
    ];
    want.sort();
    assert_eq!(kinds(&r), want, "{r}");
    // The text form: one line per finding, then the totals.
    let out = sv(&store, &moto, &["verify", dest]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains(&format!("object `{gone}`")), "{text}");
    assert!(text.contains("missing from the bucket"), "{text}");

    // --repair uploads all three again from the store.
    let r = json(&sv(
        &store,
        &moto,
        &["verify", dest, "--deep", "--repair", "--json"],
    ));
    assert_eq!(r["findings"].as_array().unwrap().len(), 3, "{r}");
    for f in r["findings"].as_array().unwrap() {
        assert_eq!(f["repair"]["outcome"], "repaired", "{r}");
    }
    for p in [gone, short, flipped] {
        let (st, body) = moto.http("GET", &format!("/ver/p/{p}"));
        assert_eq!(st, 200);
        assert_eq!(body, orig(p), "{p}");
    }
    let clean = json(&sv(&store, &moto, &["verify", dest, "--deep", "--json"]));
    assert_eq!(clean["findings"].as_array().unwrap().len(), 0, "{clean}");
}

#[test]
fn multipart_uploads_with_checksums_complete_with_the_right_size_and_bytes() {
    let Some(moto) = Moto::start() else { return };
    moto.public_bucket("multi");
    // One 11 MiB item: with 5 MiB parts (moto's minimum) a three-part upload.
    let up = Upstream::with_spec(StreamSpec {
        bulk: Some(Bulk {
            products: 1,
            versions: 1,
            files_per_version: 1,
            file_size: 11 << 20,
        }),
        ..StreamSpec::generation(1)
    });
    let store = Store::new();
    store.add("maas", &up, &[]);
    store.sync_json("maas");
    let dest = "s3://multi/m";
    let mark = moto.log_text().len();
    let o = store
        .cmd(&["publish", "1", dest, "--json"])
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "very-secret-key-9f2c")
        .env("STREAMVAULT_FAILPOINT", "s3-part-size=5242880")
        .output()
        .unwrap();
    let r = json(&o);
    assert!(r["uploaded"].as_u64().unwrap() > 0, "{r}");
    // CreateMultipartUpload and CompleteMultipartUpload are POSTs.
    assert!(moto.count(mark, "POST") >= 2, "{}", moto.log_text());
    let tree = std::fs::read_dir(store.root().join("trees"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.is_dir() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .unwrap();
    let big: Vec<_> = walkdir::WalkDir::new(&tree)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file() && e.metadata().unwrap().len() > 10 << 20)
        .map(|e| e.path().strip_prefix(&tree).unwrap().to_path_buf())
        .collect();
    assert_eq!(big.len(), 1, "{big:?}");
    let rel = big[0].to_string_lossy();
    let (st, body) = moto.http("GET", &format!("/multi/m/{rel}"));
    assert_eq!(st, 200);
    assert_eq!(body, std::fs::read(tree.join(&big[0])).unwrap());
    let clean = json(&sv(&store, &moto, &["verify", dest, "--deep", "--json"]));
    assert_eq!(clean["findings"].as_array().unwrap().len(), 0, "{clean}");
}
