//! Cluster-wide limits: `limit_req_zone ... [mode=leaky|window]
//! cluster=redis://HOST:PORT[/DB] [sync=100ms] [on_cluster_error=...]`.
//!
//! Requests never wait on Redis. Each instance decides alone, from what
//! its zone knows of each key, and a background thread, one per process,
//! exchanges with Redis every `sync` interval, for each cluster zone, the
//! keys requests touched since the previous exchange, in one round trip (a
//! Lua script per [`KEYS_PER_CALL`] keys, pipelined). How a zone shares
//! depends on its mode ([`Sharing`]); the exchange, its failures, backoff,
//! log lines, metrics and the thread are the same for both.
//!
//! **Windows** (`mode=window`): per key, the instance knows its own
//! admissions in the current window (exact, local), the most the other
//! instances may have admitted as of the last exchange, and its *grant*:
//! the count it may reach before its next exchange. Per key and window,
//! the script ([`SCRIPT`]) reads what the others hold, hands out this
//! instance's next grant and stores it, atomically:
//!
//! ```text
//! held   = sum over the other instances of max(count, grant)
//!          (one hash field per instance holds it)
//! blind  = limit / expected            (expected: instances on the key)
//! free   = limit - held - my count - blind * (expected - seen)
//! grant  = my count + max(free / seen, 1)   if free > 0, else my count
//! ```
//!
//! `seen` is the instances that reported the key in this window, and the
//! reserve `blind * (expected - seen)` is for those expected but not seen
//! yet: before its first exchange in a window an instance is *blind* and
//! admits up to `blind` requests alone (`expected` is how many instances
//! took part in the key's previous window, or, for a key new to the
//! instance, how many instances the zone has). So the grants and blind
//! shares together never exceed the limit: what can go over is only what
//! an instance admits during the round trip of its own exchange beyond its
//! new grant, or a newcomer instance the previous window did not expect.
//! A request is admitted while `local < grant` and `local + others <
//! limit` ([`decide`]).
//!
//! **Leaky buckets** (`mode=leaky`): each instance keeps nginx's bucket
//! per key (the level in thousandths, leaked by its own clock) and counts
//! what its requests add to it. Leaking depends only on time, so every
//! instance leaks the same; only the additions are shared. At each
//! exchange an instance sends, per key, what it added since its previous
//! exchange and its bucket's level; the script
//! ([`LEAKY_SCRIPT`]) keeps the key's cluster level (leaked at the rate by
//! the wall clock, plus every instance's additions, and never below the
//! level an instance reports, so that a Redis restarted empty is repaired
//! at once) and answers it. The instance folds it in: its level becomes
//! at least the cluster level plus what it added since the exchange left
//! ([`Zone::apply`](crate::Zone::apply)), i.e. its own additions and the
//! others' that have not leaked yet. nginx's burst, delay and `nodelay`
//! then act on that combined level. What can go over is what the others
//! added since their last exchange that this instance has not folded in
//! yet: about `rate × sync` per other instance under steady load, and,
//! when instances start on a key together, a burst each.
//!
//! The layers: [`decide`] and [`mark`] (per request, under the zone's
//! shard lock, no I/O), [`Batch`] and [`Zone::collect`](crate::Zone::collect) /
//! [`Zone::apply`](crate::Zone::apply) (the exchange's two halves on the
//! zone), [`Exchange`] (Redis, or a fake in the tests), [`ZoneLink`] (one
//! zone's exchanges, failure state, backoff, metrics and log lines) and
//! [`Syncer`] (the thread).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher as _};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use waypost_module_api::filter::FilterConfig;
use waypost_module_api::{ConfigError, Counter, Gauge, LogLevel};

use crate::zone::{mono_ms, wall_ms, Zone};

/// Most keys one zone exchanges in one round; the rest wait for the next
/// round (oldest first). Bounds the work and memory of a round.
pub const MAX_KEYS_PER_SYNC: usize = 16_384;

/// Keys per script call (several calls go in one pipelined round trip).
/// A script runs alone in Redis: 256 keys keep each run to a millisecond
/// or two, so Redis's other clients wait that long at most between two
/// runs, while the run's fixed cost (the instance set, the call itself)
/// stays under 2% of the keys' (512 would save 1.6% of Redis's CPU).
pub const KEYS_PER_CALL: usize = 256;

/// Read timeout added per key of an exchange: Redis runs the script for
/// about 4 to 6 µs a key, so a full round (16,384 keys) takes up to 100 ms
/// of its CPU, more when it shares a core; the base timeout is for a
/// small one.
pub const TIMEOUT_PER_KEY: Duration = Duration::from_micros(20);

/// The default `sync=`.
pub const DEFAULT_SYNC_MS: u64 = 100;

/// `on_cluster_error=`: what a zone does while its exchanges fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnClusterError {
    /// Each instance limits alone, at the whole rate (the default).
    Local,
    /// Nothing is limited.
    Allow,
    /// Every request is rejected.
    Deny,
}

impl OnClusterError {
    /// The directive's word.
    pub fn word(self) -> &'static str {
        match self {
            OnClusterError::Local => "local",
            OnClusterError::Allow => "allow",
            OnClusterError::Deny => "deny",
        }
    }
}

/// `cluster=`, `sync=` and `on_cluster_error=` of a `limit_req_zone`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSpec {
    /// `redis://[USER:PASSWORD@]HOST[:PORT][/DB]` as written.
    pub url: String,
    /// The exchange interval in ms.
    pub sync_ms: u64,
    /// While Redis fails.
    pub on_error: OnClusterError,
}

