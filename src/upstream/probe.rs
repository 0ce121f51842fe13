//! The active health prober: one thread per process probing every endpoint of every upstream
//! with a `[upstream.health_check]`, its verdicts written to the generation's
//! [`HealthBoard`](super::health::HealthBoard).
//!
//! Owns [`Prober`] (the handle the control thread keeps) and the thread `coregate-health`, which
//! runs a small epoll runtime of its own (it never shares a worker's ring and never runs on a
//! worker). Data flow: at start and after each reload the control thread sends the new board;
//! the prober's main task picks it up within [`PLAN_POLL`], retires the previous board's probe
//! tasks (each checks the plan number before and after every probe) and starts one task per
//! endpoint. A task probes at once (after a random part of `jitter`, so a fleet of gateways does
//! not probe in step), then every `interval` plus up to `jitter`:
//! - `kind = "http"`: connect (TLS and ALPN as the upstream's own connections do), `GET path` over
//!   HTTP/1.1, or over HTTP/2 where the upstream speaks it, and the status must be one of
//!   `expected_statuses`; the connection is closed after each probe.
//! - `kind = "tcp"`: the connect (and TLS handshake) is the probe.
//!
//! `unhealthy_threshold` failures in a row take a healthy endpoint out; `healthy_threshold`
//! passes in a row bring it back. Each change is one atomic store, logged with the reason, and
//! counted (`coregate_upstream_health_changes_total`).

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::io::IntoPollIo;
use monoio::net::TcpStream;
use monoio::time::Instant;

use super::health::{HealthBoard, UpstreamHealth};
use crate::config::health::ProbeKind;
use crate::config::UpstreamProtocol;
use crate::http::head::{self, ResponseHead};
use crate::net::tls::{HandshakeFail, TlsStream};
use crate::net::{IoFail, Stream};

/// How often the prober looks for a new board.
const PLAN_POLL: Duration = Duration::from_millis(100);
/// Largest probe response head read.
const MAX_HEAD: usize = 16 * 1024;

/// The control thread's handle: sends each generation's board to the prober thread.
pub struct Prober {
    tx: crossbeam_channel::Sender<Arc<HealthBoard>>,
}

impl Prober {
    /// Starts the prober thread on `board`. It exits when the handle is dropped.
    pub fn start(board: Arc<HealthBoard>) -> Result<Prober, String> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let _ = tx.send(board);
        std::thread::Builder::new()
            .name("coregate-health".into())
            .spawn(move || {
                let rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                    .enable_timer()
                    .build();
                match rt {
                    Ok(mut rt) => rt.block_on(serve(rx)),
                    Err(e) => eprintln!("coregate: health checks are off: no runtime ({e})"),
                }
            })
            .map_err(|e| format!("cannot spawn the health-check thread: {e}"))?;
        Ok(Prober { tx })
    }

    /// Probes `board`'s upstreams from now on (a reload).
    pub fn update(&self, board: Arc<HealthBoard>) {
        let _ = self.tx.send(board);
    }
}

/// The prober's main task: follows the boards it is sent.
async fn serve(rx: crossbeam_channel::Receiver<Arc<HealthBoard>>) {
    let plan = Rc::new(Cell::new(0u64));
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(std::process::id());
    loop {
        let mut latest = None;
        loop {
            match rx.try_recv() {
                Ok(board) => latest = Some(board),
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    plan.set(plan.get() + 1);
                    return;
                }
            }
        }
        if let Some(board) = latest {
            let mine = plan.get() + 1;
            plan.set(mine);
            for up in board.all() {
                for ep in 0..up.endpoints.len() {
                    seed = seed.wrapping_add(0xa076_1d64_78bd_642f);
                    let watch = Watch {
                        plan: plan.clone(),
                        mine,
                        up: up.clone(),
                        ep,
                        rng: seed,
                    };
                    monoio::spawn(watch.run());
                }
            }
        }
        monoio::time::sleep(PLAN_POLL).await;
    }
}

/// One endpoint's probe loop under one board.
struct Watch {
    plan: Rc<Cell<u64>>,
    mine: u64,
    up: Arc<UpstreamHealth>,
    ep: usize,
    rng: u64,
}

impl Watch {
    fn current(&self) -> bool {
        self.plan.get() == self.mine
    }

    /// Up to `max`, at random.
    fn jitter(&mut self, max: Duration) -> Duration {
        let ns = max.as_nanos() as u64;
        if ns == 0 {
            return Duration::ZERO;
        }
        self.rng = self.rng.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.rng) * u128::from(self.rng ^ 0xe703_7ed1_a0b4_28db);
        Duration::from_nanos((((t >> 64) as u64) ^ (t as u64)) % (ns + 1))
    }

    async fn run(mut self) {
        let Some(hc) = self.up.cfg.health_check.clone() else {
            return;
        };
        let first = self.jitter(hc.jitter);
        monoio::time::sleep(first).await;
        let (mut passes, mut fails) = (0u32, 0u32);
        while self.current() {
            let result = monoio::time::timeout(hc.timeout, probe(&self.up, self.ep)).await;
            if !self.current() {
                return;
            }
            let result = result.unwrap_or_else(|_| Err(format!("no answer in {:?}", hc.timeout)));
            let health = &self.up.endpoints[self.ep];
            let up = health.is_up();
            let relaxed = std::sync::atomic::Ordering::Relaxed;
            match result {
                Ok(()) => {
                    health.checks_ok.fetch_add(1, relaxed);
                    (passes, fails) = (passes + 1, 0);
                    if !up && passes >= hc.healthy_threshold {
                        health.set(true, std::time::Instant::now());
                        self.log(format_args!("healthy again ({passes} checks passed)"));
                    }
                }
                Err(reason) => {
                    health.checks_failed.fetch_add(1, relaxed);
                    (passes, fails) = (0, fails + 1);
                    if up && fails >= hc.unhealthy_threshold {
                        health.set(false, std::time::Instant::now());
                        self.log(format_args!(
                            "unhealthy: {reason} ({fails} checks failed in a row)"
                        ));
                    }
                }
            }
            let wait = hc.interval + self.jitter(hc.jitter);
            monoio::time::sleep(wait).await;
        }
    }

    fn log(&self, what: std::fmt::Arguments) {
        eprintln!(
            "coregate: health check: upstream {} endpoint {} is {what}",
            self.up.cfg.name,
            self.up.addr(self.ep)
        );
    }
}

