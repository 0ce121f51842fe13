//! The admin listener: `/healthz`, `/readyz`, `/metrics`, `/stats`, `/config`, `POST /reload`, on
//! its own thread, off the request path.
//!
//! Owns: a small blocking HTTP/1.1 server (std sockets, one connection at a time, short timeouts: an
//! operator's curl or a Prometheus scrape, not user traffic). A scrape sends every worker a
//! snapshot request over its control channel, waits (bounded) for the answers, merges them
//! (`metrics::snapshot`) and renders Prometheus text or JSON; a worker answers between two of its
//! requests, so a scrape costs each worker one copy of its counters (measured and exported as
//! `coregate_scrape_worker_seconds`). `/config` renders the effective config as TOML (or JSON with
//! `?format=json`) that `coregate check` accepts, secrets shown as their environment variables
//! (`config::render`). `POST /reload` queues a reload on the control thread and answers 200 with
//! the new generation or 422 with every config error. `POST /cache/purge` removes response-cache
//! entries (by path, path prefix, tag or all) on every worker and says how many went. `/readyz` is 200 while every worker accepts
//! and the gateway is not draining.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::{self, snapshot};
use crate::runtime::control::{Control, ControlTx};
use crate::runtime::reload::{Cmd, Status};
use crate::runtime::worker::Readiness;

/// A slow admin client cannot hold the admin thread longer than this.
const ADMIN_IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest admin request head we read.
const MAX_ADMIN_REQUEST: usize = 8 * 1024;
/// How long a scrape waits for the workers' snapshots.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long `POST /reload` waits for the control thread.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// What the admin thread can see and ask for.
pub struct AdminState {
    pub status: Arc<Status>,
    pub workers: Vec<ControlTx>,
    pub ready: Arc<Readiness>,
    pub cmds: crossbeam_channel::Sender<Cmd>,
}

struct Admin {
    st: AdminState,
}

