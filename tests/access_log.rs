//! The access log, side by side with nginx where both can run the case:
//! the per-try `$upstream_*` values of a retried request, escaping
//! (`default`, `json`, `none`) of quotes, backslashes and control bytes,
//! `if=`, several `access_log` at one level (all written, replacing the
//! inherited ones; `off` anywhere at the level silences it) and
//! `buffer=`/`flush=` (lines held until the buffer fills, the flush time
//! passes, the logs are reopened or the process exits).
//! `access_log` parameters nginx refuses are in `config_errors.rs`; here,
//! those nginx accepts and waypost refuses by name.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use waypost_tests::{
    addr, free_ports, nginx_bin, read_head, run_waypost, serve_numbered, tries, wrap_http, Server,
    TempDir,
};

/// A backend outside both programs, so both proxy to the same address:
/// every request gets `200 ok`, then the connection closes.
fn backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            if read_head(&mut stream).is_some() {
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
                );
            }
        }
    });
    port
}

/// Sends `request` as written on a new connection and reads the response
/// to the end (the requests are HTTP/1.0: the server closes).
fn send(port: u16, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream.write_all(request).expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read");
    response
}

/// Sends each request on its own connection; each must be answered 200.
fn send_ok<'r>(port: u16, requests: impl IntoIterator<Item = &'r [u8]>) {
    for r in requests {
        let response = send(port, r);
        assert!(
            response.starts_with(b"HTTP/1.1 200") || response.starts_with(b"HTTP/1.0 200"),
            "{:?} -> {:?}",
            String::from_utf8_lossy(r),
            String::from_utf8_lossy(&response)
        );
    }
}

