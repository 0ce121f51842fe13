//! One load thread: a monoio runtime (`crate::rt`) running that thread's share of the
//! connections as tasks. Each connection keeps up to `pipeline` requests in flight over one
//! keep-alive socket, sending on its own schedule (closed loop: as soon as a slot frees; open loop:
//! at t0 + (k * connections + c) / rate, immediately when behind, never skipping) and timing each
//! response from its actual (closed) or intended (open) send time. Samples go into the thread's
//! own histogram (`Local`, behind an `Rc<RefCell>`); live counts go to this thread's atomics in
//! `Shared` for progress lines; the thread returns its totals (`ThreadResult`) when the run stops.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncWriteRentExt, CancelableAsyncReadRent, Canceller};
use monoio::net::TcpStream;

use super::http::{Parser, Step};
use super::scenario::{Plan, Renderer};
use crate::stats::hist;
use crate::stats::model::Errors;

/// How often a waiting connection wakes to look at the stop flag.
const POLL: Duration = Duration::from_millis(50);
/// Pause before reconnecting after a failed connect.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(20);

/// The run's fixed parameters, shared read-only by all threads.
#[derive(Debug)]
pub struct Config {
    pub plan: Plan,
    pub connections: usize,
    pub pipeline: usize,
    /// Open loop: total requests per second.
    pub rate: Option<f64>,
    pub timeout: Duration,
    /// Offsets from `Shared::t0`: measured period start (after warm-up) and end (duration mode).
    pub measure_from: Duration,
    pub end: Option<Duration>,
    /// --requests: stop after this many measured completions.
    pub limit: Option<u64>,
}

/// Live per-thread counts, on their own cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct Counters {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
}

/// Cross-thread run state: only atomics.
#[derive(Debug)]
pub struct Shared {
    pub t0: Instant,
    pub stop: AtomicBool,
    /// Measured completions so far (only maintained with --requests).
    pub completed: AtomicU64,
    /// Nanoseconds after t0 at which the --requests limit was reached (0: not yet).
    pub stopped_at_ns: AtomicU64,
    pub counters: Vec<Counters>,
}

/// What one thread measured.
#[derive(Debug)]
pub struct ThreadResult {
    pub hist: Histogram<u64>,
    pub status: BTreeMap<u16, u64>,
    pub errors: Errors,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

/// A second's worth of latencies from one thread, for the progress line.
pub type TickMsg = (u64, Histogram<u64>);

#[derive(Clone, Copy)]
enum Kind {
    Connect,
    Reset,
    Timeout,
    Other,
}

fn kind_of(e: &io::Error) -> Kind {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::UnexpectedEof => Kind::Reset,
        io::ErrorKind::TimedOut => Kind::Timeout,
        _ => Kind::Other,
    }
}

struct Local {
    tid: usize,
    shared: Arc<Shared>,
    hist: Histogram<u64>,
    interval: Histogram<u64>,
    status: BTreeMap<u16, u64>,
    errors: Errors,
    bytes_read: u64,
    bytes_written: u64,
}

struct Flight {
    intended: Instant,
    sent: Instant,
    head: bool,
}

/// Per-connection context (times are absolute).
struct Ctx {
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    local: Rc<RefCell<Local>>,
    measure: Instant,
    end: Option<Instant>,
}

impl Ctx {
    fn stopping(&self, now: Instant) -> bool {
        self.shared.stop.load(Relaxed) || self.end.is_some_and(|e| now >= e)
    }

    fn measured(&self, now: Instant) -> bool {
        now >= self.measure && !self.stopping(now)
    }

    fn fail(&self, inflight: &mut VecDeque<Flight>, kind: Kind) {
        let n = inflight.len().max(1) as u64;
        inflight.clear();
        if !self.measured(Instant::now()) {
            return;
        }
        let mut l = self.local.borrow_mut();
        let e = &mut l.errors;
        match kind {
            Kind::Connect => e.connect += n,
            Kind::Reset => e.reset += n,
            Kind::Timeout => e.timeout += n,
            Kind::Other => e.other += n,
        }
        l.shared.counters[l.tid].errors.fetch_add(n, Relaxed);
    }

    fn complete(&self, f: &Flight, status: u16, now: Instant) {
        if !self.measured(now) {
            return;
        }
        if let Some(limit) = self.cfg.limit {
            let c = self.shared.completed.fetch_add(1, Relaxed);
            if c >= limit {
                return;
            }
            if c + 1 == limit {
                let ns = now.duration_since(self.shared.t0).as_nanos() as u64;
                self.shared.stopped_at_ns.store(ns.max(1), Relaxed);
                // Release: the monitor that sees `stop` also sees `stopped_at_ns`
                self.shared
                    .stop
                    .store(true, std::sync::atomic::Ordering::Release);
            }
        }
        let from = if self.cfg.rate.is_some() {
            f.intended
        } else {
            f.sent
        };
        let us = now.saturating_duration_since(from).as_micros() as u64;
        let mut l = self.local.borrow_mut();
        hist::record(&mut l.hist, us);
        hist::record(&mut l.interval, us);
        *l.status.entry(status).or_insert(0) += 1;
        l.shared.counters[l.tid].requests.fetch_add(1, Relaxed);
    }

