//! The RFC 4880 §7 cleartext framing, parsed by hand and strictly: the `BEGIN PGP SIGNED
//! MESSAGE` line, `Key: Value` armor headers ended by an empty line, the dash-escaped text, the
//! `BEGIN`/`END PGP SIGNATURE` block and nothing but whitespace after it.
//!
//! Invariant: the payload built here is exactly the literal text sequoia's cleartext reader
//! (sequoia-openpgp 2.4, `armor::Reader::read_clearsigned_message`) builds for the same
//! document, i.e. the text the signature covers. Every place where sequoia is more lenient
//! (lines it skips, markers it recognises loosely) is rejected here, so on accepted documents
//! the two cannot disagree; `verify` checks that once more on every verified document.

use std::borrow::Cow;

use super::Error;

/// The first line of a cleartext-signed document.
pub(super) const BEGIN_SIGNED: &[u8] = b"-----BEGIN PGP SIGNED MESSAGE-----";
const BEGIN_SIGNATURE: &[u8] = b"-----BEGIN PGP SIGNATURE-----";
const END_SIGNATURE: &[u8] = b"-----END PGP SIGNATURE-----";

/// A well-framed cleartext-signed document.
#[derive(Debug)]
pub(super) struct Framed<'a> {
    /// The armor headers (`Hash: SHA512`, ...), in order.
    pub headers: Vec<(&'a str, &'a str)>,
    /// The signed text: dash-unescaped, trailing blanks stripped, no final line ending.
    /// Borrowed from the document when no line needed a change (a typical JSON document).
    pub payload: Cow<'a, [u8]>,
    /// The signature block: from the `-----BEGIN PGP SIGNATURE-----` line to the end of the
    /// `-----END PGP SIGNATURE-----` line, as in the document.
    pub signature: &'a [u8],
}

fn framing(line: usize, problem: &'static str) -> Error {
    Error::Framing { line, problem }
}

/// Splits a line into its content and its ending (`\r\n` or `\n`); `None` when the line has
/// no ending (the document stops in the middle of it).
fn split_eol(line: &[u8]) -> Option<(&[u8], &'static [u8])> {
    let content = line.strip_suffix(b"\n")?;
    Some(match content.strip_suffix(b"\r") {
        Some(content) => (content, b"\r\n"),
        None => (content, b"\n"),
    })
}

fn is_blank(byte: &u8) -> bool {
    matches!(byte, b' ' | b'\t')
}

/// Strips trailing spaces and tabs (RFC 4880 §7.1: the whitespace the signature ignores).
fn trim_blanks(mut s: &[u8]) -> &[u8] {
    while let Some(rest) = s.strip_suffix(b" ").or_else(|| s.strip_suffix(b"\t")) {
        s = rest;
    }
    s
}

/// A `Key: Value` armor header line, as sequoia splits it (at the first `": "`).
fn parse_header(content: &[u8]) -> Option<(&str, &str)> {
    let (key, value) = std::str::from_utf8(content).ok()?.split_once(": ")?;
    let token = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    token.then_some((key, value))
}

/// The characters of Unicode's "Dash Punctuation" category, which sequoia accepts in place of
/// `-` in armor lines.
fn is_dash(c: char) -> bool {
    matches!(
        c,
        '\u{002D}' | '\u{058A}' | '\u{05BE}' | '\u{1400}' | '\u{1806}' | '\u{2010}'
            ..='\u{2015}'
                | '\u{2E17}'
                | '\u{2E1A}'
                | '\u{2E3A}'
                | '\u{2E3B}'
                | '\u{2E40}'
                | '\u{301C}'
                | '\u{3030}'
                | '\u{30A0}'
                | '\u{FE31}'
                | '\u{FE32}'
                | '\u{FE58}'
                | '\u{FE63}'
                | '\u{FF0D}'
    )
}

