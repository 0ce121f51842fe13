//! JWKS URLs: fetched once at start, then refreshed in the background on one thread
//! (`coregate-jwks`) for every policy that has one.
//!
//! Each policy's current key set sits in an `ArcSwap`: workers `load()` it without a lock, and the
//! refresher swaps in a new set after a successful fetch. A failed fetch (network, status, bad
//! document, or a document with no usable key) keeps the last good set and is logged. After every
//! fetch attempt the refresher advances the set's [`Epoch`], waking the requests that wait on it.
//!
//! Unknown keys: a worker that meets a token whose `kid` is not in the set calls
//! [`JwksState::refetch`]: it raises `wanted` and unparks the refresher, which fetches early (never
//! more often than `min_refresh` per policy), and the request awaits that fetch for at most
//! [`REFETCH_WAIT`] without blocking its worker. Many such requests share one fetch: `wanted` is one
//! flag per set, and a request that finds a fetch in flight just waits for it. When no fetch can
//! happen soon (inside `min_refresh`) the request does not wait. Until a set has loaded once
//! ([`JwksState::loaded`]: a JWKS URL down at start), tokens its keys would have to verify are
//! answered 503 (the key server is unavailable), not 401.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::keys::KeySet;
use crate::client::{self, ClientOpts, Request};
use crate::config::auth::JwksSource;
use crate::runtime::epoch::Epoch;

const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed fetch, try again this soon (not a full refresh interval later).
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Longest a request waits for the refetch its unknown `kid` asked for. Key servers answer in
/// milliseconds; a slower one costs the request a 401 (503 before any set loaded), not a hang.
pub const REFETCH_WAIT: Duration = Duration::from_secs(1);

/// Milliseconds on a monotonic clock shared by every thread; never 0 (0 means "never").
fn mono_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// One policy's live JWKS.
pub struct JwksState {
    pub source: JwksSource,
    pub set: ArcSwap<KeySet>,
    /// Advanced after every fetch attempt, good or failed.
    epoch: Epoch,
    /// A set has been stored at least once (fetched, or carried over by a reload).
    loaded: AtomicBool,
    wanted: AtomicBool,
    /// A fetch is running now.
    fetching: AtomicBool,
    /// `mono_ms()` when the refresher last started a fetch (0: never; the start-up fetch does not
    /// count, so the first unknown kid is always fetched at once).
    last_fetch: AtomicU64,
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
            epoch: Epoch::new(),
            loaded: AtomicBool::new(false),
            wanted: AtomicBool::new(false),
            fetching: AtomicBool::new(false),
            last_fetch: AtomicU64::new(0),
            refresher: OnceLock::new(),
        }
    }

    /// Publishes a key set (a fetched one, or the previous generation's on a reload).
    pub fn store(&self, set: Arc<KeySet>) {
        self.set.store(set);
        self.loaded.store(true, Ordering::Release);
    }

    /// Has a key set been loaded at least once?
    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// The epoch; read it before loading the set that failed to verify a token.
    pub fn epoch(&self) -> u64 {
        self.epoch.get()
    }

    /// A worker saw an unknown kid: ask for an early refresh (cheap; rate-limited by the refresher).
    pub fn want_refresh(&self) {
        if !self.wanted.swap(true, Ordering::Relaxed) {
            if let Some(t) = self.refresher.get() {
                t.unpark();
            }
        }
    }

    /// May the refresher start an early fetch now (outside `min_refresh` of the last one)?
    fn early_allowed(&self) -> bool {
        let last = self.last_fetch.load(Ordering::SeqCst);
        last == 0 || mono_ms() >= last + self.source.min_refresh.as_millis() as u64
    }

    /// Asks for a refetch and waits for it (at most `wait`) when one can happen soon; `seen` is
    /// [`Self::epoch`] read before the set was looked at. True: a fetch finished since `seen` (look
    /// at the set again); false: none will come soon, or none came in time. Never blocks the thread.
    pub async fn refetch(&self, seen: u64, wait: Duration) -> bool {
        // The refresher sets `fetching` before it stamps `last_fetch`, and advances the epoch before
        // it clears `fetching`. Read in the opposite order (window, fetching, epoch), a window closed
        // by a fetch means that fetch is seen in flight or finished; never "no fetch and none
        // allowed" while one runs.
        let allowed = self.early_allowed();
        let fetching = self.fetching.load(Ordering::SeqCst);
        if self.epoch.get() != seen {
            return true;
        }
        if !fetching {
            // a fetch in flight will answer; otherwise ask for one
            self.want_refresh();
            if !allowed {
                return false;
            }
        }
        monoio::time::timeout(wait, self.epoch.changed(seen))
            .await
            .is_ok()
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
        tls: source.tls.clone(),
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
        if s.loaded() {
            next.push(Instant::now() + s.source.refresh);
            continue;
        }
        match rt.block_on(fetch(&s.source)) {
            Ok(set) => {
                s.store(Arc::new(set));
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
    loop {
        let Some(states) = weak.iter().map(Weak::upgrade).collect::<Option<Vec<_>>>() else {
            return;
        };
        for (i, s) in states.iter().enumerate() {
            let now = Instant::now();
            let early = s.wanted.load(Ordering::Relaxed) && s.early_allowed();
            if now < next[i] && !early {
                continue;
            }
            // `fetching` first: see `JwksState::refetch` for the order readers rely on
            s.fetching.store(true, Ordering::SeqCst);
            s.wanted.store(false, Ordering::SeqCst);
            s.last_fetch.store(mono_ms(), Ordering::SeqCst);
            match rt.block_on(fetch(&s.source)) {
                Ok(set) => {
                    s.store(Arc::new(set));
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
            s.epoch.advance();
            s.fetching.store(false, Ordering::SeqCst);
        }
        // Sleep until the next scheduled fetch, or until a worker wants one (then re-check the
        // rate limit: a wanted refresh inside min_refresh waits for its window).
        let now = Instant::now();
        let mut wake = next
            .iter()
            .copied()
            .min()
            .unwrap_or(now + Duration::from_secs(60));
        for s in &states {
            let last = s.last_fetch.load(Ordering::Relaxed);
            if s.wanted.load(Ordering::Relaxed) && last != 0 {
                let open =
                    (last + s.source.min_refresh.as_millis() as u64).saturating_sub(mono_ms());
                wake = wake.min(now + Duration::from_millis(open));
            }
        }
        drop(states);
        std::thread::park_timeout(wake.saturating_duration_since(now));
    }
}
