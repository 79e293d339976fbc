//! `secure_link`, `secure_link_md5` and `secure_link_secret` side by side
//! with nginx: links with and without an expiry, expired, forged, badly
//! encoded or padded; the old `/prefix/MD5/link` form; `$secure_link` and
//! `$secure_link_expires` in answers and in the access log; then the
//! directives' errors.

use base64::Engine as _;
use md5::{Digest as _, Md5};
use waypost_tests::{assert_t_cases, exchange, free_ports, wrap_http, Server, Waypost};

fn conf(port: u16, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    log_format sl '$uri [$secure_link] [$secure_link_expires] $status';\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       access_log logs/sl.log sl;\n\
             \x20       secure_link $arg_md5,$arg_expires;\n\
             \x20       secure_link_md5 \"$secure_link_expires$uri secret\";\n\
             \x20       location /s/ {{\n\
             \x20           if ($secure_link = \"\") {{ return 403; }}\n\
             \x20           if ($secure_link = \"0\") {{ return 410; }}\n\
             \x20           return 200 \"ok $secure_link $secure_link_expires\\n\";\n\
             \x20       }}\n\
             \x20       location /nox/ {{\n\
             \x20           secure_link $arg_md5;\n\
             \x20           secure_link_md5 \"$uri secret\";\n\
             \x20           return 200 \"[$secure_link] [$secure_link_expires]\\n\";\n\
             \x20       }}\n\
             \x20       location /p/ {{\n\
             \x20           secure_link_secret word;\n\
             \x20           if ($secure_link = \"\") {{ return 403; }}\n\
             \x20           return 200 \"link $secure_link\\n\";\n\
             \x20       }}\n\
             \x20       location /inherits/ {{ return 200 \"[$secure_link]\\n\"; }}\n\
             \x20       location /cycle/ {{\n\
             \x20           secure_link \"$arg_h,$secure_link_expires\";\n\
             \x20           secure_link_md5 x;\n\
             \x20           return 200 \"[$secure_link] [$secure_link_expires]\\n\";\n\
             \x20       }}\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

/// The base64url MD5 of `text`, as a site makes its links.
fn hash(text: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Md5::digest(text.as_bytes()))
}

fn hex(text: &str) -> String {
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn targets() -> Vec<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (later, earlier) = (now + 3600, now - 3600);
    let good = |uri: &str, t: u64| {
        format!(
            "{uri}?md5={}&expires={t}",
            hash(&format!("{t}{uri} secret"))
        )
    };
    let padded = format!("{}==", hash("/nox/a.txt secret"));
    let standard =
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(Md5::digest(b"/nox/b.txt secret"));
    vec![
        good("/s/a.txt", later),
        good("/s/a.txt", earlier),
        format!("/s/a.txt?md5={}&expires={later}", hash("forged")),
        format!("/s/a.txt?md5={}&expires=0", hash("0/s/a.txt secret")),
        format!("/s/a.txt?md5={}&expires=1x", hash("1x/s/a.txt secret")),
        format!("/s/a.txt?md5={}", hash("/s/a.txt secret")),
        "/s/a.txt".into(),
        format!("/nox/a.txt?md5={}", hash("/nox/a.txt secret")),
        format!("/nox/a.txt?md5={padded}"),
        format!("/nox/a.txt?md5={}x", hash("/nox/a.txt secret")),
        // A hash in the standard alphabet (`+`, `/`) when it has them.
        format!("/nox/b.txt?md5={standard}"),
        format!(
            "/nox/a.txt?md5={}&expires={later}",
            hash("/nox/a.txt secret")
        ),
        format!("/p/{}/file.txt", hex("file.txtword")),
        format!("/p/{}/file.txt?x=1", hex("file.txt?x=1word")),
        format!("/p/{}/file.txt", hex("file.txt")),
        format!("/p/{}/", hex("word")),
        format!("/p/{}/file.txt", hex("file.txtword").to_uppercase()),
        "/p/short/file.txt".into(),
        "/inherits/x".into(),
        format!(
            "/inherits/x?md5={}&expires=99999999999",
            hash("99999999999/inherits/x secret")
        ),
        // `secure_link`'s value reading `$secure_link_expires`: a cycle.
        "/cycle/?h=a".into(),
    ]
}

