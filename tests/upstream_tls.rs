//! `proxy_pass https://`: TLS backends made in the test (rustls servers
//! with rcgen certificates), behind the same config in nginx and waypost.
//! Verification with the right CA passes; a wrong name or another CA is a
//! 502 with the reason in the error log, and a failed peer is retried and
//! counted as nginx does; without verification a self-signed certificate
//! is fine; `proxy_ssl_server_name` sends the name; TLS connections are
//! kept alive; revocation lists (`proxy_ssl_crl`).

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use waypost_tests::{
    exchange, free_ports, get, next_head, raw_echo, read_until, run_waypost, serve_numbered,
    wrap_http, Server, TempDir,
};

/// A certificate authority made for the test.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA");
        Ca { cert, key }
    }

    /// A server certificate for `names`, signed by this CA.
    fn issue(&self, names: &[&str]) -> Identity {
        let key = KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let cert = CertificateParams::new(names)
            .expect("params")
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign");
        Identity {
            cert: cert.der().clone(),
            key: key.serialize_der(),
        }
    }
}

/// A certificate and its private key (PKCS#8 DER).
struct Identity {
    cert: CertificateDer<'static>,
    key: Vec<u8>,
}

fn self_signed(names: &[&str]) -> Identity {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let made = rcgen::generate_simple_self_signed(names).expect("self-signed");
    Identity {
        cert: made.cert.der().clone(),
        key: made.key_pair.serialize_der(),
    }
}

/// A TLS backend: after the handshake it answers HTTP/1.1 requests on
/// the connection, keep-alive, with `conn=N req=M sni=NAME` (`-` without
/// SNI), closing after `Connection: close`; a request with `Upgrade:
/// raw-echo` gets a 101 and its bytes echoed. It keeps the SNI of every
/// handshake that succeeded.
struct TlsBackend {
    port: u16,
    snis: Arc<Mutex<Vec<Option<String>>>>,
}

impl TlsBackend {
    fn start(id: &Identity) -> TlsBackend {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![id.cert.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key.clone())),
            )
            .expect("server config");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let snis = Arc::new(Mutex::new(Vec::new()));
        let seen = snis.clone();
        serve_numbered(listener, move |stream, id| {
            tls_conn(stream, config.clone(), id, &seen)
        });
        TlsBackend { port, snis }
    }

    fn snis(&self) -> Vec<Option<String>> {
        self.snis.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn tls_conn(
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    id: u32,
    seen: &Mutex<Vec<Option<String>>>,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, stream);
    while tls.conn.is_handshaking() {
        if tls.conn.complete_io(&mut tls.sock).is_err() {
            // The proxy refused the certificate (or spoke no TLS).
            return;
        }
    }
    let sni = tls.conn.server_name().map(str::to_owned);
    seen.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(sni.clone());
    let mut buf = Vec::new();
    let mut requests = 0;
    while let Some(head) = next_head(&mut tls, &mut buf) {
        requests += 1;
        if head.to_ascii_lowercase().contains("\r\nupgrade: raw-echo") {
            let reply = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: raw-echo\r\nConnection: Upgrade\r\n\r\n";
            raw_echo(&mut tls, reply, &buf);
            return;
        }
        // Bodies cut short: closed with no close_notify, or after one;
        // and a body that ends at a close with no close_notify.
        let target = head.split(' ').nth(1).unwrap_or("");
        let cut: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789";
        match target {
            "/cut" | "/cut-notified" => {
                let _ = tls.write_all(cut);
                let _ = tls.flush();
                if target == "/cut-notified" {
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                }
                return;
            }
            "/until-close" => {
                let _ = tls.write_all(b"HTTP/1.1 200 OK\r\n\r\nthe whole body");
                let _ = tls.flush();
                return;
            }
            _ => {}
        }
        let body = format!(
            "conn={id} req={requests} sni={}",
            sni.as_deref().unwrap_or("-")
        );
        let close = head.to_ascii_lowercase().contains("\r\nconnection: close");
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if tls.write_all(reply.as_bytes()).is_err() || tls.flush().is_err() || close {
            tls.conn.send_close_notify();
            let _ = tls.flush();
            return;
        }
    }
}

