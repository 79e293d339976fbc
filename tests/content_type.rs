//! The Content-Type of a text `return`, side by side with nginx: the
//! `types {}` entry for the extension of the URI's last segment (without
//! case), else `default_type`, each inherited level by level, nginx's
//! built-in three types without a `types` block; and the duplicate
//! extension warning.

use std::io::Write;

use waypost_tests::{
    assert_same_answers, either_on_a_port, exchange, free_ports, wrap_http, Server,
};

fn conf(port: u16, port2: u16, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    default_type application/octet-stream;\n\
             \x20   types {{ text/html html htm; application/json json; }}\n\
             \x20   types {{ image/png png; text/css css; }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       location / {{ return 200 \"text\"; }}\n\
             \x20       location /own/ {{ default_type text/plain; return 200 \"text\"; }}\n\
             \x20       location /none/ {{ types {{ }} return 200 \"text\"; }}\n\
             \x20       location /empty/ {{ return 204; }}\n\
             \x20       location /nested/ {{\n\
             \x20           types {{ application/x-custom html; }}\n\
             \x20           location /nested/in/ {{ return 200 \"text\"; }}\n\
             \x20           return 200 \"text\";\n\
             \x20       }}\n\
             \x20   }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port2};\n\
             \x20       types {{ }}\n\
             \x20       default_type text/x-server;\n\
             \x20       return 200 \"server level\";\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

fn content_type(port: u16, path: &str) -> String {
    let answer = exchange(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
    );
    let ct = answer
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("content-type:"))
        .unwrap_or("no Content-Type");
    format!("{path}: {ct}")
}

#[test]
fn return_text_types_match_nginx() {
    let paths = [
        "/",
        "/a",
        "/x.html",
        "/x.HTM",
        "/x.json",
        "/x.css",
        "/x.png",
        "/x.unknown",
        "/dir.json/file",
        "/x.",
        "/.html",
        "/dir/.json",
        "/own/x.html",
        "/own/x",
        "/none/x.html",
        "/nested/x.html",
        "/nested/in/x.html",
        "/nested/in/x.json",
        // A 204 goes without a type.
        "/empty/x.html",
    ];
    let run = |nginx: bool| {
        let [port, port2] = free_ports(2)[..] else {
            unreachable!()
        };
        let _server = Server::either(nginx, &conf(port, port2, nginx), &[port, port2]);
        let mut seen: Vec<String> = paths.iter().map(|p| content_type(port, p)).collect();
        seen.push(content_type(port2, "/x.html"));
        seen
    };
    let ours = run(false);
    assert_same_answers(&ours, &run(true));
    assert!(ours.iter().any(|l| l.ends_with("text/html")), "{ours:?}");
    assert!(
        ours.iter().any(|l| l.ends_with("application/octet-stream")),
        "{ours:?}"
    );
}

/// A backend answering `/NAME` with the Content-Type (and other header)
/// lines of that case.
fn typed_backend() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    waypost_tests::serve_numbered(listener, |mut stream, _| {
        let Some(head) = waypost_tests::read_head(&mut stream) else {
            return;
        };
        let head = String::from_utf8_lossy(&head).into_owned();
        let path = head.split(' ').nth(1).unwrap_or("/");
        let name = path.rsplit('/').next().unwrap_or("");
        let lines = match name {
            "html" => "Content-Type: text/html\r\n",
            "latin" => "Content-Type: text/html; charset=iso-8859-1\r\n",
            "upper" => "Content-Type: text/html; CHARSET=UTF-8\r\n",
            "params" => "Content-Type: Text/HTML; foo=bar\r\n",
            "json" => "Content-Type: application/json\r\n",
            "js" => "Content-Type: application/javascript\r\n",
            "enc" => "Content-Type: text/html\r\nContent-Encoding: br\r\n",
            _ => "",
        };
        let _ = stream.write_all(
            format!("HTTP/1.1 200 OK\r\n{lines}Content-Length: 2\r\nConnection: close\r\n\r\nok")
                .as_bytes(),
        );
    });
    port
}

/// `charset` beside nginx: added where the answer's type is one of
/// `charset_types` and it names no charset, not to encoded answers, off
/// where a level says so; on proxied answers, `return` texts and error
/// pages.
#[test]
fn charset_matches_nginx() {
    let back = typed_backend();
    let run = |nginx: bool| {
        let (_server, port) = either_on_a_port(nginx, |port| {
            format!(
                "    charset utf-8;\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       location /p/ {{ proxy_pass http://127.0.0.1:{back}; }}\n\
                 \x20       location /t/ {{ charset_types application/json; proxy_pass http://127.0.0.1:{back}; }}\n\
                 \x20       location /all/ {{ charset_types *; charset windows-1251; proxy_pass http://127.0.0.1:{back}; }}\n\
                 \x20       location /off/ {{ charset off; proxy_pass http://127.0.0.1:{back}; }}\n\
                 \x20       location = /r {{ return 200 \"text\"; }}\n\
                 \x20       location = /e {{ return 404; }}\n\
                 \x20       location = /r301 {{ return 301 /x; }}\n\
                 \x20       location = /r307 {{ return 307 /x; }}\n\
                 \x20   }}\n"
            )
        });
        let mut seen = Vec::new();
        for level in ["/p/", "/t/", "/all/", "/off/"] {
            for name in [
                "html", "latin", "upper", "params", "json", "js", "enc", "none",
            ] {
                seen.push(content_type(port, &format!("{level}{name}")));
            }
        }
        for path in ["/r", "/e", "/r301", "/r307"] {
            seen.push(content_type(port, path));
        }
        seen
    };
    let ours = run(false);
    assert_same_answers(&ours, &run(true));
    assert!(
        ours.iter().any(|l| l.ends_with("text/html; charset=utf-8")),
        "{ours:?}"
    );
}

/// `expires` beside nginx: Expires and Cache-Control for the statuses it
/// applies to, the upstream's own lines replaced (one Cache-Control
/// left), `modified` from the upstream's Last-Modified. An Expires that
/// follows the clock is shown as its distance from Date, which agrees
/// with max-age.
#[test]
fn expires_matches_nginx() {
    let back = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        waypost_tests::serve_numbered(listener, |mut stream, _| {
            let Some(head) = waypost_tests::read_head(&mut stream) else {
                return;
            };
            let lm = if String::from_utf8_lossy(&head).contains("/nolm") {
                ""
            } else {
                "Last-Modified: Wed, 01 Jan 2025 00:00:00 GMT\r\n"
            };
            let _ = stream.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nCache-Control: private, max-age=5\r\nCache-Control: no-transform\r\n\
                     Expires: Thu, 01 Jan 2026 00:00:00 GMT\r\n{lm}Content-Length: 2\r\nConnection: close\r\n\r\nok"
                )
                .as_bytes(),
            );
        });
        port
    };
    let run = |nginx: bool| {
        let (_server, port) = either_on_a_port(nginx, |port| {
            format!(
                "    server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       expires 1h;\n\
                 \x20       location /a {{ expires 30d; return 200 \"x\"; }}\n\
                 \x20       location /b {{ expires epoch; return 200 \"x\"; }}\n\
                 \x20       location /c {{ expires max; return 200 \"x\"; }}\n\
                 \x20       location /d {{ expires -1; return 200 \"x\"; }}\n\
                 \x20       location /e {{ expires off; return 200 \"x\"; }}\n\
                 \x20       location /f {{ return 404; }}\n\
                 \x20       location /g {{ proxy_pass http://127.0.0.1:{back}; }}\n\
                 \x20       location /h {{ expires 0; return 200 \"x\"; }}\n\
                 \x20       location /j {{ expires modified 1h; proxy_pass http://127.0.0.1:{back}; }}\n\
                 \x20       location /k {{ return 302 /x; }}\n\
                 \x20       location /m {{ expires modified +2h; proxy_pass http://127.0.0.1:{back}/nolm; }}\n\
                 \x20       location /n {{ expires modified -5m; return 204; }}\n\
                 \x20   }}\n"
            )
        });
        [
            "/a", "/b", "/c", "/d", "/e", "/f", "/g", "/h", "/j", "/k", "/m", "/n",
        ]
        .iter()
        .map(|path| expires_line(port, path))
        .collect::<Vec<_>>()
    };
    let ours = run(false);
    assert_same_answers(&ours, &run(true));
    assert!(ours.iter().any(|l| l.contains("max-age=3600")), "{ours:?}");
}

