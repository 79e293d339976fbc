//! Variables and compiled templates (`"$host$uri"`, `${arg_a}x`).
//!
//! A template is split into literal and variable parts once, at config
//! load; evaluating it walks the parts and copies slices of the request.

use std::fmt::Write as _;
use std::net::SocketAddr;

use http::request::Parts;

/// What a variable can read: the request head and the connection.
pub struct VarCtx<'a> {
    pub req: &'a Parts,
    pub client: SocketAddr,
    pub local: SocketAddr,
    pub server_name: &'a str,
    /// `$proxy_host`
    pub proxy_host: &'a str,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Var {
    RemoteAddr,
    RemotePort,
    BinaryRemoteAddr,
    RequestUri,
    Uri,
    Args,
    Arg(String),
    Http(String),
    Cookie(String),
    Host,
    Scheme,
    RequestMethod,
    ServerPort,
    ServerAddr,
    ServerName,
    ServerProtocol,
    ProxyHost,
    ProxyAddXForwardedFor,
}

impl Var {
    /// The variable called `name` (without `$`), or `None` if unknown.
    pub fn parse(name: &str) -> Option<Var> {
        let lower = |s: &str| s.to_ascii_lowercase().replace('_', "-");
        Some(match name {
            "remote_addr" => Var::RemoteAddr,
            "remote_port" => Var::RemotePort,
            "binary_remote_addr" => Var::BinaryRemoteAddr,
            "request_uri" => Var::RequestUri,
            "uri" | "document_uri" => Var::Uri,
            "args" | "query_string" => Var::Args,
            "host" => Var::Host,
            "scheme" => Var::Scheme,
            "request_method" => Var::RequestMethod,
            "server_port" => Var::ServerPort,
            "server_addr" => Var::ServerAddr,
            "server_name" => Var::ServerName,
            "server_protocol" => Var::ServerProtocol,
            "proxy_host" => Var::ProxyHost,
            "proxy_add_x_forwarded_for" => Var::ProxyAddXForwardedFor,
            _ => {
                if let Some(a) = name.strip_prefix("arg_") {
                    Var::Arg(a.to_owned())
                } else if let Some(h) = name.strip_prefix("http_") {
                    Var::Http(lower(h))
                } else if let Some(c) = name.strip_prefix("cookie_") {
                    Var::Cookie(c.to_owned())
                } else {
                    return None;
                }
            }
        })
    }

    /// The value when it is a slice of the request, with no copy.
    pub fn slice<'r>(&self, cx: &VarCtx<'r>) -> Option<&'r str> {
        let req = cx.req;
        Some(match self {
            Var::RequestUri => req.uri.path_and_query().map_or("/", |p| p.as_str()),
            Var::Uri => req.uri.path(),
            Var::Args => req.uri.query().unwrap_or(""),
            Var::Arg(name) => arg(req.uri.query().unwrap_or(""), name),
            Var::Cookie(name) => cookie(req, name),
            Var::RequestMethod => req.method.as_str(),
            Var::ServerName => cx.server_name,
            Var::ProxyHost => cx.proxy_host,
            Var::Http(name) => {
                let mut values = req.headers.get_all(name.as_str()).iter();
                let first = values.next();
                if values.next().is_some() {
                    return None;
                }
                first.map_or(Some(""), |v| v.to_str().ok())?
            }
            _ => return None,
        })
    }

    /// Appends the value to `out`.
    pub fn eval(&self, cx: &VarCtx<'_>, out: &mut String) {
        let req = cx.req;
        match self {
            Var::RemoteAddr => {
                let _ = write!(out, "{}", cx.client.ip());
            }
            Var::RemotePort => {
                let _ = write!(out, "{}", cx.client.port());
            }
            Var::BinaryRemoteAddr => match cx.client.ip() {
                std::net::IpAddr::V4(v4) => v4.octets().iter().for_each(|&b| out.push(b as char)),
                std::net::IpAddr::V6(v6) => v6.octets().iter().for_each(|&b| out.push(b as char)),
            },
            Var::RequestUri => out.push_str(req.uri.path_and_query().map_or("/", |p| p.as_str())),
            Var::Uri => out.push_str(req.uri.path()),
            Var::Args => out.push_str(req.uri.query().unwrap_or("")),
            Var::Arg(name) => out.push_str(arg(req.uri.query().unwrap_or(""), name)),
            Var::Http(name) => {
                let mut first = true;
                for v in req.headers.get_all(name.as_str()) {
                    if !first {
                        out.push_str(if name == "cookie" { "; " } else { ", " });
                    }
                    first = false;
                    out.push_str(v.to_str().unwrap_or(""));
                }
            }
            Var::Cookie(name) => out.push_str(cookie(req, name)),
            Var::Host => out.push_str(&host(req).unwrap_or_else(|| cx.server_name.to_owned())),
            Var::Scheme => out.push_str("http"),
            Var::RequestMethod => out.push_str(req.method.as_str()),
            Var::ServerPort => {
                let _ = write!(out, "{}", cx.local.port());
            }
            Var::ServerAddr => {
                let _ = write!(out, "{}", cx.local.ip());
            }
            Var::ServerName => out.push_str(cx.server_name),
            Var::ServerProtocol => {
                let _ = write!(out, "{:?}", req.version);
            }
            Var::ProxyHost => out.push_str(cx.proxy_host),
            Var::ProxyAddXForwardedFor => {
                if let Some(v) = req
                    .headers
                    .get("x-forwarded-for")
                    .and_then(|v| v.to_str().ok())
                {
                    out.push_str(v);
                    out.push_str(", ");
                }
                let _ = write!(out, "{}", cx.client.ip());
            }
        }
    }
}

