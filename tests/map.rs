//! `map` side by side with nginx: the same requests get the same values
//! through `return`, `proxy_set_header`, `add_header`, the access log and
//! a balancer's key, with exact keys (without case), `default`, `''`,
//! `hostnames` wildcards, `~`/`~*` regexes and their groups in values,
//! sources and values with variables, maps of maps used before they are
//! defined, `include` and `volatile`. Then the config errors nginx reports
//! for a `map`, and what waypost refuses where nginx would answer 500.

use std::io::{Read, Write};
use std::net::TcpStream;

use waypost_tests::{assert_same_answers, first_report, free_ports, wrap_http, Server, TempDir};

/// The `http` block lines both run: maps, a proxy on `port` with its
/// backend on `back`, and an upstream balanced by a map's value over the
/// backends `b1` and `b2`.
fn conf(ports: &[u16], nginx: bool) -> String {
    let [port, back, b1, b2] = ports[..] else {
        unreachable!()
    };
    wrap_http(
        &format!(
            "    log_format m '$m1|$m2|$m4|$http_upgrade|$connection_upgrade';\n\
             \x20   map $arg_k $m1 {{\n\
             \x20       default d;\n\
             \x20       ''      empty;\n\
             \x20       abc     exact;\n\
             \x20       ~^a(.)c re1-$1;\n\
             \x20       ~*^X    rex;\n\
             \x20       Foo     foo;\n\
             \x20       ~^(?<nm>z.)y named-$nm;\n\
             \x20       \\default esc;\n\
             \x20       ~^q(.)(.) \"$2$1\";\n\
             \x20   }}\n\
             \x20   map $http_host $m2 {{\n\
             \x20       hostnames;\n\
             \x20       default none;\n\
             \x20       *.a.com wild;\n\
             \x20       .b.com dotb;\n\
             \x20       www.c.* tail;\n\
             \x20       www.c.d.* longer-tail;\n\
             \x20       exact.a.com exact;\n\
             \x20       *.x.a.com deeper;\n\
             \x20   }}\n\
             \x20   map $arg_k $m3 {{ volatile; abc 1; include map_extra.conf; }}\n\
             \x20   map \"$arg_a:$arg_b\" $m4 {{ \"1:2\" onetwo; default $m5-$arg_a; }}\n\
             \x20   map $m1 $m5 {{ exact from-exact; default $m1; }}\n\
             \x20   map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}\n\
             \x20   map $arg_e $m6 {{ ~^\\d*$ num; default other; }}\n\
             \x20   upstream hashed {{ hash $m3$m1; server 127.0.0.1:{b1}; server 127.0.0.1:{b2}; }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       location / {{ return 200 \"m1=$m1 m2=$m2 m3=$m3 m4=$m4 m5=$m5 m6=$m6\\n\"; }}\n\
             \x20       location /p {{\n\
             \x20           proxy_pass http://127.0.0.1:{back};\n\
             \x20           proxy_set_header Connection $connection_upgrade;\n\
             \x20           proxy_set_header X-M $m4;\n\
             \x20           add_header X-Added $m2;\n\
             \x20           access_log logs/m.log m;\n\
             \x20       }}\n\
             \x20       location /h {{ proxy_pass http://hashed; }}\n\
             \x20   }}\n\
             \x20   server {{ listen 127.0.0.1:{back}; location / {{ return 200 \"conn=$http_connection x-m=$http_x_m\\n\"; }} }}\n\
             \x20   server {{ listen 127.0.0.1:{b1}; location / {{ return 200 \"b1\\n\"; }} }}\n\
             \x20   server {{ listen 127.0.0.1:{b2}; location / {{ return 200 \"b2\\n\"; }} }}\n"
        ),
        nginx,
    )
}

/// The included file of `$m3`'s map.
const EXTRA: &str = "foo 2;\n~^n 3;\n";

