//! `proxy_cache` side by side with nginx: the same requests through the
//! same configuration, against one backend that numbers its answers per
//! path, so that an answer from the cache shows as an earlier number.
//! Compared: the status, `$upstream_cache_status` (in a header and in the
//! access log, with `$upstream_status`), the headers the cache changes,
//! the body, what the backend was asked (HEAD asked as GET, conditions
//! left out), and the cache's files, named and placed as nginx names and
//! places them. Then what only waypost can be asked here: a restart and
//! a reload keep the entries, a reload that moves a zone is refused with
//! nginx's message, and `-t`'s messages.

use std::collections::HashMap;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use waypost_tests::{
    ask_whole, assert_same_answers, assert_t_cases, emerg, free_ports, read_head, serve_numbered,
    wrap_http, Server, TempDir, Waypost,
};

/// Answers per path, counted; cleared between the two servers' runs.
type Counts = Arc<Mutex<HashMap<String, u32>>>;

/// Counts a request for `path`: its number.
fn count(counts: &Counts, path: &str) -> u32 {
    let mut counts = counts.lock().unwrap_or_else(|e| e.into_inner());
    let n = counts.entry(path.to_owned()).or_insert(0);
    *n += 1;
    *n
}

/// The backend's headers for `path` on its `n`th request for it, and
/// its status.
fn answer_for(path: &str, n: u32) -> (&'static str, String) {
    let base = path.split('?').next().unwrap_or(path);
    let name = base.rsplit('/').next().unwrap_or("");
    match name {
        "maxage" => ("200 OK", "Cache-Control: max-age=60\r\n".into()),
        "nostore" => ("200 OK", "Cache-Control: no-store\r\n".into()),
        "private" => ("200 OK", "Cache-Control: private, max-age=60\r\n".into()),
        "cookie" => (
            "200 OK",
            "Cache-Control: max-age=60\r\nSet-Cookie: a=b\r\n".into(),
        ),
        "missing" => ("404 Not Found", "Cache-Control: max-age=60\r\n".into()),
        "xae0" => ("200 OK", "X-Accel-Expires: 0\r\n".into()),
        "xae" => (
            "200 OK",
            "X-Accel-Expires: 60\r\nCache-Control: no-cache\r\n".into(),
        ),
        "order1" => (
            "200 OK",
            "Cache-Control: no-store\r\nX-Accel-Expires: 60\r\n".into(),
        ),
        "order2" => (
            "200 OK",
            "X-Accel-Expires: 60\r\nCache-Control: no-store\r\n".into(),
        ),
        "pastexp" => (
            "200 OK",
            "Expires: Thu, 01 Jan 1970 00:00:01 GMT\r\n".into(),
        ),
        "expires" => (
            "200 OK",
            "Expires: Thu, 01 Jan 2099 00:00:00 GMT\r\n".into(),
        ),
        // Stored already expired: the next request renews it.
        "past" => ("200 OK", "X-Accel-Expires: @1\r\n".into()),
        // As `past`, then failing.
        "flaky" if n > 1 => ("500 Internal Server Error", String::new()),
        "flaky" => ("200 OK", "X-Accel-Expires: @1\r\n".into()),
        "vary" => (
            "200 OK",
            "Cache-Control: max-age=60\r\nVary: Accept-Language\r\n".into(),
        ),
        "star" => ("200 OK", "Cache-Control: max-age=60\r\nVary: *\r\n".into()),
        "reason" => ("200 Fine", "Cache-Control: max-age=60\r\n".into()),
        "ranges" => (
            "200 OK",
            "Cache-Control: max-age=60\r\nAccept-Ranges: bytes\r\nContent-Type: text/plain\r\n"
                .into(),
        ),
        _ => ("200 OK", String::new()),
    }
}

