//! Regex locations side by side with nginx: the same URIs reach the same
//! locations (exact first, then the regexes nested in the longest prefix,
//! then those of each level out to the server's, `^~` stopping the level
//! above it, `~*` without case, regexes nested in regexes), with the same
//! `$1`.. groups in `return`, `proxy_set_header` and the access log, and
//! `allow`/`deny` and proxying in regex locations. Then the config errors.

use waypost_tests::{
    assert_same_answers, either_on_a_port, exchange, first_report, free_ports, wrap_http, Server,
};

fn conf(port: u16, back: u16, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    log_format groups '$uri $status $request_uri';\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       access_log logs/groups.log groups;\n\
             \x20       location / {{ return 200 \"root\\n\"; }}\n\
             \x20       location /a {{\n\
             \x20           return 200 \"a\\n\";\n\
             \x20           location ~ x$ {{ return 200 \"a-regex-x\\n\"; }}\n\
             \x20           location ^~ /a/b {{\n\
             \x20               return 200 \"a/b-noregex\\n\";\n\
             \x20               location ~ y$ {{ return 200 \"ab-regex-y\\n\"; }}\n\
             \x20           }}\n\
             \x20           location /a/c {{ return 200 \"a/c\\n\"; }}\n\
             \x20       }}\n\
             \x20       location ^~ /n {{ return 200 \"n-noregex\\n\"; location ~ z$ {{ return 200 \"n-regex-z\\n\"; }} }}\n\
             \x20       location = /exact.php {{ return 200 \"exact\\n\"; }}\n\
             \x20       location ~ \\.(php|x)$ {{\n\
             \x20           return 200 \"php $1\\n\";\n\
             \x20           location ~ /deep/ {{ return 200 \"deep $1\\n\"; }}\n\
             \x20       }}\n\
             \x20       location ~* \\.JPG$ {{ return 200 \"jpg\\n\"; }}\n\
             \x20       location ~ ^/cap/(\\w+)/(\\d+) {{ return 200 \"cap $1 $2\\n\"; }}\n\
             \x20       location ~ /\\. {{ deny all; }}\n\
             \x20       location ~ ^/api/(v\\d)/ {{\n\
             \x20           proxy_pass http://127.0.0.1:{back};\n\
             \x20           proxy_set_header X-Version $1;\n\
             \x20       }}\n\
             \x20       location ~* ^/S/(.*) {{ return 302 /moved/$1; }}\n\
             \x20   }}\n\
             \x20   server {{ listen 127.0.0.1:{back}; location / {{ return 200 \"back $request_uri $http_x_version\\n\"; }} }}\n"
        ),
        nginx,
    )
}

const URIS: &[&str] = &[
    "/",
    "/x",
    "/a",
    "/ax",
    "/a/b",
    "/a/bx",
    "/a/by",
    "/a/b.php",
    "/a/c",
    "/a/c.php",
    "/a/cx",
    "/a.php",
    "/n",
    "/nz",
    "/n.php",
    "/exact.php",
    "/exact.PHP",
    "/q.php",
    "/deep/q.php",
    "/q.jpg",
    "/Q.JpG",
    "/cap/ab/12",
    "/cap/ab/x",
    "/a/b/y",
    "/a/b/x.x",
    "/.git/config",
    "/a/.htaccess",
    "/api/v2/users?id=1",
    "/api/x/users",
    "/s/old/page?q=1",
    "/S/Other",
    "/x/../y.php",
];

/// The status line, Location and body of `GET uri`.
fn ask(port: u16, uri: &str) -> String {
    let text = exchange(
        port,
        &format!("GET {uri} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
    );
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("");
    let location = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("location:"))
        .unwrap_or("");
    let location = location.replace(&format!(":{port}/"), ":PORT/");
    let body = if status.contains(" 200 ") {
        body.trim_end()
    } else {
        ""
    };
    format!("{status} {location} {body}")
}

