//! `EdgeCache`: the core's L1 store ([`crate::store::L1Store`]) holding JS values, with
//! per-entry TTL and stale windows (RFC 9111 §4.2 freshness, RFC 5861 §3
//! `stale-while-revalidate`, §4 `stale-if-error`), purge tags and statistics.

use std::cell::RefCell;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use super::clock::JsClock;
use super::js::{count, from_js, key_of, millis, to_js};
use crate::store::{Admission, EntryMeta, EntryState, L1Store, Lookup, StoreConfig, Windows};
use crate::time::Timestamp;

/// The most entries a cache may be configured for (the admission sketch is sized by it).
pub const MAX_ENTRIES: u64 = 1 << 22;

/// Options of `new EdgeCache(options)`; every field is optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct CacheOptions {
    /// Most entries (default 10,000).
    pub max_entries: Option<f64>,
    /// Most bytes, summed over the entries' sizes (default 64 MiB).
    pub max_bytes: Option<f64>,
    /// Default freshness lifetime in ms (default 60,000).
    pub ttl_ms: Option<f64>,
    /// Default `stale-while-revalidate` window in ms after freshness ends (default 0).
    pub stale_while_revalidate_ms: Option<f64>,
    /// Default `stale-if-error` window in ms after freshness ends (default 0).
    pub stale_if_error_ms: Option<f64>,
    /// `"tinylfu"` (default) or `"lru"`.
    pub admission: Option<String>,
    /// The clock function is read separately (`JSON.stringify` drops functions); a `null`
    /// here is accepted and ignored.
    pub clock: Option<serde_json::Value>,
}

/// Options of `set` and `getOrInsert`; unset fields take the cache's defaults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct EntryOptions {
    /// Freshness lifetime in ms.
    pub ttl_ms: Option<f64>,
    /// `stale-while-revalidate` window in ms after freshness ends.
    pub stale_while_revalidate_ms: Option<f64>,
    /// `stale-if-error` window in ms after freshness ends.
    pub stale_if_error_ms: Option<f64>,
    /// Purge tags.
    pub tags: Vec<String>,
    /// The entry's weight against `maxBytes` (default: an estimate of the value's size).
    pub size: Option<f64>,
}

/// Counters kept by the facade on top of the store's.
#[derive(Clone, Copy, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FacadeStats {
    pub loads: u64,
    pub load_errors: u64,
    pub coalesced: u64,
    pub stale_while_revalidate_served: u64,
    pub stale_if_error_served: u64,
    pub background_refreshes: u64,
}

/// Defaults applied to entries.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Defaults {
    pub ttl_ms: u64,
    pub swr_ms: u64,
    pub sie_ms: u64,
}

/// The mutable state behind an `EdgeCache`, shared with pending loads.
pub(crate) struct State {
    pub store: L1Store<String, JsValue>,
    pub defaults: Defaults,
    pub stats: FacadeStats,
    /// Loads in progress, by key: the engine's flight table, so callers of `getOrInsert`
    /// share one loader call.
    pub inflight: crate::engine::flight::Flights<super::load::Loaded>,
}

/// Resolved entry options.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    pub ttl_ms: u64,
    pub swr_ms: u64,
    pub sie_ms: u64,
    pub tags: Vec<String>,
    pub size: Option<usize>,
}

impl Resolved {
    pub(crate) fn from_options(options: EntryOptions, d: Defaults) -> Result<Resolved, JsError> {
        Ok(Resolved {
            ttl_ms: millis(options.ttl_ms, d.ttl_ms, "ttlMs")?,
            swr_ms: millis(
                options.stale_while_revalidate_ms,
                d.swr_ms,
                "staleWhileRevalidateMs",
            )?,
            sie_ms: millis(options.stale_if_error_ms, d.sie_ms, "staleIfErrorMs")?,
            tags: options.tags,
            size: match options.size {
                None => None,
                Some(_) => Some(count(options.size, 0, MAX_BYTES, "size")? as usize),
            },
        })
    }
}

