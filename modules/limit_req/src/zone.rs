//! Zones: the per-key state of one `limit_req_zone` and the two
//! algorithms that read and update it, nginx's leaky bucket
//! (`ngx_http_limit_req_lookup`, `_account`, `_expire`) and the fixed
//! window of `mode=window`.
//!
//! A zone's keys are spread over up to 64 shards by a seeded hash of the
//! key; each shard is a mutex over a hash table and an intrusive LRU list,
//! so requests for different keys rarely meet on a lock and every
//! read-modify-write of one key is atomic. Capacity is the zone size
//! divided by [`NODE_BYTES`], split across the shards; eviction follows
//! nginx (§3.8) within a shard.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use hashbrown::HashTable;
use waypost_module_api::{sdk, Template};

use crate::cluster::{
    decide, mark, Admission, Batch, ClusterMetrics, ClusterSpec, ClusterView, OnClusterError,
    Report, Sharing, SyncReply, SyncSlot,
};

/// Bytes of zone size counted per key: the capacity of a zone is its
/// size divided by this (nginx's node is 80 bytes plus the key, rounded
/// up to its slab size: about 128 bytes for short keys).
pub const NODE_BYTES: u64 = 128;

/// The smallest zone nginx accepts: 8 pages of 4096 bytes.
pub const MIN_ZONE_SIZE: u64 = 8 * 4096;

/// A node untouched for this long, with no excess left, is stale.
const STALE_MS: u64 = 60_000;

/// Most shards per zone (a power of two).
const MAX_SHARDS: usize = 64;

/// A zone gets fewer shards when it is small, so that each has at least
/// this many nodes: keys do not spread evenly, and a shard that fills up
/// evicts even while others have room.
const MIN_SHARD_NODES: u64 = 128;

/// No node (end of a list).
const NIL: u32 = u32::MAX;

/// `last` of a node created by a check that did not save it yet: nginx's
/// `last = 0`, a time so long ago that the bucket has fully drained.
const NEVER: u64 = u64::MAX;

/// How a zone counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// nginx's leaky bucket (the default).
    Leaky,
    /// At most N requests per key per wall-clock second (or minute).
    Window,
}

/// `rate=Nr/s` or `rate=Nr/m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// N, at least 1.
    pub requests: u64,
    /// `r/m` rather than `r/s`.
    pub per_minute: bool,
}

impl Rate {
    /// `Nr/s`.
    pub fn per_second(requests: u64) -> Rate {
        Rate {
            requests,
            per_minute: false,
        }
    }

    /// `Nr/m`.
    pub fn per_minute(requests: u64) -> Rate {
        Rate {
            requests,
            per_minute: true,
        }
    }

    /// nginx's stored rate: thousandths of a request per second,
    /// `N * 1000 / scale` with integer division (1r/m is 16).
    pub fn thousandths(&self) -> u64 {
        let scale = if self.per_minute { 60 } else { 1 };
        self.requests.saturating_mul(1000) / scale
    }

    /// The window of `mode=window`: a second or a minute, in ms.
    pub fn period_ms(&self) -> u64 {
        if self.per_minute {
            60_000
        } else {
            1_000
        }
    }
}

/// What a `limit_req_zone` line says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneSpec {
    /// `zone=NAME:...`
    pub name: String,
    /// The key as written (`$binary_remote_addr`), compared on reload.
    pub key: String,
    /// `zone=...:SIZE` in bytes.
    pub size: u64,
    /// `rate=`
    pub rate: Rate,
    /// `mode=` (an extension; `leaky` by default).
    pub mode: Mode,
    /// `cluster=`, `sync=`, `on_cluster_error=` (an extension): the
    /// limit is shared through Redis.
    pub cluster: Option<ClusterSpec>,
}

/// What one zone lookup decided.
#[derive(Debug)]
pub enum Outcome {
    /// Admitted and saved (nginx's `NGX_OK`); `excess` in thousandths of
    /// a request, for the delay.
    Admitted {
        /// The bucket level after this request.
        excess: u64,
    },
    /// Admitted by this zone but not saved yet (`NGX_AGAIN`, a limit
    /// other than the last): the node is held until [`Zone::commit`] or
    /// [`Zone::release`].
    Held {
        /// The bucket level this request would leave (recomputed when
        /// committed).
        excess: u64,
        /// The held node.
        pin: Pin,
    },
    /// Over the limit (`NGX_BUSY`); nothing was saved.
    Rejected {
        /// The level the request would have left, in thousandths (for
        /// the log line; for a window zone, requests over the limit).
        excess: u64,
        /// Whole seconds until this key would be admitted again, at
        /// least 1.
        retry_after: u64,
    },
    /// A new key found the zone full and nothing could be evicted
    /// (`NGX_ERROR`, "could not allocate node").
    NoMemory,
}

/// A node held by a request between its check and its save, so that it
/// is not evicted meanwhile (nginx's `count`).
#[derive(Debug)]
pub struct Pin {
    shard: u32,
    slot: u32,
    /// For a window zone, the window the request was counted in.
    window: u64,
}

