//! `ssl_verify_client`: client certificates, as nginx asks for and checks
//! them. The handshake asks for a certificate (naming the CAs of
//! `ssl_client_certificate`) and takes whatever comes, its signatures
//! checked; the certificate is then checked against the CAs, and a request
//! of the connection is refused with 400 where the setting says so, as
//! nginx does it at the HTTP level rather than in the handshake, against
//! the revocation lists of `ssl_crl` too. What the certificate says is the
//! `$ssl_client_*` variables.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::conf::model::{TlsConf, VerifyClient};
use crate::conf::ConfError;

/// A CA of the files that is not self-signed, its names read at load.
struct Link {
    der: CertificateDer<'static>,
    subject: Box<[u8]>,
    issuer: Box<[u8]>,
}

/// A server's `ssl_verify_client` with its CAs.
pub struct ClientAuth {
    pub mode: VerifyClient,
    /// The check against the self-signed CAs; `None` without any.
    check: Option<Arc<dyn ClientCertVerifier>>,
    /// `ssl_crl` names a file without lists: every certificate fails
    /// with OpenSSL's reason 3.
    no_lists: bool,
    /// The CAs of the files that are not self-signed: links of a chain.
    links: Vec<Link>,
    /// `ssl_verify_depth`.
    depth: u32,
    /// What the handshake uses: asks, takes any certificate.
    pub ask: Arc<dyn ClientCertVerifier>,
}

impl ClientAuth {
    /// A server's client authentication; `None` with `ssl_verify_client
    /// off`. nginx's `no ssl_client_certificate for ssl_verify_client`
    /// unless `optional_no_ca`.
    pub fn new(
        tls: &TlsConf,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Option<ClientAuth>, ConfError> {
        if tls.verify_client == VerifyClient::Off {
            return Ok(None);
        }
        let load = |path: &std::path::Path| {
            crate::upstream::tls::load_certs(path).map_err(ConfError::bare)
        };
        let named = match &tls.client_certificate {
            Some(path) => load(path)?,
            None if tls.verify_client == VerifyClient::OptionalNoCa => Vec::new(),
            None => {
                return Err(ConfError::bare(
                    "no ssl_client_certificate for ssl_verify_client".to_owned(),
                ))
            }
        };
        let trusted = match &tls.trusted_certificate {
            Some(path) => load(path)?,
            None => Vec::new(),
        };
        // Every CA of `ssl_client_certificate` is named to the client;
        // as OpenSSL, only a self-signed one is trusted as it is, the
        // others being links of a chain up to one.
        let mut hints = Vec::new();
        let mut roots = rustls::RootCertStore::empty();
        let mut links = Vec::new();
        for (i, cert) in named.iter().chain(&trusted).enumerate() {
            let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert) else {
                continue;
            };
            if i < named.len() {
                hints.push(DistinguishedName::from(parsed.subject().as_raw().to_vec()));
            }
            if parsed.subject().as_raw() == parsed.issuer().as_raw() {
                let _ = roots.add(cert.clone());
            } else {
                links.push(Link {
                    der: cert.clone(),
                    subject: parsed.subject().as_raw().into(),
                    issuer: parsed.issuer().as_raw().into(),
                });
            }
        }
        let mut no_lists = false;
        let check = match roots.is_empty() {
            true => None,
            false => {
                let builder =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                // nginx's `ssl_crl` asks OpenSSL for `CRL_CHECK_ALL`: each
                // certificate of the chain needs its issuer's list, and
                // an expired list fails. (webpki never checks the trust
                // anchor itself, which OpenSSL does against its own list:
                // the same list any certificate it issued needs.)
                let crls = match &tls.crl {
                    Some((_, lists)) => Vec::clone(lists),
                    None => Vec::new(),
                };
                // A file with certificates only: OpenSSL checks for lists
                // all the same, and finds none.
                no_lists = tls.crl.is_some() && crls.is_empty();
                let builder = match crls.is_empty() {
                    true => builder,
                    false => builder.with_crls(crls).enforce_revocation_expiration(),
                };
                Some(builder.build().map_err(|e| {
                    ConfError::bare(format!("cannot check client certificates: {e}"))
                })?)
            }
        };
        Ok(Some(ClientAuth {
            mode: tls.verify_client,
            check,
            no_lists,
            links,
            depth: tls.verify_depth,
            ask: Arc::new(Ask {
                hints,
                algorithms: provider.signature_verification_algorithms,
            }),
        }))
    }