/// Binds the admin address and serves it on a thread named `coregate-admin`.
pub fn start(addr: SocketAddr, st: AdminState) -> Result<SocketAddr, String> {
    let listener =
        TcpListener::bind(addr).map_err(|e| format!("cannot listen on admin {addr}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("admin listener: {e}"))?;
    let admin = Admin { st };
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
        let target = parts.next().unwrap_or(b"");
        let mut target = target.splitn(2, |&b| b == b'?');
        let path = target.next().unwrap_or(b"");
        let query = target.next().unwrap_or(b"");
        if (method, path) == (&b"POST"[..], &b"/reload"[..]) {
            // a reload may take seconds (JWKS fetches, workers switching): answer it on a thread
            // of its own so health checks and scrapes keep being served meanwhile
            let cmds = self.st.cmds.clone();
            std::thread::Builder::new()
                .name("coregate-reload".into())
                .spawn(move || {
                    let (status, ctype, body) = reload(&cmds);
                    let _ = respond(conn, b"POST", status, ctype, &body);
                })?;
            return Ok(());
        }
        let (status, ctype, body) = match (method, path) {
            (b"GET" | b"HEAD", b"/healthz") => (200, "text/plain", "ok\n".to_string()),
            (b"GET" | b"HEAD", b"/readyz") => {
                let ready = &self.st.ready;
                let accepting = ready.accepting.load(Ordering::SeqCst);
                if !ready.draining.load(Ordering::SeqCst) && accepting == self.st.workers.len() {
                    (200, "text/plain", "ready\n".to_string())
                } else {
                    (503, "text/plain", "not ready\n".to_string())
                }
            }
            (b"GET" | b"HEAD", b"/metrics") => (
                200,
                "text/plain; version=0.0.4",
                metrics::prom::render(&self.scrape()),
            ),
            (b"GET" | b"HEAD", b"/stats") => (
                200,
                "application/json",
                metrics::json::render(&self.scrape()),
            ),
            (b"GET" | b"HEAD", b"/config") => config(&self.st.status.config.load(), query),
            (b"POST", b"/cache/purge") => self.purge(query),
            (b"GET" | b"HEAD", _) | (b"POST", _) => (404, "text/plain", "not found\n".to_string()),
            _ => (405, "text/plain", "method not allowed\n".to_string()),
        };
        respond(conn, method, status, ctype, &body)
    }

    /// `POST /cache/purge?path=/p` (every entry of that path), `?prefix=/p`, `?tag=t` or
    /// `?all=1`: sent to every worker's cache; answers how many entries went.
    fn purge(&self, query: &[u8]) -> (u16, &'static str, String) {
        use crate::cache::Purge;
        let pair = query.split(|&b| b == b'&').next().unwrap_or_default();
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(e) => (&pair[..e], &pair[e + 1..]),
            None => (pair, &b""[..]),
        };
        let v = crate::transform::template::percent_decode(v).into_owned();
        let what = match k {
            b"path" if v.starts_with(b"/") => Purge::Path(v),
            b"prefix" if v.starts_with(b"/") => Purge::Prefix(v),
            b"tag" if !v.is_empty() => Purge::Tag(v),
            b"all" => Purge::All,
            _ => {
                let m = "expected ?path=/p, ?prefix=/p, ?tag=name or ?all=1\n";
                return (400, "text/plain", m.into());
            }
        };
        let (tx, rx) = crossbeam_channel::unbounded();
        for w in &self.st.workers {
            w.send(Control::Purge(what.clone(), tx.clone()));
        }
        drop(tx);
        let deadline = Instant::now() + SNAPSHOT_TIMEOUT;
        let (mut purged, mut workers) = (0, 0);
        while workers < self.st.workers.len() {
            match rx.recv_deadline(deadline) {
                Ok(n) => {
                    purged += n;
                    workers += 1;
                }
                Err(_) => break,
            }
        }
        let body = format!("{{\"purged\":{purged},\"workers\":{workers}}}\n");
        let status = if workers == self.st.workers.len() {
            200
        } else {
            504
        };
        (status, "application/json", body)
    }

    /// Every worker's snapshot (those that answer within [`SNAPSHOT_TIMEOUT`]), merged.
    fn scrape(&self) -> snapshot::Merged {
        let (tx, rx) = crossbeam_channel::unbounded();
        for w in &self.st.workers {
            w.send(Control::Snapshot(tx.clone()));
        }
        drop(tx);
        let deadline = Instant::now() + SNAPSHOT_TIMEOUT;
        let mut snaps = Vec::with_capacity(self.st.workers.len());
        while snaps.len() < self.st.workers.len() {
            match rx.recv_deadline(deadline) {
                Ok(s) => snaps.push(s),
                Err(_) => break,
            }
        }
        let st = &self.st.status;
        let log = st.log.load();
        snapshot::merge(
            snaps,
            snapshot::Extra {
                uptime_s: st.started.elapsed().as_secs_f64(),
                // Acquire: pairs with the reload's Release store, so the health board and
                // bulkheads read below are at least this generation's
                generation: st.generation.load(Ordering::Acquire),
                reloads_ok: st.reloads_ok.load(Ordering::Relaxed),
                reloads_failed: st.reloads_failed.load(Ordering::Relaxed),
                last_reload_ok: st.last_ok.load(Ordering::Relaxed),
                log_written: log.lines_written(),
                log_dropped: log.lines_dropped(),
                spans_exported: st.otlp.load().spans_exported(),
                spans_dropped: st.otlp.load().spans_dropped(),
                expected_workers: self.st.workers.len(),
                health: snapshot::EndpointHealthSnap::all(&st.health.load()),
                bulkheads: st.bulkheads.load().snapshot(),
                dns: st.dns.snapshot().to_vec(),
            },
        )
    }
}

/// `GET /config`: the effective config in the file format (`config::render`: secrets shown as the
/// environment variables they come from), TOML by default, JSON with `?format=json`.
fn config(cfg: &crate::config::Config, query: &[u8]) -> (u16, &'static str, String) {
    let format = query
        .split(|&b| b == b'&')
        .find_map(|kv| kv.strip_prefix(b"format="))
        .unwrap_or(b"toml");
    match format {
        b"toml" => (200, "application/toml", crate::config::render::to_toml(cfg)),
        b"json" => (200, "application/json", crate::config::render::to_json(cfg)),
        _ => (
            400,
            "text/plain",
            "unknown format (expected format=toml or format=json)\n".into(),
        ),
    }
}

/// Queues a reload on the control thread and waits for its outcome.
fn reload(cmds: &crossbeam_channel::Sender<Cmd>) -> (u16, &'static str, String) {
    let (tx, rx) = crossbeam_channel::bounded(1);
    if cmds.send(Cmd::Reload(Some(tx))).is_err() {
        return (503, "text/plain", "the control thread is gone\n".into());
    }
    match rx.recv_timeout(RELOAD_TIMEOUT) {
        Ok(Ok(g)) => (200, "text/plain", format!("reloaded: generation {g}\n")),
        Ok(Err(errors)) => {
            let mut body = format!(
                "reload failed: {} error(s); still on the old config\n",
                errors.len()
            );
            for e in errors {
                body.push_str(&e);
                body.push('\n');
            }
            (422, "text/plain", body)
        }
        Err(_) => (504, "text/plain", "reload did not finish in time\n".into()),
    }
}

/// Writes a complete `connection: close` response (no body for HEAD).
fn respond(
    mut conn: TcpStream,
    method: &[u8],
    status: u16,
    ctype: &str,
    body: &str,
) -> std::io::Result<()> {
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
