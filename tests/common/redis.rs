//! A real `redis-server` for integration tests: started on a free 127.0.0.1 port with persistence
//! off and its files in a unique temp dir, polled with PING until ready (no fixed sleeps), stopped
//! and restarted on the same port for outage tests, killed on drop. [`RedisServer::cmd`] runs a
//! command over a blocking socket with its own tiny RESP reader, independent of the client under
//! test, so tests can set up and inspect data.

use super::wait_until;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long redis-server may take to answer PING after being spawned.
pub const REDIS_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Ports tried before giving up (another process may grab a port between probe and bind).
const START_ATTEMPTS: usize = 5;
/// Socket timeouts of the blocking helpers.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A running redis-server owned by one test.
pub struct RedisServer {
    pub addr: SocketAddr,
    child: Option<Child>,
    dir: PathBuf,
}

/// Path of the redis-server binary: `$REDIS_SERVER`, else the first on `PATH` or in the usual
/// system directories. Panics with install instructions when there is none.
pub fn redis_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("REDIS_SERVER") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/usr/local/bin"].map(PathBuf::from))
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "redis-server not found on PATH: install redis-server (apt-get install redis-server) \
                 or set REDIS_SERVER to its path"
            )
        })
}

impl RedisServer {
    /// Starts a fresh server on a free port and waits until it answers PING.
    pub fn start() -> RedisServer {
        let bin = redis_server_bin();
        let dir = unique_dir();
        let mut errors = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let addr = free_addr();
            match spawn_ready(&bin, addr, &dir) {
                Ok(child) => {
                    return RedisServer {
                        addr,
                        child: Some(child),
                        dir,
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        panic!("redis-server did not start on {START_ATTEMPTS} ports: {errors:#?}");
    }

    /// Kills the server (SIGKILL: an outage, not a clean shutdown); the port stays this server's.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server if running, then starts it again on the same port and waits until ready.
    pub fn restart(&mut self) {
        self.stop();
        let bin = redis_server_bin();
        let deadline = Instant::now() + REDIS_READY_TIMEOUT;
        let mut errors = Vec::new();
        while Instant::now() < deadline && errors.len() < START_ATTEMPTS {
            match spawn_ready(&bin, self.addr, &self.dir) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(e) => errors.push(e),
            }
        }
        panic!("redis-server did not restart on {}: {errors:#?}", self.addr);
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Runs one command and renders the reply: status, integer and bulk replies as their text,
    /// `(nil)`, `(error) MESSAGE`, array elements joined by newlines. Panics on IO errors.
    pub fn cmd(&self, args: &[&str]) -> String {
        let run = || -> std::io::Result<String> {
            let mut s = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT)?;
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            s.set_write_timeout(Some(IO_TIMEOUT))?;
            let mut req = format!("*{}\r\n", args.len()).into_bytes();
            for a in args {
                req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                req.extend_from_slice(a.as_bytes());
                req.extend_from_slice(b"\r\n");
            }
            s.write_all(&req)?;
            read_reply(&mut BufReader::new(s))
        };
        run().unwrap_or_else(|e| panic!("redis cmd {args:?} on {} failed: {e}", self.addr))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Spawns redis-server on `addr` and waits for PONG; kills it and explains on failure.
fn spawn_ready(bin: &Path, addr: SocketAddr, dir: &Path) -> Result<Child, String> {
    let log = dir.join(format!("redis-{}.log", addr.port()));
    let mut child = Command::new(bin)
        .args(["--port", &addr.port().to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawning {}: {e}", bin.display()))?;
    let mut exited = None;
    let ready = wait_until(Instant::now() + REDIS_READY_TIMEOUT, || {
        if let Ok(Some(status)) = child.try_wait() {
            exited = Some(status);
            return true;
        }
        ping(addr)
    });
    if ready && exited.is_none() {
        return Ok(child);
    }
    let _ = child.kill();
    let _ = child.wait();
    let log_tail = std::fs::read_to_string(&log)
        .map(|l| l.lines().rev().take(5).collect::<Vec<_>>().join(" | "))
        .unwrap_or_default();
    Err(match exited {
        Some(status) => format!(
            "port {}: exited with {status}; log: {log_tail}",
            addr.port()
        ),
        None => format!("port {}: no PONG in time; log: {log_tail}", addr.port()),
    })
}

/// True when `addr` answers PING with PONG (not LOADING or anything else).
fn ping(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).is_ok() && line == "+PONG\r\n"
}

/// A port free right now on 127.0.0.1 (bound, read, released).
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
}

fn unique_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let dir = std::env::temp_dir().join(format!(
        "coregate-redis-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).expect("creating redis temp dir");
    dir
}

/// Reads one RESP2 reply and renders it as text (see [`RedisServer::cmd`]).
fn read_reply(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let line = line.trim_end_matches("\r\n");
    let bad = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad line {line:?}"),
        )
    };
    let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
    match kind {
        "+" | ":" => Ok(rest.to_string()),
        "-" => Ok(format!("(error) {rest}")),
        "$" => {
            let n: i64 = rest.parse().map_err(|_| bad())?;
            if n < 0 {
                return Ok("(nil)".into());
            }
            let mut data = vec![0; n as usize + 2];
            r.read_exact(&mut data)?;
            data.truncate(n as usize);
            Ok(String::from_utf8_lossy(&data).into_owned())
        }
        "*" => {
            let n: i64 = rest.parse().map_err(|_| bad())?;
            if n < 0 {
                return Ok("(nil)".into());
            }
            let items = (0..n)
                .map(|_| read_reply(r))
                .collect::<std::io::Result<Vec<_>>>()?;
            Ok(items.join("\n"))
        }
        _ => Err(bad()),
    }
}