    fn io_bytes(&self, read: usize, written: usize, now: Instant) {
        if self.measured(now) {
            let mut l = self.local.borrow_mut();
            l.bytes_read += read as u64;
            l.bytes_written += written as u64;
        }
    }

    /// Open loop: intended send time of this connection's k-th request.
    fn due(&self, c: usize, k: u64) -> Instant {
        let rate = self.cfg.rate.unwrap_or(1.0);
        let slot = k as f64 * self.cfg.connections as f64 + c as f64;
        self.shared.t0 + Duration::from_secs_f64(slot / rate)
    }
}

fn mono(t: Instant) -> monoio::time::Instant {
    monoio::time::Instant::from_std(t)
}

/// Read more into `buf` (appending), or give up at `wake` without losing data: the read is
/// cancelled and awaited, so bytes that raced the cancel are kept. Err(ECANCELED) means "woke".
/// `canceller` is the connection's, reused across reads (replaced only after it fires).
async fn read_or_wake(
    stream: &mut TcpStream,
    mut buf: Vec<u8>,
    wake: Instant,
    canceller: &mut Canceller,
) -> (io::Result<usize>, Vec<u8>) {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(buf.capacity().max(4096));
    }
    let len = buf.len();
    let mut read = pin!(stream.cancelable_read(buf.slice_mut(len..), canceller.handle()));
    let mut sleep = pin!(monoio::time::sleep_until(mono(wake)));
    let first = poll_fn(|cx| {
        if let Poll::Ready(r) = read.as_mut().poll(cx) {
            return Poll::Ready(Some(r));
        }
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await;
    let (res, slice) = match first {
        Some(r) => r,
        None => {
            *canceller = std::mem::take(canceller).cancel();
            read.await
        }
    };
    (res, slice.into_inner())
}

fn is_cancel(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ECANCELED)
}

async fn connection(ctx: Rc<Ctx>, c: usize) {
    let cfg = ctx.cfg.clone();
    let plan = &cfg.plan;
    let open = cfg.rate.is_some();
    let mut rend = Renderer::new(c as u64 + 1 + (ctx.shared.t0.elapsed().as_nanos() as u64) * 31);
    let mut k: u64 = 0;
    let mut pending: VecDeque<Instant> = VecDeque::new();
    let mut inflight: VecDeque<Flight> = VecDeque::with_capacity(cfg.pipeline);
    let mut wbuf: Vec<u8> = Vec::with_capacity(4096);
    let mut rbuf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut parser = Parser::default();
    let mut canceller = Canceller::new();
    'conn: while !ctx.stopping(Instant::now()) {
        let now = Instant::now();
        let cap = ctx
            .end
            .map_or(now + cfg.timeout, |e| e.min(now + cfg.timeout));
        let mut stream =
            match monoio::time::timeout_at(mono(cap), TcpStream::connect_addr(plan.target.addr))
                .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(_)) | Err(_) => {
                    ctx.fail(&mut inflight, Kind::Connect);
                    let wake = ctx.end.map_or(now + RECONNECT_BACKOFF, |e| {
                        e.min(Instant::now() + RECONNECT_BACKOFF)
                    });
                    monoio::time::sleep_until(mono(wake)).await;
                    continue;
                }
            };
        let _ = stream.set_nodelay(true);
        parser.reset();
        rbuf.clear();
        loop {
            let now = Instant::now();
            if ctx.stopping(now) {
                break 'conn;
            }
            // Fill the pipeline with everything that is due.
            wbuf.clear();
            while inflight.len() < cfg.pipeline {
                let due = match pending.front() {
                    Some(&p) => p,
                    None if open => ctx.due(c, k),
                    None => now,
                };
                if due > now {
                    break;
                }
                if pending.pop_front().is_none() && open {
                    k += 1;
                }
                let head = rend.render(plan, &mut wbuf);
                inflight.push_back(Flight {
                    intended: if open { due } else { now },
                    sent: now,
                    head,
                });
            }
            if !wbuf.is_empty() {
                let n = wbuf.len();
                match monoio::time::timeout_at(mono(now + cfg.timeout), stream.write_all(wbuf))
                    .await
                {
                    Ok((Ok(_), b)) => {
                        wbuf = b;
                        ctx.io_bytes(0, n, now);
                    }
                    Ok((Err(e), b)) => {
                        wbuf = b;
                        ctx.fail(&mut inflight, kind_of(&e));
                        continue 'conn;
                    }
                    Err(_) => {
                        wbuf = Vec::with_capacity(4096);
                        ctx.fail(&mut inflight, Kind::Timeout);
                        continue 'conn;
                    }
                }
            }
            let next_due = pending.front().copied().unwrap_or_else(|| ctx.due(c, k));
            let mut wake = now + POLL;
            if let Some(e) = ctx.end {
                wake = wake.min(e);
            }
            let Some(front) = inflight.front() else {
                // Open loop, nothing due yet: wait for the schedule.
                monoio::time::sleep_until(mono(wake.min(next_due))).await;
                continue;
            };
            let deadline = front.sent + cfg.timeout;
            wake = wake.min(deadline);
            if open && inflight.len() < cfg.pipeline {
                wake = wake.min(next_due);
            }
            let (res, b) = read_or_wake(&mut stream, rbuf, wake, &mut canceller).await;
            rbuf = b;
            let done = Instant::now();
            match res {
                Ok(0) => {
                    if parser.until_eof() {
                        if let Some(f) = inflight.pop_front() {
                            ctx.complete(&f, parser.status(), Instant::now());
                        }
                    }
                    if !inflight.is_empty() {
                        ctx.fail(&mut inflight, Kind::Reset);
                    }
                    continue 'conn;
                }
                Ok(n) => ctx.io_bytes(n, 0, done),
                Err(e) if is_cancel(&e) => {
                    if done >= deadline {
                        ctx.fail(&mut inflight, Kind::Timeout);
                        continue 'conn;
                    }
                    continue;
                }
                Err(e) => {
                    ctx.fail(&mut inflight, kind_of(&e));
                    continue 'conn;
                }
            }
            let mut off = 0;
            loop {
                let head = inflight.front().is_some_and(|f| f.head);
                match parser.step(&rbuf[off..], head) {
                    Step::More(n) => {
                        off += n;
                        break;
                    }
                    Step::Done {
                        consumed,
                        status,
                        close,
                    } => {
                        off += consumed;
                        let Some(f) = inflight.pop_front() else {
                            ctx.fail(&mut inflight, Kind::Other); // a response nobody asked for
                            continue 'conn;
                        };
                        ctx.complete(&f, status, done);
                        if close {
                            // The server is done with this socket: re-send what it dropped.
                            for f in inflight.drain(..).rev() {
                                pending.push_front(f.intended);
                            }
                            continue 'conn;
                        }
                    }
                    Step::Bad => {
                        ctx.fail(&mut inflight, Kind::Other);
                        continue 'conn;
                    }
                }
            }
            rbuf.drain(..off);
        }
    }
}

