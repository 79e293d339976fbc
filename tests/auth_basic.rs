//! `auth_basic`, `auth_basic_user_file` and `satisfy` side by side with
//! nginx: one user file with every password scheme waypost reads
//! (`{PLAIN}`, `{SHA}`, `{SSHA}`, `$apr1$`, `$1$`, `$5$` with and without
//! rounds, `$6$`, bcrypt, DES, yescrypt), right and wrong passwords,
//! unknown users, an empty hash, a CR inside a line, a password with a
//! NUL, malformed `Authorization` headers; the realm inherited, with
//! variables, and `off`; `return` (answered before the access phase), a
//! location without a handler and a request no location takes; `satisfy
//! any` (in capitals too) and `all` with `allow`/`deny`; a missing user
//! file (403) and one that cannot be read (a directory: 500). Answers (with
//! `WWW-Authenticate`), access log lines with `$remote_user` and error log
//! lines are nginx's.

use std::io::Write;

use waypost_tests::{
    assert_same_runs, connect_from, free_ports, info_log, status_and_page, wrap_http, Run, Server,
    TempDir,
};

const USERS: &str = "# users of the test\n\
alice:{PLAIN}secret\n\
bob:$apr1$s4ltS4lt$.ZAcsAOvz4MyRc8b10ynm.\n\
carol:$1$s4ltS4lt$nG/ZCsRFMCbck8UwRnbGB.:a comment\n\
dave:$5$s4ltS4lt$otHY8zraxtaCKGf0hfJz4dCZx1srkBZUKuuZ6avPxc2\r\n\
dora:$5$rounds=1000$abcdefgh$XIppta5rT8zJUu4vAOKQXrwq9uY4Ijlz6VjyOmkx5i4\n\
erin:$6$s4ltS4lt$9uHOi55laf.sEEL.nTAfniTJjMMs7SDbYU5h7LVlO0kOSmOWxbm5Xz5q3kpep0HjBmO3KiwhbIAtD0zuw5Z8w0\n\
fred:$2b$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a\n\
gina:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n\
hank:{SSHA}dj2lH1ocucmj5OQsjP6mQrVx6FhOYUNs\n\
ivan:abNANd1rDfiNc\n\
yara:$y$j9T$s4ltS4ltS4ltS4ltS4ltS/$z8A0Us6RfSHBsZoqopIzsSXI7eMmp6i9XMezPeTY/K2\n\
empty:\n\
crmid:{PLAIN}zz\rcrnext:{PLAIN}secret\n\
\r#cr:{PLAIN}secret\n\
alice:{PLAIN}second\n";

fn conf(port: u16, back: u16, users: &str, nginx: bool) -> String {
    info_log(&wrap_http(
        &format!(
            "    log_format au '$remote_addr \"$request\" $status \"$remote_user\"';\n\
             \x20   upstream b {{ server 127.0.0.1:{back}; }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       server_name au;\n\
             \x20       access_log logs/acc.log au;\n\
             \x20       auth_basic \"Server Realm\";\n\
             \x20       auth_basic_user_file {users}/users;\n\
             \x20       location /p/ {{ proxy_pass http://b; }}\n\
             \x20       location /open/ {{ auth_basic off; proxy_pass http://b; }}\n\
             \x20       location /own/ {{ auth_basic \"Own $host\"; proxy_pass http://b; }}\n\
             \x20       location /ret {{ return 200 \"ret\\n\"; }}\n\
             \x20       location /none/ {{ }}\n\
             \x20       location /any/ {{ satisfy any; allow 127.0.0.2; deny all; proxy_pass http://b; }}\n\
             \x20       location /anyopen/ {{ satisfy any; proxy_pass http://b; }}\n\
             \x20       location /all/ {{ deny 127.0.0.2; proxy_pass http://b; }}\n\
             \x20       location /missing/ {{ auth_basic_user_file {users}/nosuch; proxy_pass http://b; }}\n\
             \x20       location /dir/ {{ auth_basic_user_file {users}; proxy_pass http://b; }}\n\
             \x20       location /capital/ {{ satisfy ANY; allow 127.0.0.2; deny all; proxy_pass http://b; }}\n\
             \x20   }}\n\
             \x20   server {{ listen 127.0.0.1:{back}; location / {{ return 200 \"ok\\n\"; }} }}\n"
        ),
        nginx,
    ))
}

