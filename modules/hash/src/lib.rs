//! `hash`: nginx's `hash KEY`, `hash KEY consistent` (ketama) and `ip_hash`
//! balancers (`ngx_http_upstream_hash_module.c`,
//! `ngx_http_upstream_ip_hash_module.c`), loaded from `libwaypost_hash.so`.
//!
//! Anatomy shared by every waypost balancer: directives, init_upstream,
//! init_peer, get, free. As in nginx, every method falls back to the round
//! robin step (with its weights, tried bitmap and backup switch) and uses
//! round robin's failure accounting.
//!
//! The selection logic takes the evaluated key and the client's address
//! bytes ([`HashBalancer::start`]), so it is tested without a proxy; the
//! [`Balancer`] impl only evaluates the key.

use std::collections::HashMap;

use crc32fast::Hasher;
use waypost_module_api::prelude::*;
use waypost_module_api::wrr::SmoothWeights;

/// The `server` parameters the hash methods accept: all but `backup`.
const PARAMS: ServerParams = ServerParams::ALL.without(ServerParams::BACKUP);

/// Unusable candidates a request may meet before falling back to round
/// robin (nginx: `tries > 20`).
const MAX_TRIES: u32 = 20;

/// Points on the consistent ring per unit of weight (ketama's 160).
const POINTS_PER_WEIGHT: usize = 160;

/// Directives: `hash KEY [consistent]` and `ip_hash`, both balancing
/// methods of an `upstream` block that refuse `backup`.
pub struct HashModule;

impl Module for HashModule {
    const NAME: &'static str = "hash";
    const DIRECTIVES: &'static [DirectiveSpec] = &[
        DirectiveSpec::balancer("hash", 1, 2, PARAMS),
        DirectiveSpec::balancer("ip_hash", 0, 0, PARAMS),
    ];
    type Upstream = HashBalancer;

    /// init_upstream: the key compiled once; for `consistent`, the ring.
    fn init_upstream(config: &UpstreamConfig<'_>) -> Result<HashBalancer, ConfigError> {
        let directive = config
            .directives()
            .filter(|d| matches!(d.name(), "hash" | "ip_hash"))
            .last()
            .ok_or_else(|| config.error("no \"hash\" or \"ip_hash\" directive in upstream"))?;
        let method = if directive.name() == "ip_hash" {
            Method::IpHash
        } else {
            // nginx compiles the key before it looks at the second argument.
            let key = config
                .compile(directive.arg(0))
                .map_err(|message| directive.error(message))?;
            match directive.args().len() {
                1 => Method::Hash { key },
                _ if directive.arg(1) == "consistent" => Method::Consistent {
                    key,
                    ring: Ring::build(&config.peers()[..config.primary()]),
                },
                _ => {
                    return Err(
                        directive.error(format!("invalid parameter \"{}\"", directive.arg(1)))
                    )
                }
            }
        };
        Ok(HashBalancer::new(method, config.peers(), config.workers()))
    }
}

/// Which balancing method an upstream uses.
pub enum Method {
    /// `hash KEY;`
    Hash {
        /// The compiled key.
        key: Template,
    },
    /// `hash KEY consistent;`
    Consistent {
        /// The compiled key.
        key: Template,
        /// The ketama ring of the primary peers.
        ring: Ring,
    },
    /// `ip_hash;`
    IpHash,
}

/// The upstream object.
pub struct HashBalancer {
    method: Method,
    /// Round robin's weights: the fallback, and the step `consistent` runs
    /// among the peers of one server.
    weights: SmoothWeights,
}

