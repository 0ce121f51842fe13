//! The config file as written: serde structs mirroring the TOML format, before any checking.
//!
//! `mod.rs` deserialises the text into [`RawConfig`] through `serde_ignored`, so unknown keys are
//! collected (all of them) instead of failing on the first; `validate.rs` then turns the raw values
//! into the model. Every field is optional here — even required ones — so that a missing key is a
//! validation error reported together with all the others, not a fatal serde error. Integers are
//! kept as `i64` (TOML's integer type) for the same reason: range checks happen in validation.
//! Values that accept two shapes (`listen`, sizes, durations, endpoints) use small enums with
//! hand-written `Deserialize` impls: they behave like `#[serde(untagged)]` but give a clear
//! "expected ..." message and keep unknown keys inside endpoint tables visible to `serde_ignored`.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawConfig {
    pub server: Option<RawServer>,
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub upstream: Vec<RawUpstream>,
    #[serde(default)]
    pub route: Vec<RawRoute>,
    #[serde(default)]
    pub auth: Vec<super::auth::RawAuth>,
    #[serde(default)]
    pub rate_limit: Vec<super::limits::RawRateLimit>,
    #[serde(default)]
    pub quota: Vec<super::limits::RawQuota>,
    #[serde(default)]
    pub tier: BTreeMap<String, super::limits::RawTier>,
    pub redis: Option<super::limits::RawRedis>,
    pub access_log: Option<super::access_log::RawAccessLog>,
    pub tracing: Option<super::tracing::RawTracing>,
    pub dns: Option<super::dns::RawDns>,
    #[serde(default)]
    pub listener: Vec<super::tls::RawListener>,
    #[serde(default)]
    pub bulkhead: Vec<super::bulkhead::RawBulkhead>,
}

/// `[server]`
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawServer {
    pub listen: Option<OneOrMany>,
    pub workers: Option<i64>,
    pub header_timeout: Option<DurationValue>,
    pub keepalive_timeout: Option<DurationValue>,
    pub client_body_timeout: Option<DurationValue>,
    pub drain_timeout: Option<DurationValue>,
    pub max_request_line: Option<SizeValue>,
    pub max_header_bytes: Option<SizeValue>,
    pub max_headers: Option<i64>,
    pub path_normalization: Option<RawPathNormalization>,
    pub http2: Option<super::http2::RawHttp2>,
    pub trusted_proxies: Option<Vec<String>>,
    pub proxy_protocol: Option<bool>,
    pub real_ip_header: Option<String>,
    pub allow_ips: Option<Vec<String>>,
    pub deny_ips: Option<Vec<String>>,
    pub cache_memory: Option<SizeValue>,
}

/// `[server] path_normalization = { ... }`
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawPathNormalization {
    pub merge_slashes: Option<bool>,
    pub escaped_slashes: Option<String>,
}

/// `[admin]`
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawAdmin {
    pub listen: Option<String>,
}

/// One `[[upstream]]`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawUpstream {
    pub name: Option<String>,
    pub endpoints: Option<Vec<RawEndpoint>>,
    pub dns_refresh: Option<String>,
    pub balance: Option<String>,
    pub hash_key: Option<String>,
    pub connect_timeout: Option<DurationValue>,
    pub response_timeout: Option<DurationValue>,
    pub idle_timeout: Option<DurationValue>,
    pub max_idle_per_endpoint: Option<i64>,
    pub retries: Option<i64>,
    pub max_fails: Option<i64>,
    pub fail_timeout: Option<DurationValue>,
    pub max_ejection_percent: Option<i64>,
    pub panic_threshold: Option<i64>,
    pub tls: Option<super::tls::RawUpstreamTls>,
    pub protocol: Option<String>,
    pub circuit_breaker: Option<super::breaker::RawBreaker>,
    pub outlier_detection: Option<super::breaker::RawOutlier>,
    pub adaptive_concurrency: Option<super::breaker::RawAdaptive>,
    pub health_check: Option<super::health::RawHealthCheck>,
    pub retry: Option<super::retry::RawRetry>,
    pub slow_start: Option<DurationValue>,
    pub max_concurrent: Option<i64>,
    pub max_queued: Option<i64>,
    pub queue_timeout: Option<DurationValue>,
}

