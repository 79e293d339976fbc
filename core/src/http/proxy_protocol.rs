//! `listen ... proxy_protocol`: the PROXY protocol header a load balancer
//! sends before the connection's own bytes (version 1, text, or 2,
//! binary), read as nginx's `ngx_proxy_protocol_read` reads it. The
//! addresses it gives are `$proxy_protocol_addr`, `_port`,
//! `_server_addr` and `_server_port`, and `real_ip_header
//! proxy_protocol`'s source.
//!
//! The header is peeked, then only its bytes are read: what follows is
//! the TLS handshake or the first request, read as on any connection. As
//! in nginx, the header must come whole with the first bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::time::Instant;

/// What the header said: the client's address and port, and the address
/// and port it connected to (as the balancer saw them).
#[derive(Debug, PartialEq, Eq)]
pub struct Addrs {
    /// As sent (version 1: nginx checks only its characters), or printed
    /// as nginx prints an address (version 2).
    pub src_addr: Box<str>,
    pub src_port: u16,
    pub dst_addr: Box<str>,
    pub dst_port: u16,
}

/// A request's connection came with a PROXY header (a request extension).
#[derive(Clone, Debug)]
pub struct ProxyProtocol(pub Arc<Addrs>);

/// nginx's `NGX_PROXY_PROTOCOL_V1_MAX_HEADER`.
const V1_MAX: usize = 107;
/// The most of a version 2 header this reads (nginx's buffer).
const V2_MAX: usize = 4096;
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// What the bytes so far make.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole header of `len` bytes: its addresses, or none (`UNKNOWN`,
    /// `LOCAL`, a family or transport nginx does not read).
    Done(usize, Option<Addrs>),
    /// Valid so far: more bytes are needed.
    More,
    /// nginx's error line.
    Broken(String),
    /// Not a header nginx takes, which it closes without a line (a v2
    /// address block too short for its family).
    Quiet,
}

/// The header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    if buf.len() < V2_SIGNATURE.len() && V2_SIGNATURE.starts_with(buf) {
        return Parsed::More;
    }
    if buf.starts_with(V2_SIGNATURE) {
        return v2(buf);
    }
    v1(buf)
}

/// `ngx_proxy_protocol_read`, version 1: `PROXY TCP4|TCP6 SRC DST SPORT
/// DPORT\r\n`, or `PROXY UNKNOWN ...\r\n`.
fn v1(buf: &[u8]) -> Parsed {
    let more = || {
        if buf.len() >= V1_MAX {
            broken(buf)
        } else {
            Parsed::More
        }
    };
    let Some(rest) = prefix(buf, b"PROXY ") else {
        return if b"PROXY ".starts_with(buf) {
            Parsed::More
        } else {
            broken(buf)
        };
    };
    if rest.len() < 7 && b"UNKNOWN".starts_with(rest) {
        return more();
    }
    if rest.starts_with(b"UNKNOWN") {
        return match rest.windows(2).position(|w| w == b"\r\n") {
            Some(i) => Parsed::Done(buf.len() - rest.len() + i + 2, None),
            None => more(),
        };
    }
    if rest.len() < 5 && (b"TCP4 ".starts_with(rest) || b"TCP6 ".starts_with(rest)) {
        return more();
    }
    if rest.len() < 5
        || !rest.starts_with(b"TCP")
        || !matches!(rest[3], b'4' | b'6')
        || rest[4] != b' '
    {
        return broken(buf);
    }
    let mut p = &rest[5..];
    let mut field = |sep: u8, addr: bool| -> Result<&[u8], bool> {
        // `Err(true)`: the bytes ran out first.
        for (i, &c) in p.iter().enumerate() {
            if c == sep {
                let value = &p[..i];
                p = &p[i + 1..];
                return Ok(value);
            }
            if addr && !(c == b':' || c == b'.' || c.is_ascii_hexdigit()) {
                return Err(false);
            }
        }
        Err(true)
    };
    let fields = (|| {
        let src = field(b' ', true)?;
        let dst = field(b' ', true)?;
        let sport = field(b' ', false)?;
        let dport = field(b'\r', false)?;
        Ok((src, dst, sport, dport))
    })();
    let (src, dst, sport, dport) = match fields {
        Ok(f) => f,
        Err(true) => return more(),
        Err(false) => return broken(buf),
    };
    let (Some(src_port), Some(dst_port)) = (port(sport), port(dport)) else {
        return broken(buf);
    };
    match p.first() {
        None => more(),
        Some(b'\n') => Parsed::Done(
            buf.len() - p.len() + 1,
            Some(Addrs {
                src_addr: String::from_utf8_lossy(src).into(),
                src_port,
                dst_addr: String::from_utf8_lossy(dst).into(),
                dst_port,
            }),
        ),
        Some(_) => broken(buf),
    }
}

fn prefix<'a>(buf: &'a [u8], start: &[u8]) -> Option<&'a [u8]> {
    buf.strip_prefix(start)
}

