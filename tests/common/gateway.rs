//! Spawning the real `coregate` binary: config written to a unique temp file, `run` with
//! `--listen 127.0.0.1:0 --workers 2 --no-pin --driver D`, the `coregate: ready ...` stderr line
//! parsed for the bound addresses (other stderr lines are forwarded to the test's stderr),
//! signals, exit status, RSS, admin scraping, and `for_each_driver`, which runs a test body
//! under io_uring and epoll (skipping io_uring loudly when the host lacks it).

use super::client::{get, req, Client, Response};
use super::wait_until;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long the gateway may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_coregate")
}

/// A unique path in the temp dir.
pub fn temp_path(ext: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    std::env::temp_dir().join(format!(
        "coregate-test-{}-{}-{nanos}.{ext}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ))
}

/// Writes `contents` to a fresh temp file.
pub fn write_temp(contents: &str, ext: &str) -> PathBuf {
    let p = temp_path(ext);
    std::fs::write(&p, contents).unwrap();
    p
}

/// A config with the given extra `[server]` keys and an admin listener on an ephemeral port.
/// `server.listen` is left out: every test passes `--listen 127.0.0.1:0`.
pub fn config(server_extra: &str, rest: &str) -> String {
    format!("[server]\n{server_extra}\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n{rest}\n")
}

/// An `[[upstream]]` table with plain endpoints and extra keys (one per line).
pub fn upstream_toml(name: &str, endpoints: &[SocketAddr], extra: &str) -> String {
    let eps: Vec<String> = endpoints.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[[upstream]]\nname = \"{name}\"\nendpoints = [{}]\n{extra}\n\n",
        eps.join(", ")
    )
}

/// A `[[route]]` table with extra keys (one per line).
pub fn route_toml(name: &str, upstream: &str, extra: &str) -> String {
    format!("[[route]]\nname = \"{name}\"\nupstream = \"{upstream}\"\n{extra}\n\n")
}

/// A running gateway; killed with SIGKILL on drop unless the test already waited on it.
pub struct Gateway {
    /// First listen address.
    pub addr: SocketAddr,
    pub listen: Vec<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub child: Child,
    pub pid: u32,
    pub workers: usize,
    /// Driver named in the ready line (`io_uring` or `epoll`).
    pub driver: String,
    pub config_path: PathBuf,
    pub stderr: Arc<Mutex<Vec<String>>>,
    /// Lines the gateway wrote to stdout (the access log's `stdout` sink).
    pub stdout: Arc<Mutex<Vec<String>>>,
    exited: Option<ExitStatus>,
}

impl Gateway {
    pub fn start(config_toml: &str, driver: &str) -> Gateway {
        Self::start_with_args(config_toml, driver, &[])
    }

    /// Like `start`; `extra` flags replace the defaults of the same name (e.g. `--workers 1`).
    pub fn start_with_args(config_toml: &str, driver: &str, extra: &[&str]) -> Gateway {
        Self::try_start(config_toml, driver, extra)
            .unwrap_or_else(|e| panic!("gateway did not start (driver {driver}): {e}"))
    }

    pub fn try_start(config_toml: &str, driver: &str, extra: &[&str]) -> Result<Gateway, String> {
        let config_path = write_temp(config_toml, "toml");
        let mut args: Vec<String> = vec![
            "run".into(),
            "--config".into(),
            config_path.display().to_string(),
        ];
        for (flag, value) in [
            ("--listen", Some("127.0.0.1:0")),
            ("--workers", Some("2")),
            ("--no-pin", None),
        ] {
            if !extra.contains(&flag) {
                args.push(flag.into());
                args.extend(value.map(String::from));
            }
        }
        args.push("--driver".into());
        args.push(driver.into());
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = Command::new(bin())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin()))?;
        let pid = child.id();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<Option<String>>();
        forward_lines(
            child.stderr.take().unwrap(),
            format!("coregate[{pid}]"),
            lines.clone(),
            Some(tx),
        );
        let out_lines = Arc::new(Mutex::new(Vec::new()));
        forward_lines(
            child.stdout.take().unwrap(),
            format!("coregate[{pid}] stdout"),
            out_lines.clone(),
            None,
        );
        let cleanup = |child: &mut Child| {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(&config_path);
        };
        let line = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(Some(line)) => line,
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let deadline = Instant::now() + Duration::from_secs(5);
                let mut status = None;
                wait_until(deadline, || {
                    status = child.try_wait().ok().flatten();
                    status.is_some()
                });
                cleanup(&mut child);
                return Err(format!(
                    "exited ({status:?}) before the ready line; args {args:?}; stderr:\n{}",
                    lines.lock().unwrap().join("\n")
                ));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                cleanup(&mut child);
                return Err(format!(
                    "no ready line within {READY_TIMEOUT:?}; args {args:?}"
                ));
            }
        };
        let ready = match parse_ready(&line) {
            Ok(r) => r,
            Err(e) => {
                cleanup(&mut child);
                return Err(e);
            }
        };
        let want = if driver == "uring" {
            "io_uring"
        } else {
            driver
        };
        if driver != "auto" && ready.driver != want {
            cleanup(&mut child);
            return Err(format!(
                "asked for --driver {driver}, ready line says driver={}: {line}",
                ready.driver
            ));
        }
        Ok(Gateway {
            addr: ready.listen[0],
            listen: ready.listen,
            admin: ready.admin,
            child,
            pid,
            workers: ready.workers,
            driver: ready.driver,
            config_path,
            stderr: lines,
            stdout: out_lines,
            exited: None,
        })
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of our own child process.
        let rc = unsafe { libc::kill(self.pid as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid);
    }

    /// Waits for the process to exit; panics at the deadline.
    pub fn wait_exit(&mut self, deadline: Instant) -> ExitStatus {
        if let Some(s) = self.exited {
            return s;
        }
        let mut status = None;
        let child = &mut self.child;
        wait_until(deadline, || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        let status =
            status.unwrap_or_else(|| panic!("gateway {} did not exit by the deadline", self.pid));
        self.exited = Some(status);
        status
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.exited.is_none() && matches!(self.child.try_wait(), Ok(None))
    }

    /// Resident set size in KiB, from /proc/PID/status.
    pub fn rss_kib(&self) -> u64 {
        self.try_rss_kib()
            .unwrap_or_else(|| panic!("no VmRSS for gateway {}: has it exited?", self.pid))
    }

    /// `None` once the process is gone (or a zombie).
    pub fn try_rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid, "VmRSS:")
    }

    /// Peak resident set size in KiB.
    pub fn hwm_kib(&self) -> u64 {
        proc_status_kib(self.pid, "VmHWM:")
            .unwrap_or_else(|| panic!("no VmHWM for gateway {}", self.pid))
    }

    fn admin_addr(&self) -> SocketAddr {
        self.admin
            .expect("test configs enable the admin listener; ready line said admin=-")
    }

    /// GET on the admin listener.
    pub fn admin_get(&self, path: &str) -> Response {
        get(self.admin_addr(), path, "admin")
    }

    /// POST to the admin listener (no body).
    pub fn admin_post(&self, path: &str) -> Response {
        Client::connect(self.admin_addr()).request(&req("POST", path, "admin", &[], b""))
    }

    /// The Prometheus text from /metrics.
    pub fn metrics(&self) -> String {
        let r = self.admin_get("/metrics");
        assert_eq!(r.status, 200, "GET /metrics: {}", r.body_str());
        r.body_str()
    }

    /// The value of one series in /metrics, written as it appears there (`coregate_cache_entries`,
    /// `coregate_worker_open_connections{worker="0"}`); None when absent.
    pub fn metric(&self, series: &str) -> Option<u64> {
        metric_value(&self.metrics(), series)
    }

    /// Everything the gateway wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Waits (up to 5 s) until stderr contains `needle` and returns all of it: log lines travel
    /// through the reader thread, so a test must wait for one rather than race it.
    pub fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = self.stderr_text();
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "gateway never logged {needle:?}; stderr so far:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.config_path);
    }
}

fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

struct Ready {
    listen: Vec<SocketAddr>,
    admin: Option<SocketAddr>,
    workers: usize,
    driver: String,
}

/// Parses `coregate: ready listen=A[,B] admin=A|- workers=N driver=D`.
fn parse_ready(line: &str) -> Result<Ready, String> {
    let bad = |what: &str| format!("bad ready line ({what}): {line:?}");
    let mut ready = Ready {
        listen: Vec::new(),
        admin: None,
        workers: 0,
        driver: String::new(),
    };
    for tok in line
        .trim_start_matches("coregate: ready")
        .split_whitespace()
    {
        let (k, v) = tok.split_once('=').ok_or_else(|| bad(tok))?;
        match k {
            "listen" => {
                for a in v.split(',') {
                    ready.listen.push(a.parse().map_err(|_| bad("listen"))?);
                }
            }
            "admin" if v == "-" => {}
            "admin" => ready.admin = Some(v.parse().map_err(|_| bad("admin"))?),
            "workers" => ready.workers = v.parse().map_err(|_| bad("workers"))?,
            "driver" => ready.driver = v.to_string(),
            _ => {}
        }
    }
    if ready.listen.is_empty() || ready.driver.is_empty() || ready.workers == 0 {
        return Err(bad("missing listen, workers or driver"));
    }
    Ok(ready)
}

