//! Static files (`root`, `alias`, `index`, `try_files`, `log_not_found`,
//! `etag`, `if_modified_since`) side by side with nginx: the same config
//! serves the same files (one tree, made before both servers start, every
//! file with the same modification time) and the same requests get the
//! same status lines, the headers a static answer is made of
//! (Content-Type, Content-Length, Last-Modified, ETag, Accept-Ranges,
//! Location, Content-Range) and bodies, and the same error log lines
//! (`open() ... failed`, `directory index of ... is forbidden`, `... is not
//! found`). Then the config errors of these directives.
//!
//! What differs between the two runs is made neutral: the server's name in
//! error pages (and so the pages' Content-Length, shown as whether it is
//! the body's), the port in absolute redirects (`PORT`), the test tree
//! (`DIR`), each server's prefix (`PREFIX`, for the relative `root html;`,
//! whose files are written into each server's prefix) and the boundary of a
//! multipart/byteranges answer (`BOUNDARY`).

use std::path::Path;
use std::time::{Duration, SystemTime};

use waypost_tests::{
    assert_runs_as_nginx, assert_same_runs, assert_t_cases, either_on_a_port, exchange, free_port,
    neutral_server, request_lines, Neutral, Run, Server, TempDir, Waypost,
};

/// Every file's modification time, so that Last-Modified and ETag are
/// known: Tue, 14 Nov 2023 22:13:20 GMT.
const MTIME: u64 = 1_700_000_000;
const LAST_MODIFIED: &str = "Tue, 14 Nov 2023 22:13:20 GMT";
/// A day before and after [`LAST_MODIFIED`].
const EARLIER: &str = "Mon, 13 Nov 2023 22:13:20 GMT";
const LATER: &str = "Wed, 15 Nov 2023 22:13:20 GMT";

/// The files served, under the tree's directory (`DIR`).
const FILES: &[(&str, &str)] = &[
    ("files/a.html", "<p>a</p>\n"),
    ("files/b.txt", "bee text\n"),
    ("files/digits.txt", "0123456789abcdef\n"),
    ("files/sub/c.css", "body { color: red }\n"),
    ("files/sub/index.html", "<p>sub index</p>\n"),
    ("files/x.unknownext", "mystery\n"),
    ("files/noext", "no extension\n"),
    ("files/UPPER.HTML", "<p>upper</p>\n"),
    ("files/empty.txt", ""),
    ("files/two/b.html", "<p>two b</p>\n"),
    ("files/x/i.txt", "x index\n"),
    ("files/flat/inner/f.txt", "flat\n"),
    ("files/np/dir/f.txt", "np\n"),
    ("files/sn/dir/f.txt", "sn\n"),
    ("files/with space/f.txt", "space\n"),
    ("files/fallback.html", "<p>fallback file</p>\n"),
    ("pages/50x.html", PAGE_50X),
];

/// The error page of `location = /50x.html`.
const PAGE_50X: &str = "<h1>custom 50x</h1>\n";

/// Directories without files.
const EMPTY_DIRS: &[&str] = &["files/emptydir", "files/abs", "files/d\"q"];

/// The files of the relative `root html;` (`location /rel/`), written into
/// each server's prefix.
const PREFIX_FILES: &[(&str, &str)] = &[("html/rel/a.html", "<p>relative a</p>\n")];

/// The ETag nginx gives a file of `text`: its mtime and size in hex.
fn etag(text: &str) -> String {
    format!("\"{MTIME:x}-{:x}\"", text.len())
}

/// Writes `files` under `dir`, each with [`MTIME`].
fn write_files(dir: &Path, files: &[(&str, &str)]) {
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(MTIME);
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write file");
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(mtime))
            .expect("set mtime");
    }
}

/// The tree both servers serve.
fn tree() -> TempDir {
    let tree = TempDir::new("static");
    write_files(&tree.path, FILES);
    for dir in EMPTY_DIRS {
        std::fs::create_dir_all(tree.path.join(dir)).expect("mkdir");
    }
    // Two links to each other: opening either fails with ELOOP.
    let files = tree.path.join("files");
    std::os::unix::fs::symlink(files.join("loop2"), files.join("loop1")).expect("symlink");
    std::os::unix::fs::symlink(files.join("loop1"), files.join("loop2")).expect("symlink");
    tree
}

/// One request.
struct Ask {
    method: &'static str,
    target: String,
    headers: Vec<String>,
    /// An HTTP/1.0 request without Host.
    http10: bool,
}

fn ask(method: &'static str, target: &str) -> Ask {
    Ask {
        method,
        target: target.to_owned(),
        headers: Vec::new(),
        http10: false,
    }
}

fn get(target: &str) -> Ask {
    ask("GET", target)
}

fn head(target: &str) -> Ask {
    ask("HEAD", target)
}

impl Ask {
    /// With the header line `line` ("Name: value").
    fn with(mut self, line: impl Into<String>) -> Ask {
        self.headers.push(line.into());
        self
    }

    fn http10(mut self) -> Ask {
        self.http10 = true;
        self
    }

    /// The whole request, `Connection: close`; POST and PUT carry a body.
    fn request(&self) -> String {
        let mut lines = vec![if self.http10 {
            format!("{} {} HTTP/1.0", self.method, self.target)
        } else {
            format!("{} {} HTTP/1.1\r\nHost: h", self.method, self.target)
        }];
        lines.extend(self.headers.iter().cloned());
        let body = if matches!(self.method, "POST" | "PUT") {
            lines.push("Content-Length: 3".into());
            "abc"
        } else {
            ""
        };
        lines.push("Connection: close".into());
        format!("{}\r\n\r\n{body}", lines.join("\r\n"))
    }

    fn label(&self) -> String {
        let version = if self.http10 { " HTTP/1.0" } else { "" };
        format!(
            "{} {}{version} [{}]",
            self.method,
            self.target,
            self.headers.join("; ")
        )
    }
}

/// The headers of an answer that are compared, in this order.
const SHOWN: &[&str] = &[
    "Content-Type",
    "Content-Length",
    "Last-Modified",
    "ETag",
    "Accept-Ranges",
    "Location",
    "Content-Range",
    "Transfer-Encoding",
    "Content-Encoding",
    "Vary",
];

/// The body of an answer.
fn body_of(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

/// An answer as compared: the status line, the [`SHOWN`] headers and the
/// body, each made neutral. `got`: for an answer to HEAD, the body of the
/// same request by GET, which its Content-Length is compared with when it
/// is a page that names the server.
fn shown(answer: &str, got: Option<&str>, neutral: &Neutral) -> String {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    // The name as written (nginx's spelling, `ETag`, is compared too).
    let found = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .cloned()
    };
    let find = |name: &str| found(name).map(|(_, v)| v);
    // The boundary of a multipart answer, a counter in nginx.
    let boundary = find("Content-Type")
        .and_then(|t| t.split_once("boundary=").map(|(_, b)| b.to_owned()))
        .filter(|b| !b.is_empty());
    let mut page = neutral_server(body);
    if let Some(boundary) = &boundary {
        page = page.replace(boundary.as_str(), "BOUNDARY");
    }
    let mut out = vec![status];
    for name in SHOWN {
        let Some((written, mut value)) = found(name) else {
            continue;
        };
        // (Every Vary line: a second one would be a difference.)
        if *name == "Vary" {
            let all: Vec<&str> = headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect();
            value = all.join(" + ");
        }
        if let Some(boundary) = &boundary {
            value = value.replace(boundary.as_str(), "BOUNDARY");
        }
        // A page that names the server (or a multipart body): its length
        // is the body's, or not.
        if *name == "Content-Length" && (page != body || boundary.is_some()) {
            value = if value == body.len().to_string() {
                "(the body's)".into()
            } else {
                format!("{value} (the body has {})", body.len())
            };
        }
        if let Some(got) = got.filter(|g| *name == "Content-Length" && neutral_server(g) != *g) {
            value = if value == got.len().to_string() {
                "(GET's page's)".into()
            } else {
                format!("{value} (GET's page has {})", got.len())
            };
        }
        out.push(format!("{written}: {value}"));
    }
    out.push(format!("body: {page:?}"));
    neutral.apply(&out.join(" | "))
}

