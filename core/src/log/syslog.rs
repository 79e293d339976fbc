//! `access_log syslog:...`: lines sent as syslog messages over UDP or a
//! unix datagram socket, as nginx's `ngx_syslog` writes them (RFC 3164:
//! `<PRI>Mmm dd hh:mm:ss HOST TAG: MESSAGE`). The access log writer thread
//! sends them, so a request never waits on the socket; a message the
//! socket cannot take now is dropped, as nginx drops it.

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use crate::log::Level;

/// `syslog:server=ADDR[:PORT]|unix:PATH[,facility=F][,severity=S][,tag=T][,nohostname]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub server: Server,
    /// `facility * 8 + severity`, the message's `<PRI>`.
    pub pri: u8,
    pub tag: String,
    pub hostname: bool,
}

/// Where the messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Server {
    /// The first address of the host, as nginx takes it.
    Udp(SocketAddr),
    /// `unix:PATH`: a datagram socket such as `/dev/log`.
    Unix(PathBuf),
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
        let mut server = None;
        let mut facility = 23; // local7
        let mut severity = 6; // info
        let mut tag = "nginx".to_owned();
        let mut hostname = true;
        for arg in args.split(',') {
            if let Some(addr) = arg.strip_prefix("server=") {
                let parsed =
                    parse_server(addr).map_err(|e| format!("{e} in syslog server \"{addr}\""))?;
                server = Some(parsed);
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

/// `ngx_parse_url` as the syslog module calls it: a unix socket's path,
/// or a host (resolved now, its first address kept) and a port, 514 by
/// default. The error is nginx's.
fn parse_server(addr: &str) -> Result<Server, &'static str> {
    use crate::conf::interp::{parse_url, resolve_host, unix_path};
    if let Some(path) = addr.strip_prefix("unix:") {
        return Ok(Server::Unix(PathBuf::from(unix_path(path)?)));
    }
    let url = parse_url(addr, 514, false)?;
    resolve_host(&url.host, url.port)
        .and_then(|addrs| addrs.first().copied())
        .map(Server::Udp)
        .ok_or("host not found")
}

/// A syslog destination as the writer thread keeps it.
pub struct Sender {
    target: Target,
    socket: Option<Socket>,
    message: Vec<u8>,
    /// A socket that could not be made is tried again after this.
    retry: Option<std::time::Instant>,
}

/// A connected datagram socket.
enum Socket {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

impl Socket {
    /// `socket()` and `connect()`, non-blocking; the error names the call
    /// that failed, as nginx's alert does.
    fn open(server: &Server) -> Result<Socket, (&'static str, std::io::Error)> {
        match server {
            Server::Udp(addr) => {
                let local: SocketAddr = if addr.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let s = UdpSocket::bind(local).map_err(|e| ("socket()", e))?;
                s.set_nonblocking(true).map_err(|e| ("socket()", e))?;
                s.connect(addr).map_err(|e| ("connect()", e))?;
                Ok(Socket::Udp(s))
            }
            Server::Unix(path) => {
                let s = UnixDatagram::unbound().map_err(|e| ("socket()", e))?;
                s.set_nonblocking(true).map_err(|e| ("socket()", e))?;
                s.connect(path).map_err(|e| ("connect()", e))?;
                Ok(Socket::Unix(s))
            }
        }
    }

    fn send(&self, message: &[u8]) -> std::io::Result<usize> {
        match self {
            Socket::Udp(s) => s.send(message),
            Socket::Unix(s) => s.send(message),
        }
    }
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
    pub fn send(&mut self, line: &[u8]) -> Result<(), Failed> {
        let severity = self.target.pri % 8;
        self.send_at(severity, line)
    }

    /// [`Sender::send`] at `severity` (an error log line's level), with
    /// the target's facility.
    pub fn send_at(&mut self, severity: u8, line: &[u8]) -> Result<(), Failed> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        if self.socket.is_none() {
            if self.retry.is_some_and(|at| std::time::Instant::now() < at) {
                return Ok(());
            }
            match Socket::open(&self.target.server) {
                Ok(s) => self.socket = Some(s),
                Err((call, e)) => {
                    self.retry = Some(std::time::Instant::now() + RETRY);
                    return Err(Failed::new(Level::Alert, call, &e));
                }
            }
        }
        self.message.clear();
        let pri = self.target.pri - self.target.pri % 8 + severity;
        header(&self.target, pri, &mut self.message);
        self.message.extend_from_slice(line);
        let Some(socket) = &self.socket else {
            return Ok(());
        };
        match socket.send(&self.message) {
            // Full: the message is lost, as nginx's.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
            // Refused (the syslog daemon restarted and made its socket
            // again): lost too, and the next message connects anew, as
            // nginx closes the socket on a failed send.
            Err(e) => {
                self.socket = None;
                Err(Failed::new(Level::Error, "send()", &e))
            }
            Ok(_) => Ok(()),
        }
    }
}

/// A message that could not be sent: nginx's error log line for it.
#[derive(Debug)]
pub struct Failed {
    pub level: Level,
    /// `send() failed (111: Connection refused)`.
    pub message: String,
}

impl Failed {
    fn new(level: Level, call: &str, e: &std::io::Error) -> Failed {
        Failed {
            level,
            message: format!(
                "{call} failed ({}: {})",
                e.raw_os_error().unwrap_or(0),
                crate::http::proxy::strerror(e)
            ),
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
        assert_eq!(
            t.server,
            Server::Udp("127.0.0.1:514".parse().expect("addr"))
        );
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
            Target::parse("server=unix:/dev/log,nohostname").map(|t| t.server),
            Ok(Server::Unix("/dev/log".into()))
        );
        for (server, error) in [
            ("unix:", "no path in the unix domain socket"),
            (
                &format!("unix:/{}", "a".repeat(107)),
                "too long path in the unix domain socket",
            ),
            ("127.0.0.1:99999", "invalid port"),
            ("::1", "invalid port"),
            ("[::1", "invalid host"),
            ("[zz]", "invalid IPv6 address"),
            ("127.0.0.1/x", "invalid host"),
        ] {
            assert_eq!(
                Target::parse(&format!("server={server}")),
                Err(format!("{error} in syslog server \"{server}\""))
            );
        }
        assert!(Target::parse(&format!("server=unix:/{}", "a".repeat(106))).is_ok());
        assert_eq!(
            Target::parse("server=127.0.0.1,bogus"),
            Err("unknown syslog parameter \"bogus\"".to_owned())
        );
    }
}
