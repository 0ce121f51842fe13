//! HTTP/2 abuse, sent as raw frames by a client that ignores the rules (a real client would obey
//! the server's SETTINGS), both drivers: streams beyond the concurrency limit are refused, Rapid
//! Reset (CVE-2023-44487) gets GOAWAY ENHANCE_YOUR_CALM without reaching the upstream, a
//! CONTINUATION flood (CVE-2024-27316 class) and an oversized header list end without the gateway's
//! memory growing, and PING / SETTINGS floods stay bounded; after each attack the gateway still
//! serves a well-behaved client.

mod common;
use common::h2c::*;
use common::*;
use std::time::Duration;

/// Most the gateway's RSS may grow during an attack.
const MAX_GROWTH_KIB: u64 = 32 * 1024;

fn abuse_config(up: &Upstream, http2: &str) -> String {
    config(
        &format!("http2 = {{ {http2} }}"),
        &(upstream_toml("u", &[up.addr], "") + &route_toml("all", "u", "")),
    )
}

/// A gateway that has served one h2 request, and its RSS then.
fn warmed(up: &Upstream, driver: &str) -> (Gateway, u64) {
    let gw = Gateway::start(&abuse_config(up, ""), driver);
    still_serves(&gw, driver);
    let base = gw.rss_kib();
    (gw, base)
}

/// The gateway's RSS grew less than `MAX_GROWTH_KIB` since `base`.
fn assert_bounded(gw: &Gateway, base: u64, what: &str) {
    let growth = gw.rss_kib().saturating_sub(base);
    assert!(growth < MAX_GROWTH_KIB, "{what}: RSS grew {growth} KiB");
}

/// A well-behaved h2 client still gets answers.
fn still_serves(gw: &Gateway, driver: &str) {
    let r = with_h2(gw.addr, |mut send| async move {
        h2_request(&mut send, h2_get("/after"), b"", 0).await
    });
    assert_eq!(
        r.map(|r| r.status).ok(),
        Some(200),
        "[{driver}] gateway no longer serves h2"
    );
}

#[test]
fn streams_over_the_limit_are_refused() {
    let up = Upstream::slow("slow", 500, "ok");
    for_each_driver(|driver| {
        let gw = Gateway::start(&abuse_config(&up, "max_concurrent_streams = 4"), driver);
        let mut c = RawH2::connect(gw.addr);
        let mut burst = Vec::new();
        for i in 0..6u32 {
            burst.extend(frame(
                HEADERS,
                END_STREAM | END_HEADERS,
                1 + 2 * i,
                &get_block(&format!("/s{i}")),
            ));
        }
        c.send(&burst);
        let refused = c.until(secs(5), |f| f.0 == RST_STREAM);
        let f = refused.unwrap_or_else(|| panic!("[{driver}] no stream was refused"));
        assert_eq!(rst_code(&f), REFUSED_STREAM, "[{driver}] {f:?}");
        assert!(
            f.2 >= 9,
            "[{driver}] refused stream {} is within the limit",
            f.2
        );
        // the four admitted streams are answered
        let mut answered = std::collections::BTreeSet::new();
        while answered.len() < 4 {
            match c.until(secs(5), |f| f.0 == HEADERS) {
                Some(f) => {
                    answered.insert(f.2);
                }
                None => panic!("[{driver}] only {answered:?} answered"),
            }
        }
        assert_eq!(
            answered.into_iter().collect::<Vec<_>>(),
            [1, 3, 5, 7],
            "[{driver}]"
        );
        still_serves(&gw, driver);
    });
}

#[test]
fn rapid_reset_gets_goaway_and_spares_the_upstream() {
    let up = Upstream::slow("slow", 200, "ok");
    for_each_driver(|driver| {
        let gw = Gateway::start(&abuse_config(&up, ""), driver);
        up.clear();
        let mut c = RawH2::connect(gw.addr);
        let mut sent = 0;
        let mut goaway = None;
        'attack: for round in 0..50u32 {
            let mut burst = Vec::new();
            for i in 0..100u32 {
                let id = 1 + 2 * (round * 100 + i);
                burst.extend(frame(
                    HEADERS,
                    END_STREAM | END_HEADERS,
                    id,
                    &get_block("/r"),
                ));
                burst.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
            }
            if !c.try_send(&burst) {
                break;
            }
            sent += 100;
            while let Some(f) = c.next_frame(Duration::from_millis(20)) {
                if f.0 == GOAWAY {
                    goaway = Some(f);
                    break 'attack;
                }
            }
        }
        if goaway.is_none() {
            goaway = c.until(secs(5), |f| f.0 == GOAWAY);
        }
        let f = goaway.unwrap_or_else(|| panic!("[{driver}] no GOAWAY after {sent} reset streams"));
        assert_eq!(goaway_code(&f), ENHANCE_YOUR_CALM, "[{driver}] {f:?}");
        // the upstream saw a small fraction of the streams the attacker opened
        std::thread::sleep(Duration::from_millis(300));
        let reached = up.request_count();
        assert!(
            reached * 10 < sent,
            "[{driver}] {reached} of {sent} reset streams reached the upstream"
        );
        still_serves(&gw, driver);
    });
}