/// Error log lines of the static handlers.
const LOGGED: &[&str] = &[
    "open()",
    "directory index of",
    "is not found",
    "openat()",
    "stat()",
];

/// The lines of every static file server block: MIME types of its own
/// (so nginx's three built-in ones do not count) and a default type.
const TYPES: &str = "    types { text/html html; text/plain txt; text/css css; }\n    default_type application/x-default;\n";

/// Runs `server` (the server block's lines; `{dir}` is the tree, `{port}`
/// the server's port) under nginx or waypost and sends `asks` (each HEAD
/// followed by its GET, for [`shown`]): the answers and the static
/// handlers' error log lines.
fn run(nginx: bool, tree: &Path, server: &str, asks: &[Ask]) -> Run {
    let (server, port) = either_on_a_port(nginx, |port| {
        let lines = server
            .replace("{dir}", &tree.display().to_string())
            .replace("{port}", &port.to_string());
        format!("{TYPES}    server {{\n        listen 127.0.0.1:{port};\n{lines}    }}\n")
    });
    write_files(&server.dir.path, PREFIX_FILES);
    let neutral = Neutral::default()
        .path(&server.dir.path, "PREFIX")
        .path(tree, "DIR")
        .port(port, "PORT");
    let answers = asks
        .iter()
        .map(|a| {
            let answer = exchange(port, &a.request());
            let got = (a.method == "HEAD").then(|| {
                let by_get = Ask {
                    method: "GET",
                    target: a.target.clone(),
                    headers: a.headers.clone(),
                    http10: a.http10,
                };
                exchange(port, &by_get.request())
            });
            let got = got.as_deref().map(body_of);
            format!("{} -> {}", a.label(), shown(&answer, got, &neutral))
        })
        .collect();
    let errors = logged(&server).iter().map(|l| neutral.apply(l)).collect();
    (answers, Vec::new(), errors)
}

/// The error log's lines of [`LOGGED`], in order: each message with its
/// level, without the time, pid and connection number (as
/// [`Server::log_messages`]).
fn logged(server: &Server) -> Vec<String> {
    request_lines(&server.read("logs/error.log"))
        .into_iter()
        .filter(|l| LOGGED.iter().any(|n| l.contains(n)))
        .collect()
}

/// Runs `server` with `asks` through nginx, then waypost: nginx must give
/// each of `needles` in its answers and exactly `log` in its error log
/// (`DIR` for the tree), and waypost what nginx gives.
fn check(server: &str, asks: &[Ask], needles: &[&str], log: &[String]) {
    let tree = tree();
    let theirs = run(true, &tree.path, server, asks);
    let ours = run(false, &tree.path, server, asks);
    assert_runs_as_nginx(&ours, &theirs, needles, log);
}

/// An `[error]` line of the error log: `message`, then the request
/// context nginx gives it for `request_line`.
fn error(message: &str, request_line: &str) -> String {
    format!(
        "[error] {message}, client: 127.0.0.1, server: , request: \"{request_line}\", host: \"h\""
    )
}

/// `open() "PATH" failed (ERR)` for `request_line`.
fn open_failed(path: &str, err: &str, request_line: &str) -> String {
    error(&format!("open() \"{path}\" failed ({err})"), request_line)
}

const ENOENT: &str = "2: No such file or directory";

#[test]
fn files_from_root_match_nginx() {
    let a = FILES[0].1;
    let server = "        root {dir}/files;\n\
                  \x20       location / { }\n\
                  \x20       location /rel/ { root html; }\n";
    let asks = [
        get("/a.html"),
        get("/b.txt"),
        get("/sub/c.css"),
        get("/x.unknownext"),
        get("/noext"),
        get("/UPPER.HTML"),
        head("/a.html"),
        get("/empty.txt"),
        get("/a.html?v=1"),
        get("/sub/../a.html"),
        get("/%61.html"),
        get("/rel/a.html"),
    ];
    let ok = format!(
        "HTTP/1.1 200 OK | Content-Type: text/html | Content-Length: {} | Last-Modified: {LAST_MODIFIED} | ETag: {} | Accept-Ranges: bytes | body: {a:?}",
        a.len(),
        etag(a)
    );
    check(
        server,
        &asks,
        &[
            &format!("GET /a.html [] -> {ok}"),
            "Content-Type: text/plain | Content-Length: 9",
            "Content-Type: text/css",
            "Content-Type: application/x-default | Content-Length: 8",
            "GET /noext [] -> HTTP/1.1 200 OK | Content-Type: application/x-default",
            "<p>upper</p>",
            "HEAD /a.html [] -> HTTP/1.1 200 OK | Content-Type: text/html | Content-Length: 9 | Last-Modified",
            "GET /empty.txt [] -> HTTP/1.1 200 OK | Content-Type: text/plain | Content-Length: 0",
            "relative a",
        ],
        &[],
    );
}

#[test]
fn missing_files_match_nginx() {
    let server = "        root {dir}/files;\n\
                  \x20       location / { }\n\
                  \x20       location /quiet/ { log_not_found off; }\n\
                  \x20       location /rel/ { root html; }\n";
    let asks = [
        get("/nope.html"),
        get("/sub/nope/deeper"),
        get("/a.html/x"),
        get("/quiet/nope"),
        get("/rel/nope"),
    ];
    check(
        server,
        &asks,
        &[
            "GET /nope.html [] -> HTTP/1.1 404 Not Found | Content-Type: text/html",
            "GET /quiet/nope [] -> HTTP/1.1 404 Not Found",
            "GET /a.html/x [] -> HTTP/1.1 404 Not Found",
        ],
        &[
            open_failed("DIR/files/nope.html", ENOENT, "GET /nope.html HTTP/1.1"),
            open_failed(
                "DIR/files/sub/nope/deeper",
                ENOENT,
                "GET /sub/nope/deeper HTTP/1.1",
            ),
            open_failed(
                "DIR/files/a.html/x",
                "20: Not a directory",
                "GET /a.html/x HTTP/1.1",
            ),
            open_failed("PREFIX/html/rel/nope", ENOENT, "GET /rel/nope HTTP/1.1"),
        ],
    );
}

#[test]
fn directory_redirects_match_nginx() {
    let server = "        server_name example.test;\n\
                  \x20       root {dir}/files;\n\
                  \x20       location / { }\n\
                  \x20       location /flat { absolute_redirect off; }\n\
                  \x20       location /np/ { port_in_redirect off; }\n\
                  \x20       location /sn/ { server_name_in_redirect on; }\n";
    let asks = [
        get("/sub"),
        get("/sub?x=1"),
        head("/sub"),
        get("/sub").http10(),
        get("/flat"),
        get("/flat/inner?y=2"),
        get("/np/dir"),
        get("/sn/dir"),
        get("/with%20space"),
    ];
    check(
        server,
        &asks,
        &[
            "GET /sub [] -> HTTP/1.1 301 Moved Permanently | Content-Type: text/html | Content-Length: (the body's) | Location: http://h:PORT/sub/ |",
            "Location: http://h:PORT/sub/?x=1",
            "Location: http://127.0.0.1:PORT/sub/",
            "Location: /flat/",
            "Location: /flat/inner/?y=2",
            "Location: http://h/np/dir/",
            "Location: http://example.test:PORT/sn/dir/",
        ],
        &[],
    );
}

