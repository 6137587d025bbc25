use super::*;
use crate::streams::{Document, ParseError, PathReason, parse};
use serde_json::{Map, Value};

pub(crate) fn products(payload: &str) -> Products {
    match parse("products.json", payload.as_bytes()).unwrap() {
        Document::Products(p) => p,
        Document::Index(_) => panic!("not products"),
    }
}

#[test]
fn python_str_of_scalars() {
    let cases = [
        ("\"s\"", Some("s")),
        ("true", Some("True")),
        ("false", Some("False")),
        ("2500", Some("2500")),
        ("-7", Some("-7")),
        // known deviation: serde_json reads the integer `-0` as a float (Python: "0")
        ("-0", Some("-0.0")),
        ("18446744073709551615", Some("18446744073709551615")),
        ("-9223372036854775808", Some("-9223372036854775808")),
        ("1.0", Some("1.0")),
        ("1.5", Some("1.5")),
        ("0.1", Some("0.1")),
        ("1e2", Some("100.0")),
        ("123.456", Some("123.456")),
        ("0.0001", Some("0.0001")),
        ("0.00001", Some("1e-05")),
        ("1.5e-7", Some("1.5e-07")),
        ("1e15", Some("1000000000000000.0")),
        ("1e16", Some("1e+16")),
        ("1.2345e100", Some("1.2345e+100")),
        ("0.0", Some("0.0")),
        ("-0.0", Some("-0.0")),
        ("-2.5", Some("-2.5")),
        ("1.7976931348623157e308", Some("1.7976931348623157e+308")),
        ("5e-324", Some("5e-324")),
        ("null", None),
        ("[1]", None),
        ("{}", None),
    ];
    for (json, want) in cases {
        let v: Value = serde_json::from_str(json).unwrap();
        assert_eq!(py_str(&v).as_deref(), want, "{json}");
    }
}

const TREE: &str = r#"{
        "format": "products:1.0", "content_id": "com.example:download",
        "datatype": "image-downloads", "os": "ubuntu", "label": "top", "count": 3,
        "list": ["dropped"],
        "products": {
          "p1": {"arch": "amd64", "label": "product", "supported": false, "versions": {
            "20240101": {"label": "version", "pubname": "v1", "items": {
              "disk": {"ftype": "disk1.img", "path": "p1/20240101/disk.img", "size": 2500,
                       "sha256": "ABCDEF", "label": "item"},
              "meta": {"ftype": "manifest", "id": "ami-1"}
            }},
            "20240201": {"size": 9, "md5": "FF", "items": {
              "disk": {"path": "p1/20240201/disk.img", "size": "10", "version_name": "own"}
            }}
          }},
          "p2": {"os": "centos", "size": 7, "versions": {
            "1": {"items": {"x": {"path": "p2/x", "size": 1.0}}},
            "2": {"items": {}}
          }},
          "p3": {}
        }}"#;

#[test]
fn flattening_inner_overrides_outer() {
    let p = products(TREE);
    assert_eq!(p.content_id(), "com.example:download");
    assert_eq!(
        (p.product_count(), p.version_count(), p.item_count()),
        (3, 4, 4)
    );
    let items: Vec<_> = p.items().collect();
    let names: Vec<_> = items
        .iter()
        .map(|i| format!("{}/{}/{}", i.product, i.version, i.item))
        .collect();
    assert_eq!(
        names,
        [
            "p1/20240101/disk",
            "p1/20240101/meta",
            "p1/20240201/disk",
            "p2/1/x"
        ]
    );
    let disk = &items[0];
    assert_eq!(disk.get("label"), Some("item"));
    assert_eq!(disk.get("os"), Some("ubuntu"));
    assert_eq!(disk.get("count"), Some("3"));
    assert_eq!(disk.get("list"), None);
    assert_eq!(disk.get("supported"), Some("False"));
    assert_eq!(disk.get("pubname"), Some("v1"));
    assert_eq!(disk.get("size"), Some("2500"));
    assert_eq!(disk.get("content_id"), Some("com.example:download"));
    assert_eq!(disk.get("format"), Some("products:1.0"));
    assert_eq!(disk.get("product_name"), Some("p1"));
    assert_eq!(disk.get("version_name"), Some("20240101"));
    assert_eq!(disk.get("item_name"), Some("disk"));
    assert_eq!(disk.get("products"), None);
    assert_eq!(disk.size, Some(2500));
    assert_eq!(disk.path, Some("p1/20240101/disk.img"));
    assert_eq!(disk.checksums.sha256.as_deref(), Some("abcdef"));

    let meta = &items[1];
    assert_eq!(meta.get("label"), Some("version"));
    assert_eq!(meta.path, None);
    assert_eq!(meta.size, None);

    // version-level size/md5 inherited as strings; the item's string size wins and is no
    // integer, so `size` is unknown; an item key `version_name` loses to nothing above it.
    let d2 = &items[2];
    assert_eq!(d2.get("size"), Some("10"));
    assert_eq!(d2.size, None);
    assert_eq!(d2.checksums.md5.as_deref(), Some("ff"));
    assert_eq!(d2.get("version_name"), Some("own"));
    assert_eq!(d2.get("label"), Some("product"));

    let x = &items[3];
    assert_eq!(x.get("os"), Some("centos"));
    assert_eq!(x.get("size"), Some("1.0"));
    assert_eq!(x.size, None);
}

