//! nginx's secure_link module: `$secure_link` says whether a link's hash
//! (and its expiry) is the one `secure_link_md5` makes, or, with
//! `secure_link_secret`, whether the URI's MD5 part is the rest's with the
//! secret. The variable is all there is: the configuration decides what to
//! do with it (`if ($secure_link = "") { return 403; }`).

use std::cell::Cell;

use base64::Engine as _;
use md5::{Digest as _, Md5};

use crate::vars::{Template, VarCtx};

/// A level's secure_link settings, compiled.
#[derive(Debug)]
pub enum SecureLink {
    /// `secure_link HASH[,EXPIRES]` and `secure_link_md5 TEXT` (either
    /// may be missing: the variable is then never found).
    Md5 {
        link: Option<Template>,
        md5: Option<Template>,
    },
    /// `secure_link_secret WORD`: `/prefix/MD5-HEX/link`.
    Secret(Box<[u8]>),
}

thread_local! {
    /// An evaluation of `$secure_link`, and one of `$secure_link_expires`,
    /// is under way: one of them its own value reads again is a cycle,
    /// which has no value (nginx has none there either).
    static CHECKING: Cell<bool> = const { Cell::new(false) };
    static EXPIRING: Cell<bool> = const { Cell::new(false) };
}

/// Marks an evaluation under way until dropped; `None` where one is.
struct Guard(&'static std::thread::LocalKey<Cell<bool>>);

impl Guard {
    fn enter(key: &'static std::thread::LocalKey<Cell<bool>>) -> Option<Guard> {
        (!key.replace(true)).then_some(Guard(key))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl SecureLink {
    /// `$secure_link`, as nginx's variable handler: `None` for not found
    /// (a hash that does not match), `"0"` for a link past its expiry,
    /// `"1"` for a good one; with `secure_link_secret`, the link itself.
    pub fn value(&self, cx: &VarCtx<'_>, out: &mut Vec<u8>) -> bool {
        let Some(_checking) = Guard::enter(&CHECKING) else {
            return false;
        };
        match self {
            SecureLink::Md5 {
                link: Some(link),
                md5: Some(md5),
            } => {
                let value = link.eval(cx);
                let Some((hash, expires)) = split(&value) else {
                    return false;
                };
                let Some(hash) = decode(hash) else {
                    return false;
                };
                let text = md5.eval(cx);
                if Md5::digest(&text)[..] != hash[..] {
                    return false;
                }
                let expired = expires.is_some_and(|t| t < crate::clock::unix_secs() as i64);
                out.push(if expired { b'0' } else { b'1' });
                true
            }
            SecureLink::Md5 { .. } => false,
            SecureLink::Secret(secret) => match old_link(raw_target(cx), secret) {
                Some(link) => {
                    out.extend_from_slice(link);
                    true
                }
                None => false,
            },
        }
    }

    /// `$secure_link_expires`: the expiry given with the hash, where
    /// `secure_link`'s value has one that is a time.
    pub fn expires(&self, cx: &VarCtx<'_>, out: &mut Vec<u8>) -> bool {
        let SecureLink::Md5 {
            link: Some(link),
            md5: Some(_),
        } = self
        else {
            return false;
        };
        let Some(_expiring) = Guard::enter(&EXPIRING) else {
            return false;
        };
        let value = link.eval(cx);
        match value.iter().position(|&c| c == b',') {
            Some(comma) if atotm(&value[comma + 1..]).is_some() => {
                out.extend_from_slice(&value[comma + 1..]);
                true
            }
            _ => false,
        }
    }
}

/// `HASH[,EXPIRES]`: the hash part and the expiry, `None` where the
/// expiry is no positive number (nginx's not found).
fn split(value: &[u8]) -> Option<(&[u8], Option<i64>)> {
    match value.iter().position(|&c| c == b',') {
        Some(comma) => Some((&value[..comma], Some(atotm(&value[comma + 1..])?))),
        None => Some((value, None)),
    }
}

/// nginx's `ngx_atotm`, over 0: decimal digits only.
fn atotm(digits: &[u8]) -> Option<i64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits)
        .ok()?
        .parse::<i64>()
        .ok()
        .filter(|&t| t > 0)
}

/// The 16 bytes of a base64url hash, as `ngx_decode_base64url` reads it:
/// at most 24 characters, the text up to a first `=`, no padding needed.
fn decode(hash: &[u8]) -> Option<[u8; 16]> {
    if hash.len() > 24 {
        return None;
    }
    let hash = match hash.iter().position(|&c| c == b'=') {
        Some(end) => &hash[..end],
        None => hash,
    };
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    engine.decode(hash).ok()?.try_into().ok()
}

/// The request's target as the client sent it (nginx's `unparsed_uri`).
fn raw_target<'r>(cx: &VarCtx<'r>) -> &'r [u8] {
    crate::vars::Var::RequestUri.slice(cx).unwrap_or_default()
}

/// `secure_link_secret`'s link: the target is `/PREFIX/HASH/LINK`, HASH
/// the 32 hex digits of the MD5 of LINK (the rest of the target, its
/// query too) and the secret.
fn old_link<'t>(target: &'t [u8], secret: &[u8]) -> Option<&'t [u8]> {
    let rest = target.get(1..)?;
    let start = rest.iter().position(|&c| c == b'/')? + 1;
    let rest = &rest[start..];
    let end = rest.iter().position(|&c| c == b'/')?;
    let (hex, link) = (&rest[..end], &rest[end + 1..]);
    if hex.len() != 32 || link.is_empty() {
        return None;
    }
    let mut md5 = Md5::new();
    md5.update(link);
    md5.update(secret);
    let digest = md5.finalize();
    let nibble = |c: u8| (c as char).to_digit(16);
    for (i, pair) in hex.chunks(2).enumerate() {
        let n = nibble(pair[0])? * 16 + nibble(pair[1])?;
        if n != u32::from(digest[i]) {
            return None;
        }
    }
    Some(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_decode_as_nginx_reads_them() {
        // md5("a") in base64url, with and without its padding.
        let want = Md5::digest(b"a");
        assert_eq!(
            decode(b"DMF1ucDxtqgxw5niaXcmYQ").map(Vec::from),
            Some(want.to_vec())
        );
        assert_eq!(
            decode(b"DMF1ucDxtqgxw5niaXcmYQ==").map(Vec::from),
            Some(want.to_vec())
        );
        // The standard alphabet's `+` and `/` are not base64url.
        assert_eq!(decode(b"DMF1ucDxtqgxw5niaXcm+Q"), None);
        assert_eq!(decode(b"DMF1ucDxtqgxw5niaXcmYQ=====x"), None);
        assert_eq!(decode(b"DMF1"), None);
    }

    #[test]
    fn expiry_is_a_positive_number() {
        assert_eq!(split(b"h,123"), Some((&b"h"[..], Some(123))));
        assert_eq!(split(b"h"), Some((&b"h"[..], None)));
        assert_eq!(split(b"h,0"), None);
        assert_eq!(split(b"h,"), None);
        assert_eq!(split(b"h,12x"), None);
    }

    #[test]
    fn old_links_need_the_secret_s_hash() {
        let hex: String = Md5::digest(b"file.txtsecret")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let target = format!("/p/{hex}/file.txt");
        assert_eq!(
            old_link(target.as_bytes(), b"secret"),
            Some(&b"file.txt"[..])
        );
        assert_eq!(old_link(target.as_bytes(), b"other"), None);
        assert_eq!(old_link(format!("/p/{hex}/").as_bytes(), b"secret"), None);
        assert_eq!(old_link(b"/p/short/file.txt", b"secret"), None);
    }
}
