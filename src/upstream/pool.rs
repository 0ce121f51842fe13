//! Per-worker pools of idle upstream connections, one LIFO stack per endpoint.
//!
//! Owns: keep-alive upstream connections between requests. A connection (with its own read buffer, so
//! a reused connection costs no allocation) is taken for one request and put back when its response
//! was fully read and the upstream did not ask to close. LIFO keeps the warmest connections busy and
//! lets the surplus age out; [`Pool::reap`] (run by the worker about once a second) closes connections
//! idle longer than `idle_timeout`. Single-threaded: the worker owns it behind a `RefCell`.

use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use crate::metrics::UpstreamStats;

/// Read buffer of an upstream connection.
pub const UPSTREAM_BUF: usize = 16 * 1024;

/// One upstream connection and its read buffer. Counted in its upstream's open-connections gauge
/// from connect to drop.
pub struct UpConn {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
    pub endpoint: usize,
    pub idle_since: Instant,
    pub stats: Rc<UpstreamStats>,
}

impl UpConn {
    pub fn new(stream: TcpStream, endpoint: usize, stats: Rc<UpstreamStats>) -> Self {
        stats.open_connections.add(1);
        UpConn {
            stream,
            buf: Vec::with_capacity(UPSTREAM_BUF),
            endpoint,
            idle_since: Instant::now(),
            stats,
        }
    }
}

impl Drop for UpConn {
    fn drop(&mut self) {
        self.stats.open_connections.add(-1);
    }
}

pub struct Pool {
    idle: Vec<Vec<UpConn>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Pool {
    pub fn new(endpoints: usize, max_idle: usize, idle_timeout: Duration) -> Self {
        Pool {
            idle: (0..endpoints).map(|_| Vec::new()).collect(),
            max_idle,
            idle_timeout,
        }
    }

    /// The most recently returned, still fresh connection to `endpoint`.
    pub fn take(&mut self, endpoint: usize, now: Instant) -> Option<UpConn> {
        let stack = &mut self.idle[endpoint];
        while let Some(c) = stack.pop() {
            if now.duration_since(c.idle_since) < self.idle_timeout {
                return Some(c);
            }
        }
        None
    }

    /// Returns a connection whose last response was fully read. Dropped (closed) when the pool is full.
    pub fn put(&mut self, mut conn: UpConn, now: Instant) {
        let stack = &mut self.idle[conn.endpoint];
        if stack.len() < self.max_idle {
            conn.buf.clear();
            conn.idle_since = now;
            stack.push(conn);
        }
    }

    /// Closes every idle connection to `endpoint` (after one of them turned out stale).
    pub fn clear(&mut self, endpoint: usize) {
        self.idle[endpoint].clear();
    }

    /// Closes connections idle for longer than the idle timeout.
    pub fn reap(&mut self, now: Instant) {
        let timeout = self.idle_timeout;
        for stack in &mut self.idle {
            stack.retain(|c| now.duration_since(c.idle_since) < timeout);
        }
    }

    /// Takes over the idle connections of `old` (the same upstream before a reload) whose endpoint
    /// still exists: `map` gives an old endpoint index's new index, or None if it was removed
    /// (those connections are closed).
    pub fn adopt(&mut self, old: &mut Pool, map: impl Fn(usize) -> Option<usize>) {
        for (ep, stack) in old.idle.iter_mut().enumerate() {
            let Some(to) = map(ep) else {
                stack.clear();
                continue;
            };
            for mut c in stack.drain(..) {
                if self.idle[to].len() < self.max_idle {
                    c.endpoint = to;
                    self.idle[to].push(c);
                }
            }
        }
    }

    pub fn idle_count(&self, endpoint: usize) -> usize {
        self.idle[endpoint].len()
    }
}
