//! Minimal async Redis (RESP2) client for one worker thread.
//!
//! Owns: talking to one Redis server from one worker: a small LIFO pool of idle connections, the
//! commands the gateway needs (GET, SET EX, DEL, INCRBY, EXPIRE, EVAL/EVALSHA) and a general
//! [`RedisClient::cmd`]. Like the rest of the request path it is single-threaded and lock-free:
//! state lives behind `Rc`/`RefCell`, and cloning a [`RedisClient`] shares the pool between the
//! worker's tasks. Build one client per worker thread.
//!
//! Key parts: `resp` (encoder and bounded incremental parser), `conn` (one connection with its
//! reusable buffers, connect + handshake, one round trip), this file (pool, retry, commands).
//!
//! Flow of a call: take the most recently pooled connection, or connect lazily (bounded by
//! `connect_timeout`, then AUTH/SELECT when configured, bounded by `op_timeout`) -> encode the
//! command into the connection's write buffer -> write it and read one whole reply, the round trip
//! bounded by `op_timeout` -> on a complete reply (an error reply included) the connection goes back
//! to the pool (kept only up to `max_idle`); on any IO error, timeout or malformed reply it is
//! dropped, never reused.
//!
//! Stale connections: a pooled connection whose server restarted fails with end of stream or a
//! reset before any reply byte. Then the call is retried once on a fresh connection and the other
//! idle connections (as old as this one) are dropped, so a Redis restart costs callers nothing.
//! The retry can only repeat a command the server never answered; the one case where it might run
//! twice is a server that executed it and died before replying, which loses its memory anyway.
//!
//! Errors: [`RedisError`]; [`RedisError::is_unavailable`] (connect, timeout, IO) is the "Redis is
//! down" signal callers use to fail open or closed. A `-ERR` reply is [`RedisError::Server`] and
//! leaves the connection usable.
//!
//! Performance notes: one syscall pair per command, no allocation for encoding (arguments are
//! written straight into the pooled write buffer), read buffers reused across calls and shrunk
//! back after a large value. There is no cap on connections open at once: concurrency above
//! `max_idle` opens extra connections that are closed when they come back to a full pool.
//! Worst case for one call: `connect_timeout` + `op_timeout` (handshake) + `op_timeout`, plus one
//! such retry only after a reused connection failed without a reply.

mod conn;
pub mod resp;

use std::borrow::Cow;
use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

pub use resp::{Reply, Value};

use conn::{Conn, Failed};

/// Connection settings of a [`RedisClient`].
#[derive(Debug, Clone)]
pub struct RedisOpts {
    /// Limit for establishing one TCP connection.
    pub connect_timeout: Duration,
    /// Limit for one request/reply round trip (and for the AUTH/SELECT handshake).
    pub op_timeout: Duration,
    /// Database to SELECT on every new connection (`None`: the server's default, 0).
    pub db: Option<u32>,
    /// Password to AUTH with on every new connection.
    pub password: Option<String>,
    /// Most idle connections kept for reuse.
    pub max_idle: usize,
}

/// Why a Redis call failed.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The TCP connection could not be established (refused, unreachable, or `connect_timeout`).
    #[error("redis connect failed: {0}")]
    Connect(#[source] io::Error),
    /// No whole reply within `op_timeout`.
    #[error("redis request timed out")]
    Timeout,
    /// The connection broke during the round trip.
    #[error("redis connection error: {0}")]
    Io(#[source] io::Error),
    /// The server sent something that is not valid RESP2, or a reply of the wrong type.
    #[error("redis protocol error: {0}")]
    Protocol(Cow<'static, str>),
    /// The server answered with an error reply (`-ERR ...`, `-NOSCRIPT ...`, ...).
    #[error("redis server error: {0}")]
    Server(String),
}

impl RedisError {
    /// True when Redis could not be reached or did not answer in time (connect, timeout, IO):
    /// the signal for "Redis is down" as opposed to "Redis refused this command".
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            RedisError::Connect(_) | RedisError::Timeout | RedisError::Io(_)
        )
    }

    fn unexpected(cmd: &'static str) -> RedisError {
        RedisError::Protocol(Cow::Owned(format!("unexpected reply type to {cmd}")))
    }
}