impl HashBalancer {
    /// The balancer for `peers` (primaries first) with `workers` worker
    /// threads.
    pub fn new(method: Method, peers: &[PeerConfig<'_>], workers: usize) -> HashBalancer {
        HashBalancer {
            method,
            weights: SmoothWeights::new(peers, workers),
        }
    }

    /// The per-request state for an evaluated `key` (ignored by `ip_hash`)
    /// and the client's address bytes (used by `ip_hash` only).
    pub fn start(&self, key: &str, client_ip: &[u8]) -> State {
        match &self.method {
            Method::Hash { .. } => {
                let mut hasher = Hasher::new();
                hasher.update(key.as_bytes());
                State::Hash(HashState {
                    key: hasher,
                    hash: 0,
                    rehash: 0,
                    tries: 0,
                })
            }
            Method::Consistent { ring, .. } => State::Consistent(ChashState {
                point: ring.find(crc32fast::hash(key.as_bytes())),
                tries: 0,
                empty_key: key.is_empty(),
            }),
            Method::IpHash => {
                let mut addr = [0u8; 16];
                // IPv4: the first three octets; IPv6: all 16 bytes; anything
                // else (a unix socket): three zero bytes.
                let len = match client_ip.len() {
                    4 => 3,
                    16 => 16,
                    _ => 3,
                };
                if client_ip.len() >= len {
                    addr[..len].copy_from_slice(&client_ip[..len]);
                }
                State::IpHash(IpState {
                    addr,
                    len: len as u8,
                    hash: 89,
                    tries: 0,
                })
            }
        }
    }

    /// nginx's round robin, with the backup switch.
    fn round_robin(&self, peers: &Peers<'_>) -> Option<usize> {
        self.weights.pick_with_backup(peers)
    }

    /// `hash KEY;` (`ngx_http_upstream_get_hash_peer`).
    fn get_hash(&self, s: &mut HashState, peers: &Peers<'_>) -> Option<usize> {
        let total = peers.primary_weight();
        if s.tries > MAX_TRIES || peers.primary() < 2 || s.key.total_len() == 0 || total == 0 {
            return self.round_robin(peers);
        }
        loop {
            // Compatible with Cache::Memcached:
            // ((crc32([REHASH] KEY) >> 16) & 0x7fff) + PREV_HASH.
            let crc = if s.rehash == 0 {
                s.key.clone().finalize()
            } else {
                let mut buf = [0u8; 10];
                let mut h = Hasher::new();
                h.update(decimal(s.rehash, &mut buf));
                h.combine(&s.key);
                h.finalize()
            };
            s.hash = s.hash.wrapping_add((crc >> 16) & 0x7fff);
            s.rehash += 1;
            let p = walk(peers, s.hash % total);
            if peers.is_eligible(p) {
                return Some(p);
            }
            s.tries += 1;
            if s.tries > MAX_TRIES {
                return self.round_robin(peers);
            }
        }
    }

    /// `hash KEY consistent;` (`ngx_http_upstream_get_chash_peer`).
    fn get_chash(&self, ring: &Ring, s: &mut ChashState, peers: &Peers<'_>) -> Option<usize> {
        if s.tries > MAX_TRIES || peers.single() || s.empty_key {
            return self.round_robin(peers);
        }
        if ring.is_empty() {
            return None;
        }
        loop {
            let server = ring.server_at(s.point % ring.len());
            if let Some(p) = self.weights.pick(peers, ring.peers_of(server)) {
                return Some(p);
            }
            s.point += 1;
            s.tries += 1;
            if s.tries > MAX_TRIES {
                return self.round_robin(peers);
            }
        }
    }

    /// `ip_hash;` (`ngx_http_upstream_get_ip_hash_peer`).
    fn get_ip_hash(&self, s: &mut IpState, peers: &Peers<'_>) -> Option<usize> {
        let total = peers.primary_weight();
        if s.tries > MAX_TRIES || peers.primary() < 2 || total == 0 {
            return self.round_robin(peers);
        }
        let mut hash = s.hash;
        loop {
            for &b in &s.addr[..usize::from(s.len)] {
                hash = (hash * 113 + u32::from(b)) % 6271;
            }
            let p = walk(peers, hash % total);
            if peers.is_eligible(p) {
                s.hash = hash;
                return Some(p);
            }
            s.tries += 1;
            if s.tries > MAX_TRIES {
                return self.round_robin(peers);
            }
        }
    }
}

/// The primary peer that weight offset `w` (below the primary weight)
/// falls on, `down` peers counted.
fn walk(peers: &Peers<'_>, mut w: u32) -> usize {
    let mut p = 0;
    while p + 1 < peers.primary() && w >= peers.weight(p) {
        w -= peers.weight(p);
        p += 1;
    }
    p
}

/// `n` in decimal ASCII, written at the end of `buf`.
fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Per-request state; at most 64 bytes, so it lives in the core's request
/// storage without an allocation.
pub enum State {
    /// `hash KEY;`
    Hash(HashState),
    /// `hash KEY consistent;`
    Consistent(ChashState),
    /// `ip_hash;`
    IpHash(IpState),
}

const _: () = assert!(std::mem::size_of::<State>() <= 64);

/// `hash KEY;` state, kept across the request's retries.
pub struct HashState {
    /// CRC-32 state and length of the key: a rehash prefixes the decimal
    /// count by combining CRCs, without the key's bytes.
    key: Hasher,
    /// The running sum of 15-bit hashes.
    hash: u32,
    /// How many hashes were computed.
    rehash: u32,
    /// Unusable candidates met so far.
    tries: u32,
}

/// `hash KEY consistent;` state, kept across the request's retries.
pub struct ChashState {
    /// The current point on the ring (taken modulo its length).
    point: usize,
    /// Points whose server had no eligible peer.
    tries: u32,
    /// An empty key goes to round robin.
    empty_key: bool,
}

/// `ip_hash;` state, kept across the request's retries.
pub struct IpState {
    /// The address bytes hashed: 3 for IPv4 (or none), 16 for IPv6.
    addr: [u8; 16],
    len: u8,
    /// The hash of the last peer chosen (89 at first).
    hash: u32,
    /// Unusable candidates met so far.
    tries: u32,
}

/// The ketama ring of `hash KEY consistent`: `160 * weight` points per
/// primary peer, sorted by hash, equal hashes removed. Each point names a
/// server string; each server string maps to the primary peers written
/// with it, so a lookup compares no strings.
pub struct Ring {
    /// Point hashes, ascending.
    hashes: Box<[u32]>,
    /// The server of each point, an index into `starts`.
    servers: Box<[u32]>,
    /// Peers of server `s`: `members[starts[s]..starts[s + 1]]`.
    starts: Box<[u32]>,
    /// Primary peer indexes, grouped by server, in config order.
    members: Box<[u32]>,
}

impl Ring {
    /// The ring of `primaries` (the upstream's primary peers, `down` ones
    /// included), as `ngx_http_upstream_update_chash`.
    pub fn build(primaries: &[PeerConfig<'_>]) -> Ring {
        let mut ids: HashMap<&str, u32> = HashMap::new();
        let mut groups: Vec<Vec<u32>> = Vec::new();
        let total: usize = primaries
            .iter()
            .map(|p| POINTS_PER_WEIGHT * p.weight as usize)
            .sum();
        let mut points: Vec<(u32, u32)> = Vec::with_capacity(total);
        for (i, peer) in primaries.iter().enumerate() {
            let server = peer.server.as_str();
            let id = *ids.entry(server).or_insert_with(|| {
                groups.push(Vec::new());
                (groups.len() - 1) as u32
            });
            groups[id as usize].push(i as u32);
            let n = POINTS_PER_WEIGHT * peer.weight as usize;
            points.extend(server_points(server).take(n).map(|h| (h, id)));
        }
        // A stable sort: of equal hashes the first generated is kept.
        points.sort_by_key(|&(h, _)| h);
        points.dedup_by_key(|p| p.0);
        let mut starts = Vec::with_capacity(groups.len() + 1);
        let mut members = Vec::with_capacity(primaries.len());
        for g in &groups {
            starts.push(members.len() as u32);
            members.extend_from_slice(g);
        }
        starts.push(members.len() as u32);
        Ring {
            hashes: points.iter().map(|p| p.0).collect(),
            servers: points.iter().map(|p| p.1).collect(),
            starts: starts.into(),
            members: members.into(),
        }
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether the ring has no point (no primary peer).
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// The first point whose hash is at least `hash`; `len()` when `hash`
    /// is above every point (it wraps to point 0).
    pub fn find(&self, hash: u32) -> usize {
        self.hashes.partition_point(|&h| h < hash)
    }

    fn server_at(&self, point: usize) -> usize {
        self.servers[point] as usize
    }

    /// The primary peers written with server `s`, in config order.
    fn peers_of(&self, s: usize) -> impl Iterator<Item = usize> + '_ {
        self.members[self.starts[s] as usize..self.starts[s + 1] as usize]
            .iter()
            .map(|&i| i as usize)
    }
}

/// A server string split as nginx's ring does: `unix:` (any case) gives the
/// path and no port; otherwise a trailing `:digits` is the port. The port is
/// never defaulted.
fn split_server(server: &str) -> (&[u8], &[u8]) {
    let s = server.as_bytes();
    if s.len() >= 5 && s[..5].eq_ignore_ascii_case(b"unix:") {
        return (&s[5..], b"");
    }
    for j in 0..s.len() {
        let c = s[s.len() - j - 1];
        if c == b':' {
            return (&s[..s.len() - j - 1], &s[s.len() - j..]);
        }
        if !c.is_ascii_digit() {
            break;
        }
    }
    (s, b"")
}

/// The endless sequence of ring point hashes for `server`: each is
/// CRC32(`host \0 port` ‖ previous hash as 4 little-endian bytes), the
/// first with a previous hash of 0.
fn server_points(server: &str) -> impl Iterator<Item = u32> {
    let (host, port) = split_server(server);
    let mut base = Hasher::new();
    base.update(host);
    base.update(&[0]);
    base.update(port);
    let mut prev = 0u32;
    std::iter::repeat_with(move || {
        let mut h = base.clone();
        h.update(&prev.to_le_bytes());
        prev = h.finalize();
        prev
    })
}

impl Balancer for HashBalancer {
    type Request = State;

