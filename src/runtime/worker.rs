//! One worker: a monoio runtime pinned to one core, owning everything its requests touch.
//!
//! Owns: [`Generation`], one config *generation* as this worker sees it (compiled router, upstream
//! balancers and pools, auth and limiter state, counters), built on the worker's own thread from a
//! [`Shared`] generation, and [`Current`], the slot holding the generation new requests use. A
//! reload builds the next `Generation` from the previous one (upstreams whose config did not change
//! are reused whole, pools of changed ones adopt idle connections to remaining endpoints, limiter
//! and auth state carry over when their config is unchanged, counters are looked up by name) and
//! swaps it into the slot: requests already running keep their `Rc` to the old generation and
//! finish on it; when the last one ends the old generation is dropped, closing the pools of removed
//! upstreams. Worker-lifetime parts (drain signal, connection count, id generators, statistics)
//! are shared between generations by `Rc`.
//!
//! Also the worker's main future: accept loops (one per SO_REUSEPORT listener), the control task
//! (drain, snapshot and reload messages), the idle-pool reaper, the limiter sweep, the access-log
//! flush, and the drain sequence. Everything is `Rc`/`Cell`/`RefCell`: no lock is taken while a
//! request is served.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpListener;

use super::control::{Control, ControlRx};
use super::drain::Drain;
use super::reload::Shared;
use super::spread::{Adopted, Load, Spread};
use crate::accesslog::LogBuf;
use crate::auth::AuthRt;
use crate::config::Config;
use crate::http::head::HeadLimits;
use crate::http::rewrite::RequestIdGen;
use crate::metrics::{RouteStats, WorkerStats};
use crate::otlp::SpanBuf;
use crate::proxy::pipeline::RouteChain;
use crate::ratelimit::LimitsRt;
use crate::router::Router;
use crate::trace::SpanIds;
use crate::upstream::UpstreamRt;

/// How often idle upstream connections past their idle timeout are closed.
const REAP_INTERVAL: Duration = Duration::from_secs(1);
/// How often the drain checks whether the last connection has finished.
const DRAIN_POLL: Duration = Duration::from_millis(5);
/// Back-off after accept fails for lack of file descriptors, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// One config generation as one worker runs it.
pub struct Generation {
    pub id: usize,
    pub shared: Arc<Shared>,
    pub cfg: Arc<Config>,
    pub router: Router,
    /// Per route (config order): its filter chain and target.
    pub chains: Vec<RouteChain>,
    pub upstreams: Vec<Rc<UpstreamRt>>,
    /// Per route (config order): its counters.
    pub routes: Vec<Rc<RouteStats>>,
    pub limits: HeadLimits,
    /// Auth policies: verdict caches, token-store clients.
    pub auth: Rc<AuthRt>,
    /// Rate limits and quotas: this core's leases, Redis client.
    pub ratelimit: Rc<LimitsRt>,
    /// Triggered when a reload replaces this generation: long-lived connections that took their
    /// settings from it (HTTP/2) say GOAWAY so their clients reconnect onto the new one.
    pub retired: Rc<Drain>,
    /// This worker's access-log buffer (`log.enabled()`: requests copy what their line needs).
    pub log: Rc<LogBuf>,
    /// This worker's OTLP span buffer (`spans.enabled()`: `[tracing]` is on).
    pub spans: Rc<SpanBuf>,
    // worker-lifetime parts, shared by every generation
    pub stats: Rc<WorkerStats>,
    pub drain: Rc<Drain>,
    pub request_ids: Rc<RefCell<RequestIdGen>>,
    pub span_ids: Rc<RefCell<SpanIds>>,
    /// Open client connections on this worker.
    pub open: Rc<Cell<usize>>,
    /// The response cache (`crate::cache`), kept across reloads.
    pub cache: Rc<crate::cache::CacheRt>,
    auth_log: Rc<Cell<Option<std::time::Instant>>>,
}

