//! `auth_basic` and `auth_basic_user_file`: nginx's
//! `ngx_http_auth_basic_module`.
//!
//! The check runs in nginx's access phase, after `allow`/`deny` (with
//! `satisfy all`, the default, both must let the request in; with
//! `satisfy any`, either). As nginx, the user file is read for every
//! request that brings credentials (a changed file applies at once), and
//! the first line of the user decides. Reading the file and hashing the
//! password (bcrypt is slow on purpose) run on tokio's blocking pool:
//! the worker goes on serving meanwhile.

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use http::request::Parts;
use http::{HeaderValue, Response};
use md5::{Digest as _, Md5};
use sha1::Sha1;

use crate::http::body::RespBody;
use crate::http::proxy::{request_context, strerror, ClientCx};
use crate::http::response::error_page;
use crate::log::{self, Level};
use crate::vars::{Template, VarCtx};

/// One level's `auth_basic REALM` and `auth_basic_user_file FILE`.
pub struct AuthBasic {
    /// Text with variables; a value of `off` turns the check off.
    pub realm: Template,
    pub file: Arc<PathBuf>,
}

/// What the check decided.
pub enum Verdict {
    /// The credentials match.
    Pass,
    /// The realm is `off`: no check here.
    Declined,
    /// 401 with the realm, or 403/500 when the file cannot be read
    /// (boxed: a refusal is the rare outcome).
    Refused(Box<Response<RespBody>>),
}

impl Verdict {
    /// Whether the request may go on.
    pub fn passes(&self) -> bool {
        matches!(self, Verdict::Pass | Verdict::Declined)
    }
}

/// What reading the user file found for a user.
enum Found {
    Match,
    Mismatch,
    NoUser,
    /// crypt_r() gave no answer (not a refused setting: libxcrypt answers
    /// those with a failure token, which mismatches).
    CryptFailed(std::io::Error),
    Open(std::io::Error),
    Read(std::io::Error),
}

impl AuthBasic {
    /// nginx's `ngx_http_auth_basic_handler`.
    pub async fn check(&self, parts: &Parts, vars: &VarCtx<'_>, cx: &ClientCx<'_>) -> Verdict {
        let realm = self.realm.eval(vars);
        if realm == b"off" {
            return Verdict::Declined;
        }
        let Some((user, password)) = credentials(parts) else {
            log_line(
                Level::Info,
                "no user/password was provided for basic authentication".into(),
                cx,
                parts,
            );
            return Verdict::Refused(Box::new(unauthorized(&realm)));
        };
        let file = self.file.clone();
        let name = user.clone();
        let found = tokio::task::spawn_blocking(move || find(&file, &name, &password))
            .await
            .unwrap_or_else(|e| Found::Open(std::io::Error::other(e.to_string())));
        let user_text = String::from_utf8_lossy(&user);
        match found {
            Found::Match => Verdict::Pass,
            Found::Mismatch => {
                let line = format!("user \"{user_text}\": password mismatch");
                log_line(Level::Error, line, cx, parts);
                Verdict::Refused(Box::new(unauthorized(&realm)))
            }
            Found::NoUser => {
                let line = format!(
                    "user \"{user_text}\" was not found in \"{}\"",
                    self.file.display()
                );
                log_line(Level::Error, line, cx, parts);
                Verdict::Refused(Box::new(unauthorized(&realm)))
            }
            // As nginx: a missing file forbids; any other failure is the
            // server's.
            Found::Open(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.failed(Level::Error, "open()", &e, cx, parts, 403)
            }
            Found::Open(e) => self.failed(Level::Crit, "open()", &e, cx, parts, 500),
            Found::Read(e) => self.failed(Level::Crit, "pread()", &e, cx, parts, 500),
            Found::CryptFailed(e) => {
                let line = format!("crypt_r() failed ({}: {})", errno(&e), strerror(&e));
                log_line(Level::Crit, line, cx, parts);
                Verdict::Refused(Box::new(error_page(500)))
            }
        }
    }

    /// nginx's line for a user file it could not read, and its answer.
    fn failed(
        &self,
        level: Level,
        call: &str,
        e: &std::io::Error,
        cx: &ClientCx<'_>,
        parts: &Parts,
        status: u16,
    ) -> Verdict {
        let line = format!(
            "{call} \"{}\" failed ({}: {})",
            self.file.display(),
            errno(e),
            strerror(e)
        );
        log_line(level, line, cx, parts);
        Verdict::Refused(Box::new(error_page(status)))
    }
}

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

fn log_line(level: Level, mut line: String, cx: &ClientCx<'_>, parts: &Parts) {
    if log::enabled(level) {
        request_context(cx, parts, &mut line);
        log::write(level, Some(cx.conn), &line);
    }
}