    /// init_peer: evaluates the key once per request.
    fn init_peer(&self, request: &Request<'_>, _: &Peers<'_>) -> Result<State, Rejection> {
        let key = match &self.method {
            Method::Hash { key } | Method::Consistent { key, .. } => request.eval(*key),
            Method::IpHash => "",
        };
        Ok(self.start(key, request.client_ip()))
    }

    /// get: the method's walk, or round robin when it gives up.
    fn get(&self, state: &mut State, peers: &Peers<'_>) -> Option<usize> {
        match (&self.method, state) {
            (Method::Hash { .. }, State::Hash(s)) => self.get_hash(s, peers),
            (Method::Consistent { ring, .. }, State::Consistent(s)) => {
                self.get_chash(ring, s, peers)
            }
            (Method::IpHash, State::IpHash(s)) => self.get_ip_hash(s, peers),
            _ => self.round_robin(peers),
        }
    }

    /// free: round robin's; a failure lowers the peer's effective weight
    /// (the core has already counted it against max_fails).
    fn free(&self, _: &mut State, peers: &Peers<'_>, outcome: &TryOutcome) -> FreeAction {
        self.weights.free(peers, outcome)
    }
}

waypost_module_api::export_module!(HashModule);

#[cfg(test)]
mod tests {
    use super::*;
    use waypost_module_api::testing::PeerSet;

