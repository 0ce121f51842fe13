//! Worker plumbing shared by `serve` and `relay`: CPU lists, listen-address parsing, the
//! thread-per-core listener pool and signal waiting.
//!
//! Data flow: [`spawn`] starts worker 0, which builds a monoio runtime (io_uring, epoll fallback),
//! binds an SO_REUSEPORT listener (resolving port 0) and reports the bound address back over a
//! channel; workers 1.. then bind the same resolved address. Each worker builds its connection
//! handler once (the caller's factory), then accepts and spawns one task per connection, keeping the
//! open connections' fds in a per-worker set. When the shared stop flag is raised it stops
//! accepting, shuts every open connection down (the peer sees EOF, the task's IO fails and it
//! ends) and gives the tasks a moment to finish. [`Pool`] owns the flag and the threads: dropping it
//! stops and joins the workers.

use std::cell::RefCell;
use std::collections::HashSet;
use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use monoio::net::{ListenerOpts, TcpListener, TcpStream};

/// How often an idle worker looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(20);
/// How long a stopping worker waits for its connection tasks to finish.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// A CPU list such as `0,2-3` (for `--cpus`); worker `i` is pinned to entry `i % len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

impl FromStr for CpuList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut cpus = Vec::new();
        for part in s.split(',').map(str::trim) {
            let num = |t: &str| {
                t.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("bad CPU list {s:?}: {t:?} is not a CPU number"))
            };
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (num(a)?, num(b)?);
                    if a > b {
                        return Err(format!("bad CPU list {s:?}: range {part:?} is reversed"));
                    }
                    cpus.extend(a..=b);
                }
                None => cpus.push(num(part)?),
            }
        }
        Ok(CpuList(cpus))
    }
}

/// Parses `HOST:PORT` (resolving names such as `localhost`) into the first address.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    // command-line parsing, before any serving thread starts (not the gateway's workers)
    #[allow(clippy::disallowed_methods)]
    s.to_socket_addrs()
        .map_err(|e| format!("bad address {s:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("bad address {s:?}: resolves to nothing"))
}

/// Running workers; dropping it raises the stop flag and joins them.
#[derive(Debug)]
pub struct Pool {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Resolves once `stop` is raised (checked every [`STOP_POLL`]).
async fn stopped(stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        monoio::time::sleep(STOP_POLL).await;
    }
}

/// Starts `workers` threads, each with its own runtime and SO_REUSEPORT listener on `listen`. Each
/// worker calls `make()` once and spawns `handler(stream)` per accepted connection until stopped.
/// Returns the bound address (port 0 resolved) and the pool; any bind failure stops the workers
/// already started and is returned as a one-line message.
pub fn spawn<M, H, Fut>(
    name: &str,
    listen: SocketAddr,
    workers: usize,
    cpus: Option<&CpuList>,
    make: M,
) -> Result<(SocketAddr, Pool), String>
where
    M: Fn() -> H + Send + Clone + 'static,
    H: Fn(TcpStream) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    if workers == 0 {
        return Err("--workers must be at least 1".into());
    }
    let cpus: Vec<usize> = match cpus {
        Some(list) => {
            if list.0.is_empty() {
                return Err("--cpus is empty".into());
            }
            let online = core_affinity::get_core_ids().unwrap_or_default();
            if let Some(bad) = list.0.iter().find(|c| !online.iter().any(|o| o.id == **c)) {
                return Err(format!("--cpus: CPU {bad} is not available"));
            }
            list.0.clone()
        }
        None => Vec::new(),
    };
    // SO_REUSEPORT would let us share a port with another reuseport listener (say a second serve):
    // probe with a plain socket first so an address in use is reported, not silently split.
    if listen.port() != 0 {
        std::net::TcpListener::bind(listen)
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut pool = Pool {
        stop: stop.clone(),
        threads: Vec::with_capacity(workers),
    };
    let mut addr = listen;
    for i in 0..workers {
        let (tx, rx) = crossbeam_channel::bounded::<Result<SocketAddr, String>>(1);
        let cpu = (!cpus.is_empty()).then(|| cpus[i % cpus.len()]);
        let (stop, make) = (stop.clone(), make.clone());
        let thread = std::thread::Builder::new()
            .name(format!("{name}-{i}"))
            .spawn(move || worker(addr, cpu, stop, tx, make))
            .map_err(|e| format!("cannot start worker thread: {e}"))?;
        pool.threads.push(thread);
        match rx.recv() {
            Ok(Ok(bound)) => addr = bound,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(format!("worker {i} exited during start-up")),
        }
    }
    Ok((addr, pool))
}

fn worker<M, H, Fut>(
    addr: SocketAddr,
    cpu: Option<usize>,
    stop: Arc<AtomicBool>,
    ready: crossbeam_channel::Sender<Result<SocketAddr, String>>,
    make: M,
) where
    M: Fn() -> H,
    H: Fn(TcpStream) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    if let Some(id) = cpu {
        if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
            eprintln!("coregate-load: could not pin a worker to CPU {id}");
        }
    }
    let fail = ready.clone();
    let ran = crate::rt::block_on(async move {
        let opts = ListenerOpts::new().reuse_port(true).backlog(4096);
        let listener = match TcpListener::bind_with_config(addr, &opts) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(format!("cannot listen on {addr}: {e}")));
                return;
            }
        };
        let bound = listener
            .local_addr()
            .map_err(|e| format!("cannot listen on {addr}: {e}"));
        let ok = bound.is_ok();
        let _ = ready.send(bound);
        drop(ready);
        if !ok {
            return;
        }
        let open: Open = Rc::default();
        monoio::select! {
            _ = accept_loop(listener, make(), open.clone()) => {},
            _ = stopped(stop) => {},
        }
        for fd in open.borrow().iter() {
            // SAFETY: every fd in the set belongs to a live connection task's socket (removed, on
            // this thread, before that socket can be closed); shutdown does not invalidate it.
            unsafe { libc::shutdown(*fd, libc::SHUT_RDWR) };
        }
        let deadline = std::time::Instant::now() + STOP_GRACE;
        while !open.borrow().is_empty() && std::time::Instant::now() < deadline {
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    if let Err(e) = ran {
        let _ = fail.send(Err(e));
    }
}

/// The fds of a worker's open connections.
type Open = Rc<RefCell<HashSet<RawFd>>>;

/// Removes a connection's fd from the open set when its task ends (or is dropped).
struct Tracked {
    open: Open,
    fd: RawFd,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.open.borrow_mut().remove(&self.fd);
    }
}

/// Accepts forever, spawning `handler(stream)` per connection; transient accept errors (EMFILE and
/// the like) back off briefly instead of spinning.
async fn accept_loop<H, Fut>(listener: TcpListener, handler: H, open: Open)
where
    H: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                let fd = stream.as_raw_fd();
                open.borrow_mut().insert(fd);
                let tracked = Tracked {
                    open: open.clone(),
                    fd,
                };
                let task = handler(stream);
                monoio::spawn(async move {
                    // The socket is dropped with `task`, before `tracked` removes its fd.
                    task.await;
                    drop(tracked);
                });
            }
            Err(_) => monoio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// Blocks SIGTERM and SIGINT on this thread (threads spawned later inherit the mask) so that
/// [`wait_for_signal`] can take them synchronously. Call before starting workers.
pub fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc calls on a zero-initialised, locally owned sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Waits for one of the signals in `set` (blocked by [`block_signals`]) and returns its number.
pub fn wait_for_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: `set` is a valid sigset_t and `sig` a valid out-pointer.
    while unsafe { libc::sigwait(set, &mut sig) } != 0 {}
    sig
}
