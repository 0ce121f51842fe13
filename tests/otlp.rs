//! OTLP trace export as a collector sees it: a stub collector over real sockets receives
//! `POST /v1/traces` with `application/x-protobuf` bodies, decoded with the schema generated from
//! opentelemetry-proto (not our encoder's own definitions). One server span per sampled request:
//! ids that match the traceparent the upstream got, name, kind, times, attributes, error status
//! for 5xx; unsampled callers and `sample_ratio = 0` export nothing; a collector that answers 503
//! once gets the batch again; one that refuses it counts the spans as dropped.

mod common;
use common::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// A collector stub: answers the first `fail_first` posts with `fail_status`, then 200.
struct Collector {
    addr: SocketAddr,
    posts: mpsc::Receiver<(String, String, Vec<u8>)>,
    seen: Arc<AtomicUsize>,
}

impl Collector {
    fn start(fail_first: usize, fail_status: u16) -> Collector {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, posts) = mpsc::channel();
        let seen = Arc::new(AtomicUsize::new(0));
        let count = seen.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { return };
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    continue;
                }
                let (mut len, mut ctype) = (0usize, String::new());
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap_or((&h, ""));
                    match k.to_ascii_lowercase().as_str() {
                        "content-length" => len = v.trim().parse().unwrap_or(0),
                        "content-type" => ctype = v.trim().to_string(),
                        _ => {}
                    }
                }
                let mut body = vec![0; len];
                if r.read_exact(&mut body).is_err() {
                    continue;
                }
                let n = count.fetch_add(1, Ordering::SeqCst);
                let status = if n < fail_first { fail_status } else { 200 };
                let mut w = s;
                let _ = write!(
                    w,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                if status == 200 {
                    let _ = tx.send((line.trim().to_string(), ctype, body));
                }
            }
        });
        Collector { addr, posts, seen }
    }

    /// Spans received until `n` arrived (or 10 s passed).
    fn spans(&self, n: usize) -> Vec<(ExportTraceServiceRequest, Span)> {
        self.spans_within(n, secs(10))
    }

    /// Spans received until `n` arrived or `wait` passed.
    fn spans_within(
        &self,
        n: usize,
        wait: std::time::Duration,
    ) -> Vec<(ExportTraceServiceRequest, Span)> {
        let mut out = Vec::new();
        let end = deadline(wait);
        while out.len() < n {
            let left = end.saturating_duration_since(std::time::Instant::now());
            let Ok((line, ctype, body)) = self.posts.recv_timeout(left) else {
                break;
            };
            assert_eq!(line, "POST /v1/traces HTTP/1.1");
            assert_eq!(ctype, "application/x-protobuf");
            let req = ExportTraceServiceRequest::decode(&body[..]).expect("a valid OTLP request");
            for rs in &req.resource_spans {
                for ss in &rs.scope_spans {
                    for sp in &ss.spans {
                        out.push((req.clone(), sp.clone()));
                    }
                }
            }
        }
        out
    }
}

fn attr<'a>(s: &'a Span, key: &str) -> Option<&'a Value> {
    s.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn str_attr(s: &Span, key: &str) -> String {
    match attr(s, key) {
        Some(Value::StringValue(v)) => v.clone(),
        other => panic!("{key}: {other:?}"),
    }
}