/// Client for one Redis server, for use on one worker thread (not `Send`). Cloning is cheap and
/// shares the connection pool.
#[derive(Clone)]
pub struct RedisClient {
    inner: Rc<Inner>,
}

struct Inner {
    addr: SocketAddr,
    opts: RedisOpts,
    /// Idle connections, most recently used last.
    idle: RefCell<Vec<Conn>>,
}

impl RedisClient {
    /// A client for `addr`; connects lazily on the first call. Needs a monoio runtime with the
    /// timer enabled (`RuntimeBuilder::enable_timer`).
    pub fn new(addr: SocketAddr, opts: RedisOpts) -> RedisClient {
        RedisClient {
            inner: Rc::new(Inner {
                addr,
                opts,
                idle: RefCell::new(Vec::new()),
            }),
        }
    }

    /// The server address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Idle pooled connections right now.
    pub fn idle_connections(&self) -> usize {
        self.inner.idle.borrow().len()
    }

    /// `GET key`: the value, or `None` when the key does not exist.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, RedisError> {
        match self.call(|o| resp::command(o, &[b"GET", key])).await? {
            Value::Bulk(v) => Ok(Some(v)),
            Value::Nil => Ok(None),
            _ => Err(RedisError::unexpected("GET")),
        }
    }

    /// `SET key value EX ttl_secs` (`ttl_secs` must be at least 1).
    pub async fn set_ex(&self, key: &[u8], value: &[u8], ttl_secs: u64) -> Result<(), RedisError> {
        let reply = self
            .call(|o| {
                resp::array_header(o, 5);
                resp::bulk(o, b"SET");
                resp::bulk(o, key);
                resp::bulk(o, value);
                resp::bulk(o, b"EX");
                resp::bulk_u64(o, ttl_secs);
            })
            .await?;
        match reply {
            Value::Simple(s) if s == "OK" => Ok(()),
            _ => Err(RedisError::unexpected("SET")),
        }
    }

    /// `DEL key`: how many keys were removed (0 or 1).
    pub async fn del(&self, key: &[u8]) -> Result<i64, RedisError> {
        let reply = self.call(|o| resp::command(o, &[b"DEL", key])).await?;
        reply.as_int().ok_or_else(|| RedisError::unexpected("DEL"))
    }

    /// `INCRBY key n`: the value after the increment.
    pub async fn incr_by(&self, key: &[u8], n: i64) -> Result<i64, RedisError> {
        let reply = self
            .call(|o| {
                resp::array_header(o, 3);
                resp::bulk(o, b"INCRBY");
                resp::bulk(o, key);
                resp::bulk_i64(o, n);
            })
            .await?;
        reply
            .as_int()
            .ok_or_else(|| RedisError::unexpected("INCRBY"))
    }

    /// `EXPIRE key secs`: true when the key exists and the timeout was set.
    pub async fn expire(&self, key: &[u8], secs: u64) -> Result<bool, RedisError> {
        let reply = self
            .call(|o| {
                resp::array_header(o, 3);
                resp::bulk(o, b"EXPIRE");
                resp::bulk(o, key);
                resp::bulk_u64(o, secs);
            })
            .await?;
        match reply.as_int() {
            Some(n) => Ok(n == 1),
            None => Err(RedisError::unexpected("EXPIRE")),
        }
    }

    /// `EVAL script numkeys keys... args...`.
    pub async fn eval(
        &self,
        script: &str,
        keys: &[&[u8]],
        args: &[&[u8]],
    ) -> Result<Value, RedisError> {
        self.call(|o| script_command(o, b"EVAL", script.as_bytes(), keys, args))
            .await
    }

    /// `EVALSHA sha1 numkeys keys... args...`; a script the server does not know fails with a
    /// `Server` error starting with `NOSCRIPT`.
    pub async fn evalsha(
        &self,
        sha1_hex: &str,
        keys: &[&[u8]],
        args: &[&[u8]],
    ) -> Result<Value, RedisError> {
        self.call(|o| script_command(o, b"EVALSHA", sha1_hex.as_bytes(), keys, args))
            .await
    }

    /// EVALSHA, falling back to EVAL (which also caches the script on the server) on `NOSCRIPT`.
    /// `sha1_hex` must be [`script_sha1_hex`] of `script`; compute it once, not per call.
    pub async fn eval_cached(
        &self,
        sha1_hex: &str,
        script: &str,
        keys: &[&[u8]],
        args: &[&[u8]],
    ) -> Result<Value, RedisError> {
        match self.evalsha(sha1_hex, keys, args).await {
            Err(RedisError::Server(msg)) if msg.starts_with("NOSCRIPT") => {
                self.eval(script, keys, args).await
            }
            other => other,
        }
    }

    /// Any command, given as its arguments (`&[b"PING"]`).
    pub async fn cmd(&self, args: &[&[u8]]) -> Result<Value, RedisError> {
        if args.is_empty() {
            return Err(RedisError::Protocol("empty command".into()));
        }
        self.call(|o| resp::command(o, args)).await
    }

    /// One command: `encode` writes it into a connection's (cleared) write buffer. Retries once on a
    /// fresh connection when a pooled one failed before any reply byte.
    async fn call(&self, encode: impl Fn(&mut Vec<u8>)) -> Result<Value, RedisError> {
        let pooled = self.inner.idle.borrow_mut().pop();
        let Some(conn) = pooled else {
            let conn = Conn::open(self.inner.addr, &self.inner.opts).await?;
            return self.attempt(conn, &encode).await.map_err(|f| f.err)?;
        };
        match self.attempt(conn, &encode).await {
            Ok(reply) => reply,
            Err(Failed {
                before_reply: true, ..
            }) => {
                // The server closed this connection, probably by restarting: the other idle ones
                // are just as old, so drop them too and retry on a fresh connection.
                self.inner.idle.borrow_mut().clear();
                let conn = Conn::open(self.inner.addr, &self.inner.opts).await?;
                self.attempt(conn, &encode).await.map_err(|f| f.err)?
            }
            Err(f) => Err(f.err),
        }
    }

    /// One round trip on `conn`, bounded by `op_timeout`. A complete reply puts the connection back
    /// in the pool; any failure drops it. The outer `Result` is the round trip, the inner the reply.
    async fn attempt(
        &self,
        mut conn: Conn,
        encode: &impl Fn(&mut Vec<u8>),
    ) -> Result<Result<Value, RedisError>, Failed> {
        conn.wbuf.clear();
        encode(&mut conn.wbuf);
        let deadline = monoio::time::Instant::now() + self.inner.opts.op_timeout;
        let reply = conn.round_trip(deadline).await?;
        self.put_back(conn);
        Ok(reply.map_err(RedisError::Server))
    }

    fn put_back(&self, mut conn: Conn) {
        let mut idle = self.inner.idle.borrow_mut();
        if idle.len() < self.inner.opts.max_idle {
            conn.recycle();
            idle.push(conn);
        }
    }
}

