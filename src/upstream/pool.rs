//! Per-worker pools of idle upstream connections, one LIFO stack per endpoint.
//!
//! Owns: keep-alive upstream connections between requests. A connection (with its own read buffer, so
//! a reused connection costs no allocation) is taken for one request and put back when its response
//! was fully read and the upstream did not ask to close. LIFO keeps the warmest connections busy and
//! lets the surplus age out; [`Pool::reap`] (run by the worker about once a second) closes connections
//! idle longer than `idle_timeout`, or than the upstream's own `Keep-Alive: timeout=N` when it sent
//! one (less a margin, so we stop using a connection before the upstream closes it). Single-threaded:
//! the worker owns it behind a `RefCell`.
//!
//! Stale connections: an upstream may close an idle keep-alive connection at any time (uvicorn after
//! 5 s, gunicorn after 2 s). [`Pool::take`] checks each candidate with a non-blocking
//! `recv(MSG_PEEK | MSG_DONTWAIT)` before handing it out when it has been idle for
//! [`PEEK_AFTER_IDLE`] or more: end of stream, an error, or unexpected bytes (nothing may arrive on an
//! idle HTTP/1.1 connection) mean the connection is dropped and counted in `stale_connections`; only
//! "would block" means alive. The same check works under io_uring and epoll, costs one syscall per
//! reuse of a connection that sat idle (none under load, when connections are reused within
//! microseconds), and leaves only the race of a close in flight, which the exchange treats as a
//! stale connection rather than an endpoint failure.

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::net::Stream;

use crate::metrics::UpstreamStats;

/// Connections idle at least this long are peeked at checkout. Upstreams close idle keep-alive
/// connections after seconds (gunicorn 2 s, uvicorn and Node 5 s, nginx 75 s), so a connection
/// reused within this time is not worth a syscall: under load connections are idle for
/// microseconds and the peek measured 0.3-0.5 µs per request. A close that lands anyway is the
/// exchange's stale-connection case.
pub const PEEK_AFTER_IDLE: Duration = Duration::from_millis(100);

/// Read buffer of an upstream connection.
pub const UPSTREAM_BUF: usize = 16 * 1024;

/// One upstream connection and its read buffer. Counted in its upstream's open-connections gauge
/// from connect to drop.
pub struct UpConn {
    pub stream: Stream,
    pub buf: Vec<u8>,
    /// The connection's own buffer while `buf` is a large one lent for a response
    /// (`net/relay_buf.rs`).
    spare: Option<Vec<u8>>,
    pub endpoint: usize,
    pub idle_since: Instant,
    /// The upstream's `Keep-Alive: timeout=N`, less a margin: it closes idle connections sooner.
    pub idle_limit: Option<Duration>,
    pub stats: Rc<UpstreamStats>,
    /// Counted in the open-connections gauge (a connection; not one stream of an h2 connection,
    /// which counts itself).
    counted: bool,
}

impl UpConn {
    /// Reads into a large buffer from the worker's pool from now until the connection is pooled
    /// or closed, when `need` more body bytes are to come than `buf` holds (HTTP/1.1 connections
    /// only; `buf`'s contents are dropped: call it when they have been used).
    pub fn widen(&mut self, need: u64) {
        if matches!(self.stream, Stream::Plain(_) | Stream::Tls(_)) {
            crate::net::relay_buf::widen(&mut self.buf, &mut self.spare, need);
        }
    }

    /// Gives a lent buffer back; `buf` is the connection's own (empty) buffer again.
    fn narrow(&mut self) {
        crate::net::relay_buf::restore(&mut self.buf, &mut self.spare);
    }

    pub fn new(stream: Stream, endpoint: usize, stats: Rc<UpstreamStats>) -> Self {
        stats.open_connections.add(1);
        UpConn {
            stream,
            buf: Vec::with_capacity(UPSTREAM_BUF),
            spare: None,
            endpoint,
            idle_since: Instant::now(),
            idle_limit: None,
            stats,
            counted: true,
        }
    }

