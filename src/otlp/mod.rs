//! OTLP trace export: one server span per sampled request, sent to a collector over OTLP/HTTP
//! (protobuf) by one thread, off the request path.
//!
//! Owns: [`Exporter`] (process-wide: the `coregate-otlp` thread, its bounded queue, the
//! exported/dropped counters) and [`SpanBuf`] (one per worker, behind `Rc`: the buffer spans are
//! encoded into). Flow: the worker's request record ends in [`SpanBuf::record`] with the same
//! [`Record`] the access log gets; a sampled span (the trace flags' sampled bit, decided by
//! `trace::Span::start`: the caller's flag, else `sample_ratio`) is encoded into the worker's
//! `Vec<u8>` (`proto.rs`, no lock, no allocation in the steady state). At `batch` spans, and on
//! the worker's flush timer, the buffer goes to the exporter with `try_send`; a full queue drops
//! the batch and counts its spans. The exporter (`export.rs`) gathers batches for up to
//! `export_interval` or `batch` spans, wraps them in one `ExportTraceServiceRequest` and POSTs it
//! (`application/x-protobuf`) with the gateway's own HTTP client; a failure is retried once when
//! the collector asks for it (429, 502, 503, 504, or no connection), else the spans are dropped
//! and counted. Shutdown: [`Exporter::close`] drops the queue's sender; the thread exports what is
//! queued and exits.

mod export;
mod proto;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use crossbeam_channel::{Receiver, Sender};

use crate::accesslog::Record;
use crate::config::tracing::TracingConfig;

/// Spans encoded by one worker, handed to the exporter in one piece.
struct Batch {
    bytes: Vec<u8>,
    spans: u64,
}

/// Counters the exporter thread and the admin share.
#[derive(Debug, Default)]
struct Counters {
    exported: AtomicU64,
    dropped: AtomicU64,
}

/// Process-wide: the exporter thread and its counters; disabled when `[tracing]` is absent.
pub struct Exporter {
    cfg: Option<TracingConfig>,
    counters: Arc<Counters>,
    batches: ArcSwapOption<Sender<Batch>>,
    /// Emptied buffers coming back from the exporter.
    spare: Receiver<Vec<u8>>,
    /// Disconnects when the thread has finished.
    done: Option<Receiver<()>>,
}

impl Exporter {
    /// Starts the `coregate-otlp` thread for `cfg` (none when tracing is not configured).
    pub fn start(cfg: Option<&TracingConfig>) -> Result<Arc<Exporter>, String> {
        let Some(cfg) = cfg else {
            return Ok(Arc::new(Exporter {
                cfg: None,
                counters: Arc::default(),
                batches: ArcSwapOption::empty(),
                spare: crossbeam_channel::never(),
                done: None,
            }));
        };
        let (batch_tx, batch_rx) = crossbeam_channel::bounded(cfg.queue.max(1));
        let (spare_tx, spare_rx) = crossbeam_channel::bounded(cfg.queue.max(1));
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let counters = Arc::new(Counters::default());
        let thread = export::Thread {
            cfg: cfg.clone(),
            batches: batch_rx,
            spare: spare_tx,
            counters: counters.clone(),
            _done: done_tx,
        };
        std::thread::Builder::new()
            .name("coregate-otlp".into())
            .spawn(move || thread.run())
            .map_err(|e| format!("cannot start the OTLP exporter thread: {e}"))?;
        Ok(Arc::new(Exporter {
            cfg: Some(cfg.clone()),
            counters,
            batches: ArcSwapOption::from_pointee(batch_tx),
            spare: spare_rx,
            done: Some(done_rx),
        }))
    }

    /// The `[tracing]` this exporter was started with (a reload compares it).
    pub fn config(&self) -> Option<&TracingConfig> {
        self.cfg.as_ref()
    }

    /// Spans the collector accepted.
    pub fn spans_exported(&self) -> u64 {
        self.counters.exported.load(Ordering::Relaxed)
    }

    /// Spans lost: queue full, export failed, or handed off after [`Exporter::close`].
    pub fn spans_dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Exports what is queued and stops the thread, waiting up to `timeout`. Idempotent.
    pub fn close(&self, timeout: Duration) {
        self.batches.store(None);
        if let Some(done) = &self.done {
            let _ = done.recv_timeout(timeout);
        }
    }
}

/// One worker's span buffer. Not `Send`: it lives in the worker behind `Rc`.
pub struct SpanBuf {
    exporter: Arc<Exporter>,
    buf: RefCell<Vec<u8>>,
    /// One span's body while it is encoded.
    scratch: RefCell<Vec<u8>>,
    spans: Cell<u64>,
    batch: u64,
    _not_send: std::marker::PhantomData<Rc<()>>,
}

impl SpanBuf {
    pub fn new(exporter: Arc<Exporter>) -> SpanBuf {
        let batch = exporter.cfg.as_ref().map_or(0, |c| c.batch as u64);
        SpanBuf {
            exporter,
            buf: RefCell::new(Vec::new()),
            scratch: RefCell::new(Vec::new()),
            spans: Cell::new(0),
            batch,
            _not_send: std::marker::PhantomData,
        }
    }

    /// Whether spans are exported at all (callers skip work for the record when not).
    pub fn enabled(&self) -> bool {
        self.batch > 0
    }

    /// Encodes `r` when tracing is on and its trace is sampled (`flags`: the traceparent's two
    /// hex flag characters); hands the buffer off at `batch` spans.
    pub fn record(&self, r: &Record<'_>, flags: [u8; 2]) {
        if !self.enabled() || r.trace_id.len() != 32 || !sampled(flags) {
            return;
        }
        proto::span_entry(
            &mut self.buf.borrow_mut(),
            &mut self.scratch.borrow_mut(),
            r,
        );
        self.spans.set(self.spans.get() + 1);
        if self.spans.get() >= self.batch {
            self.flush();
        }
    }

    /// Hands off what is buffered (the worker's flush timer, a full batch, draining). Never
    /// blocks.
    pub fn flush(&self) {
        let spans = self.spans.replace(0);
        if spans == 0 {
            return;
        }
        let mut buf = self.buf.borrow_mut();
        let batch = Batch {
            bytes: std::mem::take(&mut *buf),
            spans,
        };
        let sent = match &*self.exporter.batches.load() {
            Some(tx) => tx.try_send(batch).map_err(|e| e.into_inner()),
            None => Err(batch),
        };
        match sent {
            Ok(()) => *buf = self.exporter.spare.try_recv().unwrap_or_default(),
            Err(Batch { mut bytes, spans }) => {
                self.exporter
                    .counters
                    .dropped
                    .fetch_add(spans, Ordering::Relaxed);
                bytes.clear();
                *buf = bytes;
            }
        }
    }
}

impl Drop for SpanBuf {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The sampled bit of W3C trace flags (the low bit of the second hex digit).
fn sampled(flags: [u8; 2]) -> bool {
    matches!(
        flags[1],
        b'1' | b'3' | b'5' | b'7' | b'9' | b'b' | b'd' | b'f'
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn sampled_bit() {
        assert!(super::sampled(*b"01"));
        assert!(super::sampled(*b"ff"));
        assert!(!super::sampled(*b"00"));
        assert!(!super::sampled(*b"02"));
    }
}