#[test]
fn inherited_integer_size_counts() {
    let p = products(
        r#"{"format":"products:1.0","content_id":"c","products":{"p":{"size":5,
                "versions":{"v":{"items":{"i":{"path":"a"}}}}}}}"#,
    );
    let i = p.items().next().unwrap();
    assert_eq!((i.size, i.get("size")), (Some(5), Some("5")));
}

#[test]
fn aliases_are_expanded_before_flattening_and_path_checks() {
    let p = products(
        r#"{"format":"products:1.0","content_id":"c",
                "_aliases":{"crsn":{"east":{"region":"us-east-1","label":"aliased"}}},
                "products":{"p":{"label":"p","versions":{"v":{"items":{
                  "i":{"crsn":"east","id":"ami-1","label":"own"}}}}}}}"#,
    );
    let i = p.items().next().unwrap();
    assert_eq!(i.get("region"), Some("us-east-1"));
    assert_eq!(i.get("label"), Some("aliased"));
    assert_eq!(i.get("_aliases"), None);

    let e = parse(
        "d",
        br#"{"format":"products:1.0","content_id":"c",
                "_aliases":{"k":{"v":{"path":"../escape"}}},
                "products":{"p":{"versions":{"v":{"items":{"i":{"k":"v"}}}}}}}"#,
    )
    .unwrap_err();
    assert!(matches!(e, ParseError::UnsafePath { .. }), "{e:?}");

    let e = parse(
        "d",
        br#"{"format":"products:1.0","content_id":"c","_aliases":{"k":{"v":{}}},
                "products":{"p":{"k":"nope","versions":{}}}}"#,
    )
    .unwrap_err();
    assert!(matches!(e, ParseError::UnknownAlias { .. }), "{e:?}");
}