fn int_attr(s: &Span, key: &str) -> i64 {
    match attr(s, key) {
        Some(Value::IntValue(v)) => *v,
        other => panic!("{key}: {other:?}"),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn tracing_config(up: &Upstream, col: &Collector, extra: &str) -> String {
    config(
        "",
        &(format!(
            "[access_log]\nsink = \"off\"\nflush_interval = \"20ms\"\n\n\
             [tracing]\notlp_endpoint = \"http://{}/v1/traces\"\nexport_interval = \"50ms\"\n\
             service_name = \"edge-gw\"\n{extra}\n",
            col.addr
        ) + "[[auth]]\nname = \"keys\"\ntype = \"api_key\"\n\
               keys = [{ key_env = \"CG_TEST_OTLP_API_KEY\", consumer = \"acme\" }]\n\n"
            + &upstream_toml("u", &[up.addr], "")
            + &route_toml("users", "u", "path_prefix = \"/users\"")
            + &route_toml("secure", "u", "path_prefix = \"/secure\"\nauth = \"keys\"")),
    )
}

const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const UNSAMPLED: &str = "00-11112222333344445555666677778888-00f067aa0ba902b7-00";

#[test]
fn sampled_requests_export_one_server_span_each() {
    std::env::set_var("CG_TEST_OTLP_API_KEY", "otlp-key-1");
    for_each_driver(|driver| {
        let up = Upstream::recording("u");
        let col = Collector::start(0, 200);
        let gw = Gateway::start(&tracing_config(&up, &col, ""), driver);
        let mut c = Client::connect(gw.addr);
        let t0 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let r = c.request(&req(
            "GET",
            "/users/7?x=1",
            "t.test",
            &[("traceparent", CALLER)],
            b"",
        ));
        assert_eq!(r.status, 200, "[{driver}]");
        let r = c.request(&req("POST", "/users", "t.test", &[], b"hello"));
        assert_eq!(r.status, 200, "[{driver}]");
        let r = c.request(&req(
            "GET",
            "/users/9",
            "t.test",
            &[("traceparent", UNSAMPLED)],
            b"",
        ));
        assert_eq!(r.status, 200, "[{driver}]");
        let r = c.request(&req(
            "GET",
            "/secure/s",
            "t.test",
            &[("x-api-key", "otlp-key-1")],
            b"",
        ));
        assert_eq!(r.status, 200, "[{driver}]");
        let got = col.spans(3);
        assert_eq!(got.len(), 3, "[{driver}] spans: {got:?}");
        // the upstream saw the gateway's span as its parent
        let seen: Vec<String> = up
            .requests()
            .iter()
            .map(|r| r.header("traceparent").unwrap())
            .collect();
        let (req0, a) = got
            .iter()
            .find(|(_, s)| hex(&s.trace_id) == CALLER[3..35])
            .unwrap_or_else(|| panic!("[{driver}] no span of the caller's trace: {got:?}"));
        let resource = req0.resource_spans[0].resource.as_ref().unwrap();
        assert!(resource.attributes.iter().any(|kv| kv.key == "service.name"
            && kv.value.as_ref().unwrap().value == Some(Value::StringValue("edge-gw".into()))));
        assert_eq!(
            req0.resource_spans[0].scope_spans[0]
                .scope
                .as_ref()
                .unwrap()
                .name,
            "coregate"
        );
        assert_eq!(hex(&a.parent_span_id), CALLER[36..52], "[{driver}]");
        assert_eq!(
            seen[0][36..52],
            hex(&a.span_id),
            "[{driver}] upstream's parent id"
        );
        assert_eq!(a.name, "GET users");
        assert_eq!(a.kind, 2, "SPAN_KIND_SERVER");
        assert!(
            a.start_time_unix_nano >= t0 - 1_000_000_000
                && a.end_time_unix_nano >= a.start_time_unix_nano
        );
        assert_eq!(str_attr(a, "http.request.method"), "GET");
        assert_eq!(str_attr(a, "url.path"), "/users/7");
        assert_eq!(str_attr(a, "http.route"), "users");
        assert_eq!(int_attr(a, "http.response.status_code"), 200);
        assert_eq!(str_attr(a, "coregate.upstream"), up.addr.to_string());
        assert!(a.status.is_none() || a.status.as_ref().unwrap().code == 0);
        // the trace the gateway started: sampled (ratio 1), no parent, its body sizes
        let (_, b) = got.iter().find(|(_, s)| s.name == "POST users").unwrap();
        assert!(b.parent_span_id.is_empty());
        assert_eq!(hex(&b.trace_id), seen[1][3..35]);
        assert_eq!(int_attr(b, "http.request.body.size"), 5);
        // the authenticated consumer
        let (_, s) = got.iter().find(|(_, s)| s.name == "GET secure").unwrap();
        assert_eq!(str_attr(s, "enduser.id"), "acme");
        // the unsampled caller's request exports nothing
        let total = || gw.metric("coregate_otlp_spans_total{outcome=\"exported\"}");
        wait_until(deadline(secs(5)), || total() == Some(3));
        assert_eq!(total(), Some(3), "[{driver}]");
        // exports run every 50 ms: a second is twenty chances for a wrong one to arrive
        let late = col.spans_within(1, secs(1));
        assert!(
            late.is_empty(),
            "[{driver}] the unsampled request was exported: {late:?}"
        );
    });
}

#[test]
fn errors_ratio_zero_and_collector_failures() {
    for_each_driver(|driver| {
        // a 5xx is an error span; ratio 0 drops new traces but keeps a sampled caller's
        let up = Upstream::fixed("u", 503, "down");
        let col = Collector::start(1, 503);
        let gw = Gateway::start(&tracing_config(&up, &col, "sample_ratio = 0"), driver);
        let mut c = Client::connect(gw.addr);
        assert_eq!(c.get("/users/1", "t.test").status, 503);
        let r = c.request(&req(
            "GET",
            "/users/2",
            "t.test",
            &[("traceparent", CALLER)],
            b"",
        ));
        assert_eq!(r.status, 503);
        // the first post got a 503: the exporter sent the batch again
        let got = col.spans(1);
        assert_eq!(got.len(), 1, "[{driver}]");
        let s = &got[0].1;
        assert_eq!(hex(&s.trace_id), CALLER[3..35]);
        assert_eq!(int_attr(s, "http.response.status_code"), 503);
        assert_eq!(
            s.status.as_ref().map(|st| st.code),
            Some(2),
            "STATUS_CODE_ERROR"
        );
        assert!(col.seen.load(Ordering::SeqCst) >= 2, "[{driver}] no retry");
        let late = col.spans_within(1, secs(1));
        assert!(
            late.is_empty(),
            "[{driver}] a ratio-0 trace was exported: {late:?}"
        );

        // a collector that refuses the batch (400): spans are dropped and counted
        let bad = Collector::start(usize::MAX, 400);
        let gw2 = Gateway::start(&tracing_config(&up, &bad, ""), driver);
        assert_eq!(get(gw2.addr, "/users/3", "t.test").status, 503);
        let dropped = || gw2.metric("coregate_otlp_spans_total{outcome=\"dropped\"}");
        wait_until(deadline(secs(10)), || dropped() == Some(1));
        assert_eq!(dropped(), Some(1), "[{driver}]");
        assert_eq!(
            gw2.metric("coregate_otlp_spans_total{outcome=\"exported\"}"),
            Some(0)
        );
        drop(gw);
    });
}