impl Generation {
    /// The first generation of worker `id`.
    pub fn new(id: usize, shared: Arc<Shared>) -> Self {
        let stats = Rc::new(WorkerStats::default());
        let upstreams = shared
            .cfg
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let health = shared.health.get(i);
                Rc::new(UpstreamRt::new(u, id, stats.upstream(&u.name), health))
            })
            .collect();
        Generation::build(
            id,
            shared.clone(),
            upstreams,
            Rc::new(AuthRt::new(shared.auth.clone())),
            Rc::new(LimitsRt::new(
                shared.limits.clone(),
                limit_metrics(&stats, &shared),
            )),
            (
                Rc::new(LogBuf::new(shared.log.clone())),
                Rc::new(SpanBuf::new(shared.otlp.clone())),
            ),
            WorkerParts {
                stats,
                drain: Rc::default(),
                request_ids: Rc::new(RefCell::new(RequestIdGen::new(id))),
                span_ids: Rc::default(),
                open: Rc::default(),
                cache: Rc::default(),
                auth_log: Rc::default(),
            },
        )
    }

    /// The next generation: see the module doc for what carries over.
    pub fn next(&self, shared: Arc<Shared>) -> Self {
        let stats = &self.stats;
        let upstreams = shared
            .cfg
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let prev = self.upstreams.iter().find(|p| p.name == u.name);
                let health = shared.health.get(i);
                UpstreamRt::reloaded(prev, u, self.id, stats.upstream(&u.name), health)
            })
            .collect();
        for gone in (self.upstreams.iter())
            .filter(|p| !shared.cfg.upstreams.iter().any(|u| u.name == p.name))
        {
            gone.breaker_left_behind();
        }
        let auth = if Arc::ptr_eq(&self.shared.auth, &shared.auth) {
            self.auth.clone()
        } else {
            Rc::new(AuthRt::new(shared.auth.clone()))
        };
        let ratelimit = if Arc::ptr_eq(self.ratelimit.shared(), &shared.limits) {
            self.ratelimit.clone()
        } else {
            Rc::new(LimitsRt::new(
                shared.limits.clone(),
                limit_metrics(stats, &shared),
            ))
        };
        let log = if Arc::ptr_eq(&self.shared.log, &shared.log) {
            self.log.clone()
        } else {
            self.log.flush();
            Rc::new(LogBuf::new(shared.log.clone()))
        };
        let spans = if Arc::ptr_eq(&self.shared.otlp, &shared.otlp) {
            self.spans.clone()
        } else {
            self.spans.flush();
            Rc::new(SpanBuf::new(shared.otlp.clone()))
        };
        Generation::build(
            self.id,
            shared,
            upstreams,
            auth,
            ratelimit,
            (log, spans),
            WorkerParts {
                stats: self.stats.clone(),
                drain: self.drain.clone(),
                request_ids: self.request_ids.clone(),
                span_ids: self.span_ids.clone(),
                open: self.open.clone(),
                cache: self.cache.clone(),
                auth_log: self.auth_log.clone(),
            },
        )
    }

    fn build(
        id: usize,
        shared: Arc<Shared>,
        upstreams: Vec<Rc<UpstreamRt>>,
        auth: Rc<AuthRt>,
        ratelimit: Rc<LimitsRt>,
        (log, spans): (Rc<LogBuf>, Rc<SpanBuf>),
        w: WorkerParts,
    ) -> Self {
        let cfg = shared.cfg.clone();
        let s = &cfg.server;
        let evicted = w
            .cache
            .set_budget(usize::try_from(s.cache_memory).unwrap_or(usize::MAX));
        w.stats.cache_evictions.add(evicted as u64);
        Generation {
            id,
            router: Router::new(&cfg.routes),
            chains: cfg
                .routes
                .iter()
                .map(|r| RouteChain::new(r, ratelimit.applies(r)))
                .collect(),
            routes: cfg.routes.iter().map(|r| w.stats.route(&r.name)).collect(),
            upstreams,
            limits: HeadLimits {
                max_request_line: s.max_request_line,
                max_header_bytes: s.max_header_bytes,
                max_headers: s.max_headers,
            },
            auth,
            ratelimit,
            retired: Rc::default(),
            log,
            spans,
            stats: w.stats,
            drain: w.drain,
            request_ids: w.request_ids,
            span_ids: w.span_ids,
            open: w.open,
            cache: w.cache,
            auth_log: w.auth_log,
            shared,
            cfg,
        }
    }

    /// Whether finished requests go anywhere beyond the counters (the access log or span export):
    /// only then do requests copy what a log line or a span needs.
    pub fn records_requests(&self) -> bool {
        self.log.enabled() || self.spans.enabled()
    }

    /// Logs that the auth backend failed, at most once per second per worker (it may fail for
    /// every request while it is down).
    pub fn auth_unavailable(&self, why: &str) {
        let now = std::time::Instant::now();
        let last = self.auth_log.get();
        if last.is_none_or(|l| now.duration_since(l) >= Duration::from_secs(1)) {
            self.auth_log.set(Some(now));
            eprintln!(
                "coregate: worker {}: auth backend unavailable: {why}",
                self.id
            );
        }
    }
}