/// One `[[route]]`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawRoute {
    pub name: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
    pub path_prefix: Option<String>,
    pub path_template: Option<String>,
    pub methods: Option<Vec<String>>,
    pub headers: Option<BTreeMap<String, String>>,
    pub upstream: Option<String>,
    pub strip_prefix: Option<String>,
    pub rewrite_prefix: Option<RawRewrite>,
    pub host_rewrite: Option<String>,
    pub max_body: Option<SizeValue>,
    pub auth: Option<String>,
    pub require_roles: Option<Vec<String>>,
    pub require_scopes: Option<Vec<String>>,
    pub require: Option<String>,
    pub rate_limits: Option<Vec<String>>,
    pub quotas: Option<Vec<String>>,
    pub cost: Option<i64>,
    pub require_client_cert: Option<bool>,
    pub client_cert_sans: Option<Vec<String>>,
    pub response_fields: Option<Vec<String>>,
    pub websocket: Option<bool>,
    pub upgrades: Option<Vec<String>>,
    pub tunnel_idle_timeout: Option<DurationValue>,
    pub max_concurrent: Option<i64>,
    pub max_queued: Option<i64>,
    pub queue_timeout: Option<DurationValue>,
    pub bulkheads: Option<Vec<String>>,
    pub allow_ips: Option<Vec<String>>,
    pub deny_ips: Option<Vec<String>>,
    pub fallback: Option<super::fallback::RawFallback>,
    pub waf: Option<super::waf::RawWaf>,
    pub schema: Option<String>,
    pub validate_query: Option<BTreeMap<String, super::validation::RawParam>>,
    pub validate_headers: Option<BTreeMap<String, super::validation::RawParam>>,
    pub request_headers: Option<super::transform::RawHeaderOps>,
    pub response_headers: Option<super::transform::RawHeaderOps>,
    pub cache: Option<super::cache::RawCache>,
    pub aggregate: Option<Vec<super::aggregate::RawPart>>,
    pub aggregate_timeout: Option<DurationValue>,
    pub request_body: Option<super::transform::RawBodyTransform>,
    pub response_body: Option<super::transform::RawBodyTransform>,
    pub query_fields: Option<String>,
    pub status_overrides: Option<Vec<super::transform::RawOverride>>,
}

/// `rewrite_prefix = { from = "/api", to = "/v2" }`
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawRewrite {
    pub from: Option<String>,
    pub to: Option<String>,
}

/// The table form of an endpoint: `{ addr = "127.0.0.1:9002", weight = 3 }`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawEndpointTable {
    pub addr: Option<String>,
    pub weight: Option<i64>,
}

/// An endpoint: a bare address string or a table.
#[derive(Debug)]
pub(crate) enum RawEndpoint {
    Addr(String),
    Table(RawEndpointTable),
}

/// `listen`: one address or a list of addresses.
#[derive(Debug)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// A duration or size as written: a TOML integer or a string (units are parsed in validation).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Int(i64),
    Str(String),
}

/// A `*_timeout` value: a string like `"10s"`. Integers are accepted here only so that validation
/// can say "missing unit" instead of a type error.
#[derive(Debug)]
pub(crate) struct DurationValue(pub Scalar);

/// A size value: an integer (bytes) or a string like `"10MiB"`.
#[derive(Debug)]
pub(crate) struct SizeValue(pub Scalar);

/// An HTTP status (`200`) or a class of them (`"2xx"`).
#[derive(Debug)]
pub(crate) struct StatusValue(pub Scalar);