#[test]
fn bad_trees() {
    let cases: [(&str, &str); 10] = [
        (r#""products":[]"#, "products"),
        (r#""products":{"p":1}"#, "products/p"),
        (
            r#""products":{"p":{"versions":null}}"#,
            "products/p/versions",
        ),
        (
            r#""products":{"p":{"versions":{"v":[]}}}"#,
            "products/p/versions/v",
        ),
        (
            r#""products":{"p":{"versions":{"v":{"items":"x"}}}}"#,
            "products/p/versions/v/items",
        ),
        (
            r#""products":{"p":{"versions":{"v":{"items":{"i":true}}}}}"#,
            "products/p/versions/v/items/i",
        ),
        (
            r#""products":{"p":{"versions":{"v":{"items":{"i":{"path":1}}}}}}"#,
            "products/p/versions/v/items/i/path",
        ),
        (r#""products":{}, "content_id": 5"#, "content_id"),
        (
            r#""products":{"p":{"versions":{"v":{"items":[]}}}}"#,
            "products/p/versions/v/items",
        ),
        (r#""products":{"p":[]}"#, "products/p"),
    ];
    for (body, want_at) in cases {
        let doc = format!(r#"{{"format":"products:1.0","content_id":"c",{body}}}"#);
        // (the `content_id` case relies on a duplicate key keeping the last value, as in Python)
        match parse("d", doc.as_bytes()) {
            Err(ParseError::WrongType { at, .. }) => assert_eq!(at, want_at, "{body}"),
            other => panic!("{body}: {other:?}"),
        }
    }
    let e = parse("d", br#"{"format":"products:1.0","content_id":"c"}"#).unwrap_err();
    assert!(matches!(
        e,
        ParseError::MissingField {
            field: "products",
            ..
        }
    ));
}

#[test]
fn unsafe_item_paths() {
    for (path, reason) in [
        ("../x", PathReason::DotDot),
        ("/etc/passwd", PathReason::Absolute),
        ("a\u{0}b", PathReason::Nul),
        ("a\\b", PathReason::Backslash),
        ("", PathReason::Empty),
        ("a//b", PathReason::EmptyComponent),
        ("./a", PathReason::Dot),
    ] {
        let doc = serde_json::json!({"format": "products:1.0", "content_id": "c",
                "products": {"p": {"versions": {"v": {"items": {"i": {"path": path}}}}}}});
        let e = parse("prod.json", doc.to_string().as_bytes()).unwrap_err();
        match &e {
            ParseError::UnsafePath { at, source, .. } => {
                assert_eq!(at, "products/p/versions/v/items/i/path");
                assert_eq!(source.reason, reason, "{path:?}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            e.to_string(),
            "bad path in `prod.json` at `products/p/versions/v/items/i/path`"
        );
    }
}

#[test]
fn empty_products_and_missing_levels() {
    let p = products(
        r#"{"format":"products:1.0","content_id":"c","products":{"a":{},"b":{"versions":{"v":{}}}}}"#,
    );
    assert_eq!(
        (p.product_count(), p.version_count(), p.item_count()),
        (2, 1, 0)
    );
    assert_eq!(p.items().count(), 0);
}

/// Issue 8 item 4: an inherited 1 MiB field is stored once, however many items inherit
/// it; the flattened views of 1,500 items all point at the same bytes.
#[test]
fn inherited_values_are_shared_not_copied() {
    let big = "y".repeat(1 << 20);
    let items: Map<String, Value> = (0..1500)
        .map(|i| {
            (
                format!("i{i}"),
                serde_json::json!({"path": format!("f{i}"), "size": i}),
            )
        })
        .collect();
    let doc = serde_json::json!({"format": "products:1.0", "content_id": "c",
            "products": {"p": {"blob": big, "versions": {"v": {"items": items}}}}});
    let p = products(&doc.to_string());
    let all: Vec<_> = p.items().collect();
    assert_eq!(all.len(), 1500);
    let first = all[0].get("blob").unwrap();
    assert_eq!(first.len(), 1 << 20);
    assert!(
        all.iter()
            .all(|i| std::ptr::eq(i.get("blob").unwrap(), first))
    );
    assert_eq!(all[7].size, Some(7));
    assert_eq!(all[7].fields().get("item_name"), Some(&"i7"));
}

/// What a sync reads per item without flattening it ([`Products::facts`],
/// [`Products::checksums`], [`Products::flat_path`], [`Products::item_ats`]) is exactly what the
/// flattened [`FlatItem`] says, on inherited, overridden, uppercase, non-string and missing
/// values, more than 32 distinct keys (key lookup past the scan) and a real document.
#[test]
fn facts_agree_with_the_flattened_view() {
    let many_keys: String = (0..40).map(|k| format!("\"k{k}\":{k},")).collect();
    let doc = format!(
        r#"{{"format":"products:1.0","content_id":"c","md5":"TOPMD5","size":7,{many_keys}
        "products":{{
          "p1":{{"sha256":"{up}","path":"inherited/path","versions":{{
            "v1":{{"size":"12","items":{{
              "a":{{"path":"a/x","size":3,"sha512":"{lo512}"}},
              "b":{{"path":"b/x"}},
              "c":{{"size":-1,"md5":7}}}}}},
            "v2":{{"items":{{"d":{{"path":"d/x","size":5,"sha256":"ab"}}}}}}}}}},
          "p2":{{"versions":{{"v":{{"items":{{"e":{{"path":1}}}}}}}}}}}}}}"#,
        up = "AB".repeat(32),
        lo512 = "cd".repeat(64),
    );
    // `e` has a non-string path: refused; drop it and check the rest.
    let doc = doc.replace(r#"{"path":1}"#, r#"{"k39":"x"}"#);
    let p = products(&doc);
    let real = crate::streams::parse(
        "real",
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/fixtures/real/incus-chr-2025/streams/v1/images.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let Document::Products(real) = real else {
        panic!("products expected")
    };
    for p in [&p, &real] {
        let ats: Vec<ItemAt> = p.item_ats().collect();
        let flat: Vec<FlatItem<'_>> = p.items().collect();
        assert_eq!(ats.len(), flat.len());
        assert!(!ats.is_empty());
        for (at, fi) in ats.into_iter().zip(&flat) {
            assert_eq!(fi.at(), at);
            let f = p.facts(at);
            assert_eq!(f.path, fi.path, "{}", fi.item);
            assert_eq!(f.size, fi.size, "{}", fi.item);
            let strongest = f.strongest.map(|(a, h)| (a, h.to_ascii_lowercase()));
            let want = fi.checksums.strongest().map(|(a, h)| (a, h.to_owned()));
            assert_eq!(strongest, want, "{}", fi.item);
            assert_eq!(p.checksums(at), fi.checksums, "{}", fi.item);
            assert_eq!(p.flat_path(at), fi.get("path"), "{}", fi.item);
            assert_eq!(fi.flat_path(), fi.get("path"));
        }
    }
    // The synthetic document's own answers, spelled out.
    let by_name = |n: &str| {
        let at = p.items().find(|i| i.item == n).unwrap().at();
        p.facts(at)
    };
    let a = by_name("a");
    assert_eq!((a.path, a.size), (Some("a/x"), Some(3)));
    assert_eq!(a.strongest.map(|s| s.0), Some(Algo::Sha512));
    let b = by_name("b");
    // `size` "12" (a string) wins over the top-level 7 and is no size.
    assert_eq!((b.path, b.size), (Some("b/x"), None));
    assert_eq!(b.strongest, Some((Algo::Sha256, "AB".repeat(32).as_str())));
    let c = by_name("c");
    assert_eq!((c.path, c.size), (None, None));
    assert_eq!(c.strongest, Some((Algo::Sha256, "AB".repeat(32).as_str())));
    let at_c = p.items().find(|i| i.item == "c").unwrap().at();
    assert_eq!(p.checksums(at_c).md5.as_deref(), Some("7"));
    assert_eq!(p.flat_path(at_c), Some("inherited/path"));
    let e = by_name("e");
    assert_eq!((e.path, e.size), (None, Some(7)));
    assert_eq!(e.strongest, Some((Algo::Md5, "TOPMD5")));
}
