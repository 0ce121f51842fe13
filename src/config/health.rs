//! `[upstream.health_check]`: the raw table, its checks, and the validated [`HealthCheck`] the
//! prober (`upstream/probe.rs`) runs.
//!
//! Owns the defaults and the rules: `kind = "http"` (the default: a `GET path` that must answer
//! one of `expected_statuses`, 2xx unless given) or `"tcp"` (a connect is enough; no `path`);
//! `timeout` at most `interval`; `jitter` below `interval`; thresholds 1-100. Every problem is
//! reported with its key.

use std::time::Duration;

use serde::Deserialize;

use super::position::KeyPath;
use super::raw::{DurationValue, Scalar, StatusValue};
use super::validate::Ctx;

/// `[upstream.health_check]` as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawHealthCheck {
    pub kind: Option<String>,
    pub path: Option<String>,
    pub host: Option<String>,
    pub expected_statuses: Option<Vec<StatusValue>>,
    pub interval: Option<DurationValue>,
    pub timeout: Option<DurationValue>,
    pub jitter: Option<DurationValue>,
    pub healthy_threshold: Option<i64>,
    pub unhealthy_threshold: Option<i64>,
}

/// What a probe does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeKind {
    /// `GET path` (HTTP/1.1, or HTTP/2 where the upstream speaks it); healthy when the status is
    /// in one of the ranges (inclusive).
    Http {
        path: String,
        /// Host header / `:authority`; the endpoint's TLS name or address when absent.
        host: Option<String>,
        statuses: Vec<(u16, u16)>,
    },
    /// A TCP connect (and the TLS handshake on TLS upstreams).
    Tcp,
}

/// `[upstream.health_check]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub kind: ProbeKind,
    /// Time between the end of one probe and the start of the next, per endpoint.
    pub interval: Duration,
    /// A probe not done in this time failed.
    pub timeout: Duration,
    /// Up to this much is added to each interval at random, so probes of many gateways (and
    /// endpoints) do not fall in step.
    pub jitter: Duration,
    /// Passed probes in a row that bring an unhealthy endpoint back.
    pub healthy_threshold: u32,
    /// Failed probes in a row that take a healthy endpoint out.
    pub unhealthy_threshold: u32,
}

impl HealthCheck {
    /// Whether `status` counts as healthy (HTTP probes).
    pub fn accepts(&self, status: u16) -> bool {
        match &self.kind {
            ProbeKind::Http { statuses, .. } => {
                statuses.iter().any(|&(lo, hi)| (lo..=hi).contains(&status))
            }
            ProbeKind::Tcp => true,
        }
    }
}

/// One `expected_statuses` entry: `200` or `"2xx"`.
pub(super) fn status_range(v: &Scalar) -> Result<(u16, u16), String> {
    match v {
        Scalar::Int(n) => match u16::try_from(*n) {
            Ok(s) if (100..=599).contains(&s) => Ok((s, s)),
            _ => Err(format!("{n} is not an HTTP status (100-599)")),
        },
        Scalar::Str(s) => match s.as_bytes() {
            [c @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] => {
                let lo = u16::from(c - b'0') * 100;
                Ok((lo, lo + 99))
            }
            _ => Err(format!(
                "\"{s}\" is not a status class (expected \"1xx\" to \"5xx\", or a status like 200)"
            )),
        },
    }
}

