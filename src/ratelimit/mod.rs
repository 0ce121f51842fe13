//! Rate limits and quotas: per-core token buckets and counters reconciled against a global budget.
//!
//! ```text
//! request (after auth)
//!  -> policies: the route's `rate_limits`/`quotas`, then its caller's tier's (tier "default"
//!     when the caller has none, an unknown one, or no identity at all); each once
//!  -> key.rs     key text (consumer, client_ip, header, route, tenant, global) + fingerprint
//!  -> local.rs   this core's leased units for the key              -> enough: answer, no atomics
//!  -> rate.rs / quota.rs: lease a batch from the shared budget
//!       gateway scope: table.rs (lock-free slots, CAS on one u64)
//!       cluster scope: cluster.rs (one Lua script per lease in Redis; local share while it is down)
//!  -> headers.rs RateLimit-Policy / RateLimit on every limited response; 429 + Retry-After
//! response sent -> byte quotas charged with the body bytes (`charge`)
//! sweep.rs every 100 ms: unused leases of quiet keys go back; Redis probes and reconciliation
//! ```
//!
//! **Admission bound.** Every admitted request spends a token leased from the shared bucket, so
//! from start to any time t a key is admitted at most `r·t + B` (`gcra.rs`). Leases make tokens
//! early, never extra: over any interval Δt at most `r·Δt + B + N·L` (N cores, L the lease, at most
//! B/(4N): so at most `r·Δt + 1.25·B`). Tokens a core holds while another is refused are the
//! under-admission error, also at most N·L, and they flow back once the holding core has been
//! quiet for `IDLE_RETURN`. Quotas lease the same way (L = limit/(64N), at least 1).
//!
//! **Memory.** Gateway tables are fixed at start: 32 bytes per `max_keys` per policy (16-byte
//! slots, half full). Each core caches at most `LOCAL_SLOTS` keys per policy (about 100 bytes
//! each, direct-mapped: a new key evicts the old one and returns its units). A million distinct
//! client IPs cost nothing beyond those bounds; past `max_keys` live keys, keys share buckets.

pub mod cluster;
pub mod gcra;
pub mod headers;
pub mod key;
pub mod local;
mod quota;
mod rate;
mod sweep;
pub mod table;
pub mod window;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::limits::{
    QuotaPolicy, QuotaUnit, RateLimitPolicy, RedisConfig, Scope, TierConfig,
};
use crate::config::{Config, RouteConfig};
use crate::metrics::LimitMetrics;
use crate::redis::{RedisClient, RedisOpts};
use cluster::Scripts;
use gcra::Shape;
use headers::{Fields, PolicyItem};
use key::{Fingerprinter, KeyInput};
use local::Local;
use table::KeyTable;

/// Keys each core caches per policy.
const LOCAL_SLOTS: usize = 4096;
/// Lease window of a gateway-scoped rate limit: at most this much refill per lease.
const LEASE_WINDOW_NS: u64 = 50_000_000;
/// Lease window of a cluster-scoped rate limit (a Redis round trip costs more than a CAS).
const CLUSTER_LEASE_WINDOW_NS: u64 = 100_000_000;
/// Leased units of a key unused this long go back to the shared budget.
const IDLE_RETURN_NS: u64 = 200_000_000;
/// While Redis is down, how often it is probed.
const PROBE_INTERVAL_NS: u64 = 1_000_000_000;
/// Distinct keys whose usage during a Redis outage is remembered for reconciliation, per core.
const MAX_PENDING: usize = 10_000;

/// Monotonic ns (coarse clock: a few ns to read, millisecond resolution).
#[inline]
pub fn now_ns() -> u64 {
    clock(libc::CLOCK_MONOTONIC_COARSE)
}

/// Unix seconds (coarse clock).
#[inline]
pub fn unix_s() -> u64 {
    clock(libc::CLOCK_REALTIME_COARSE) / 1_000_000_000
}

