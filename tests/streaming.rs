//! Bodies stream through the gateway instead of being buffered: a 1 GiB Content-Length upload
//! to an upstream that discards and checksums it, a 64 MiB chunked upload with odd chunk sizes,
//! and a 256 MiB chunked download, each verified by length and checksum at the far end while
//! the gateway's RSS is sampled and must grow by less than 16 MiB.

mod common;
use common::*;
use std::thread::JoinHandle;
use std::time::Duration;

/// Most the gateway's RSS may grow while a body passes through.
const MAX_RSS_GROWTH_KIB: u64 = 16 * 1024;
const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

fn stream_config(up: &Upstream) -> String {
    config(
        "client_body_timeout = \"60s\"",
        &(upstream_toml("u", &[up.addr], "response_timeout = \"120s\"")
            + &route_toml("all", "u", "path_prefix = \"/\"\nmax_body = \"4GiB\"")),
    )
}

/// Samples the gateway's RSS until `job` finishes; returns the job's result and the peak.
fn sample_rss<T>(gw: &Gateway, job: JoinHandle<T>) -> (T, u64) {
    let mut peak = gw.rss_kib();
    while !job.is_finished() {
        // A gateway that died mid-stream leaves the job to report what the client saw.
        let Some(rss) = gw.try_rss_kib() else { break };
        peak = peak.max(rss);
        std::thread::sleep(Duration::from_millis(20));
    }
    let result = job
        .join()
        .expect("streaming client failed (see its panic above)");
    let rss = gw
        .try_rss_kib()
        .expect("gateway exited during the transfer");
    (result, peak.max(rss))
}

fn check_growth(driver: &str, what: &str, baseline: u64, peak: u64) {
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "[{driver}] {what}: RSS baseline {baseline} KiB, peak {peak} KiB, growth {growth} KiB"
    );
    assert!(
        growth < MAX_RSS_GROWTH_KIB,
        "[{driver}] {what}: gateway RSS grew {growth} KiB (baseline {baseline}, peak {peak}); bodies must stream"
    );
}

/// Warms the gateway up (one proxied request per worker-ish) and returns its RSS.
fn baseline(gw: &Gateway) -> u64 {
    for _ in 0..4 {
        let r = Client::connect(gw.addr).request(&req("POST", "/warm", "s.test", &[], b"warm"));
        assert_eq!(r.status, 200, "warm-up: {}", r.body_str());
    }
    gw.rss_kib()
}

/// Parses the discard upstream's `"LEN FNV"` answer.
fn parse_discard(r: &Response) -> (u64, u64) {
    let body = r.body_str();
    let mut it = body.split_whitespace();
    let len = it.next().and_then(|v| v.parse().ok());
    let fnv = it.next().and_then(|v| u64::from_str_radix(v, 16).ok());
    match (len, fnv) {
        (Some(l), Some(f)) => (l, f),
        _ => panic!("unexpected discard answer (status {}): {body:?}", r.status),
    }
}

/// Writes `len` pattern bytes in pieces whose sizes cycle through `sizes`, framed by `frame`.
fn write_pattern(c: &mut Client, len: u64, sizes: &[usize], chunked: bool) {
    let mut off = 0u64;
    let mut i = 0;
    while off < len {
        let n = (sizes[i % sizes.len()] as u64).min(len - off) as usize;
        let data = pattern_slice(off, n);
        if chunked {
            c.send(format!("{n:x}\r\n").as_bytes());
            c.send(data);
            c.send(b"\r\n");
        } else {
            c.send(data);
        }
        off += n as u64;
        i += 1;
    }
    if chunked {
        c.send(b"0\r\n\r\n");
    }
}

#[test]
fn one_gib_content_length_upload_streams() {
    let sink = Upstream::discard("sink");
    let cfg = stream_config(&sink);
    let expect = pattern_fnv(GIB);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let base = baseline(&gw);
        sink.clear();
        let addr = gw.addr;
        let job = std::thread::spawn(move || {
            let mut c = Client::connect(addr);
            c.send(
                format!("POST /upload HTTP/1.1\r\nHost: s.test\r\nContent-Length: {GIB}\r\n\r\n")
                    .as_bytes(),
            );
            write_pattern(&mut c, GIB, &[PATTERN_PERIOD], false);
            c.read_response_for("POST")
        });
        let (r, peak) = sample_rss(&gw, job);
        assert_eq!(
            r.status,
            200,
            "[{driver}] upload status; body {:?}",
            r.body_str()
        );
        assert_eq!(
            parse_discard(&r),
            (GIB, expect),
            "[{driver}] upstream received length/checksum"
        );
        let seen = sink.requests();
        assert_eq!(seen.len(), 1, "[{driver}] exactly one upstream request");
        assert_eq!(
            seen[0].header_all("content-length"),
            [GIB.to_string()],
            "[{driver}] Content-Length passes as is"
        );
        check_growth(driver, "1 GiB Content-Length upload", base, peak);
    });
}

#[test]
fn chunked_upload_64_mib_with_checksum() {
    let sink = Upstream::discard("sink");
    let cfg = stream_config(&sink);
    let len = 64 * MIB;
    let expect = pattern_fnv(len);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let base = baseline(&gw);
        sink.clear();
        let addr = gw.addr;
        let job = std::thread::spawn(move || {
            let mut c = Client::connect(addr);
            c.send(b"POST /chunked HTTP/1.1\r\nHost: s.test\r\nTransfer-Encoding: chunked\r\n\r\n");
            write_pattern(&mut c, len, &[1, 7, 4096, 65_536, 100_003, 1_000_000], true);
            c.read_response_for("POST")
        });
        let (r, peak) = sample_rss(&gw, job);
        assert_eq!(
            r.status,
            200,
            "[{driver}] upload status; body {:?}",
            r.body_str()
        );
        assert_eq!(
            parse_discard(&r),
            (len, expect),
            "[{driver}] upstream received length/checksum"
        );
        let seen = sink.requests();
        assert_eq!(seen.len(), 1, "[{driver}] exactly one upstream request");
        assert!(
            seen[0].chunked && !seen[0].has("content-length"),
            "[{driver}] upstream framing: {:?}",
            seen[0].headers
        );
        check_growth(driver, "64 MiB chunked upload", base, peak);
    });
}

#[test]
fn chunked_download_256_mib_with_checksum() {
    let len = 256 * MIB;
    // The pattern for /download, a small answer for the warm-up requests.
    let source = Upstream::start(
        "source",
        false,
        std::sync::Arc::new(move |r: &Recorded| match r.target.as_str() {
            "/download" => MockResponse {
                body: MockBody::Pattern(len),
                ..MockResponse::new(200, "")
            },
            _ => MockResponse::new(200, "small"),
        }),
    );
    let cfg = stream_config(&source);
    let expect = pattern_fnv(len);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let base = baseline(&gw);
        let addr = gw.addr;
        let job = std::thread::spawn(move || {
            let mut c = Client::connect(addr);
            c.send(&req("GET", "/download", "s.test", &[], b""));
            let mut fnv = Fnv64::new();
            let r = c
                .try_read_response("GET", Some(&mut |d: &[u8]| fnv.update(d)))
                .expect("download response");
            (r, fnv.finish())
        });
        let ((r, got), peak) = sample_rss(&gw, job);
        assert_eq!(r.status, 200, "[{driver}] download status");
        assert!(
            r.chunked,
            "[{driver}] chunked upstream response must reach the client chunked"
        );
        assert_eq!(
            (r.body_len, got),
            (len, expect),
            "[{driver}] downloaded length/checksum"
        );
        check_growth(driver, "256 MiB chunked download", base, peak);
    });
}