impl Pin {
    /// Holds nothing: a request a cluster bucket let through uncounted
    /// (Redis failing, `on_cluster_error=allow`).
    const DETACHED: Pin = Pin {
        shard: 0,
        slot: NIL,
        window: NEVER,
    };
}

/// One `limit_req_zone`: its parameters and its (shared) state.
pub struct Zone {
    spec: ZoneSpec,
    template: Template,
    algo: Algo,
    store: Arc<Store>,
    metrics: Option<ClusterMetrics>,
}

/// The parameters the algorithms need, copied into each call.
#[derive(Clone, Copy)]
struct Algo {
    mode: Mode,
    /// Thousandths of a request per second.
    rate: u64,
    /// Requests per window (`mode=window`).
    requests: u64,
    /// Window length in ms.
    period_ms: u64,
}

impl Zone {
    /// A zone with fresh, empty state.
    pub fn new(spec: ZoneSpec, template: Template) -> Zone {
        let store = Arc::new(Store::new(spec.size));
        Zone::with_store(spec, template, store)
    }

    /// A zone that takes over `previous`'s state (a reload): nginx reuses
    /// a zone's shared memory when its name and size are unchanged, even
    /// when the rate changed.
    pub fn reusing(spec: ZoneSpec, template: Template, previous: &Zone) -> Zone {
        Zone::with_store(spec, template, previous.store.clone())
    }

    fn with_store(spec: ZoneSpec, template: Template, store: Arc<Store>) -> Zone {
        let algo = Algo {
            mode: spec.mode,
            rate: spec.rate.thousandths().max(1),
            requests: spec.rate.requests,
            period_ms: spec.rate.period_ms(),
        };
        Zone {
            spec,
            template,
            algo,
            store,
            metrics: None,
        }
    }

    /// The zone with its cluster metrics.
    pub fn with_cluster_metrics(mut self, metrics: ClusterMetrics) -> Zone {
        self.metrics = Some(metrics);
        self
    }

    /// The cluster metrics, for a cluster zone built from a configuration.
    pub fn cluster_metrics(&self) -> Option<ClusterMetrics> {
        self.metrics
    }

    /// The zone's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// What the `limit_req_zone` line said.
    pub fn spec(&self) -> &ZoneSpec {
        &self.spec
    }

    /// The compiled key.
    pub fn template(&self) -> Template {
        self.template
    }

    /// The rate in thousandths of a request per second.
    pub fn rate(&self) -> u64 {
        self.algo.rate
    }

    /// Whether this zone and `other` share their state.
    pub fn shares_state_with(&self, other: &Zone) -> bool {
        Arc::ptr_eq(&self.store, &other.store)
    }

    /// Identifies the state, which zones of successive configurations
    /// share.
    pub fn state_id(&self) -> usize {
        Arc::as_ptr(&self.store) as usize
    }

    /// Whether the last cluster exchange succeeded (true before the first).
    pub fn cluster_up(&self) -> bool {
        self.store.cluster.up.load(Ordering::Relaxed)
    }

    /// Sets the exchanges' state, which requests read.
    pub fn set_cluster_up(&self, up: bool) {
        self.store.cluster.up.store(up, Ordering::Relaxed);
    }

    /// Instances of the zone seen in the store at the last exchange (1
    /// before the first).
    pub fn cluster_instances(&self) -> u64 {
        self.store.cluster.instances.load(Ordering::Relaxed)
    }

    /// Sets the instances seen.
    pub fn set_cluster_instances(&self, instances: u64) {
        self.store
            .cluster
            .instances
            .store(instances.max(1), Ordering::Relaxed);
    }

    /// How the zone's limit is shared with other instances.
    pub fn sharing(&self) -> Sharing {
        match self.algo.mode {
            Mode::Window => Sharing::Window {
                limit: self.algo.requests,
            },
            Mode::Leaky => Sharing::Leaky {
                rate: self.algo.rate,
            },
        }
    }

    /// What a request of a cluster zone reads of the exchanges.
    fn cluster_view(&self) -> Option<ClusterView> {
        let spec = self.spec.cluster.as_ref()?;
        Some(ClusterView {
            up: self.cluster_up(),
            on_error: spec.on_error,
            instances: self.cluster_instances(),
        })
    }

    /// Takes up to `budget` keys that requests touched since the last
    /// exchange (oldest first, shards in turn) into `batch`, with what
    /// this instance reports of each at `now` (this zone's clock): for a
    /// window its count, for a bucket what it added since (handed over to
    /// the batch) and its level.
    pub fn collect(&self, batch: &mut Batch, budget: usize, now: u64) {
        let n = self.store.shards.len();
        let instances = self.cluster_instances();
        let algo = self.algo;
        batch.collected_at = now;
        let first = batch.next_shard % n;
        for i in 0..n {
            let left = budget.saturating_sub(batch.len());
            if left == 0 {
                batch.next_shard = (first + i) % n;
                return;
            }
            let s = (first + i) % n;
            let mut guard = self.store.lock(s);
            let shard = &mut *guard;
            let take = left.min(shard.dirty.len());
            for slot in shard.dirty.drain(..take) {
                let Some(sync) = shard.sync.get_mut(slot as usize) else {
                    continue;
                };
                sync.dirty = false;
                let Some(node) = shard.nodes.get(slot as usize) else {
                    continue;
                };
                let key = node.key.as_bytes();
                // A free slot (no key is empty).
                if key.is_empty() {
                    continue;
                }
                let report = match algo.mode {
                    // A slot whose window the hook has not entered is
                    // skipped (the hook resets it first).
                    Mode::Window if node.last != sync.window => continue,
                    Mode::Window => Report::Window {
                        window: node.last,
                        count: node.excess,
                        expected: sync.expected(instances),
                    },
                    Mode::Leaky => Report::Leaky {
                        added: std::mem::take(&mut sync.added),
                        level: algo.level(node.excess, node.last, now),
                    },
                };
                batch.push(s as u32, slot, report, key);
            }
        }
        batch.next_shard = first;
    }

