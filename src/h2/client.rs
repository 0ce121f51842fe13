//! Upstream HTTP/2 connections: the handshake, the connection's driver task, and the per-worker
//! pool that multiplexes requests over them.
//!
//! Owns [`H2Pool`] (one list of connections per endpoint, in its upstream's runtime) and
//! [`Lease`] (one open stream counted on its connection). Data flow: the exchange asks
//! [`H2Pool::take`] for a connection to the endpoint the balancer picked; a connection with a free
//! stream slot (fewer open streams than the peer's SETTINGS_MAX_CONCURRENT_STREAMS, read live from
//! the codec) hands out a clone of its request handle and a lease. When none has room the exchange
//! connects ([`handshake`] over the TCP or TLS socket) and adds the new connection, so a busy
//! endpoint gets more connections rather than queued streams. Each connection's codec runs in a
//! task of its own ([`drive`]) until the peer closes it, it fails, or the pool let go of its last
//! handle with no stream open; the task marks it closed so the pool skips and then drops it. A
//! connection that received GOAWAY fails new streams at once (they report unprocessed and are
//! retried elsewhere) and is dropped by the next `take`. [`H2Pool::reap`] closes connections with
//! no open stream for longer than the upstream's `idle_timeout`.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;
use monoio::io::poll_io::{AsyncRead, AsyncWrite};

use crate::metrics::UpstreamStats;
use crate::runtime::drain::Drain;

/// Stream receive window per upstream stream (the response body the gateway holds unread).
const STREAM_WINDOW: u32 = 256 * 1024;
/// Receive window of a whole upstream connection.
const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Largest response header list accepted from an upstream.
const MAX_HEADER_LIST: u32 = 64 * 1024;

/// What a connection's handles and its driver task share.
struct Shared {
    open: Cell<usize>,
    closed: Cell<bool>,
    idle_since: Cell<Instant>,
}

/// One open stream counted on its connection; dropping it ends the count.
pub struct Lease(Rc<Shared>);

impl Drop for Lease {
    fn drop(&mut self) {
        let open = self.0.open.get() - 1;
        self.0.open.set(open);
        if open == 0 {
            self.0.idle_since.set(Instant::now());
        }
    }
}

/// A pooled HTTP/2 connection.
pub struct H2Conn {
    send: SendRequest<Bytes>,
    shared: Rc<Shared>,
    /// The connection runs over TLS (`:scheme` is https).
    pub tls: bool,
}

impl H2Conn {
    fn has_room(&self) -> bool {
        !self.shared.closed.get() && self.shared.open.get() < self.send.current_max_send_streams()
    }

    /// A request handle and a lease on one stream slot.
    pub fn lease(&self) -> (SendRequest<Bytes>, Lease) {
        self.shared.open.set(self.shared.open.get() + 1);
        (self.send.clone(), Lease(self.shared.clone()))
    }
}

/// Runs the h2 handshake on an established socket, spawns the connection's driver task and
/// waits for the upstream's SETTINGS (one PING round trip). Counted in the upstream's open connections from here until the driver ends.
pub async fn handshake<T>(io: T, tls: bool, stats: Rc<UpstreamStats>) -> Result<H2Conn, ()>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (send, mut conn) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_header_list_size(MAX_HEADER_LIST)
        // the gateway never accepts pushed streams
        .enable_push(false)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|_| ())?;
    let shared = Rc::new(Shared {
        open: Cell::new(0),
        closed: Cell::new(false),
        idle_since: Cell::new(Instant::now()),
    });
    stats.open_connections.add(1);
    let ping = conn.ping_pong();
    monoio::spawn(drive(conn, shared.clone(), stats));
    // ready once the upstream's SETTINGS are in: it sends them before it answers our PING, and
    // until then its stream limit is unknown (a burst would all pile onto this connection)
    if let Some(mut ping) = ping {
        ping.ping(h2::Ping::opaque()).await.map_err(|_| ())?;
    }
    Ok(H2Conn { send, shared, tls })
}