fn run(nginx: bool) -> (Vec<String>, Vec<String>, usize) {
    let ports = free_ports(2);
    let server = Server::either(nginx, &conf(ports[0], ports[1], nginx), &ports);
    let answers = URIS
        .iter()
        .map(|uri| format!("{uri} -> {}", ask(ports[0], uri)))
        .collect();
    let log = server.wait_lines("logs/groups.log", URIS.len());
    let denied = server.log_messages("access forbidden by rule").len();
    (answers, log, denied)
}

#[test]
fn regex_locations_match_nginx() {
    let (ours, our_log, our_denied) = run(false);
    let (theirs, their_log, their_denied) = run(true);
    assert_same_answers(&ours, &theirs);
    assert_eq!(our_log, their_log, "access log (left: waypost)");
    assert_eq!((our_denied, their_denied), (2, 2), "denied dot files");
    for seen in [
        "ab-regex-y",
        "a-regex-x",
        "n-regex-z",
        "OK  deep",
        "jpg",
        "cap ab 12",
        "back /api/v2/users?id=1 v2",
        "/moved/old/page",
    ] {
        assert!(
            ours.iter().any(|a| a.contains(seen)),
            "{seen} never answered"
        );
    }
}

/// A pattern neither engine has (nginx's PCRE has it: a branch reset) is
/// refused at `-t`, at its line, rather than matching nothing.
#[test]
fn unsupported_patterns_are_refused_by_line() {
    let report = first_report(
        "  server {\n    listen 127.0.0.1:1;\n    location ~ ^/(?|a|b) { return 404; }\n  }\n",
    );
    assert!(
        report.starts_with(
            "waypost: [emerg] regular expression \"^/(?|a|b)\" is not valid or not supported: "
        ) && report.ends_with(" in CONF:7"),
        "{report}"
    );
}

/// nginx looks a prefix location up inside a regex location once the
/// regex matched; waypost refuses one at `-t` rather than never use it.
#[test]
fn a_prefix_inside_a_regex_location_is_refused() {
    let report = first_report(
        "  server {\n    listen 127.0.0.1:1;\n    location ~ /img/ {\n      location /img/thumbs/ { return 204; }\n    }\n  }\n",
    );
    assert_eq!(
        report,
        "waypost: [emerg] location \"/img/thumbs/\" inside the regular expression location \"/img/\" is not supported in CONF:8"
    );
}

/// Regex server names beside nginx: tried after the exact and wildcard
/// names, in the order written, on the lowercase host; their groups are
/// `$1`.. unless a regex location sets its own.
#[test]
fn regex_server_names_match_nginx() {
    let run = |nginx: bool| {
        let (_server, port) = either_on_a_port(nginx, |port| {
            format!(
                "    server {{ listen 127.0.0.1:{port}; server_name ~^(www\\\\.)?(?<dom>[a-z]+)\\\\.test$; return 200 \"regex [$1] [$2] $server_name\"; }}\n\
                 \x20   server {{ listen 127.0.0.1:{port}; server_name exact.test; return 200 \"exact\"; }}\n\
                 \x20   server {{ listen 127.0.0.1:{port}; server_name *.wild.test ~^x; return 200 \"wild [$1]\"; }}\n\
                 \x20   server {{ listen 127.0.0.1:{port} default_server; return 200 \"default [$1]\"; }}\n\
                 \x20   server {{ listen 127.0.0.1:{port}; server_name *.star.test; return 200 \"star\"; }}\n\
                 \x20   server {{ listen 127.0.0.1:{port}; server_name ~^star\\.test$; return 200 \"star regex\"; }}\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       server_name ~^api-(\\\\d+)\\\\.;\n\
                 \x20       location ~ ^/v(\\\\d+)/ {{ return 200 \"loc [$1]\"; }}\n\
                 \x20       location / {{ return 200 \"srv [$1]\"; }}\n\
                 \x20   }}\n"
            )
        });
        bodies(
            port,
            &[
                ("www.abc.test", "/"),
                ("abc.test", "/"),
                ("ABC.Test", "/"),
                ("exact.test", "/"),
                ("x.wild.test", "/"),
                ("xyz.other", "/"),
                ("www.abc.test.", "/"),
                ("api-42.example", "/"),
                ("api-42.example", "/v3/x"),
                ("other", "/"),
                ("star.test", "/"),
                ("a.star.test", "/"),
            ],
        )
    };
    let ours = run(false);
    assert_same_answers(&ours, &run(true));
    assert!(
        ours.iter().any(|a| a.contains("regex [www.] [abc]")),
        "{ours:?}"
    );
}

