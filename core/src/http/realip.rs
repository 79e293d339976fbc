//! nginx's `ngx_http_realip_module`: when the connection comes from a
//! trusted address (`set_real_ip_from`), the client address is taken from
//! a request header (`real_ip_header`, X-Real-IP by default), optionally
//! walking X-Forwarded-For from the right past trusted proxies
//! (`real_ip_recursive`).
//!
//! nginx runs it twice: in the post-read phase with the server's settings,
//! and, when that did not change the address, in the pre-access phase with
//! the location's. A `return` answers in the rewrite phase, between the
//! two, so only the server's settings apply to it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use http::header::{HeaderMap, HeaderName};

/// An address or network, as nginx's `ngx_cidr_t`: one
/// `set_real_ip_from`, or the address of an `allow` or `deny` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cidr {
    V4 {
        addr: u32,
        mask: u32,
    },
    V6 {
        addr: [u8; 16],
        mask: [u8; 16],
    },
    /// `unix:`, which no TCP connection matches.
    Unix,
}

impl Cidr {
    /// Whether `ip` is in the network; an address of the other family
    /// never is (callers map IPv4-mapped IPv6 addresses first, each as its
    /// nginx module does).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Cidr::V4 { addr, mask }, IpAddr::V4(v4)) => u32::from(v4) & mask == *addr,
            (Cidr::V6 { addr, mask }, IpAddr::V6(v6)) => {
                let o = v6.octets();
                (0..16).all(|i| o[i] & mask[i] == addr[i])
            }
            _ => false,
        }
    }
}

/// Where the address comes from (`real_ip_header`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `X-Real-IP` (the default): the first such header.
    XRealIp,
    /// `X-Forwarded-For`: every such header, the last one first.
    XForwardedFor,
    /// Another header, by name without case (the first one); `None` for a
    /// name no header can have.
    Header(Option<HeaderName>),
    /// `proxy_protocol`: the client address of the connection's PROXY
    /// protocol header, with its port (none without one: nginx's
    /// declined).
    ProxyProtocol,
}

impl Source {
    /// `real_ip_header`'s value, compared as nginx does: exactly
    /// `X-Real-IP`, `X-Forwarded-For` or `proxy_protocol`; anything else
    /// (`x-real-ip` included) names a header.
    pub fn parse(value: &str) -> Source {
        match value {
            "X-Real-IP" => Source::XRealIp,
            "X-Forwarded-For" => Source::XForwardedFor,
            "proxy_protocol" => Source::ProxyProtocol,
            other => Source::Header(HeaderName::from_bytes(other.as_bytes()).ok()),
        }
    }
}

/// The merged realip settings of a server or location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealIp {
    pub from: Vec<Cidr>,
    pub source: Source,
    pub recursive: bool,
}

/// `ngx_http_get_forwarded_addr`'s outcomes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rc {
    Declined,
    Ok,
    Done,
}

impl RealIp {
    /// The client address the module sets for a connection from `peer`,
    /// or `None` when it leaves it alone. The port is the header's, 0 when
    /// it gave none (nginx's `$remote_port` is then empty).
    pub fn apply(
        &self,
        peer: SocketAddr,
        headers: &HeaderMap,
        extensions: &http::Extensions,
    ) -> Option<SocketAddr> {
        let mut addr = peer;
        let rc = match &self.source {
            Source::ProxyProtocol => {
                let pp = extensions.get::<crate::http::proxy_protocol::ProxyProtocol>()?;
                let rc = self.internal(&mut addr, pp.0.src_addr.as_bytes());
                addr.set_port(pp.0.src_port);
                rc
            }
            Source::XForwardedFor => {
                let values = headers.get_all("x-forwarded-for");
                let mut rc = Rc::Declined;
                let mut found = false;
                // The last header first.
                for value in values.iter().rev() {
                    rc = self.internal(&mut addr, value.as_bytes());
                    if !self.recursive {
                        break;
                    }
                    if rc == Rc::Declined && found {
                        rc = Rc::Done;
                        break;
                    }
                    if rc != Rc::Ok {
                        break;
                    }
                    found = true;
                }
                rc
            }
            Source::XRealIp => self.internal(&mut addr, headers.get("x-real-ip")?.as_bytes()),
            Source::Header(name) => {
                self.internal(&mut addr, headers.get(name.as_ref()?)?.as_bytes())
            }
        };
        (rc != Rc::Declined).then_some(addr)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        // ngx_cidr_match: an IPv4-mapped address matches IPv4 networks.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        self.from.iter().any(|t| t.contains(ip))
    }

