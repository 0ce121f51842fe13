//! The admin listener: /healthz and /readyz answer 200 while serving, and /metrics is Prometheus
//! text whose `coregate_requests_total{route,class}` counts what clients actually got (summed
//! over workers), with `coregate_upstream_errors_total` and `coregate_open_connections` present.

mod common;
use common::*;

/// Sum of samples of `metric` whose labels contain every `label="value"` in `labels`. When
/// both per-worker (`worker=` label) and aggregated samples exist, the aggregated ones count.
fn metric_sum(text: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut agg = Vec::new();
    let mut per_worker = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (name, label_text) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if name != metric
            || !labels
                .iter()
                .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")))
        {
            continue;
        }
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        if label_text.contains("worker=") {
            per_worker.push(v);
        } else {
            agg.push(v);
        }
    }
    let pick = if agg.is_empty() { per_worker } else { agg };
    (!pick.is_empty()).then(|| pick.iter().sum())
}

#[test]
fn health_and_ready() {
    let up = Upstream::recording("rec");
    let cfg = config(
        "",
        &(upstream_toml("u", &[up.addr], "") + &route_toml("r", "u", "path_prefix = \"/\"")),
    );
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        assert!(
            gw.admin.is_some(),
            "[{driver}] ready line must name the admin address"
        );
        assert_eq!(gw.admin_get("/healthz").status, 200, "[{driver}] /healthz");
        assert_eq!(
            gw.admin_get("/readyz").status,
            200,
            "[{driver}] /readyz while serving"
        );
        assert_eq!(
            up.request_count(),
            0,
            "[{driver}] admin requests must not be proxied"
        );
    });
}

#[test]
fn metrics_count_requests_per_route_and_class() {
    let up = Upstream::recording("rec");
    let dead = closed_port();
    let body = upstream_toml("u", &[up.addr], "")
        + &upstream_toml("dead", &[dead], "retries = 0\nmax_fails = 1000")
        + &route_toml("api", "u", "path_prefix = \"/api\"")
        + &route_toml("broken", "dead", "path_prefix = \"/broken\"");
    let cfg = config("", &body);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        for i in 0..3 {
            // Separate connections, so both workers are likely to serve some.
            assert_eq!(get(gw.addr, &format!("/api/{i}"), "m.test").status, 200);
        }
        assert_eq!(get(gw.addr, "/broken", "m.test").status, 502);
        let mut text = String::new();
        let settled = wait_until(deadline(secs(5)), || {
            text = gw.metrics();
            metric_sum(
                &text,
                "coregate_requests_total",
                &[("route", "api"), ("class", "2xx")],
            ) == Some(3.0)
                && metric_sum(
                    &text,
                    "coregate_requests_total",
                    &[("route", "broken"), ("class", "5xx")],
                ) == Some(1.0)
        });
        assert!(
            settled,
            "[{driver}] want requests_total api/2xx = 3 and broken/5xx = 1, got {:?} and {:?}\n{text}",
            metric_sum(&text, "coregate_requests_total", &[("route", "api"), ("class", "2xx")]),
            metric_sum(&text, "coregate_requests_total", &[("route", "broken"), ("class", "5xx")]),
        );
        let upstream_errors = metric_sum(&text, "coregate_upstream_errors_total", &[]);
        assert!(
            upstream_errors.is_some_and(|v| v >= 1.0),
            "[{driver}] coregate_upstream_errors_total {upstream_errors:?}\n{text}"
        );
        assert!(
            metric_sum(&text, "coregate_open_connections", &[]).is_some(),
            "[{driver}] coregate_open_connections missing\n{text}"
        );
    });
}

/// `/config` is the effective config in the file format, TOML by default and JSON with
/// `?format=json`, with secrets shown as the variables they come from, and `coregate check`
/// accepts what it serves.
#[test]
fn config_is_checkable_toml_or_json_without_secrets() {
    std::env::set_var("CG_TEST_ADMIN_JWT_SECRET", "admin-test-jwt-secret");
    std::env::set_var("CG_TEST_ADMIN_API_KEY", "admin-test-api-key");
    std::env::set_var("CG_TEST_ADMIN_REDIS_PASSWORD", "admin-test-redis-password");
    let up = Upstream::recording("rec");
    let body = "[[auth]]\nname = \"jwt\"\ntype = \"jwt\"\nalgorithms = [\"HS256\"]\n\
                secret_env = \"CG_TEST_ADMIN_JWT_SECRET\"\n\n\
                [[auth]]\nname = \"keys\"\ntype = \"api_key\"\n\
                keys = [{ key_env = \"CG_TEST_ADMIN_API_KEY\", consumer = \"acme\", tier = \"gold\" }]\n\n\
                [[rate_limit]]\nname = \"per_ip\"\nkey = \"client_ip\"\nrate = \"100/s\"\n\
                scope = \"cluster\"\nlocal_share = 0.5\n\n\
                [tier.gold]\nrate_limits = [\"per_ip\"]\n\n\
                [redis]\naddr = \"127.0.0.1:6379\"\npassword_env = \"CG_TEST_ADMIN_REDIS_PASSWORD\"\n\n"
        .to_string()
        + &upstream_toml("u", &[up.addr], "balance = \"hash\"\nhash_key = \"client_ip\"")
        + &route_toml(
            "r",
            "u",
            "path_template = \"/api/{id}\"\nauth = \"jwt\"\nrate_limits = [\"per_ip\"]",
        )
        + &route_toml("k", "u", "path_prefix = \"/keys\"\nauth = \"keys\"\nstrip_prefix = \"/keys\"");
    let cfg = config("drain_timeout = \"1500ms\"", &body);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let r = gw.admin_get("/config");
        assert_eq!(r.status, 200, "[{driver}]");
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/toml")
        );
        let text = r.body_str();
        for secret in [
            "admin-test-jwt-secret",
            "admin-test-api-key",
            "admin-test-redis-password",
        ] {
            assert!(
                !text.contains(secret),
                "[{driver}] {secret} leaked:\n{text}"
            );
        }
        assert!(
            text.contains("secret_env = \"CG_TEST_ADMIN_JWT_SECRET\""),
            "{text}"
        );
        assert!(text.contains("drain_timeout = \"1500ms\""), "{text}");
        // effective: the harness's `--listen 127.0.0.1:0` replaced the file's default listener
        assert!(text.contains("listen = [\"127.0.0.1:0\"]"), "{text}");

        let path = write_temp(&text, "toml");
        let (status, out, err) = run_cli(
            &[
                "check",
                "-c",
                &path.display().to_string(),
                "--no-bind-check",
            ],
            secs(30),
        );
        let _ = std::fs::remove_file(&path);
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "[{driver}] check of /config: {out} {err}\n--- served ---\n{text}"
        );

        let j = gw.admin_get("/config?format=json");
        assert_eq!(j.status, 200);
        assert_eq!(
            j.header("content-type").as_deref(),
            Some("application/json")
        );
        let json: serde_json::Value = serde_json::from_str(&j.body_str()).unwrap();
        let toml: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(json, serde_json::to_value(toml).unwrap(), "[{driver}]");
        assert_eq!(
            json["redis"]["password_env"],
            "CG_TEST_ADMIN_REDIS_PASSWORD"
        );
        assert_eq!(gw.admin_get("/config?format=yaml").status, 400);
    });
}
