//! `limit_except`'s `proxy_pass` and `access_log` side by side with
//! nginx: a request whose method the block does not list is proxied by
//! the block's `proxy_pass` (a fixed one, one with variables, in a
//! location with its own `proxy_pass` or with none) and logged by the
//! block's `access_log` lines (or not, with `off`); a listed one keeps
//! the location's handler and logs. The block's `proxy_redirect default`
//! is its own `proxy_pass`'s. Such a request skips the location's
//! rewrite lines and `return`, as nginx's rewrite module gives the block
//! none. Then the configuration errors. (Its `allow`/`deny` and `auth_basic` are in tests/allow_deny.rs and
//! tests/auth_basic.rs.)

use waypost_tests::{
    assert_among, assert_t_cases, emerg, exchange, free_ports, in_location, wrap_http, Server,
    Waypost,
};

fn conf(port: u16, r: u16, w: u16, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    log_format le '$request_method $uri $status [$upstream_addr] [$proxy_host]';\n\
             \x20   upstream r {{ server 127.0.0.1:{r}; }}\n\
             \x20   upstream w {{ server 127.0.0.1:{w}; }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       access_log logs/main.log le;\n\
             \x20       set $dest 127.0.0.1:{w};\n\
             \x20       location /rw/ {{\n\
             \x20           proxy_pass http://r;\n\
             \x20           limit_except GET {{ proxy_pass http://w; access_log logs/le.log le; }}\n\
             \x20       }}\n\
             \x20       location /inh/ {{ proxy_pass http://r; limit_except GET {{ allow all; }} }}\n\
             \x20       location /st/ {{ limit_except GET HEAD {{ proxy_pass http://w; }} }}\n\
             \x20       location /var/ {{ proxy_pass http://r; limit_except GET {{ proxy_pass http://$dest; }} }}\n\
             \x20       location /off/ {{ proxy_pass http://r; limit_except GET {{ access_log off; }} }}\n\
             \x20       location /ret/ {{ limit_except GET {{ allow all; }} return 200 \"ret\\n\"; }}\n\
             \x20       location /scr/ {{\n\
             \x20           set $v 1;\n\
             \x20           if ($v) {{ return 200 \"if\\n\"; }}\n\
             \x20           limit_except GET {{ allow all; }}\n\
             \x20           proxy_pass http://r;\n\
             \x20       }}\n\
             \x20       location /tf/ {{ try_files $uri /inh/fallback; limit_except GET {{ allow all; }} }}\n\
             \x20       location /big/ {{\n\
             \x20           client_max_body_size 1;\n\
             \x20           proxy_pass http://r;\n\
             \x20           limit_except GET {{ access_log logs/le.log le; }}\n\
             \x20       }}\n\
             \x20       location /two/ {{\n\
             \x20           proxy_pass http://r;\n\
             \x20           limit_except GET {{ access_log logs/le.log le; access_log logs/le2.log le; }}\n\
             \x20       }}\n\
             \x20   }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{r};\n\
             \x20       location / {{ return 200 \"r $request_method $request_uri $http_host\\n\"; }}\n\
             \x20   }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{w};\n\
             \x20       location /st/redir {{ return 302 http://w/elsewhere; }}\n\
             \x20       location / {{ return 200 \"w $request_method $request_uri $http_host\\n\"; }}\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

const REQUESTS: &[(&str, &str)] = &[
    ("GET", "/rw/a"),
    ("HEAD", "/rw/a"),
    ("POST", "/rw/a?x=1"),
    ("DELETE", "/inh/a"),
    ("GET", "/inh/a"),
    ("GET", "/st/none"),
    ("PUT", "/st/a"),
    ("POST", "/st/redir"),
    ("GET", "/var/a"),
    ("PATCH", "/var/a"),
    ("GET", "/off/a"),
    ("POST", "/off/a"),
    ("GET", "/ret/a"),
    ("POST", "/ret/a"),
    ("GET", "/scr/a"),
    ("POST", "/scr/a"),
    ("GET", "/tf/a"),
    ("POST", "/tf/a"),
    ("POST", "/big/a"),
    ("POST", "/two/a"),
];

/// Each request's status line, Location and body, and the three logs'
/// lines, with the backends' ports as R and W.
fn run(nginx: bool) -> (Vec<String>, Vec<Vec<String>>) {
    let ports = free_ports(3);
    let (port, r, w) = (ports[0], ports[1], ports[2]);
    let server = Server::either(nginx, &conf(port, r, w, nginx), &ports);
    let names = |text: &str| {
        text.replace(&port.to_string(), "P")
            .replace(&r.to_string(), "R")
            .replace(&w.to_string(), "W")
    };
    let answers = REQUESTS
        .iter()
        .map(|(method, target)| {
            // (Past `/big/`'s `client_max_body_size`: 413.)
            let body = if target.starts_with("/big/") { "hello" } else { "" };
            let answer = exchange(
                port,
                &format!(
                    "{method} {target} HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                ),
            );
            let status = answer.lines().next().unwrap_or("").to_owned();
            let location = answer
                .lines()
                .find_map(|l| l.strip_prefix("Location: "))
                .unwrap_or("")
                .to_owned();
            let body = match status.contains(" 200 ") {
                true => answer.rsplit("\r\n\r\n").next().unwrap_or("").trim(),
                false => "",
            };
            names(&format!("{method} {target} -> {status} [{location}] {body}"))
        })
        .collect();
    // main.log: every request but the four the blocks log elsewhere or
    // not at all (the POSTs to /rw/, /off/, /big/ and /two/).
    let logs = [
        ("logs/main.log", REQUESTS.len() - 4),
        ("logs/le.log", 3),
        ("logs/le2.log", 1),
    ]
    .iter()
    .map(|(file, lines)| {
        server
            .wait_lines(file, *lines)
            .iter()
            .map(|l| names(l))
            .collect()
    })
    .collect();
    (answers, logs)
}

#[test]
fn limit_except_proxy_pass_and_access_log_as_nginx() {
    let theirs = run(true);
    let ours = run(false);
    assert_eq!(ours.0, theirs.0, "answers: waypost (left), nginx (right)");
    assert_eq!(ours.1, theirs.1, "logs: waypost (left), nginx (right)");
    // What nginx did, so that a change in either shows.
    assert_among(
        &theirs.0,
        &[
            "GET /rw/a -> HTTP/1.1 200 OK [] r GET /rw/a r",
            "POST /rw/a?x=1 -> HTTP/1.1 200 OK [] w POST /rw/a?x=1 w",
            "PUT /st/a -> HTTP/1.1 200 OK [] w PUT /st/a w",
            "PATCH /var/a -> HTTP/1.1 200 OK [] w PATCH /var/a 127.0.0.1:W",
            "DELETE /inh/a -> HTTP/1.1 200 OK [] r DELETE /inh/a r",
            // A method the block takes skips the location's rewrite lines
            // and `return`: the location's proxy, else the static module.
            "GET /ret/a -> HTTP/1.1 200 OK [] ret",
            "POST /ret/a -> HTTP/1.1 404 Not Found [] ",
            "GET /scr/a -> HTTP/1.1 200 OK [] if",
            "POST /scr/a -> HTTP/1.1 200 OK [] r POST /scr/a r",
            // Nor does it run the location's `try_files`.
            "GET /tf/a -> HTTP/1.1 200 OK [] r GET /inh/fallback r",
            "POST /tf/a -> HTTP/1.1 404 Not Found [] ",
        ],
    );
    assert_eq!(
        theirs.1[1],
        [
            "POST /rw/a 200 [127.0.0.1:W] [w]",
            "POST /big/a 413 [-] [-]",
            "POST /two/a 200 [127.0.0.1:R] [r]"
        ],
    );
}

#[test]
fn limit_except_proxy_pass_errors_as_nginx() {
    let cases = vec![
        (
            in_location("limit_except GET { proxy_pass http://127.0.0.1:9/uri; }"),
            emerg("\"proxy_pass\" cannot have URI part in location given by regular expression, or inside named location, or inside \"if\" statement, or inside \"limit_except\" block", 7),
            Waypost::Same,
        ),
        (
            in_location("limit_except GET { proxy_pass http://127.0.0.1:9; proxy_pass http://127.0.0.1:9; }"),
            emerg("\"proxy_pass\" directive is duplicate", 7),
            Waypost::Same,
        ),
        (
            in_location("limit_except GET { proxy_pass; }"),
            emerg("invalid number of arguments in \"proxy_pass\" directive", 7),
            Waypost::Same,
        ),
        (
            in_location("limit_except GET { access_log; }"),
            emerg("invalid number of arguments in \"access_log\" directive", 7),
            Waypost::Same,
        ),
        (
            in_location("proxy_pass http://127.0.0.1:9; limit_except GET { proxy_pass http://127.0.0.1:8; }"),
            "ok (exit Some(0))".to_owned(),
            Waypost::Same,
        ),
        (
            in_location("limit_except GET { proxy_pass http://$nowhere; }"),
            "[emerg] unknown \"nowhere\" variable (exit Some(1))".to_owned(),
            // waypost names the line, as for any `proxy_pass`.
            Waypost::Exactly(emerg("unknown \"nowhere\" variable", 7)),
        ),
    ];
    assert_t_cases("limit-except", &cases);
}
