//! The validated, immutable runtime configuration.
//!
//! Owns the types every other module reads: `raw.rs` deserialises the TOML file, `validate.rs` turns
//! it into a [`Config`] (reporting every error at once), and the runtime hands an `Arc<Config>` to each
//! worker, which compiles its own router and pools from it. Nothing here is mutated after validation.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: Option<AdminConfig>,
    pub upstreams: Vec<UpstreamConfig>,
    pub routes: Vec<RouteConfig>,
    /// `[[auth]]` policies; routes refer to them by index.
    pub auth: Vec<super::auth::AuthPolicy>,
    /// `[[rate_limit]]` policies; routes and tiers refer to them by index.
    pub rate_limits: Vec<super::limits::RateLimitPolicy>,
    /// `[[quota]]` policies; routes and tiers refer to them by index.
    pub quotas: Vec<super::limits::QuotaPolicy>,
    /// `[tier.NAME]` tables, sorted by name.
    pub tiers: Vec<super::limits::TierConfig>,
    /// `[redis]`: required when any limit has `scope = "cluster"`.
    pub redis: Option<super::limits::RedisConfig>,
    /// `[access_log]`; off when the table is absent.
    pub access_log: super::access_log::AccessLogConfig,
    /// `[tracing]`: OTLP span export; `None` when the table is absent.
    pub tracing: Option<super::tracing::TracingConfig>,
    /// `[dns]`: the resolver of `dns_refresh = "ttl"` upstreams (defaults when absent).
    pub dns: super::dns::DnsConfig,
    /// The `[[listener]]` entries, in file order.
    pub listeners: Vec<ListenerConfig>,
    /// `[[bulkhead]]` pools routes share.
    pub bulkheads: Vec<super::bulkhead::BulkheadConfig>,
}

/// `[[listener]]`: a listener with options. `[server] listen` keeps serving plain ones; when the
/// file has a `[[listener]]` and no `[server] listen`, there is no default plain listener.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    pub listen: SocketAddr,
    /// `[listener.tls]`: TLS is terminated here; `None`: plain HTTP.
    pub tls: Option<Arc<crate::tls::ServerTls>>,
    /// Connections start with a PROXY protocol header (v1 or v2) naming the client.
    pub proxy_protocol: bool,
    /// `allow_ips` / `deny_ips`: the clients this listener serves (deny wins), checked per request
    /// after the `[server]` lists, before routing.
    pub allow_ips: Option<crate::net::cidr::IpSet>,
    pub deny_ips: Option<crate::net::cidr::IpSet>,
}

/// `[server]`: listeners, worker count and client-side limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Plain-HTTP addresses; every worker binds each of them with SO_REUSEPORT. Empty when the file
    /// has `[[listener]]`s and no `listen`.
    pub listen: Vec<SocketAddr>,
    /// 0 = one worker per core.
    pub workers: usize,
    /// Time allowed to receive a whole request head (slowloris defence) -> 408.
    pub header_timeout: Duration,
    /// An idle keep-alive client connection is closed after this long.
    pub keepalive_timeout: Duration,
    /// Time allowed for the client to send each chunk of a request body, and to accept the response.
    pub client_body_timeout: Duration,
    /// On SIGTERM/SIGINT, in-flight requests get this long to finish.
    pub drain_timeout: Duration,
    /// Longest request line (method, target, version) -> 414 above.
    pub max_request_line: usize,
    /// Largest request head (request line + headers) -> 431 above.
    pub max_header_bytes: usize,
    /// Most header fields in a request head -> 431 above.
    pub max_headers: usize,
    /// How request paths are normalised before routing and forwarding (`router::normalize`).
    pub path_normalization: crate::router::PathPolicy,
    /// Downstream HTTP/2 limits (`[server] http2`).
    pub http2: super::http2::Http2Config,
    /// The `listen` sockets' connections start with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// Peers whose forwarding header names the real client (`proxy/realip.rs`).
    pub trusted_proxies: crate::net::cidr::IpSet,
    pub real_ip_header: super::ip::RealIpHeader,
    /// IP rules for every request, before routing (None: everyone).
    pub allow_ips: Option<crate::net::cidr::IpSet>,
    pub deny_ips: Option<crate::net::cidr::IpSet>,
    /// `cache_memory`: each worker's response cache budget (bytes; routes with `cache` share it).
    pub cache_memory: u64,
}

/// `[admin]`: the admin listener (healthz, readyz, metrics).
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

