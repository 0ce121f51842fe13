//! Starting the backend (`coregate-load serve`) and the proxies under test (coregate per driver,
//! nginx, HAProxy, the `relay` floor), each with one worker pinned to the proxy CPU, and finding the
//! address each listens on (ready line, or a free port picked up front and a TCP probe).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::plan::{cpus_arg, Plan, Proxy};
use super::procs::{self, spawn, Guard};
use super::{configs, write};

/// How long a backend or proxy gets to come up.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Starts the `serve` backend for one body size on the backend CPUs.
pub fn start_backend(plan: &Plan, body: u64) -> Result<(Guard, SocketAddr), String> {
    let mut cmd = Command::new(&plan.load_bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--body-size"])
        .arg(body.to_string())
        .arg("--workers")
        .arg(plan.cpus.backend.len().to_string())
        .arg("--cpus")
        .arg(cpus_arg(&plan.cpus.backend));
    let mut g = spawn("backend (coregate-load serve)", cmd)?;
    let rest = g.wait_line("coregate-load serve: listening on", READY_TIMEOUT)?;
    let addr = parse_addr(&rest).ok_or_else(|| format!("serve printed a bad address: {rest}"))?;
    Ok((g, addr))
}

/// "127.0.0.1:80 admin=..." or "127.0.0.1:80,127.0.0.1:81" -> the first address.
pub fn parse_addr(s: &str) -> Option<SocketAddr> {
    s.split_whitespace().next()?.split(',').next()?.parse().ok()
}

/// Starts one proxy in front of `backend`, pinned to the proxy CPU; returns it and its address.
pub fn start_proxy(
    plan: &Plan,
    dir: &Path,
    p: Proxy,
    backend: SocketAddr,
    body: u64,
) -> Result<(Guard, SocketAddr), String> {
    let cpu = plan.cpus.proxy;
    let file = |name: &str, text: &str| -> Result<PathBuf, String> {
        let path = dir.join(format!("{name}-{body}"));
        write(&path, text)?;
        Ok(path)
    };
    match p {
        Proxy::Coregate(driver) | Proxy::CoregateWith(driver, _) => {
            let conf = file("coregate.toml", &configs::coregate(backend))?;
            let mut cmd = Command::new(&plan.coregate);
            cmd.arg("run")
                .arg("--config")
                .arg(&conf)
                .args(["--workers", "1", "--cpus", &cpu.to_string()])
                .args(["--listen", "127.0.0.1:0", "--driver", driver])
                .args(p.extra_args());
            let mut g = spawn(&p.label(), cmd)?;
            let rest = g.wait_line("coregate: ready listen=", READY_TIMEOUT)?;
            let addr = parse_addr(&rest).ok_or_else(|| format!("bad ready line: {rest}"))?;
            Ok((g, addr))
        }
        Proxy::Relay => {
            let mut cmd = Command::new(&plan.load_bin);
            cmd.args(["relay", "--listen", "127.0.0.1:0", "--upstream"])
                .arg(backend.to_string())
                .args(["--workers", "1", "--cpus", &cpu.to_string()]);
            let mut g = spawn("relay", cmd)?;
            let rest = g.wait_line("coregate-load relay: listening on", READY_TIMEOUT)?;
            let addr = parse_addr(&rest).ok_or_else(|| format!("bad ready line: {rest}"))?;
            Ok((g, addr))
        }
        Proxy::Nginx => {
            let prefix = dir.join(format!("nginx-{body}"));
            std::fs::create_dir_all(&prefix).map_err(|e| e.to_string())?;
            let addr = procs::free_addr()?;
            // SAFETY: geteuid cannot fail.
            let root = unsafe { libc::geteuid() } == 0;
            let conf = prefix.join("nginx.conf");
            write(&conf, &configs::nginx(&prefix, addr, backend, cpu, root))?;
            let mut cmd = Command::new(procs::on_path("nginx").ok_or("nginx not found")?);
            cmd.arg("-p")
                .arg(format!("{}/", prefix.display()))
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(prefix.join("nginx-error.log"));
            let mut g = spawn("nginx", cmd)?;
            g.wait_tcp(addr, READY_TIMEOUT)?;
            Ok((g, addr))
        }
        Proxy::Haproxy => {
            let addr = procs::free_addr()?;
            let conf = file("haproxy.cfg", &configs::haproxy(addr, backend, cpu))?;
            let mut cmd = Command::new(procs::on_path("haproxy").ok_or("haproxy not found")?);
            cmd.arg("-f").arg(&conf).arg("-db");
            let mut g = spawn("haproxy", cmd)?;
            g.wait_tcp(addr, READY_TIMEOUT)?;
            Ok((g, addr))
        }
    }
}