    /// Folds the replies of an exchange of `batch` in, at `now` (this
    /// zone's clock), into the keys still in the slots they were
    /// collected from. A window key still in the window it was collected
    /// in takes what the others may have admitted, the count sent and the
    /// grant until the next exchange. A bucket is raised to the cluster
    /// level plus what this instance added since the collection, if that
    /// is higher than its own level (it includes the others' additions
    /// not leaked yet); it is never lowered.
    pub fn apply(&self, batch: &Batch, replies: &[SyncReply], now: u64) {
        let algo = self.algo;
        self.each_item(batch, |shard, i, item| {
            let (Some(node), Some(sync), Some(reply)) = (
                shard.nodes.get_mut(item.slot as usize),
                shard.sync.get_mut(item.slot as usize),
                replies.get(i),
            ) else {
                return;
            };
            if node.key.as_bytes() != batch.key(item) {
                return;
            }
            match (item.report, *reply) {
                (
                    Report::Window { window, count, .. },
                    SyncReply::Window {
                        grant,
                        others,
                        peers,
                    },
                ) => {
                    if node.last != window || sync.window != window {
                        return;
                    }
                    sync.pushed = count;
                    sync.others = others.max(0) as u64;
                    sync.grant = grant.max(0) as u64;
                    sync.peers = peers.max(1) as u64;
                }
                (Report::Leaky { .. }, SyncReply::Leaky { level }) => {
                    let cluster = (level.max(0) as u64)
                        .saturating_sub(algo.decay(now.saturating_sub(batch.collected_at)))
                        .saturating_add(sync.added);
                    // The bucket brought to `now` (never back in time: a
                    // request may have saved it since the collection).
                    let (at, own) = match node.last {
                        NEVER => (now, 0),
                        last if now > last => (now, algo.level(node.excess, last, now)),
                        last => (last, node.excess),
                    };
                    if cluster > own {
                        node.excess = cluster;
                        node.last = at;
                    }
                }
                _ => {}
            }
        });
    }

    /// Puts the keys of a failed exchange back in the list of keys to
    /// exchange, and a bucket's additions back in its count.
    pub fn restore(&self, batch: &Batch) {
        self.each_item(batch, |shard, _, item| {
            let (Some(node), Some(sync)) = (
                shard.nodes.get(item.slot as usize),
                shard.sync.get_mut(item.slot as usize),
            ) else {
                return;
            };
            if node.key.as_bytes() != batch.key(item) {
                return;
            }
            if let Report::Leaky { added, .. } = item.report {
                sync.added = sync.added.saturating_add(added);
            }
            if !sync.dirty {
                sync.dirty = true;
                shard.dirty.push(item.slot);
            }
        });
    }