fn get10(port: u16, path: &str) -> Vec<u8> {
    send(port, format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
}

/// One `$upstream_*_time` value's shape: a `T` per try with a time, a `-`
/// per try without; `None` unless it is `^(\d+\.\d{3}|-)(, (\d+\.\d{3}|-))*$`.
fn time_shape(value: &str) -> Option<String> {
    value
        .split(", ")
        .map(|item| {
            if item == "-" {
                return Some('-');
            }
            let (secs, ms) = item.split_once('.')?;
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
            (digits(secs) && digits(ms) && ms.len() == 3).then_some('T')
        })
        .collect()
}

#[test]
fn time_shapes() {
    assert_eq!(time_shape("0.002").as_deref(), Some("T"));
    assert_eq!(time_shape("-, 12.345").as_deref(), Some("-T"));
    assert_eq!(time_shape("-"), Some("-".to_owned()));
    for bad in ["", "0.02", "1", "0.002,0.003", "0.002, ", ".002", "-, x"] {
        assert_eq!(time_shape(bad), None, "{bad:?}");
    }
}

const TIMES: &str = "$upstream_addr|$upstream_status|$upstream_response_time|\
$upstream_connect_time|$upstream_header_time|$status";

fn retry_conf(port: u16, dead: u16, live: u16, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    log_format t '{TIMES}';\n\
             \x20   upstream u {{ server 127.0.0.1:{dead}; server 127.0.0.1:{live}; }}\n\
             \x20   upstream one {{ server 127.0.0.1:{dead}; }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       access_log logs/t.log t;\n\
             \x20       location / {{ proxy_pass http://u; }}\n\
             \x20       location /one {{ proxy_pass http://one; }}\n\
             \x20       location /local {{ return 200 \"local\\n\"; }}\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

/// A request whose first peer refuses the connection and whose second
/// answers logs both tries everywhere: the same addresses and statuses as
/// nginx, and times of the same shape (`-` where a try never connected or
/// got no header).
#[test]
fn retried_request_logs_every_try_as_nginx() {
    let ports = free_ports(3);
    let (dead, wp_port, ngx_port) = (ports[0], ports[1], ports[2]);
    let live = backend();
    let waypost = Server::waypost(&retry_conf(wp_port, dead, live, false), &[wp_port]);
    let nginx = Server::nginx(&retry_conf(ngx_port, dead, live, true), &[ngx_port]);
    // The dead peer, then the live one; a single dead peer (no retry);
    // no upstream; the dead peer now failed (only the live one is tried).
    let paths = ["/", "/one", "/local", "/"];
    for (server, port) in [(&waypost, wp_port), (&nginx, ngx_port)] {
        for path in paths {
            get10(port, path);
        }
        server.wait_lines("logs/t.log", paths.len());
    }
    let lines = |s: &Server| s.wait_lines("logs/t.log", paths.len());
    let (ours, theirs) = (lines(&waypost), lines(&nginx));
    assert_eq!(ours.len(), paths.len(), "{ours:?}");
    assert_eq!(theirs.len(), paths.len(), "{theirs:?}");

    // What nginx logged, as expected here, so that a change in either
    // program shows.
    let up = tries(&[dead, live]);
    let expected_fixed = [
        (up.as_str(), "502, 200", "200"),
        (&*addr(dead), "502", "502"),
        ("-", "-", "200"),
        (&*addr(live), "200", "200"),
    ];
    let expected_shapes = [
        ("TT", "-T", "-T"),
        ("T", "-", "-"),
        ("-", "-", "-"),
        ("T", "T", "T"),
    ];
    for (i, (ours, theirs)) in ours.iter().zip(&theirs).enumerate() {
        let ours: Vec<&str> = ours.split('|').collect();
        let theirs: Vec<&str> = theirs.split('|').collect();
        assert_eq!(ours.len(), 6, "waypost line {i}: {ours:?}");
        assert_eq!(theirs.len(), 6, "nginx line {i}: {theirs:?}");
        let (addrs, statuses, status) = expected_fixed[i];
        for (who, f) in [("waypost", &ours), ("nginx", &theirs)] {
            assert_eq!(
                (f[0], f[1], f[5]),
                (addrs, statuses, status),
                "{who}, request {i} ({})",
                paths[i]
            );
            let shapes = (
                time_shape(f[2]).unwrap_or_else(|| panic!("{who} response time {:?}", f[2])),
                time_shape(f[3]).unwrap_or_else(|| panic!("{who} connect time {:?}", f[3])),
                time_shape(f[4]).unwrap_or_else(|| panic!("{who} header time {:?}", f[4])),
            );
            let (r, c, h) = expected_shapes[i];
            assert_eq!(
                (shapes.0.as_str(), shapes.1.as_str(), shapes.2.as_str()),
                (r, c, h),
                "{who}, request {i} ({}): response, connect, header times {:?}",
                paths[i],
                &f[2..5]
            );
        }
    }
}

fn escape_conf(port: u16, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    log_format j escape=json '{{\"uri\":\"$uri\",\"x\":\"$http_x\",\"ua\":\"$http_user_agent\",\
\"a\":\"$arg_a\",\"up\":\"$upstream_addr\",\"s\":$status,\"r\":\"$request\"}}';\n\
             \x20   log_format d '$uri|$http_x|$http_user_agent|$arg_a|$upstream_addr|$status|$request|$args|$cookie_k|$content_type|$remote_user|$proxy_host';\n\
             \x20   log_format n escape=none '$uri|$http_x|$http_user_agent|$arg_a|$upstream_addr|$status';\n\
             \x20   log_format c '$request_uri';\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       location /j/ {{ access_log logs/j.log j; return 200 \"j\\n\"; }}\n\
             \x20       location /d/ {{ access_log logs/d.log d; return 200 \"d\\n\"; }}\n\
             \x20       location /n/ {{ access_log logs/n.log n; return 200 \"n\\n\"; }}\n\
             \x20       location /if/ {{ access_log logs/if.log c if=$arg_log; return 200 \"if\\n\"; }}\n\
             \x20       location /st/ {{ access_log logs/st.log c if=${{status}}0; return 200 \"st\\n\"; }}\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

/// Quotes, backslashes, control bytes (in `$uri`, decoded; a header
/// carries a tab and UTF-8) and missing variables come out byte for byte
/// as nginx writes them with each `escape=`; `if=` skips the same lines.
#[test]
fn escaping_and_conditions_match_nginx() {
    let ports = free_ports(2);
    let waypost = Server::waypost(&escape_conf(ports[0], false), &[ports[0]]);
    let nginx = Server::nginx(&escape_conf(ports[1], true), &[ports[1]]);
    let odd_uri = "a%01b%1Fc%7Fd%22e%5Cf%09g%C3%A9%0Ah%20i";
    let requests: Vec<Vec<u8>> = ["j", "d", "n"]
        .iter()
        .flat_map(|loc| {
            [
                format!(
                    "GET /{loc}/{odd_uri}?a=%22q HTTP/1.0\r\nX: q\"r\\s\tt\u{e9}\r\nUser-Agent: u\\\"v\r\n\r\n"
                )
                .into_bytes(),
                // Missing header and argument, an empty argument.
                format!("GET /{loc}/plain HTTP/1.0\r\nUser-Agent: \r\n\r\n").into_bytes(),
                // Found but empty (nginx prints nothing), or not found (`-`).
                format!("GET /{loc}/x?a= HTTP/1.0\r\nX: \\\\\r\nCookie: k=\r\nContent-Type:\r\nAuthorization: Basic Og==\r\n\r\n").into_bytes(),
            ]
        })
        .chain(
            ["?log=1", "?log=0", "", "?log=", "?log=00", "?log=yes", "?a=1&log=0"]
                .iter()
                .map(|q| format!("GET /if/{q} HTTP/1.0\r\n\r\n").into_bytes()),
        )
        .chain(std::iter::once(b"GET /st/ HTTP/1.0\r\n\r\n".to_vec()))
        .collect();
    let logs = [
        ("logs/j.log", 3),
        ("logs/d.log", 3),
        ("logs/n.log", 3),
        ("logs/if.log", 3),
        ("logs/st.log", 1),
    ];
    let mut results = Vec::new();
    for (server, port) in [(&waypost, ports[0]), (&nginx, ports[1])] {
        send_ok(port, requests.iter().map(Vec::as_slice));
        let mut files = Vec::new();
        for (log, n) in logs {
            server.wait_lines(log, n);
            files.push(std::fs::read(server.dir.path.join(log)).expect("log"));
        }
        results.push(files);
    }
    for (i, (log, _)) in logs.iter().enumerate() {
        assert_eq!(
            String::from_utf8_lossy(&results[0][i]),
            String::from_utf8_lossy(&results[1][i]),
            "{log}: waypost (left) and nginx (right)"
        );
    }
    // What nginx wrote, to show what was compared.
    let json = String::from_utf8_lossy(&results[1][0]).into_owned();
    assert!(
        json.starts_with(
            "{\"uri\":\"/j/a\\u0001b\\u001Fc\u{7f}d\\\"e\\\\f\\tg\u{e9}\\nh i\",\"x\":\"q\\\"r\\\\s\\tt\u{e9}\",\"ua\":\"u\\\\\\\"v\",\"a\":\"%22q\",\"up\":\"\",\"s\":200,"
        ),
        "{json}"
    );
    let conditional = String::from_utf8_lossy(&results[1][3]).into_owned();
    assert_eq!(conditional, "/if/?log=1\n/if/?log=00\n/if/?log=yes\n");
}

fn multi_conf(port: u16, live: u16, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    log_format a 'A|$uri|$args|$status|$http_x|$upstream_addr|$upstream_status|$body_bytes_sent';\n\
             \x20   log_format j escape=json '{{\"uri\":\"$uri\",\"x\":\"$http_x\",\"up\":\"$upstream_addr\",\"s\":$status}}';\n\
             \x20   log_format o 'O|$request|$status';\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       access_log logs/a.log a;\n\
             \x20       access_log logs/j.log j;\n\
             \x20       location / {{ return 200 \"x\\n\"; }}\n\
             \x20       location /p/ {{ proxy_pass http://127.0.0.1:{live}; }}\n\
             \x20       location /own/ {{ access_log logs/own.log o; return 200 \"x\\n\"; }}\n\
             \x20       location /off/ {{\n\
             \x20           access_log off;\n\
             \x20           return 200 \"x\\n\";\n\
             \x20           location /off/child/ {{ return 200 \"x\\n\"; }}\n\
             \x20           location /off/own/ {{ access_log logs/offown.log o; return 200 \"x\\n\"; }}\n\
             \x20       }}\n\
             \x20       location /offlast/ {{ access_log logs/mix.log o; access_log off; return 200 \"x\\n\"; }}\n\
             \x20       location /offfirst/ {{ access_log off; access_log logs/mix.log o; return 200 \"x\\n\"; }}\n\
             \x20       location /same/ {{ access_log logs/same.log a; access_log logs/same.log o; return 200 \"x\\n\"; }}\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

/// Every `access_log` of a level is written, in order: the server's two
/// (two formats, one of them json) both get a line per request, with the
/// same upstream fields; a location with its own `access_log` writes only
/// that; `access_log off` at a level writes nothing there nor in nested
/// locations without their own, whether it comes before or after another
/// `access_log` of the level; two `access_log` of one file write two
/// lines. Line for line as nginx.
#[test]
fn several_logs_per_level_as_nginx() {
    let ports = free_ports(2);
    let live = backend();
    let waypost = Server::waypost(&multi_conf(ports[0], live, false), &[ports[0]]);
    let nginx = Server::nginx(&multi_conf(ports[1], live, true), &[ports[1]]);
    let requests = [
        "/?q=1",
        "/own/?q=2",
        "/off/?q=3",
        "/off/child/?q=4",
        "/off/own/?q=5",
        "/offlast/?q=6",
        "/offfirst/?q=7",
        "/same/?q=8",
        "/p/?q=9",
        // Last: once its lines are there, every earlier line is.
        "/?q=10",
    ];
    let logs = [
        ("logs/a.log", 3),
        ("logs/j.log", 3),
        ("logs/own.log", 1),
        ("logs/offown.log", 1),
        ("logs/same.log", 2),
        ("logs/mix.log", 0),
    ];
    let mut results = Vec::new();
    for (server, port) in [(&waypost, ports[0]), (&nginx, ports[1])] {
        for path in requests {
            let request = format!("GET {path} HTTP/1.0\r\nX: h\"{path}\r\n\r\n");
            let response = send(port, request.as_bytes());
            assert!(
                response.starts_with(b"HTTP/1.1 200") || response.starts_with(b"HTTP/1.0 200"),
                "{path} -> {:?}",
                String::from_utf8_lossy(&response)
            );
        }
        server.wait_lines("logs/a.log", 3);
        server.wait_lines("logs/j.log", 3);
        let files: Vec<String> = logs.iter().map(|(log, _)| server.read(log)).collect();
        results.push(files);
    }
    for (i, (log, n)) in logs.iter().enumerate() {
        let (ours, theirs) = (&results[0][i], &results[1][i]);
        assert_eq!(theirs.lines().count(), *n, "nginx {log}: {theirs}");
        assert_eq!(ours, theirs, "{log}: waypost (left) and nginx (right)");
    }
    // What nginx wrote, to show what was compared.
    let up = addr(live);
    assert_eq!(
        results[1][0],
        format!(
            "A|/|q=1|200|h\\x22/?q=1|-|-|2\n\
             A|/p/|q=9|200|h\\x22/p/?q=9|{up}|200|3\n\
             A|/|q=10|200|h\\x22/?q=10|-|-|2\n"
        )
    );
    assert_eq!(
        results[1][1],
        format!(
            "{{\"uri\":\"/\",\"x\":\"h\\\"/?q=1\",\"up\":\"\",\"s\":200}}\n\
             {{\"uri\":\"/p/\",\"x\":\"h\\\"/p/?q=9\",\"up\":\"{up}\",\"s\":200}}\n\
             {{\"uri\":\"/\",\"x\":\"h\\\"/?q=10\",\"up\":\"\",\"s\":200}}\n"
        )
    );
    assert_eq!(results[1][2], "O|GET /own/?q=2 HTTP/1.0|200\n");
    assert_eq!(results[1][3], "O|GET /off/own/?q=5 HTTP/1.0|200\n");
    assert_eq!(
        results[1][4],
        "A|/same/|q=8|200|h\\x22/same/?q=8|-|-|2\nO|GET /same/?q=8 HTTP/1.0|200\n"
    );
}

fn buffer_conf(port: u16, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    log_format u '$uri';\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       location /b/ {{ access_log logs/b.log u buffer=35; return 200 \"b\\n\"; }}\n\
             \x20       location /f/ {{ access_log logs/f.log u buffer=4k flush=1s; return 200 \"f\\n\"; }}\n\
             \x20       location /u/ {{ access_log logs/u.log u; return 200 \"u\\n\"; }}\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

/// Waits until `server` has exited, or fails after ten seconds.
fn wait_exit(server: &mut Server) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.alive() {
        assert!(Instant::now() < deadline, "the server did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `buffer=35` with 10-byte lines (`/b/NNNNNN` and a newline): three lines
/// wait, the fourth writes them out and waits in turn; `flush=1s` writes a
/// line a second after it came; SIGUSR1 and the exit (SIGQUIT) write what
/// waits. An unbuffered log written by the same writer after each step is
/// the barrier: once its line is there, the buffered line before it was
/// handled.
fn buffer_scenario(mut server: Server, port: u16, who: &str) {
    let mut barriers = 0;
    let mut barrier = |server: &Server| {
        barriers += 1;
        get10(port, &format!("/u/{barriers:06}"));
        server.wait_lines("logs/u.log", barriers);
    };
    let b = |n: u32| format!("/b/{n:06}");
    let b_lines = |to: u32| (1..=to).map(|n| format!("{}\n", b(n))).collect::<String>();

    for n in 1..=3 {
        get10(port, &b(n));
    }
    barrier(&server);
    assert_eq!(server.read("logs/b.log"), "", "{who}: 30 bytes of 35 wait");
    get10(port, &b(4));
    barrier(&server);
    assert_eq!(
        server.read("logs/b.log"),
        b_lines(3),
        "{who}: the 4th line does not fit: the first three are written"
    );

    let sent = Instant::now();
    get10(port, "/f/000001");
    barrier(&server);
    server.wait_lines("logs/f.log", 1);
    let waited = sent.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "{who}: the flush=1s line came after {waited:?}"
    );

    get10(port, &b(5));
    barrier(&server);
    assert_eq!(
        server.read("logs/b.log"),
        b_lines(3),
        "{who}: 20 bytes wait"
    );
    server.signal(libc::SIGUSR1);
    server.wait_lines("logs/b.log", 5);
    assert_eq!(server.read("logs/b.log"), b_lines(5), "{who}: after reopen");

    get10(port, &b(6));
    get10(port, "/f/000002");
    barrier(&server);
    assert_eq!(
        server.read("logs/b.log"),
        b_lines(5),
        "{who}: 10 bytes wait"
    );
    server.signal(libc::SIGQUIT);
    wait_exit(&mut server);
    assert_eq!(server.read("logs/b.log"), b_lines(6), "{who}: after exit");
    assert_eq!(
        server.read("logs/f.log"),
        "/f/000001\n/f/000002\n",
        "{who}: after exit"
    );
}

#[test]
fn buffered_lines_are_written_as_nginx_writes_them() {
    let ports = free_ports(2);
    let waypost = Server::waypost(&buffer_conf(ports[0], false), &[ports[0]]);
    let nginx = Server::nginx(&buffer_conf(ports[1], true), &[ports[1]]);
    let port = ports[0];
    let a = std::thread::spawn(move || buffer_scenario(waypost, port, "waypost"));
    buffer_scenario(nginx, ports[1], "nginx");
    if let Err(e) = a.join() {
        std::panic::resume_unwind(e);
    }
}

/// Parameters nginx accepts that waypost does not honour are refused by
/// name at `-t`, never ignored.
#[test]
fn unsupported_parameters_are_refused() {
    let cases = [
        ("combined gzip", "\"gzip\" is not supported"),
        ("combined buffer=8k gzip=5", "\"gzip=5\" is not supported"),
    ];
    let paths = [(
        "logs/$host.log",
        "variables in the \"access_log\" path are not supported",
    )];
    let all = cases
        .iter()
        .map(|(params, msg)| (format!("logs/a.log {params}"), *msg))
        .chain(paths.iter().map(|(p, msg)| (p.to_string(), *msg)));
    for (args, message) in all {
        let dir = TempDir::new("access-log-unsupported");
        let conf = dir.write(
            "test.conf",
            &format!(
                "error_log logs/error.log;\npid logs/t.pid;\nevents {{}}\nhttp {{\n    access_log {args};\n}}\n"
            ),
        );
        let conf = conf.display().to_string();
        let nginx = std::process::Command::new(nginx_bin())
            .args(["-p", &format!("{}/", dir.path.display())])
            .args(["-e", "logs/early.log", "-t", "-c", &conf])
            .output()
            .expect("run nginx");
        assert_eq!(
            nginx.status.code(),
            Some(0),
            "nginx accepts `access_log {args}`: {}",
            String::from_utf8_lossy(&nginx.stderr)
        );
        let out = run_waypost(&dir, &["-t", "-c", &conf]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("waypost: [emerg] {message} in {conf}:5")),
            "`access_log {args}`: {stderr}"
        );
        assert_eq!(out.status.code(), Some(1), "{stderr}");
    }
}

/// `$bytes_sent` is everything the client received, head included, and
/// `$body_bytes_sent` the body alone, in both programs (their heads differ:
/// `Server:` and header case).
#[test]
fn bytes_sent_counts_the_head_as_nginx() {
    for nginx in [false, true] {
        let [port] = free_ports(1)[..] else {
            unreachable!()
        };
        let conf = wrap_http(
            &format!(
                "    log_format sizes '$bytes_sent $body_bytes_sent';\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       access_log logs/sizes.log sizes;\n\
                 \x20       location / {{ return 200 \"twelve bytes\"; }}\n\
                 \x20   }}\n"
            ),
            nginx,
        );
        let server = Server::either(nginx, &conf, &[port]);
        let response = get10(port, "/");
        let lines = server.wait_lines("logs/sizes.log", 1);
        assert_eq!(
            lines[0],
            format!("{} 12", response.len()),
            "nginx: {nginx}: {}",
            String::from_utf8_lossy(&response)
        );
    }
}

/// A server-level `return` and a request no location matches are logged
/// with the server's access logs, as nginx logs them (body sizes aside:
/// the 404 page names waypost).
#[test]
fn server_level_answers_are_logged_as_nginx() {
    let mut logs = Vec::new();
    for nginx in [false, true] {
        let [a, b] = free_ports(2)[..] else {
            unreachable!()
        };
        let conf = wrap_http(
            &format!(
                "    log_format s '$status $request';\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{a};\n\
                 \x20       access_log logs/a.log s;\n\
                 \x20       return 200 \"all\";\n\
                 \x20   }}\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{b};\n\
                 \x20       access_log logs/b.log s;\n\
                 \x20       location = /only {{ return 204; }}\n\
                 \x20   }}\n"
            ),
            nginx,
        );
        let server = Server::either(nginx, &conf, &[a, b]);
        get10(a, "/x");
        get10(b, "/elsewhere");
        get10(b, "/only");
        logs.push((
            server.wait_lines("logs/a.log", 1),
            server.wait_lines("logs/b.log", 2),
        ));
    }
    assert_eq!(logs[0], logs[1], "waypost (left) and nginx (right)");
    assert_eq!(logs[0].0, ["200 GET /x HTTP/1.0"]);
}

/// Every request answered before a fast stop (SIGTERM) under load has its
/// line, as with nginx, which writes each line as the request ends:
/// waypost's workers hand their lines to the log writer in batches, and
/// the exit collects what every worker has not handed over yet. Counted:
/// requests whose answer was read 50 ms before the signal (a request
/// answered in the microseconds before it may be logged or not, by
/// either).
#[test]
fn a_fast_stop_under_load_loses_no_line_as_nginx() {
    for nginx in [false, true] {
        let port = free_ports(1)[0];
        let conf = wrap_http(
            &format!(
                "    log_format uri '$request_uri';\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       access_log logs/a.log uri;\n\
                 \x20       keepalive_requests 1000000;\n\
                 \x20       location / {{ return 200 \"ok\"; }}\n\
                 \x20   }}\n"
            ),
            nginx,
        );
        let mut server = Server::either(nginx, &conf, &[port]);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let clients: Vec<_> = (0..16)
            .map(|t| {
                let stop = stop.clone();
                let count = count.clone();
                std::thread::spawn(move || {
                    let mut answered = Vec::new();
                    let mut client = waypost_tests::KeepAlive::connect(port);
                    let mut n = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        n += 1;
                        let path = format!("/t{t}/{n}");
                        match client.try_get(&path) {
                            Some(r) if r.status == 200 => {
                                answered.push((path, Instant::now()));
                                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            _ => break,
                        }
                    }
                    answered
                })
            })
            .collect();
        // Under load for a while: at least 2,000 requests and 200 ms, so
        // that many were answered well before the signal.
        let started = Instant::now();
        while count.load(std::sync::atomic::Ordering::Relaxed) < 2000
            || started.elapsed() < Duration::from_millis(200)
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "nginx {nginx}: no load"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let signalled = Instant::now();
        server.signal(libc::SIGTERM);
        wait_exit(&mut server);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let answered: Vec<(String, Instant)> = clients
            .into_iter()
            .flat_map(|c| c.join().expect("client"))
            .collect();
        let logged: std::collections::HashSet<String> = server
            .read("logs/a.log")
            .lines()
            .map(str::to_owned)
            .collect();
        let before: Vec<&String> = answered
            .iter()
            .filter(|(_, at)| *at + Duration::from_millis(50) < signalled)
            .map(|(p, _)| p)
            .collect();
        let missing: Vec<&&String> = before.iter().filter(|p| !logged.contains(**p)).collect();
        eprintln!(
            "nginx {nginx}: {} answered 50 ms before the stop, {} lines, {} missing",
            before.len(),
            logged.len(),
            missing.len()
        );
        assert!(before.len() >= 1000, "nginx {nginx}: only {}", before.len());
        assert!(
            missing.is_empty(),
            "nginx {nginx}: {} answered requests have no line, first {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
    }
}

fn heads_conf(port: u16, back: u16, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    log_format h '$request_length $pipe $upstream_cache_status [$sent_http_content_type] [$sent_http_x_a] [$sent_http_cache_control] [$sent_http_connection] [$sent_http_content_length] [$upstream_http_x_u] [$upstream_http_x_pad] [$sent_http_x_pad] [$upstream_http_x_accel_buffering] [$upstream_http_set_cookie] [$upstream_cookie_sid] [$upstream_cookie_none] [$sent_http_none] [$ssl_protocol] [$ssl_cipher] $status';\n\
             \x20   log_format j escape=json '{{\"t\":\"$sent_http_x_a\",\"u\":\"$upstream_http_x_u\",\"n\":\"$sent_http_none\",\"s\":\"$ssl_protocol\"}}';\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       access_log logs/h.log h;\n\
             \x20       access_log logs/j.log j;\n\
             \x20       location / {{ add_header X-A a1; add_header X-A a2; add_header Cache-Control no-cache; add_header Cache-Control private; return 200 \"ok\\n\"; }}\n\
             \x20       location /p {{ proxy_pass http://127.0.0.1:{back}; }}\n\
             \x20   }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{back};\n\
             \x20       add_header X-U u1;\n\
             \x20       add_header X-U u2;\n\
             \x20       add_header X-Pad pad;\n\
             \x20       add_header X-Accel-Buffering yes;\n\
             \x20       add_header Set-Cookie \"a=1; Path=/\";\n\
             \x20       add_header Set-Cookie \"SID = x y ; HttpOnly\";\n\
             \x20       return 200 \"up\\n\";\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

/// `$request_length` (the head without the empty lines before it, and
/// the body as it came: chunk framing counted, a body left unread not),
/// `$pipe`, `$sent_http_*` (repeated lines: the first, Cache-Control
/// joined; Connection as nginx logs it), `$upstream_http_*` (the
/// headers hidden from the client too) and `$upstream_cookie_*` (spaces
/// around `=` skipped), and the TLS and
/// cache variables not found on a plain connection without a cache: the
/// same lines as nginx's, byte for byte.
#[test]
fn request_and_head_variables_match_nginx() {
    let ports = free_ports(4);
    let waypost = Server::waypost(&heads_conf(ports[0], ports[1], false), &[ports[0]]);
    let nginx = Server::nginx(&heads_conf(ports[2], ports[3], true), &[ports[2]]);
    let requests: [&[u8]; 7] = [
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nX-Long: aaaaaaaaaa\r\nConnection: close\r\n\r\n",
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\nConnection: close\r\n\r\nhello12",
        b"\r\nGET /d HTTP/1.0\r\n\r\n",
        b"GET /p/x?y HTTP/1.0\r\nCookie: sid=1\r\n\r\n",
        // A line nginx ignores for its name still counts.
        b"GET /e HTTP/1.0\r\nX@Y: 1\r\nHost: x\r\n\r\n",
    ];
    let mut results = Vec::new();
    for (server, port) in [(&waypost, ports[0]), (&nginx, ports[2])] {
        send_ok(port, requests);
        results.push((
            server.wait_lines("logs/h.log", 9),
            server.wait_lines("logs/j.log", 9),
        ));
    }
    assert_eq!(results[0], results[1], "waypost (left) and nginx (right)");
    // What nginx wrote, to show what was compared.
    let (h, j) = &results[1];
    assert_eq!(
        h[0],
        "28 . - [text/plain] [a1] [no-cache, private] [close] [3] [-] [-] [-] [-] [-] [-] [-] [-] [-] [-] 200"
    );
    assert!(h[1].starts_with("67 p "), "{}", h[1]);
    assert!(h[4].starts_with("91 . "), "{}", h[4]);
    assert_eq!(
        h[7],
        "38 . - [text/plain] [-] [-] [close] [3] [u1] [pad] [-] [yes] [a=1; Path=/] [x y ] [-] [-] [-] [-] 200"
    );
    assert_eq!(j[7], "{\"t\":\"\",\"u\":\"u1\",\"n\":\"\",\"s\":\"\"}");
    assert!(h[8].starts_with("36 . "), "{}", h[8]);
}

/// `$request_id`: 32 lowercase hex digits, as nginx's, one value per
/// request wherever the request reads it (a header to the upstream, an
/// internal redirect's target, its log line), and a new one for every
/// request.
#[test]
fn request_id_is_one_per_request_as_nginx() {
    for nginx in [false, true] {
        let ports = free_ports(2);
        let (port, back) = (ports[0], ports[1]);
        let conf = wrap_http(
            &format!(
                "    log_format id '$request_id';\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       access_log logs/id.log id;\n\
                 \x20       error_page 404 = @fallback;\n\
                 \x20       location / {{ proxy_set_header X-Request-Id $request_id; proxy_pass http://127.0.0.1:{back}; }}\n\
                 \x20       location /missing {{ return 404; }}\n\
                 \x20       location @fallback {{ return 200 \"$request_id\"; }}\n\
                 \x20   }}\n\
                 \x20   server {{ listen 127.0.0.1:{back}; return 200 \"$http_x_request_id\"; }}\n"
            ),
            nginx,
        );
        let server = Server::either(nginx, &conf, &[port]);
        let mut bodies = Vec::new();
        for path in ["/a", "/b", "/missing"] {
            let response = String::from_utf8(get10(port, path)).expect("text");
            let body = response.rsplit("\r\n\r\n").next().unwrap_or("").to_owned();
            assert!(
                body.len() == 32
                    && body
                        .bytes()
                        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
                "nginx: {nginx}: {response}"
            );
            bodies.push(body);
        }
        let logged = server.wait_lines("logs/id.log", 3);
        assert_eq!(logged, bodies, "nginx: {nginx}");
        assert!(
            bodies[0] != bodies[1] && bodies[1] != bodies[2],
            "{bodies:?}"
        );
    }
}

/// A backend for the byte counts: keeps connections, reads each request's
/// Content-Length body, and answers `/chunked` with two chunks (in one
/// write), `/one` with one chunk, `/close` with a body the close ends,
/// `/e502` with a 502 and a body, anything else 11 bytes.
fn counting_backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    serve_numbered(listener, |mut stream, _| {
        while let Some(head) = read_head(&mut stream) {
            let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let length: usize = text
                .split("\r\n")
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let end = text.find("\r\n\r\n").map_or(text.len(), |i| i + 4);
            let mut body = head.len() - end;
            let mut chunk = [0u8; 1024];
            while body < length {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => body += n,
                }
            }
            let line = text.split("\r\n").next().unwrap_or("");
            let answer: &[u8] = if line.contains("/chunked ") {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            } else if line.contains("/one ") {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n"
            } else if line.contains("/close ") {
                // Its end is the close.
                let _ =
                    stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello world");
                return;
            } else if line.contains("/e502 ") {
                b"HTTP/1.1 502 Bad\r\nContent-Length: 4\r\n\r\nnope"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world"
            };
            if stream.write_all(answer).is_err() {
                return;
            }
        }
    });
    port
}

fn counts_conf(port: u16, dead: u16, live: u16, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    log_format c '$upstream_status|$upstream_response_length|$upstream_bytes_received|$upstream_bytes_sent|$body_bytes_sent';\n\
             \x20   upstream u {{ server 127.0.0.1:{dead}; server 127.0.0.1:{live}; }}\n\
             \x20   upstream k {{ server 127.0.0.1:{live}; keepalive 4; }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       access_log logs/c.log c;\n\
             \x20       location / {{ proxy_pass http://u; proxy_next_upstream error http_502; }}\n\
             \x20       location /k/ {{ proxy_pass http://k; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n\
             \x20       location /local {{ return 200 \"local\\n\"; }}\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

/// `$upstream_bytes_sent`, `$upstream_bytes_received` and
/// `$upstream_response_length`, one number per try, as nginx counts them:
/// a try that never connected 0s; a chunked body with its framing (and
/// `$body_bytes_sent` with the framing of a chunked answer); a
/// response retried on its status with its head (and what came with it)
/// received and no body passed on; a body sent upstream; no upstream `-`.
#[test]
fn upstream_byte_counts_match_nginx() {
    let ports = free_ports(3);
    let (dead, wp_port, ngx_port) = (ports[0], ports[1], ports[2]);
    let live = counting_backend();
    let waypost = Server::waypost(&counts_conf(wp_port, dead, live, false), &[wp_port]);
    let nginx = Server::nginx(&counts_conf(ngx_port, dead, live, true), &[ngx_port]);
    let requests: [&[u8]; 9] = [
        b"GET /a HTTP/1.0\r\n\r\n",
        b"GET /chunked HTTP/1.0\r\n\r\n",
        b"POST /k/x HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
        b"GET /k/chunked HTTP/1.0\r\n\r\n",
        b"GET /k/e502 HTTP/1.0\r\n\r\n",
        b"GET /local HTTP/1.0\r\n\r\n",
        b"GET /k/y HTTP/1.0\r\nX-Long: 0123456789\r\n\r\n",
        // Chunked to the client too: its framing is in $body_bytes_sent.
        b"GET /k/one HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET /k/close HTTP/1.0\r\n\r\n",
    ];
    let mut logged = Vec::new();
    for (server, port) in [(&waypost, wp_port), (&nginx, ngx_port)] {
        for r in requests {
            send(port, r);
        }
        logged.push(server.wait_lines("logs/c.log", requests.len()));
    }
    assert_eq!(logged[0], logged[1], "waypost (left) and nginx (right)");
    assert_eq!(
        logged[1],
        [
            "502, 200|0, 11|0, 50|0, 47|11",
            "200|26|81|53|11",
            "200|11|50|53|11",
            "200|26|81|36|11",
            "502|4|43|33|4",
            "-|-|-|-|6",
            "200|11|50|50|11",
            "200|21|68|32|21",
            "200|11|49|34|11",
        ]
    );
}

fn ratio_conf(port: u16, root: &str, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    log_format g '$status|$gzip_ratio|$request_completion';\n\
             \x20   gzip on;\n\
             \x20   gzip_types text/plain;\n\
             \x20   gzip_min_length 1;\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       access_log logs/g.log g;\n\
             \x20       root {root};\n\
             \x20       location /r {{ return 200 \"short text body\\n\"; }}\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

/// `$gzip_ratio` (nginx's two decimals, of the bytes before and after
/// compression, gzip's header and trailer counted; not found for an answer
/// not compressed, a HEAD's included) and `$request_completion` (`OK` for
/// a whole answer) as nginx logs them. The compressed bytes themselves
/// differ (another deflate implementation), so the ratio of a large body
/// is compared by its shape.
#[test]
fn gzip_ratio_and_request_completion_as_nginx() {
    let files = TempDir::new("ratio");
    std::fs::write(files.path.join("a.txt"), "hello world ".repeat(200)).expect("write");
    let root = files.path.display().to_string();
    let requests: [&[u8]; 5] = [
        b"GET /a.txt HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
        b"GET /a.txt HTTP/1.0\r\n\r\n",
        b"HEAD /a.txt HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
        b"GET /r HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
        b"GET /none HTTP/1.0\r\n\r\n",
    ];
    let mut logged = Vec::new();
    for nginx in [false, true] {
        let [port] = free_ports(1)[..] else {
            unreachable!()
        };
        let server = Server::either(nginx, &ratio_conf(port, &root, nginx), &[port]);
        for r in requests {
            send(port, r);
        }
        logged.push(server.wait_lines("logs/g.log", requests.len()));
    }
    let large = |lines: &[String]| -> String {
        let (status, rest) = lines[0].split_once('|').unwrap_or_default();
        let (ratio, completion) = rest.split_once('|').unwrap_or_default();
        let shaped = ratio
            .split_once('.')
            .is_some_and(|(i, f)| i.parse::<u32>().is_ok_and(|i| i > 10) && f.len() == 2);
        format!("{status}|{shaped}|{completion}")
    };
    assert_eq!(large(&logged[0]), large(&logged[1]));
    assert_eq!(large(&logged[1]), "200|true|OK");
    assert_eq!(
        logged[0][1..],
        logged[1][1..],
        "waypost (left) and nginx (right)"
    );
    assert_eq!(
        logged[1][1..],
        ["200|-|OK", "200|-|OK", "200|0.44|OK", "404|-|OK"]
    );
}

/// waypost's warning that a module's hook ran long (a loaded machine
/// can make the round robin's first call slow): not nginx's, and not the
/// line under test.
fn slow_hook(line: &str) -> bool {
    line.contains("hooks cannot be pre-empted")
}

/// A UDP socket for syslog messages, and its port.
fn syslog_sink() -> (std::net::UdpSocket, u16) {
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    sink.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let at = sink.local_addr().expect("addr").port();
    (sink, at)
}

/// The next syslog message: its `<PRI` and what follows its time
/// (`Mmm dd hh:mm:ss `, which differs between runs).
fn syslog_message(sink: &std::net::UdpSocket) -> (String, String) {
    let mut buf = [0u8; 2048];
    let n = sink.recv(&mut buf).expect("a syslog message");
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    let (pri, rest) = text.split_once('>').unwrap_or(("", ""));
    (pri.to_owned(), rest.get(16..).unwrap_or("").to_owned())
}

/// `access_log syslog:...`: each line one UDP message in nginx's form
/// (`<PRI>Mmm dd hh:mm:ss HOST TAG: LINE`), with the facility, severity,
/// tag and `nohostname` as written; and nginx's messages for bad ones.
#[test]
fn syslog_messages_as_nginx_sends_them() {
    let mut got = Vec::new();
    for nginx in [false, true] {
        let (sink, at) = syslog_sink();
        let [port] = free_ports(1)[..] else {
            unreachable!()
        };
        let conf = wrap_http(
            &format!(
                "    log_format s '$request $status';\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       location /a {{ access_log syslog:server=127.0.0.1:{at} s; return 200; }}\n\
                 \x20       location /b {{ access_log syslog:server=127.0.0.1:{at},facility=local0,severity=notice,tag=web_1,nohostname s; return 204; }}\n\
                 \x20   }}\n"
            ),
            nginx,
        );
        let _server = Server::either(nginx, &conf, &[port]);
        let mut messages = Vec::new();
        for path in ["/a", "/b"] {
            get10(port, path);
            let (pri, after_time) = syslog_message(&sink);
            messages.push(format!("{pri}> {after_time}"));
        }
        got.push(messages);
    }
    assert_eq!(got[0], got[1], "waypost (left) and nginx (right)");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    assert_eq!(
        got[1],
        [
            format!("<190> {} nginx: GET /a HTTP/1.0 200", host.trim()),
            "<133> web_1: GET /b HTTP/1.0 204".to_owned(),
        ]
    );
}

/// `syslog:server=unix:PATH` (`/dev/log`, journald's or rsyslog's
/// socket): the same messages over a unix datagram socket, for the access
/// log and the error log. When the syslog daemon restarts and makes its
/// socket again, the message sent into the old one is lost and the next
/// reaches the new one: nginx closes its socket on a failed send and
/// connects anew at the next message.
#[test]
fn syslog_to_a_unix_socket_as_nginx() {
    use std::os::unix::net::UnixDatagram;
    let bind = |path: &std::path::Path| {
        let sink = UnixDatagram::bind(path).expect("bind the syslog socket");
        sink.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        sink
    };
    let next = |sink: &UnixDatagram| {
        let mut buf = [0u8; 2048];
        let n = sink.recv(&mut buf).expect("a syslog message");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        // `<PRI>`, then what follows `Mmm dd hh:mm:ss `.
        let (pri, rest) = text.split_once('>').unwrap_or(("", ""));
        format!("{pri}> {}", rest.get(16..).unwrap_or(""))
    };
    let mut got = Vec::new();
    for nginx in [false, true] {
        let dir = TempDir::new("syslog-unix");
        let (access, errors) = (dir.path.join("access.sock"), dir.path.join("error.sock"));
        let mut sink = bind(&access);
        let error_sink = bind(&errors);
        let ports = free_ports(2);
        let (port, dead) = (ports[0], ports[1]);
        let conf = wrap_http(
            &format!(
                "    log_format s '$request $status';\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       access_log syslog:server=unix:{},tag=web,nohostname s;\n\
                 \x20       location / {{ return 200; }}\n\
                 \x20       location /dead {{ proxy_pass http://127.0.0.1:{dead}; }}\n\
                 \x20   }}\n",
                access.display()
            ),
            nginx,
        )
        .replace(
            "error_log logs/error.log;",
            &format!(
                "error_log syslog:server=unix:{},facility=local1,tag=tg,nohostname warn;",
                errors.display()
            ),
        );
        let _server = Server::either(nginx, &conf, &[port]);
        let mut messages = Vec::new();
        get10(port, "/a");
        messages.push(next(&sink));
        // The daemon restarts: its socket is made again at the same path.
        drop(sink);
        std::fs::remove_file(&access).expect("remove the socket");
        sink = bind(&access);
        get10(port, "/lost");
        get10(port, "/c");
        messages.push(next(&sink));
        get10(port, "/dead");
        messages.push(next(&sink));
        // The failed send, then the request's error; their time and
        // process differ. nginx also warns `send() to syslog failed` with
        // the request's context, which waypost does not (the lines are
        // sent by the log's writer thread, which has no request; the
        // README says so).
        loop {
            let error = next(&error_sink);
            let (head, line) = error.split_once(": ").unwrap_or(("", ""));
            let level = line.split_once(" [").map_or("", |(_, l)| l);
            let (level, rest) = level.split_once("] ").unwrap_or(("", ""));
            let message = rest.split_once(": ").map_or("", |(_, m)| m);
            if level == "warn" && message.contains(" send() to syslog failed while logging")
                || slow_hook(&error)
            {
                continue;
            }
            messages.push(format!(
                "{head}: [{level}] {}",
                message.replace(&dead.to_string(), "DEAD")
            ));
            if message.contains("connect() failed") {
                break;
            }
        }
        got.push(messages);
    }
    assert_eq!(got[0], got[1], "waypost (left) and nginx (right)");
    assert_eq!(
        got[1],
        [
            "<190> web: GET /a HTTP/1.0 200",
            "<190> web: GET /c HTTP/1.0 200",
            "<190> web: GET /dead HTTP/1.0 502",
            "<139> tg: [error] send() failed (111: Connection refused)",
            "<139> tg: [error] *5 connect() failed (111: Connection refused) while connecting to upstream, client: 127.0.0.1, server: , request: \"GET /dead HTTP/1.0\", upstream: \"http://127.0.0.1:DEAD/dead\"",
        ]
    );
}

/// `error_log syslog:...`: each error line a message whose severity is
/// the line's level, with the whole line after nginx's syslog header.
#[test]
fn error_log_to_syslog_as_nginx() {
    let mut got = Vec::new();
    for nginx in [false, true] {
        let (sink, at) = syslog_sink();
        let ports = free_ports(2);
        let (port, dead) = (ports[0], ports[1]);
        let conf = wrap_http(
            &format!(
                "    server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       location / {{ proxy_pass http://127.0.0.1:{dead}; }}\n\
                 \x20   }}\n"
            ),
            nginx,
        )
        .replace(
            "error_log logs/error.log;",
            &format!("error_log syslog:server=127.0.0.1:{at},facility=local1,tag=tg warn;"),
        );
        let _server = Server::either(nginx, &conf, &[port]);
        get10(port, "/x");
        // The line's time and its process differ too.
        let (pri, after_time) = loop {
            let (pri, after_time) = syslog_message(&sink);
            if !slow_hook(&after_time) {
                break (pri, after_time);
            }
        };
        let (head, line) = after_time.split_once(": ").unwrap_or(("", ""));
        let message = line.split_once("*").map_or("", |(_, m)| m);
        got.push(format!(
            "{pri}> {head}: [..] *{}",
            message.replace(&dead.to_string(), "DEAD")
        ));
    }
    assert_eq!(got[0], got[1], "waypost (left) and nginx (right)");
    assert!(
        got[1].starts_with("<139> ") && got[1].ends_with(" tg: [..] *2 connect() failed (111: Connection refused) while connecting to upstream, client: 127.0.0.1, server: , request: \"GET /x HTTP/1.0\", upstream: \"http://127.0.0.1:DEAD/x\""),
        "{}",
        got[1]
    );
}
