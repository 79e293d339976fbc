//! `access_log syslog:...`: lines sent as syslog messages over UDP, as
//! nginx's `ngx_syslog` writes them (RFC 3164: `<PRI>Mmm dd hh:mm:ss HOST
//! TAG: MESSAGE`). The access log writer thread sends them, so a request
//! never waits on the socket; a message the socket cannot take now is
//! dropped, as nginx drops it.

use std::net::{SocketAddr, UdpSocket};

/// `syslog:server=ADDR[:PORT][,facility=F][,severity=S][,tag=T][,nohostname]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub server: SocketAddr,
    /// `facility * 8 + severity`, the message's `<PRI>`.
    pub pri: u8,
    pub tag: String,
    pub hostname: bool,
}

const FACILITIES: &[&str] = &[
    "kern", "user", "mail", "daemon", "auth", "intern", "lpr", "news", "uucp", "clock", "authpriv",
    "ftp", "ntp", "audit", "alert", "cron", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

const SEVERITIES: &[&str] = &[
    "emerg", "alert", "crit", "error", "warn", "notice", "info", "debug",
];

impl Target {
    /// Reads the text after `syslog:`, with nginx's messages.
    pub fn parse(args: &str) -> Result<Target, String> {
        if args.starts_with("server=unix:") {
            return Err("syslog to a unix socket is not supported".to_owned());
        }
        let mut server = None;
        let mut facility = 23; // local7
        let mut severity = 6; // info
        let mut tag = "nginx".to_owned();
        let mut hostname = true;
        for arg in args.split(',') {
            if let Some(addr) = arg.strip_prefix("server=") {
                // An IPv6 address is bracketed, as nginx's URL parser wants.
                if addr.matches(':').count() > 1 && !addr.starts_with('[') {
                    return Err(format!("invalid port in syslog server \"{addr}\""));
                }
                let with_port = if addr.contains(':') && !addr.ends_with(']') {
                    addr.to_owned()
                } else {
                    format!("{addr}:514")
                };
                let parsed =
                    crate::http::realip::parse_addr_port(with_port.as_bytes()).or_else(|| {
                        use std::net::ToSocketAddrs;
                        with_port.to_socket_addrs().ok()?.next()
                    });
                match parsed {
                    Some(a) => server = Some(a),
                    None => return Err(format!("host not found in \"{addr}\"")),
                }
            } else if let Some(f) = arg.strip_prefix("facility=") {
                match FACILITIES.iter().position(|&n| n == f) {
                    Some(i) => facility = i as u8,
                    None => return Err(format!("unknown syslog facility \"{f}\"")),
                }
            } else if let Some(s) = arg.strip_prefix("severity=") {
                match SEVERITIES.iter().position(|&n| n == s) {
                    Some(i) => severity = i as u8,
                    None => return Err(format!("unknown syslog severity \"{s}\"")),
                }
            } else if let Some(t) = arg.strip_prefix("tag=") {
                if t.len() > 32 {
                    return Err("syslog tag length exceeds 32".to_owned());
                }
                if !t.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
                    return Err(
                        "syslog \"tag\" only allows alphanumeric characters and underscore"
                            .to_owned(),
                    );
                }
                tag = t.to_owned();
            } else if arg == "nohostname" {
                hostname = false;
            } else {
                return Err(format!("unknown syslog parameter \"{arg}\""));
            }
        }
        let Some(server) = server else {
            return Err("no syslog server specified".to_owned());
        };
        Ok(Target {
            server,
            pri: facility * 8 + severity,
            tag,
            hostname,
        })
    }
}

/// A syslog destination as the writer thread keeps it.
pub struct Sender {
    target: Target,
    socket: Option<UdpSocket>,
    message: Vec<u8>,
    /// A socket that could not be made is tried again after this.
    retry: Option<std::time::Instant>,
}

/// How long a socket that could not be made is not tried again.
const RETRY: std::time::Duration = std::time::Duration::from_secs(10);

impl Sender {
    pub fn new(target: Target) -> Sender {
        Sender {
            target,
            socket: None,
            message: Vec::with_capacity(1024),
            retry: None,
        }
    }

    /// Sends `line` (its newline left out) as one message.
    pub fn send(&mut self, line: &[u8]) {
        let severity = self.target.pri % 8;
        self.send_at(severity, line);
    }

    /// [`Sender::send`] at `severity` (an error log line's level), with
    /// the target's facility.
    pub fn send_at(&mut self, severity: u8, line: &[u8]) {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        if self.socket.is_none() {
            if self.retry.is_some_and(|at| std::time::Instant::now() < at) {
                return;
            }
            let local: SocketAddr = if self.target.server.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let socket = UdpSocket::bind(local).and_then(|s| {
                s.connect(self.target.server)?;
                s.set_nonblocking(true)?;
                Ok(s)
            });
            match socket {
                Ok(s) => self.socket = Some(s),
                Err(e) => {
                    // Not through the error log: it may be this sender,
                    // under its lock.
                    use std::io::Write as _;
                    let _ = writeln!(
                        std::io::stderr(),
                        "waypost: [alert] socket() failed ({e}) while sending to syslog"
                    );
                    self.retry = Some(std::time::Instant::now() + RETRY);
                    return;
                }
            }
        }
        self.message.clear();
        let pri = self.target.pri - self.target.pri % 8 + severity;
        header(&self.target, pri, &mut self.message);
        self.message.extend_from_slice(line);
        if let Some(socket) = &self.socket {
            // (Refused or full: the message is lost, as nginx's.)
            let _ = socket.send(&self.message);
        }
    }
}

/// `<PRI>Mmm dd hh:mm:ss HOST TAG: `, nginx's header with local time.
fn header(target: &Target, pri: u8, out: &mut Vec<u8>) {
    use std::io::Write as _;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (tm, _) = crate::log::local_now();
    let month = MONTHS[usize::try_from(tm.tm_mon).unwrap_or(0) % 12];
    let _ = write!(
        out,
        "<{pri}>{month} {:2} {:02}:{:02}:{:02} ",
        tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec
    );
    if target.hostname {
        out.extend_from_slice(crate::vars::hostname().as_bytes());
        out.push(b' ');
    }
    let _ = write!(out, "{}: ", target.tag);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_as_nginx_reads_them() {
        let t = Target::parse("server=127.0.0.1,facility=local7,tag=nginx,severity=info")
            .expect("valid");
        assert_eq!(t.server, "127.0.0.1:514".parse().expect("addr"));
        assert_eq!(t.pri, 190);
        let t = Target::parse("server=127.0.0.1:5140,nohostname,facility=user,severity=error")
            .expect("valid");
        assert_eq!((t.pri, t.hostname), (11, false));
        assert_eq!(
            Target::parse("facility=local7"),
            Err("no syslog server specified".to_owned())
        );
        assert_eq!(
            Target::parse("server=127.0.0.1,facility=x"),
            Err("unknown syslog facility \"x\"".to_owned())
        );
        assert_eq!(
            Target::parse("server=127.0.0.1,tag=a-b"),
            Err("syslog \"tag\" only allows alphanumeric characters and underscore".to_owned())
        );
        assert_eq!(
            Target::parse("server=127.0.0.1,bogus"),
            Err("unknown syslog parameter \"bogus\"".to_owned())
        );
    }
}
