//! `fastcgi_pass` side by side with nginx: one FastCGI application (a
//! small one here, speaking the protocol as PHP-FPM does) answers both,
//! echoing the params and stdin it got; the answers, the params' order
//! included, the statuses the CGI lines make, the stderr lines in the
//! error log and the reuse of `fastcgi_keep_conn` connections are the
//! same.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use waypost_tests::{assert_same_answers, free_ports, serve_numbered, wrap_http, Server};

const BEGIN_REQUEST: u8 = 1;
const END_REQUEST: u8 = 3;
const PARAMS: u8 = 4;
const STDIN: u8 = 5;
const STDOUT: u8 = 6;
const STDERR: u8 = 7;

fn read_record(s: &mut impl Read) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 8];
    s.read_exact(&mut h).ok()?;
    assert_eq!(h[0], 1, "version");
    assert_eq!(u16::from_be_bytes([h[2], h[3]]), 1, "request id");
    let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let mut content = vec![0u8; len + usize::from(h[6])];
    s.read_exact(&mut content).ok()?;
    content.truncate(len);
    Some((h[1], content))
}

fn record(out: &mut Vec<u8>, kind: u8, content: &[u8]) {
    let len = content.len() as u16;
    out.extend_from_slice(&[1, kind, 0, 1, (len >> 8) as u8, len as u8, 0, 0]);
    out.extend_from_slice(content);
}

fn length(p: &[u8], at: &mut usize) -> usize {
    if p[*at] < 128 {
        *at += 1;
        usize::from(p[*at - 1])
    } else {
        let n = u32::from_be_bytes([p[*at] & 0x7f, p[*at + 1], p[*at + 2], p[*at + 3]]);
        *at += 4;
        n as usize
    }
}

fn params(p: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < p.len() {
        let n = length(p, &mut at);
        let v = length(p, &mut at);
        let name = String::from_utf8_lossy(&p[at..at + n]).into_owned();
        let value = String::from_utf8_lossy(&p[at + n..at + n + v]).into_owned();
        at += n + v;
        out.push((name, value));
    }
    out
}

/// One request on `s`: whether the connection is to be kept.
fn one_request(s: &mut (impl Read + Write), conn: u32, served: &mut u32) -> Option<bool> {
    let (kind, begin) = read_record(s)?;
    assert_eq!(kind, BEGIN_REQUEST);
    assert_eq!(begin[1], 1, "responder role");
    let keep = begin[2] & 1 != 0;
    let mut raw = Vec::new();
    loop {
        let (kind, content) = read_record(s)?;
        assert_eq!(kind, PARAMS);
        if content.is_empty() {
            break;
        }
        raw.extend_from_slice(&content);
    }
    let mut stdin = Vec::new();
    loop {
        let (kind, content) = read_record(s)?;
        assert_eq!(kind, STDIN);
        if content.is_empty() {
            break;
        }
        stdin.extend_from_slice(&content);
    }
    *served += 1;
    let params = params(&raw);
    let uri = params
        .iter()
        .find(|(n, _)| n == "DOCUMENT_URI")
        .map_or("", |(_, v)| v.as_str());
    let mut out = Vec::new();
    let mut stdout: Vec<u8> = Vec::new();
    let mut ended_early = false;
    match uri {
        "/status.php" => {
            stdout.extend_from_slice(b"Status: 404 Not Found\r\nX-App: 1\r\n\r\nmissing")
        }
        "/reason.php" => stdout.extend_from_slice(b"Status: 299 Fine\r\n\r\nok"),
        "/redirect.php" => stdout.extend_from_slice(b"Location: /elsewhere\r\n\r\n"),
        "/server.php" => stdout.extend_from_slice(
            b"Server: app\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\nX-Accel-Expires: 5\r\n\r\nx",
        ),
        "/big.php" => {
            stdout.extend_from_slice(b"Content-Type: text/plain\n\n");
            for i in 0..7000u32 {
                stdout.extend_from_slice(format!("{i:09}\n").as_bytes());
            }
        }
        "/late.php" => {
            // Stderr after the head, inside the body.
            record(&mut out, STDOUT, b"Content-Type: text/plain\r\n\r\nfirst ");
            record(
                &mut out,
                STDERR,
                b"PHP Notice:  late in /late.php on line 9\n",
            );
            stdout.extend_from_slice(b"second");
        }
        u if u.ends_with("/cut.php") => {
            // The body's start, then the connection closes: no end of
            // stdout, no END_REQUEST.
            record(&mut out, STDOUT, b"Content-Type: text/plain\r\n\r\npartial");
            s.write_all(&out).ok()?;
            return None;
        }
        "/broken.php" => {
            record(&mut out, STDOUT, b"Content-Type: text/plain\r\n");
            ended_early = true;
        }
        _ => {
            if uri == "/stderr.php" {
                record(
                    &mut out,
                    STDERR,
                    b"PHP Warning:  oops in /x.php on line 3\n",
                );
            }
            stdout.extend_from_slice(b"Content-Type: text/plain\r\nX-Powered-By: test\r\n\r\n");
            for (n, v) in &params {
                stdout.extend_from_slice(format!("{n}={v}\n").as_bytes());
            }
            stdout.extend_from_slice(b"stdin=");
            stdout.extend_from_slice(&stdin);
            stdout
                .extend_from_slice(format!("\nrequest {served} on connection {conn}\n").as_bytes());
        }
    }
    // Many records, as an application's output buffer flushes them.
    for piece in stdout.chunks(1000) {
        record(&mut out, STDOUT, piece);
    }
    if !ended_early {
        record(&mut out, STDOUT, b"");
    }
    record(&mut out, END_REQUEST, &[0; 8]);
    s.write_all(&out).ok()?;
    Some(keep)
}