    /// One request on an upstream HTTP/2 connection (never pooled itself: the connection is, in
    /// the upstream's `H2Pool`). Its buffer grows to what the response's frames need.
    pub fn h2_call(
        call: crate::h2::call::H2Call,
        endpoint: usize,
        stats: Rc<UpstreamStats>,
    ) -> Self {
        UpConn {
            stream: Stream::H2Up(Box::new(call)),
            buf: Vec::new(),
            spare: None,
            endpoint,
            idle_since: Instant::now(),
            idle_limit: None,
            stats,
            counted: false,
        }
    }

    /// Whether the upstream closed (or wrote on) this idle connection: nothing may arrive on an
    /// idle HTTP/1.1 connection, so only silence means it can be reused.
    fn peer_closed(&mut self) -> bool {
        self.stream.peek() != crate::net::Peeked::Empty
    }

    fn fresh(&self, now: Instant, idle_timeout: Duration) -> bool {
        let limit = self
            .idle_limit
            .map_or(idle_timeout, |l| l.min(idle_timeout));
        now.duration_since(self.idle_since) < limit
    }
}

impl Drop for UpConn {
    fn drop(&mut self) {
        self.narrow();
        if self.counted {
            self.stats.open_connections.add(-1);
        }
    }
}

/// How long a connection may be reused after an upstream's `Keep-Alive` value (its last valid
/// `timeout=N`, seconds): N less min(1 s, N/2), so we stop before the upstream closes it.
pub fn keep_alive_limit(value: &[u8]) -> Option<Duration> {
    value
        .split(|&b| b == b',')
        .filter_map(|param| {
            let (name, v) = param.split_at(param.iter().position(|&b| b == b'=')?);
            if !name.trim_ascii().eq_ignore_ascii_case(b"timeout") {
                return None;
            }
            std::str::from_utf8(v[1..].trim_ascii())
                .ok()?
                .parse::<u64>()
                .ok()
        })
        .next_back()
        .map(|n| {
            let n = Duration::from_secs(n.min(86_400));
            n - (n / 2).min(Duration::from_secs(1))
        })
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

    /// The most recently returned connection to `endpoint` that is still fresh and still open at
    /// the upstream's end (stale ones are closed and counted on the way).
    pub fn take(&mut self, endpoint: usize, now: Instant) -> Option<UpConn> {
        let stack = &mut self.idle[endpoint];
        while let Some(mut c) = stack.pop() {
            if !c.fresh(now, self.idle_timeout) {
                continue;
            }
            let idle = now.saturating_duration_since(c.idle_since);
            if idle >= PEEK_AFTER_IDLE && c.peer_closed() {
                c.stats.stale_connections.inc();
                continue;
            }
            return Some(c);
        }
        None
    }

    /// Returns a connection whose last response was fully read. Dropped (closed) when the pool is full.
    pub fn put(&mut self, mut conn: UpConn, now: Instant) {
        if !conn.counted {
            // an h2 request: its stream is done, its connection lives in the h2 pool
            return;
        }
        let stack = &mut self.idle[conn.endpoint];
        if stack.len() < self.max_idle {
            conn.narrow();
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
            stack.retain(|c| c.fresh(now, timeout));
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

#[cfg(test)]
mod tests {
    use super::keep_alive_limit;
    use std::time::Duration;

    #[test]
    fn keep_alive_timeout_less_a_margin() {
        let ms = Duration::from_millis;
        assert_eq!(keep_alive_limit(b"timeout=5, max=100"), Some(ms(4000)));
        assert_eq!(keep_alive_limit(b"max=100 , Timeout = 2"), Some(ms(1000)));
        assert_eq!(keep_alive_limit(b"timeout=1"), Some(ms(500)));
        assert_eq!(keep_alive_limit(b"timeout=9, timeout=x"), Some(ms(8000)));
        assert_eq!(keep_alive_limit(b"max=3"), None);
        assert_eq!(keep_alive_limit(b"timeout=-1"), None);
    }
}