impl State {
    /// Inserts `value` weighing `size` at `now` with `options`; returns whether it is now
    /// stored. (Sizes are estimated before the state is borrowed: estimating may run user
    /// code such as `toJSON`, which may call back into the cache.)
    pub(crate) fn insert(
        &mut self,
        key: String,
        value: JsValue,
        size: usize,
        options: &Resolved,
        now: Timestamp,
    ) -> bool {
        let windows = Windows::from_lifetimes(now, options.ttl_ms, options.swr_ms, options.sie_ms);
        let meta = EntryMeta::new(windows, size).with_tags(options.tags.iter().cloned());
        self.store.insert(key, value, meta, now).is_stored()
    }
}

/// An estimate of a value's weight in bytes: UTF-16 length for strings and keys,
/// `byteLength` for buffers and typed arrays, 16 for other primitives, and the JSON length
/// for objects (64 when they do not serialise).
pub(crate) fn estimate_size(key: &str, value: &JsValue) -> usize {
    let key_bytes = key.len().saturating_mul(2);
    let value_bytes = if let Some(s) = value.as_string() {
        s.len().saturating_mul(2)
    } else if value.is_object() {
        let byte_length = js_sys::Reflect::get(value, &JsValue::from_str("byteLength"))
            .ok()
            .and_then(|v| v.as_f64());
        match byte_length {
            Some(n) if n.is_finite() && n >= 0.0 => n as usize,
            _ => js_sys::JSON::stringify(value)
                .ok()
                .map_or(64, |s| String::from(s).len().saturating_mul(2)),
        }
    } else {
        16
    };
    key_bytes.saturating_add(value_bytes).saturating_add(48)
}

/// The largest byte count accepted: 1 TiB, or what `usize` holds (4 GiB on wasm32).
pub(crate) const MAX_BYTES: u64 = if (usize::MAX as u64) < (1 << 40) {
    usize::MAX as u64
} else {
    1 << 40
};

/// An in-memory cache of JS values: the edgecache L1 store (LRU + TinyLFU admission, entry and
/// byte bounds) with TTL, stale windows, tags and a coalescing `getOrInsert`.
#[wasm_bindgen]
pub struct EdgeCache {
    pub(crate) state: Rc<RefCell<State>>,
    pub(crate) clock: JsClock,
}

/// A stored value with where it stands (from `lookup`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LookupInfo {
    state: &'static str,
    ttl_ms: i64,
    stored_at: u64,
    fresh_until: u64,
    stale_while_revalidate_until: u64,
    stale_if_error_until: u64,
    size: usize,
}

pub(crate) fn state_name(state: EntryState) -> &'static str {
    match state {
        EntryState::Fresh => "fresh",
        EntryState::StaleWhileRevalidate => "stale-while-revalidate",
        EntryState::StaleIfError => "stale-if-error",
        EntryState::Expired => "expired",
    }
}

#[wasm_bindgen]
impl EdgeCache {
    /// `new EdgeCache({maxEntries, maxBytes, ttlMs, staleWhileRevalidateMs, staleIfErrorMs,
    /// admission, clock})`; all optional. `clock` is a function returning milliseconds since
    /// 1970 (default `Date.now`).
    #[wasm_bindgen(constructor)]
    pub fn new(options: JsValue) -> Result<EdgeCache, JsError> {
        let clock = JsClock::from_options(&options)?;
        let o: CacheOptions = from_js(&options, "cache options")?;
        let max_entries = count(o.max_entries, 10_000, MAX_ENTRIES, "maxEntries")? as usize;
        let max_bytes = count(o.max_bytes, 64 << 20, MAX_BYTES, "maxBytes")? as usize;
        let admission = match o.admission.as_deref() {
            None | Some("tinylfu") => Admission::TinyLfu,
            Some("lru") => Admission::None,
            Some(other) => {
                return Err(JsError::new(&format!(
                    "admission must be \"tinylfu\" or \"lru\", got {other:?}"
                )))
            }
        };
        let defaults = Defaults {
            ttl_ms: millis(o.ttl_ms, 60_000, "ttlMs")?,
            swr_ms: millis(o.stale_while_revalidate_ms, 0, "staleWhileRevalidateMs")?,
            sie_ms: millis(o.stale_if_error_ms, 0, "staleIfErrorMs")?,
        };
        let config = StoreConfig::new(max_entries, max_bytes).with_admission(admission);
        Ok(EdgeCache {
            state: Rc::new(RefCell::new(State {
                store: L1Store::new(config),
                defaults,
                stats: FacadeStats::default(),
                inflight: Default::default(),
            })),
            clock,
        })
    }

