//! The proxy cache on the request path, as the cache half of nginx's
//! `ngx_http_upstream`: [`look`] before the upstream is asked (its key,
//! `proxy_cache_bypass`, the index, `proxy_cache_lock`), [`answer`] from
//! an entry's file, and [`Pending::fill`] when an upstream's answer is to
//! be stored as it streams to the client. Whether an answer may be stored
//! is `crate::cache`'s; the zone's index and files are `crate::cache::zone`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Response, StatusCode};

use crate::cache::file::{self, Header, HEADER};
use crate::cache::zone::{Entry, Fill};
use crate::cache::{Found, Valid, Verdict, Zone};
use crate::http::body::{header_of, RespBody};
use crate::http::upstream_h1::{self, Passed};
use crate::log::{self, Level};
use crate::vars::{Template, VarCtx};

/// A location's `proxy_cache`, built at load.
pub struct Cache {
    pub zone: Arc<Zone>,
    /// `proxy_cache_key`; `None`: the proxied URL, as nginx's default.
    pub key: Option<Template>,
    pub valid: Box<[Valid]>,
    /// `crate::conf::cache::{GET, HEAD, POST}` bits.
    pub methods: u8,
    pub min_uses: u32,
    /// `proxy_next_upstream`'s bits and `conf::cache::STALE_UPDATING`.
    pub use_stale: u32,
    pub bypass: Box<[Template]>,
    pub no_cache: Box<[Template]>,
    /// `crate::cache::ignore` bits.
    pub ignore: u8,
    pub convert_head: bool,
    /// `proxy_cache_max_range_offset`.
    pub max_range_offset: Option<u64>,
    /// `proxy_cache_lock on`: its timeout and age.
    pub lock: Option<(Duration, Duration)>,
}

/// `$upstream_cache_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Miss,
    Bypass,
    Expired,
    Stale,
    Updating,
    Hit,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Miss => "MISS",
            Status::Bypass => "BYPASS",
            Status::Expired => "EXPIRED",
            Status::Stale => "STALE",
            Status::Updating => "UPDATING",
            Status::Hit => "HIT",
        }
    }
}

/// An entry's file, open, with its header and response head read.
struct Opened {
    file: Arc<std::fs::File>,
    header: Header,
    vary: Vec<u8>,
    head: Vec<u8>,
    path: PathBuf,
}

/// An entry's answer: its status line, the upstream's header lines (all
/// of them: the caller hides what the location hides), and where its
/// body is in the file.
pub struct Answer {
    pub head: http::response::Parts,
    pub passed: Box<Passed>,
    file: Arc<std::fs::File>,
    start: u64,
    len: u64,
}

/// What the lookup decided.
pub enum Looked {
    /// The request's method is not cached: no status, nothing stored.
    Off,
    /// Answer from this entry (`Hit`, or `Updating`).
    Entry(Box<Answer>, Status),
    /// Ask the upstream.
    Ask(Box<Pending>),
}

/// A request that asks the upstream with the cache in mind.
pub struct Pending {
    pub status: Status,
    zone: Arc<Zone>,
    /// The key's md5, and the md5 the answer is looked up and stored
    /// under (a variant's, for an answer that varies).
    main: [u8; 16],
    md5: [u8; 16],
    key: Vec<u8>,
    /// The answer may be stored.
    store: bool,
    /// This request marked the entry as being stored (lock, or renewing
    /// an expired one): it lets go when done.
    owner: bool,
    /// HEAD asked upstream as GET (`proxy_cache_convert_head`).
    pub as_get: bool,
    /// The expired entry, opened at the lookup as nginx keeps it open,
    /// where `proxy_cache_use_stale` may answer with it.
    stale: Option<Box<Answer>>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.owner {
            self.zone.stop_updating(&self.md5);
        }
    }
}

fn method_bit(method: &Method) -> u8 {
    use crate::conf::cache::{GET, HEAD, POST};
    match *method {
        Method::GET => GET,
        Method::HEAD => HEAD,
        Method::POST => POST,
        _ => 0,
    }
}

/// nginx's predicates (`ngx_http_test_predicates`): any value that is
/// not empty and not `0`.
fn any_true(list: &[Template], vars: &VarCtx<'_>) -> bool {
    let mut out = Vec::new();
    list.iter().any(|t| {
        out.clear();
        t.eval_into(vars, &mut out);
        out.first().is_some_and(|&c| c != b'0')
    })
}

