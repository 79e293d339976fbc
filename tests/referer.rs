//! `valid_referers` and `$invalid_referer` side by side with nginx: `none`,
//! `blocked`, `server_names`, exact names, `*.name`, `.name` and `name.*`
//! wildcards, a name with a URI part, `~` regexes (without case), the
//! scheme and length rules, a level without the directive, and the usual
//! `if ($invalid_referer) { return 403; }`; then the directive's errors.

use waypost_tests::{
    assert_t_cases, exchange, free_ports, in_location, wrap_http, Server, Waypost,
};

fn conf(port: u16, nginx: bool) -> String {
    wrap_http(
        &format!(
            "    server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       server_name srv.test *.wild.test;\n\
             \x20       location /a {{ valid_referers none blocked server_names example.com *.example.org .example.net example.* www.site.test/gal/ ~\\.google\\. ~bing; return 200 \"[$invalid_referer]\\n\"; }}\n\
             \x20       location /b {{ valid_referers example.com; return 200 \"[$invalid_referer]\\n\"; }}\n\
             \x20       location /c {{ return 200 \"[$invalid_referer]\\n\"; }}\n\
             \x20       location /img/ {{ valid_referers none blocked example.com; if ($invalid_referer) {{ return 403; }} return 200 \"img\\n\"; }}\n\
             \x20   }}\n"
        ),
        nginx,
    )
}

const REFERERS: &[&str] = &[
    "",
    "Referer: \r\n",
    "Referer: blocked\r\n",
    "Referer: http://example.com/x\r\n",
    "Referer: https://EXAMPLE.com\r\n",
    "Referer: http://example.com:8080/x\r\n",
    "Referer: http://a.example.com/\r\n",
    "Referer: http://example.org/\r\n",
    "Referer: http://x.example.org/\r\n",
    "Referer: http://example.net/\r\n",
    "Referer: http://y.example.net/\r\n",
    "Referer: http://example.co.uk/\r\n",
    "Referer: http://www.site.test/gal/1\r\n",
    "Referer: http://www.site.test/other\r\n",
    "Referer: http://www.google.com/\r\n",
    "Referer: http://www.Bing.com/\r\n",
    "Referer: http://srv.test/\r\n",
    "Referer: http://q.wild.test/\r\n",
    "Referer: ftp://example.com/\r\n",
    "Referer: http://i.ru\r\n",
    "Referer: http://a\r\n",
    "Referer: example.com\r\n",
    "Referer: http://example.com?x\r\n",
];

fn answers(port: u16) -> Vec<String> {
    let mut out = Vec::new();
    for referer in REFERERS {
        let mut line = String::new();
        for path in ["/a", "/b", "/c", "/img/x"] {
            let answer = exchange(port, &format!("GET {path} HTTP/1.0\r\n{referer}\r\n"));
            let status = answer.split(' ').nth(1).unwrap_or("").to_owned();
            let body = answer
                .rsplit("\r\n\r\n")
                .next()
                .unwrap_or("")
                .trim()
                .to_owned();
            line.push_str(&format!(
                "{status} {} | ",
                if status == "200" { &body } else { "" }
            ));
        }
        out.push(format!("{line}<= {}", referer.trim()));
    }
    out
}

#[test]
fn invalid_referer_matches_nginx() {
    let ports = free_ports(2);
    let waypost = Server::waypost(&conf(ports[0], false), &[ports[0]]);
    let nginx = Server::nginx(&conf(ports[1], true), &[ports[1]]);
    let (ours, theirs) = (answers(ports[0]), answers(ports[1]));
    drop((waypost, nginx));
    assert_eq!(ours, theirs, "waypost (left) and nginx (right)");
    // What nginx answered, so that a change in either program shows.
    assert_eq!(theirs[0], "200 [] | 200 [1] | 200 [] | 200 img | <= ");
    assert_eq!(
        theirs[6],
        "200 [1] | 200 [1] | 200 [] | 403  | <= Referer: http://a.example.com/"
    );
}

#[test]
fn valid_referers_errors_as_nginx() {
    let emerg = |m: &str| format!("[emerg] {m} in CONF:7 (exit Some(1))");
    let cases = vec![
        (
            in_location("valid_referers ex*ample.com;"),
            emerg("invalid hostname or wildcard \"ex*ample.com\""),
            Waypost::Same,
        ),
        (
            in_location("valid_referers *.a.*;"),
            emerg("invalid hostname or wildcard \"*.a.*\""),
            Waypost::Same,
        ),
        (
            in_location("valid_referers;"),
            emerg("invalid number of arguments in \"valid_referers\" directive"),
            Waypost::Same,
        ),
        (
            in_location("valid_referers a.com/x/* .b.com server_names; referer_hash_max_size 1024; referer_hash_bucket_size 64;"),
            "ok (exit Some(0))".to_owned(),
            Waypost::Same,
        ),
        (
            in_location("valid_referers a.com A.com/x;"),
            emerg("conflicting parameter \"a.com\""),
            Waypost::Same,
        ),
        (
            in_location("valid_referers *.a.com .a.com;"),
            emerg("conflicting parameter \".a.com\""),
            Waypost::Same,
        ),
        (
            in_location("valid_referers ~;"),
            emerg("empty regex in \"~\""),
            Waypost::Same,
        ),
        (
            in_location("valid_referers none blocked;"),
            "[emerg] the \"none\" or \"blocked\" referers are specified in the \"valid_referers\" directive without any valid referer (exit Some(1))".to_owned(),
            Waypost::Same,
        ),
        (
            "http {\n    valid_referers none;\n}\n".to_owned(),
            "[emerg] \"valid_referers\" directive is not allowed here in CONF:5 (exit Some(1))".to_owned(),
            Waypost::Same,
        ),
    ];
    assert_t_cases("referer-conf", &cases);
}
