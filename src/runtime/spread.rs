//! Load-aware connection spread across workers.
//!
//! Owns: each worker's count of open client connections (one atomic per worker, written by its
//! owner only, read by the others on accept) and the hand-off of a freshly accepted connection to
//! the least-loaded worker.
//!
//! SO_REUSEPORT gives each worker the connections that hash to its socket, blind to how busy the
//! worker is: with few long-lived connections (64 keep-alive clients over 8 cores) one core can
//! hold half again the average and the busiest core caps the whole process. So, on accept, a
//! worker that holds more than `SLACK` (and a sixteenth) more open connections than the least-loaded one
//! passes the socket to it instead of serving it: the fd goes over that worker's hand-off
//! channel (`control::channel`, crossbeam plus a cross-thread wake), and the receiving worker
//! registers it with its own ring and serves it like one of its own (`worker::serve_accepted`).
//! Cost: one channel send and one wake-up per connection handed off; none for the others (two
//! relaxed loads per worker on accept). `--connection-balance kernel` turns it off.
//!
//! Data flow: `accept_loop` takes a [`Load`] guard per accepted connection -> [`Spread::target`]
//! -> [`Spread::hand_off`] (the guard now counts at the target) -> the target's `Control::Adopt`
//! -> its `serve_accepted`, which holds the guard for the connection's life.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::control::{Control, ControlTx};

/// How far ahead of the least-loaded worker a worker may get before it hands connections off
/// (plus a sixteenth of that worker's load, so large counts are not shuffled for a few).
const SLACK: u32 = 1;

/// `--connection-balance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Balance {
    /// Hand a new connection to the least-loaded worker when this one is ahead.
    LeastLoaded,
    /// Keep whatever SO_REUSEPORT's hash gives each worker.
    Kernel,
}

/// A connection on its way to another worker.
pub struct Adopted {
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    /// Index of the `[[listener]]` entry, as in `accept_loop`.
    pub listener: Option<usize>,
    /// Counted at the receiving worker from the moment it was handed off.
    pub load: Load,
}

/// The process-wide part: every worker's load and hand-off inbox.
pub struct Spread {
    on: bool,
    load: Box<[AtomicU32]>,
    inbox: Vec<ControlTx>,
}

impl Spread {
    /// `inbox[w]`: worker w's hand-off channel.
    pub fn new(balance: Balance, inbox: Vec<ControlTx>) -> Spread {
        let n = inbox.len();
        Spread {
            on: balance == Balance::LeastLoaded && n > 1,
            load: (0..n).map(|_| AtomicU32::new(0)).collect(),
            inbox,
        }
    }

    /// The worker that should take a connection `me` just accepted, when not `me`.
    pub fn target(&self, me: usize) -> Option<usize> {
        if !self.on {
            return None;
        }
        let mine = self.load[me].load(Ordering::Relaxed);
        let (best, least) = (self.load.iter().enumerate())
            .filter(|(w, _)| *w != me)
            .map(|(w, l)| (w, l.load(Ordering::Relaxed)))
            .min_by_key(|(_, l)| *l)?;
        (mine > least + SLACK + least / 16).then_some(best)
    }

    /// Sends the connection to worker `to`, counted there from now on (so a burst of accepts
    /// spreads instead of piling onto the same worker).
    pub fn hand_off(
        self: &Arc<Self>,
        to: usize,
        stream: std::net::TcpStream,
        peer: SocketAddr,
        listener: Option<usize>,
    ) {
        let conn = Adopted {
            stream,
            peer,
            listener,
            load: self.enter(to),
        };
        self.inbox[to].send(Control::Adopt(conn));
    }

    /// Counts a connection on worker `w` for as long as the guard lives: taken when the
    /// connection is accepted, so a burst of accepts sees each one at once.
    pub fn enter(self: &Arc<Self>, w: usize) -> Load {
        self.load[w].fetch_add(1, Ordering::Relaxed);
        Load {
            spread: self.clone(),
            w,
        }
    }
}

/// One open connection on a worker.
pub struct Load {
    spread: Arc<Spread>,
    w: usize,
}

impl Drop for Load {
    fn drop(&mut self) {
        self.spread.load[self.w].fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spread(n: usize, balance: Balance) -> (Arc<Spread>, Vec<super::super::control::ControlRx>) {
        let (tx, rx): (Vec<_>, Vec<_>) = (0..n).map(|_| super::super::control::channel()).unzip();
        (Arc::new(Spread::new(balance, tx)), rx)
    }

    #[test]
    fn a_worker_ahead_of_the_least_loaded_hands_off_to_it() {
        let (s, _rx) = spread(3, Balance::LeastLoaded);
        let held: Vec<Load> = (0..5).map(|_| s.enter(0)).collect();
        let _one = s.enter(1);
        // worker 0: 5, worker 1: 1, worker 2: 0 -> 5 > 0 + 1
        assert_eq!(s.target(0), Some(2));
        assert_eq!(
            s.target(2),
            None,
            "the least-loaded one keeps its connections"
        );
        drop(held);
        assert_eq!(s.target(0), None, "guards give the count back");
    }

    #[test]
    fn slack_grows_with_load_and_kernel_mode_never_hands_off() {
        let (s, _rx) = spread(2, Balance::LeastLoaded);
        let _a: Vec<Load> = (0..90).map(|_| s.enter(0)).collect();
        let _b: Vec<Load> = (0..80).map(|_| s.enter(1)).collect();
        // 90 vs 80: more than 1 + 80/16 = 6 ahead, so hand off; 84 vs 80 stays
        assert_eq!(s.target(0), Some(1));
        let (s, _rx) = spread(2, Balance::LeastLoaded);
        let _a: Vec<Load> = (0..84).map(|_| s.enter(0)).collect();
        let _b: Vec<Load> = (0..80).map(|_| s.enter(1)).collect();
        assert_eq!(s.target(0), None);
        let (k, _rx) = spread(2, Balance::Kernel);
        let _c: Vec<Load> = (0..50).map(|_| k.enter(0)).collect();
        assert_eq!(k.target(0), None);
        let (one, _rx) = spread(1, Balance::LeastLoaded);
        let _d: Vec<Load> = (0..50).map(|_| one.enter(0)).collect();
        assert_eq!(one.target(0), None);
    }

    #[test]
    fn a_handed_off_connection_is_counted_at_its_new_worker_at_once() {
        let (s, rx) = spread(2, Balance::LeastLoaded);
        let _a: Vec<Load> = (0..3).map(|_| s.enter(0)).collect();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (stream, peer) = l.accept().unwrap();
        s.hand_off(1, stream, peer, None);
        assert_eq!(s.load[1].load(Ordering::Relaxed), 1);
        let Some(Control::Adopt(a)) = rx[1].try_recv() else {
            panic!("nothing handed off")
        };
        assert_eq!(a.peer, peer);
        drop(a);
        assert_eq!(
            s.load[1].load(Ordering::Relaxed),
            0,
            "the adopted connection's guard"
        );
        drop(c);
    }
}