/// `Authorization: Basic` of `user:password`.
fn basic(credentials: &str) -> String {
    const TABLE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = credentials.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

/// Every request: (source, path, Authorization value or "").
fn requests() -> Vec<(u8, String, String)> {
    let mut all = Vec::new();
    let mut add = |src: u8, path: &str, auth: String| all.push((src, path.to_owned(), auth));
    add(1, "/p/x", String::new());
    for user in [
        "alice", "bob", "carol", "dave", "dora", "erin", "fred", "gina", "hank", "ivan", "yara",
        "empty", "crnext", "crmid",
    ] {
        add(1, "/p/x", basic(&format!("{user}:secret")));
        add(1, "/p/x", basic(&format!("{user}:wrong")));
    }
    add(1, "/p/x", basic("alice:second"));
    add(1, "/p/x", basic("nobody:secret"));
    add(1, "/p/x", basic(":secret"));
    add(1, "/p/x", basic("alice"));
    add(1, "/p/x", "Basic".to_owned());
    add(1, "/p/x", "Basic    ".to_owned());
    add(1, "/p/x", "Bearer abc".to_owned());
    add(1, "/p/x", basic("alice:secret").replace("Basic", "bAsIc"));
    add(
        1,
        "/p/x",
        basic("alice:secret").replace("Basic ", "Basic   "),
    );
    add(
        1,
        "/p/x",
        basic("bob:secret").trim_end_matches('=').to_owned(),
    );
    add(1, "/p/x", "Basic !!!!".to_owned());
    add(1, "/p/x", basic("alice:secret\0junk"));
    add(1, "/p/x", basic("crmid:zz"));
    add(1, "/p/x", basic("\r#cr:secret"));
    add(
        1,
        "/p/x",
        basic("alice:secret").replace("Basic ", "Basic \t"),
    );
    add(1, "/open/x", String::new());
    add(1, "/own/x", String::new());
    add(1, "/own/x", basic("gina:secret"));
    add(1, "/ret", String::new());
    add(1, "/none/x", String::new());
    add(1, "/none/x", basic("alice:secret"));
    add(1, "/elsewhere", String::new());
    add(1, "/elsewhere", basic("alice:secret"));
    add(2, "/any/x", String::new());
    add(1, "/any/x", String::new());
    add(1, "/any/x", basic("alice:wrong"));
    add(1, "/any/x", basic("alice:secret"));
    add(1, "/anyopen/x", String::new());
    add(2, "/all/x", basic("alice:secret"));
    add(1, "/all/x", basic("alice:secret"));
    add(1, "/missing/x", String::new());
    add(1, "/missing/x", basic("alice:secret"));
    add(1, "/dir/x", basic("alice:secret"));
    add(2, "/capital/x", String::new());
    add(1, "/capital/x", basic("alice:secret"));
    add(1, "/capital/x", basic("alice:wrong"));
    all
}

/// `METHOD path` from 127.0.0.`src` with `auth` as Authorization (none
/// when empty), sent on a connection of its own.
fn send(port: u16, src: u8, method: &str, path: &str, auth: &str) -> std::net::TcpStream {
    let mut stream = connect_from([127, 0, 0, src], port);
    let auth = if auth.is_empty() {
        String::new()
    } else {
        format!("Authorization: {auth}\r\n")
    };
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: au\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    stream
}

/// The `WWW-Authenticate` of an answer is in its head; `status_and_page`
/// keeps the status line and the body, so the head is asked for again.
fn challenge(port: u16, src: u8, path: &str, auth: &str) -> String {
    let mut stream = send(port, src, "HEAD", path, auth);
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut stream, &mut got).expect("read");
    String::from_utf8_lossy(&got)
        .lines()
        .filter(|l| l.starts_with("WWW-Authenticate"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn run(nginx: bool, users: &TempDir) -> Run {
    let ports = free_ports(2);
    let dir = users.path.display().to_string();
    let server = Server::either(nginx, &conf(ports[0], ports[1], &dir, nginx), &ports[..1]);
    let mut answers = Vec::new();
    for (src, path, auth) in requests() {
        let seen = status_and_page(send(ports[0], src, "GET", &path, &auth));
        let head = challenge(ports[0], src, &path, &auth);
        answers.push(format!("{src} {path} [{auth}] -> {seen} | {head}"));
    }
    let access = server.wait_lines("logs/acc.log", 2 * requests().len());
    let mut errors = Vec::new();
    for needle in [
        "password mismatch",
        "was not found",
        "no user/password",
        // (nginx's 404s log `open()` of its html directory too: waypost
        // serves no files.)
        "/nosuch\" failed",
        "(21: Is a directory)",
        "forbidden by rule",
    ] {
        errors.extend(server.log_messages(needle));
    }
    (answers, access, errors)
}

#[test]
fn auth_basic_matches_nginx() {
    let users = TempDir::new("auth-users");
    users.write("users", USERS);
    let ours = run(false, &users);
    let theirs = run(true, &users);
    assert_same_runs(
        &ours,
        &theirs,
        &[
            "401 Unauthorized",
            "WWW-Authenticate: Basic realm=\"Server Realm\"",
            "WWW-Authenticate: Basic realm=\"Own au\"",
            "200 OK | ok",
            "403 Forbidden",
            "404 Not Found",
            "500 Internal Server Error",
        ],
    );
    assert!(
        ours.2
            .iter()
            .any(|l| l.starts_with("pread() \"") && l.contains("(21: Is a directory)")),
        "{:#?}",
        ours.2
    );
    let our_access = &ours.1;
    // Every scheme let its user in.
    for user in [
        "bob", "carol", "dave", "dora", "erin", "fred", "gina", "hank", "ivan", "yara",
    ] {
        assert!(
            our_access
                .iter()
                .any(|l| l.contains(" 200 ") && l.ends_with(&format!("\"{user}\""))),
            "{user}: {our_access:#?}"
        );
    }
}

/// A user file named with variables is refused at `-t` (nginx evaluates
/// it per request; waypost reads a fixed file).
#[test]
fn a_user_file_with_variables_is_refused() {
    let dir = TempDir::new("auth-t");
    let conf = dir.write(
        "t.conf",
        "error_log logs/error.log;\npid logs/t.pid;\nevents {}\nhttp {\n    auth_basic_user_file /etc/$host;\n}\n",
    );
    let conf = conf.display().to_string();
    let out = waypost_tests::run_waypost(&dir, &["-t", "-c", &conf]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let want = format!(
        "waypost: [emerg] variables in \"auth_basic_user_file\" are not supported in {conf}:5"
    );
    assert!(text.lines().any(|l| l == want), "want {want:?} in:\n{text}");
}

/// `auth_basic` inside `limit_except`: a request with a method the block
/// does not list is checked with the block's settings (its own lines
/// over the location's), others with the location's.
#[test]
fn limit_except_takes_auth_basic_as_nginx() {
    let users = TempDir::new("auth-le-users");
    users.write("users", USERS);
    let dir = users.path.display().to_string();
    let conf = |port: u16, back: u16, nginx: bool| {
        wrap_http(
            &format!(
                "    upstream b {{ server 127.0.0.1:{back}; }}\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       location /w/ {{\n\
                 \x20           limit_except GET {{ auth_basic \"Writers\"; auth_basic_user_file {dir}/users; }}\n\
                 \x20           proxy_pass http://b;\n\
                 \x20       }}\n\
                 \x20       location /r/ {{\n\
                 \x20           auth_basic \"Readers\";\n\
                 \x20           auth_basic_user_file {dir}/users;\n\
                 \x20           limit_except GET {{ auth_basic off; }}\n\
                 \x20           proxy_pass http://b;\n\
                 \x20       }}\n\
                 \x20       location /a/ {{\n\
                 \x20           auth_basic \"All\";\n\
                 \x20           auth_basic_user_file {dir}/users;\n\
                 \x20           limit_except GET {{ deny all; }}\n\
                 \x20           proxy_pass http://b;\n\
                 \x20       }}\n\
                 \x20   }}\n\
                 \x20   server {{ listen 127.0.0.1:{back}; location / {{ return 200 \"ok\\n\"; }} }}\n"
            ),
            nginx,
        )
    };
    let run = |nginx: bool| {
        let ports = free_ports(2);
        let _server = Server::either(nginx, &conf(ports[0], ports[1], nginx), &ports[..1]);
        let mut answers = Vec::new();
        for path in ["/w/x", "/r/x", "/a/x"] {
            for method in ["GET", "POST"] {
                for auth in [String::new(), basic("alice:secret")] {
                    let seen = status_and_page(send(ports[0], 1, method, path, &auth));
                    let head = challenge(ports[0], 1, path, &auth);
                    let seen = seen.lines().next().unwrap_or("").to_owned();
                    answers.push(format!("{method} {path} [{auth}] -> {seen} | {head}"));
                }
            }
        }
        answers
    };
    let ours = run(false);
    let theirs = run(true);
    assert_eq!(ours, theirs, "waypost (left) and nginx (right)");
    let statuses: Vec<&str> = theirs
        .iter()
        .map(|a| {
            a.split(" -> ")
                .nth(1)
                .unwrap_or("")
                .get(9..12)
                .unwrap_or("")
        })
        .collect();
    assert_eq!(
        statuses,
        ["200", "200", "401", "200", "401", "200", "200", "200", "401", "200", "403", "403"]
    );
}