fn backend(counts: Counts) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    serve_numbered(listener, move |mut stream, _| {
        let Some(head) = read_head(&mut stream) else {
            return;
        };
        let head = String::from_utf8_lossy(&head).into_owned();
        let mut words = head.split(' ');
        let method = words.next().unwrap_or("").to_owned();
        let path = words.next().unwrap_or("/").to_owned();
        let n = count(&counts, &path);
        let asked = |name: &str| {
            head.lines()
                .any(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:")))
        };
        let saw = format!(
            "{method}{}{}",
            if asked("if-none-match") { " inm" } else { "" },
            if asked("range") { " range" } else { "" }
        );
        let (status, headers) = answer_for(&path, n);
        let body = format!("{path} #{n}\n");
        let name = path.rsplit('/').next().unwrap_or("");
        let framing = match name {
            "chunked" => "Transfer-Encoding: chunked\r\n".to_owned(),
            "close" => String::new(),
            _ => format!("Content-Length: {}\r\n", body.len()),
        };
        let payload = match name {
            "chunked" => format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len()),
            _ => body,
        };
        let extra = if matches!(name, "chunked" | "close") {
            "Cache-Control: max-age=60\r\n"
        } else {
            ""
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\n{headers}{extra}ETag: \"e{n}\"\r\n\
             Last-Modified: Mon, 01 Jan 2024 00:00:00 GMT\r\nX-Saw: {saw}\r\n\
             {framing}Connection: close\r\n\r\n{payload}"
        );
        let _ = stream.write_all(reply.as_bytes());
    });
    port
}

