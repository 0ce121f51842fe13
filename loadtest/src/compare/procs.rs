//! Child processes for `compare`: spawning with a ready line or a TCP probe, a Drop guard that
//! SIGTERMs (then SIGKILLs) a child and its descendants, per-process CPU time, free ports, a
//! scratch directory, and a SIGINT/SIGTERM flag so an interrupted compare still cleans up.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM set a flag (checked by `stopped`) instead of killing us outright, so the
/// guards get to stop the children.
pub fn install_signal_flag() {
    let handler: extern "C" fn(libc::c_int) = on_signal;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    }
}

/// Whether we were asked to stop.
pub fn stopped() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// A running child: stopped (with its descendants) when dropped.
pub struct Guard {
    pub name: String,
    child: Child,
    /// stderr lines, read by a thread so the child never blocks on a full pipe.
    lines: Receiver<String>,
    tail: Vec<String>,
}

impl Guard {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// `Some(status)` once the child has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last stderr lines seen so far, for error messages.
    pub fn stderr_tail(&mut self) -> String {
        while let Ok(l) = self.lines.try_recv() {
            self.push(l);
        }
        self.tail.join("\n")
    }

    fn push(&mut self, l: String) {
        if self.tail.len() == 20 {
            self.tail.remove(0);
        }
        self.tail.push(l);
    }

