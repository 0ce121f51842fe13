//! DNS service discovery: upstream endpoint names re-resolved on their TTL, off the workers.
//!
//! Owns: the `coregate-discovery` thread ([`Discovery`]), what it reports ([`Found`]) and its
//! counters ([`DnsStats`]); the resolver and its transport live in [`resolver`] and [`wire`].
//!
//! Flow:
//! ```text
//! config loads: config::dns resolves every name once (resolver::AtLoad) -> endpoints
//! controller -> Discovery::update(cfg) after every switch: the thread (re)plans one watch per
//!   upstream with `discovery` specs; a watch whose specs did not change keeps its schedule
//! watch due -> resolve each spec (blocking, here only) -> merged, sorted set
//!   failure of any spec -> keep the last good set, count it, retry after [dns] min_ttl
//!   same set as the generation's endpoints -> nothing to do
//!   changed -> Found { upstream, specs, endpoints } to the controller, which builds the next
//!   generation with that upstream's endpoints replaced and switches workers lock-free (the
//!   reload path: pools and health of endpoints that stay are adopted)
//! next due = now + the answers' smallest TTL clamped to [min_ttl, max_ttl]
//! ```
//! One thread per process resolves for every worker; workers only ever see a new generation.
//! The thread ends when the controller drops its [`Discovery`].

pub mod resolv_conf;
pub mod resolver;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::config::dns::EndpointSpec;
use crate::config::model::Endpoint;
use crate::config::Config;
use resolver::Resolver;

/// A changed endpoint set, for the controller.
#[derive(Debug, Clone)]
pub struct Found {
    pub upstream: String,
    /// The specs resolved: the controller applies the set only while the upstream still has them.
    pub specs: Vec<EndpointSpec>,
    pub endpoints: Vec<Endpoint>,
}

/// One upstream's resolution counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamDns {
    pub upstream: String,
    /// Resolutions that found the set in use.
    pub unchanged: u64,
    /// Resolutions that found a new set.
    pub changed: u64,
    /// Resolutions that failed (the last good set stayed).
    pub failed: u64,
    /// Addresses in the last good set.
    pub endpoints: usize,
    /// The last failure's message, until a resolution succeeds.
    pub last_error: Option<String>,
}

/// What admin metrics read: one entry per upstream ever discovered, by name.
#[derive(Default)]
pub struct DnsStats(ArcSwap<Vec<UpstreamDns>>);

impl DnsStats {
    pub fn snapshot(&self) -> Arc<Vec<UpstreamDns>> {
        self.0.load_full()
    }
}

/// The discovery thread's handle: dropping it ends the thread.
pub struct Discovery {
    tx: Sender<Arc<Config>>,
    stats: Arc<DnsStats>,
}

impl Discovery {
    /// Starts the thread for `cfg`; changed sets go to `found`.
    pub fn start(cfg: Arc<Config>, found: Sender<Found>) -> Result<Discovery, String> {
        let (tx, rx) = crossbeam_channel::unbounded();
        // the first schedule and counters before the thread runs: a scrape right after start
        // already shows every discovered upstream
        let watches = plan(&cfg, Vec::new());
        let mut counts: BTreeMap<String, UpstreamDns> = BTreeMap::new();
        count_new(&cfg, &watches, &mut counts);
        let stats = Arc::new(DnsStats(ArcSwap::from_pointee(
            counts.values().cloned().collect(),
        )));
        let thread_stats = stats.clone();
        std::thread::Builder::new()
            .name("coregate-discovery".into())
            .spawn(move || run(cfg, watches, counts, rx, found, &thread_stats))
            .map_err(|e| format!("cannot spawn the discovery thread: {e}"))?;
        Ok(Discovery { tx, stats })
    }

    /// The generation now in use (after a reload or an applied [`Found`]).
    pub fn update(&self, cfg: Arc<Config>) {
        let _ = self.tx.send(cfg);
    }

    pub fn stats(&self) -> Arc<DnsStats> {
        self.stats.clone()
    }
}

/// One upstream's schedule.
struct Watch {
    upstream: String,
    specs: Vec<EndpointSpec>,
    due: Instant,
}