#[test]
fn index_matches_nginx() {
    let server = "        root {dir}/files;\n\
                  \x20       location / { }\n\
                  \x20       location /two/ { index a.html b.html; }\n\
                  \x20       location = /x/ { index i.txt; }\n\
                  \x20       location /x/ { return 200 \"other $uri\\n\"; }\n\
                  \x20       location /abs/ { index nothere.html /a.html; }\n";
    let asks = [
        get("/sub/"),
        get("/sub/?q=1"),
        head("/sub/"),
        get("/two/"),
        get("/emptydir/"),
        get("/nodir/"),
        get("/x/"),
        get("/abs/"),
    ];
    check(
        server,
        &asks,
        &[
            "GET /sub/ [] -> HTTP/1.1 200 OK | Content-Type: text/html | Content-Length: 17",
            "sub index",
            "two b",
            "GET /emptydir/ [] -> HTTP/1.1 403 Forbidden",
            "GET /nodir/ [] -> HTTP/1.1 404 Not Found",
            "other /x/i.txt",
            "GET /abs/ [] -> HTTP/1.1 200 OK | Content-Type: text/html | Content-Length: 9",
        ],
        &[
            error(
                "directory index of \"DIR/files/emptydir/\" is forbidden",
                "GET /emptydir/ HTTP/1.1",
            ),
            error(
                &format!("\"DIR/files/nodir/index.html\" is not found ({ENOENT})"),
                "GET /nodir/ HTTP/1.1",
            ),
        ],
    );
}

#[test]
fn alias_matches_nginx() {
    let server = "        location /static/ { alias {dir}/files/; }\n\
                  \x20       location = /one { alias {dir}/files/a.html; }\n\
                  \x20       location /short { alias {dir}/files/sub; }\n\
                  \x20       location ~ ^/re/(.+)$ { alias {dir}/files/$1; }\n";
    let asks = [
        get("/static/a.html"),
        get("/static/sub/c.css"),
        get("/static/sub"),
        get("/static/sub/"),
        get("/static/"),
        get("/static/nope"),
        get("/one"),
        get("/short/c.css"),
        get("/re/b.txt"),
        get("/re/sub/c.css"),
    ];
    check(
        server,
        &asks,
        &[
            "GET /static/a.html [] -> HTTP/1.1 200 OK | Content-Type: text/html | Content-Length: 9",
            "Location: http://h:PORT/static/sub/",
            "sub index",
            "GET /static/ [] -> HTTP/1.1 403 Forbidden",
            "GET /one [] -> HTTP/1.1 200 OK | Content-Type: application/x-default | Content-Length: 9",
            "GET /short/c.css [] -> HTTP/1.1 200 OK | Content-Type: text/css",
            "GET /re/b.txt [] -> HTTP/1.1 200 OK | Content-Type: text/plain",
        ],
        &[
            error("directory index of \"DIR/files/\" is forbidden", "GET /static/ HTTP/1.1"),
            open_failed("DIR/files/nope", ENOENT, "GET /static/nope HTTP/1.1"),
        ],
    );
}

#[test]
fn try_files_matches_nginx() {
    let server = "        root {dir}/files;\n\
                  \x20       location / { try_files $uri $uri/ =404; }\n\
                  \x20       location /fb/ { try_files $uri /fallback.html; }\n\
                  \x20       location /fbq/ { try_files $uri /target?from=$uri; }\n\
                  \x20       location /target { return 200 \"target $uri $args\\n\"; }\n\
                  \x20       location /nm/ { try_files $uri @named; }\n\
                  \x20       location @named { return 200 \"named $uri $args\\n\"; }\n\
                  \x20       location /tea/ { try_files $uri =418; }\n\
                  \x20       location /tfa/ { alias {dir}/files/; try_files $uri =404; }\n";
    let asks = [
        get("/a.html"),
        get("/sub/"),
        get("/sub"),
        get("/emptydir/"),
        get("/nope"),
        get("/fb/zzz"),
        get("/fbq/zzz?a=1"),
        get("/nm/zzz?a=1"),
        get("/tea/zzz"),
        get("/tfa/a.html"),
        get("/tfa/nope"),
    ];
    check(
        server,
        &asks,
        &[
            "GET /a.html [] -> HTTP/1.1 200 OK | Content-Type: text/html | Content-Length: 9",
            "GET /sub/ [] -> HTTP/1.1 200 OK | Content-Type: text/html | Content-Length: 17",
            "GET /sub [] -> HTTP/1.1 301 Moved Permanently | Content-Type: text/html | Content-Length: (the body's) | Location: http://h:PORT/sub/",
            "GET /emptydir/ [] -> HTTP/1.1 403 Forbidden",
            "GET /nope [] -> HTTP/1.1 404 Not Found",
            "fallback file",
            "target /target from=/fbq/zzz",
            "named /nm/zzz a=1",
            "GET /tea/zzz [] -> HTTP/1.1 418",
            "GET /tfa/a.html [] -> HTTP/1.1 200 OK | Content-Type: text/html | Content-Length: 9",
            "GET /tfa/nope [] -> HTTP/1.1 404 Not Found",
        ],
        &[error("directory index of \"DIR/files/emptydir/\" is forbidden", "GET /emptydir/ HTTP/1.1")],
    );
}

#[test]
fn methods_match_nginx() {
    let server = "        root {dir}/files;\n\
                  \x20       location / { }\n";
    let asks = [
        ask("POST", "/a.html"),
        ask("PUT", "/a.html"),
        ask("DELETE", "/a.html"),
        ask("OPTIONS", "/a.html"),
        ask("PUT", "/nope"),
        ask("POST", "/nope"),
        ask("POST", "/sub/"),
        ask("POST", "/sub"),
        ask("PUT", "/sub/"),
    ];
    check(
        server,
        &asks,
        &[
            "POST /a.html [] -> HTTP/1.1 405 Not Allowed",
            "PUT /a.html [] -> HTTP/1.1 405 Not Allowed",
            "DELETE /a.html [] -> HTTP/1.1 405 Not Allowed",
            "POST /nope [] -> HTTP/1.1 404 Not Found",
            "POST /sub/ [] -> HTTP/1.1 405 Not Allowed",
            "POST /sub [] -> HTTP/1.1 301 Moved Permanently",
        ],
        &[open_failed("DIR/files/nope", ENOENT, "POST /nope HTTP/1.1")],
    );
}