    /// `ngx_http_get_forwarded_addr_internal`: the last address of one
    /// header value (items separated by spaces or commas), and with
    /// `recursive` the ones before it while the current one is trusted.
    fn internal(&self, addr: &mut SocketAddr, xff: &[u8]) -> Rc {
        if !self.trusts(addr.ip()) {
            return Rc::Declined;
        }
        if xff.is_empty() {
            return Rc::Declined;
        }
        let sep = |c: u8| c == b' ' || c == b',';
        let mut p = xff.len() - 1;
        let mut len = xff.len();
        while p > 0 && sep(xff[p]) {
            p -= 1;
            len -= 1;
        }
        while p > 0 {
            if sep(xff[p]) {
                p += 1;
                break;
            }
            p -= 1;
        }
        let Some(parsed) = parse_addr_port(&xff[p..len]) else {
            return Rc::Declined;
        };
        *addr = parsed;
        if self.recursive && p > 0 {
            return match self.internal(addr, &xff[..p - 1]) {
                Rc::Declined => Rc::Done,
                rc => rc,
            };
        }
        Rc::Ok
    }
}

/// `ngx_inet_addr`: a dotted quad; empty parts count as 0. The broadcast
/// address is refused: it is nginx's INADDR_NONE.
pub fn inet_addr(text: &[u8]) -> Option<Ipv4Addr> {
    let mut addr: u32 = 0;
    let mut octet: u32 = 0;
    let mut n = 0;
    for &c in text {
        match c {
            b'0'..=b'9' => {
                octet = octet * 10 + u32::from(c - b'0');
                if octet > 255 {
                    return None;
                }
            }
            b'.' => {
                addr = addr << 8 | octet;
                octet = 0;
                n += 1;
            }
            _ => return None,
        }
    }
    if n != 3 {
        return None;
    }
    let addr = addr << 8 | octet;
    (addr != u32::MAX).then(|| Ipv4Addr::from(addr))
}

/// `ngx_inet6_addr`: nginx's own IPv6 text parser.
pub fn inet6_addr(p: &[u8]) -> Option<Ipv6Addr> {
    if p.is_empty() {
        return None;
    }
    let mut addr = [0u8; 16];
    let mut a = 0;
    let mut zero: Option<usize> = None;
    let mut digit: Option<usize> = None;
    let mut nibbles = 0;
    let mut word: u32 = 0;
    let mut n = 8;
    let mut i = usize::from(p[0] == b':');
    while i < p.len() {
        let c = p[i];
        i += 1;
        if c == b':' {
            if nibbles > 0 {
                digit = Some(i);
                addr[a] = (word >> 8) as u8;
                addr[a + 1] = word as u8;
                a += 2;
                n -= 1;
                if n > 0 {
                    nibbles = 0;
                    word = 0;
                    continue;
                }
            } else if zero.is_none() {
                digit = Some(i);
                zero = Some(a);
                continue;
            }
            return None;
        }
        if c == b'.' && nibbles > 0 {
            let d = digit?;
            if n < 2 {
                return None;
            }
            word = u32::from(inet_addr(&p[d..])?);
            addr[a] = (word >> 24) as u8;
            addr[a + 1] = (word >> 16) as u8;
            a += 2;
            n -= 1;
            break;
        }
        nibbles += 1;
        if nibbles > 4 {
            return None;
        }
        let v = match c {
            b'0'..=b'9' => c - b'0',
            _ if (b'a'..=b'f').contains(&(c | 0x20)) => (c | 0x20) - b'a' + 10,
            _ => return None,
        };
        word = word * 16 + u32::from(v);
    }
    if nibbles == 0 && zero.is_none() {
        return None;
    }
    addr[a] = (word >> 8) as u8;
    addr[a + 1] = word as u8;
    a += 2;
    n -= 1;
    if n > 0 {
        let z = zero?;
        let shift = n * 2;
        addr.copy_within(z..a, z + shift);
        addr[z..z + shift].fill(0);
        return Some(Ipv6Addr::from(addr));
    }
    zero.is_none().then(|| Ipv6Addr::from(addr))
}

