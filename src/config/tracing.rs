//! `[tracing]`: where spans are exported (OTLP/HTTP protobuf) and which are sampled.
//!
//! Flow: `validate.rs` hands the optional raw table here; an absent table means no export (the
//! gateway still continues and starts W3C traces for its upstreams). Every problem is reported
//! under its key path (`tracing.sample_ratio`). The runtime (`crate::otlp`) reads the model: the
//! exporter thread the endpoint, service name and batching; `trace::Span::start` the ratio.

use std::time::Duration;

use serde::Deserialize;

use super::limits::ShareValue;
use super::position::KeyPath;
use super::raw::DurationValue;
use super::validate::Ctx;
use crate::client::Url;

/// Spans a worker buffers before handing them to the exporter (and the most in one export).
pub const DEFAULT_BATCH: usize = 512;
/// How often the exporter sends what it has, however few spans.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Batches waiting for the exporter; beyond it batches are dropped and counted.
pub const DEFAULT_QUEUE: usize = 256;

/// `[tracing]`: one OTLP span per sampled request.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// The collector's OTLP/HTTP traces URL (`http://host:4318/v1/traces`; `https://` verifies
    /// the collector against the system's roots).
    pub otlp_endpoint: Url,
    /// Share of new traces the gateway samples (traces it continues follow the caller's flag).
    pub sample_ratio: f64,
    /// `service.name` of the exported resource.
    pub service_name: String,
    /// Spans per worker hand-off and per export.
    pub batch: usize,
    /// Batches that may wait for the exporter.
    pub queue: usize,
    /// Longest time a span waits before it is exported.
    pub export_interval: Duration,
    /// Bound on one export (connect, send, response).
    pub export_timeout: Duration,
}

/// `[tracing]` as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawTracing {
    pub otlp_endpoint: Option<String>,
    pub sample_ratio: Option<ShareValue>,
    pub service_name: Option<String>,
    pub batch: Option<i64>,
    pub queue: Option<i64>,
    pub export_interval: Option<DurationValue>,
    pub export_timeout: Option<DurationValue>,
}

/// Validates `[tracing]`; `None` when absent (or invalid: the error is recorded).
pub(super) fn tracing(cx: &mut Ctx, raw: Option<RawTracing>) -> Option<TracingConfig> {
    let r = raw?;
    let p = KeyPath::root().key("tracing");
    let ep = p.key("otlp_endpoint");
    let url = cx
        .required(
            ep.clone(),
            r.otlp_endpoint,
            "the collector's OTLP/HTTP URL, like \"http://127.0.0.1:4318/v1/traces\"",
        )
        .and_then(|u| cx.check(&ep, Url::parse(&u)));
    let sample_ratio = match r.sample_ratio {
        None => 1.0,
        Some(ShareValue(v)) if (0.0..=1.0).contains(&v) => v,
        Some(ShareValue(v)) => {
            cx.err(
                p.key("sample_ratio"),
                format!("must be between 0 and 1 (like 0.1), got {v}"),
            );
            1.0
        }
    };
    let service_name = match r.service_name {
        Some(s) if s.trim().is_empty() => {
            cx.err(p.key("service_name"), "must not be empty");
            String::new()
        }
        Some(s) => s,
        None => "coregate".to_string(),
    };
    let batch = cx.int(p.key("batch"), r.batch, DEFAULT_BATCH, 1, 65_536);
    let queue = cx.int(p.key("queue"), r.queue, DEFAULT_QUEUE, 1, 65_536);
    let export_interval = match r.export_interval {
        None => DEFAULT_INTERVAL,
        d => cx.duration(p.key("export_interval"), d, 1, false),
    };
    let export_timeout = cx.duration(p.key("export_timeout"), r.export_timeout, 5, false);
    Some(TracingConfig {
        otlp_endpoint: url?,
        sample_ratio,
        service_name,
        batch,
        queue,
        export_interval,
        export_timeout,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::parse_str;
    use crate::config::validate::tests::UP;

    fn errors(text: &str) -> Vec<String> {
        match parse_str(&format!("{UP}{text}"), "t.toml") {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn defaults_and_values() {
        let c = parse_str(
            &format!("{UP}[tracing]\notlp_endpoint = \"http://127.0.0.1:4318/v1/traces\"\n"),
            "t.toml",
        )
        .unwrap();
        let t = c.tracing.unwrap();
        assert_eq!(
            t.otlp_endpoint.to_string(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!((t.sample_ratio, t.service_name.as_str()), (1.0, "coregate"));
        assert_eq!((t.batch, t.queue), (512, 256));
        let c = parse_str(
            &format!(
                "{UP}[tracing]\notlp_endpoint = \"https://otel.example:4318/v1/traces\"\n\
                 sample_ratio = 0\nservice_name = \"edge\"\nbatch = 10\nexport_interval = \"250ms\"\n"
            ),
            "t.toml",
        )
        .unwrap();
        let t = c.tracing.unwrap();
        assert_eq!((t.sample_ratio, t.batch), (0.0, 10));
        assert_eq!(t.export_interval, std::time::Duration::from_millis(250));
        assert!(parse_str(UP, "t.toml").unwrap().tracing.is_none());
    }

    #[test]
    fn errors_name_their_key() {
        let e = errors("[tracing]\nsample_ratio = 1.5\n");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains("tracing.otlp_endpoint: missing"), "{e:?}");
        assert!(
            e[1].contains("tracing.sample_ratio: must be between 0 and 1"),
            "{e:?}"
        );
        let e = errors("[tracing]\notlp_endpoint = \"127.0.0.1:4318\"\n");
        assert!(e[0].contains("tracing.otlp_endpoint: "), "{e:?}");
        let e = errors(
            "[tracing]\notlp_endpoint = \"http://c:4318/\"\nservice_name = \" \"\nbatch = 0\n",
        );
        assert!(
            e.iter()
                .any(|m| m.contains("tracing.service_name: must not be empty")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.contains("tracing.batch: must be between 1 and 65536")),
            "{e:?}"
        );
        let e = errors("[tracing]\notlp_endpoint = \"http://c:4318/\"\nspan_kind = 1\n");
        assert!(e.iter().any(|m| m.contains("tracing.span_kind")), "{e:?}");
    }
}
