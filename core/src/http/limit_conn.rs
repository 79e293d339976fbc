//! `limit_conn`: nginx's `ngx_http_limit_conn_module`.
//!
//! A zone counts the requests in progress per key (`$binary_remote_addr`,
//! `$server_name`, ...): each HTTP/2 stream is one, and so is an upgraded
//! connection until its tunnel ends. A request takes one from each limit
//! of its location in order; a limit already at its number refuses it with
//! `limit_conn_status` (503), and what the request took is given back at
//! once. What it holds is given back when it ends: its answer written, its
//! log line written, or the client gone.
//!
//! The check runs in nginx's pre-access phase: after `return` (rewrite)
//! and after `limit_req`, whose delayed requests are counted only once
//! their delay is over, and before `allow`/`deny` (access).
//!
//! A zone lives on across reloads with its name and size, so requests of
//! the old configuration and the new one count together, as nginx keeps a
//! shared memory zone. Counts are split in shards by the key's CRC32, each
//! with its own lock: requests of different keys seldom meet.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use http::request::Parts;

use crate::http::proxy::{request_context, ClientCx};
use crate::log::{self, Level};
use crate::vars::{Template, VarCtx};

/// Shards of a zone's counts.
const SHARDS: usize = 32;

/// One shard: the count of each key in progress.
type Shard = Mutex<HashMap<Box<[u8]>, u16>>;

/// One count a request took: the zone, the key and its hash.
type Taken = (Arc<ZoneState>, Box<[u8]>, u32);

/// A zone's counts, shared by the configurations that name it.
pub struct ZoneState {
    pub name: String,
    /// `limit_conn_zone`'s size, in bytes.
    pub size: u64,
    /// The key as written, for the message when a reload changes it.
    pub key_text: String,
    /// Bytes the nodes may take: what nginx's slab allocator has for them.
    budget: usize,
    used: AtomicUsize,
    shards: Box<[Shard]>,
}

/// Why a zone refused a request.
#[derive(Debug, PartialEq, Eq)]
enum Refused {
    /// The key's count is at the limit.
    Limit,
    /// No room for a new key (nginx's slab allocation failed).
    Full,
}

impl ZoneState {
    pub fn new(name: &str, size: u64, key_text: &str) -> ZoneState {
        // nginx's pool takes its header and page descriptors first; the
        // rest is in 4 KiB pages.
        const PAGE: u64 = 4096;
        let pages = size.saturating_sub(PAGE) / (PAGE + 24);
        ZoneState {
            name: name.to_owned(),
            size,
            key_text: key_text.to_owned(),
            budget: usize::try_from(pages * PAGE).unwrap_or(usize::MAX),
            used: AtomicUsize::new(0),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// What a key's node takes in nginx's zone: the tree node's head
    /// (32 bytes), the count's (4) and the key, rounded up to the slab's
    /// power of two.
    fn node_size(key: &[u8]) -> usize {
        (36 + key.len()).next_power_of_two().max(8)
    }

    fn shard(&self, hash: u32) -> std::sync::MutexGuard<'_, HashMap<Box<[u8]>, u16>> {
        // A panic elsewhere while it was held cannot leave a count torn.
        self.shards[hash as usize % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn acquire(&self, key: &[u8], hash: u32, limit: u16) -> Result<(), Refused> {
        let mut shard = self.shard(hash);
        if let Some(count) = shard.get_mut(key) {
            if *count >= limit {
                return Err(Refused::Limit);
            }
            *count += 1;
            return Ok(());
        }
        let size = Self::node_size(key);
        if self.used.fetch_add(size, Relaxed) + size > self.budget {
            self.used.fetch_sub(size, Relaxed);
            return Err(Refused::Full);
        }
        shard.insert(key.into(), 1);
        Ok(())
    }

    fn release(&self, key: &[u8], hash: u32) {
        let mut shard = self.shard(hash);
        if let Some(count) = shard.get_mut(key) {
            *count -= 1;
            if *count == 0 {
                shard.remove(key);
                self.used.fetch_sub(Self::node_size(key), Relaxed);
            }
        }
    }

    /// The requests counted now, over all keys.
    #[cfg(test)]
    fn in_progress(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock().unwrap_or_else(|e| e.into_inner());
                s.values().map(|&c| u64::from(c)).sum::<u64>()
            })
            .sum()
    }
}

/// A zone as one configuration uses it: the shared counts and the key,
/// compiled against this configuration's `map`s.
pub struct Zone {
    pub state: Arc<ZoneState>,
    pub key: Template,
}

/// The `limit_conn` lines in effect at a level, and their settings.
pub struct Limits {
    /// Each zone with its number, in the order written.
    pub list: Vec<(Arc<Zone>, u16)>,
    /// `limit_conn_status` (503).
    pub status: u16,
    /// `limit_conn_log_level` (error).
    pub level: Level,
    /// `limit_conn_dry_run`
    pub dry_run: bool,
}

/// `$limit_conn_status`, as the access log records it (0: no limit applied).
pub const PASSED: u8 = 1;
pub const REJECTED: u8 = 2;
pub const REJECTED_DRY_RUN: u8 = 3;

/// `$limit_conn_status`'s text.
pub fn status_text(status: u8) -> &'static str {
    match status {
        PASSED => "PASSED",
        REJECTED => "REJECTED",
        REJECTED_DRY_RUN => "REJECTED_DRY_RUN",
        _ => "",
    }
}

/// What a request holds: one count in each zone it passed. Dropping it
/// gives them back.
pub struct Hold {
    taken: Box<[Taken]>,
}