#[test]
fn conditional_requests_match_nginx() {
    let b = etag(FILES[1].1);
    let server = "        root {dir}/files;\n\
                  \x20       location / { }\n\
                  \x20       location /before/ { if_modified_since before; alias {dir}/files/; }\n\
                  \x20       location /off/ { if_modified_since off; alias {dir}/files/; }\n\
                  \x20       location /noetag/ { etag off; alias {dir}/files/; }\n";
    let ims = |date: &str| format!("If-Modified-Since: {date}");
    let inm = |tag: &str| format!("If-None-Match: {tag}");
    let asks = [
        get("/b.txt").with(ims(LAST_MODIFIED)),
        head("/b.txt").with(ims(LAST_MODIFIED)),
        get("/b.txt").with(ims(EARLIER)),
        get("/b.txt").with(ims(LATER)),
        get("/b.txt").with(ims("garbage")),
        get("/before/b.txt").with(ims(LATER)),
        get("/before/b.txt").with(ims(LAST_MODIFIED)),
        get("/before/b.txt").with(ims(EARLIER)),
        get("/off/b.txt").with(ims(LAST_MODIFIED)),
        get("/b.txt").with(inm(&b)),
        get("/b.txt").with(inm("\"other\"")),
        get("/b.txt").with(inm("*")),
        get("/b.txt").with(inm(&format!("\"x\", {b}"))),
        get("/b.txt").with(inm(&format!("W/{b}"))),
        get("/b.txt")
            .with(inm("\"other\""))
            .with(ims(LAST_MODIFIED)),
        get("/b.txt").with(inm(&b)).with(ims(EARLIER)),
        get("/b.txt").with(format!("If-Match: {b}")),
        get("/b.txt").with("If-Match: \"other\""),
        get("/b.txt").with("If-Match: *"),
        get("/b.txt").with(format!("If-Match: W/{b}")),
        get("/b.txt").with(format!("If-Unmodified-Since: {EARLIER}")),
        get("/b.txt").with(format!("If-Unmodified-Since: {LAST_MODIFIED}")),
        get("/b.txt").with(format!("If-Unmodified-Since: {LATER}")),
        get("/noetag/b.txt"),
        get("/noetag/b.txt").with(inm(&b)),
        get("/noetag/b.txt").with(inm("*")),
    ];
    let not_modified = format!(
        "HTTP/1.1 304 Not Modified | Last-Modified: {LAST_MODIFIED} | ETag: {b} | body: \"\""
    );
    check(
        server,
        &asks,
        &[
            &format!("GET /b.txt [If-Modified-Since: {LAST_MODIFIED}] -> {not_modified}"),
            &format!("HEAD /b.txt [If-Modified-Since: {LAST_MODIFIED}] -> HTTP/1.1 304"),
            &format!("GET /b.txt [If-Modified-Since: {EARLIER}] -> HTTP/1.1 200 OK"),
            &format!("GET /b.txt [If-Modified-Since: {LATER}] -> HTTP/1.1 200 OK"),
            &format!("GET /before/b.txt [If-Modified-Since: {LATER}] -> HTTP/1.1 304"),
            &format!("GET /off/b.txt [If-Modified-Since: {LAST_MODIFIED}] -> HTTP/1.1 200 OK"),
            &format!("GET /b.txt [If-None-Match: {b}] -> HTTP/1.1 304"),
            "GET /b.txt [If-None-Match: \"other\"] -> HTTP/1.1 200 OK",
            "GET /b.txt [If-None-Match: *] -> HTTP/1.1 304",
            "GET /b.txt [If-Match: \"other\"] -> HTTP/1.1 412 Precondition Failed",
            &format!("GET /b.txt [If-Unmodified-Since: {EARLIER}] -> HTTP/1.1 412"),
            &format!(
                "GET /noetag/b.txt [] -> HTTP/1.1 200 OK | Content-Type: text/plain | Content-Length: 9 | Last-Modified: {LAST_MODIFIED} | Accept-Ranges: bytes |"
            ),
        ],
        &[],
    );
}

#[test]
fn ranges_match_nginx() {
    let digits = etag(FILES[2].1);
    let server = "        root {dir}/files;\n\
                  \x20       location / { }\n";
    let range = |r: &str| format!("Range: {r}");
    let asks = [
        get("/digits.txt").with(range("bytes=0-3")),
        get("/digits.txt").with(range("bytes=-5")),
        get("/digits.txt").with(range("bytes=3-")),
        get("/digits.txt").with(range("bytes=0-100")),
        get("/digits.txt").with(range("bytes=-100")),
        get("/digits.txt").with(range("bytes=1000-")),
        get("/digits.txt").with(range("bytes=5-2")),
        get("/digits.txt").with(range("items=0-1")),
        head("/digits.txt").with(range("bytes=0-3")),
        get("/digits.txt")
            .with(range("bytes=0-3"))
            .with(format!("If-Range: {digits}")),
        get("/digits.txt")
            .with(range("bytes=0-3"))
            .with("If-Range: \"other\""),
        get("/digits.txt")
            .with(range("bytes=0-3"))
            .with(format!("If-Range: {LAST_MODIFIED}")),
        get("/digits.txt")
            .with(range("bytes=0-3"))
            .with(format!("If-Range: {EARLIER}")),
        get("/empty.txt").with(range("bytes=0-0")),
        get("/digits.txt").with(range("bytes=0-1,4-5")),
    ];
    check(
        server,
        &asks,
        &[
            "[Range: bytes=0-3] -> HTTP/1.1 206 Partial Content | Content-Type: text/plain | Content-Length: 4 | Last-Modified: Tue, 14 Nov 2023 22:13:20 GMT | ETag: \"6553f100-11\" | Content-Range: bytes 0-3/17 | body: \"0123\"",
            "Content-Range: bytes 12-16/17 | body: \"cdef\\n\"",
            "Content-Range: bytes 3-16/17",
            "Content-Range: bytes 0-16/17",
            "[Range: bytes=1000-] -> HTTP/1.1 416 Requested Range Not Satisfiable",
            "Content-Range: bytes */17",
            "[Range: items=0-1] -> HTTP/1.1 200 OK",
            "HEAD /digits.txt [Range: bytes=0-3] -> HTTP/1.1 206",
            "[Range: bytes=0-3; If-Range: \"6553f100-11\"] -> HTTP/1.1 206",
            "[Range: bytes=0-3; If-Range: \"other\"] -> HTTP/1.1 200 OK",
            "[Range: bytes=0-3; If-Range: Tue, 14 Nov 2023 22:13:20 GMT] -> HTTP/1.1 206",
            "[Range: bytes=0-3; If-Range: Mon, 13 Nov 2023 22:13:20 GMT] -> HTTP/1.1 200 OK",
            "Content-Type: multipart/byteranges; boundary=BOUNDARY | Content-Length: (the body's)",
            "Content-Range: bytes 0-1/17\\r\\n\\r\\n01\\r\\n--BOUNDARY",
        ],
        &[],
    );
}

/// `max_ranges`: 0 turns ranges off (no Accept-Ranges either); past the
/// limit of satisfiable ranges, the whole file.
#[test]
fn max_ranges_match_nginx() {
    let server = "        root {dir}/files;\n\
                  \x20       max_ranges 2;\n\
                  \x20       location / { }\n\
                  \x20       location /off/ { alias {dir}/files/; max_ranges 0; }\n\
                  \x20       location /one/ { alias {dir}/files/; max_ranges 1; }\n";
    let range = |r: &str| format!("Range: {r}");
    let asks = [
        get("/digits.txt").with(range("bytes=0-1,4-5")),
        get("/digits.txt").with(range("bytes=0-1,4-5,8-9")),
        get("/off/digits.txt"),
        get("/off/digits.txt").with(range("bytes=0-3")),
        get("/off/digits.txt").with(range("bytes=1000-")),
        get("/one/digits.txt").with(range("bytes=0-3")),
        get("/one/digits.txt").with(range("bytes=0-1,4-5")),
        // An unsatisfiable range does not count.
        get("/one/digits.txt").with(range("bytes=1000-,0-1")),
        get("/one/digits.txt").with(range("bytes=1000-")),
    ];
    check(
        server,
        &asks,
        &[
            "GET /digits.txt [Range: bytes=0-1,4-5] -> HTTP/1.1 206",
            "GET /digits.txt [Range: bytes=0-1,4-5,8-9] -> HTTP/1.1 200 OK",
            "GET /off/digits.txt [] -> HTTP/1.1 200 OK | Content-Type: text/plain | Content-Length: 17 | Last-Modified: Tue, 14 Nov 2023 22:13:20 GMT | ETag: \"6553f100-11\" | body:",
            "GET /off/digits.txt [Range: bytes=0-3] -> HTTP/1.1 200 OK",
            "GET /off/digits.txt [Range: bytes=1000-] -> HTTP/1.1 200 OK",
            "GET /one/digits.txt [Range: bytes=0-3] -> HTTP/1.1 206",
            "GET /one/digits.txt [Range: bytes=0-1,4-5] -> HTTP/1.1 200 OK | Content-Type: text/plain | Content-Length: 17 | Last-Modified: Tue, 14 Nov 2023 22:13:20 GMT | ETag: \"6553f100-11\" | Accept-Ranges: bytes",
            "GET /one/digits.txt [Range: bytes=1000-,0-1] -> HTTP/1.1 206",
            "GET /one/digits.txt [Range: bytes=1000-] -> HTTP/1.1 416",
        ],
        &[],
    );
}

