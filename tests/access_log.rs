//! The access log as an operator reads it: one JSON line per request in a file sink, with the
//! request id the client got, the trace and span ids the upstream got, route, endpoint, status,
//! body bytes both ways, durations, the authenticated consumer and the rate-limit decision; a
//! request that matched no route logs `route: null`. SIGUSR1 reopens the file after logrotate
//! renamed it (old lines stay in the renamed file, new ones go to a new file at the path), and a
//! reload that changes the log path moves logging to the new file.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

fn wait_lines(path: &Path, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    wait_until(deadline(secs(10)), || {
        got = lines(path);
        got.len() >= n
    });
    assert_eq!(got.len(), n, "lines in {}: {got:?}", path.display());
    got
}

/// An `[access_log]` table writing to `log`, flushed every 20 ms.
fn file_sink(log: &Path) -> String {
    format!(
        "[access_log]\nsink = \"file\"\npath = \"{}\"\nflush_interval = \"20ms\"\n\n",
        log.display()
    )
}

fn log_config(up: &Upstream, log: &Path) -> String {
    config(
        "",
        &(file_sink(log) + "[[auth]]\nname = \"keys\"\ntype = \"api_key\"\n\
              keys = [{ key_env = \"CG_TEST_LOG_API_KEY\", consumer = \"acme\" }]\n\n\
              [[rate_limit]]\nname = \"per_ip\"\nkey = \"client_ip\"\nrate = \"1000/s\"\nburst = 1000\n\n"
            + &upstream_toml("u", &[up.addr], "")
            + &route_toml("api", "u", "path_prefix = \"/api\"")
            + &route_toml(
                "secure",
                "u",
                "path_prefix = \"/secure\"\nauth = \"keys\"\nrate_limits = [\"per_ip\"]",
            )),
    )
}

