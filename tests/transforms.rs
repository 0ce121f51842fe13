//! Header transforms through real sockets: `request_headers` changes what the upstream receives
//! (set with templates from path parameters, query, headers and identity; add; remove; rename),
//! `response_headers` what the client receives, byte-exact.
//! Both drivers.

mod common;
use common::*;
use std::sync::Arc;

#[test]
fn request_and_response_headers_are_transformed() {
    let up = Upstream::start(
        "users",
        false,
        Arc::new(|_r: &Recorded| {
            MockResponse::new(200, "{}")
                .header("content-type", "application/json")
                .header("server", "backend/1.2")
                .header("x-internal-trace", "abc")
                .header("x-old", "one")
                .header("x-old", "two")
        }),
    );
    let extra = r#"path_template = "/m/users/{id}"
strip_prefix = "/m"
request_headers = { set = { "X-Api-Version" = "2", "X-User" = "{id}", "X-Lang" = "{query.lang}", "X-Agent" = "ua={header.user-agent} ip={client_ip}" }, add = { "X-Via-Gateway" = "yes" }, remove = ["X-Debug"], rename = { "X-Client-Token" = "X-Token" } }
response_headers = { set = { "Cache-Control" = "no-store", "X-Req" = "{request_id}" }, remove = ["Server", "X-Internal-Trace"], rename = { "X-Old" = "X-New" } }"#;
    let cfg = config(
        "",
        &(upstream_toml("users", &[up.addr], "") + &route_toml("mobile-user", "users", extra)),
    );
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        up.clear();
        let mut c = Client::connect(gw.addr);
        let r = c.request(&req(
            "GET",
            "/m/users/a%20b?lang=fr%2Dca",
            "a.test",
            &[
                ("x-debug", "1"),
                ("X-Api-Version", "1"),
                ("x-client-token", "t1"),
                ("X-Token", "forged"),
                ("user-agent", "curl/8"),
                ("x-request-id", "rid-7"),
            ],
            b"",
        ));
        assert_eq!(r.status, 200, "[{driver}] {}", r.body_str());
        let seen = up.wait_requests(1, secs(5)).remove(0);
        assert_eq!(seen.target, "/users/a%20b?lang=fr%2Dca", "[{driver}]");
        assert_eq!(seen.header_all("x-api-version"), ["2"], "[{driver}]");
        assert_eq!(seen.header("x-user").as_deref(), Some("a b"), "[{driver}]");
        assert_eq!(
            seen.header("x-lang").as_deref(),
            Some("fr-ca"),
            "[{driver}]"
        );
        assert_eq!(
            seen.header("x-agent").as_deref(),
            Some("ua=curl/8 ip=127.0.0.1"),
            "[{driver}]"
        );
        assert_eq!(seen.header("x-via-gateway").as_deref(), Some("yes"));
        assert!(
            !seen.has("x-debug") && !seen.has("x-client-token"),
            "[{driver}]"
        );
        assert_eq!(
            seen.header_all("x-token"),
            ["t1"],
            "[{driver}] renamed, forged copy dropped"
        );
        // the client's view
        assert_eq!(r.header_all("cache-control"), ["no-store"], "[{driver}]");
        assert_eq!(r.header("x-req").as_deref(), Some("rid-7"), "[{driver}]");
        assert!(!r.has("server") && !r.has("x-internal-trace") && !r.has("x-old"));
        assert_eq!(r.header_all("x-new"), ["one", "two"], "[{driver}]");
        assert_eq!(r.body, b"{}", "[{driver}]");

        // a missing placeholder value leaves that field out; the rest still applies
        let r = c.get("/m/users/7", "a.test");
        assert_eq!(r.status, 200, "[{driver}]");
        let seen = up.wait_requests(2, secs(5)).remove(1);
        assert!(!seen.has("x-lang"), "[{driver}] no ?lang: no X-Lang");
        assert_eq!(seen.header("x-user").as_deref(), Some("7"));
    });
}

#[test]
fn header_transform_config_errors_name_the_key() {
    let cfg = config(
        "",
        &(upstream_toml("u", &[closed_port()], "")
            + &route_toml(
                "r",
                "u",
                r#"path_prefix = "/"
request_headers = { set = { "Host" = "x", "X-A" = "{nope}", "Bad Name" = "1" }, remove = ["X-A"] }
response_headers = { set = { "Content-Length" = "1" } }"#,
            )),
    );
    let err = Gateway::try_start(&cfg, "epoll", &[])
        .err()
        .expect("refused");
    for needle in [
        "route[0].request_headers.set.Host: \"host\": use host_rewrite",
        "route[0].request_headers.set.X-A: unknown path parameter \"nope\"",
        "route[0].request_headers.set.\"Bad Name\": invalid header name",
        "route[0].response_headers.set.Content-Length: \"content-length\": framing",
    ] {
        assert!(err.contains(needle), "{needle} not in {err}");
    }
}