/// Reads lines from a child pipe in a thread: keeps them, forwards them to our stderr, and
/// sends the first `coregate: ready` line (or `None` at EOF) on `ready`.
fn forward_lines(
    pipe: impl Read + Send + 'static,
    prefix: String,
    keep: Arc<Mutex<Vec<String>>>,
    ready: Option<mpsc::Sender<Option<String>>>,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut ready = ready;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&buf).trim_end().to_string();
            keep.lock().unwrap().push(line.clone());
            if line.starts_with("coregate: ready") {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(Some(line));
                    continue;
                }
            }
            eprintln!("[{prefix}] {line}");
        }
        if let Some(tx) = ready {
            let _ = tx.send(None);
        }
    });
}

/// `Some(reason)` when the gateway reports io_uring unavailable on this host (probed once by
/// starting a gateway with `--driver uring`); any other start failure panics.
pub fn uring_unavailable() -> Option<String> {
    static PROBE: OnceLock<Option<String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let up = super::closed_port();
            let cfg = config(
                "",
                &(upstream_toml("probe", &[up], "")
                    + &route_toml("probe", "probe", "path_prefix = \"/\"")),
            );
            match Gateway::try_start(&cfg, "uring", &[]) {
                Ok(_) => None,
                Err(e) if e.contains("io_uring unavailable") => Some(e),
                Err(e) => panic!(
                    "probe gateway with --driver uring failed (not 'io_uring unavailable'): {e}"
                ),
            }
        })
        .clone()
}

/// Runs `body` once per driver ("uring", then "epoll"); io_uring is skipped with a loud SKIP
/// line when the host does not support it.
pub fn for_each_driver(mut body: impl FnMut(&str)) {
    for driver in ["uring", "epoll"] {
        if driver == "uring" {
            if let Some(reason) = uring_unavailable() {
                eprintln!("\n!!!!!!!! SKIP uring: {reason}\n!!!!!!!! continuing with epoll only\n");
                continue;
            }
        }
        eprintln!("=== driver {driver} ===");
        body(driver);
    }
}

/// Runs the binary with `args`, waiting up to `within`; returns (exit status or None when it
/// was still running and got killed, stdout, stderr).
pub fn run_cli(args: &[&str], within: Duration) -> (Option<ExitStatus>, String, String) {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn coregate");
    let pipes = [
        Pipe::Out(child.stdout.take().unwrap()),
        Pipe::Err(child.stderr.take().unwrap()),
    ];
    let readers: Vec<_> = pipes
        .into_iter()
        .map(|p| {
            std::thread::spawn(move || {
                let mut s = Vec::new();
                let _ = match p {
                    Pipe::Out(mut o) => o.read_to_end(&mut s),
                    Pipe::Err(mut e) => e.read_to_end(&mut s),
                };
                String::from_utf8_lossy(&s).into_owned()
            })
        })
        .collect();
    let mut status = None;
    wait_until(Instant::now() + within, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut outs = readers.into_iter().map(|h| h.join().unwrap());
    (status, outs.next().unwrap(), outs.next().unwrap())
}

enum Pipe {
    Out(std::process::ChildStdout),
    Err(std::process::ChildStderr),
}

/// The value of `series` (name plus labels, as Prometheus text writes it) in a /metrics scrape.
pub fn metric_value(metrics: &str, series: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