#[test]
fn continuation_flood_and_huge_headers_end_with_bounded_memory() {
    let up = Upstream::fixed("f", 200, "ok");
    for_each_driver(|driver| {
        let (gw, base) = warmed(&up, driver);
        // HEADERS without END_HEADERS, then CONTINUATION frames of 1 KiB fields, never ending
        let mut c = RawH2::connect(gw.addr);
        c.send(&frame(HEADERS, END_STREAM, 1, &get_block("/c")));
        let mut field = Vec::new();
        hpack_field(&mut field, "x-flood", &"a".repeat(1000));
        let mut sent = 0usize;
        for _ in 0..4096 {
            if !c.try_send(&frame(CONTINUATION, 0, 1, &field)) {
                break;
            }
            sent += 1;
        }
        let end = c.until(secs(5), |f| f.0 == GOAWAY);
        assert!(
            end.is_some() || c.next_frame(secs(1)).is_none(),
            "[{driver}] flood of {sent} frames not cut off"
        );
        assert!(
            sent < 4096 || end.is_some(),
            "[{driver}] the whole flood was accepted"
        );
        assert!(
            !up.requests().iter().any(|r| r.target == "/c"),
            "[{driver}] flooded request forwarded"
        );
        // one complete header list over max_header_bytes (32 KiB): 40 KB in three frames
        let mut c = RawH2::connect(gw.addr);
        let mut block = get_block("/big");
        hpack_field(&mut block, "x-big", &"b".repeat(40_000));
        let parts: Vec<&[u8]> = block.chunks(16_000).collect();
        c.send(&frame(HEADERS, END_STREAM, 1, parts[0]));
        for (i, p) in parts[1..].iter().enumerate() {
            let last = i + 2 == parts.len();
            c.send(&frame(
                CONTINUATION,
                if last { END_HEADERS } else { 0 },
                1,
                p,
            ));
        }
        // refused: a reset, a GOAWAY, a 431 answer or a close; never forwarded
        let _ = c.until(secs(5), |f| f.2 == 1 || f.0 == GOAWAY);
        assert_bounded(&gw, base, &format!("[{driver}] floods"));
        assert!(
            !up.requests().iter().any(|r| r.target == "/big"),
            "[{driver}] oversized header list forwarded"
        );
        still_serves(&gw, driver);
    });
}

#[test]
fn ping_and_settings_floods_stay_bounded() {
    let up = Upstream::fixed("f", 200, "ok");
    for_each_driver(|driver| {
        let (gw, base) = warmed(&up, driver);
        let mut c = RawH2::connect(gw.addr);
        // never reading the PONGs / SETTINGS ACKs: what the gateway owes must not pile up
        let mut burst = Vec::new();
        for i in 0..1000u64 {
            burst.extend(frame(PING, 0, 0, &i.to_be_bytes()));
            burst.extend(frame(SETTINGS, 0, 0, &[0, 4, 0, 1, 0, 0]));
        }
        let mut rounds = 0;
        while rounds < 200 && c.try_send(&burst) {
            rounds += 1;
        }
        assert_bounded(&gw, base, &format!("[{driver}] {rounds}k PING+SETTINGS"));
        drop(c);
        still_serves(&gw, driver);
    });
}

#[test]
fn a_body_that_disagrees_with_its_content_length_never_reaches_the_upstream_whole() {
    let up = Upstream::echo("echo");
    for_each_driver(|driver| {
        let gw = Gateway::start(&abuse_config(&up, ""), driver);
        up.clear();
        let post = |path: &str, len: &str| {
            let mut b = Vec::new();
            hpack_field(&mut b, ":method", "POST");
            hpack_field(&mut b, ":scheme", "http");
            hpack_field(&mut b, ":path", path);
            hpack_field(&mut b, ":authority", "a.test");
            hpack_field(&mut b, "content-length", len);
            b
        };
        // more DATA than declared, and less
        for (path, declared, sent) in [("/more", "10", 20usize), ("/less", "10", 5)] {
            let mut c = RawH2::connect(gw.addr);
            c.send(&frame(HEADERS, END_HEADERS, 1, &post(path, declared)));
            c.send(&frame(DATA, END_STREAM, 1, &vec![b'x'; sent]));
            let f = c.until(secs(5), |f| {
                f.2 == 1 && (f.0 == RST_STREAM || f.0 == HEADERS)
            });
            let f = f.unwrap_or_else(|| panic!("[{driver}] {path}: no answer"));
            assert_eq!(
                f.0, RST_STREAM,
                "[{driver}] {path}: the stream must be reset, got {f:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
        let complete: Vec<_> = up.requests().into_iter().filter(|r| r.complete).collect();
        assert!(
            complete.is_empty(),
            "[{driver}] forwarded whole: {complete:?}"
        );
        still_serves(&gw, driver);
    });
}
