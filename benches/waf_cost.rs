//! What the WAF adds to a typical small JSON API request (issue 16 goal: at most 10 µs of CPU),
//! measured on the compiled policy the way the pipeline calls it:
//! - `waf_head`: `Policy::inspect_head` over the raw target, decoded path, three query arguments,
//!   User-Agent, Referer and a session cookie, on a connection that sent these headers before
//!   (their verdicts are remembered per connection: `waf::Memo`);
//! - `waf_head_first`: the same on a connection's first request (fresh buffers, nothing
//!   remembered);
//! - `waf_body_json`: `Policy::inspect_body` over a 190-byte JSON order (names with apostrophes,
//!   an e-mail address, a free-text note);
//! - `waf_request`: both, the whole WAF cost of that request;
//! - `waf_attack`: the same request with a SQL injection in the note (what a blocked request
//!   costs before its 403).
//!
//! A route without `waf` runs none of this: its chain has no WAF filter and no request_body phase.
//!
//! Run: `cargo bench --bench waf_cost`.

use std::hint::black_box;

use coregate::config::parse_str;
use coregate::http::head::{parse_request, HeadLimits, RequestHead};
use coregate::http::view::Fields;
use coregate::waf::{Findings, Scratch};
use criterion::{criterion_group, criterion_main, Criterion};

const HEAD: &str = "POST /api/orders?expand=items&page=2&currency=EUR HTTP/1.1\r\n\
Host: api.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36\r\n\
Referer: https://shop.example.com/cart?step=2\r\n\
Cookie: session=6f1c2a9e4b7d4c11a2f0; theme=dark\r\n\
Content-Type: application/json\r\n\
Content-Length: 190\r\n\r\n";

const BODY: &[u8] = br#"{"customer":{"name":"Jane O'Brien","email":"jane.obrien@example.com"},"items":[{"sku":"ABC-12","qty":2},{"sku":"XYZ-7","qty":1}],"note":"Leave it at the back door, thanks! I'm out until 6 pm."}"#;
const ATTACK: &[u8] = br#"{"customer":{"name":"Jane O'Brien","email":"jane.obrien@example.com"},"items":[{"sku":"ABC-12","qty":2},{"sku":"XYZ-7","qty":1}],"note":"x' UNION SELECT password FROM users--"}"#;

fn bench(c: &mut Criterion) {
    let cfg = parse_str(
        "[[upstream]]\nname = \"u\"\nendpoints = [\"127.0.0.1:9\"]\n[[route]]\nupstream = \"u\"\nwaf = { mode = \"block\" }\n",
        "bench.toml",
    )
    .expect("config");
    let policy = cfg.routes[0].waf.clone().expect("waf");
    let limits = HeadLimits {
        max_request_line: 8192,
        max_header_bytes: 16384,
        max_headers: 64,
    };
    let mut head = RequestHead::default();
    parse_request(HEAD.as_bytes(), &limits, &mut head)
        .expect("head")
        .expect("whole");
    let buf = HEAD.as_bytes();
    let fields = Fields::H1 { head: &head, buf };
    let target = head.target(buf);
    let ct = Some(&b"application/json"[..]);
    let mut s = Scratch::default();
    let run = |body: &[u8], head_too: bool, s: &mut Scratch| {
        let mut f = Findings::default();
        if head_too {
            policy.inspect_head(target, &fields, s, &mut f);
        }
        if !body.is_empty() {
            policy.inspect_body(ct, body, true, s, &mut f);
        }
        f.score
    };
    assert_eq!(run(BODY, true, &mut s), 0, "the typical request is clean");
    assert!(run(ATTACK, true, &mut s) >= 5, "the attack is caught");
    c.bench_function("waf_head", |b| b.iter(|| black_box(run(b"", true, &mut s))));
    c.bench_function("waf_head_first", |b| {
        b.iter(|| black_box(run(b"", true, &mut Scratch::default())))
    });
    c.bench_function("waf_body_json", |b| {
        b.iter(|| black_box(run(BODY, false, &mut s)))
    });
    c.bench_function("waf_request", |b| {
        b.iter(|| black_box(run(BODY, true, &mut s)))
    });
    c.bench_function("waf_attack", |b| {
        b.iter(|| black_box(run(ATTACK, true, &mut s)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