impl ClusterSpec {
    /// The URL without credentials, for log lines.
    pub fn display(&self) -> String {
        match self.url.strip_prefix("redis://") {
            Some(rest) => match rest.rsplit_once('@') {
                Some((_, host)) => format!("redis://{host}"),
                None => self.url.clone(),
            },
            None => self.url.clone(),
        }
    }

    /// Connect, read and write timeout of the exchanges: twice the
    /// interval, between 100 ms and 1 s.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis((self.sync_ms * 2).clamp(100, 1000))
    }

    /// The longest wait between two attempts while Redis fails.
    pub fn max_backoff_ms(&self) -> u64 {
        self.sync_ms.max(1000)
    }
}

/// Checks `redis://[USER:PASSWORD@]HOST[:PORT][/DB]`.
pub fn valid_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("redis://") else {
        return false;
    };
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let (hostport, db) = match rest.split_once('/') {
        Some((h, db)) => (h, Some(db)),
        None => (rest, None),
    };
    if let Some(db) = db {
        if !db.is_empty() && (db.len() > 9 || !db.bytes().all(|b| b.is_ascii_digit())) {
            return false;
        }
    }
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, port)) => {
                if !port.is_empty() && !valid_port(port.strip_prefix(':').unwrap_or("x")) {
                    return false;
                }
                h
            }
            None => return false,
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, port)) => {
                if !valid_port(port) {
                    return false;
                }
                h
            }
            None => hostport,
        }
    };
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
        && redis::Client::open(url).is_ok()
}

fn valid_port(port: &str) -> bool {
    !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p))
}

/// `sync=`: `Nms`, `Ns` or `N` (seconds, as nginx reads times), from 10 ms
/// to 60 s.
pub fn parse_sync(value: &str) -> Option<u64> {
    let (digits, scale) = if let Some(d) = value.strip_suffix("ms") {
        (d, 1)
    } else if let Some(d) = value.strip_suffix('s') {
        (d, 1000)
    } else {
        (value, 1000)
    };
    if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ms = digits.parse::<u64>().ok()? * scale;
    (10..=60_000).contains(&ms).then_some(ms)
}

// ------------------------------------------------------------ the decision

/// A key's cluster state, next to its node (one per node slot, only in
/// cluster zones). A window zone's counts are for window `window`; a leaky
/// zone uses only `added` and `dirty`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncSlot {
    /// The window the counts are for.
    pub window: u64,
    /// The local count written to the store at the last exchange.
    pub pushed: u64,
    /// The most the other instances may have admitted, as of the last
    /// exchange.
    pub others: u64,
    /// The local count allowed until the next exchange.
    pub grant: u64,
    /// Instances that reported the key in this window (0 before the
    /// first exchange in it).
    pub peers: u64,
    /// Instances that reported the key in the previous window it was
    /// exchanged in (0: unknown).
    pub prev_peers: u64,
    /// Leaky: what this instance's requests added to the key's bucket
    /// since its last exchange, in thousandths (each up to 1000: nginx's
    /// level after a request is at least 0, so a request into a bucket
    /// drained for a while adds less, and a new key's first adds 0).
    pub added: u64,
    /// Whether the slot is in its shard's list of keys to exchange.
    pub dirty: bool,
}

impl SyncSlot {
    /// The state of this key entering `window` before any exchange in it:
    /// blind, with a share of the limit among the instances expected.
    pub fn enter(&mut self, window: u64, limit: u64, instances: u64) {
        let prev_peers = if self.peers > 0 {
            self.peers
        } else {
            self.prev_peers
        };
        *self = SyncSlot {
            window,
            prev_peers,
            dirty: self.dirty,
            ..SyncSlot::default()
        };
        self.grant = share(limit, self.expected(instances));
    }

    /// How many instances are expected on the key: as many as in its
    /// previous window, or, for a key new to this instance, every
    /// instance of the zone.
    pub fn expected(&self, instances: u64) -> u64 {
        if self.prev_peers > 0 {
            self.prev_peers
        } else {
            instances.max(1)
        }
    }
}

/// One instance's share of `remaining` among `instances`: at least 1 while
/// anything remains (the script computes the same).
pub fn share(remaining: u64, instances: u64) -> u64 {
    if remaining == 0 {
        0
    } else {
        (remaining / instances.max(1)).max(1)
    }
}

/// What a cluster zone's hook sees of the exchanges: read once per request
/// (two relaxed loads).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterView {
    /// The last exchange succeeded (or none was tried yet).
    pub up: bool,
    /// `on_cluster_error=`.
    pub on_error: OnClusterError,
    /// Instances of the zone seen in Redis at the last exchange (1 before).
    pub instances: u64,
}

/// [`decide`]'s answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Admitted.
    Admit,
    /// The window is used up (cluster-wide estimate, or this instance's
    /// count while limiting locally): retry in the next window.
    Full {
        /// Requests over the limit, this one included.
        over: u64,
    },
    /// This instance reached its grant until the next exchange; the
    /// window may still have room.
    Paced,
    /// Redis fails and `on_cluster_error=deny`.
    Denied,
}