    /// Runs `f` on each item of `batch` (with its index) and its shard,
    /// locked once per run of items of the same shard (a batch is
    /// collected shard by shard).
    fn each_item(
        &self,
        batch: &Batch,
        mut f: impl FnMut(&mut Shard, usize, &crate::cluster::SyncItem),
    ) {
        let mut locked: Option<(u32, MutexGuard<'_, Shard>)> = None;
        for (i, item) in batch.items().iter().enumerate() {
            let shard = match &mut locked {
                Some((s, guard)) if *s == item.shard => guard,
                _ => {
                    locked = None;
                    &mut locked
                        .insert((item.shard, self.store.lock(item.shard as usize)))
                        .1
                }
            };
            f(shard, i, item);
        }
    }

    /// The cluster state of `key` (tests).
    pub fn sync_slot(&self, key: &[u8]) -> Option<SyncSlot> {
        let hash = self.store.hasher.hash_one(key);
        let shard = self.store.lock(self.store.shard_of(hash));
        let slot = shard.find(hash, key)?;
        shard.sync.get(slot as usize).copied()
    }

    /// A leaky key's stored level (thousandths) and `last` (tests).
    pub fn bucket(&self, key: &[u8]) -> Option<(u64, u64)> {
        let hash = self.store.hasher.hash_one(key);
        let shard = self.store.lock(self.store.shard_of(hash));
        let slot = shard.find(hash, key)?;
        let node = &shard.nodes[slot as usize];
        Some((node.excess, node.last))
    }

    /// How many keys the zone can hold.
    pub fn capacity(&self) -> usize {
        self.store.capacity
    }

    /// How many shards the keys are spread over.
    pub fn shards(&self) -> usize {
        self.store.shards.len()
    }

    /// How many keys the zone holds now (locks every shard in turn).
    pub fn len(&self) -> usize {
        (0..self.store.shards.len())
            .map(|s| self.store.lock(s).len as usize)
            .sum()
    }

    /// Whether the zone holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The clock this zone counts with: the monotonic one for the leaky
    /// bucket, the wall clock for windows.
    pub fn clock(&self, now: Now) -> u64 {
        match self.algo.mode {
            Mode::Leaky => now.mono_ms,
            Mode::Window => now.wall_ms,
        }
    }

    /// One request for `key` when this zone is the only limit, or the last
    /// one: check and save at once. `now` is this zone's clock in ms
    /// ([`Zone::clock`]); `burst` is in thousandths (`burst=N` is N*1000).
    pub fn account(&self, key: &[u8], now: u64, burst: u64) -> Outcome {
        self.lookup(key, now, burst, true)
    }

    /// nginx's `ngx_http_limit_req_lookup`: with `save` false (a limit
    /// other than the last) an admitted request is held, not saved.
    ///
    /// nginx's own case, a local bucket whose key is known, stays in this
    /// short function; a new key, windows and cluster zones are out of
    /// line. With `limit_req` in front of a fast proxy path, the check's
    /// instruction-cache footprint costs more than its instructions.
    pub fn lookup(&self, key: &[u8], now: u64, burst: u64, save: bool) -> Outcome {
        if self.spec.cluster.is_some() {
            return self.lookup_cluster(key, now, burst, save);
        }
        let hash = self.store.hasher.hash_one(key);
        let s = self.store.shard_of(hash);
        let mut guard = self.store.lock(s);
        let shard = &mut *guard;
        match shard.find(hash, key) {
            Some(slot) if self.algo.mode == Mode::Leaky => {
                shard.touch(slot);
                self.algo
                    .leaky(&mut shard.nodes[slot as usize], now, burst, save, s, slot)
                    .0
            }
            found => self.lookup_rest(shard, s, hash, key, found, now, save, None),
        }
    }

    /// [`Zone::lookup`] for a zone shared through a cluster store.
    #[inline(never)]
    fn lookup_cluster(&self, key: &[u8], now: u64, burst: u64, save: bool) -> Outcome {
        let algo = self.algo;
        let cluster = self.cluster_view();
        if let (Mode::Leaky, Some(view)) = (algo.mode, cluster) {
            if !view.up {
                // While Redis fails, `allow` neither checks nor counts (so
                // the bucket is not filled past its burst meanwhile) and
                // `deny` rejects; `local` is nginx's bucket alone.
                match view.on_error {
                    OnClusterError::Allow if save => return Outcome::Admitted { excess: 0 },
                    OnClusterError::Allow => {
                        return Outcome::Held {
                            excess: 0,
                            pin: Pin::DETACHED,
                        }
                    }
                    OnClusterError::Deny => {
                        return Outcome::Rejected {
                            excess: 0,
                            retry_after: 1,
                        }
                    }
                    OnClusterError::Local => {}
                }
            }
        }
        let hash = self.store.hasher.hash_one(key);
        let s = self.store.shard_of(hash);
        let mut guard = self.store.lock(s);
        let shard = &mut *guard;
        let found = shard.find(hash, key);
        if let (Some(slot), Mode::Leaky, Some(view)) = (found, algo.mode, cluster) {
            shard.touch(slot);
            shard.cover_sync(slot);
            // A cluster bucket's additions are shared while Redis answers;
            // while it fails (`local`), they stay local.
            mark(&mut shard.sync[slot as usize], &mut shard.dirty, slot);
            let (outcome, added) =
                algo.leaky(&mut shard.nodes[slot as usize], now, burst, save, s, slot);
            if view.up && matches!(outcome, Outcome::Admitted { .. }) {
                let sync = &mut shard.sync[slot as usize];
                sync.added = sync.added.saturating_add(added);
            }
            return outcome;
        }
        self.lookup_rest(shard, s, hash, key, found, now, save, cluster)
    }

    /// The rest of [`Zone::lookup`], with the shard locked: a known key of
    /// a window, or a new key.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn lookup_rest(
        &self,
        shard: &mut Shard,
        s: usize,
        hash: u64,
        key: &[u8],
        found: Option<u32>,
        now: u64,
        save: bool,
        cluster: Option<ClusterView>,
    ) -> Outcome {
        let algo = self.algo;
        if let Some(slot) = found {
            // A known bucket never comes here: `lookup` and
            // `lookup_cluster` check it themselves.
            debug_assert!(algo.mode == Mode::Window, "a known bucket in lookup_rest");
            shard.touch(slot);
            if cluster.is_some() {
                shard.cover_sync(slot);
            }
            let node = &mut shard.nodes[slot as usize];
            let window = now / algo.period_ms;
            let used = if node.last == window { node.excess } else { 0 };
            let admission = match cluster {
                None if used >= algo.requests => Admission::Full {
                    over: used + 1 - algo.requests,
                },
                None => Admission::Admit,
                Some(view) => decide(
                    &mut shard.sync[slot as usize],
                    &mut shard.dirty,
                    slot,
                    window,
                    used,
                    algo.requests,
                    view,
                ),
            };
            if let Some(rejected) = algo.window_rejection(admission, now) {
                return rejected;
            }
            // A held request reserves its place in the window, so that
            // concurrent requests never exceed N; a release gives it back.
            let node = &mut shard.nodes[slot as usize];
            node.last = window;
            node.excess = used.saturating_add(1);
            if save {
                return Outcome::Admitted { excess: 0 };
            }
            node.count += 1;
            return Outcome::Held {
                excess: 0,
                pin: Pin {
                    shard: s as u32,
                    slot,
                    window,
                },
            };
        }

        let hasher = &self.store.hasher;
        shard.expire(&algo, now, false, hasher);
        let slot = match shard.alloc(hash, key, hasher) {
            Some(slot) => slot,
            None => {
                shard.expire(&algo, now, true, hasher);
                match shard.alloc(hash, key, hasher) {
                    Some(slot) => slot,
                    None => return Outcome::NoMemory,
                }
            }
        };
        if let (Mode::Leaky, Some(_)) = (algo.mode, cluster) {
            // A new key: nothing exchanged or added yet, whatever the slot
            // held (nginx stores a new key at 0: its first request adds
            // nothing to the level).
            shard.cover_sync(slot);
            let sync = &mut shard.sync[slot as usize];
            *sync = SyncSlot {
                dirty: sync.dirty,
                ..SyncSlot::default()
            };
            mark(sync, &mut shard.dirty, slot);
        }
        if let (Mode::Window, Some(view)) = (algo.mode, cluster) {
            // A new key: blind in its window, whatever the slot held.
            shard.cover_sync(slot);
            let window = now / algo.period_ms;
            let sync = &mut shard.sync[slot as usize];
            *sync = SyncSlot {
                dirty: sync.dirty,
                ..SyncSlot::default()
            };
            sync.enter(window, algo.requests, view.instances);
            let admission = decide(
                &mut shard.sync[slot as usize],
                &mut shard.dirty,
                slot,
                window,
                0,
                algo.requests,
                view,
            );
            if let Some(rejected) = algo.window_rejection(admission, now) {
                let node = &mut shard.nodes[slot as usize];
                node.excess = 0;
                node.last = window;
                return rejected;
            }
        }
        let node = &mut shard.nodes[slot as usize];
        let window = match algo.mode {
            Mode::Leaky => {
                node.excess = 0;
                node.last = if save { now } else { NEVER };
                NEVER
            }
            Mode::Window => {
                let window = now / algo.period_ms;
                node.excess = 1;
                node.last = window;
                window
            }
        };
        if save {
            return Outcome::Admitted { excess: 0 };
        }
        node.count = 1;
        Outcome::Held {
            excess: 0,
            pin: Pin {
                shard: s as u32,
                slot,
                window,
            },
        }
    }