/// The parts of a worker that live as long as the worker.
struct WorkerParts {
    stats: Rc<WorkerStats>,
    drain: Rc<Drain>,
    request_ids: Rc<RefCell<RequestIdGen>>,
    span_ids: Rc<RefCell<SpanIds>>,
    open: Rc<Cell<usize>>,
    cache: Rc<crate::cache::CacheRt>,
    auth_log: Rc<Cell<Option<std::time::Instant>>>,
}

fn limit_metrics(stats: &WorkerStats, shared: &Shared) -> crate::metrics::LimitMetrics {
    let rates: Vec<&str> = shared
        .cfg
        .rate_limits
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    let quotas: Vec<&str> = shared.cfg.quotas.iter().map(|q| q.name.as_str()).collect();
    stats.limit_metrics(&rates, &quotas)
}

/// The generation new requests on this worker use.
pub struct Current(RefCell<Rc<Generation>>);

impl Current {
    pub fn new(ctx: Generation) -> Rc<Current> {
        Rc::new(Current(RefCell::new(Rc::new(ctx))))
    }

    #[inline]
    pub fn get(&self) -> Rc<Generation> {
        self.0.borrow().clone()
    }

    /// Builds the next generation from the current one and switches to it.
    fn switch(&self, shared: Arc<Shared>) {
        let next = Rc::new(self.get().next(shared));
        let old = std::mem::replace(&mut *self.0.borrow_mut(), next);
        old.retired.trigger();
    }
}

/// Shared with the main thread: how many workers are accepting (for /readyz).
#[derive(Default)]
pub struct Readiness {
    pub accepting: AtomicUsize,
    pub draining: std::sync::atomic::AtomicBool,
}

/// A worker's channels: its control channel (main, control and admin threads), its hand-off
/// inbox (connections other workers pass it) and the process-wide connection spread.
pub struct Channels {
    pub control: ControlRx,
    pub inbox: ControlRx,
    pub spread: Arc<Spread>,
}

