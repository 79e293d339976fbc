//! TLS settings built at config load (start, `-t`, every reload): each
//! server's certificates read and checked, and one rustls `ServerConfig`
//! per server of a TLS address, which a handshake picks by SNI. Nothing
//! here runs on the request path.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{
    ClientHello, NoServerSessionStorage, ProducesTickets, ResolvesServerCert,
    ServerSessionMemoryCache, StoresServerSessions,
};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SupportedProtocolVersion};

use crate::conf::model::{CertificateConf, ServerConf, TlsConf};
use crate::conf::ConfError;
use crate::http::client_cert::ClientAuth;

/// The TLS side of one listening address: a config per server of its
/// group (same index as `ListenGroup::servers`).
pub struct TlsListen {
    /// By server, in the group's order; `None`: the server rejects
    /// handshakes (`ssl_reject_handshake on`, or no certificate to answer
    /// with).
    pub configs: Vec<Option<Arc<ServerConfig>>>,
    /// By server too: `ssl_verify_client` of the config's holder.
    pub client_auth: Vec<Option<Arc<ClientAuth>>>,
    /// Whether any server here asks for client certificates.
    pub verifies: bool,
}

/// A server's certificates (`ssl_certificate` may be given more than once,
/// say RSA and ECDSA): each handshake gets the first one whose key can
/// sign with a scheme the client offers, as OpenSSL chooses.
#[derive(Debug)]
struct ServerCerts(Vec<Arc<CertifiedKey>>);

impl ResolvesServerCert for ServerCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let schemes = hello.signature_schemes();
        self.0
            .iter()
            .find(|k| k.key.choose_scheme(schemes).is_some())
            .cloned()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// rustls's TLS 1.2 suites by their OpenSSL names (which `ssl_ciphers`
/// uses), in the order OpenSSL 3 lists them for `HIGH`, with what its
/// cipher-list keywords say of them: the authentication and the cipher.
/// All are ECDHE and AEAD.
const TLS12_SUITES: [(&str, &str, &str); 6] = [
    ("ECDHE-ECDSA-AES256-GCM-SHA384", "ECDSA", "AES256"),
    ("ECDHE-RSA-AES256-GCM-SHA384", "RSA", "AES256"),
    ("ECDHE-ECDSA-CHACHA20-POLY1305", "ECDSA", "CHACHA20"),
    ("ECDHE-RSA-CHACHA20-POLY1305", "RSA", "CHACHA20"),
    ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDSA", "AES128"),
    ("ECDHE-RSA-AES128-GCM-SHA256", "RSA", "AES128"),
];

/// A suite's OpenSSL name (`$ssl_cipher`), for the suites rustls speaks.
pub fn suite_name(suite: rustls::CipherSuite) -> &'static str {
    use rustls::CipherSuite as S;
    match suite {
        S::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        S::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        S::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => TLS12_SUITES[0].0,
        S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => TLS12_SUITES[1].0,
        S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => TLS12_SUITES[2].0,
        S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => TLS12_SUITES[3].0,
        S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => TLS12_SUITES[4].0,
        S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => TLS12_SUITES[5].0,
        _ => "",
    }
}

/// Whether an OpenSSL cipher-list word (one of a `+` join) covers a suite
/// of [`TLS12_SUITES`], as `openssl ciphers` (OpenSSL 3) lists them. Words
/// for what rustls does not have (RC4, DHE, PSK, CBC suites' `SHA256` and
/// `SHA384` MACs, `RSA` key exchange, ...) and unknown ones cover nothing.
fn covers(word: &str, (_, auth, cipher): (&str, &str, &str)) -> bool {
    match word {
        "ALL" | "DEFAULT" | "HIGH" | "TLSv1.2" | "kECDHE" | "kEECDH" | "ECDHE" | "EECDH"
        | "ECDH" => true,
        "aECDSA" | "ECDSA" => auth == "ECDSA",
        "aRSA" => auth == "RSA",
        "AES" | "AESGCM" | "FIPS" => cipher != "CHACHA20",
        "AES128" | "AES256" | "CHACHA20" => cipher == word,
        _ => false,
    }
}

