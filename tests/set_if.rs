//! The rewrite module's `set` and `if` side by side with nginx: the same
//! config gets the same requests and gives the same status lines, the
//! `Content-Type`, `Location` and `X-A` headers and bodies, the same access
//! log lines (where a test writes one) and the same error log lines. Then
//! the config errors of these directives.
//!
//! Answers show the variables `set` gave (`return 200 "a=[$a]"`), and a
//! backend server of the same config answers with the target it got and
//! the `X-Val` header (`back $request_uri x-val=[$http_x_val]`), so an
//! answer shows what went upstream.
//!
//! The error log is at nginx's default level (`error`): nginx writes its
//! `using uninitialized "x" variable` lines at `warn`, which waypost does
//! not write at all, so they are not compared.
//!
//! What differs between the two runs is made neutral: the server's name in
//! error pages, the ports (`PORT`, the backend's `BACK`), the files' tree
//! (`DIR`) and each server's prefix (`PREFIX`).

use std::path::Path;

use waypost_tests::{
    assert_runs_as_nginx, assert_t_cases, emerg, exchange, in_location, port_server, request_lines,
    shown, side_by_side, Run, SideBySide, TempDir, Waypost,
};

/// The files of the tree both servers see, under its directory (`DIR`):
/// text, `(name, text, executable)`.
const FILES: &[(&str, &str, bool)] = &[
    ("f/x.txt", "file x\n", false),
    ("f/run.sh", "#!/bin/sh\n", true),
    ("f/a b.txt", "spaced\n", false),
    ("f/sub/in.txt", "in sub\n", false),
];

/// The tree: [`FILES`], and `f/broken`, a link to nothing.
fn tree() -> TempDir {
    use std::os::unix::fs::PermissionsExt;
    let tree = TempDir::new("set-if-tree");
    for (name, text, exec) in FILES {
        let path = tree.write(name, text);
        let mode = if *exec { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    std::os::unix::fs::symlink(tree.path.join("f/nothing"), tree.path.join("f/broken"))
        .expect("symlink");
    tree
}

/// The backend, in the same http block: it shows the target and the
/// `X-Val` header it was sent.
const BACKEND: &str = r#"    server {
        listen 127.0.0.1:{back};
        location / { return 200 "back $request_uri x-val=[$http_x_val]\n"; }
    }
"#;

/// A server block on the tested port of `lines`.
fn server(lines: &str) -> String {
    port_server(lines)
}

/// One request: its method, Host, target, more header lines and body.
struct Ask {
    method: &'static str,
    host: &'static str,
    target: String,
    headers: &'static [&'static str],
    body: &'static str,
}

/// `GET TARGET` with `Host: h`.
fn get(target: &str) -> Ask {
    with(target, &[])
}

/// `GET TARGET` with `Host: h` and the header lines `headers`.
fn with(target: &str, headers: &'static [&'static str]) -> Ask {
    Ask {
        method: "GET",
        host: "h",
        target: target.to_owned(),
        headers,
        body: "",
    }
}

/// `GET TARGET` with `Host: HOST`.
fn on(host: &'static str, target: &str) -> Ask {
    Ask {
        host,
        ..get(target)
    }
}

/// `POST TARGET` with a small body.
fn post(target: &str) -> Ask {
    Ask {
        method: "POST",
        body: "abc",
        ..get(target)
    }
}

impl Ask {
    fn request(&self) -> String {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.method, self.target, self.host
        );
        for line in self.headers {
            head.push_str(line);
            head.push_str("\r\n");
        }
        if self.method == "POST" {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        format!("{head}\r\n{}", self.body)
    }

    fn label(&self) -> String {
        let mut label = format!("{} {}", self.method, self.target);
        if self.host != "h" {
            label.push_str(&format!(" [Host: {}]", self.host));
        }
        for line in self.headers {
            label.push_str(&format!(" [{line}]"));
        }
        label
    }
}

/// The headers of an answer that are compared, in this order.
const SHOWN: &[&str] = &["Content-Type", "Location", "X-A", "X-B", "Cache-Control"];

/// The access log a test's config may write (`access_log logs/set.log
/// FORMAT;`): one line per request, compared in order.
const ACCESS_LOG: &str = "logs/set.log";

/// Runs `http` (the http block's lines; `{port}` is the tested port,
/// `{back}` the backend's, `{dir}` the tree) with [`BACKEND`], under nginx
/// or waypost, and sends `asks`: the answers, the [`ACCESS_LOG`] lines
/// when `logged`, and the requests' error log lines.
fn run(nginx: bool, tree: &Path, http: &str, logged: bool, asks: &[Ask]) -> Run {
    let SideBySide {
        server,
        port,
        neutral,
        ..
    } = side_by_side(nginx, &format!("{http}{BACKEND}"), tree, |conf| conf);
    let answers = asks
        .iter()
        .map(|a| {
            let answer = exchange(port, &a.request());
            format!("{} -> {}", a.label(), shown(&answer, SHOWN, &neutral))
        })
        .collect();
    let access = if logged {
        server
            .wait_lines(ACCESS_LOG, asks.len())
            .iter()
            .map(|l| neutral.apply(l))
            .collect()
    } else {
        Vec::new()
    };
    let errors = request_lines(&server.read("logs/error.log"))
        .iter()
        .map(|l| neutral.apply(l))
        .collect();
    (answers, access, errors)
}

/// Runs `http` with `asks` through nginx, then waypost: nginx must give
/// each of `needles` in its answers, exactly `access` as its
/// [`ACCESS_LOG`] lines when there are some (`None`: the config writes
/// none) and exactly `log` in its error log, and waypost what nginx gives.
fn check_logged(
    http: &str,
    access: Option<&[&str]>,
    asks: &[Ask],
    needles: &[&str],
    log: &[String],
) {
    let tree = tree();
    let theirs = run(true, &tree.path, http, access.is_some(), asks);
    let ours = run(false, &tree.path, http, access.is_some(), asks);
    if let Some(access) = access {
        assert_eq!(theirs.1, access, "nginx's access log");
    }
    assert_runs_as_nginx(&ours, &theirs, needles, log);
}

/// [`check_logged`] without an access log.
fn check(http: &str, asks: &[Ask], needles: &[&str], log: &[String]) {
    check_logged(http, None, asks, needles, log);
}

/// An error log line of the request `GET TARGET` (Host `h`, the default
/// server): `message`, then the request context nginx gives it.
fn error(message: &str, target: &str) -> String {
    format!(
        "[error] {message}, client: 127.0.0.1, server: , request: \"GET {target} HTTP/1.1\", host: \"h\""
    )
}

const ENOENT: &str = "2: No such file or directory";