/// The decision for a request of a key that holds `used` local admissions
/// in `window` (0 in a new window), with `limit` requests per window. A
/// slot of another window enters this one first (blind); the slot is put
/// in `dirty` (once) so that the next exchange carries the key.
pub fn decide(
    s: &mut SyncSlot,
    dirty: &mut Vec<u32>,
    slot: u32,
    window: u64,
    used: u64,
    limit: u64,
    view: ClusterView,
) -> Admission {
    if s.window != window {
        s.enter(window, limit, view.instances);
    }
    mark(s, dirty, slot);
    if !view.up {
        return match view.on_error {
            OnClusterError::Local if used < limit => Admission::Admit,
            OnClusterError::Local => Admission::Full {
                over: used + 1 - limit,
            },
            OnClusterError::Allow => Admission::Admit,
            OnClusterError::Deny => Admission::Denied,
        };
    }
    let estimate = used.saturating_add(s.others);
    if estimate >= limit {
        return Admission::Full {
            over: estimate + 1 - limit,
        };
    }
    if used >= s.grant {
        return Admission::Paced;
    }
    Admission::Admit
}

/// Puts `slot` in its shard's list of keys to exchange, once: a request
/// touched its key.
pub fn mark(s: &mut SyncSlot, dirty: &mut Vec<u32>, slot: u32) {
    if !s.dirty {
        s.dirty = true;
        dirty.push(slot);
    }
}

// ----------------------------------------------------------- the exchange

/// What an exchange reports for one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    /// `mode=window`.
    Window {
        /// The window.
        window: u64,
        /// This instance's count in the window.
        count: u64,
        /// Instances expected on the key ([`SyncSlot::expected`]).
        expected: u64,
    },
    /// `mode=leaky`.
    Leaky {
        /// What this instance added to the bucket since its last
        /// exchange, in thousandths ([`SyncSlot::added`]).
        added: u64,
        /// This instance's bucket level when collected, in thousandths.
        level: u64,
    },
}

/// One key to exchange: where its node is and what is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncItem {
    /// The node's shard.
    pub shard: u32,
    /// The node's slot in it.
    pub slot: u32,
    /// What is sent.
    pub report: Report,
    key_at: u32,
    key_len: u32,
}

/// The keys of one exchange and their bytes; kept by the zone's link
/// across rounds, so a round allocates nothing once warm.
#[derive(Default)]
pub struct Batch {
    items: Vec<SyncItem>,
    keys: Vec<u8>,
    /// The shard the next collection starts at (round robin, so that a
    /// budget smaller than the dirty keys starves no shard).
    pub(crate) next_shard: usize,
    /// When the keys were collected (the zone's clock, ms): a leaky
    /// zone's reply is leaked from then on.
    pub collected_at: u64,
}

impl Batch {
    /// Empties the batch (keeps its memory).
    pub fn clear(&mut self) {
        self.items.clear();
        self.keys.clear();
    }

    /// Adds a key.
    pub fn push(&mut self, shard: u32, slot: u32, report: Report, key: &[u8]) {
        let key_at = self.keys.len() as u32;
        self.keys.extend_from_slice(key);
        self.items.push(SyncItem {
            shard,
            slot,
            report,
            key_at,
            key_len: key.len() as u32,
        });
    }

    /// The keys, in shard order.
    pub fn items(&self) -> &[SyncItem] {
        &self.items
    }

    /// An item's key.
    pub fn key(&self, item: &SyncItem) -> &[u8] {
        let at = item.key_at as usize;
        &self.keys[at..at + item.key_len as usize]
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// The reply for one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncReply {
    /// `mode=window`.
    Window {
        /// The count this instance may reach until its next exchange.
        grant: i64,
        /// The most the other instances may have admitted in the window
        /// (the sum of their `max(count, grant)`).
        others: i64,
        /// Instances that reported the key in the window, this one
        /// included.
        peers: i64,
    },
    /// `mode=leaky`.
    Leaky {
        /// The key's cluster level, in thousandths, at the exchange's wall
        /// clock: every instance's additions, leaked at the rate.
        level: i64,
    },
}

/// How a zone shares its limit, with what the script needs of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sharing {
    /// `mode=window`: grants ([`SCRIPT`]).
    Window {
        /// Requests per window.
        limit: u64,
    },
    /// `mode=leaky`: a cluster level per key ([`LEAKY_SCRIPT`]).
    Leaky {
        /// The rate, in thousandths of a request per second.
        rate: u64,
    },
}

/// What an exchange sends.
pub struct ExchangeRequest<'a> {
    /// `waypost:limit_req:ZONE:`: every key of the zone starts with it.
    pub prefix: &'a [u8],
    /// This instance's id in Redis.
    pub instance: &'a str,
    /// Wall clock, ms.
    pub now_ms: u64,
    /// How long this instance stays in the zone's instance set without an
    /// exchange.
    pub instance_ttl_ms: u64,
    /// Windows: how long a key's window stays in Redis after it was
    /// created. Leaky: how long a key stays after its level has drained.
    pub key_ttl_ms: u64,
    /// The zone's mode and parameter.
    pub sharing: Sharing,
    /// Wall clock of this instance's previous successful exchange, ms (a
    /// leaky zone's additions were made since).
    pub since_ms: u64,
    /// The keys.
    pub batch: &'a Batch,
}

impl ExchangeRequest<'_> {
    /// Appends the Redis key of `item` to `buf`:
    /// `waypost:limit_req:ZONE:WINDOW:KEY` for a window (`WINDOW` in
    /// digits), `waypost:limit_req:ZONE:b:KEY` for a bucket.
    pub fn store_key(&self, item: &SyncItem, buf: &mut Vec<u8>) {
        buf.extend_from_slice(self.prefix);
        match item.report {
            Report::Window { window, .. } => write_decimal(buf, window),
            Report::Leaky { .. } => buf.push(b'b'),
        }
        buf.push(b':');
        buf.extend_from_slice(self.batch.key(item));
    }
}