/// The backends of a test: one with a certificate for `backend.test` from
/// the trusted CA, one with the same name from another CA, one
/// self-signed; and the trusted CA's PEM file.
struct Setup {
    good: TlsBackend,
    foreign: TlsBackend,
    selfsigned: TlsBackend,
    /// Holds `ca_pem` (removed when the test ends).
    _files: TempDir,
    ca_pem: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let ca = Ca::new("waypost test CA");
        let other_ca = Ca::new("another CA");
        let files = TempDir::new("tls-files");
        let ca_pem = files.write("ca.pem", &ca.cert.pem());
        Setup {
            good: TlsBackend::start(&ca.issue(&["backend.test"])),
            foreign: TlsBackend::start(&other_ca.issue(&["backend.test"])),
            selfsigned: TlsBackend::start(&self_signed(&["backend.test"])),
            _files: files,
            ca_pem,
        }
    }

    /// The config both programs run: a location per case, each logging
    /// `$upstream_addr $upstream_status` to `logs/up.log`.
    fn conf(&self, proxy: u16, nginx: bool) -> String {
        let (good, foreign, selfsigned) = (self.good.port, self.foreign.port, self.selfsigned.port);
        wrap_http(
            &format!(
                "\x20   log_format up '$uri $status $upstream_addr $upstream_status';\n\
                 \x20   upstream backend.test {{ server 127.0.0.1:{good}; keepalive 4; }}\n\
                 \x20   upstream other {{ server 127.0.0.1:{good}; }}\n\
                 \x20   upstream foreign {{ server 127.0.0.1:{foreign}; }}\n\
                 \x20   upstream selfsigned {{ server 127.0.0.1:{selfsigned}; }}\n\
                 \x20   upstream two {{ server 127.0.0.1:{foreign}; server 127.0.0.1:{good}; }}\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{proxy};\n\
                 \x20       access_log logs/up.log up;\n\
                 \x20       proxy_ssl_trusted_certificate {ca};\n\
                 \x20       location /verified {{ proxy_pass https://backend.test; proxy_ssl_verify on; }}\n\
                 \x20       location /wrong-name {{ proxy_pass https://other; proxy_ssl_verify on; }}\n\
                 \x20       location /renamed {{ proxy_pass https://other; proxy_ssl_verify on; proxy_ssl_name backend.test; }}\n\
                 \x20       location /other-ca {{ proxy_pass https://foreign; proxy_ssl_verify on; proxy_ssl_name backend.test; }}\n\
                 \x20       location /unverified {{ proxy_pass https://selfsigned; }}\n\
                 \x20       location /self-verified {{ proxy_pass https://selfsigned; proxy_ssl_verify on; proxy_ssl_name backend.test; }}\n\
                 \x20       location /retried {{ proxy_pass https://two; proxy_ssl_verify on; proxy_ssl_name backend.test; }}\n\
                 \x20       location /sni {{ proxy_pass https://backend.test; proxy_ssl_server_name on; }}\n\
                 \x20       location /sni-named {{ proxy_pass https://other; proxy_ssl_server_name on; proxy_ssl_name named.test:8443; }}\n\
                 \x20       location /sni-ip {{ proxy_pass https://127.0.0.1:{good}; proxy_ssl_server_name on; }}\n\
                 \x20       location /var-sni {{ set $u backend.test; proxy_pass https://$u; proxy_ssl_server_name on; }}\n\
                 \x20       location /var-verified {{ set $u backend.test; proxy_pass https://$u; proxy_ssl_verify on; }}\n\
                 \x20       location /kept/ {{\n\
                 \x20           proxy_pass https://backend.test;\n\
                 \x20           proxy_http_version 1.1;\n\
                 \x20           proxy_set_header Connection \"\";\n\
                 \x20           proxy_ssl_verify on;\n\
                 \x20       }}\n\
                 \x20       location /kept-unverified/ {{\n\
                 \x20           proxy_pass https://backend.test;\n\
                 \x20           proxy_http_version 1.1;\n\
                 \x20           proxy_set_header Connection \"\";\n\
                 \x20       }}\n\
                 \x20       location ~ ^/(cut|until-close) {{ proxy_pass https://backend.test; }}\n\
                 \x20       location /tunnel {{\n\
                 \x20           proxy_pass https://backend.test;\n\
                 \x20           proxy_http_version 1.1;\n\
                 \x20           proxy_set_header Upgrade $http_upgrade;\n\
                 \x20           proxy_set_header Connection upgrade;\n\
                 \x20       }}\n\
                 \x20   }}\n",
                ca = self.ca_pem.display(),
            ),
            nginx,
        )
    }
}

