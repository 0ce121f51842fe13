//! Question: how long does the gateway spend on a request head before any IO — strict parse
//! (`http::head::parse_request`) plus writing the upstream head (`http::rewrite::write_upstream_request`)
//! — for a typical API request, and how does the strict parser compare with bare `httparse`?
//!
//! Decision it backs: keeping our own strictness layer (bare-LF scan, framing and Host rules, header
//! classification) on top of httparse. If the extra checks cost more than a small fraction of the
//! ~20 µs of kernel time a proxied request costs, they need a cheaper design.

use criterion::{black_box, criterion_group, criterion_main, Criterion};

use coregate::http::head::{parse_request, HeadLimits, RequestHead};
use coregate::http::rewrite::{write_upstream_request, Forwarding};

const LIMITS: HeadLimits = HeadLimits {
    max_request_line: 8192,
    max_header_bytes: 32768,
    max_headers: 100,
};

const SMALL: &[u8] = b"GET /api/users/42?fields=name HTTP/1.1\r\nHost: api.example.com\r\n\
User-Agent: wrk\r\nAccept: */*\r\n\r\n";

const BROWSERISH: &[u8] = b"POST /api/orders HTTP/1.1\r\nHost: api.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n\
Accept: application/json, text/plain, */*\r\nAccept-Language: en-US,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br\r\n\
Content-Type: application/json\r\nContent-Length: 27\r\nOrigin: https://app.example.com\r\n\
Referer: https://app.example.com/orders\r\nAuthorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl\r\n\
Cookie: session=abcdef0123456789; theme=dark\r\nX-Forwarded-For: 203.0.113.7\r\nX-Request-Id: req-123\r\n\
Connection: keep-alive\r\n\r\n{\"item\":\"book\",\"qty\":1}";

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("head");
    for (name, raw) in [("small", SMALL), ("browserish", BROWSERISH)] {
        let mut head = RequestHead::default();
        g.bench_function(format!("strict_parse/{name}"), |b| {
            b.iter(|| parse_request(black_box(raw), &LIMITS, &mut head).unwrap())
        });
        g.bench_function(format!("httparse_only/{name}"), |b| {
            b.iter(|| {
                let mut headers = [httparse::EMPTY_HEADER; 64];
                let mut req = httparse::Request::new(&mut headers);
                black_box(req.parse(black_box(raw)).unwrap());
            })
        });
        let mut out = Vec::with_capacity(4096);
        g.bench_function(format!("parse_and_rewrite/{name}"), |b| {
            b.iter(|| {
                parse_request(black_box(raw), &LIMITS, &mut head).unwrap();
                out.clear();
                let ctx = Forwarding {
                    target: head.target(raw),
                    host_rewrite: None,
                    fallback_host: b"127.0.0.1:9001",
                    client_ip: b"127.0.0.1",
                    request_id: b"0123abcd-00-000000000001",
                    proto: b"http",
                    strip: &[],
                    strip_cookie: None,
                    add: &[],
                    transform_strip: &[],
                    transform_lines: b"",
                    traceparent: b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                    keep_tracestate: false,
                    client_cert: None,
                    upgrade: None,
                };
                write_upstream_request(&mut out, raw, &head, &ctx);
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