/// Whether sequoia would end the signed text at this line: more than two bytes of dashes, then
/// `BEGIN PGP SIGNATURE`. Such a line must then be exactly the marker.
fn ends_text_for_sequoia(line: &[u8]) -> bool {
    let valid = line.utf8_chunks().next().map_or("", |chunk| chunk.valid());
    let dashes: usize = valid
        .chars()
        .take_while(|&c| is_dash(c))
        .map(char::len_utf8)
        .sum();
    dashes > 2
        && line
            .get(dashes..)
            .is_some_and(|rest| rest.starts_with(b"BEGIN PGP SIGNATURE"))
}

/// The lines of a document with their byte offsets and 1-based numbers; each line keeps its
/// `\n` (the last one may have none).
struct Lines<'a> {
    doc: &'a [u8],
    pos: usize,
    n: usize,
}

impl<'a> Lines<'a> {
    fn new(doc: &'a [u8]) -> Lines<'a> {
        Lines { doc, pos: 0, n: 0 }
    }

    /// The next line as (its offset, its bytes, its number).
    fn next_line(&mut self) -> Option<(usize, &'a [u8], usize)> {
        let rest = self.doc.get(self.pos..).filter(|r| !r.is_empty())?;
        let len = find_newline(rest).map_or(rest.len(), |i| i + 1);
        let line = rest.get(..len)?;
        let at = self.pos;
        self.pos += len;
        self.n += 1;
        Some((at, line, self.n))
    }
}

/// The index of the first `\n` in `s` (SIMD, the `memchr` crate: std's word-at-a-time search
/// was a tenth of a verify of the real products document).
fn find_newline(s: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', s)
}

/// Whether a signed-text line may need [`ends_text_for_sequoia`]: only a line starting with
/// `-` or a non-ASCII byte (a Unicode dash) can end the text for sequoia.
fn may_end_text(line: &[u8]) -> bool {
    line.first().is_some_and(|&b| b == b'-' || !b.is_ascii())
}

/// Parses the framing of a cleartext-signed document and builds its signed text.
///
/// One pass over the document: the signed text is copied in runs of lines that need no change
/// (no dash-escape, no trailing blank), so a typical JSON document is one copy.
pub(super) fn parse(doc: &[u8]) -> Result<Framed<'_>, Error> {
    let Some(after_begin) = doc.strip_prefix(BEGIN_SIGNED) else {
        return Err(Error::NotClearsigned);
    };
    let mut lines = Lines::new(doc);
    let mut last = 0;

    // The first line: the marker, then nothing but blanks.
    let first_end = find_newline(after_begin);
    let first_rest = first_end.and_then(|n| after_begin.get(..n));
    let first_rest = first_rest.map(|r| r.strip_suffix(b"\r").unwrap_or(r));
    match first_rest {
        None => return Err(framing(1, "the document ends after its first line")),
        Some(rest) if !rest.iter().all(is_blank) => {
            return Err(framing(
                1,
                "text after `-----BEGIN PGP SIGNED MESSAGE-----`",
            ));
        }
        Some(_) => {}
    }
    if let Some((_, _, n)) = lines.next_line() {
        last = n;
    }

    // Armor headers, ended by an empty line.
    let mut headers = Vec::new();
    loop {
        let Some((_, line, n)) = lines.next_line() else {
            return Err(framing(
                last + 1,
                "the document ends inside the armor headers",
            ));
        };
        last = n;
        let Some((content, _)) = split_eol(line) else {
            return Err(framing(n, "the document ends inside the armor headers"));
        };
        if content.iter().all(is_blank) {
            break;
        }
        let header = parse_header(content).ok_or(framing(
            n,
            "armor header is not `Key: Value` (is the empty line after the headers missing?)",
        ))?;
        headers.push(header);
    }

