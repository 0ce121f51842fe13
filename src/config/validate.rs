//! Semantic validation: [`RawConfig`] (as written) -> [`Config`] (as used).
//!
//! Applies every default, parses units and addresses (via `units.rs`), resolves route -> upstream
//! references and checks every rule of the format. It never stops at the first problem: each one
//! is pushed as a ([`KeyPath`], message) pair and the caller (`mod.rs`) attaches file positions.
//! Messages are short, lower-case, say what was expected, and never repeat the key path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::model::*;
use super::position::KeyPath;
use super::raw::*;
use super::units::{
    check_header_value, check_host_rewrite, check_name, check_path, is_token, parse_duration,
    parse_hash_key, parse_host, parse_size, parse_template, resolve_addr,
};
use crate::router::PathPolicy;

/// Every problem found, in the order found.
pub(crate) type Problems = Vec<(KeyPath, String)>;

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_MAX_BODY: u64 = 10 << 20;
/// `route.tunnel_idle_timeout` (nginx `proxy_read_timeout` is 60 s; WebSocket pings are often
/// 30-60 s apart, so the default leaves room for a few missed ones).
const DEFAULT_TUNNEL_IDLE_SECS: u64 = 300;
/// Envoy's outlier-detection cap is 10%; with nginx-style `max_fails = 1` on two or three endpoints
/// that would forbid any ejection, so half: one of two endpoints may be out, never both.
const DEFAULT_MAX_EJECTION_PERCENT: u32 = 50;
/// Envoy's `healthy_panic_threshold` default: below half healthy, spread over all.
const DEFAULT_PANIC_THRESHOLD: u32 = 50;

#[derive(Default)]
pub(super) struct Ctx {
    problems: Problems,
}

impl Ctx {
    pub(super) fn err(&mut self, path: KeyPath, message: impl Into<String>) {
        self.problems.push((path, message.into()));
    }

    /// Problems recorded so far (to tell whether a section added any).
    pub(super) fn error_count(&self) -> usize {
        self.problems.len()
    }

    /// Keeps `Ok` values; records `Err` messages under `path`.
    pub(super) fn check<T>(&mut self, path: &KeyPath, r: Result<T, String>) -> Option<T> {
        r.map_err(|m| self.err(path.clone(), m)).ok()
    }

    /// The value of a required key, or a "missing" error.
    pub(super) fn required<T>(&mut self, path: KeyPath, v: Option<T>, expected: &str) -> Option<T> {
        if v.is_none() {
            self.err(path, format!("missing (expected {expected})"));
        }
        v
    }

    /// Records the `name` of `kind[i]` (at `p`) in `seen`; a name seen before is an error.
    pub(super) fn unique(
        &mut self,
        seen: &mut BTreeMap<String, usize>,
        p: &KeyPath,
        kind: &str,
        name: &str,
        i: usize,
    ) {
        match seen.get(name) {
            Some(first) => {
                let message = format!("duplicate name \"{name}\" (also {kind}[{first}])");
                self.err(p.key("name"), message);
            }
            None => {
                seen.insert(name.to_owned(), i);
            }
        }
    }

    /// A duration, `default` seconds when absent; 0 is an error unless `zero_ok`.
    pub(super) fn duration(
        &mut self,
        p: KeyPath,
        v: Option<DurationValue>,
        default: u64,
        zero_ok: bool,
    ) -> Duration {
        let parsed = match v {
            None => return Duration::from_secs(default),
            Some(DurationValue(Scalar::Str(s))) => parse_duration(&s),
            Some(DurationValue(Scalar::Int(n))) => Err(format!(
                "missing unit in {n} (expected a string like \"{n}s\"; units ms, s, m or h)"
            )),
        };
        match parsed {
            Ok(d) if d.is_zero() && !zero_ok => self.err(p, "must be greater than 0"),
            Ok(d) => return d,
            Err(m) => self.err(p, m),
        }
        Duration::from_secs(default)
    }

    /// A size in bytes, `default` when absent; below `min` is an error.
    pub(super) fn size(&mut self, p: KeyPath, v: Option<SizeValue>, default: u64, min: u64) -> u64 {
        let parsed = match v {
            None => return default,
            Some(SizeValue(Scalar::Str(s))) => parse_size(&s),
            Some(SizeValue(Scalar::Int(n))) => {
                u64::try_from(n).map_err(|_| "must not be negative".into())
            }
        };
        match parsed {
            Ok(n) if n < min => self.err(p, format!("must be at least {min}")),
            Ok(n) => return n,
            Err(m) => self.err(p, m),
        }
        default
    }