    /// Peers `127.0.0.1:8081`, `:8082`, ... with `weights`.
    fn servers(weights: &[u32]) -> PeerSet {
        let mut set = PeerSet::new(weights);
        for i in 0..weights.len() {
            let name: &'static str = Box::leak(format!("127.0.0.1:{}", 8081 + i).into_boxed_str());
            set.config_mut(i).server = name.into();
            set.config_mut(i).addr = name.into();
        }
        set
    }

    fn hash_balancer(set: &PeerSet) -> HashBalancer {
        HashBalancer::new(Method::Hash { key: Template(0) }, set.configs(), 1)
    }

    fn chash_balancer(set: &PeerSet) -> HashBalancer {
        let primary = set.configs().iter().take_while(|p| !p.backup).count();
        HashBalancer::new(
            Method::Consistent {
                key: Template(0),
                ring: Ring::build(&set.configs()[..primary]),
            },
            set.configs(),
            1,
        )
    }

    fn ip_balancer(set: &PeerSet) -> HashBalancer {
        HashBalancer::new(Method::IpHash, set.configs(), 1)
    }

    /// The peer chosen for a new request with `key` and `ip`.
    fn pick(b: &HashBalancer, set: &mut PeerSet, key: &str, ip: &[u8]) -> usize {
        set.new_request();
        let mut state = b.start(key, ip);
        b.get(&mut state, &set.view()).expect("a peer")
    }