#[test]
fn server_root_and_50x_page_match_nginx() {
    let dead = free_port();
    let server = format!(
        "        root {{dir}}/files;\n\
         \x20       index index.html index.htm;\n\
         \x20       error_page 500 502 503 504 /50x.html;\n\
         \x20       location = /50x.html {{ root {{dir}}/pages; }}\n\
         \x20       location /api/ {{ proxy_pass http://127.0.0.1:{dead}; }}\n"
    );
    let page = PAGE_50X;
    let asks = [
        get("/a.html"),
        get("/sub/"),
        get("/nope"),
        get("/api/x"),
        head("/api/x"),
        get("/50x.html"),
    ];
    check(
        &server,
        &asks,
        &[
            "GET /a.html [] -> HTTP/1.1 200 OK | Content-Type: text/html | Content-Length: 9",
            "sub index",
            "GET /nope [] -> HTTP/1.1 404 Not Found",
            &format!("GET /api/x [] -> HTTP/1.1 502 Bad Gateway | Content-Type: text/html | Content-Length: {}", page.len()),
            &format!("body: {page:?}"),
            "HEAD /api/x [] -> HTTP/1.1 502 Bad Gateway",
            "GET /50x.html [] -> HTTP/1.1 200 OK",
        ],
        &[open_failed("DIR/files/nope", ENOENT, "GET /nope HTTP/1.1")],
    );
}

/// A location's lines in a server of the http block: its first line is
/// line 7.
fn in_location(location: &str, lines: &str) -> String {
    format!(
        "http {{\n    server {{\n        location {location} {{\n{lines}        }}\n    }}\n}}\n"
    )
}

#[test]
fn config_errors_match_nginx() {
    let cases: Vec<(String, String)> = vec![
        (
            "http {\n    server {\n        alias /tmp/;\n    }\n}\n".into(),
            "[emerg] \"alias\" directive is not allowed here in CONF:6 (exit Some(1))".into(),
        ),
        (
            in_location("/", "            root /a;\n            root /b;\n"),
            "[emerg] \"root\" directive is duplicate in CONF:8 (exit Some(1))".into(),
        ),
        (
            in_location("/", "            alias /a/;\n            root /b;\n"),
            "[emerg] \"root\" directive is duplicate, \"alias\" directive was specified earlier in CONF:8 (exit Some(1))".into(),
        ),
        (
            in_location("/", "            root /a;\n            alias /b/;\n"),
            "[emerg] \"alias\" directive is duplicate, \"root\" directive was specified earlier in CONF:8 (exit Some(1))".into(),
        ),
        (
            in_location("/", "            alias /a/;\n            alias /b/;\n"),
            "[emerg] \"alias\" directive is duplicate in CONF:8 (exit Some(1))".into(),
        ),
        (
            in_location("@n", "            alias /a/;\n"),
            "[emerg] the \"alias\" directive cannot be used inside the named location in CONF:7 (exit Some(1))".into(),
        ),
        (
            in_location("/", "            try_files $uri;\n"),
            "[emerg] invalid number of arguments in \"try_files\" directive in CONF:7 (exit Some(1))".into(),
        ),
        (
            in_location("/", "            try_files $uri =abc;\n"),
            "[emerg] invalid code \"=abc\" in CONF:7 (exit Some(1))".into(),
        ),
        (
            in_location("/", "            root $document_root/x;\n"),
            "[emerg] the $document_root variable cannot be used in the \"root\" directive in CONF:7 (exit Some(1))".into(),
        ),
        (
            in_location("/", "            index \"\";\n"),
            "[emerg] index \"\" in \"index\" directive is invalid in CONF:7 (exit Some(1))".into(),
        ),
        (
            in_location("/", "            if_modified_since sometimes;\n"),
            "[emerg] invalid value \"sometimes\" in CONF:7 (exit Some(1))".into(),
        ),
        (
            in_location("/", "            log_not_found maybe;\n"),
            "[emerg] invalid value \"maybe\" in \"log_not_found\" directive, it must be \"on\" or \"off\" in CONF:7 (exit Some(1))".into(),
        ),
        (
            in_location("/", "            etag maybe;\n"),
            "[emerg] invalid value \"maybe\" in \"etag\" directive, it must be \"on\" or \"off\" in CONF:7 (exit Some(1))".into(),
        ),
        (
            in_location("/", "            autoindex_format yaml;\n"),
            "[emerg] invalid value \"yaml\" in CONF:7 (exit Some(1))".into(),
        ),
        (
            in_location("/", "            max_ranges -1;\n"),
            "[emerg] \"max_ranges\" directive invalid number in CONF:7 (exit Some(1))".into(),
        ),
        (
            in_location("/", "            gzip_static maybe;\n"),
            "[emerg] invalid value \"maybe\" in CONF:7 (exit Some(1))".into(),
        ),
        (
            in_location("/", "            gzip_static on; gzip_static off;\n"),
            "[emerg] \"gzip_static\" directive is duplicate in CONF:7 (exit Some(1))".into(),
        ),
        (
            in_location("/", "            autoindex maybe;\n"),
            "[emerg] invalid value \"maybe\" in \"autoindex\" directive, it must be \"on\" or \"off\" in CONF:7 (exit Some(1))".into(),
        ),
        // Every directive where it may be.
        (
            "http {\n\
             \x20   root /srv;\n\
             \x20   autoindex on;\n\
             \x20   gzip_static Always;\n\
             \x20   autoindex_localtime on;\n\
             \x20   index index.html index.htm;\n\
             \x20   log_not_found off;\n\
             \x20   etag off;\n\
             \x20   if_modified_since before;\n\
             \x20   server {\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       root /srv/www;\n\
             \x20       try_files $uri $uri/ =404;\n\
             \x20       location / { root html; index a b /c; try_files $uri @n; }\n\
             \x20       location /s/ { alias /srv/s/; if_modified_since exact; etag on; autoindex_exact_size off; autoindex_format html; }\n\
             \x20       location ~ ^/r/(.*)$ { alias /srv/r/$1; }\n\
             \x20       location @n { root /srv/n; log_not_found on; }\n\
             \x20   }\n\
             }\n"
            .into(),
            "ok (exit Some(0))".into(),
        ),
    ];
    let cases: Vec<(String, String, Waypost)> = cases
        .into_iter()
        .map(|(conf, want)| (conf, want, Waypost::Same))
        .collect();
    assert_t_cases("static-conf", &cases);
}

/// An answer of [`shown`] with its body as its length and a digest: a
/// file too large to print.
fn digested(answer: &str) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let Some((head, body)) = answer.split_once(" | body: ") else {
        return answer.to_owned();
    };
    let mut hasher = DefaultHasher::new();
    body.hash(&mut hasher);
    format!(
        "{head} | body: {} chars, digest {:x}",
        body.len(),
        hasher.finish()
    )
}