    /// An integer in `lo..=hi`; the default when absent or out of range (after recording the error).
    pub(super) fn int<T: TryFrom<i64>>(
        &mut self,
        p: KeyPath,
        v: Option<i64>,
        default: T,
        lo: i64,
        hi: i64,
    ) -> T {
        match v {
            Some(n) if (lo..=hi).contains(&n) => T::try_from(n).unwrap_or(default),
            Some(n) => {
                self.err(p, format!("must be between {lo} and {hi}, got {n}"));
                default
            }
            None => default,
        }
    }

    fn addr(&mut self, p: &KeyPath, s: &str) -> Option<SocketAddr> {
        let r = resolve_addr(s);
        self.check(p, r)
    }
}

pub(crate) fn validate(raw: RawConfig, base: &std::path::Path) -> Result<Config, Problems> {
    let mut cx = Ctx::default();
    let (auth, auth_names) = auth_policies(&mut cx, raw.auth, base);
    // Before routes: they refer to limits by name.
    let limits = super::limits::limits(&mut cx, raw.rate_limit, raw.quota, raw.tier, raw.redis);
    let listener_tables = !raw.listener.is_empty();
    let server = server(
        &mut cx,
        raw.server.unwrap_or_default(),
        listener_tables,
        base,
    );
    let access_log = super::access_log::access_log(&mut cx, raw.access_log, base);
    let tracing = super::tracing::tracing(&mut cx, raw.tracing);
    // before upstreams: their names are resolved with it
    let dns = super::dns::dns(&mut cx, raw.dns);
    let names = crate::discovery::resolver::AtLoad::new(&dns);
    let admin = raw.admin.and_then(|a| {
        let p = KeyPath::root().key("admin").key("listen");
        let listen = cx.required(p.clone(), a.listen, "an address like \"127.0.0.1:9901\"")?;
        let addr = cx.addr(&p, &listen)?;
        // port 0 asks the kernel for a fresh port each time, so it never clashes
        if addr.port() != 0 && server.listen.contains(&addr) {
            cx.err(p, format!("{addr} is also a server.listen address"));
        }
        Some(AdminConfig { listen: addr })
    });
    let admin_addr = admin.as_ref().map(|a| a.listen);
    let (listeners, client_certs) =
        super::tls::listeners(&mut cx, raw.listener, base, &server.listen, admin_addr);
    let mut upstreams = Vec::new();
    let mut upstream_names = BTreeMap::new();
    for (i, u) in raw.upstream.into_iter().enumerate() {
        let p = KeyPath::root().key("upstream").index(i);
        if let Some(name) = &u.name {
            cx.unique(&mut upstream_names, &p, "upstream", name, i);
        }
        let u = upstream(&mut cx, &p, u, base, &names);
        let cluster = |u: &UpstreamConfig| u.circuit_breaker.as_ref().is_some_and(|b| b.cluster);
        if u.as_ref().is_some_and(cluster) && !limits.has_redis() {
            let m = "scope = \"cluster\" needs a [redis] section";
            cx.err(p.key("circuit_breaker").key("scope"), m);
        }
        upstreams.push(u);
    }
    let bulkheads = super::bulkhead::bulkheads(&mut cx, raw.bulkhead);
    let mut routes = Vec::new();
    let (mut route_names, mut conditions) = (BTreeMap::new(), BTreeMap::new());
    for (i, mut r) in raw.route.into_iter().enumerate() {
        let p = KeyPath::root().key("route").index(i);
        if let Some(name) = &r.name {
            cx.unique(&mut route_names, &p, "route", name, i);
        }
        let (require, sans) = (r.require_client_cert.take(), r.client_cert_sans.take());
        let certs = super::tls::route_client_cert(&mut cx, &p, require, sans, client_certs);
        let fields = super::transform::response_fields(&mut cx, &p, r.response_fields.take());
        let fallback =
            super::fallback::fallback(&mut cx, &p.key("fallback"), r.fallback.take(), base);
        let pools = super::bulkhead::route_pools(&mut cx, &p, r.bulkheads.take(), &bulkheads);
        let allow_ips = super::ip::ip_list(&mut cx, p.key("allow_ips"), r.allow_ips.take(), base);
        let deny_ips = super::ip::ip_list(&mut cx, p.key("deny_ips"), r.deny_ips.take(), base);
        let waf = super::waf::waf(&mut cx, &p.key("waf"), r.waf.take());
        let checks = super::validation::RawValidation {
            schema: r.schema.take(),
            query: r.validate_query.take(),
            headers: r.validate_headers.take(),
        };
        let validation = super::validation::validation(&mut cx, &p, checks, base);
        let bff = super::bff::bff(&mut cx, &p, &mut r, &upstream_names, base);
        let Some(mut route) = route(&mut cx, &p, i, r, &upstream_names, &auth_names, &limits)
        else {
            continue;
        };
        (route.request_headers, route.response_headers) =
            (bff.request_headers, bff.response_headers);
        if bff.cache.as_ref().is_some_and(|c| c.shared) && !limits.has_redis() {
            let m = "shared = \"redis\" needs a [redis] section";
            cx.err(p.key("cache").key("shared"), m);
        }
        route.cache = bff.cache.map(std::sync::Arc::new);
        route.aggregate = bff.aggregate.map(std::sync::Arc::new);
        route.body = bff.body;
        (route.require_client_cert, route.client_cert_sans) = certs;
        route.response_fields = fields;
        route.fallback = fallback;
        route.pools = pools;
        (route.allow_ips, route.deny_ips) = (allow_ips, deny_ips);
        route.waf = waf.map(std::sync::Arc::new);
        route.validation = validation;
        route_path_normal(&mut cx, &p, &route.path, &server.path_normalization);
        match conditions.get(&condition_key(&route)) {
            Some(first) => cx.err(p, format!("same match as route[{first}]")),
            None => {
                conditions.insert(condition_key(&route), i);
            }
        }
        routes.push(route);
    }
    if !cx.problems.is_empty() {
        return Err(cx.problems);
    }
    let upstreams = upstreams.into_iter().flatten().collect();
    let (rate_limits, quotas, tiers, redis) = limits.into_model();
    Ok(Config {
        server,
        admin,
        upstreams,
        routes,
        auth,
        rate_limits,
        quotas,
        tiers,
        redis,
        access_log,
        tracing,
        dns,
        listeners,
        bulkheads,
    })
}