    /// Saves a held request once every limit admitted it, recomputing its
    /// level at `now` (nginx's `ngx_http_limit_req_account`); returns the
    /// level, in thousandths, for the delay.
    pub fn commit(&self, pin: Pin, now: u64) -> u64 {
        if pin.slot == NIL {
            return 0;
        }
        let mut guard = self.store.lock(pin.shard as usize);
        let shard = &mut *guard;
        let node = &mut shard.nodes[pin.slot as usize];
        node.count -= 1;
        match self.algo.mode {
            Mode::Leaky => {
                let (ms, excess) = self.algo.leak(node.excess, node.last, now);
                let added = excess - self.algo.level(node.excess, node.last, now);
                if ms != 0 {
                    node.last = now;
                }
                node.excess = excess;
                if self.spec.cluster.is_some() && self.cluster_up() {
                    if let Some(sync) = shard.sync.get_mut(pin.slot as usize) {
                        sync.added = sync.added.saturating_add(added);
                    }
                }
                excess
            }
            // The place was taken when the request was held.
            Mode::Window => 0,
        }
    }

    /// Lets go of a held request that another limit rejected: nothing is
    /// saved.
    pub fn release(&self, pin: Pin) {
        if pin.slot == NIL {
            return;
        }
        let mut shard = self.store.lock(pin.shard as usize);
        let node = &mut shard.nodes[pin.slot as usize];
        node.count -= 1;
        if self.algo.mode == Mode::Window && node.last == pin.window {
            node.excess = node.excess.saturating_sub(1);
        }
    }
}

impl Algo {
    /// nginx's check of a known bucket, `node` at `slot` of shard `s`:
    /// rejected when the level after this request is over `burst`, else
    /// saved (`save`) or held. Also returns what a save added to the
    /// level (a cluster bucket shares it).
    #[inline(always)]
    fn leaky(
        &self,
        node: &mut Node,
        now: u64,
        burst: u64,
        save: bool,
        s: usize,
        slot: u32,
    ) -> (Outcome, u64) {
        let (ms, excess) = self.leak(node.excess, node.last, now);
        if excess > burst {
            let retry_after = self.leaky_retry(node.excess, ms, burst);
            return (
                Outcome::Rejected {
                    excess,
                    retry_after,
                },
                0,
            );
        }
        if save {
            let added = excess - self.level(node.excess, node.last, now);
            node.excess = excess;
            if ms != 0 {
                node.last = now;
            }
            return (Outcome::Admitted { excess }, added);
        }
        node.count += 1;
        let pin = Pin {
            shard: s as u32,
            slot,
            window: NEVER,
        };
        (Outcome::Held { excess, pin }, 0)
    }