/// Watches for `cfg`: kept where the specs are the same, else due when the answers from the
/// config's load run out.
fn plan(cfg: &Config, old: Vec<Watch>) -> Vec<Watch> {
    let now = Instant::now();
    (cfg.upstreams.iter())
        .filter_map(|u| {
            let specs = u.discovery.as_ref()?;
            if let Some(w) = old
                .iter()
                .find(|w| w.upstream == u.name && w.specs == *specs)
            {
                return Some(Watch {
                    upstream: w.upstream.clone(),
                    specs: specs.clone(),
                    due: w.due,
                });
            }
            let due = (specs.iter())
                .filter_map(|s| resolver::recall(&cfg.dns, s))
                .map(|r| r.at + cfg.dns.keep(r.answer.ttl))
                .min()
                .unwrap_or(now + cfg.dns.min_ttl);
            Some(Watch {
                upstream: u.name.clone(),
                specs: specs.clone(),
                due,
            })
        })
        .collect()
}

/// Adds a counter entry for each watched upstream not seen before (its set: the one loaded).
fn count_new(cfg: &Config, watches: &[Watch], counts: &mut BTreeMap<String, UpstreamDns>) {
    for w in watches {
        counts
            .entry(w.upstream.clone())
            .or_insert_with(|| UpstreamDns {
                upstream: w.upstream.clone(),
                endpoints: (cfg.upstreams.iter())
                    .find(|u| u.name == w.upstream)
                    .map_or(0, |u| u.endpoints.len()),
                ..UpstreamDns::default()
            });
    }
}

fn run(
    mut cfg: Arc<Config>,
    mut watches: Vec<Watch>,
    mut counts: BTreeMap<String, UpstreamDns>,
    rx: Receiver<Arc<Config>>,
    found: Sender<Found>,
    stats: &DnsStats,
) {
    loop {
        let next = watches.iter().map(|w| w.due).min();
        let msg = match next {
            Some(t) => rx.recv_deadline(t),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match msg {
            Ok(c) => {
                watches = plan(&c, watches);
                // an upstream no longer discovered (removed, or "never" now) leaves the metrics
                counts.retain(|name, _| watches.iter().any(|w| w.upstream == *name));
                count_new(&c, &watches, &mut counts);
                stats.0.store(Arc::new(counts.values().cloned().collect()));
                cfg = c;
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
        // read anew each round: the host's resolv.conf may have changed (DHCP, a new pod DNS)
        let resolver = Resolver::new(&cfg.dns);
        let now = Instant::now();
        for w in watches.iter_mut().filter(|w| w.due <= now) {
            let c = counts.entry(w.upstream.clone()).or_default();
            w.due = match refresh(&cfg, &resolver, w, c) {
                Some((f, ttl)) => {
                    if let Some(f) = f {
                        let _ = found.send(f);
                    }
                    Instant::now() + cfg.dns.keep(ttl)
                }
                None => Instant::now() + cfg.dns.min_ttl,
            };
        }
        stats.0.store(Arc::new(counts.values().cloned().collect()));
    }
}

/// Resolves one watch: `None` on failure (counted, logged), else the smallest TTL and, when the
/// set differs from the generation's, what to send the controller.
fn refresh(
    cfg: &Config,
    resolver: &Resolver,
    w: &Watch,
    c: &mut UpstreamDns,
) -> Option<(Option<Found>, u32)> {
    let mut endpoints = Vec::new();
    let mut ttl = u32::MAX;
    for spec in &w.specs {
        match resolver.resolve(spec) {
            Ok(a) => {
                resolver::remember(&cfg.dns, spec, &a);
                ttl = ttl.min(a.ttl);
                resolver::merge(&mut endpoints, a.endpoints);
            }
            Err(e) => {
                c.failed += 1;
                if c.last_error.as_deref() != Some(e.as_str()) {
                    eprintln!(
                        "coregate: dns: upstream {}: {e}; keeping its {} endpoint(s)",
                        w.upstream, c.endpoints
                    );
                }
                c.last_error = Some(e);
                return None;
            }
        }
    }
    c.last_error = None;
    c.endpoints = endpoints.len();
    let current = cfg.upstreams.iter().find(|u| u.name == w.upstream)?;
    if current.endpoints == endpoints {
        c.unchanged += 1;
        return Some((None, ttl));
    }
    c.changed += 1;
    let f = Found {
        upstream: w.upstream.clone(),
        specs: w.specs.clone(),
        endpoints,
    };
    Some((Some(f), ttl))
}