fn conf(port: u16, back: u16, nginx: bool) -> String {
    let pass = format!("proxy_pass http://127.0.0.1:{back};");
    wrap_http(
        &format!(
            "    proxy_cache_path cache levels=1:2 keys_zone=z:1m;\n\
             \x20   log_format c '$request $status $upstream_cache_status $upstream_status';\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       access_log logs/cache.log c;\n\
             \x20       add_header X-Cache $upstream_cache_status always;\n\
             \x20       proxy_cache z;\n\
             \x20       location / {{ {pass} }}\n\
             \x20       location /valid/ {{ {pass} proxy_cache_valid 200 1m; proxy_cache_bypass $http_x_bypass; proxy_no_cache $http_x_nostore; }}\n\
             \x20       location /min/ {{ {pass} proxy_cache_valid 1m; proxy_cache_min_uses 2; }}\n\
             \x20       location /stale/ {{ {pass} proxy_cache_use_stale http_500; }}\n\
             \x20       location /post/ {{ {pass} proxy_cache_valid 1m; proxy_cache_methods POST; }}\n\
             \x20       location /hidden/ {{ {pass} proxy_cache_valid 1m; proxy_hide_header X-Saw; }}\n\
             \x20       location /key/ {{ {pass} proxy_cache_valid 1m; proxy_cache_key $uri; }}\n\
             \x20       location /nohead/ {{ {pass} proxy_cache_valid 1m; proxy_cache_convert_head off; }}\n\
             \x20       location /ignore/ {{ {pass} proxy_cache_valid 1m; proxy_ignore_headers Cache-Control Set-Cookie; }}\n\
             \x20       location /off/ {{ {pass} proxy_cache off; proxy_cache_valid 1m; }}\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

/// What a client sees: the status line, `X-Cache`, the headers the cache
/// changes or keeps, and the body.
fn ask(port: u16, request: &str) -> String {
    let answer = ask_whole(port, request);
    let header = |name: &str| answer.header(name);
    let (head, body) = (&answer.head, &answer.body);
    let length = header("content-length").replace("173", "168");
    // A multipart answer's boundary is each server's count.
    let kind = header("content-type");
    let boundary = kind.split("boundary=").nth(1).unwrap_or("\u{0}").to_owned();
    let body = String::from_utf8_lossy(body).replace(&boundary, "BOUNDARY");
    let kind = kind.replace(&boundary, "BOUNDARY");
    format!(
        "{} | cache={} etag={} saw={} cookie={} length={length} te={} type={kind} range={} | {}",
        head.lines().next().unwrap_or(""),
        header("x-cache"),
        header("etag"),
        header("x-saw"),
        header("set-cookie"),
        header("transfer-encoding"),
        header("content-range"),
        body.trim_end()
            .replace("nginx/1.22.1", "SERVER")
            .replace("waypost", "SERVER")
    )
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: h\r\n{extra}Connection: close\r\n\r\n")
}

fn requests() -> Vec<String> {
    let twice = [
        "/valid/a",
        "/maxage",
        "/nostore",
        "/private",
        "/cookie",
        "/missing",
        "/plain",
        "/valid/xae0",
        "/valid/xae",
        "/order1",
        "/order2",
        "/pastexp",
        "/expires",
        "/star",
        "/chunked",
        "/close",
        "/reason",
        "/hidden/h",
        "/key/k?one",
        "/ignore/cookie",
        "/ignore/private",
        "/off/o",
    ];
    let mut all = Vec::new();
    for path in twice {
        all.push(get(path, ""));
        all.push(get(path, ""));
    }
    // The key's default has the arguments; `$uri` does not.
    all.push(get("/maxage?x=1", ""));
    all.push(get("/key/k?two", ""));
    // Bypassed: asked and stored; not stored: asked, the entry kept.
    all.push(get("/valid/a", "X-Bypass: 1\r\n"));
    all.push(get("/valid/a", ""));
    all.push(get("/valid/a", "X-Bypass: 0\r\n"));
    all.push(get("/valid/a", "X-Nostore: yes\r\n"));
    all.push(get("/valid/a", ""));
    all.push(get("/valid/n", "X-Nostore: 1\r\n"));
    all.push(get("/valid/n", ""));
    // `proxy_cache_min_uses 2`.
    for _ in 0..3 {
        all.push(get("/min/m", ""));
    }
    // Stored expired: renewed; then the upstream fails and the expired
    // entry answers.
    for _ in 0..3 {
        all.push(get("/past", ""));
    }
    for _ in 0..3 {
        all.push(get("/stale/flaky", ""));
    }
    // HEAD asked as GET, its body stored for the GET after it; without
    // `proxy_cache_convert_head`, HEAD it is.
    all.push("HEAD /valid/head HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".into());
    all.push(get("/valid/head", ""));
    all.push("HEAD /valid/head HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".into());
    all.push("HEAD /nohead/h HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".into());
    // The client's conditions and ranges stay with the proxy: a 304 from
    // the cache, and from an answer being stored.
    all.push(get(
        "/valid/c",
        "If-None-Match: \"e1\"\r\nRange: bytes=0-1\r\n",
    ));
    all.push(get("/valid/c", "If-None-Match: \"e1\"\r\n"));
    all.push(get("/valid/c", "If-None-Match: \"other\"\r\n"));
    all.push(get(
        "/valid/c",
        "If-Modified-Since: Mon, 01 Jan 2024 00:00:00 GMT\r\n",
    ));
    all.push(get("/valid/c", "If-Match: \"nope\"\r\n"));
    // Ranges of an entry whose upstream said Accept-Ranges; of one that
    // did not, the whole answer.
    all.push(get("/ranges", ""));
    for range in [
        "Range: bytes=0-3\r\n",
        "Range: bytes=2-4,6-7\r\n",
        "Range: bytes=-3\r\nIf-Range: \"e1\"\r\n",
        "Range: bytes=0-3\r\nIf-Range: \"e2\"\r\n",
        "Range: bytes=0-3\r\nIf-Range: Mon, 01 Jan 2024 00:00:00 GMT\r\n",
        "Range: items=1-2\r\n",
    ] {
        all.push(get("/ranges", range));
    }
    all.push(
        "HEAD /ranges HTTP/1.1\r\nHost: h\r\nRange: bytes=0-3\r\nConnection: close\r\n\r\n".into(),
    );
    all.push(get("/maxage", "Range: bytes=0-3\r\n"));
    // Variants by Accept-Language, each kept.
    for lang in ["en", "fr", "en", "fr", "en, fr", "en,fr", ""] {
        let extra = if lang.is_empty() {
            String::new()
        } else {
            format!("Accept-Language: {lang}\r\n")
        };
        all.push(get("/vary", &extra));
    }
    // Only GET and HEAD unless listed.
    all.push(
        "POST /maxage HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx"
            .into(),
    );
    all.push(
        "POST /post/p HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx"
            .into(),
    );
    all.push(
        "POST /post/p HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nConnection: close\r\n\r\ny"
            .into(),
    );
    all.push(get("/post/p", ""));
    all.push(
        "PUT /maxage HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx".into(),
    );
    all
}

/// The cache directory's files, as paths under it (temporary files left
/// out: nginx keeps them elsewhere).
fn files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if !entry.file_name().to_string_lossy().starts_with('.') {
                out.push(
                    path.strip_prefix(root)
                        .unwrap_or(&path)
                        .display()
                        .to_string(),
                );
            }
        }
    }
    out.sort();
    out
}