/// The cache's part before the upstream is asked, as
/// `ngx_http_upstream_cache`. `proxied` is nginx's default key: the
/// proxy_pass scheme and host, and the URI sent upstream.
pub async fn look(
    c: &Cache,
    vars: &VarCtx<'_>,
    method: &Method,
    proxied: impl FnOnce(&mut Vec<u8>),
) -> Looked {
    if method_bit(method) & c.methods == 0 {
        return Looked::Off;
    }
    let as_get = *method == Method::HEAD && c.convert_head;
    let mut key = Vec::new();
    match &c.key {
        Some(t) => t.eval_into(vars, &mut key),
        None => proxied(&mut key),
    }
    let main = file::md5(&key);
    let mut pending = Pending {
        status: Status::Miss,
        zone: c.zone.clone(),
        main,
        md5: main,
        key,
        store: true,
        owner: false,
        as_get,
        stale: None,
    };
    if any_true(&c.bypass, vars) {
        pending.status = Status::Bypass;
        return Looked::Ask(Box::new(pending));
    }
    let lock_age = c.lock.map(|(_, age)| age.as_secs().max(1));
    let lock_until = c
        .lock
        .map(|(timeout, _)| tokio::time::Instant::now() + timeout);
    let mut secondary = false;
    loop {
        // Watched from before the lookup: a store that ends between the
        // two still wakes a request the lock holds.
        let changed = c.zone.changes();
        let mut changed = std::pin::pin!(changed);
        changed.as_mut().enable();
        let now = crate::clock::unix_secs();
        match c.zone.lookup(&pending.md5, c.min_uses, lock_age, now) {
            Found::Fresh => match open(&c.zone, &pending, vars, secondary).await {
                Read::Entry(o) => {
                    if let Some(a) = answer(*o) {
                        return Looked::Entry(Box::new(a), Status::Hit);
                    }
                }
                Read::Variant(v) if !secondary => {
                    secondary = true;
                    pending.md5 = v;
                    continue;
                }
                _ => {}
            },
            Found::Stale { owner } => {
                pending.owner = owner;
                pending.status = Status::Expired;
            }
            Found::Updating => {
                if c.use_stale & crate::conf::cache::STALE_UPDATING != 0 {
                    if let Read::Entry(o) = open(&c.zone, &pending, vars, secondary).await {
                        if let Some(a) = answer(*o) {
                            return Looked::Entry(Box::new(a), Status::Updating);
                        }
                    }
                }
                pending.status = Status::Expired;
            }
            Found::Missing { store, owner } => {
                pending.store = store;
                pending.owner = owner;
                if c.zone.is_cold() {
                    // A previous run's file the index has not read yet.
                    if let Read::Entry(o) = open(&c.zone, &pending, vars, secondary).await {
                        let fresh = o.header.valid_until >= now as i64;
                        c.zone.found_on_disk(
                            pending.md5,
                            o.header.valid_until,
                            o.header.file_len(),
                        );
                        if fresh {
                            if let Some(a) = answer(*o) {
                                return Looked::Entry(Box::new(a), Status::Hit);
                            }
                        }
                        pending.status = Status::Expired;
                    }
                }
            }
            Found::Locked => {
                let left = lock_until
                    .map(|t| t.saturating_duration_since(tokio::time::Instant::now()))
                    .unwrap_or_default();
                if !left.is_zero() {
                    let _ = tokio::time::timeout(left, changed).await;
                    continue;
                }
                // nginx's `cache lock timeout`: asked upstream, not stored.
                pending.store = false;
            }
        }
        if pending.status == Status::Expired
            && c.use_stale & !crate::conf::cache::STALE_UPDATING != 0
        {
            if let Read::Entry(o) = open(&c.zone, &pending, vars, secondary).await {
                pending.stale = answer(*o).map(Box::new);
            }
        }
        // `ngx_http_upstream_cache_check_range`: a range that starts
        // past `proxy_cache_max_range_offset` is asked as it is, and its
        // answer not stored.
        if let (Some(max), Some(range)) = (
            c.max_range_offset,
            vars.req.headers.get(http::header::RANGE),
        ) {
            if range_past(range.as_bytes(), max) {
                pending.store = false;
            }
        }
        return Looked::Ask(Box::new(pending));
    }
}