/// `expires` with variables beside nginx: the value read per answer, as
/// the directive reads its word (`off`, `epoch`, `max`, `[+|-]TIME`,
/// `modified TIME`); a value nginx would not take (`bogus`, an empty one,
/// `epoch` after `modified`, a daily time past 24 hours) sets nothing.
#[test]
fn expires_with_variables_matches_nginx() {
    let run = |nginx: bool| {
        let (_server, port) = either_on_a_port(nginx, |port| {
            format!(
                "    map $arg_e $by_map {{ default off; a 2h; b epoch; c -30s; }}\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       location /q {{ expires $arg_e; return 200 \"x\"; }}\n\
                 \x20       location /m {{ expires $by_map; return 200 \"x\"; }}\n\
                 \x20       location /modified {{ expires modified $arg_e; return 200 \"x\"; }}\n\
                 \x20       location /missing {{ expires $arg_e; return 404; }}\n\
                 \x20   }}\n"
            )
        });
        [
            "/q?e=1h",
            "/q?e=-1",
            "/q?e=+30m",
            "/q?e=epoch",
            "/q?e=max",
            "/q?e=off",
            "/q",
            "/q?e=bogus",
            "/q?e=@25h",
            "/m?e=a",
            "/m?e=b",
            "/m?e=c",
            "/m?e=z",
            "/modified?e=1h",
            "/modified?e=epoch",
            "/missing?e=1h",
        ]
        .iter()
        .map(|path| expires_line(port, path))
        .collect::<Vec<_>>()
    };
    let ours = run(false);
    assert_same_answers(&ours, &run(true));
    assert!(ours[0].contains("max-age=3600"), "{ours:?}");
    assert!(ours[7].contains("expires=[] cc=[]"), "{ours:?}");
}