fn answers(port: u16, targets: &[String]) -> Vec<String> {
    targets
        .iter()
        .map(|t| {
            let answer = exchange(port, &format!("GET {t} HTTP/1.0\r\n\r\n"));
            let status = answer.split(' ').nth(1).unwrap_or("").to_owned();
            let body = answer.rsplit("\r\n\r\n").next().unwrap_or("").trim();
            let body = if status == "200" { body } else { "" };
            format!("{t} -> {status} {body}")
        })
        .collect()
}

#[test]
fn secure_links_match_nginx() {
    let targets = targets();
    let ports = free_ports(2);
    let waypost = Server::waypost(&conf(ports[0], false), &[ports[0]]);
    let nginx = Server::nginx(&conf(ports[1], true), &[ports[1]]);
    let (ours, theirs) = (answers(ports[0], &targets), answers(ports[1], &targets));
    let logs = [&waypost, &nginx].map(|s| s.wait_lines("logs/sl.log", targets.len()));
    drop((waypost, nginx));
    assert_eq!(ours, theirs, "waypost (left) and nginx (right)");
    assert_eq!(logs[0], logs[1], "waypost (left) and nginx (right)");
    // What nginx answered, so that a change in either program shows.
    let statuses: Vec<&str> = theirs
        .iter()
        .map(|a| a.split(" -> ").nth(1).unwrap_or("").get(..3).unwrap_or(""))
        .collect();
    assert_eq!(
        statuses,
        [
            "200", "410", "403", "403", "403", "403", "403", "200", "200", "200", "200", "200",
            "200", "200", "403", "403", "200", "403", "200", "200", "200"
        ]
    );
    assert!(theirs[7].ends_with("[1] []"), "{}", theirs[7]);
    assert!(theirs[13].ends_with("link file.txt?x=1"), "{}", theirs[13]);
    // The server's settings, inherited by a location without its own.
    assert!(theirs[18].ends_with("200 []"), "{}", theirs[18]);
    assert!(theirs[19].ends_with("200 [1]"), "{}", theirs[19]);
    assert!(theirs[20].ends_with("200 [] []"), "{}", theirs[20]);
}

fn in_location(line: &str) -> String {
    format!("http {{\n    server {{\n        location / {{\n            {line}\n        }}\n    }}\n}}\n")
}

#[test]
fn secure_link_errors_as_nginx() {
    let emerg = |m: &str, line: u32| format!("[emerg] {m} in CONF:{line} (exit Some(1))");
    let cases = vec![
        (
            in_location("secure_link $arg_h; secure_link_secret w;"),
            emerg("\"secure_link_secret\" cannot be mixed with \"secure_link\" and \"secure_link_md5\"", 10),
            Waypost::Same,
        ),
        (
            in_location("secure_link $a $b;"),
            emerg("invalid number of arguments in \"secure_link\" directive", 7),
            Waypost::Same,
        ),
        (
            in_location("secure_link $arg_a; secure_link $arg_b;"),
            emerg("\"secure_link\" directive is duplicate", 7),
            Waypost::Same,
        ),
        (
            "http {\n    server {\n        secure_link_secret w;\n        secure_link_md5 x;\n    }\n}\n".to_owned(),
            emerg("\"secure_link_secret\" cannot be mixed with \"secure_link\" and \"secure_link_md5\"", 9),
            Waypost::Same,
        ),
        (
            "http {\n    secure_link_secret w;\n    secure_link_md5 x;\n    server {\n        secure_link_secret w;\n    }\n}\n".to_owned(),
            "ok (exit Some(0))".to_owned(),
            Waypost::Same,
        ),

        (
            "http {\n    secure_link $arg_h,$arg_e;\n    secure_link_md5 \"$secure_link_expires$uri s\";\n    server {\n        location / { secure_link_secret w; }\n    }\n}\n".to_owned(),
            "ok (exit Some(0))".to_owned(),
            Waypost::Same,
        ),
    ];
    assert_t_cases("secure-link", &cases);
}
