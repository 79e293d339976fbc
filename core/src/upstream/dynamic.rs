//! `proxy_pass` with variables (`proxy_pass http://$backend;`): the URL
//! is evaluated for each request and names its upstream, as nginx's
//! `ngx_http_proxy_eval` and `ngx_http_upstream_init_request` find it:
//!
//! 1. an upstream of the configuration whose host is the value's (without
//!    case) and whose port is the value's — an `upstream` block has none,
//!    so the value must not give one;
//! 2. else an address (`127.0.0.1:8080`, `[::1]`): one peer, as nginx's
//!    round-robin peer made for the request, with no kept connections;
//! 3. else a name to resolve, which needs a `resolver`.
//!
//! What an address makes is kept (up to [`MADE`] addresses), so the
//! balancer's `init_upstream` does not run for every request.
//!
//! `fastcgi_pass` with variables (`fastcgi_pass $php;`) is found the same
//! way from a value without a scheme (`ngx_http_fastcgi_eval`): an
//! upstream's name, `HOST:PORT` or `unix:PATH`, with no default port.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::conf::interp::{
    implicit_upstream, inet_addr, parse_url, proxy_name, unix_peer, ParsedUrl,
};
use crate::conf::syntax::Loc;
use crate::modules::loader::LoadedModule;
use crate::upstream::addr::PeerAddr;
use crate::upstream::resolver::Resolver;
use crate::upstream::Upstream;
use crate::vars::{Template, VarCtx};

/// Addresses whose upstreams are kept; past it the list starts again.
const MADE: usize = 64;

/// The upstreams of a configuration a value can name, in nginx's order:
/// host (lowercase), port (0 for an `upstream` block) and the upstream.
pub type Names = Arc<[(Box<str>, u16, Arc<Upstream>)]>;

/// A location's `proxy_pass` with variables.
pub struct DynamicPass {
    url: Template,
    /// `fastcgi_pass`: the value has no scheme.
    fastcgi: bool,
    /// `resolver` in effect at the location, for names.
    resolver: Option<Arc<Resolver>>,
    names: Names,
    /// What upstreams made for addresses are built with.
    balancer: Arc<LoadedModule>,
    workers: usize,
    loc: Loc,
    made: ArcSwap<Vec<Made>>,
}

/// `$proxy_port`'s text.
pub type Port = std::borrow::Cow<'static, str>;

/// A host that is an address (`127.0.0.1`, `[::1]`), as nginx reads one.
fn literal_ip(host: &str) -> Option<IpAddr> {
    match host.strip_prefix('[') {
        Some(v6) => v6
            .strip_suffix(']')
            .and_then(|a| a.parse().ok())
            .map(IpAddr::V6),
        None => inet_addr(host).map(IpAddr::V4),
    }
}

/// An upstream made for addresses a value gave (or a name resolved to).
type Made = (Box<[PeerAddr]>, Arc<Upstream>);

/// Where this request goes.
pub struct Chosen {
    pub upstream: Arc<Upstream>,
    /// `$proxy_host`: the host, and the port unless it is the scheme's.
    pub host: Box<str>,
    /// `$proxy_port` (`80` or `443` without an allocation)
    pub port: Port,
    /// The URI part of the value: sent as it is (`None`: the request's).
    pub uri: Option<Box<str>>,
    /// `https://`.
    pub tls: bool,
}

/// What a value named.
pub enum Choice {
    Chosen(Chosen),
    /// A name to ask the `resolver` for.
    Resolve(Lookup),
    Failed(NotChosen),
}

impl Choice {
    /// `$proxy_host` and `$proxy_port` of the request, known before any
    /// name is resolved: owned, as the choice itself goes on to be
    /// resolved.
    pub fn owned_name(&self) -> (Box<str>, Port) {
        let (host, port) = match self {
            Choice::Chosen(c) => (&c.host, &c.port),
            Choice::Resolve(l) => (&l.host, &l.port_text),
            Choice::Failed(e) => (&e.host, &e.port),
        };
        (host.clone(), port.clone())
    }
}

/// A name [`DynamicPass::resolve`] looks up.
pub struct Lookup {
    name: String,
    port: u16,
    authority: String,
    host: Box<str>,
    port_text: Port,
    uri: Option<Box<str>>,
    tls: bool,
}

/// Why a value names no upstream: nginx's line (logged at `error`), the
/// status the request is answered with, and `$proxy_host` when known.
#[derive(Debug)]
pub struct NotChosen {
    pub message: String,
    pub status: u16,
    pub host: Box<str>,
    pub port: Port,
}

