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