/// A regex location nested in regex locations: the named groups of each
/// enclosing match are variables too (nginx set them as it matched), a
/// nearer match's group of the same name over a farther one's and over
/// the regex server name's; `$1`.. are the innermost match's. The same
/// after `rewrite ... last` and after an `error_page` redirect, which find
/// the location again.
#[test]
fn named_groups_of_enclosing_regex_locations_as_nginx() {
    let run = |nginx: bool| {
        let (_server, port) = either_on_a_port(nginx, |port| {
            format!(
                "    server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       server_name ~^(?<app>[a-z]+)\\.(?<dom>test)$;\n\
                 \x20       location ~ ^/(?<app>[a-z]+)/ {{\n\
                 \x20           location ~ \\.(?<ext>php|js)$ {{ return 200 \"inner [$app] [$ext] [$dom] [$1]\"; }}\n\
                 \x20           location ~ /(?<app>x)/ {{ return 200 \"shadow [$app] [$1]\"; }}\n\
                 \x20           location ~ /(?<b>[0-9]+)/ {{\n\
                 \x20               location ~ (?<c>z)$ {{ return 200 \"deep [$app] [$b] [$c] [$1]\"; }}\n\
                 \x20               return 200 \"middle [$app] [$b]\";\n\
                 \x20           }}\n\
                 \x20           return 200 \"outer [$app] [$1]\";\n\
                 \x20       }}\n\
                 \x20       location ^~ /re/ {{ rewrite ^/re(/.*)$ $1 last; }}\n\
                 \x20       location = /missing {{ error_page 404 = /err/e.js; return 404; }}\n\
                 \x20       location / {{ return 200 \"root [$app] [$dom]\"; }}\n\
                 \x20   }}\n"
            )
        });
        bodies(
            port,
            &[
                ("srv.test", "/shop/a.php"),
                ("srv.test", "/shop/b"),
                ("srv.test", "/shop/x/y"),
                ("srv.test", "/shop/x/y.js"),
                ("srv.test", "/shop/42/z"),
                ("srv.test", "/shop/42/y"),
                ("srv.test", "/re/cart/c.js"),
                ("srv.test", "/missing"),
                ("srv.test", "/"),
                ("other", "/shop/a.php"),
            ],
        )
    };
    let theirs = run(true);
    assert!(
        theirs.contains(&"srv.test/shop/a.php -> inner [shop] [php] [test] [php]".to_owned()),
        "nginx's, the reference: {theirs:#?}"
    );
    assert_same_answers(&run(false), &theirs);
}

/// The body of the answer to each `(host, path)`, as `host/path -> body`.
fn bodies(port: u16, asks: &[(&str, &str)]) -> Vec<String> {
    asks.iter()
        .map(|(host, path)| {
            let answer = exchange(
                port,
                &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
            );
            let body = answer
                .split_once("\r\n\r\n")
                .map_or("", |(_, b)| b)
                .to_owned();
            format!("{host}{path} -> {body}")
        })
        .collect()
}

