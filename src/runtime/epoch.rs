//! A counter one helper thread advances after it publishes something, which tasks on any worker
//! can await without blocking their thread: how a process-wide helper (JWKS refresh, DNS) tells the
//! workers "new results are out".
//!
//! Owns: [`Epoch`] and its [`Changed`] future. The helper stores its result first (an `ArcSwap`, an
//! atomic) and then calls [`Epoch::advance`]; a task reads [`Epoch::get`] before it looks at the
//! published state, and if that state does not serve it, awaits [`Epoch::changed`] with the value it
//! read (usually under `monoio::time::timeout_at`), then looks again. No lock: waiters leave their
//! waker in a lock-free queue that `advance` drains; monoio's `sync` feature makes waking a task of
//! another thread safe.
//!
//! Ordering: a waiter queues its waker and then re-reads the counter; `advance` bumps the counter and
//! then drains the queue, each pair separated by a SeqCst fence, so either the waiter sees the new
//! value or `advance` sees its waker (no lost wake-up).
//!
//! Performance: waiting is for rare paths (a token with an unknown key id, a host name not resolved
//! yet): one waker clone per wait. A waker left by a waiter that timed out is woken (spuriously, and
//! harmlessly) at the next `advance`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use crossbeam_channel::{Receiver, Sender};

/// A published-results counter with waiters.
pub struct Epoch {
    n: AtomicU64,
    tx: Sender<Waker>,
    rx: Receiver<Waker>,
}

impl Default for Epoch {
    fn default() -> Self {
        Self::new()
    }
}

impl Epoch {
    pub fn new() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Epoch {
            n: AtomicU64::new(0),
            tx,
            rx,
        }
    }

    /// The current value; read it before looking at the published state.
    pub fn get(&self) -> u64 {
        self.n.load(Ordering::SeqCst)
    }

    /// Called by the publisher after storing new results: wakes every waiter.
    pub fn advance(&self) {
        self.n.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        while let Ok(w) = self.rx.try_recv() {
            w.wake();
        }
    }

    /// Resolves once the counter differs from `seen`.
    pub fn changed(&self, seen: u64) -> Changed<'_> {
        Changed { epoch: self, seen }
    }
}

/// Future of [`Epoch::changed`].
pub struct Changed<'a> {
    epoch: &'a Epoch,
    seen: u64,
}

impl Future for Changed<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.epoch.get() != self.seen {
            return Poll::Ready(());
        }
        // unbounded: never full; the receiver lives in the same struct, so never disconnected
        let _ = self.epoch.tx.send(cx.waker().clone());
        fence(Ordering::SeqCst);
        if self.epoch.get() != self.seen {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn rt() -> monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>> {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
    }

    #[test]
    fn another_thread_wakes_waiters() {
        let e = Arc::new(Epoch::new());
        let seen = e.get();
        let e2 = e.clone();
        let publisher = std::thread::spawn(move || {
            // publish only once the waiter is parked in the queue (or has already returned)
            while e2.rx.is_empty() {
                std::thread::yield_now();
            }
            e2.advance();
        });
        rt().block_on(async {
            let w = monoio::time::timeout(Duration::from_secs(10), e.changed(seen)).await;
            assert!(w.is_ok(), "woken by the publisher");
        });
        publisher.join().unwrap();
        assert_eq!(e.get(), seen + 1);
    }

    #[test]
    fn ready_at_once_when_already_changed_and_times_out_otherwise() {
        let e = Epoch::new();
        let seen = e.get();
        e.advance();
        rt().block_on(async {
            assert!(
                monoio::time::timeout(Duration::from_secs(10), e.changed(seen))
                    .await
                    .is_ok()
            );
            let now = e.get();
            assert!(
                monoio::time::timeout(Duration::from_millis(20), e.changed(now))
                    .await
                    .is_err(),
                "nothing published"
            );
        });
    }
}