/// One round trip with the shared store: for each key of the batch, store
/// what this instance reports and compute its answer ([`SCRIPT`] for
/// windows, [`LEAKY_SCRIPT`] for buckets), appending a [`SyncReply`] per
/// key to `out`; register this instance in the zone's set and return how
/// many instances it holds.
pub trait Exchange {
    /// The round trip; the error is for the log line.
    fn exchange(
        &mut self,
        req: &ExchangeRequest<'_>,
        out: &mut Vec<SyncReply>,
    ) -> Result<u64, String>;
}

/// A script: the part every mode shares (the zone's instance set: this
/// instance registered, the expired ones removed, their number first in
/// the reply), `$before` once, then `$body` per key, with `i` the key's
/// index in `KEYS`, `k` the key and `a`, `b` its two numbers. `KEYS[1]` is
/// the set, `KEYS[2..]` the keys; `ARGV` is the instance id, the wall clock
/// (ms), the set's and the keys' time to live (ms), the zone's parameter
/// `p`, the wall clock of this instance's previous exchange `since`, then
/// every key's `a` and `b` as one msgpack array. The reply is one msgpack
/// array of numbers.
///
/// The numbers go in and out as msgpack (`cmsgpack`, in the Lua of every
/// Redis since 2.6) because Lua 5.1 reads a decimal with `strtod` and
/// prints a number with `%.14g`: about 1,800 and 1,200 instructions of
/// Redis's each, with the printing for the commands a quarter of all it
/// did per key. For the same reason the numbers a key's commands take are
/// printed once per run with `%d` (`dec`: the same times and levels recur
/// across keys), never passed to `redis.call` as numbers (Redis 7.0
/// prints those with `%.17g`). `%d` goes through a C `long`, 32 bits on
/// some builds: larger numbers use `%.0f`.
macro_rules! script {
    ($before:literal, $body:literal) => {
        concat!(
            r"
local id, now, ittl, kttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local p, since = tonumber(ARGV[5]), tonumber(ARGV[6])
local ab = cmsgpack.unpack(ARGV[7])
redis.call('ZADD', KEYS[1], now + ittl, id)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ittl)
local out = { redis.call('ZCARD', KEYS[1]) }
local digits = {}
local function dec(n)
  local s = digits[n]
  if not s then
    if n >= -2147483648 and n <= 2147483647 then
      s = string.format('%d', n)
    else
      s = string.format('%.0f', n)
    end
    digits[n] = s
  end
  return s
end
",
            $before,
            r"
for i = 2, #KEYS do
  local k = KEYS[i]
  local a, b = ab[2 * i - 3], ab[2 * i - 2]
",
            $body,
            r"
end
return cmsgpack.pack(out)
"
        )
    };
}

