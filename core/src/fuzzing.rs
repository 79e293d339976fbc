//! The bodies of the fuzz targets (`fuzz/fuzz_targets/*.rs`, see
//! `docs/fuzzing.md`), here so that `core/tests/fuzz_corpus.rs` replays the
//! checked-in corpus through the very same code under `cargo test`, with no
//! fuzzer installed. Not an API: hidden, and it changes with the targets.
//!
//! Each function takes the fuzzer's bytes, must never panic, and checks a
//! few invariants of its own with `assert!` (a failed one is a finding).
//!
//! What the targets keep away from, so that a run stays on this machine:
//! host names are not resolved ([`interp::offline`]), the configuration's
//! directory and the modules directory are an empty directory, and a
//! configuration that could `include` or `load_module` a path outside it
//! (one with a `/`, see `reaches_out`) is skipped: a fuzzer that found
//! `include /*/*;` would read `/dev/zero`, which is no bug of waypost's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::request::Parts;
use http::{HeaderMap, Uri};
use waypost_module_api::ModuleRef;

use crate::conf::interp::{self, Env};
use crate::conf::ConfError;
use crate::http::head::ParsedHead;
use crate::http::proxy;
use crate::http::upstream_h1::Framing;
use crate::modules::loader::{LoadedModule, Loader};
use crate::runtime::{build::build, Action, Runtime};
use crate::vars::{self, Piece, Template, Var, VarCtx};

/// The configuration whose proxied locations the `upstream_headers` target
/// sends requests through: the default headers, `proxy_set_header` with
/// the variables a proxy config uses, and each way `proxy_pass` sets the
/// upstream URI.
pub const PROXY_CONF: &str = r#"
events {}
http {
    server {
        listen 127.0.0.1:8080;
        server_name fuzz.example.com;

        location / {
            proxy_pass http://127.0.0.1:9;
        }
        location /set/ {
            proxy_pass http://127.0.0.1:9/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host:$server_port;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Args "$args|$arg_a|$is_args|$cookie_sid";
            proxy_set_header X-Request "$request|$request_uri|$uri";
            proxy_set_header X-Client "$http_user_agent|$http_cookie|$remote_user";
            proxy_set_header X-Sizes "$content_length|$content_type";
            proxy_set_header Accept-Encoding "";
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Te $http_te;
        }
        location /api/ {
            proxy_pass http://127.0.0.1:9/v2/;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Original-URI $request_uri;
        }
        location /raw {
            proxy_pass http://127.0.0.1:9/a%20b;
        }
        location = /exact {
            proxy_pass http://localhost:9/other;
        }
    }
}
"#;

/// Headers the proxy never passes on as the client sent them
/// (`proxy::dropped`); one of them upstream must come from
/// `proxy_set_header`.
const DROPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "te",
    "expect",
    "upgrade",
    "transfer-encoding",
    "host",
];

/// What the targets share: round robin linked in as the default balancer,
/// an empty directory for the configuration, and the runtime of
/// [`PROXY_CONF`].
pub struct Harness {
    round_robin: Arc<LoadedModule>,
    dir: PathBuf,
    loader: Loader,
    proxy: Runtime,
}

