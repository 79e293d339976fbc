//! `ssl_verify_client` side by side with nginx, through curl: `on`,
//! `optional` and `optional_no_ca`, with no client certificate, one the
//! test authority issued, one it did not (self-signed) and an expired
//! one; the 400 pages and the `info` lines of refused requests; the
//! `$ssl_client_*` variables in answers and in the access log; revocation
//! lists (`ssl_crl`); then the configuration's errors.

use std::process::Command;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use waypost_tests::{
    assert_t_cases, free_ports, info_log, request_lines, wrap_http, Server, TempDir, Waypost,
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
            .replace("MISSING", &dir.path.join("none.crl").display().to_string())
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
            files(server("ssl_crl MISSING;")),
            files("[emerg] X509_LOOKUP_load_file(\"MISSING\") failed (SSL: error:80000002:system library::No such file or directory:calling fopen(MISSING, r) error:10000080:BIO routines::no such file error:05880002:x509 certificate routines::system lib) (exit Some(1))".to_owned()),
            Waypost::Around(
                files("[emerg] X509_LOOKUP_load_file(\"MISSING\") failed (".to_owned()),
                "2: No such file or directory) (exit Some(1))".to_owned(),
            ),
        ),
        (
            files(server("ssl_crl KEY;")),
            files("[emerg] X509_LOOKUP_load_file(\"KEY\") failed (SSL: error:05800088:x509 certificate routines::no certificate or crl found) (exit Some(1))".to_owned()),
            Waypost::Exactly(
                files("[emerg] X509_LOOKUP_load_file(\"KEY\") failed (no certificate or crl found) (exit Some(1))".to_owned()),
            ),
        ),
        (
            // nginx loads the certificates of a file that has no list.
            files(server("ssl_crl CA_FILE;")),
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

/// The certificates and revocation lists of the `ssl_crl` runs: an
/// authority (`ca.pem`) with an intermediate under it, the server's; a
/// client certificate the authority issued (`good`), one it revoked
/// (`revoked`); one the intermediate issued (`chain`, sent with the
/// intermediate) and one it revoked (`chain2`). Lists: the authority's
/// (`ca.crl`, revoking `revoked`), with the intermediate's too
/// (`both.crl`, revoking `chain2`), the authority's past its next update
/// (`old.crl`), and another authority's (`other.crl`).
fn revocations(dir: &TempDir) {
    use rcgen::SerialNumber;
    let authority = |cn: &str| {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, cn);
        (params, key)
    };
    let (ca_params, ca_key) = authority("crl ca");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    dir.write("ca.pem", &ca.pem());
    let srv_key = KeyPair::generate().expect("key");
    let srv = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&srv_key, &ca, &ca_key)
        .expect("server");
    dir.write("srv.pem", &srv.pem());
    dir.write("srv.key", &srv_key.serialize_pem());
    let (mut int_params, int_key) = authority("crl intermediate");
    int_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    int_params.serial_number = Some(SerialNumber::from(50u64));
    let int = int_params.signed_by(&int_key, &ca, &ca_key).expect("int");
    let client = |name: &str, serial: u64, by: (&rcgen::Certificate, &KeyPair), with: &str| {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.serial_number = Some(SerialNumber::from(serial));
        let cert = p.signed_by(&key, by.0, by.1).expect("client");
        dir.write(&format!("{name}.pem"), &(cert.pem() + with));
        dir.write(&format!("{name}.key"), &key.serialize_pem());
    };
    client("good", 100, (&ca, &ca_key), "");
    client("revoked", 101, (&ca, &ca_key), "");
    client("chain", 200, (&int, &int_key), &int.pem());
    client("chain2", 201, (&int, &int_key), &int.pem());
    let list = |issuer: (&rcgen::Certificate, &KeyPair), serial: u64, next: i32| {
        waypost_tests::revocation_list(issuer.0, issuer.1, serial, next)
    };
    let ca_list = list((&ca, &ca_key), 101, 2090);
    dir.write("ca.crl", &ca_list);
    dir.write("both.crl", &(ca_list + &list((&int, &int_key), 201, 2090)));
    dir.write("old.crl", &list((&ca, &ca_key), 101, 2021));
    let (other_params, other_key) = authority("other ca");
    let other = other_params.self_signed(&other_key).expect("other CA");
    dir.write("other.crl", &list((&other, &other_key), 101, 2090));
}