/// `mode=window`: per key and window, a hash with a field per instance
/// (the most it may have admitted, `max(count, grant)`); the grant is
/// computed and stored as the module's documentation says. `p` is the
/// limit, `a` this instance's count, `b` the instances expected. Replies
/// `grant, held, seen` per key. Two calls per key (three for a new one:
/// Redis 7.0 has no multi-key read of hashes, nor a hash set with an
/// expiry).
pub const SCRIPT: &str = script!(
    "",
    r"
  local all = redis.call('HGETALL', k)
  local held, seen = 0, 1
  for j = 1, #all, 2 do
    if all[j] ~= id then
      held = held + tonumber(all[j + 1])
      seen = seen + 1
    end
  end
  local n = math.max(seen, b)
  local blind = math.max(math.floor(p / n), 1)
  local free = p - held - a - blind * (n - seen)
  local grant = a
  if free > 0 then grant = a + math.max(math.floor(free / seen), 1) end
  redis.call('HSET', k, id, dec(grant))
  if #all == 0 then redis.call('PEXPIRE', k, ARGV[4]) end
  out[#out + 1] = grant
  out[#out + 1] = held
  out[#out + 1] = seen"
);

/// `mode=leaky`: per key, a string `LEVEL TIME`: the cluster level (in
/// thousandths) as of wall-clock ms `TIME` (`since` for a key new to the
/// store). What this instance added since its previous exchange, `a`
/// (thousandths), is added and the sum is leaked at the rate `p` (thousandths
/// per second) from `TIME` to now (a clock behind `TIME` leaks nothing):
/// the additions were made meanwhile, so where the level had drained they
/// leak with it instead of counting as new. It is kept at least at this
/// instance's own level `b`, which leaked each addition from when it was
/// made (and so that a Redis restarted empty gets every bucket back at
/// the instances' next exchanges). The key expires when the level would
/// have drained, plus the keys' time to live. Replies the level per key.
/// One `MGET` for the run's keys, then one `SET` per key (a string, not a
/// hash: a separate expiry would cost Redis a third more).
pub const LEAKY_SCRIPT: &str = script!(
    r"
local got = #KEYS > 1 and redis.call('MGET', unpack(KEYS, 2)) or {}
",
    r"
  local level, at = 0, math.min(since, now)
  local v = got[i - 1]
  if v then
    local l, t = string.match(v, '^(%S+) (%S+)$')
    level, at = tonumber(l) or 0, tonumber(t) or at
  end
  local gone = 0
  if now > at then
    gone = math.floor((now - at) * p / 1000)
    at = now
  end
  level = math.max(level + a - gone, b, 0)
  redis.call('SET', k, dec(level) .. ' ' .. dec(at), 'PX', dec(math.min(math.floor(level * 1000 / p), 86400000) + kttl))
  out[#out + 1] = level"
);

/// Redis, through the `redis` crate's blocking connection, with timeouts.
/// The pipeline is written here, in RESP, into buffers kept across
/// rounds (the crate's command builder cost more per key than the rest of
/// the exchange), and each script's reply is read as one string.
pub struct RedisLink {
    client: redis::Client,
    /// The connection and the digests of [`SCRIPT`] and [`LEAKY_SCRIPT`].
    conn: Option<(redis::Connection, [String; 2])>,
    timeout: Duration,
    /// The connection's read timeout now (set per round when it changes).
    read_timeout: Duration,
    scratch: Vec<u8>,
    packed: Vec<u8>,
    numbers: Vec<i64>,
}

impl RedisLink {
    /// A link to `url` (checked at config load); connects at the first
    /// exchange.
    pub fn new(url: &str, timeout: Duration) -> Result<RedisLink, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        Ok(RedisLink {
            client,
            conn: None,
            timeout,
            read_timeout: timeout,
            scratch: Vec::new(),
            packed: Vec::new(),
            numbers: Vec::new(),
        })
    }

    /// Connects and loads the scripts, if not connected.
    fn connect(&mut self) -> redis::RedisResult<()> {
        if self.conn.is_none() {
            let mut conn = self.client.get_connection_with_timeout(self.timeout)?;
            conn.set_read_timeout(Some(self.timeout))?;
            conn.set_write_timeout(Some(self.timeout))?;
            self.read_timeout = self.timeout;
            let mut load = |script: &str| -> redis::RedisResult<String> {
                redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(script)
                    .query(&mut conn)
            };
            let shas = [load(SCRIPT)?, load(LEAKY_SCRIPT)?];
            self.conn = Some((conn, shas));
        }
        Ok(())
    }

    fn round_trip(
        &mut self,
        req: &ExchangeRequest<'_>,
        out: &mut Vec<SyncReply>,
    ) -> redis::RedisResult<u64> {
        use redis::ConnectionLike as _;

        self.connect()?;
        let RedisLink {
            conn,
            scratch,
            packed,
            numbers,
            timeout,
            read_timeout,
            ..
        } = self;
        let Some((conn, shas)) = conn.as_mut() else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::IoError,
                "not connected",
            )));
        };
        let wait = *timeout + TIMEOUT_PER_KEY * req.batch.len() as u32;
        if wait != *read_timeout {
            conn.set_read_timeout(Some(wait))?;
            *read_timeout = wait;
        }
        let (sha, param, width) = match req.sharing {
            Sharing::Window { limit } => (&shas[0], limit, 3),
            Sharing::Leaky { rate } => (&shas[1], rate, 1),
        };
        let items = req.batch.items();
        let calls = items.len().div_ceil(KEYS_PER_CALL).max(1);
        packed.clear();
        for c in 0..calls {
            let chunk = &items
                [(c * KEYS_PER_CALL).min(items.len())..((c + 1) * KEYS_PER_CALL).min(items.len())];
            // EVALSHA sha numkeys set keys... 6 arguments and the numbers.
            resp_array(packed, 3 + 1 + chunk.len() + 7);
            resp_bulk(packed, b"EVALSHA");
            resp_bulk(packed, sha.as_bytes());
            resp_number(packed, chunk.len() as u64 + 1);
            scratch.clear();
            scratch.extend_from_slice(req.prefix);
            scratch.extend_from_slice(b"instances");
            resp_bulk(packed, scratch);
            for item in chunk {
                scratch.clear();
                req.store_key(item, scratch);
                resp_bulk(packed, scratch);
            }
            resp_bulk(packed, req.instance.as_bytes());
            for n in [
                req.now_ms,
                req.instance_ttl_ms,
                req.key_ttl_ms,
                param,
                req.since_ms,
            ] {
                resp_number(packed, n);
            }
            scratch.clear();
            msgpack_array(scratch, 2 * chunk.len());
            for item in chunk {
                let (a, b) = match item.report {
                    Report::Window {
                        count, expected, ..
                    } => (count, expected),
                    Report::Leaky { added, level } => (added, level),
                };
                msgpack_uint(scratch, a);
                msgpack_uint(scratch, b);
            }
            resp_bulk(packed, scratch);
        }
        let replies = conn.req_packed_commands(packed, 0, calls)?;
        if replies.len() != calls {
            return Err(redis::RedisError::from((
                redis::ErrorKind::TypeError,
                "unexpected reply count",
            )));
        }
        let mut instances = 1;
        for (c, reply) in replies.into_iter().enumerate() {
            let keys = items
                .len()
                .saturating_sub(c * KEYS_PER_CALL)
                .min(KEYS_PER_CALL);
            let text = match reply {
                redis::Value::BulkString(text) => text,
                redis::Value::ServerError(e) => return Err(e.into()),
                _ => {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::TypeError,
                        "unexpected reply type",
                    )))
                }
            };
            numbers.clear();
            if !parse_numbers(&text, numbers) || numbers.len() != 1 + width * keys {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::TypeError,
                    "unexpected reply length",
                )));
            }
            instances = numbers[0].max(1) as u64;
            out.extend(numbers[1..].chunks_exact(width).map(|r| match req.sharing {
                Sharing::Window { .. } => SyncReply::Window {
                    grant: r[0],
                    others: r[1],
                    peers: r[2],
                },
                Sharing::Leaky { .. } => SyncReply::Leaky { level: r[0] },
            }));
        }
        Ok(instances)
    }
}

/// RESP: an array of `n` elements follows.
fn resp_array(buf: &mut Vec<u8>, n: usize) {
    buf.push(b'*');
    write_decimal(buf, n as u64);
    buf.extend_from_slice(b"\r\n");
}

/// RESP: a bulk string.
fn resp_bulk(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.push(b'$');
    write_decimal(buf, bytes.len() as u64);
    buf.extend_from_slice(b"\r\n");
    buf.extend_from_slice(bytes);
    buf.extend_from_slice(b"\r\n");
}

