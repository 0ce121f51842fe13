//! The access log: one JSON line per request, buffered per worker, written off the hot path.
//!
//! Owns: [`AccessLog`] (process-wide: the `coregate-log` writer thread, its bounded queue, the
//! written/dropped counters, the reopen flag), [`LogBuf`] (one per worker, behind `Rc`: the buffer
//! lines are formatted into) and [`Record`] (what a finished request contributes; `format.rs`).
//!
//! Flow: the worker calls [`LogBuf::record`] after each response; the line is formatted into the
//! worker's own `Vec<u8>` (no lock, no atomic, no allocation in the steady state). When the buffer
//! reaches `buffer` bytes, and every `flush_interval` from the worker's timer, [`LogBuf::flush`]
//! hands the whole `Vec` to the writer with `try_send` on a bounded crossbeam channel and takes an
//! emptied `Vec` back from a second channel (allocating one only when none is waiting). The writer
//! (`writer.rs`) writes each batch with one `write_all` and returns the `Vec`.
//!
//! Backpressure: a worker never waits for the disk. When `queue` batches are already waiting, the
//! batch is dropped, its lines counted in [`AccessLog::lines_dropped`], and the `Vec` kept. Memory
//! is bounded: buffers exist only in the queue (at most `queue`), on the spare channel, in the
//! writer (one) and in the workers (one each), and a new one is allocated only when the spare
//! channel is empty, so there are never more than `queue + 1 + workers` of them.
//!
//! Shutdown: [`AccessLog::close`] drops the queue's sender; the writer writes what is queued and
//! exits. Batches handed off after that are counted as dropped, so at any quiet moment
//! `lines_written + lines_dropped` equals the lines recorded.
//!
//! Errors: opening the file at start is an error naming it; later write and reopen failures are
//! reported on stderr by the writer (and write failures counted as dropped lines).

mod format;
mod writer;

pub use format::Record;

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use crossbeam_channel::{Receiver, Sender};

use crate::config::access_log::{AccessLogConfig, LogFormat, LogSink};
use writer::{Batch, Shared, Sink};

/// A buffer is handed off at the first line that takes it to `buffer` bytes, so it holds at most
/// one line more; 4 KiB of room covers a typical line (300-600 bytes) several times over, so a
/// batch rarely grows past its first allocation.
const LINE_SLACK: usize = 4 << 10;