    /// The value under `key` if it is fresh or inside its `stale-while-revalidate` window
    /// (RFC 5861 §3: usable stale), else `undefined`. An entry only inside its
    /// `stale-if-error` window is not returned: that window is for origin failures (§4).
    pub fn get(&self, key: JsValue) -> Result<JsValue, JsError> {
        let key = key_of(&key)?;
        let now = self.clock.now()?;
        let mut s = self.state.borrow_mut();
        Ok(match s.store.get(key.as_str(), now) {
            Lookup::Fresh(hit) => hit.value,
            Lookup::Stale(hit) if hit.state(now) == EntryState::StaleWhileRevalidate => hit.value,
            _ => JsValue::UNDEFINED,
        })
    }

    /// Where the entry under `key` stands, without counting a hit or changing recency:
    /// `{state, ttlMs, storedAt, freshUntil, staleWhileRevalidateUntil, staleIfErrorUntil,
    /// size}`, or `undefined` when absent. `state` is `fresh`, `stale-while-revalidate`,
    /// `stale-if-error` or `expired`.
    pub fn lookup(&self, key: JsValue) -> Result<JsValue, JsError> {
        let key = key_of(&key)?;
        let now = self.clock.now()?;
        let s = self.state.borrow();
        let Some(entry) = s.store.peek(key.as_str()) else {
            return Ok(JsValue::UNDEFINED);
        };
        let w = entry.windows;
        let info = LookupInfo {
            state: state_name(w.state(now)),
            ttl_ms: w.ttl_millis(now),
            stored_at: w.stored_at.as_millis(),
            fresh_until: w.fresh_until.as_millis(),
            stale_while_revalidate_until: w.stale_while_revalidate_until.as_millis(),
            stale_if_error_until: w.stale_if_error_until.as_millis(),
            size: entry.size,
        };
        drop(s);
        to_js(&info)
    }

    /// Whether an entry (of any state but expired) is resident under `key`.
    pub fn has(&self, key: JsValue) -> Result<bool, JsError> {
        let key = key_of(&key)?;
        let now = self.clock.now()?;
        let s = self.state.borrow();
        Ok(s.store
            .peek(key.as_str())
            .is_some_and(|e| !e.windows.is_expired(now)))
    }

    /// Stores `value` under `key` with `{ttlMs, staleWhileRevalidateMs, staleIfErrorMs, tags,
    /// size}` (all optional). Returns whether it was stored: `false` when the admission policy
    /// refused a rare key in a full cache or the entry is larger than `maxBytes`.
    /// `undefined` cannot be stored.
    pub fn set(&self, key: JsValue, value: JsValue, options: JsValue) -> Result<bool, JsError> {
        let key = key_of(&key)?;
        if value.is_undefined() {
            return Err(JsError::new(
                "value must not be undefined (use delete to remove a key)",
            ));
        }
        let options: EntryOptions = from_js(&options, "entry options")?;
        let now = self.clock.now()?;
        let defaults = self.state.borrow().defaults;
        let resolved = Resolved::from_options(options, defaults)?;
        let size = resolved.size.unwrap_or_else(|| estimate_size(&key, &value));
        Ok(self
            .state
            .borrow_mut()
            .insert(key, value, size, &resolved, now))
    }

    /// Removes the entry under `key`; returns whether there was one.
    pub fn delete(&self, key: JsValue) -> Result<bool, JsError> {
        let key = key_of(&key)?;
        Ok(self.state.borrow_mut().store.remove(key.as_str()))
    }