/// The TLS 1.2 suites (OpenSSL names) an `ssl_ciphers` list leaves, in
/// its order: each word a suite's name or `+`-joined keywords that cover
/// it (`EECDH+AESGCM`); `!` or `-` before a word takes what it covers out
/// for good, as OpenSSL does; `+WORD` (moving) and `@STRENGTH` change
/// nothing here. TLS 1.3 suites are not set by `ssl_ciphers`, as in nginx.
pub fn tls12_suites(list: &str) -> Vec<&'static str> {
    let mut chosen: Vec<&'static str> = Vec::new();
    let mut removed: Vec<&'static str> = Vec::new();
    for word in list.split([':', ',', ' ']).filter(|w| !w.is_empty()) {
        let (remove, word) = match word.as_bytes()[0] {
            b'!' | b'-' => (true, &word[1..]),
            b'+' | b'@' => continue,
            _ => (false, word),
        };
        for suite in TLS12_SUITES {
            let named = suite.0 == word;
            if !named && !word.split('+').all(|w| covers(w, suite)) {
                continue;
            }
            if remove {
                removed.push(suite.0);
            } else if !chosen.contains(&suite.0) {
                chosen.push(suite.0);
            }
        }
    }
    chosen.retain(|s| !removed.contains(s));
    chosen
}

/// OpenSSL's names of the key exchange groups (`ssl_ecdh_curve`, compared
/// without case) and rustls's group for each it has; the others are
/// known to OpenSSL, taken and left out.
const GROUPS: &[(&str, Option<rustls::NamedGroup>)] = {
    use rustls::NamedGroup as G;
    &[
        ("X25519", Some(G::X25519)),
        ("P-256", Some(G::secp256r1)),
        ("prime256v1", Some(G::secp256r1)),
        ("secp256r1", Some(G::secp256r1)),
        ("P-384", Some(G::secp384r1)),
        ("secp384r1", Some(G::secp384r1)),
        ("X448", None),
        ("P-521", None),
        ("secp521r1", None),
        ("P-224", None),
        ("secp224r1", None),
        ("P-192", None),
        ("prime192v1", None),
        ("secp192r1", None),
        ("ffdhe2048", None),
        ("ffdhe3072", None),
        ("ffdhe4096", None),
        ("ffdhe6144", None),
        ("ffdhe8192", None),
        ("brainpoolP256r1", None),
        ("brainpoolP384r1", None),
        ("brainpoolP512r1", None),
        ("brainpoolP256r1tls13", None),
        ("brainpoolP384r1tls13", None),
        ("brainpoolP512r1tls13", None),
    ]
};

/// The provider with the key exchange groups of an `ssl_ecdh_curve` list,
/// in its order. A name OpenSSL does not know fails as it fails in nginx;
/// a list of groups rustls has none of would leave no handshake.
fn with_groups(provider: &CryptoProvider, list: &str) -> Result<CryptoProvider, ConfError> {
    let mut groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup> = Vec::new();
    for name in list.split(':').map(str::trim) {
        let Some((_, known)) = GROUPS.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) else {
            return Err(ConfError::bare(format!(
                "SSL_CTX_set1_curves_list(\"{list}\") failed (SSL: error:0A080106:SSL routines::passed invalid argument:group '{name}' cannot be set)"
            )));
        };
        let found = known.and_then(|g| provider.kx_groups.iter().find(|k| k.name() == g));
        if let Some(&group) = found {
            if !groups.iter().any(|k| k.name() == group.name()) {
                groups.push(group);
            }
        }
    }
    if groups.is_empty() {
        return Err(ConfError::bare(format!(
            "\"ssl_ecdh_curve\" \"{list}\" names no key exchange group waypost has (X25519, P-256, P-384)"
        )));
    }
    Ok(CryptoProvider {
        kx_groups: groups,
        ..provider.clone()
    })
}

