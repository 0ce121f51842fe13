//! The writer thread `coregate-log`: the only place access log bytes meet a file descriptor.
//!
//! Owns the sink (stdout or an append-mode file) and the loop that drains the batch channel.
//! Flow: workers `try_send` full [`Batch`]es (never blocking); [`run`] takes each one, reopens the
//! file first if [`Shared::reopen`] was raised (SIGUSR1, logrotate), writes the batch with one
//! `write_all`, adds its line count to [`Shared::written`], then clears the `Vec` and offers it
//! back on the spare channel so workers reuse it instead of allocating. The loop ends when every
//! sender is gone (`AccessLog::close` or drop), after the last queued batch is written.
//!
//! Errors: a failed write counts the batch's lines as dropped; a failed reopen keeps writing to
//! the old file. Both are reported on stderr once when they start and once when writes recover,
//! so a full disk does not flood stderr.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::config::access_log::LogSink;

/// A worker's buffer of whole lines, handed to the writer in one piece.
pub(super) struct Batch {
    pub bytes: Vec<u8>,
    /// Lines in `bytes`; what the counters add, once per batch.
    pub lines: u64,
}

/// What the `AccessLog` handle and the writer thread share. Touched once per batch, never per
/// line.
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// Lines the sink accepted.
    pub written: AtomicU64,
    /// Lines lost: queue full, log closed, or a failed write.
    pub dropped: AtomicU64,
    /// Raised by `AccessLog::reopen` on any thread; the writer lowers it and reopens before its
    /// next write.
    pub reopen: AtomicBool,
}

/// Where the writer puts bytes.
pub(super) enum Sink {
    Stdout,
    /// `path` is kept for reopening and for messages.
    File {
        path: PathBuf,
        file: File,
    },
    /// Tests: a function standing in for the file (it may block, to stall the writer).
    #[cfg(test)]
    Hook(HookFn),
}

/// Tests: what a [`Sink::Hook`] calls with each batch.
#[cfg(test)]
pub(super) type HookFn = Box<dyn FnMut(&[u8]) -> io::Result<()> + Send>;

impl Sink {
    /// Opens the configured sink; `None` when logging is off. The error names the file.
    pub fn open(sink: &LogSink) -> Result<Option<Sink>, String> {
        Ok(match sink {
            LogSink::Off => None,
            LogSink::Stdout => Some(Sink::Stdout),
            LogSink::File(path) => {
                let file = open_append(path)
                    .map_err(|e| format!("cannot open access log file {}: {e}", path.display()))?;
                Some(Sink::File {
                    path: path.clone(),
                    file,
                })
            }
        })
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Sink::File { file, .. } => file.write_all(bytes),
            #[cfg(test)]
            Sink::Hook(f) => f(bytes),
        }
    }

    /// Opens the path again (logrotate moved the old file away); stdout has nothing to reopen.
    /// On failure the old file stays in use.
    fn reopen(&mut self) -> io::Result<()> {
        if let Sink::File { path, file } = self {
            *file = open_append(path)?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        match self {
            Sink::Stdout => "stdout".to_owned(),
            Sink::File { path, .. } => path.display().to_string(),
            #[cfg(test)]
            Sink::Hook(_) => "test hook".to_owned(),
        }
    }
}

/// Append mode, created (0644 less the umask) when missing.
fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).create(true).open(path)
}

/// The writer thread's body; returns when every batch sender is gone and the queue is empty.
/// `_done` is dropped on return, which is how `AccessLog::close` learns the writer finished.
pub(super) fn run(
    mut sink: Sink,
    batches: Receiver<Batch>,
    spare: Sender<Vec<u8>>,
    shared: Arc<Shared>,
    _done: Sender<()>,
) {
    let mut failing = false;
    while let Ok(Batch { mut bytes, lines }) = batches.recv() {
        if shared.reopen.swap(false, Ordering::AcqRel) {
            if let Err(e) = sink.reopen() {
                let name = sink.describe();
                eprintln!("coregate: access log: cannot reopen {name}: {e} (still writing to the old file)");
            }
        }
        match sink.write(&bytes) {
            Ok(()) => {
                shared.written.fetch_add(lines, Ordering::Relaxed);
                if failing {
                    failing = false;
                    eprintln!("coregate: access log: writing to {} again", sink.describe());
                }
            }
            Err(e) => {
                shared.dropped.fetch_add(lines, Ordering::Relaxed);
                if !failing {
                    failing = true;
                    let name = sink.describe();
                    eprintln!("coregate: access log: write to {name} failed: {e} (dropping lines until it works again)");
                }
            }
        }
        bytes.clear();
        // Full: enough spares are waiting already; this one is freed.
        let _ = spare.try_send(bytes);
    }
}
