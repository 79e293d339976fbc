//! TLS to upstreams (`proxy_pass https://`), on rustls with the `ring`
//! provider: the trusted certificates, read while the configuration is
//! checked; the client configurations, built once per configuration load
//! and shared by the locations that use the same settings; the name a
//! connection sends and checks; and nginx's words for a failed handshake.

use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// The process's one `ring` provider, named explicitly so that nothing
/// depends on a process-wide default being installed.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// `proxy_ssl_trusted_certificate FILE`: the PEM certificates of `path`,
/// as trust anchors. Errors read as nginx's (whose reason is OpenSSL's
/// text; this one says what was wrong in our words).
pub fn load_trusted(path: &Path) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| load_failed(path, format!("invalid certificate: {e}")))?;
    }
    Ok(Arc::new(roots))
}

/// The certificates of a PEM file (one at least), with nginx's error.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| {
        load_failed(
            path,
            format!(
                "{}: {}",
                e.raw_os_error().unwrap_or(0),
                crate::http::proxy::strerror(&e)
            ),
        )
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| load_failed(path, format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(load_failed(path, "no certificate found".to_owned()));
    }
    Ok(certs)
}

/// The revocation lists of a PEM file (`ssl_crl`), as nginx loads them
/// with `X509_LOOKUP_load_file`: a file with neither a list nor a
/// certificate is refused.
pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let failed = |why: String| {
        format!(
            "X509_LOOKUP_load_file(\"{}\") failed ({why})",
            path.display()
        )
    };
    let pem = std::fs::read(path).map_err(|e| {
        failed(format!(
            "{}: {}",
            e.raw_os_error().unwrap_or(0),
            crate::http::proxy::strerror(&e)
        ))
    })?;
    let crls = CertificateRevocationListDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(format!("invalid PEM: {e}")))?;
    // OpenSSL takes a file with certificates but no list as loaded.
    if crls.is_empty() && CertificateDer::pem_slice_iter(&pem).next().is_none() {
        return Err(failed("no certificate or crl found".to_owned()));
    }
    Ok(crls)
}

fn load_failed(path: &Path, why: String) -> String {
    format!(
        "SSL_CTX_load_verify_locations(\"{}\") failed ({why})",
        path.display()
    )
}

/// What `proxy_ssl_verify off` (nginx's default) checks of the upstream's
/// certificate: nothing. The handshake's own signatures are still checked,
/// so the connection is encrypted to whoever holds the key of the
/// certificate presented, which is all nginx promises without
/// verification.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `proxy_ssl_verify on`: webpki's verification, with an unknown issuer
/// told apart as OpenSSL tells it (nginx logs OpenSSL's verify result):
/// a self-signed certificate, a lone certificate whose issuer is unknown,
/// or a chain whose top is.
#[derive(Debug)]
struct Verify {
    webpki: Arc<WebPkiServerVerifier>,
    provider: Arc<CryptoProvider>,
    /// `proxy_ssl_crl` names a file without lists (OpenSSL's reason 3
    /// for every certificate).
    no_lists: bool,
}

/// OpenSSL's verify results that webpki reports as one `UnknownIssuer`.
#[derive(Debug)]
enum Unverified {
    /// 18: the certificate signs itself and is not trusted.
    SelfSigned,
    /// 21: a certificate alone, its issuer unknown.
    FirstCertificate,
    /// 20: the chain's top is issued by an unknown certificate.
    LocalIssuer,
}

impl std::fmt::Display for Unverified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unverified::SelfSigned => "18:self-signed certificate",
            Unverified::FirstCertificate => "21:unable to verify the first certificate",
            Unverified::LocalIssuer => "20:unable to get local issuer certificate",
        })
    }
}

impl std::error::Error for Unverified {}

impl Verify {
    /// Whether `cert` verifies with itself as the only trust anchor: it
    /// is self-signed. Asked only of a certificate already refused.
    fn self_signed(&self, cert: &CertificateDer<'_>, name: &ServerName<'_>, now: UnixTime) -> bool {
        let mut roots = RootCertStore::empty();
        if roots.add(cert.clone().into_owned()).is_err() {
            return false;
        }
        let Ok(alone) =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
        else {
            return false;
        };
        matches!(
            alone.verify_server_cert(cert, &[], name, &[], now),
            Ok(_)
                | Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. }
                ))
        )
    }
}