/// Whether a `Range` value starts at or past `max` (a suffix range, and
/// any range with `max` 0, do).
fn range_past(value: &[u8], max: u64) -> bool {
    if max == 0 {
        return true;
    }
    let Some(spec) = value
        .get(..6)
        .filter(|p| p.eq_ignore_ascii_case(b"bytes="))
        .map(|_| value[6..].trim_ascii_start())
    else {
        return false;
    };
    if spec.first() == Some(&b'-') {
        return true;
    }
    let digits = spec.iter().take_while(|c| c.is_ascii_digit()).count();
    std::str::from_utf8(&spec[..digits])
        .ok()
        .and_then(|d| d.parse::<u64>().ok())
        .is_some_and(|start| start >= max)
}

/// What reading an entry's file found.
enum Read {
    Entry(Box<Opened>),
    /// The entry varies, and this request's variant is another: its md5.
    Variant([u8; 16]),
    Nothing,
}

/// Opens the entry `pending` points at, on the blocking pool: its key
/// must be the request's, and its variant the request's; else, at the
/// main key, the request's variant is given to look up (`secondary`:
/// this is a variant's entry, which must be the request's).
async fn open(zone: &Arc<Zone>, pending: &Pending, vars: &VarCtx<'_>, secondary: bool) -> Read {
    let path = file::path(&zone.root, &zone.levels, &pending.md5);
    let key = pending.key.clone();
    let read = tokio::task::spawn_blocking(move || read_entry(path, &key)).await;
    let opened = match read {
        Ok(Ok(Some(o))) => o,
        Ok(Ok(None)) => {
            zone.remove(&pending.md5);
            return Read::Nothing;
        }
        Ok(Err(message)) => {
            log::write(Level::Crit, None, &message);
            zone.remove(&pending.md5);
            return Read::Nothing;
        }
        Err(_) => return Read::Nothing,
    };
    if opened.header.vary_len != 0 {
        let variant = file::variant(&pending.main, &opened.vary, &vars.req.headers);
        if variant != opened.header.variant {
            if secondary {
                log::write(
                    Level::Crit,
                    None,
                    &format!(
                        "cache file \"{}\" has incorrect vary hash",
                        opened.path.display()
                    ),
                );
                return Read::Nothing;
            }
            return Read::Variant(variant);
        }
    }
    Read::Entry(Box::new(opened))
}

/// Reads an entry's header, vary and head (`Ok(None)`: no such file);
/// an error is the crit line nginx logs for a file it cannot use.
fn read_entry(path: PathBuf, key: &[u8]) -> Result<Option<Opened>, String> {
    use std::os::unix::fs::FileExt as _;
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(crate::cache::zone::failed("open()", &path, &e)),
    };
    let mut fixed = [0u8; HEADER];
    let header = file
        .read_exact_at(&mut fixed, 0)
        .ok()
        .and_then(|()| Header::decode(&fixed))
        .ok_or_else(|| format!("cache file \"{}\" is too small", path.display()))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    // (The file is input: its lengths are checked before they size a
    // read; nginx's `Vary` is at most 128 bytes.)
    let sane = header.key_len as usize <= upstream_h1::head::HEAD_MAX
        && header.vary_len <= 128
        && header.head_len as usize <= upstream_h1::head::HEAD_MAX;
    if header.file_len() != len || !sane {
        return Err(format!("cache file \"{}\" is too small", path.display()));
    }
    let mut rest = vec![0u8; (header.body_start() - HEADER as u64) as usize];
    file.read_exact_at(&mut rest, HEADER as u64)
        .map_err(|_| format!("cache file \"{}\" is too small", path.display()))?;
    let (stored_key, rest) = rest.split_at(header.key_len as usize);
    if stored_key != key {
        return Err(format!(
            "cache file \"{}\" has md5 collision",
            path.display()
        ));
    }
    let (vary, head) = rest.split_at(header.vary_len as usize);
    Ok(Some(Opened {
        file: Arc::new(file),
        header,
        vary: vary.to_vec(),
        head: head.to_vec(),
        path,
    }))
}

/// An entry's [`Answer`]; `None` for a head that does not parse (nginx's
/// `contains invalid header`, then asked upstream).
fn answer(o: Opened) -> Option<Answer> {
    let reading = upstream_h1::Reading {
        ask: upstream_h1::Ask::Other,
        keep_hidden: true,
    };
    let head = match upstream_h1::head::parse_reading(&o.head, reading) {
        Ok(upstream_h1::head::Parsed::Final(head)) => head,
        _ => {
            log::write(
                Level::Crit,
                None,
                &format!(
                    "cache file \"{}\" contains invalid header",
                    o.path.display()
                ),
            );
            return None;
        }
    };
    Some(Answer {
        head: head.parts,
        passed: head.passed,
        file: o.file,
        start: o.header.body_start(),
        len: o.header.body_len,
    })
}

