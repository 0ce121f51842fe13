//! Unit tests of the WAF policy: scoring, thresholds, exclusions by rule, family and target, and
//! body inspection by content type.

use super::*;
use crate::http::head::{parse_request, RequestHead};

fn policy() -> Policy {
    Policy {
        mode: Mode::Block,
        paranoia: 1,
        threshold: 5,
        status: 403,
        excluded_rules: Vec::new(),
        excluded_families: 0,
        exclusions: Vec::new(),
        headers: vec!["user-agent".into(), "referer".into()],
        body_limit: 128 * 1024,
        over_limit: OverLimit::Partial,
        log_payload: false,
    }
}

fn head_findings(p: &Policy, req: &str) -> Findings {
    head_findings_in(p, req, &mut Scratch::default())
}

/// `req`'s head through `p`, with the connection's buffers `s` (what it remembers included).
fn head_findings_in(p: &Policy, req: &str, s: &mut Scratch) -> Findings {
    let mut head = RequestHead::default();
    let limits = crate::http::head::HeadLimits {
        max_request_line: 8192,
        max_header_bytes: 16384,
        max_headers: 64,
    };
    parse_request(req.as_bytes(), &limits, &mut head)
        .unwrap()
        .unwrap();
    let fields = crate::http::view::Fields::H1 {
        head: &head,
        buf: req.as_bytes(),
    };
    let mut out = Findings::default();
    p.inspect_head(head.target(req.as_bytes()), &fields, s, &mut out);
    out
}

#[test]
fn query_cookie_and_agent_are_inspected() {
    let p = policy();
    let f = head_findings(&p, "GET /a?q=1'%20or%20'1'='1 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        p.over(&f) && f.rules().contains(&rules::SQLI_LIBINJECTION),
        "{f:?}"
    );
    let f = head_findings(
        &p,
        "GET /a HTTP/1.1\r\nHost: x\r\nCookie: s=<script>alert(1)</script>\r\n\r\n",
    );
    assert!(f.families & (1 << Family::Xss.index()) != 0, "{f:?}");
    let f = head_findings(
        &p,
        "GET /a HTTP/1.1\r\nHost: x\r\nUser-Agent: sqlmap/1.7\r\n\r\n",
    );
    assert_eq!(f.rules(), [913100]);
    let f = head_findings(
        &p,
        "GET /a?name=O%27Brien&q=select+a+car HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(f.score, 0, "{f:?}");
}

#[test]
fn exclusions_by_rule_family_and_target() {
    let req = "GET /a?search=1'%20or%20'1'='1&x=1 HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut p = policy();
    p.excluded_families = 1 << Family::Sqli.index();
    assert_eq!(head_findings(&p, req).score, 0);
    let mut p = policy();
    p.exclusions = vec![Exclusion {
        rules: vec![],
        families: 0,
        targets: vec![Target::Arg {
            name: "search".into(),
            prefix: false,
        }],
    }];
    assert_eq!(head_findings(&p, req).score, 0);
    let bad = "GET /a?other=1'%20or%20'1'='1 HTTP/1.1\r\nHost: x\r\n\r\n";
    assert!(p.over(&head_findings(&p, bad)));
    p.exclusions[0].targets = vec![Target::Arg {
        name: "oth".into(),
        prefix: true,
    }];
    assert_eq!(head_findings(&p, bad).score, 0);
}

#[test]
fn bodies_by_content_type() {
    let p = policy();
    let mut s = Scratch::default();
    let mut f = Findings::default();
    let json = br#"{"user":{"bio":"x\u0027 UNION SELECT password FROM users--"}}"#;
    p.inspect_body(
        Some(b"application/json; charset=utf-8"),
        json,
        true,
        &mut s,
        &mut f,
    );
    assert!(p.over(&f), "{f:?}");
    let mut f = Findings::default();
    p.inspect_body(
        Some(b"application/json"),
        br#"{"name":"D'Angelo","note":"a < b"}"#,
        true,
        &mut s,
        &mut f,
    );
    assert_eq!(f.score, 0, "{f:?}");
    let mut f = Findings::default();
    p.inspect_body(
        Some(b"application/json"),
        br#"{"a": "#,
        true,
        &mut s,
        &mut f,
    );
    assert_eq!(f.rules(), [MALFORMED_BODY]);
    let mut f = Findings::default();
    p.inspect_body(
        Some(b"application/json"),
        br#"{"a": "#,
        false,
        &mut s,
        &mut f,
    );
    assert_eq!(f.score, 0, "a cut body is not malformed");
    let mut f = Findings::default();
    let form = b"comment=%3Cscript%3Ealert(1)%3C%2Fscript%3E";
    p.inspect_body(
        Some(b"application/x-www-form-urlencoded"),
        form,
        true,
        &mut s,
        &mut f,
    );
    assert!(p.over(&f));
    let mut f = Findings::default();
    p.inspect_body(Some(b"text/plain"), b"' or 1=1--", true, &mut s, &mut f);
    assert_eq!(f.score, 0, "other types are not inspected");
}

#[test]
fn repeated_header_values_reuse_their_verdict_and_changed_ones_are_scanned() {
    let p = policy();
    let mut s = Scratch::default();
    let run = |req: &str, s: &mut Scratch| head_findings_in(&p, req, s);
    let bad =
        "GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: sqlmap/1.7\r\nCookie: a=1' or '1'='1\r\n\r\n";
    let good =
        "GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: Mozilla/5.0 (X11; Linux)\r\nCookie: a=1\r\n\r\n";
    let first = run(bad, &mut Scratch::default()).score;
    for _ in 0..3 {
        assert!(run(good, &mut s).rules().is_empty());
        let f = run(bad, &mut s);
        assert!(
            f.rules().contains(&913100) && f.rules().contains(&rules::SQLI_LIBINJECTION),
            "{f:?}"
        );
        assert_eq!(f.score, first);
    }
    // more distinct values than slots: the oldest are scanned again, with the same answers
    for i in 0..20 {
        let req = format!("GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: agent-{i} (x; y)\r\n\r\n");
        assert!(run(&req, &mut s).rules().is_empty());
    }
    assert_eq!(run(bad, &mut s).score, first);
}

#[test]
fn hostile_bytes_never_panic() {
    // a xorshift stream over an alphabet rich in what the decoders act on
    let alphabet: &[u8] = b"%&#;\\xuU0123456789abcdefABCDEF<>'\"/.*-_ \t\r\n\x00\xc0\xaf\xe0\x80\xef\xbc\x8e\xff{}$()[]=:";
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let p = policy();
    let mut s = Scratch::default();
    for len in (0..4000).map(|i| i % 97) {
        let v: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                alphabet[(x % alphabet.len() as u64) as usize]
            })
            .collect();
        let mut f = Findings::default();
        for ct in [
            "application/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=%&",
        ] {
            p.inspect_body(Some(ct.as_bytes()), &v, true, &mut s, &mut f);
        }
        detect::scan(RuleSet::get(4), Part::Raw, &v, &mut s.forms, &mut |_| {});
        detect::scan(RuleSet::get(4), Part::Args, &v, &mut s.forms, &mut |_| {});
    }
}
