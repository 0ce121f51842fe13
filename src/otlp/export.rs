//! The `coregate-otlp` thread: gathers span batches from the workers and POSTs them to the
//! collector.
//!
//! Flow: wait for a batch; gather more until `batch` spans or `export_interval` after the first;
//! wrap them in one `ExportTraceServiceRequest` (`proto::request`) and send it with the gateway's
//! HTTP client (`crate::client::send`, on a small epoll runtime of this thread's own; `https://`
//! verified against the system's roots); give the emptied buffers back to the workers. A 2xx
//! counts the spans as exported. 429, 502, 503, 504 and connection failures are retried once after
//! the collector's `Retry-After` (at most 5 s) or 1 s; anything else drops the spans (counted),
//! reported on stderr when failures start and when exports recover. The loop ends when every
//! sender is gone, after exporting what was queued.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::{proto, Batch, Counters};
use crate::client::{ClientOpts, Request};
use crate::config::tracing::TracingConfig;

pub(super) struct Thread {
    pub cfg: TracingConfig,
    pub batches: Receiver<Batch>,
    pub spare: Sender<Vec<u8>>,
    pub counters: Arc<Counters>,
    /// Dropped when the thread ends (what `Exporter::close` waits for).
    pub _done: Sender<()>,
}

/// Longest wait a collector's `Retry-After` gets.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);

impl Thread {
    pub fn run(self) {
        let mut rt = match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!(
                    "coregate: OTLP exporter: cannot build its runtime: {e}; spans are dropped"
                );
                for b in self.batches.iter() {
                    self.counters.dropped.fetch_add(b.spans, Ordering::Relaxed);
                }
                return;
            }
        };
        let opts = ClientOpts {
            timeout: self.cfg.export_timeout,
            connect_timeout: self.cfg.export_timeout,
            max_body: 64 << 10,
            tls: None,
        };
        let mut spans_bytes = Vec::new();
        let mut body = Vec::new();
        let mut failing = false;
        while let Ok(first) = self.batches.recv() {
            let mut count = self.take(first, &mut spans_bytes);
            let deadline = Instant::now() + self.cfg.export_interval;
            let mut open = true;
            while count < self.cfg.batch as u64 {
                match self.batches.recv_deadline(deadline) {
                    Ok(b) => count += self.take(b, &mut spans_bytes),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            proto::request(&mut body, &self.cfg.service_name, &spans_bytes);
            spans_bytes.clear();
            let outcome = rt.block_on(self.export(&body, &opts));
            match outcome {
                Ok(()) => {
                    self.counters.exported.fetch_add(count, Ordering::Relaxed);
                    if failing {
                        eprintln!(
                            "coregate: OTLP export to {} works again",
                            self.cfg.otlp_endpoint
                        );
                        failing = false;
                    }
                }
                Err(why) => {
                    self.counters.dropped.fetch_add(count, Ordering::Relaxed);
                    if !failing {
                        eprintln!(
                            "coregate: OTLP export to {} failed ({why}); {count} spans dropped, \
                             reported again when exports recover",
                            self.cfg.otlp_endpoint
                        );
                        failing = true;
                    }
                }
            }
            if !open {
                break;
            }
        }
    }

    /// Appends a batch's spans and hands its buffer back; returns its span count.
    fn take(&self, b: Batch, into: &mut Vec<u8>) -> u64 {
        into.extend_from_slice(&b.bytes);
        let mut bytes = b.bytes;
        bytes.clear();
        let _ = self.spare.try_send(bytes);
        b.spans
    }

    /// One export, retried once when the collector asks for it.
    async fn export(&self, body: &[u8], opts: &ClientOpts) -> Result<(), String> {
        let mut tries = 0;
        loop {
            tries += 1;
            let (why, wait) = match self.post(body, opts).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            match wait {
                Some(wait) if tries == 1 => monoio::time::sleep(wait).await,
                _ => return Err(why),
            }
        }
    }

    /// One POST: `Err((why, Some(wait)))` when a retry may help.
    async fn post(&self, body: &[u8], opts: &ClientOpts) -> Result<(), (String, Option<Duration>)> {
        let req = Request {
            method: "POST",
            url: &self.cfg.otlp_endpoint,
            headers: &[("content-type", "application/x-protobuf")],
            body,
        };
        let resp = match crate::client::send(&req, opts).await {
            Ok(r) => r,
            Err(e) => return Err((e.to_string(), Some(Duration::from_secs(1)))),
        };
        match resp.status {
            200..=299 => Ok(()),
            s @ (429 | 502 | 503 | 504) => {
                let wait = resp
                    .header("retry-after")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map_or(Duration::from_secs(1), Duration::from_secs)
                    .min(MAX_RETRY_AFTER);
                Err((format!("collector answered {s}"), Some(wait)))
            }
            s => Err((format!("collector answered {s}"), None)),
        }
    }
}