    /// Waits for a stderr line containing `marker` and returns what follows it.
    pub fn wait_line(&mut self, marker: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || stopped() {
                return Err(format!(
                    "{}: no `{marker}` line within {timeout:?}",
                    self.name
                ));
            }
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(100)))
            {
                Ok(l) => {
                    let found = l
                        .find(marker)
                        .map(|i| l[i + marker.len()..].trim().to_string());
                    self.push(l);
                    if let Some(rest) = found {
                        return Ok(rest);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // stderr closed: the child is gone (or closed it); give it a moment to exit.
                    std::thread::sleep(Duration::from_millis(50));
                    let st = self
                        .exited()
                        .map_or("stderr closed".to_string(), |s| s.to_string());
                    let tail = self.stderr_tail();
                    return Err(format!(
                        "{} exited before it was ready ({st}):\n{tail}",
                        self.name
                    ));
                }
            }
        }
    }

    /// Waits until `addr` accepts TCP connections (for proxies without a ready line).
    pub fn wait_tcp(&mut self, addr: SocketAddr, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.exited() {
                let tail = self.stderr_tail();
                return Err(format!(
                    "{} exited before it was ready ({st}):\n{tail}",
                    self.name
                ));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline || stopped() {
                let tail = self.stderr_tail();
                return Err(format!(
                    "{} did not accept connections on {addr} within {timeout:?}:\n{tail}",
                    self.name
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the child: SIGTERM to it and its descendants, up to `grace`, then SIGKILL.
    pub fn stop(&mut self, grace: Duration) {
        if self.exited().is_some() {
            return;
        }
        let pid = self.pid();
        let mut all = descendants(pid);
        all.push(pid);
        for &p in &all {
            // SAFETY: plain syscall on pids we started (or their children).
            unsafe { libc::kill(p, libc::SIGTERM) };
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Descendants (nginx workers) may outlive a master that died: kill whatever is left.
        all.extend(descendants(pid));
        for &p in &all {
            if p == pid && self.exited().is_some() {
                continue;
            }
            if p != pid && !alive(p) {
                continue;
            }
            // SAFETY: as above.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        let _ = self.child.wait();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

/// Spawns `cmd` with stderr piped (lines forwarded to the guard), stdout discarded, stdin closed,
/// and SIGTERM delivered to it if we die without cleaning up.
pub fn spawn(name: &str, mut cmd: Command) -> Result<Guard, String> {
    use std::os::unix::process::CommandExt;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let affinity = ORIGINAL_AFFINITY.get().copied();
    // SAFETY: prctl and sched_setaffinity are async-signal-safe; the mask is a copy owned by the
    // closure.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            if let Some(set) = &affinity {
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set);
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {name} ({:?}): {e}", cmd.get_program()))?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            match line {
                Ok(l) => {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });
    Ok(Guard {
        name: name.to_string(),
        child,
        lines: rx,
        tail: Vec::new(),
    })
}

fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is parenthesised and may contain spaces: split after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// All descendants of `pid` (children, grandchildren, ...), from /proc.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            // Field 4 (ppid) is the second after the command name.
            if let Some(pp) = stat_fields(p).and_then(|f| f.get(1)?.parse::<i32>().ok()) {
                parent_of.push((p, pp));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(p, pp) in &parent_of {
            if pp == parent && !out.contains(&p) {
                out.push(p);
                frontier.push(p);
            }
        }
    }
    out
}

/// utime+stime of one process (all its threads), in microseconds, from /proc/PID/stat fields 14
/// and 15.
pub fn proc_cpu_us(pid: i32) -> Option<f64> {
    let f = stat_fields(pid)?;
    // Field n of the file is index n-3 after the command name.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Some(ticks as f64 * 1e6 / hz)
}

/// The same figure at nanosecond resolution: the process CPU-time clock, which the kernel keeps as
/// the exact sum over all threads (/proc's figure is that sum rounded down to clock ticks, 10 ms,
/// too coarse for short runs). Falls back to /proc when the clock cannot be read.
pub fn cpu_us(pid: i32) -> Option<f64> {
    let mut clock: libc::clockid_t = 0;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: both out-pointers are valid for writes.
    let ok = unsafe {
        libc::clock_getcpuclockid(pid, &mut clock) == 0 && libc::clock_gettime(clock, &mut ts) == 0
    };
    if ok {
        Some(ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3)
    } else {
        proc_cpu_us(pid)
    }
}

/// CPU time of a process tree (the proxy and, for nginx, its worker processes), microseconds.
pub fn tree_cpu_us(pid: i32) -> f64 {
    let mut total = cpu_us(pid).unwrap_or(0.0);
    for d in descendants(pid) {
        total += cpu_us(d).unwrap_or(0.0);
    }
    total
}

/// Our affinity before `pin_self`, restored in every child so each can pin itself anywhere.
static ORIGINAL_AFFINITY: OnceLock<libc::cpu_set_t> = OnceLock::new();

/// Pins the calling thread to `cpus`, keeping compare's own bookkeeping (and the stderr reader
/// threads) off the proxy's CPU. Children get the original affinity back (see `spawn`).
pub fn pin_self(cpus: &[usize]) {
    // SAFETY: cpu_set_t is plain data; CPU_SET bounds-checks against its size.
    unsafe {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        let mut orig: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size, &mut orig) != 0 {
            return;
        }
        let _ = ORIGINAL_AFFINITY.set(orig);
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, size, &set);
    }
}

/// Raises our soft open-files limit to the hard one; every child inherits it (1,000 connections
/// through a proxy need over 2,000 descriptors in the proxy and the generator).
pub fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit on a valid, owned struct.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// A free localhost port: bind :0, read it, drop the listener.
pub fn free_addr() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

/// Whether `prog` is an executable on PATH.
pub fn on_path(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(prog))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Result<TempDir, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p =
            std::env::temp_dir().join(format!("coregate-compare-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).map_err(|e| format!("cannot create {}: {e}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_time_is_readable() {
        let me = std::process::id() as i32;
        // Burn a little CPU so both readings are non-zero.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(cpu_us(me).unwrap() > 0.0);
        assert!(proc_cpu_us(me).is_some());
    }

    #[test]
    fn guard_stops_child_and_descendants() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30 & echo ready >&2; wait"]);
        let mut g = spawn("sh", cmd).unwrap();
        g.wait_line("ready", Duration::from_secs(5)).unwrap();
        let pid = g.pid();
        std::thread::sleep(Duration::from_millis(50));
        let kids = descendants(pid);
        assert_eq!(kids.len(), 1, "sleep should be a child of sh");
        drop(g);
        std::thread::sleep(Duration::from_millis(50));
        assert!(!alive(kids[0]) || stat_fields(kids[0]).is_none_or(|f| f[0] == "Z"));
    }

    #[test]
    fn early_exit_is_reported() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo boom >&2; exit 3"]);
        let mut g = spawn("sh", cmd).unwrap();
        let e = g
            .wait_line("listening on", Duration::from_secs(5))
            .unwrap_err();
        assert!(e.contains("boom"), "{e}");
    }
}