    /// The leaky bucket after `now - last` ms plus this request:
    /// `excess - rate * ms / 1000 + 1000`, at least 0, with nginx's clamp
    /// of a clock that went back. Returns the ms used and the level.
    fn leak(&self, excess: u64, last: u64, now: u64) -> (u64, u64) {
        if last == NEVER {
            return (u64::MAX, 0);
        }
        let ms = elapsed(last, now);
        let decay = self.decay(ms);
        (ms, excess.saturating_add(1000).saturating_sub(decay))
    }

    /// The bucket's level at `now` without a request (what [`Algo::leak`]
    /// computes, less the request).
    fn level(&self, excess: u64, last: u64, now: u64) -> u64 {
        if last == NEVER {
            return 0;
        }
        excess.saturating_sub(self.decay(elapsed(last, now)))
    }

    /// Thousandths leaked in `ms`.
    fn decay(&self, ms: u64) -> u64 {
        self.rate.checked_mul(ms).map_or(u64::MAX, |d| d / 1000)
    }

    /// Whole seconds until a key whose node holds `excess`, last updated
    /// `ms` ago, is admitted under `burst`: the first total time M with
    /// `excess + 1000 - rate * M / 1000 <= burst`.
    fn leaky_retry(&self, excess: u64, ms: u64, burst: u64) -> u64 {
        let need = excess.saturating_add(1000).saturating_sub(burst);
        let total = need.saturating_mul(1000).div_ceil(self.rate);
        total.saturating_sub(ms).div_ceil(1000).max(1)
    }

    /// The rejection for a window request, or `None` to admit it.
    fn window_rejection(&self, admission: Admission, now: u64) -> Option<Outcome> {
        match admission {
            Admission::Admit => None,
            Admission::Full { over } => Some(Outcome::Rejected {
                excess: over.saturating_mul(1000),
                retry_after: self.window_retry(now),
            }),
            // The next exchange (at most a minute away) brings a new
            // allowance; store failures are retried as soon.
            Admission::Paced | Admission::Denied => Some(Outcome::Rejected {
                excess: 0,
                retry_after: 1,
            }),
        }
    }

    /// Whole seconds until the next window.
    fn window_retry(&self, now: u64) -> u64 {
        let end = (now / self.period_ms + 1) * self.period_ms;
        (end - now).div_ceil(1000).max(1)
    }

    /// nginx's test for a node `_expire` may remove: untouched for 60 s
    /// and drained. A window node is stale once its window has passed.
    fn is_stale(&self, node: &Node, now: u64) -> bool {
        if node.last == NEVER {
            return true;
        }
        match self.mode {
            Mode::Leaky => {
                let ms = (now.wrapping_sub(node.last) as i64).unsigned_abs();
                ms >= STALE_MS && node.excess <= self.decay(ms)
            }
            Mode::Window => node.last != now / self.period_ms,
        }
    }
}

/// nginx's ms since `last`: a clock that went back up to 60 s counts as
/// 0, further as 1 ms.
fn elapsed(last: u64, now: u64) -> u64 {
    let ms = now.wrapping_sub(last) as i64;
    if ms < -60_000 {
        1
    } else if ms < 0 {
        0
    } else {
        ms as u64
    }
}

/// The clocks a request is checked at, in ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time on the core's clock ([`mono_ms`]; the leaky
    /// bucket's).
    pub mono_ms: u64,
    /// Wall-clock time since the Unix epoch (windows').
    pub wall_ms: u64,
}

impl Now {
    /// Both clocks at the same `ms` (tests).
    pub fn at(ms: u64) -> Now {
        Now {
            mono_ms: ms,
            wall_ms: ms,
        }
    }

    /// The current time; each clock is read only when asked for.
    pub fn current(mono: bool, wall: bool) -> Now {
        Now {
            mono_ms: if mono { mono_ms() } else { 0 },
            wall_ms: if wall { wall_ms() } else { 0 },
        }
    }
}

/// Monotonic ms on the core's clock ([`sdk::now_ns`]: in a request's
/// check, the time the core called it, as nginx's `ngx_current_msec`).
/// Its origin is the same across reloads, so the `last` of handed-over
/// nodes stays comparable: the core sets its clock before the first
/// `init_filter`, so no zone reads the module's own clock first.
pub fn mono_ms() -> u64 {
    sdk::now_ns() / 1_000_000
}

/// Wall-clock ms since the Unix epoch.
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The state of a zone, shared with the zone of the next configuration
/// when a reload keeps it.
struct Store {
    shards: Box<[Padded]>,
    /// `shards.len() - 1`.
    mask: usize,
    hasher: Hasher,
    capacity: usize,
    cluster: ClusterState,
}

/// What the sync thread tells requests of a cluster zone.
struct ClusterState {
    /// The last exchange succeeded (or none was tried yet).
    up: AtomicBool,
    /// Instances of the zone seen in the store.
    instances: AtomicU64,
}

