//! Request validation through real sockets: a JSON Schema (draft 2020-12) on request bodies,
//! Content-Length and chunked, answered 400 with every problem and its JSON pointer and never
//! reaching the upstream; a valid body forwarded byte for byte; a missing body on POST; a body
//! over `max_body` refused with 413 before it is buffered; declarative query and header checks.
//! Both drivers.

mod common;
use common::*;
use serde_json::Value;

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["sku", "items"],
  "properties": {
    "sku": { "type": "string", "pattern": "^[A-Z]{3}-[0-9]+$" },
    "items": { "type": "array", "minItems": 1,
               "items": { "type": "object", "required": ["qty"],
                          "properties": { "qty": { "type": "integer", "minimum": 1 } } } }
  },
  "additionalProperties": false
}"#;

fn problems(r: &Response) -> Vec<(String, String)> {
    let v: Value = r.json();
    v["problems"]
        .as_array()
        .unwrap_or_else(|| panic!("no problems in {}", r.body_str()))
        .iter()
        .map(|p| {
            (
                p["in"].as_str().unwrap().to_owned(),
                p["pointer"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn post(c: &mut Client, path: &str, body: &[u8]) -> Response {
    c.request(&req(
        "POST",
        path,
        "a.test",
        &[("content-type", "application/json")],
        body,
    ))
}

#[test]
fn bodies_are_checked_against_the_schema() {
    let up = Upstream::echo("u");
    let schema = write_temp(SCHEMA, "json");
    let cfg = config(
        "",
        &(upstream_toml("u", &[up.addr], "")
            + &route_toml(
                "orders",
                "u",
                &format!(
                    "path_prefix = \"/orders\"\nmax_body = 2048\nschema = \"{}\"",
                    schema.display()
                ),
            )),
    );
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        up.clear();
        let mut c = Client::connect(gw.addr);
        let good = br#"{"sku":"ABC-12","items":[{"qty":2},{"qty":1}]}"#;
        let r = post(&mut c, "/orders", good);
        assert_eq!((r.status, &r.body[..]), (200, &good[..]), "[{driver}]");
        let r = post(
            &mut c,
            "/orders",
            br#"{"sku":"abc","items":[{"qty":2},{"qty":0},{}],"x":1}"#,
        );
        assert_error_json(&r, 400);
        let mut got = problems(&r);
        got.sort();
        let want = [
            ("body", ""),
            ("body", "/items/1/qty"),
            ("body", "/items/2"),
            ("body", "/sku"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, want, "[{driver}] {}", r.body_str());
        assert_eq!(
            r.header("connection").as_deref(),
            Some("keep-alive"),
            "[{driver}] the body was read whole"
        );
        // the connection goes on: a chunked valid body
        let mut raw = b"POST /orders HTTP/1.1\r\nHost: a.test\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        raw.extend(chunked(&[
            b"{\"sku\":\"XYZ-1\",",
            b"\"items\":[{\"qty\":9}]}",
        ]));
        let r = c.request(&raw);
        assert_eq!(r.status, 200, "[{driver}] {}", r.body_str());
        assert_eq!(
            r.body, b"{\"sku\":\"XYZ-1\",\"items\":[{\"qty\":9}]}",
            "[{driver}]"
        );
        // not JSON, and no body at all
        let r = post(&mut c, "/orders", b"sku=ABC-1");
        assert_error_json(&r, 400);
        assert!(
            r.body_str().contains("not valid JSON"),
            "[{driver}] {}",
            r.body_str()
        );
        let r = post(&mut c, "/orders", b"");
        assert!(
            r.body_str().contains("a request body is required"),
            "[{driver}] {}",
            r.body_str()
        );
        // over max_body: 413 on the declared length, before any of it is read
        let mut c = Client::connect(gw.addr);
        let r = c.request(&req(
            "POST",
            "/orders",
            "a.test",
            &[("content-length", "4096")],
            b"",
        ));
        assert_eq!(r.status, 413, "[{driver}]");
        // a chunked body of exactly max_body is read whole and passes
        let mut c = Client::connect(gw.addr);
        let json = br#"{"sku":"ABC-1","items":[{"qty":1}]}"#;
        let mut exact = json.to_vec();
        exact.resize(2048, b' ');
        let mut raw =
            b"POST /orders HTTP/1.1\r\nHost: a.test\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let body = chunked(&[&exact[..1000], &exact[1000..]]);
        // all of the data first: the gateway must wait for the last chunk, not call it too large
        let (data, last) = body.split_at(body.len() - 5);
        raw.extend_from_slice(data);
        c.send(&raw);
        c.set_read_timeout(std::time::Duration::from_millis(300));
        assert!(
            c.read_head_raw().is_err(),
            "[{driver}] answered before the body ended"
        );
        c.set_read_timeout(secs(10));
        c.send(last);
        let r = c.read_response();
        assert_eq!(
            (r.status, r.body.len()),
            (200, 2048),
            "[{driver}] {}",
            r.body_str()
        );
        // chunked past max_body: 413 as it grows
        let mut c = Client::connect(gw.addr);
        let mut raw =
            b"POST /orders HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let big = vec![b'a'; 3000];
        raw.extend(chunked(&[&big]));
        assert_eq!(c.request(&raw).status, 413, "[{driver}]");
        assert_eq!(
            up.request_count(),
            3,
            "[{driver}] only the valid bodies were forwarded"
        );
        let m = gw.metrics();
        assert!(
            m.contains("coregate_validation_failed_total{route=\"orders\"} 3"),
            "[{driver}]"
        );
    });
}

#[test]
fn query_and_header_checks() {
    let up = Upstream::recording("u");
    let cfg = config(
        "",
        &(upstream_toml("u", &[up.addr], "")
            + &route_toml(
                "list",
                "u",
                "path_prefix = \"/list\"\n\
                 validate_query = { page = { type = \"integer\", required = true, min = 1 }, sort = { values = [\"asc\", \"desc\"] }, q = { max_length = 8 } }\n\
                 validate_headers = { \"X-Tenant\" = { required = true, pattern = \"^[a-z]{2,16}$\" } }",
            )),
    );
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        up.clear();
        let mut c = Client::connect(gw.addr);
        let with_tenant =
            |path: &str, tenant: &str| req("GET", path, "a.test", &[("x-tenant", tenant)], b"");
        assert_eq!(
            c.request(&with_tenant("/list?page=2&sort=asc&q=shoes", "acme"))
                .status,
            200,
            "[{driver}]"
        );
        let r = c.request(&with_tenant(
            "/list?page=0&sort=up&q=far%20too%20long",
            "ACME",
        ));
        assert_error_json(&r, 400);
        let mut got = problems(&r);
        got.sort();
        let want = [
            ("header", "/x-tenant"),
            ("query", "/page"),
            ("query", "/q"),
            ("query", "/sort"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, want, "[{driver}] {}", r.body_str());
        let r = c.get("/list", "a.test");
        assert_error_json(&r, 400);
        assert_eq!(
            problems(&r).len(),
            2,
            "[{driver}] page and X-Tenant missing: {}",
            r.body_str()
        );
        assert_eq!(up.request_count(), 1, "[{driver}]");
    });
}
