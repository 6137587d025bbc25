//! The compact pass gives what the full parser gives, on the usual shape and on every shape it
//! hands over.

use super::*;

const SIGNED_HEAD: &str = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n";
const SIGNED_TAIL: &str = "\n-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n";

fn tree(products: &str, signed: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let v1 = dir.path().join("streams/v1");
    fs::create_dir_all(&v1).unwrap();
    let (name, body) = if signed {
        ("p.sjson", format!("{SIGNED_HEAD}{products}{SIGNED_TAIL}"))
    } else {
        ("p.json", products.to_string())
    };
    let index = format!(
        r#"{{"format": "index:1.0", "index": {{"p": {{"path": "streams/v1/{name}", "format": "products:1.0", "products": ["a"]}}}}}}"#
    );
    fs::write(v1.join("index.json"), index).unwrap();
    fs::write(v1.join(name), body).unwrap();
    for (p, n) in [("f/one", 3), ("f/two", 5), ("f/dup", 1)] {
        let p = dir.path().join(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, vec![b'x'; n]).unwrap();
    }
    fs::create_dir_all(dir.path().join("f/dir")).unwrap();
    dir
}

/// Both passes; the compact one's answer, and whether it took the document.
fn both(products: &str, signed: bool) -> (std::result::Result<TreeCheck, String>, bool) {
    let dir = tree(products, signed);
    let starts = ["streams/v1/index.json".to_string()];
    let full = check_tree_with(dir.path(), &starts, false).map_err(|e| e.to_string());
    let compact = check_tree_with(dir.path(), &starts, true).map_err(|e| e.to_string());
    assert_eq!(full, compact, "{products}");
    let name = if signed { "p.sjson" } else { "p.json" };
    let payload = read_document(
        dir.path(),
        &format!("streams/v1/{name}"),
        &mut TreeCheck::default(),
    )
    .unwrap()
    .unwrap();
    let took = products_compact(
        dir.path(),
        &payload,
        &mut TreeCheck::default(),
        &mut HashSet::new(),
    );
    (compact, took)
}

fn doc(top: &str, items: &str) -> String {
    format!(
        r#"{{"format": "products:1.0", "content_id": "p"{top}, "products": {{"a": {{"arch": "x", "versions": {{"1": {{"items": {items}}}}}}}, "b": {{"versions": {{"1": {{"items": {{"d": {{"path": "f/dup", "size": 1}}, "n": {{"ftype": "none"}}}}}}}}}}}}}}"#
    )
}

const USUAL: &str = r#"{"ok": {"path": "f/one", "size": 3}, "bad": {"path": "f/two", "size": 4, "sha256": "00"}, "gone": {"path": "f/three", "size": 1}, "dir": {"path": "f/dir", "size": 0}, "d": {"path": "f/dup", "size": 1}, "s": {"path": "f/one", "size": "3"}}"#;

#[test]
fn the_usual_shape_takes_the_compact_pass_and_finds_the_same_problems() {
    for signed in [false, true] {
        let (r, took) = both(&doc("", USUAL), signed);
        assert!(took, "signed: {signed}");
        let c = r.unwrap();
        assert_eq!((c.documents, c.listed, c.missing), (2, 5, 3), "{c:?}");
        assert!(
            c.examples
                .iter()
                .any(|e| e.contains("f/two` (size 5, listed 4)"))
        );
    }
}

#[test]
fn other_shapes_go_to_the_full_parser_with_the_same_answer() {
    let cases = [
        // `_aliases`, an inherited `size`, a repeated key, a `size` that is null.
        doc(r#", "_aliases": {}"#, USUAL),
        doc("", r#"{"i": {"path": "f/one"}}"#),
        doc("", r#"{"i": {"path": "f/one", "size": 3, "size": 2}}"#),
        doc("", r#"{"i": {"path": "f/one", "size": null}}"#),
        doc("", r#"{"i": {"path": "f/one", "size": [3]}}"#),
        // Refused by the full parser: an unsafe or non-string path, a level not an object.
        doc("", r#"{"i": {"path": "../etc/passwd", "size": 3}}"#),
        doc("", r#"{"i": {"path": 7, "size": 3}}"#),
        doc("", r#"{"i": 7}"#),
        doc("", r#"[1]"#),
        // Not products, or no content_id.
        r#"{"format": "products:2.0", "content_id": "p", "products": {}}"#.to_string(),
        r#"{"format": "products:1.0", "products": {}}"#.to_string(),
        r#"{"format": "products:1.0", "content_id": "p"}"#.to_string(),
        "{\"format\": \"products:1.0\", \"content_id\": \"p\", \"products\": {}} trailing".into(),
        "\u{feff}not json".into(),
    ];
    for (i, c) in cases.iter().enumerate() {
        for signed in [false, true] {
            let (_, took) = both(c, signed);
            assert!(
                !took,
                "case {i} (signed: {signed}) took the compact pass: {c}"
            );
        }
    }
}