    /// What a finished handshake's client sent, checked; `None` when it
    /// sent no certificate.
    pub fn examine(&self, certs: Option<&[CertificateDer<'static>]>) -> Option<Box<ClientCert>> {
        let (leaf, chain) = certs?.split_first()?;
        let parsed = x509_parser::parse_x509_certificate(leaf)
            .ok()
            .map(|(_, c)| c);
        let self_signed = parsed
            .as_ref()
            .is_some_and(|c| c.subject().as_raw() == c.issuer().as_raw());
        let now = UnixTime::now().as_secs() as i64;
        // The CAs above the certificate, as OpenSSL builds its chain:
        // each issuer looked for among the files' first, then among those
        // the client sent (`true`: from the files).
        let sent: Vec<_> = chain
            .iter()
            .filter_map(|c| x509_parser::parse_x509_certificate(c).ok().map(|(_, c)| c))
            .collect();
        let cas: Vec<Ca<'_>> = self
            .links
            .iter()
            .map(|l| (&*l.subject, &*l.issuer, true))
            .chain(
                sent.iter()
                    .map(|c| (c.subject().as_raw(), c.issuer().as_raw(), false)),
            )
            .collect();
        let above = parsed
            .as_ref()
            .map_or_else(Vec::new, |leaf| walk(leaf.issuer().as_raw(), &cas));
        // The client's chain and the files' links, to find the issuers in.
        let chain: Vec<CertificateDer<'_>> = chain
            .iter()
            .cloned()
            .chain(self.links.iter().map(|l| l.der.clone()))
            .collect();
        let failure = match &self.check {
            // nginx's OpenSSL, with no CA to look in: the dates are checked
            // after the issuer, and their error is the one that stays.
            None => Some(match parsed.as_ref().map(|c| c.validity()) {
                Some(v) if v.not_after.timestamp() < now => (10, "certificate has expired"),
                Some(v) if v.not_before.timestamp() > now => (9, "certificate is not yet valid"),
                _ if self_signed => (18, "self-signed certificate"),
                _ => no_root(&above),
            }),
            Some(check) => match check.verify_client_cert(leaf, &chain, UnixTime::now()) {
                Err(e) => Some(openssl_reason(&e, self_signed, &above)),
                // OpenSSL stops looking for issuers past the depth, so the
                // root above is not found.
                Ok(_) if above.len() > self.depth as usize => {
                    Some(no_root(&above[..=self.depth as usize]))
                }
                Ok(_) if self.no_lists => Some((3, "unable to get certificate CRL")),
                Ok(_) => None,
            },
        };
        Some(Box::new(ClientCert::new(leaf, parsed.as_ref(), failure)))
    }
}

/// A CA to look issuers up in: its subject and issuer (DER), and whether
/// it is one of the files'.
type Ca<'a> = (&'a [u8], &'a [u8], bool);

/// The CAs above a certificate issued by `issuer` up to its root (not
/// included), each found among `cas` in order (the files' first);
/// `true` for one from the files.
fn walk<'a>(mut issuer: &'a [u8], cas: &[Ca<'a>]) -> Vec<bool> {
    let mut above = Vec::new();
    // (Bounded: a chain of CAs that loops is not followed forever.)
    for _ in 0..cas.len() {
        match cas.iter().find(|(subject, _, _)| *subject == issuer) {
            Some((subject, ca_issuer, file)) if subject != ca_issuer => {
                above.push(*file);
                issuer = ca_issuer;
            }
            _ => break,
        }
    }
    above
}

/// OpenSSL's reason when no trusted root is above the CAs found: none
/// (the certificate alone), one from the files among them, or none from
/// the files.
fn no_root(above: &[bool]) -> (u32, &'static str) {
    match above {
        [] => (21, "unable to verify the first certificate"),
        _ if above.contains(&true) => (2, "unable to get issuer certificate"),
        _ => (20, "unable to get local issuer certificate"),
    }
}

/// OpenSSL's code and text for a failed check (`X509_verify_cert_error_string`).
fn openssl_reason(e: &rustls::Error, self_signed: bool, above: &[bool]) -> (u32, &'static str) {
    // OpenSSL finds that first: the certificate is its own issuer, and
    // not a CA it trusts.
    if self_signed {
        return (18, "self-signed certificate");
    }
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => no_root(above),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                (10, "certificate has expired")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                (9, "certificate is not yet valid")
            }
            CertificateError::BadSignature => (7, "certificate signature failure"),
            CertificateError::Revoked => (23, "certificate revoked"),
            CertificateError::UnknownRevocationStatus => (3, "unable to get certificate CRL"),
            CertificateError::ExpiredRevocationList
            | CertificateError::ExpiredRevocationListContext { .. } => (12, "CRL has expired"),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                (26, "unsupported certificate purpose")
            }
            _ => (1, "unspecified certificate verification error"),
        },
        rustls::Error::InvalidCertRevocationList(rustls::CertRevocationListError::BadSignature) => {
            (8, "CRL signature failure")
        }
        _ => (1, "unspecified certificate verification error"),
    }
}