/// Every `[[auth]]`, in order; returns the policies and their names -> indices.
fn auth_policies(
    cx: &mut Ctx,
    raw: Vec<super::auth::RawAuth>,
    base: &std::path::Path,
) -> (Vec<super::auth::AuthPolicy>, BTreeMap<String, usize>) {
    let (mut out, mut names, mut jwt_names) = (Vec::new(), BTreeMap::new(), BTreeMap::new());
    let mut seen = BTreeMap::new();
    for (i, a) in raw.into_iter().enumerate() {
        let p = KeyPath::root().key("auth").index(i);
        if let Some(name) = &a.name {
            cx.unique(&mut seen, &p, "auth", name, i);
        }
        if let Some(pol) = super::auth::policy(cx, &p, a, base, &jwt_names) {
            if matches!(pol.kind, super::auth::AuthKind::Jwt(_)) {
                jwt_names.insert(pol.name.clone(), out.len());
            }
            names.insert(pol.name.clone(), out.len());
            out.push(pol);
        }
    }
    (out, names)
}

/// `listener_tables`: the file has `[[listener]]`s, so no default plain listener.
fn server(
    cx: &mut Ctx,
    s: RawServer,
    listener_tables: bool,
    base: &std::path::Path,
) -> ServerConfig {
    let p = KeyPath::root().key("server");
    let lp = p.key("listen");
    let listen_list = match s.listen {
        None if listener_tables => Vec::new(),
        None => vec![(lp.clone(), DEFAULT_LISTEN.to_owned())],
        Some(OneOrMany::One(a)) => vec![(lp.clone(), a)],
        Some(OneOrMany::Many(v)) => {
            if v.is_empty() {
                cx.err(lp.clone(), "empty list (expected at least one address)");
            }
            v.into_iter()
                .enumerate()
                .map(|(i, a)| (lp.index(i), a))
                .collect()
        }
    };
    let mut listen: Vec<SocketAddr> = Vec::new();
    for (ap, a) in listen_list {
        match cx.addr(&ap, &a) {
            Some(addr) if listen.contains(&addr) => cx.err(ap, format!("duplicate address {addr}")),
            Some(addr) => listen.push(addr),
            None => {}
        }
    }
    let max_request_line = cx.size(p.key("max_request_line"), s.max_request_line, 8 << 10, 1);
    let max_header_bytes = cx.size(p.key("max_header_bytes"), s.max_header_bytes, 32 << 10, 1);
    ServerConfig {
        listen,
        workers: cx.int(p.key("workers"), s.workers, 0, 0, 4096),
        header_timeout: cx.duration(p.key("header_timeout"), s.header_timeout, 10, false),
        keepalive_timeout: cx.duration(p.key("keepalive_timeout"), s.keepalive_timeout, 60, false),
        client_body_timeout: cx.duration(
            p.key("client_body_timeout"),
            s.client_body_timeout,
            60,
            false,
        ),
        drain_timeout: cx.duration(p.key("drain_timeout"), s.drain_timeout, 30, true),
        max_request_line: usize::try_from(max_request_line).unwrap_or(usize::MAX),
        max_header_bytes: usize::try_from(max_header_bytes).unwrap_or(usize::MAX),
        max_headers: cx.int(
            p.key("max_headers"),
            s.max_headers,
            100,
            1,
            crate::http::head::MAX_HEADERS_HARD as i64,
        ),
        path_normalization: path_policy(cx, &p.key("path_normalization"), s.path_normalization),
        http2: super::http2::http2(cx, &p.key("http2"), s.http2),
        trusted_proxies: super::ip::ip_list(cx, p.key("trusted_proxies"), s.trusted_proxies, base)
            .unwrap_or_default(),
        real_ip_header: super::ip::real_ip_header(cx, p.key("real_ip_header"), s.real_ip_header),
        proxy_protocol: s.proxy_protocol.unwrap_or(false),
        allow_ips: super::ip::ip_list(cx, p.key("allow_ips"), s.allow_ips, base),
        deny_ips: super::ip::ip_list(cx, p.key("deny_ips"), s.deny_ips, base),
        cache_memory: cx.size(
            p.key("cache_memory"),
            s.cache_memory,
            super::cache::DEFAULT_CACHE_MEMORY,
            0,
        ),
    }
}