/// The application: requests on a connection while BEGIN_REQUEST asks to
/// keep it; the connection's number is in each echo.
fn application() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    serve_numbered(listener, |mut stream, conn| {
        let mut served = 0;
        while let Some(true) = one_request(&mut stream, conn, &mut served) {}
    });
    port
}

/// The root of `/deb/`, where `try_files` finds `/deb/app.php`.
fn www() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<waypost_tests::TempDir> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = waypost_tests::TempDir::new("fastcgi-www");
        dir.write("deb/app.php", "<?php");
        // A deployment's link to its release (`$realpath_root`).
        dir.write("release1/index.php", "<?php");
        std::os::unix::fs::symlink(dir.path.join("release1"), dir.path.join("current"))
            .expect("symlink");
        dir
    });
    &dir.path
}

/// The same application on a Unix socket (started once), its path.
fn socket() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(application_unix)
}

fn application_unix() -> String {
    static DIR: std::sync::OnceLock<waypost_tests::TempDir> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| waypost_tests::TempDir::new("fastcgi-sock"));
    let path = dir.path.join("app.sock");
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind unix");
    std::thread::spawn(move || {
        for (stream, conn) in listener.incoming().flatten().zip(1..) {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut served = 0;
                while let Some(true) = one_request(&mut stream, conn, &mut served) {}
            });
        }
    });
    path.display().to_string()
}

/// Each server's own cache directory (a run must not find the other's
/// entries).
fn cache_dir(nginx: bool) -> &'static std::path::Path {
    static DIRS: [std::sync::OnceLock<waypost_tests::TempDir>; 2] =
        [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
    &DIRS[usize::from(nginx)]
        .get_or_init(|| waypost_tests::TempDir::new("fastcgi-cache"))
        .path
}

