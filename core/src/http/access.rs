//! Access log lines: `log_format` compiled at config load, filled when a
//! response body is done (so `$body_bytes_sent` is what was really sent).
//!
//! A request writes a line to each log of its location (every
//! `access_log` of the level, in order). Request variables are captured
//! when the request starts (after realip, so `$remote_addr` is the real
//! client), for each log as its format escapes them; the status, sizes,
//! times and upstream fields, which all the logs share, when the lines
//! are written. `access_log ... if=COND`
//! skips the line when COND is empty or `0`; `buffer=`/`flush=` are the
//! writer's business (`crate::log::access`).

use std::cell::RefCell;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::log::access::Buffering;
use crate::vars::{CompileError, NameError, Var, VarCtx};

pub const COMBINED: &str =
    "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\"";

#[derive(Debug, Clone, PartialEq)]
enum Field {
    Text(String),
    TimeLocal,
    TimeIso8601,
    Msec,
    Status,
    BodyBytesSent,
    /// The head and the body.
    BytesSent,
    RequestTime,
    UpstreamAddr,
    UpstreamStatus,
    /// `$upstream_cache_status`, set once the cache looked.
    UpstreamCacheStatus,
    /// `$upstream_response_time`, `$upstream_bytes_sent`, ...: one
    /// value per try.
    UpstreamTry(TryField),
    /// `$limit_conn_status`, set while the request is handled.
    LimitConnStatus,
    /// `$request_length`: the head and the body bytes read.
    RequestLength,
    /// `$pipe`: `p` for a pipelined request, else `.`.
    Pipe,
    /// `$gzip_ratio`: the body's bytes before and after compression.
    GzipRatio,
    /// `$request_completion`: `OK` for a whole answer, else empty.
    RequestCompletion,
    /// `$sent_http_NAME`: the response head's line (the name lowercase,
    /// `_` as `-`).
    SentHttp(Box<[u8]>),
    /// `$upstream_http_NAME`: the last upstream response's line.
    UpstreamHttp(Box<[u8]>),
    /// `$upstream_cookie_NAME`: a cookie the last upstream response set.
    UpstreamCookie(Box<[u8]>),
    /// A request variable, captured at the start (index into the
    /// record's values).
    Var(Var, usize),
    /// A filter module's variable (`$limit_req_status`), by the index of
    /// the filter in the runtime.
    Module(usize),
}

/// Resolves the variables a configuration adds to nginx's (lowercase
/// names): a filter module's, to its filter's index, and `map`'s.
pub type ModuleVars<'a> = &'a dyn Fn(&str) -> Option<ConfVar>;

/// A variable the configuration adds.
pub enum ConfVar {
    /// A filter module's (`$limit_req_status`), by the filter's index.
    Module(usize),
    /// A `map`'s.
    Var(Var),
}

/// `log_format`'s `escape=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// `"`, `\`, control characters and bytes >= 0x7f as `\xHH`.
    Default,
    Json,
    None,
}

/// What a `log_format` name resolves to.
fn field(name: &str, module_vars: ModuleVars<'_>) -> Result<Field, NameError> {
    match module_vars(&name.to_ascii_lowercase()) {
        Some(ConfVar::Module(i)) => return Ok(Field::Module(i)),
        Some(ConfVar::Var(v)) => return Ok(Field::Var(v, 0)),
        None => {}
    }
    let lower = name.to_ascii_lowercase();
    if let Some(field) = TryField::named(&lower) {
        return Ok(Field::UpstreamTry(field));
    }
    Ok(match lower.as_str() {
        "time_local" => Field::TimeLocal,
        "time_iso8601" => Field::TimeIso8601,
        "msec" => Field::Msec,
        "status" => Field::Status,
        "body_bytes_sent" => Field::BodyBytesSent,
        "bytes_sent" => Field::BytesSent,
        "request_time" => Field::RequestTime,
        "upstream_addr" => Field::UpstreamAddr,
        "upstream_status" => Field::UpstreamStatus,
        "upstream_cache_status" => Field::UpstreamCacheStatus,
        "limit_conn_status" => Field::LimitConnStatus,
        "request_length" => Field::RequestLength,
        "pipe" => Field::Pipe,
        "gzip_ratio" => Field::GzipRatio,
        "request_completion" => Field::RequestCompletion,
        n => {
            let header = |h: &str| h.replace('_', "-").into_bytes().into_boxed_slice();
            if let Some(h) = n.strip_prefix("sent_http_") {
                Field::SentHttp(header(h))
            } else if let Some(h) = n.strip_prefix("upstream_http_") {
                Field::UpstreamHttp(header(h))
            } else if let Some(c) = n.strip_prefix("upstream_cookie_") {
                Field::UpstreamCookie(c.as_bytes().into())
            } else {
                Field::Var(Var::parse(name)?, 0)
            }
        }
    })
}

/// One piece of a `log_format` argument.
pub enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

/// Splits one `log_format` argument as `ngx_http_log_compile`, with its
/// messages (`invalid parameter "$..."` quotes the rest of the argument).
pub fn scan(arg: &str) -> Result<Vec<Piece<'_>>, CompileError> {
    let b = arg.as_bytes();
    let mut pieces = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            let start = i;
            while i < b.len() && b[i] != b'$' {
                i += 1;
            }
            pieces.push(Piece::Text(&arg[start..i]));
            continue;
        }
        let dollar = i;
        i += 1;
        if i == b.len() {
            return Err(CompileError::Syntax(format!(
                "invalid parameter \"{}\"",
                &arg[dollar..]
            )));
        }
        let bracket = b[i] == b'{';
        if bracket {
            i += 1;
            if i == b.len() {
                return Err(CompileError::Syntax(format!(
                    "invalid parameter \"{}\"",
                    &arg[dollar..]
                )));
            }
        }
        let (name, next) = crate::vars::scan_name(arg, i, bracket)?;
        i = next;
        if name.is_empty() {
            return Err(CompileError::Syntax(format!(
                "invalid parameter \"{}\"",
                &arg[dollar..]
            )));
        }
        pieces.push(Piece::Var(name));
    }
    Ok(pieces)
}