struct Run {
    answers: Vec<String>,
    log: Vec<String>,
    files: Vec<String>,
}

fn run(nginx: bool, back: u16, counts: &Counts) -> Run {
    counts.lock().unwrap_or_else(|e| e.into_inner()).clear();
    let ports = free_ports(1);
    let server = Server::either(nginx, &conf(ports[0], back, nginx), &ports);
    let requests = requests();
    let answers: Vec<String> = requests
        .iter()
        .map(|r| {
            let line = r.lines().next().unwrap_or("").to_owned();
            let extra: Vec<&str> = r
                .lines()
                .skip(1)
                .filter(|l| !l.is_empty() && !l.starts_with("Host") && !l.starts_with("Connection"))
                .collect();
            format!("{line} {extra:?} -> {}", ask(ports[0], r))
        })
        .collect();
    let log = server.wait_lines("logs/cache.log", requests.len());
    let files = files(&server.dir.path.join("cache"));
    Run {
        answers,
        log,
        files,
    }
}

#[test]
fn answers_are_stored_and_served_as_nginx_does() {
    let counts: Counts = Arc::default();
    let back = backend(counts.clone());
    let ours = run(false, back, &counts);
    let theirs = run(true, back, &counts);
    assert_same_answers(&ours.answers, &theirs.answers);
    assert_same_answers(&ours.log, &theirs.log);
    assert_eq!(ours.files, theirs.files, "the cache's files");
    // The run saw each outcome.
    for status in ["HIT", "MISS", "EXPIRED", "STALE", "BYPASS"] {
        assert!(
            ours.answers
                .iter()
                .any(|a| a.contains(&format!("cache={status} "))),
            "no {status} in {:#?}",
            ours.answers
        );
    }
    assert!(ours.answers.iter().any(|a| a.contains(" 304 ")));
    assert!(ours.files.len() > 10, "{:?}", ours.files);
}

fn waypost_conf(port: u16, back: u16, cache: &Path) -> String {
    wrap_http(
        &format!(
            "    proxy_cache_path {} levels=1:2 keys_zone=z:1m;\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       add_header X-Cache $upstream_cache_status;\n\
             \x20       location / {{ proxy_pass http://127.0.0.1:{back}; proxy_cache z; }}\n\
             \x20   }}\n",
            cache.display()
        ),
        false,
    )
}

