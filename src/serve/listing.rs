//! Directory listings (`GET /streams/v1/`): HTML like Apache's index pages, or JSON with `?json`
//! or `Accept: application/json`.
//!
//! Protects the tree's boundary: an entry that is a symlink leaving the resolved tree (or a
//! broken one) is not listed, links are relative (one name, `/` after a directory), names are
//! escaped for HTML and percent-encoded in links, and entries are sorted by name.

use std::path::Path;
use std::time::SystemTime;

use super::resolve::{Refusal, classify};

/// One listed name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub(crate) name: String,
    pub(crate) dir: bool,
    pub(crate) size: u64,
    pub(crate) modified: Option<SystemTime>,
}

/// The entries of `dir` (canonical, under the canonical `root`), sorted; blocking.
pub(super) fn read(dir: &Path, root: &Path) -> Result<Vec<Entry>, Refusal> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| classify(&e))? {
        let entry = entry.map_err(|e| classify(&e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let path = entry.path();
        // Follow symlinks, but only to something inside the tree.
        let Ok(real) = path.canonicalize() else {
            continue;
        };
        if !real.starts_with(root) {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&real) else {
            continue;
        };
        if !meta.is_dir() && !meta.is_file() {
            continue;
        }
        out.push(Entry {
            name,
            dir: meta.is_dir(),
            size: if meta.is_dir() { 0 } else { meta.len() },
            modified: meta.modified().ok(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The HTML page for `url_path` (decoded, ending in `/`).
pub(super) fn html(url_path: &str, entries: &[Entry]) -> String {
    let title = escape(url_path);
    let mut s = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title>\n\
         <style>body{{font-family:sans-serif}}td{{padding:0 1em}}td.n{{text-align:right}}</style>\n\
         </head><body>\n<h1>Index of {title}</h1>\n<table>\n\
         <tr><th>Name</th><th>Last modified</th><th>Size</th></tr>\n"
    );
    if url_path != "/" {
        s.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    }
    for e in entries {
        let slash = if e.dir { "/" } else { "" };
        let when = e.modified.map(httpdate::fmt_http_date).unwrap_or_default();
        let size = if e.dir {
            "-".to_owned()
        } else {
            e.size.to_string()
        };
        s.push_str(&format!(
            "<tr><td><a href=\"{href}{slash}\">{name}{slash}</a></td><td>{when}</td>\
             <td class=\"n\">{size}</td></tr>\n",
            href = encode(&e.name),
            name = escape(&e.name),
        ));
    }
    s.push_str("</table>\n</body></html>\n");
    s
}

/// The JSON form: `{"path": …, "entries": [{"name", "type", "size", "modified"}]}`.
pub(super) fn json(url_path: &str, entries: &[Entry]) -> String {
    let list: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            serde_json::json!({
                "name": e.name,
                "href": format!("{}{}", encode(&e.name), if e.dir { "/" } else { "" }),
                "type": if e.dir { "directory" } else { "file" },
                "size": e.size,
                "modified": e.modified.map(httpdate::fmt_http_date),
            })
        })
        .collect();
    let mut s = serde_json::json!({ "path": url_path, "entries": list }).to_string();
    s.push('\n');
    s
}

/// Escape for HTML text and attribute values.
pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encode one path segment (unreserved characters, `:`, `@`, and sub-delims but `;` stay).
fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@!$'()*+,=".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    // `./` first so a name such as `a:b` is not read as a URL scheme.
    if out.contains(':') {
        out.insert_str(0, "./");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_and_encoded() {
        let e = Entry {
            name: "a <b>&\"c d#.sjson".into(),
            dir: false,
            size: 3,
            modified: None,
        };
        let page = html("/x/", std::slice::from_ref(&e));
        assert!(
            page.contains("href=\"a%20%3Cb%3E%26%22c%20d%23.sjson\""),
            "{page}"
        );
        assert!(
            page.contains(">a &lt;b&gt;&amp;&quot;c d#.sjson<"),
            "{page}"
        );
        assert!(page.contains("href=\"../\""));
        assert_eq!(
            encode("com.ubuntu.maas:stable.sjson"),
            "./com.ubuntu.maas:stable.sjson"
        );
        assert!(!html("/", &[]).contains("../"));
    }
}