/// `log_format NAME [escape=...] STRING...`: the escaping and the format
/// strings. Errors are nginx's.
pub fn format_args(args: &[String]) -> Result<(Escape, &[String]), CompileError> {
    if args.len() > 1 {
        if let Some(e) = args[0].strip_prefix("escape=") {
            let escape = match e {
                "default" => Escape::Default,
                "json" => Escape::Json,
                "none" => Escape::None,
                _ => {
                    return Err(CompileError::Syntax(format!(
                        "unknown log format escaping \"{e}\""
                    )))
                }
            };
            return Ok((escape, &args[1..]));
        }
    }
    Ok((Escape::Default, args))
}

fn name_error(name: &str, e: NameError) -> CompileError {
    let name = name.to_ascii_lowercase();
    match e {
        NameError::Unknown => CompileError::Unknown(name),
        NameError::Unsupported => CompileError::Unsupported(name),
    }
}

/// Checks a `log_format`'s strings as nginx compiles them: malformed `$`
/// first, then the names (`Unknown` or `Unsupported`, the first one).
pub fn check(args: &[String], module_vars: ModuleVars<'_>) -> Result<(), CompileError> {
    let (_, strings) = format_args(args)?;
    let mut pieces = Vec::new();
    for s in strings {
        pieces.extend(scan(s)?);
    }
    for p in pieces {
        if let Piece::Var(name) = p {
            field(name, module_vars).map_err(|e| name_error(name, e))?;
        }
    }
    Ok(())
}

/// Compiles `access_log`'s `if=` value as nginx's complex values (its
/// messages: `invalid variable name`, ...), with the variables a log line
/// has; request variables get indexes from `*vars` on.
fn compile_condition(
    text: &str,
    module_vars: ModuleVars<'_>,
    vars: &mut usize,
) -> Result<Vec<Field>, CompileError> {
    let mut fields = Vec::new();
    for piece in crate::vars::scan(text)? {
        match piece {
            crate::vars::Piece::Text(t) => fields.push(Field::Text(t.to_owned())),
            // `$1`..`$9`: always empty here.
            crate::vars::Piece::Capture(_) => {}
            crate::vars::Piece::Var(name) => match field(name, module_vars) {
                Ok(Field::Var(v, _)) => {
                    fields.push(Field::Var(v, *vars));
                    *vars += 1;
                }
                Ok(f) => fields.push(f),
                Err(e) => return Err(name_error(name, e)),
            },
        }
    }
    Ok(fields)
}

/// Checks an `access_log ... if=` value (the text after `if=`).
pub fn check_condition(text: &str, module_vars: ModuleVars<'_>) -> Result<(), CompileError> {
    compile_condition(text, module_vars, &mut 0).map(|_| ())
}

/// A compiled `log_format` and the file it writes to.
#[derive(Debug)]
pub struct AccessLog {
    fields: Vec<Field>,
    escape: Escape,
    path: Arc<PathBuf>,
    /// How many request variables a record captures (the format's, then
    /// the condition's).
    vars: usize,
    /// `buffer=`/`flush=`, the same for every log of the file.
    buffering: Option<Buffering>,
    /// `if=`: the line is written unless this is empty or `0`.
    condition: Option<Vec<Field>>,
}

impl AccessLog {
    /// Compiles a format: `log_format`'s arguments after its name.
    pub fn compile(
        args: &[String],
        path: PathBuf,
        module_vars: ModuleVars<'_>,
    ) -> Result<AccessLog, CompileError> {
        check(args, module_vars)?;
        let (escape, strings) = format_args(args)?;
        let mut fields: Vec<Field> = Vec::new();
        let mut vars = 0;
        for s in strings {
            for piece in scan(s)? {
                let f = match piece {
                    Piece::Text(t) => {
                        if let Some(Field::Text(prev)) = fields.last_mut() {
                            prev.push_str(t);
                            continue;
                        }
                        Field::Text(t.to_owned())
                    }
                    Piece::Var(name) => match field(name, module_vars) {
                        Ok(Field::Var(v, _)) => {
                            vars += 1;
                            Field::Var(v, vars - 1)
                        }
                        Ok(f) => f,
                        Err(_) => continue,
                    },
                };
                fields.push(f);
            }
        }
        Ok(AccessLog {
            fields,
            escape,
            path: Arc::new(path),
            vars,
            buffering: None,
            condition: None,
        })
    }

    /// Adds `access_log`'s parameters: `buffer=`/`flush=` and the `if=`
    /// condition.
    pub fn with_params(
        mut self,
        buffering: Option<Buffering>,
        condition: Option<&str>,
        module_vars: ModuleVars<'_>,
    ) -> Result<AccessLog, CompileError> {
        self.buffering = buffering;
        if let Some(text) = condition {
            self.condition = Some(compile_condition(text, module_vars, &mut self.vars)?);
        }
        Ok(self)
    }

    /// The predefined `combined` format.
    pub fn combined(path: PathBuf) -> AccessLog {
        AccessLog::compile(&[COMBINED.to_owned()], path, &|_| None)
            .unwrap_or_else(|_| unreachable!("the combined format compiles"))
    }

    /// Captures what the line needs from the request, as the variables
    /// see it (after realip): appends the values to `values` and where
    /// each ends to `ends`.
    fn capture(&self, vars: &VarCtx<'_>, values: &mut Vec<u8>, ends: &mut Vec<usize>) {
        for f in &self.fields {
            if let Field::Var(v, _) = f {
                if v.missing(vars) {
                    // nginx's "not found": `-`, or nothing with json/none.
                    if self.escape == Escape::Default {
                        values.push(b'-');
                    }
                } else {
                    let before = values.len();
                    v.eval(vars, values);
                    escape(self.escape, values, before);
                }
                ends.push(values.len());
            }
        }
        // The condition's variables as they are: only "empty or 0" counts.
        for f in self.condition.iter().flatten() {
            if let Field::Var(v, _) = f {
                if !v.missing(vars) {
                    v.eval(vars, values);
                }
                ends.push(values.len());
            }
        }
    }
}

/// The logs a location writes to: every `access_log` of its level, in
/// order (nginx's `logs` array). Never empty: a location without logs
/// (`access_log off`) has none of these.
#[derive(Debug)]
pub struct AccessLogs {
    logs: Box<[Arc<AccessLog>]>,
    /// How many request variables a record captures for all of them.
    vars: usize,
    /// Some log reads the response head (`$sent_http_*`), or the
    /// upstream's (`$upstream_http_*`, `$upstream_cookie_*`): the record
    /// keeps a copy of it.
    heads: Heads,
}