fn path_policy(cx: &mut Ctx, p: &KeyPath, raw: Option<RawPathNormalization>) -> PathPolicy {
    use crate::router::EscapedSlashes;
    let mut policy = PathPolicy::default();
    let Some(raw) = raw else {
        return policy;
    };
    if let Some(m) = raw.merge_slashes {
        policy.merge_slashes = m;
    }
    if let Some(e) = raw.escaped_slashes {
        policy.escaped_slashes = match e.as_str() {
            "keep" => EscapedSlashes::Keep,
            "reject" => EscapedSlashes::Reject,
            "decode" => EscapedSlashes::Decode,
            _ => {
                let m = format!("unknown action \"{e}\" (expected keep, reject or decode)");
                cx.err(p.key("escaped_slashes"), m);
                policy.escaped_slashes
            }
        };
    }
    policy
}

fn upstream(
    cx: &mut Ctx,
    p: &KeyPath,
    u: RawUpstream,
    base: &std::path::Path,
    names: &crate::discovery::resolver::AtLoad<'_>,
) -> Option<UpstreamConfig> {
    let name = cx
        .required(p.key("name"), u.name, "a unique name like \"users\"")
        .and_then(|n| cx.check(&p.key("name"), check_name(&n).map(|_| n)));
    let ep = p.key("endpoints");
    let expected = "a list of addresses like [\"127.0.0.1:9001\"]";
    let raw_endpoints = cx.required(ep.clone(), u.endpoints, expected);
    if raw_endpoints.as_ref().is_some_and(Vec::is_empty) {
        cx.err(ep.clone(), "empty list (expected at least one endpoint)");
    }
    let refresh = super::dns::refresh(cx, p, u.dns_refresh.as_deref());
    let (endpoints, discovery) =
        super::dns::endpoints(cx, &ep, raw_endpoints.unwrap_or_default(), refresh, names);
    let balance = balance(cx, p, u.balance, u.hash_key);
    let protocol = match u.protocol.as_deref() {
        None | Some("http1") => UpstreamProtocol::Http1,
        Some("http2") => UpstreamProtocol::Http2,
        Some("auto") => UpstreamProtocol::Auto,
        Some(other) => {
            cx.err(
                p.key("protocol"),
                format!("unknown protocol \"{other}\" (expected \"http1\", \"http2\" or \"auto\")"),
            );
            UpstreamProtocol::Http1
        }
    };
    let tls = super::tls::upstream_tls(cx, p, name.as_deref(), u.tls, base, protocol);
    let circuit_breaker = super::breaker::breaker(cx, &p.key("circuit_breaker"), u.circuit_breaker);
    let outlier_detection =
        super::breaker::outlier(cx, &p.key("outlier_detection"), u.outlier_detection);
    let health_check = super::health::health_check(cx, &p.key("health_check"), u.health_check);
    let adaptive_concurrency =
        super::breaker::adaptive(cx, &p.key("adaptive_concurrency"), u.adaptive_concurrency);
    let retry = super::retry::retry(cx, &p.key("retry"), u.retry);
    let max_idle = u.max_idle_per_endpoint;
    Some(UpstreamConfig {
        connect_timeout: cx.duration(p.key("connect_timeout"), u.connect_timeout, 5, false),
        response_timeout: cx.duration(p.key("response_timeout"), u.response_timeout, 30, false),
        idle_timeout: cx.duration(p.key("idle_timeout"), u.idle_timeout, 60, false),
        max_idle_per_endpoint: cx.int(p.key("max_idle_per_endpoint"), max_idle, 64, 0, 65_536),
        retries: cx.int(p.key("retries"), u.retries, 1, 0, 10),
        max_fails: cx.int(p.key("max_fails"), u.max_fails, 1, 0, i64::from(u32::MAX)),
        fail_timeout: cx.duration(p.key("fail_timeout"), u.fail_timeout, 10, false),
        max_ejection_percent: cx.int(
            p.key("max_ejection_percent"),
            u.max_ejection_percent,
            DEFAULT_MAX_EJECTION_PERCENT,
            0,
            100,
        ),
        panic_threshold: cx.int(
            p.key("panic_threshold"),
            u.panic_threshold,
            DEFAULT_PANIC_THRESHOLD,
            0,
            100,
        ),
        // Last: `?` must not skip the checks above.
        name: name?,
        endpoints,
        discovery,
        balance: balance?,
        tls: tls.ok()?,
        protocol,
        circuit_breaker,
        outlier_detection,
        health_check,
        adaptive_concurrency,
        retry,
        bulkhead: super::bulkhead::limit(cx, p, u.max_concurrent, u.max_queued, u.queue_timeout),
        slow_start: u
            .slow_start
            .map(|v| cx.duration(p.key("slow_start"), Some(v), 0, true))
            .filter(|d| !d.is_zero()),
    })
}