/// One probe of endpoint `ep` (the caller bounds it with the check's timeout).
async fn probe(up: &UpstreamHealth, ep: usize) -> Result<(), String> {
    let cfg = &up.cfg;
    let Some(hc) = &cfg.health_check else {
        return Ok(());
    };
    let addr = up.addr(ep);
    let far = Instant::now() + hc.timeout + Duration::from_secs(1);
    let tcp = TcpStream::connect_addr(addr)
        .await
        .map_err(|e| format!("connect failed ({e})"))?;
    let _ = tcp.set_nodelay(true);
    let (stream, h2) = match &cfg.tls {
        None => (Stream::Plain(tcp), cfg.protocol == UpstreamProtocol::Http2),
        Some(tls) => {
            let name = tls.server_name(addr);
            let s = match TlsStream::connect(tcp, tls.config.clone(), name, far).await {
                Ok(s) => s,
                Err(HandshakeFail::Timeout) => return Err("TLS handshake timed out".into()),
                Err(e) => return Err(format!("TLS handshake failed ({e})")),
            };
            let alpn = s.session().alpn_protocol();
            let alpn_h2 = alpn == Some(crate::tls::ALPN_H2.as_bytes());
            let h2 = match cfg.protocol {
                UpstreamProtocol::Http1 => false,
                UpstreamProtocol::Http2 => alpn_h2 || alpn.is_none(),
                UpstreamProtocol::Auto => alpn_h2,
            };
            (Stream::tls(s), h2)
        }
    };
    let ProbeKind::Http { path, host, .. } = &hc.kind else {
        return Ok(());
    };
    let authority = host
        .clone()
        .or_else(|| cfg.tls.as_ref().and_then(|t| t.sni_text()))
        .unwrap_or_else(|| addr.to_string());
    let status = if h2 {
        h2_status(stream, cfg.tls.is_some(), &authority, path).await?
    } else {
        h1_status(stream, &authority, path, far).await?
    };
    if hc.accepts(status) {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}

/// `GET path` over HTTP/1.1; the response's status.
async fn h1_status(
    mut stream: Stream,
    authority: &str,
    path: &str,
    deadline: Instant,
) -> Result<u16, String> {
    let mut out = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: coregate-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    stream
        .write_all(&mut out, deadline)
        .await
        .map_err(|_| "request not sent (connection closed)".to_owned())?;
    let mut buf = Vec::with_capacity(1024);
    let mut resp = ResponseHead::default();
    loop {
        match stream.read_some(&mut buf, deadline).await {
            Ok(0) | Err(IoFail::Error) => return Err("connection closed before a response".into()),
            Err(IoFail::Timeout) => return Err("no response".into()),
            Ok(_) => {}
        }
        loop {
            match head::parse_response(&buf, MAX_HEAD, false, &mut resp) {
                Ok(None) => break,
                Err(e) => return Err(format!("bad response ({})", e.reason)),
                Ok(Some(())) if resp.status < 200 => {
                    buf.drain(..resp.head_len);
                }
                Ok(Some(())) => {
                    stream.close().await;
                    return Ok(resp.status);
                }
            }
        }
    }
}

/// `GET path` over HTTP/2 on its own connection; the response's status.
async fn h2_status(stream: Stream, tls: bool, authority: &str, path: &str) -> Result<u16, String> {
    let conn = match stream {
        Stream::Plain(tcp) => {
            let io = tcp.into_poll_io().map_err(|e| e.to_string())?;
            crate::h2::client::handshake(io, false, Rc::default()).await
        }
        Stream::Tls(t) => {
            let (tcp, conn, pending) = t.session.into_parts();
            let io = tcp.into_poll_io().map_err(|e| e.to_string())?;
            let io = crate::h2::tls_io::PollTls::new(io, conn, pending);
            crate::h2::client::handshake(io, true, Rc::default()).await
        }
        _ => Err(()),
    }
    .map_err(|()| "HTTP/2 handshake failed".to_owned())?;
    let (send, _lease) = conn.lease();
    let scheme = if tls { "https" } else { "http" };
    let req = http::Request::builder()
        .method("GET")
        .uri(format!("{scheme}://{authority}{path}"))
        .header("user-agent", "coregate-health-check")
        .body(())
        .map_err(|e| format!("bad probe request ({e})"))?;
    let mut send = send
        .ready()
        .await
        .map_err(|e| format!("HTTP/2 connection refused the probe ({e})"))?;
    let (resp, _) = send
        .send_request(req, true)
        .map_err(|e| format!("HTTP/2 request failed ({e})"))?;
    let resp = resp
        .await
        .map_err(|e| format!("HTTP/2 stream failed ({e})"))?;
    Ok(resp.status().as_u16())
}
