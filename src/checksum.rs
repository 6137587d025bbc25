//! Checksums: the upstream ones a SimpleStreams item carries (md5 < sha256 < sha512) and the
//! BLAKE3 address of the blob store, computed in one pass over the bytes.
//!
//! Protects invariant 6: only the strongest upstream checksum is compared (as sstream-mirror
//! does), and every byte that reaches the store has been through [`MultiHasher`].

use md5::Digest as _;

/// The upstream checksum algorithms, weakest first (the order of the enum is the strength order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Algo {
    Md5,
    Sha256,
    Sha512,
}

impl Algo {
    pub fn name(self) -> &'static str {
        match self {
            Algo::Md5 => "md5",
            Algo::Sha256 => "sha256",
            Algo::Sha512 => "sha512",
        }
    }

    /// Length of the lowercase hex digest.
    pub fn hex_len(self) -> usize {
        match self {
            Algo::Md5 => 32,
            Algo::Sha256 => 64,
            Algo::Sha512 => 128,
        }
    }
}

/// Upstream checksums of an item (lowercase hex), as listed in the metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Checksums {
    pub md5: Option<String>,
    pub sha256: Option<String>,
    pub sha512: Option<String>,
}

impl Checksums {
    /// The strongest checksum present, if any.
    pub fn strongest(&self) -> Option<(Algo, &str)> {
        if let Some(v) = &self.sha512 {
            return Some((Algo::Sha512, v));
        }
        if let Some(v) = &self.sha256 {
            return Some((Algo::Sha256, v));
        }
        self.md5.as_deref().map(|v| (Algo::Md5, v))
    }

    pub fn get(&self, algo: Algo) -> Option<&str> {
        match algo {
            Algo::Md5 => self.md5.as_deref(),
            Algo::Sha256 => self.sha256.as_deref(),
            Algo::Sha512 => self.sha512.as_deref(),
        }
    }

    pub fn set(&mut self, algo: Algo, value: String) {
        match algo {
            Algo::Md5 => self.md5 = Some(value),
            Algo::Sha256 => self.sha256 = Some(value),
            Algo::Sha512 => self.sha512 = Some(value),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.md5.is_none() && self.sha256.is_none() && self.sha512.is_none()
    }
}

/// The digests of one pass over some bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    pub size: u64,
    /// BLAKE3, lowercase hex: the blob's address in the store.
    pub blake3: String,
    /// The upstream algorithms that were asked for, lowercase hex.
    pub upstream: Checksums,
}

/// Hashes a byte stream once through BLAKE3 and the chosen upstream algorithms.
#[derive(Clone)]
pub struct MultiHasher {
    size: u64,
    blake3: blake3::Hasher,
    md5: Option<md5::Md5>,
    sha256: Option<sha2::Sha256>,
    sha512: Option<sha2::Sha512>,
}

impl MultiHasher {
    /// A hasher computing BLAKE3 plus every algorithm in `algos`.
    pub fn new(algos: &[Algo]) -> Self {
        MultiHasher {
            size: 0,
            blake3: blake3::Hasher::new(),
            md5: algos.contains(&Algo::Md5).then(md5::Md5::new),
            sha256: algos.contains(&Algo::Sha256).then(sha2::Sha256::new),
            sha512: algos.contains(&Algo::Sha512).then(sha2::Sha512::new),
        }
    }

    /// A hasher for every algorithm (used when re-hashing a file of unknown origin).
    pub fn all() -> Self {
        Self::new(&[Algo::Md5, Algo::Sha256, Algo::Sha512])
    }

    pub fn update(&mut self, data: &[u8]) {
        self.size += data.len() as u64;
        self.blake3.update(data);
        if let Some(h) = &mut self.md5 {
            h.update(data);
        }
        if let Some(h) = &mut self.sha256 {
            h.update(data);
        }
        if let Some(h) = &mut self.sha512 {
            h.update(data);
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn finish(self) -> Digests {
        let mut upstream = Checksums::default();
        if let Some(h) = self.md5 {
            upstream.md5 = Some(hex(&h.finalize()));
        }
        if let Some(h) = self.sha256 {
            upstream.sha256 = Some(hex(&h.finalize()));
        }
        if let Some(h) = self.sha512 {
            upstream.sha512 = Some(hex(&h.finalize()));
        }
        Digests {
            size: self.size,
            blake3: self.blake3.finalize().to_hex().to_string(),
            upstream,
        }
    }
}

/// Lowercase hex of some bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// Is `s` a lowercase-or-uppercase hex string of exactly `len` characters?
pub fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Hash a whole file through every algorithm (streams it; never loads it whole).
pub fn hash_file(path: &std::path::Path) -> std::io::Result<Digests> {
    hash_file_with(path, MultiHasher::all())
}

/// Hash a whole file through `h` (streamed, 256 KiB at a time).
pub fn hash_file_with(path: &std::path::Path, mut h: MultiHasher) -> std::io::Result<Digests> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
    Ok(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        let mut h = MultiHasher::all();
        h.update(b"abc");
        let d = h.finish();
        assert_eq!(d.size, 3);
        assert_eq!(
            d.upstream.sha256.as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(
            d.upstream.md5.as_deref(),
            Some("900150983cd24fb0d6963f7d28e17f72")
        );
        assert_eq!(
            d.blake3,
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        assert_eq!(d.upstream.strongest().map(|(a, _)| a), Some(Algo::Sha512));
    }

    #[test]
    fn strongest_order() {
        let c = Checksums {
            md5: Some("a".into()),
            sha256: Some("b".into()),
            sha512: None,
        };
        assert_eq!(c.strongest(), Some((Algo::Sha256, "b")));
        assert!(Checksums::default().strongest().is_none());
    }
}