/// `merge_slashes off` beside nginx: the address's default server's
/// setting decides for every server of it (the URI is read before the
/// server is known); `$uri` and the location chosen keep the slashes.
#[test]
fn merge_slashes_off_as_nginx() {
    let run = |nginx: bool| {
        let (_server, port) = either_on_a_port(nginx, |port| {
            format!(
                "    server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       merge_slashes off;\n\
                 \x20       location / {{ return 200 \"$uri|$request_uri\"; }}\n\
                 \x20       location /a/b {{ return 200 \"ab $uri\"; }}\n\
                 \x20   }}\n\
                 \x20   server {{ listen 127.0.0.1:{port}; server_name other; merge_slashes on; location / {{ return 200 \"other $uri\"; }} }}\n"
            )
        });
        let mut seen = Vec::new();
        for path in [
            "//a//b",
            "/a//b",
            "/a/b",
            "/a/./b/../c//d",
            "/x%2F%2Fy",
            "/a/b//../c",
        ] {
            for host in ["h", "other"] {
                let answer = exchange(
                    port,
                    &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
                );
                let status = answer.lines().next().unwrap_or("").to_owned();
                let body = answer
                    .split_once("\r\n\r\n")
                    .map_or("", |(_, b)| b)
                    .to_owned();
                seen.push(format!("{host} {path} -> {status} {body}"));
            }
        }
        seen
    };
    let ours = run(false);
    assert_same_answers(&ours, &run(true));
    assert!(ours.iter().any(|a| a.contains("//a//b|//a//b")), "{ours:?}");
}

/// Look-around and backreferences, which the `regex` crate lacks, beside
/// nginx's PCRE: nginxconfig.io's `location ~ /\.(?!well-known)` that
/// denies dot files but `.well-known`, look-ahead with named groups
/// without case, a `map` key with look-ahead and one with a
/// backreference, an `if` and a `rewrite`.
#[test]
fn look_around_and_backreferences_as_nginx() {
    let run = |nginx: bool| {
        let (_server, port) = either_on_a_port(nginx, |port| {
            format!(
                "    map $uri $m {{ ~^/m/(?=a)(\\w+) \"ahead $1\"; ~^/m/(\\w)\\1 \"double $1\"; default none; }}\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       rewrite ^/r/(?!keep)(.*)$ /m/$1 last;\n\
                 \x20       location / {{ return 200 \"root\\n\"; }}\n\
                 \x20       location ~ /\\.(?!well-known) {{ return 403 \"dot\\n\"; }}\n\
                 \x20       location /.well-known/ {{ return 200 \"well-known\\n\"; }}\n\
                 \x20       location ~* ^/(?<dir>img|css)/(?!private)(?<rest>.+)$ {{ return 200 \"$dir $rest\\n\"; }}\n\
                 \x20       location /m/ {{ return 200 \"$m\\n\"; }}\n\
                 \x20       location /i/ {{ if ($request_uri ~ \"^/i/(?<!x)(?!x)\") {{ return 200 \"if\\n\"; }} return 200 \"not\\n\"; }}\n\
                 \x20   }}\n"
            )
        });
        [
            "/.git/config",
            "/.well-known/acme",
            "/a/.env",
            "/img/a.png",
            "/IMG/private/x",
            "/Css/x.css",
            "/m/abc",
            "/m/aa",
            "/m/bbc",
            "/m/xy",
            "/i/a",
            "/i/x",
            "/r/aa",
            "/r/keep",
        ]
        .iter()
        .map(|path| {
            let answer = exchange(port, &format!("GET {path} HTTP/1.0\r\nHost: h\r\n\r\n"));
            let status = answer.lines().next().unwrap_or("").to_owned();
            let body = answer
                .split("\r\n\r\n")
                .nth(1)
                .unwrap_or("")
                .trim()
                .to_owned();
            format!("{path}: {status} {body}")
        })
        .collect::<Vec<_>>()
    };
    let ours = run(false);
    assert_same_answers(&ours, &run(true));
    assert_eq!(
        ours[..3],
        [
            "/.git/config: HTTP/1.1 403 Forbidden dot",
            "/.well-known/acme: HTTP/1.1 200 OK well-known",
            "/a/.env: HTTP/1.1 403 Forbidden dot",
        ]
    );
}