/// `[[upstream]]`: a named group of endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    pub name: String,
    /// The endpoints in use: literals and the addresses names resolved to.
    pub endpoints: Vec<Endpoint>,
    /// `dns_refresh = "ttl"` with at least one name: `endpoints` as written, which the discovery
    /// thread re-resolves on their TTL (a new generation replaces `endpoints` when they change).
    pub discovery: Option<Vec<super::dns::EndpointSpec>>,
    pub balance: Balance,
    pub connect_timeout: Duration,
    /// From the end of sending the request until the upstream's response head has arrived.
    pub response_timeout: Duration,
    /// A pooled (idle) upstream connection is closed after this long.
    pub idle_timeout: Duration,
    /// Idle connections kept per endpoint, per worker.
    pub max_idle_per_endpoint: usize,
    /// Extra attempts for idempotent requests on connect failure, or reset before any response byte.
    pub retries: u32,
    /// Passive health: failures within `fail_timeout` that eject an endpoint (nginx's max_fails).
    pub max_fails: u32,
    /// Passive health: how long an endpoint stays ejected (nginx's fail_timeout).
    pub fail_timeout: Duration,
    /// Most endpoints (percent) ejected at once; the last healthy one never is.
    pub max_ejection_percent: u32,
    /// Below this percentage of healthy endpoints, balance over all of them (Envoy's panic mode).
    pub panic_threshold: u32,
    /// `tls = { ... }`: connections to the endpoints use TLS. Equal when the settings and the
    /// files' contents are (a new CA or client certificate is a change).
    pub tls: Option<Arc<crate::tls::UpstreamTls>>,
    /// `protocol`: what the gateway speaks to the endpoints.
    pub protocol: UpstreamProtocol,
    /// `[upstream.circuit_breaker]`.
    pub circuit_breaker: Option<crate::upstream::breaker::BreakerConfig>,
    /// `[upstream.outlier_detection]`.
    pub outlier_detection: Option<OutlierConfig>,
    /// `slow_start`: how long an endpoint that comes back takes to reach its full share.
    pub slow_start: Option<Duration>,
    /// `max_concurrent` (with `max_queued`, `queue_timeout`): requests in flight to this upstream
    /// from every route, whole process.
    pub bulkhead: Option<super::bulkhead::ConcurrencyLimit>,
    /// `[upstream.adaptive_concurrency]`: a latency-driven limit on requests in flight, per worker.
    pub adaptive_concurrency: Option<crate::upstream::adaptive::AdaptiveConfig>,
    /// `[upstream.health_check]`: active probes, run by the process's prober.
    pub health_check: Option<super::health::HealthCheck>,
    /// `[upstream.retry]`: what is retried (up to `retries` times), per-try timeout, back-off
    /// and budget.
    pub retry: crate::upstream::retry::RetryPolicy,
}

/// `[upstream.outlier_detection]`: Envoy's consecutive-5xx, consecutive-gateway-error and
/// success-rate detectors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutlierConfig {
    /// 5xx responses in a row that eject an endpoint.
    pub consecutive_5xx: u32,
    /// 502/503/504 responses or connect/reset/timeout failures in a row that eject it (0: off).
    pub consecutive_gateway_errors: u32,
    /// How often success rates are compared.
    pub interval: std::time::Duration,
    /// Success rate: endpoints with at least `success_rate_request_volume` calls in the interval
    /// count; with at least `success_rate_min_hosts` of them, one whose rate is below the mean
    /// less `success_rate_stdev_factor` standard deviations is ejected.
    pub success_rate_min_hosts: u32,
    pub success_rate_request_volume: u32,
    pub success_rate_stdev_factor: f64,
    /// The first ejection's length; the n-th lasts n times this.
    pub base_ejection_time: Duration,
    /// The longest ejection.
    pub max_ejection_time: Duration,
}

/// `[[upstream]] protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (the default).
    #[default]
    Http1,
    /// HTTP/2 always: prior knowledge on cleartext, `h2` by ALPN over TLS.
    Http2,
    /// Over TLS, what the endpoint picks by ALPN (`h2` preferred); HTTP/1.1 on cleartext.
    Auto,
}

/// One upstream endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// Relative weight (>= 1); used by `weighted` (and as a tie-breaker nowhere else).
    pub weight: u32,
}

/// Load-balancing policy of an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Balance {
    /// Plain rotation, weights ignored.
    RoundRobin,
    /// Smooth weighted round robin (nginx's algorithm).
    Weighted,
    /// Fewest in-flight requests on this worker; ties rotate.
    LeastConn,
    /// Power of two random choices on in-flight requests.
    P2c,
    /// Rendezvous hashing on a request key: the same key keeps its endpoint while it is healthy.
    Hash(HashKey),
}

/// What `balance = "hash"` hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// A request header, name lower-cased (`hash_key = "header:x-user-id"`).
    Header(String),
    /// The client's IP address (`hash_key = "client_ip"`).
    ClientIp,
    /// The authenticated caller: the subject, else the consumer (`hash_key = "identity"`); requests
    /// on routes without auth have none and are balanced round robin.
    Identity,
}