/// What a request's record keeps beyond the usual fields, where a log
/// reads it (the plain path does none of this work).
#[derive(Debug, Clone, Copy, Default)]
struct Heads {
    sent: bool,
    upstream: bool,
    /// `$request_length`, `$pipe`.
    request: bool,
    /// `$upstream_bytes_*`, `$upstream_response_length`.
    bytes: bool,
}

impl AccessLogs {
    /// `None` for no logs.
    pub fn new(logs: Vec<Arc<AccessLog>>) -> Option<AccessLogs> {
        if logs.is_empty() {
            return None;
        }
        let vars = logs.iter().map(|l| l.vars).sum();
        let mut heads = Heads::default();
        for f in logs
            .iter()
            .flat_map(|l| l.fields.iter().chain(l.condition.iter().flatten()))
        {
            match f {
                Field::SentHttp(_) => heads.sent = true,
                Field::UpstreamHttp(_) | Field::UpstreamCookie(_) => heads.upstream = true,
                Field::RequestLength | Field::Pipe => heads.request = true,
                Field::UpstreamTry(
                    TryField::BytesSent | TryField::BytesReceived | TryField::ResponseLength,
                ) => heads.bytes = true,
                _ => {}
            }
        }
        Some(AccessLogs {
            logs: logs.into_boxed_slice(),
            vars,
            heads,
        })
    }

    /// Starts a request's record: each log's captures, log after log.
    pub fn start(self: &Arc<Self>, vars: &VarCtx<'_>, started: Instant) -> Box<Record> {
        let spare = SPARE.try_with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.pop()));
        let mut record = match spare {
            Ok(Some(mut spare)) => {
                spare.logs = self.clone();
                spare.started = started;
                spare
            }
            _ => Box::new(Record {
                logs: self.clone(),
                started,
                values: Vec::with_capacity(128),
                ends: Vec::with_capacity(self.vars),
                status: 0,
                upstream_addr: String::new(),
                upstream_status: String::new(),
                cache_status: "",
                tries: Tries::default(),
                module_values: Vec::new(),
                limit_conn: 0,
                request_length: None,
                pipelined: false,
                gzip: None,
                completed: false,
                sent_head: Vec::new(),
                upstream_head: Vec::new(),
            }),
        };
        for log in self.logs.iter() {
            log.capture(vars, &mut record.values, &mut record.ends);
        }
        record
    }
}

thread_local! {
    /// The status a request's log line shows when its handler is dropped
    /// before answering: 499, nginx's "client closed request" (the client
    /// went away, or reset its HTTP/2 stream), unless the connection says
    /// otherwise as it drops one ([`Dropping`]).
    static UNANSWERED: std::cell::Cell<u16> = const { std::cell::Cell::new(499) };
}

/// Gives the status a request's log line shows if its handler is dropped
/// unfinished (a request body the connection could not read: 400, 408,
/// 413) while this lives. Declared before the handler so that it is
/// dropped after it, and [`Dropping::set`] with no await between it and
/// the drop: nothing else runs on the thread meanwhile.
#[derive(Default)]
pub struct Dropping {
    set: std::cell::Cell<bool>,
}

impl Dropping {
    pub fn new() -> Dropping {
        Dropping::default()
    }

    pub fn set(&self, status: u16) {
        let _ = UNANSWERED.try_with(|s| s.set(status));
        self.set.set(true);
    }
}

impl Drop for Dropping {
    fn drop(&mut self) {
        if self.set.get() {
            let _ = UNANSWERED.try_with(|s| s.set(499));
        }
    }
}

/// The status a request dropped now is logged with (499: its client
/// left; 500 while a panic unwinds it).
pub fn unanswered_status() -> u16 {
    if std::thread::panicking() {
        return 500;
    }
    UNANSWERED.try_with(|s| s.get()).unwrap_or(499)
}

/// A request's record while its answer is made: if the request is
/// dropped first, its line is still written, with 499 (or the status
/// [`Dropping`] gave), as nginx logs a request it finalizes because the
/// client went away.
pub struct Unanswered(pub Option<Box<Record>>);

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(mut record) = self.0.take() {
            record.status = unanswered_status();
            record.finish(0, 0);
            record.recycle();
        }
    }
}

/// Records a worker keeps for its next requests.
const SPARES: usize = 64;

thread_local! {
    /// Records of finished requests, emptied, for the next ones: their
    /// buffers keep their room, so a request's record costs no
    /// allocation (it cost six).
    // Boxes, not records: the box is what a request's response body holds.
    #[allow(clippy::vec_box)]
    static SPARE: RefCell<Vec<Box<Record>>> = const { RefCell::new(Vec::new()) };
}

/// The bytes `ngx_http_log_escape` escapes, or with `json`,
/// `ngx_escape_json`: a table, as nginx's, so the scan is a load per byte.
const fn escaped(json: bool) -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        table[i] = c < 0x20 || c == b'"' || c == b'\\' || (!json && c >= 0x7f);
        i += 1;
    }
    table
}

static ESCAPED: [bool; 256] = escaped(false);
static ESCAPED_JSON: [bool; 256] = escaped(true);

/// Whether `mode` escapes `c`.
#[inline(always)]
fn needs(mode: Escape, c: u8) -> bool {
    match mode {
        Escape::Default => ESCAPED[usize::from(c)],
        Escape::Json => ESCAPED_JSON[usize::from(c)],
        Escape::None => false,
    }
}