/// `set` at the server level (seen in every location) and in locations
/// (replacing the server's value for the request), with variables, itself
/// (`set $b "$b-2"`) and `${name}`; its values in `return`, `add_header`,
/// `proxy_set_header`, a `map`'s source and the access log. A variable
/// set only in another location is empty (not `-` in the log); a value
/// stays through `rewrite ... last` and an `error_page` redirect (which
/// runs the server's `set`s again); names are without case.
#[test]
fn set_values_match_nginx() {
    let http = format!(
        r#"    log_format sets '$request_uri a=[$a] b=[$b] c=[$c] only=[$only] m=[$m]';
    map $a $m {{ default other; one mapped-one; }}
{}"#,
        server(
            r#"        access_log logs/set.log sets;
        set $a "$host-$arg_x";
        set $b srv;
        location / { return 200 "root a=[$a] b=[$b] c=[$c]\n"; }
        location /loc/ { set $b "loc-$b"; return 200 "loc a=[$a] b=[$b]\n"; }
        location /only/ { set $only here; return 200 "only=[$only]\n"; }
        location /elsewhere/ { return 200 "only=[$only]\n"; }
        location /twice/ { set $b 1; set $b "$b-2"; set $b "${b}3"; return 200 "b=[$b]\n"; }
        location /empty/ { set $b ""; return 200 "b=[$b]\n"; }
        location /case/ { set $MiXed up; return 200 "mixed=[$mixed] [$MIXED]\n"; }
        location /hdr/ { set $b "hdr-$arg_v"; add_header X-A "$a/$b"; return 200 "hdr\n"; }
        location /proxy/ { set $b "proxied-$arg_v"; proxy_set_header X-Val "$a|$b"; proxy_pass http://127.0.0.1:{back}; }
        location /last/ { set $b from-last; set $c c-last; rewrite ^ /t/ last; }
        location /t/ { return 200 "t a=[$a] b=[$b] c=[$c] uri=$uri\n"; }
        location /ep/ { set $b from-ep; set $c c-ep; error_page 404 = /t/ep; return 404; }
        location /map/ { set $a one; return 200 "m=[$m]\n"; }
        location /late/ { return 200 "late b=[$b]\n"; set $b never; }
"#,
        )
    );
    let asks = [
        get("/?x=1"),
        on("other.example", "/"),
        get("/loc/"),
        get("/only/"),
        get("/elsewhere/"),
        get("/twice/"),
        get("/empty/"),
        get("/case/"),
        get("/hdr/?v=7"),
        get("/proxy/p?v=8&x=9"),
        get("/last/"),
        get("/ep/"),
        get("/map/"),
        get("/late/"),
    ];
    check_logged(
        &http,
        Some(&[
            "/?x=1 a=[h-1] b=[srv] c=[] only=[] m=[other]",
            "/ a=[other.example-] b=[srv] c=[] only=[] m=[other]",
            "/loc/ a=[h-] b=[loc-srv] c=[] only=[] m=[other]",
            "/only/ a=[h-] b=[srv] c=[] only=[here] m=[other]",
            "/elsewhere/ a=[h-] b=[srv] c=[] only=[] m=[other]",
            "/twice/ a=[h-] b=[1-23] c=[] only=[] m=[other]",
            "/empty/ a=[h-] b=[] c=[] only=[] m=[other]",
            "/case/ a=[h-] b=[srv] c=[] only=[] m=[other]",
            "/hdr/?v=7 a=[h-] b=[hdr-7] c=[] only=[] m=[other]",
            "/proxy/p?v=8&x=9 a=[h-9] b=[proxied-8] c=[] only=[] m=[other]",
            "/last/ a=[h-] b=[from-last] c=[c-last] only=[] m=[other]",
            "/ep/ a=[h-] b=[srv] c=[c-ep] only=[] m=[other]",
            "/map/ a=[one] b=[srv] c=[] only=[] m=[mapped-one]",
            "/late/ a=[h-] b=[srv] c=[] only=[] m=[other]",
        ]),
        &asks,
        &[
            "GET /?x=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"root a=[h-1] b=[srv] c=[]\\n\"",
            "GET / [Host: other.example] -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"root a=[other.example-] b=[srv] c=[]\\n\"",
            "GET /loc/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"loc a=[h-] b=[loc-srv]\\n\"",
            "GET /only/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"only=[here]\\n\"",
            "GET /elsewhere/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"only=[]\\n\"",
            "GET /twice/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"b=[1-23]\\n\"",
            "GET /empty/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"b=[]\\n\"",
            "GET /case/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"mixed=[up] [up]\\n\"",
            "GET /hdr/?v=7 -> HTTP/1.1 200 OK | Content-Type: text/plain | X-A: h-/hdr-7 | body: \"hdr\\n\"",
            "GET /proxy/p?v=8&x=9 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"back /proxy/p?v=8&x=9 x-val=[h-9|proxied-8]\\n\"",
            "GET /last/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t a=[h-] b=[from-last] c=[c-last] uri=/t/\\n\"",
            // The server's `set`s run again after error_page's redirect.
            "GET /ep/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t a=[h-] b=[srv] c=[c-ep] uri=/t/ep\\n\"",
            "GET /map/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"m=[mapped-one]\\n\"",
            "GET /late/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"late b=[srv]\\n\"",
        ],
        &[],
    );
}

/// A location that answers `NAME yes` when `cond` holds, else `NAME no`
/// (`if (COND) { return ...; } return ...;`).
fn cond(name: &str, cond: &str) -> String {
    format!(
        "        location /{name}/ {{ if {cond} {{ return 200 \"{name} yes\\n\"; }} return 200 \"{name} no\\n\"; }}\n"
    )
}

/// `if ($var)` holds unless the value is empty or `0` (`00` holds; an
/// argument is not decoded); `=` and `!=` compare the whole values, with
/// case, a literal (bare or quoted, with a space, or empty) or one with
/// variables; the parentheses may be apart from what they enclose.
#[test]
fn if_conditions_match_nginx() {
    let http = server(
        &[
            cond("var", "($arg_v)"),
            cond("spaced", "( $arg_v )"),
            cond("setvar", "($f)").replace("{ if", "{ set $f $arg_v; if"),
            cond("unset", "($never_set)"),
            cond("eq", "($arg_v = abc)"),
            cond("eqspaced", "( $arg_v = abc )"),
            cond("ne", "($arg_v != abc)"),
            cond("eqvar", "($arg_a = $arg_b)"),
            cond("nevar", "($arg_a != $arg_b)"),
            cond("eqmix", "($arg_a = \"x-$arg_b\")"),
            cond("quoted", "($http_x = \"a b\")"),
            cond("squoted", "($http_x = 'a b')"),
            cond("empty", "($arg_v = \"\")"),
            cond("neempty", "($arg_v != '')"),
            cond("host", "($host = h)"),
            cond("method", "($request_method = GET)"),
            "        location /never/ { set $never_set 1; return 200 \"never\\n\"; }\n".into(),
        ]
        .concat(),
    );
    let asks = [
        get("/var/"),
        get("/var/?v="),
        get("/var/?v=0"),
        get("/var/?v=00"),
        get("/var/?v=1"),
        get("/var/?v=false"),
        get("/var/?v=%30"),
        get("/spaced/?v=0"),
        get("/spaced/?v=a"),
        get("/setvar/?v=0"),
        get("/setvar/?v=x"),
        get("/unset/"),
        get("/eq/?v=abc"),
        get("/eq/?v=ABC"),
        get("/eq/?v=abcd"),
        get("/eq/"),
        get("/eqspaced/?v=abc"),
        get("/ne/?v=abc"),
        get("/ne/?v=x"),
        get("/ne/"),
        get("/eqvar/?a=1&b=1"),
        get("/eqvar/?a=1&b=2"),
        get("/eqvar/"),
        get("/nevar/?a=1&b=1"),
        get("/nevar/?a=1&b=2"),
        get("/eqmix/?a=x-y&b=y"),
        get("/eqmix/?a=y&b=y"),
        with("/quoted/", &["X: a b"]),
        with("/quoted/", &["X: a  b"]),
        with("/squoted/", &["X: a b"]),
        get("/empty/"),
        get("/empty/?v=1"),
        get("/neempty/"),
        get("/neempty/?v=1"),
        get("/host/"),
        on("H", "/host/"),
        on("h.", "/host/"),
        on("hh", "/host/"),
        get("/method/"),
        post("/method/"),
    ];
    check(
        &http,
        &asks,
        &[
            "GET /var/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"var no\\n\"",
            "GET /var/?v= -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"var no\\n\"",
            "GET /var/?v=0 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"var no\\n\"",
            "GET /var/?v=00 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"var yes\\n\"",
            "GET /var/?v=false -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"var yes\\n\"",
            "GET /var/?v=%30 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"var yes\\n\"",
            "GET /spaced/?v=0 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"spaced no\\n\"",
            "GET /spaced/?v=a -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"spaced yes\\n\"",
            "GET /setvar/?v=0 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"setvar no\\n\"",
            "GET /setvar/?v=x -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"setvar yes\\n\"",
            "GET /unset/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"unset no\\n\"",
            "GET /eq/?v=abc -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"eq yes\\n\"",
            "GET /eq/?v=ABC -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"eq no\\n\"",
            "GET /eq/?v=abcd -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"eq no\\n\"",
            "GET /eqspaced/?v=abc -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"eqspaced yes\\n\"",
            "GET /ne/?v=abc -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"ne no\\n\"",
            "GET /ne/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"ne yes\\n\"",
            "GET /eqvar/?a=1&b=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"eqvar yes\\n\"",
            "GET /eqvar/?a=1&b=2 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"eqvar no\\n\"",
            "GET /eqvar/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"eqvar yes\\n\"",
            "GET /nevar/?a=1&b=2 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"nevar yes\\n\"",
            "GET /eqmix/?a=x-y&b=y -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"eqmix yes\\n\"",
            "GET /eqmix/?a=y&b=y -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"eqmix no\\n\"",
            "GET /quoted/ [X: a b] -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"quoted yes\\n\"",
            "GET /quoted/ [X: a  b] -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"quoted no\\n\"",
            "GET /squoted/ [X: a b] -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"squoted yes\\n\"",
            "GET /empty/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"empty yes\\n\"",
            "GET /empty/?v=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"empty no\\n\"",
            "GET /neempty/?v=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"neempty yes\\n\"",
            "GET /host/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"host yes\\n\"",
            // `$host` is lowercase, without a trailing dot.
            "GET /host/ [Host: H] -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"host yes\\n\"",
            "GET /host/ [Host: h.] -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"host yes\\n\"",
            "GET /host/ [Host: hh] -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"host no\\n\"",
            "GET /method/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"method yes\\n\"",
            "POST /method/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"method no\\n\"",
        ],
        &[],
    );
}

/// `~`, `~*`, `!~`, `!~*`: a regex that matches makes its groups `$1`..
/// `$9` for the lines after it (the block's `set`, `return` and `rewrite`,
/// and the location's after the block), replacing a regex location's; a
/// negated one sets none. A regex in quotes may have `{}`.
#[test]
fn if_regexes_match_nginx() {
    let http = server(
        r#"        location / { return 200 "root uri=$uri args=$args\n"; }
        location /t/ { return 200 "t uri=$uri args=$args x=[$x]\n"; }
        location /b/ { if ($uri ~ ^/b/(\w+)/(\d+)$) { set $x "$2-$1"; } return 200 "b x=[$x] 1=[$1]\n"; }
        location /ret/ { if ($http_x ~ ^(\w+)-(\w+)$) { return 200 "ret $2 $1\n"; } return 200 "ret no\n"; }
        location /ci/ { if ($http_x ~* ^AB(c+)$) { return 200 "ci [$1]\n"; } return 200 "ci no\n"; }
        location /cs/ { if ($http_x ~ ^AB(c+)$) { return 200 "cs [$1]\n"; } return 200 "cs no\n"; }
        location /nm/ { if ($arg_v !~ ^\d+$) { return 200 "nm not a number [$arg_v]\n"; } return 200 "nm number $arg_v\n"; }
        location /nmi/ { if ($arg_v !~* ^abc$) { return 200 "nmi not abc\n"; } return 200 "nmi abc-ish\n"; }
        location /rwl/ { if ($uri ~ ^/rwl/(\w+)$) { rewrite ^/rwl/(\w+)$ /t/$1-again last; } return 200 "rwl no\n"; }
        location /rwcap/ { if ($arg_v ~ ^(\w+)$) { set $x $1; rewrite ^ /t/$x last; } return 200 "rwcap no\n"; }
        location /braces/ { if ($arg_v ~ "^\d{2}$") { return 200 "braces yes\n"; } return 200 "braces no\n"; }
        location /uri/ { if ($request_uri ~ ^/uri/(.*)\?(.*)$) { return 200 "uri [$1] [$2]\n"; } return 200 "uri no\n"; }
        location ~ ^/lr/(\w+)$ { if ($arg_v ~ (\d+)) { return 200 "lr if [$1]\n"; } return 200 "lr loc [$1]\n"; }
        location ~ ^/lra/(\w+)$ { if ($arg_v ~ (\d+)) { set $x x; } return 200 "lra [$1]\n"; }
"#,
    );
    let asks = [
        get("/b/joe/42"),
        get("/b/joe/x"),
        with("/ret/", &["X: ab-cd"]),
        with("/ret/", &["X: ab"]),
        with("/ci/", &["X: abCC"]),
        with("/ci/", &["X: abd"]),
        with("/cs/", &["X: ABcc"]),
        with("/cs/", &["X: abcc"]),
        get("/nm/?v=12"),
        get("/nm/?v=1a"),
        get("/nm/"),
        get("/nmi/?v=ABC"),
        get("/nmi/?v=abd"),
        get("/rwl/zed?q=1"),
        get("/rwl/a/b"),
        get("/rwcap/?v=word"),
        get("/rwcap/?v=a-b"),
        get("/braces/?v=12"),
        get("/braces/?v=123"),
        get("/uri/a%20b?c=d"),
        get("/lr/abc?v=x42"),
        get("/lr/abc?v=x"),
        get("/lra/abc?v=7"),
    ];
    check(
        &http,
        &asks,
        &[
            "GET /b/joe/42 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"b x=[42-joe] 1=[joe]\\n\"",
            "GET /b/joe/x -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"b x=[] 1=[]\\n\"",
            "GET /ret/ [X: ab-cd] -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"ret cd ab\\n\"",
            "GET /ret/ [X: ab] -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"ret no\\n\"",
            "GET /ci/ [X: abCC] -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"ci [CC]\\n\"",
            "GET /ci/ [X: abd] -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"ci no\\n\"",
            "GET /cs/ [X: ABcc] -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"cs [cc]\\n\"",
            "GET /cs/ [X: abcc] -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"cs no\\n\"",
            "GET /nm/?v=12 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"nm number 12\\n\"",
            "GET /nm/?v=1a -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"nm not a number [1a]\\n\"",
            "GET /nm/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"nm not a number []\\n\"",
            "GET /nmi/?v=ABC -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"nmi abc-ish\\n\"",
            "GET /nmi/?v=abd -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"nmi not abc\\n\"",
            "GET /rwl/zed?q=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/zed-again args=q=1 x=[]\\n\"",
            "GET /rwl/a/b -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"rwl no\\n\"",
            "GET /rwcap/?v=word -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/word args=v=word x=[word]\\n\"",
            "GET /rwcap/?v=a-b -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"rwcap no\\n\"",
            "GET /braces/?v=12 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"braces yes\\n\"",
            "GET /braces/?v=123 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"braces no\\n\"",
            "GET /uri/a%20b?c=d -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"uri [a%20b] [c=d]\\n\"",
            "GET /lr/abc?v=x42 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"lr if [42]\\n\"",
            // A regex that does not match empties the location's groups.
            "GET /lr/abc?v=x -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"lr loc []\\n\"",
            "GET /lra/abc?v=7 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"lra [7]\\n\"",
        ],
        &[],
    );
}

/// The file tests, on absolute paths with variables: `-f` a regular file,
/// `-d` a directory, `-e` either, `-x` a file or directory with the
/// owner's execute bit, each negated by `!`; a link to nothing does not
/// exist, a path through a file is nothing (and neither is logged); a
/// quoted path may have a space.
#[test]
fn if_file_tests_match_nginx() {
    let tests = [
        ("f", "-f"),
        ("nf", "!-f"),
        ("d", "-d"),
        ("nd", "!-d"),
        ("e", "-e"),
        ("ne", "!-e"),
        ("x", "-x"),
        ("nx", "!-x"),
    ];
    let mut lines: String = tests
        .iter()
        .map(|(name, test)| cond(name, &format!("({test} {{dir}}/f/$arg_p)")))
        .collect();
    lines.push_str(&cond("lit", "(-f {dir}/f/x.txt)"));
    lines.push_str(&cond("space", "(-f \"{dir}/f/a b.txt\")"));
    lines.push_str(&cond("spaced", "( -d {dir}/f/sub )"));
    let http = server(&lines);
    const PATHS: [&str; 8] = [
        "x.txt", "run.sh", "sub", "sub/", "none", "broken", "x.txt/", "",
    ];
    // Every test on every path.
    let mut asks: Vec<Ask> = tests
        .iter()
        .flat_map(|(name, _)| PATHS.iter().map(move |p| get(&format!("/{name}/?p={p}"))))
        .collect();
    asks.extend([get("/lit/"), get("/space/"), get("/spaced/")]);
    check(
        &http,
        &asks,
        &[
            "GET /f/?p=x.txt -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"f yes\\n\"",
            "GET /f/?p=sub -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"f no\\n\"",
            "GET /f/?p=broken -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"f no\\n\"",
            "GET /nf/?p=none -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"nf yes\\n\"",
            "GET /nf/?p=x.txt -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"nf no\\n\"",
            "GET /d/?p=sub -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"d yes\\n\"",
            "GET /d/?p=sub/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"d yes\\n\"",
            "GET /d/?p= -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"d yes\\n\"",
            "GET /d/?p=x.txt -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"d no\\n\"",
            "GET /nd/?p=x.txt -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"nd yes\\n\"",
            "GET /e/?p=x.txt -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"e yes\\n\"",
            "GET /e/?p=sub -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"e yes\\n\"",
            "GET /e/?p=none -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"e no\\n\"",
            "GET /e/?p=broken -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"e no\\n\"",
            "GET /e/?p=x.txt/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"e no\\n\"",
            "GET /ne/?p=none -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"ne yes\\n\"",
            "GET /x/?p=run.sh -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"x yes\\n\"",
            "GET /x/?p=x.txt -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"x no\\n\"",
            "GET /nx/?p=x.txt -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"nx yes\\n\"",
            "GET /lit/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"lit yes\\n\"",
            "GET /space/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"space yes\\n\"",
            "GET /spaced/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"spaced yes\\n\"",
        ],
        &[],
    );
}

/// `if` blocks among the other lines, in the order written: at the server
/// level (a method or User-Agent refused, a `set`, a `rewrite`, a
/// `break` that stops the server's later lines), several in a row, a
/// `return` in a block (the lines after it not run), `rewrite ... last`
/// (the location chosen again), `break` (the location's later lines not
/// run, its proxy_pass answers), `rewrite ... break`, a rewrite without
/// flag; an `if` sees the URI a rewrite before it made.
#[test]
fn if_flow_matches_nginx() {
    let http = server(
        r#"        if ($request_method = POST) { return 405; }
        if ($http_user_agent ~* bot) { return 403; }
        if ($arg_srv) { set $s "srv-$arg_srv"; }
        if ($arg_sbreak) { break; }
        rewrite ^/sb/(.*)$ /t/sb-$1 last;
        if ($uri ~ ^/srvrw/(.*)$) { rewrite ^ /t/from-srv-$1 last; }
        if ($uri ~ ^/cap/(\w+)$) { set $capd $1; }
        location / { return 200 "root uri=$uri s=[$s]\n"; }
        location /t/ { return 200 "t uri=$uri args=$args s=[$s] r=[$r]\n"; }
        location /cap/ { return 200 "cap capd=[$capd] 1=[$1]\n"; }
        location /two/ { if ($arg_a) { set $r a; } if ($arg_b) { set $r "${r}b"; } return 200 "two r=[$r]\n"; }
        location /ret/ { if ($arg_r) { return 200 "from if\n"; set $r never; } return 200 "after if r=[$r]\n"; }
        location /retset/ { if ($arg_r) { set $r "set-$arg_r"; return 200 "from if r=[$r]\n"; } return 200 "after if r=[$r]\n"; }
        location /last/ { if ($arg_go) { set $r went; rewrite ^/last/(.*)$ /t/$1 last; } return 200 "stayed\n"; }
        location /brk/ { if ($arg_stop) { break; } rewrite ^ /t/rewritten last; return 200 "not reached\n"; proxy_pass http://127.0.0.1:{back}; }
        location /brkrw/ { if ($arg_stop) { rewrite ^/brkrw/(.*)$ /x/$1 break; } return 200 "no stop\n"; proxy_pass http://127.0.0.1:{back}; }
        location /brkset/ { if ($arg_stop) { set $r stopped; break; set $r after; } set $r went-on; proxy_set_header X-Val $r; proxy_pass http://127.0.0.1:{back}; }
        location /order/ { rewrite ^/order/(.*)$ /t/$1; if ($uri ~ ^/t/(x)) { return 200 "if saw $uri $1\n"; } return 200 "after if uri=$uri\n"; }
        location /order2/ { if ($uri ~ /order2/stop) { return 200 "stopped first\n"; } rewrite ^ /t/o2 last; }
        location /noflag/ { if ($arg_a) { rewrite ^/noflag/(.*)$ /t/$1; } return 200 "went on uri=$uri\n"; }
        location /noflagend/ { if ($arg_a) { rewrite ^/noflagend/(.*)$ /t/$1; } }
        location /redir/ { if ($arg_to) { rewrite ^ http://example.com/$arg_to? redirect; } return 200 "no redirect\n"; }
        location /code/ { if ($arg_c = gone) { return 410; } if ($arg_c = moved) { return 301 /t/moved; } return 200 "code none\n"; }
"#,
    );
    let asks = [
        post("/"),
        post("/t/x"),
        with("/", &["User-Agent: GoogleBot/2.1"]),
        with("/", &["User-Agent: Mozilla/5.0"]),
        get("/?srv=1"),
        get("/t/x?srv=2"),
        get("/sb/x"),
        get("/sb/x?sbreak=1"),
        get("/srvrw/q?z"),
        get("/cap/abc"),
        get("/cap/a/b"),
        get("/two/"),
        get("/two/?a=1"),
        get("/two/?b=1"),
        get("/two/?a=1&b=1"),
        get("/ret/?r=1"),
        get("/ret/"),
        get("/retset/?r=1"),
        get("/last/x?go=1"),
        get("/last/x"),
        get("/brk/x?stop=1"),
        get("/brk/x"),
        get("/brkrw/y?stop=1"),
        get("/brkrw/y"),
        get("/brkset/?stop=1"),
        get("/brkset/"),
        get("/order/x"),
        get("/order/y"),
        get("/order2/stop"),
        get("/order2/go"),
        get("/noflag/n?a=1"),
        get("/noflag/n"),
        get("/noflagend/n?a=1"),
        get("/redir/?to=a"),
        get("/redir/"),
        get("/code/?c=gone"),
        get("/code/?c=moved"),
        get("/code/"),
    ];
    check(
        &http,
        &asks,
        &[
            "POST / -> HTTP/1.1 405 Not Allowed | Content-Type: text/html |",
            "POST /t/x -> HTTP/1.1 405 Not Allowed",
            "GET / [User-Agent: GoogleBot/2.1] -> HTTP/1.1 403 Forbidden",
            "GET / [User-Agent: Mozilla/5.0] -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"root uri=/ s=[]\\n\"",
            "GET /?srv=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"root uri=/ s=[srv-1]\\n\"",
            "GET /t/x?srv=2 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/x args=srv=2 s=[srv-2] r=[]\\n\"",
            "GET /sb/x -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/sb-x args= s=[] r=[]\\n\"",
            "GET /sb/x?sbreak=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"root uri=/sb/x s=[]\\n\"",
            // The rewrite's regex has no groups: `$1` is empty in its replacement.
            "GET /srvrw/q?z -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/from-srv- args=z s=[] r=[]\\n\"",
            "GET /cap/abc -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"cap capd=[abc] 1=[abc]\\n\"",
            "GET /cap/a/b -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"cap capd=[] 1=[]\\n\"",
            "GET /two/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"two r=[]\\n\"",
            "GET /two/?a=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"two r=[a]\\n\"",
            "GET /two/?b=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"two r=[b]\\n\"",
            "GET /two/?a=1&b=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"two r=[ab]\\n\"",
            "GET /ret/?r=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"from if\\n\"",
            "GET /ret/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"after if r=[]\\n\"",
            "GET /retset/?r=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"from if r=[set-1]\\n\"",
            "GET /last/x?go=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/x args=go=1 s=[] r=[went]\\n\"",
            "GET /last/x -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"stayed\\n\"",
            "GET /brk/x?stop=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"back /brk/x?stop=1 x-val=[]\\n\"",
            "GET /brk/x -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/rewritten args= s=[] r=[]\\n\"",
            "GET /brkrw/y?stop=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"back /x/y?stop=1 x-val=[]\\n\"",
            "GET /brkrw/y -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"no stop\\n\"",
            "GET /brkset/?stop=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"back /brkset/?stop=1 x-val=[stopped]\\n\"",
            "GET /brkset/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"back /brkset/ x-val=[went-on]\\n\"",
            "GET /order/x -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"if saw /t/x x\\n\"",
            "GET /order/y -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"after if uri=/t/y\\n\"",
            "GET /order2/stop -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"stopped first\\n\"",
            "GET /order2/go -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/o2 args= s=[] r=[]\\n\"",
            "GET /noflag/n?a=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"went on uri=/t/n\\n\"",
            "GET /noflag/n -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"went on uri=/noflag/n\\n\"",
            "GET /noflagend/n?a=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/n args=a=1 s=[] r=[]\\n\"",
            "GET /redir/?to=a -> HTTP/1.1 302 Moved Temporarily | Content-Type: text/html | Location: http://example.com/a |",
            "GET /redir/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"no redirect\\n\"",
            "GET /code/?c=gone -> HTTP/1.1 410 Gone",
            "GET /code/?c=moved -> HTTP/1.1 301 Moved Permanently | Content-Type: text/html | Location: http://h:PORT/t/moved |",
            "GET /code/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"code none\\n\"",
        ],
        &[],
    );
}

/// `root` in a location's `if`: when the block holds, files are served
/// from it (over the location's `root` or `alias`), and `$document_root`
/// and `$request_filename` are its, in a `return` after the block too.
#[test]
fn root_in_if_as_nginx() {
    let http = server(
        r#"        location /f/x { root {dir}/none; if ($arg_v) { root {dir}; } }
        location /f/al/ { alias {dir}/f/; if ($arg_v) { root {dir}; } }
        location /dr/ {
            root {dir}/none;
            if ($arg_v) { root {dir}; }
            return 200 "[$document_root] [$request_filename]\n";
        }
"#,
    );
    let asks = [
        get("/f/x.txt"),
        get("/f/x.txt?v=1"),
        get("/f/al/x.txt"),
        get("/f/al/x.txt?v=1"),
        get("/dr/a"),
        get("/dr/a?v=1"),
    ];
    check(
        &http,
        &asks,
        &[
            "GET /f/x.txt -> HTTP/1.1 404 Not Found",
            "GET /f/x.txt?v=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"file x\\n\"",
            "GET /f/al/x.txt -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"file x\\n\"",
            "GET /f/al/x.txt?v=1 -> HTTP/1.1 404 Not Found",
            "GET /dr/a -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"[DIR/none] [DIR/none/dr/a]\\n\"",
            "GET /dr/a?v=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"[DIR] [DIR/dr/a]\\n\"",
        ],
        &[
            error(
                &format!("open() \"DIR/none/f/x.txt\" failed ({ENOENT})"),
                "/f/x.txt",
            ),
            error(
                &format!("open() \"DIR/f/al/x.txt\" failed ({ENOENT})"),
                "/f/al/x.txt?v=1",
            ),
        ],
    );
}

/// A matching `if` leaves the request in its location's settings:
/// `add_header`, a `proxy_pass` with a URI part (the location's prefix
/// replaced), `root` (a `break` then serves the file) and `alias` with a
/// regex location's group. nginx's `try_files` is not run when an `if`
/// matched (it is not inherited into the block's implicit location).
#[test]
fn if_keeps_the_location_as_nginx() {
    let http = server(
        r#"        location /hdr/ { add_header X-A loc-header; if ($arg_v) { set $z 1; } return 200 "hdr\n"; }
        location /pu/ { proxy_pass http://127.0.0.1:{back}/v2/; if ($arg_v) { set $z 1; } }
        location /f/ { root {dir}; if ($arg_v) { break; } return 200 "returned\n"; }
        location ~ ^/al/(.*)$ { alias {dir}/f/$1; if ($arg_v) { set $z 1; } }
        location /tf/ { root {dir}; try_files /f/x.txt =410; if ($arg_v) { set $z 1; } }
        location /tfr/ { root {dir}; try_files /f/x.txt =410; }
        location /go/ { if ($arg_v) { rewrite ^ /tfr/x last; } }
"#,
    );
    let asks = [
        get("/hdr/"),
        get("/hdr/?v=1"),
        get("/pu/a?b=1"),
        get("/pu/a?v=1"),
        get("/f/x.txt"),
        get("/f/x.txt?v=1"),
        get("/f/nope?v=1"),
        get("/al/x.txt"),
        get("/al/x.txt?v=1"),
        get("/tf/any"),
        get("/tf/any?v=1"),
        get("/go/a?v=1"),
    ];
    check(
        &http,
        &asks,
        &[
            "GET /hdr/ -> HTTP/1.1 200 OK | Content-Type: text/plain | X-A: loc-header | body: \"hdr\\n\"",
            "GET /hdr/?v=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | X-A: loc-header | body: \"hdr\\n\"",
            "GET /pu/a?b=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"back /v2/a?b=1 x-val=[]\\n\"",
            "GET /pu/a?v=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"back /v2/a?v=1 x-val=[]\\n\"",
            "GET /f/x.txt -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"returned\\n\"",
            "GET /f/x.txt?v=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"file x\\n\"",
            "GET /f/nope?v=1 -> HTTP/1.1 404 Not Found",
            "GET /al/x.txt -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"file x\\n\"",
            "GET /al/x.txt?v=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"file x\\n\"",
            "GET /tf/any -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"file x\\n\"",
            "GET /tf/any?v=1 -> HTTP/1.1 404 Not Found",
            // The location a rewrite in an `if` leads to has its own
            // `try_files`.
            "GET /go/a?v=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"file x\\n\"",
        ],
        &[
            error(
                &format!("open() \"DIR/f/nope\" failed ({ENOENT})"),
                "/f/nope?v=1",
            ),
            error(
                &format!("open() \"DIR/tf/any\" failed ({ENOENT})"),
                "/tf/any?v=1",
            ),
        ],
    );
}

/// A server's line in the http block: it is line 6.
fn in_server(line: &str) -> String {
    format!("http {{\n    server {{\n        {line}\n    }}\n}}\n")
}

/// nginx's report for a config it accepts.
const OK: &str = "ok (exit Some(0))";

/// waypost's refusal of `directive` inside `if`, at `line`.
fn inside_if(directive: &str, line: u32) -> Waypost {
    Waypost::Around(
        format!("[emerg] \"{directive}\" inside \"if\" is not supported"),
        format!(" in CONF:{line} (exit Some(1))"),
    )
}

#[test]
fn config_errors_match_nginx() {
    let cases: Vec<(String, String, Waypost)> = vec![
        // set
        (
            in_location("set $a;"),
            emerg("invalid number of arguments in \"set\" directive", 7),
            Waypost::Same,
        ),
        (
            in_location("set $a 1 2;"),
            emerg("invalid number of arguments in \"set\" directive", 7),
            Waypost::Same,
        ),
        (
            in_location("set x 1;"),
            emerg("invalid variable name \"x\"", 7),
            Waypost::Same,
        ),
        (
            in_location("set $ 1;"),
            emerg("invalid variable name \"$\"", 7),
            Waypost::Same,
        ),
        (
            in_location("set $uri 1;"),
            emerg("the duplicate \"uri\" variable", 7),
            Waypost::Same,
        ),
        // One nginx knows and waypost does not compute is no new one.
        (
            in_location("set $document_root 1;"),
            emerg("the duplicate \"document_root\" variable", 7),
            Waypost::Same,
        ),
        (
            in_location("set $host 1;"),
            emerg("the duplicate \"host\" variable", 7),
            Waypost::Same,
        ),
        // nginx takes a prefix variable's name (the prefix's value where
        // none was set); waypost does not (README).
        (
            in_location("set $arg_x 1; set $http_x 1; set $cookie_x 1;"),
            OK.into(),
            Waypost::Exactly(emerg(
                "\"set\" of the \"$arg_x\" variable is not supported",
                7,
            )),
        ),
        (in_location("set $args a=1;"), OK.into(), Waypost::Same),
        // An nginx directive waypost does not implement is named so.
        (
            in_location("uwsgi_pass 127.0.0.1:9000;"),
            OK.into(),
            Waypost::Exactly(emerg(
                "\"uwsgi_pass\" is an nginx directive waypost does not support",
                7,
            )),
        ),
        // A regex's named group may not be one of nginx's variables.
        (
            in_location("location ~ ^/(?<host>.+)$ { return 204; }"),
            emerg("the duplicate \"host\" variable", 7),
            Waypost::Same,
        ),
        (
            in_location("location ~ ^/(?<http_host>.+)$ { return 204; }"),
            emerg("the duplicate \"http_host\" variable", 7),
            Waypost::Same,
        ),
        (
            in_location("location ~ ^/(?<proxy_host>.+)$ { return 204; }"),
            OK.into(),
            Waypost::Same,
        ),
        (
            in_location("rewrite ^/(?<URI>.+)$ /x;"),
            emerg("the duplicate \"URI\" variable", 7),
            Waypost::Same,
        ),
        (
            in_location("location ~ ^/(?<args>.+)$ { return 204; }"),
            OK.into(),
            Waypost::Same,
        ),
        (
            in_location("set $query_string a=1;"),
            emerg("the duplicate \"query_string\" variable", 7),
            Waypost::Same,
        ),
        (
            in_location("set $a \"${b\";"),
            emerg("the closing bracket in \"b\" variable is missing", 7),
            Waypost::Same,
        ),
        (
            in_location("set $a $nosuchvar;"),
            "[emerg] unknown \"nosuchvar\" variable (exit Some(1))".into(),
            Waypost::Exactly(emerg("unknown \"nosuchvar\" variable", 7)),
        ),
        (
            "http {\n    set $a 1;\n}\n".into(),
            emerg("\"set\" directive is not allowed here", 5),
            Waypost::Same,
        ),
        // if: its condition
        (
            in_location("if $a { return 200; }"),
            emerg("invalid condition \"$a\"", 7),
            Waypost::Same,
        ),
        (
            in_location("if ($host ==) { return 200; }"),
            emerg("invalid condition \"$host\"", 7),
            Waypost::Same,
        ),
        (
            in_location("if ($host = ) { return 200; }"),
            emerg("invalid condition \"$host\"", 7),
            Waypost::Same,
        ),
        (
            in_location("if ($host =a) { return 200; }"),
            emerg("invalid condition \"$host\"", 7),
            Waypost::Same,
        ),
        (
            in_location("if ($host = a b) { return 200; }"),
            emerg("invalid condition \"$host\"", 7),
            Waypost::Same,
        ),
        (
            in_location("if ($host > b) { return 200; }"),
            emerg("unexpected \">\" in condition", 7),
            Waypost::Same,
        ),
        (
            in_location("if (-z /x) { return 200; }"),
            emerg("invalid condition \"-z\"", 7),
            Waypost::Same,
        ),
        (
            in_location("if (!-F /x) { return 200; }"),
            emerg("invalid condition \"!-F\"", 7),
            Waypost::Same,
        ),
        (
            in_location("if (! -e /x) { return 200; }"),
            emerg("invalid condition \"!\"", 7),
            Waypost::Same,
        ),
        (
            in_location("if (-f) { return 200; }"),
            emerg("invalid condition \"-f\"", 7),
            Waypost::Same,
        ),
        (
            in_location("if (-f /a /b) { return 200; }"),
            emerg("invalid condition \"-f\"", 7),
            Waypost::Same,
        ),
        (
            in_location("if (host) { return 200; }"),
            emerg("invalid condition \"host\"", 7),
            Waypost::Same,
        ),
        (
            in_location("if ($) { return 200; }"),
            emerg("invalid condition \"$\"", 7),
            Waypost::Same,
        ),
        (
            in_location("if () { return 200; }"),
            emerg("invalid condition \")\"", 7),
            Waypost::Same,
        ),
        (
            in_location("if ( ) { return 200; }"),
            emerg("invalid condition \")\"", 7),
            Waypost::Same,
        ),
        (
            in_location("if ($host { return 200; }"),
            emerg("invalid condition \"$host\"", 7),
            Waypost::Same,
        ),
        (
            in_location("if ($host = a { return 200; }"),
            emerg("invalid condition \"a\"", 7),
            Waypost::Same,
        ),
        (
            in_location("if ($host~a) { return 200; }"),
            "[emerg] unknown \"host~a\" variable (exit Some(1))".into(),
            Waypost::Exactly(emerg("unknown \"host~a\" variable", 7)),
        ),
        (
            in_location("if ($nosuchvar) { return 200; }"),
            "[emerg] unknown \"nosuchvar\" variable (exit Some(1))".into(),
            Waypost::Exactly(emerg("unknown \"nosuchvar\" variable", 7)),
        ),
        (
            in_location("if ($host = $nosuchvar) { return 200; }"),
            "[emerg] unknown \"nosuchvar\" variable (exit Some(1))".into(),
            Waypost::Exactly(emerg("unknown \"nosuchvar\" variable", 7)),
        ),
        (
            in_location("if ($1) { return 200; }"),
            "[emerg] unknown \"1\" variable (exit Some(1))".into(),
            Waypost::Exactly(emerg("unknown \"1\" variable", 7)),
        ),
        (
            in_location("if ($host ~ \"(\") { return 200; }"),
            emerg(
                "pcre2_compile() failed: missing closing parenthesis in \"(\"",
                7,
            ),
            Waypost::Around(
                "[emerg] regular expression \"(\" is not valid or not supported: ".into(),
                " in CONF:7 (exit Some(1))".into(),
            ),
        ),
        // if: its block
        (
            in_location("if ($host);"),
            emerg("directive \"if\" has no opening \"{\"", 7),
            Waypost::Same,
        ),
        (
            in_location("if ($host) {\n                if ($host) { return 200; }\n            }"),
            emerg("\"if\" directive is not allowed here", 8),
            Waypost::Same,
        ),
        (
            in_location("if ($host) { location /x { } }"),
            emerg("\"location\" directive is not allowed here", 7),
            Waypost::Same,
        ),
        (
            in_location("if ($host) { limit_req zone=z; }"),
            emerg("\"limit_req\" directive is not allowed here", 7),
            Waypost::Same,
        ),
        (
            in_server("if ($host) { proxy_pass http://127.0.0.1:1; }"),
            emerg("\"proxy_pass\" directive is not allowed here", 6),
            Waypost::Same,
        ),
        (
            in_location("if ($host) { return; }"),
            emerg("invalid number of arguments in \"return\" directive", 7),
            Waypost::Same,
        ),
        (
            in_location("if ($host) { rewrite ^ /x foo; }"),
            emerg("invalid parameter \"foo\"", 7),
            Waypost::Same,
        ),
        (
            in_location("if ($host) { set x 1; }"),
            emerg("invalid variable name \"x\"", 7),
            Waypost::Same,
        ),
        (
            in_location("if ($host) { break x; }"),
            emerg("invalid number of arguments in \"break\" directive", 7),
            Waypost::Same,
        ),
        (
            "http {\n    if ($host) { }\n}\n".into(),
            emerg("\"if\" directive is not allowed here", 5),
            Waypost::Same,
        ),
        (
            "if ($host) { }\nhttp {\n}\n".into(),
            emerg("\"if\" directive is not allowed here", 4),
            Waypost::Same,
        ),
        // `proxy_pass` inside a location's `if`: taken, without a URI part.
        (
            in_location(
                "if ($host) {\n                proxy_pass http://127.0.0.1:1;\n            }",
            ),
            OK.into(),
            Waypost::Same,
        ),
        (
            in_location("if ($host) {\n                proxy_pass http://127.0.0.1:1/x;\n            }"),
            emerg("\"proxy_pass\" cannot have URI part in location given by regular expression, or inside named location, or inside \"if\" statement, or inside \"limit_except\" block", 8),
            Waypost::Same,
        ),
        // What nginx takes inside a location's `if` and waypost refuses on
        // purpose, naming the directive's own line.
        (
            in_location("if ($host) {\n                limit_rate 1k; limit_rate_after 2k;\n            }"),
            OK.into(),
            Waypost::Same,
        ),
        (
            in_location("if ($host) {\n                limit_rate x;\n            }"),
            emerg("\"limit_rate\" directive invalid value", 8),
            Waypost::Same,
        ),
        (
            in_location("if ($host) { add_header X y; expires 1h; }"),
            OK.into(),
            Waypost::Same,
        ),
        (
            in_location("if ($host) { set $a 1;\n                root /x; }"),
            OK.into(),
            Waypost::Same,
        ),
        (
            in_location("if ($host) { alias /x; }"),
            emerg("\"alias\" directive is not allowed here", 7),
            Waypost::Same,
        ),
        (
            in_location("if ($host) { error_page 404 /x; }"),
            OK.into(),
            inside_if("error_page", 7),
        ),
        (
            in_location("if ($host) { rewrite_log on; }"),
            OK.into(),
            Waypost::Same,
        ),
        (
            in_location("if ($host) { sendfile off; }"),
            OK.into(),
            Waypost::Same,
        ),
        (
            in_location("if ($host) { sendfile maybe; }"),
            emerg("invalid value \"maybe\" in \"sendfile\" directive, it must be \"on\" or \"off\"", 7),
            Waypost::Same,
        ),
        (
            in_location("if ($host) { aio threads; }"),
            emerg("\"aio\" directive is not allowed here", 7),
            Waypost::Same,
        ),
        (
            in_location("if ($host) { uninitialized_variable_warn off; }"),
            OK.into(),
            Waypost::Same,
        ),
        (
            in_server("if ($host) { uninitialized_variable_warn off; }"),
            OK.into(),
            Waypost::Same,
        ),
        (
            in_server("if ($host) { rewrite_log on; }"),
            OK.into(),
            Waypost::Same,
        ),
        (
            in_server("if ($host) { rewrite_log maybe; }"),
            emerg("invalid value \"maybe\" in \"rewrite_log\" directive, it must be \"on\" or \"off\"", 6),
            Waypost::Same,
        ),
        (
            in_server("if ($host) { root /x; }"),
            emerg("\"root\" directive is not allowed here", 6),
            Waypost::Same,
        ),
        (
            in_location("if ($host) { fastcgi_pass 127.0.0.1:9; }"),
            OK.into(),
            Waypost::Same,
        ),
        (
            in_location("if ($host) { directio 4m; }"),
            emerg("\"directio\" directive is not allowed here", 7),
            Waypost::Same,
        ),
        // Everything where it may be.
        (
            "http {\n\
             \x20   map $a $m { default x; }\n\
             \x20   server {\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       set $a \"$host-$arg_x\";\n\
             \x20       set $A $a;\n\
             \x20       if ($a) { set $b 1; return 200; rewrite ^ /x last; break; }\n\
             \x20       if ( $a = \"a b\" ) { }\n\
             \x20       if ($a != '') { }\n\
             \x20       if ($uri ~ ^/(a)$) { set $c $1; }\n\
             \x20       if ($uri ~* \"^/b{2}$\") { }\n\
             \x20       if ($uri !~ x) { }\n\
             \x20       if ($uri !~* x) { }\n\
             \x20       if (-f /x) { } if (!-f $uri) { } if (-d /) { } if (!-d /) { }\n\
             \x20       if (-e /) { } if (!-e /) { } if (-x /) { } if (!-x /) { }\n\
             \x20       location / { set $d $b$c; if ($d) { set $d 0; } return 200 $m; }\n\
             \x20       location @n { set $e 1; if ($e) { return 204; } }\n\
             \x20   }\n\
             }\n"
            .into(),
            OK.into(),
            Waypost::Same,
        ),
        // An `if` regex's named groups are variables for nginx.
        (
            in_location("if ($uri ~ ^/(?<name>\\w+)$) { return 200 $name; }"),
            OK.into(),
            Waypost::Same,
        ),
    ];
    assert_t_cases("set-if", &cases);
}

/// `$document_root` and `$request_filename`: the level's root (or alias)
/// and the path the URI maps to there, as the WordPress-style
/// `if (!-e $request_filename)` reads them.
#[test]
fn document_root_and_request_filename_match_nginx() {
    let http = server(
        r#"        root {dir};
        location /f/ { return 200 "[$document_root] [$request_filename]\n"; }
        location /al/ { alias {dir}/f/; return 200 "[$document_root] [$request_filename]\n"; }
        location /rel/ { root html; return 200 "[$document_root] [$request_filename]\n"; }
        location /wp/ {
            alias {dir}/f/;
            if (!-e $request_filename) { rewrite ^ /front last; }
            return 200 "exists $request_filename\n";
        }
        location = /front { return 200 "front controller for $request_uri\n"; }
"#,
    );
    let asks = [
        get("/f/x.txt"),
        get("/al/x.txt"),
        get("/rel/y"),
        get("/wp/x.txt"),
        get("/wp/nope"),
    ];
    check(
        &http,
        &asks,
        &[
            "GET /f/x.txt -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"[DIR] [DIR/f/x.txt]\\n\"",
            "GET /al/x.txt -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"[DIR/f/] [DIR/f/x.txt]\\n\"",
            "GET /rel/y -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"[PREFIX/html] [PREFIX/html/rel/y]\\n\"",
            "GET /wp/x.txt -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"exists DIR/f/x.txt\\n\"",
            "GET /wp/nope -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"front controller for /wp/nope\\n\"",
        ],
        &[],
    );
}

/// A location `if` that holds answers with its block's `add_header`
/// (replacing the location's) and `expires`: the CORS preflight pattern.
/// A rewrite out of it leaves them behind.
#[test]
fn if_header_filters_match_nginx() {
    let http = server(
        r#"        location /api/ {
            add_header X-A loc;
            if ($request_method = OPTIONS) {
                add_header X-A preflight;
                add_header X-B "$request_method-ok";
                return 204;
            }
            proxy_pass http://127.0.0.1:{back};
        }
        location /exp/ { if ($arg_e) { expires 1h; } return 200 "exp\n"; }
        location /mv/ { add_header X-B mv; if ($arg_m) { add_header X-A moved; rewrite ^ /plain/ last; } return 200 "mv\n"; }
        location /plain/ { return 200 "plain\n"; }
"#,
    );
    let asks = [
        Ask {
            method: "OPTIONS",
            ..get("/api/x")
        },
        get("/api/x"),
        get("/exp/?e=1"),
        get("/exp/"),
        get("/mv/?m=1"),
        get("/mv/"),
    ];
    check(
        &http,
        &asks,
        &[
            "OPTIONS /api/x -> HTTP/1.1 204 No Content | X-A: preflight | X-B: OPTIONS-ok",
            "GET /api/x -> HTTP/1.1 200 OK | Content-Type: text/plain | X-A: loc | body: \"back /api/x x-val=[]\\n\"",
            "GET /exp/?e=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | Cache-Control: max-age=3600",
            "GET /exp/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body:",
            "GET /mv/?m=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"plain\\n\"",
            "GET /mv/ -> HTTP/1.1 200 OK | Content-Type: text/plain | X-B: mv | body: \"mv\\n\"",
        ],
        &[],
    );
}

/// The named groups of a regex server name, a regex location and a
/// `rewrite` are variables, as nginx makes them: in `return`, `alias`,
/// `add_header`,
/// `proxy_set_header` and the access log; the location's through a
/// `rewrite ... last` to it and after a `rewrite` in it; the server
/// name's in a regex location with groups of its own; a `set` of the same
/// name replaces one; one no regex of the request set is `-` in the log
/// (a `set` variable is empty).
#[test]
fn named_groups_are_variables_as_nginx_makes_them() {
    let http = r#"    log_format named '$request_uri sub=[$sub] id=[$id] v=[$v] s=[$s]';
    server {
        listen 127.0.0.1:{port};
        server_name ~^(?<sub>[a-z]+)\.example\.com$;
        access_log logs/set.log named;
        location ~ ^/u/(?<id>\d+)$ { return 200 "u sub=[$sub] id=[$id]\n"; }
        location ~ ^/f/(?<name>[a-z]+)\.txt$ { alias {dir}/f/$name.txt; add_header X-A "$sub/$name"; }
        location ~ ^/p/(?<id>\d+) { proxy_set_header X-Val "$sub/$id"; proxy_pass http://127.0.0.1:{back}; }
        location /r/ { rewrite ^/r/(?<v>\w+)$ /u/$v last; }
        location /in/ { rewrite ^/in/(?<v>\w+)$ /in/x break; proxy_set_header X-Val "v=$v"; proxy_pass http://127.0.0.1:{back}; }
        location ~ ^/s/(?<id>\d+)$ { set $id "set-$id"; set $s on; return 200 "s id=[$id]\n"; }
        location / { return 200 "root sub=[$sub] id=[$id] v=[$v] s=[$s]\n"; }
    }
"#;
    let asks = [
        on("abc.example.com", "/u/12"),
        on("abc.example.com", "/f/x.txt"),
        on("abc.example.com", "/p/34?q=1"),
        on("abc.example.com", "/r/56"),
        on("abc.example.com", "/in/78"),
        on("abc.example.com", "/s/9"),
        on("abc.example.com", "/"),
        on("other", "/u/1"),
    ];
    check_logged(
        http,
        Some(&[
            "/u/12 sub=[abc] id=[12] v=[-] s=[]",
            "/f/x.txt sub=[abc] id=[-] v=[-] s=[]",
            "/p/34?q=1 sub=[abc] id=[34] v=[-] s=[]",
            "/r/56 sub=[abc] id=[56] v=[56] s=[]",
            "/in/78 sub=[abc] id=[-] v=[78] s=[]",
            "/s/9 sub=[abc] id=[set-9] v=[-] s=[on]",
            "/ sub=[abc] id=[-] v=[-] s=[]",
            "/u/1 sub=[-] id=[1] v=[-] s=[]",
        ]),
        &asks,
        &[
            "u sub=[abc] id=[12]",
            "back /p/34?q=1 x-val=[abc/34]",
            "back /in/x x-val=[v=78]",
            "X-A: abc/x | body: \"file x\\n\"",
            "s id=[set-9]",
        ],
        &[],
    );
}

/// `set $args` as nginx's: the arguments from then
/// on, in `$args`, `$arg_*`, `$is_args`, the upstream request (with and
/// without a URI in `proxy_pass`) and after a `rewrite ... last`; the path,
/// the location and `$request_uri` stay; an empty value drops them (and
/// `$args` is then empty, not `-`, in a log line).
#[test]
fn set_args_as_nginx() {
    let http = port_server(
        r#"        access_log logs/set.log args;
        location /p/ { set $args "x=1&$args"; proxy_pass http://127.0.0.1:{back}; }
        location /q/ { set $args "x=2"; proxy_pass http://127.0.0.1:{back}/z/; }
        location /r/ { set $args ""; return 200 "args=[$args] is=[$is_args] x=[$arg_x] uri=$uri ru=$request_uri\n"; }
        location /s/ { set $args "a=1"; rewrite ^ /t/ last; }
        location /t/ { return 200 "t args=[$args] a=[$arg_a]\n"; }
        location /v/ { set $args "a=%41&d=é&e={|}"; return 200 "v args=[$args] d=[$arg_d]\n"; }
        location /e/ { set $args "x=e1"; error_page 404 = /t/; }
"#,
    );
    let http = format!("    log_format args '$request_uri|$uri|$args|$is_args|$arg_x';\n{http}");
    let asks = [
        get("/p/a?y=2"),
        get("/q/a?y=2"),
        get("/r/a?x=5"),
        get("/s/a?y=3"),
        get("/v/"),
        get("/e/?o=1"),
    ];
    check_logged(
        &http,
        Some(&[
            "/p/a?y=2|/p/a|x=1&y=2|?|1",
            "/q/a?y=2|/q/a|x=2|?|2",
            "/r/a?x=5|/r/a|||-",
            "/s/a?y=3|/t/|a=1|?|-",
            "/v/|/v/|a=%41&d=\\xC3\\xA9&e={|}|?|-",
            "/e/?o=1|/t/|-||-",
        ]),
        &asks,
        &[
            "back /p/a?x=1&y=2 x-val=[]",
            "back /z/a?x=2 x-val=[]",
            "args=[] is=[] x=[] uri=/r/a ru=/r/a?x=5",
            "t args=[a=1] a=[1]",
            "v args=[a=%41&d=\u{e9}&e={|}] d=[\u{e9}]",
            "t args=[] a=[]",
        ],
        &[error(
            &format!("\"PREFIX/html/e/index.html\" is not found ({ENOENT})"),
            "/e/?o=1",
        )],
    );
}

/// Named groups through internal redirects and in odd shapes, as nginx:
/// a group that took no part in the match is empty (not `-`); names are
/// without case; an `error_page`, `try_files` or `index` redirect into a
/// regex location sets its groups over a value set before, and keeps
/// the first location's.
#[test]
fn named_groups_through_redirects_as_nginx() {
    let http = r#"    log_format named '$request_uri w=[$w] d=[$d] opt=[$opt] id=[$id] name=[$name]';
    server {
        listen 127.0.0.1:{port};
        server_name ~^(?<w>www\.)?(?<d>[a-z]+)\.test$;
        access_log logs/set.log named;
        root {dir};
        location ~ ^/u/(?<id>\d+)(?<opt>-x)?$ { return 200 "u id=[$id] opt=[$opt] d=[$d]\n"; }
        location ~ ^/C/(?<Name>\w+)$ { return 200 "name=[$name]\n"; }
        location /es/ { set $id foo; error_page 404 /u/5; return 404; }
        location /ts/ { set $id foo; try_files /nonexist /u/6; }
        location ~ ^/epr/(?<name>\d+)$ { error_page 404 /u/7; return 404; }
    }
"#;
    let asks = [
        on("a.test", "/u/1"),
        on("www.a.test", "/u/2-x"),
        on("a.test", "/C/Direct"),
        on("a.test", "/es/"),
        on("a.test", "/ts/"),
        on("a.test", "/epr/8"),
    ];
    check_logged(
        http,
        Some(&[
            "/u/1 w=[] d=[a] opt=[] id=[1] name=[-]",
            "/u/2-x w=[www.] d=[a] opt=[-x] id=[2] name=[-]",
            "/C/Direct w=[] d=[a] opt=[-] id=[-] name=[Direct]",
            "/es/ w=[] d=[a] opt=[] id=[5] name=[-]",
            "/ts/ w=[] d=[a] opt=[] id=[6] name=[-]",
            "/epr/8 w=[] d=[a] opt=[] id=[7] name=[8]",
        ]),
        &asks,
        &[
            "u id=[1] opt=[] d=[a]",
            "u id=[2] opt=[-x] d=[a]",
            "name=[Direct]",
            "u id=[5] opt=[] d=[a]",
            "u id=[6] opt=[] d=[a]",
            "u id=[7] opt=[] d=[a]",
        ],
        &[],
    );
}

/// `proxy_pass` inside a location's `if`, the pattern of older configs
/// (`if (!-f $request_filename) { proxy_pass ...; break; }`): when the
/// `if` holds its `proxy_pass` answers, with the location's proxy
/// settings; otherwise the location's own handler does; a `return` after
/// the `if` still answers first; a later `if` that holds takes the
/// request back to the location's settings (nginx's last `if`'s).
#[test]
fn proxy_pass_inside_if_as_nginx() {
    let http = r#"    upstream app { server 127.0.0.1:{back}; }
    server {
        listen 127.0.0.1:{port};
        root {dir};
        location /f/ {
            if (!-f $request_filename) { proxy_pass http://app; break; }
        }
        location /m/ {
            proxy_set_header X-Val "m-$request_method";
            if ($request_method = POST) { proxy_pass http://127.0.0.1:{back}; }
            return 200 "get\n";
        }
        location /a/ {
            if ($arg_up) { proxy_pass http://app; add_header X-A up; }
            add_header X-A loc;
            proxy_pass http://127.0.0.1:{back};
        }
        location /i/ {
            if ($arg_go) { proxy_pass http://127.0.0.1:{back}; break; }
            return 200 "stay\n";
        }
        location /two/ {
            proxy_pass http://127.0.0.1:{back};
            if ($arg_x) { proxy_pass http://app; add_header X-A if1; }
            if ($arg_y) { set $zz 1; }
        }
    }
"#;
    let asks = [
        get("/f/x.txt"),
        get("/f/missing?q=1"),
        get("/m/x"),
        post("/m/x"),
        get("/a/1"),
        get("/a/2?up=1"),
        get("/i/"),
        get("/i/?go=1"),
        get("/two/?x=1"),
        get("/two/?x=1&y=1"),
    ];
    check(
        http,
        &asks,
        &[
            "body: \"file x\\n\"",
            "back /f/missing?q=1 x-val=[]",
            "body: \"get\\n\"",
            "back /a/1 x-val=[]",
            "X-A: up | body: \"back /a/2?up=1 x-val=[]\\n\"",
            "body: \"stay\\n\"",
            "back /i/?go=1 x-val=[]",
            "X-A: if1 | body: \"back /two/?x=1 x-val=[]\\n\"",
            "HTTP/1.1 200 OK | Content-Type: text/plain | body: \"back /two/?x=1&y=1 x-val=[]\\n\"",
        ],
        &[],
    );
}
