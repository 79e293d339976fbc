//! nginx's autoindex module (`ngx_http_autoindex_module.c`): where a
//! directory is asked for and no `index` file is there, `autoindex on`
//! answers with its listing in nginx's HTML, to the byte: `../` first,
//! then the directories and the files, each by name, names starting with
//! `.` left out; a name cut at 50 bytes (`..&gt;`), padded to them; the
//! modification time (GMT unless `autoindex_localtime on`) and the size
//! (in bytes, or with `autoindex_exact_size off` rounded to K, M or G).

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

use crate::conf::model::{AutoindexConf, AutoindexFormat};
use crate::vars::MONTHS;

/// A name's width in the listing (nginx's `NGX_HTTP_AUTOINDEX_NAME_LEN`).
const NAME_LEN: usize = 50;

/// One entry of the directory.
pub(crate) struct Entry {
    name: Vec<u8>,
    dir: bool,
    /// A regular file (else, and not a directory, "other": a broken link).
    file: bool,
    mtime: i64,
    size: u64,
}

/// What listing a directory found: its entries, and those it could not
/// look at (nginx's `stat() "..." failed` at `crit`, the entry left out).
pub(crate) struct Listed {
    pub entries: Vec<Entry>,
    pub unreadable: Vec<(Vec<u8>, io::Error)>,
}

/// The entries of directory `dir` (a path without its trailing `/`), in
/// nginx's order. Blocking: run it on the blocking pool.
pub(crate) fn list(dir: &[u8]) -> io::Result<Listed> {
    let mut listed = Listed {
        entries: Vec::new(),
        unreadable: Vec::new(),
    };
    for entry in std::fs::read_dir(OsStr::from_bytes(dir))? {
        let entry = entry?;
        let name = entry.file_name().as_bytes().to_vec();
        if name.first() == Some(&b'.') {
            continue;
        }
        let mut path = dir.to_vec();
        path.push(b'/');
        path.extend_from_slice(&name);
        let path = OsStr::from_bytes(&path);
        // A link is listed as what it points to; a broken one (or a
        // loop) as the link itself, as nginx's `ngx_de_link_info`.
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ELOOP)) => {
                std::fs::symlink_metadata(path)?
            }
            Err(e) => {
                listed.unreadable.push((path.as_bytes().to_vec(), e));
                continue;
            }
        };
        listed.entries.push(Entry {
            name,
            dir: meta.is_dir(),
            file: meta.is_file(),
            mtime: meta.mtime(),
            size: meta.len(),
        });
    }
    // Directories first, then by name, bytewise (nginx's `ngx_strcmp`).
    listed
        .entries
        .sort_by(|a, b| b.dir.cmp(&a.dir).then_with(|| a.name.cmp(&b.name)));
    Ok(listed)
}