/// The browser-caching idiom of nginx guides beside nginx: `map
/// $sent_http_content_type $expires { ... }` and `expires $expires;`,
/// over static files, a `return` and a proxied answer, with
/// `$sent_http_*` in `add_header` too (Cache-Control's lines joined; a
/// later line sees what an earlier one added).
#[test]
fn expires_by_the_answers_type_matches_nginx() {
    let back = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        waypost_tests::serve_numbered(listener, |mut stream, _| {
            if waypost_tests::read_head(&mut stream).is_none() {
                return;
            }
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nCache-Control: public\r\n\
                  Cache-Control: no-transform\r\nX-Back: b\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
            );
        });
        port
    };
    let dir = waypost_tests::TempDir::new("expires-by-type");
    for name in ["a.html", "s.css", "p.png", "x.txt", "j.js"] {
        dir.write(&format!("www/{name}"), "x");
    }
    let root = dir.path.join("www");
    let run = |nginx: bool| {
        let (_server, port) = either_on_a_port(nginx, |port| {
            format!(
                "    types {{ text/html html; text/css css; image/png png; text/plain txt; application/javascript js; }}\n\
                 \x20   map $sent_http_content_type $expires {{\n\
                 \x20       default off;\n\
                 \x20       text/html epoch;\n\
                 \x20       text/css max;\n\
                 \x20       application/javascript 7d;\n\
                 \x20       ~image/ 1h;\n\
                 \x20   }}\n\
                 \x20   map $expires $cached {{ default yes; off no; }}\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       root {};\n\
                 \x20       expires $expires;\n\
                 \x20       add_header X-Type \"[$sent_http_content_type] [$sent_http_x_back] $cached\";\n\
                 \x20       add_header X-CC \"[$sent_http_cache_control] [$sent_http_x_type]\";\n\
                 \x20       location /r {{ return 200 \"x\"; }}\n\
                 \x20       location /up {{ proxy_pass http://127.0.0.1:{back}; }}\n\
                 \x20       location /kept {{ expires off; proxy_pass http://127.0.0.1:{back}; }}\n\
                 \x20   }}\n",
                root.display()
            )
        });
        [
            "/a.html",
            "/s.css",
            "/p.png",
            "/x.txt",
            "/j.js",
            "/r",
            "/up",
            "/kept",
            "/none.png",
        ]
        .iter()
        .map(|path| {
            let answer = exchange(
                port,
                &format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
            );
            let added: Vec<&str> = answer
                .lines()
                .filter(|l| l.starts_with("X-Type:") || l.starts_with("X-CC:"))
                .collect();
            format!("{} {added:?}", expires_line(port, path))
        })
        .collect::<Vec<_>>()
    };
    let ours = run(false);
    assert_same_answers(&ours, &run(true));
    assert!(
        ours[0].contains("cc=[\"no-cache\"]") && ours[1].contains("max-age=315360000"),
        "{ours:?}"
    );
    assert!(
        ours[7].contains("X-CC: [public, no-transform] [[image/png] [b] yes]"),
        "{ours:?}"
    );
}