    // The signed text, up to `-----BEGIN PGP SIGNATURE-----`. `run` is where the lines copied
    // verbatim since the last changed line start; `changed` holds the text up to `run` once a
    // line needed a change (until then the text is a slice of the document).
    let mut changed: Option<Vec<u8>> = None;
    let text_start = lines.pos;
    let mut run = lines.pos;
    let signature_start = loop {
        let Some((at, line, n)) = lines.next_line() else {
            return Err(framing(
                last + 1,
                "no `-----BEGIN PGP SIGNATURE-----` line after the signed text",
            ));
        };
        last = n;
        let Some((content, _)) = split_eol(line) else {
            return Err(framing(
                n,
                "no `-----BEGIN PGP SIGNATURE-----` line after the signed text",
            ));
        };
        if may_end_text(line) && ends_text_for_sequoia(line) {
            if trim_blanks(content) == BEGIN_SIGNATURE {
                break at;
            }
            return Err(framing(n, "malformed `-----BEGIN PGP SIGNATURE-----` line"));
        }
        // Undo the dash-escaping, then cut the ending and trailing blanks, as sequoia does.
        let unescaped = line.strip_prefix(b"- ").unwrap_or(line);
        let Some((text, eol)) = split_eol(unescaped) else {
            return Err(framing(n, "malformed dash-escaped line"));
        };
        let trimmed = trim_blanks(text);
        if unescaped.len() == line.len() && trimmed.len() == text.len() {
            continue; // unchanged: stays in the run
        }
        let payload = changed.get_or_insert_with(|| Vec::with_capacity(doc.len()));
        payload.extend_from_slice(doc.get(run..at).unwrap_or_default());
        payload.extend_from_slice(trimmed);
        payload.extend_from_slice(eol);
        run = lines.pos;
    };
    let tail = doc.get(run..signature_start).unwrap_or_default();
    // The last line ending separates the text from the signature; it is not signed.
    // (Every line of the text ends with `\n`: the last byte is the `\n` of that line ending.)
    let unsigned_eol = |text: &[u8]| match text.split_last() {
        Some((_, rest)) => rest.len() - usize::from(rest.ends_with(b"\r")),
        None => 0,
    };
    let payload = match changed {
        Some(mut payload) => {
            payload.extend_from_slice(tail);
            payload.truncate(unsigned_eol(&payload));
            Cow::Owned(payload)
        }
        None => {
            let text = doc.get(text_start..signature_start).unwrap_or_default();
            Cow::Borrowed(text.get(..unsigned_eol(text)).unwrap_or_default())
        }
    };

    // The signature block: its END line, then only whitespace.
    loop {
        let Some((_, line, n)) = lines.next_line() else {
            return Err(framing(
                last + 1,
                "the document ends inside the signature block (no `-----END PGP SIGNATURE-----`)",
            ));
        };
        last = n;
        let content = split_eol(line).map_or(line, |(content, _)| content);
        if trim_blanks(content) == END_SIGNATURE {
            break;
        }
    }
    let signature = doc.get(signature_start..lines.pos).unwrap_or_default();
    while let Some((_, line, n)) = lines.next_line() {
        if !line.iter().all(u8::is_ascii_whitespace) {
            return Err(framing(n, "text after `-----END PGP SIGNATURE-----`"));
        }
    }