    /// Ports chosen for keys 1..=10.
    fn ports(b: &HashBalancer, set: &mut PeerSet) -> Vec<usize> {
        (1..=10)
            .map(|k| 8081 + pick(b, set, &k.to_string(), &[]))
            .collect()
    }

    #[test]
    fn crc32_of_one() {
        assert_eq!(crc32fast::hash(b"1"), 0x83DC_EFB7);
        assert_eq!((0x83DC_EFB7u32 >> 16) & 0x7fff, 988);
    }

    #[test]
    fn combine_equals_crc_of_concatenation() {
        for key in ["", "1", "a", "hello world", &"x".repeat(1000)] {
            let mut key_hasher = Hasher::new();
            key_hasher.update(key.as_bytes());
            for rehash in [1u32, 2, 9, 10, 20, 21, 12345, u32::MAX] {
                let mut buf = [0u8; 10];
                let prefix = decimal(rehash, &mut buf);
                assert_eq!(prefix, rehash.to_string().as_bytes());
                let mut h = Hasher::new();
                h.update(prefix);
                h.combine(&key_hasher);
                let plain = crc32fast::hash(format!("{rehash}{key}").as_bytes());
                assert_eq!(h.finalize(), plain, "rehash {rehash} key {key:?}");
            }
        }
    }

    #[test]
    fn server_strings_split_as_nginx() {
        let split = |s| {
            let (h, p) = split_server(s);
            (
                std::str::from_utf8(h).unwrap(),
                std::str::from_utf8(p).unwrap(),
            )
        };
        assert_eq!(split("127.0.0.1:8081"), ("127.0.0.1", "8081"));
        assert_eq!(split("example.com"), ("example.com", ""));
        assert_eq!(split("[::1]:80"), ("[::1]", "80"));
        assert_eq!(split("[::1]"), ("[::1]", ""));
        assert_eq!(split("host:"), ("host", ""));
        assert_eq!(split("unix:/tmp/s:80"), ("/tmp/s:80", ""));
        assert_eq!(split("UNIX:/tmp/s"), ("/tmp/s", ""));
        assert_eq!(split("a1b:x2"), ("a1b:x2", ""));
    }

    #[test]
    fn first_ring_point() {
        assert_eq!(server_points("127.0.0.1:8081").next(), Some(0x50AA_BCF7));
        assert_eq!(
            crc32fast::hash(b"127.0.0.1\x008081\x00\x00\x00\x00"),
            0x50AA_BCF7
        );
        let mut points = server_points("127.0.0.1:8081");
        let first = points.next().unwrap();
        let mut second = b"127.0.0.1\x008081".to_vec();
        second.extend_from_slice(&first.to_le_bytes());
        assert_eq!(points.next(), Some(crc32fast::hash(&second)));
    }