/// The handshake's side: asks for a certificate, naming the CAs, and
/// takes any (the checks come after); the handshake's own signature is
/// checked, so the client holds the certificate's key.
#[derive(Debug)]
struct Ask {
    hints: Vec<DistinguishedName>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for Ask {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A client's certificate as nginx's `$ssl_client_*` variables show it,
/// worked out once per connection.
#[derive(Debug)]
pub struct ClientCert {
    /// `$ssl_client_verify`: `SUCCESS` or `FAILED:reason`.
    pub verify: Box<str>,
    /// OpenSSL's code and reason of a failed check, for the log line.
    pub failure: Option<(u32, &'static str)>,
    /// `$ssl_client_s_dn`, `$ssl_client_i_dn` (RFC 2253).
    pub subject: Box<str>,
    pub issuer: Box<str>,
    /// `$ssl_client_serial`: uppercase hex.
    pub serial: Box<str>,
    /// `$ssl_client_fingerprint`: the SHA-1 of the DER, lowercase hex.
    pub fingerprint: Box<str>,
    /// `$ssl_client_raw_cert`: PEM.
    pub pem: Box<str>,
    /// `$ssl_client_v_start`, `$ssl_client_v_end`: `Nov 28 03:50:38 2026 GMT`.
    pub start: Box<str>,
    pub end: Box<str>,
    /// The end, in Unix seconds, for `$ssl_client_v_remain`.
    pub end_secs: i64,
}

impl ClientCert {
    fn new(
        der: &CertificateDer<'_>,
        parsed: Option<&x509_parser::certificate::X509Certificate<'_>>,
        failure: Option<(u32, &'static str)>,
    ) -> ClientCert {
        use base64::Engine as _;
        use sha1::Digest as _;
        let verify = match failure {
            None => "SUCCESS".into(),
            Some((_, why)) => format!("FAILED:{why}").into(),
        };
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let mut pem = String::with_capacity(b64.len() + b64.len() / 64 + 64);
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or(""));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        let fingerprint = sha1::Sha1::digest(der.as_ref())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        let (subject, issuer, serial, start, end, end_secs) = match parsed {
            Some(c) => {
                let serial = c.raw_serial();
                let first = serial
                    .iter()
                    .position(|&b| b != 0)
                    .unwrap_or(serial.len().saturating_sub(1));
                let serial: String = serial[first..].iter().map(|b| format!("{b:02X}")).collect();
                (
                    rfc2253(c.subject()),
                    rfc2253(c.issuer()),
                    serial,
                    asn1_time(&c.validity().not_before),
                    asn1_time(&c.validity().not_after),
                    c.validity().not_after.timestamp(),
                )
            }
            None => Default::default(),
        };
        ClientCert {
            verify,
            failure,
            subject: subject.into(),
            issuer: issuer.into(),
            serial: serial.into(),
            fingerprint: fingerprint.into(),
            pem: pem.into(),
            start: start.into(),
            end: end.into(),
            end_secs,
        }
    }

    /// `$ssl_client_escaped_cert`: the PEM, URL-encoded.
    pub fn escaped(&self, out: &mut Vec<u8>) {
        crate::http::escape_into(self.pem.as_bytes(), out, |_, c| {
            !(c.is_ascii_alphanumeric() || b"-._~".contains(&c))
        });
    }

    /// `$ssl_client_cert`: the PEM without its last line break, a tab
    /// after each other (nginx's old form: a folded header value).
    pub fn tabbed(&self, out: &mut Vec<u8>) {
        let pem = self.pem.trim_end_matches('\n');
        for (i, line) in pem.split('\n').enumerate() {
            if i > 0 {
                out.extend_from_slice(b"\n\t");
            }
            out.extend_from_slice(line.as_bytes());
        }
    }

    /// `$ssl_client_v_remain`: whole days left, 0 once past.
    pub fn remain(&self, now: i64) -> i64 {
        ((self.end_secs - now) / 86400).max(0)
    }
}

/// OpenSSL's `X509_NAME_print_ex` with `XN_FLAG_RFC2253`: the last RDN
/// first, short attribute names, RFC 2253's escapes.
fn rfc2253(name: &x509_parser::x509::X509Name<'_>) -> String {
    let rdns: Vec<_> = name.iter().collect();
    let mut out = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = attr.attr_type().to_id_string();
            match short_name(&oid) {
                Some(short) => out.push_str(short),
                None => out.push_str(&oid),
            }
            out.push('=');
            match attr.as_str() {
                Ok(value) => escape_2253(value, &mut out),
                // Not a string: `#` and the DER, as OpenSSL dumps it.
                Err(_) => {
                    out.push('#');
                    for b in attr.attr_value().as_bytes() {
                        out.push_str(&format!("{b:02X}"));
                    }
                }
            }
        }
    }
    out
}

/// OpenSSL's short names of the attributes certificates use.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.42" => "GN",
        "2.5.4.43" => "initials",
        "2.5.4.44" => "generationQualifier",
        "2.5.4.46" => "dnQualifier",
        "2.5.4.65" => "pseudonym",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "emailAddress",
        _ => return None,
    })
}

