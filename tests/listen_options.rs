//! `listen`'s socket options (`so_keepalive=`, `rcvbuf=`, `sndbuf=`,
//! `deferred`, `fastopen=`, `reuseport`) side by side with nginx: the
//! listening socket of each server is taken from its process
//! (pidfd_getfd) and its options read back, so what is compared is what
//! the kernel holds.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use waypost_tests::{free_ports, wrap_http, Server};

/// The listening socket on 127.0.0.1:`port` among `pid`'s descriptors.
fn listening_socket(pid: i32, port: u16) -> OwnedFd {
    let local = format!("0100007F:{port:04X}");
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 9 && f[1] == local && f[3] == "0A")
        .map(|f| f[9].to_owned())
        .collect();
    assert!(!inodes.is_empty(), "nothing listens on {port}");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("fd dir");
    let fd: i32 = fds
        .flatten()
        .find_map(|e| {
            let link = std::fs::read_link(e.path()).ok()?;
            let link = link.to_string_lossy().into_owned();
            let inode = link.strip_prefix("socket:[")?.strip_suffix(']')?;
            inodes
                .iter()
                .any(|i| i == inode)
                .then(|| e.file_name().to_string_lossy().parse().ok())?
        })
        .expect("the listening socket among the process's descriptors");
    // SAFETY: plain system calls on integers; the descriptor returned is
    // new and owned here.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        assert!(
            pidfd >= 0,
            "pidfd_open: {}",
            std::io::Error::last_os_error()
        );
        let pidfd = OwnedFd::from_raw_fd(pidfd);
        let got = libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) as i32;
        assert!(got >= 0, "pidfd_getfd: {}", std::io::Error::last_os_error());
        OwnedFd::from_raw_fd(got)
    }
}

/// The socket's options, by name.
fn options(socket: &OwnedFd) -> Vec<(&'static str, i32)> {
    let get = |level: i32, name: i32| -> i32 {
        let mut value: i32 = 0;
        let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
        // SAFETY: an int and its size, as getsockopt(2) takes for these
        // options.
        let done = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                level,
                name,
                (&mut value as *mut i32).cast(),
                &mut len,
            )
        };
        assert_eq!(done, 0, "getsockopt: {}", std::io::Error::last_os_error());
        value
    };
    let (sol, tcp) = (libc::SOL_SOCKET, libc::IPPROTO_TCP);
    vec![
        ("SO_RCVBUF", get(sol, libc::SO_RCVBUF)),
        ("SO_SNDBUF", get(sol, libc::SO_SNDBUF)),
        ("SO_KEEPALIVE", get(sol, libc::SO_KEEPALIVE)),
        ("SO_REUSEPORT", get(sol, libc::SO_REUSEPORT)),
        ("TCP_KEEPIDLE", get(tcp, libc::TCP_KEEPIDLE)),
        ("TCP_KEEPINTVL", get(tcp, libc::TCP_KEEPINTVL)),
        ("TCP_KEEPCNT", get(tcp, libc::TCP_KEEPCNT)),
        ("TCP_DEFER_ACCEPT", get(tcp, libc::TCP_DEFER_ACCEPT)),
        ("TCP_FASTOPEN", get(tcp, libc::TCP_FASTOPEN)),
    ]
}

/// Every option on one address, `so_keepalive=on` alone on another, none
/// on a third.
fn conf(ports: &[u16], nginx: bool) -> String {
    wrap_http(
        &format!(
            "    server {{\n\
             \x20       listen 127.0.0.1:{} reuseport deferred so_keepalive=30m:10:3 rcvbuf=48k sndbuf=96k fastopen=16 backlog=100;\n\
             \x20       listen 127.0.0.1:{} so_keepalive=on;\n\
             \x20       listen 127.0.0.1:{};\n\
             \x20       return 200 \"ok\\n\";\n\
             \x20   }}\n",
            ports[0], ports[1], ports[2]
        ),
        nginx,
    )
}

