//! `[access_log]`: raw TOML shape, validated model, and the validation between the two.
//!
//! Flow: `validate.rs` hands the optional raw table here; an absent table is
//! [`AccessLogConfig::default`] (logging off). Every problem is reported under its key path
//! (`access_log.path`), with the file position attached by `mod.rs`. The runtime
//! (`crate::accesslog`) reads only the model types below: the writer thread is built from `sink`,
//! `format` and `queue`; each worker's buffer from `buffer` and `flush_interval`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::position::KeyPath;
use super::raw::{DurationValue, SizeValue};
use super::validate::Ctx;

/// 64 KiB: a few hundred lines per hand-off, so the writer makes one `write` per batch, while a
/// worker's buffer stays small next to its connection buffers.
pub const DEFAULT_BUFFER: usize = 64 << 10;
/// Below 4 KiB (about ten lines) a batch costs more in channel traffic than it saves.
pub const MIN_BUFFER: usize = 4 << 10;
/// Above 16 MiB a buffer holds minutes of a quiet worker's lines and costs memory per worker.
pub const MAX_BUFFER: usize = 16 << 20;
/// 64 batches of 64 KiB: 4 MiB of backlog absorbs a slow disk for a moment before lines drop.
pub const DEFAULT_QUEUE: usize = 64;
/// Upper bound on batches waiting for the writer; memory is `queue` x `buffer` at worst.
pub const MAX_QUEUE: usize = 4096;
/// 100 ms: lines of a quiet worker appear promptly, and the flush timer costs nothing noticeable.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// `[access_log]`: one JSON line per request, buffered per worker and written by one thread.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogConfig {
    pub sink: LogSink,
    pub format: LogFormat,
    /// Bytes a worker buffers before handing the batch to the writer.
    pub buffer: usize,
    /// Batches that may wait for the writer; beyond it, batches are dropped (and counted).
    pub queue: usize,
    /// How often a worker hands off a partly filled buffer.
    pub flush_interval: Duration,
}

impl Default for AccessLogConfig {
    /// Logging off (what an absent `[access_log]` table means), every other value its default.
    fn default() -> Self {
        AccessLogConfig {
            sink: LogSink::Off,
            format: LogFormat::Json,
            buffer: DEFAULT_BUFFER,
            queue: DEFAULT_QUEUE,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
        }
    }
}

/// Where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSink {
    /// No access log: nothing is formatted and no thread is started.
    Off,
    /// The process's standard output.
    Stdout,
    /// A file opened for appending (created if missing); the path is absolute or relative to the
    /// config file's directory, already resolved. Reopened on SIGUSR1 (logrotate).
    File(PathBuf),
}

/// The line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
}

/// `[access_log]` as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawAccessLog {
    pub sink: Option<String>,
    pub path: Option<String>,
    pub format: Option<String>,
    pub buffer: Option<SizeValue>,
    pub queue: Option<i64>,
    pub flush_interval: Option<DurationValue>,
}

/// Validates `[access_log]`; `base` is the config file's directory. An invalid table yields the
/// default (the error is recorded, so no `Config` is built from it).
pub(super) fn access_log(cx: &mut Ctx, raw: Option<RawAccessLog>, base: &Path) -> AccessLogConfig {
    let Some(r) = raw else {
        return AccessLogConfig::default();
    };
    let p = KeyPath::root().key("access_log");
    let sp = p.key("sink");
    let pp = p.key("path");
    // `sink` is required once the table is written: a table that says nothing about where lines go
    // is more likely a mistake than a wish for the default.
    let expected = "\"stdout\", \"file\" or \"off\"";
    let sink = match cx.required(sp.clone(), r.sink, expected).as_deref() {
        None => None,
        Some("file") => {
            let path = cx.required(
                pp.clone(),
                r.path,
                "a file path, required when sink = \"file\"",
            );
            match path {
                Some(s) if s.is_empty() => {
                    cx.err(pp, "empty path (expected a file path)");
                    None
                }
                Some(s) => Some(LogSink::File(resolve(base, &s))),
                None => None,
            }
        }
        Some(other) => {
            if r.path.is_some() {
                cx.err(pp, "only allowed with sink = \"file\"");
            }
            match other {
                "stdout" => Some(LogSink::Stdout),
                "off" => Some(LogSink::Off),
                _ => {
                    cx.err(
                        sp,
                        format!("unknown sink \"{other}\" (expected {expected})"),
                    );
                    None
                }
            }
        }
    };
    let format = match r.format.as_deref() {
        None | Some("json") => LogFormat::Json,
        Some(other) => {
            let message = format!("unknown format \"{other}\" (expected \"json\")");
            cx.err(p.key("format"), message);
            LogFormat::Json
        }
    };
    let bp = p.key("buffer");
    let buffer = cx.size(bp.clone(), r.buffer, DEFAULT_BUFFER as u64, 0);
    if !(MIN_BUFFER as u64..=MAX_BUFFER as u64).contains(&buffer) {
        cx.err(
            bp,
            format!("must be between 4KiB and 16MiB, got {buffer} bytes"),
        );
    }
    let queue = cx.int(p.key("queue"), r.queue, DEFAULT_QUEUE, 1, MAX_QUEUE as i64);
    let flush_interval = match r.flush_interval {
        None => DEFAULT_FLUSH_INTERVAL,
        d => cx.duration(p.key("flush_interval"), d, 0, false),
    };
    AccessLogConfig {
        // Only reached as `Off` when an error was recorded, so no `Config` is built from it.
        sink: sink.unwrap_or(LogSink::Off),
        format,
        buffer: usize::try_from(buffer).unwrap_or(DEFAULT_BUFFER),
        queue,
        flush_interval,
    }
}