/// A restart reads the entries the last run stored; a reload keeps its
/// zone's; a reload that moves the zone to another path is refused with
/// nginx's message, the running configuration serving on.
#[test]
fn entries_outlive_restarts_and_reloads() {
    let counts: Counts = Arc::default();
    let back = backend(counts);
    let dir = TempDir::new("cache-keep");
    let cache = dir.path.join("cache");
    let ports = free_ports(1);
    let conf = waypost_conf(ports[0], back, &cache);
    let first = Server::waypost(&conf, &ports);
    let miss = waypost_tests::get(ports[0], "/maxage");
    assert_eq!(miss.header("X-Cache"), Some("MISS"));
    assert_eq!(miss.body, "/maxage #1\n");
    drop(first);

    let server = Server::waypost(&conf, &ports);
    let hit = waypost_tests::get(ports[0], "/maxage");
    assert_eq!(hit.header("X-Cache"), Some("HIT"), "after a restart");
    assert_eq!(hit.body, "/maxage #1\n");

    // The same zone after a reload: still there.
    server.reload_with(&conf.replace(
        "add_header X-Cache",
        "add_header X-Reloaded 1;\n        add_header X-Cache",
    ));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = waypost_tests::get(ports[0], "/maxage");
        if r.header("X-Reloaded").is_some() {
            assert_eq!(r.header("X-Cache"), Some("HIT"), "after a reload");
            assert_eq!(r.body, "/maxage #1\n");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the reload never took"
        );
    }

    // Moved: refused, as nginx refuses it.
    let moved = dir.path.join("elsewhere");
    server.reload_with(&waypost_conf(ports[0], back, &moved));
    let want = format!(
        "cache \"z\" uses the \"{}\" cache path while previously it used the \"{}\" cache path",
        moved.display(),
        cache.display()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !server.read("logs/error.log").contains(&want) {
        assert!(
            std::time::Instant::now() < deadline,
            "no \"{want}\" in {}",
            server.read("logs/error.log")
        );
        std::thread::yield_now();
    }
    let r = waypost_tests::get(ports[0], "/maxage");
    assert_eq!(r.header("X-Reloaded"), Some("1"));
    assert_eq!(r.header("X-Cache"), Some("HIT"));
}

fn in_http(lines: &str) -> String {
    format!("http {{\n    {lines}\n    server {{\n        location / {{\n            proxy_cache z;\n        }}\n    }}\n}}\n")
}