impl DynamicPass {
    pub fn new(
        url: Template,
        fastcgi: bool,
        resolver: Option<Arc<Resolver>>,
        names: Names,
        balancer: Arc<LoadedModule>,
        workers: usize,
        loc: Loc,
    ) -> DynamicPass {
        DynamicPass {
            url,
            fastcgi,
            resolver,
            names,
            balancer,
            workers,
            loc,
            made: ArcSwap::from_pointee(Vec::new()),
        }
    }

    /// The upstream this request's value names, or the name to resolve.
    pub fn choose(&self, vars: &VarCtx<'_>) -> Choice {
        let value = self.url.eval(vars);
        let value = String::from_utf8_lossy(&value);
        if self.fastcgi {
            return self.choose_fastcgi(&value);
        }
        let failed = |message: String, status: u16, host: &str, port: &Port| {
            Choice::Failed(NotChosen {
                message,
                status,
                host: host.into(),
                port: port.clone(),
            })
        };
        // nginx wants a byte after the prefix (`proxy.len > 7`).
        let (rest, port, tls) = match (value.get(..7), value.get(..8)) {
            (Some(p), _) if p.eq_ignore_ascii_case("http://") && value.len() > 7 => {
                (&value[7..], 80, false)
            }
            (_, Some(p)) if p.eq_ignore_ascii_case("https://") && value.len() > 8 => {
                (&value[8..], 443, true)
            }
            _ => {
                return failed(
                    format!("invalid URL prefix in \"{value}\""),
                    500,
                    "",
                    &Port::Borrowed(""),
                )
            }
        };
        let url = match parse_url(rest, port, true) {
            Ok(url) => url,
            Err(e) => {
                return failed(
                    format!("{e} in upstream \"{rest}\""),
                    500,
                    "",
                    &Port::Borrowed(""),
                )
            }
        };
        let authority = &rest[..rest.len() - url.uri.as_ref().map_or(0, String::len)];
        let (host, port_text) = proxy_name(authority, &url, tls);
        let host: Box<str> = host.into();
        // nginx sends `/?a` for a URI part that is only `?a`.
        let uri = url.uri.as_deref().map(|u| match u.starts_with('?') {
            true => format!("/{u}").into_boxed_str(),
            false => u.into(),
        });
        let named = self.named(&url);
        let upstream = match named {
            Some(upstream) => upstream.clone(),
            None => {
                let Some(ip) = literal_ip(&url.host) else {
                    if self.resolver.is_none() {
                        let message = format!("no resolver defined to resolve {}", url.host);
                        return failed(message, 502, &host, &port_text);
                    }
                    // The upstream is made once the addresses are known.
                    return Choice::Resolve(Lookup {
                        name: url.host,
                        port: url.port,
                        authority: authority.to_owned(),
                        host,
                        port_text,
                        uri,
                        tls,
                    });
                };
                match self.made_for(
                    authority,
                    vec![PeerAddr::Inet(SocketAddr::new(ip, url.port))],
                ) {
                    Ok(up) => up,
                    Err(e) => return failed(e, 500, &host, &port_text),
                }
            }
        };
        Choice::Chosen(Chosen {
            upstream,
            host,
            port: port_text,
            uri,
            tls,
        })
    }

    /// What a `fastcgi_pass` value names, as nginx's
    /// `ngx_http_fastcgi_eval` and `ngx_http_upstream_init_request` find
    /// it: an upstream of the configuration, else an address, else a name
    /// to resolve; an address or a name needs a port.
    fn choose_fastcgi(&self, value: &str) -> Choice {
        let failed = |message: String, status: u16| {
            Choice::Failed(NotChosen {
                message,
                status,
                host: "".into(),
                port: Port::Borrowed(""),
            })
        };
        let chosen = |upstream: Arc<Upstream>| {
            Choice::Chosen(Chosen {
                upstream,
                host: "".into(),
                port: Port::Borrowed(""),
                uri: None,
                tls: false,
            })
        };
        if let Some(unix) = unix_peer(value) {
            return match unix
                .map_err(str::to_owned)
                .and_then(|addr| self.made_for(value, vec![addr]))
            {
                Ok(up) => chosen(up),
                Err(e) => failed(format!("{e} in upstream \"{value}\""), 500),
            };
        }
        // (No URI part, as nginx parses it: a `/` or `?` is a bad host.)
        let url = match parse_url(value, 0, false) {
            Ok(url) => url,
            Err(e) => return failed(format!("{e} in upstream \"{value}\""), 500),
        };
        let named = self.named(&url);
        if let Some(upstream) = named {
            return chosen(upstream.clone());
        }
        if url.port == 0 {
            return failed(format!("no port in upstream \"{}\"", url.host), 500);
        }
        match literal_ip(&url.host) {
            Some(ip) => {
                match self.made_for(value, vec![PeerAddr::Inet(SocketAddr::new(ip, url.port))]) {
                    Ok(up) => chosen(up),
                    Err(e) => failed(e, 500),
                }
            }
            None if self.resolver.is_none() => {
                failed(format!("no resolver defined to resolve {}", url.host), 502)
            }
            None => Choice::Resolve(Lookup {
                name: url.host,
                port: url.port,
                authority: value.to_owned(),
                host: "".into(),
                port_text: Port::Borrowed(""),
                uri: None,
                tls: false,
            }),
        }
    }

