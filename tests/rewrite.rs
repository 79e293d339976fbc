//! The rewrite module's `rewrite`, `break` and `rewrite_log` side by side
//! with nginx, in the order nginx runs them with `return` at the server
//! level (before the location is chosen) and at the location level: the
//! same config gets the same requests and gives the same status lines,
//! `Content-Type` and `Location` headers and bodies, and the same error log
//! lines (a rewrite cycle, an empty rewritten URI, the `rewrite_log`
//! notices, a static file not found after a rewrite). Then the config
//! errors of these directives.
//!
//! The targets answer with `$uri`, `$args` and `$request_uri` (`return 200
//! "t uri=$uri args=$args req=$request_uri"`), and a backend server of the
//! same config answers with the request line's target it got (`back
//! $request_uri`), so an answer shows what a rewrite did to the URI, its
//! arguments, and what went upstream.
//!
//! What differs between the two runs is made neutral: the server's name in
//! error pages, the ports (`PORT`, the backend's `BACK`), the files' tree
//! (`DIR`) and each server's prefix (`PREFIX`).

use std::path::Path;

use waypost_tests::{
    assert_runs_as_nginx, assert_t_cases, emerg, exchange, in_location, port_server, request_lines,
    shown, side_by_side, Run, SideBySide, TempDir, Waypost,
};

/// The files a rewrite may lead to, under the tree's directory (`DIR`).
const FILES: &[(&str, &str)] = &[("files/x.txt", "file x\n")];

/// The tree both servers serve.
fn tree() -> TempDir {
    let tree = TempDir::new("rewrite-tree");
    for (name, text) in FILES {
        tree.write(name, text);
    }
    tree
}

/// The locations most rewrites lead to: each answers with what the
/// request became.
const TARGETS: &str = r#"        location / { return 200 "root uri=$uri args=$args req=$request_uri\n"; }
        location /t/ { return 200 "t uri=$uri args=$args req=$request_uri\n"; }
"#;

/// The backend, in the same http block: it shows the target it was sent.
const BACKEND: &str = r#"    server {
        listen 127.0.0.1:{back};
        location / { return 200 "back $request_uri\n"; }
    }
"#;

/// A server block on the tested port, of `lines`, with [`TARGETS`] first.
fn server(lines: &str) -> String {
    port_server(&format!("{TARGETS}{lines}"))
}

/// A server block on the tested port named `name`, of `lines` (no targets).
fn named_server(name: &str, lines: &str) -> String {
    format!(
        "    server {{\n        listen 127.0.0.1:{{port}};\n        server_name {name};\n{lines}    }}\n"
    )
}

/// One request: its Host and target.
struct Ask {
    host: &'static str,
    target: &'static str,
}

/// `GET TARGET` with `Host: h`.
fn get(target: &'static str) -> Ask {
    Ask { host: "h", target }
}

/// `GET TARGET` with `Host: HOST` (a named server).
fn on(host: &'static str, target: &'static str) -> Ask {
    Ask { host, target }
}

impl Ask {
    fn request(&self) -> String {
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.target, self.host
        )
    }

    fn label(&self) -> String {
        if self.host == "h" {
            format!("GET {}", self.target)
        } else {
            format!("GET {} [Host: {}]", self.target, self.host)
        }
    }
}

/// The headers of an answer that are compared, in this order.
const SHOWN: &[&str] = &["Content-Type", "Location", "X-S"];

/// Runs `http` (the http block's server blocks; `{port}` is the tested
/// port, `{back}` the backend's, `{dir}` the tree) with [`BACKEND`], under
/// nginx or waypost, the error log at `notice` when `notice`, and sends
/// `asks`: the answers and the requests' error log lines.
fn run(nginx: bool, tree: &Path, http: &str, notice: bool, asks: &[Ask]) -> Run {
    let SideBySide {
        server,
        port,
        neutral,
        ..
    } = side_by_side(nginx, &format!("{http}{BACKEND}"), tree, |conf| {
        if notice {
            conf.replace(
                "error_log logs/error.log;",
                "error_log logs/error.log notice;",
            )
        } else {
            conf
        }
    });
    let answers = asks
        .iter()
        .map(|a| {
            let answer = exchange(port, &a.request());
            format!("{} -> {}", a.label(), shown(&answer, SHOWN, &neutral))
        })
        .collect();
    let errors = request_lines(&server.read("logs/error.log"))
        .iter()
        .map(|l| neutral.apply(l))
        .collect();
    (answers, Vec::new(), errors)
}

/// Runs `http` with `asks` through nginx, then waypost: nginx must give
/// each of `needles` in its answers and exactly `log` in its error log,
/// and waypost what nginx gives.
fn check_with(http: &str, notice: bool, asks: &[Ask], needles: &[&str], log: &[String]) {
    let tree = tree();
    let theirs = run(true, &tree.path, http, notice, asks);
    let ours = run(false, &tree.path, http, notice, asks);
    assert_runs_as_nginx(&ours, &theirs, needles, log);
}

/// [`check_with`] with the error log at its default level.
fn check(http: &str, asks: &[Ask], needles: &[&str], log: &[String]) {
    check_with(http, false, asks, needles, log);
}

/// A log line at `level` of the request `GET TARGET` (Host `h`, the default
/// server): `message`, then the request context nginx gives it.
fn logged_line(level: &str, message: &str, target: &str) -> String {
    format!(
        "[{level}] {message}, client: 127.0.0.1, server: , request: \"GET {target} HTTP/1.1\", host: \"h\""
    )
}

fn error(message: &str, target: &str) -> String {
    logged_line("error", message, target)
}

fn notice(message: &str, target: &str) -> String {
    logged_line("notice", message, target)
}

const ENOENT: &str = "2: No such file or directory";

