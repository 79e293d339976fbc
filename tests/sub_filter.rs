//! `sub_filter` side by side with nginx: strings replaced without case,
//! the first in order at each place, once or every time, with variables
//! in the string and the replacement; across the pieces a body comes in
//! (sent in several writes, chunked or with a length); `sub_filter_types`
//! (`text/html` always, `*` an answer without a type too); the headers it
//! changes (Content-Length, Last-Modified, ETag, or a weak ETag with
//! `sub_filter_last_modified`), on HEAD too; answers waypost makes, and
//! files, whose ranges go; then the directives' errors.

use std::io::Write;
use std::net::TcpListener;

use waypost_tests::{
    assert_t_cases, exchange, free_ports, in_location, next_head, serve_numbered, wrap_http,
    Server, TempDir, Waypost,
};

/// The body the backend sends, in these pieces.
const PIECES: [&str; 4] = [
    "<p>Hello world, hello HELLO abcab",
    "cabc wor",
    "ld hel",
    "lo and world</p>\n",
];

/// A backend that answers each request with [`PIECES`] in separate
/// writes, a moment apart so that the proxy reads them apart (the
/// matcher's unit tests cut bodies at every byte): with a Content-Length,
/// or chunked for a target with `chunked`; of the type `?t=` names
/// (`text/html` by default, none for `none`).
fn backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    serve_numbered(listener, |mut stream, _| {
        let mut buf = Vec::new();
        while let Some(head) = next_head(&mut stream, &mut buf) {
            let target = head.split(' ').nth(1).unwrap_or("/").to_owned();
            let kind = target
                .split_once("t=")
                .map_or("text/html", |(_, t)| t.split('&').next().unwrap_or(""));
            let kind = kind.replace("%2F", "/");
            let chunked = target.contains("chunked");
            let body: String = PIECES.concat();
            let framing = if chunked {
                "Transfer-Encoding: chunked".to_owned()
            } else {
                format!("Content-Length: {}", body.len())
            };
            let kind = match kind.as_str() {
                "none" => String::new(),
                kind => format!("Content-Type: {kind}\r\n"),
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\n{kind}{framing}\r\n\
                 Last-Modified: Tue, 14 Nov 2023 22:13:20 GMT\r\nETag: \"abc-1\"\r\n\r\n"
            );
            if stream.write_all(head.as_bytes()).is_err() {
                return;
            }
            for piece in PIECES {
                let piece = if chunked {
                    format!("{:x}\r\n{piece}\r\n", piece.len())
                } else {
                    piece.to_owned()
                };
                if stream
                    .write_all(piece.as_bytes())
                    .and_then(|()| stream.flush())
                    .is_err()
                {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            if chunked && stream.write_all(b"0\r\n\r\n").is_err() {
                return;
            }
        }
    });
    port
}

fn conf(port: u16, back: u16, root: &std::path::Path, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    upstream back {{ server 127.0.0.1:{back}; }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       location /all/ {{ proxy_pass http://back; sub_filter hello bye; sub_filter_once off; }}\n\
             \x20       location /once/ {{ proxy_pass http://back; sub_filter hello bye; sub_filter World Earth; }}\n\
             \x20       location /order/ {{\n\
             \x20           proxy_pass http://back;\n\
             \x20           sub_filter abc 1;\n\
             \x20           sub_filter abcab 2;\n\
             \x20           sub_filter cab 3;\n\
             \x20           sub_filter_once off;\n\
             \x20       }}\n\
             \x20       location /vars/ {{\n\
             \x20           proxy_pass http://back;\n\
             \x20           sub_filter $arg_f \"[$arg_r]\";\n\
             \x20           sub_filter_once off;\n\
             \x20           sub_filter_last_modified on;\n\
             \x20       }}\n\
             \x20       location /types/ {{ proxy_pass http://back; sub_filter hello bye; sub_filter_types text/plain; }}\n\
             \x20       location /made/ {{ default_type text/html; sub_filter hello bye; return 200 \"hello there, Hello\"; }}\n\
             \x20       location /star/ {{ proxy_pass http://back; sub_filter hello bye; sub_filter_types *; }}\n\
             \x20       location /file/ {{ alias {root}/; sub_filter hello bye; }}\n\
             \x20       location /plain/ {{ alias {root}/; sub_filter hello bye; sub_filter_types text/css; }}\n\
             \x20   }}\n",
            root = root.display()
        ),
        nginx,
    )
}

const TARGETS: &[&str] = &[
    "/all/",
    "/all/chunked",
    "/once/",
    "/order/",
    "/order/chunked",
    "/vars/?f=WORLD&r=x",
    "/vars/?r=nothing-to-find",
    "/types/?t=text/plain",
    "/types/?t=text/html",
    "/types/?t=text/css",
    "/all/?t=application/json",
    "/made/",
    "/star/?t=none",
    "/file/a.html",
    "HEAD /file/a.html",
    "RANGE /file/a.html",
    "RANGE /plain/a.txt",
    "HEAD /made/",
    "HEAD /all/",
];

/// The answer's status, the headers the filter decides, and the body
/// (chunked ones joined).
/// (`HEAD /x` asks with HEAD, `RANGE /x` for bytes 0-4.)
fn answer(port: u16, target: &str) -> String {
    let (method, path, range) = match target.split_once(' ') {
        Some(("HEAD", path)) => ("HEAD", path, ""),
        Some(("RANGE", path)) => ("GET", path, "Range: bytes=0-4\r\n"),
        _ => ("GET", target, ""),
    };
    let raw = exchange(
        port,
        &format!("{method} {path} HTTP/1.1\r\nHost: h\r\n{range}Connection: close\r\n\r\n"),
    );
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split(' ').nth(1).unwrap_or("").to_owned();
    // (In name order: nginx writes Transfer-Encoding before an upstream's
    // lines, waypost after them.)
    let mut shown: Vec<&str> = head
        .split("\r\n")
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            [
                "content-length",
                "transfer-encoding",
                "last-modified",
                "etag",
                "content-type",
                "accept-ranges",
                "content-range",
            ]
            .iter()
            .any(|h| l.starts_with(h))
        })
        .collect();
    shown.sort_unstable();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        String::from_utf8_lossy(&waypost_tests::unchunk(body.as_bytes())).into_owned()
    } else {
        body.to_owned()
    };
    format!("{target} -> {status} {shown:?} {body:?}")
}

#[test]
fn sub_filter_matches_nginx() {
    let back = backend();
    let files = TempDir::new("sub-files");
    files.write("a.html", "<p>hello file</p>\n");
    files.write("a.txt", "hello text\n");
    let mtime = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    for name in ["a.html", "a.txt"] {
        std::fs::File::options()
            .write(true)
            .open(files.path.join(name))
            .and_then(|f| f.set_modified(mtime))
            .expect("mtime");
    }
    let ports = free_ports(2);
    let waypost = Server::waypost(&conf(ports[0], back, &files.path, false), &[ports[0]]);
    let nginx = Server::nginx(&conf(ports[1], back, &files.path, true), &[ports[1]]);
    let ours: Vec<String> = TARGETS.iter().map(|t| answer(ports[0], t)).collect();
    let theirs: Vec<String> = TARGETS.iter().map(|t| answer(ports[1], t)).collect();
    drop((waypost, nginx));
    waypost_tests::assert_same_answers(&ours, &theirs);
    // What nginx answered, so that a change in either program shows.
    assert!(
        theirs[0].ends_with("\"<p>bye world, bye bye abcabcabc world bye and world</p>\\n\""),
        "{}",
        theirs[0]
    );
    assert!(theirs[5].contains("W/\\\"abc-1\\\""), "{}", theirs[5]);
}

#[test]
fn sub_filter_errors_as_nginx() {
    let emerg = |m: &str| format!("[emerg] {m} in CONF:7 (exit Some(1))");
    let many: String = (0..256).map(|i| format!("sub_filter a{i} b; ")).collect();
    let cases = vec![
        (
            in_location("sub_filter '' x;"),
            emerg("empty search pattern"),
            Waypost::Same,
        ),
        (
            in_location("sub_filter a;"),
            emerg("invalid number of arguments in \"sub_filter\" directive"),
            Waypost::Same,
        ),
        (
            in_location(&many),
            emerg("number of search patterns exceeds 255"),
            Waypost::Same,
        ),
        (
            in_location("sub_filter_once maybe;"),
            emerg("invalid value \"maybe\" in \"sub_filter_once\" directive, it must be \"on\" or \"off\""),
            Waypost::Same,
        ),
        (
            "http {\n    sub_filter a b;\n    sub_filter_types text/css *;\n    sub_filter_once off;\n    sub_filter_last_modified on;\n    server {\n        sub_filter $host $uri;\n    }\n}\n".to_owned(),
            "ok (exit Some(0))".to_owned(),
            Waypost::Same,
        ),
    ];
    assert_t_cases("sub-filter", &cases);
}