/// The connection's codec, until the connection ends.
async fn drive<T>(
    conn: h2::client::Connection<T, Bytes>,
    shared: Rc<Shared>,
    stats: Rc<UpstreamStats>,
) where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let _ = conn.await;
    shared.closed.set(true);
    stats.open_connections.add(-1);
}

/// Per-worker HTTP/2 connections of one upstream, by endpoint.
#[derive(Default)]
pub struct H2Pool {
    conns: Vec<Vec<H2Conn>>,
    /// A connection to the endpoint being opened: set when it is ready (or failed).
    connecting: Vec<Option<Rc<Drain>>>,
}

/// Marks an endpoint as connecting until dropped; then wakes the requests that waited for it.
pub struct Connecting<'a> {
    pool: &'a std::cell::RefCell<H2Pool>,
    endpoint: usize,
    event: Rc<Drain>,
}

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        self.pool.borrow_mut().connecting[self.endpoint] = None;
        self.event.trigger();
    }
}

impl H2Pool {
    pub fn new(endpoints: usize) -> Self {
        H2Pool {
            conns: (0..endpoints).map(|_| Vec::new()).collect(),
            connecting: vec![None; endpoints],
        }
    }

    /// The event of a connection to `endpoint` being opened, if one is: a request that found no
    /// free stream waits for it rather than opening a connection of its own (a burst of requests
    /// at start shares one connection, as HTTP/2 intends).
    pub fn connecting(&self, endpoint: usize) -> Option<Rc<Drain>> {
        self.connecting[endpoint].clone()
    }

    /// Marks `endpoint` as connecting for as long as the returned guard lives.
    pub fn start_connecting(pool: &std::cell::RefCell<H2Pool>, endpoint: usize) -> Connecting<'_> {
        let event = Rc::new(Drain::default());
        pool.borrow_mut().connecting[endpoint] = Some(event.clone());
        Connecting {
            pool,
            endpoint,
            event,
        }
    }

    /// A stream slot on a connection to `endpoint` (closed connections are dropped on the way).
    /// Fills the oldest connection first, so the surplus ones go idle and are reaped.
    pub fn take(&mut self, endpoint: usize) -> Option<(SendRequest<Bytes>, Lease, bool)> {
        let list = &mut self.conns[endpoint];
        list.retain(|c| !c.shared.closed.get());
        let c = list.iter().find(|c| c.has_room())?;
        let (send, lease) = c.lease();
        Some((send, lease, c.tls))
    }

    pub fn add(&mut self, endpoint: usize, conn: H2Conn) {
        self.conns[endpoint].push(conn);
    }

    /// Drops connections to `endpoint` (after one turned out to be going away): streams in flight
    /// finish, new ones open new connections.
    pub fn clear(&mut self, endpoint: usize) {
        self.conns[endpoint].clear();
    }

    /// Lets go of connections with no open stream for `idle_timeout` (their driver then sends
    /// GOAWAY and closes) and of closed ones.
    pub fn reap(&mut self, now: Instant, idle_timeout: Duration) {
        for list in &mut self.conns {
            list.retain(|c| {
                let s = &c.shared;
                !s.closed.get()
                    && (s.open.get() > 0
                        || now.saturating_duration_since(s.idle_since.get()) < idle_timeout)
            });
        }
    }

    /// Takes over `old`'s connections (the same upstream before a reload) whose endpoint remains.
    pub fn adopt(&mut self, old: &mut H2Pool, map: impl Fn(usize) -> Option<usize>) {
        for (ep, list) in old.conns.iter_mut().enumerate() {
            match map(ep) {
                Some(to) if to < self.conns.len() => self.conns[to].append(list),
                Some(_) => list.clear(),
                None => list.clear(),
            }
        }
    }

    pub fn count(&self, endpoint: usize) -> usize {
        self.conns[endpoint].len()
    }
}