/// `last` stops the location's directives and chooses the location anew,
/// `break` stops them and stays (its content handler sees the rewritten
/// URI: a static file, or what proxy_pass sends), no flag goes on with the
/// location's next directives and chooses anew after them, `redirect` and
/// `permanent` answer 302 and 301 with an absolute Location.
#[test]
fn location_rewrite_flags_match_nginx() {
    let http = server(
        r#"        location /last/ { rewrite ^/last/(.*)$ /t/$1 last; return 200 "not reached\n"; }
        location /brk/ { rewrite ^/brk/(.*)$ /t/$1 break; return 200 "not reached\n"; proxy_pass http://127.0.0.1:{back}; }
        location /brkfile/ { rewrite ^/brkfile/(.*)$ /files/$1 break; root {dir}; }
        location /files/ { return 200 "not chosen\n"; }
        location /api/ { rewrite ^/api/old/(.*)$ /$1 break; proxy_pass http://127.0.0.1:{back}/v1/; }
        location /noflag/ { rewrite ^/noflag/(.*)$ /mid/$1; rewrite ^/mid/(.*)$ /t/$1; }
        location /noflagret/ { rewrite ^/noflagret/(.*)$ /t/$1; return 200 "went on uri=$uri args=$args\n"; }
        location /redir/ { rewrite ^/redir/(.*)$ /t/$1 redirect; }
        location /perm/ { rewrite ^/perm/(.*)$ /t/$1 permanent; }
        location /chain1/ { rewrite ^/chain1/(.*)$ /chain2/$1 last; }
        location /chain2/ { rewrite ^/chain2/(.*)$ /t/chained-$1 last; }
"#,
    );
    let asks = [
        get("/last/x?y=1"),
        get("/brk/x?y=1"),
        get("/brkfile/x.txt"),
        get("/brkfile/nope"),
        get("/api/old/a?b=1"),
        get("/api/old/"),
        get("/api/new/a?b=1"),
        get("/noflag/q?z"),
        get("/noflagret/q?z"),
        get("/redir/a?x=1"),
        get("/perm/a"),
        get("/chain1/x"),
    ];
    check(
        &http,
        &asks,
        &[
            "GET /last/x?y=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/x args=y=1 req=/last/x?y=1\\n\"",
            "GET /brk/x?y=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"back /t/x?y=1\\n\"",
            "GET /brkfile/x.txt -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"file x\\n\"",
            "GET /brkfile/nope -> HTTP/1.1 404 Not Found",
            // proxy_pass's URI part is dropped once `break` changed the
            // URI: the whole rewritten URI goes up, not /v1/a.
            "GET /api/old/a?b=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"back /a?b=1\\n\"",
            "GET /api/old/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"back /\\n\"",
            "GET /api/new/a?b=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"back /v1/new/a?b=1\\n\"",
            "GET /noflag/q?z -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/q args=z req=/noflag/q?z\\n\"",
            "GET /noflagret/q?z -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"went on uri=/t/q args=z\\n\"",
            "GET /redir/a?x=1 -> HTTP/1.1 302 Moved Temporarily | Content-Type: text/html | Location: http://h:PORT/t/a?x=1 | body: \"<html>\\r\\n<head><title>302 Found</title>",
            "GET /perm/a -> HTTP/1.1 301 Moved Permanently | Content-Type: text/html | Location: http://h:PORT/t/a |",
            "GET /chain1/x -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/chained-x args= req=/chain1/x\\n\"",
        ],
        &[error(
            &format!("open() \"DIR/files/nope\" failed ({ENOENT})"),
            "/brkfile/nope",
        )],
    );
}

/// A replacement that starts with `http://`, `https://` or `$scheme` is a
/// redirect whatever the flag (302, 301 with `permanent`); `$1`..`$9`
/// and named groups in the replacement, `$10` being `$1` then `0`; a
/// pattern without case by `(?i)`.
#[test]
fn redirects_and_captures_match_nginx() {
    let http = server(
        r#"        location /abs/ { rewrite ^/abs/(.*)$ http://example.com/$1; }
        location /abss/ { rewrite ^/abss/(.*)$ https://example.com/$1 permanent; }
        location /abslast/ { rewrite ^/abslast/(.*)$ https://example.com/$1 last; }
        location /absbrk/ { rewrite ^/absbrk/(.*)$ http://example.com/$1 break; }
        location /absredir/ { rewrite ^/absredir/(.*)$ http://example.com/$1 redirect; }
        location /scheme/ { rewrite ^/scheme/(.*)$ $scheme://$host/t/$1; }
        location /named/ { rewrite ^/named/(?<user>\w+)/(?<id>\d+)$ http://example.com/u/$user?id=$id; return 200 "no match\n"; }
        location /namedlast/ { rewrite ^/namedlast/(?<user>\w+)/(\d+)$ /t/$user/$2 last; }
        location /nine/ { rewrite ^/nine/(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)$ /t/$9$8$7$6$5$4$3$2$1-$10 last; }
        location /ci/ { rewrite (?i)^/CI/(x+)$ /t/$1 last; }
        location /CI/ { rewrite (?i)^/ci/(x+)$ /t/upper-$1 last; }
        location /cs/ { rewrite ^/CS/(x+)$ /t/$1 last; return 200 "case counts\n"; }
        location /absenc/ { rewrite ^/absenc/(.*)$ http://example.com/$1; }
"#,
    );
    let asks = [
        get("/abs/a/b?x=1"),
        get("/abss/a"),
        get("/abslast/a"),
        get("/absbrk/a"),
        get("/absredir/a?q"),
        get("/scheme/x?y"),
        get("/named/joe/42?y=2"),
        get("/named/joe/x"),
        get("/namedlast/ann/7"),
        get("/nine/abcdefghij"),
        get("/ci/XxX"),
        get("/CI/xx"),
        get("/cs/xx"),
        get("/absenc/a%20b%26c?y=1"),
    ];
    check(
        &http,
        &asks,
        &[
            "GET /abs/a/b?x=1 -> HTTP/1.1 302 Moved Temporarily | Content-Type: text/html | Location: http://example.com/a/b?x=1 |",
            "GET /abss/a -> HTTP/1.1 301 Moved Permanently | Content-Type: text/html | Location: https://example.com/a |",
            "GET /abslast/a -> HTTP/1.1 302 Moved Temporarily | Content-Type: text/html | Location: https://example.com/a |",
            "GET /absbrk/a -> HTTP/1.1 302 Moved Temporarily | Content-Type: text/html | Location: http://example.com/a |",
            "GET /absredir/a?q -> HTTP/1.1 302 Moved Temporarily | Content-Type: text/html | Location: http://example.com/a?q |",
            "GET /scheme/x?y -> HTTP/1.1 302 Moved Temporarily | Content-Type: text/html | Location: http://h/t/x?y |",
            "GET /named/joe/42?y=2 -> HTTP/1.1 302 Moved Temporarily | Content-Type: text/html | Location: http://example.com/u/joe?id=42&y=2 |",
            "GET /named/joe/x -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"no match\\n\"",
            "GET /namedlast/ann/7 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/ann/7 args= req=/namedlast/ann/7\\n\"",
            "GET /nine/abcdefghij -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/ihgfedcba-a0 args= req=/nine/abcdefghij\\n\"",
            "GET /ci/XxX -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/XxX args= req=/ci/XxX\\n\"",
            "GET /CI/xx -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/upper-xx args= req=/CI/xx\\n\"",
            "GET /cs/xx -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"case counts\\n\"",
            // The group is the decoded URI's, escaped again for the
            // Location as nginx escapes it: the space, not the `&`.
            "GET /absenc/a%20b%26c?y=1 -> HTTP/1.1 302 Moved Temporarily | Content-Type: text/html | Location: http://example.com/a%20b&c?y=1 |",
        ],
        &[],
    );
}

/// In a regex location, a rewrite's groups are its replacement's, the
/// location's its `return`'s unless a rewrite that did not match emptied
/// them. (nginx also keeps a regex location's named groups as variables;
/// waypost does not: README.)
#[test]
fn captures_after_a_rewrite_match_nginx() {
    let http = server(
        r#"        location ~ ^/loc2/(\w+)$ { rewrite ^/loc2/(\w)(\w)$ /t/$1-$2 last; return 200 "loc2 [$1]\n"; }
        location ~ ^/loc3/(\w+)$ { return 200 "loc3 [$1]\n"; }
"#,
    );
    let asks = [get("/loc2/ab"), get("/loc2/abc"), get("/loc3/abc")];
    check(
        &http,
        &asks,
        &[
            "GET /loc2/ab -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/a-b args= req=/loc2/ab\\n\"",
            "GET /loc2/abc -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"loc2 []\\n\"",
            "GET /loc3/abc -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"loc3 [abc]\\n\"",
        ],
        &[],
    );
}

/// A replacement without `?` keeps the request's arguments; with `?` its
/// arguments come first, then `&` and the request's; a trailing `?` drops
/// the request's; `$args` in the replacement; groups in the arguments
/// part are escaped when the request's URI had escapes or a `+`.
#[test]
fn arguments_match_nginx() {
    let http = server(
        r#"        location /keep/ { rewrite ^/keep/(.*)$ /t/$1 last; }
        location /new/ { rewrite ^/new/(.*)$ /t/?a=$1 last; }
        location /drop/ { rewrite ^/drop/(.*)$ /t/$1? last; }
        location /newdrop/ { rewrite ^/newdrop/(.*)$ /t/?a=$1? last; }
        location /withargs/ { rewrite ^/withargs/(.*)$ /t/$1?orig=$args last; }
        location /withargsdrop/ { rewrite ^/withargsdrop/(.*)$ /t/$1?orig=$args? last; }
        location /redirargs/ { rewrite ^/redirargs/(.*)$ /t/$1?a=1 redirect; }
        location /redirdrop/ { rewrite ^/redirdrop/(.*)$ /t/$1? permanent; }
        location /escargs/ { rewrite ^/escargs/(.*)$ /t/?q=$1 last; }
        location /escredir/ { rewrite ^/escredir/(.*)$ /t/?q=$1 redirect; }
        location /argsproxy/ { rewrite ^/argsproxy/(.*)$ /x/$1?a=1 break; proxy_pass http://127.0.0.1:{back}; }
        location /dropproxy/ { rewrite ^/dropproxy/(.*)$ /x/$1? break; proxy_pass http://127.0.0.1:{back}; }
"#,
    );
    let asks = [
        get("/keep/x?y=1"),
        get("/keep/x"),
        get("/new/x?y=1"),
        get("/new/x"),
        get("/drop/x?y=1"),
        get("/newdrop/x?y=1"),
        get("/withargs/x?y=1"),
        get("/withargs/x"),
        get("/withargsdrop/x?y=1"),
        get("/redirargs/x?y=1"),
        get("/redirdrop/x?y=1"),
        get("/escargs/a%20b%26c?y=1"),
        get("/escargs/a+b"),
        get("/escargs/plain"),
        get("/escredir/a%20b%26c?y=1"),
        get("/argsproxy/p?y=1"),
        get("/dropproxy/p?y=1"),
    ];
    check(
        &http,
        &asks,
        &[
            "GET /keep/x?y=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/x args=y=1 req=/keep/x?y=1\\n\"",
            "GET /new/x?y=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/ args=a=x&y=1 req=/new/x?y=1\\n\"",
            "GET /new/x -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/ args=a=x req=/new/x\\n\"",
            "GET /drop/x?y=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/x args= req=/drop/x?y=1\\n\"",
            "GET /newdrop/x?y=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/ args=a=x req=/newdrop/x?y=1\\n\"",
            "GET /withargs/x?y=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/x args=orig=y=1&y=1 req=/withargs/x?y=1\\n\"",
            "GET /withargsdrop/x?y=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/x args=orig=y=1 req=/withargsdrop/x?y=1\\n\"",
            "GET /redirargs/x?y=1 -> HTTP/1.1 302 Moved Temporarily | Content-Type: text/html | Location: http://h:PORT/t/x?a=1&y=1 |",
            "GET /redirdrop/x?y=1 -> HTTP/1.1 301 Moved Permanently | Content-Type: text/html | Location: http://h:PORT/t/x |",
            "GET /escargs/a%20b%26c?y=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/ args=q=a%20b%26c&y=1 req=/escargs/a%20b%26c?y=1\\n\"",
            "GET /escargs/a+b -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/ args=q=a%2Bb req=/escargs/a+b\\n\"",
            "GET /escargs/plain -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/ args=q=plain req=/escargs/plain\\n\"",
            "GET /escredir/a%20b%26c?y=1 -> HTTP/1.1 302 Moved Temporarily | Content-Type: text/html | Location: http://h:PORT/t/?q=a%20b%26c&y=1 |",
            "GET /argsproxy/p?y=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"back /x/p?a=1&y=1\\n\"",
            "GET /dropproxy/p?y=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"back /x/p\\n\"",
        ],
        &[],
    );
}

/// Server-level rewrites run before a location is chosen: `last` and
/// `break` both stop the server's directives, no flag goes on with them;
/// they are not run again after a location's `last` (but are after an
/// internal redirect of `error_page`). A server-level `return` before the
/// rewrites answers every request, after them those they let through; a
/// server-level `break` stops the server's directives only.
#[test]
fn server_level_rewrites_match_nginx() {
    let main = server(
        r#"        rewrite ^/s-last/(.*)$ /t/$1 last;
        rewrite ^/s-brk/(.*)$ /t/$1 break;
        rewrite ^/s-none/(.*)$ /s-mid/$1;
        rewrite ^/s-mid/(.*)$ /t/mid-$1;
        rewrite ^/s-loc/(.*)$ /l-chain/$1;
        rewrite ^/s-red/(.*)$ /t/$1 redirect;
        rewrite ^/s-stop/(.*)$ /s-next/$1 break;
        rewrite ^/s-cont/(.*)$ /s-next/$1;
        rewrite ^/s-next/(.*)$ /t/next-$1;
        rewrite ^/t/hit$ /t/srv-saw-it;
        location /l-chain/ { rewrite ^/l-chain/(.*)$ /t/chain-$1 last; }
        location /lt/ { rewrite ^ /t/hit last; }
        location /ep/ { error_page 404 = /t/hit; return 404; }
"#,
    );
    let retfirst = named_server(
        "retfirst",
        r#"        return 200 "server return uri=$uri\n";
        rewrite ^ /t/x last;
        location /t/ { return 200 "t uri=$uri\n"; }
"#,
    );
    let retafter = named_server(
        "retafter",
        r#"        rewrite ^/r/(.*)$ /t/$1;
        rewrite ^/l/(.*)$ /t/$1 last;
        rewrite ^/b/(.*)$ /t/$1 break;
        return 200 "server return uri=$uri\n";
        location / { return 200 "root uri=$uri\n"; }
        location /t/ { return 200 "t uri=$uri\n"; }
"#,
    );
    let srvbreak = named_server(
        "srvbreak",
        r#"        rewrite ^/r/(.*)$ /t/$1;
        break;
        return 200 "server return uri=$uri\n";
        location / { return 200 "root uri=$uri\n"; }
        location /t/ { rewrite ^/t/(.*)$ /u/$1 last; }
        location /u/ { return 200 "u uri=$uri\n"; }
"#,
    );
    let http = format!("{main}{retfirst}{retafter}{srvbreak}");
    let asks = [
        get("/s-last/x?y=1"),
        get("/s-brk/x?y=1"),
        get("/s-none/x"),
        get("/s-mid/x"),
        get("/s-loc/x"),
        get("/s-red/x?y"),
        get("/s-stop/x"),
        get("/s-cont/x"),
        get("/lt/x"),
        get("/t/hit"),
        get("/ep/x"),
        get("/other"),
        on("retfirst", "/x"),
        on("retfirst", "/t/x"),
        on("retafter", "/r/x"),
        on("retafter", "/l/x"),
        on("retafter", "/b/x"),
        on("retafter", "/o"),
        on("srvbreak", "/r/x"),
        on("srvbreak", "/t/z"),
        on("srvbreak", "/o"),
    ];
    check(
        &http,
        &asks,
        &[
            "GET /s-last/x?y=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/x args=y=1 req=/s-last/x?y=1\\n\"",
            "GET /s-brk/x?y=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/x args=y=1 req=/s-brk/x?y=1\\n\"",
            "GET /s-none/x -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/mid-x args= req=/s-none/x\\n\"",
            "GET /s-loc/x -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/chain-x args= req=/s-loc/x\\n\"",
            "GET /s-red/x?y -> HTTP/1.1 302 Moved Temporarily | Content-Type: text/html | Location: http://h:PORT/t/x?y |",
            "GET /s-stop/x -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"root uri=/s-next/x args= req=/s-stop/x\\n\"",
            "GET /s-cont/x -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/next-x args= req=/s-cont/x\\n\"",
            "GET /lt/x -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/hit args= req=/lt/x\\n\"",
            "GET /t/hit -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/srv-saw-it args= req=/t/hit\\n\"",
            "GET /ep/x -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/srv-saw-it args= req=/ep/x\\n\"",
            "GET /other -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"root uri=/other args= req=/other\\n\"",
            "GET /x [Host: retfirst] -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"server return uri=/x\\n\"",
            "GET /t/x [Host: retfirst] -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"server return uri=/t/x\\n\"",
            "GET /r/x [Host: retafter] -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"server return uri=/t/x\\n\"",
            "GET /l/x [Host: retafter] -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/x\\n\"",
            "GET /b/x [Host: retafter] -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/x\\n\"",
            "GET /o [Host: retafter] -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"server return uri=/o\\n\"",
            "GET /r/x [Host: srvbreak] -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"u uri=/u/x\\n\"",
            "GET /t/z [Host: srvbreak] -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"u uri=/u/z\\n\"",
            "GET /o [Host: srvbreak] -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"root uri=/o\\n\"",
        ],
        &[],
    );
}

/// In a location, `rewrite` and `return` run in the order written: a
/// `return` before a rewrite answers, after a `last` one it is not run,
/// after one that did not match (or had no flag) it is; `break;` alone
/// stops the location's later rewrites and returns (the content handler
/// runs, with the URI as it is then).
#[test]
fn order_and_break_match_nginx() {
    let http = server(
        r#"        location /lr/ { return 200 "return first\n"; rewrite ^ /t/lr last; }
        location /rl/ { rewrite ^ /t/rl last; return 200 "not reached\n"; }
        location /rnm/ { rewrite ^/zzz /t/nomatch last; return 200 "no match uri=$uri\n"; }
        location /rnf/ { rewrite ^/rnf/(.*)$ /t/$1?a=1; return 200 "went on uri=$uri args=$args\n"; }
        location /b1/ { break; rewrite ^ /t/b1 last; return 200 "not reached\n"; proxy_pass http://127.0.0.1:{back}; }
        location /b2/ { rewrite ^/b2/(.*)$ /b2/x-$1; break; rewrite ^ /t/b2 last; proxy_pass http://127.0.0.1:{back}; }
        location /b3/ { rewrite ^/zzz /t/b3 last; break; return 200 "not reached\n"; proxy_pass http://127.0.0.1:{back}; }
        location /b4/ { return 200 "return before break\n"; break; }
"#,
    );
    let asks = [
        get("/lr/x"),
        get("/rl/x"),
        get("/rnm/x"),
        get("/rnf/x?y"),
        get("/b1/x?y"),
        get("/b2/x?y"),
        get("/b3/x"),
        get("/b4/x"),
    ];
    check(
        &http,
        &asks,
        &[
            "GET /lr/x -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"return first\\n\"",
            "GET /rl/x -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/rl args= req=/rl/x\\n\"",
            "GET /rnm/x -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"no match uri=/rnm/x\\n\"",
            "GET /rnf/x?y -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"went on uri=/t/x args=a=1&y\\n\"",
            "GET /b1/x?y -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"back /b1/x?y\\n\"",
            "GET /b2/x?y -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"back /b2/x-x?y\\n\"",
            "GET /b3/x -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"back /b3/x\\n\"",
            "GET /b4/x -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"return before break\\n\"",
        ],
        &[],
    );
}

/// A rewrite that leads back to its location (or round two) ten times
/// over is a cycle: 500, and the error log names the URI of the last
/// turn. A regex that no longer matches after the rewrite ends it.
#[test]
fn rewrite_cycles_match_nginx() {
    let http = server(
        r#"        location /cyc { rewrite ^ /cyc last; }
        location /p { rewrite ^ /q last; }
        location /q { rewrite ^ /p last; }
        location /once { rewrite ^/once$ /once/done last; return 200 "once uri=$uri\n"; }
        location /nomatch { rewrite ^/zzz$ /cyc last; return 200 "nomatch uri=$uri\n"; }
"#,
    );
    let asks = [get("/cyc"), get("/p"), get("/once"), get("/nomatch")];
    check(
        &http,
        &asks,
        &[
            "GET /cyc -> HTTP/1.1 500 Internal Server Error | Content-Type: text/html | body: \"<html>\\r\\n<head><title>500 Internal Server Error</title></head>\\r\\n<body>\\r\\n<center><h1>500 Internal Server Error</h1></center>\\r\\n<hr><center>SERVER</center>\\r\\n</body>\\r\\n</html>\\r\\n\"",
            "GET /p -> HTTP/1.1 500 Internal Server Error",
            "GET /once -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"once uri=/once/done\\n\"",
            "GET /nomatch -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"nomatch uri=/nomatch\\n\"",
        ],
        &[
            error(
                "rewrite or internal redirection cycle while processing \"/cyc\"",
                "/cyc",
            ),
            error(
                "rewrite or internal redirection cycle while processing \"/q\"",
                "/p",
            ),
        ],
    );
}

/// `last` into an `internal` location (which a client cannot ask for),
/// a static location and proxy locations (with a URI part: the location's
/// prefix replaced as for any request). A named location is no target: a
/// replacement `@named` is a URI that no location matches (the server's
/// static files answer).
#[test]
fn rewrite_targets_match_nginx() {
    let http = server(
        r#"        root html;
        location /toin/ { rewrite ^/toin/(.*)$ /in/$1 last; }
        location /nm/ { rewrite ^ @named last; }
        location @named { return 200 "named\n"; }
        location /in/ { internal; return 200 "internal uri=$uri\n"; }
        location /st/ { rewrite ^/st/(.*)$ /files/$1 last; }
        location /files/ { root {dir}; }
        location /px/ { rewrite ^/px/(.*)$ /back/$1 last; }
        location /back/ { proxy_pass http://127.0.0.1:{back}; }
        location /pu-from/ { rewrite ^/pu-from/(.*)$ /pu/$1 last; }
        location /pu/ { proxy_pass http://127.0.0.1:{back}/v2/; }
"#,
    );
    let asks = [
        get("/toin/x"),
        get("/in/x"),
        get("/nm/x"),
        get("/st/x.txt"),
        get("/st/nope"),
        get("/px/a?b"),
        get("/pu-from/a?b"),
        get("/pu/a"),
    ];
    check(
        &http,
        &asks,
        &[
            "GET /toin/x -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"internal uri=/in/x\\n\"",
            "GET /in/x -> HTTP/1.1 404 Not Found",
            "GET /nm/x -> HTTP/1.1 404 Not Found",
            "GET /st/x.txt -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"file x\\n\"",
            "GET /st/nope -> HTTP/1.1 404 Not Found",
            "GET /px/a?b -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"back /back/a?b\\n\"",
            "GET /pu-from/a?b -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"back /v2/a?b\\n\"",
            "GET /pu/a -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"back /v2/a\\n\"",
        ],
        &[
            error(
                &format!("open() \"PREFIX/html@named\" failed ({ENOENT})"),
                "/nm/x",
            ),
            error(
                &format!("open() \"DIR/files/nope\" failed ({ENOENT})"),
                "/st/nope",
            ),
        ],
    );
}

/// Rewrites see the decoded URI (`%2F` a `/`), and what they make is
/// escaped again where it goes up or into a Location; an escape written
/// in the replacement is text (its `%` escaped upstream). A replacement
/// that makes an empty URI is a 500 (`the rewritten URI has a zero
/// length`) whatever the flag, but a redirect to it is made.
#[test]
fn encoded_and_empty_uris_match_nginx() {
    let http = server(
        r#"        location /enc/ { rewrite ^/enc/(.*)$ /t/$1 last; }
        location /encp/ { rewrite ^/encp/(.*)$ /x/$1 break; proxy_pass http://127.0.0.1:{back}; }
        location /lit/ { rewrite ^/lit/(.*)$ /t/a%20$1 last; }
        location /litp/ { rewrite ^/litp/(.*)$ /t/a%20$1 break; proxy_pass http://127.0.0.1:{back}; }
        location /encredir/ { rewrite ^/encredir/(.*)$ /t/$1 redirect; }
        location = /empty-last { rewrite ^/empty-last(.*)$ $1 last; }
        location = /empty-break { rewrite ^/empty-break(.*)$ $1 break; }
        location = /empty-noflag { rewrite ^/empty-noflag(.*)$ $1; return 200 "not reached\n"; }
        location = /empty-args { rewrite ^/empty-args(.*)$ ?a=$1 last; }
        location = /empty-redirect { rewrite ^/empty-redirect(.*)$ $1 redirect; }
"#,
    );
    let asks = [
        get("/enc/a%20b%2Fc%3F"),
        get("/encp/a%20b%2Fc%3F%25"),
        get("/encp/%7Efoo%C3%A9"),
        get("/lit/x"),
        get("/litp/x"),
        get("/encredir/a%20b"),
        get("/empty-last"),
        get("/empty-break"),
        get("/empty-noflag"),
        get("/empty-args"),
        get("/empty-redirect"),
    ];
    check(
        &http,
        &asks,
        &[
            "GET /enc/a%20b%2Fc%3F -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/a b/c? args= req=/enc/a%20b%2Fc%3F\\n\"",
            "GET /encp/a%20b%2Fc%3F%25 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"back /x/a%20b/c%3F%25\\n\"",
            "GET /encp/%7Efoo%C3%A9 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"back /x/~foo%C3%A9\\n\"",
            "GET /lit/x -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/a%20x args= req=/lit/x\\n\"",
            "GET /litp/x -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"back /t/a%2520x\\n\"",
            "GET /encredir/a%20b -> HTTP/1.1 302 Moved Temporarily | Content-Type: text/html | Location: http://h:PORT/t/a%20b |",
            "GET /empty-last -> HTTP/1.1 500 Internal Server Error",
            "GET /empty-break -> HTTP/1.1 500 Internal Server Error",
            "GET /empty-noflag -> HTTP/1.1 500 Internal Server Error",
            "GET /empty-args -> HTTP/1.1 500 Internal Server Error",
            "GET /empty-redirect -> HTTP/1.1 302 Moved Temporarily | Content-Type: text/html | Location:  |",
        ],
        &["/empty-last", "/empty-break", "/empty-noflag", "/empty-args"]
            .map(|t| error("the rewritten URI has a zero length", t)),
    );
}

/// `rewrite_log on` (inherited from http, off in a location) logs at
/// `notice` each regex tried, whether it matched, and what it made.
#[test]
fn rewrite_log_matches_nginx() {
    let http = format!(
        "    rewrite_log on;\n{}",
        server(
            r#"        rewrite ^/srv/(.*)$ /t/$1;
        rewrite ^/nomatch$ /t/x;
        location /l/ { rewrite ^/l/zzz /t/never; rewrite ^/l/(.*)$ /t/$1?a=1 last; }
        location /quiet/ { rewrite_log off; rewrite ^/quiet/(.*)$ /t/$1 last; }
        location /r/ { rewrite ^/r/(.*)$ /t/$1 permanent; }
        location /abs/ { rewrite ^/abs/(.*)$ http://example.com/$1?x=1; }
        location /ifre/ { if ($uri ~ ^/ifre/(bot|crawl)$) { return 403; } return 200 "ifre\n"; }
"#
        )
    );
    let asks = [
        get("/srv/x?y"),
        get("/l/x?y"),
        get("/quiet/x"),
        get("/r/x?q"),
        get("/abs/a%20b?y"),
        get("/ifre/bot"),
        get("/ifre/human"),
    ];
    let req = |target: &str, lines: &[&str]| -> Vec<String> {
        lines.iter().map(|m| notice(m, target)).collect()
    };
    let log = [
        req(
            "/srv/x?y",
            &[
                "\"^/srv/(.*)$\" matches \"/srv/x\"",
                "rewritten data: \"/t/x\", args: \"y\"",
                "\"^/nomatch$\" does not match \"/t/x\"",
            ],
        ),
        req(
            "/l/x?y",
            &[
                "\"^/srv/(.*)$\" does not match \"/l/x\"",
                "\"^/nomatch$\" does not match \"/l/x\"",
                "\"^/l/zzz\" does not match \"/l/x\"",
                "\"^/l/(.*)$\" matches \"/l/x\"",
                "rewritten data: \"/t/x\", args: \"a=1&y\"",
            ],
        ),
        req(
            "/quiet/x",
            &[
                "\"^/srv/(.*)$\" does not match \"/quiet/x\"",
                "\"^/nomatch$\" does not match \"/quiet/x\"",
            ],
        ),
        req(
            "/r/x?q",
            &[
                "\"^/srv/(.*)$\" does not match \"/r/x\"",
                "\"^/nomatch$\" does not match \"/r/x\"",
                "\"^/r/(.*)$\" matches \"/r/x\"",
                "rewritten redirect: \"/t/x?q\"",
            ],
        ),
        req(
            "/abs/a%20b?y",
            &[
                "\"^/srv/(.*)$\" does not match \"/abs/a b\"",
                "\"^/nomatch$\" does not match \"/abs/a b\"",
                "\"^/abs/(.*)$\" matches \"/abs/a b\"",
                "rewritten redirect: \"http://example.com/a%20b?x=1&y\"",
            ],
        ),
        // An `if`'s regex is logged too.
        req(
            "/ifre/bot",
            &[
                "\"^/srv/(.*)$\" does not match \"/ifre/bot\"",
                "\"^/nomatch$\" does not match \"/ifre/bot\"",
                "\"^/ifre/(bot|crawl)$\" matches \"/ifre/bot\"",
            ],
        ),
        req(
            "/ifre/human",
            &[
                "\"^/srv/(.*)$\" does not match \"/ifre/human\"",
                "\"^/nomatch$\" does not match \"/ifre/human\"",
                "\"^/ifre/(bot|crawl)$\" does not match \"/ifre/human\"",
            ],
        ),
    ]
    .concat();
    check_with(
        &http,
        true,
        &asks,
        &[
            "GET /srv/x?y -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/x args=y req=/srv/x?y\\n\"",
            "GET /l/x?y -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"t uri=/t/x args=a=1&y req=/l/x?y\\n\"",
            "GET /quiet/x -> HTTP/1.1 200 OK",
            "GET /r/x?q -> HTTP/1.1 301 Moved Permanently | Content-Type: text/html | Location: http://h:PORT/t/x?q |",
            "GET /abs/a%20b?y -> HTTP/1.1 302 Moved Temporarily | Content-Type: text/html | Location: http://example.com/a%20b?x=1&y |",
            "GET /ifre/bot -> HTTP/1.1 403 Forbidden",
            "GET /ifre/human -> HTTP/1.1 200 OK",
        ],
        &log,
    );
}

#[test]
fn config_errors_match_nginx() {
    let cases: Vec<(String, String, Waypost)> = vec![
        (
            in_location("rewrite ^/a;"),
            emerg("invalid number of arguments in \"rewrite\" directive", 7),
            Waypost::Same,
        ),
        (
            in_location("rewrite ^/a /b last extra;"),
            emerg("invalid number of arguments in \"rewrite\" directive", 7),
            Waypost::Same,
        ),
        (
            in_location("rewrite ^/a /b redirect permanent;"),
            emerg("invalid number of arguments in \"rewrite\" directive", 7),
            Waypost::Same,
        ),
        (
            in_location("rewrite ^/a /b foo;"),
            emerg("invalid parameter \"foo\"", 7),
            Waypost::Same,
        ),
        (
            in_location("rewrite ^/a /b LAST;"),
            emerg("invalid parameter \"LAST\"", 7),
            Waypost::Same,
        ),
        (
            in_location("rewrite ^/(a /b;"),
            emerg(
                "pcre2_compile() failed: missing closing parenthesis in \"^/(a\"",
                7,
            ),
            Waypost::Around(
                "[emerg] regular expression \"^/(a\" is not valid or not supported: ".into(),
                " in CONF:7 (exit Some(1))".into(),
            ),
        ),
        (
            in_location("rewrite ^/a \"\";"),
            emerg("empty replacement", 7),
            Waypost::Same,
        ),
        (
            in_location("rewrite ^/a /b$ last;"),
            emerg("invalid variable name", 7),
            Waypost::Same,
        ),
        (
            in_location("rewrite ^/a /b${x last;"),
            emerg("the closing bracket in \"x\" variable is missing", 7),
            Waypost::Same,
        ),
        (
            in_location("rewrite ^/a /b$nosuchvar last;"),
            "[emerg] unknown \"nosuchvar\" variable (exit Some(1))".into(),
            Waypost::Exactly(emerg("unknown \"nosuchvar\" variable", 7)),
        ),
        (
            in_location("rewrite ^/a{2} /b;"),
            emerg("directive \"rewrite\" is not terminated by \";\"", 7),
            Waypost::Same,
        ),
        (
            in_location("break x;"),
            emerg("invalid number of arguments in \"break\" directive", 7),
            Waypost::Same,
        ),
        (
            in_location("rewrite_log maybe;"),
            emerg(
                "invalid value \"maybe\" in \"rewrite_log\" directive, it must be \"on\" or \"off\"",
                7,
            ),
            Waypost::Same,
        ),
        (
            in_location("rewrite_log on off;"),
            emerg("invalid number of arguments in \"rewrite_log\" directive", 7),
            Waypost::Same,
        ),
        (
            in_location("rewrite_log;"),
            emerg("invalid number of arguments in \"rewrite_log\" directive", 7),
            Waypost::Same,
        ),
        (
            in_location("rewrite_log on; rewrite_log off;"),
            emerg("\"rewrite_log\" directive is duplicate", 7),
            Waypost::Same,
        ),
        (
            "http {\n    rewrite ^/a /b;\n}\n".into(),
            emerg("\"rewrite\" directive is not allowed here", 5),
            Waypost::Same,
        ),
        (
            "http {\n    break;\n}\n".into(),
            emerg("\"break\" directive is not allowed here", 5),
            Waypost::Same,
        ),
        (
            "rewrite ^/a /b;\nhttp {\n}\n".into(),
            emerg("\"rewrite\" directive is not allowed here", 4),
            Waypost::Same,
        ),
        // Every directive where it may be: rewrite_log from http on (any
        // case of on/off), rewrite and break in servers and locations
        // (named ones too), an empty regex, groups the regex lacks.
        (
            "http {\n\
             \x20   rewrite_log on;\n\
             \x20   server {\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       rewrite_log OFF;\n\
             \x20       rewrite ^/a /b;\n\
             \x20       rewrite \"^/a{2}$\" /c last;\n\
             \x20       rewrite \"\" /d break;\n\
             \x20       break;\n\
             \x20       break;\n\
             \x20       location / { rewrite_log On; rewrite ^/(?<n>x)(y) /$n/$2/$9 redirect; rewrite ^ http://e/$1 permanent; break; }\n\
             \x20       location @n { rewrite ^ /x last; break; rewrite_log off; }\n\
             \x20   }\n\
             }\n"
            .into(),
            "ok (exit Some(0))".into(),
            Waypost::Same,
        ),
    ];
    assert_t_cases("rewrite-conf", &cases);
}

/// Edges a review found: a server's access rules with rewrite lines, its
/// header filters on its own answers, the regex groups a rewrite leaves
/// (and a regex location found again sets), arguments escaped as nginx
/// 1.22 escapes them, no bare `?` upstream, an absolute-form request's
/// host, and a rewrite cycle's 500 that no `error_page` takes.
#[test]
fn review_edges_match_nginx() {
    let main = server(
        r#"        location ~ ^/old/(.*)$ { rewrite ^/old/(.*)$ /new/$1/zz last; }
        location ~ ^/new/(\w+)/(\w+)$ { return 200 "new [$1] [$2]\n"; }
        location /p/ { rewrite ^/p/(.)(.*)$ /q/$2 last; }
        location /q/ { return 200 "q [$1] [$2]\n"; }
        location /search/ { rewrite ^/search/(.*)$ /search.php?q=$1 last; }
        location = /search.php { return 200 "q=$arg_q args=$args\n"; }
        location /e/ { rewrite ^/e/(.*)$ /up/$1?$arg_z break; proxy_pass http://127.0.0.1:{back}; }
        location /a/ { rewrite ^ /host/ last; }
        location /host/ { return 200 "host=$host\n"; }
        location /cyc/ { error_page 500 /t/page; rewrite ^ /cyc/ last; }
"#,
    );
    let guarded = named_server(
        "guarded",
        r#"        deny all;
        add_header X-S server-level always;
        if ($arg_t) { return 200 "early\n"; }
        location /open/ { allow all; return 200 "open\n"; }
"#,
    );
    let asks = [
        get("/old/a"),
        get("/p/abc"),
        get("/search/a%22b%7Bc%20d"),
        get("/e/x"),
        get("/e/x?z=1"),
        on("hdr.test", "http://abs.test/a/x"),
        get("/cyc/x"),
        on("guarded", "/secret"),
        on("guarded", "/secret?t=1"),
        on("guarded", "/open/x"),
    ];
    check(
        &format!("{main}{guarded}"),
        &asks,
        &[
            "GET /old/a -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"new [a] [zz]\\n\"",
            "GET /p/abc -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"q [a] [bc]\\n\"",
            "body: \"q=a%22b%7Bc%20d args=q=a%22b%7Bc%20d\\n\"",
            "GET /e/x -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"back /up/x\\n\"",
            "GET /e/x?z=1 -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"back /up/x?1&z=1\\n\"",
            "body: \"host=abs.test\\n\"",
            "GET /cyc/x -> HTTP/1.1 500 Internal Server Error",
            "GET /secret [Host: guarded] -> HTTP/1.1 403 Forbidden",
            "GET /secret?t=1 [Host: guarded] -> HTTP/1.1 200 OK | Content-Type: text/plain | X-S: server-level | body: \"early\\n\"",
            "GET /open/x [Host: guarded] -> HTTP/1.1 200 OK",
        ],
        &[
            "[error] rewrite or internal redirection cycle while processing \"/cyc/\", client: 127.0.0.1, server: , request: \"GET /cyc/x HTTP/1.1\", host: \"h\"".into(),
            "[error] access forbidden by rule, client: 127.0.0.1, server: guarded, request: \"GET /secret HTTP/1.1\", host: \"guarded\"".into(),
        ],
    );
}

/// The body's limit is the one of the location a request ends in, checked
/// after the server's rewrite lines (which may answer first).
#[test]
fn body_limits_after_rewrites_match_nginx() {
    let http = port_server(
        r#"        client_max_body_size 10;
        if ($arg_away) { return 301 https://elsewhere.test/; }
        location /big/ { client_max_body_size 100k; rewrite ^/big/(.*)$ /small/$1 last; }
        location /small/ { return 200 "small\n"; }
        location /tiny/ { rewrite ^/tiny/(.*)$ /roomy/$1 last; }
        location /roomy/ { client_max_body_size 1m; return 200 "roomy\n"; }
"#,
    );
    // A Content-Length is checked at each location found; a chunked
    // body as it is read, against the final one's.
    let post = |target: &str| {
        if let Some(path) = target.strip_prefix("chunked ") {
            format!(
                "POST {} HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nd\r\n0123456789abc\r\n0\r\n\r\n",
                path
            )
        } else {
            format!(
                "POST {target} HTTP/1.1\r\nHost: h\r\nContent-Length: 13\r\nConnection: close\r\n\r\n0123456789abc"
            )
        }
    };
    let tree = tree();
    let answers = |nginx: bool| -> Vec<String> {
        let sbs = side_by_side(nginx, &format!("{http}{BACKEND}"), &tree.path, |conf| conf);
        ["/big/x", "/tiny/x", "chunked /tiny/x", "/small/x?away=1"]
            .iter()
            .map(|t| {
                let answer = exchange(sbs.port, &post(t));
                format!("POST {t} -> {}", answer.lines().next().unwrap_or(""))
            })
            .collect()
    };
    let theirs = answers(true);
    assert_eq!(
        theirs,
        [
            "POST /big/x -> HTTP/1.1 413 Request Entity Too Large",
            "POST /tiny/x -> HTTP/1.1 413 Request Entity Too Large",
            "POST chunked /tiny/x -> HTTP/1.1 200 OK",
            "POST /small/x?away=1 -> HTTP/1.1 301 Moved Permanently",
        ],
        "nginx's answers"
    );
    assert_eq!(answers(false), theirs);
}

/// Edges a second review found: a server's rewrite lines see no
/// location's groups (and leave a regex location its own), a client's
/// request for an `internal` location with rewrite lines is 404, a
/// rewritten URI goes upstream escaped, the server's phase reads the
/// server's root, an `error_page` redirect keeps an absolute-form
/// request's host, and a root that reads `$request_filename` back through
/// a `map` is a cycle, not a crash.
#[test]
fn second_review_edges_match_nginx() {
    let main = server(
        r#"        location /int3/ { internal; rewrite ^ /t/x last; }
        location /pu/ { proxy_pass http://127.0.0.1:{back}/u/; }
        location /l/ { rewrite ^/l/(.*)$ /pu/$1 last; }
        location /sp/ { rewrite ^ "/pu/a b" last; }
        location /ep/ { error_page 404 /host/; return 404; }
        location /host/ { return 200 "host=$host\n"; }
        location /c/ { root $m; return 200 "c\n"; }
"#,
    );
    let srv = named_server(
        "srv",
        r#"        root {dir}/files;
        rewrite ^/old/(.*)$ /new/$1 permanent;
        if (-f $request_filename) { return 200 "server root has it\n"; }
        location ~ ^/go/(.+)$ { return 200 "go [$1]\n"; }
        location / { root {dir}/nothing; return 200 "location\n"; }
"#,
    );
    let http =
        format!("    map $request_filename $m {{ default \"/x$request_filename\"; }}\n{main}{srv}");
    let asks = [
        get("/int3/"),
        get("/l/a%22x"),
        get("/sp/"),
        on("other", "http://abs.example/ep/x"),
        get("/c/a"),
        on("srv", "/go/xyz"),
        on("srv", "/x.txt"),
        on("srv", "/nope"),
    ];
    check(
        &http,
        &asks,
        &[
            "GET /int3/ -> HTTP/1.1 404 Not Found",
            "GET /l/a%22x -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"back /u/a%22x\\n\"",
            "GET /sp/ -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"back /u/a%20b\\n\"",
            "body: \"host=abs.example\\n\"",
            "GET /c/a -> HTTP/1.1 200 OK",
            "GET /go/xyz [Host: srv] -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"go [xyz]\\n\"",
            "GET /x.txt [Host: srv] -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"server root has it\\n\"",
            "GET /nope [Host: srv] -> HTTP/1.1 200 OK | Content-Type: text/plain | body: \"location\\n\"",
        ],
        &[],
    );
}

/// An alias does not map a URI that `rewrite ... break` made: nginx's
/// alert and 500. (`$request_filename` is then empty; nginx writes the
/// alert again for it, waypost does not.)
#[test]
fn alias_after_a_rewrite_break_matches_nginx() {
    let http = server(
        r#"        location /al/ {
            alias {dir}/files/;
            rewrite ^/al/(.*)$ /al/$1 break;
        }
        location /ok/ { alias {dir}/files/; add_header X-S "[$request_filename]" always; }
"#,
    );
    let asks = [get("/al/x.txt"), get("/ok/x.txt")];
    check(
        &http,
        &asks,
        &[
            "GET /al/x.txt -> HTTP/1.1 500 Internal Server Error | Content-Type: text/html",
            "GET /ok/x.txt -> HTTP/1.1 200 OK | Content-Type: text/plain | X-S: [DIR/files/x.txt] | body: \"file x\\n\"",
        ],
        &["[alert] \"alias\" cannot be used in location \"/al/\" where URI was rewritten, client: 127.0.0.1, server: , request: \"GET /al/x.txt HTTP/1.1\", host: \"h\"".into()],
    );
}

/// `error_page` counts its redirects on from the rewrites before it: nine
/// `last` rewrites, an `error_page` redirect and one more rewrite make
/// nginx's cycle.
#[test]
fn error_page_after_rewrites_counts_on_as_nginx() {
    let mut lines: String = (1..10)
        .map(|i| {
            format!(
                "        location /a{i}/ {{ rewrite ^ /a{}/ last; }}\n",
                i + 1
            )
        })
        .collect();
    lines.push_str(
        r#"        location /a10/ { error_page 404 /e1/; return 404; }
        location /e1/ { rewrite ^ /e2/ last; }
        location /e2/ { return 200 "e2\n"; }
        location /b1/ { rewrite ^ /a10/ last; }
"#,
    );
    let http = server(&lines);
    let asks = [get("/a1/"), get("/b1/")];
    check(
        &http,
        &asks,
        &[
            "GET /a1/ -> HTTP/1.1 500 Internal Server Error",
            "GET /b1/ -> HTTP/1.1 404 Not Found | Content-Type: text/plain | body: \"e2\\n\"",
        ],
        &["[error] rewrite or internal redirection cycle while processing \"/e2/\", client: 127.0.0.1, server: , request: \"GET /a1/ HTTP/1.1\", host: \"h\"".into()],
    );
}