impl ServerCertVerifier for Verify {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match verified {
            Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
                let why = if !intermediates.is_empty() {
                    Unverified::LocalIssuer
                } else if self.self_signed(end_entity, server_name, now) {
                    Unverified::SelfSigned
                } else {
                    Unverified::FirstCertificate
                };
                Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                    rustls::OtherError(Arc::new(why)),
                )))
            }
            Ok(_) if self.no_lists => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownRevocationStatus,
            )),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// A client configuration, shared by every location with the same TLS
/// settings. Its `id` tells pooled connections apart: a connection made
/// with one configuration (say, unverified) is never reused by a location
/// with another.
pub struct TlsClient {
    pub id: u32,
    pub connector: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient").field("id", &self.id).finish()
    }
}

/// What a client configuration is made of besides verification and SNI.
pub struct ClientOptions {
    /// `proxy_ssl_certificate` and its key: shown to an upstream that asks.
    pub certificate: Option<Arc<rustls::sign::CertifiedKey>>,
    /// `proxy_ssl_protocols`.
    pub tls12: bool,
    pub tls13: bool,
    /// `proxy_ssl_session_reuse`.
    pub session_reuse: bool,
    /// `proxy_ssl_ciphers`: the TLS 1.2 suites by OpenSSL names, in
    /// order (`None`: all of rustls's).
    pub ciphers: Option<Vec<&'static str>>,
    /// `proxy_ssl_crl`: every certificate of the upstream's chain needs
    /// its issuer's list (OpenSSL's `CRL_CHECK_ALL`, as nginx asks); a
    /// file without lists fails every certificate (`Some` and empty).
    pub crls: Option<Vec<CertificateRevocationListDer<'static>>>,
}