/// `-t` side by side: the directives' values, checked as nginx checks
/// them, with its messages and lines.
#[test]
fn bad_cache_settings_are_refused_as_nginx_refuses_them() {
    let ok = "ok (exit Some(0))".to_owned();
    let path = |rest: &str| in_http(&format!("proxy_cache_path c {rest};"));
    let cases = vec![
        (path("keys_zone=z:1m"), ok.clone(), Waypost::Same),
        (
            path("levels=1:2 keys_zone=z:10m inactive=1h max_size=1g use_temp_path=off min_free=1m manager_files=10 loader_sleep=100ms"),
            ok.clone(),
            Waypost::Same,
        ),
        (path("levels=3 keys_zone=z:1m"), emerg("invalid \"levels\" \"levels=3\"", 5), Waypost::Same),
        (path("levels=1:2:2:1 keys_zone=z:1m"), emerg("invalid \"levels\" \"levels=1:2:2:1\"", 5), Waypost::Same),
        (path("keys_zone=z"), emerg("invalid keys zone size \"keys_zone=z\"", 5), Waypost::Same),
        (path("keys_zone=z:4k"), emerg("keys zone \"keys_zone=z:4k\" is too small", 5), Waypost::Same),
        (path("levels=1"), emerg("\"proxy_cache_path\" must have \"keys_zone\" parameter", 5), Waypost::Same),
        (path("keys_zone=z:1m inactive=x"), emerg("invalid inactive value \"inactive=x\"", 5), Waypost::Same),
        (path("keys_zone=z:1m max_size=-1"), emerg("invalid max_size value \"max_size=-1\"", 5), Waypost::Same),
        (path("keys_zone=z:1m use_temp_path=maybe"), emerg("invalid use_temp_path value \"use_temp_path=maybe\", it must be \"on\" or \"off\"", 5), Waypost::Same),
        (path("keys_zone=z:1m purger=on"), emerg("invalid parameter \"purger=on\"", 5), Waypost::Same),
        (
            in_http("proxy_cache_path c keys_zone=z:1m;\n    proxy_cache_path d keys_zone=z:1m;"),
            emerg("duplicate zone \"z\"", 6),
            Waypost::Same,
        ),
        (
            in_http("proxy_cache_path c keys_zone=y:1m;"),
            // (Where `http` ends: nginx checks as it merges the levels.)
            emerg("\"proxy_cache\" zone \"z\" is unknown", 11),
            Waypost::Same,
        ),
        (
            in_http("proxy_cache_path c keys_zone=z:1m;\n    proxy_cache z;\n    proxy_cache off;"),
            emerg("\"proxy_cache\" directive is duplicate", 7),
            Waypost::Same,
        ),
        (
            in_http("proxy_cache_path c keys_zone=z:1m;\n    proxy_cache_valid 99 1m;"),
            emerg("invalid status \"99\"", 6),
            Waypost::Same,
        ),
        (
            in_http("proxy_cache_path c keys_zone=z:1m;\n    proxy_cache_valid 200 soon;"),
            emerg("invalid time value \"soon\"", 6),
            Waypost::Same,
        ),
        (
            in_http("proxy_cache_path c keys_zone=z:1m;\n    proxy_cache_methods PUT;"),
            emerg("invalid value \"PUT\"", 6),
            Waypost::Same,
        ),
        (
            in_http("proxy_cache_path c keys_zone=z:1m;\n    proxy_cache_use_stale error sometimes;"),
            emerg("invalid value \"sometimes\"", 6),
            Waypost::Same,
        ),
        (
            in_http("proxy_cache_path c keys_zone=z:1m;\n    proxy_cache_min_uses x;"),
            emerg("\"proxy_cache_min_uses\" directive invalid number", 6),
            Waypost::Same,
        ),
        (
            in_http("proxy_cache_path c keys_zone=z:1m;\n    proxy_cache_lock maybe;"),
            emerg("invalid value \"maybe\" in \"proxy_cache_lock\" directive, it must be \"on\" or \"off\"", 6),
            Waypost::Same,
        ),
        (
            in_http("proxy_cache_path c keys_zone=z:1m;\n    proxy_cache_lock_timeout x;"),
            emerg("\"proxy_cache_lock_timeout\" directive invalid value", 6),
            Waypost::Same,
        ),
        (
            in_http("proxy_cache_path c keys_zone=z:1m;\n    proxy_cache_key $a;\n    proxy_cache_key $b;"),
            emerg("\"proxy_cache_key\" directive is duplicate", 7),
            Waypost::Same,
        ),
        (
            in_http("proxy_cache_path c keys_zone=z:1m;\n    proxy_cache_bypass $nope;"),
            "[emerg] unknown \"nope\" variable (exit Some(1))".to_owned(),
            Waypost::Exactly(emerg("unknown \"nope\" variable", 6)),
        ),
        (
            in_http("proxy_cache_path c keys_zone=z:1m;\n    proxy_ignore_headers Date;"),
            emerg("invalid value \"Date\"", 6),
            Waypost::Same,
        ),
        (
            in_http("proxy_cache_path c keys_zone=z:1m;\n    proxy_cache_revalidate on;"),
            ok.clone(),
            Waypost::Exactly(emerg("\"proxy_cache_revalidate on\" is not supported", 6)),
        ),
    ];
    assert_t_cases("cache", &cases);
}

/// A backend counting what it is asked: its answers to `/slow` come
/// late, `/old` is stored already expired, `/big` is 800 KB, and each
/// answer says the Range it was asked with (`X-Range`).
fn counting_backend(counts: Counts) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    serve_numbered(listener, move |mut stream, _| {
        let Some(head) = read_head(&mut stream) else {
            return;
        };
        let head = String::from_utf8_lossy(&head).into_owned();
        let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
        let n = count(&counts, &path);
        if path.starts_with("/slow") {
            // Long enough for the other requests to come meanwhile.
            std::thread::sleep(std::time::Duration::from_millis(400));
        }
        let body = if path.starts_with("/big") {
            format!("{path} #{n}\n").repeat(100_000)
        } else {
            format!("{path} #{n}\n")
        };
        let expires = if path.starts_with("/old") {
            "X-Accel-Expires: @1\r\n"
        } else {
            "Cache-Control: max-age=60\r\n"
        };
        let range = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("range:"))
            .map_or("-".to_owned(), |l| l[6..].trim().to_owned());
        let reply = format!(
            "HTTP/1.1 200 OK\r\n{expires}X-Range: {range}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(reply.as_bytes());
    });
    port
}