/// The counts of a request whose answer an `error_page` may replace: kept
/// with the answer (in its extensions), so that they are given back when
/// the request ends, as nginx's are, not when its first answer is made.
#[derive(Clone)]
pub struct Kept(pub std::sync::Arc<Hold>);

impl Kept {
    /// `hold`, kept with `resp` if any.
    #[cold]
    pub fn attach(resp: &mut http::Response<crate::http::body::RespBody>, hold: Option<Hold>) {
        if let Some(hold) = hold {
            resp.extensions_mut()
                .insert(Kept(std::sync::Arc::new(hold)));
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        release(&self.taken);
    }
}

fn release(taken: &[Taken]) {
    for (zone, key, hash) in taken {
        zone.release(key, *hash);
    }
}

/// nginx's `ngx_http_limit_conn_handler`: a count taken in each of
/// `limits`' zones, or the status to answer with. `status` gets
/// `$limit_conn_status`. A request with an empty key for a zone is not
/// limited by it; a key over 255 bytes neither, and is logged.
pub fn check(
    limits: &Limits,
    vars: &VarCtx<'_>,
    cx: &ClientCx<'_>,
    parts: &Parts,
    status: &mut u8,
) -> Result<Option<Hold>, u16> {
    let mut taken = Vec::with_capacity(limits.list.len());
    let mut scratch = Vec::new();
    for (zone, limit) in &limits.list {
        let key: &[u8] = match zone.key.as_slice(vars) {
            Some(k) => k,
            None => {
                scratch.clear();
                zone.key.eval_into(vars, &mut scratch);
                &scratch
            }
        };
        if key.is_empty() {
            continue;
        }
        if key.len() > 255 {
            too_long(zone, key, cx, parts);
            continue;
        }
        *status = PASSED;
        let hash = crc32fast::hash(key);
        match zone.state.acquire(key, hash, *limit) {
            Ok(()) => taken.push((zone.state.clone(), key.into(), hash)),
            Err(refused) => {
                refuse(limits, zone, refused, cx, parts);
                // What this request took goes back before it is answered.
                release(&taken);
                if limits.dry_run {
                    *status = REJECTED_DRY_RUN;
                    return Ok(None);
                }
                *status = REJECTED;
                return Err(limits.status);
            }
        }
    }
    Ok((!taken.is_empty()).then(|| Hold {
        taken: taken.into_boxed_slice(),
    }))
}

/// nginx's lines for a refusal: the limit's at `limit_conn_log_level`,
/// a full zone's at `crit` without the request (the slab allocator's).
#[cold]
#[inline(never)]
fn refuse(limits: &Limits, zone: &Zone, refused: Refused, cx: &ClientCx<'_>, parts: &Parts) {
    match refused {
        Refused::Limit => {
            if !log::enabled(limits.level) {
                return;
            }
            let mut line = format!(
                "limiting connections{} by zone \"{}\"",
                if limits.dry_run { ", dry run," } else { "" },
                zone.state.name
            );
            request_context(cx, parts, &mut line);
            log::write(limits.level, Some(cx.conn), &line);
        }
        Refused::Full => log::write(
            Level::Crit,
            None,
            &format!(
                "ngx_slab_alloc() failed: no memory in limit_conn_zone \"{}\"",
                zone.state.name
            ),
        ),
    }
}

#[cold]
#[inline(never)]
fn too_long(zone: &Zone, key: &[u8], cx: &ClientCx<'_>, parts: &Parts) {
    let mut line = format!(
        "the value of the \"{}\" key is more than 255 bytes: \"{}\"",
        zone.state.key_text,
        String::from_utf8_lossy(key)
    );
    request_context(cx, parts, &mut line);
    log::write(Level::Error, Some(cx.conn), &line);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_up_to_the_limit_and_back() {
        let zone = ZoneState::new("z", 32768, "$k");
        let hash = crc32fast::hash(b"a");
        assert_eq!(zone.acquire(b"a", hash, 2), Ok(()));
        assert_eq!(zone.acquire(b"a", hash, 2), Ok(()));
        assert_eq!(zone.acquire(b"a", hash, 2), Err(Refused::Limit));
        zone.release(b"a", hash);
        assert_eq!(zone.in_progress(), 1);
        assert_eq!(zone.acquire(b"a", hash, 2), Ok(()));
        zone.release(b"a", hash);
        zone.release(b"a", hash);
        assert_eq!(zone.in_progress(), 0);
        assert_eq!(zone.used.load(Relaxed), 0, "the node is gone");
    }

    #[test]
    fn a_full_zone_refuses_new_keys_only() {
        // 32k: six pages of 64-byte nodes for 4-byte keys (nginx 1.22
        // fits 383 such keys in a 32k zone).
        let zone = ZoneState::new("z", 32768, "$k");
        let keys: Vec<[u8; 4]> = (0u32..).map(u32::to_be_bytes).take(6 * 64).collect();
        for k in &keys {
            assert_eq!(zone.acquire(k, crc32fast::hash(k), 1), Ok(()));
        }
        let next = 1_000_000u32.to_be_bytes();
        assert_eq!(
            zone.acquire(&next, crc32fast::hash(&next), 1),
            Err(Refused::Full)
        );
        let first = &keys[0];
        assert_eq!(
            zone.acquire(first, crc32fast::hash(first), 1),
            Err(Refused::Limit)
        );
        zone.release(first, crc32fast::hash(first));
        assert_eq!(zone.acquire(&next, crc32fast::hash(&next), 1), Ok(()));
    }
}