/// 401 with `WWW-Authenticate: Basic realm="REALM"`.
fn unauthorized(realm: &[u8]) -> Response<RespBody> {
    let mut resp = error_page(401);
    let value = [&b"Basic realm=\""[..], realm, b"\""].concat();
    if let Ok(v) = HeaderValue::from_bytes(&value) {
        resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// The user and password of `Authorization: Basic ...`, as
/// `ngx_http_auth_basic_user` reads them: the scheme without case, spaces
/// before the base64, which ends at its first `=`; a user before the
/// first `:` that is not empty.
fn credentials(parts: &Parts) -> Option<(Vec<u8>, Vec<u8>)> {
    let value = parts.headers.get(http::header::AUTHORIZATION)?.as_bytes();
    if value.len() < 6 || !value[..6].eq_ignore_ascii_case(b"Basic ") {
        return None;
    }
    let mut encoded = &value[6..];
    while let [b' ', rest @ ..] = encoded {
        encoded = rest;
    }
    let encoded = match encoded.iter().position(|&c| c == b'=') {
        Some(end) => &encoded[..end],
        None => encoded,
    };
    if encoded.is_empty() {
        return None;
    }
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    let decoded = engine.decode(encoded).ok()?;
    let colon = decoded.iter().position(|&c| c == b':')?;
    if colon == 0 {
        return None;
    }
    Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

/// The user's line of `file`, checked against `password`, as nginx reads
/// it: lines end at LF; a line that starts with `#` or CR is skipped; the
/// hash follows `user:` and ends at `:`, CR or the line's end.
fn find(file: &std::path::Path, user: &[u8], password: &[u8]) -> Found {
    use std::io::Read as _;
    let mut f = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) => return Found::Open(e),
    };
    let mut text = Vec::new();
    if let Err(e) = f.read_to_end(&mut text) {
        return Found::Read(e);
    }
    for line in text.split(|&c| c == b'\n') {
        if matches!(line.first(), Some(b'#' | b'\r')) {
            continue;
        }
        let Some(rest) = line
            .strip_prefix(user)
            .and_then(|rest| rest.strip_prefix(b":"))
        else {
            continue;
        };
        let hash = match rest.iter().position(|&c| c == b':' || c == b'\r') {
            Some(end) => &rest[..end],
            None => rest,
        };
        return match verify(password, hash) {
            Ok(true) => Found::Match,
            Ok(false) => Found::Mismatch,
            Err(e) => Found::CryptFailed(e),
        };
    }
    Found::NoUser
}

/// Whether `password` is the one `hash` stands for, as nginx's
/// `ngx_crypt`: its own `{PLAIN}`, `{SHA}`, `{SSHA}` and `$apr1$`, and
/// crypt_r() of the system's libcrypt for any other (`$1$`, `$5$`, `$6$`,
/// bcrypt, yescrypt, DES ...). Both are C strings there: each ends at its
/// first NUL. An error when crypt_r() gave no answer.
pub fn verify(password: &[u8], hash: &[u8]) -> std::io::Result<bool> {
    let password = c_str(password);
    let hash = c_str(hash);
    if let Some(plain) = hash.strip_prefix(b"{PLAIN}") {
        return Ok(plain == password);
    }
    if let Some(encoded) = hash.strip_prefix(b"{SHA}") {
        let digest = Sha1::digest(password);
        let mine = base64::engine::general_purpose::STANDARD.encode(digest);
        return Ok(mine.as_bytes() == encoded);
    }
    if let Some(encoded) = hash.strip_prefix(b"{SSHA}") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
            return Ok(false);
        };
        if decoded.len() < 20 {
            return Ok(false);
        }
        let (digest, salt) = decoded.split_at(20);
        let mut h = Sha1::new();
        h.update(password);
        h.update(salt);
        return Ok(h.finalize().as_slice() == digest);
    }
    if hash.starts_with(b"$apr1$") {
        return Ok(md5_crypt(password, hash, b"$apr1$") == hash);
    }
    libc_crypt(password, hash).map(|out| out == hash)
}

/// `bytes` up to its first NUL.
fn c_str(bytes: &[u8]) -> &[u8] {
    match bytes.iter().position(|&c| c == 0) {
        Some(end) => &bytes[..end],
        None => bytes,
    }
}

#[link(name = "crypt")]
extern "C" {
    fn crypt_r(
        phrase: *const std::ffi::c_char,
        setting: *const std::ffi::c_char,
        data: *mut std::ffi::c_void,
    ) -> *mut std::ffi::c_char;
}