/// RFC 2253's escapes: `,+"\<>;` anywhere, `#` and a space first, a
/// space last; control characters and the bytes of other than ASCII as
/// `\XX`.
fn escape_2253(value: &str, out: &mut String) {
    let last = value.len().saturating_sub(1);
    for (i, c) in value.char_indices() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\{:02X}", c as u32)),
            // OpenSSL's ESC_MSB: each byte of a character beyond ASCII.
            c if !c.is_ascii() => {
                let mut bytes = [0u8; 4];
                for b in c.encode_utf8(&mut bytes).bytes() {
                    out.push_str(&format!("\\{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
}

/// `ASN1_TIME_print`: `Nov 28 03:50:38 2026 GMT` (the day padded with a
/// space).
fn asn1_time(t: &x509_parser::time::ASN1Time) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.timestamp();
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let (y, m, d) = civil(days);
    format!(
        "{} {:2} {:02}:{:02}:{:02} {} GMT",
        MONTHS[(m - 1) as usize],
        d,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        y
    )
}

/// Days since 1970-01-01 as (year, month, day) of the proleptic
/// Gregorian calendar (Howard Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_as_openssl_prints_them() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(20_785), (2026, 11, 28));
        assert_eq!(civil(-1), (1969, 12, 31));
        assert_eq!(civil(11_016), (2000, 2, 29));
    }

    #[test]
    fn rfc2253_escapes() {
        let mut out = String::new();
        escape_2253("Acme, Inc.", &mut out);
        assert_eq!(out, "Acme\\, Inc.");
        out.clear();
        escape_2253("#a b ", &mut out);
        assert_eq!(out, "\\#a b\\ ");
    }
}
