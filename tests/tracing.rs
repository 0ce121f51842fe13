//! W3C trace context through the gateway, as the upstream sees it: a valid `traceparent` is
//! continued (same trace id and flags, the gateway's own new span id as parent, exactly one
//! `traceparent` field) and `tracestate` passes unchanged; with no `traceparent`, or an invalid one
//! (uppercase hex, all-zero ids, version ff), the gateway starts a new sampled trace and drops the
//! caller's `tracestate`, which belonged to no trace it continued. Every request gets a span id of
//! its own.

mod common;
use common::*;

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// (trace id, parent id, flags) of a traceparent the upstream received.
fn fields(tp: &str) -> (String, String, String) {
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[0], "00", "{tp}");
    assert!(
        lower_hex(parts[1], 32) && lower_hex(parts[2], 16) && lower_hex(parts[3], 2),
        "{tp}"
    );
    (parts[1].into(), parts[2].into(), parts[3].into())
}

#[test]
fn traceparent_is_continued_or_started() {
    for_each_driver(|driver| {
        let up = Upstream::recording("u");
        let cfg = config(
            "",
            &(upstream_toml("u", &[up.addr], "") + &route_toml("all", "u", "path_prefix = \"/\"")),
        );
        let gw = Gateway::start(&cfg, driver);
        let mut c = Client::connect(gw.addr);
        let valid = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
        let send = |c: &mut Client, headers: &[(&str, &str)]| {
            let r = c.request(&req("GET", "/t", "t.test", headers, b""));
            assert_eq!(r.status, 200, "[{driver}]");
        };

        // continued
        send(
            &mut c,
            &[
                ("traceparent", &valid),
                ("tracestate", "vendor=abc,other=1"),
            ],
        );
        // continued again: a new span each time
        send(&mut c, &[("traceparent", &valid)]);
        // absent: a new trace; a lone tracestate is dropped
        send(&mut c, &[("tracestate", "vendor=abc")]);
        // invalid: restarted, tracestate dropped
        let upper = format!("00-{}-{CLIENT_SPAN}-01", CLIENT_TRACE.to_uppercase());
        send(
            &mut c,
            &[("traceparent", &upper), ("tracestate", "vendor=abc")],
        );
        send(
            &mut c,
            &[(
                "traceparent",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            )],
        );
        send(
            &mut c,
            &[(
                "traceparent",
                &format!("ff-{CLIENT_TRACE}-{CLIENT_SPAN}-01"),
            )],
        );
        // a later version is continued and forwarded as version 00
        send(
            &mut c,
            &[(
                "traceparent",
                &format!("01-{CLIENT_TRACE}-{CLIENT_SPAN}-00-future"),
            )],
        );

        let seen = up.wait_requests(7, secs(5));
        for r in &seen {
            assert_eq!(r.header_all("traceparent").len(), 1, "[{driver}] {r:?}");
        }
        let tp: Vec<(String, String, String)> = seen
            .iter()
            .map(|r| fields(&r.header("traceparent").unwrap()))
            .collect();

        assert_eq!(tp[0].0, CLIENT_TRACE, "[{driver}] trace continued");
        assert_ne!(tp[0].1, CLIENT_SPAN, "the gateway's span is the parent");
        assert_eq!(tp[0].2, "01");
        assert_eq!(
            seen[0].header("tracestate").as_deref(),
            Some("vendor=abc,other=1")
        );
        assert_eq!(tp[1].0, CLIENT_TRACE);
        assert_ne!(tp[1].1, tp[0].1, "one span per request");

        for (i, label) in [
            (2, "absent"),
            (3, "uppercase"),
            (4, "zero trace id"),
            (5, "version ff"),
        ] {
            assert_ne!(tp[i].0, CLIENT_TRACE, "[{driver}] {label}: new trace");
            assert_ne!(tp[i].0, "0".repeat(32));
            assert_eq!(tp[i].2, "01", "{label}: new traces are sampled");
            assert!(
                !seen[i].has("tracestate"),
                "[{driver}] {label}: tracestate dropped"
            );
        }
        assert_ne!(tp[2].0, tp[3].0, "independent new traces");
        assert_eq!(tp[6].0, CLIENT_TRACE, "future version continued");
        assert_eq!(tp[6].2, "00", "flags kept");
    });
}