    /// Removes every entry tagged `tag` (a `Surrogate-Key` / `Cache-Tag` style purge);
    /// returns how many.
    #[wasm_bindgen(js_name = purgeTag)]
    pub fn purge_tag(&self, tag: JsValue) -> Result<u32, JsError> {
        let tag = tag
            .as_string()
            .ok_or_else(|| JsError::new("tag must be a string"))?;
        Ok(self.state.borrow_mut().store.purge_tag(&tag) as u32)
    }

    /// Marks the entry under `key` stale now (a soft purge): it stays usable inside its stale
    /// windows (RFC 5861) while it is refreshed. Returns whether it is resident.
    #[wasm_bindgen(js_name = softPurge)]
    pub fn soft_purge(&self, key: JsValue) -> Result<bool, JsError> {
        let key = key_of(&key)?;
        let now = self.clock.now()?;
        Ok(self.state.borrow_mut().store.soft_purge(key.as_str(), now))
    }

    /// Soft-purges every entry tagged `tag`; returns how many.
    #[wasm_bindgen(js_name = softPurgeTag)]
    pub fn soft_purge_tag(&self, tag: JsValue) -> Result<u32, JsError> {
        let tag = tag
            .as_string()
            .ok_or_else(|| JsError::new("tag must be a string"))?;
        let now = self.clock.now()?;
        Ok(self.state.borrow_mut().store.soft_purge_tag(&tag, now) as u32)
    }

    /// Removes every entry; returns how many there were.
    #[wasm_bindgen(js_name = purgeAll)]
    pub fn purge_all(&self) -> u32 {
        let mut s = self.state.borrow_mut();
        let n = s.store.len();
        s.store.clear();
        n as u32
    }

    /// Removes entries past every window; returns how many.
    #[wasm_bindgen(js_name = removeExpired)]
    pub fn remove_expired(&self) -> Result<u32, JsError> {
        let now = self.clock.now()?;
        Ok(self.state.borrow_mut().store.remove_expired(now) as u32)
    }

    /// Number of resident entries.
    #[wasm_bindgen(getter)]
    pub fn size(&self) -> u32 {
        self.state.borrow().store.len() as u32
    }

    /// Resident keys, most recently used first.
    pub fn keys(&self) -> js_sys::Array {
        let s = self.state.borrow();
        s.store.iter().map(|(k, _)| JsValue::from_str(k)).collect()
    }

    /// Counters: the store's (`hits`, `staleHits`, `misses`, `inserts`, `updates`,
    /// `rejected`, `tooLarge`, `evictions`, `expirations`, `purged`, `softPurged`, `entries`,
    /// `bytes`, `hitRatio`) and the loader's (`loads`, `loadErrors`, `coalesced`,
    /// `staleWhileRevalidateServed`, `staleIfErrorServed`, `backgroundRefreshes`,
    /// `inflight`), plus `maxEntries` and `maxBytes`.
    pub fn stats(&self) -> Result<JsValue, JsError> {
        let s = self.state.borrow();
        let st = s.store.stats();
        let config = s.store.config();
        let out = Stats {
            hits: st.hits,
            stale_hits: st.stale_hits,
            misses: st.misses,
            inserts: st.inserts,
            updates: st.updates,
            rejected: st.rejected,
            too_large: st.too_large,
            evictions: st.evictions,
            expirations: st.expirations,
            purged: st.purged,
            soft_purged: st.soft_purged,
            entries: st.entries,
            bytes: st.bytes,
            hit_ratio: st.hit_ratio(),
            facade: s.stats,
            inflight: s.inflight.len(),
            max_entries: config.max_entries,
            max_bytes: config.max_bytes,
        };
        drop(s);
        to_js(&out)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Stats {
    hits: u64,
    stale_hits: u64,
    misses: u64,
    inserts: u64,
    updates: u64,
    rejected: u64,
    too_large: u64,
    evictions: u64,
    expirations: u64,
    purged: u64,
    soft_purged: u64,
    entries: usize,
    bytes: usize,
    hit_ratio: f64,
    #[serde(flatten)]
    facade: FacadeStats,
    inflight: usize,
    max_entries: usize,
    max_bytes: usize,
}
