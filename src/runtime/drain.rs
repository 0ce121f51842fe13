//! The per-worker drain signal: a one-shot, thread-local broadcast.
//!
//! Owns: the "stop accepting, finish what is in flight" flag of one worker, and the wakers of every task
//! waiting on it (accept loops, idle keep-alive connections). Waiters register in a slab and deregister
//! when their future is dropped, so a connection that waits once per request leaves nothing behind.
//! Single-threaded (`Cell`/`RefCell`): the control task of the same worker triggers it.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub struct Drain {
    set: Cell<bool>,
    waiters: RefCell<slab::Slab<Option<Waker>>>,
}

impl Drain {
    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    /// Sets the flag and wakes every waiter. Idempotent.
    pub fn trigger(&self) {
        if self.set.replace(true) {
            return;
        }
        let wakers: Vec<Waker> = self
            .waiters
            .borrow_mut()
            .iter_mut()
            .filter_map(|(_, w)| w.take())
            .collect();
        for w in wakers {
            w.wake();
        }
    }

    /// Resolves once the drain is triggered.
    pub fn wait(&self) -> DrainWait<'_> {
        DrainWait {
            drain: self,
            key: None,
        }
    }
}

pub struct DrainWait<'a> {
    drain: &'a Drain,
    key: Option<usize>,
}

impl Future for DrainWait<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.drain.set.get() {
            return Poll::Ready(());
        }
        let mut waiters = self.drain.waiters.borrow_mut();
        match self.key {
            Some(k) => match &mut waiters[k] {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            },
            None => {
                let k = waiters.insert(Some(cx.waker().clone()));
                drop(waiters);
                self.key = Some(k);
            }
        }
        Poll::Pending
    }
}

impl Drop for DrainWait<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.key {
            self.drain.waiters.borrow_mut().try_remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_waiters_and_cleans_up() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap();
        rt.block_on(async {
            let d = std::rc::Rc::new(Drain::default());
            // a waiter that is dropped leaves no slot behind
            {
                let w = d.wait();
                let r = monoio::select! { _ = w => 1, _ = async {} => 2 };
                assert_eq!(r, 2);
            }
            assert!(d.waiters.borrow().is_empty());
            let d2 = d.clone();
            let h = monoio::spawn(async move { d2.wait().await });
            monoio::spawn({
                let d = d.clone();
                async move { d.trigger() }
            });
            h.await;
            assert!(d.is_set());
            assert!(d.waiters.borrow().is_empty());
        });
    }
}