    Ok(Framed {
        headers,
        payload,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIG: &str = "-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n";

    fn doc(headers: &str, body: &str) -> Vec<u8> {
        format!("-----BEGIN PGP SIGNED MESSAGE-----\n{headers}\n{body}{SIG}").into_bytes()
    }

    fn framing_line(r: Result<Framed<'_>, Error>) -> usize {
        match r {
            Err(Error::Framing { line, .. }) => line,
            other => panic!("expected a framing error, got {other:?}"),
        }
    }

    #[test]
    fn payload_rules() {
        let d = doc(
            "Hash: SHA512\nComment: two headers\n",
            "- -dash\n-bare\nFrom x  \n- From y\t \n\ntail \n",
        );
        let f = parse(&d).unwrap();
        assert_eq!(
            f.headers,
            vec![("Hash", "SHA512"), ("Comment", "two headers")]
        );
        assert_eq!(&*f.payload, b"-dash\n-bare\nFrom x\nFrom y\n\ntail");
    }

    #[test]
    fn crlf_and_mixed_endings_are_kept_but_the_last_is_dropped() {
        let d = b"-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n\r\na \r\nb\n- c\r\n\
                  -----BEGIN PGP SIGNATURE-----\r\n\r\nAAAA\r\n-----END PGP SIGNATURE-----\r\n";
        assert_eq!(&*parse(d).unwrap().payload, b"a\r\nb\nc");
    }

    #[test]
    fn empty_text_and_no_headers() {
        assert_eq!(&*parse(&doc("", "")).unwrap().payload, b"");
        assert_eq!(&*parse(&doc("", "\n")).unwrap().payload, b"");
        assert_eq!(&*parse(&doc("", "\n\n")).unwrap().payload, b"\n");
    }

    #[test]
    fn not_clearsigned() {
        assert!(matches!(parse(b""), Err(Error::NotClearsigned)));
        assert!(matches!(parse(b"{}"), Err(Error::NotClearsigned)));
        let bom = [b"\xEF\xBB\xBF".as_slice(), &doc("", "x\n")].concat();
        assert!(matches!(parse(&bom), Err(Error::NotClearsigned)));
    }

    #[test]
    fn malformed_framing() {
        // Missing empty line after the headers: sequoia would read `{` as text.
        let d = b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n{\n}\n".to_vec();
        assert_eq!(
            framing_line(parse(&[d, SIG.as_bytes().to_vec()].concat())),
            3
        );
        // No header block at all.
        let d = format!("-----BEGIN PGP SIGNED MESSAGE-----\n{{}}\n{SIG}");
        assert_eq!(framing_line(parse(d.as_bytes())), 2);
        // Text after the first marker, or a sixth dash.
        let d = format!("-----BEGIN PGP SIGNED MESSAGE----- x\n\nt\n{SIG}");
        assert_eq!(framing_line(parse(d.as_bytes())), 1);
        let d = format!("-----BEGIN PGP SIGNED MESSAGE------\n\nt\n{SIG}");
        assert_eq!(framing_line(parse(d.as_bytes())), 1);
        // Loose signature markers sequoia would honour.
        for marker in [
            "---BEGIN PGP SIGNATURE---",
            "—BEGIN PGP SIGNATURES",
            "-----BEGIN PGP SIGNATURE----- x",
        ] {
            let d = doc("", &format!("t\n{marker}\n"));
            assert_eq!(framing_line(parse(&d)), 4, "{marker}");
        }
        // Header line with leading blank or no value separator.
        assert_eq!(framing_line(parse(&doc(" Hash: SHA1\n", "t\n"))), 2);
        assert_eq!(framing_line(parse(&doc("Hash:SHA1\n", "t\n"))), 2);
        // Whitespace-only but not blank (a lone CR before CRLF).
        assert_eq!(framing_line(parse(&doc("\r\r\n", "t\n"))), 2);
    }

    #[test]
    fn truncations_and_trailing_text() {
        let full = doc("Hash: SHA512\n", "{\n \"a\": 1\n}\n");
        parse(&full).unwrap();
        for cut in 0..full.len() {
            // Cutting only the final newline still leaves a complete END line.
            if cut + 1 == full.len() {
                assert!(parse(&full[..cut]).is_ok());
                continue;
            }
            assert!(parse(&full[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = full.clone();
        trailing.extend_from_slice(b" \n\r\n\t");
        parse(&trailing).unwrap();
        trailing.extend_from_slice(b"x");
        assert!(matches!(parse(&trailing), Err(Error::Framing { .. })));
    }

    #[test]
    fn escaped_markers_are_text() {
        let d = doc(
            "",
            "- -----BEGIN PGP SIGNATURE-----\n- -----END PGP SIGNATURE-----\n-- x\n",
        );
        assert_eq!(
            &*parse(&d).unwrap().payload,
            b"-----BEGIN PGP SIGNATURE-----\n-----END PGP SIGNATURE-----\n-- x"
        );
    }

    #[test]
    fn never_panics_on_garbage() {
        let mut rng = fastrand::Rng::with_seed(7);
        let base = doc("Hash: SHA512\n", "- a\n\r\nb \n");
        for _ in 0..20_000 {
            let mut d = base.clone();
            for _ in 0..rng.usize(1..4) {
                let i = rng.usize(..d.len());
                match rng.u8(..3) {
                    0 => d[i] = rng.u8(..),
                    1 => {
                        d.remove(i);
                    }
                    _ => d.insert(i, *rng.choice(b"-\r\n \t:\xFF".iter()).unwrap()),
                }
            }
            let _ = parse(&d);
        }
    }
}