/// `GET target` with `headers`: the body, and the X-Added header if any.
fn ask(port: u16, target: &str, headers: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let request = format!("GET {target} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let added = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-added: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    format!("{} {added}", body.trim_end())
}

fn requests() -> Vec<(String, String)> {
    let mut all = Vec::new();
    for q in [
        "k=",
        "",
        "k=abc",
        "k=ABC",
        "k=axc",
        "k=AXC",
        "k=xyz",
        "k=foo",
        "k=FOO",
        "k=zqy",
        "k=default",
        "k=qab",
        "k=n1",
        "a=1&b=2",
        "a=3&k=abc",
        "e=12",
        "e=x",
    ] {
        for path in ["/", "/p", "/h"] {
            all.push((format!("{path}?{q}"), "Host: h\r\n".to_owned()));
        }
    }
    for host in [
        "x.a.com",
        "a.com",
        "y.x.a.com",
        "z.y.x.a.com",
        "exact.a.com",
        "EXACT.A.COM",
        "b.com",
        "w.b.com",
        "www.c.org",
        "www.c.d.org",
        "www.c",
        "c.org",
        "x.a.com.",
    ] {
        for path in ["/", "/p"] {
            all.push((path.to_owned(), format!("Host: {host}\r\n")));
        }
    }
    for upgrade in ["Upgrade: websocket\r\n", "Upgrade: \r\n"] {
        all.push(("/p".to_owned(), format!("Host: h\r\n{upgrade}")));
    }
    all
}

fn run(nginx: bool) -> (Vec<String>, Vec<String>) {
    let ports = free_ports(4);
    let (server, _include) = start_with_include(nginx, &conf(&ports, nginx), &ports);
    let answers: Vec<String> = requests()
        .iter()
        .map(|(target, headers)| {
            format!(
                "{target} {} -> {}",
                headers.trim_end(),
                ask(ports[0], target, headers)
            )
        })
        .collect();
    let logged = requests()
        .iter()
        .filter(|(t, _)| t.starts_with("/p"))
        .count();
    let log = server.wait_lines("logs/m.log", logged);
    (answers, log)
}

/// Starts `conf` with [`EXTRA`] as its `map_extra.conf`, given by absolute
/// path (the harness makes the main file's directory as it starts), and
/// the directory holding it.
fn start_with_include(nginx: bool, conf: &str, ports: &[u16]) -> (Server, TempDir) {
    let dir = TempDir::new("map-include");
    let extra = dir.write("map_extra.conf", EXTRA);
    let conf = conf.replace(
        "include map_extra.conf;",
        &format!("include {};", extra.display()),
    );
    (Server::either(nginx, &conf, ports), dir)
}

#[test]
fn maps_match_nginx() {
    let (ours, our_log) = run(false);
    let (theirs, their_log) = run(true);
    assert_same_answers(&ours, &theirs);
    assert_eq!(our_log, their_log, "access log (left: waypost)");
    // Each kind of key answered at least once.
    for seen in [
        "m1=exact",
        "m1=re1-x",
        "m1=rex",
        "m1=named-zq",
        "m1=esc",
        "m1=ba",
        "m2=deeper",
        "m2=longer-tail",
        "m2=dotb",
        "m3=3",
        "m4=onetwo",
        "m5=from-exact",
        "conn=close",
        "conn=upgrade",
        "m6=num",
        "m6=other",
    ] {
        assert!(
            ours.iter().any(|a| a.contains(seen)),
            "{seen} never answered"
        );
    }
    assert!(
        ours.iter().any(|a| a.ends_with("-> b1 ")) && ours.iter().any(|a| a.ends_with("-> b2 "))
    );
}

/// Where waypost refuses a config nginx takes: a regex neither of its
/// engines has (nginx's PCRE does: a branch reset), and a cycle of map
/// variables, which nginx finds only when a request evaluates it (and
/// answers 500).
#[test]
fn refused_where_nginx_would_fail_later() {
    let branch_reset = first_report("  map $uri $m { ~(?|a|b)c 1; }\n");
    assert!(
        branch_reset.starts_with(
            "waypost: [emerg] regular expression \"(?|a|b)c\" is not valid or not supported: "
        ) && branch_reset.ends_with(" in CONF:5"),
        "{branch_reset}"
    );
    assert_eq!(
        first_report("  map $uri $a { default $b; }\n  map $a $b { x y; }\n"),
        "waypost: [emerg] cycle in the \"a\" map variable in CONF:5"
    );
}
