//! Access log lines: `log_format` compiled at config load, filled when a
//! response body is done (so `$body_bytes_sent` is what was really sent).
//!
//! Request variables are captured when the request starts (after realip,
//! so `$remote_addr` is the real client); the status, sizes, times and
//! upstream fields when the line is written.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

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
    RequestTime,
    UpstreamAddr,
    UpstreamStatus,
    /// A request variable, captured at the start (index into the
    /// record's values).
    Var(Var, usize),
    /// A filter module's variable (`$limit_req_status`), by the index of
    /// the filter in the runtime.
    Module(usize),
}

/// Resolves a filter module's variable name to its filter's index.
pub type ModuleVars<'a> = &'a dyn Fn(&str) -> Option<usize>;

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
    if let Some(i) = module_vars(&name.to_ascii_lowercase()) {
        return Ok(Field::Module(i));
    }
    Ok(match name.to_ascii_lowercase().as_str() {
        "time_local" => Field::TimeLocal,
        "time_iso8601" => Field::TimeIso8601,
        "msec" => Field::Msec,
        "status" => Field::Status,
        "body_bytes_sent" | "bytes_sent" => Field::BodyBytesSent,
        "request_time" => Field::RequestTime,
        "upstream_addr" => Field::UpstreamAddr,
        "upstream_status" => Field::UpstreamStatus,
        _ => Field::Var(Var::parse(name)?, 0),
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
            field(name, module_vars).map_err(|e| {
                let name = name.to_ascii_lowercase();
                match e {
                    NameError::Unknown => CompileError::Unknown(name),
                    NameError::Unsupported => CompileError::Unsupported(name),
                }
            })?;
        }
    }
    Ok(())
}

/// A compiled `log_format` and the file it writes to.
#[derive(Debug)]
pub struct AccessLog {
    fields: Vec<Field>,
    escape: Escape,
    path: Arc<PathBuf>,
    /// How many request variables a record captures.
    vars: usize,
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
        })
    }

    /// The predefined `combined` format.
    pub fn combined(path: PathBuf) -> AccessLog {
        AccessLog::compile(&[COMBINED.to_owned()], path, &|_| None)
            .unwrap_or_else(|_| unreachable!("the combined format compiles"))
    }

    /// Captures what the line needs from the request, as the variables
    /// see it (after realip).
    pub fn start(self: &Arc<Self>, vars: &VarCtx<'_>, started: Instant) -> Box<Record> {
        let mut values = Vec::new();
        let mut ends = Vec::with_capacity(self.vars);
        for f in &self.fields {
            if let Field::Var(v, _) = f {
                if v.missing(vars) {
                    values.push(b'-');
                } else {
                    let before = values.len();
                    v.eval(vars, &mut values);
                    escape(self.escape, &mut values, before);
                }
                ends.push(values.len());
            }
        }
        Box::new(Record {
            log: self.clone(),
            started,
            values,
            ends,
            status: 0,
            upstream_addr: String::new(),
            upstream_status: String::new(),
            module_values: Vec::new(),
        })
    }
}

/// Escapes `buf[from..]` in place, as `ngx_http_log_escape` or
/// `ngx_escape_json`.
fn escape(mode: Escape, buf: &mut Vec<u8>, from: usize) {
    let needs = |c: u8| match mode {
        Escape::Default => c < 0x20 || c == b'"' || c == b'\\' || c >= 0x7f,
        Escape::Json => c < 0x20 || c == b'"' || c == b'\\',
        Escape::None => false,
    };
    if !buf[from..].iter().any(|&c| needs(c)) {
        return;
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let raw = buf.split_off(from);
    for c in raw {
        if !needs(c) {
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

/// One request's access log entry in progress.
pub struct Record {
    log: Arc<AccessLog>,
    started: Instant,
    /// The captured variables, one after another (escaped).
    values: Vec<u8>,
    /// Where each captured value ends in `values`.
    ends: Vec<usize>,
    pub status: u16,
    /// `$upstream_addr`: every try, ", "-separated.
    pub upstream_addr: String,
    pub upstream_status: String,
    /// Filter modules' variable values: (filter index, value).
    pub module_values: Vec<(usize, &'static str)>,
}

impl Record {
    /// Writes the line with the body bytes actually sent.
    pub fn finish(&self, sent: u64) {
        let mut line: Vec<u8> = Vec::with_capacity(160 + self.values.len());
        let mut text = String::new();
        for f in &self.log.fields {
            text.clear();
            match f {
                Field::Text(t) => line.extend_from_slice(t.as_bytes()),
                Field::TimeLocal => line.extend_from_slice(crate::vars::time_local().as_bytes()),
                Field::TimeIso8601 => {
                    line.extend_from_slice(crate::vars::time_iso8601().as_bytes())
                }
                Field::Msec => line.extend_from_slice(crate::vars::msec().as_bytes()),
                Field::Status => {
                    let _ = write!(text, "{:03}", self.status);
                }
                Field::BodyBytesSent => {
                    let _ = write!(text, "{sent}");
                }
                Field::RequestTime => {
                    let t = self.started.elapsed();
                    let _ = write!(text, "{}.{:03}", t.as_secs(), t.subsec_millis());
                }
                Field::UpstreamAddr => dash_if_empty(&mut text, &self.upstream_addr),
                Field::UpstreamStatus => dash_if_empty(&mut text, &self.upstream_status),
                Field::Var(_, i) => {
                    let start = if *i == 0 { 0 } else { self.ends[i - 1] };
                    line.extend_from_slice(&self.values[start..self.ends[*i]]);
                }
                Field::Module(f) => {
                    let value = self
                        .module_values
                        .iter()
                        .find(|(i, _)| i == f)
                        .map_or("", |(_, v)| *v);
                    dash_if_empty(&mut text, value);
                }
            }
            line.extend_from_slice(text.as_bytes());
        }
        line.push(b'\n');
        crate::log::access::write(self.log.path.clone(), line);
    }
}

fn dash_if_empty(line: &mut String, s: &str) {
    line.push_str(if s.is_empty() { "-" } else { s });
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
    fn escapes_as_nginx() {
        let mut b = b"ab\"c\\\x01\xff".to_vec();
        escape(Escape::Default, &mut b, 1);
        assert_eq!(b, b"ab\\x22c\\x5C\\x01\\xFF");
        let mut b = b"a\"\n\x01".to_vec();
        escape(Escape::Json, &mut b, 0);
        assert_eq!(b, b"a\\\"\\n\\u0001");
    }
}