/// Process-wide: the writer thread and counters. Built once at start (and rebuilt only if the
/// sink config changes on reload). `Send + Sync`; workers hold it through their [`LogBuf`].
pub struct AccessLog {
    cfg: AccessLogConfig,
    shared: Arc<Shared>,
    /// The queue to the writer; `None` when logging is off or after [`AccessLog::close`]. Loaded
    /// once per hand-off, never per line.
    batches: ArcSwapOption<Sender<Batch>>,
    /// Emptied buffers coming back from the writer.
    spare: Receiver<Vec<u8>>,
    /// Disconnects when the writer thread has finished; `None` when there is no writer.
    done: Option<Receiver<()>>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("cfg", &self.cfg)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl AccessLog {
    /// Spawns the writer thread `coregate-log` (unless sink = off, then returns a disabled log).
    /// The file sink is opened here, so a bad path fails at start with an error naming the file.
    pub fn start(cfg: &AccessLogConfig) -> Result<Arc<AccessLog>, String> {
        match Sink::open(&cfg.sink)? {
            None => Ok(Arc::new(AccessLog::disabled(cfg))),
            Some(sink) => AccessLog::spawn(cfg, sink),
        }
    }

    fn disabled(cfg: &AccessLogConfig) -> AccessLog {
        AccessLog {
            cfg: AccessLogConfig {
                sink: LogSink::Off,
                ..cfg.clone()
            },
            shared: Arc::default(),
            batches: ArcSwapOption::empty(),
            spare: crossbeam_channel::never(),
            done: None,
        }
    }

    fn spawn(cfg: &AccessLogConfig, sink: Sink) -> Result<Arc<AccessLog>, String> {
        // A zero-capacity channel would only accept a batch while the writer is waiting.
        let queue = cfg.queue.max(1);
        let (batch_tx, batch_rx) = crossbeam_channel::bounded(queue);
        let (spare_tx, spare_rx) = crossbeam_channel::bounded(queue);
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let shared = Arc::new(Shared::default());
        let for_writer = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("coregate-log".into())
            .spawn(move || writer::run(sink, batch_rx, spare_tx, for_writer, done_tx))
            .map_err(|e| format!("cannot start the access log writer thread: {e}"))?;
        Ok(Arc::new(AccessLog {
            cfg: cfg.clone(),
            shared,
            batches: ArcSwapOption::from_pointee(batch_tx),
            spare: spare_rx,
            done: Some(done_rx),
        }))
    }

    /// Whether lines are formatted and written at all (`sink` is not `off`).
    pub fn enabled(&self) -> bool {
        self.cfg.sink != LogSink::Off
    }

    /// The configuration this log was started with (workers read `flush_interval` from it; a
    /// reload compares `sink`, `format` and `queue` to decide whether to start a new log).
    pub fn config(&self) -> &AccessLogConfig {
        &self.cfg
    }

    /// Reopen the file (SIGUSR1, for logrotate). No-op for stdout/off. Callable from any thread
    /// (the signal-handling thread); the writer thread does the actual reopen before its next
    /// write.
    pub fn reopen(&self) {
        if matches!(self.cfg.sink, LogSink::File(_)) {
            self.shared.reopen.store(true, Ordering::Release);
        }
    }

    /// Lines the sink has accepted so far.
    pub fn lines_written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Lines lost so far: queue full, handed off after [`AccessLog::close`], or a failed write.
    pub fn lines_dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Stops the writer after it wrote everything already queued (used at shutdown). Idempotent.
    /// Blocks up to `timeout`; past it the writer goes on in the background until the queue is
    /// empty.
    pub fn close(&self, timeout: Duration) {
        // A worker in the middle of a hand-off holds the sender a moment longer; the writer ends
        // when the last one is gone, after writing everything that was sent.
        self.batches.store(None);
        if let Some(done) = &self.done {
            // `Disconnected` (the writer exited) or `Timeout`: either way, stop waiting.
            let _ = done.recv_timeout(timeout);
        }
    }

    #[cfg(test)]
    fn start_with_sink(cfg: &AccessLogConfig, sink: Sink) -> Arc<AccessLog> {
        AccessLog::spawn(cfg, sink).expect("spawn the writer thread")
    }
}

/// One worker's buffer. Not `Send`: it lives in the worker (behind `Rc`) and uses plain
/// `Cell`/`RefCell`, no atomics per line. Dropping it hands off what is left.
pub struct LogBuf {
    log: Arc<AccessLog>,
    buf: RefCell<Vec<u8>>,
    /// Lines in `buf`.
    lines: Cell<u64>,
    enabled: bool,
    format: LogFormat,
    /// Hand-off threshold in bytes.
    limit: usize,
    _not_send: PhantomData<Rc<()>>,
}

impl std::fmt::Debug for LogBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogBuf")
            .field("bytes", &self.buf.borrow().len())
            .field("lines", &self.lines.get())
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl LogBuf {
    pub fn new(log: Arc<AccessLog>) -> LogBuf {
        let enabled = log.enabled();
        let limit = log.cfg.buffer;
        let buf = match enabled {
            true => Vec::with_capacity(limit + LINE_SLACK),
            false => Vec::new(),
        };
        LogBuf {
            format: log.cfg.format,
            log,
            buf: RefCell::new(buf),
            lines: Cell::new(0),
            enabled,
            limit,
            _not_send: PhantomData,
        }
    }

    /// Formats one JSON line into the buffer; hands the buffer to the writer when it reaches
    /// `buffer` bytes. Never blocks: if the writer's queue is full the batch is dropped and its
    /// lines counted as dropped. Does nothing when the log is disabled.
    pub fn record(&self, r: &Record<'_>) {
        if !self.enabled {
            return;
        }
        let full = {
            let mut buf = self.buf.borrow_mut();
            match self.format {
                LogFormat::Json => format::write_json_line(&mut buf, r),
            }
            buf.len() >= self.limit
        };
        self.lines.set(self.lines.get() + 1);
        if full {
            self.flush();
        }
    }

    /// Hands off whatever is buffered (the worker calls this every flush_interval and when
    /// draining). Never blocks; a no-op when the buffer is empty.
    pub fn flush(&self) {
        let lines = self.lines.replace(0);
        if lines == 0 {
            return;
        }
        let mut buf = self.buf.borrow_mut();
        let batch = Batch {
            bytes: std::mem::take(&mut *buf),
            lines,
        };
        let sent = match &*self.log.batches.load() {
            Some(tx) => tx.try_send(batch).map_err(|e| e.into_inner()),
            None => Err(batch),
        };
        match sent {
            Ok(()) => {
                *buf = self
                    .log
                    .spare
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(self.limit + LINE_SLACK));
            }
            Err(Batch { mut bytes, lines }) => {
                self.log.shared.dropped.fetch_add(lines, Ordering::Relaxed);
                bytes.clear();
                *buf = bytes;
            }
        }
    }

    /// Whether [`LogBuf::record`] does anything (the log's sink is not `off`): callers can skip
    /// building a [`Record`] when it does not.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Lines buffered and not yet handed off.
    pub fn pending_lines(&self) -> u64 {
        self.lines.get()
    }
}

impl Drop for LogBuf {
    /// A worker that stops without a final `flush` still hands its lines off (or counts them).
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests;