/// `$host`: the Host header without port, lowercased.
pub fn host(req: &Parts) -> Option<String> {
    host_of(&req.uri, &req.headers)
}

/// `$host` from a URI and headers.
pub fn host_of(uri: &http::Uri, headers: &http::HeaderMap) -> Option<String> {
    let h = uri.host().or_else(|| {
        headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
    })?;
    let h = if h.starts_with('[') {
        h.find(']').map_or(h, |e| &h[..=e])
    } else {
        h.rsplit_once(':').map_or(h, |(a, _)| a)
    };
    Some(h.to_ascii_lowercase())
}

/// The value of query argument `name` (nginx compares names
/// case-insensitively and does not unescape).
pub fn arg<'q>(query: &'q str, name: &str) -> &'q str {
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k.eq_ignore_ascii_case(name) {
            return v;
        }
    }
    ""
}

fn cookie<'r>(req: &'r Parts, name: &str) -> &'r str {
    for header in req.headers.get_all(http::header::COOKIE) {
        let Ok(s) = header.to_str() else { continue };
        for c in s.split(';') {
            if let Some((k, v)) = c.trim().split_once('=') {
                if k == name {
                    return v;
                }
            }
        }
    }
    ""
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Var(Var),
}

/// A compiled template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Compiles `text`; `Err(name)` names an unknown variable, for nginx's
    /// `unknown "name" variable`.
    pub fn compile(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(pos) = rest.find('$') {
            lit.push_str(&rest[..pos]);
            rest = &rest[pos + 1..];
            let (name, after) = if let Some(inner) = rest.strip_prefix('{') {
                match inner.find('}') {
                    Some(end) => (&inner[..end], &inner[end + 1..]),
                    None => {
                        return Err(format!(
                            "the closing bracket in \"{}\" variable is missing",
                            inner
                        ))
                    }
                }
            } else {
                let n = rest
                    .bytes()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
                    .count();
                (&rest[..n], &rest[n..])
            };
            if name.is_empty() {
                return Err("invalid variable name".to_owned());
            }
            let var = Var::parse(name).ok_or_else(|| name.to_owned())?;
            if !lit.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut lit)));
            }
            parts.push(Part::Var(var));
            rest = after;
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Text(lit));
        }
        Ok(Template { parts })
    }

    /// The template's text if it has no variables.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// The value with no copy, when the template is a single variable
    /// that is a slice of the request.
    pub fn as_slice<'r>(&self, cx: &VarCtx<'r>) -> Option<&'r str> {
        match self.parts.as_slice() {
            [Part::Var(v)] => v.slice(cx),
            _ => None,
        }
    }

    pub fn eval_into(&self, cx: &VarCtx<'_>, out: &mut String) {
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => v.eval(cx, out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_templates() {
        let t = Template::compile("$host$uri").expect("compiles");
        assert_eq!(t.parts, vec![Part::Var(Var::Host), Part::Var(Var::Uri)]);
        let t = Template::compile("${arg_a}x").expect("compiles");
        assert_eq!(
            t.parts,
            vec![Part::Var(Var::Arg("a".into())), Part::Text("x".into())]
        );
        assert_eq!(Template::compile("$nosuch"), Err("nosuch".to_owned()));
        assert_eq!(
            Template::compile("plain").expect("compiles").as_literal(),
            Some("plain")
        );
    }

    #[test]
    fn args() {
        assert_eq!(arg("a=1&b=2", "b"), "2");
        assert_eq!(arg("a=1&B=2", "b"), "2");
        assert_eq!(arg("a", "a"), "");
        assert_eq!(arg("", "a"), "");
    }
}