fn resolve(base: &Path, file: &str) -> PathBuf {
    let p = Path::new(file);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::tests::{check_cases, UP};
    use crate::config::{parse_in, parse_str};

    fn config(text: &str) -> AccessLogConfig {
        parse_str(&format!("{UP}{text}"), "t.toml")
            .unwrap_or_else(|e| panic!("{e}"))
            .access_log
    }

    /// `file:line:column: path: message` of every error of `text` (no `UP` prefix, so lines are
    /// the snippet's own).
    fn located(text: &str) -> Vec<String> {
        match parse_str(text, "t.toml") {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn absent_table_is_off_with_defaults() {
        let c = config("");
        assert_eq!(c, AccessLogConfig::default());
        assert_eq!(c.sink, LogSink::Off);
        assert_eq!(c.format, LogFormat::Json);
        assert_eq!(c.buffer, 64 * 1024);
        assert_eq!(c.queue, 64);
        assert_eq!(c.flush_interval, Duration::from_millis(100));
    }

    #[test]
    fn defaults_inside_the_table() {
        let c = config("[access_log]\nsink = \"stdout\"\n");
        let expected = AccessLogConfig {
            sink: LogSink::Stdout,
            ..AccessLogConfig::default()
        };
        assert_eq!(c, expected);
        assert_eq!(config("[access_log]\nsink = \"off\"\n").sink, LogSink::Off);
    }

    #[test]
    fn every_field() {
        let c = config(
            "[access_log]\nsink = \"file\"\npath = \"/var/log/coregate/access.log\"\nformat = \"json\"\n\
             buffer = \"1MiB\"\nqueue = 4096\nflush_interval = \"1.5s\"\n",
        );
        assert_eq!(
            c,
            AccessLogConfig {
                sink: LogSink::File("/var/log/coregate/access.log".into()),
                format: LogFormat::Json,
                buffer: 1 << 20,
                queue: 4096,
                flush_interval: Duration::from_millis(1500),
            }
        );
        // Bounds are inclusive; an integer buffer is bytes.
        let c = config("[access_log]\nsink = \"stdout\"\nbuffer = 4096\nqueue = 1\n");
        assert_eq!((c.buffer, c.queue), (4096, 1));
        let c = config(
            "[access_log]\nsink = \"stdout\"\nbuffer = \"16MiB\"\nflush_interval = \"5ms\"\n",
        );
        assert_eq!(
            (c.buffer, c.flush_interval),
            (16 << 20, Duration::from_millis(5))
        );
    }

    #[test]
    fn relative_path_resolves_against_the_config_directory() {
        let text = "[access_log]\nsink = \"file\"\npath = \"logs/access.log\"\n";
        let c = parse_in(text, "gw.toml", Path::new("/etc/coregate")).unwrap();
        assert_eq!(
            c.access_log.sink,
            LogSink::File("/etc/coregate/logs/access.log".into())
        );
        let text = "[access_log]\nsink = \"file\"\npath = \"/abs/a.log\"\n";
        let c = parse_in(text, "gw.toml", Path::new("/etc/coregate")).unwrap();
        assert_eq!(c.access_log.sink, LogSink::File("/abs/a.log".into()));
    }

    #[test]
    fn errors_name_key_and_position() {
        let table = "[access_log]\n";
        let cases: &[(&str, &[&str])] = &[
            (
                "[access_log]\nsink = \"file\"\n",
                &["t.toml:1:1: access_log.path: missing (expected a file path, required when sink = \"file\")"],
            ),
            (
                "[access_log]\nsink = \"file\"\npath = \"\"\n",
                &["t.toml:3:1: access_log.path: empty path (expected a file path)"],
            ),
            (
                "[access_log]\nsink = \"stdout\"\npath = \"a.log\"\n",
                &["t.toml:3:1: access_log.path: only allowed with sink = \"file\""],
            ),
            (
                table,
                &["t.toml:1:1: access_log.sink: missing (expected \"stdout\", \"file\" or \"off\")"],
            ),
            (
                "[access_log]\nsink = \"syslog\"\n",
                &["t.toml:2:1: access_log.sink: unknown sink \"syslog\" (expected \"stdout\", \"file\" or \"off\")"],
            ),
            (
                "[access_log]\nsink = \"off\"\nformat = \"text\"\n",
                &["t.toml:3:1: access_log.format: unknown format \"text\" (expected \"json\")"],
            ),
            (
                "[access_log]\nsink = \"off\"\nbuffer = \"1KiB\"\nqueue = 0\nflush_interval = \"0s\"\n",
                &[
                    "t.toml:3:1: access_log.buffer: must be between 4KiB and 16MiB, got 1024 bytes",
                    "t.toml:4:1: access_log.queue: must be between 1 and 4096, got 0",
                    "t.toml:5:1: access_log.flush_interval: must be greater than 0",
                ],
            ),
            (
                "[access_log]\nsink = \"off\"\nbuffer = \"17MiB\"\nqueue = 4097\nflush_interval = 100\n",
                &[
                    "t.toml:3:1: access_log.buffer: must be between 4KiB and 16MiB, got 17825792 bytes",
                    "t.toml:4:1: access_log.queue: must be between 1 and 4096, got 4097",
                    "t.toml:5:1: access_log.flush_interval: missing unit in 100 (expected a string like \"100s\"; units ms, s, m or h)",
                ],
            ),
            (
                "[access_log]\nsink = \"off\"\nbuffer = \"64 KiB\"\nflush_interval = \"fast\"\n",
                &[
                    "t.toml:3:1: access_log.buffer: invalid size \"64 KiB\": unknown unit \" KiB\" (expected an integer with optional unit B, KB, MB, GB, TB, KiB, MiB, GiB or TiB, like \"10MiB\")",
                    "t.toml:4:1: access_log.flush_interval: invalid duration \"fast\": unknown unit \"fast\" (expected a number with unit ms, s, m or h, like \"10s\")",
                ],
            ),
            (
                "[access_log]\nsink = \"off\"\nbuffer = -1\n",
                &["t.toml:3:1: access_log.buffer: must not be negative"],
            ),
            (
                "access_log = \"stdout\"\n",
                &["t.toml:1:14: access_log: invalid type: string \"stdout\", expected a table"],
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(located(text), *expected, "for:\n{text}");
        }
    }

    #[test]
    fn shape_errors() {
        check_cases(&[
            (
                "[access_log]\nsink = \"stdout\"\nbufer = \"4KiB\"\n",
                &["access_log.bufer: unknown key"],
            ),
            (
                "[access_log]\nsink = 1\n",
                &["access_log.sink: invalid type: integer `1`, expected a string"],
            ),
            (
                "[access_log]\nsink = \"stdout\"\nqueue = \"64\"\n",
                &["access_log.queue: invalid type: string \"64\", expected an integer"],
            ),
            // Every problem at once, not just the first.
            (
                "[access_log]\nsink = \"file\"\nformat = \"logfmt\"\nqueue = -5\n",
                &[
                    "access_log.path: missing (expected a file path, required when sink = \"file\")",
                    "access_log.format: unknown format \"logfmt\" (expected \"json\")",
                    "access_log.queue: must be between 1 and 4096, got -5",
                ],
            ),
        ]);
    }
}
