//! `ssl_verify_client` side by side with nginx, through curl: `on`,
//! `optional` and `optional_no_ca`, with no client certificate, one the
//! test authority issued, one it did not (self-signed) and an expired
//! one; the 400 pages and the `info` lines of refused requests; the
//! `$ssl_client_*` variables in answers and in the access log; then the
//! configuration's errors.

use std::process::Command;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use waypost_tests::{
    assert_t_cases, free_ports, request_lines, wrap_http, Server, TempDir, Waypost,
};

/// The certificates of a run, written into a directory: the authority
/// (`ca.pem`), the server's (`srv.pem`, `srv.key`), a client certificate
/// it issued (`client`), an expired one (`old`) and a self-signed one
/// (`self`).
fn certificates(dir: &TempDir) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CountryName, "US");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Test CA");
    params
        .distinguished_name
        .push(DnType::CommonName, "test ca");
    let ca = params.self_signed(&ca_key).expect("CA");
    dir.write("ca.pem", &ca.pem());
    let write = |name: &str, params: CertificateParams, signed: bool| {
        let key = KeyPair::generate().expect("key");
        let cert = match signed {
            true => params.signed_by(&key, &ca, &ca_key),
            false => params.self_signed(&key),
        }
        .expect("certificate");
        dir.write(&format!("{name}.pem"), &cert.pem());
        dir.write(&format!("{name}.key"), &key.serialize_pem());
    };
    write(
        "srv",
        CertificateParams::new(vec!["localhost".to_owned()]).expect("params"),
        true,
    );
    let client = |cn: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CountryName, "US");
        p.distinguished_name
            .push(DnType::OrganizationName, "Acme, Inc.");
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, "Eng");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p
    };
    write("client", client("client one"), true);
    let mut old = client("client old");
    old.not_before = rcgen::date_time_ymd(2020, 1, 1);
    old.not_after = rcgen::date_time_ymd(2021, 1, 1);
    write("old", old, true);
    write("self", client("self"), false);
    let mut utf = CertificateParams::new(Vec::<String>::new()).expect("params");
    utf.distinguished_name
        .push(DnType::OrganizationName, "M\u{fc}ller GmbH");
    utf.distinguished_name
        .push(DnType::CommonName, "J\u{fc}rgen Wei\u{df}");
    utf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    write("utf", utf, true);
    // An intermediate CA under the authority, and a client certificate
    // it issued (sent alone, without the intermediate).
    let int_key = KeyPair::generate().expect("key");
    let mut int = CertificateParams::new(Vec::<String>::new()).expect("params");
    int.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    int.distinguished_name
        .push(DnType::CommonName, "test intermediate");
    let int = int.signed_by(&int_key, &ca, &ca_key).expect("intermediate");
    dir.write("int.pem", &int.pem());
    let leaf_key = KeyPair::generate().expect("key");
    let leaf = client("leaf")
        .signed_by(&leaf_key, &int, &int_key)
        .expect("leaf");
    dir.write("leaf.pem", &leaf.pem());
    dir.write("leaf.key", &leaf_key.serialize_pem());
    // The same, sent with the intermediate.
    dir.write("chain.pem", &(leaf.pem() + &int.pem()));
    dir.write("chain.key", &leaf_key.serialize_pem());
}