/// A shard on its own cache lines.
#[repr(align(128))]
struct Padded(Mutex<Shard>);

impl Store {
    fn new(size: u64) -> Store {
        let capacity = (size / NODE_BYTES).max(1);
        let wanted = (capacity / MIN_SHARD_NODES).clamp(1, MAX_SHARDS as u64) as usize;
        // The largest power of two not above `wanted`.
        let shards = 1usize << (usize::BITS - 1 - wanted.leading_zeros());
        let base = capacity / shards as u64;
        let extra = capacity % shards as u64;
        Store {
            shards: (0..shards as u64)
                .map(|i| Padded(Mutex::new(Shard::new(base + u64::from(i < extra)))))
                .collect(),
            mask: shards - 1,
            hasher: Hasher::default(),
            capacity: capacity as usize,
            cluster: ClusterState {
                up: AtomicBool::new(true),
                instances: AtomicU64::new(1),
            },
        }
    }

    /// Hashbrown uses the low bits (bucket) and the top 7 (tag); the
    /// shard comes from the middle.
    fn shard_of(&self, hash: u64) -> usize {
        (hash >> 32) as usize & self.mask
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        // A panic never leaves a shard half-updated: no code that can
        // panic runs between the steps of an update.
        self.shards[shard]
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Keys up to this long are stored in the node itself.
const INLINE_KEY: usize = 30;

/// A key: inline up to [`INLINE_KEY`] bytes (`$binary_remote_addr`, an
/// application id), so that a lookup reads one cache line and a new key
/// allocates nothing; on the heap beyond.
enum Key {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Heap(Box<[u8]>),
}

impl Key {
    fn new(key: &[u8]) -> Key {
        if key.len() <= INLINE_KEY {
            let mut bytes = [0; INLINE_KEY];
            bytes[..key.len()].copy_from_slice(key);
            Key::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            Key::Heap(key.into())
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Key::Heap(b) => b,
        }
    }
}

/// One key's state: one cache line.
#[repr(align(64))]
struct Node {
    key: Key,
    /// Leaky: ms of the last save (`NEVER` before the first). Window: the
    /// window `excess` counts in.
    last: u64,
    /// Leaky: the bucket level in thousandths of a request. Window:
    /// requests in window `last`.
    excess: u64,
    /// Toward the most recently used end.
    prev: u32,
    /// Toward the least recently used end; the free list's link.
    next: u32,
    /// Requests holding the node between their check and their save.
    count: u32,
}

const _: () = assert!(std::mem::size_of::<Node>() == 64);

type Hasher = foldhash::fast::RandomState;

/// A hash table of slots into `nodes`, and the LRU list through them.
struct Shard {
    table: HashTable<u32>,
    nodes: Vec<Node>,
    /// Head of the free slots, linked through `next`.
    free: u32,
    /// Most recently used.
    head: u32,
    /// Least recently used.
    tail: u32,
    len: u32,
    capacity: u32,
    /// Cluster zones: each node's cluster state, by slot (grown with the
    /// nodes by the first cluster request that needs it).
    sync: Vec<SyncSlot>,
    /// Cluster zones: the slots requests touched since the last exchange,
    /// each once (at most the shard's capacity).
    dirty: Vec<u32>,
}

impl Shard {
    fn new(capacity: u64) -> Shard {
        Shard {
            table: HashTable::new(),
            nodes: Vec::new(),
            free: NIL,
            head: NIL,
            tail: NIL,
            len: 0,
            capacity: capacity.min(u64::from(u32::MAX - 1)) as u32,
            sync: Vec::new(),
            dirty: Vec::new(),
        }
    }

    /// Makes room for `slot`'s cluster state.
    fn cover_sync(&mut self, slot: u32) {
        if self.sync.len() <= slot as usize {
            self.sync
                .resize(self.nodes.len().max(slot as usize + 1), SyncSlot::default());
        }
    }

    fn find(&self, hash: u64, key: &[u8]) -> Option<u32> {
        let nodes = &self.nodes;
        self.table
            .find(hash, |&slot| nodes[slot as usize].key.as_bytes() == key)
            .copied()
    }

    fn unlink(&mut self, slot: u32) {
        let (prev, next) = {
            let node = &self.nodes[slot as usize];
            (node.prev, node.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
    }

    fn push_front(&mut self, slot: u32) {
        let head = self.head;
        {
            let node = &mut self.nodes[slot as usize];
            node.prev = NIL;
            node.next = head;
        }
        if head == NIL {
            self.tail = slot;
        } else {
            self.nodes[head as usize].prev = slot;
        }
        self.head = slot;
    }

    /// Moves a node to the most recently used end.
    fn touch(&mut self, slot: u32) {
        if self.head != slot {
            self.unlink(slot);
            self.push_front(slot);
        }
    }

    fn remove(&mut self, slot: u32, hasher: &Hasher) {
        self.unlink(slot);
        let hash = hasher.hash_one(self.nodes[slot as usize].key.as_bytes());
        if let Ok(entry) = self.table.find_entry(hash, |&s| s == slot) {
            entry.remove();
        }
        let node = &mut self.nodes[slot as usize];
        node.key = Key::Inline {
            len: 0,
            bytes: [0; INLINE_KEY],
        };
        node.next = self.free;
        self.free = slot;
        self.len -= 1;
    }

    /// A new node at the most recently used end, or `None` when the shard
    /// is full.
    fn alloc(&mut self, hash: u64, key: &[u8], hasher: &Hasher) -> Option<u32> {
        if self.len >= self.capacity {
            return None;
        }
        let node = Node {
            key: Key::new(key),
            prev: NIL,
            next: NIL,
            last: NEVER,
            excess: 0,
            count: 0,
        };
        let slot = if self.free != NIL {
            let slot = self.free;
            self.free = self.nodes[slot as usize].next;
            self.nodes[slot as usize] = node;
            slot
        } else {
            if self.nodes.len() == self.nodes.capacity() {
                // Grow by doubling, never past the shard's capacity.
                let room = self.capacity as usize - self.nodes.len();
                self.nodes.reserve_exact(self.nodes.len().max(4).min(room));
            }
            self.nodes.push(node);
            (self.nodes.len() - 1) as u32
        };
        let nodes = &self.nodes;
        // Growing the table rehashes the keys: cheaper than a stored hash
        // in every node.
        self.table.insert_unique(hash, slot, |&s| {
            hasher.hash_one(nodes[s as usize].key.as_bytes())
        });
        self.push_front(slot);
        self.len += 1;
        Some(slot)
    }

    /// nginx's `ngx_http_limit_req_expire`: removes up to two stale nodes
    /// from the LRU end, after, with `force`, the LRU node whatever its
    /// state. It stops at a node in use or not stale.
    fn expire(&mut self, algo: &Algo, now: u64, force: bool, hasher: &Hasher) {
        let mut n = u32::from(!force);
        while n < 3 {
            let tail = self.tail;
            if tail == NIL {
                return;
            }
            let node = &self.nodes[tail as usize];
            if node.count != 0 {
                return;
            }
            if n != 0 && !algo.is_stale(node, now) {
                return;
            }
            n += 1;
            self.remove(tail, hasher);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(rate: Rate, size: u64, mode: Mode) -> Zone {
        Zone::new(
            ZoneSpec {
                name: "z".into(),
                key: "$k".into(),
                size,
                rate,
                mode,
                cluster: None,
            },
            Template(0),
        )
    }

    #[test]
    fn rate_is_stored_in_thousandths_with_integer_division() {
        assert_eq!(Rate::per_minute(1).thousandths(), 16);
        assert_eq!(Rate::per_minute(30).thousandths(), 500);
        assert_eq!(Rate::per_second(10).thousandths(), 10_000);
        assert_eq!(
            zone(Rate::per_minute(1), MIN_ZONE_SIZE, Mode::Leaky).rate(),
            16
        );
    }

    #[test]
    fn capacity_is_size_over_128_split_over_shards() {
        let z = zone(Rate::per_second(1), MIN_ZONE_SIZE, Mode::Leaky);
        assert_eq!(z.capacity(), 256);
        assert_eq!(z.shards(), 2);
        let z = zone(Rate::per_second(1), 10 << 20, Mode::Leaky);
        assert_eq!(z.capacity(), 81_920);
        assert_eq!(z.shards(), 64);
        let caps: u32 = z
            .store
            .shards
            .iter()
            .map(|p| p.0.lock().unwrap().capacity)
            .sum();
        assert_eq!(caps, 81_920);
    }

    #[test]
    fn leak_clamps_a_clock_that_went_back() {
        let z = zone(Rate::per_second(1), MIN_ZONE_SIZE, Mode::Leaky);
        // 500 ms back: ms = 0, no decay.
        assert_eq!(z.algo.leak(2000, 10_500, 10_000), (0, 3000));
        // More than 60 s back: ms = 1.
        assert_eq!(z.algo.leak(2000, 100_000, 10_000), (1, 2999));
        assert_eq!(z.algo.leak(2000, NEVER, 10_000), (u64::MAX, 0));
    }

    #[test]
    fn lru_list_and_free_slots() {
        let h = Hasher::default();
        let hash = |k: &[u8]| h.hash_one(k);
        let mut s = Shard::new(3);
        let a = s.alloc(hash(b"a"), b"a", &h).unwrap();
        let b = s.alloc(hash(b"b"), b"b", &h).unwrap();
        let c = s.alloc(hash(b"c"), b"c", &h).unwrap();
        assert!(s.alloc(hash(b"d"), b"d", &h).is_none());
        assert_eq!((s.head, s.tail), (c, a));
        s.touch(a);
        assert_eq!((s.head, s.tail), (a, b));
        s.remove(b, &h);
        assert_eq!(s.find(hash(b"b"), b"b"), None);
        assert_eq!((s.head, s.tail, s.len), (a, c, 2));
        let long = [7u8; 100];
        let d = s.alloc(hash(&long), &long, &h).unwrap();
        assert_eq!(d, b, "the freed slot is reused");
        assert_eq!(s.find(hash(&long), &long), Some(d));
        assert_eq!(s.find(hash(b"a"), b"a"), Some(a));
        assert_eq!(s.find(hash(b"c"), b"c"), Some(c));
    }
}
