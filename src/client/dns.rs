//! Host name resolution off the workers. The system resolver (`getaddrinfo` behind
//! `ToSocketAddrs`) blocks its thread for as long as DNS takes; on a worker that would stall every
//! connection of the core, so it runs only on one process-wide helper thread (`coregate-dns`), which
//! publishes its answers. Callers on any monoio runtime read the published table without a lock and,
//! on a miss, await the helper's next answer ([`Epoch`]) without blocking their thread.
//!
//! Owns: [`Resolver`] (the table, the helper thread and its request channel), [`resolver`] (the
//! process-wide instance, started on first use) and [`DnsError`].
//!
//! Flow of [`Resolver::lookup`]: an IP literal is answered at once -> a fresh answer in the table is
//! returned -> a stale address (older than [`TTL`]) is returned too, and the helper is asked once to
//! refresh it (stale-while-revalidate: a slow DNS server never delays a request that had an answer)
//! -> a miss, or a failure older than [`NEGATIVE_TTL`], asks the helper and waits for its answer up
//! to the caller's deadline. The helper drains its queue, resolves each name once (asks that a newer
//! answer already covers are skipped), publishes the table, advances the epoch.
//!
//! Errors: a name that does not resolve is remembered as a failure for [`NEGATIVE_TTL`], so a dead
//! name costs one lookup per interval, not one per request; a refresh that fails keeps serving the
//! last good address (stale-if-error) and tries again after another [`TTL`].
//!
//! Performance: a hit is an `ArcSwap` load and a scan of a few entries (the hosts of JWKS and
//! introspection URLs); the table is bounded by [`MAX_ENTRIES`].

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, Sender};

use crate::runtime::epoch::Epoch;

/// How long an answer is served without asking again. `ToSocketAddrs` does not tell the record's
/// TTL; half a minute follows a moved name quickly while costing one lookup per host per interval.
pub const TTL: Duration = Duration::from_secs(30);
/// How long a failed lookup is remembered before a caller may ask again.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Most names kept; the oldest answer is dropped beyond it (configs name a handful of hosts).
pub const MAX_ENTRIES: usize = 256;

/// The blocking resolve function the helper runs (the system resolver, or a test's).
pub type ResolveFn = Box<dyn Fn(&str, u16) -> Result<SocketAddr, String> + Send>;

/// Why a lookup gave no address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// The resolver answered with an error (or no address).
    Failed(String),
    /// No answer before the caller's deadline.
    Timeout,
}

struct Entry {
    host: String,
    port: u16,
    result: Result<SocketAddr, String>,
    /// When this answer was obtained.
    at: Instant,
    /// A refresh of this (stale) answer has been asked for.
    refreshing: AtomicBool,
}

struct Published {
    table: ArcSwap<Vec<Arc<Entry>>>,
    epoch: Epoch,
}

impl Published {
    fn find(&self, host: &str, port: u16) -> Option<Arc<Entry>> {
        self.table
            .load()
            .iter()
            .find(|e| e.port == port && e.host == host)
            .cloned()
    }
}

/// One ask: resolve `host:port`, unless an answer newer than `asked` exists.
struct Ask {
    host: String,
    port: u16,
    asked: Instant,
}

/// The published answers plus the channel to the helper thread (which ends when this is dropped).
pub struct Resolver {
    shared: Arc<Published>,
    tx: Sender<Ask>,
}

/// The process-wide resolver backed by the system resolver; `None` if its thread could not start.
pub fn resolver() -> Option<&'static Resolver> {
    static GLOBAL: OnceLock<Option<Resolver>> = OnceLock::new();
    GLOBAL
        .get_or_init(|| match Resolver::start(Box::new(system_resolve)) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("coregate: cannot start the DNS helper thread: {e}");
                None
            }
        })
        .as_ref()
}

/// The system resolver's first address for `host:port`. Blocking: runs on the helper thread only.
fn system_resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    // the one place allowed to block on DNS: the coregate-dns helper thread, never a worker
    #[allow(clippy::disallowed_methods)]
    let addrs = (host, port).to_socket_addrs();
    match addrs {
        Ok(mut a) => a.next().ok_or_else(|| format!("{host}: no addresses")),
        Err(e) => Err(format!("{host}: {e}")),
    }
}

impl Resolver {
    /// Starts a resolver whose helper thread runs `resolve`.
    pub fn start(resolve: ResolveFn) -> std::io::Result<Resolver> {
        let shared = Arc::new(Published {
            table: ArcSwap::from_pointee(Vec::new()),
            epoch: Epoch::new(),
        });
        let (tx, rx) = crossbeam_channel::unbounded();
        let s = shared.clone();
        std::thread::Builder::new()
            .name("coregate-dns".into())
            .spawn(move || helper(&s, &rx, &*resolve))?;
        Ok(Resolver { shared, tx })
    }

    fn ask(&self, host: &str, port: u16) {
        let _ = self.tx.send(Ask {
            host: host.to_owned(),
            port,
            asked: Instant::now(),
        });
    }

    /// The address of `host:port`, waiting for the helper at most until `deadline`.
    pub async fn lookup(
        &self,
        host: &str,
        port: u16,
        deadline: monoio::time::Instant,
    ) -> Result<SocketAddr, DnsError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let mut asked: Option<Instant> = None;
        loop {
            let seen = self.shared.epoch.get();
            let now = Instant::now();
            if let Some(e) = self.shared.find(host, port) {
                let answered_since_ask = asked.is_some_and(|a| e.at >= a);
                match &e.result {
                    Ok(addr) => {
                        if now >= e.at + TTL && !e.refreshing.swap(true, Ordering::Relaxed) {
                            self.ask(host, port);
                        }
                        return Ok(*addr);
                    }
                    Err(m) if answered_since_ask || now < e.at + NEGATIVE_TTL => {
                        return Err(DnsError::Failed(m.clone()))
                    }
                    Err(_) => {}
                }
            }
            if asked.is_none() {
                asked = Some(now);
                self.ask(host, port);
            }
            let wait = self.shared.epoch.changed(seen);
            if monoio::time::timeout_at(deadline, wait).await.is_err() {
                return Err(DnsError::Timeout);
            }
        }
    }
}