/// RESP: a number, as Redis takes arguments (a bulk string of decimals).
fn resp_number(buf: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    resp_bulk(buf, decimal(n, &mut digits));
}

/// msgpack: an array of `n` elements follows.
fn msgpack_array(buf: &mut Vec<u8>, n: usize) {
    if n < 16 {
        buf.push(0x90 | n as u8);
    } else if let Ok(n) = u16::try_from(n) {
        buf.push(0xdc);
        buf.extend_from_slice(&n.to_be_bytes());
    } else {
        buf.push(0xdd);
        buf.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

/// msgpack: an unsigned integer, in the fewest bytes.
fn msgpack_uint(buf: &mut Vec<u8>, n: u64) {
    if n < 0x80 {
        buf.push(n as u8);
    } else if let Ok(n) = u8::try_from(n) {
        buf.extend_from_slice(&[0xcc, n]);
    } else if let Ok(n) = u16::try_from(n) {
        buf.push(0xcd);
        buf.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = u32::try_from(n) {
        buf.push(0xce);
        buf.extend_from_slice(&n.to_be_bytes());
    } else {
        buf.push(0xcf);
        buf.extend_from_slice(&n.to_be_bytes());
    }
}

/// The first `N` bytes of `rest`, which moves past them.
fn take<const N: usize>(rest: &mut &[u8]) -> Option<[u8; N]> {
    let (head, tail) = rest.split_first_chunk::<N>()?;
    *rest = tail;
    Some(*head)
}

/// Parses a script's reply, a msgpack array of numbers as `cmsgpack`
/// packs Lua's (integers in the fewest bytes, others as floats, read
/// truncated), into `out`; false if it is anything else.
pub fn parse_numbers(reply: &[u8], out: &mut Vec<i64>) -> bool {
    parse_msgpack(reply, out).is_some()
}

fn parse_msgpack(reply: &[u8], out: &mut Vec<i64>) -> Option<()> {
    let mut rest = reply;
    let [head] = take::<1>(&mut rest)?;
    let n = match head {
        0x90..=0x9f => usize::from(head & 0x0f),
        0xdc => usize::from(u16::from_be_bytes(take(&mut rest)?)),
        0xdd => u32::from_be_bytes(take(&mut rest)?) as usize,
        _ => return None,
    };
    // Each number takes a byte at least: a bad length fails below, not
    // by reserving for it.
    out.reserve(n.min(rest.len()));
    for _ in 0..n {
        let [tag] = take::<1>(&mut rest)?;
        let v = match tag {
            0x00..=0x7f => i64::from(tag),
            0xe0..=0xff => i64::from(tag as i8),
            0xcc => i64::from(u8::from_be_bytes(take(&mut rest)?)),
            0xcd => i64::from(u16::from_be_bytes(take(&mut rest)?)),
            0xce => i64::from(u32::from_be_bytes(take(&mut rest)?)),
            0xcf => i64::try_from(u64::from_be_bytes(take(&mut rest)?)).unwrap_or(i64::MAX),
            0xd0 => i64::from(i8::from_be_bytes(take(&mut rest)?)),
            0xd1 => i64::from(i16::from_be_bytes(take(&mut rest)?)),
            0xd2 => i64::from(i32::from_be_bytes(take(&mut rest)?)),
            0xd3 => i64::from_be_bytes(take(&mut rest)?),
            0xca => finite(f64::from(f32::from_be_bytes(take(&mut rest)?)))?,
            0xcb => finite(f64::from_be_bytes(take(&mut rest)?))?,
            _ => return None,
        };
        out.push(v);
    }
    rest.is_empty().then_some(())
}

/// A finite float, truncated (saturating).
fn finite(f: f64) -> Option<i64> {
    f.is_finite().then_some(f as i64)
}

impl Exchange for RedisLink {
    fn exchange(
        &mut self,
        req: &ExchangeRequest<'_>,
        out: &mut Vec<SyncReply>,
    ) -> Result<u64, String> {
        self.round_trip(req, out).map_err(|e| {
            // A broken or timed-out connection is not reused: a late reply
            // would be read as the next one's.
            self.conn = None;
            e.to_string()
        })
    }
}

fn write_decimal(buf: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    buf.extend_from_slice(decimal(n, &mut digits));
}

/// `n` in decimal, written at the end of `digits`.
fn decimal(mut n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &digits[i..]
}

/// This process's id in Redis: the same for every configuration, so a
/// reload goes on counting as the same instance.
pub fn instance_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(wall_ms());
        h.write_u32(std::process::id());
        format!("{:x}-{:016x}", std::process::id(), h.finish())
    })
}

// ------------------------------------------------------- one zone's exchanges

/// A cluster zone's metrics (labels `zone`).
#[derive(Clone, Copy, Debug)]
pub struct ClusterMetrics {
    /// `waypost_module_limit_req_cluster_up`: 1 while exchanges succeed, 0
    /// while they fail.
    pub up: Gauge,
    /// `waypost_module_limit_req_cluster_sync_errors_total`.
    pub errors: Counter,
    /// `waypost_module_limit_req_cluster_synced_keys_total`: keys exchanged.
    pub keys: Counter,
    /// `waypost_module_limit_req_cluster_sync_rtt_us`: the last exchange's
    /// round trip.
    pub rtt_us: Gauge,
    /// `waypost_module_limit_req_cluster_instances`: instances of the zone
    /// seen at the last exchange.
    pub instances: Gauge,
}