/// `ngx_atoi` of a port, at most 65535.
fn port(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// nginx 1.22's `broken header: "..."`: every byte it had read, line
/// ends included.
fn broken(buf: &[u8]) -> Parsed {
    Parsed::Broken(format!(
        "broken header: \"{}\"",
        String::from_utf8_lossy(buf)
    ))
}

/// `ngx_proxy_protocol_v2_read`: the 16-byte header, then its addresses
/// (TCP over IPv4 or IPv6) and TLVs, which are skipped.
fn v2(buf: &[u8]) -> Parsed {
    if buf.len() < 16 {
        return Parsed::More;
    }
    let version = buf[12] >> 4;
    if version != 2 {
        return Parsed::Broken(format!("unknown PROXY protocol version: {version}"));
    }
    let len = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if len > V2_MAX {
        return Parsed::Broken("header is too large".to_owned());
    }
    if buf.len() < len {
        return Parsed::More;
    }
    let body = &buf[16..len];
    // Only PROXY (not LOCAL) over STREAM gives addresses.
    if buf[12] & 0x0f != 1 || buf[13] & 0x0f != 1 {
        return Parsed::Done(len, None);
    }
    let addrs = match buf[13] >> 4 {
        1 if body.len() >= 12 => {
            let ip = |at: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    body[at],
                    body[at + 1],
                    body[at + 2],
                    body[at + 3],
                ))
            };
            Some((ip(0), ip(4), &body[8..12]))
        }
        2 if body.len() >= 36 => {
            let ip = |at: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&body[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(o))
            };
            Some((ip(0), ip(16), &body[32..36]))
        }
        1 | 2 => return Parsed::Quiet,
        _ => None,
    };
    Parsed::Done(
        len,
        addrs.map(|(src, dst, ports)| Addrs {
            src_addr: crate::vars::NgxIp(src).to_string().into(),
            src_port: u16::from_be_bytes([ports[0], ports[1]]),
            dst_addr: crate::vars::NgxIp(dst).to_string().into(),
            dst_port: u16::from_be_bytes([ports[2], ports[3]]),
        }),
    )
}

/// Why no header was read.
pub enum Failed {
    /// The client closed first.
    Closed,
    /// The socket failed (`recv()`'s error).
    Io(std::io::Error),
    /// A header nginx drops without a line.
    Quiet,
    /// `client_header_timeout` passed.
    TimedOut,
    /// nginx's error line for it.
    Broken(String),
}

/// Reads the header off `stream` (by `deadline`), leaving what follows.
/// As nginx, from what the first read brings: a header cut short there is
/// broken (nginx reads it into the request's first buffer, or peeks it on
/// a TLS address).
pub async fn read(stream: &TcpStream, deadline: Instant) -> Result<Option<Addrs>, Failed> {
    let mut buf = vec![0u8; V2_MAX];
    let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
        Ok(Ok(0)) => return Err(Failed::Closed),
        Ok(Ok(n)) => n,
        Ok(Err(e)) => return Err(Failed::Io(e)),
        Err(_) => return Err(Failed::TimedOut),
    };
    let len = match parse(&buf[..n]) {
        Parsed::Done(len, addrs) => (len, addrs),
        Parsed::Broken(line) => return Err(Failed::Broken(line)),
        Parsed::Quiet => return Err(Failed::Quiet),
        // nginx's `ngx_proxy_protocol_v2_read` for a block not all there,
        // its v1 reading for the rest.
        Parsed::More if n >= 16 && buf.starts_with(V2_SIGNATURE) => {
            return Err(Failed::Broken("header is too large".to_owned()))
        }
        Parsed::More => match broken(&buf[..n]) {
            Parsed::Broken(line) => return Err(Failed::Broken(line)),
            _ => return Err(Failed::Quiet),
        },
    };
    let (len, addrs) = len;
    // Peeked: the bytes are there to be read at once.
    let mut taken = 0;
    while taken < len {
        match stream.try_read(&mut buf[taken..len]) {
            Ok(0) => return Err(Failed::Closed),
            Ok(k) => taken += k,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Err(e) = stream.readable().await {
                    return Err(Failed::Io(e));
                }
            }
            Err(e) => return Err(Failed::Io(e)),
        }
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(src: &str, sp: u16, dst: &str, dp: u16) -> Option<Addrs> {
        Some(Addrs {
            src_addr: src.into(),
            src_port: sp,
            dst_addr: dst.into(),
            dst_port: dp,
        })
    }

    #[test]
    fn version_one() {
        let h = b"PROXY TCP4 192.0.2.1 198.51.100.2 5000 80\r\nGET";
        assert_eq!(
            parse(h),
            Parsed::Done(h.len() - 3, addrs("192.0.2.1", 5000, "198.51.100.2", 80))
        );
        assert_eq!(
            parse(b"PROXY TCP6 ::1 ::2 1 2\r\n"),
            Parsed::Done(24, addrs("::1", 1, "::2", 2))
        );
        assert_eq!(parse(b"PROXY UNKNOWN x y\r\n"), Parsed::Done(19, None));
        for part in [
            &b"PRO"[..],
            b"PROXY TC",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r",
        ] {
            assert_eq!(parse(part), Parsed::More, "{part:?}");
        }
        for bad in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PROXY TCP5 a\r\n",
            b"PROXY TCP4 1.2.3.z 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rx",
        ] {
            let shown = String::from_utf8_lossy(bad);
            assert_eq!(
                parse(bad),
                Parsed::Broken(format!("broken header: \"{shown}\""))
            );
        }
    }

    #[test]
    fn version_two() {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[
            0x21, 0x11, 0, 12, 10, 0, 0, 1, 10, 0, 0, 2, 0x13, 0x88, 0, 80,
        ]);
        assert_eq!(
            parse(&h),
            Parsed::Done(28, addrs("10.0.0.1", 5000, "10.0.0.2", 80))
        );
        assert_eq!(parse(&h[..20]), Parsed::More);
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(parse(&local), Parsed::Done(16, None));
        let mut v3 = V2_SIGNATURE.to_vec();
        v3.extend_from_slice(&[0x31, 0x11, 0, 0]);
        assert_eq!(
            parse(&v3),
            Parsed::Broken("unknown PROXY protocol version: 3".to_owned())
        );
    }
}