/// `ssl_crl` side by side with nginx: each certificate of the client's
/// chain is checked against its issuer's list (OpenSSL's `CRL_CHECK_ALL`,
/// as nginx asks for): revoked, no list for an issuer, an expired list,
/// another authority's list; `$ssl_client_verify` and the `info` lines.
#[test]
fn revoked_client_certificates_as_nginx() {
    let run = |nginx: bool| {
        let dir = TempDir::new("client-crl");
        revocations(&dir);
        let ports = free_ports(5);
        let server = |port: u16, crl: &str| {
            format!(
                "    server {{\n\
                 \x20       listen 127.0.0.1:{port} ssl;\n\
                 \x20       ssl_certificate DIR/srv.pem;\n\
                 \x20       ssl_certificate_key DIR/srv.key;\n\
                 \x20       ssl_client_certificate DIR/ca.pem;\n\
                 \x20       ssl_crl DIR/{crl};\n\
                 \x20       ssl_verify_client optional;\n\
                 \x20       ssl_verify_depth 2;\n\
                 \x20       location / {{ return 200 \"[$ssl_client_verify]\\n\"; }}\n\
                 \x20       location /on {{ if ($ssl_client_verify != SUCCESS) {{ return 403; }} return 200 \"in\\n\"; }}\n\
                 \x20   }}\n"
            )
        };
        let conf = info_log(&wrap_http(
            &format!(
                "{}{}{}{}{}",
                server(ports[0], "ca.crl"),
                server(ports[1], "both.crl"),
                server(ports[2], "old.crl"),
                server(ports[3], "other.crl"),
                // Certificates and no list: OpenSSL looks for lists all
                // the same.
                server(ports[4], "ca.pem"),
            ),
            nginx,
        ))
        .replace("DIR", &dir.path.display().to_string());
        let server = Server::either(nginx, &conf, &ports);
        let mut answers = Vec::new();
        for (i, &port) in ports.iter().enumerate() {
            for cert in ["good", "revoked", "chain", "chain2"] {
                answers.push(format!("{i} {cert}: {}", ask(&dir, port, cert, "/")));
            }
        }
        answers.push(ask(&dir, ports[0], "revoked", "/on"));
        // The reasons, in order.
        let info: Vec<String> = request_lines(&server.read("logs/error.log"))
            .into_iter()
            .filter(|l| l.contains("certificate"))
            .map(|l| l.split(" while ").next().unwrap_or("").to_owned())
            .collect();
        (answers, info)
    };
    let ours = run(false);
    let theirs = run(true);
    assert_eq!(ours, theirs, "waypost (left) and nginx (right)");
    let refused = "400 The SSL certificate error 400";
    let reason = |r: &str| format!("[info] client SSL certificate verify error: ({r})");
    let (revoked, no_list, expired) = (
        reason("23:certificate revoked"),
        reason("3:unable to get certificate CRL"),
        reason("12:CRL has expired"),
    );
    assert_eq!(
        theirs,
        (
            vec![
                "0 good: [SUCCESS]\n 200".to_owned(),
                format!("0 revoked: {refused}"),
                format!("0 chain: {refused}"),
                format!("0 chain2: {refused}"),
                "1 good: [SUCCESS]\n 200".to_owned(),
                format!("1 revoked: {refused}"),
                "1 chain: [SUCCESS]\n 200".to_owned(),
                format!("1 chain2: {refused}"),
                format!("2 good: {refused}"),
                format!("2 revoked: {refused}"),
                format!("2 chain: {refused}"),
                format!("2 chain2: {refused}"),
                format!("3 good: {refused}"),
                format!("3 revoked: {refused}"),
                format!("3 chain: {refused}"),
                format!("3 chain2: {refused}"),
                format!("4 good: {refused}"),
                format!("4 revoked: {refused}"),
                format!("4 chain: {refused}"),
                format!("4 chain2: {refused}"),
                refused.to_owned(),
            ],
            [
                vec![revoked.clone(), no_list.clone(), no_list.clone()],
                vec![revoked.clone(); 2],
                vec![expired; 4],
                vec![no_list; 8],
                vec![revoked],
            ]
            .concat()
        ),
        "nginx's answers and reasons"
    );
}
