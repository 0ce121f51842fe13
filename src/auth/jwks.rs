//! JWKS URLs: fetched once at start, then refreshed in the background on one thread
//! (`coregate-jwks`) for every policy that has one.
//!
//! Each policy's current key set sits in an `ArcSwap`: workers `load()` it without a lock, and the
//! refresher swaps in a new set after a successful fetch. A failed fetch (network, status, bad
//! document, or a document with no usable key) keeps the last good set and is logged. Workers that
//! meet a token whose `kid` is not in the set raise `wanted` and unpark the refresher, which fetches
//! early, but never more often than `min_refresh` per policy.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::keys::KeySet;
use crate::client::{self, ClientOpts, Request};
use crate::config::auth::JwksSource;

const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed fetch, try again this soon (not a full refresh interval later).
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// One policy's live JWKS.
pub struct JwksState {
    pub source: JwksSource,
    pub set: ArcSwap<KeySet>,
    wanted: AtomicBool,
    refresher: OnceLock<Thread>,
}

impl Drop for JwksState {
    /// Wakes the refresher so it notices at once that this set is gone (after a reload).
    fn drop(&mut self) {
        if let Some(t) = self.refresher.get() {
            t.unpark();
        }
    }
}

impl JwksState {
    pub fn new(source: JwksSource) -> Self {
        JwksState {
            source,
            set: ArcSwap::from_pointee(KeySet::default()),
            wanted: AtomicBool::new(false),
            refresher: OnceLock::new(),
        }
    }

    /// A worker saw an unknown kid: ask for an early refresh (cheap; rate-limited by the refresher).
    pub fn want_refresh(&self) {
        if !self.wanted.swap(true, Ordering::Relaxed) {
            if let Some(t) = self.refresher.get() {
                t.unpark();
            }
        }
    }
}

/// Fetches and parses one JWKS document.
pub async fn fetch(source: &JwksSource) -> Result<KeySet, String> {
    let req = Request {
        method: "GET",
        url: &source.url,
        headers: &[("accept", "application/json")],
        body: b"",
    };
    let opts = ClientOpts {
        connect_timeout: FETCH_TIMEOUT,
        timeout: FETCH_TIMEOUT,
        max_body: 1 << 20,
    };
    let resp = client::send(&req, &opts).await.map_err(|e| e.to_string())?;
    if resp.status != 200 {
        return Err(format!("status {}", resp.status));
    }
    let (set, skipped) = KeySet::from_jwks(&resp.body)?;
    for s in &skipped {
        eprintln!("coregate: jwks {}: skipped {s}", source.url);
    }
    if set.keys.is_empty() {
        return Err("no usable keys in the document".into());
    }
    Ok(set)
}

fn runtime() -> std::io::Result<monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>>> {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
}

/// Fetches every set once (logging failures: those policies start with no keys and retry soon),
/// then starts the refresher thread. Returns at once when `states` is empty. A set that already
/// holds keys (carried over from the previous config generation by a reload) is not fetched now:
/// it keeps serving its keys and is refreshed on its schedule.
pub fn start(states: Vec<Arc<JwksState>>) -> Result<(), String> {
    if states.is_empty() {
        return Ok(());
    }
    let mut rt = runtime().map_err(|e| format!("cannot start the JWKS runtime: {e}"))?;
    let mut next = Vec::with_capacity(states.len());
    for s in &states {
        if !s.set.load().keys.is_empty() {
            next.push(Instant::now() + s.source.refresh);
            continue;
        }
        match rt.block_on(fetch(&s.source)) {
            Ok(set) => {
                s.set.store(Arc::new(set));
                next.push(Instant::now() + s.source.refresh);
            }
            Err(e) => {
                eprintln!("coregate: jwks {}: initial fetch failed: {e}", s.source.url);
                next.push(Instant::now() + RETRY_AFTER);
            }
        }
    }
    drop(rt);
    // the refresher holds the sets weakly: when a reload replaced them and the last request of the
    // old generation is gone, its thread ends at its next wake-up instead of polling forever
    let states2: Vec<Weak<JwksState>> = states.iter().map(Arc::downgrade).collect();
    let handle = std::thread::Builder::new()
        .name("coregate-jwks".into())
        .spawn(move || match runtime() {
            Ok(rt) => refresher(rt, states2, next),
            Err(e) => eprintln!("coregate: jwks refresher cannot start a runtime: {e}"),
        })
        .map_err(|e| format!("cannot spawn the JWKS thread: {e}"))?;
    for s in &states {
        let _ = s.refresher.set(handle.thread().clone());
    }
    Ok(())
}

fn refresher(
    mut rt: monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>>,
    weak: Vec<Weak<JwksState>>,
    mut next: Vec<Instant>,
) {
    let mut last: Vec<Option<Instant>> = vec![None; weak.len()];
    loop {
        let Some(states) = weak.iter().map(Weak::upgrade).collect::<Option<Vec<_>>>() else {
            return;
        };
        let now = Instant::now();
        for (i, s) in states.iter().enumerate() {
            let early = s.wanted.load(Ordering::Relaxed)
                && last[i].is_none_or(|l| now >= l + s.source.min_refresh);
            if now < next[i] && !early {
                continue;
            }
            s.wanted.store(false, Ordering::Relaxed);
            last[i] = Some(now);
            match rt.block_on(fetch(&s.source)) {
                Ok(set) => {
                    s.set.store(Arc::new(set));
                    next[i] = Instant::now() + s.source.refresh;
                }
                Err(e) => {
                    eprintln!(
                        "coregate: jwks {}: refresh failed, keeping the last good set: {e}",
                        s.source.url
                    );
                    next[i] = Instant::now() + RETRY_AFTER.min(s.source.refresh);
                }
            }
        }
        // Sleep until the next scheduled fetch, or until a worker wants one (then re-check the
        // rate limit: a wanted refresh inside min_refresh waits for its window).
        let now = Instant::now();
        let mut wake = next
            .iter()
            .copied()
            .min()
            .unwrap_or(now + Duration::from_secs(60));
        for (i, s) in states.iter().enumerate() {
            if s.wanted.load(Ordering::Relaxed) {
                if let Some(l) = last[i] {
                    wake = wake.min(l + s.source.min_refresh);
                }
            }
        }
        drop(states);
        std::thread::park_timeout(wake.saturating_duration_since(now));
    }
}
