//! Cross-thread control of workers: a crossbeam channel plus a waker the control thread can fire.
//!
//! Owns: [`ControlTx`] (held by the main thread) and [`ControlRx`] (held by a worker's control task).
//! The sender pushes a [`Control`] message onto a crossbeam channel and then wakes the worker through
//! an `AtomicWaker`; monoio's `sync` feature makes that wake-up safe from another thread. Nothing here
//! is on the request path.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;

use atomic_waker::AtomicWaker;
use crossbeam_channel::{Receiver, Sender};

/// Messages the main, control and admin threads send to a worker.
pub enum Control {
    /// Stop accepting, finish in-flight requests, close idle connections, then exit.
    Drain,
    /// Copy the worker's statistics and send them back (a `/metrics` or `/stats` scrape).
    Snapshot(Sender<crate::metrics::snapshot::WorkerSnap>),
    /// Switch new requests to this config generation; answer with the worker id once switched.
    Reload(Arc<super::reload::Shared>, Sender<usize>),
    /// Remove entries from the response cache; answer with how many went.
    Purge(crate::cache::Purge, Sender<usize>),
    /// Serve this connection another worker accepted (`spread.rs`; on the hand-off channel).
    Adopt(super::spread::Adopted),
}

struct Bell {
    rung: AtomicBool,
    waker: AtomicWaker,
}

#[derive(Clone)]
pub struct ControlTx {
    tx: Sender<Control>,
    bell: Arc<Bell>,
}

pub struct ControlRx {
    rx: Receiver<Control>,
    bell: Arc<Bell>,
}

pub fn channel() -> (ControlTx, ControlRx) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let bell = Arc::new(Bell {
        rung: AtomicBool::new(false),
        waker: AtomicWaker::new(),
    });
    (
        ControlTx {
            tx,
            bell: bell.clone(),
        },
        ControlRx { rx, bell },
    )
}

impl ControlTx {
    pub fn send(&self, msg: Control) {
        // a worker that already exited has dropped its receiver: nothing to do
        let _ = self.tx.send(msg);
        self.bell.rung.store(true, Ordering::Release);
        self.bell.waker.wake();
    }
}

impl ControlRx {
    /// The next message if one is waiting.
    #[cfg(test)]
    pub fn try_recv(&self) -> Option<Control> {
        self.rx.try_recv().ok()
    }

    /// Waits for the next message. Returns None when the sender is gone.
    pub async fn recv(&self) -> Option<Control> {
        poll_fn(|cx| {
            self.bell.waker.register(cx.waker());
            self.bell.rung.store(false, Ordering::Release);
            match self.rx.try_recv() {
                Ok(m) => Poll::Ready(Some(m)),
                Err(crossbeam_channel::TryRecvError::Disconnected) => Poll::Ready(None),
                Err(crossbeam_channel::TryRecvError::Empty) => Poll::Pending,
            }
        })
        .await
    }
}