/// `ngx_parse_addr`: IPv4, else IPv6.
pub fn parse_addr(text: &[u8]) -> Option<IpAddr> {
    inet_addr(text)
        .map(IpAddr::V4)
        .or_else(|| inet6_addr(text).map(IpAddr::V6))
}

/// `ngx_parse_addr_port`: an address, or `ADDR:PORT`, `[V6]:PORT` with a
/// port from 1 to 65535. Port 0 when none was given.
pub fn parse_addr_port(text: &[u8]) -> Option<SocketAddr> {
    if let Some(ip) = parse_addr(text) {
        return Some(SocketAddr::new(ip, 0));
    }
    let (host, port) = if text.first() == Some(&b'[') {
        let close = text.iter().position(|&c| c == b']')?;
        if close == text.len() - 1 || text[close + 1] != b':' {
            return None;
        }
        (&text[1..close], &text[close + 2..])
    } else {
        let colon = text.iter().position(|&c| c == b':')?;
        (&text[..colon], &text[colon + 1..])
    };
    if port.is_empty() || port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let port: u32 = port.iter().fold(0, |n, &c| n * 10 + u32::from(c - b'0'));
    if !(1..=65535).contains(&port) {
        return None;
    }
    Some(SocketAddr::new(parse_addr(host)?, port as u16))
}

/// `ngx_ptocidr`: `ADDR` or `ADDR/BITS`. `Ok((trusted, exact))`: `exact`
/// is false when the address had bits outside the mask (nginx warns "low
/// address bits of ... are meaningless" and clears them).
pub fn parse_cidr(text: &str) -> Option<(Cidr, bool)> {
    let (addr, bits) = match text.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (text, None),
    };
    let bits = match bits {
        None => None,
        Some(b) if !b.is_empty() && b.len() <= 9 && b.bytes().all(|c| c.is_ascii_digit()) => {
            Some(b.parse::<u32>().ok()?)
        }
        Some(_) => return None,
    };
    if let Some(v4) = inet_addr(addr.as_bytes()) {
        let shift = bits.unwrap_or(32);
        if shift > 32 {
            return None;
        }
        let mask = if shift == 0 {
            0
        } else {
            u32::MAX << (32 - shift)
        };
        let a = u32::from(v4);
        return Some((
            Cidr::V4 {
                addr: a & mask,
                mask,
            },
            a & mask == a,
        ));
    }
    let v6 = inet6_addr(addr.as_bytes())?.octets();
    let mut shift = bits.unwrap_or(128);
    if shift > 128 {
        return None;
    }
    let mut mask = [0u8; 16];
    let mut addr = v6;
    for i in 0..16 {
        let s = shift.min(8);
        shift -= s;
        mask[i] = if s == 0 { 0 } else { 0xffu8 << (8 - s) };
        addr[i] &= mask[i];
    }
    Some((Cidr::V6 { addr, mask }, addr == v6))
}