/// `gzip_static on|always` as nginx's: `PATH.gz` as it is, with
/// `Content-Encoding: gzip`, the URI's type and the `.gz` file's length,
/// time and ETag, to a request that takes gzip (its version, `Via` under
/// `gzip_proxied`), or to any with `always`; `Vary` with `gzip_vary on`,
/// on the plain file too where a `.gz` was there for a client that did
/// not take it; conditions on the `.gz`, and no ranges (nginx allows
/// none there); a `.gz` alone; a `.gz` that is a directory is passed
/// over.
#[test]
fn gzip_static_matches_nginx() {
    let tree = tree();
    write_files(
        &tree.path,
        &[
            ("files/app.js", "var plain = 1;\n"),
            ("files/app.js.gz", "not really gzip, nginx does not look\n"),
            ("files/only.css.gz", "gz alone\n"),
            ("files/d.txt", "dee\n"),
            ("files/d.txt.gz/inside", "a directory named .gz\n"),
        ],
    );
    let server = "        root {dir}/files;\n\
                  \x20       location /on/ { alias {dir}/files/; gzip_static on; }\n\
                  \x20       location /vary/ { alias {dir}/files/; gzip_static on; gzip_vary on; }\n\
                  \x20       location /always/ { alias {dir}/files/; gzip_static always; gzip_vary on; }\n\
                  \x20       location /v10/ { alias {dir}/files/; gzip_static on; gzip_http_version 1.0; }\n\
                  \x20       location /px/ { alias {dir}/files/; gzip_static on; gzip_proxied any; }\n\
                  \x20       location /ua/ { alias {dir}/files/; gzip_static on; gzip_disable \"curl\"; }\n\
                  \x20       location /both/ {\n\
                  \x20           alias {dir}/files/;\n\
                  \x20           gzip on; gzip_static on; gzip_vary on; gzip_types *; gzip_min_length 1;\n\
                  \x20           gzip_proxied no_etag;\n\
                  \x20       }\n";
    let gz = "Accept-Encoding: gzip, deflate";
    let asks = [
        get("/on/app.js").with(gz),
        get("/on/app.js"),
        get("/on/app.js").with("Accept-Encoding: gzip;q=0"),
        head("/on/app.js").with(gz),
        get("/vary/app.js").with(gz),
        get("/vary/app.js"),
        get("/vary/b.txt").with(gz),
        get("/always/app.js"),
        get("/on/only.css").with(gz),
        get("/on/only.css"),
        get("/on/d.txt").with(gz),
        get("/on/app.js").with(gz).with("Range: bytes=0-2"),
        get("/on/app.js")
            .with(gz)
            .with(format!("If-Modified-Since: {LAST_MODIFIED}")),
        get("/on/app.js")
            .with(gz)
            .with("If-None-Match: \"6553f100-25\""),
        get("/vary/app.js")
            .with(gz)
            .with("If-None-Match: \"6553f100-25\""),
        get("/vary/app.js").with("If-None-Match: \"6553f100-f\""),
        get("/on/app.js").with(gz).with("If-Match: \"nope\""),
        get("/on/app.js").with(gz).http10(),
        get("/v10/app.js").with(gz).http10(),
        get("/on/app.js").with(gz).with("Via: 1.1 cache"),
        get("/px/app.js").with(gz).with("Via: 1.1 cache"),
        get("/ua/app.js").with(gz).with("User-Agent: curl/8"),
        ask("POST", "/on/app.js").with(gz),
        // With the gzip filter too: one Vary, whichever asks for it; and
        // gzip_static's answer on the request (taken before the file's
        // ETag existed) is the filter's.
        get("/both/app.js"),
        get("/both/b.txt"),
        get("/both/only.css"),
        head("/both/d.txt").with(gz).with("Via: 1.1 cache"),
    ];
    let theirs = run(true, &tree.path, server, &asks);
    let ours = run(false, &tree.path, server, &asks);
    assert_runs_as_nginx(
        &ours,
        &theirs,
        &[
            "Content-Length: 37 | Last-Modified: Tue, 14 Nov 2023 22:13:20 GMT | ETag: \"6553f100-25\" | Content-Encoding: gzip | body: \"not really gzip",
            "Vary: Accept-Encoding | body: \"var plain",
            "GET /on/only.css [] -> HTTP/1.1 404",
            "Range: bytes=0-2] -> HTTP/1.1 200 OK",
            "HTTP/1.1 304 Not Modified",
        ],
        &["/on/only.css", "/both/only.css"].map(|uri| {
            format!("[error] open() \"DIR/files/only.css\" failed (2: No such file or directory), client: 127.0.0.1, server: , request: \"GET {uri} HTTP/1.1\", host: \"h\"")
        }),
    );
}

