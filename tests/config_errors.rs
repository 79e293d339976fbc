//! Configuration errors, side by side with nginx.
//!
//! Every case is written to its own directory and checked with `nginx -t`
//! and `waypost -t`. Both must print the same report: the `[emerg]` line
//! (message, file and line) and nginx's trailer, after the leading
//! `nginx:`/`waypost:`; and both must exit with the same code. Each case
//! also states the expected report, so a change in either program shows.
//!
//! nginx runs with `-e logs/early.log` so that it prints `nginx: [emerg] ...`
//! on stderr (this build logs to stderr by default, in the log file format).
//! `[warn]` lines are compared too (`low address bits ...`, `duplicate
//! MIME type ...`); nginx's `[notice]` and `[info]` lines are not.

use std::path::Path;
use std::process::Output;

use waypost_tests::{assert_no_failures, free_port, run_nginx, run_waypost, TempDir};

/// The main file's name in each case's directory.
const CONF: &str = "test.conf";

/// The first lines of most cases: the error log and pid file inside the
/// test directory (lines 1 and 2), then an `events` block (line 3).
const HEAD: &str = "error_log logs/error.log;\npid logs/t.pid;\nevents {}\n";

/// What `-t` should report.
#[derive(Clone, Copy)]
enum Expect {
    /// `syntax is ok`, `test is successful`.
    Ok,
    /// An error found while parsing: the `[emerg]` message, then `test failed`.
    Emerg(&'static str),
    /// An error nginx finds after parsing: `syntax is ok` comes first.
    EmergAfterParse(&'static str),
    /// A `[warn]` line while parsing, then success.
    Warn(&'static str),
}

struct Case {
    name: &'static str,
    /// The main file. `{port}` becomes a free port.
    conf: String,
    /// Other files of the case, by name.
    files: &'static [(&'static str, &'static str)],
    /// `-g` directives.
    globals: Option<&'static str>,
    /// Whether the case depends on running as root (`user`).
    root_only: bool,
    /// Messages may name `{dir}`, the case's directory, and `{conf}`, the
    /// main file.
    expect: Expect,
}

impl Case {
    fn new(name: &'static str, conf: impl Into<String>, expect: Expect) -> Case {
        Case {
            name,
            conf: conf.into(),
            files: &[],
            globals: None,
            root_only: false,
            expect,
        }
    }

    /// A case whose main file is [`HEAD`] followed by `rest` (from line 4).
    fn head(name: &'static str, rest: &str, expect: Expect) -> Case {
        Case::new(name, format!("{HEAD}{rest}"), expect)
    }

    fn files(mut self, files: &'static [(&'static str, &'static str)]) -> Case {
        self.files = files;
        self
    }

    fn globals(mut self, globals: &'static str) -> Case {
        self.globals = Some(globals);
        self
    }

    fn root_only(mut self) -> Case {
        self.root_only = true;
        self
    }
}

use Expect::{Emerg, EmergAfterParse, Warn};

fn cases() -> Vec<Case> {
    vec![
        // The success report.
        Case::new(
            "good config",
            "worker_processes 1;\n\
             error_log logs/error.log warn;\n\
             pid logs/t.pid;\n\
             daemon OFF;\n\
             events { worker_connections 64; }\n\
             http {\n\
             \x20   log_format up '$remote_addr $upstream_addr'\n\
             \x20                 ' $status';\n\
             \x20   access_log logs/access.log up;\n\
             \x20   keepalive_timeout 30s 20;\n\
             \x20   upstream u {\n\
             \x20       server 127.0.0.1:1 weight=5 max_fails=3 fail_timeout=1m30s;\n\
             \x20       server 127.0.0.1:2 max_conns=10;\n\
             \x20       server 127.0.0.1:3 backup;\n\
             \x20       server 127.0.0.1:4 down;\n\
             \x20       keepalive 8;\n\
             \x20   }\n\
             \x20   server {\n\
             \x20       listen 127.0.0.1:{port} default_server backlog=128;\n\
             \x20       server_name example.com *.example.com;\n\
             \x20       location / {\n\
             \x20           proxy_pass http://u;\n\
             \x20           proxy_set_header Host $host;\n\
             \x20           proxy_http_version 1.1;\n\
             \x20           proxy_next_upstream error timeout;\n\
             \x20           proxy_next_upstream http_502;\n\
             \x20           proxy_connect_timeout 500ms;\n\
             \x20           location /api/ { proxy_pass http://127.0.0.1:5/v1/; }\n\
             \x20       }\n\
             \x20       location = /health { return 200 \"ok\\n\"; }\n\
             \x20       location =/exact { return 204; }\n\
             \x20   }\n\
             \x20   include servers/*.conf;\n\
             }\n",
            Expect::Ok,
        )
        .files(&[(
            "servers/other.conf",
            "server {\n    listen 127.0.0.1:{port};\n    server_name other;\n    return 301 http://example.com/;\n}\n",
        )]),
        // The core messages of ngx_conf_file.c.
        Case::head(
            "unknown directive",
            "foo bar;\n",
            Emerg("unknown directive \"foo\" in {conf}:4"),
        ),
        Case::head(
            "directive not allowed here",
            "http {\n    worker_processes 2;\n}\n",
            Emerg("\"worker_processes\" directive is not allowed here in {conf}:5"),
        ),
        Case::head(
            "invalid number of arguments",
            "worker_processes;\n",
            Emerg("invalid number of arguments in \"worker_processes\" directive in {conf}:4"),
        ),
        Case::head(
            "not terminated by a semicolon",
            "worker_processes 1 {\n}\n",
            Emerg("directive \"worker_processes\" is not terminated by \";\" in {conf}:4"),
        ),
        Case::head(
            "block without an opening brace",
            "http\n;\n",
            Emerg("directive \"http\" has no opening \"{\" in {conf}:5"),
        ),
        Case::head(
            "unexpected closing brace",
            "}\n",
            Emerg("unexpected \"}\" in {conf}:4"),
        ),
        Case::head(
            "missing semicolon before a closing brace",
            "http {\n    upstream u {\n        server 127.0.0.1:1\n    }\n}\n",
            Emerg("unexpected \"}\" in {conf}:7"),
        ),
        Case::head(
            "end of file inside a block",
            "http {\n    server {\n        listen 127.0.0.1:{port};\n    }\n",
            Emerg("unexpected end of file, expecting \"}\" in {conf}:8"),
        ),
        Case::head(
            "end of file inside a directive",
            "http {\n    server\n",
            Emerg("unexpected end of file, expecting \";\" or \"}\" in {conf}:6"),
        ),
        Case::head(
            "multi-line directive is located at its semicolon",
            "http {\n    upstream u {\n        server\n            127.0.0.1:1\n            weight=0\n        ;\n    }\n}\n",
            Emerg("invalid parameter \"weight=0\" in {conf}:9"),
        ),
        Case::head(
            "flag with an invalid value",
            "daemon maybe;\n",
            Emerg("invalid value \"maybe\" in \"daemon\" directive, it must be \"on\" or \"off\" in {conf}:4"),
        ),
        Case::head(
            "duplicate main directive",
            "worker_processes 1;\nworker_processes 2;\n",
            Emerg("\"worker_processes\" directive is duplicate in {conf}:5"),
        ),
        Case::head(
            "duplicate proxy_pass",
            "http {\n    server {\n        listen 127.0.0.1:{port};\n        location / {\n            proxy_pass http://127.0.0.1:1;\n            proxy_pass http://127.0.0.1:2;\n        }\n    }\n}\n",
            Emerg("\"proxy_pass\" directive is duplicate in {conf}:9"),
        ),
        Case::head(
            "duplicate flag before its invalid value",
            "http {\n    sendfile on;\n    sendfile maybe;\n}\n",
            Emerg("\"sendfile\" directive is duplicate in {conf}:6"),
        ),
        // Upstreams.
        Case::head(
            "duplicate upstream",
            "http {\n    upstream u { server 127.0.0.1:1; }\n    upstream U { server 127.0.0.1:2; }\n}\n",
            Emerg("duplicate upstream \"U\" in {conf}:6"),
        ),
        Case::head(
            "zero weight",
            "http {\n    upstream u {\n        server 127.0.0.1:1 weight=0;\n    }\n}\n",
            Emerg("invalid parameter \"weight=0\" in {conf}:6"),
        ),
        Case::head(
            "unknown server parameter",
            "http {\n    upstream u {\n        server 127.0.0.1:1 foo;\n    }\n}\n",
            Emerg("invalid parameter \"foo\" in {conf}:6"),
        ),
        Case::head(
            "fail_timeout is in seconds",
            "http {\n    upstream u {\n        server 127.0.0.1:1 fail_timeout=500ms;\n    }\n}\n",
            Emerg("invalid parameter \"fail_timeout=500ms\" in {conf}:6"),
        ),
        Case::head(
            "server port zero",
            "http {\n    upstream u {\n        server 127.0.0.1:0;\n    }\n}\n",
            Emerg("invalid port in upstream \"127.0.0.1:0\" in {conf}:6"),
        ),
        Case::head(
            "server with a URI",
            "http {\n    upstream u {\n        server http://127.0.0.1;\n    }\n}\n",
            Emerg("invalid host in upstream \"http://127.0.0.1\" in {conf}:6"),
        ),
        Case::head(
            "balancer without backup servers",
            "http {\n    upstream u {\n        hash $arg_a;\n        server 127.0.0.1:1;\n        server 127.0.0.1:2 backup;\n    }\n}\n",
            Emerg("balancing method does not support parameter \"backup\" in {conf}:8"),
        ),
        Case::head(
            "invalid balancer argument",
            "http {\n    upstream u {\n        server 127.0.0.1:1;\n        hash $arg_a sometimes;\n    }\n}\n",
            Emerg("invalid parameter \"sometimes\" in {conf}:7"),
        ),
        Case::head(
            "only backup servers",
            "http {\n    upstream u {\n        server 127.0.0.1:1 backup;\n    }\n}\n",
            Emerg("no servers in upstream \"u\" in {conf}:5"),
        ),
        Case::head(
            "no servers, reported at the closing brace",
            "http {\n    upstream u {\n        keepalive 2;\n\n    }\n}\n",
            Emerg("no servers are inside upstream in {conf}:8"),
        ),
        Case::head(
            "host not found on a server line",
            "http {\n    upstream u {\n        server nosuch.invalid:80;\n    }\n}\n",
            Emerg("host not found in upstream \"nosuch.invalid:80\" in {conf}:6"),
        ),
        Case::head(
            "host not found in proxy_pass",
            "http {\n    server {\n        listen 127.0.0.1:{port};\n        location / {\n            proxy_pass http://nosuch.invalid:8080/x;\n        }\n    }\n}\n",
            Emerg("host not found in upstream \"nosuch.invalid\" in {conf}:8"),
        ),
        Case::head(
            "proxy_pass to an upstream block with a port",
            "http {\n    server {\n        listen 127.0.0.1:{port};\n        location / { proxy_pass http://u:8080; }\n    }\n    upstream u { server 127.0.0.1:1; }\n}\n",
            Emerg("upstream \"u\" may not have port 8080 in {conf}:7"),
        ),
        Case::head(
            "upstream names are case-insensitive",
            "http {\n    server {\n        listen 127.0.0.1:{port};\n        location / { proxy_pass http://U; }\n    }\n    upstream u {\n    }\n}\n",
            Emerg("no servers are inside upstream in {conf}:10"),
        ),
        Case::head(
            "zone without a size",
            "http {\n    upstream u {\n        zone backends;\n        server 127.0.0.1:1;\n    }\n}\n",
            EmergAfterParse("zero size shared memory zone \"backends\""),
        ),
        Case::head(
            "zone too small",
            "http {\n    upstream u {\n        zone backends 16k;\n        server 127.0.0.1:1;\n    }\n}\n",
            Emerg("zone \"backends\" is too small in {conf}:6"),
        ),
        // Servers and locations.
        Case::head(
            "proxy_pass with an unknown scheme",
            "http {\n    server {\n        listen 127.0.0.1:{port};\n        location / { proxy_pass ftp://x; }\n    }\n}\n",
            Emerg("invalid URL prefix in {conf}:7"),
        ),
        Case::head(
            "proxy_pass with an invalid port",
            "http {\n    server {\n        listen 127.0.0.1:{port};\n        location / { proxy_pass http://127.0.0.1:x/foo; }\n    }\n}\n",
            Emerg("invalid port in upstream \"127.0.0.1:x/foo\" in {conf}:7"),
        ),
        Case::head(
            "duplicate location, reported at the end of http",
            "http {\n    server {\n        listen 127.0.0.1:{port};\n        location /a { }\n        location ^~ /a { }\n    }\n}\n",
            Emerg("duplicate location \"/a\" in {conf}:8"),
        ),
        Case::head(
            "nested location outside its parent",
            "http {\n    server {\n        listen 127.0.0.1:{port};\n        location /a {\n            location /b { }\n        }\n    }\n}\n",
            Emerg("location \"/b\" is outside location \"/a\" in {conf}:8"),
        ),
        Case::head(
            "duplicate listen in one server",
            "http {\n    server {\n        listen 127.0.0.1:{port};\n        listen 127.0.0.1:{port};\n    }\n}\n",
            Emerg("a duplicate listen 127.0.0.1:{port} in {conf}:7"),
        ),
        Case::head(
            "duplicate default server",
            "http {\n    server { listen 127.0.0.1:{port} default_server; }\n    server { listen 127.0.0.1:{port} default_server; }\n}\n",
            Emerg("a duplicate default server for 127.0.0.1:{port} in {conf}:6"),
        ),
        Case::head(
            "invalid backlog",
            "http {\n    server { listen 127.0.0.1:{port} backlog=-1; }\n}\n",
            Emerg("invalid backlog \"backlog=-1\" in {conf}:5"),
        ),
        Case::head(
            "so_keepalive not a time",
            "http {\n    server { listen 127.0.0.1:{port} so_keepalive=1x:2:3; }\n}\n",
            Emerg("invalid so_keepalive value: \"1x:2:3\" in {conf}:5"),
        ),
        Case::head(
            "so_keepalive all empty",
            "http {\n    server { listen 127.0.0.1:{port} so_keepalive=::; }\n}\n",
            Emerg("invalid so_keepalive value: \"::\" in {conf}:5"),
        ),
        Case::head(
            "so_keepalive count not a number",
            "http {\n    server { listen 127.0.0.1:{port} so_keepalive=30s::x; }\n}\n",
            Emerg("invalid so_keepalive value: \"30s::x\" in {conf}:5"),
        ),
        Case::head(
            "invalid rcvbuf",
            "http {\n    server { listen 127.0.0.1:{port} rcvbuf=1q; }\n}\n",
            Emerg("invalid rcvbuf \"rcvbuf=1q\" in {conf}:5"),
        ),
        Case::head(
            "invalid sndbuf",
            "http {\n    server { listen 127.0.0.1:{port} sndbuf=x; }\n}\n",
            Emerg("invalid sndbuf \"sndbuf=x\" in {conf}:5"),
        ),
        Case::head(
            "invalid fastopen",
            "http {\n    server { listen 127.0.0.1:{port} fastopen=-1; }\n}\n",
            Emerg("invalid fastopen \"fastopen=-1\" in {conf}:5"),
        ),
        Case::head(
            "invalid ipv6only",
            "http {\n    server { listen 127.0.0.1:{port} ipv6only=ox; }\n}\n",
            Emerg("invalid ipv6only flags \"ox\" in {conf}:5"),
        ),
        Case::head(
            "ipv6only without o",
            "http {\n    server { listen 127.0.0.1:{port} ipv6only=yes; }\n}\n",
            Emerg("invalid parameter \"ipv6only=yes\" in {conf}:5"),
        ),
        // Values.
        Case::head(
            "invalid time",
            "http {\n    keepalive_timeout 10 500ms;\n}\n",
            Emerg("\"keepalive_timeout\" directive invalid value in {conf}:5"),
        ),
        Case::head(
            "keepalive_time not a time",
            "http {\n    keepalive_time x;\n}\n",
            Emerg("\"keepalive_time\" directive invalid value in {conf}:5"),
        ),
        Case::head(
            "invalid number",
            "http {\n    keepalive_requests many;\n}\n",
            Emerg("\"keepalive_requests\" directive invalid number in {conf}:5"),
        ),
        Case::head(
            "large_client_header_buffers count",
            "http {\n    large_client_header_buffers 0 8k;\n}\n",
            Emerg("\"large_client_header_buffers\" directive invalid value in {conf}:5"),
        ),
        Case::head(
            "large_client_header_buffers size",
            "http {\n    large_client_header_buffers 4 x;\n}\n",
            Emerg("\"large_client_header_buffers\" directive invalid value in {conf}:5"),
        ),
        Case::head(
            "large_client_header_buffers twice",
            "http {\n    large_client_header_buffers 4 8k;\n    large_client_header_buffers 4 8k;\n}\n",
            Emerg("\"large_client_header_buffers\" directive is duplicate in {conf}:6"),
        ),
        Case::head(
            "large_client_header_buffers below connection_pool_size",
            "http {\n    server {\n        listen 127.0.0.1:{port};\n        large_client_header_buffers 4 511;\n    }\n}\n",
            Emerg("the \"large_client_header_buffers\" size must be equal to or greater than \"connection_pool_size\" in {conf}:9"),
        ),
        // Debian's stock http block, with the hash sizes nginx configs
        // often set.
        Case::head(
            "Debian's http block",
            "http {\n    sendfile on;\n    tcp_nopush on;\n    types_hash_max_size 2048;\n    server_names_hash_bucket_size 64;\n    include /etc/nginx/mime.types;\n    default_type application/octet-stream;\n    ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;\n    ssl_prefer_server_ciphers on;\n    gzip on;\n    gzip_vary on;\n    gzip_proxied any;\n    gzip_comp_level 6;\n    gzip_buffers 16 8k;\n    gzip_http_version 1.1;\n    gzip_types text/plain text/css application/json application/javascript text/xml application/xml application/xml+rss text/javascript;\n    server {\n        listen 127.0.0.1:{port};\n        proxy_headers_hash_max_size 1024;\n        location / { types_hash_bucket_size 128; proxy_pass http://127.0.0.1:1; include /etc/nginx/proxy_params; }\n    }\n}\n",
            Expect::Ok,
        ),
        Case::head(
            "tuning directives nginx files carry",
            "http {\n    open_file_cache max=1000 inactive=20s;\n    open_file_cache_valid 30s;\n    open_file_cache_min_uses 2;\n    open_file_cache_errors on;\n    open_log_file_cache max=10;\n    output_buffers 1 32k;\n    proxy_ignore_client_abort off;\n    chunked_transfer_encoding on;\n    log_subrequest off;\n    postpone_output 1460;\n    server {\n        listen 127.0.0.1:{port};\n        send_lowat 0;\n        read_ahead 0;\n        sendfile_max_chunk 1m;\n        location / { directio 4m; directio_alignment 512; open_file_cache off; return 204; }\n    }\n}\n",
            Warn("\"send_lowat\" is not supported, ignored in {conf}:17"),
        ),
        Case::head(
            "an obsolete HTTP/2 directive",
            "http {\n    http2_idle_timeout 3m;\n}\n",
            Warn("the \"http2_idle_timeout\" directive is obsolete, use the \"keepalive_timeout\" directive instead in {conf}:5"),
        ),
        Case::head(
            "limit_except with a method nginx does not know",
            "http {\n    server {\n        listen 127.0.0.1:{port};\n        location / { limit_except GET FETCH { deny all; } }\n    }\n}\n",
            Emerg("invalid method \"FETCH\" in {conf}:7"),
        ),
        Case::head(
            "limit_except twice in a location",
            "http {\n    server {\n        listen 127.0.0.1:{port};\n        location / {\n            limit_except GET { deny all; }\n            limit_except POST { deny all; }\n        }\n    }\n}\n",
            Emerg("\"limit_except\" directive is duplicate in {conf}:9"),
        ),
        Case::head(
            "a tuning directive's bad value",
            "http {\n    postpone_output abc;\n}\n",
            Emerg("\"postpone_output\" directive invalid value in {conf}:5"),
        ),
        Case::head(
            "open_file_cache's unknown parameter",
            "http {\n    open_file_cache foo;\n}\n",
            Emerg("invalid \"open_file_cache\" parameter \"foo\" in {conf}:5"),
        ),
        Case::head(
            "add_header with an unknown third word",
            "http {\n    add_header X a sometimes;\n}\n",
            Emerg("invalid parameter \"sometimes\" in {conf}:5"),
        ),
        Case::head(
            "add_header at every level",
            "http {\n    add_header X-A a;\n    server {\n        listen 127.0.0.1:{port};\n        add_header X-B \"$host b\" always;\n        location / { add_header Strict-Transport-Security \"max-age=31536000; includeSubDomains\" always; return 200; }\n    }\n}\n",
            Expect::Ok,
        ),
        Case::head(
            "allow with a host name",
            "http {\n    server {\n        listen 127.0.0.1:{port};\n        allow localhost;\n    }\n}\n",
            Emerg("invalid parameter \"localhost\" in {conf}:7"),
        ),
        Case::head(
            "deny with a prefix too long",
            "http {\n    deny 10.0.0.0/33;\n}\n",
            Emerg("invalid parameter \"10.0.0.0/33\" in {conf}:5"),
        ),
        Case::head(
            "deny ALL in capitals",
            "http {\n    server {\n        location / { deny ALL; }\n    }\n}\n",
            Emerg("invalid parameter \"ALL\" in {conf}:6"),
        ),
        Case::head(
            "allow with a bracketed address",
            "http {\n    allow [::1];\n}\n",
            Emerg("invalid parameter \"[::1]\" in {conf}:5"),
        ),
        Case::head(
            "deny with two addresses",
            "http {\n    deny 10.0.0.1 10.0.0.2;\n}\n",
            Emerg("invalid number of arguments in \"deny\" directive in {conf}:5"),
        ),
        Case::head(
            "allow in an upstream",
            "http {\n    upstream u {\n        server 127.0.0.1:1;\n        allow all;\n    }\n}\n",
            Emerg("\"allow\" directive is not allowed here in {conf}:7"),
        ),
        Case::head(
            "allow and deny at every level",
            "http {\n    allow 127.0.0.1;\n    server {\n        listen 127.0.0.1:{port};\n        allow ::1;\n        allow unix:;\n        deny 10.0.0.0/8;\n        location / { allow 192.168.0.0/16; allow fe80::/10; deny all; return 200; }\n    }\n}\n",
            Expect::Ok,
        ),
        Case::head(
            "map: default twice",
            "http {\n    map $uri $m {\n        default a;\n        default b;\n    }\n}\n",
            Emerg("duplicate default map parameter in {conf}:7"),
        ),
        Case::head(
            "map: a key twice, without case",
            "http {\n    map $uri $m {\n        K 1;\n        k 2;\n    }\n}\n",
            Emerg("conflicting parameter \"k\" in {conf}:7"),
        ),
        Case::head(
            "map: a line of one word",
            "http {\n    map $uri $m {\n        key;\n    }\n}\n",
            Emerg("invalid number of the map parameters in {conf}:6"),
        ),
        Case::head(
            "map: a line of three words",
            "http {\n    map $uri $m {\n        a b c;\n    }\n}\n",
            Emerg("invalid number of the map parameters in {conf}:6"),
        ),
        Case::head(
            "map: a name without $",
            "http {\n    map $uri m {\n    }\n}\n",
            Emerg("invalid variable name \"m\" in {conf}:5"),
        ),
        Case::head(
            "map: a built-in variable",
            "http {\n    map $uri $Host {\n    }\n}\n",
            Emerg("the duplicate \"Host\" variable in {conf}:5"),
        ),
        Case::head(
            "map: in a server",
            "http {\n    server {\n        map $uri $m { }\n    }\n}\n",
            Emerg("\"map\" directive is not allowed here in {conf}:6"),
        ),
        Case::head(
            "map: three arguments",
            "http {\n    map $uri $m $n { }\n}\n",
            Emerg("invalid number of arguments in \"map\" directive in {conf}:5"),
        ),
        Case::head(
            "map: no block",
            "http {\n    map $uri $m;\n}\n",
            Emerg("directive \"map\" has no opening \"{\" in {conf}:5"),
        ),
        Case::head(
            "map: a wildcard in the middle",
            "http {\n    map $host $m {\n        hostnames;\n        a.*.com 1;\n    }\n}\n",
            Emerg("invalid hostname or wildcard \"a.*.com\" in {conf}:7"),
        ),
        Case::head(
            "map: .name after *.name",
            "http {\n    map $host $m {\n        hostnames;\n        *.a.com 1;\n        .a.com 2;\n    }\n}\n",
            Emerg("conflicting parameter \".a.com\" in {conf}:8"),
        ),
        Case::head(
            "map: .name after the name",
            "http {\n    map $host $m {\n        hostnames;\n        a.com 1;\n        .a.com 2;\n    }\n}\n",
            Emerg("conflicting parameter \".a.com\" in {conf}:8"),
        ),
        Case::head(
            "map: what nginx takes",
            "http {\n    map $uri $arg_x { default 1; }\n    map $host $m {\n        hostnames;\n        volatile;\n        *.a.com 1;\n        www.a.* 2;\n        ~^(?<sub>.+)\\.b\\.com$ $sub;\n        ~*^C 3;\n        \\hostnames 4;\n        '' 5;\n        *.x $n;\n    }\n    map $uri $m { default $n; }\n    map $uri $n { }\n    server {\n        listen 127.0.0.1:{port};\n        location / { return 200 \"$m $n $arg_x\"; }\n    }\n}\n",
            Expect::Ok,
        ),
        Case::head(
            "regex location: proxy_pass with a URI",
            "http {\n    server {\n        listen 127.0.0.1:{port};\n        location ~ ^/x {\n            proxy_pass http://127.0.0.1:1/y;\n        }\n    }\n}\n",
            Emerg("\"proxy_pass\" cannot have URI part in location given by regular expression, or inside named location, or inside \"if\" statement, or inside \"limit_except\" block in {conf}:8"),
        ),
        Case::head(
            "regex location: a prefix inside",
            "http {\n    server {\n        location ~ x {\n            location /y { }\n        }\n    }\n}\n",
            Emerg("location \"/y\" is outside location \"x\" in {conf}:7"),
        ),
        Case::head(
            "regex locations nginx takes",
            "http {\n    server {\n        listen 127.0.0.1:{port};\n        location ~* \\.(gif|jpg)$ { return 204; }\n        location ~\\.php$ { return 204; }\n        location ~*\\.TXT$ { return 204; }\n        location ~ \\.php$ { return 204; }\n        location /a { location ~ ^/a/(?<rest>.*) { return 200 $1; } }\n        location ^~ /static/ { return 204; }\n    }\n}\n",
            Expect::Ok,
        ),
        Case::head(
            "ssl_session_cache: an unknown word",
            "http {\n    ssl_session_cache foo;\n}\n",
            Emerg("invalid session cache \"foo\" in {conf}:5"),
        ),
        Case::head(
            "ssl_session_cache: shared without a size",
            "http {\n    ssl_session_cache shared:X;\n}\n",
            Emerg("invalid session cache \"shared:X\" in {conf}:5"),
        ),
        Case::head(
            "ssl_session_cache: too small",
            "http {\n    server {\n        ssl_session_cache shared:X:1k;\n    }\n}\n",
            Emerg("session cache \"shared:X:1k\" is too small in {conf}:6"),
        ),
        Case::head(
            "ssl_session_cache: builtin with a bad number",
            "http {\n    ssl_session_cache builtin:abc;\n}\n",
            Emerg("invalid session cache \"builtin:abc\" in {conf}:5"),
        ),
        Case::head(
            "ssl_session_tickets: not a flag",
            "http {\n    ssl_session_tickets maybe;\n}\n",
            Emerg("invalid value \"maybe\" in \"ssl_session_tickets\" directive, it must be \"on\" or \"off\" in {conf}:5"),
        ),
        Case::head(
            "ssl_ciphers twice",
            "http {\n    ssl_ciphers HIGH;\n    ssl_ciphers HIGH;\n}\n",
            Emerg("\"ssl_ciphers\" directive is duplicate in {conf}:6"),
        ),
        Case::head(
            "certbot's TLS lines",
            "http {\n    ssl_session_cache shared:le_nginx_SSL:10m;\n    ssl_session_timeout 1440m;\n    ssl_session_tickets off;\n    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_prefer_server_ciphers off;\n    ssl_ciphers \"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384\";\n    server {\n        listen 127.0.0.1:{port};\n        ssl_session_cache off builtin;\n    }\n}\n",
            Expect::Ok,
        ),
        Case::head(
            "proxy_buffering: not a flag",
            "http {\n    proxy_buffering maybe;\n}\n",
            Emerg("invalid value \"maybe\" in \"proxy_buffering\" directive, it must be \"on\" or \"off\" in {conf}:5"),
        ),
        Case::head(
            "proxy_buffer_size: not a size",
            "http {\n    proxy_buffer_size 1g;\n}\n",
            Emerg("\"proxy_buffer_size\" directive invalid value in {conf}:5"),
        ),
        Case::head(
            "proxy_buffers: one argument",
            "http {\n    proxy_buffers 8;\n}\n",
            Emerg("invalid number of arguments in \"proxy_buffers\" directive in {conf}:5"),
        ),
        Case::head(
            "proxy_buffers: none",
            "http {\n    proxy_buffers 0 4k;\n}\n",
            Emerg("\"proxy_buffers\" directive invalid value in {conf}:5"),
        ),
        Case::head(
            "proxy_temp_path: a level of 0",
            "http {\n    proxy_temp_path /tmp/x 0;\n}\n",
            Emerg("\"proxy_temp_path\" directive invalid value in {conf}:5"),
        ),
        Case::head(
            "proxy_buffer_size twice",
            "http {\n    proxy_buffer_size 4k;\n    proxy_buffer_size 8k;\n}\n",
            Emerg("\"proxy_buffer_size\" directive is duplicate in {conf}:6"),
        ),
        Case::head(
            "proxy_busy_buffers_size past the buffers",
            "http {\n    server {\n        listen 127.0.0.1:{port};\n        location / {\n            proxy_busy_buffers_size 1m;\n            proxy_pass http://127.0.0.1:1;\n        }\n    }\n}\n",
            Emerg("\"proxy_busy_buffers_size\" must be less than the size of all \"proxy_buffers\" minus one buffer in {conf}:12"),
        ),
        Case::head(
            "proxy_buffer_size past the buffers' room",
            "http {\n    proxy_buffers 3 4k;\n    server {\n        listen 127.0.0.1:{port};\n        proxy_buffer_size 8k;\n    }\n}\n",
            Emerg("\"proxy_busy_buffers_size\" must be less than the size of all \"proxy_buffers\" minus one buffer in {conf}:10"),
        ),
        Case::head(
            "proxy_temp_file_write_size below a buffer",
            "http {\n    server {\n        listen 127.0.0.1:{port};\n        proxy_temp_file_write_size 2k;\n    }\n}\n",
            Emerg("\"proxy_temp_file_write_size\" must be equal to or greater than the maximum of the value of \"proxy_buffer_size\" and one of the \"proxy_buffers\" in {conf}:9"),
        ),
        Case::head(
            "proxy_max_temp_file_size below a buffer",
            "http {\n    server {\n        listen 127.0.0.1:{port};\n        location / { proxy_max_temp_file_size 2k; }\n    }\n}\n",
            Emerg("\"proxy_max_temp_file_size\" must be equal to zero to disable temporary files usage or must be equal to or greater than the maximum of the value of \"proxy_buffer_size\" and one of the \"proxy_buffers\" in {conf}:9"),
        ),
        Case::head(
            "proxy buffering lines nginx takes",
            "http {\n    proxy_buffering off;\n    proxy_request_buffering off;\n    client_body_buffer_size 128k;\n    client_body_temp_path /tmp/body 1 2;\n    server {\n        listen 127.0.0.1:{port};\n        proxy_buffer_size 16k;\n        proxy_buffers 4 32k;\n        proxy_busy_buffers_size 64k;\n        location / {\n            proxy_buffering on;\n            proxy_max_temp_file_size 0;\n            proxy_temp_file_write_size 64k;\n            proxy_temp_path /tmp/proxy 1 2;\n            proxy_pass http://127.0.0.1:1;\n        }\n    }\n}\n",
            Expect::Ok,
        ),
        Case::head(
            "gzip_comp_level out of range",
            "http {\n    gzip_comp_level 10;\n}\n",
            Emerg("value must be between 1 and 9 in {conf}:5"),
        ),
        Case::head(
            "gzip_comp_level not a number",
            "http {\n    gzip_comp_level x;\n}\n",
            Emerg("\"gzip_comp_level\" directive invalid number in {conf}:5"),
        ),
        Case::head(
            "gzip_min_length not a size",
            "http {\n    gzip_min_length x;\n}\n",
            Emerg("\"gzip_min_length\" directive invalid value in {conf}:5"),
        ),
        Case::head(
            "gzip_proxied: an unknown word",
            "http {\n    gzip_proxied expired foo;\n}\n",
            Emerg("invalid value \"foo\" in {conf}:5"),
        ),
        Case::head(
            "gzip_http_version 2.0",
            "http {\n    gzip_http_version 2.0;\n}\n",
            Emerg("invalid value \"2.0\" in {conf}:5"),
        ),
        Case::head(
            "gzip_buffers: one argument",
            "http {\n    gzip_buffers 16;\n}\n",
            Emerg("invalid number of arguments in \"gzip_buffers\" directive in {conf}:5"),
        ),
        Case::head(
            "gzip_vary: not a flag",
            "http {\n    gzip_vary maybe;\n}\n",
            Emerg("invalid value \"maybe\" in \"gzip_vary\" directive, it must be \"on\" or \"off\" in {conf}:5"),
        ),
        Case::head(
            "gzip_comp_level twice",
            "http {\n    gzip_comp_level 2;\n    gzip_comp_level 3;\n}\n",
            Emerg("\"gzip_comp_level\" directive is duplicate in {conf}:6"),
        ),
        Case::head(
            "gzip lines nginx takes",
            "http {\n    gzip on;\n    gzip_types text/css;\n    gzip_types text/xml *;\n    gzip_proxied any;\n    gzip_proxied off;\n    gzip_disable msie6 \"MSIE [1-6]\\.\";\n    gzip_disable \"^curl\";\n    server {\n        listen 127.0.0.1:{port};\n        location / { gzip off; gzip_min_length 1k; }\n    }\n}\n",
            Expect::Ok,
        ),
        Case::head(
            "geo networks and proxies",
            "http {\n    geo $g { default a; 10.0.0.0/8 b; ::1 c; 255.255.255.255 d; proxy 10.0.0.0/8; proxy_recursive; delete ::1; include geo_extra.conf; }\n    geo $arg_ip $h { }\n}\n",
            Expect::Ok,
        )
        .files(&[("geo_extra.conf", "192.168.0.0/16 e;\n")]),
        Case::head(
            "proxy_ssl_protocols with a bad value",
            "http {\n    proxy_ssl_protocols TLSv1.3 bogus;\n}\n",
            Emerg("invalid value \"bogus\" in {conf}:5"),
        ),
        Case::head(
            "proxy_ssl_session_reuse not a flag",
            "http {\n    proxy_ssl_session_reuse maybe;\n}\n",
            Emerg("invalid value \"maybe\" in \"proxy_ssl_session_reuse\" directive, it must be \"on\" or \"off\" in {conf}:5"),
        ),
        Case::head(
            "proxy_ssl_certificate where no TLS is used",
            "http {\n    server {\n        listen 127.0.0.1:{port};\n        location / { proxy_pass http://127.0.0.1:1; proxy_ssl_certificate nokey.pem; }\n    }\n}\n",
            Expect::Ok,
        ),
        Case::head(
            "proxy_bind forms nginx takes",
            "http {\n    proxy_bind 127.0.0.1 transparent;\n    server {\n        listen 127.0.0.1:{port};\n        location / { proxy_bind $arg_x; proxy_socket_keepalive on; }\n        location /o { proxy_bind off; }\n    }\n}\n",
            Expect::Ok,
        ),
        Case::head(
            "proxy_bind not an address",
            "http {\n    proxy_bind x;\n}\n",
            Emerg("invalid address \"x\" in {conf}:5"),
        ),
        Case::head(
            "proxy_bind with a bad parameter",
            "http {\n    proxy_bind 127.0.0.1 bogus;\n}\n",
            Emerg("invalid parameter \"bogus\" in {conf}:5"),
        ),
        Case::head(
            "proxy_socket_keepalive not a flag",
            "http {\n    proxy_socket_keepalive maybe;\n}\n",
            Emerg("invalid value \"maybe\" in \"proxy_socket_keepalive\" directive, it must be \"on\" or \"off\" in {conf}:5"),
        ),
        Case::head(
            "limit_rate at every level",
            "http {\n    limit_rate 1k;\n    limit_rate_after 1m;\n    server {\n        listen 127.0.0.1:{port};\n        limit_rate 0;\n        location / { limit_rate 512; }\n    }\n}\n",
            Expect::Ok,
        ),
        Case::head(
            "limit_rate not a size",
            "http {\n    limit_rate x;\n}\n",
            Emerg("\"limit_rate\" directive invalid value in {conf}:5"),
        ),
        Case::head(
            "limit_rate_after not a size",
            "http {\n    limit_rate_after 1g;\n}\n",
            Emerg("\"limit_rate_after\" directive invalid value in {conf}:5"),
        ),
        Case::head(
            "limit_rate twice",
            "http {\n    limit_rate 1k;\n    limit_rate 2k;\n}\n",
            Emerg("\"limit_rate\" directive is duplicate in {conf}:6"),
        ),
        Case::head(
            "split_clients shares nginx takes",
            "http {\n    split_clients $remote_addr $s { .5% a; 5.% b; 10% c d; 50% e; * f; }\n}\n",
            Expect::Ok,
        ),
        Case::head(
            "split_clients without a $",
            "http {\n    split_clients $remote_addr s { }\n}\n",
            Emerg("invalid variable name \"s\" in {conf}:5"),
        ),
        Case::head(
            "split_clients of a builtin variable",
            "http {\n    split_clients $remote_addr $remote_addr { }\n}\n",
            Emerg("the duplicate \"remote_addr\" variable in {conf}:5"),
        ),
        Case::head(
            "split_clients with three decimals",
            "http {\n    split_clients $remote_addr $s { 0.555% a; }\n}\n",
            Emerg("invalid percent value \"0.555%\" in {conf}:5"),
        ),
        Case::head(
            "split_clients with no percent sign",
            "http {\n    split_clients $remote_addr $s { 50 a; }\n}\n",
            Emerg("invalid percent value \"50\" in {conf}:5"),
        ),
        Case::head(
            "split_clients with 0%",
            "http {\n    split_clients $remote_addr $s { 0% a; }\n}\n",
            Emerg("invalid percent value \"0%\" in {conf}:5"),
        ),
        Case::head(
            "split_clients over 100%",
            "http {\n    split_clients $remote_addr $s {\n        60% a;\n        50% b;\n    }\n}\n",
            Emerg("percent total is greater than 100% in {conf}:8"),
        ),
        Case::head(
            "split_clients with a share after *",
            "http {\n    split_clients $remote_addr $s { * a; 10% b; }\n}\n",
            Emerg("percent total is greater than 100% in {conf}:5"),
        ),
        Case::head(
            "geo without a $",
            "http {\n    geo g { }\n}\n",
            Emerg("invalid variable name \"g\" in {conf}:5"),
        ),
        Case::head(
            "geo with three arguments",
            "http {\n    geo $a $b $c { }\n}\n",
            Emerg("invalid number of arguments in \"geo\" directive in {conf}:5"),
        ),
        Case::head(
            "geo of a builtin variable",
            "http {\n    geo $remote_addr { }\n}\n",
            Emerg("the duplicate \"remote_addr\" variable in {conf}:5"),
        ),
        Case::head(
            "geo with a bad network",
            "http {\n    geo $g { x a; }\n}\n",
            Emerg("invalid network \"x\" in {conf}:5"),
        ),
        Case::head(
            "geo with a bad prefix",
            "http {\n    geo $g { 10.0.0.0/33 a; }\n}\n",
            Emerg("invalid network \"10.0.0.0/33\" in {conf}:5"),
        ),
        Case::head(
            "geo deleting default",
            "http {\n    geo $g { delete default; }\n}\n",
            Emerg("invalid network \"default\" in {conf}:5"),
        ),
        Case::head(
            "geo line with two values",
            "http {\n    geo $g { 10.0.0.0/8 a b; }\n}\n",
            Emerg("invalid number of the geo parameters in {conf}:5"),
        ),
        Case::head(
            "geo line without a value",
            "http {\n    geo $g { 10.0.0.0/8; }\n}\n",
            Emerg("invalid number of the geo parameters in {conf}:5"),
        ),
        Case::head(
            "geo with a block inside",
            "http {\n    geo $g { 10.0.0.0/8 { } }\n}\n",
            Emerg("unexpected \"{\" in {conf}:5"),
        ),
        Case::head(
            "map with a block inside",
            "http {\n    map $a $m { x { } }\n}\n",
            Emerg("unexpected \"{\" in {conf}:5"),
        ),
        Case::head(
            "geo with a bad proxy",
            "http {\n    geo $g { proxy x; }\n}\n",
            Emerg("invalid network \"x\" in {conf}:5"),
        ),
        Case::head(
            "geo with low address bits",
            "http {\n    geo $g { 10.0.0.1/8 a; }\n}\n",
            Warn("low address bits of 10.0.0.1/8 are meaningless in {conf}:5"),
        ),
        Case::head(
            "geo with a repeated network",
            "http {\n    geo $g { 10.0.0.0/8 a; 10.0.0.0/8 b; }\n}\n",
            Warn("duplicate network \"10.0.0.0/8\", value: \"b\", old value: \"a\" in {conf}:5"),
        ),
        Case::head(
            "geo deleting what is not there",
            "http {\n    geo $g { delete 10.0.0.0/8; }\n}\n",
            Warn("no network \"10.0.0.0/8\" to delete in {conf}:5"),
        ),
        // Warnings while parsing: `nginx: [warn] ...` on stderr, as
        // waypost prints them before its error log is open.
        Case::head(
            "deny with low address bits",
            "http {\n    server {\n        listen 127.0.0.1:{port};\n        deny 10.0.0.1/8;\n    }\n}\n",
            Warn("low address bits of 10.0.0.1/8 are meaningless in {conf}:7"),
        ),
        Case::head(
            "set_real_ip_from with low address bits",
            "http {\n    set_real_ip_from 192.168.1.1/16;\n}\n",
            Warn("low address bits of 192.168.1.1/16 are meaningless in {conf}:5"),
        ),
        Case::head(
            "gzip_types naming text/html",
            "http {\n    gzip_types text/css TEXT/HTML;\n}\n",
            Warn("duplicate MIME type \"text/html\" in {conf}:5"),
        ),
        Case::head(
            "client_header_buffer_size: not a size",
            "http {\n    server {\n        client_header_buffer_size x;\n    }\n}\n",
            Emerg("\"client_header_buffer_size\" directive invalid value in {conf}:6"),
        ),
        Case::head(
            "client_header_buffer_size in a location",
            "http {\n    server {\n        location / { client_header_buffer_size 1k; }\n    }\n}\n",
            Emerg("\"client_header_buffer_size\" directive is not allowed here in {conf}:6"),
        ),
        Case::head(
            "proxy_hide_header with two names",
            "http {\n    proxy_hide_header X-A X-B;\n}\n",
            Emerg("invalid number of arguments in \"proxy_hide_header\" directive in {conf}:5"),
        ),
        Case::head(
            "proxy_pass_header in an upstream",
            "http {\n    upstream u {\n        server 127.0.0.1:1;\n        proxy_pass_header Server;\n    }\n}\n",
            Emerg("\"proxy_pass_header\" directive is not allowed here in {conf}:7"),
        ),
        Case::head(
            "types: an extension twice",
            "http {\n    types { text/html html; text/plain HTML; }\n}\n",
            Warn("duplicate extension \"html\", content type: \"text/plain\", previous content type: \"text/html\" in {conf}:5"),
        ),
        Case::head(
            "charset from another source_charset",
            "http {\n    charset utf-8;\n    server {\n        listen 127.0.0.1:{port};\n        source_charset koi8-r;\n    }\n}\n",
            Emerg("no \"charset_map\" between the charsets \"koi8-r\" and \"utf-8\""),
        ),
        Case::head(
            "charset twice",
            "http {\n    charset utf-8;\n    charset utf-8;\n}\n",
            Emerg("\"charset\" directive is duplicate in {conf}:6"),
        ),
        Case::head(
            "charset lines nginx takes",
            "http {\n    charset utf-8;\n    source_charset utf-8;\n    override_charset off;\n    charset_types text/css application/json;\n    server {\n        listen 127.0.0.1:{port};\n        location / { charset off; }\n    }\n}\n",
            Expect::Ok,
        ),
        Case::head(
            "ssl_session_cache: three words",
            "http {\n    ssl_session_cache builtin none shared:A:1m;\n}\n",
            Emerg("invalid number of arguments in \"ssl_session_cache\" directive in {conf}:5"),
        ),
        Case::head(
            "expires: a word",
            "http {\n    expires foo;\n}\n",
            Emerg("\"expires\" directive invalid value in {conf}:5"),
        ),
        Case::head(
            "expires modified with a daily time",
            "http {\n    expires modified @1h;\n}\n",
            Emerg("\"expires\" directive daily time cannot be used with \"modified\" parameter in {conf}:5"),
        ),
        Case::head(
            "expires: a daily time past a day",
            "http {\n    expires @25h;\n}\n",
            Emerg("\"expires\" directive daily time value must be less than 24 hours in {conf}:5"),
        ),
        Case::head(
            "expires modified epoch",
            "http {\n    expires modified epoch;\n}\n",
            Emerg("\"expires\" directive invalid value in {conf}:5"),
        ),
        Case::head(
            "expires twice",
            "http {\n    expires 1h;\n    expires 2h;\n}\n",
            Emerg("\"expires\" directive is duplicate in {conf}:6"),
        ),
        Case::head(
            "expires lines nginx takes",
            "http {\n    expires +1h;\n    server {\n        listen 127.0.0.1:{port};\n        expires @15h30m;\n        location / { expires modified -1d; }\n        location /x { expires off; }\n    }\n}\n",
            Expect::Ok,
        ),
        Case::head(
            "ssl_session_cache: a zone of two sizes",
            "http {\n    ssl_session_cache shared:A:1m;\n    server {\n        listen 127.0.0.1:{port};\n        ssl_session_cache none shared:A:2m;\n    }\n}\n",
            Emerg("the size 2097152 of shared memory zone \"A\" conflicts with already declared size 1048576 in {conf}:8"),
        ),
        Case::head(
            "ssl_session_cache: an upstream's zone",
            "http {\n    upstream u {\n        zone A 1m;\n        server 127.0.0.1:1;\n    }\n    ssl_session_cache shared:A:1m;\n}\n",
            Emerg("the shared memory zone \"A\" is already declared for a different use in {conf}:9"),
        ),
        Case::head(
            "proxy_cookie_domain with one word",
            "http {\n    proxy_cookie_domain a;\n}\n",
            Emerg("invalid parameter \"a\" in {conf}:5"),
        ),
        Case::head(
            "proxy_cookie_path after off",
            "http {\n    proxy_cookie_path off;\n    proxy_cookie_path /a /b;\n}\n",
            Emerg("\"proxy_cookie_path\" directive is duplicate in {conf}:6"),
        ),
        Case::head(
            "proxy_cookie_flags with one word",
            "http {\n    proxy_cookie_flags a;\n}\n",
            Emerg("invalid parameter \"a\" in {conf}:5"),
        ),
        Case::head(
            "proxy_cookie_flags off after a line",
            "http {\n    proxy_cookie_flags a secure;\n    proxy_cookie_flags off;\n}\n",
            Emerg("\"proxy_cookie_flags\" directive is duplicate in {conf}:6"),
        ),
        Case::head(
            "proxy_cookie_flags as common configs write it",
            "http {\n    proxy_cookie_flags ~ secure httponly samesite=lax;\n    server {\n        listen 127.0.0.1:{port};\n        location / { proxy_cookie_flags $arg_c nosecure; proxy_cookie_flags session samesite=strict; }\n        location /off { proxy_cookie_flags off; }\n    }\n}\n",
            Expect::Ok,
        ),
        Case::head(
            "server_name: an empty regex",
            "http {\n    server {\n        server_name ~;\n    }\n}\n",
            Emerg("empty regex in server name \"~\" in {conf}:6"),
        ),
        Case::head(
            "upstream zone after a session cache's",
            "http {\n    ssl_session_cache shared:A:1m;\n    upstream u {\n        zone A 64k;\n        server 127.0.0.1:1;\n    }\n}\n",
            Emerg("the shared memory zone \"A\" is already declared for a different use in {conf}:7"),
        ),
        Case::head(
            "limit_conn_zone without a zone",
            "http {\n    limit_conn_zone $binary_remote_addr;\n}\n",
            Emerg("invalid number of arguments in \"limit_conn_zone\" directive in {conf}:5"),
        ),
        Case::head(
            "limit_conn_zone with a word",
            "http {\n    limit_conn_zone $binary_remote_addr foo;\n}\n",
            Emerg("invalid parameter \"foo\" in {conf}:5"),
        ),
        Case::head(
            "limit_conn_zone without a size",
            "http {\n    limit_conn_zone $binary_remote_addr zone=a;\n}\n",
            Emerg("invalid zone size \"zone=a\" in {conf}:5"),
        ),
        Case::head(
            "limit_conn_zone with a bad size",
            "http {\n    limit_conn_zone $binary_remote_addr zone=a:1x;\n}\n",
            Emerg("invalid zone size \"zone=a:1x\" in {conf}:5"),
        ),
        Case::head(
            "limit_conn_zone too small",
            "http {\n    limit_conn_zone $binary_remote_addr zone=a:1k;\n}\n",
            Emerg("zone \"zone=a:1k\" is too small in {conf}:5"),
        ),
        Case::head(
            "limit_conn_zone without a name",
            "http {\n    limit_conn_zone $binary_remote_addr zone=:32k;\n}\n",
            Emerg("\"limit_conn_zone\" must have \"zone\" parameter in {conf}:5"),
        ),
        Case::head(
            "limit_conn_zone bound twice",
            "http {\n    limit_conn_zone $binary_remote_addr zone=a:32k;\n    limit_conn_zone $remote_addr zone=a:32k;\n}\n",
            Emerg("limit_conn_zone \"a\" is already bound to key \"$binary_remote_addr\" in {conf}:6"),
        ),
        Case::head(
            "limit_conn_zone sizes differ",
            "http {\n    limit_conn_zone $binary_remote_addr zone=a:32k;\n    limit_conn_zone $remote_addr zone=a:64k;\n}\n",
            Emerg("the size 65536 of shared memory zone \"a\" conflicts with already declared size 32768 in {conf}:6"),
        ),
        Case::head(
            "limit_conn zero",
            "http {\n    limit_conn_zone $binary_remote_addr zone=a:32k;\n    limit_conn a 0;\n}\n",
            Emerg("invalid number of connections \"0\" in {conf}:6"),
        ),
        Case::head(
            "limit_conn too many",
            "http {\n    limit_conn_zone $binary_remote_addr zone=a:32k;\n    limit_conn a 65536;\n}\n",
            Emerg("connection limit must be less 65536 in {conf}:6"),
        ),
        Case::head(
            "limit_conn twice a zone",
            "http {\n    limit_conn_zone $binary_remote_addr zone=a:32k;\n    server {\n        limit_conn a 1;\n        limit_conn a 2;\n    }\n}\n",
            Emerg("\"limit_conn\" directive is duplicate in {conf}:8"),
        ),
        Case::head(
            "limit_conn of no zone",
            "http {\n    server {\n        location / {\n            limit_conn b 1;\n        }\n    }\n}\n",
            EmergAfterParse("zero size shared memory zone \"b\""),
        ),
        Case::head(
            "limit_conn_zone named by a session cache",
            "http {\n    ssl_session_cache shared:a:1m;\n    limit_conn_zone $binary_remote_addr zone=a:32k;\n}\n",
            Emerg("the shared memory zone \"a\" is already declared for a different use in {conf}:6"),
        ),
        Case::head(
            "limit_conn naming an upstream zone",
            "http {\n    upstream u {\n        zone a 64k;\n        server 127.0.0.1:1;\n    }\n    limit_conn a 1;\n}\n",
            Emerg("the shared memory zone \"a\" is already declared for a different use in {conf}:9"),
        ),
        Case::head(
            "limit_conn_status out of range",
            "http {\n    limit_conn_status 600;\n}\n",
            Emerg("value must be between 400 and 599 in {conf}:5"),
        ),
        Case::head(
            "limit_conn_status not a number",
            "http {\n    limit_conn_status x;\n}\n",
            Emerg("\"limit_conn_status\" directive invalid number in {conf}:5"),
        ),
        Case::head(
            "limit_conn_status twice",
            "http {\n    limit_conn_status 429;\n    limit_conn_status 503;\n}\n",
            Emerg("\"limit_conn_status\" directive is duplicate in {conf}:6"),
        ),
        Case::head(
            "limit_conn_log_level crit",
            "http {\n    limit_conn_log_level crit;\n}\n",
            Emerg("invalid value \"crit\" in {conf}:5"),
        ),
        Case::head(
            "limit_conn_dry_run maybe",
            "http {\n    limit_conn_dry_run maybe;\n}\n",
            Emerg("invalid value \"maybe\" in \"limit_conn_dry_run\" directive, it must be \"on\" or \"off\" in {conf}:5"),
        ),
        Case::head(
            "limit_conn at every level",
            "http {\n    limit_conn_zone \"\" zone=e:32k;\n    limit_conn_zone $binary_remote_addr zone=a:32k;\n    limit_conn a 10;\n    limit_conn_log_level info;\n    server {\n        limit_conn a 5;\n        limit_conn_status 429;\n        location / {\n            limit_conn e 1;\n            limit_conn_dry_run on;\n        }\n    }\n}\n",
            Expect::Ok,
        ),
        Case::head(
            "resolver with its parameters",
            "http {\n    resolver 127.0.0.1 [::1]:5353 127.0.0.2:53 valid=30s ipv6=off;\n    resolver_timeout 5s;\n    server {\n        resolver localhost;\n    }\n}\n",
            Expect::Ok,
        ),
        Case::head(
            "resolver with a bad valid=",
            "http {\n    resolver 127.0.0.1 valid=x;\n}\n",
            Emerg("invalid parameter: valid=x in {conf}:5"),
        ),
        Case::head(
            "resolver with a bad ipv6=",
            "http {\n    resolver 127.0.0.1 ipv6=maybe;\n}\n",
            Emerg("invalid parameter: ipv6=maybe in {conf}:5"),
        ),
        Case::head(
            "resolver with nginx 1.23's ipv4=",
            "http {\n    resolver 127.0.0.1 ipv4=off;\n}\n",
            Emerg("host not found in resolver \"ipv4=off\" in {conf}:5"),
        ),
        Case::head(
            "resolver with a bad port",
            "http {\n    resolver 127.0.0.1:0;\n}\n",
            Emerg("invalid port in resolver \"127.0.0.1:0\" in {conf}:5"),
        ),
        Case::head(
            "resolver with a bare IPv6 address",
            "http {\n    resolver ::1;\n}\n",
            Emerg("invalid port in resolver \"::1\" in {conf}:5"),
        ),
        Case::head(
            "resolver with an open bracket",
            "http {\n    resolver [::1;\n}\n",
            Emerg("invalid host in resolver \"[::1\" in {conf}:5"),
        ),
        Case::head(
            "resolver without a server",
            "http {\n    resolver valid=30s;\n}\n",
            Emerg("no name servers defined in {conf}:5"),
        ),
        Case::head(
            "resolver with a URI part",
            "http {\n    resolver 127.0.0.1/x;\n}\n",
            Emerg("invalid host in resolver \"127.0.0.1/x\" in {conf}:5"),
        ),
        Case::head(
            "resolver with a query",
            "http {\n    resolver 127.0.0.1?x;\n}\n",
            Emerg("invalid host in resolver \"127.0.0.1?x\" in {conf}:5"),
        ),
        Case::head(
            "resolver with a scheme",
            "http {\n    resolver http://127.0.0.1;\n}\n",
            Emerg("invalid host in resolver \"http://127.0.0.1\" in {conf}:5"),
        ),
        Case::head(
            "resolver with no host",
            "http {\n    resolver :53;\n}\n",
            Emerg("no host in resolver \":53\" in {conf}:5"),
        ),
        Case::head(
            "resolver with a bad IPv6 address",
            "http {\n    resolver [zz];\n}\n",
            Emerg("invalid IPv6 address in resolver \"[zz]\" in {conf}:5"),
        ),
        Case::head(
            "resolver with empty brackets",
            "http {\n    resolver []:53;\n}\n",
            Emerg("no host in resolver \"[]:53\" in {conf}:5"),
        ),
        Case::head(
            "resolver with an empty socket path",
            "http {\n    resolver unix:;\n}\n",
            Emerg("no path in the unix domain socket in resolver \"unix:\" in {conf}:5"),
        ),
        Case::head(
            "resolver twice",
            "http {\n    resolver 127.0.0.1;\n    resolver 127.0.0.2;\n}\n",
            Emerg("\"resolver\" directive is duplicate in {conf}:6"),
        ),
        Case::head(
            "resolver_timeout not a time",
            "http {\n    resolver_timeout x;\n}\n",
            Emerg("\"resolver_timeout\" directive invalid value in {conf}:5"),
        ),
        Case::head(
            "ssl_stapling not a flag",
            "http {\n    ssl_stapling maybe;\n}\n",
            Emerg("invalid value \"maybe\" in \"ssl_stapling\" directive, it must be \"on\" or \"off\" in {conf}:5"),
        ),
        Case::head(
            "ssl_stapling in a location",
            "http {\n    server {\n        location / {\n            ssl_stapling on;\n        }\n    }\n}\n",
            Emerg("\"ssl_stapling\" directive is not allowed here in {conf}:7"),
        ),
        Case::head(
            "auth_basic twice",
            "http {\n    auth_basic a;\n    auth_basic b;\n}\n",
            Emerg("\"auth_basic\" directive is duplicate in {conf}:6"),
        ),
        Case::head(
            "auth_basic_user_file twice",
            "http {\n    auth_basic_user_file a;\n    auth_basic_user_file b;\n}\n",
            Emerg("\"auth_basic_user_file\" directive is duplicate in {conf}:6"),
        ),
        Case::head(
            "satisfy maybe",
            "http {\n    satisfy maybe;\n}\n",
            Emerg("invalid value \"maybe\" in {conf}:5"),
        ),
        Case::head(
            "satisfy and limit_conn_log_level without case",
            "http {\n    satisfy ANY;\n    limit_conn_log_level WARN;\n    server {\n        resolver unix:/tmp/r.sock;\n    }\n}\n",
            Expect::Ok,
        ),
        Case::head(
            "satisfy twice",
            "http {\n    server {\n        satisfy any;\n        satisfy all;\n    }\n}\n",
            Emerg("\"satisfy\" directive is duplicate in {conf}:7"),
        ),
        Case::head(
            "auth_basic at every level",
            "http {\n    auth_basic \"a $host\";\n    auth_basic_user_file users;\n    server {\n        satisfy any;\n        location / {\n            auth_basic off;\n        }\n    }\n}\n",
            Expect::Ok,
        ),
        Case::head(
            "proxy_method twice",
            "http {\n    proxy_method GET;\n    proxy_method POST;\n}\n",
            Emerg("\"proxy_method\" directive is duplicate in {conf}:6"),
        ),
        Case::head(
            "proxy_set_body twice",
            "http {\n    proxy_set_body a;\n    proxy_set_body b;\n}\n",
            Emerg("\"proxy_set_body\" directive is duplicate in {conf}:6"),
        ),
        Case::head(
            "proxy_pass_request_body not a flag",
            "http {\n    proxy_pass_request_body maybe;\n}\n",
            Emerg("invalid value \"maybe\" in \"proxy_pass_request_body\" directive, it must be \"on\" or \"off\" in {conf}:5"),
        ),
        Case::head(
            "proxy_redirect with one unknown word",
            "http {\n    proxy_redirect somewhere;\n}\n",
            Emerg("invalid parameter \"somewhere\" in {conf}:5"),
        ),
        Case::head(
            "proxy_redirect default before proxy_pass",
            "http {\n    server {\n        listen 127.0.0.1:{port};\n        location / {\n            proxy_redirect default;\n            proxy_pass http://127.0.0.1:1;\n        }\n    }\n}\n",
            Emerg("\"proxy_redirect default\" should be placed after the \"proxy_pass\" directive in {conf}:8"),
        ),
        Case::head(
            "proxy_redirect default in http",
            "http {\n    proxy_redirect default;\n}\n",
            Emerg("\"proxy_redirect default\" should be placed after the \"proxy_pass\" directive in {conf}:5"),
        ),
        Case::head(
            "proxy_redirect after off",
            "http {\n    server {\n        listen 127.0.0.1:{port};\n        location / { proxy_pass http://127.0.0.1:1; proxy_redirect off; proxy_redirect http://a/ /b/; }\n    }\n}\n",
            Emerg("\"proxy_redirect\" directive is duplicate in {conf}:7"),
        ),
        Case::head(
            "proxy_redirect off after rules",
            "http {\n    server {\n        listen 127.0.0.1:{port};\n        location / { proxy_pass http://127.0.0.1:1; proxy_redirect http://a/ /b/; proxy_redirect default; proxy_redirect off; }\n    }\n}\n",
            Emerg("\"proxy_redirect\" directive is duplicate in {conf}:7"),
        ),
        Case::head(
            "proxy_redirect rules and default",
            "http {\n    proxy_redirect off;\n    server {\n        listen 127.0.0.1:{port};\n        location / { proxy_pass http://127.0.0.1:1; proxy_redirect http://a/ /b/; proxy_redirect default; }\n    }\n}\n",
            Expect::Ok,
        ),
        Case::head(
            "a hash size not a number",
            "http {\n    types_hash_max_size big;\n}\n",
            Emerg("\"types_hash_max_size\" directive invalid number in {conf}:5"),
        ),
        Case::head(
            "a hash size twice",
            "http {\n    variables_hash_bucket_size 64;\n    variables_hash_bucket_size 128;\n}\n",
            Emerg("\"variables_hash_bucket_size\" directive is duplicate in {conf}:6"),
        ),
        Case::head(
            "server_names_hash_max_size in a server",
            "http {\n    server {\n        server_names_hash_max_size 512;\n    }\n}\n",
            Emerg("\"server_names_hash_max_size\" directive is not allowed here in {conf}:6"),
        ),
        Case::head(
            "underscores_in_headers in a location",
            "http {\n    server {\n        location / {\n            underscores_in_headers on;\n        }\n    }\n}\n",
            Emerg("\"underscores_in_headers\" directive is not allowed here in {conf}:7"),
        ),
        Case::head(
            "ignore_invalid_headers not a flag",
            "http {\n    ignore_invalid_headers yes;\n}\n",
            Emerg("invalid value \"yes\" in \"ignore_invalid_headers\" directive, it must be \"on\" or \"off\" in {conf}:5"),
        ),
        Case::head(
            "invalid enum value",
            "http {\n    proxy_http_version 2.0;\n}\n",
            Emerg("invalid value \"2.0\" in {conf}:5"),
        ),
        Case::head(
            "invalid log level",
            "error_log logs/other.log verbose;\n",
            Emerg("invalid log level \"verbose\" in {conf}:4"),
        ),
        Case::new(
            "invalid worker_connections",
            "error_log logs/error.log;\npid logs/t.pid;\nevents {\n    worker_connections lots;\n}\n",
            Emerg("invalid number \"lots\" in {conf}:4"),
        ),
        Case::new(
            "too few worker_connections",
            "error_log logs/error.log;\npid logs/t.pid;\nevents { worker_connections 2; }\nhttp {\n    server { listen 127.0.0.1:{port}; }\n    server { listen 127.0.0.2:{port}; }\n}\n",
            EmergAfterParse("2 worker_connections are not enough for 2 listening sockets"),
        ),
        Case::new(
            "no events section",
            "error_log logs/error.log;\npid logs/t.pid;\nhttp {\n}\n",
            EmergAfterParse("no \"events\" section in configuration"),
        ),
        Case::head(
            "load_module after events",
            "load_module modules/x.so;\n",
            Emerg("\"load_module\" directive is specified too late in {conf}:4"),
        ),
        Case::head(
            "unknown user",
            "user waypost-no-such-user;\n",
            Emerg("getpwnam(\"waypost-no-such-user\") failed in {conf}:4"),
        )
        .root_only(),
        // Errors in file order.
        Case::head(
            "a semantic error before a syntax error",
            "http {\n    upstream u {\n        server 127.0.0.1:1 weight=0;\n    }\n    server {\n",
            Emerg("invalid parameter \"weight=0\" in {conf}:6"),
        ),
        Case::head(
            "a location's error before a later server directive's",
            "http {\n    server {\n        location / {\n            proxy_pass http://127.0.0.1:1;\n            proxy_pass http://127.0.0.1:2;\n        }\n        listen 1 2 3 x;\n    }\n}\n",
            Emerg("\"proxy_pass\" directive is duplicate in {conf}:8"),
        ),
        Case::head(
            "the end of an upstream block before a later error",
            "http {\n    upstream u {\n    }\n    bogus;\n}\n",
            Emerg("no servers are inside upstream in {conf}:6"),
        ),
        // proxy_pass https:// and the proxy_ssl_* directives.
        Case::head(
            "https upstream without verification",
            "http {\n    upstream u { server 127.0.0.1:1; keepalive 2; }\n    proxy_ssl_server_name on;\n    server {\n        listen 127.0.0.1:{port};\n        location / { proxy_pass https://u/v1/; proxy_ssl_name $host; }\n        location /b { proxy_pass HTTPS://127.0.0.1:2; proxy_ssl_verify off; }\n    }\n}\n",
            Expect::Ok,
        ),
        Case::head(
            "proxy_ssl_verify without a trusted certificate",
            "http {\n    proxy_ssl_verify on;\n    server {\n        listen 127.0.0.1:{port};\n        location / { proxy_pass https://127.0.0.1:1; }\n    }\n}\n",
            Emerg("no proxy_ssl_trusted_certificate for proxy_ssl_verify"),
        ),
        Case::head(
            "proxy_ssl_verify is only read for https",
            "http {\n    proxy_ssl_verify on;\n    server {\n        listen 127.0.0.1:{port};\n        location / { proxy_pass http://127.0.0.1:1; }\n        location /t { proxy_pass https://127.0.0.1:1; proxy_ssl_verify off; proxy_ssl_trusted_certificate missing.pem; }\n    }\n}\n",
            Expect::Ok,
        ),
        Case::head(
            "proxy_ssl_verify takes on or off",
            "http {\n    proxy_ssl_verify yes;\n}\n",
            Emerg("invalid value \"yes\" in \"proxy_ssl_verify\" directive, it must be \"on\" or \"off\" in {conf}:5"),
        ),
        Case::head(
            "proxy_ssl_server_name twice",
            "http {\n    server {\n        proxy_ssl_server_name on;\n        proxy_ssl_server_name off;\n    }\n}\n",
            Emerg("\"proxy_ssl_server_name\" directive is duplicate in {conf}:7"),
        ),
        Case::head(
            "proxy_ssl_name twice",
            "http {\n    proxy_ssl_name a;\n    proxy_ssl_name b;\n}\n",
            Emerg("\"proxy_ssl_name\" directive is duplicate in {conf}:6"),
        ),
        Case::head(
            "proxy_ssl_trusted_certificate twice",
            "http {\n    proxy_ssl_trusted_certificate a.pem;\n    proxy_ssl_trusted_certificate b.pem;\n}\n",
            Emerg("\"proxy_ssl_trusted_certificate\" directive is duplicate in {conf}:6"),
        ),
        Case::head(
            "proxy_ssl_name takes one name",
            "http {\n    proxy_ssl_name a b;\n}\n",
            Emerg("invalid number of arguments in \"proxy_ssl_name\" directive in {conf}:5"),
        ),
        Case::head(
            "proxy_ssl_verify in upstream",
            "http {\n    upstream u {\n        server 127.0.0.1:1;\n        proxy_ssl_verify on;\n    }\n}\n",
            Emerg("\"proxy_ssl_verify\" directive is not allowed here in {conf}:7"),
        ),
        Case::head(
            "https to an upstream block with a port",
            "http {\n    upstream u { server 127.0.0.1:1; }\n    server {\n        location / { proxy_pass https://u:443; }\n    }\n}\n",
            Emerg("upstream \"u\" may not have port 443 in {conf}:7"),
        ),
        // Included files.
        Case::head(
            "error inside an included file",
            "http {\n    include upstreams.conf;\n}\n",
            Emerg("unknown directive \"bogus\" in {dir}/upstreams.conf:4"),
        )
        .files(&[(
            "upstreams.conf",
            "upstream u {\n    server 127.0.0.1:1;\n\n    bogus;\n}\n",
        )]),
        Case::head(
            "block end inside an included file",
            "http {\n    include upstreams.conf;\n    bogus;\n}\n",
            Emerg("no servers are inside upstream in {dir}/upstreams.conf:3"),
        )
        .files(&[("upstreams.conf", "upstream u {\n    # none yet\n}\n")]),
        Case::head(
            "an included file cannot close the including block",
            "http {\n    include extra.conf;\n}\n",
            Emerg("unexpected \"}\" in {dir}/extra.conf:2"),
        )
        .files(&[("extra.conf", "keepalive_timeout 5s;\n}\n")]),
        Case::head(
            "missing included file",
            "http {\n    include missing.conf;\n}\n",
            Emerg("open() \"{dir}/missing.conf\" failed (2: No such file or directory) in {conf}:5"),
        ),
        // -g directives.
        Case::new("error in -g", HEAD, Emerg("invalid value \"maybe\" in \"daemon\" directive, it must be \"on\" or \"off\" in command line"))
            .globals("daemon maybe;"),
        Case::new("unfinished -g", HEAD, Emerg("unexpected end of parameter, expecting \";\" in command line"))
            .globals("daemon off"),
        Case::new("block in -g", HEAD, Emerg("block directives are not supported in -g option in command line"))
            .globals("events { }"),
        Case::head(
            "directive in -g and in the file",
            "daemon on;\n",
            Emerg("\"daemon\" directive is duplicate in {conf}:4"),
        )
        .globals("daemon off;"),
        // access_log's parameters (ngx_http_log_set_log).
        Case::head(
            "access_log: buffer, flush and if accepted",
            "http {\n    log_format Main '$status';\n    access_log logs/a.log main buffer=32k flush=1m if=$status;\n    access_log logs/a.log combined;\n    server {\n        listen 127.0.0.1:{port};\n        access_log logs/a.log COMBINED buffer=32768 flush=60s;\n        access_log logs/b.log combined buffer=1 flush=500ms if=;\n    }\n}\n",
            Expect::Ok,
        ),
        Case::head(
            "access_log: buffer that is no size",
            "http {\n    access_log logs/a.log combined buffer=abc;\n}\n",
            Emerg("invalid buffer size \"abc\" in {conf}:5"),
        ),
        Case::head(
            "access_log: buffer of 0",
            "http {\n    access_log logs/a.log combined buffer=0;\n}\n",
            Emerg("invalid buffer size \"0\" in {conf}:5"),
        ),
        Case::head(
            "access_log: empty buffer",
            "http {\n    access_log logs/a.log combined buffer=;\n}\n",
            Emerg("invalid buffer size \"\" in {conf}:5"),
        ),
        Case::head(
            "access_log: no g for sizes",
            "http {\n    access_log logs/a.log combined buffer=1g;\n}\n",
            Emerg("invalid buffer size \"1g\" in {conf}:5"),
        ),
        Case::head(
            "access_log: flush of 0",
            "http {\n    access_log logs/a.log combined buffer=4k flush=0;\n}\n",
            Emerg("invalid flush time \"0\" in {conf}:5"),
        ),
        Case::head(
            "access_log: flush that is no time",
            "http {\n    access_log logs/a.log combined buffer=4k flush=0.5s;\n}\n",
            Emerg("invalid flush time \"0.5s\" in {conf}:5"),
        ),
        Case::head(
            "access_log: empty flush without buffer",
            "http {\n    access_log logs/a.log combined flush=;\n}\n",
            Emerg("invalid flush time \"\" in {conf}:5"),
        ),
        Case::head(
            "access_log: flush without buffer",
            "http {\n    access_log logs/a.log combined flush=5s;\n}\n",
            Emerg("no buffer is defined for access_log \"logs/a.log\" in {conf}:5"),
        ),
        Case::head(
            "access_log: parameters in order",
            "http {\n    access_log logs/a.log combined flush=5s buffer=abc;\n}\n",
            Emerg("invalid buffer size \"abc\" in {conf}:5"),
        ),
        Case::head(
            "access_log: compression level",
            "http {\n    access_log logs/a.log combined gzip=10;\n}\n",
            Emerg("invalid compression level \"10\" in {conf}:5"),
        ),
        Case::head(
            "access_log: unknown parameter",
            "http {\n    access_log logs/a.log combined gzipx;\n}\n",
            Emerg("invalid parameter \"gzipx\" in {conf}:5"),
        ),
        Case::head(
            "access_log: parameter after off",
            "http {\n    access_log off buffer=4k;\n}\n",
            Emerg("invalid parameter \"buffer=4k\" in {conf}:5"),
        ),
        Case::head(
            "access_log: unknown format before parameters",
            "http {\n    access_log logs/a.log nosuch buffer=abc;\n}\n",
            Emerg("unknown log format \"nosuch\" in {conf}:5"),
        ),
        Case::head(
            "access_log: malformed if",
            "http {\n    access_log logs/a.log combined if=a$;\n}\n",
            Emerg("invalid variable name in {conf}:5"),
        ),
        Case::head(
            "access_log: if with an open bracket",
            "http {\n    access_log logs/a.log combined if=${status;\n}\n",
            Emerg("the closing bracket in \"status\" variable is missing in {conf}:5"),
        ),
        Case::head(
            "access_log: buffered file with variables",
            "http {\n    access_log logs/$host.log combined buffer=4k;\n}\n",
            Emerg("buffered logs cannot have variables in name in {conf}:5"),
        ),
        Case::head(
            "access_log: buffered syslog",
            "http {\n    access_log syslog:server=127.0.0.1 combined buffer=4k;\n}\n",
            Emerg("logs to syslog cannot be buffered in {conf}:5"),
        ),
        Case::head(
            "gunzip inside if",
            "http {\n    server {\n        location / {\n            if ($arg_a) { gunzip on; }\n        }\n    }\n}\n",
            Emerg("\"gunzip\" directive is not allowed here in {conf}:7"),
        ),
        Case::head(
            "gunzip_buffers of none",
            "http {\n    gunzip on;\n    gunzip_buffers 0 4k;\n}\n",
            Emerg("\"gunzip_buffers\" directive invalid value in {conf}:6"),
        ),
        Case::head(
            "syslog: a unix socket, and error_log to it",
            "error_log syslog:server=unix:/dev/log,nohostname warn;\nhttp {\n    access_log syslog:server=unix:/run/waypost-test.sock,tag=web combined;\n}\n",
            Expect::Ok,
        ),
        Case::head(
            "syslog: a unix socket without a path",
            "http {\n    access_log syslog:server=unix:;\n}\n",
            Emerg("no path in the unix domain socket in syslog server \"unix:\" in {conf}:5"),
        ),
        Case::head(
            "syslog: a unix socket path longer than sun_path",
            "http {\n    access_log syslog:server=unix:/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa;\n}\n",
            Emerg("too long path in the unix domain socket in syslog server \"unix:/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" in {conf}:5"),
        ),
        Case::head(
            "syslog: a port out of range",
            "http {\n    access_log syslog:server=127.0.0.1:99999;\n}\n",
            Emerg("invalid port in syslog server \"127.0.0.1:99999\" in {conf}:5"),
        ),
        Case::head(
            "syslog: a bracket left open",
            "http {\n    access_log syslog:server=[::1;\n}\n",
            Emerg("invalid host in syslog server \"[::1\" in {conf}:5"),
        ),
        Case::head(
            "syslog: a host not found",
            "http {\n    access_log syslog:server=nosuchhost.invalid;\n}\n",
            Emerg("host not found in syslog server \"nosuchhost.invalid\" in {conf}:5"),
        ),
        Case::head(
            "access_log: another buffer size for the same file",
            "http {\n    access_log logs/a.log combined buffer=4k;\n    server {\n        access_log {dir}/logs/a.log combined buffer=8k;\n    }\n}\n",
            Emerg("access_log \"{dir}/logs/a.log\" already defined with conflicting parameters in {conf}:7"),
        ),
        Case::head(
            "access_log: another flush for the same file",
            "http {\n    access_log logs/a.log combined buffer=4k flush=1s;\n    access_log logs/a.log combined buffer=4k;\n}\n",
            Emerg("access_log \"logs/a.log\" already defined with conflicting parameters in {conf}:6"),
        ),
        Case::head(
            "access_log: gzip conflicts before it is refused",
            "http {\n    access_log logs/a.log combined buffer=64k;\n    access_log logs/a.log combined gzip;\n}\n",
            Emerg("access_log \"logs/a.log\" already defined with conflicting parameters in {conf}:6"),
        ),
        // TLS (ngx_http_ssl_module). Messages about certificate files end
        // in OpenSSL's words in nginx: tests/tls.rs compares their start.
        Case::head(
            "ssl: a TLS address whose default server has no certificate",
            "http {\n    server {\n        listen 127.0.0.1:{port};\n        server_name b;\n    }\n    server {\n        listen 127.0.0.1:{port} ssl;\n    }\n}\n",
            Emerg("no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive in {conf}:5"),
        ),
        Case::head(
            "ssl: a certificate without a key",
            "http {\n    ssl_certificate_key k1.pem;\n    server {\n        listen 127.0.0.1:{port} ssl;\n        ssl_certificate c1.pem;\n        ssl_certificate c2.pem;\n    }\n}\n",
            Emerg("no \"ssl_certificate_key\" is defined for certificate \"c2.pem\""),
        ),
        Case::head(
            "ssl_protocols: an unknown version",
            "http {\n    ssl_protocols TLSv1.2 TLSv9;\n}\n",
            Emerg("invalid value \"TLSv9\" in {conf}:5"),
        ),
        Case::head(
            "ssl_protocols: no version",
            "http {\n    ssl_protocols;\n}\n",
            Emerg("invalid number of arguments in \"ssl_protocols\" directive in {conf}:5"),
        ),
        Case::head(
            "ssl_session_timeout: a bad time",
            "http {\n    ssl_session_timeout 5x;\n}\n",
            Emerg("\"ssl_session_timeout\" directive invalid value in {conf}:5"),
        ),
        Case::head(
            "ssl_session_timeout: twice",
            "http {\n    ssl_session_timeout 5m;\n    ssl_session_timeout 10m;\n}\n",
            Emerg("\"ssl_session_timeout\" directive is duplicate in {conf}:6"),
        ),
        Case::head(
            "ssl_certificate: not in a location",
            "http {\n    server {\n        location / { ssl_certificate c.pem; }\n    }\n}\n",
            Emerg("\"ssl_certificate\" directive is not allowed here in {conf}:6"),
        ),
        Case::head(
            "listen: http2 and ssl without a certificate",
            "http {\n    server {\n        listen 127.0.0.1:{port} http2 ssl;\n    }\n}\n",
            Emerg("no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive in {conf}:5"),
        ),
        Case::head(
            "error_page: no URI",
            "http {\n    server {\n        error_page 404;\n    }\n}\n",
            Emerg("invalid number of arguments in \"error_page\" directive in {conf}:6"),
        ),
        Case::head(
            "error_page: = without a code",
            "http {\n    server {\n        error_page = /x;\n    }\n}\n",
            Emerg("invalid value \"=\" in {conf}:6"),
        ),
        Case::head(
            "error_page: =NNN not a number",
            "http {\n    server {\n        error_page 404 =abc /x;\n    }\n}\n",
            Emerg("invalid value \"=abc\" in {conf}:6"),
        ),
        Case::head(
            "error_page: = between codes",
            "http {\n    server {\n        error_page 404 = 500 /x;\n    }\n}\n",
            Emerg("invalid value \"=\" in {conf}:6"),
        ),
        Case::head(
            "error_page: code not a number",
            "http {\n    server {\n        error_page x /x;\n    }\n}\n",
            Emerg("invalid value \"x\" in {conf}:6"),
        ),
        Case::head(
            "error_page: code below 300",
            "http {\n    server {\n        error_page 299 /x;\n    }\n}\n",
            Emerg("value \"299\" must be between 300 and 599 in {conf}:6"),
        ),
        Case::head(
            "error_page: code above 599",
            "http {\n    server {\n        error_page 404 600 /x;\n    }\n}\n",
            Emerg("value \"600\" must be between 300 and 599 in {conf}:6"),
        ),
        Case::head(
            "error_page: 499",
            "http {\n    server {\n        error_page 499 /x;\n    }\n}\n",
            Emerg("invalid value \"499\" in {conf}:6"),
        ),
        Case::head(
            "recursive_error_pages: not a flag",
            "http {\n    server {\n        recursive_error_pages maybe;\n    }\n}\n",
            Emerg("invalid value \"maybe\" in \"recursive_error_pages\" directive, it must be \"on\" or \"off\" in {conf}:6"),
        ),
        Case::head(
            "internal: at the server level",
            "http {\n    server {\n        internal;\n    }\n}\n",
            Emerg("\"internal\" directive is not allowed here in {conf}:6"),
        ),
        Case::head(
            "internal: twice",
            "http {\n    server {\n        location /x { internal; internal; }\n    }\n}\n",
            Emerg("\"internal\" directive is duplicate in {conf}:6"),
        ),
        Case::head(
            "internal: an argument",
            "http {\n    server {\n        location /x { internal on; }\n    }\n}\n",
            Emerg("invalid number of arguments in \"internal\" directive in {conf}:6"),
        ),
        Case::head(
            "proxy_intercept_errors: twice",
            "http {\n    server {\n        location /x { proxy_intercept_errors on; proxy_intercept_errors off; }\n    }\n}\n",
            Emerg("\"proxy_intercept_errors\" directive is duplicate in {conf}:6"),
        ),
        Case::head(
            "named location: inside a location",
            "http {\n    server {\n        location /x { location @a { return 204; } }\n    }\n}\n",
            Emerg("named location \"@a\" can be on the server level only in {conf}:6"),
        ),
        Case::head(
            "named location: a location inside",
            "http {\n    server {\n        location @a { location /y { } }\n    }\n}\n",
            Emerg("location \"/y\" cannot be inside the named location \"@a\" in {conf}:6"),
        ),
        Case::head(
            "error_page: every form, named locations of one name",
            "http {\n    error_page 404 /nf;\n    recursive_error_pages on;\n    server {\n        listen 127.0.0.1:{port};\n        error_page 500 502 =200 /50x?a=b;\n        error_page 403 = @a;\n        error_page 401 =301 http://example.com/;\n        error_page 495 https://example.com/;\n        location @a { return 204; }\n        location @a { return 205; }\n        location /i { internal; proxy_intercept_errors on; error_page 404 @a; }\n    }\n}\n",
            Expect::Ok,
        ),
    ]
}

/// One program's report: the lines of interest, with the program's name
/// replaced by `X`, and the exit code.
#[derive(Debug, PartialEq)]
struct Report {
    lines: Vec<String>,
    code: Option<i32>,
}

fn report(out: &Output, program: &str) -> Report {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let prefix = format!("{program}: ");
    let lines = stderr
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter(|l| {
            l.starts_with("[emerg]")
                || l.starts_with("[warn]")
                || l.starts_with("[alert]")
                || l.starts_with("[error]")
                || l.starts_with("the configuration file ")
                || l.starts_with("configuration file ")
        })
        .map(|l| format!("X: {l}"))
        .collect();
    Report {
        lines,
        code: out.status.code(),
    }
}

fn expected(expect: Expect, conf: &Path, fill: &dyn Fn(&str) -> String) -> Report {
    let conf = conf.display();
    let ok = format!("X: the configuration file {conf} syntax is ok");
    let failed = format!("X: configuration file {conf} test failed");
    let emerg = |m: &str| format!("X: [emerg] {}", fill(m));
    let (lines, code) = match expect {
        Expect::Ok => (
            vec![
                ok,
                format!("X: configuration file {conf} test is successful"),
            ],
            0,
        ),
        Expect::Emerg(m) => (vec![emerg(m), failed], 1),
        Expect::EmergAfterParse(m) => (vec![ok, emerg(m), failed], 1),
        Expect::Warn(m) => (
            vec![
                format!("X: [warn] {}", fill(m)),
                ok,
                format!("X: configuration file {conf} test is successful"),
            ],
            0,
        ),
    };
    Report {
        lines,
        code: Some(code),
    }
}

/// Runs one case through both programs; `Err` describes a mismatch.
fn check(case: &Case) -> Result<(), String> {
    let dir = TempDir::new("conf-errors");
    let port = free_port().to_string();
    let dir_text = dir.path.display().to_string();
    let conf = dir.path.join(CONF);
    let conf_text = conf.display().to_string();
    let fill = |s: &str| {
        s.replace("{port}", &port)
            .replace("{dir}", &dir_text)
            .replace("{conf}", &conf_text)
    };
    dir.write(CONF, &fill(&case.conf));
    for (name, text) in case.files {
        dir.write(name, &fill(text));
    }
    let mut args = vec!["-t", "-c", conf_text.as_str()];
    if let Some(globals) = case.globals {
        args.extend(["-g", globals]);
    }
    let nginx_out = run_nginx(&dir, &args);
    let waypost_out = run_waypost(&dir, &args);
    let nginx = report(&nginx_out, "nginx");
    let waypost = report(&waypost_out, "waypost");
    let want = expected(case.expect, &conf, &fill);
    if nginx == want && waypost == want {
        return Ok(());
    }
    Err(format!(
        "case \"{}\":\n  expected: {want:?}\n  nginx:    {nginx:?}\n  waypost:  {waypost:?}\n  (nginx stderr: {})\n  (waypost stderr: {})",
        case.name,
        String::from_utf8_lossy(&nginx_out.stderr).trim_end(),
        String::from_utf8_lossy(&waypost_out.stderr).trim_end(),
    ))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no failure mode.
    unsafe { libc::geteuid() == 0 }
}

/// Every case at once (in parallel, each in its own directory); all
/// mismatches are reported together.
#[test]
fn config_errors_match_nginx() {
    let cases: Vec<Case> = cases()
        .into_iter()
        .filter(|c| !c.root_only || is_root())
        .collect();
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = cases.iter().map(|c| s.spawn(move || check(c))).collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().expect("case thread").err())
            .collect()
    });
    assert_no_failures(&failures, cases.len());
}

/// `-s reload`: the configuration is read first (a bad one sends nothing),
/// then the pid file; each failure is reported as nginx does.
#[test]
fn signal_errors_match_nginx() {
    let dir = TempDir::new("conf-signal");
    let conf = dir.write(CONF, HEAD);
    let conf = conf.display().to_string();
    let run = |args: &[&str]| {
        (
            report(&run_nginx(&dir, args), "nginx"),
            report(&run_waypost(&dir, args), "waypost"),
        )
    };
    let pid = format!("{}/logs/t.pid", dir.path.display());
    let want = |line: String| Report {
        lines: vec![line],
        code: Some(1),
    };

    let (nginx, waypost) = run(&["-c", &conf, "-s", "reload"]);
    let missing = want(format!(
        "X: [error] open() \"{pid}\" failed (2: No such file or directory)"
    ));
    assert_eq!(nginx, missing, "nginx, no pid file");
    assert_eq!(waypost, missing, "waypost, no pid file");

    dir.write("logs/t.pid", "garbage\n");
    let (nginx, waypost) = run(&["-c", &conf, "-s", "reload"]);
    let invalid = want(format!(
        "X: [error] invalid PID number \"garbage\" in \"{pid}\""
    ));
    assert_eq!(nginx, invalid, "nginx, invalid pid");
    assert_eq!(waypost, invalid, "waypost, invalid pid");

    dir.write(CONF, &format!("{HEAD}bogus;\n"));
    let (nginx, waypost) = run(&["-c", &conf, "-s", "reload"]);
    let bad = want(format!(
        "X: [emerg] unknown directive \"bogus\" in {conf}:4"
    ));
    assert_eq!(nginx, bad, "nginx, bad config");
    assert_eq!(waypost, bad, "waypost, bad config");
}