/// A resolved `set_real_ip_from` host: the address itself.
pub fn exact(ip: IpAddr) -> Cidr {
    match ip {
        IpAddr::V4(v4) => Cidr::V4 {
            addr: u32::from(v4),
            mask: u32::MAX,
        },
        IpAddr::V6(v6) => Cidr::V6 {
            addr: v6.octets(),
            mask: [0xff; 16],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real(from: &[&str], source: Source, recursive: bool, headers: &[(&str, &str)]) -> String {
        let r = RealIp {
            from: from
                .iter()
                .map(|f| parse_cidr(f).expect("cidr").0)
                .collect(),
            source,
            recursive,
        };
        let mut h = HeaderMap::new();
        for (n, v) in headers {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        let peer: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        match r.apply(peer, &h, &http::Extensions::new()) {
            Some(a) => format!("{}:{}", crate::vars::NgxIp(a.ip()), a.port()),
            None => "-".into(),
        }
    }

    #[test]
    fn x_real_ip() {
        let x = |v: &str| real(&["127.0.0.1"], Source::XRealIp, false, &[("x-real-ip", v)]);
        assert_eq!(x("9.9.9.9"), "9.9.9.9:0");
        assert_eq!(x("9.9.9.9:1234"), "9.9.9.9:1234");
        assert_eq!(x("::1"), "::1:0");
        assert_eq!(x("[::ffff:1.2.3.4]:80"), "::ffff:1.2.3.4:80");
        assert_eq!(x("001.2.3.4"), "1.2.3.4:0");
        assert_eq!(x("1..2.3"), "1.0.2.3:0");
        assert_eq!(x("1.2.3"), "-");
        assert_eq!(x("255.255.255.255"), "-");
        assert_eq!(x("1.2.3.4:0"), "-");
        assert_eq!(x("1.1.1.1, 2.2.2.2"), "2.2.2.2:0");
        assert_eq!(
            real(
                &["10.0.0.0/8"],
                Source::XRealIp,
                false,
                &[("x-real-ip", "9.9.9.9")]
            ),
            "-"
        );
    }

    #[test]
    fn x_forwarded_for() {
        let xff = Source::XForwardedFor;
        let trusted = ["127.0.0.0/8", "10.0.0.0/8"];
        let once = |v: &[(&str, &str)]| real(&trusted, xff.clone(), false, v);
        let walk = |v: &[(&str, &str)]| real(&trusted, xff.clone(), true, v);
        let h = "x-forwarded-for";
        assert_eq!(once(&[(h, "1.1.1.1, 127.0.0.5")]), "127.0.0.5:0");
        assert_eq!(walk(&[(h, "1.1.1.1, 127.0.0.5")]), "1.1.1.1:0");
        assert_eq!(walk(&[(h, "1.1.1.1, bogus, 127.0.0.5")]), "127.0.0.5:0");
        assert_eq!(walk(&[(h, "127.0.0.9, 127.0.0.5")]), "127.0.0.9:0");
        assert_eq!(once(&[(h, "1.1.1.1,,  ")]), "1.1.1.1:0");
        assert_eq!(
            once(&[(h, "1.1.1.1"), (h, "2.2.2.2, 3.3.3.3")]),
            "3.3.3.3:0"
        );
        assert_eq!(
            walk(&[(h, "1.1.1.1"), (h, "2.2.2.2, 127.0.0.3")]),
            "2.2.2.2:0"
        );
        assert_eq!(
            walk(&[(h, "1.1.1.1"), (h, "127.0.0.2, 127.0.0.3")]),
            "1.1.1.1:0"
        );
        assert_eq!(
            walk(&[(h, "1.1.1.1"), (h, "bogus, 127.0.0.3")]),
            "127.0.0.3:0"
        );
        assert_eq!(walk(&[(h, "1.1.1.1"), (h, "bogus")]), "-");
        assert_eq!(walk(&[(h, "1.1.1.1:80,127.0.0.4:90")]), "1.1.1.1:80");
        assert_eq!(walk(&[(h, "[::1]:80 127.0.0.4")]), "::1:80");
        assert_eq!(walk(&[(h, ",")]), "-");
    }

    #[test]
    fn networks_as_nginx_reads_them() {
        assert_eq!(
            parse_cidr("1.2.3.4/8"),
            Some((
                Cidr::V4 {
                    addr: 0x0100_0000,
                    mask: 0xff00_0000
                },
                false
            ))
        );
        assert_eq!(
            parse_cidr("1.2.3.4/0"),
            Some((Cidr::V4 { addr: 0, mask: 0 }, false))
        );
        assert!(matches!(parse_cidr("::1/128"), Some((_, true))));
        assert!(matches!(parse_cidr("2001:db8::1/32"), Some((_, false))));
        for bad in [
            "127.0.0.1/abc",
            "127.0.0.1/33",
            "127.0.0.1/",
            "::1/129",
            "1.2.3.4:80",
            "[::1]",
            "",
        ] {
            assert_eq!(parse_cidr(bad), None, "{bad}");
        }
    }

    #[test]
    fn ipv6_as_nginx_reads_it() {
        let p = |s: &str| inet6_addr(s.as_bytes()).map(|a| a.to_string());
        assert_eq!(p("::1"), Some("::1".into()));
        assert_eq!(p("::"), Some("::".into()));
        assert_eq!(p("1::"), Some("1::".into()));
        assert_eq!(p("::ffff:1.2.3.4"), Some("::ffff:1.2.3.4".into()));
        assert_eq!(p("2001:db8:0:0:1:0:0:1"), Some("2001:db8::1:0:0:1".into()));
        assert_eq!(p("1:2:3:4:5:6:7:8"), Some("1:2:3:4:5:6:7:8".into()));
        assert_eq!(p("1:2:3:4:5:6:7:8:9"), None);
        assert_eq!(p("1::2::3"), None);
        assert_eq!(p("12345::"), None);
        assert_eq!(p("1.2.3.4"), None);
        assert_eq!(p("bogus"), None);
    }
}