#[test]
fn json_bodies_are_transformed_both_ways_and_statuses_overridden() {
    let up = Upstream::start(
        "svc",
        true,
        Arc::new(|r: &Recorded| {
            match r.target.split('?').next().unwrap_or_default() {
            "/user" => MockResponse::new(
                200,
                r#"{"result":{"id":7,"user_name":"Ada","internal":{"x":1},"meta":{"ts":5,"debug":true}}}"#,
            )
            .header("content-type", "application/json"),
            "/echo" => MockResponse::new(200, r.body.clone()).header("content-type", "application/json"),
            "/broken" => MockResponse::new(500, "<html><body>Internal Error</body></html>")
                .header("content-type", "text/html"),
            _ => MockResponse::new(404, ""),
        }
        }),
    );
    let extra = r#"path_prefix = "/"
query_fields = "fields"
response_body = { unwrap = "result", drop = ["internal", "meta.debug"], rename = { "user_name" = "name" }, wrap = "data" }
request_body = { drop = ["password"], rename = { "login" = "user" } }
status_overrides = [{ statuses = [500, 503], status = 502, body = '{"error":"upstream failed"}', content_type = "application/json" }]"#;
    let cfg = config(
        "",
        &(upstream_toml("svc", &[up.addr], "") + &route_toml("bff", "svc", extra)),
    );
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        up.clear();
        let mut c = Client::connect(gw.addr);
        let r = c.get("/user", "a.test");
        assert_eq!(r.status, 200, "[{driver}]");
        assert_eq!(
            r.body_str(),
            r#"{"data":{"id":7,"name":"Ada","meta":{"ts":5}}}"#,
            "[{driver}]"
        );
        assert_eq!(r.header("content-length"), Some(r.body.len().to_string()));
        // ?fields= selects from what the client sees (after the transform)
        let r = c.get("/user?fields=data.name,data.meta", "a.test");
        assert_eq!(
            r.body_str(),
            r#"{"data":{"name":"Ada","meta":{"ts":5}}}"#,
            "[{driver}]"
        );
        let r = c.get("/user?fields=a..b", "a.test");
        assert_error_json(&r, 400);

        // request bodies: Content-Length and chunked, rewritten with a new length
        let body = br#"{"login":"ada","password":"hunter2","keep":[1, 2]}"#;
        let r = c.request(&req(
            "POST",
            "/echo",
            "a.test",
            &[("content-type", "application/json")],
            body,
        ));
        assert_eq!(r.status, 200, "[{driver}]");
        let seen = up.wait_requests(3, secs(5)).pop().unwrap();
        assert_eq!(
            seen.body_str(),
            r#"{"user":"ada","keep":[1, 2]}"#,
            "[{driver}]"
        );
        assert_eq!(
            seen.header("content-length"),
            Some(seen.body.len().to_string())
        );
        let r = c.request(&req(
            "POST",
            "/echo",
            "a.test",
            &[
                ("content-type", "application/json"),
                ("transfer-encoding", "chunked"),
            ],
            &chunked(&[b"{\"login\":", b"\"bo\",\"password\":\"x\"}"]),
        ));
        assert_eq!(r.status, 200, "[{driver}]");
        let seen = up.wait_requests(4, secs(5)).pop().unwrap();
        assert_eq!(seen.body_str(), r#"{"user":"bo"}"#, "[{driver}]");
        assert!(!seen.chunked, "[{driver}] sent with a Content-Length");
        // not JSON: untouched
        let r = c.request(&req(
            "POST",
            "/echo",
            "a.test",
            &[("content-type", "text/plain")],
            b"login=x",
        ));
        assert_eq!(r.status, 200);
        assert_eq!(up.wait_requests(5, secs(5)).pop().unwrap().body, b"login=x");

        // an upstream's HTML 500 becomes the route's JSON 502
        let r = c.get("/broken", "a.test");
        assert_eq!(r.status, 502, "[{driver}]");
        assert_eq!(r.body_str(), r#"{"error":"upstream failed"}"#);
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/json")
        );
        // and the connection goes on
        assert_eq!(c.get("/user", "a.test").status, 200, "[{driver}]");
    });
}