/// `EVAL`/`EVALSHA` with its script or digest, key count, keys and arguments.
fn script_command(o: &mut Vec<u8>, verb: &[u8], script: &[u8], keys: &[&[u8]], args: &[&[u8]]) {
    resp::array_header(o, 3 + keys.len() + args.len());
    resp::bulk(o, verb);
    resp::bulk(o, script);
    resp::bulk_u64(o, keys.len() as u64);
    for a in keys.iter().chain(args) {
        resp::bulk(o, a);
    }
}

/// The lowercase hex SHA-1 of `script`: the name EVALSHA knows it by.
pub fn script_sha1_hex(script: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, script.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_matches_redis() {
        // `redis-cli SCRIPT LOAD "return 1"` prints this digest.
        assert_eq!(
            script_sha1_hex("return 1"),
            "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
        );
    }

    #[test]
    fn unavailable_classification() {
        let io = || io::Error::new(io::ErrorKind::ConnectionReset, "x");
        assert!(RedisError::Connect(io()).is_unavailable());
        assert!(RedisError::Timeout.is_unavailable());
        assert!(RedisError::Io(io()).is_unavailable());
        assert!(!RedisError::Protocol("x".into()).is_unavailable());
        assert!(!RedisError::Server("ERR x".into()).is_unavailable());
    }

    #[test]
    fn script_command_layout() {
        let mut o = Vec::new();
        script_command(&mut o, b"EVALSHA", b"abc", &[b"k1"], &[b"a1", b"a2"]);
        let mut want = Vec::new();
        resp::command(&mut want, &[b"EVALSHA", b"abc", b"1", b"k1", b"a1", b"a2"]);
        assert_eq!(o, want);
    }
}