impl<'de> Deserialize<'de> for RawEndpoint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawEndpoint;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "an address string or a table like { addr = \"host:port\", weight = 1 }",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawEndpoint::Addr(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                // Deserialising through the (possibly `serde_ignored`-wrapped) map keeps unknown keys
                // inside the table reported, which `#[serde(untagged)]` would silently drop.
                RawEndpointTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawEndpoint::Table)
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an address string or a list of address strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(OneOrMany::One(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(OneOrMany::Many)
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Visits an integer or a string; `0` is what the error message says was expected.
pub(crate) struct ScalarVisitor(pub &'static str);

impl Visitor<'_> for ScalarVisitor {
    type Value = Scalar;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        i64::try_from(v)
            .map(Scalar::Int)
            .map_err(|_| E::custom("integer too large"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(v.to_owned()))
    }
}

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(ScalarVisitor("a duration string like \"10s\""))
            .map(DurationValue)
    }
}

impl<'de> Deserialize<'de> for StatusValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(ScalarVisitor("a status like 200 or a class like \"2xx\""))
            .map(StatusValue)
    }
}

impl<'de> Deserialize<'de> for SizeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(ScalarVisitor(
                "a size: an integer or a string like \"10MiB\"",
            ))
            .map(SizeValue)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{parse_str, ConfigError};

    fn errors(text: &str) -> Vec<ConfigError> {
        parse_str(text, "t.toml").expect_err("should fail").0
    }

    #[test]
    fn every_unknown_key_is_reported() {
        let text = "wat = 1\n[server]\nlisten = \"127.0.0.1:1\"\nlisen = 2\n[admin]\nlisten = \"127.0.0.1:2\"\nport = 3\n\
                    [[upstream]]\nname = \"u\"\nendpoints = [{ addr = \"127.0.0.1:3\", wieght = 2 }]\n\
                    [[route]]\nupstream = \"u\"\nrewrite_prefix = { from = \"/a\", to = \"\", x = 1 }\n[extra]\nk = 1\n";
        let found: Vec<String> = errors(text)
            .iter()
            .map(|e| format!("{}:{}", e.line.unwrap(), e.path))
            .collect();
        assert_eq!(
            found,
            [
                "1:wat",
                "4:server.lisen",
                "7:admin.port",
                "10:upstream[0].endpoints[0].wieght",
                "13:route[0].rewrite_prefix.x",
                "14:extra",
            ]
        );
        assert!(errors(text).iter().all(|e| e.message == "unknown key"));
    }

    #[test]
    fn type_errors_carry_line_and_column() {
        let e = errors("[server]\nworkers = \"x\"\n");
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].line, e[0].column), (Some(2), Some(11)));
        assert_eq!(e[0].path, "server.workers");
        assert_eq!(
            e[0].message,
            "invalid type: string \"x\", expected an integer"
        );
        assert_eq!(
            e[0].to_string(),
            "t.toml:2:11: server.workers: invalid type: string \"x\", expected an integer"
        );

        let e = errors("[[upstream]]\nname = \"u\"\nendpoints = [\"127.0.0.1:1\", { addr = 5 }]\n");
        assert_eq!((e[0].line, e[0].column), (Some(3), Some(38)));
        assert_eq!(e[0].path, "upstream[0].endpoints[1].addr");

        let e = errors("[upstream]\nname = \"u\"\n");
        assert_eq!(e[0].path, "upstream");
        assert!(
            e[0].message
                .ends_with("(write [[upstream]], not [upstream])"),
            "{}",
            e[0].message
        );
    }

    #[test]
    fn value_shapes() {
        let c = parse_str("[server]\nlisten = [\"127.0.0.1:1\"]\nmax_header_bytes = \"1KiB\"\nmax_request_line = 100\n", "t").unwrap();
        assert_eq!(
            (
                c.server.listen.len(),
                c.server.max_header_bytes,
                c.server.max_request_line
            ),
            (1, 1024, 100)
        );
        let e = errors("[server]\nlisten = [1]\n");
        assert_eq!(
            (e[0].path.as_str(), e[0].message.as_str()),
            (
                "server.listen[0]",
                "invalid type: integer `1`, expected a string"
            )
        );
        let e = errors("[server]\nheader_timeout = 1.5\n");
        assert_eq!(
            e[0].message,
            "invalid type: floating point `1.5`, expected a duration string like \"10s\""
        );
    }
}
