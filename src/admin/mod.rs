//! The admin listener: `/healthz`, `/readyz`, `/metrics`, on its own thread, off the request path.
//!
//! Owns: a small blocking HTTP/1.1 server (std sockets, one connection at a time, short timeouts: an
//! operator's curl or a Prometheus scrape, not user traffic). `/metrics` sums the workers' counters at
//! scrape time; `/readyz` is 200 while every worker accepts and the gateway is not draining.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::metrics::{self, WorkerMetrics};
use crate::runtime::worker::Readiness;

/// A slow admin client cannot hold the admin thread longer than this.
const ADMIN_IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest admin request head we read.
const MAX_ADMIN_REQUEST: usize = 8 * 1024;

struct Admin {
    cfg: Arc<Config>,
    workers: Vec<Arc<WorkerMetrics>>,
    ready: Arc<Readiness>,
    expected_workers: usize,
    route_names: Vec<String>,
    upstream_names: Vec<String>,
    limit_names: Vec<(&'static str, String)>,
}

/// Binds the admin address and serves it on a thread named `coregate-admin`.
pub fn start(
    addr: SocketAddr,
    cfg: Arc<Config>,
    workers: Vec<Arc<WorkerMetrics>>,
    ready: Arc<Readiness>,
    expected_workers: usize,
) -> Result<SocketAddr, String> {
    let listener =
        TcpListener::bind(addr).map_err(|e| format!("cannot listen on admin {addr}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("admin listener: {e}"))?;
    let admin = Admin {
        route_names: cfg.routes.iter().map(|r| r.name.clone()).collect(),
        upstream_names: cfg.upstreams.iter().map(|u| u.name.clone()).collect(),
        limit_names: limit_names(&cfg),
        cfg,
        workers,
        ready,
        expected_workers,
    };
    std::thread::Builder::new()
        .name("coregate-admin".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let _ = admin.serve(conn);
            }
        })
        .map_err(|e| format!("cannot spawn admin thread: {e}"))?;
    Ok(bound)
}

/// (kind, name) of each rate limit, then each quota: the rows of `WorkerMetrics::limits`.
fn limit_names(cfg: &Config) -> Vec<(&'static str, String)> {
    let rates = cfg
        .rate_limits
        .iter()
        .map(|r| ("rate_limit", r.name.clone()));
    let quotas = cfg.quotas.iter().map(|q| ("quota", q.name.clone()));
    rates.chain(quotas).collect()
}

impl Admin {
    fn serve(&self, mut conn: TcpStream) -> std::io::Result<()> {
        conn.set_read_timeout(Some(ADMIN_IO_TIMEOUT))?;
        conn.set_write_timeout(Some(ADMIN_IO_TIMEOUT))?;
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut chunk)?;
            if n == 0 || buf.len() > MAX_ADMIN_REQUEST {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let line = buf.split(|&b| b == b'\r').next().unwrap_or(b"");
        let mut parts = line.split(|&b| b == b' ');
        let method = parts.next().unwrap_or(b"");
        let path = parts.next().unwrap_or(b"");
        let path = path.split(|&b| b == b'?').next().unwrap_or(b"");
        let (status, ctype, body) = match (method, path) {
            (b"GET" | b"HEAD", b"/healthz") => (200, "text/plain", "ok\n".to_string()),
            (b"GET" | b"HEAD", b"/readyz") => {
                let accepting = self.ready.accepting.load(Ordering::SeqCst);
                if !self.ready.draining.load(Ordering::SeqCst) && accepting == self.expected_workers
                {
                    (200, "text/plain", "ready\n".to_string())
                } else {
                    (503, "text/plain", "not ready\n".to_string())
                }
            }
            (b"GET" | b"HEAD", b"/metrics") => (
                200,
                "text/plain; version=0.0.4",
                metrics::render(
                    &self.workers,
                    &self.route_names,
                    &self.upstream_names,
                    &self.limit_names,
                ),
            ),
            (b"GET" | b"HEAD", b"/config") => (200, "text/plain", format!("{:#?}\n", self.cfg)),
            (b"GET" | b"HEAD", _) => (404, "text/plain", "not found\n".to_string()),
            _ => (405, "text/plain", "method not allowed\n".to_string()),
        };
        let reason = crate::http::respond::reason_phrase(status);
        let mut out = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        if method != b"HEAD" {
            out.extend_from_slice(body.as_bytes());
        }
        conn.write_all(&out)
    }
}