/// The error log line with `message`, from the message on (the time and
/// process differ between the programs).
fn error_line(server: &Server, message: &str) -> String {
    let log = server.read("logs/error.log");
    log.lines()
        .find_map(|l| l.find(message).map(|i| l[i..].to_owned()))
        .unwrap_or_else(|| panic!("no \"{message}\" in the error log:\n{log}"))
}

/// Verification on and off, the same answers from nginx and waypost, and
/// the same reasons in the error log for a wrong name and another CA.
#[test]
fn verification_as_nginx() {
    let cases = [
        ("/verified", 200),
        ("/wrong-name", 502),
        ("/renamed", 200),
        ("/other-ca", 502),
        ("/unverified", 200),
        ("/self-verified", 502),
        ("/retried", 200),
        // The peer that failed its handshake is out for fail_timeout.
        ("/retried", 200),
    ];
    let mut runs = Vec::new();
    for nginx in [true, false] {
        let setup = Setup::new();
        let port = free_ports(1)[0];
        let server = Server::either(nginx, &setup.conf(port, nginx), &[port]);
        let statuses: Vec<(&str, u16)> = cases
            .iter()
            .map(|&(path, _)| (path, get(port, path).status))
            .collect();
        assert_eq!(statuses, cases, "nginx={nginx}");
        let lines = server.wait_lines("logs/up.log", cases.len());
        let (good, foreign) = (setup.good.port, setup.foreign.port);
        assert_eq!(
            lines[6..],
            [
                format!("/retried 200 127.0.0.1:{foreign}, 127.0.0.1:{good} 502, 200"),
                format!("/retried 200 127.0.0.1:{good} 200"),
            ],
            "nginx={nginx}"
        );
        let wrong = error_line(&server, "upstream SSL certificate does not match");
        let other_ca = error_line(&server, "upstream SSL certificate verify error: (21:");
        let own = error_line(&server, "upstream SSL certificate verify error: (18:");
        assert_eq!(
            wrong,
            format!(
                "upstream SSL certificate does not match \"other\" while SSL handshaking to upstream, \
                 client: 127.0.0.1, server: , request: \"GET /wrong-name HTTP/1.1\", \
                 upstream: \"https://127.0.0.1:{good}/wrong-name\", host: \"127.0.0.1:{port}\""
            ),
            "nginx={nginx}"
        );
        assert_eq!(
            other_ca,
            format!(
                "upstream SSL certificate verify error: (21:unable to verify the first certificate) \
                 while SSL handshaking to upstream, client: 127.0.0.1, server: , \
                 request: \"GET /other-ca HTTP/1.1\", upstream: \"https://127.0.0.1:{foreign}/other-ca\", \
                 host: \"127.0.0.1:{port}\""
            ),
            "nginx={nginx}"
        );
        assert!(
            own.starts_with(
                "upstream SSL certificate verify error: (18:self-signed certificate) \
                 while SSL handshaking to upstream, client: 127.0.0.1, server: , \
                 request: \"GET /self-verified HTTP/1.1\""
            ),
            "nginx={nginx}: {own}"
        );
        runs.push(
            lines
                .iter()
                .map(|l| l.split(' ').nth(1).map(str::to_owned))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(runs[0], runs[1]);
}

/// `proxy_ssl_server_name on` sends the upstream's name, or
/// `proxy_ssl_name` without its port; never an IP address; off (the
/// default) sends none. The same in both programs.
#[test]
fn server_name_as_nginx() {
    let mut runs = Vec::new();
    for nginx in [true, false] {
        let setup = Setup::new();
        let port = free_ports(1)[0];
        let _server = Server::either(nginx, &setup.conf(port, nginx), &[port]);
        let sni = |path: &str| {
            let resp = get(port, path);
            assert_eq!(resp.status, 200, "nginx={nginx} {path}: {}", resp.body);
            resp.body
                .split(' ')
                .find_map(|w| w.strip_prefix("sni="))
                .map(str::to_owned)
                .expect("sni in the body")
        };
        // With variables in `proxy_pass`, the name is the value's host.
        let got = [
            sni("/sni"),
            sni("/sni-named"),
            sni("/sni-ip"),
            sni("/verified"),
            sni("/var-sni"),
            sni("/var-verified"),
        ];
        assert_eq!(
            got,
            ["backend.test", "named.test", "-", "-", "backend.test", "-"],
            "nginx={nginx}"
        );
        runs.push(got);
    }
    assert_eq!(runs[0], runs[1]);
}

/// `keepalive` keeps TLS connections: requests after the first reuse the
/// connection and its TLS session, in both programs.
#[test]
fn tls_connections_are_kept_alive_as_nginx() {
    for nginx in [true, false] {
        let setup = Setup::new();
        let port = free_ports(1)[0];
        let _server = Server::either(nginx, &setup.conf(port, nginx), &[port]);
        let bodies: Vec<String> = ["/kept/a", "/kept/b", "/kept/c"]
            .iter()
            .map(|p| get(port, p).body)
            .collect();
        assert_eq!(
            bodies,
            [
                "conn=1 req=1 sni=-",
                "conn=1 req=2 sni=-",
                "conn=1 req=3 sni=-"
            ],
            "nginx={nginx}"
        );
        assert_eq!(setup.good.snis().len(), 1, "one handshake");
    }
}

/// A pooled TLS connection is reused only by a location with the same TLS
/// settings: one made with verification is not lent to a location
/// without, nor the other way round (nginx's keepalive cache looks at the
/// peer's address only; README: differences).
#[test]
fn pooled_tls_connections_keep_their_settings() {
    let setup = Setup::new();
    let port = free_ports(1)[0];
    let _server = Server::waypost(&setup.conf(port, false), &[port]);
    assert_eq!(get(port, "/kept/a").body, "conn=1 req=1 sni=-");
    assert_eq!(get(port, "/kept-unverified/a").body, "conn=2 req=1 sni=-");
    assert_eq!(get(port, "/kept/b").body, "conn=1 req=2 sni=-");
    assert_eq!(get(port, "/kept-unverified/b").body, "conn=2 req=2 sni=-");
}

/// An upgraded connection to an https upstream tunnels through TLS.
#[test]
fn tunnel_over_tls() {
    let setup = Setup::new();
    let port = free_ports(1)[0];
    let _server = Server::waypost(&setup.conf(port, false), &[port]);
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"GET /tunnel HTTP/1.1\r\nHost: x\r\nUpgrade: raw-echo\r\nConnection: Upgrade\r\n\r\nfirst;")
        .expect("write");
    let mut got = Vec::new();
    read_until(&mut s, &mut got, "closed", |got| got.ends_with(b"first;"));
    s.write_all(b"second").expect("write");
    read_until(&mut s, &mut got, "closed", |got| got.ends_with(b"second"));
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\nfirst;second"), "{text}");
}

/// Something that speaks no TLS behind `https://`: a failed handshake,
/// 502, logged as nginx's `SSL_do_handshake() failed` (the reason is
/// rustls's).
#[test]
fn no_tls_behind_https_is_a_bad_gateway() {
    let plain = TcpListener::bind("127.0.0.1:0").expect("bind");
    let plain_port = plain.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut s in plain.incoming().flatten() {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let port = free_ports(1)[0];
    let conf = wrap_http(
        &format!(
            "\x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       location / {{ proxy_pass https://127.0.0.1:{plain_port}; }}\n\
             \x20   }}\n"
        ),
        false,
    );
    let server = Server::waypost(&conf, &[port]);
    assert_eq!(get(port, "/x").status, 502);
    let line = error_line(&server, "SSL_do_handshake() failed (");
    assert!(
        line.contains(&format!(
            ") while SSL handshaking to upstream, client: 127.0.0.1, server: , request: \"GET /x HTTP/1.1\", upstream: \"https://127.0.0.1:{plain_port}/x\""
        )),
        "{line}"
    );
}

/// `proxy_ssl_trusted_certificate` is read where a location verifies,
/// while the configuration is checked: a file that is missing or holds
/// no certificate fails `-t`, with no place (nginx's reason is OpenSSL's
/// text; waypost says what was wrong), and a file no verifying location
/// uses is not read, as in nginx.
#[test]
fn trusted_certificate_errors() {
    let dir = TempDir::new("tls-conf");
    dir.write("empty.pem", "no certificate here\n");
    let check = |trusted: &str, verify: &str| {
        let conf = dir.write(
            "test.conf",
            &format!(
                "error_log logs/error.log;\npid logs/t.pid;\nevents {{}}\nhttp {{\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{};\n\
                 \x20       location / {{\n\
                 \x20           proxy_pass https://127.0.0.1:1;\n\
                 \x20           proxy_ssl_trusted_certificate {trusted};\n\
                 \x20           proxy_ssl_verify {verify};\n\
                 \x20       }}\n\
                 \x20   }}\n}}\n",
                free_ports(1)[0]
            ),
        );
        let out = run_waypost(&dir, &["-t", "-c", &conf.display().to_string()]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = check("missing.pem", "on");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "waypost: [emerg] SSL_CTX_load_verify_locations(\"{}/missing.pem\") failed (2: No such file or directory)\n",
            dir.path.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("syntax is ok"), "{stderr}");
    let (code, stderr) = check("empty.pem", "on");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "waypost: [emerg] SSL_CTX_load_verify_locations(\"{}/empty.pem\") failed (no certificate found)\n",
            dir.path.display()
        )),
        "{stderr}"
    );
    let (code, stderr) = check("missing.pem", "off");
    assert_eq!(code, Some(0), "{stderr}");
}

