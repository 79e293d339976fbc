//! Access log lines: `log_format` compiled at config load, filled when a
//! response body is done (so `$body_bytes_sent` is what was really sent).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use http::Request;

pub const COMBINED: &str =
    "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\"";

#[derive(Debug, Clone, PartialEq)]
enum Field {
    Text(String),
    RemoteAddr,
    RemoteUser,
    TimeLocal,
    TimeIso8601,
    Msec,
    Request,
    Status,
    BodyBytesSent,
    RequestTime,
    UpstreamAddr,
    UpstreamStatus,
    RequestMethod,
    RequestUri,
    Uri,
    Host,
    Header(String),
}

/// A compiled `log_format` and the file it writes to.
#[derive(Debug)]
pub struct AccessLog {
    fields: Vec<Field>,
    path: Arc<PathBuf>,
    /// Request headers the format reads, captured per request.
    headers: Vec<String>,
}

impl AccessLog {
    /// Compiles `format`; `Err(name)` names an unknown variable.
    pub fn compile(format: &str, path: PathBuf) -> Result<AccessLog, String> {
        let mut fields = Vec::new();
        let mut headers = Vec::new();
        let mut rest = format;
        let mut text = String::new();
        while let Some(pos) = rest.find('$') {
            text.push_str(&rest[..pos]);
            rest = &rest[pos + 1..];
            let braced = rest.starts_with('{');
            let body = if braced { &rest[1..] } else { rest };
            let n = body
                .bytes()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
                .count();
            let name = &body[..n];
            rest = if braced {
                body[n..].strip_prefix('}').unwrap_or(&body[n..])
            } else {
                &body[n..]
            };
            let field = match name {
                "remote_addr" => Field::RemoteAddr,
                "remote_user" => Field::RemoteUser,
                "time_local" => Field::TimeLocal,
                "time_iso8601" => Field::TimeIso8601,
                "msec" => Field::Msec,
                "request" => Field::Request,
                "status" => Field::Status,
                "body_bytes_sent" | "bytes_sent" => Field::BodyBytesSent,
                "request_time" => Field::RequestTime,
                "upstream_addr" => Field::UpstreamAddr,
                "upstream_status" => Field::UpstreamStatus,
                "request_method" => Field::RequestMethod,
                "request_uri" => Field::RequestUri,
                "uri" => Field::Uri,
                "host" => Field::Host,
                _ => match name.strip_prefix("http_") {
                    Some(h) => {
                        let h = h.to_ascii_lowercase().replace('_', "-");
                        headers.push(h.clone());
                        Field::Header(h)
                    }
                    None => return Err(name.to_owned()),
                },
            };
            if !text.is_empty() {
                fields.push(Field::Text(std::mem::take(&mut text)));
            }
            fields.push(field);
        }
        text.push_str(rest);
        if !text.is_empty() {
            fields.push(Field::Text(text));
        }
        Ok(AccessLog {
            fields,
            path: Arc::new(path),
            headers,
        })
    }

    /// Captures what the line needs from the request head.
    pub fn start<B>(
        self: &Arc<Self>,
        req: &Request<B>,
        client: SocketAddr,
        started: Instant,
    ) -> Box<Record> {
        Box::new(Record {
            log: self.clone(),
            client,
            started,
            method: req.method().to_string(),
            uri: req
                .uri()
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
            version: req.version(),
            host: crate::vars::host_of(req.uri(), req.headers()).unwrap_or_default(),
            headers: self
                .headers
                .iter()
                .map(|h| {
                    req.headers()
                        .get(h.as_str())
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                })
                .collect(),
            status: 0,
            upstream_addr: String::new(),
            upstream_status: String::new(),
        })
    }
}

/// One request's access log entry in progress.
pub struct Record {
    log: Arc<AccessLog>,
    client: SocketAddr,
    started: Instant,
    method: String,
    uri: String,
    version: http::Version,
    host: String,
    headers: Vec<String>,
    pub status: u16,
    /// `$upstream_addr`: every try, ", "-separated.
    pub upstream_addr: String,
    pub upstream_status: String,
}

impl Record {
    /// Writes the line with the body bytes actually sent.
    pub fn finish(self: Box<Self>, sent: u64) {
        let mut line = String::with_capacity(160);
        let mut header = 0;
        for f in &self.log.fields {
            match f {
                Field::Text(t) => line.push_str(t),
                Field::RemoteAddr => {
                    let _ = write!(line, "{}", self.client.ip());
                }
                Field::RemoteUser => line.push('-'),
                Field::TimeLocal => line.push_str(&time_local()),
                Field::TimeIso8601 => line.push_str(&time_iso8601()),
                Field::Msec => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default();
                    let _ = write!(line, "{}.{:03}", now.as_secs(), now.subsec_millis());
                }
                Field::Request => {
                    let _ = write!(line, "{} {} {:?}", self.method, self.uri, self.version);
                }
                Field::Status => {
                    let _ = write!(line, "{}", self.status);
                }
                Field::BodyBytesSent => {
                    let _ = write!(line, "{sent}");
                }
                Field::RequestTime => {
                    let t = self.started.elapsed();
                    let _ = write!(line, "{}.{:03}", t.as_secs(), t.subsec_millis());
                }
                Field::UpstreamAddr => dash_if_empty(&mut line, &self.upstream_addr),
                Field::UpstreamStatus => dash_if_empty(&mut line, &self.upstream_status),
                Field::RequestMethod => line.push_str(&self.method),
                Field::RequestUri => line.push_str(&self.uri),
                Field::Uri => line.push_str(self.uri.split('?').next().unwrap_or("")),
                Field::Host => line.push_str(&self.host),
                Field::Header(_) => {
                    dash_if_empty(
                        &mut line,
                        self.headers.get(header).map_or("", |s| s.as_str()),
                    );
                    header += 1;
                }
            }
        }
        line.push('\n');
        crate::log::access::write(self.log.path.clone(), line);
    }
}

fn dash_if_empty(line: &mut String, s: &str) {
    line.push_str(if s.is_empty() { "-" } else { s });
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn offset(tm: &libc::tm) -> (char, i64, i64) {
    let off = tm.tm_gmtoff;
    let sign = if off < 0 { '-' } else { '+' };
    (sign, off.abs() / 3600, (off.abs() % 3600) / 60)
}

/// `22/Nov/2026:04:05:06 +0000`
fn time_local() -> String {
    let (tm, _) = crate::log::local_now();
    let (sign, h, m) = offset(&tm);
    format!(
        "{:02}/{}/{}:{:02}:{:02}:{:02} {sign}{h:02}{m:02}",
        tm.tm_mday,
        MONTHS[tm.tm_mon.clamp(0, 11) as usize],
        tm.tm_year + 1900,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// `2026-11-22T04:05:06+00:00`
fn time_iso8601() -> String {
    let (tm, _) = crate::log::local_now();
    let (sign, h, m) = offset(&tm);
    format!(
        "{}-{:02}-{:02}T{:02}:{:02}:{:02}{sign}{h:02}:{m:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}