/// The worker's main future: runs until drained.
pub async fn run(
    cur: Rc<Current>,
    listeners: Vec<std::net::TcpListener>,
    chans: Channels,
    ready: Arc<Readiness>,
    started: crossbeam_channel::Sender<Result<(), String>>,
) {
    let Channels {
        control,
        inbox,
        spread,
    } = chans;
    // worker-lifetime parts only: holding a generation here would keep it alive forever
    let (id, drain, open) = {
        let g = cur.get();
        (g.id, g.drain.clone(), g.open.clone())
    };
    let plain = cur.get().cfg.server.listen.len();
    for (i, l) in listeners.into_iter().enumerate() {
        // past the `[server] listen` ones come the `[[listener]]` entries, in config order
        let options = i.checked_sub(plain);
        match TcpListener::from_std(l) {
            Ok(l) => {
                monoio::spawn(accept_loop(cur.clone(), l, options, spread.clone()));
            }
            Err(e) => {
                let _ = started.send(Err(format!("worker {id}: listener: {e}")));
                return;
            }
        }
    }
    ready.accepting.fetch_add(1, Ordering::SeqCst);
    let _ = started.send(Ok(()));
    let reaper = cur.clone();
    monoio::spawn(async move {
        loop {
            monoio::time::sleep(REAP_INTERVAL).await;
            let now = std::time::Instant::now();
            for up in &reaper.get().upstreams {
                up.reap(now);
            }
        }
    });
    let breakers = cur.clone();
    monoio::spawn(async move {
        loop {
            monoio::time::sleep(crate::upstream::cluster_breaker::SYNC_INTERVAL).await;
            let g = breakers.get();
            if g.cfg.redis.is_some() {
                crate::upstream::cluster_breaker::sync(&g).await;
            }
        }
    });
    let sweeper = cur.clone();
    monoio::spawn(async move {
        loop {
            monoio::time::sleep(LimitsRt::sweep_interval()).await;
            let g = sweeper.get();
            if !g.cfg.rate_limits.is_empty() || !g.cfg.quotas.is_empty() {
                g.ratelimit.sweep().await;
            }
        }
    });
    let poller = cur.clone();
    monoio::spawn(async move { crate::cache::shared::follow_purges(poller).await });
    let flusher = cur.clone();
    monoio::spawn(async move {
        loop {
            let every = flusher.get().cfg.access_log.flush_interval;
            monoio::time::sleep(every).await;
            flusher.get().log.flush();
            flusher.get().spans.flush();
        }
    });
    let adopter = cur.clone();
    monoio::spawn(async move {
        while let Some(msg) = inbox.recv().await {
            if let Control::Adopt(a) = msg {
                adopt(&adopter, a);
            }
        }
    });
    let ctl = cur.clone();
    monoio::spawn(async move {
        while let Some(msg) = control.recv().await {
            match msg {
                Control::Drain => ctl.get().drain.trigger(),
                Control::Snapshot(reply) => {
                    let g = ctl.get();
                    let _ = reply.send(g.stats.snapshot(g.id));
                }
                Control::Reload(shared, ack) => {
                    ctl.switch(shared);
                    let _ = ack.send(ctl.get().id);
                }
                Control::Purge(what, reply) => {
                    let g = ctl.get();
                    let n = g.cache.purge(&what);
                    if g.id == 0 {
                        // one worker carries the purge to the shared tier and its log
                        crate::cache::shared::purge_in_background(&g, what);
                    }
                    if let Some(st) = g.cache.store.borrow().as_ref() {
                        g.stats.cache_bytes.set(st.bytes() as i64);
                        g.stats.cache_entries.set(st.len() as i64);
                    }
                    let _ = reply.send(n);
                }
                Control::Adopt(a) => adopt(&ctl, a),
            }
        }
        // the main thread is gone: drain too
        ctl.get().drain.trigger();
    });
    drain.wait().await;
    ready.accepting.fetch_sub(1, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + cur.get().cfg.server.drain_timeout;
    while open.get() > 0 && std::time::Instant::now() < deadline {
        monoio::time::sleep(DRAIN_POLL).await;
    }
    cur.get().log.flush();
    cur.get().spans.flush();
}

/// Runs a connection task so that a bug (a panic) ends that connection only, not the worker and
/// every other connection on it: monoio does not catch panics in tasks. A future type of its own
/// rather than an `async fn`: an async fn keeps its argument and the pinned local apart in its
/// state, which doubled every connection task's size (20.8 KB instead of 10.4 KB, measured with
/// `-Zprint-type-sizes`).
fn contained<F: std::future::Future<Output = ()>>(fut: F) -> Contained<F> {
    Contained(fut)
}

struct Contained<F>(F);

impl<F: std::future::Future<Output = ()>> std::future::Future for Contained<F> {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        // SAFETY: structural pinning of the only field: it is never moved out of the pinned
        // `Contained`, nor handed out other than pinned.
        let mut fut = unsafe { self.map_unchecked_mut(|c| &mut c.0) };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(p) => p,
            Err(_) => {
                eprintln!(
                    "coregate: a connection task panicked (a bug); the connection was closed"
                );
                std::task::Poll::Ready(())
            }
        }
    }
}

