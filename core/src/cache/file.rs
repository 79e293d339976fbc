//! A cache file, as nginx lays one out: a fixed header, the key, the
//! request headers its answer varies by (`Vary`), the upstream's
//! response head as it came, then the body. Its name is the
//! md5 of the key in hex, under directories of its last characters
//! (`levels=1:2`: `c/29/b7f5...029c`).
//!
//! The header is waypost's own (nginx's is a C struct of its build): a
//! file nginx wrote is not read, and one waypost wrote is not nginx's.

use std::path::{Path, PathBuf};

/// The first bytes of every cache file waypost writes; a file without
/// them is not one of its entries.
pub const MAGIC: [u8; 8] = *b"WPCACHE\x01";

/// The header's size: magic, validity, date, key length, head length,
/// body length, `Vary` length, the variant's md5.
pub const HEADER: usize = 8 + 8 + 8 + 4 + 4 + 8 + 4 + 16;

/// What a cache file's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Unix seconds until which the entry is fresh.
    pub valid_until: i64,
    /// Unix seconds when it was stored.
    pub date: i64,
    pub key_len: u32,
    pub head_len: u32,
    pub body_len: u64,
    /// The answer's `Vary` value (0: none), and the md5 of the request
    /// headers it names, as they were ([`variant`]).
    pub vary_len: u32,
    pub variant: [u8; 16],
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER] {
        let mut out = [0u8; HEADER];
        out[..8].copy_from_slice(&MAGIC);
        out[8..16].copy_from_slice(&self.valid_until.to_le_bytes());
        out[16..24].copy_from_slice(&self.date.to_le_bytes());
        out[24..28].copy_from_slice(&self.key_len.to_le_bytes());
        out[28..32].copy_from_slice(&self.head_len.to_le_bytes());
        out[32..40].copy_from_slice(&self.body_len.to_le_bytes());
        out[40..44].copy_from_slice(&self.vary_len.to_le_bytes());
        out[44..60].copy_from_slice(&self.variant);
        out
    }

    /// The header at the start of `bytes`; `None` if they are not one of
    /// waypost's cache files.
    pub fn decode(bytes: &[u8]) -> Option<Header> {
        if bytes.len() < HEADER || bytes[..8] != MAGIC {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap_or_default());
        let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap_or_default());
        Some(Header {
            valid_until: u64_at(8) as i64,
            date: u64_at(16) as i64,
            key_len: u32_at(24),
            head_len: u32_at(28),
            body_len: u64_at(32),
            vary_len: u32_at(40),
            variant: bytes[44..60].try_into().unwrap_or_default(),
        })
    }

    /// Where the body starts in the file.
    pub fn body_start(&self) -> u64 {
        self.head_start() + u64::from(self.head_len)
    }

    /// Where the response head starts in the file.
    pub fn head_start(&self) -> u64 {
        HEADER as u64 + u64::from(self.key_len) + u64::from(self.vary_len)
    }

    /// The file's whole size.
    pub fn file_len(&self) -> u64 {
        self.body_start() + self.body_len
    }
}

/// The variant of a request for an answer that varies by the headers
/// `vary` names, as `ngx_http_file_cache_vary`: the md5 of the key's md5
/// and of each name (lowercase) with the request's values, so that
/// answers to requests that differ there are kept apart.
pub fn variant(key: &[u8; 16], vary: &[u8], headers: &http::HeaderMap) -> [u8; 16] {
    use md5::Digest as _;
    let mut md5 = md5::Md5::new();
    md5.update(key);
    for name in vary
        .split(|&c| c == b' ' || c == b',')
        .filter(|n| !n.is_empty())
    {
        let name = name.to_ascii_lowercase();
        md5.update(&name);
        md5.update(b":");
        // The Accept-* headers as their tokens (`en, fr` and `en,fr`
        // are one variant), the others as they came.
        let tokens = matches!(
            &name[..],
            b"accept-charset" | b"accept-encoding" | b"accept-language"
        );
        let mut first = true;
        for value in std::str::from_utf8(&name)
            .ok()
            .map(|n| headers.get_all(n))
            .into_iter()
            .flatten()
        {
            let value = value.as_bytes();
            if tokens {
                for token in value
                    .split(|&c| c == b' ' || c == b',')
                    .filter(|t| !t.is_empty())
                {
                    if !first {
                        md5.update(b",");
                    }
                    md5.update(token);
                    first = false;
                }
            } else {
                if !first {
                    md5.update(b",");
                }
                md5.update(value);
                first = false;
            }
        }
        md5.update(b"\r\n");
    }
    md5.finalize().into()
}

/// The md5 of a key, as nginx names its cache files.
pub fn md5(key: &[u8]) -> [u8; 16] {
    use md5::Digest as _;
    md5::Md5::digest(key).into()
}

pub fn hex(md5: &[u8; 16]) -> [u8; 32] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, b) in md5.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 15)];
    }
    out
}

/// The md5 a file name of 32 hex digits stands for.
pub fn unhex(name: &[u8]) -> Option<[u8; 16]> {
    if name.len() != 32 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 16];
    for (i, pair) in name.chunks(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// The entry's file under `root`, as `ngx_create_hashed_filename`: each
/// level's directory is the next characters from the end of the name.
pub fn path(root: &Path, levels: &[u8], md5: &[u8; 16]) -> PathBuf {
    let name = hex(md5);
    let mut path = root.to_path_buf();
    let mut end = name.len();
    for &level in levels {
        let start = end - usize::from(level);
        path.push(std::str::from_utf8(&name[start..end]).unwrap_or_default());
        end = start;
    }
    path.push(std::str::from_utf8(&name).unwrap_or_default());
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_named_and_placed_as_nginx_places_it() {
        // nginx's documentation: levels=1:2 puts the key whose md5 ends
        // in ...029c at c/29/.
        let md5 = unhex(b"b7f54b2df7773722d382f4809d65029c").unwrap_or_default();
        assert_eq!(
            path(Path::new("/data/cache"), &[1, 2], &md5),
            Path::new("/data/cache/c/29/b7f54b2df7773722d382f4809d65029c")
        );
        // md5("") as every md5 tool prints it.
        assert_eq!(&hex(&self::md5(b"")), b"d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(unhex(&hex(&md5)), Some(md5));
        assert_eq!(unhex(b"B7F54B2DF7773722D382F4809D65029C"), None);
    }

    #[test]
    fn a_header_reads_back_as_written() {
        let h = Header {
            valid_until: 1_800_000_000,
            date: 1_700_000_000,
            key_len: 12,
            head_len: 300,
            body_len: 1 << 33,
            vary_len: 15,
            variant: [7; 16],
        };
        assert_eq!(Header::decode(&h.encode()), Some(h));
        assert_eq!(h.body_start(), HEADER as u64 + 327);
        let mut other = h.encode();
        other[0] = b'X';
        assert_eq!(Header::decode(&other), None);
    }
}