/// The system's crypt_r() of `password` with `setting` (a stored hash),
/// as nginx's `ngx_libc_crypt`.
fn libc_crypt(password: &[u8], setting: &[u8]) -> std::io::Result<Vec<u8>> {
    // Neither holds a NUL (`c_str`).
    let (Ok(phrase), Ok(setting)) = (
        std::ffi::CString::new(password),
        std::ffi::CString::new(setting),
    ) else {
        return Ok(Vec::new());
    };
    // `struct crypt_data`, zeroed (its `initialized` too): 32 KiB in
    // libxcrypt, 128 KiB in glibc's former libcrypt; this covers both.
    let mut data = vec![0u64; 256 * 1024 / 8];
    // SAFETY: two C strings and a zeroed `crypt_data` that outlive the
    // call; the result points into `data`, copied out before it goes.
    unsafe {
        let out = crypt_r(phrase.as_ptr(), setting.as_ptr(), data.as_mut_ptr().cast());
        if out.is_null() {
            return Err(std::io::Error::last_os_error());
        }
        Ok(std::ffi::CStr::from_ptr(out).to_bytes().to_vec())
    }
}

/// The MD5 crypt of FreeBSD (`$1$`) and Apache (`$apr1$`): `magic`, the
/// salt of `setting` (up to 8 characters, to a `$`), `$` and the hash.
fn md5_crypt(password: &[u8], setting: &[u8], magic: &[u8]) -> Vec<u8> {
    let rest = &setting[magic.len()..];
    let salt_end = rest
        .iter()
        .take(8)
        .position(|&c| c == b'$')
        .unwrap_or(rest.len().min(8));
    let salt = &rest[..salt_end];

    let mut alt = Md5::new();
    alt.update(password);
    alt.update(salt);
    alt.update(password);
    let alt = alt.finalize();

    let mut ctx = Md5::new();
    ctx.update(password);
    ctx.update(magic);
    ctx.update(salt);
    let mut left = password.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alt[..n]);
        left -= n;
    }
    let mut i = password.len();
    while i != 0 {
        if i & 1 != 0 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut fin = ctx.finalize();
    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 != 0 {
            c.update(password);
        } else {
            c.update(fin);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(password);
        }
        if round & 1 != 0 {
            c.update(fin);
        } else {
            c.update(password);
        }
        fin = c.finalize();
    }

    const ITOA64: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::with_capacity(magic.len() + salt.len() + 23);
    out.extend_from_slice(magic);
    out.extend_from_slice(salt);
    out.push(b'$');
    let mut to64 = |mut v: u32, n: usize| {
        for _ in 0..n {
            out.push(ITOA64[(v & 0x3f) as usize]);
            v >>= 6;
        }
    };
    let f = |i: usize| u32::from(fin[i]);
    to64((f(0) << 16) | (f(6) << 8) | f(12), 4);
    to64((f(1) << 16) | (f(7) << 8) | f(13), 4);
    to64((f(2) << 16) | (f(8) << 8) | f(14), 4);
    to64((f(3) << 16) | (f(9) << 8) | f(15), 4);
    to64((f(4) << 16) | (f(10) << 8) | f(5), 4);
    to64(f(11), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::verify;

    // Made by `openssl passwd` (-apr1, -1, -5, -6), Python's crypt
    // (glibc's: bcrypt, rounds=) and hashlib ({SHA}, {SSHA}).
    #[test]
    fn the_schemes_nginx_reads() {
        let cases: &[(&str, &str)] = &[
            ("{PLAIN}secret", "secret"),
            ("{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=", "secret"),
            ("{SSHA}dj2lH1ocucmj5OQsjP6mQrVx6FhOYUNs", "secret"),
            ("$apr1$s4ltS4lt$.ZAcsAOvz4MyRc8b10ynm.", "secret"),
            ("$1$s4ltS4lt$nG/ZCsRFMCbck8UwRnbGB.", "secret"),
            ("$5$s4ltS4lt$otHY8zraxtaCKGf0hfJz4dCZx1srkBZUKuuZ6avPxc2", "secret"),
            ("$5$rounds=1000$abcdefgh$XIppta5rT8zJUu4vAOKQXrwq9uY4Ijlz6VjyOmkx5i4", "secret"),
            ("$6$s4ltS4lt$9uHOi55laf.sEEL.nTAfniTJjMMs7SDbYU5h7LVlO0kOSmOWxbm5Xz5q3kpep0HjBmO3KiwhbIAtD0zuw5Z8w0", "secret"),
            ("$2b$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a", "secret"),
            ("abNANd1rDfiNc", "secret"),
            ("$y$j9T$s4ltS4ltS4ltS4ltS4ltS/$z8A0Us6RfSHBsZoqopIzsSXI7eMmp6i9XMezPeTY/K2", "secret"),
        ];
        for (hash, password) in cases {
            assert!(
                verify(password.as_bytes(), hash.as_bytes()).unwrap(),
                "{hash}"
            );
            assert!(!verify(b"wrong", hash.as_bytes()).unwrap(), "{hash}");
        }
        // A setting crypt() refuses, or none, is a mismatch.
        assert!(!verify(b"secret", b"").unwrap());
        assert!(!verify(b"secret", b"$9$what").unwrap());
        // C strings: the password ends at its NUL.
        assert!(verify(b"secret\0junk", b"{PLAIN}secret").unwrap());
    }
}