/// Servers on `ports`: `on` with the authority, `optional` with it
/// (named and trusted), `optional_no_ca` with none, `on` with only the
/// intermediate, `optional` with the authority at the default depth (1)
/// and at depth 0, `optional_no_ca` with only the intermediate; `raw` the
/// port of a backend that shows what it got.
fn conf(ports: &[u16], raw: u16, nginx: bool) -> String {
    let server = |port: u16, verify: &str, ca: &str| {
        format!(
            "    server {{\n\
             \x20       listen 127.0.0.1:{port} ssl;\n\
             \x20       ssl_certificate srv.pem;\n\
             \x20       ssl_certificate_key srv.key;\n\
             \x20       {ca}\n\
             \x20       ssl_verify_client {verify};\n\
             \x20       access_log logs/cc.log cc;\n\
             \x20       location / {{ return 200 \"[$ssl_client_verify] [$ssl_client_s_dn]\\n\"; }}\n\
             \x20       location /pem {{ return 200 \"$ssl_client_escaped_cert|$ssl_client_raw_cert|$ssl_client_cert|\"; }}\n\
             \x20       location /fwd {{ proxy_set_header X-Cert $ssl_client_cert; proxy_pass http://127.0.0.1:{raw}; }}\n\
             \x20   }}\n"
        )
    };
    wrap_http(
        &format!(
            "    log_format cc '$server_port $status [$ssl_client_verify] [$ssl_client_s_dn] [$ssl_client_i_dn] \
             [$ssl_client_serial] [$ssl_client_fingerprint] [$ssl_client_v_start] [$ssl_client_v_end] \
             [$ssl_client_v_remain]';\n\
             {}{}{}{}{}{}{}",
            server(ports[0], "on", "ssl_client_certificate ca.pem;"),
            server(ports[1], "optional", "ssl_trusted_certificate ca.pem;\n        ssl_client_certificate ca.pem;"),
            server(ports[2], "optional_no_ca", ""),
            server(ports[3], "on", "ssl_client_certificate int.pem;"),
            server(ports[4], "optional", "ssl_client_certificate ca.pem;"),
            server(ports[5], "optional", "ssl_client_certificate ca.pem;\n        ssl_verify_depth 0;"),
            server(ports[6], "optional_no_ca", "ssl_client_certificate int.pem;"),
        ),
        nginx,
    )
}

const CLIENTS: &[&str] = &["", "client", "old", "self", "utf", "leaf", "chain"];