/// Escapes `buf[from..]` in place, as `ngx_http_log_escape` or
/// `ngx_escape_json`.
pub(crate) fn escape(mode: Escape, buf: &mut Vec<u8>, from: usize) {
    // A value with nothing to escape (nearly all) is scanned by a loop of
    // its mode: no mode test per byte.
    let clean = match mode {
        Escape::Default => !buf[from..].iter().any(|&c| needs(Escape::Default, c)),
        Escape::Json => !buf[from..].iter().any(|&c| needs(Escape::Json, c)),
        Escape::None => true,
    };
    if clean {
        return;
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let raw = buf.split_off(from);
    for c in raw {
        if !needs(mode, c) {
            buf.push(c);
            continue;
        }
        match (mode, c) {
            (Escape::Json, b'"') => buf.extend_from_slice(b"\\\""),
            (Escape::Json, b'\\') => buf.extend_from_slice(b"\\\\"),
            (Escape::Json, b'\n') => buf.extend_from_slice(b"\\n"),
            (Escape::Json, b'\r') => buf.extend_from_slice(b"\\r"),
            (Escape::Json, b'\t') => buf.extend_from_slice(b"\\t"),
            (Escape::Json, 0x08) => buf.extend_from_slice(b"\\b"),
            (Escape::Json, 0x0c) => buf.extend_from_slice(b"\\f"),
            (Escape::Json, _) => {
                buf.extend_from_slice(b"\\u00");
                buf.push(HEX[usize::from(c >> 4)]);
                buf.push(HEX[usize::from(c & 0xf)]);
            }
            _ => {
                buf.extend_from_slice(b"\\x");
                buf.push(HEX[usize::from(c >> 4)]);
                buf.push(HEX[usize::from(c & 0xf)]);
            }
        }
    }
}

/// One upstream try's times, from its start (nginx's
/// `ngx_http_upstream_state_t`): `None` for a point never reached.
#[derive(Clone, Debug)]
pub struct TryTimes {
    start: Instant,
    connect: Option<Duration>,
    header: Option<Duration>,
    /// Set when the next try starts; the last try's ends with the line.
    response: Option<Duration>,
    /// Bytes written to the upstream and read from it, and of those the
    /// body's (`$upstream_bytes_sent`, `$upstream_bytes_received`,
    /// `$upstream_response_length`).
    sent: u64,
    received: u64,
    length: u64,
}

/// The per-try figures `$upstream_*` variables print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryField {
    ResponseTime,
    ConnectTime,
    HeaderTime,
    BytesSent,
    BytesReceived,
    ResponseLength,
}

impl TryField {
    /// The variable named `name` (lowercase, no `$`).
    pub fn named(name: &str) -> Option<TryField> {
        Some(match name {
            "upstream_response_time" => TryField::ResponseTime,
            "upstream_connect_time" => TryField::ConnectTime,
            "upstream_header_time" => TryField::HeaderTime,
            "upstream_bytes_sent" => TryField::BytesSent,
            "upstream_bytes_received" => TryField::BytesReceived,
            "upstream_response_length" => TryField::ResponseLength,
            _ => return None,
        })
    }
}

/// A request's upstream tries so far (nginx's `r->upstream_states`), for
/// the access log and for `add_header`.
#[derive(Clone, Debug, Default)]
pub struct Tries(Vec<TryTimes>);

impl Tries {
    /// A try starts (nginx's `ngx_http_upstream_connect`): the previous
    /// try's response time ends here.
    pub fn start(&mut self) {
        let now = crate::clock::now();
        self.end_at(now);
        self.0.push(TryTimes {
            start: now,
            connect: None,
            header: None,
            response: None,
            sent: 0,
            received: 0,
            length: 0,
        });
    }

    /// What the current try wrote and read, and of it the body passed on.
    pub fn bytes(&mut self, sent: u64, received: u64, length: u64) {
        if let Some(t) = self.0.last_mut() {
            (t.sent, t.received, t.length) = (sent, received, length);
        }
    }

    /// The last try's response body is over (or dropped): what the try
    /// read in all, and of it the body's.
    pub fn body_read(&mut self, received: u64, length: u64) {
        if let Some(t) = self.0.last_mut() {
            (t.received, t.length) = (received, length);
        }
    }

    /// What the current try reached: a connection at `connected`, and,
    /// with `header`, a response head now.
    pub fn reached(&mut self, connected: Option<Instant>, header: bool) {
        let now = crate::clock::now();
        if let Some(t) = self.0.last_mut() {
            t.connect = connected.map(|c| c.saturating_duration_since(t.start));
            if header {
                t.header = Some(now.saturating_duration_since(t.start));
            }
        }
    }

    /// The current try ended without a response passed on (the proxy
    /// answers the error itself, or tries the next peer): its response
    /// time ends here, as nginx's `ngx_http_upstream_finalize_request`
    /// ends it before the error's headers.
    pub fn end(&mut self) {
        self.end_at(crate::clock::now());
    }

    fn end_at(&mut self, now: Instant) {
        if let Some(last) = self.0.last_mut() {
            last.response
                .get_or_insert(now.saturating_duration_since(last.start));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// A time per try, `, `-separated: seconds with milliseconds, `-` for
    /// a point the try never reached, as nginx.
    fn times(&self, out: &mut String, pick: impl Fn(&TryTimes) -> Option<Duration>) {
        for (i, t) in self.0.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            match pick(t) {
                Some(d) => {
                    let _ = write!(out, "{}.{:03}", d.as_secs(), d.subsec_millis());
                }
                None => out.push('-'),
            }
        }
    }

    /// A number per try, `, `-separated; with `open_zero`, 0 for a try
    /// that has not ended.
    fn numbers(&self, out: &mut Vec<u8>, pick: fn(&TryTimes) -> u64, open_zero: bool) {
        let mut digits = [0u8; 20];
        for (i, t) in self.0.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            let n = if open_zero && t.response.is_none() {
                0
            } else {
                pick(t)
            };
            out.extend_from_slice(crate::vars::decimal(n, &mut digits));
        }
    }

    /// `field` as `add_header` reads it, in the response's header filter:
    /// a try whose response is being passed on has not ended, and nginx
    /// sets a try's response time, bytes sent and response length only
    /// when it ends, so there they read `-`, 0 and 0; its bytes received
    /// are those read so far.
    pub fn at_header(&self, field: TryField, out: &mut Vec<u8>) {
        let mut text = String::new();
        match field {
            TryField::ResponseTime => self.times(&mut text, |t| t.response),
            TryField::ConnectTime => self.times(&mut text, |t| t.connect),
            TryField::HeaderTime => self.times(&mut text, |t| t.header),
            TryField::BytesSent => self.numbers(out, |t| t.sent, true),
            TryField::BytesReceived => self.numbers(out, |t| t.received, false),
            TryField::ResponseLength => self.numbers(out, |t| t.length, true),
        }
        out.extend_from_slice(text.as_bytes());
    }
}

/// One request's access log lines in progress: what each log captured,
/// and the fields they share.
/// Bytes sent to the client: `$body_bytes_sent` and, with the head,
/// `$bytes_sent`.
#[derive(Clone, Copy)]
struct Sent {
    body: u64,
    head: u64,
}