/// The listing of `entries` (the directory's URI `uri`, the request's
/// arguments `query`) in the level's `autoindex_format`, and its
/// Content-Type; `Err` with a `jsonp` callback nginx refuses (anything
/// but letters, digits, `_` and `.`: 400).
pub(crate) fn render<'q>(
    uri: &[u8],
    entries: &[Entry],
    conf: AutoindexConf,
    query: &'q str,
) -> Result<(Vec<u8>, &'static str), &'q str> {
    let mut out = Vec::new();
    Ok(match conf.format {
        AutoindexFormat::Html => (page(uri, entries, conf), "text/html"),
        AutoindexFormat::Xml => (xml(entries), "text/xml; charset=utf-8"),
        AutoindexFormat::Json => {
            json(entries, &mut out);
            (out, "application/json")
        }
        AutoindexFormat::Jsonp => {
            let callback = crate::vars::arg(query, "callback").unwrap_or_default();
            let valid = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'.';
            if !callback.bytes().all(valid) {
                return Err(callback);
            }
            // (Without a callback, the JSON as it is.)
            if callback.is_empty() {
                json(entries, &mut out);
                return Ok((out, "application/json"));
            }
            out.extend_from_slice(b"/* callback */\r\n");
            out.extend_from_slice(callback.as_bytes());
            out.push(b'(');
            json(entries, &mut out);
            out.extend_from_slice(b");");
            (out, "application/javascript")
        }
    })
}

/// The page listing `entries` of the directory whose URI is `uri`.
fn page(uri: &[u8], entries: &[Entry], conf: AutoindexConf) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + entries.len() * 120);
    out.extend_from_slice(b"<html>\r\n<head><title>Index of ");
    escape_html(uri, &mut out);
    out.extend_from_slice(b"</title></head>\r\n<body>\r\n<h1>Index of ");
    escape_html(uri, &mut out);
    out.extend_from_slice(b"</h1><hr><pre><a href=\"../\">../</a>\r\n");
    for e in entries {
        out.extend_from_slice(b"<a href=\"");
        crate::http::escape_into(&e.name, &mut out, |_, c| {
            !(c.is_ascii_alphanumeric() || b"-._~".contains(&c))
        });
        if e.dir {
            out.push(b'/');
        }
        out.extend_from_slice(b"\">");
        // With `charset utf-8`, a name's width is its characters (nginx's
        // `ngx_utf8_length`: its bytes when it is not UTF-8).
        let text = std::str::from_utf8(&e.name).ok().filter(|_| conf.utf8);
        let mut len = text.map_or(e.name.len(), |t| t.chars().count());
        let shown = match text {
            Some(t) => t
                .char_indices()
                .nth(NAME_LEN - 3)
                .map_or(&e.name[..], |(at, _)| &e.name[..at]),
            None => &e.name[..len.min(NAME_LEN - 3)],
        };
        if len > NAME_LEN {
            escape_html(shown, &mut out);
            out.extend_from_slice(b"..&gt;</a>");
        } else {
            escape_html(&e.name, &mut out);
            if e.dir && len < NAME_LEN {
                out.push(b'/');
                len += 1;
            }
            out.extend_from_slice(b"</a>");
            out.resize(out.len() + (NAME_LEN - len), b' ');
        }
        out.push(b' ');
        date(e.mtime, conf.localtime, &mut out);
        size(e, conf.exact_size, &mut out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"</pre><hr></body>\r\n</html>\r\n");
    out
}

/// The listing as JSON (nginx's `ngx_http_autoindex_json`): one object
/// a line, `name`, `type` (`directory`, `file` or `other`), `mtime` as an
/// HTTP date and a file's `size`.
fn json(entries: &[Entry], out: &mut Vec<u8>) {
    use std::io::Write as _;
    use std::time::{Duration, UNIX_EPOCH};
    out.push(b'[');
    for (i, e) in entries.iter().enumerate() {
        out.extend_from_slice(b"\r\n{ \"name\":\"");
        let start = out.len();
        out.extend_from_slice(&e.name);
        crate::http::access::escape(crate::http::access::Escape::Json, out, start);
        let time = UNIX_EPOCH + Duration::from_secs(e.mtime.max(0) as u64);
        let _ = write!(
            out,
            "\", \"type\":\"{}\", \"mtime\":\"{}\"",
            kind(e),
            httpdate::fmt_http_date(time)
        );
        if e.file {
            let _ = write!(out, ", \"size\":{}", e.size);
        }
        out.extend_from_slice(b" }");
        if i + 1 < entries.len() {
            out.push(b',');
        }
    }
    out.extend_from_slice(b"\r\n]");
}

/// The listing as XML (nginx's `ngx_http_autoindex_xml`).
fn xml(entries: &[Entry]) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = b"<?xml version=\"1.0\"?>\r\n<list>\r\n".to_vec();
    for e in entries {
        let kind = kind(e);
        let tm = gmtime(e.mtime);
        let _ = write!(
            out,
            "<{kind} mtime=\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z\"",
            tm.tm_year + 1900,
            tm.tm_mon + 1,
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec
        );
        if e.file {
            let _ = write!(out, " size=\"{}\"", e.size);
        }
        out.push(b'>');
        escape_html(&e.name, &mut out);
        let _ = write!(out, "</{kind}>\r\n");
    }
    out.extend_from_slice(b"</list>\r\n");
    out
}

/// `secs` since the epoch (none before it, as nginx) in UTC.
fn gmtime(secs: i64) -> libc::tm {
    // SAFETY: `tm` is plain data that gmtime_r fills in (all zero, 1900,
    // where it cannot); `time` lives for the call.
    unsafe {
        let time: libc::time_t = secs.max(0);
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::gmtime_r(&time, &mut tm).is_null() {
            tm.tm_year = 70;
            tm.tm_mday = 1;
        }
        tm
    }
}