fn balance(
    cx: &mut Ctx,
    p: &KeyPath,
    policy: Option<String>,
    key: Option<String>,
) -> Option<Balance> {
    let kp = p.key("hash_key");
    let balance = match policy.as_deref().unwrap_or("round_robin") {
        "round_robin" => Balance::RoundRobin,
        "weighted" => Balance::Weighted,
        "least_conn" => Balance::LeastConn,
        "p2c" => Balance::P2c,
        "hash" => {
            let expected =
                "\"header:<name>\", \"client_ip\" or \"identity\", required by balance = \"hash\"";
            let key = cx.required(kp.clone(), key, expected)?;
            return cx.check(&kp, parse_hash_key(&key)).map(Balance::Hash);
        }
        other => {
            let expected = "round_robin, weighted, least_conn, p2c or hash";
            cx.err(
                p.key("balance"),
                format!("unknown policy \"{other}\" (expected {expected})"),
            );
            return None;
        }
    };
    if key.is_some() {
        cx.err(kp, "only allowed with balance = \"hash\"");
    }
    Some(balance)
}

fn route(
    cx: &mut Ctx,
    p: &KeyPath,
    index: usize,
    r: RawRoute,
    upstreams: &BTreeMap<String, usize>,
    auth_names: &BTreeMap<String, usize>,
    limits: &super::limits::Limits,
) -> Option<RouteConfig> {
    let name = match r.name {
        None => Some(format!("route[{index}]")),
        Some(n) => cx.check(&p.key("name"), check_name(&n).map(|_| n)),
    };
    let host = r.host.map(|h| cx.check(&p.key("host"), parse_host(&h)));
    let path = route_path(
        cx,
        p,
        [
            ("path", r.path),
            ("path_prefix", r.path_prefix),
            ("path_template", r.path_template),
        ],
    );
    let methods = r.methods.map(|ms| {
        let mp = p.key("methods");
        if ms.is_empty() {
            cx.err(mp.clone(), "empty list (omit methods to allow any method)");
        }
        let mut out: Vec<String> = Vec::new();
        for (i, m) in ms.iter().enumerate() {
            let up = m.to_ascii_uppercase();
            if !is_token(m) {
                cx.err(
                    mp.index(i),
                    format!("invalid method \"{m}\" (expected a token like GET)"),
                );
            } else if out.contains(&up) {
                cx.err(mp.index(i), format!("duplicate method \"{up}\""));
            } else {
                out.push(up);
            }
        }
        out
    });
    let mut headers: Vec<(String, String)> = Vec::new();
    for (k, v) in r.headers.unwrap_or_default() {
        let hp = p.key("headers").key(&k);
        let name = k.to_ascii_lowercase();
        if !is_token(&k) {
            cx.err(
                hp,
                format!("invalid header name \"{k}\" (expected a token like x-canary)"),
            );
        } else if headers.iter().any(|(n, _)| *n == name) {
            cx.err(hp, format!("duplicate header \"{name}\""));
        } else if let Some(()) = cx.check(&hp, check_header_value(&v)) {
            headers.push((name, v));
        }
    }
    headers.sort();
    let up = cx.required(p.key("upstream"), r.upstream, "the name of an [[upstream]]");
    let upstream = up.and_then(|u| {
        let found = upstreams.get(&u).copied();
        cx.check(
            &p.key("upstream"),
            found.ok_or(format!("no upstream named \"{u}\"")),
        )
    });
    let rewrite = rewrite(cx, p, r.strip_prefix, r.rewrite_prefix);
    let host_rewrite = r
        .host_rewrite
        .map(|h| cx.check(&p.key("host_rewrite"), check_host_rewrite(&h).map(|_| h)));
    let auth = r.auth.map(|a| {
        let found = auth_names.get(&a).copied();
        cx.check(
            &p.key("auth"),
            found.ok_or(format!("no auth policy named \"{a}\"")),
        )
    });
    let require = super::auth::requirement(
        cx,
        p,
        auth.is_some(),
        r.require_roles,
        r.require_scopes,
        r.require,
    );
    let limits = super::limits::route_limits(
        cx,
        p,
        auth.is_some(),
        r.rate_limits,
        r.quotas,
        r.cost,
        limits,
    );
    Some(RouteConfig {
        auth: auth.map(|a| a.ok_or(())).transpose().ok()?,
        require,
        max_body: cx.size(p.key("max_body"), r.max_body, DEFAULT_MAX_BODY, 0),
        rate_limits: limits.rate_limits,
        quotas: limits.quotas,
        cost: limits.cost,
        // Set by the caller (`config::tls::route_client_cert`).
        require_client_cert: false,
        client_cert_sans: Vec::new(),
        // Set by the caller (`config::transform::response_fields`).
        response_fields: None,
        websocket: r.websocket.unwrap_or(false),
        upgrades: super::upgrade::upgrades(cx, &p.key("upgrades"), r.upgrades),
        tunnel_idle_timeout: cx.duration(
            p.key("tunnel_idle_timeout"),
            r.tunnel_idle_timeout,
            DEFAULT_TUNNEL_IDLE_SECS,
            false,
        ),
        bulkhead: super::bulkhead::limit(cx, p, r.max_concurrent, r.max_queued, r.queue_timeout),
        // Set by the caller (`config::ip::ip_list`: lists may name files).
        allow_ips: None,
        deny_ips: None,
        // Set by the caller (`config::bulkhead::route_pools`).
        pools: Vec::new(),
        // Set by the caller (`config::fallback::fallback`).
        fallback: None,
        // Set by the caller (`config::waf::waf`, `config::validation::validation`).
        waf: None,
        validation: None,
        // Set by the caller (`config::transform`, `config::cache`, `config::aggregate`).
        request_headers: None,
        response_headers: None,
        cache: None,
        aggregate: None,
        body: None,
        // Last: `?` must not skip the checks above. An invalid optional value is `Some(None)`.
        name: name?,
        host: host.map(|h| h.ok_or(())).transpose().ok()?,
        path: path?,
        methods,
        headers,
        upstream: upstream?,
        rewrite: rewrite.ok()?,
        host_rewrite: host_rewrite.map(|h| h.ok_or(())).transpose().ok()?,
    })
}

