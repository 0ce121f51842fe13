//! One worker: a monoio runtime pinned to one core, owning everything its requests touch.
//!
//! Owns: [`WorkerCtx`] (compiled router, upstream balancers and pools, counters, drain signal, request
//! id generator), built on the worker's own thread from the shared read-only `Arc<Config>`, and the
//! worker's main future: accept loops (one per SO_REUSEPORT listener), the control task (messages from
//! the main thread), the idle-pool reaper, and the drain sequence. Everything is `Rc`/`Cell`/`RefCell`:
//! no lock is taken while a request is served.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpListener;

use super::control::{Control, ControlRx};
use super::drain::Drain;
use crate::auth::{AuthRt, AuthShared};
use crate::config::Config;
use crate::http::head::HeadLimits;
use crate::http::rewrite::RequestIdGen;
use crate::metrics::WorkerMetrics;
use crate::ratelimit::{LimitsRt, LimitsShared};
use crate::router::Router;
use crate::upstream::UpstreamRt;

/// How often idle upstream connections past their idle timeout are closed.
const REAP_INTERVAL: Duration = Duration::from_secs(1);
/// How often the drain checks whether the last connection has finished.
const DRAIN_POLL: Duration = Duration::from_millis(5);
/// Back-off after accept fails for lack of file descriptors, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// Everything one worker's connections share.
pub struct WorkerCtx {
    pub id: usize,
    pub cfg: Arc<Config>,
    pub router: Router,
    pub upstreams: Vec<UpstreamRt>,
    pub metrics: Arc<WorkerMetrics>,
    pub drain: Drain,
    pub request_ids: RefCell<RequestIdGen>,
    pub limits: HeadLimits,
    /// Open client connections on this worker.
    pub open: Cell<usize>,
    /// Auth policies: verdict caches, token-store clients.
    pub auth: AuthRt,
    /// Rate limits and quotas: this core's leases, Redis client.
    pub ratelimit: LimitsRt,
    auth_log: Cell<Option<std::time::Instant>>,
}

impl WorkerCtx {
    pub fn new(
        id: usize,
        cfg: Arc<Config>,
        metrics: Arc<WorkerMetrics>,
        auth: Arc<AuthShared>,
        limits: Arc<LimitsShared>,
    ) -> Self {
        let s = &cfg.server;
        WorkerCtx {
            id,
            router: Router::new(&cfg.routes),
            upstreams: cfg
                .upstreams
                .iter()
                .enumerate()
                .map(|(i, u)| UpstreamRt::new(i, u, id))
                .collect(),
            drain: Drain::default(),
            request_ids: RefCell::new(RequestIdGen::new(id)),
            limits: HeadLimits {
                max_request_line: s.max_request_line,
                max_header_bytes: s.max_header_bytes,
                max_headers: s.max_headers,
            },
            open: Cell::new(0),
            auth: AuthRt::new(auth),
            ratelimit: LimitsRt::new(limits, metrics.clone()),
            auth_log: Cell::new(None),
            metrics,
            cfg,
        }
    }
}

impl WorkerCtx {
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

/// Shared with the main thread: how many workers are accepting (for /readyz).
#[derive(Default)]
pub struct Readiness {
    pub accepting: AtomicUsize,
    pub draining: std::sync::atomic::AtomicBool,
}

/// The worker's main future: runs until drained.
pub async fn run(
    ctx: Rc<WorkerCtx>,
    listeners: Vec<std::net::TcpListener>,
    control: ControlRx,
    ready: Arc<Readiness>,
    started: crossbeam_channel::Sender<Result<(), String>>,
) {
    for l in listeners {
        match TcpListener::from_std(l) {
            Ok(l) => {
                monoio::spawn(accept_loop(ctx.clone(), l));
            }
            Err(e) => {
                let _ = started.send(Err(format!("worker {}: listener: {e}", ctx.id)));
                return;
            }
        }
    }
    ready.accepting.fetch_add(1, Ordering::SeqCst);
    let _ = started.send(Ok(()));
    let reaper = ctx.clone();
    monoio::spawn(async move {
        loop {
            monoio::time::sleep(REAP_INTERVAL).await;
            let now = std::time::Instant::now();
            for up in &reaper.upstreams {
                up.pool.borrow_mut().reap(now);
            }
        }
    });
    if !ctx.cfg.rate_limits.is_empty() || !ctx.cfg.quotas.is_empty() {
        let sweeper = ctx.clone();
        monoio::spawn(async move {
            loop {
                monoio::time::sleep(LimitsRt::sweep_interval()).await;
                sweeper.ratelimit.sweep().await;
            }
        });
    }
    let ctl = ctx.clone();
    monoio::spawn(async move {
        while let Some(msg) = control.recv().await {
            match msg {
                Control::Drain => ctl.drain.trigger(),
            }
        }
        // the main thread is gone: drain too
        ctl.drain.trigger();
    });
    ctx.drain.wait().await;
    ready.accepting.fetch_sub(1, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + ctx.cfg.server.drain_timeout;
    while ctx.open.get() > 0 && std::time::Instant::now() < deadline {
        monoio::time::sleep(DRAIN_POLL).await;
    }
}

/// Runs a connection task so that a bug (a panic) ends that connection only, not the worker and
/// every other connection on it: monoio does not catch panics in tasks.
async fn contained(fut: impl std::future::Future<Output = ()>) {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(p) => p,
            Err(_) => {
                eprintln!(
                    "coregate: a connection task panicked (a bug); the connection was closed"
                );
                std::task::Poll::Ready(())
            }
        }
    })
    .await
}

async fn accept_loop(ctx: Rc<WorkerCtx>, listener: TcpListener) {
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => Some(r),
            _ = ctx.drain.wait() => None,
        };
        match accepted {
            None => return,
            Some(Ok((stream, peer))) => {
                monoio::spawn(contained(crate::proxy::serve(ctx.clone(), stream, peer)));
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