impl ClusterMetrics {
    /// Registers zone `zone`'s series (the same cells after a reload).
    pub fn register(config: &FilterConfig<'_>, zone: &str) -> Result<ClusterMetrics, ConfigError> {
        let labels = [("zone", zone)];
        let m = ClusterMetrics {
            up: config.gauge(
                "limit_req_cluster_up",
                "1 while the zone's cluster exchanges succeed, 0 while they fail.",
                &labels,
            )?,
            errors: config.counter(
                "limit_req_cluster_sync_errors",
                "Failed cluster exchanges of the zone.",
                &labels,
            )?,
            keys: config.counter(
                "limit_req_cluster_synced_keys",
                "Keys exchanged with the cluster's store.",
                &labels,
            )?,
            rtt_us: config.gauge(
                "limit_req_cluster_sync_rtt_us",
                "Round trip of the zone's last cluster exchange, in microseconds.",
                &labels,
            )?,
            instances: config.gauge(
                "limit_req_cluster_instances",
                "Instances sharing the zone, as seen at the last exchange.",
                &labels,
            )?,
        };
        Ok(m)
    }
}

/// One zone's exchanges: when the next is due, the failure state and the
/// backoff. Times are ms of the clock the caller passes (monotonic in the
/// thread, made up in the tests).
pub struct ZoneLink<E> {
    /// The store.
    pub exchange: E,
    /// `cluster=` the link was made for.
    pub url: String,
    batch: Batch,
    replies: Vec<SyncReply>,
    prefix: Vec<u8>,
    /// This instance's id in the store ([`instance_id`]).
    pub instance: String,
    /// When the next exchange is due.
    pub next_due: u64,
    /// Failed attempts in a row.
    pub failures: u32,
    /// Wall clock of the last successful exchange (0: none yet).
    pub last_ok_ms: u64,
}

impl<E: Exchange> ZoneLink<E> {
    /// A link for `zone`, due at once.
    pub fn new(zone: &Zone, url: &str, exchange: E) -> ZoneLink<E> {
        ZoneLink {
            exchange,
            url: url.to_owned(),
            batch: Batch::default(),
            replies: Vec::new(),
            prefix: format!("waypost:limit_req:{}:", zone.name()).into_bytes(),
            instance: instance_id().to_owned(),
            next_due: 0,
            failures: 0,
            last_ok_ms: 0,
        }
    }

    /// One exchange for `zone` at `now` (this clock) and `wall_ms`; sets
    /// the zone's state, metrics and `next_due`, logging a failure (at most
    /// once per attempt, so once per interval at most) and the recovery.
    /// Returns the keys exchanged.
    pub fn tick(
        &mut self,
        zone: &Zone,
        now: u64,
        wall_ms: u64,
        log: &mut dyn FnMut(LogLevel, &str),
    ) -> Result<usize, String> {
        let Some(spec) = zone.spec().cluster.clone() else {
            self.next_due = now + 1000;
            return Ok(0);
        };
        let metrics = zone.cluster_metrics();
        let started = Instant::now();
        let result = self.round(zone, &spec, now, wall_ms);
        match &result {
            Ok(keys) => {
                if self.failures > 0 {
                    log(
                        LogLevel::Notice,
                        &format!(
                            "cluster sync of zone \"{}\" with {} resumed after {} failed attempts",
                            zone.name(),
                            spec.display(),
                            self.failures
                        ),
                    );
                }
                self.failures = 0;
                zone.set_cluster_up(true);
                if let Some(m) = metrics {
                    m.up.set(1);
                    m.keys.add(*keys as u64);
                    m.rtt_us
                        .set(started.elapsed().as_micros().min(i64::MAX as u128) as i64);
                    m.instances.set(zone.cluster_instances() as i64);
                }
                self.next_due = now + spec.sync_ms;
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                zone.set_cluster_up(false);
                if let Some(m) = metrics {
                    m.up.set(0);
                    m.errors.inc();
                }
                let what = match spec.on_error {
                    OnClusterError::Local => "limiting per instance",
                    OnClusterError::Allow => "not limiting",
                    OnClusterError::Deny => "rejecting every request",
                };
                let backoff = spec
                    .sync_ms
                    .saturating_mul(1 << (self.failures - 1).min(20))
                    .min(spec.max_backoff_ms());
                log(
                    LogLevel::Error,
                    &format!(
                        "cluster sync of zone \"{}\" with {} failed ({} in a row): {e}; {what} until it is back, next attempt in {backoff} ms",
                        zone.name(),
                        spec.display(),
                        self.failures
                    ),
                );
                self.next_due = now + backoff;
            }
        }
        result
    }

    fn round(
        &mut self,
        zone: &Zone,
        spec: &ClusterSpec,
        now: u64,
        wall_ms: u64,
    ) -> Result<usize, String> {
        self.batch.clear();
        zone.collect(&mut self.batch, MAX_KEYS_PER_SYNC, now);
        self.replies.clear();
        let sharing = zone.sharing();
        let key_ttl_ms = match sharing {
            // Two windows and a second after the window's hash was made.
            Sharing::Window { .. } => zone.spec().rate.period_ms() * 2 + 1000,
            // The script adds the time the level takes to drain.
            Sharing::Leaky { .. } => spec.sync_ms * 2 + 1000,
        };
        let req = ExchangeRequest {
            prefix: &self.prefix,
            instance: &self.instance,
            now_ms: wall_ms,
            instance_ttl_ms: spec.sync_ms * 3 + 1000,
            key_ttl_ms,
            sharing,
            since_ms: match self.last_ok_ms {
                0 => wall_ms.saturating_sub(spec.sync_ms),
                ms => ms.min(wall_ms),
            },
            batch: &self.batch,
        };
        match self.exchange.exchange(&req, &mut self.replies) {
            Ok(instances) if self.replies.len() == self.batch.len() => {
                self.last_ok_ms = wall_ms;
                zone.set_cluster_instances(instances);
                // Folded in at the clock the keys were collected at: the
                // leak over the round trip (under a millisecond on a LAN)
                // is not subtracted, erring toward a fuller bucket.
                zone.apply(&self.batch, &self.replies, now);
                Ok(self.batch.len())
            }
            Ok(_) => {
                zone.restore(&self.batch);
                Err("unexpected reply".into())
            }
            Err(e) => {
                zone.restore(&self.batch);
                Err(e)
            }
        }
    }
}