impl Answer {
    /// The answer to the request `req`, as nginx's filters make it of a
    /// cached one: whole (without a length where none was stored), a 304
    /// or 412 for its conditions, or the ranges it asks for where the
    /// upstream said `Accept-Ranges` (nginx's range filter, `max_ranges`).
    pub fn respond(
        self,
        req: &http::request::Parts,
        mode: crate::conf::model::IfModifiedSince,
        max_ranges: u32,
    ) -> Response<RespBody> {
        use crate::http::static_files::{
            http_time, if_range, multipart, parse_ranges, single_range, FileBody, Ranged, Ranges,
        };
        let Answer {
            head,
            passed,
            file,
            start,
            len,
        } = self;
        let sized = passed.length.is_some();
        let mut body = RespBody::cached(FileBody::range(file.clone(), start, len), sized);
        body.put_passed(passed);
        let mut resp = Response::from_parts(head, body);
        *resp.version_mut() = http::Version::HTTP_11;
        if let Some(answer) = not_modified(&mut resp, &req.headers, mode) {
            return answer;
        }
        let ranged = sized
            && resp.status() == StatusCode::OK
            && req.version >= http::Version::HTTP_10
            && header_of(&resp, "accept-ranges").is_some();
        let range = match req.headers.get(http::header::RANGE) {
            Some(range) if ranged => range,
            _ => return resp,
        };
        let etag = header_of(&resp, "etag").and_then(|v| String::from_utf8(v).ok());
        let mtime = header_of(&resp, "last-modified").and_then(|v| http_time(&v));
        if !if_range(
            req.headers.get(http::header::IF_RANGE),
            etag.as_deref(),
            mtime.unwrap_or(i64::MIN),
        ) {
            return resp;
        }
        let list = match parse_ranges(range.as_bytes(), len, max_ranges) {
            Ranges::None => return resp,
            Ranges::Unsatisfiable => {
                let mut refused = crate::http::response::finalized(416);
                if let Ok(v) = http::HeaderValue::from_str(&format!("bytes */{len}")) {
                    refused.headers_mut().insert(http::header::CONTENT_RANGE, v);
                }
                return refused;
            }
            Ranges::Some(list) => list,
        };
        // The range filter edits the answer's headers: its lines go to the
        // map.
        if let Some(passed) = resp.body_mut().take_passed() {
            passed.append_to(resp.headers_mut());
            crate::http::response::PassedOwn::mark(&passed, resp.extensions_mut());
        }
        let head_only = req.method == Method::HEAD;
        crate::http::response::remove_in_order(resp.headers_mut(), &http::header::ACCEPT_RANGES);
        let body = Ranged {
            bytes: None,
            file,
            base: start,
        };
        if let [range] = list[..] {
            return single_range(resp, range, len, body, head_only);
        }
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .cloned()
            .unwrap_or(http::HeaderValue::from_static(""));
        multipart(resp, &content_type, &list, len, body, head_only)
    }
}

impl Pending {
    /// The expired entry, where `proxy_cache_use_stale` lists the
    /// failure or status (`ft`: `proxy_next_upstream`'s bit of it).
    pub fn stale_for(&mut self, c: &Cache, ft: u32) -> Option<Box<Answer>> {
        if c.use_stale & ft == 0 {
            return None;
        }
        self.stale.take()
    }

    /// The upstream is asked as nginx asks it for the cache: without the
    /// client's conditions and ranges (the answer is whole, to store).
    pub fn cacheable(&self) -> bool {
        self.store
    }

