//! `access_log` inside a location's `if`, side by side with nginx: the
//! block that held logs the request with its own lines (`off`: none),
//! whether the location then proxies, answers with its `return`, or the
//! block's `return` answers; the last block that held decides; a request
//! no block held for keeps the location's lines.

use waypost_tests::{exchange, free_ports, wrap_http, Server};

fn conf(port: u16, back: u16, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    log_format f '$request_uri $status';\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       access_log logs/main.log f;\n\
             \x20       location /a/ {{\n\
             \x20           if ($arg_quiet) {{ access_log off; }}\n\
             \x20           if ($arg_bot) {{ access_log logs/bots.log f; }}\n\
             \x20           return 200 \"a\\n\";\n\
             \x20       }}\n\
             \x20       location /p/ {{\n\
             \x20           if ($arg_quiet) {{ access_log off; }}\n\
             \x20           if ($arg_both) {{ access_log logs/bots.log f; access_log logs/main.log f; }}\n\
             \x20           proxy_pass http://127.0.0.1:{back};\n\
             \x20       }}\n\
             \x20       location /red/ {{\n\
             \x20           if ($arg_quiet) {{ access_log off; rewrite ^ /elsewhere redirect; }}\n\
             \x20           if ($arg_bot) {{ access_log logs/bots.log f; rewrite ^ /elsewhere redirect; }}\n\
             \x20           return 204;\n\
             \x20       }}\n\
             \x20       location /r/ {{\n\
             \x20           if ($arg_bot) {{ access_log logs/bots.log f; return 403; }}\n\
             \x20           return 204;\n\
             \x20       }}\n\
             \x20   }}\n\
             \x20   server {{ listen 127.0.0.1:{back}; access_log off; return 200 \"back\\n\"; }}\n"
        ),
        nginx,
    )
}

const TARGETS: &[&str] = &[
    "/a/x",
    "/a/x?quiet=1",
    "/a/x?bot=1",
    "/a/x?quiet=1&bot=1",
    "/p/x",
    "/p/x?quiet=1",
    "/p/x?both=1",
    "/r/x",
    "/r/x?bot=1",
    "/red/x",
    "/red/x?quiet=1",
    "/red/x?bot=1",
];

fn run(nginx: bool) -> (Vec<String>, Vec<String>, Vec<String>) {
    let ports = free_ports(2);
    let server = Server::either(nginx, &conf(ports[0], ports[1], nginx), &ports);
    let answers = TARGETS
        .iter()
        .map(|t| {
            let answer = exchange(ports[0], &format!("GET {t} HTTP/1.0\r\n\r\n"));
            format!("{t} -> {}", answer.split(' ').nth(1).unwrap_or(""))
        })
        .collect();
    // A last request each log file gets, so that every line before it is
    // there when it is.
    exchange(ports[0], "GET /a/last HTTP/1.0\r\n\r\n");
    exchange(ports[0], "GET /a/last?bot=1 HTTP/1.0\r\n\r\n");
    let main = server.wait_lines("logs/main.log", 6);
    let bots = server.wait_lines("logs/bots.log", 6);
    (answers, main, bots)
}

#[test]
fn access_log_in_if_as_nginx() {
    let ours = run(false);
    let theirs = run(true);
    let what = "waypost (left) and nginx (right)";
    assert_eq!(ours.0, theirs.0, "answers: {what}");
    assert_eq!(ours.1, theirs.1, "main log: {what}");
    assert_eq!(ours.2, theirs.2, "bots log: {what}");
    assert_eq!(
        theirs.1,
        [
            "/a/x 200",
            "/p/x 200",
            "/p/x?both=1 200",
            "/r/x 204",
            "/red/x 204",
            "/a/last 200"
        ]
    );
    assert_eq!(
        theirs.2,
        // The last block that held decides: `bot` after `quiet`.
        [
            "/a/x?bot=1 200",
            "/a/x?quiet=1&bot=1 200",
            "/p/x?both=1 200",
            "/r/x?bot=1 403",
            "/red/x?bot=1 302",
            "/a/last?bot=1 200"
        ]
    );
}