// ------------------------------------------------------------ the thread

/// The process's sync thread: exchanges for every cluster zone of every
/// configuration alive (a zone kept across a reload, once). One per
/// process: each configuration registers its cluster zones with it, and a
/// reload registers the new configuration's before the old one's go, so
/// the same thread goes on without a gap. It stops, and is joined, when
/// the last registration goes.
pub struct Syncer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<SyncState>,
    wake: Condvar,
}

#[derive(Default)]
struct SyncState {
    stop: bool,
    next_id: u64,
    /// Changes with every registration, so that the thread does not sleep
    /// through one.
    generation: u64,
    /// Oldest first.
    registrations: Vec<(u64, Vec<Arc<Zone>>)>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The thread's name (`/proc/PID/task/*/comm`).
pub const THREAD_NAME: &str = "limit_req-sync";

/// A configuration's cluster zones, exchanged while it lives.
pub struct Registration {
    syncer: Arc<Syncer>,
    id: u64,
}

impl Registration {
    /// Whether `other` is served by the same thread.
    pub fn same_thread(&self, other: &Registration) -> bool {
        Arc::ptr_eq(&self.syncer, &other.syncer)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut st = self.syncer.shared.lock();
        st.registrations.retain(|(id, _)| *id != self.id);
        st.generation += 1;
        drop(st);
        self.syncer.shared.wake.notify_all();
    }
}

impl Syncer {
    /// Registers `zones` with the process's thread, starting it if none
    /// runs.
    pub fn register(zones: Vec<Arc<Zone>>) -> Result<Registration, String> {
        static GLOBAL: Mutex<Weak<Syncer>> = Mutex::new(Weak::new());
        let mut global = GLOBAL.lock().unwrap_or_else(|e| e.into_inner());
        let syncer = match global.upgrade() {
            Some(s) => s,
            None => {
                let s = Arc::new(Syncer::start()?);
                *global = Arc::downgrade(&s);
                s
            }
        };
        drop(global);
        let mut st = syncer.shared.lock();
        let id = st.next_id;
        st.next_id += 1;
        st.generation += 1;
        st.registrations.push((id, zones));
        drop(st);
        syncer.shared.wake.notify_all();
        Ok(Registration { syncer, id })
    }

    fn start() -> Result<Syncer, String> {
        let shared = Arc::new(Shared {
            state: Mutex::new(SyncState::default()),
            wake: Condvar::new(),
        });
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || run(&for_thread))
            .map_err(|e| format!("cannot start the limit_req sync thread: {e}"))?;
        Ok(Syncer {
            shared,
            thread: Some(thread),
        })
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn log(level: LogLevel, message: &str) {
    waypost_module_api::sdk::log::<crate::LimitReqModule>(level, message);
}

/// The thread: for each zone (newest registration first, a shared state
/// once), an exchange when due; then sleep until the next is due, a
/// registration changes or the syncer stops.
fn run(shared: &Shared) {
    let mut links: HashMap<usize, ZoneLink<RedisLink>> = HashMap::new();
    let mut zones: Vec<Arc<Zone>> = Vec::new();
    loop {
        let generation = {
            let st = shared.lock();
            if st.stop {
                return;
            }
            zones.clear();
            for (_, regs) in st.registrations.iter().rev() {
                for z in regs {
                    if !zones.iter().any(|y| y.shares_state_with(z)) {
                        zones.push(z.clone());
                    }
                }
            }
            st.generation
        };
        links.retain(|id, _| zones.iter().any(|z| z.state_id() == *id));
        let mut next = mono_ms() + 1000;
        for zone in &zones {
            let Some(spec) = zone.spec().cluster.as_ref() else {
                continue;
            };
            let id = zone.state_id();
            if links.get(&id).is_some_and(|l| l.url != spec.url) {
                links.remove(&id);
            }
            let link = match links.entry(id) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(v) => match RedisLink::new(&spec.url, spec.timeout()) {
                    Ok(r) => v.insert(ZoneLink::new(zone, &spec.url, r)),
                    Err(e) => {
                        log(
                            LogLevel::Error,
                            &format!("cluster of zone \"{}\": {e}", zone.name()),
                        );
                        continue;
                    }
                },
            };
            let now = mono_ms();
            if now >= link.next_due {
                let ticked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    link.tick(zone, now, wall_ms(), &mut log)
                }));
                if ticked.is_err() {
                    zone.set_cluster_up(false);
                    link.next_due = now + spec.max_backoff_ms();
                }
            }
            next = next.min(link.next_due);
            if shared.lock().stop {
                return;
            }
        }
        zones.clear();
        let st = shared.lock();
        if st.stop {
            return;
        }
        if st.generation != generation {
            continue;
        }
        let wait = next.saturating_sub(mono_ms());
        if wait > 0 {
            let _unused = shared
                .wake
                .wait_timeout(st, Duration::from_millis(wait))
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}