/// The helper thread: resolves what is asked, publishes, wakes the waiters. Ends when the
/// [`Resolver`] (the only sender) is dropped.
fn helper(
    shared: &Published,
    rx: &Receiver<Ask>,
    resolve: &dyn Fn(&str, u16) -> Result<SocketAddr, String>,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        for ask in batch {
            let old = shared.find(&ask.host, ask.port);
            if old.as_ref().is_some_and(|e| e.at >= ask.asked) {
                continue; // answered since it was asked (a duplicate ask)
            }
            let at = Instant::now();
            let result = match (resolve(&ask.host, ask.port), &old) {
                (Err(m), Some(prev)) if prev.result.is_ok() => {
                    eprintln!("coregate: dns {}: {m}; keeping the last address", ask.host);
                    prev.result.clone()
                }
                (r, _) => r,
            };
            let entry = Arc::new(Entry {
                host: ask.host,
                port: ask.port,
                result,
                at,
                refreshing: AtomicBool::new(false),
            });
            let mut table: Vec<Arc<Entry>> = shared
                .table
                .load()
                .iter()
                .filter(|e| !(e.port == entry.port && e.host == entry.host))
                .cloned()
                .collect();
            if table.len() >= MAX_ENTRIES {
                if let Some(oldest) = (0..table.len()).min_by_key(|&i| table[i].at) {
                    table.swap_remove(oldest);
                }
            }
            table.push(entry);
            shared.table.store(Arc::new(table));
            shared.epoch.advance();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::sync::atomic::AtomicUsize;

    fn rt() -> monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>> {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
    }

    fn soon() -> monoio::time::Instant {
        monoio::time::Instant::now() + Duration::from_secs(10)
    }

    #[test]
    fn answers_come_from_the_helper_and_are_cached() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let r = Resolver::start(Box::new(move |host, port| {
            c.fetch_add(1, Ordering::SeqCst);
            match host {
                "idp.test" => Ok(SocketAddr::from((Ipv4Addr::new(10, 0, 0, 7), port))),
                _ => Err(format!("{host}: not found")),
            }
        }))
        .unwrap();
        rt().block_on(async {
            let a = r.lookup("idp.test", 8080, soon()).await.unwrap();
            assert_eq!(a, "10.0.0.7:8080".parse().unwrap());
            assert_eq!(r.lookup("idp.test", 8080, soon()).await.unwrap(), a);
            assert_eq!(calls.load(Ordering::SeqCst), 1, "second lookup is a hit");
            // IP literals never reach the helper
            let lit = r.lookup("127.0.0.1", 9, soon()).await.unwrap();
            assert_eq!(lit, "127.0.0.1:9".parse().unwrap());
            let v6 = r.lookup("::1", 9, soon()).await.unwrap();
            assert_eq!(v6, "[::1]:9".parse().unwrap());
            // failures are reported, and remembered for NEGATIVE_TTL
            let e = r.lookup("nope.test", 80, soon()).await.unwrap_err();
            assert_eq!(e, DnsError::Failed("nope.test: not found".into()));
            assert!(r.lookup("nope.test", 80, soon()).await.is_err());
            assert_eq!(calls.load(Ordering::SeqCst), 2);
        });
    }

    #[test]
    fn waiting_for_an_answer_does_not_block_the_thread() {
        // The resolver answers only after a task on the caller's runtime has run while the lookup
        // was pending: a lookup that blocked its thread would never let that task run, and the
        // resolver would give up (after 10 s) with an error.
        static TICKED: AtomicBool = AtomicBool::new(false);
        let r = Resolver::start(Box::new(|_host, port| {
            let until = Instant::now() + Duration::from_secs(10);
            while !TICKED.load(Ordering::SeqCst) {
                if Instant::now() > until {
                    return Err("the caller's thread was blocked".into());
                }
                std::thread::yield_now();
            }
            Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        }))
        .unwrap();
        rt().block_on(async {
            let ticker = monoio::spawn(async {
                monoio::time::sleep(Duration::from_millis(1)).await;
                TICKED.store(true, Ordering::SeqCst);
            });
            let a = r.lookup("slow.test", 1, soon()).await;
            assert_eq!(a, Ok("127.0.0.1:1".parse().unwrap()));
            ticker.await;
        });
    }

    #[test]
    fn a_lookup_gives_up_at_its_deadline() {
        // the resolver answers only once the test has its verdict (10 s at most)
        let (done, wait) = crossbeam_channel::bounded::<()>(1);
        let r = Resolver::start(Box::new(move |_h, _p| {
            let _ = wait.recv_timeout(Duration::from_secs(10));
            Err("late".into())
        }))
        .unwrap();
        rt().block_on(async {
            let deadline = monoio::time::Instant::now() + Duration::from_millis(20);
            assert_eq!(
                r.lookup("late.test", 1, deadline).await,
                Err(DnsError::Timeout)
            );
        });
        let _ = done.send(());
    }

    #[test]
    fn system_resolver_on_the_helper() {
        let r = resolver().expect("helper thread");
        rt().block_on(async {
            let a = r.lookup("localhost", 80, soon()).await.unwrap();
            assert!(a.ip().is_loopback(), "{a}");
        });
    }
}