/// `proxy_ssl_crl` side by side with nginx: a backend whose certificate
/// (serial 7, from the trusted CA) is on the CA's list is refused with
/// OpenSSL's reason 23, one not on it passes; a list past its next update
/// (12), another CA's list (3: no list from the backend's issuer); and a
/// list file that does not exist, read only where a location verifies.
/// (Without session reuse: nginx resumes a peer's session for every
/// location, and a resumed session is not checked again.)
#[test]
fn revocation_lists_as_nginx() {
    use rcgen::SerialNumber;
    let ca = Ca::new("crl test CA");
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["backend.test".to_owned()]).expect("params");
    params.serial_number = Some(SerialNumber::from(7u64));
    let cert = params.signed_by(&key, &ca.cert, &ca.key).expect("sign");
    let backend = TlsBackend::start(&Identity {
        cert: cert.der().clone(),
        key: key.serialize_der(),
    });
    let list = |issuer: &Ca, serial: u64, next: i32| {
        waypost_tests::revocation_list(&issuer.cert, &issuer.key, serial, next)
    };
    let files = TempDir::new("tls-crl");
    files.write("ca.pem", &ca.cert.pem());
    files.write("revoked.crl", &list(&ca, 7, 2090));
    files.write("clean.crl", &list(&ca, 8, 2090));
    files.write("old.crl", &list(&ca, 8, 2021));
    files.write("other.crl", &list(&Ca::new("another CA"), 7, 2090));
    // Certificates and no list: OpenSSL looks for lists all the same.
    files.write("certs.crl", &ca.cert.pem());
    let cases = [
        ("/clean", 200),
        ("/revoked", 502),
        ("/old", 502),
        ("/other", 502),
        ("/certs", 502),
        ("/unverified", 200),
    ];
    let mut reasons = Vec::new();
    for nginx in [true, false] {
        let port = free_ports(1)[0];
        let location = |name: &str| {
            format!(
                "        location /{name} {{ proxy_pass https://backend.test; proxy_ssl_verify on; proxy_ssl_crl {}/{name}.crl; }}\n",
                files.path.display()
            )
        };
        let conf = wrap_http(
            &format!(
                "    upstream backend.test {{ server 127.0.0.1:{}; }}\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:{port};\n\
                 \x20       proxy_ssl_trusted_certificate {}/ca.pem;\n\
                 \x20       proxy_ssl_session_reuse off;\n\
                 {}{}{}{}{}\
                 \x20       location /unverified {{ proxy_pass https://backend.test; proxy_ssl_crl {}/missing.crl; }}\n\
                 \x20   }}\n",
                backend.port,
                files.path.display(),
                location("clean"),
                location("revoked"),
                location("old"),
                location("other"),
                location("certs"),
                files.path.display(),
            ),
            nginx,
        );
        let server = Server::either(nginx, &conf, &[port]);
        let statuses: Vec<(&str, u16)> = cases
            .iter()
            .map(|&(path, _)| (path, get(port, path).status))
            .collect();
        assert_eq!(statuses, cases, "nginx={nginx}");
        reasons.push(
            ["/revoked", "/old", "/other", "/certs"]
                .iter()
                .map(|path| {
                    let log = server.read("logs/error.log");
                    let needle = format!("request: \"GET {path} HTTP/1.1\"");
                    let line = log.lines().find(|l| l.contains(&needle)).unwrap_or("");
                    let reason = line.split(" while ").next().unwrap_or("");
                    let reason = reason.find("upstream SSL").map_or("", |i| &reason[i..]);
                    format!("{path} {reason}")
                })
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(reasons[0], reasons[1], "nginx (left) and waypost (right)");
    assert_eq!(
        reasons[0],
        [
            "/revoked upstream SSL certificate verify error: (23:certificate revoked)",
            "/old upstream SSL certificate verify error: (12:CRL has expired)",
            "/other upstream SSL certificate verify error: (3:unable to get certificate CRL)",
            "/certs upstream SSL certificate verify error: (3:unable to get certificate CRL)",
        ]
    );
}

/// A body an https upstream cuts short is logged as nginx logs it: a
/// close with or without close_notify is `upstream prematurely closed
/// connection`; a body that ends at the close, with no close_notify, is
/// whole. (A reset is not compared: whether the head was read before it
/// came is a race, in nginx as in waypost.)
#[test]
fn bodies_cut_short_over_tls_as_nginx() {
    let mut runs = Vec::new();
    for nginx in [true, false] {
        let setup = Setup::new();
        let port = free_ports(1)[0];
        let server = Server::either(nginx, &setup.conf(port, nginx), &[port]);
        let mut got = Vec::new();
        for path in ["/cut", "/cut-notified", "/until-close"] {
            let text = exchange(port, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"))
                .to_ascii_lowercase();
            let whole = if text.contains("transfer-encoding: chunked") {
                text.ends_with("0\r\n\r\n")
            } else {
                !text.contains("content-length: 100")
            };
            got.push(format!("{path} whole={whole}"));
        }
        let lines: Vec<String> = server
            .error_lines(0)
            .into_iter()
            .filter(|l| l.contains("reading upstream"))
            .map(|l| l.replace(&setup.good.port.to_string(), "PORT"))
            .collect();
        runs.push((got, lines));
    }
    assert_eq!(runs[1], runs[0]);
}