/// A route path that is not in normal form could never match: requests are matched after
/// normalisation (`router::normalize`). Says which form to write instead.
fn route_path_normal(cx: &mut Ctx, p: &KeyPath, path: &PathMatch, policy: &PathPolicy) {
    let (key, text) = match path {
        PathMatch::Exact(t) => ("path", t),
        PathMatch::Prefix(t) => ("path_prefix", t),
        PathMatch::Template(_) => return,
    };
    let mut normal = Vec::new();
    match crate::router::normalize(text.as_bytes(), policy, &mut normal) {
        Ok(false) => {}
        Ok(true) if normal == text.as_bytes() => {}
        Ok(true) => cx.err(
            p.key(key),
            format!(
                "\"{text}\" can never match: requests are matched on normalised paths (write \"{}\")",
                String::from_utf8_lossy(&normal)
            ),
        ),
        Err(e) => cx.err(
            p.key(key),
            format!("\"{text}\" can never match: every request path like it gets 400 ({})", e.0),
        ),
    }
}

/// At most one of `path`, `path_prefix`, `path_template`; none is prefix `/`.
fn route_path(cx: &mut Ctx, p: &KeyPath, keys: [(&str, Option<String>); 3]) -> Option<PathMatch> {
    let given: Vec<(&str, String)> = keys
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect();
    match given.as_slice() {
        [] => Some(PathMatch::Prefix("/".to_owned())),
        [(key, value)] => {
            let kp = p.key(key);
            cx.check(&kp, check_path(value))?;
            match *key {
                "path" => Some(PathMatch::Exact(value.clone())),
                "path_prefix" => Some(PathMatch::Prefix(value.clone())),
                _ => cx
                    .check(&kp, parse_template(value))
                    .map(PathMatch::Template),
            }
        }
        [_, (second, _), ..] => {
            let message = "only one of path, path_prefix and path_template is allowed";
            cx.err(p.key(second), message);
            None
        }
    }
}