pub struct Record {
    logs: Arc<AccessLogs>,
    started: Instant,
    /// The captured variables, one after another (escaped as their log
    /// says): the first log's, then the next log's.
    values: Vec<u8>,
    /// Where each captured value ends in `values`; a log's `Field::Var`
    /// indexes count from the number its earlier logs captured.
    ends: Vec<usize>,
    pub status: u16,
    /// `$upstream_addr`: every try, ", "-separated.
    pub upstream_addr: String,
    pub upstream_status: String,
    /// `$upstream_cache_status` (empty: not found).
    pub cache_status: &'static str,
    /// `$upstream_response_time`, `$upstream_connect_time`,
    /// `$upstream_header_time` and the bytes: one entry per try.
    tries: Tries,
    /// Filter modules' variable values: (filter index, value).
    pub module_values: Vec<(usize, &'static str)>,
    /// `$limit_conn_status` (`crate::http::limit_conn::PASSED`, ...; 0:
    /// no limit applied).
    pub limit_conn: u8,
    /// `$request_length`, `$pipe`: set by the connection as it answers,
    /// or where a head was refused by how far nginx read it then.
    pub request_length: Option<u64>,
    pub pipelined: bool,
    /// `$gzip_ratio`'s counts, once a compressed body was whole.
    pub gzip: Option<(u64, u64)>,
    /// `$request_completion`
    pub completed: bool,
    /// The response head as sent, where a log reads `$sent_http_*`.
    sent_head: Vec<u8>,
    /// The last upstream response's header lines (as the upstream sent
    /// them, before `proxy_redirect` and the cookie rewrites), where a log
    /// reads `$upstream_http_*` or `$upstream_cookie_*`.
    upstream_head: Vec<u8>,
}

/// A record's upstream tries (`$upstream_addr`, `$upstream_status` and
/// the times), kept across an internal redirect.
#[derive(Clone, Default)]
pub struct UpstreamTries {
    addr: String,
    status: String,
    tries: Tries,
}

impl Record {
    /// The request's variables captured again from `vars` (the request
    /// as the handler left it: a `try_files` that changed `$uri`).
    pub fn recapture(&mut self, vars: &VarCtx<'_>) {
        self.values.clear();
        self.ends.clear();
        let logs = Arc::clone(&self.logs);
        for log in logs.logs.iter() {
            log.capture(vars, &mut self.values, &mut self.ends);
        }
    }

    /// Its upstream tries, for the record of an internal redirect's target.
    pub fn upstream_tries(&self) -> UpstreamTries {
        UpstreamTries {
            addr: self.upstream_addr.clone(),
            status: self.upstream_status.clone(),
            tries: self.tries.clone(),
        }
    }

    /// `earlier`'s tries where this record has none: nginx keeps a
    /// request's upstream states through an internal redirect to a level
    /// that proxies nothing.
    pub fn keep_upstream_tries(&mut self, earlier: &UpstreamTries) {
        if self.tries.is_empty() && self.upstream_addr.is_empty() {
            self.upstream_addr.clone_from(&earlier.addr);
            self.upstream_status.clone_from(&earlier.status);
            self.tries.clone_from(&earlier.tries);
        }
    }

    /// Whether a log reads `$request_length` or `$pipe`.
    #[inline]
    pub fn wants_request(&self) -> bool {
        self.logs.heads.request
    }

    /// Whether a log reads the upstream's headers (`$upstream_http_*`,
    /// `$upstream_cookie_*`).
    #[inline]
    pub fn wants_upstream_head(&self) -> bool {
        self.logs.heads.upstream
    }

    /// Whether a log reads the upstream byte counts.
    #[inline]
    pub fn wants_bytes(&self) -> bool {
        self.logs.heads.bytes
    }

    /// Keeps the response head as it was sent, `Name: value` lines after
    /// the status line, if a log reads `$sent_http_*`.
    pub fn head_sent(&mut self, head: &[u8]) {
        if self.logs.heads.sent {
            self.sent_head.clear();
            self.sent_head.extend_from_slice(head);
        }
    }

    /// Keeps an upstream response's header lines (`Name: value\r\n`), if
    /// a log reads them; `None` for a try that got no response, which
    /// leaves none (nginx's variables are the last try's).
    pub fn upstream_head(&mut self, lines: Option<&[u8]>) {
        if self.logs.heads.upstream {
            self.upstream_head.clear();
            if let Some(lines) = lines {
                self.upstream_head.extend_from_slice(lines);
            }
        }
    }

    /// When the request started (`$request_time`).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// An upstream try starts (nginx's `ngx_http_upstream_connect`): the
    /// previous try's response time ends here.
    pub fn try_start(&mut self) {
        self.tries.start();
    }

    /// What the current try wrote and read, and of it the body passed on.
    pub fn try_bytes(&mut self, sent: u64, received: u64, length: u64) {
        self.tries.bytes(sent, received, length);
    }

    /// The last try's response body is over (or dropped): what the try
    /// read in all, and of it the body's.
    pub fn body_read(&mut self, received: u64, length: u64) {
        self.tries.body_read(received, length);
    }

    /// What the current try reached: a connection at `connected`, and,
    /// with `header`, a response head now.
    pub fn try_reached(&mut self, connected: Option<Instant>, header: bool) {
        self.tries.reached(connected, header);
    }

    /// A number per try, `, `-separated (not found without tries).
    fn numbers(&self, out: &mut Vec<u8>, escape_mode: Escape, pick: fn(&TryTimes) -> u64) {
        if self.tries.is_empty() {
            found(out, None, escape_mode);
            return;
        }
        self.tries.numbers(out, pick, false);
    }

    /// A captured request variable.
    fn value(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.values[start..self.ends[i]]
    }