/// Serves a connection another worker accepted and handed to this one (`spread.rs`).
fn adopt(cur: &Rc<Current>, a: Adopted) {
    let Ok(stream) = monoio::net::TcpStream::from_std(a.stream) else {
        return;
    };
    monoio::spawn(contained(serve_accepted(
        cur.clone(),
        stream,
        a.peer,
        a.listener,
        a.load,
    )));
}

/// Accepts connections until the drain. `options`: index of the `[[listener]]` entry this socket
/// serves (None for `[server] listen`); a TLS listener hands each connection to [`serve_tls`].
/// A connection this worker should not take (it is ahead of the least-loaded worker) goes to that
/// worker (`spread.rs`).
async fn accept_loop(
    cur: Rc<Current>,
    listener: TcpListener,
    options: Option<usize>,
    spread: Arc<Spread>,
) {
    let drain = cur.get().drain.clone();
    let me = cur.get().id;
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => Some(r),
            _ = drain.wait() => None,
        };
        match accepted {
            None => return,
            Some(Ok((stream, peer))) => {
                if let Some(to) = spread.target(me) {
                    use std::os::fd::{FromRawFd, IntoRawFd};
                    // SAFETY: the fd was just accepted and is owned by `stream` alone, which
                    // gives it up here (deregistered from this worker's driver, not closed)
                    let stream = unsafe { std::net::TcpStream::from_raw_fd(stream.into_raw_fd()) };
                    spread.hand_off(to, stream, peer, options);
                    cur.get().stats.handed_off.inc();
                    continue;
                }
                let load = spread.enter(me);
                monoio::spawn(contained(serve_accepted(
                    cur.clone(),
                    stream,
                    peer,
                    options,
                    load,
                )));
            }
            Some(Err(e)) => {
                if e.raw_os_error() == Some(libc::EMFILE) || e.raw_os_error() == Some(libc::ENFILE)
                {
                    monoio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }
}

/// Serves an accepted connection: its PROXY protocol header first on listeners that take one
/// (`net/proxy_protocol.rs`: the client it names becomes the peer; a missing or malformed header
/// closes the connection, unanswered), then TLS or plain HTTP. Counted in this worker's load for
/// its whole life (`_load`).
async fn serve_accepted(
    cur: Rc<Current>,
    stream: monoio::net::TcpStream,
    mut peer: std::net::SocketAddr,
    listener: Option<usize>,
    _load: Load,
) {
    let (tls, proxied) = {
        let gen = cur.get();
        let tls = listener.is_some_and(|i| gen.cfg.listeners[i].tls.is_some());
        let proxied = match listener {
            Some(i) => gen.cfg.listeners[i].proxy_protocol,
            None => gen.cfg.server.proxy_protocol,
        };
        (tls, proxied)
    };
    if proxied {
        let deadline = monoio::time::Instant::now() + cur.get().cfg.server.header_timeout;
        match crate::net::proxy_protocol::read(&stream, deadline).await {
            Ok(crate::net::proxy_protocol::Header::Proxied(addr)) => peer = addr,
            Ok(crate::net::proxy_protocol::Header::Local) => {}
            Err(_) => return,
        }
    }
    match (tls, listener) {
        (true, Some(i)) => serve_tls(cur, stream, peer, i).await,
        _ => crate::proxy::serve(cur, crate::net::Stream::Plain(stream), peer, listener).await,
    }
}

/// Answers a client that speaks plain HTTP to a TLS port (a TLS connection starts with a
/// handshake record, 0x16; an HTTP request with an upper-case method letter) with a readable 400
/// and closes, as nginx does, instead of a TLS alert the client cannot show. Hands the socket
/// back for the handshake otherwise; `None` when it answered, or when the client sent nothing
/// before `deadline` or left.
async fn plain_http_on_tls(
    cur: &Current,
    tcp: monoio::net::TcpStream,
    deadline: monoio::time::Instant,
) -> Option<monoio::net::TcpStream> {
    match monoio::time::timeout_at(deadline, tcp.readable(false)).await {
        Ok(Ok(())) => {}
        _ => return None,
    }
    match crate::net::peek_byte(&tcp) {
        (crate::net::Peeked::Data, b) if b.is_ascii_uppercase() => {}
        (crate::net::Peeked::Closed, _) => return None,
        _ => return Some(tcp),
    }
    let gen = cur.get();
    let mut rid = [0u8; 40];
    let n = gen.request_ids.borrow_mut().next(&mut rid);
    let reply = crate::http::respond::Reply::new(crate::http::respond::ErrorKind::BadRequest {
        status: 400,
        reason: "plain HTTP request sent to a TLS port (use https://)",
    });
    let mut out = Vec::with_capacity(256);
    crate::http::respond::render_h1(&mut out, &reply, &rid[..n], false, None, b"", "");
    let mut stream = crate::net::Stream::Plain(tcp);
    let mut buf = Vec::new();
    let _ = stream.write_all(&mut out, deadline).await;
    // the unread request is discarded so the close does not reset the answer away
    stream.linger_close(&mut buf).await;
    None
}

/// Runs the TLS handshake of an accepted connection (within the listener's `handshake_timeout`,
/// with the certificates of the generation current at accept time), then serves it. A failed
/// handshake is counted and closes the connection; the reason is not logged per connection (a
/// scanner would flood the log), the counter says how many.
async fn serve_tls(
    cur: Rc<Current>,
    tcp: monoio::net::TcpStream,
    peer: std::net::SocketAddr,
    i: usize,
) {
    let (config, timeout, stats) = {
        let g = cur.get();
        let Some(tls) = g.cfg.listeners[i].tls.as_ref() else {
            return;
        };
        (tls.config.clone(), tls.handshake_timeout, g.stats.clone())
    };
    let _ = tcp.set_nodelay(true);
    let deadline = monoio::time::Instant::now() + timeout;
    let Some(tcp) = plain_http_on_tls(&cur, tcp, deadline).await else {
        stats.tls_handshake_failures.inc();
        return;
    };
    match crate::net::tls::TlsStream::accept(tcp, config, deadline).await {
        Ok(session) => {
            stats.tls_handshakes.inc();
            crate::proxy::serve(cur, crate::net::Stream::tls(session), peer, Some(i)).await
        }
        Err(_) => stats.tls_handshake_failures.inc(),
    }
}

#[cfg(test)]
mod tests {
    use super::contained;

    #[test]
    fn a_panicking_connection_task_ends_alone_and_stays_small() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .expect("runtime");
        let ran = std::rc::Rc::new(std::cell::Cell::new(false));
        let r = ran.clone();
        rt.block_on(async move {
            let boom = monoio::spawn(contained(async { panic!("a bug") }));
            boom.await;
            contained(async move { r.set(true) }).await;
        });
        assert!(ran.get(), "the worker went on after the panic");
        // a task holding 4 KiB across an await: wrapped, it must not take twice that
        let task = async {
            let held = [1u8; 4096];
            std::future::ready(()).await;
            std::hint::black_box(held);
        };
        let inner = std::mem::size_of_val(&task);
        let wrapped = contained(task);
        assert!(inner >= 4096 && std::mem::size_of_val(&wrapped) < inner + 64);
    }
}