/// `upstream.health_check` (`p`: the table's key).
pub(super) fn health_check(
    cx: &mut Ctx,
    p: &KeyPath,
    raw: Option<RawHealthCheck>,
) -> Option<HealthCheck> {
    let h = raw?;
    let interval = cx.duration(p.key("interval"), h.interval, 5, false);
    let timeout = match h.timeout {
        None => interval.min(Duration::from_secs(1)),
        Some(v) => {
            let t = cx.duration(p.key("timeout"), Some(v), 1, false);
            if t > interval {
                cx.err(p.key("timeout"), "must be at most interval");
            }
            t.min(interval)
        }
    };
    let jitter = match h.jitter {
        None => interval / 10,
        Some(v) => {
            let j = cx.duration(p.key("jitter"), Some(v), 0, true);
            if j >= interval {
                cx.err(p.key("jitter"), "must be less than interval");
            }
            j.min(interval / 2)
        }
    };
    let http_only = |cx: &mut Ctx, key: &str, set: bool| {
        if set {
            cx.err(p.key(key), "only for kind = \"http\"");
        }
    };
    let kind = match h.kind.as_deref() {
        None | Some("http") => {
            let path = h.path.unwrap_or_else(|| "/".into());
            if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
                cx.err(
                    p.key("path"),
                    format!("\"{path}\" is not a request path (it starts with / and has no spaces or control bytes)"),
                );
            }
            if let Some(host) = &h.host {
                if host.is_empty() || host.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'/') {
                    cx.err(p.key("host"), format!("\"{host}\" is not a host name"));
                }
            }
            let mut statuses = Vec::new();
            for (i, v) in h.expected_statuses.unwrap_or_default().iter().enumerate() {
                match status_range(&v.0) {
                    Ok(r) => statuses.push(r),
                    Err(m) => cx.err(p.key("expected_statuses").index(i), m),
                }
            }
            if statuses.is_empty() {
                statuses.push((200, 299));
            }
            ProbeKind::Http {
                path,
                host: h.host,
                statuses,
            }
        }
        Some("tcp") => {
            http_only(cx, "path", h.path.is_some());
            http_only(cx, "host", h.host.is_some());
            http_only(cx, "expected_statuses", h.expected_statuses.is_some());
            ProbeKind::Tcp
        }
        Some(other) => {
            let m = format!("unknown kind \"{other}\" (expected \"http\" or \"tcp\")");
            cx.err(p.key("kind"), m);
            ProbeKind::Tcp
        }
    };
    Some(HealthCheck {
        kind,
        interval,
        timeout,
        jitter,
        healthy_threshold: cx.int(p.key("healthy_threshold"), h.healthy_threshold, 2, 1, 100),
        unhealthy_threshold: cx.int(
            p.key("unhealthy_threshold"),
            h.unhealthy_threshold,
            2,
            1,
            100,
        ),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::validate::tests::check_cases;

    #[test]
    fn health_check_rules() {
        let hc = |b: &str| {
            format!("[[upstream]]\nname = \"v\"\nendpoints = [\"127.0.0.1:1\"]\n[upstream.health_check]\n{b}\n")
        };
        check_cases(&[
            (&hc("path = \"/healthz\"\ninterval = \"1s\"\nhealthy_threshold = 2\nunhealthy_threshold = 2"), &[]),
            (&hc("kind = \"tcp\"\ninterval = \"2s\"\ntimeout = \"500ms\"\njitter = \"0s\""), &[]),
            (&hc("expected_statuses = [200, \"3xx\"]\nhost = \"svc.internal\""), &[]),
            (&hc("kind = \"udp\""), &["upstream[1].health_check.kind: unknown kind \"udp\" (expected \"http\" or \"tcp\")"]),
            (&hc("kind = \"tcp\"\npath = \"/x\""), &["upstream[1].health_check.path: only for kind = \"http\""]),
            (&hc("path = \"healthz\""), &["upstream[1].health_check.path: \"healthz\" is not a request path (it starts with / and has no spaces or control bytes)"]),
            (&hc("interval = \"1s\"\ntimeout = \"2s\""), &["upstream[1].health_check.timeout: must be at most interval"]),
            (&hc("interval = \"1s\"\njitter = \"1s\""), &["upstream[1].health_check.jitter: must be less than interval"]),
            (&hc("expected_statuses = [99, \"2xy\"]"), &["upstream[1].health_check.expected_statuses[0]: 99 is not an HTTP status (100-599)", "upstream[1].health_check.expected_statuses[1]: \"2xy\" is not a status class (expected \"1xx\" to \"5xx\", or a status like 200)"]),
            (&hc("healthy_threshold = 0"), &["upstream[1].health_check.healthy_threshold: must be between 1 and 100, got 0"]),
        ]);
    }

    #[test]
    fn statuses_default_to_2xx() {
        let cfg = crate::config::parse_str(
            "[[upstream]]\nname = \"v\"\nendpoints = [\"127.0.0.1:1\"]\n[upstream.health_check]\nexpected_statuses = [\"3xx\", 204]\n[[upstream]]\nname = \"w\"\nendpoints = [\"127.0.0.1:2\"]\n[upstream.health_check]\n",
            "t.toml",
        )
        .unwrap();
        let v = cfg.upstreams.iter().find(|u| u.name == "v").unwrap();
        let h = v.health_check.as_ref().unwrap();
        assert!(h.accepts(301) && h.accepts(204) && !h.accepts(200));
        let w = cfg.upstreams.iter().find(|u| u.name == "w").unwrap();
        let h = w.health_check.as_ref().unwrap();
        assert!(h.accepts(200) && h.accepts(299) && !h.accepts(300));
        assert_eq!(h.interval, std::time::Duration::from_secs(5));
        assert_eq!(h.timeout, std::time::Duration::from_secs(1));
        assert_eq!(h.jitter, std::time::Duration::from_millis(500));
    }
}