/// A backend that answers with the number of lines of the request's head
/// that start with a tab (a folded header's), for `$ssl_client_cert`.
fn raw_backend() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind raw");
    let port = listener.local_addr().expect("raw addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut head = Vec::new();
            let mut buf = [0u8; 8192];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match std::io::Read::read(&mut stream, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let folded = head
                .split(|&b| b == b'\n')
                .filter(|l| l.first() == Some(&b'\t'))
                .count();
            let body = format!("folded={folded}");
            let _ = std::io::Write::write_all(
                &mut stream,
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    port
}

/// curl to `port` with the client certificate `cert` (none if empty):
/// the status and body, or curl's failure.
fn ask(dir: &TempDir, port: u16, cert: &str, path: &str) -> String {
    let mut cmd = Command::new("curl");
    cmd.current_dir(&dir.path)
        .args(["-sk", "--max-time", "10", "-w", " %{http_code}"]);
    if !cert.is_empty() {
        cmd.args([
            "--cert",
            &format!("{cert}.pem"),
            "--key",
            &format!("{cert}.key"),
        ]);
    }
    let out = cmd
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // A 400 page's title tells which refusal it is.
    match text.find("<title>") {
        Some(i) => {
            text[i + 7..]
                .split("</title>")
                .next()
                .unwrap_or("")
                .to_owned()
                + &text[text.len() - 4..]
        }
        None => text,
    }
}

struct Run {
    answers: Vec<String>,
    log: Vec<String>,
    info: Vec<String>,
    pems: Vec<String>,
}

fn run(nginx: bool) -> Run {
    let dir = TempDir::new("client-certs");
    certificates(&dir);
    let ports = free_ports(7);
    let raw = raw_backend();
    let conf = conf(&ports, raw, nginx).replace("srv.", &format!("{}/srv.", dir.path.display()));
    let conf = conf.replace(" ca.pem", &format!(" {}/ca.pem", dir.path.display()));
    let conf = conf.replace(" int.pem", &format!(" {}/int.pem", dir.path.display()));
    let server = Server::either(nginx, &conf, &ports);
    let mut answers = Vec::new();
    for (i, &port) in ports.iter().enumerate() {
        for cert in CLIENTS {
            answers.push(format!("{i} {cert}: {}", ask(&dir, port, cert, "/")));
        }
    }
    let pems = vec![
        ask(&dir, ports[1], "client", "/pem"),
        ask(&dir, ports[1], "client", "/fwd"),
    ];
    let log = server
        .wait_lines("logs/cc.log", answers.len() + pems.len())
        .iter()
        .map(|l| {
            let mut l = l.clone();
            for (i, p) in ports.iter().enumerate() {
                l = l.replace(&p.to_string(), &format!("PORT{i}"));
            }
            l
        })
        .collect();
    let info = request_lines(&server.read("logs/error.log"))
        .into_iter()
        .filter(|l| l.contains("certificate"))
        .map(|l| {
            let mut l = l;
            for (i, p) in ports.iter().enumerate() {
                l = l.replace(&p.to_string(), &format!("PORT{i}"));
            }
            l
        })
        .collect();
    Run {
        answers,
        log,
        info,
        pems,
    }
}

#[test]
fn client_certificates_as_nginx() {
    let ours = run(false);
    let theirs = run(true);
    let what = "waypost (left) and nginx (right)";
    assert_eq!(ours.answers, theirs.answers, "answers: {what}");
    assert_eq!(ours.info, theirs.info, "error log: {what}");
    // Each run made its own certificates: compare the shape of the lines
    // whose values differ (serial, fingerprint, times).
    let shape = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .map(|l| {
                let parts: Vec<&str> = l.split("] [").collect();
                match parts.len() {
                    8 => format!(
                        "{}] [{}] [{}] [SERIAL {}] [SHA1 {}] [{} chars] [{} chars] [{}",
                        parts[0],
                        parts[1],
                        parts[2],
                        parts[3].len() > 1,
                        parts[4].len(),
                        parts[5].len(),
                        parts[6].len(),
                        parts[7]
                    ),
                    _ => l.clone(),
                }
            })
            .collect()
    };
    assert_eq!(shape(&ours.log), shape(&theirs.log), "access log: {what}");
    assert_eq!(
        theirs.answers,
        [
            "0 : 400 No required SSL certificate was sent 400",
            "0 client: [SUCCESS] [OU=Eng,O=Acme\\, Inc.,C=US,CN=client one]\n 200",
            "0 old: 400 The SSL certificate error 400",
            "0 self: 400 The SSL certificate error 400",
            "0 utf: [SUCCESS] [O=M\\C3\\BCller GmbH,CN=J\\C3\\BCrgen Wei\\C3\\9F]\n 200",
            "0 leaf: 400 The SSL certificate error 400",
            "0 chain: [SUCCESS] [OU=Eng,O=Acme\\, Inc.,C=US,CN=leaf]\n 200",
            "1 : [NONE] []\n 200",
            "1 client: [SUCCESS] [OU=Eng,O=Acme\\, Inc.,C=US,CN=client one]\n 200",
            "1 old: 400 The SSL certificate error 400",
            "1 self: 400 The SSL certificate error 400",
            "1 utf: [SUCCESS] [O=M\\C3\\BCller GmbH,CN=J\\C3\\BCrgen Wei\\C3\\9F]\n 200",
            "1 leaf: 400 The SSL certificate error 400",
            "1 chain: [SUCCESS] [OU=Eng,O=Acme\\, Inc.,C=US,CN=leaf]\n 200",
            "2 : [NONE] []\n 200",
            "2 client: [FAILED:unable to verify the first certificate] [OU=Eng,O=Acme\\, Inc.,C=US,CN=client one]\n 200",
            "2 old: 400 The SSL certificate error 400",
            "2 self: [FAILED:self-signed certificate] [OU=Eng,O=Acme\\, Inc.,C=US,CN=self]\n 200",
            "2 utf: [FAILED:unable to verify the first certificate] [O=M\\C3\\BCller GmbH,CN=J\\C3\\BCrgen Wei\\C3\\9F]\n 200",
            "2 leaf: [FAILED:unable to verify the first certificate] [OU=Eng,O=Acme\\, Inc.,C=US,CN=leaf]\n 200",
            "2 chain: [FAILED:unable to get local issuer certificate] [OU=Eng,O=Acme\\, Inc.,C=US,CN=leaf]\n 200",
            "3 : 400 No required SSL certificate was sent 400",
            "3 client: 400 The SSL certificate error 400",
            "3 old: 400 The SSL certificate error 400",
            "3 self: 400 The SSL certificate error 400",
            "3 utf: 400 The SSL certificate error 400",
            "3 leaf: 400 The SSL certificate error 400",
            "3 chain: 400 The SSL certificate error 400",
            "4 : [NONE] []\n 200",
            "4 client: [SUCCESS] [OU=Eng,O=Acme\\, Inc.,C=US,CN=client one]\n 200",
            "4 old: 400 The SSL certificate error 400",
            "4 self: 400 The SSL certificate error 400",
            "4 utf: [SUCCESS] [O=M\\C3\\BCller GmbH,CN=J\\C3\\BCrgen Wei\\C3\\9F]\n 200",
            "4 leaf: 400 The SSL certificate error 400",
            "4 chain: [SUCCESS] [OU=Eng,O=Acme\\, Inc.,C=US,CN=leaf]\n 200",
            "5 : [NONE] []\n 200",
            "5 client: [SUCCESS] [OU=Eng,O=Acme\\, Inc.,C=US,CN=client one]\n 200",
            "5 old: 400 The SSL certificate error 400",
            "5 self: 400 The SSL certificate error 400",
            "5 utf: [SUCCESS] [O=M\\C3\\BCller GmbH,CN=J\\C3\\BCrgen Wei\\C3\\9F]\n 200",
            "5 leaf: 400 The SSL certificate error 400",
            "5 chain: 400 The SSL certificate error 400",
            "6 : [NONE] []\n 200",
            "6 client: [FAILED:unable to verify the first certificate] [OU=Eng,O=Acme\\, Inc.,C=US,CN=client one]\n 200",
            "6 old: 400 The SSL certificate error 400",
            "6 self: [FAILED:self-signed certificate] [OU=Eng,O=Acme\\, Inc.,C=US,CN=self]\n 200",
            "6 utf: [FAILED:unable to verify the first certificate] [O=M\\C3\\BCller GmbH,CN=J\\C3\\BCrgen Wei\\C3\\9F]\n 200",
            // An issuer from the files whose root is missing: refused
            // even by `optional_no_ca`.
            "6 leaf: 400 The SSL certificate error 400",
            "6 chain: 400 The SSL certificate error 400",
        ],
        "nginx's answers"
    );
    // The PEM, escaped, raw and tabbed (its last line break left out), of
    // the same certificate; and the tabbed one as a folded header.
    let pem = |run: &Run| -> (usize, bool, bool, bool, String) {
        let parts: Vec<&str> = run.pems[0].split('|').collect();
        (
            parts.len(),
            parts
                .first()
                .is_some_and(|p| p.starts_with("-----BEGIN%20CERTIFICATE-----%0A")),
            parts.get(2).is_some_and(|p| p.contains("\n\t")),
            parts
                .get(2)
                .is_some_and(|p| p.ends_with("-----END CERTIFICATE-----")),
            run.pems[1].clone(),
        )
    };
    assert_eq!(pem(&ours), pem(&theirs));
    let (parts, escaped, tabbed, unbroken, folded) = pem(&theirs);
    assert_eq!((parts, escaped, tabbed, unbroken), (4, true, true, true));
    let lines: usize = folded
        .strip_prefix("folded=")
        .and_then(|n| n.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(lines >= 8, "{folded}");
}

#[test]
fn client_certificate_errors_as_nginx() {
    let server = |lines: &str| {
        format!(
            "http {{\n    server {{\n        listen {{port}} ssl;\n        ssl_certificate CERT;\n        ssl_certificate_key KEY;\n        {lines}\n    }}\n}}\n"
        )
    };
    let dir = TempDir::new("client-cert-errors");
    certificates(&dir);
    let files = |conf: String| {
        conf.replace("CERT", &dir.path.join("srv.pem").display().to_string())
            .replace("KEY", &dir.path.join("srv.key").display().to_string())
            .replace("CA_FILE", &dir.path.join("ca.pem").display().to_string())
    };
    let cases = vec![
        (
            files(server("ssl_verify_client on;")),
            "[emerg] no ssl_client_certificate for ssl_verify_client (exit Some(1))".to_owned(),
            Waypost::Same,
        ),
        (
            files(server(
                "ssl_verify_client on;\n        ssl_trusted_certificate CA_FILE;",
            )),
            "[emerg] no ssl_client_certificate for ssl_verify_client (exit Some(1))".to_owned(),
            Waypost::Same,
        ),
        (
            files(server("ssl_verify_client maybe;")),
            "[emerg] invalid value \"maybe\" in CONF:9 (exit Some(1))".to_owned(),
            Waypost::Same,
        ),
        (
            files(server("ssl_verify_client optional_no_ca;")),
            "ok (exit Some(0))".to_owned(),
            Waypost::Same,
        ),
        (
            // Without certificates the server does no TLS: nothing to check.
            "http {\n    ssl_verify_client on;\n    server {\n        listen {port};\n    }\n}\n"
                .to_owned(),
            "ok (exit Some(0))".to_owned(),
            Waypost::Same,
        ),
    ];
    assert_t_cases("client-cert", &cases);
}