    /// Appends field `f` of the log whose captures start at `base` to
    /// `out`. Variables (not the log's own fields such as `$status`) print
    /// `-` when not found with `Escape::Default`, nothing with `json` and
    /// `none`, as `ngx_http_log_variable` and its json and unescaped
    /// versions.
    fn render(
        &self,
        f: &Field,
        base: usize,
        sent: Sent,
        now: Instant,
        escape_mode: Escape,
        out: &mut Vec<u8>,
    ) {
        let mut text = String::new();
        let mut digits = [0u8; 20];
        match f {
            Field::Text(t) => out.extend_from_slice(t.as_bytes()),
            Field::TimeLocal => crate::vars::time_local_into(out),
            Field::TimeIso8601 => crate::vars::time_iso8601_into(out),
            Field::Msec => out.extend_from_slice(crate::vars::msec().as_bytes()),
            Field::Status => {
                // Three digits, as `%03ui` (0 when no answer was sent).
                let digits = crate::vars::decimal(u64::from(self.status), &mut digits);
                out.extend(std::iter::repeat_n(
                    b'0',
                    3usize.saturating_sub(digits.len()),
                ));
                out.extend_from_slice(digits);
            }
            Field::BodyBytesSent => {
                out.extend_from_slice(crate::vars::decimal(sent.body, &mut digits));
            }
            Field::BytesSent => {
                out.extend_from_slice(crate::vars::decimal(sent.body + sent.head, &mut digits));
            }
            Field::RequestLength => {
                out.extend_from_slice(crate::vars::decimal(
                    self.request_length.unwrap_or(0),
                    &mut digits,
                ));
            }
            Field::Pipe => out.push(if self.pipelined { b'p' } else { b'.' }),
            Field::RequestCompletion => {
                if self.completed {
                    out.extend_from_slice(b"OK");
                }
            }
            Field::GzipRatio => match self.gzip {
                Some((zin, zout)) if zout > 0 => {
                    // nginx's `%ui.%02ui`, its last digit rounded half up.
                    let mut int = zin / zout;
                    let mut frac = (zin * 100 / zout) % 100;
                    if (zin * 1000 / zout) % 10 > 4 {
                        frac += 1;
                        if frac > 99 {
                            int += 1;
                            frac = 0;
                        }
                    }
                    let _ = write!(text, "{int}.{frac:02}");
                    out.extend_from_slice(text.as_bytes());
                }
                _ => found(out, None, escape_mode),
            },
            // nginx 1.22 clears the keep-alive flag before it logs: its
            // `$sent_http_connection` in a log line is `close` whatever
            // the response said, but for a switch of protocols.
            Field::SentHttp(name) if &**name == b"connection" => {
                let value: &[u8] = if self.status == 101 {
                    b"upgrade"
                } else {
                    b"close"
                };
                found(out, Some(value), escape_mode);
            }
            Field::SentHttp(name) => {
                // (The status line is no `Name: value` line.)
                let value = header_value(&self.sent_head, name, joined_when_sent(name));
                found(out, value.as_deref(), escape_mode);
            }
            Field::UpstreamHttp(name) => {
                let value = header_value(&self.upstream_head, name, false);
                found(out, value.as_deref(), escape_mode);
            }
            Field::UpstreamCookie(name) => {
                found(out, set_cookie(&self.upstream_head, name), escape_mode);
            }
            Field::RequestTime => {
                let t = now.saturating_duration_since(self.started);
                let _ = write!(text, "{}.{:03}", t.as_secs(), t.subsec_millis());
                out.extend_from_slice(text.as_bytes());
            }
            Field::UpstreamAddr => variable(out, self.upstream_addr.as_bytes(), escape_mode),
            Field::UpstreamStatus => variable(out, self.upstream_status.as_bytes(), escape_mode),
            Field::UpstreamCacheStatus => variable(out, self.cache_status.as_bytes(), escape_mode),
            Field::LimitConnStatus => {
                let text = crate::http::limit_conn::status_text(self.limit_conn);
                variable(out, text.as_bytes(), escape_mode);
            }
            Field::UpstreamTry(field) => match field {
                TryField::BytesSent => self.numbers(out, escape_mode, |t| t.sent),
                TryField::BytesReceived => self.numbers(out, escape_mode, |t| t.received),
                TryField::ResponseLength => self.numbers(out, escape_mode, |t| t.length),
                time => {
                    self.tries.times(&mut text, |t| match time {
                        TryField::ConnectTime => t.connect,
                        TryField::HeaderTime => t.header,
                        // At the log line the last try's response ends now.
                        _ => Some(t.response.unwrap_or(now.saturating_duration_since(t.start))),
                    });
                    variable(out, text.as_bytes(), escape_mode);
                }
            },
            // Captured, escaped (or `-`) already.
            Field::Var(_, i) => out.extend_from_slice(self.value(base + *i)),
            Field::Module(f) => {
                let value = self
                    .module_values
                    .iter()
                    .find(|(i, _)| i == f)
                    .map_or("", |(_, v)| *v);
                variable(out, value.as_bytes(), escape_mode);
            }
        }
    }

    /// Empties the record and keeps it for a next request of this thread
    /// (not one that grew large for a large request).
    pub fn recycle(mut self: Box<Self>) {
        if self.values.capacity() > 4096 {
            return;
        }
        self.values.clear();
        self.ends.clear();
        self.status = 0;
        self.upstream_addr.clear();
        self.upstream_status.clear();
        self.cache_status = "";
        self.tries.clear();
        self.module_values.clear();
        self.limit_conn = 0;
        self.request_length = None;
        self.pipelined = false;
        self.gzip = None;
        self.completed = false;
        self.sent_head.clear();
        self.upstream_head.clear();
        let _ = SPARE.try_with(|s| {
            if let Ok(mut spare) = s.try_borrow_mut() {
                if spare.len() < SPARES {
                    spare.push(self);
                }
            }
        });
    }

    /// Writes a line to each log, in order, with the body bytes actually
    /// sent, unless the log's `if=` says not to.
    pub fn finish(&self, sent: u64, head: u64) {
        let sent = Sent { body: sent, head };
        let now = crate::clock::now();
        let mut base = 0;
        for log in self.logs.logs.iter() {
            if self.wanted(log, base, sent, now) {
                // Rendered straight into the worker's batch of lines.
                crate::log::access::write_with(&log.path, log.buffering, |out| {
                    self.render_line(log, base, sent, now, out)
                });
            }
            base += log.vars;
        }
    }

    /// Whether the log takes a line: no `if=`, or one neither empty nor
    /// `0`.
    fn wanted(&self, log: &AccessLog, base: usize, sent: Sent, now: Instant) -> bool {
        let Some(condition) = &log.condition else {
            return true;
        };
        let mut value = Vec::new();
        for f in condition {
            self.render(f, base, sent, now, Escape::None, &mut value);
        }
        !(value.is_empty() || value == b"0")
    }