/// Every second of the measured period (and at its end, for a final partial second), hand this
/// thread's interval histogram to the progress printer.
async fn ticker(ctx: Rc<Ctx>, tx: crossbeam_channel::Sender<TickMsg>) {
    let mut s = 1u64;
    loop {
        let at = ctx.measure + Duration::from_secs(s);
        monoio::time::sleep_until(mono(ctx.end.map_or(at, |e| e.min(at)))).await;
        if ctx.end.is_none() && ctx.shared.stop.load(Relaxed) {
            return;
        }
        let h = {
            let mut l = ctx.local.borrow_mut();
            let h = l.interval.clone();
            l.interval.reset();
            h
        };
        if tx.send((s, h)).is_err() || ctx.end.is_some_and(|e| at >= e) {
            return;
        }
        s += 1;
    }
}

/// Run connections `conns` (global indices) on the calling thread until the run stops.
pub fn run_thread(
    tid: usize,
    conns: Vec<usize>,
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    ticks: Option<crossbeam_channel::Sender<TickMsg>>,
) -> Result<ThreadResult, String> {
    let local = Rc::new(RefCell::new(Local {
        tid,
        shared: shared.clone(),
        hist: hist::new_hist(),
        interval: hist::new_hist(),
        status: BTreeMap::new(),
        errors: Errors::default(),
        bytes_read: 0,
        bytes_written: 0,
    }));
    let ctx = Rc::new(Ctx {
        measure: shared.t0 + cfg.measure_from,
        end: cfg.end.map(|e| shared.t0 + e),
        cfg,
        shared,
        local: local.clone(),
    });
    crate::rt::block_on(async move {
        let tick = ticks.map(|tx| monoio::spawn(ticker(ctx.clone(), tx)));
        let handles: Vec<_> = conns
            .into_iter()
            .map(|c| monoio::spawn(connection(ctx.clone(), c)))
            .collect();
        for h in handles {
            h.await;
        }
        if let (Some(t), Some(_)) = (tick, ctx.end) {
            t.await; // its last message covers the final (partial) second
        }
    })?;
    let mut l = local.borrow_mut();
    Ok(ThreadResult {
        hist: std::mem::replace(&mut l.hist, hist::new_hist()),
        status: std::mem::take(&mut l.status),
        errors: l.errors,
        bytes_read: l.bytes_read,
        bytes_written: l.bytes_written,
    })
}
