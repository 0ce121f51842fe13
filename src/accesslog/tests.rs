//! Tests of the hand-off and the writer: a real file sink, reopen after a rename (logrotate), and
//! drop accounting while the writer is stalled. The line format is tested in `format.rs`.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

/// Generous: only reached when something is broken.
const WAIT: Duration = Duration::from_secs(30);

/// A fresh, empty directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "coregate-accesslog-{name}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cfg(sink: LogSink, buffer: usize, queue: usize) -> AccessLogConfig {
    AccessLogConfig {
        sink,
        buffer,
        queue,
        ..AccessLogConfig::default()
    }
}

fn record(id: &str) -> Record<'_> {
    Record {
        unix_ns: 1_795_450_067_123_000_000,
        request_id: id.as_bytes(),
        client_ip: "127.0.0.1",
        method: b"GET",
        path: b"/x?y=1",
        route: "users",
        status: 200,
        ..Record::default()
    }
}

/// The `request_id` of every line of `path`, each line checked to be one JSON object.
fn ids(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'));
    text.lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            v["request_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Waits (polling, bounded by `WAIT`) until the writer has written `n` lines in all.
fn wait_written(log: &AccessLog, n: u64) {
    let deadline = Instant::now() + WAIT;
    while log.lines_written() < n {
        assert!(Instant::now() < deadline, "writer did not write {n} lines");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn file_sink_receives_every_line_after_flush_and_close() {
    let dir = TempDir::new("file");
    let path = dir.0.join("access.log");
    // An existing file is appended to, not truncated.
    std::fs::write(&path, "{\"request_id\":\"old\"}\n").unwrap();
    // A small buffer, so the lines travel in many batches from two workers.
    let log = AccessLog::start(&cfg(LogSink::File(path.clone()), 4096, 4096)).unwrap();
    assert!(log.enabled());
    let (a, b) = (LogBuf::new(Arc::clone(&log)), LogBuf::new(Arc::clone(&log)));
    let mut expected = vec!["old".to_owned()];
    for i in 0..2000 {
        let id = format!("r{i}");
        let w = if i % 2 == 0 { &a } else { &b };
        w.record(&record(&id));
        expected.push(id);
    }
    assert!(a.pending_lines() > 0, "the tail stays buffered until flush");
    a.flush();
    b.flush();
    assert_eq!((a.pending_lines(), b.pending_lines()), (0, 0));
    log.close(WAIT);
    let mut got = ids(&path);
    assert_eq!(got.len(), expected.len());
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    assert_eq!((log.lines_written(), log.lines_dropped()), (2000, 0));
}

#[test]
fn reopen_after_rename_writes_to_the_new_file() {
    let dir = TempDir::new("reopen");
    let path = dir.0.join("access.log");
    let rotated = dir.0.join("access.log.1");
    let log = AccessLog::start(&cfg(LogSink::File(path.clone()), 1 << 20, 64)).unwrap();
    let w = LogBuf::new(Arc::clone(&log));
    for id in ["a1", "a2", "a3"] {
        w.record(&record(id));
    }
    w.flush();
    wait_written(&log, 3);
    // logrotate: move the file away, then signal.
    std::fs::rename(&path, &rotated).unwrap();
    log.reopen();
    for id in ["b1", "b2"] {
        w.record(&record(id));
    }
    w.flush();
    log.close(WAIT);
    assert_eq!(ids(&rotated), ["a1", "a2", "a3"]);
    assert_eq!(ids(&path), ["b1", "b2"]);
    assert_eq!((log.lines_written(), log.lines_dropped()), (5, 0));
}

#[test]
fn lines_are_dropped_not_waited_for_when_the_writer_stalls() {
    const N: u64 = 1000;
    let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
    let sink_lines = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&sink_lines);
    let mut stalled = true;
    let sink = Sink::Hook(Box::new(move |bytes: &[u8]| {
        if std::mem::take(&mut stalled) {
            // The first write blocks until the test releases it: a disk that cannot keep up.
            let _ = release_rx.recv();
        }
        let lines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        counted.fetch_add(lines, Ordering::Relaxed);
        Ok(())
    }));
    // Every line is its own batch (buffer 1), and one batch may wait.
    let log = AccessLog::start_with_sink(&cfg(LogSink::Stdout, 1, 1), sink);
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let worker_log = Arc::clone(&log);
    std::thread::spawn(move || {
        let w = LogBuf::new(worker_log);
        for i in 0..N {
            w.record(&record(&i.to_string()));
        }
        w.flush();
        done_tx.send(()).unwrap();
    });
    // The worker finishes while the writer is still stuck in its first write.
    done_rx
        .recv_timeout(WAIT)
        .expect("record() blocked on a stalled writer");
    let dropped = log.lines_dropped();
    // One batch in the writer, at most one in the queue; the rest were dropped.
    assert!(dropped >= N - 2, "dropped {dropped}");
    release_tx.send(()).unwrap();
    log.close(WAIT);
    let written = log.lines_written();
    assert!((1..=2).contains(&written), "written {written}");
    assert_eq!(written + log.lines_dropped(), N);
    assert_eq!(sink_lines.load(Ordering::Relaxed), written);
}

#[test]
fn write_errors_count_as_dropped() {
    let sink = Sink::Hook(Box::new(|_: &[u8]| Err(io::Error::other("disk full"))));
    let log = AccessLog::start_with_sink(&cfg(LogSink::Stdout, 1 << 20, 8), sink);
    let w = LogBuf::new(Arc::clone(&log));
    for id in ["a", "b", "c"] {
        w.record(&record(id));
    }
    w.flush();
    log.close(WAIT);
    assert_eq!((log.lines_written(), log.lines_dropped()), (0, 3));
}

#[test]
fn close_is_idempotent_and_later_lines_are_counted_as_dropped() {
    let dir = TempDir::new("close");
    let path = dir.0.join("access.log");
    let log = AccessLog::start(&cfg(LogSink::File(path.clone()), 1 << 20, 8)).unwrap();
    let w = LogBuf::new(Arc::clone(&log));
    w.record(&record("before"));
    w.flush();
    log.close(WAIT);
    log.close(WAIT);
    w.record(&record("after"));
    w.record(&record("after2"));
    w.flush();
    assert_eq!(ids(&path), ["before"]);
    assert_eq!((log.lines_written(), log.lines_dropped()), (1, 2));
    // Nothing left to hand off, so nothing more is counted.
    w.flush();
    assert_eq!(log.lines_dropped(), 2);
}

#[test]
fn dropping_a_buffer_hands_off_its_lines() {
    let dir = TempDir::new("drop");
    let path = dir.0.join("access.log");
    let log = AccessLog::start(&cfg(LogSink::File(path.clone()), 1 << 20, 8)).unwrap();
    let w = LogBuf::new(Arc::clone(&log));
    w.record(&record("only"));
    drop(w);
    log.close(WAIT);
    assert_eq!(ids(&path), ["only"]);
}

#[test]
fn buffers_are_reused() {
    let sink = Sink::Hook(Box::new(|_: &[u8]| Ok(())));
    let log = AccessLog::start_with_sink(&cfg(LogSink::Stdout, 1, 4), sink);
    let w = LogBuf::new(Arc::clone(&log));
    let held = || w.buf.borrow().as_ptr();
    let first = held();
    w.record(&record("first"));
    wait_written(&log, 1);
    let mut lines = 1;
    // The writer puts the emptied batch on the spare channel after counting it. A writer done
    // before the hand-off looked for a spare has given it straight back (the hand-off reused it:
    // this worker holds `first` again); otherwise wait for it and hand off again.
    if held() != first {
        let deadline = Instant::now() + WAIT;
        while log.spare.is_empty() {
            assert!(Instant::now() < deadline, "no spare buffer came back");
            std::thread::sleep(Duration::from_millis(1));
        }
        // Only hand-offs take from the spare channel, so `first` waits there ahead of anything
        // the writer puts back next: this hand-off takes it instead of allocating.
        w.record(&record("second"));
        lines = 2;
    }
    assert_eq!(
        held(),
        first,
        "a hand-off allocated instead of taking the spare buffer"
    );
    wait_written(&log, lines);
    log.close(WAIT);
    assert_eq!(log.lines_written(), lines);
}

#[test]
fn off_is_disabled_and_inert() {
    let log = AccessLog::start(&AccessLogConfig::default()).unwrap();
    assert!(!log.enabled());
    let w = LogBuf::new(Arc::clone(&log));
    w.record(&record("x"));
    assert_eq!(w.pending_lines(), 0);
    w.flush();
    log.reopen();
    log.close(Duration::ZERO);
    log.close(Duration::ZERO);
    assert_eq!((log.lines_written(), log.lines_dropped()), (0, 0));
}

#[test]
fn stdout_reopen_is_a_no_op() {
    let log = AccessLog::start(&cfg(LogSink::Stdout, 4096, 1)).unwrap();
    assert!(log.enabled());
    log.reopen();
    assert!(!log.shared.reopen.load(Ordering::Relaxed));
    log.close(WAIT);
}

#[test]
fn open_failure_names_the_file() {
    let dir = TempDir::new("open");
    let path = dir.0.join("missing-dir").join("access.log");
    let e = AccessLog::start(&cfg(LogSink::File(path.clone()), 4096, 1)).unwrap_err();
    let prefix = format!("cannot open access log file {}: ", path.display());
    assert!(e.starts_with(&prefix), "{e}");
}