    /// One log's line (without its newline) at the end of `out`, its
    /// captures starting at `base`.
    fn render_line(
        &self,
        log: &AccessLog,
        base: usize,
        sent: Sent,
        now: Instant,
        out: &mut Vec<u8>,
    ) {
        for f in &log.fields {
            self.render(f, base, sent, now, log.escape, out);
        }
    }

    /// One log's line with its newline; `None` when its `if=` says not
    /// to (tests).
    #[cfg(test)]
    fn line(&self, log: &AccessLog, base: usize, sent: Sent, now: Instant) -> Option<Vec<u8>> {
        if !self.wanted(log, base, sent, now) {
            return None;
        }
        let mut line = Vec::new();
        self.render_line(log, base, sent, now, &mut line);
        line.push(b'\n');
        Some(line)
    }
}

/// A variable's value: `-` when not found (empty) in the default escaping,
/// nothing in the others; escaped as the format says.
fn variable(out: &mut Vec<u8>, value: &[u8], mode: Escape) {
    if value.is_empty() {
        if mode == Escape::Default {
            out.push(b'-');
        }
        return;
    }
    let before = out.len();
    out.extend_from_slice(value);
    escape(mode, out, before);
}

/// A variable's value, or nginx's "not found" (`-`, or nothing with
/// `json` and `none`) without one; an empty value found is empty.
fn found(out: &mut Vec<u8>, value: Option<&[u8]>, mode: Escape) {
    match value {
        None if mode == Escape::Default => out.push(b'-'),
        None => {}
        Some(value) => {
            let before = out.len();
            out.extend_from_slice(value);
            escape(mode, out, before);
        }
    }
}

/// Each `Name: value` line of a head waypost wrote (lines that are not,
/// such as the status line, are skipped).
fn lines(head: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    head.split(|&c| c == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&c| c == b':')?;
        let value = &line[colon + 1..];
        let start = value.iter().position(|&c| c != b' ').unwrap_or(value.len());
        Some((&line[..colon], &value[start..]))
    })
}

/// The value of header `name` (lowercase) in `head`: the first line's,
/// or with `join` every line's, `, `-separated (nginx 1.22 joins
/// `$sent_http_cache_control` and `$sent_http_link` so).
pub(crate) fn header_value<'h>(
    head: &'h [u8],
    name: &[u8],
    join: bool,
) -> Option<std::borrow::Cow<'h, [u8]>> {
    let mut matching = lines(head)
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v);
    let first = matching.next()?;
    if !join {
        return Some(first.into());
    }
    let mut all = first.to_vec();
    for v in matching {
        all.extend_from_slice(b", ");
        all.extend_from_slice(v);
    }
    Some(all.into())
}

/// Whether nginx 1.22 joins the repeated lines of a sent header.
pub(crate) fn joined_when_sent(name: &[u8]) -> bool {
    name == b"cache-control" || name == b"link"
}

/// `$upstream_cookie_NAME`: the value of the first Set-Cookie line that
/// sets NAME (compared without case; spaces around `=` skipped), up to
/// its `;`, as nginx 1.22 reads it.
pub(crate) fn set_cookie<'h>(head: &'h [u8], name: &[u8]) -> Option<&'h [u8]> {
    cookie_set(lines(head), name)
}