/// A file past what is read whole with its opening (256 KB): sent in
/// pieces as it is read, whole, by ranges and as multipart ranges.
#[test]
fn large_files_match_nginx() {
    let tree = tree();
    let big: String = (0..700_000u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    write_files(&tree.path, &[("files/big.txt", &big)]);
    let server = "        root {dir}/files;\n\
                  \x20       location / { }\n";
    let asks = [
        get("/big.txt"),
        head("/big.txt"),
        get("/big.txt").with("Range: bytes=300000-300009"),
        get("/big.txt").with("Range: bytes=-10"),
        get("/big.txt").with("Range: bytes=100-"),
        get("/big.txt").with("Range: bytes=0-1,699990-699999"),
    ];
    let theirs = run(true, &tree.path, server, &asks);
    let ours = run(false, &tree.path, server, &asks);
    let digest = |run: &Run| -> Run {
        (
            run.0.iter().map(|a| digested(a)).collect(),
            run.1.clone(),
            run.2.clone(),
        )
    };
    assert_same_runs(
        &digest(&ours),
        &digest(&theirs),
        &[
            "GET /big.txt [] -> HTTP/1.1 200 OK | Content-Type: text/plain | Content-Length: 700000",
            "Content-Range: bytes 300000-300009/700000 | body: 12 chars",
            "Content-Range: bytes 699990-699999/700000",
            "Content-Range: bytes 100-699999/700000",
            "multipart/byteranges",
        ],
    );
}

/// Edges a review found: `error_page ... =200` keeps a file's 304 and 206;
/// a `try_files` fallback that is no path (`http://...` from the query) is a
/// URI no location takes, not another host; a fallback keeps its `..`; a
/// link loop is 403; a directory's 301 escapes `"`.
#[test]
fn redirect_edges_match_nginx() {
    let a = etag(FILES[0].1);
    let server = "        root {dir}/files;\n\
                  \x20       location / { }\n\
                  \x20       location /spa/ { error_page 404 =200 /a.html; }\n\
                  \x20       location /tfx/ { try_files $uri $arg_f; }\n\
                  \x20       location /tfn/ { try_files $uri /nope/../a.html; }\n";
    let asks = [
        get("/spa/x"),
        get("/spa/x").with(format!("If-None-Match: {a}")),
        get("/spa/x").with("Range: bytes=0-1"),
        get("/tfx/q?f=http://evil.example/sub"),
        get("/tfn/q"),
        get("/loop1"),
        get("/d%22q"),
    ];
    check(
        server,
        &asks,
        &[
            "GET /spa/x [] -> HTTP/1.1 200 OK | Content-Type: text/html | Content-Length: 9",
            "GET /spa/x [If-None-Match: \"6553f100-9\"] -> HTTP/1.1 304 Not Modified",
            "GET /spa/x [Range: bytes=0-1] -> HTTP/1.1 206 Partial Content",
            "GET /tfx/q?f=http://evil.example/sub [] -> HTTP/1.1 404 Not Found",
            "GET /tfn/q [] -> HTTP/1.1 404 Not Found",
            "GET /loop1 [] -> HTTP/1.1 403 Forbidden",
            "Location: http://h:PORT/d%22q/",
        ],
        &[
            open_failed("DIR/files/spa/x", ENOENT, "GET /spa/x HTTP/1.1"),
            open_failed("DIR/files/spa/x", ENOENT, "GET /spa/x HTTP/1.1"),
            open_failed("DIR/files/spa/x", ENOENT, "GET /spa/x HTTP/1.1"),
            open_failed(
                "DIR/fileshttp://evil.example/sub",
                ENOENT,
                "GET /tfx/q?f=http://evil.example/sub HTTP/1.1",
            ),
            open_failed("DIR/files/nope/../a.html", ENOENT, "GET /tfn/q HTTP/1.1"),
            open_failed(
                "DIR/files/loop1",
                "40: Too many levels of symbolic links",
                "GET /loop1 HTTP/1.1",
            ),
        ],
    );
}

/// `autoindex on` as nginx's, to the byte: a directory without an index
/// file is listed (`../`, directories then files by name, hidden names
/// left out, names escaped in the link and the text, cut at 50 bytes,
/// a broken link as itself), with `autoindex_exact_size off` sizes
/// rounded; POST still gets 403, and a directory with an index file its
/// index. The page goes without a length, as nginx's: chunked, or up to
/// the close for HTTP/1.0.
#[test]
fn autoindex_matches_nginx() {
    let tree = TempDir::new("autoindex");
    let long = format!("{}.txt", "l".repeat(56));
    let edge = format!("{}.txt", "e".repeat(46));
    let files: Vec<(String, &str)> = vec![
        ("auto/a.txt".into(), "a\n"),
        ("auto/B.txt".into(), "bee\n"),
        ("auto/.hidden".into(), "no\n"),
        ("auto/d\"q&<x>.txt".into(), "special\n"),
        ("auto/with space.txt".into(), "space\n"),
        ("auto/caf\u{e9}.txt".into(), "utf-8\n"),
        (format!("auto/{long}"), "long\n"),
        (format!("auto/{edge}"), "fifty\n"),
        ("auto/sub/f.txt".into(), "in sub\n"),
        ("auto/idx/index.html".into(), "<p>index</p>\n"),
        (format!("auto/{}/f", "D".repeat(52)), "deep\n"),
        (format!("auto/{}", "\u{e9}".repeat(50)), "fifty\n"),
        (format!("auto/{}", "\u{e9}".repeat(52)), "fifty-two\n"),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    write_files(&tree.path, &files);
    let auto = tree.path.join("auto");
    std::fs::create_dir_all(auto.join("empty dir")).expect("mkdir");
    // Sizes at nginx's rounding edges (sparse files), listed rounded in
    // `sub/`.
    for (name, size) in [
        ("big.bin", 5 * 1024 * 1024 + 700 * 1024),
        ("sub/g.bin", 3 * 1024 * 1024 * 1024 + 512 * 1024 * 1024),
        ("sub/m.bin", 1024 * 1024 + 511 * 1024),
        ("sub/k.bin", 10_000),
        ("sub/j.bin", 9_999),
        ("sub/h.bin", 20 * 1024 + 512),
    ] {
        std::fs::File::create(auto.join(name))
            .and_then(|f| f.set_len(size))
            .expect("sparse file");
    }
    std::os::unix::fs::symlink(auto.join("nowhere"), auto.join("broken")).expect("symlink");
    // Every entry's time, links and directories too, as the files'.
    let times = [libc::timespec {
        tv_sec: MTIME as libc::time_t,
        tv_nsec: 0,
    }; 2];
    let entries = std::fs::read_dir(&auto).expect("read_dir");
    let in_sub = std::fs::read_dir(auto.join("sub")).expect("read_dir");
    for entry in entries.chain(in_sub).flatten() {
        let path =
            std::ffi::CString::new(entry.path().as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: a valid path and two timespecs, as utimensat(2) takes.
        let set = unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                path.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        assert_eq!(set, 0, "utimensat {}", entry.path().display());
    }
    let http = |port: u16| {
        format!(
            "    server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       root {dir};\n\
             \x20       location /auto/ {{ autoindex on; }}\n\
             \x20       location /auto/sub/ {{ autoindex on; autoindex_exact_size off; }}\n\
             \x20       location /utf8/ {{ alias {dir}/auto/; charset utf-8; autoindex on; }}\n\
             \x20       location /js/ {{ alias {dir}/auto/; autoindex on; autoindex_format json; }}\n\
             \x20       location /xm/ {{ alias {dir}/auto/; autoindex on; autoindex_format xml; }}\n\
             \x20       location /jp/ {{ alias {dir}/auto/; autoindex on; autoindex_format jsonp; }}\n\
             \x20   }}\n",
            dir = tree.path.display()
        )
    };
    let run = |nginx: bool| -> Vec<String> {
        let (_server, port) = either_on_a_port(nginx, http);
        let mut answers: Vec<String> = [
            "/auto/",
            "/auto/sub/",
            "/auto/empty%20dir/",
            "/auto/idx/",
            "/utf8/",
            "/js/",
            "/xm/",
            "/jp/?callback=cb.x_1",
            "/jp/",
            "/jp/?callback=a-b",
        ]
        .iter()
        .map(|path| {
            let reply = waypost_tests::KeepAlive::connect(port).get(path);
            format!(
                "{path} -> {} {:?} length {:?} {:?}\n{}",
                reply.status,
                reply.header("Content-Type"),
                // (An error page's length names the server.)
                reply
                    .header("Content-Length")
                    .filter(|_| reply.status == 200),
                reply.header("Transfer-Encoding"),
                neutral_server(&reply.body)
            )
        })
        .collect();
        // The framing as written: the page has no length, so it is
        // chunked for HTTP/1.1, sent up to the close for HTTP/1.0, and a
        // HEAD gets neither.
        let framing = |answer: &str| -> Vec<String> {
            let head = answer.split_once("\r\n\r\n").map_or(answer, |(h, _)| h);
            head.lines()
                .filter(|l| {
                    let l = l.to_ascii_lowercase();
                    l.starts_with("content-length")
                        || l.starts_with("transfer-encoding")
                        || l.starts_with("connection")
                })
                .map(str::to_owned)
                .collect()
        };
        for (method, version, body) in [
            ("HEAD", "1.1", "Content-Length: 0\r\n"),
            ("POST", "1.1", "Content-Length: 0\r\n"),
            ("GET", "1.1", ""),
            ("GET", "1.0", ""),
        ] {
            let answer = exchange(
                port,
                &format!(
                    "{method} /auto/ HTTP/{version}\r\nHost: h\r\n{body}Connection: close\r\n\r\n"
                ),
            );
            let status = answer.lines().next().unwrap_or_default().to_owned();
            let body = neutral_server(body_of(&answer));
            let framing = if status.contains(" 200 ") {
                framing(&answer)
            } else {
                Vec::new()
            };
            answers.push(format!(
                "{method} /auto/ HTTP/{version} -> {status} {framing:?} {body:?}"
            ));
        }
        answers
    };
    let theirs = run(true);
    assert!(
        theirs[0].contains("<a href=\"d%22q%26%3Cx%3E.txt\">d&quot;q&amp;&lt;x&gt;.txt</a>"),
        "{}",
        theirs[0]
    );
    assert!(theirs[0].contains("..&gt;</a>"), "{}", theirs[0]);
    let ours = run(false);
    for (ours, theirs) in ours.iter().zip(&theirs) {
        assert_eq!(ours, theirs);
    }
    assert_eq!(ours.len(), theirs.len());
}

/// `empty_gif` side by side with nginx: the same 43 bytes with its type,
/// length and Last-Modified; HEAD; 405 for a POST; 304 and 412 for the
/// conditions nginx's not_modified filter takes; `expires` and
/// `add_header` on it; `error_page` to it, with and without `=`.
#[test]
fn empty_gif_as_nginx() {
    use waypost_tests::{exchange, free_ports, wrap_http, Server};
    let asks = [
        "GET /pixel.gif HTTP/1.0\r\n\r\n",
        "HEAD /pixel.gif HTTP/1.0\r\n\r\n",
        "POST /pixel.gif HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
        "GET /pixel.gif HTTP/1.0\r\nIf-Modified-Since: Mon, 28 Sep 1970 06:00:00 GMT\r\n\r\n",
        "GET /pixel.gif HTTP/1.0\r\nIf-Modified-Since: Sun, 27 Sep 1970 06:00:00 GMT\r\n\r\n",
        "GET /pixel.gif HTTP/1.0\r\nIf-Unmodified-Since: Sun, 27 Sep 1970 06:00:00 GMT\r\n\r\n",
        "GET /pixel.gif HTTP/1.0\r\nIf-None-Match: *\r\n\r\n",
        "GET /pixel.gif HTTP/1.0\r\nIf-Match: \"x\"\r\n\r\n",
        "GET /missing HTTP/1.0\r\n\r\n",
        "GET /keep/missing HTTP/1.0\r\nIf-Modified-Since: Mon, 28 Sep 1970 06:00:00 GMT\r\n\r\n",
    ];
    let run = |nginx: bool| {
        let [port] = free_ports(1)[..] else {
            unreachable!()
        };
        let conf = wrap_http(
            &format!(
                "    server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       location = /pixel.gif {{ empty_gif; expires 1h; add_header X-Pixel 1; }}\n\
                 \x20       location / {{ error_page 404 = /pixel.gif; }}\n\
                 \x20       location /keep/ {{ error_page 404 /pixel.gif; }}\n\
                 \x20   }}\n"
            ),
            nginx,
        );
        let _server = Server::either(nginx, &conf, &[port]);
        asks.iter()
            .map(|ask| {
                let answer = exchange(port, ask);
                let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
                // (An error page's length has the server's name in it.)
                let page = head.contains("text/html");
                let mut lines: Vec<&str> = head
                    .lines()
                    .filter(|l| {
                        let l = l.to_ascii_lowercase();
                        let hidden = ["server:", "date:", "expires:", "connection:"];
                        !(hidden.iter().any(|h| l.starts_with(h))
                            || page && l.starts_with("content-length:"))
                    })
                    .collect();
                lines.sort();
                format!("{} | {body:?}", lines.join(" | ")).replace("nginx/1.22.1", "SERVER")
            })
            .collect::<Vec<_>>()
    };
    let ours = run(false);
    let theirs = run(true);
    // (The 405 page names the server.)
    let neutral = |v: Vec<String>| -> Vec<String> {
        v.into_iter()
            .map(|a| a.replace("waypost", "SERVER").replace("nginx", "SERVER"))
            .collect()
    };
    let (ours, theirs) = (neutral(ours), neutral(theirs));
    assert_eq!(ours, theirs, "waypost (left), nginx (right)");
    assert!(
        theirs[0].starts_with("Cache-Control: max-age=3600 | Content-Length: 43 | Content-Type: image/gif | HTTP/1.1 200 OK | Last-Modified: Mon, 28 Sep 1970 06:00:00 GMT | X-Pixel: 1 | \"GIF89a"),
        "{}",
        theirs[0]
    );
    assert!(theirs[3].contains("304 Not Modified"), "{}", theirs[3]);
    assert!(
        theirs[5].contains("412 Precondition Failed"),
        "{}",
        theirs[5]
    );
    // Its status kept (no `=`): no Last-Modified, no condition.
    assert!(
        theirs[9].contains("404 Not Found") && !theirs[9].contains("Last-Modified"),
        "{}",
        theirs[9]
    );
}

/// `random_index` side by side with nginx: a directory's one regular file
/// (its dot files and subdirectories passed over) through an internal
/// redirect (`$uri` in the log is the file's); a directory without any
/// declines to `index`; a missing one is a 404 with nginx's error line;
/// one of three files.
#[test]
fn random_index_as_nginx() {
    use waypost_tests::{exchange, free_ports, request_lines, wrap_http, Server, TempDir};
    let tree = TempDir::new("random-index");
    for (path, text) in [
        ("r/one/a.txt", "a\n"),
        ("r/one/.hidden", "hidden\n"),
        ("r/one/sub/b.txt", "b\n"),
        ("r/empty/sub/c.txt", "c\n"),
        ("r/three/x.txt", "x\n"),
        ("r/three/y.txt", "y\n"),
        ("r/three/z.txt", "z\n"),
    ] {
        let file = tree.path.join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(file, text).expect("write");
    }
    let run = |nginx: bool| {
        let [port] = free_ports(1)[..] else {
            unreachable!()
        };
        let conf = wrap_http(
            &format!(
                "    log_format ri '$request_uri $uri $status';\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       access_log logs/ri.log ri;\n\
                 \x20       root {};\n\
                 \x20       location /r/ {{ random_index on; }}\n\
                 \x20   }}\n",
                tree.path.display()
            ),
            nginx,
        );
        let server = Server::either(nginx, &conf, &[port]);
        let mut answers: Vec<String> = ["/r/one/", "/r/one/?q=1", "/r/empty/", "/r/missing/"]
            .iter()
            .map(|path| {
                let answer = exchange(port, &format!("GET {path} HTTP/1.0\r\n\r\n"));
                let status = answer.split(' ').nth(1).unwrap_or("").to_owned();
                let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
                match status.as_str() {
                    "200" => format!("{status} {body:?}"),
                    _ => status,
                }
            })
            .collect();
        let three = exchange(port, "GET /r/three/ HTTP/1.0\r\n\r\n");
        answers.push(
            ["x\n", "y\n", "z\n"]
                .iter()
                .any(|b| three.ends_with(&format!("\r\n\r\n{b}")))
                .to_string(),
        );
        let log = server.wait_lines("logs/ri.log", 5);
        let errors: Vec<String> = request_lines(&server.read("logs/error.log"))
            .into_iter()
            .map(|l| l.replace(&tree.path.display().to_string(), "DIR"))
            .collect();
        (answers, log[..4].to_vec(), errors)
    };
    let ours = run(false);
    let theirs = run(true);
    assert_eq!(ours, theirs, "waypost (left), nginx (right)");
    assert_eq!(
        theirs.0,
        ["200 \"a\\n\"", "200 \"a\\n\"", "403", "404", "true"]
    );
    assert_eq!(theirs.1[0], "/r/one/ /r/one/a.txt 200");
    assert!(
        theirs.2.iter().any(|l| l.starts_with(
            "[error] opendir() \"DIR/r/missing\" failed (2: No such file or directory)"
        )),
        "{:?}",
        theirs.2
    );
}

/// `disable_symlinks` beside nginx: with `on`, a link to a file (403), a
/// link to a directory on the way, a root that is a link, unless
/// `from=$document_root` leaves it out, and a link `try_files` tests;
/// with `if_not_owner`, a link whose owner is its target's, and (as
/// root) one whose owner is not. The error log's `openat()` lines too.
#[test]
fn disable_symlinks_matches_nginx() {
    use std::os::unix::fs::symlink;
    let tree = tree();
    let d = &tree.path;
    let files = d.join("files");
    write_files(
        d,
        &[
            ("real/r/a.html", "<p>r</p>\n"),
            ("real/s/a.html", "<p>s</p>\n"),
            ("files/o/t.txt", "owned\n"),
            ("files/t/a.txt", "tried\n"),
        ],
    );
    symlink(files.join("a.html"), files.join("la.html")).expect("symlink");
    symlink(files.join("sub"), files.join("lsub")).expect("symlink");
    symlink(d.join("real"), d.join("lroot")).expect("symlink");
    symlink("t.txt", files.join("o/same.txt")).expect("symlink");
    symlink("a.txt", files.join("t/l.txt")).expect("symlink");
    let mut asks = vec![
        get("/a.html"),
        get("/la.html"),
        get("/lsub/c.css"),
        get("/lsub/"),
        get("/missing.html"),
        get("/r/a.html"),
        get("/s/a.html"),
        get("/o/same.txt"),
        get("/t/l.txt"),
        get("/t/a.txt"),
    ];
    // A link of another owner (as root only: the tests may run as any).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        symlink("t.txt", files.join("o/other.txt")).expect("symlink");
        let name = std::ffi::CString::new(files.join("o/other.txt").as_os_str().as_encoded_bytes())
            .expect("path");
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::lchown(name.as_ptr(), 65534, 65534) }, 0);
        asks.push(get("/o/other.txt"));
    }
    let server = "        root {dir}/files;\n\
                  \x20       disable_symlinks on;\n\
                  \x20       location / { }\n\
                  \x20       location /r/ { root {dir}/lroot; disable_symlinks on from=$document_root; }\n\
                  \x20       location /s/ { root {dir}/lroot; }\n\
                  \x20       location /o/ { disable_symlinks if_not_owner; }\n\
                  \x20       location /t/ { try_files $uri =404; }\n";
    let theirs = run(true, &tree.path, server, &asks);
    let ours = run(false, &tree.path, server, &asks);
    assert_same_runs(
        &ours,
        &theirs,
        &[
            "GET /a.html [] -> HTTP/1.1 200 OK",
            "GET /la.html [] -> HTTP/1.1 403 Forbidden",
            "GET /r/a.html [] -> HTTP/1.1 200 OK",
            "GET /o/same.txt [] -> HTTP/1.1 200 OK",
        ],
    );
    assert!(
        ours.2.iter().any(|l| l.contains(
            "openat() \"DIR/files/la.html\" failed (40: Too many levels of symbolic links)"
        )),
        "{:#?}",
        ours.2
    );
}