/// The provider with only `names` (OpenSSL names) among its TLS 1.2
/// suites, in that order; its TLS 1.3 suites as they are.
pub fn with_tls12_suites(provider: &CryptoProvider, names: &[&str]) -> CryptoProvider {
    use rustls::crypto::ring::cipher_suite as cs;
    let by_name = |name: &str| match name {
        "ECDHE-ECDSA-AES256-GCM-SHA384" => Some(cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
        "ECDHE-ECDSA-AES128-GCM-SHA256" => Some(cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
        "ECDHE-ECDSA-CHACHA20-POLY1305" => Some(cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
        "ECDHE-RSA-AES256-GCM-SHA384" => Some(cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
        "ECDHE-RSA-AES128-GCM-SHA256" => Some(cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
        "ECDHE-RSA-CHACHA20-POLY1305" => Some(cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
        _ => None,
    };
    let mut suites: Vec<_> = provider
        .cipher_suites
        .iter()
        .filter(|s| s.version() == &rustls::version::TLS13)
        .copied()
        .collect();
    suites.extend(names.iter().filter_map(|n| by_name(n)));
    CryptoProvider {
        cipher_suites: suites,
        ..provider.clone()
    }
}

/// The errno and text of an I/O error, as nginx prints a system error.
fn os_error(e: &std::io::Error) -> String {
    format!(
        "open() failed ({}: {})",
        e.raw_os_error().unwrap_or(0),
        crate::http::proxy::strerror(e)
    )
}

fn pem_error(e: pem::Error, what: &str) -> String {
    match e {
        pem::Error::NoItemsFound => format!("no PEM {what} found"),
        pem::Error::Io(e) => os_error(&e),
        e => format!("invalid PEM ({e:?})"),
    }
}

/// Reads one `ssl_certificate` (the chain, leaf first) and its key, and
/// checks that they belong together.
pub(crate) fn load_pair(
    c: &CertificateConf,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, ConfError> {
    let cert_error = |cause: String| {
        ConfError::at(
            format!("cannot load certificate \"{}\": {cause}", c.cert.display()),
            c.cert_loc.clone(),
        )
    };
    let key_error = |cause: String| {
        ConfError::at(
            format!(
                "cannot load certificate key \"{}\": {cause}",
                c.key.display()
            ),
            c.key_loc.clone(),
        )
    };
    let text = std::fs::read(&c.cert).map_err(|e| cert_error(os_error(&e)))?;
    let chain = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(pem_error(e, "certificate")))?;
    if chain.is_empty() {
        return Err(cert_error("no PEM certificate found".to_owned()));
    }
    let text = std::fs::read(&c.key).map_err(|e| key_error(os_error(&e)))?;
    let key = match encrypted_key(&text) {
        Some(der) => decrypt_key(&der, c.passwords.as_deref()).map_err(key_error)?,
        None if text.windows(21).any(|w| w == b"Proc-Type: 4,ENCRYPTED") => return Err(key_error(
            "a key encrypted in the traditional form (Proc-Type: 4,ENCRYPTED) is not supported; \
                 convert it to PKCS#8 (openssl pkcs8 -topk8 -v2 aes-256-cbc)"
                .to_owned(),
        )),
        None => PrivateKeyDer::from_pem_slice(&text)
            .map_err(|e| key_error(pem_error(e, "private key")))?,
    };
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| key_error(format!("unsupported key ({e})")))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(key_error(format!(
                "the key does not match the certificate \"{}\"",
                c.cert.display()
            )))
        }
        // The key's public half is not known: nothing to compare.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(e) => Err(cert_error(format!("invalid certificate ({e})"))),
    }
}

/// The DER of a PEM `ENCRYPTED PRIVATE KEY` (PKCS#8, as OpenSSL 3 writes
/// a key with a passphrase), if `text` holds one.
fn encrypted_key(text: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    const BEGIN: &[u8] = b"-----BEGIN ENCRYPTED PRIVATE KEY-----";
    const END: &[u8] = b"-----END ENCRYPTED PRIVATE KEY-----";
    let start = text.windows(BEGIN.len()).position(|w| w == BEGIN)? + BEGIN.len();
    let len = text[start..].windows(END.len()).position(|w| w == END)?;
    let body: Vec<u8> = text[start..start + len]
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// An encrypted PKCS#8 key opened with the first of `passwords` that
/// does (`ssl_password_file`); nginx's OpenSSL message when none does.
fn decrypt_key(
    der: &[u8],
    passwords: Option<&[Vec<u8>]>,
) -> Result<PrivateKeyDer<'static>, String> {
    let failed = || {
        "PEM_read_bio_PrivateKey() failed (SSL: error:1C800064:Provider routines::bad decrypt)"
            .to_owned()
    };
    let Some(passwords) = passwords else {
        // (nginx would ask on the terminal.)
        return Err("the key is encrypted and no password file is set".to_owned());
    };
    let info = pkcs8::EncryptedPrivateKeyInfo::try_from(der).map_err(|_| failed())?;
    passwords
        .iter()
        .find_map(|p| info.decrypt(p).ok())
        .map(|doc| PrivateKeyDer::Pkcs8(doc.as_bytes().to_vec().into()))
        .ok_or_else(failed)
}

/// Session tickets that resume for `ssl_session_timeout`, as nginx's
/// (OpenSSL's session timeout): rustls's ring ticketer (random keys,
/// rotated every 6 hours), with the time of issue sealed in the ticket and
/// checked when it comes back. rustls itself does not expire tickets.
#[derive(Debug)]
struct Tickets {
    inner: Arc<dyn ProducesTickets>,
    timeout: u32,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ProducesTickets for Tickets {
    fn enabled(&self) -> bool {
        true
    }

    /// The lifetime hint clients get.
    fn lifetime(&self) -> u32 {
        self.timeout
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let mut sealed = Vec::with_capacity(8 + plain.len());
        sealed.extend_from_slice(&now_secs().to_be_bytes());
        sealed.extend_from_slice(plain);
        self.inner.encrypt(&sealed)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let plain = self.inner.decrypt(cipher)?;
        let (issued, state) = plain.split_at_checked(8)?;
        let issued = u64::from_be_bytes(issued.try_into().ok()?);
        let age = now_secs().saturating_sub(issued);
        (age <= u64::from(self.timeout)).then(|| state.to_vec())
    }
}

/// Sessions kept for resumption by session ID (`ssl_session_cache`), each
/// resuming for the `ssl_session_timeout` of the server that stored it,
/// as in OpenSSL's cache (a shared zone's servers may have different
/// ones); rustls's cache (least recently stored out first) with the
/// session's deadline in front of each value.
#[derive(Debug)]
struct Sessions {
    inner: Arc<dyn StoresServerSessions>,
    timeout: u64,
}

impl Sessions {
    fn fresh(&self, stored: Vec<u8>) -> Option<Vec<u8>> {
        let (deadline, value) = stored.split_first_chunk::<8>()?;
        (now_secs() <= u64::from_be_bytes(*deadline)).then(|| value.to_vec())
    }
}

impl StoresServerSessions for Sessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let mut stored = Vec::with_capacity(8 + value.len());
        stored.extend_from_slice(&now_secs().saturating_add(self.timeout).to_be_bytes());
        stored.extend_from_slice(&value);
        self.inner.put(key, stored)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.fresh(self.inner.get(key)?)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.fresh(self.inner.take(key)?)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

/// One server's rustls config: its certificates, protocols, cipher
/// suites and session resumption (`tls`), and ALPN with `h2` first when
/// HTTP/2 is on.
fn server_config(
    certs: &Arc<ServerCerts>,
    tls: &TlsConf,
    h2: bool,
    provider: &Arc<CryptoProvider>,
    zones: &mut HashMap<String, Arc<dyn StoresServerSessions>>,
    auth: Option<&ClientAuth>,
) -> Result<ServerConfig, ConfError> {
    let mut versions: Vec<&'static SupportedProtocolVersion> = Vec::with_capacity(2);
    if tls.tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if tls.tls12 {
        versions.push(&rustls::version::TLS12);
    }
    let provider = match &tls.ciphers {
        Some(names) => Arc::new(with_tls12_suites(provider, names)),
        None => provider.clone(),
    };
    let provider = match &tls.ecdh_curve {
        Some(list) => Arc::new(with_groups(&provider, list)?),
        None => provider,
    };
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| ConfError::bare(format!("cannot set up TLS: {e}")))?;
    let builder = match auth {
        Some(auth) => builder.with_client_cert_verifier(auth.ask.clone()),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(certs.clone());
    config.ignore_client_order = tls.prefer_server_ciphers;
    config.alpn_protocols = if h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    // nginx's default `ssl_session_cache none`: no server-side cache;
    // resumption is by tickets (`ssl_session_tickets on`).
    // A timeout of 0 keeps nothing, as nginx's.
    config.session_storage = if tls.session_cache > 0 && !tls.session_timeout.is_zero() {
        let made = || -> Arc<dyn StoresServerSessions> {
            ServerSessionMemoryCache::new(tls.session_cache)
        };
        let inner = match &tls.session_zone {
            // One cache per zone name, as nginx's shared memory zone;
            // each server stores with its own timeout.
            Some(zone) => zones.entry(zone.clone()).or_insert_with(made).clone(),
            None => made(),
        };
        Arc::new(Sessions {
            inner,
            timeout: tls.session_timeout.as_secs(),
        })
    } else {
        Arc::new(NoServerSessionStorage {})
    };
    let timeout = u32::try_from(tls.session_timeout.as_secs()).unwrap_or(u32::MAX);
    if timeout > 0 && tls.session_tickets {
        let inner = rustls::crypto::ring::Ticketer::new()
            .map_err(|e| ConfError::bare(format!("cannot make TLS session tickets: {e}")))?;
        config.ticketer = Arc::new(Tickets { inner, timeout });
    }
    Ok(config)
}

/// What [`build`] needs to know of one listening address.
pub struct Group<'a> {
    /// Indexes into `servers`, in the group's order.
    pub members: &'a [usize],
    /// The index (into `members`) of the default server.
    pub default: usize,
    /// `listen ... http2` on the address.
    pub http2: bool,
}

/// Loads every server's certificates (those of servers without a TLS
/// listen too, as nginx does), then the configs of each TLS address:
/// `None` for a plain one.
pub fn build(
    servers: &[ServerConf],
    groups: &[(Group<'_>, bool)],
) -> Result<Vec<Option<Arc<TlsListen>>>, ConfError> {
    let provider = provider();
    let mut certs: Vec<Option<Arc<ServerCerts>>> = Vec::with_capacity(servers.len());
    for s in servers {
        if s.tls.certificates.is_empty() {
            certs.push(None);
            continue;
        }
        let keys = s
            .tls
            .certificates
            .iter()
            .map(|c| load_pair(c, &provider).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        // nginx reads the file where a server has certificates; rustls
        // has no use for it (no finite-field DH suites).
        if let Some((path, loc)) = &s.tls.dhparam {
            if let Err(e) = std::fs::read(path) {
                return Err(ConfError::at(
                    format!(
                        "cannot load DH parameters \"{}\": {}",
                        path.display(),
                        os_error(&e)
                    ),
                    loc.clone(),
                ));
            }
        }
        // nginx sets the groups where a server has certificates.
        if let Some(list) = &s.tls.ecdh_curve {
            with_groups(&provider, list)?;
        }
        certs.push(Some(Arc::new(ServerCerts(keys))));
    }
    // Servers on several addresses share their configs.
    let mut made: HashMap<(usize, bool), Arc<ServerConfig>> = HashMap::new();
    // nginx's `ssl_verify_client` of each server with certificates.
    let auths = servers
        .iter()
        .zip(&certs)
        .map(|(s, c)| match c {
            Some(_) => ClientAuth::new(&s.tls, &provider).map(|a| a.map(Arc::new)),
            None => Ok(None),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut zones: HashMap<String, Arc<dyn StoresServerSessions>> = HashMap::new();
    let mut out = Vec::with_capacity(groups.len());
    for (group, ssl) in groups {
        if !*ssl {
            out.push(None);
            continue;
        }
        let default = group.members[group.default];
        let mut configs = Vec::with_capacity(group.members.len());
        let mut client_auth = Vec::with_capacity(group.members.len());
        for &si in group.members {
            if servers[si].tls.reject_handshake {
                configs.push(None);
                client_auth.push(None);
                continue;
            }
            // A server without a certificate answers with the default
            // server's, and its TLS settings (nginx keeps that SSL_CTX);
            // one whose default server has none (it rejects handshakes)
            // gets no handshake either.
            let (holder, Some(c)) = (match &certs[si] {
                Some(c) => (si, Some(c)),
                None => (default, certs[default].as_ref()),
            }) else {
                configs.push(None);
                client_auth.push(None);
                continue;
            };
            client_auth.push(auths[holder].clone());
            let h2 = group.http2 || servers[si].http2;
            let config = match made.get(&(holder, h2)) {
                Some(c) => c.clone(),
                None => {
                    let c = Arc::new(server_config(
                        c,
                        &servers[holder].tls,
                        h2,
                        &provider,
                        &mut zones,
                        auths[holder].as_deref(),
                    )?);
                    made.insert((holder, h2), c.clone());
                    c
                }
            };
            configs.push(Some(config));
        }
        let verifies = client_auth.iter().any(Option::is_some);
        out.push(Some(Arc::new(TlsListen {
            configs,
            client_auth,
            verifies,
        })));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_ciphers_lists_as_openssl_reads_them() {
        let certbot = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
                       ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:\
                       ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:\
                       DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384";
        assert_eq!(
            tls12_suites(certbot),
            [
                "ECDHE-ECDSA-AES128-GCM-SHA256",
                "ECDHE-RSA-AES128-GCM-SHA256",
                "ECDHE-ECDSA-AES256-GCM-SHA384",
                "ECDHE-RSA-AES256-GCM-SHA384",
                "ECDHE-ECDSA-CHACHA20-POLY1305",
                "ECDHE-RSA-CHACHA20-POLY1305",
            ]
        );
        assert_eq!(tls12_suites("HIGH:!aNULL:!MD5").len(), 6);
        assert_eq!(
            tls12_suites("EECDH+AESGCM:EDH+AESGCM"),
            [
                "ECDHE-ECDSA-AES256-GCM-SHA384",
                "ECDHE-RSA-AES256-GCM-SHA384",
                "ECDHE-ECDSA-AES128-GCM-SHA256",
                "ECDHE-RSA-AES128-GCM-SHA256",
            ]
        );
        assert_eq!(
            tls12_suites("!ECDSA:ALL:-CHACHA20:+AES128:@STRENGTH"),
            ["ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-GCM-SHA256"]
        );
        assert_eq!(tls12_suites("HIGH:!SHA384:!AEAD").len(), 6);
        assert!(tls12_suites("AES128-SHA:DHE-RSA-AES128-GCM-SHA256:RC4").is_empty());
    }

    #[test]
    fn cached_sessions_expire_after_the_session_timeout() {
        let sessions = Sessions {
            inner: ServerSessionMemoryCache::new(4),
            timeout: 300,
        };
        assert!(sessions.put(b"id".to_vec(), b"state".to_vec()));
        assert_eq!(sessions.get(b"id").as_deref(), Some(&b"state"[..]));
        // Stored 301 seconds ago: its deadline passed a second ago.
        let mut old = (now_secs() - 1).to_be_bytes().to_vec();
        old.extend_from_slice(b"state");
        sessions.inner.put(b"old".to_vec(), old);
        assert_eq!(sessions.get(b"old"), None);
        assert_eq!(sessions.take(b"id").as_deref(), Some(&b"state"[..]));
        assert_eq!(sessions.get(b"id"), None);
    }

    #[test]
    fn tickets_expire_after_the_session_timeout() {
        let inner = rustls::crypto::ring::Ticketer::new().expect("ticketer");
        let fresh = Tickets {
            inner: inner.clone(),
            timeout: 300,
        };
        let sealed = fresh.encrypt(b"state").expect("sealed");
        assert_eq!(fresh.decrypt(&sealed).as_deref(), Some(&b"state"[..]));
        assert_eq!(fresh.lifetime(), 300);
        // A ticket issued 301 seconds ago, sealed by the same keys.
        let mut old = (now_secs() - 301).to_be_bytes().to_vec();
        old.extend_from_slice(b"state");
        let old = inner.encrypt(&old).expect("sealed");
        assert_eq!(fresh.decrypt(&old), None);
        // Not a ticket of ours at all.
        assert_eq!(fresh.decrypt(b"garbage"), None);
    }
}