    /// The upstream of the configuration a value's host and port name:
    /// an `upstream` block has no port, so the value must not give one.
    fn named(&self, url: &ParsedUrl) -> Option<&Arc<Upstream>> {
        self.names
            .iter()
            .find(|(name, port, _)| {
                let port_matches = match *port {
                    0 => url.no_port,
                    p => p == url.port,
                };
                port_matches && name.eq_ignore_ascii_case(&url.host)
            })
            .map(|(_, _, upstream)| upstream)
    }

    /// A name's upstream, once the `resolver` gave its addresses.
    pub async fn resolve(&self, lookup: Lookup) -> Result<Chosen, NotChosen> {
        let Lookup {
            name,
            port,
            authority,
            host,
            port_text,
            uri,
            tls,
        } = lookup;
        let failed = |message: String, status: u16| NotChosen {
            message,
            status,
            host: host.clone(),
            port: port_text.clone(),
        };
        let Some(resolver) = &self.resolver else {
            return Err(failed(
                format!("no resolver defined to resolve {name}"),
                502,
            ));
        };
        let addrs: Vec<PeerAddr> = match resolver.resolve(&name).await {
            Ok(ips) => ips
                .into_iter()
                .map(|ip| PeerAddr::Inet(SocketAddr::new(ip, port)))
                .collect(),
            Err(why) => return Err(failed(format!("{name} could not be resolved {why}"), 502)),
        };
        let upstream = self
            .made_for(&authority, addrs)
            .map_err(|e| failed(e, 500))?;
        Ok(Chosen {
            upstream,
            host,
            port: port_text,
            uri,
            tls,
        })
    }

    /// The upstream of `addrs`: kept from an earlier request, or made.
    fn made_for(&self, authority: &str, addrs: Vec<PeerAddr>) -> Result<Arc<Upstream>, String> {
        // One entry whatever order the name server gave them in.
        let mut key = addrs.clone();
        key.sort_unstable_by(|a, b| match (a, b) {
            (PeerAddr::Inet(a), PeerAddr::Inet(b)) => a.cmp(b),
            (PeerAddr::Unix(a), PeerAddr::Unix(b)) => a.cmp(b),
            (PeerAddr::Inet(_), PeerAddr::Unix(_)) => std::cmp::Ordering::Less,
            (PeerAddr::Unix(_), PeerAddr::Inet(_)) => std::cmp::Ordering::Greater,
        });
        if let Some((_, up)) = self.made.load().iter().find(|(a, _)| **a == *key) {
            return Ok(up.clone());
        }
        let up = self.make(authority, addrs)?;
        self.made.rcu(|made| {
            let mut made = match made.len() >= MADE {
                true => Vec::new(),
                false => Vec::clone(made),
            };
            made.push((key.clone().into(), up.clone()));
            made
        });
        Ok(up)
    }

    /// nginx's `ngx_http_upstream_create_round_robin_peer`: one peer.
    fn make(&self, authority: &str, addrs: Vec<PeerAddr>) -> Result<Arc<Upstream>, String> {
        let mut conf = implicit_upstream(authority, &self.loc, addrs);
        // nginx makes these peers for each request: a failure is not
        // remembered for the next one (a restarted backend is tried at
        // once), so none is counted here.
        for peer in &mut conf.peers {
            peer.max_fails = 0;
        }
        let maps = crate::map::MapNames::new(&[], &[]);
        crate::runtime::build::upstream(&conf, self.balancer.clone(), self.workers, &maps)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    }
}