fn asked(counts: &Counts, path: &str) -> u32 {
    counts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(path)
        .copied()
        .unwrap_or(0)
}

fn lock_conf(port: u16, back: u16, dead: u16, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    proxy_cache_path cache keys_zone=z:1m;\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       add_header X-Cache $upstream_cache_status;\n\
             \x20       proxy_cache z;\n\
             \x20       location /slow {{ proxy_pass http://127.0.0.1:{back}; proxy_cache_lock on; }}\n\
             \x20       location /old {{ proxy_pass http://127.0.0.1:{back}; proxy_cache_key shared; }}\n\
             \x20       location /down {{ proxy_pass http://127.0.0.1:{dead}; proxy_cache_key shared; proxy_cache_use_stale error; }}\n\
             \x20       location /gone {{ proxy_pass http://127.0.0.1:{dead}; proxy_cache_key shared; }}\n\
             \x20       location /range {{ proxy_pass http://127.0.0.1:{back}; proxy_cache_max_range_offset 1000; }}\n\
             \x20       location /big {{ proxy_pass http://127.0.0.1:{back}; }}\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

/// `proxy_cache_lock`: of three requests at once for a missing entry, one
/// asks the upstream and the others wait for its answer; the upstream
/// down, `proxy_cache_use_stale error` answers with the expired entry;
/// `proxy_cache_max_range_offset` passes a far range on, unstored.
fn lock_stale_range(nginx: bool) -> (Vec<String>, u32, u32) {
    let counts: Counts = Arc::default();
    let back = counting_backend(counts.clone());
    let dead = waypost_tests::free_port();
    let ports = free_ports(1);
    let _server = Server::either(nginx, &lock_conf(ports[0], back, dead, nginx), &ports);
    let mut answers: Vec<String> = std::thread::scope(|s| {
        let first = s.spawn(|| waypost_tests::get(ports[0], "/slow"));
        // The first request reached the backend: the others find it
        // storing the entry.
        while asked(&counts, "/slow") == 0 {
            std::thread::yield_now();
        }
        let others: Vec<_> = (0..2)
            .map(|_| s.spawn(|| waypost_tests::get(ports[0], "/slow")))
            .collect();
        std::iter::once(first)
            .chain(others)
            .map(|h| {
                let r = h.join().expect("request");
                format!(
                    "{} {}",
                    r.header("X-Cache").unwrap_or("-"),
                    r.body.trim_end()
                )
            })
            .collect()
    });
    answers.sort();
    for path in ["/old", "/down", "/gone", "/old"] {
        let r = waypost_tests::get(ports[0], path);
        answers.push(format!(
            "{path}: {} {} {}",
            r.status,
            r.header("X-Cache").unwrap_or("-"),
            r.body.lines().next().unwrap_or("")
        ));
    }
    for (range, n) in [("bytes=0-5", 1), ("bytes=2000-", 2), ("bytes=-5", 3)] {
        let r = waypost_tests::get_with(ports[0], &format!("/range{n}"), &[("Range", range)]);
        let again = waypost_tests::get(ports[0], &format!("/range{n}"));
        answers.push(format!(
            "{range}: {} {} sent={} then {}",
            r.status,
            r.header("X-Cache").unwrap_or("-"),
            r.header("X-Range").unwrap_or("?"),
            again.header("X-Cache").unwrap_or("-"),
        ));
    }
    (answers, asked(&counts, "/slow"), asked(&counts, "/old"))
}

#[test]
fn lock_stale_and_range_offset_as_nginx() {
    let _serial = waypost_tests::serial();
    let (ours, slow, old) = lock_stale_range(false);
    let (theirs, _, _) = lock_stale_range(true);
    assert_same_answers(&ours, &theirs);
    assert_eq!(slow, 1, "{ours:#?}");
    assert_eq!(old, 2, "{ours:#?}");
    assert!(
        ours.iter().any(|a| a.starts_with("/down: 200 STALE")),
        "{ours:#?}"
    );
}

/// A client that leaves after the head: the answer is read on and stored
/// all the same, as nginx stores it.
#[test]
fn an_answer_the_client_left_is_stored() {
    let counts: Counts = Arc::default();
    let back = counting_backend(counts.clone());
    let ports = free_ports(1);
    let server = Server::waypost(&lock_conf(ports[0], back, 1, false), &ports);
    let mut stream = TcpStream::connect(("127.0.0.1", ports[0])).expect("connect");
    stream
        .write_all(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n")
        .expect("send");
    let head = read_head(&mut stream).expect("head");
    assert!(String::from_utf8_lossy(&head).contains("X-Cache: MISS"));
    drop(stream);
    let cache = server.dir.path.join("cache");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while files(&cache).is_empty() {
        assert!(std::time::Instant::now() < deadline, "nothing stored");
        std::thread::yield_now();
    }
    let r = waypost_tests::get(ports[0], "/big");
    assert_eq!(r.header("X-Cache"), Some("HIT"));
    assert_eq!(r.body.len(), "/big #1\n".len() * 100_000);
    assert_eq!(asked(&counts, "/big"), 1);
}

/// Waits until the cache directory holds `n` entries.
fn wait_files(cache: &Path, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = files(cache);
        if now.len() == n {
            return now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{now:?}, not {n} entries"
        );
        std::thread::yield_now();
    }
}

/// The zone's thread removes entries unused for `inactive` (their files
/// too), and the least recently used while the files take `max_size`
/// (counted in 4 KB blocks, as nginx counts them: of ten one-block
/// entries under `max_size=20k`, the last four stay).
#[test]
fn inactive_and_max_size_remove_entries() {
    let counts: Counts = Arc::default();
    let back = counting_backend(counts);
    let ports = free_ports(1);
    let conf = wrap_http(
        &format!(
            "    proxy_cache_path short keys_zone=s:1m inactive=1s;\n\
             \x20   proxy_cache_path small keys_zone=m:1m max_size=20k;\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{};\n\
             \x20       add_header X-Cache $upstream_cache_status;\n\
             \x20       location /short/ {{ proxy_pass http://127.0.0.1:{back}; proxy_cache s; }}\n\
             \x20       location /small/ {{ proxy_pass http://127.0.0.1:{back}; proxy_cache m; }}\n\
             \x20   }}\n",
            ports[0]
        ),
        false,
    );
    let server = Server::waypost(&conf, &ports);
    let short = server.dir.path.join("short");
    assert_eq!(
        waypost_tests::get(ports[0], "/short/a").header("X-Cache"),
        Some("MISS")
    );
    wait_files(&short, 1);
    wait_files(&short, 0);
    assert_eq!(
        waypost_tests::get(ports[0], "/short/a").header("X-Cache"),
        Some("MISS")
    );

    let small = server.dir.path.join("small");
    for i in 1..=10 {
        let r = waypost_tests::get(ports[0], &format!("/small/e{i}"));
        assert_eq!(r.header("X-Cache"), Some("MISS"));
    }
    let kept = wait_files(&small, 4);
    for i in 7..=10 {
        let r = waypost_tests::get(ports[0], &format!("/small/e{i}"));
        assert_eq!(r.header("X-Cache"), Some("HIT"), "e{i} among {kept:?}");
    }
}