    #[test]
    fn ring_is_sorted_deduplicated_and_counts_weights() {
        // 8081 is written twice (weights 2 and 2): its points collapse.
        let mut set = servers(&[2, 3, 1, 2]);
        set.config_mut(3).server = "127.0.0.1:8081".into();
        let ring = Ring::build(set.configs());
        assert!(ring.hashes.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(ring.len(), 160 * 6);
        let on = |s: u32| ring.servers.iter().filter(|&&x| x == s).count();
        assert_eq!((on(0), on(1), on(2)), (320, 480, 160));
        assert_eq!(ring.peers_of(0).collect::<Vec<_>>(), [0, 3]);
        assert_eq!(ring.peers_of(1).collect::<Vec<_>>(), [1]);
        for (i, &h) in ring.hashes.iter().enumerate() {
            assert_eq!(ring.find(h), i);
        }
        assert_eq!(ring.find(0), 0);
        let last = ring.hashes[ring.len() - 1];
        assert_eq!(ring.find(last + 1), ring.len());
    }

    #[test]
    fn hash_vectors_equal_weights() {
        let mut set = servers(&[1, 1, 1]);
        let b = hash_balancer(&set);
        assert_eq!(
            ports(&b, &mut set),
            [8082, 8083, 8082, 8081, 8082, 8081, 8081, 8083, 8083, 8081]
        );
    }

    #[test]
    fn hash_vectors_weights_2_3_1() {
        let mut set = servers(&[2, 3, 1]);
        let b = hash_balancer(&set);
        assert_eq!(
            ports(&b, &mut set),
            [8082, 8083, 8082, 8081, 8081, 8081, 8082, 8082, 8083, 8082]
        );
    }

    #[test]
    fn consistent_vectors_equal_weights() {
        let mut set = servers(&[1, 1, 1]);
        let b = chash_balancer(&set);
        assert_eq!(
            ports(&b, &mut set),
            [8081, 8083, 8081, 8083, 8081, 8083, 8081, 8082, 8081, 8082]
        );
    }

    #[test]
    fn consistent_vectors_weights_2_3_1() {
        let mut set = servers(&[2, 3, 1]);
        let b = chash_balancer(&set);
        assert_eq!(
            ports(&b, &mut set),
            [8081, 8082, 8082, 8083, 8082, 8081, 8081, 8082, 8081, 8082]
        );
    }

    #[test]
    fn ip_hash_spreads_127_0_i_2() {
        let mut set = servers(&[1, 1, 1]);
        let b = ip_balancer(&set);
        let picks: Vec<usize> = (1..=30)
            .map(|i| pick(&b, &mut set, "", &[127, 0, i, 2]))
            .collect();
        let expected: Vec<usize> = (0..30).map(|i| i % 3).collect();
        assert_eq!(picks, expected);

        let mut set = servers(&[1, 1]);
        let b = ip_balancer(&set);
        let picks: Vec<usize> = (1..=30)
            .map(|i| pick(&b, &mut set, "", &[127, 0, i, 2]))
            .collect();
        assert_eq!(picks.iter().filter(|&&p| p == 0).count(), 15);
        assert_eq!(picks.iter().filter(|&&p| p == 1).count(), 15);
    }

    #[test]
    fn ip_hash_address_bytes() {
        let mut set = servers(&[1, 1, 1]);
        let b = ip_balancer(&set);
        // Only the first three IPv4 octets count.
        assert_eq!(
            pick(&b, &mut set, "", &[10, 1, 2, 3]),
            pick(&b, &mut set, "", &[10, 1, 2, 200])
        );
        // Anything else hashes as three zero bytes.
        assert_eq!(
            pick(&b, &mut set, "", &[]),
            pick(&b, &mut set, "", &[0, 0, 0, 9])
        );
        // IPv6: all 16 bytes, by the formula.
        let v6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
        let hash = v6
            .iter()
            .fold(89u32, |h, &b| (h * 113 + u32::from(b)) % 6271);
        assert_eq!(pick(&b, &mut set, "", &v6), (hash % 3) as usize);
    }

    /// Which peer each of keys 1..=n goes to.
    fn spread(b: &HashBalancer, set: &mut PeerSet, n: usize) -> Vec<usize> {
        (1..=n).map(|k| pick(b, set, &k.to_string(), &[])).collect()
    }

    fn down_moves_only_its_keys(build: fn(&PeerSet) -> HashBalancer) {
        let mut set = servers(&[1, 1, 1]);
        let before = spread(&build(&set), &mut set, 1000);
        set.config_mut(1).down = true;
        let after = spread(&build(&set), &mut set, 1000);
        let mut moved = 0;
        for (k, (&a, &b)) in before.iter().zip(&after).enumerate() {
            if a == 1 {
                assert_ne!(b, 1, "key {} stays on the down server", k + 1);
                moved += 1;
            } else {
                assert_eq!(a, b, "key {} moved", k + 1);
            }
        }
        assert!(moved > 200, "{moved} keys were on the middle server");
    }

    #[test]
    fn hash_down_server_moves_only_its_keys() {
        down_moves_only_its_keys(hash_balancer);
    }

    #[test]
    fn consistent_down_server_moves_only_its_keys() {
        down_moves_only_its_keys(chash_balancer);
    }

    #[test]
    fn ip_hash_down_server_moves_only_its_clients() {
        let mut set = servers(&[1, 1, 1]);
        let clients: Vec<[u8; 4]> = (0..=255u8)
            .flat_map(|a| [1u8, 7, 42].map(|b| [127, a, b, 1]))
            .collect();
        let run = |set: &mut PeerSet| {
            let b = ip_balancer(set);
            clients
                .iter()
                .map(|c| pick(&b, set, "", c))
                .collect::<Vec<_>>()
        };
        let before = run(&mut set);
        set.config_mut(2).down = true;
        let after = run(&mut set);
        for (&a, &b) in before.iter().zip(&after) {
            if a == 2 {
                assert_ne!(b, 2);
            } else {
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn removing_a_server_from_the_ring_moves_about_one_nth() {
        let n = 10;
        let mut set = PeerSet::new(&[1; 10]);
        for i in 0..n {
            let name: &'static str = Box::leak(format!("10.0.0.{}:80", i + 1).into_boxed_str());
            set.config_mut(i).server = name.into();
        }
        let keys = 10_000;
        let before = spread(&chash_balancer(&set), &mut set, keys);
        // Server 4 removed from the config: the others keep their indexes
        // once mapped back.
        let mut fewer = PeerSet::new(&[1; 9]);
        for (j, i) in (0..n).filter(|&i| i != 4).enumerate() {
            *fewer.config_mut(j) = set.configs()[i];
        }
        let after: Vec<usize> = spread(&chash_balancer(&fewer), &mut fewer, keys)
            .into_iter()
            .map(|j| if j >= 4 { j + 1 } else { j })
            .collect();
        let mut moved = 0;
        for (&a, &b) in before.iter().zip(&after) {
            if a != b {
                assert_eq!(a, 4, "only keys of the removed server move");
                moved += 1;
            }
        }
        assert_eq!(moved, before.iter().filter(|&&a| a == 4).count());
        let share = moved as f64 / keys as f64;
        assert!(
            (0.05..0.15).contains(&share),
            "{moved} of {keys} keys moved"
        );
    }

    #[test]
    fn hash_retries_follow_the_rehash_sequence_across_tries() {
        let mut set = servers(&[1, 1, 1]);
        let b = hash_balancer(&set);
        set.new_request();
        let mut state = b.start("1", &[]);
        // The first try: 988 % 3 = 1.
        assert_eq!(b.get(&mut state, &set.view()), Some(1));
        set.mark_tried(1);
        // The retry continues the running sum with "1" ‖ key, "2" ‖ key...
        let mut hash = 988u32;
        let mut expected = None;
        for rehash in 1.. {
            hash += (crc32fast::hash(format!("{rehash}1").as_bytes()) >> 16) & 0x7fff;
            if hash % 3 != 1 {
                expected = Some((hash % 3) as usize);
                break;
            }
        }
        let second = b.get(&mut state, &set.view());
        assert_eq!(second, expected);
        set.mark_tried(second.unwrap());
        let third = b.get(&mut state, &set.view()).unwrap();
        assert!(third != 1 && Some(third) != second);
    }

    #[test]
    fn after_twenty_unusable_candidates_round_robin_takes_over() {
        // Peer 0 holds all the weight but is down: every hash candidate but
        // a few is unusable; once 21 were seen, round robin picks.
        let mut set = servers(&[100, 1]);
        set.config_mut(0).down = true;
        let b = hash_balancer(&set);
        set.new_request();
        let mut state = b.start("k", &[]);
        assert_eq!(b.get(&mut state, &set.view()), Some(1));
        set.mark_tried(1);
        assert_eq!(b.get(&mut state, &set.view()), None);
        match state {
            State::Hash(s) => assert_eq!(s.tries, 21),
            _ => unreachable!(),
        }
    }

    #[test]
    fn empty_key_or_one_peer_is_round_robin() {
        let mut set = servers(&[5, 1, 1]);
        let b = hash_balancer(&set);
        let picks: Vec<usize> = (0..7).map(|_| pick(&b, &mut set, "", &[])).collect();
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
        let b = chash_balancer(&set);
        let picks: Vec<usize> = (0..7).map(|_| pick(&b, &mut set, "", &[])).collect();
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
        let mut one = servers(&[1]);
        for b in [hash_balancer(&one), chash_balancer(&one), ip_balancer(&one)] {
            assert_eq!(pick(&b, &mut one, "x", &[1, 2, 3, 4]), 0);
        }
    }

    #[test]
    fn consistent_retry_walks_clockwise() {
        let mut set = servers(&[1, 1, 1]);
        let b = chash_balancer(&set);
        let ring = match &b.method {
            Method::Consistent { ring, .. } => ring,
            _ => unreachable!(),
        };
        set.new_request();
        let mut state = b.start("7", &[]);
        let first = b.get(&mut state, &set.view()).unwrap();
        set.mark_tried(first);
        let start = ring.find(crc32fast::hash(b"7"));
        let next = (start..)
            .map(|p| ring.server_at(p % ring.len()))
            .find(|&s| s != first)
            .unwrap();
        assert_eq!(b.get(&mut state, &set.view()), Some(next));
    }

    #[test]
    fn failure_lowers_effective_weight_as_round_robin() {
        let mut set = servers(&[3, 1, 2]);
        let b = hash_balancer(&set);
        let rr = SmoothWeights::new(set.configs(), 1);
        let failed = TryOutcome {
            peer: 0,
            state: TryState::Failed,
            status: 0,
            elapsed_us: 0,
        };
        let mut state = b.start("", &[]);
        b.free(&mut state, &set.view(), &failed);
        rr.failed(&set.view(), 0);
        let ours: Vec<usize> = (0..12).map(|_| pick(&b, &mut set, "", &[])).collect();
        let theirs: Vec<usize> = (0..12)
            .map(|_| {
                set.new_request();
                rr.pick_with_backup(&set.view()).unwrap()
            })
            .collect();
        assert_eq!(ours, theirs);
        let fresh = SmoothWeights::new(set.configs(), 1);
        let unfailed: Vec<usize> = (0..12)
            .map(|_| {
                set.new_request();
                fresh.pick_with_backup(&set.view()).unwrap()
            })
            .collect();
        assert_ne!(ours, unfailed, "the failure changed nothing");
    }

    #[test]
    fn state_fits_inline() {
        assert!(std::mem::size_of::<State>() <= 64);
        fn send_static<T: Send + 'static>() {}
        send_static::<State>();
    }
}