fn kind(e: &Entry) -> &'static str {
    match (e.dir, e.file) {
        (true, _) => "directory",
        (false, true) => "file",
        (false, false) => "other",
    }
}

/// nginx's `ngx_escape_html`: `<`, `>`, `&` and `"` as entities.
fn escape_html(text: &[u8], out: &mut Vec<u8>) {
    for &c in text {
        match c {
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'&' => out.extend_from_slice(b"&amp;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            c => out.push(c),
        }
    }
}

/// `27-Nov-2026 21:05 `: GMT, or with `local` the time shifted by the
/// local zone's offset now (nginx's `tp->gmtoff`, whatever the offset
/// was at `mtime`); nothing before 1970, as nginx.
fn date(mtime: i64, local: bool, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let offset = if local {
        crate::log::local_now().0.tm_gmtoff
    } else {
        0
    };
    let tm = gmtime(mtime.max(0).saturating_add(offset));
    let month = MONTHS.get(tm.tm_mon as usize).copied().unwrap_or("Jan");
    let _ = write!(
        out,
        "{:02}-{month}-{} {:02}:{:02} ",
        tm.tm_mday,
        tm.tm_year + 1900,
        tm.tm_hour,
        tm.tm_min
    );
}

/// The size column: bytes in 19 places, or nginx's rounded form.
fn size(e: &Entry, exact: bool, out: &mut Vec<u8>) {
    use std::io::Write as _;
    const K: u64 = 1024;
    let _ = match (e.dir, exact) {
        (true, true) => write!(out, "{:>19}", "-"),
        (true, false) => write!(out, "{:>7}", "-"),
        (false, true) => write!(out, "{:>19}", e.size),
        (false, false) => {
            let length = e.size;
            let rounded = |unit: u64| length / unit + u64::from(length % unit > unit / 2 - 1);
            if length > K * K * K - 1 {
                write!(out, "{:>6}G", rounded(K * K * K))
            } else if length > K * K - 1 {
                write!(out, "{:>6}M", rounded(K * K))
            } else if length > 9999 {
                write!(out, "{:>6}K", rounded(K))
            } else {
                write!(out, " {length:>6}")
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, dir: bool, size: u64) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            dir,
            file: !dir,
            mtime: 1_795_900_000,
            size,
        }
    }

    #[test]
    fn long_names_are_cut_and_short_ones_padded_as_nginx() {
        let conf = AutoindexConf {
            exact_size: true,
            localtime: false,
            utf8: false,
            format: Default::default(),
        };
        let long = "a".repeat(60);
        let page = page(
            b"/d/",
            &[entry("sub", true, 4096), entry(&long, false, 7)],
            conf,
        );
        let text = String::from_utf8(page).expect("text");
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(
            lines[3],
            "<h1>Index of /d/</h1><hr><pre><a href=\"../\">../</a>"
        );
        assert_eq!(
            lines[4],
            format!(
                "<a href=\"sub/\">sub/</a>{} 28-Nov-2026 21:06                   -",
                " ".repeat(46)
            )
        );
        assert_eq!(
            lines[5],
            format!(
                "<a href=\"{long}\">{}..&gt;</a> 28-Nov-2026 21:06                   7",
                "a".repeat(47)
            )
        );
    }

    #[test]
    fn times_before_1970_are_nginx_s_epoch() {
        let mut out = Vec::new();
        date(-300_000_000, false, &mut out);
        assert_eq!(out, b"01-Jan-1970 00:00 ");
    }

    #[test]
    fn sizes_round_as_nginx() {
        let shown = |size: u64| {
            let mut out = Vec::new();
            super::size(&entry("f", false, size), false, &mut out);
            String::from_utf8(out).expect("text")
        };
        assert_eq!(shown(9999), "   9999");
        assert_eq!(shown(10_000), "    10K");
        assert_eq!(shown(1536), "   1536");
        assert_eq!(shown(1024 * 1024 + 600 * 1024), "     2M");
        assert_eq!(shown(3 * 1024 * 1024 * 1024), "     3G");
    }
}