fn clock(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; coarse clocks exist on every Linux we run on.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A gateway-wide rate-limit policy.
pub struct RateShared {
    pub cfg: RateLimitPolicy,
    pub shape: Shape,
    /// Cluster scope: the node's share while Redis is down.
    pub fallback: Shape,
    pub lease: u64,
    /// Gateway scope: the budget. Cluster scope: the fallback budget.
    pub table: KeyTable,
    item: PolicyItem,
    /// Seconds to refill the bucket from empty (the `w` of the policy header).
    window_s: u64,
}

/// A gateway-wide quota policy.
pub struct QuotaShared {
    pub cfg: QuotaPolicy,
    pub lease: u64,
    /// Cluster scope: what this node may use alone per window while Redis is down.
    pub fallback_limit: u64,
    /// Gateway scope: the counters. Cluster scope: the fallback counters.
    pub table: KeyTable,
    item: PolicyItem,
}

/// Redis reachability, shared by all cores.
struct RedisState {
    cfg: RedisConfig,
    down: AtomicBool,
    /// While down: when the next probe may run (ns).
    next_probe: AtomicU64,
}

/// Process-wide limit state, built once and shared read-only (its tables are atomics).
pub struct LimitsShared {
    pub rates: Vec<RateShared>,
    pub quotas: Vec<QuotaShared>,
    tiers: Vec<TierConfig>,
    redis: Option<RedisState>,
    fp: Fingerprinter,
    scripts: Scripts,
}

impl LimitsShared {
    /// Sizes every table and lease for `workers` cores.
    pub fn new(cfg: &Config, workers: usize) -> Arc<LimitsShared> {
        let n = workers.max(1);
        let rates = cfg
            .rate_limits
            .iter()
            .map(|p| {
                let per = p.per.as_nanos() as u64;
                let shape = Shape::new(p.tokens, per, p.burst, 1.0);
                let window = match p.scope {
                    Scope::Gateway => LEASE_WINDOW_NS,
                    Scope::Cluster => CLUSTER_LEASE_WINDOW_NS,
                };
                RateShared {
                    shape,
                    fallback: Shape::new(p.tokens, per, p.burst, p.local_share),
                    lease: gcra::lease_size(&shape, n, window),
                    table: KeyTable::new(p.max_keys),
                    item: PolicyItem::new(
                        &p.name,
                        shape.burst,
                        headers::ceil_secs(shape.tau),
                        false,
                    ),
                    window_s: headers::ceil_secs(shape.tau),
                    cfg: p.clone(),
                }
            })
            .collect();
        let quotas = cfg
            .quotas
            .iter()
            .map(|q| QuotaShared {
                lease: (q.limit / (64 * n as u64)).max(1),
                fallback_limit: ((q.limit as f64 * q.local_share) as u64).max(1),
                table: KeyTable::new(q.max_keys),
                // prepared for the current window's length (only calendar months vary)
                item: PolicyItem::new(
                    &q.name,
                    q.limit,
                    window::locate(q.window, unix_s()).secs(),
                    q.unit == QuotaUnit::Bytes,
                ),
                cfg: q.clone(),
            })
            .collect();
        Arc::new(LimitsShared {
            rates,
            quotas,
            tiers: cfg.tiers.clone(),
            redis: cfg.redis.clone().map(|cfg| RedisState {
                cfg,
                down: AtomicBool::new(false),
                next_probe: AtomicU64::new(0),
            }),
            fp: Fingerprinter::default(),
            scripts: Scripts::default(),
        })
    }

    /// The tier whose limits apply to a caller of tier `name` (or "default", also for `None`).
    fn tier(&self, name: Option<&str>) -> Option<&TierConfig> {
        let find = |n: &str| {
            self.tiers
                .binary_search_by(|t| t.name.as_str().cmp(n))
                .ok()
                .map(|i| &self.tiers[i])
        };
        name.and_then(find).or_else(|| find("default"))
    }

    /// Whether Redis is currently considered unreachable.
    pub fn redis_down(&self) -> bool {
        self.redis
            .as_ref()
            .is_some_and(|r| r.down.load(Ordering::Acquire))
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// A rate limit's bucket did not hold the request's cost.
    Rate,
    /// A quota's window is used up.
    Quota,
}

/// A response whose body bytes count against a byte quota.
#[derive(Debug, Clone, Copy)]
pub struct Charge {
    quota: u16,
    fp: u64,
    global: u32,
    window: u64,
}

/// Units taken for the current request, refunded to the local cache if a later policy refuses it.
#[derive(Debug, Clone, Copy)]
enum Taken {
    Rate { p: u16, fp: u64, cost: u64 },
    Quota { q: u16, fp: u64, window: u64 },
}

/// Per-connection scratch of the limiter (reused for every request on the connection).
#[derive(Default)]
pub struct Output {
    /// Header lines for the response (`ratelimit-policy`, `ratelimit`, `retry-after`).
    pub headers: Vec<u8>,
    /// Byte quotas to charge once the response is sent.
    pub charges: Vec<Charge>,
    fields: Fields,
    taken: Vec<Taken>,
}

impl Output {
    /// Whether the last [`LimitsRt::admit`] checked at least one policy (the access log's
    /// `ratelimit` field stays empty when none applied).
    pub fn applied(&self) -> bool {
        !self.fields.is_empty()
    }

    pub fn clear(&mut self) {
        self.headers.clear();
        self.charges.clear();
        self.fields.clear();
        self.taken.clear();
    }
}

/// One step's answer for one policy.
enum Step {
    Granted { remaining: u64, reset_ns: u64 },
    Denied { retry_ns: u64, reset_ns: u64 },
}

/// One worker's limiter: local caches, Redis client, counters.
pub struct LimitsRt {
    shared: Arc<LimitsShared>,
    rates: Vec<RefCell<Local>>,
    quotas: Vec<RefCell<Local>>,
    redis: Option<RedisClient>,
    /// Key text of the policy being checked.
    scratch: RefCell<Vec<u8>>,
    /// Cluster quota usage counted locally while Redis was down: Redis key -> (units, ttl s).
    pending: RefCell<HashMap<Vec<u8>, (u64, u64)>>,
    /// Requests waiting for a key's in-flight Redis lease: ((policy, fingerprint), waker).
    lease_waiters: RefCell<Vec<((usize, u64), std::task::Waker)>>,
    metrics: LimitMetrics,
}

impl LimitsRt {
    pub fn new(shared: Arc<LimitsShared>, metrics: LimitMetrics) -> LimitsRt {
        let local = |keys: usize| RefCell::new(Local::new(keys.min(LOCAL_SLOTS)));
        LimitsRt {
            rates: shared.rates.iter().map(|r| local(r.cfg.max_keys)).collect(),
            quotas: shared
                .quotas
                .iter()
                .map(|q| local(q.cfg.max_keys))
                .collect(),
            redis: shared.redis.as_ref().map(|r| {
                RedisClient::new(
                    r.cfg.addr,
                    RedisOpts {
                        connect_timeout: r.cfg.timeout,
                        op_timeout: r.cfg.timeout,
                        db: r.cfg.db,
                        password: r.cfg.password.clone(),
                        max_idle: 16,
                    },
                )
            }),
            scratch: RefCell::new(Vec::with_capacity(256)),
            pending: RefCell::new(HashMap::new()),
            lease_waiters: RefCell::new(Vec::new()),
            metrics,
            shared,
        }
    }

    pub fn shared(&self) -> &Arc<LimitsShared> {
        &self.shared
    }

    /// Whether any limit can apply to requests on `route` (its own, or a tier's).
    #[inline]
    pub fn applies(&self, route: &RouteConfig) -> bool {
        !route.rate_limits.is_empty() || !route.quotas.is_empty() || !self.shared.tiers.is_empty()
    }

    /// Checks every limit of the request; on success its units are spent (and its byte quotas
    /// recorded in `out.charges`). `out.headers` gets the response header lines either way.
    pub async fn admit(
        &self,
        route: &RouteConfig,
        input: &KeyInput<'_>,
        out: &mut Output,
    ) -> Result<(), Limited> {
        out.clear();
        // Anonymous callers (routes without auth) have no tier: they get "default" like callers
        // whose identity carries none.
        let tier = self
            .shared
            .tier(input.identity.and_then(|id| id.tier.as_deref()));
        let (tier_rates, tier_quotas) = match tier {
            Some(t) => (&t.rate_limits[..], &t.quotas[..]),
            None => (&[][..], &[][..]),
        };
        let now = now_ns();
        let rates = route
            .rate_limits
            .iter()
            .chain(tier_rates.iter().filter(|p| !route.rate_limits.contains(p)));
        for &p in rates {
            let r = &self.shared.rates[p];
            let cost = route.cost.unwrap_or(r.cfg.cost);
            let fp = self.key(p, &r.cfg.key, input);
            let step = match r.cfg.scope {
                Scope::Gateway => self.rate_gateway(p, fp, cost, now),
                Scope::Cluster => self.rate_cluster(p, fp, cost, now).await,
            };
            let m = &self.metrics.rates[p];
            match step {
                Step::Granted {
                    remaining,
                    reset_ns,
                } => {
                    m.allowed.inc();
                    out.taken.push(Taken::Rate {
                        p: p as u16,
                        fp,
                        cost,
                    });
                    let reset = headers::ceil_secs(reset_ns);
                    out.fields.push(&r.item, r.window_s, remaining, reset);
                }
                Step::Denied { retry_ns, reset_ns } => {
                    m.limited.inc();
                    let reset = headers::ceil_secs(reset_ns);
                    out.fields.push(&r.item, r.window_s, 0, reset);
                    self.refuse(out, headers::ceil_secs(retry_ns));
                    return Err(Limited::Rate);
                }
            }
        }
        let quotas = route
            .quotas
            .iter()
            .chain(tier_quotas.iter().filter(|q| !route.quotas.contains(q)));
        let unix = unix_s();
        for &q in quotas {
            let qs = &self.shared.quotas[q];
            let fp = self.key(q + self.shared.rates.len(), &qs.cfg.key, input);
            let span = window::locate(qs.cfg.window, unix);
            let step = match qs.cfg.scope {
                Scope::Gateway => self.quota_gateway(q, fp, &span, now, out),
                Scope::Cluster => self.quota_cluster(q, fp, &span, now, out).await,
            };
            let m = &self.metrics.quotas[q];
            let reset = span.end.saturating_sub(unix);
            match step {
                Step::Granted { remaining, .. } => {
                    m.allowed.inc();
                    out.fields.push(&qs.item, span.secs(), remaining, reset);
                }
                Step::Denied { .. } => {
                    m.limited.inc();
                    out.fields.push(&qs.item, span.secs(), 0, reset);
                    self.refuse(out, reset);
                    return Err(Limited::Quota);
                }
            }
        }
        out.fields.write(&mut out.headers, None);
        Ok(())
    }

    /// The key of policy `slot` (rate limits first, then quotas) for this request: its text is
    /// left in `scratch`, its fingerprint returned.
    fn key(&self, slot: usize, parts: &[crate::config::limits::KeyPart], input: &KeyInput) -> u64 {
        let mut text = self.scratch.borrow_mut();
        key::write_text(parts, input, &mut text);
        self.shared.fp.of(slot, &text)
    }

    /// A refusal: units already taken for this request go back to the local caches, and the
    /// headers get `retry-after`.
    fn refuse(&self, out: &mut Output, retry_s: u64) {
        for t in out.taken.drain(..) {
            match t {
                Taken::Rate { p, fp, cost } => {
                    if let Some(e) = self.rates[p as usize].borrow_mut().get_mut(fp) {
                        e.units += cost;
                    }
                }
                Taken::Quota { q, fp, window } => {
                    if let Some(e) = self.quotas[q as usize].borrow_mut().get_mut(fp) {
                        if e.window == window {
                            e.units += 1;
                        }
                    }
                }
            }
        }
        out.charges.clear();
        out.fields.write(&mut out.headers, Some(retry_s));
    }

    /// This worker's Redis client (`[redis]`), which the cluster-scope circuit breakers' sync
    /// uses too.
    pub fn redis(&self) -> Option<&RedisClient> {
        self.redis.as_ref()
    }

    /// Marks Redis unreachable (logging once per outage) and schedules the next probe.
    fn redis_failed(&self, err: &crate::redis::RedisError) {
        self.metrics.redis_errors.inc();
        let Some(r) = &self.shared.redis else { return };
        r.next_probe
            .store(now_ns() + PROBE_INTERVAL_NS, Ordering::Release);
        if !r.down.swap(true, Ordering::AcqRel) {
            eprintln!(
                "coregate: redis {} unreachable ({err}); cluster limits use each node's local share",
                r.cfg.addr
            );
        }
        self.metrics.redis_fallback.set(1);
    }

    /// Whether a cluster-scoped call should skip Redis (it is down and not due for a probe).
    fn use_fallback(&self) -> bool {
        self.shared.redis_down()
    }

    /// Remembers cluster quota usage counted locally during an outage (for reconciliation).
    fn pend(&self, redis_key: &[u8], units: u64, ttl_s: u64) {
        let mut p = self.pending.borrow_mut();
        if let Some(v) = p.get_mut(redis_key) {
            v.0 += units;
        } else if p.len() < MAX_PENDING {
            p.insert(redis_key.to_vec(), (units, ttl_s));
        }
    }

    /// Time a worker's sweep waits between rounds.
    pub fn sweep_interval() -> Duration {
        Duration::from_millis(100)
    }
}
