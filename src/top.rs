//! `coregate top`: a terminal view of a running gateway, refreshed every interval.
//!
//! Owns: the refresh loop ([`run`]) and its flag parsers ([`parse_admin`], [`parse_interval`]);
//! the clap variant lives in `cli`. Key parts: [`fetch`] (a blocking HTTP/1.1 `GET /stats`),
//! [`stats`] (the document's serde types and [`parse_stats`]) and [`render`] (pure: two samples
//! in, one text frame out).
//!
//! Flow, once per interval: fetch the admin `/stats` body -> [`parse_stats`] -> [`Sample`] ->
//! [`render`] against the previous successful sample -> stdout. On a terminal each frame first
//! clears the screen; piped, frames follow one another separated by a blank line, without escape
//! codes.
//!
//! Errors: a failed refresh (unreachable admin, non-200, bad JSON) prints one line to stderr,
//! `coregate top: cannot reach admin ADDR: REASON`, and the loop retries at the next tick. Exit
//! status: 0 after `--count` refreshes if at least one succeeded, 1 if none did; `--count 0` runs
//! until interrupted. A closed stdout (`coregate top | head`) ends the loop quietly.
//!
//! Performance: one short admin connection per refresh; ticks are scheduled from the start time so
//! a slow fetch does not make the refreshes drift.

pub mod fetch;
pub mod render;
pub mod stats;

use std::io::{self, IsTerminal, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

pub use fetch::fetch_stats;
pub use render::{render, Sample};
pub use stats::{parse_stats, Stats};

/// ANSI: cursor home, then clear the screen.
const CLEAR_SCREEN: &str = "\x1b[H\x1b[2J";

/// What `coregate top` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopOptions {
    /// Admin listener, `host:port`; resolved on every refresh.
    pub admin: String,
    /// Time between refreshes.
    pub interval: Duration,
    /// Refreshes before exiting; 0 = until interrupted.
    pub count: u64,
}

/// `--admin`: a socket address or `host:port` (the host is resolved at each refresh, not here, so
/// `top` can be started before the gateway's name resolves).
pub fn parse_admin(s: &str) -> Result<String, String> {
    if s.parse::<SocketAddr>().is_ok() {
        return Ok(s.to_string());
    }
    let bad = || format!("bad admin address {s:?}: expected host:port, like 127.0.0.1:9901");
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let bracketed = host.starts_with('[') && host.ends_with(']');
    if host.is_empty() || (host.contains(':') && !bracketed) {
        return Err(bad());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(s.to_string()),
        _ => Err(bad()),
    }
}

/// `--interval`: the config file's duration syntax (`1s`, `200ms`), and not zero.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = crate::config::units::parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("invalid interval \"{s}\": must be above zero"));
    }
    Ok(d)
}

/// One refresh: fetch and parse, or the error line's reason.
fn poll(admin: &str) -> Result<Stats, String> {
    parse_stats(&fetch_stats(admin)?)
}

/// Runs the refresh loop; see the module docs for the exit status.
pub fn run(opts: &TopOptions) -> ExitCode {
    let mut stdout = io::stdout().lock();
    let terminal = stdout.is_terminal();
    let mut prev: Option<Sample> = None;
    let mut shown = 0u64;
    let mut next = Instant::now();
    let mut refreshes = 0u64;
    loop {
        refreshes += 1;
        match poll(&opts.admin) {
            Ok(stats) => {
                let cur = Sample {
                    at: Instant::now(),
                    stats,
                };
                let frame = render(prev.as_ref(), &cur);
                let lead = match (terminal, shown) {
                    (true, _) => CLEAR_SCREEN,
                    (false, 0) => "",
                    (false, _) => "\n",
                };
                let written = write!(stdout, "{lead}{frame}").and_then(|()| stdout.flush());
                match written {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("coregate top: cannot write to stdout: {e}");
                        return ExitCode::FAILURE;
                    }
                }
                shown += 1;
                prev = Some(cur);
            }
            Err(reason) => eprintln!("coregate top: cannot reach admin {}: {reason}", opts.admin),
        }
        if opts.count != 0 && refreshes >= opts.count {
            break;
        }
        next += opts.interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now; // fell behind (slow fetch): restart the schedule rather than burst
        }
    }
    if shown == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    #[test]
    fn admin_addresses() {
        for ok in [
            "127.0.0.1:9901",
            "[::1]:9901",
            "localhost:9901",
            "gw.internal:80",
        ] {
            assert_eq!(parse_admin(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "127.0.0.1",
            "localhost",
            ":9901",
            "host:0",
            "host:http",
            "::1:9901",
        ] {
            let e = parse_admin(bad).unwrap_err();
            assert!(e.starts_with("bad admin address"), "{bad}: {e}");
        }
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_interval("1s"), Ok(Duration::from_secs(1)));
        assert!(parse_interval("0s").unwrap_err().contains("above zero"));
        assert!(parse_interval("5").unwrap_err().contains("missing unit"));
    }

    #[test]
    fn top_flags_parse_with_defaults() {
        let cli = Cli::try_parse_from(["coregate", "top", "--admin", "localhost:9901"]).unwrap();
        let Command::Top {
            admin,
            interval,
            count,
        } = cli.command
        else {
            panic!("not top")
        };
        assert_eq!(
            (admin.as_str(), interval, count),
            ("localhost:9901", Duration::from_secs(1), 0)
        );
        let cli = Cli::try_parse_from([
            "coregate",
            "top",
            "--admin",
            "127.0.0.1:9901",
            "--interval",
            "250ms",
            "--count",
            "3",
        ])
        .unwrap();
        let Command::Top {
            interval, count, ..
        } = cli.command
        else {
            panic!("not top")
        };
        assert_eq!((interval, count), (Duration::from_millis(250), 3));
        assert!(Cli::try_parse_from(["coregate", "top"]).is_err());
        assert!(Cli::try_parse_from(["coregate", "top", "--admin", "nope"]).is_err());
    }
}