/// `Err(())` when invalid (already reported); `Ok(None)` when no rewrite is configured.
fn rewrite(
    cx: &mut Ctx,
    p: &KeyPath,
    strip: Option<String>,
    rewrite: Option<RawRewrite>,
) -> Result<Option<PrefixRewrite>, ()> {
    let rp = p.key("rewrite_prefix");
    let (from, to) = match (strip, rewrite) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            cx.err(rp, "not allowed together with strip_prefix");
            return Err(());
        }
        (Some(from), None) => {
            let from = cx.check(&p.key("strip_prefix"), check_path(&from).map(|_| from));
            (from, Some(String::new()))
        }
        (None, Some(rw)) => {
            let from = cx
                .required(rp.key("from"), rw.from, "a path starting with \"/\"")
                .and_then(|f| cx.check(&rp.key("from"), check_path(&f).map(|_| f)));
            let to = cx
                .required(rp.key("to"), rw.to, "\"\" or a path starting with \"/\"")
                .and_then(|t| match t.is_empty() {
                    true => Some(t),
                    false => cx.check(&rp.key("to"), check_path(&t).map(|_| t)),
                });
            (from, to)
        }
    };
    Ok(Some(PrefixRewrite {
        from: from.ok_or(())?,
        to: to.ok_or(())?,
    }))
}

/// What makes two routes indistinguishable: host, path match (template parameter names ignored),
/// method set and header conditions.
fn condition_key(r: &RouteConfig) -> String {
    let path = match &r.path {
        PathMatch::Template(segs) => {
            let shape: Vec<&str> = segs
                .iter()
                .map(|s| match s {
                    TemplateSegment::Literal(l) => l.as_str(),
                    TemplateSegment::Param(_) => "{}",
                    TemplateSegment::CatchAll(_) => "{*}",
                })
                .collect();
            format!("template {shape:?}")
        }
        other => format!("{other:?}"),
    };
    let mut methods = r.methods.clone();
    if let Some(m) = methods.as_mut() {
        m.sort();
    }
    format!("{:?}|{path}|{methods:?}|{:?}", r.host, r.headers)
}

#[cfg(test)]
#[path = "validate_tests.rs"]
pub(crate) mod tests;