#[test]
fn listen_socket_options_match_nginx() {
    let mut seen = Vec::new();
    for nginx in [true, false] {
        let ports = free_ports(3);
        let server = Server::either(nginx, &conf(&ports, nginx), &ports);
        let of_port: Vec<Vec<(&str, i32)>> = ports
            .iter()
            .map(|&port| options(&listening_socket(server.pid(), port)))
            .collect();
        seen.push(of_port);
    }
    let (theirs, ours) = (&seen[0], &seen[1]);
    // What nginx set, to show the options took: the kernel doubles a
    // buffer size it is given.
    let value =
        |of: &[(&str, i32)], name: &str| of.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
    assert_eq!(value(&theirs[0], "SO_RCVBUF"), Some(2 * 48 * 1024));
    assert_eq!(value(&theirs[0], "TCP_KEEPIDLE"), Some(1800));
    assert_eq!(value(&theirs[0], "TCP_FASTOPEN"), Some(16));
    assert_eq!(value(&theirs[1], "SO_KEEPALIVE"), Some(1));
    assert_eq!(value(&theirs[2], "SO_KEEPALIVE"), Some(0));
    for (port, (ours, theirs)) in ours.iter().zip(theirs).enumerate() {
        assert_eq!(
            ours, theirs,
            "listen #{port}: waypost (left), nginx (right)"
        );
    }
}

/// A reload applies the new `listen` options to the socket it keeps, as
/// nginx's master does (`ngx_configure_listening_sockets` runs over every
/// socket of the new cycle): the buffer size changes, `deferred` taken
/// away goes, `reuseport` added comes, the socket stays; a reload that
/// fails (an address it cannot bind) changes nothing. (waypost alone: the
/// tests run nginx without a master process, whose reload is not the one
/// operators use.)
#[test]
fn a_reload_applies_new_options_to_the_kept_socket() {
    let port = free_ports(1)[0];
    let conf = |options: &str, text: &str, extra: &str| {
        wrap_http(
            &format!(
                "    server {{\n\
                 \x20       listen 127.0.0.1:{port} {options};\n\
                 {extra}\
                 \x20       return 200 \"{text}\";\n\
                 \x20   }}\n"
            ),
            false,
        )
    };
    let server = Server::waypost(&conf("rcvbuf=48k deferred", "one", ""), &[port]);
    let socket = listening_socket(server.pid(), port);
    let value = |name: &str| {
        options(&socket)
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    };
    assert_eq!(value("SO_RCVBUF"), Some(2 * 48 * 1024));
    assert_eq!(value("TCP_DEFER_ACCEPT"), Some(1));
    assert_eq!(value("SO_REUSEPORT"), Some(0));
    let answers = |text: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while waypost_tests::KeepAlive::connect(port)
            .try_get("/")
            .is_none_or(|r| r.body != text)
        {
            assert!(std::time::Instant::now() < deadline, "no {text:?}");
        }
    };
    server.reload_with(&conf("rcvbuf=24k reuseport", "two", ""));
    answers("two");
    // The same socket (the copy taken before reads it), its new options.
    assert_eq!(value("SO_RCVBUF"), Some(2 * 24 * 1024));
    assert_eq!(value("TCP_DEFER_ACCEPT"), Some(0));
    assert_eq!(value("SO_REUSEPORT"), Some(1));
    // A reload that cannot bind another address leaves the socket as it
    // was.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_port = taken.local_addr().expect("addr").port();
    server.reload_with(&conf(
        "rcvbuf=12k",
        "three",
        &format!("        listen 127.0.0.1:{taken_port};\n"),
    ));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !server
        .read("logs/error.log")
        .contains("Address already in use")
    {
        assert!(std::time::Instant::now() < deadline, "no bind error logged");
    }
    answers("two");
    assert_eq!(value("SO_RCVBUF"), Some(2 * 24 * 1024));
}