/// The one certificate a client configuration shows.
#[derive(Debug)]
struct ClientCertificate(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for ClientCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        // nginx sends its certificate whatever CAs the server names.
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl TlsClient {
    /// `trusted`: the anchors to verify against (`proxy_ssl_verify on`),
    /// or `None` to accept any certificate; `sni`: whether to send the
    /// name (`proxy_ssl_server_name`). The name is checked against the
    /// certificate whenever it is verified, SNI or not, as nginx does.
    pub fn new(
        trusted: Option<Arc<RootCertStore>>,
        sni: bool,
        options: ClientOptions,
    ) -> Result<TlsClient, String> {
        // Unique in the process, not only in one configuration: pools are
        // rebuilt on reload, but an id must never name two settings.
        static IDS: AtomicU32 = AtomicU32::new(1);
        let provider = provider();
        let verifier: Arc<dyn ServerCertVerifier> = match trusted {
            Some(roots) => Arc::new(Verify {
                no_lists: options.crls.as_ref().is_some_and(Vec::is_empty),
                webpki: {
                    let builder =
                        WebPkiServerVerifier::builder_with_provider(roots, provider.clone());
                    match options.crls.as_deref() {
                        None | Some([]) => builder,
                        Some(crls) => builder
                            .with_crls(crls.iter().cloned())
                            .enforce_revocation_expiration(),
                    }
                    .build()
                    .map_err(|e| format!("proxy_ssl_trusted_certificate: {e}"))?
                },
                provider: provider.clone(),
            }),
            None => Arc::new(AcceptAnyCertificate(provider.clone())),
        };
        let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::with_capacity(2);
        if options.tls13 {
            versions.push(&rustls::version::TLS13);
        }
        if options.tls12 {
            versions.push(&rustls::version::TLS12);
        }
        let provider = match &options.ciphers {
            // With TLS 1.3 off, no suite would leave no handshake at all.
            Some(names) if names.is_empty() && !options.tls13 => {
                return Err(
                    "\"proxy_ssl_ciphers\" names no TLS 1.2 cipher suite waypost has \
                     (ECDHE with AES-GCM or ChaCha20-Poly1305) and TLS 1.3 is off"
                        .to_owned(),
                )
            }
            Some(names) => Arc::new(crate::runtime::tls::with_tls12_suites(&provider, names)),
            None => provider,
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(|e| format!("TLS client: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match options.certificate {
            Some(certified) => {
                builder.with_client_cert_resolver(Arc::new(ClientCertificate(certified)))
            }
            None => builder.with_no_client_auth(),
        };
        config.enable_sni = sni;
        if !options.session_reuse {
            config.resumption = rustls::client::Resumption::disabled();
        }
        Ok(TlsClient {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }
}

/// The name as nginx's `ngx_http_upstream_ssl_name` uses it: without a
/// port (`$proxy_host` and `$http_host` may carry one), `[v6]` kept whole.
pub fn strip_port(name: &str) -> &str {
    let from = if name.starts_with('[') {
        name.find(']').unwrap_or(0)
    } else {
        0
    };
    match name[from..].find(':') {
        Some(i) => &name[..from + i],
        None => name,
    }
}

/// The rustls name for `name` (already without its port): an IP literal
/// as an address (rustls sends no SNI for those, as RFC 6066 and nginx
/// say), else a DNS name. A name rustls cannot take (empty, or not a
/// host name) falls back to the peer's address: no SNI then, and a
/// verified certificate will not match.
pub fn server_name(name: &str, peer: IpAddr) -> ServerName<'static> {
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return ServerName::IpAddress(ip.into());
    }
    ServerName::try_from(name.to_owned()).unwrap_or(ServerName::IpAddress(peer.into()))
}

/// nginx's error log text for a handshake that failed with `e`, for a
/// connection to `name` (without "while SSL handshaking to upstream").
pub fn handshake_error(e: &io::Error, name: &str) -> String {
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return match tls {
            rustls::Error::InvalidCertificate(cert) => certificate_error(cert, name),
            other => format!("SSL_do_handshake() failed (SSL: {other})"),
        };
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof => "peer closed connection in SSL handshake".to_owned(),
        _ => match e.raw_os_error() {
            Some(errno) => format!(
                "SSL_do_handshake() failed ({errno}: {})",
                crate::http::proxy::strerror(e)
            ),
            None => format!("SSL_do_handshake() failed ({e})"),
        },
    }
}

/// A certificate rustls refused, in nginx's words: the name check
/// (`ngx_ssl_check_host`) or OpenSSL's verify result, by its number and
/// text where OpenSSL has the same reason.
fn certificate_error(e: &CertificateError, name: &str) -> String {
    let verify =
        |code: u32, text: &str| format!("upstream SSL certificate verify error: ({code}:{text})");
    match e {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!("upstream SSL certificate does not match \"{name}\"")
        }
        // Told apart by `Verify` (below, `Other`) where it can be.
        CertificateError::UnknownIssuer => verify(20, "unable to get local issuer certificate"),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            verify(10, "certificate has expired")
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            verify(9, "certificate is not yet valid")
        }
        CertificateError::Revoked => verify(23, "certificate revoked"),
        CertificateError::UnknownRevocationStatus => verify(3, "unable to get certificate CRL"),
        CertificateError::ExpiredRevocationList
        | CertificateError::ExpiredRevocationListContext { .. } => verify(12, "CRL has expired"),
        CertificateError::BadSignature => verify(7, "certificate signature failure"),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            verify(26, "unsupported certificate purpose")
        }
        CertificateError::Other(other) => {
            format!("upstream SSL certificate verify error: ({other})")
        }
        other => format!("upstream SSL certificate verify error: ({other:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_their_port_as_nginx_strips_it() {
        assert_eq!(strip_port("backend"), "backend");
        assert_eq!(strip_port("backend:8443"), "backend");
        assert_eq!(strip_port("[::1]:8443"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port(""), "");
    }

    #[test]
    fn ip_literals_are_addresses_and_bad_names_fall_back() {
        let peer: IpAddr = [127, 0, 0, 2].into();
        assert!(matches!(
            server_name("127.0.0.1", peer),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[::1]", peer),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("backend.test", peer),
            ServerName::DnsName(_)
        ));
        assert_eq!(
            server_name("", peer),
            ServerName::IpAddress(peer.into()),
            "no name: the peer's address"
        );
    }

    #[test]
    fn a_missing_or_empty_bundle_is_a_config_error() {
        let e = load_trusted(Path::new("/nonexistent/ca.pem")).expect_err("missing");
        assert_eq!(
            e,
            "SSL_CTX_load_verify_locations(\"/nonexistent/ca.pem\") failed (2: No such file or directory)"
        );
        let dir = std::env::temp_dir().join(format!("waypost-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let e = load_trusted(&empty).expect_err("empty");
        assert!(e.ends_with("failed (no certificate found)"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