impl Harness {
    /// `round_robin`: the round robin module's root,
    /// `Shims::<waypost_round_robin::RoundRobinModule>::root_module()`
    /// (the core cannot depend on the module crate).
    pub fn new(round_robin: ModuleRef) -> Result<Harness, ConfError> {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "waypost-fuzz-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| ConfError::bare(format!("mkdir() \"{}\" failed ({e})", dir.display())))?;
        // Nothing is ever loaded: module directives are unknown, and
        // load_module of a path outside `dir` is skipped.
        let loader = Loader::new(dir.join("private"));
        let round_robin = Arc::new(LoadedModule::linked(round_robin));
        let proxy = check(PROXY_CONF.as_bytes(), &dir, &loader, &round_robin)?;
        Ok(Harness {
            round_robin,
            dir,
            loader,
            proxy,
        })
    }

    /// Target `config`: the bytes as a main configuration file, through
    /// what `waypost -t` does (parse, post checks, runtime build). Errors
    /// are expected; a panic is a finding. `None`: skipped (it could read
    /// files outside the fuzz directory).
    pub fn config(&self, data: &[u8]) -> Option<Result<(), ConfError>> {
        if reaches_out(&String::from_utf8_lossy(data)) {
            return None;
        }
        Some(check(data, &self.dir, &self.loader, &self.round_robin).map(drop))
    }

    /// Target `template`: `TEMPLATE \0 REQUEST-HEAD [ADDRESSES]`. The
    /// template is compiled as `proxy_set_header` and `return` compile
    /// theirs and, when it compiles, evaluated against the request (the
    /// addresses and counters come from the bytes after the head).
    /// Returns the value, when the template compiled and the request is one
    /// the server takes.
    pub fn template(&self, data: &[u8]) -> Option<Vec<u8>> {
        let (text, rest) = match data.iter().position(|&c| c == 0) {
            Some(i) => (&data[..i], &data[i + 1..]),
            None => (data, &b""[..]),
        };
        let text = String::from_utf8_lossy(text);
        let compiled = Template::compile(&text);
        let (parts, _, extra, _) = request(rest)?;
        let head = ParsedHead::parse(&parts).ok()?;
        let mut bytes = Bytes(extra);
        let addrs = [bytes.addr(), bytes.addr(), bytes.addr()];
        let cx = VarCtx {
            req: &parts,
            head: &head,
            client: addrs[0],
            peer: addrs[1],
            local: addrs[2],
            server_name: "fuzz.example.com",
            proxy: match bytes.byte() & 1 {
                0 => &crate::vars::ProxyName::NONE,
                _ => &crate::vars::ProxyName::new("up", "80"),
            },
            conn: bytes.u64(),
            requests: bytes.u64(),
            // A `return` code: 0 to 999.
            status: bytes.u16() % 1000,
            request_line: b"",
            original: None,
            maps: &[],
            captures: None,
            named: None,
            statics: None,
            upstream: None,
            answer: None,
        };
        let value = compiled.ok().map(|template| {
            let value = template.eval(&cx);
            // The no-copy path a module's `eval` takes must agree.
            if let Some(slice) = template.as_slice(&cx) {
                assert_eq!(slice, &value[..], "as_slice and eval differ for {text:?}");
            }
            if let Some(literal) = template.as_literal() {
                assert_eq!(literal.as_bytes(), &value[..], "literal {text:?}");
            }
            value
        });
        // Each variable as a module's `variable` call and the access log
        // see it.
        if let Ok(pieces) = vars::scan(&text) {
            for piece in pieces {
                if let Piece::Var(name) = piece {
                    if let Ok(var) = Var::parse(name) {
                        let mut out = Vec::new();
                        var.eval(&cx, &mut out);
                        let _ = var.missing(&cx);
                        if let Some(slice) = var.slice(&cx) {
                            assert_eq!(slice, &out[..], "slice and eval differ for ${name}");
                        }
                    }
                }
            }
        }
        value
    }

    /// Target `upstream_headers`: `REQUEST-HEAD [ADDRESSES]` through the
    /// server of [`PROXY_CONF`] as a request reaches the proxy: the head
    /// checks, the location, then the upstream request's head as written
    /// for the upstream, which must read back as one valid request head
    /// (httparse) with the body framed once. Returns its target and
    /// headers, for a request the server takes.
    pub fn upstream_headers(&self, data: &[u8]) -> Option<(Uri, HeaderMap)> {
        let (parts, raw, extra, framing) = request(data)?;
        let head = ParsedHead::parse(&parts).ok()?;
        let server = self.proxy.listens.first()?.server(None);
        let (location, _) = server.locations.find(head.uri(&parts.uri))?;
        let Action::Proxy(p) = &location.action else {
            return None;
        };
        let mut bytes = Bytes(extra);
        let cx = VarCtx {
            req: &parts,
            head: &head,
            client: bytes.addr(),
            peer: bytes.addr(),
            local: bytes.addr(),
            server_name: &server.name,
            proxy: &p.name(),
            conn: bytes.u64(),
            requests: bytes.u64(),
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
        let uri = proxy::upstream_uri(&parts, &head, p, location, false);
        assert!(
            uri.path().starts_with('/'),
            "upstream target {uri} for {}",
            parts.uri
        );
        if let Some(replacement) = &p.uri {
            assert!(
                uri.path().starts_with(replacement.as_str()),
                "upstream target {uri} lost {replacement} for {}",
                parts.uri
            );
        }
        let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
        // A chunked body goes to an HTTP/1.0 upstream read whole, with its
        // length (here an empty one).
        let framing = match framing {
            Framing::Chunked if !p.http11 => Framing::Length(0),
            f => f,
        };
        let written = proxy::upstream_head(&parts, &raw, p, &cx, target, framing, None);
        let headers = read_back(written.bytes(), target);
        let lengths = headers.get_all("content-length").iter().count();
        let codings = headers.get_all("transfer-encoding").iter().count();
        match framing {
            Framing::Chunked => assert_eq!((lengths, codings), (0, 1), "chunked framing"),
            Framing::FastCgi => unreachable!("an HTTP request framed for FastCGI"),
            Framing::Length(n) => {
                assert_eq!((lengths, codings), (1, 0), "length framing");
                assert_eq!(headers["content-length"], n.to_string().as_str());
            }
            Framing::None => {
                assert_eq!(codings, 0, "a bodiless request framed");
                assert!(lengths <= 1, "two lengths without a body");
                if lengths == 1 {
                    assert_eq!(headers["content-length"], "0", "a length without a body");
                }
            }
        }
        for name in DROPPED {
            // A chunked body's Transfer-Encoding is the proxy's own,
            // checked above.
            if *name == "transfer-encoding" && framing == Framing::Chunked {
                continue;
            }
            if headers.contains_key(*name) {
                assert!(
                    p.headers.iter().any(|set| set.name.as_str() == *name),
                    "{name} passed upstream as the client sent it"
                );
            }
        }
        for set in &p.headers {
            let name = &set.name;
            let lines = p.headers.iter().filter(|s| s.name == name).count();
            assert!(
                headers.get_all(name).iter().count() <= lines,
                "{name} too often"
            );
        }
        Some((uri, headers))
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `-t` on `contents` as the file `dir/fuzz.conf`, round robin linked in.
fn check(
    contents: &[u8],
    dir: &Path,
    loader: &Loader,
    round_robin: &Arc<LoadedModule>,
) -> Result<Runtime, ConfError> {
    let env = Env {
        prefix: dir,
        modules_dir: dir,
        loader,
        globals: None,
    };
    let path = dir.join("fuzz.conf");
    let checked = interp::offline(|| interp::parse_contents(&path, contents, &env))?;
    let post = checked.post_check();
    let mut config = checked.into_config();
    if !config.modules.iter().any(|m| m.name == round_robin.name) {
        config.modules.push(Arc::clone(round_robin));
    }
    let runtime = build(config, None)?;
    post.map(|()| runtime)
}

/// Whether the configuration (its bytes as text: ASCII stays in place)
/// could name a file outside the fuzz directory for `include` or
/// `load_module`: a `/` before the `;` that would end the directive. No escape makes a `/` or a directive name, and a relative
/// path that has a `;` before its first `/` starts with a directory that
/// does not exist.
fn reaches_out(text: &str) -> bool {
    ["include", "load_module"].iter().any(|name| {
        text.match_indices(name).any(|(i, _)| {
            let rest = &text[i..];
            rest[..rest.find(';').unwrap_or(rest.len())].contains('/')
        })
    })
}

/// The request of a head as the server's connection loop makes it
/// (`http::h1::parse`), and the bytes after the head; `None` for a head it
/// refuses (explained without a panic) or that is not complete.
fn request(data: &[u8]) -> Option<(Parts, bytes::Bytes, &[u8], Framing)> {
    use crate::http::h1::parse;
    let head = match parse::parse(data, Default::default()) {
        Ok(head) => head?,
        Err(refusal) => {
            // Its log line is worked out from the same bytes.
            let why = crate::http::h1::explain::explain(data, Default::default(), refusal);
            assert!(why.message.starts_with("client "), "{}", why.message);
            return None;
        }
    };
    // The head's length is the head's as it came (a re-read one's copy
    // is longer), and the lines it dropped are found again for the log.
    assert!(data[..head.len].ends_with(b"\n"), "head length");
    if head.dropped {
        let names = crate::http::head::HeaderNames::default();
        assert!(!crate::http::h1::explain::dropped_lines(&head.raw, names).is_empty());
    }
    let framing = match head.framing {
        parse::Framing::None => Framing::None,
        parse::Framing::Length(n) => Framing::Length(n),
        parse::Framing::Chunked => Framing::Chunked,
    };
    Some((head.parts, head.raw, &data[head.len..], framing))
}

/// The headers of a request head written for an upstream, which must
/// parse whole, as one request for `target`.
fn read_back(written: &[u8], target: &str) -> HeaderMap {
    let mut slots = vec![httparse::EMPTY_HEADER; written.len() / 4 + 1];
    let mut req = httparse::Request::new(&mut slots);
    let parsed = req.parse(written);
    assert!(
        matches!(parsed, Ok(httparse::Status::Complete(n)) if n == written.len()),
        "the upstream head does not read back: {parsed:?} {:?}",
        String::from_utf8_lossy(written)
    );
    assert_eq!(req.path, Some(target), "upstream target");
    let mut headers = HeaderMap::new();
    for h in req.headers.iter() {
        let name = http::HeaderName::from_bytes(h.name.as_bytes()).expect("written name");
        let value = http::HeaderValue::from_bytes(h.value).expect("written value");
        headers.append(name, value);
    }
    headers
}

/// The fuzzer's bytes after the head, as numbers (zeros when short).
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&c, rest)) => {
                self.0 = rest;
                c
            }
            None => 0,
        }
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0; N];
        for c in &mut a {
            *c = self.byte();
        }
        a
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.array())
    }

    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.array())
    }

    /// One byte says v4 or v6, then the address and the port.
    fn addr(&mut self) -> SocketAddr {
        let ip = if self.byte() & 1 == 0 {
            IpAddr::V4(Ipv4Addr::from(self.array::<4>()))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.array::<16>()))
        };
        SocketAddr::new(ip, self.u16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_reaches_out() {
        assert!(reaches_out("include /etc/*;"));
        assert!(reaches_out("http { include ../x; }"));
        assert!(reaches_out("load_module \"/lib/x.so\";"));
        assert!(reaches_out("include\n# c\n  /x"));
        assert!(!reaches_out("include mime.types; location / {}"));
        assert!(!reaches_out("include \"a;/b\";"));
        assert!(!reaches_out("location /include { return 204; }"));
    }
}