/// `[[route]]`: what a request must look like, and where it goes.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// `route.name`, or `route[N]` when unnamed; used in metrics.
    pub name: String,
    pub host: Option<HostMatch>,
    pub path: PathMatch,
    /// Upper-case method names; `None` = any method.
    pub methods: Option<Vec<String>>,
    /// Exact-match header conditions: (lower-cased name, value).
    pub headers: Vec<(String, String)>,
    /// Index into `Config::upstreams`.
    pub upstream: usize,
    /// Path prefix rewrite (`strip_prefix = "/api"` is `from = "/api", to = ""`).
    pub rewrite: Option<PrefixRewrite>,
    /// Replaces the Host header sent upstream (`host_rewrite = "internal.svc"`).
    pub host_rewrite: Option<String>,
    /// Largest request body accepted -> 413 above.
    pub max_body: u64,
    /// Index into `Config::auth`.
    pub auth: Option<usize>,
    /// Roles/scopes the authenticated caller must have -> 403.
    pub require: Option<super::auth::Requirement>,
    /// Indices into `Config::rate_limits` applied on this route (besides the caller's tier's).
    pub rate_limits: Vec<usize>,
    /// Indices into `Config::quotas` applied on this route (besides the caller's tier's).
    pub quotas: Vec<usize>,
    /// Overrides every applied rate limit's `cost` on this route.
    pub cost: Option<u64>,
    /// Only requests on a connection with a verified client certificate pass; others get 403.
    /// True whenever `client_cert_sans` is set.
    pub require_client_cert: bool,
    /// Allow-list: the verified client certificate must carry one of these subjectAltNames (DNS
    /// name, e-mail, URI or IP, compared ASCII case-insensitively: `ClientCert::has_any_san`),
    /// else 403. Empty: any verified certificate (when `require_client_cert`).
    pub client_cert_sans: Vec<String>,
    /// `response_fields`: only these members of a JSON response reach the client
    /// (`transform::fields`); `None` = the response is relayed as the upstream sent it.
    pub response_fields: Option<crate::transform::fields::FieldSet>,
    /// `websocket = true`: a clean WebSocket handshake is passed on (`http::upgrade`) and a 101
    /// becomes a tunnel; otherwise `Upgrade` is stripped like any hop-by-hop field.
    pub websocket: bool,
    /// Other `Upgrade` protocols passed on (lower-case tokens, `route.upgrades`), tunnelled the
    /// same way after the upstream's 101.
    pub upgrades: Vec<String>,
    /// A tunnel with no bytes moving (or a peer not reading) for this long is closed.
    pub tunnel_idle_timeout: Duration,
    /// `max_concurrent` (with `max_queued`, `queue_timeout`): requests in flight on this route,
    /// whole process (the route's own bulkhead).
    pub bulkhead: Option<super::bulkhead::ConcurrencyLimit>,
    /// `allow_ips` / `deny_ips`: the client addresses this route serves (deny wins).
    pub allow_ips: Option<crate::net::cidr::IpSet>,
    pub deny_ips: Option<crate::net::cidr::IpSet>,
    /// `bulkheads`: the `[[bulkhead]]` pools (indexes into `Config::bulkheads`) it also counts in.
    pub pools: Vec<usize>,
    /// `fallback`: the answer when the upstream cannot be asked.
    pub fallback: Option<std::sync::Arc<super::fallback::Fallback>>,
    /// `waf`: the route's web application firewall (`crate::waf`).
    pub waf: Option<std::sync::Arc<crate::waf::Policy>>,
    /// `schema`, `validate_query`, `validate_headers`: the route's request validation.
    pub validation: Option<std::sync::Arc<crate::validate::Validation>>,
    /// `request_headers`: header operations on what the upstream receives.
    pub request_headers: Option<std::sync::Arc<crate::transform::headers::HeaderOps>>,
    /// `response_headers`: header operations on what the client receives.
    pub response_headers: Option<std::sync::Arc<crate::transform::headers::HeaderOps>>,
    /// `cache`: the route's response cache policy (`proxy/cache.rs`).
    pub cache: Option<std::sync::Arc<crate::cache::policy::CachePolicy>>,
    /// `aggregate`: the route fans out to these parts instead of one upstream (then `upstream`
    /// is the first part's, for nothing but defaults).
    pub aggregate: Option<std::sync::Arc<super::aggregate::Aggregate>>,
    /// `request_body`, `response_body`, `query_fields`, `status_overrides`.
    pub body: Option<std::sync::Arc<super::transform::BodyTransforms>>,
}

/// Host condition: lower-cased, no port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// `api.example.com`
    Exact(String),
    /// `*.example.com` is stored as `Suffix(".example.com")`: matches `a.example.com`, `a.b.example.com`,
    /// not `example.com`.
    Suffix(String),
}

/// Path condition, matched against the request path without its query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// `path = "/exact"`
    Exact(String),
    /// `path_prefix = "/api/users"`: matches `/api/users`, `/api/users/...` and `/api/users?...`, on a
    /// segment boundary (not `/api/usersX`); a prefix ending in `/` matches anything under it.
    Prefix(String),
    /// `path_template = "/api/users/{id}"`: literal segments and `{name}` segments (exactly one
    /// non-empty segment each); a final `{*name}` matches the rest (one or more segments).
    Template(Vec<TemplateSegment>),
}

/// One `/`-separated piece of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSegment {
    Literal(String),
    Param(String),
    /// `{*rest}`: only last.
    CatchAll(String),
}

/// A prefix rewrite applied to the path sent upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixRewrite {
    pub from: String,
    pub to: String,
}
