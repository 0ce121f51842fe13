//! Large relay buffers: each worker's pool of big buffers that long response bodies stream
//! through.
//!
//! Owns: lending a `LARGE` buffer to an upstream connection whose response body does not fit in
//! the connection's own 16 KiB buffer (`UpConn::widen`, called by the relay once the head and the
//! first piece of body have gone to the client), and taking it back when the connection goes back
//! to the pool or closes (`UpConn::narrow`). A 64 KiB body then moves in one or two reads and
//! writes instead of six or eight, and a 1 MiB body in a handful (each read takes what the socket
//! holds, up to the buffer). Pooled and idle connections keep only their own 16 KiB buffers, so
//! they cost no more memory. (Lending for the response head's read too, so a 64 KiB response
//! arrives in one read, measured no better at 64 KiB and 2-5% worse CPU for small responses.)
//!
//! Bounds: at most `MAX_LENT` buffers out per worker at once (past that a relay keeps its small
//! buffer: slower, never unbounded memory) and at most `MAX_KEPT` kept between relays, so the
//! steady state allocates nothing. The pool is per thread: workers are pinned threads and share
//! nothing; the `RefCell` is never borrowed across an `.await`.

use std::cell::RefCell;

/// Size of a lent buffer unless `--relay-buffer` says otherwise.
pub const LARGE: usize = 256 * 1024;
/// Most buffers lent at once per worker (64 MiB worst case).
const MAX_LENT: usize = 256;
/// Most free buffers kept per worker between relays (8 MiB).
const MAX_KEPT: usize = 32;

struct Pool {
    free: Vec<Vec<u8>>,
    lent: usize,
    /// Size of the buffers lent; 0 = none are (every relay keeps its connection's buffer).
    size: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const {
        RefCell::new(Pool {
            free: Vec::new(),
            lent: 0,
            size: LARGE,
        })
    };
}

/// Sets this worker's buffer size (`--relay-buffer`; 0 turns lending off). Called once when the
/// worker starts, before any relay.
pub fn set_size(size: usize) {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        p.size = size;
        p.free.clear();
    })
}

/// A large empty buffer, or None when lending is off or this worker has `MAX_LENT` out already.
fn lend() -> Option<Vec<u8>> {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.lent >= MAX_LENT || p.size == 0 {
            return None;
        }
        p.lent += 1;
        let size = p.size;
        Some(p.free.pop().unwrap_or_else(|| Vec::with_capacity(size)))
    })
}

/// Takes a lent buffer back (cleared; kept for the next relay unless `MAX_KEPT` are). A buffer
/// given back while the thread is exiting (its pool already gone) is simply freed.
fn give_back(mut buf: Vec<u8>) {
    let _ = POOL.try_with(|p| {
        let mut p = p.borrow_mut();
        p.lent = p.lent.saturating_sub(1);
        if p.free.len() < MAX_KEPT && p.size > 0 && buf.capacity() >= p.size {
            buf.clear();
            p.free.push(buf);
        }
    });
}

/// Swaps a large buffer into `buf` when `need` more bytes are to come and do not fit, keeping the
/// small one in `spare` (once per response; `restore` puts it back).
pub fn widen(buf: &mut Vec<u8>, spare: &mut Option<Vec<u8>>, need: u64) {
    if spare.is_some() || need <= buf.capacity() as u64 {
        return;
    }
    if let Some(big) = lend() {
        *spare = Some(std::mem::replace(buf, big));
    }
}

/// Puts the connection's own buffer back (empty) and returns the large one to the pool.
pub fn restore(buf: &mut Vec<u8>, spare: &mut Option<Vec<u8>>) {
    if let Some(mut small) = spare.take() {
        small.clear();
        give_back(std::mem::replace(buf, small));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widen_only_for_bodies_that_do_not_fit_and_restore_returns_the_buffer() {
        let mut buf = Vec::with_capacity(16 * 1024);
        buf.extend_from_slice(b"head");
        let mut spare = None;
        widen(&mut buf, &mut spare, 1000);
        assert!(spare.is_none(), "a body that fits keeps the small buffer");
        widen(&mut buf, &mut spare, 60_000);
        assert_eq!(buf.capacity(), LARGE);
        assert_eq!(spare.as_ref().unwrap(), b"head");
        widen(&mut buf, &mut spare, 600_000);
        assert_eq!(spare.as_ref().unwrap(), b"head", "widened once per relay");
        restore(&mut buf, &mut spare);
        assert!(buf.is_empty() && buf.capacity() == 16 * 1024);
        POOL.with(|p| assert_eq!((p.borrow().lent, p.borrow().free.len()), (0, 1)));
        // the kept buffer is lent again: no allocation in the steady state
        let again = lend().unwrap();
        POOL.with(|p| assert_eq!(p.borrow().free.len(), 0));
        give_back(again);
    }

    #[test]
    fn lending_is_bounded() {
        let out: Vec<Vec<u8>> = std::iter::from_fn(lend).take(MAX_LENT + 5).collect();
        assert_eq!(out.len(), MAX_LENT);
        let mut buf = Vec::with_capacity(16);
        let mut spare = None;
        widen(&mut buf, &mut spare, 1 << 20);
        assert!(
            spare.is_none(),
            "past the bound a relay keeps its own buffer"
        );
        out.into_iter().for_each(give_back);
        POOL.with(|p| assert_eq!((p.borrow().lent, p.borrow().free.len()), (0, MAX_KEPT)));
    }

    #[test]
    fn size_zero_turns_lending_off() {
        set_size(0);
        let mut buf = Vec::with_capacity(16);
        let mut spare = None;
        widen(&mut buf, &mut spare, 1 << 20);
        assert!(spare.is_none() && lend().is_none());
        set_size(64 * 1024);
        assert_eq!(lend().unwrap().capacity(), 64 * 1024);
    }
}