fn conf(port: u16, back: u16, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    fastcgi_cache_path {cache} keys_zone=fc:1m;\n\
             \x20   upstream kept {{ server 127.0.0.1:{back}; keepalive 4; }}\n\
             \x20   upstream socks {{ server unix:{sock}; keepalive 2; }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       root /srv/www;\n\
             \x20       fastcgi_index index.php;\n\
             \x20       fastcgi_split_path_info ^(.+\\.php)(/.+)$;\n\
             \x20       fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n\
             \x20       fastcgi_param SCRIPT_NAME $fastcgi_script_name;\n\
             \x20       fastcgi_param PATH_INFO $fastcgi_path_info;\n\
             \x20       fastcgi_param QUERY_STRING $query_string;\n\
             \x20       fastcgi_param REQUEST_METHOD $request_method;\n\
             \x20       fastcgi_param CONTENT_TYPE $content_type;\n\
             \x20       fastcgi_param CONTENT_LENGTH $content_length;\n\
             \x20       fastcgi_param REQUEST_URI $request_uri;\n\
             \x20       fastcgi_param DOCUMENT_URI $document_uri;\n\
             \x20       fastcgi_param SERVER_PROTOCOL $server_protocol;\n\
             \x20       fastcgi_param GATEWAY_INTERFACE CGI/1.1;\n\
             \x20       fastcgi_param REMOTE_ADDR $remote_addr;\n\
             \x20       fastcgi_param HTTPS $https if_not_empty;\n\
             \x20       fastcgi_param HTTP_X_SET from-config;\n\
             \x20       location / {{ fastcgi_pass 127.0.0.1:{back}; }}\n\
             \x20       location /keep/ {{ fastcgi_pass kept; fastcgi_keep_conn on; }}\n\
             \x20       location /sock/ {{ fastcgi_pass unix:{sock}; add_header X-Up $upstream_addr; }}\n\
             \x20       location /usock/ {{ fastcgi_pass socks; fastcgi_keep_conn on; }}\n\
             \x20       location /nosock/ {{ fastcgi_pass unix:/nonexistent/waypost.sock; }}\n\
             \x20       location /own/ {{\n\
             \x20           fastcgi_param ONLY mine;\n\
             \x20           fastcgi_pass_request_headers off;\n\
             \x20           fastcgi_pass 127.0.0.1:{back};\n\
             \x20       }}\n\
             \x20       location /deb/ {{\n\
             \x20           # Debian's snippets/fastcgi-php.conf and fastcgi_params\n\
             \x20           root {www};\n\
             \x20           fastcgi_split_path_info ^(.+?\\.php)(/.*)$;\n\
             \x20           try_files $fastcgi_script_name =404;\n\
             \x20           set $path_info $fastcgi_path_info;\n\
             \x20           fastcgi_param PATH_INFO $path_info;\n\
             \x20           fastcgi_index index.php;\n\
             \x20           include /etc/nginx/fastcgi_params;\n\
             \x20           fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n\
             \x20           fastcgi_pass 127.0.0.1:{back};\n\
             \x20       }}\n\
             \x20       location /real/ {{ root {www}/current; fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name; fastcgi_param DOCUMENT_ROOT $realpath_root; fastcgi_pass 127.0.0.1:{back}; }}\n\
             \x20       location /noreal/ {{ root /nonexistent/waypost-root; fastcgi_param DOCUMENT_ROOT $realpath_root; fastcgi_pass 127.0.0.1:{back}; }}\n\
             \x20       location /iff/ {{ if ($arg_php) {{ fastcgi_pass 127.0.0.1:{back}; }} }}\n\
             \x20       location /ifvar/ {{ proxy_pass http://127.0.0.1:1; if ($arg_php) {{ fastcgi_pass $arg_php; }} }}\n\
             \x20       location /cached/ {{ fastcgi_cache fc; fastcgi_cache_key $request_uri; fastcgi_cache_valid 200 1m; add_header X-Cache $upstream_cache_status; fastcgi_pass 127.0.0.1:{back}; }}\n\
             \x20       location /var/ {{ set $fc 127.0.0.1:{back}; fastcgi_pass $fc; }}\n\
             \x20       location /varup/ {{ set $fc kept; fastcgi_pass $fc; fastcgi_keep_conn on; }}\n\
             \x20       location /varsock/ {{ set $s {sock}; fastcgi_pass unix:$s; add_header X-Up $upstream_addr; }}\n\
             \x20       location /varnoport/ {{ set $fc 127.0.0.1; fastcgi_pass $fc; }}\n\
             \x20       location /varport/ {{ set $fc 127.0.0.1:x; fastcgi_pass $fc; }}\n\
             \x20       location /le/ {{ fastcgi_pass 127.0.0.1:{back}; limit_except GET {{ proxy_pass http://127.0.0.1:{back}; }} }}\n\
             \x20       location /varhost/ {{ set $fc 127.0.0.1:9/x; fastcgi_pass $fc; }}\n\
             \x20       location /varname/ {{ set $fc nosuch.invalid:9000; fastcgi_pass $fc; }}\n\
             \x20       location /hide/ {{\n\
             \x20           fastcgi_hide_header X-Powered-By;\n\
             \x20           fastcgi_pass_header Status;\n\
             \x20           fastcgi_pass 127.0.0.1:{back};\n\
             \x20       }}\n\
             \x20   }}\n",
            www = www().display(),
            cache = cache_dir(nginx).display(),
            sock = socket(),
        ),
        nginx,
    )
}

/// `METHOD path` with a header and, unless empty, a body: the answer's
/// status line, the headers named, and the body.
fn ask(port: u16, method: &str, path: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    // (A body starting `chunked:` goes chunked, the rest in two chunks.)
    let (length, body) = match body.strip_prefix("chunked:") {
        _ if body.is_empty() => (String::new(), String::new()),
        Some(rest) => {
            let (a, b) = rest.split_at(rest.len() / 2);
            (
                "Transfer-Encoding: chunked\r\n".to_owned(),
                format!("{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n", a.len(), b.len()),
            )
        }
        None => (
            format!(
                "Content-Length: {}\r\nContent-Type: text/plain\r\n",
                body.len()
            ),
            body.to_owned(),
        ),
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: h\r\nX-Client: 1\r\nX-Set: client\r\n{length}Connection: close\r\n\r\n{body}"
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut got = Vec::new();
    stream.read_to_end(&mut got).expect("read");
    // (Sorted: nginx writes Content-Type before Transfer-Encoding and the
    // application's other lines; waypost writes the lines as they came,
    // README: differences.)
    let (status, mut kept, body) = waypost_tests::answer_parts(&got, |l| {
        let name = l.split(':').next().unwrap_or("").to_ascii_lowercase();
        !matches!(name.as_str(), "date" | "server" | "connection")
            || l.contains("app")
            || l.contains("01 Jan 2026")
    });
    // (The error pages name their server.)
    if status.contains(" 502 ") || status.contains(" 404 ") || status.contains(" 500 ") {
        kept.retain(|l| !l.starts_with("Content-Length"));
    }
    let body = body.replace("<center>nginx/1.22.1</center>", "<center>waypost</center>");
    // A chunked answer without its last chunk: cut short.
    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
    let cut = if text.contains("transfer-encoding: chunked") && !got.ends_with(b"0\r\n\r\n") {
        " [cut short]"
    } else {
        ""
    };
    format!("{status}\n{}\n\n{body}{cut}", kept.join("\n"))
}

const CASES: &[(&str, &str, &str)] = &[
    ("GET", "/index.php?a=1&b=2", ""),
    ("GET", "/dir/", ""),
    ("GET", "/app.php/some/path?x", ""),
    ("POST", "/form.php", "name=value&other=1"),
    ("POST", "/chunked.php", "chunked:name=value&more=2"),
    ("HEAD", "/index.php", ""),
    ("GET", "/status.php", ""),
    ("GET", "/reason.php", ""),
    ("GET", "/redirect.php", ""),
    ("GET", "/server.php", ""),
    ("GET", "/big.php", ""),
    ("GET", "/broken.php", ""),
    ("GET", "/cut.php", ""),
    ("GET", "/stderr.php", ""),
    ("GET", "/late.php", ""),
    ("GET", "/own/x.php", ""),
    ("GET", "/hide/status.php", ""),
    ("GET", "/hide/x.php", ""),
    ("GET", "/deb/app.php/extra/path?q=1", ""),
    ("GET", "/deb/missing.php", ""),
    ("GET", "/sock/a.php", ""),
    ("GET", "/usock/1.php", ""),
    ("GET", "/usock/2.php", ""),
    ("GET", "/nosock/x.php", ""),
    ("GET", "/keep/1.php", ""),
    ("GET", "/keep/2.php", ""),
    ("GET", "/keep/3.php", ""),
    ("GET", "/keep/cut.php", ""),
    // `fastcgi_pass` with variables: an address, an upstream, a socket,
    // and values that name nothing.
    ("GET", "/real/a.php", ""),
    ("GET", "/noreal/a.php", ""),
    ("GET", "/iff/a.php?php=1", ""),
    ("GET", "/iff/a.php", ""),
    ("GET", "/ifvar/a.php?php=kept", ""),
    ("GET", "/cached/a.php", ""),
    ("GET", "/cached/a.php", ""),
    ("HEAD", "/cached/a.php", ""),
    ("GET", "/var/a.php", ""),
    ("GET", "/varup/a.php", ""),
    ("GET", "/varsock/a.php", ""),
    ("GET", "/varnoport/a.php", ""),
    ("GET", "/varport/a.php", ""),
    ("GET", "/varhost/a.php", ""),
    // `limit_except`'s `proxy_pass` in a FastCGI location speaks HTTP
    // (to an application that does not: nginx's 502 and its line).
    ("GET", "/le/a.php", ""),
    ("POST", "/le/a.php", "x=1"),
    ("GET", "/varname/a.php", ""),
];

fn run(nginx: bool, back: u16) -> (Vec<String>, Vec<String>) {
    let port = free_ports(1)[0];
    let server = Server::either(nginx, &conf(port, back, nginx), &[port]);
    let answers = CASES
        .iter()
        .map(|(method, path, body)| {
            // The connection numbers differ between runs; the request
            // count on each does not.
            let answer = ask(port, method, path, body);
            let answer = match answer.find(" on connection ") {
                Some(i) => answer[..i].to_owned(),
                None => answer,
            };
            // (The ports are each run's and each connection's own.)
            let answer: Vec<&str> = answer
                .split('\n')
                .filter(|l| !l.starts_with("REMOTE_PORT=") && !l.starts_with("SERVER_PORT="))
                .collect();
            let answer = answer.join("\n");
            format!("{method} {path} -> {answer}")
        })
        .collect();
    let log = server.error_lines(2);
    (answers, log)
}

#[test]
fn fastcgi_answers_match_nginx() {
    let back = application();
    let (ours, our_log) = run(false, back);
    let (theirs, their_log) = run(true, back);
    assert_eq!(our_log, their_log);
    assert_same_answers(&ours, &theirs);
    let find = |prefix: &str| {
        ours.iter()
            .find(|a| a.starts_with(prefix))
            .cloned()
            .unwrap_or_default()
    };
    let index = find("GET /index.php?a=1&b=2 ->");
    assert!(
        index.contains("SCRIPT_FILENAME=/srv/www/index.php\n"),
        "{index}"
    );
    assert!(index.contains("HTTP_X_CLIENT=1\n"), "{index}");
    assert!(index.contains("HTTP_X_SET=from-config\n"), "{index}");
    assert!(!index.contains("HTTP_X_SET=client"), "{index}");
    assert!(find("GET /dir/ ->").contains("SCRIPT_NAME=/dir/index.php\n"));
    let split = find("GET /app.php/some/path?x ->");
    assert!(
        split.contains("SCRIPT_NAME=/app.php\nPATH_INFO=/some/path\n"),
        "{split}"
    );
    assert!(find("POST /form.php ->").contains("stdin=name=value&other=1"));
    // A chunked body is read whole; its length is `$content_length`.
    let chunked = find("POST /chunked.php ->");
    assert!(chunked.contains("CONTENT_LENGTH=17\n"), "{chunked}");
    assert!(chunked.contains("stdin=name=value&more=2"), "{chunked}");
    assert!(find("GET /status.php ->").starts_with("GET /status.php -> HTTP/1.1 404 Not Found"));
    assert!(find("GET /reason.php ->").contains("HTTP/1.1 299 Fine"));
    assert!(find("GET /redirect.php ->").contains("HTTP/1.1 302 Moved Temporarily"));
    assert!(find("GET /broken.php ->").contains("HTTP/1.1 502 Bad Gateway"));
    // The application's close ends its answer, unless the connection is
    // kept (`fastcgi_keep_conn on`): then it cuts the answer short, and
    // nginx's line says so.
    assert!(find("GET /cut.php ->").ends_with("\n\npartial"));
    assert!(find("GET /keep/cut.php ->").ends_with("\n\npartial [cut short]"));
    assert!(our_log.iter().any(|l| l.starts_with(
        "[error] upstream prematurely closed connection while reading upstream, client: 127.0.0.1, server: , request: \"GET /keep/cut.php HTTP/1.1\", upstream: \"fastcgi://127.0.0.1:"
    )), "{our_log:?}");
    assert!(find("GET /big.php ->").ends_with("000006999\n"));
    assert!(find("GET /keep/3.php ->").contains("request 3"));
    let deb = find("GET /deb/app.php/extra/path?q=1 ->");
    assert!(deb.contains("SERVER_SOFTWARE=nginx/1.22.1\n"), "{deb}");
    assert!(deb.contains("SCRIPT_NAME=/deb/app.php\n"), "{deb}");
    assert!(deb.contains("PATH_INFO=/extra/path\n"), "{deb}");
    assert!(find("GET /deb/missing.php ->").contains("404 Not Found"));
    let sock = find("GET /sock/a.php ->");
    assert!(sock.contains(&format!("X-Up: unix:{}", socket())), "{sock}");
    assert!(find("GET /usock/2.php ->").contains("request 2"));
    assert!(find("GET /nosock/x.php ->").contains("502 Bad Gateway"));
    assert!(our_log.iter().any(|l| l.starts_with(
        "[crit] connect() to unix:/nonexistent/waypost.sock failed (2: No such file or directory) while connecting to upstream"
    ) && l.contains("upstream: \"fastcgi://unix:/nonexistent/waypost.sock:\"")), "{our_log:?}");
    assert!(find("GET /late.php ->").ends_with("\n\nfirst second"));
    // `$realpath_root`: the root's link resolved; a root that is not
    // there, nginx's `crit` line and an empty value.
    let real = find("GET /real/a.php ->");
    let release = std::fs::canonicalize(www().join("release1")).expect("release1");
    assert!(
        real.contains(&format!("DOCUMENT_ROOT={}\n", release.display())),
        "{real}"
    );
    assert!(find("GET /noreal/a.php ->").contains("DOCUMENT_ROOT=\n"));
    assert!(our_log.iter().any(|l| l.starts_with(
        "[crit] realpath() \"/nonexistent/waypost-root\" failed (2: No such file or directory), client: 127.0.0.1"
    )), "{our_log:?}");
    // `fastcgi_pass` in an `if`, with the location's FastCGI settings
    // (here the server's params), in a location without a handler and in
    // a `proxy_pass` one.
    let iff = find("GET /iff/a.php?php=1 ->");
    assert!(iff.contains("SCRIPT_NAME=/iff/a.php\n"), "{iff}");
    assert!(find("GET /iff/a.php ->").contains("404 Not Found"));
    assert!(find("GET /ifvar/a.php?php=kept ->").contains("SCRIPT_NAME=/ifvar/a.php\n"));
    // `fastcgi_cache`: stored, then answered from the cache (the same
    // request count in the body), a HEAD too (its key is the URI's).
    let cached: Vec<&String> = ours
        .iter()
        .filter(|a| a.contains(" /cached/a.php ->"))
        .collect();
    assert!(cached[0].contains("X-Cache: MISS"), "{}", cached[0]);
    assert!(cached[1].contains("X-Cache: HIT"), "{}", cached[1]);
    assert_eq!(
        cached[0].split_once("\n\n").map(|(_, body)| body),
        cached[1].split_once("\n\n").map(|(_, body)| body)
    );
    assert!(cached[2].contains("X-Cache: HIT"), "{}", cached[2]);
    assert!(find("GET /le/a.php ->").contains("SCRIPT_NAME=/le/a.php\n"));
    assert!(find("POST /le/a.php ->").contains("502 Bad Gateway"));
    assert!(find("GET /var/a.php ->").contains("SCRIPT_NAME=/var/a.php\n"));
    assert!(find("GET /varup/a.php ->").contains("SCRIPT_NAME=/varup/a.php\n"));
    let varsock = find("GET /varsock/a.php ->");
    assert!(
        varsock.contains(&format!("X-Up: unix:{}", socket())),
        "{varsock}"
    );
    assert!(find("GET /varnoport/a.php ->").contains("500 Internal Server Error"));
    assert!(find("GET /varname/a.php ->").contains("502 Bad Gateway"));
    for line in [
        "[error] no port in upstream \"127.0.0.1\", client: 127.0.0.1, server: , request: \"GET /varnoport/a.php HTTP/1.1\"",
        "[error] invalid port in upstream \"127.0.0.1:x\", client: 127.0.0.1, server: , request: \"GET /varport/a.php HTTP/1.1\"",
        "[error] invalid host in upstream \"127.0.0.1:9/x\", client: 127.0.0.1, server: , request: \"GET /varhost/a.php HTTP/1.1\"",
        "[error] no resolver defined to resolve nosuch.invalid, client: 127.0.0.1, server: , request: \"GET /varname/a.php HTTP/1.1\"",
    ] {
        assert!(our_log.iter().any(|l| l.starts_with(line)), "{line}: {our_log:?}");
    }
    assert!(
        our_log.iter().any(|l| l.starts_with(
            "[error] FastCGI sent in stderr: \"PHP Notice:  late in /late.php on line 9\" while reading upstream, client: 127.0.0.1"
        )),
        "{our_log:?}"
    );
    assert!(our_log.iter().any(|l| l.starts_with(
        "[error] FastCGI sent in stderr: \"PHP Warning:  oops in /x.php on line 3\""
    )));
}

/// `-t` side by side: FastCGI's directives checked as nginx checks them,
/// with its messages and lines.
#[test]
fn bad_fastcgi_settings_are_refused_as_nginx_refuses_them() {
    use waypost_tests::{assert_t_cases, emerg, Waypost};
    let at = |lines: &str| {
        format!("http {{\n    server {{\n        location / {{\n            {lines}\n        }}\n    }}\n}}\n")
    };
    let ok = "ok (exit Some(0))".to_owned();
    let cases = vec![
        (
            at("fastcgi_pass 127.0.0.1:9000; fastcgi_param A $uri if_not_empty; fastcgi_index i.php; fastcgi_keep_conn on;"),
            ok.clone(),
            Waypost::Same,
        ),
        (
            at("fastcgi_pass 127.0.0.1:9000; fastcgi_split_path_info ^(.+)$;"),
            emerg("pattern \"^(.+)$\" must have 2 captures", 7),
            Waypost::Same,
        ),
        (
            at("fastcgi_pass 127.0.0.1:9000; fastcgi_param A b sometimes;"),
            emerg("invalid parameter \"sometimes\"", 7),
            Waypost::Same,
        ),
        (
            at("fastcgi_pass 127.0.0.1:9000; fastcgi_param A $nope;"),
            // (nginx checks the params once the location is merged, and
            // names no line; waypost names the directive's.)
            "[emerg] unknown \"nope\" variable (exit Some(1))".to_owned(),
            Waypost::Exactly(emerg("unknown \"nope\" variable", 7)),
        ),
        (
            at("fastcgi_pass 127.0.0.1:9000; fastcgi_read_timeout x;"),
            emerg("\"fastcgi_read_timeout\" directive invalid value", 7),
            Waypost::Same,
        ),
        (
            at("fastcgi_pass 127.0.0.1:9000; fastcgi_buffers 0 4k;"),
            emerg("\"fastcgi_buffers\" directive invalid value", 7),
            Waypost::Same,
        ),
        (
            at("fastcgi_pass 127.0.0.1:9000; fastcgi_keep_conn maybe;"),
            emerg("invalid value \"maybe\" in \"fastcgi_keep_conn\" directive, it must be \"on\" or \"off\"", 7),
            Waypost::Same,
        ),
        (
            at("fastcgi_pass $nope;"),
            // (As for `fastcgi_param`: nginx names no line.)
            "[emerg] unknown \"nope\" variable (exit Some(1))".to_owned(),
            Waypost::Exactly(emerg("unknown \"nope\" variable", 7)),
        ),
        (
            at("fastcgi_pass 127.0.0.1:9000; fastcgi_param DOCUMENT_ROOT $realpath_root;"),
            ok.clone(),
            Waypost::Same,
        ),
        (
            // (Variable names have no case.)
            at("fastcgi_pass 127.0.0.1:9000; add_header X-Root $RealPath_Root;"),
            ok.clone(),
            Waypost::Exactly(emerg(
                "the $realpath_root variable is supported only in \"fastcgi_param\"",
                7,
            )),
        ),
        (
            "http {\n    map $uri $docroot {\n        default $realpath_root;\n    }\n    server {\n        location / {\n            fastcgi_pass 127.0.0.1:9000; fastcgi_param SCRIPT_FILENAME $docroot$fastcgi_script_name;\n        }\n    }\n}\n".to_owned(),
            ok.clone(),
            Waypost::Exactly(emerg(
                "the $realpath_root variable is supported only in \"fastcgi_param\"",
                6,
            )),
        ),
        (
            // (Resolved where FastCGI params are made, and nowhere else.)
            at("fastcgi_pass 127.0.0.1:9000; add_header X-Root $realpath_root;"),
            ok.clone(),
            Waypost::Exactly(emerg(
                "the $realpath_root variable is supported only in \"fastcgi_param\"",
                7,
            )),
        ),
        (
            at("fastcgi_pass 127.0.0.1:9000; fastcgi_cache nope; fastcgi_cache_key $uri;"),
            "[emerg] \"fastcgi_cache\" zone \"nope\" is unknown in CONF:10 (exit Some(1))".to_owned(),
            Waypost::Same,
        ),
        (
            // (nginx warns and caches every answer under one empty key.)
            format!(
                "http {{\n    fastcgi_cache_path {} keys_zone=fc:1m;\n    server {{\n        location / {{\n            fastcgi_pass 127.0.0.1:9000; fastcgi_cache fc;\n        }}\n    }}\n}}\n",
                cache_dir(false).display()
            ),
            ok.clone(),
            Waypost::Exactly(emerg("no \"fastcgi_cache_key\" for \"fastcgi_cache\"", 11)),
        ),
        (
            // A zone is the module's that declared it.
            format!(
                "http {{\n    fastcgi_cache_path {} keys_zone=fc:1m;\n    server {{\n        location / {{\n            proxy_pass http://127.0.0.1:9000; proxy_cache fc;\n        }}\n    }}\n}}\n",
                cache_dir(false).display()
            ),
            emerg("the shared memory zone \"fc\" is already declared for a different use", 8),
            Waypost::Same,
        ),
        (
            format!(
                "http {{\n    proxy_cache_path {} keys_zone=pc:1m;\n    server {{\n        location / {{\n            fastcgi_pass 127.0.0.1:9000; fastcgi_cache pc; fastcgi_cache_key $uri;\n        }}\n    }}\n}}\n",
                cache_dir(true).display()
            ),
            emerg("the shared memory zone \"pc\" is already declared for a different use", 8),
            Waypost::Same,
        ),
        (
            at("fastcgi_pass 127.0.0.1:9000; fastcgi_cache_convert_head on;"),
            emerg("unknown directive \"fastcgi_cache_convert_head\"", 7),
            Waypost::Same,
        ),
        (
            at("set $php 127.0.0.1:9000; fastcgi_pass $php;"),
            ok.clone(),
            Waypost::Same,
        ),
        (
            at("fastcgi_pass;"),
            emerg("invalid number of arguments in \"fastcgi_pass\" directive", 7),
            Waypost::Same,
        ),
    ];
    assert_t_cases("fastcgi", &cases);
}