/// The value of the first Set-Cookie among header `lines` (name, value)
/// that sets `name`, as [`set_cookie`] reads it.
pub(crate) fn cookie_set<'h>(
    lines: impl Iterator<Item = (&'h [u8], &'h [u8])>,
    name: &[u8],
) -> Option<&'h [u8]> {
    let spaces = |s: &'h [u8]| &s[s.iter().position(|&c| c != b' ').unwrap_or(s.len())..];
    lines
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"set-cookie"))
        .find_map(|(_, v)| {
            let v = spaces(v);
            let rest = spaces(v.get(name.len()..)?);
            if !v[..name.len()].eq_ignore_ascii_case(name) || rest.first() != Some(&b'=') {
                return None;
            }
            let value = spaces(&rest[1..]);
            let end = value.iter().position(|&c| c == b';').unwrap_or(value.len());
            Some(&value[..end])
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn format_errors_as_nginx() {
        let e = |s: &[&str]| check(&args(s), &|_| None).expect_err("refused").to_string();
        assert_eq!(e(&["a$"]), "invalid parameter \"$\"");
        assert_eq!(e(&["${}"]), "invalid parameter \"${}\"");
        assert_eq!(e(&["a$-b c"]), "invalid parameter \"$-b c\"");
        assert_eq!(
            e(&["${x"]),
            "the closing bracket in \"x\" variable is missing"
        );
        assert_eq!(e(&["$1"]), "unknown \"1\" variable");
        assert_eq!(e(&["$statusx"]), "unknown \"statusx\" variable");
        assert_eq!(
            e(&["escape=xml", "$status"]),
            "unknown log format escaping \"xml\""
        );
        assert!(check(&args(&["$status", "x"]), &|_| None).is_ok());
        assert!(check(&args(&["$upstream_addr $Remote_Addr $http_x_y"]), &|_| None).is_ok());
        assert!(check(&args(&[COMBINED]), &|_| None).is_ok());
    }

    #[test]
    fn condition_errors_as_nginx() {
        let e = |s: &str| check_condition(s, &|_| None).map_err(|e| e.to_string());
        assert_eq!(e("a$"), Err("invalid variable name".to_owned()));
        assert_eq!(e("${}"), Err("invalid variable name".to_owned()));
        assert_eq!(
            e("${status"),
            Err("the closing bracket in \"status\" variable is missing".to_owned())
        );
        assert_eq!(e("$nosuch"), Err("unknown \"nosuch\" variable".to_owned()));
        assert_eq!(
            e("$sent_trailer_x"),
            Err("the \"$sent_trailer_x\" variable is not supported".to_owned())
        );
        for ok in [
            "",
            "$1",
            "${status}x",
            "$upstream_header_time",
            "$arg_log$http_x",
        ] {
            assert_eq!(e(ok), Ok(()), "{ok}");
        }
    }

    fn logs(log: AccessLog) -> Arc<AccessLogs> {
        Arc::new(AccessLogs::new(vec![Arc::new(log)]).expect("one log"))
    }

    /// A record of `format` with no request variables, and `tries`.
    fn record(format: &str, tries: Vec<TryTimes>) -> Record {
        let log = AccessLog::compile(&args(&[format]), PathBuf::from("/dev/null"), &|_| None)
            .expect("compiles");
        assert_eq!(log.vars, 0);
        Record {
            logs: logs(log),
            started: Instant::now(),
            values: Vec::new(),
            ends: Vec::new(),
            status: 502,
            upstream_addr: String::new(),
            upstream_status: String::new(),
            cache_status: "",
            tries: Tries(tries),
            module_values: Vec::new(),
            limit_conn: 0,
            request_length: None,
            pipelined: false,
            gzip: None,
            completed: false,
            sent_head: Vec::new(),
            upstream_head: Vec::new(),
        }
    }

    /// The first log's line.
    fn line(r: &Record, now: Instant) -> String {
        let log = &r.logs.logs[0];
        let mut out = Vec::new();
        for f in &log.fields {
            r.render(f, 0, Sent { body: 0, head: 0 }, now, log.escape, &mut out);
        }
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn upstream_times_per_try() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let tries = vec![
            // Refused: never connected, no header.
            TryTimes {
                start,
                connect: None,
                header: None,
                response: Some(ms(2)),
                sent: 0,
                received: 0,
                length: 0,
            },
            // The last try: its response time runs until the line.
            TryTimes {
                start: start + ms(2),
                connect: Some(ms(1)),
                header: Some(ms(1500)),
                response: None,
                sent: 0,
                received: 0,
                length: 0,
            },
        ];
        let now = start + ms(2) + ms(12_345);
        let r = record(
            "$upstream_connect_time|$upstream_header_time|$upstream_response_time|$status",
            tries,
        );
        assert_eq!(line(&r, now), "-, 0.001|-, 1.500|0.002, 12.345|502");
        let none = record("$upstream_connect_time|$upstream_addr|$status", Vec::new());
        assert_eq!(line(&none, now), "-|-|502");
    }

    #[test]
    fn not_found_is_empty_with_json_and_none() {
        let now = crate::clock::now();
        for (escape, want) in [("default", "-|-|-"), ("json", "||"), ("none", "||")] {
            let log = AccessLog::compile(
                &args(&[
                    &format!("escape={escape}"),
                    "$upstream_addr|$upstream_header_time|$upstream_status",
                ]),
                PathBuf::from("/dev/null"),
                &|_| None,
            )
            .expect("compiles");
            let r = Record {
                logs: logs(log),
                ..record("", Vec::new())
            };
            assert_eq!(line(&r, now), want, "escape={escape}");
        }
        let mut r = record("$upstream_addr", Vec::new());
        r.upstream_addr = "a\"b".to_owned();
        assert_eq!(line(&r, now), "a\\x22b");
    }

    /// Three logs of one location: each line has its own log's captures
    /// (escaped as its format says) and the shared status and size; an
    /// `if=` skips only its own log's line.
    #[test]
    fn each_log_renders_its_own_captures() {
        let (req, ()) = http::Request::builder()
            .uri("/p?a=%22q")
            .header("host", "h")
            .header("x", "q\"r")
            .body(())
            .expect("request")
            .into_parts();
        let head = crate::http::head::ParsedHead::parse(&req).expect("head");
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], 1).into();
        let vars = VarCtx {
            req: &req,
            head: &head,
            client: addr,
            peer: addr,
            local: addr,
            server_name: "",
            proxy: &crate::vars::ProxyName::NONE,
            conn: 1,
            requests: 1,
            status: 0,
            request_line: b"",
            original: None,
            maps: &[],
            captures: None,
            named: None,
            statics: None,
            upstream: None,
            answer: None,
        };
        let log = |format: &[&str], condition: Option<&str>| {
            let log = AccessLog::compile(&args(format), PathBuf::from("/dev/null"), &|_| None)
                .expect("compiles")
                .with_params(None, condition, &|_| None)
                .expect("condition");
            Arc::new(log)
        };
        let logs = Arc::new(
            AccessLogs::new(vec![
                log(&["$uri|$http_x|$status|$body_bytes_sent"], Some("$arg_a")),
                log(&["escape=json", "$http_x|$arg_a|$http_y|$uri"], None),
                log(&["$uri"], Some("$arg_b")),
                log(&["$arg_a"], None),
            ])
            .expect("logs"),
        );
        assert_eq!(logs.vars, 2 + 1 + 4 + 1 + 1 + 1);
        let mut r = logs.start(&vars, Instant::now());
        r.status = 201;
        let now = crate::clock::now();
        let mut base = 0;
        let mut lines = Vec::new();
        for log in logs.logs.iter() {
            lines.push(
                r.line(log, base, Sent { body: 7, head: 0 }, now)
                    .map(|l| String::from_utf8(l).expect("utf-8")),
            );
            base += log.vars;
        }
        assert_eq!(
            lines,
            [
                Some("/p|q\\x22r|201|7\n".to_owned()),
                Some("q\\\"r|%22q||/p\n".to_owned()),
                None,
                Some("%22q\n".to_owned()),
            ]
        );
        // The record is kept for the thread's next request, emptied: that
        // request's captures are its own.
        let (values, ends, at) = (r.values.clone(), r.ends.clone(), &*r as *const Record);
        r.upstream_addr.push_str("127.0.0.1:80");
        r.tries.start();
        r.recycle();
        let again = logs.start(&vars, Instant::now());
        assert_eq!(&*again as *const Record, at);
        assert_eq!((again.values.clone(), again.ends.clone()), (values, ends));
        assert_eq!(again.status, 0);
        assert!(again.upstream_addr.is_empty() && again.tries.is_empty());
        assert!(AccessLogs::new(Vec::new()).is_none());
    }

    #[test]
    fn escapes_as_nginx() {
        let mut b = b"ab\"c\\\x01\xff".to_vec();
        escape(Escape::Default, &mut b, 1);
        assert_eq!(b, b"ab\\x22c\\x5C\\x01\\xFF");
        let mut b = b"a\"\n\x01".to_vec();
        escape(Escape::Json, &mut b, 0);
        assert_eq!(b, b"a\\\"\\n\\u0001");
    }
}