/// A `map` of `$sent_http_*` read where the request is handled, not by
/// the header filters, is refused with the reason: waypost has the
/// answer only there (nginx reads it wherever the answer exists).
#[test]
fn a_map_of_the_answer_elsewhere_is_refused() {
    let dir = waypost_tests::TempDir::new("answer-map-elsewhere");
    let conf = dir.write(
        "test.conf",
        "error_log logs/error.log;\npid logs/t.pid;\nevents {}\nhttp {\n    map $e $f { default 1; }\n    map $sent_http_content_type $e { default 1h; }\n    server {\n        location / { return 200 $f; }\n    }\n}\n",
    );
    let out = waypost_tests::run_waypost(&dir, &["-t", "-c", &conf.display().to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "[emerg] the \"$f\" variable reads the answer ($sent_http_*) and is supported only in \"add_header\" and \"expires\" in {}:8",
            conf.display()
        )),
        "{stderr}"
    );
}

/// An answer's status line, Expires and Cache-Control, for comparing: an
/// Expires that follows the clock is shown as its distance from Date,
/// which agrees with max-age.
fn expires_line(port: u16, path: &str) -> String {
    let answer = exchange(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
    );
    let values = |name: &str| -> Vec<String> {
        answer
            .lines()
            .filter_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
            .collect()
    };
    let time = |v: &str| httpdate_parse(v);
    let date = values("date").first().and_then(|d| time(d));
    let expires: Vec<String> = values("expires")
        .iter()
        .map(|e| match (time(e), date) {
            // Near the clock (`expires 30d` at most here): its
            // distance from Date; a fixed one as it is.
            (Some(e), Some(d)) if (e - d).abs() <= 31 * 86_400 => {
                format!("Date{:+}", e - d)
            }
            _ => e.clone(),
        })
        .collect();
    let status = answer.lines().next().unwrap_or("").to_owned();
    format!(
        "{path}: {status} expires={expires:?} cc={:?}",
        values("cache-control")
    )
}

/// Seconds since the epoch of an HTTP date (`Thu, 01 Jan 1970 00:00:01
/// GMT`).
fn httpdate_parse(v: &str) -> Option<i64> {
    let parts: Vec<&str> = v.split([' ', ':']).collect();
    let [_, day, month, year, h, m, s, _] = parts[..] else {
        return None;
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|&n| n == month)? as i64
        + 1;
    let (y, d): (i64, i64) = (year.parse().ok()?, day.parse().ok()?);
    // Days from civil (Howard Hinnant's algorithm).
    let (y, mo) = if month <= 2 {
        (y - 1, month + 9)
    } else {
        (y, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(
        days * 86_400
            + h.parse::<i64>().ok()? * 3600
            + m.parse::<i64>().ok()? * 60
            + s.parse::<i64>().ok()?,
    )
}

/// `msie_padding off` beside nginx: a Chrome client's 404 page unpadded
/// where a level turns it off, padded elsewhere.
#[test]
fn msie_padding_off_as_nginx() {
    let run = |nginx: bool| {
        let (_server, port) = either_on_a_port(nginx, |port| {
            format!(
                "    server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       msie_padding off;\n\
                 \x20       location /a {{ return 404; }}\n\
                 \x20       location /b {{ msie_padding on; return 404; }}\n\
                 \x20   }}\n"
            )
        });
        ["/a", "/b", "/none"]
            .iter()
            .map(|path| {
                let answer = exchange(
                    port,
                    &format!(
                        "GET {path} HTTP/1.1\r\nHost: h\r\nUser-Agent: x Chrome/1\r\nConnection: close\r\n\r\n"
                    ),
                );
                let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                format!("{path}: {} bytes", body.replace("nginx/1.22.1", "waypost").len())
            })
            .collect::<Vec<_>>()
    };
    let ours = run(false);
    assert_same_answers(&ours, &run(true));
}