    /// Starts storing the upstream's answer if it may be stored, as
    /// `ngx_http_upstream_send_response` decides: not with
    /// `proxy_no_cache`, for as long as its headers say, else as
    /// `proxy_cache_valid` says for its status.
    pub fn fill(
        &mut self,
        c: &Cache,
        status: StatusCode,
        passed: &Passed,
        vars: &VarCtx<'_>,
    ) -> Option<Fill> {
        if !self.store || any_true(&c.no_cache, vars) {
            return None;
        }
        let now = crate::clock::unix_secs() as i64;
        let valid_until = match crate::cache::verdict(passed.iter(), c.ignore, now) {
            Verdict::No => return None,
            Verdict::Until(at) => at,
            Verdict::Default => now + crate::cache::valid_for(&c.valid, status.as_u16())? as i64,
        };
        // The last Vary line decides, as nginx keeps the last.
        let vary: Box<[u8]> = passed
            .iter()
            .filter(|(n, _)| {
                n.eq_ignore_ascii_case(b"vary") && c.ignore & crate::cache::ignore::VARY == 0
            })
            .last()
            .map(|(_, v)| v.into())
            .unwrap_or_default();
        let variant = if vary.is_empty() {
            [0; 16]
        } else {
            file::variant(&self.main, &vary, &vars.req.headers)
        };
        // A request that looked up a variant stores there if the answer
        // varies the same way, else at the main key
        // (`ngx_http_file_cache_update_variant`).
        if self.md5 != self.main && variant != self.md5 {
            if self.owner {
                self.zone.stop_updating(&self.md5);
                self.owner = false;
            }
            self.md5 = self.main;
        }
        let mut head = Vec::with_capacity(passed.lines.len() + 64);
        head.extend_from_slice(b"HTTP/1.1 ");
        head.extend_from_slice(status.as_str().as_bytes());
        head.push(b' ');
        match &passed.reason {
            Some(reason) => head.extend_from_slice(reason),
            None => head.extend_from_slice(crate::http::response::status_text(status).as_bytes()),
        }
        head.extend_from_slice(b"\r\n");
        head.extend_from_slice(&passed.lines);
        head.extend_from_slice(b"\r\n");
        // The fill lets go of the entry when it ends.
        self.owner = false;
        Some(self.zone.fill(
            self.md5,
            Entry {
                key: self.key.as_slice().into(),
                vary,
                variant,
                head,
                valid_until,
            },
        ))
    }
}

/// The client's headers nginx leaves out of a request it may store the
/// answer to (its `headers_cache`): conditions and ranges.
pub fn asks_whole(name: &http::HeaderName) -> bool {
    use http::header::{
        IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, RANGE,
    };
    [
        IF_MODIFIED_SINCE,
        IF_UNMODIFIED_SINCE,
        IF_NONE_MATCH,
        IF_MATCH,
        RANGE,
        IF_RANGE,
    ]
    .contains(name)
}

/// nginx's not_modified filter on an answer from the cache or one being
/// stored: a 200 whose Last-Modified or ETag the client has gets a 304
/// (412 where `If-Unmodified-Since` or `If-Match` fail), its other
/// headers kept but the type, length, ranges and encoding.
pub fn not_modified(
    resp: &mut Response<RespBody>,
    req: &http::HeaderMap,
    mode: crate::conf::model::IfModifiedSince,
) -> Option<Response<RespBody>> {
    use crate::http::static_files::{answer_not_modified, http_time, Conditional};
    if resp.status() != StatusCode::OK
        || !(req.contains_key(http::header::IF_MODIFIED_SINCE)
            || req.contains_key(http::header::IF_NONE_MATCH)
            || req.contains_key(http::header::IF_UNMODIFIED_SINCE)
            || req.contains_key(http::header::IF_MATCH))
    {
        return None;
    }
    let mtime = header_of(resp, "last-modified").and_then(|v| http_time(&v));
    let etag = header_of(resp, "etag").and_then(|v| String::from_utf8(v).ok());
    match answer_not_modified(req, mode, mtime, etag.as_deref())? {
        Conditional::Failed => Some(crate::http::response::finalized(412)),
        Conditional::NotModified => {
            let mut passed = resp.body_mut().take_passed()?;
            passed.edit_lines(|name, _| {
                let dropped = [
                    &b"content-type"[..],
                    b"content-length",
                    b"accept-ranges",
                    b"content-encoding",
                ]
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n));
                if dropped {
                    upstream_h1::LineEdit::Drop
                } else {
                    upstream_h1::LineEdit::Keep
                }
            });
            passed.length = None;
            passed.reason = None;
            let mut answer = std::mem::replace(resp, Response::new(RespBody::empty()));
            *answer.status_mut() = StatusCode::NOT_MODIFIED;
            // The body (an entry's file, or the rest of the upstream's
            // answer, which goes on being stored) is not sent.
            answer.body_mut().put_passed(passed);
            Some(answer)
        }
    }
}