#[test]
fn one_json_line_per_request() {
    std::env::set_var("CG_TEST_LOG_API_KEY", "log-key-123");
    for_each_driver(|driver| {
        let up = Upstream::recording("u");
        let log = temp_path("log");
        let gw = Gateway::start(&log_config(&up, &log), driver);
        let mut c = Client::connect(gw.addr);
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let r1 = c.request(&req(
            "GET",
            "/api/a?x=1&y=\"q\"",
            "l.test",
            &[("traceparent", tp)],
            b"",
        ));
        let r2 = c.request(&req("POST", "/api/b", "l.test", &[], b"12345"));
        let r3 = c.get("/elsewhere", "l.test");
        let r4 = c.request(&req(
            "GET",
            "/secure/s",
            "l.test",
            &[("x-api-key", "log-key-123")],
            b"",
        ));
        // an unparsable head (no Host in HTTP/1.1): 400, logged with the id the client got
        let mut bad = Client::connect(gw.addr);
        let r5 = bad.request(b"GET /x HTTP/1.1\r\n\r\n");
        assert_eq!(
            (r1.status, r2.status, r3.status, r4.status, r5.status),
            (200, 200, 404, 200, 400),
            "[{driver}]"
        );
        let got = wait_lines(&log, 5);
        // its own connection may be on the other worker: its line is not ordered with the rest
        let (bad_line, got): (Vec<Value>, Vec<Value>) =
            got.into_iter().partition(|l| l["status"] == 400);
        let seen = up.wait_requests(3, secs(5));

        let l = &got[0];
        assert_eq!(l["request_id"], r1.header("x-request-id").unwrap().as_str());
        assert_eq!(l["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(l["parent_span_id"], "00f067aa0ba902b7");
        let upstream_tp = seen[0].header("traceparent").unwrap();
        assert_eq!(
            l["span_id"].as_str().unwrap(),
            &upstream_tp[36..52],
            "the span the upstream saw as its parent"
        );
        assert_eq!(l["method"], "GET");
        assert_eq!(l["path"], "/api/a?x=1&y=\"q\"");
        assert_eq!(l["route"], "api");
        assert_eq!(l["upstream"], up.addr.to_string());
        assert_eq!(l["status"], 200);
        assert_eq!(l["bytes_in"], 0);
        assert_eq!(l["bytes_out"], 2, "\"ok\"");
        assert_eq!(l["client_ip"], "127.0.0.1");
        assert!(l["duration_us"].as_u64().unwrap() >= l["upstream_us"].as_u64().unwrap());
        assert!(l["subject"].is_null() && l["ratelimit"].is_null());
        let time = l["time"].as_str().unwrap();
        assert!(
            time.len() == 24 && time.ends_with('Z') && time.contains('T'),
            "{time}"
        );

        assert_eq!(got[1]["method"], "POST");
        assert_eq!(got[1]["bytes_in"], 5);
        assert_eq!(got[1]["parent_span_id"], Value::Null, "a new trace");
        assert_eq!(got[1]["trace_id"].as_str().unwrap().len(), 32);

        assert_eq!(got[2]["status"], 404);
        assert_eq!(got[2]["route"], Value::Null);
        assert_eq!(got[2]["upstream"], Value::Null);
        assert_eq!(got[2]["upstream_us"], Value::Null);

        assert_eq!(bad_line.len(), 1, "{bad_line:?}");
        assert_eq!(
            bad_line[0]["request_id"],
            r5.header("x-request-id").unwrap().as_str()
        );
        assert_eq!(got[3]["subject"], "acme");
        assert_eq!(got[3]["ratelimit"], "allowed");
        assert_eq!(got[3]["route"], "secure");

        let m = gw.metrics();
        assert!(m.contains("coregate_access_log_lines_total 5\n"), "{m}");
        assert!(m.contains("coregate_access_log_dropped_lines_total 0\n"));
        let _ = std::fs::remove_file(&log);
    });
}

#[test]
fn sigusr1_reopens_and_reload_moves_the_log() {
    std::env::set_var("CG_TEST_LOG_API_KEY", "log-key-123");
    let up = Upstream::recording("u");
    let log = temp_path("log");
    let gw = Gateway::start(&log_config(&up, &log), "auto");
    for _ in 0..3 {
        assert_eq!(get(gw.addr, "/api/before", "l.test").status, 200);
    }
    wait_lines(&log, 3);

    // logrotate: rename, then SIGUSR1
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).unwrap();
    gw.signal(libc::SIGUSR1);
    // the reopen happens before the writer's next write; keep requesting until lines land there
    assert!(
        wait_until(deadline(secs(10)), || {
            assert_eq!(get(gw.addr, "/api/after", "l.test").status, 200);
            !lines(&log).is_empty()
        }),
        "nothing written to the reopened file"
    );
    let old = lines(&rotated);
    assert!(old.len() >= 3, "{old:?}");
    assert!(old[..3].iter().all(|l| l["path"] == "/api/before"));
    assert!(lines(&log).iter().all(|l| l["path"] == "/api/after"));

    // reload to a new path
    let moved = temp_path("log");
    std::fs::write(
        &gw.config_path,
        log_config(&up, &moved).replace("flush_interval = \"20ms\"", "flush_interval = \"30ms\""),
    )
    .unwrap();
    let mut admin = Client::connect(gw.admin.unwrap());
    let r = admin.request(&req("POST", "/reload", "admin", &[], b""));
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(get(gw.addr, "/api/moved", "l.test").status, 200);
    let got = wait_lines(&moved, 1);
    assert_eq!(got[0]["path"], "/api/moved");
    // (lines of requests made before the reload may still be on their way to the old file)
    assert!(
        lines(&log).iter().all(|l| l["path"] != "/api/moved"),
        "a request after the reload was logged to the old file"
    );
    for p in [&log, &rotated, &moved] {
        let _ = std::fs::remove_file(p);
    }
}

/// `sink = "stdout"` (containers): the same JSON lines on the gateway's standard output, written
/// out at the latest on graceful shutdown.
#[test]
fn stdout_sink_writes_json_lines() {
    for_each_driver(|driver| {
        let up = Upstream::recording("u");
        let cfg = config(
            "",
            &("[access_log]\nsink = \"stdout\"\nflush_interval = \"10s\"\n\n".to_string()
                + &upstream_toml("u", &[up.addr], "")
                + &route_toml("api", "u", "path_prefix = \"/\"")),
        );
        let mut gw = Gateway::start(&cfg, driver);
        let mut c = Client::connect(gw.addr);
        for i in 0..5 {
            assert_eq!(c.get(&format!("/s/{i}"), "l.test").status, 200);
        }
        drop(c);
        // a 10 s flush interval: these lines leave the worker's buffer only at shutdown
        gw.signal(libc::SIGTERM);
        assert!(gw.wait_exit(deadline(secs(10))).success(), "[{driver}]");
        let json_lines = || -> Vec<Value> {
            let out = gw.stdout.lock().unwrap().clone();
            out.iter()
                .filter(|l| l.starts_with('{'))
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        // the harness reads the pipe on a thread of its own
        wait_until(deadline(secs(5)), || json_lines().len() >= 5);
        let got = json_lines();
        let out = gw.stdout.lock().unwrap().clone();
        assert_eq!(got.len(), 5, "[{driver}] {out:?}");
        for (i, l) in got.iter().enumerate() {
            assert_eq!(l["path"], format!("/s/{i}"));
            assert_eq!(l["route"], "api");
        }
    });
}

/// With tiers configured, a request that no policy applied to (no limits on the route, no
/// "default" tier for the anonymous caller) logs `ratelimit: null`, not `allowed`; a request a
/// tier's policy did check logs `allowed`.
#[test]
fn ratelimit_is_null_when_no_limit_applied() {
    for_each_driver(|driver| {
        let up = Upstream::recording("u");
        let log = temp_path("log");
        let cfg = config(
            "",
            &(file_sink(&log)
                + "[[rate_limit]]\nname = \"per_ip\"\nkey = \"client_ip\"\nrate = \"1000/s\"\n\n\
                  [tier.gold]\nrate_limits = [\"per_ip\"]\n\n"
                + &upstream_toml("u", &[up.addr], "")
                + &route_toml("open", "u", "path_prefix = \"/open\"")
                + &route_toml(
                    "limited",
                    "u",
                    "path_prefix = \"/limited\"\nrate_limits = [\"per_ip\"]",
                )),
        );
        let gw = Gateway::start(&cfg, driver);
        let mut c = Client::connect(gw.addr);
        let open = c.get("/open", "l.test");
        assert_eq!(open.status, 200, "[{driver}]");
        assert!(
            !open.has("ratelimit-policy"),
            "[{driver}] no policy applied"
        );
        assert_eq!(c.get("/limited", "l.test").status, 200, "[{driver}]");
        let got = wait_lines(&log, 2);
        assert_eq!(got[0]["route"], "open");
        assert_eq!(got[0]["ratelimit"], Value::Null, "[{driver}] {}", got[0]);
        assert_eq!(got[1]["route"], "limited");
        assert_eq!(got[1]["ratelimit"], "allowed", "[{driver}]");
        let _ = std::fs::remove_file(&log);
    });
}

/// A credential the route does not forward (`forward_token = false`, read from the query) is kept
/// out of the access log too, for accepted and refused requests; the rest of the query stays.
#[test]
fn unforwarded_query_credentials_stay_out_of_the_log() {
    std::env::set_var("CG_TEST_LOG_QUERY_KEY", "query-key-789");
    for_each_driver(|driver| {
        let up = Upstream::recording("u");
        let log = temp_path("log");
        let cfg = config(
            "",
            &(file_sink(&log)
                + "[[auth]]\nname = \"keys\"\ntype = \"api_key\"\n\
                  keys = [{ key_env = \"CG_TEST_LOG_QUERY_KEY\", consumer = \"acme\" }]\n\
                  token_query = \"api_key\"\nforward_token = false\n\n"
                + &upstream_toml("u", &[up.addr], "")
                + &route_toml("keys", "u", "path_prefix = \"/k\"\nauth = \"keys\"")),
        );
        let gw = Gateway::start(&cfg, driver);
        let mut c = Client::connect(gw.addr);
        assert_eq!(
            c.get("/k?a=1&api_key=query-key-789&b=2", "l.test").status,
            200
        );
        assert_eq!(c.get("/k?api_key=wrong-guess", "l.test").status, 401);
        let got = wait_lines(&log, 2);
        assert_eq!(got[0]["path"], "/k?a=1&b=2", "[{driver}] {}", got[0]);
        assert_eq!(got[1]["path"], "/k", "[{driver}] {}", got[1]);
        assert_eq!(up.wait_requests(1, secs(5))[0].target, "/k?a=1&b=2");
        let _ = std::fs::remove_file(&log);
    });
}
