//! The effective configuration written back out in the file format: what admin `/config` serves,
//! as TOML or JSON.
//!
//! Owns: [`to_toml`] / [`to_json`], which render a validated [`Config`] (defaults applied,
//! command-line overrides included) as a document that `coregate check` accepts and that
//! validates to the same `Config`. Both go through one [`toml::Table`] built here, key for key in
//! the shape of `raw.rs`.
//!
//! Secrets: no key of the format holds a secret literally; secrets come from environment variables
//! (`secret_env`, `key_env`, `client_secret_env`, `password_env`). The model keeps those variable
//! names next to the values it read ([`KeySources`], `RedisConfig::password_env`), and this module
//! renders the names, never the values, so the document is safe to show and still round-trips
//! where the same variables are set. API keys appear as their SHA-256 digests (what the gateway
//! stores), key files as absolute paths. A secret value with no reference to render would be
//! written as [`REDACTED`]; none exists today.
//!
//! TLS: certificate, key, CA, CRL and OCSP files are shown as their (absolute) paths, never their
//! contents; nothing of a private key is ever in the model to show.
//!
//! Normalised on the way: durations in the largest exact unit (`"90s"` is `"90s"`, `"2m"` stays
//! `"2m"`), sizes in bytes, host names resolved at load shown as the addresses in use, relative
//! paths resolved, `strip_prefix` shown as its equal `rewrite_prefix = { from, to = "" }`.

use std::time::Duration;

use toml::{Table, Value};

use super::access_log::{LogFormat, LogSink};
use super::auth::{AuthKind, AuthPolicy, KeyRef, PhantomBackend};
use super::limits::{KeyPart, QuotaUnit, Scope, Window};
use super::model::*;

/// What a secret without an environment reference is shown as.
pub const REDACTED: &str = "<redacted>";

/// The effective config as TOML.
pub fn to_toml(cfg: &Config) -> String {
    toml::to_string(&table(cfg)).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
}

/// The effective config as pretty JSON (the same keys as the TOML).
pub fn to_json(cfg: &Config) -> String {
    let mut s = serde_json::to_string_pretty(&table(cfg))
        .unwrap_or_else(|e| format!("{{\"error\":\"cannot render: {e}\"}}"));
    s.push('\n');
    s
}

/// A table from `(key, value)` pairs, skipping `None`s.
fn tbl<const N: usize>(pairs: [(&str, Option<Value>); N]) -> Value {
    Value::Table(
        pairs
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_owned(), v?)))
            .collect(),
    )
}

fn s(v: impl Into<String>) -> Option<Value> {
    Some(Value::String(v.into()))
}

fn int(n: impl TryInto<i64>) -> Option<Value> {
    Some(Value::Integer(n.try_into().unwrap_or(i64::MAX)))
}

fn strs<'a>(items: impl IntoIterator<Item = &'a String>) -> Option<Value> {
    Some(Value::Array(
        items
            .into_iter()
            .map(|x| Value::String(x.clone()))
            .collect(),
    ))
}

fn list(items: Vec<Value>) -> Value {
    Value::Array(items)
}

/// A duration in the largest unit that states it exactly (`"1500ms"`, `"2m"`), or fractional
/// seconds below a millisecond.
pub fn duration(d: Duration) -> Option<Value> {
    let ns = d.as_nanos();
    let text = if ns % 1_000_000 != 0 {
        let frac = format!("{:09}", d.subsec_nanos());
        format!("{}.{}s", d.as_secs(), frac.trim_end_matches('0'))
    } else {
        let ms = ns / 1_000_000;
        match ms {
            0 => "0s".to_owned(),
            _ if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
            _ if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
            _ if ms % 1000 == 0 => format!("{}s", ms / 1000),
            _ => format!("{ms}ms"),
        }
    };
    s(text)
}

#[path = "render_resilience.rs"]
mod resilience;
use resilience::{adaptive, breaker, health_check, outlier, retry};

#[path = "render_security.rs"]
mod security;

#[path = "render_bff.rs"]
mod bff;

#[path = "render_dns.rs"]
mod dns;

fn table(cfg: &Config) -> Table {
    let mut t = Table::new();
    let sv = &cfg.server;
    // No plain listener (only `[[listener]]`s) is written as no `listen`: `[]` is an error.
    let listen = (!sv.listen.is_empty() || cfg.listeners.is_empty())
        .then(|| strs(&sv.listen.iter().map(|a| a.to_string()).collect::<Vec<_>>()))
        .flatten();
    t.insert(
        "server".into(),
        tbl([
            ("listen", listen),
            ("workers", int(sv.workers)),
            ("header_timeout", duration(sv.header_timeout)),
            ("keepalive_timeout", duration(sv.keepalive_timeout)),
            ("client_body_timeout", duration(sv.client_body_timeout)),
            ("drain_timeout", duration(sv.drain_timeout)),
            ("max_request_line", int(sv.max_request_line)),
            ("max_header_bytes", int(sv.max_header_bytes)),
            ("max_headers", int(sv.max_headers)),
            (
                "path_normalization",
                Some(tbl([
                    (
                        "merge_slashes",
                        Some(Value::Boolean(sv.path_normalization.merge_slashes)),
                    ),
                    (
                        "escaped_slashes",
                        s(sv.path_normalization.escaped_slashes.name()),
                    ),
                ])),
            ),
            (
                "http2",
                Some(tbl([
                    (
                        "max_concurrent_streams",
                        int(sv.http2.max_concurrent_streams),
                    ),
                    ("stream_window", int(sv.http2.stream_window)),
                    ("connection_window", int(sv.http2.connection_window)),
                    ("max_client_resets", int(sv.http2.max_client_resets)),
                    ("max_error_resets", int(sv.http2.max_error_resets)),
                ])),
            ),
            ("proxy_protocol", Some(Value::Boolean(sv.proxy_protocol))),
            (
                "trusted_proxies",
                (!sv.trusted_proxies.is_empty())
                    .then(|| strs(&sv.trusted_proxies.text))
                    .flatten(),
            ),
            (
                "real_ip_header",
                s(match sv.real_ip_header {
                    super::ip::RealIpHeader::XForwardedFor => "x-forwarded-for",
                    super::ip::RealIpHeader::Forwarded => "forwarded",
                }),
            ),
            (
                "allow_ips",
                sv.allow_ips.as_ref().and_then(|l| strs(&l.text)),
            ),
            ("deny_ips", sv.deny_ips.as_ref().and_then(|l| strs(&l.text))),
            ("cache_memory", int(sv.cache_memory)),
        ]),
    );
    if let Some(a) = &cfg.admin {
        t.insert("admin".into(), tbl([("listen", s(a.listen.to_string()))]));
    }
    if !cfg.listeners.is_empty() {
        t.insert(
            "listener".into(),
            list(cfg.listeners.iter().map(listener).collect()),
        );
    }
    if !cfg.bulkheads.is_empty() {
        use super::bulkhead::PoolKey;
        let pools = cfg.bulkheads.iter().map(|b| {
            let key = match b.key {
                PoolKey::Whole => None,
                PoolKey::Tenant => s("tenant"),
                PoolKey::Consumer => s("consumer"),
                PoolKey::ClientIp => s("client_ip"),
            };
            tbl([
                ("name", s(&b.name)),
                ("max_concurrent", int(b.limit.max_concurrent)),
                ("max_queued", int(b.limit.max_queued)),
                ("queue_timeout", duration(b.limit.queue_timeout)),
                ("key", key),
            ])
        });
        t.insert("bulkhead".into(), list(pools.collect()));
    }
    let log = &cfg.access_log;
    let (sink, path) = match &log.sink {
        LogSink::Off => ("off", None),
        LogSink::Stdout => ("stdout", None),
        LogSink::File(p) => ("file", s(p.display().to_string())),
    };
    let format = match log.format {
        LogFormat::Json => "json",
    };
    t.insert(
        "access_log".into(),
        tbl([
            ("sink", s(sink)),
            ("path", path),
            ("format", s(format)),
            ("buffer", int(log.buffer)),
            ("queue", int(log.queue)),
            ("flush_interval", duration(log.flush_interval)),
        ]),
    );
    if let Some(d) = dns::dns(&cfg.dns) {
        t.insert("dns".into(), d);
    }
    if let Some(tr) = &cfg.tracing {
        t.insert(
            "tracing".into(),
            tbl([
                ("otlp_endpoint", s(tr.otlp_endpoint.to_string())),
                ("sample_ratio", Some(Value::Float(tr.sample_ratio))),
                ("service_name", s(&tr.service_name)),
                ("batch", int(tr.batch)),
                ("queue", int(tr.queue)),
                ("export_interval", duration(tr.export_interval)),
                ("export_timeout", duration(tr.export_timeout)),
            ]),
        );
    }
    if !cfg.auth.is_empty() {
        let auth = cfg.auth.iter().map(|p| auth_policy(cfg, p)).collect();
        t.insert("auth".into(), list(auth));
    }
    limits(cfg, &mut t);
    let upstreams = cfg.upstreams.iter().map(upstream).collect();
    t.insert("upstream".into(), list(upstreams));
    let routes = (cfg.routes.iter().enumerate())
        .map(|(i, r)| route(cfg, i, r))
        .collect();
    t.insert("route".into(), list(routes));
    t
}

fn upstream(u: &UpstreamConfig) -> Value {
    let (endpoints, dns_refresh) = dns::endpoints(u);
    let (balance, hash_key) = match &u.balance {
        Balance::RoundRobin => ("round_robin", None),
        Balance::Weighted => ("weighted", None),
        Balance::LeastConn => ("least_conn", None),
        Balance::P2c => ("p2c", None),
        Balance::Hash(HashKey::Header(h)) => ("hash", s(format!("header:{h}"))),
        Balance::Hash(HashKey::ClientIp) => ("hash", s("client_ip")),
        Balance::Hash(HashKey::Identity) => ("hash", s("identity")),
    };
    tbl([
        ("name", s(&u.name)),
        ("endpoints", Some(endpoints)),
        ("dns_refresh", dns_refresh),
        ("balance", s(balance)),
        ("hash_key", hash_key),
        ("connect_timeout", duration(u.connect_timeout)),
        ("response_timeout", duration(u.response_timeout)),
        ("idle_timeout", duration(u.idle_timeout)),
        ("max_idle_per_endpoint", int(u.max_idle_per_endpoint)),
        ("retries", int(u.retries)),
        ("max_fails", int(u.max_fails)),
        ("fail_timeout", duration(u.fail_timeout)),
        ("max_ejection_percent", int(u.max_ejection_percent)),
        ("panic_threshold", int(u.panic_threshold)),
        ("tls", u.tls.as_deref().map(upstream_tls)),
        (
            "protocol",
            s(match u.protocol {
                UpstreamProtocol::Http1 => "http1",
                UpstreamProtocol::Http2 => "http2",
                UpstreamProtocol::Auto => "auto",
            }),
        ),
        ("circuit_breaker", u.circuit_breaker.as_ref().map(breaker)),
        (
            "outlier_detection",
            u.outlier_detection.as_ref().map(outlier),
        ),
        ("health_check", u.health_check.as_ref().map(health_check)),
        (
            "adaptive_concurrency",
            u.adaptive_concurrency.as_ref().map(adaptive),
        ),
        ("retry", Some(retry(&u.retry))),
        ("slow_start", u.slow_start.and_then(duration)),
        (
            "max_concurrent",
            u.bulkhead.and_then(|l| int(l.max_concurrent)),
        ),
        ("max_queued", u.bulkhead.and_then(|l| int(l.max_queued))),
        (
            "queue_timeout",
            u.bulkhead.and_then(|l| duration(l.queue_timeout)),
        ),
    ])
}

fn path(p: &std::path::Path) -> Option<Value> {
    s(p.display().to_string())
}

fn listener(l: &ListenerConfig) -> Value {
    let tls = l.tls.as_deref().map(|t| {
        let certs = (t.certificates.iter())
            .map(|c| {
                tbl([
                    ("cert_file", path(&c.cert_file)),
                    ("key_file", path(&c.key_file)),
                    ("ocsp_file", c.ocsp_file.as_deref().and_then(path)),
                ])
            })
            .collect();
        tbl([
            ("certificates", Some(list(certs))),
            ("unknown_sni", s(t.unknown_sni.name())),
            ("alpn", strs(&t.alpn)),
            ("min_version", s(t.min_version.name())),
            ("session_tickets", Some(Value::Boolean(t.session_tickets))),
            ("handshake_timeout", duration(t.handshake_timeout)),
            ("client_auth", s(t.client_auth.name())),
            ("client_ca_file", t.client_ca_file.as_deref().and_then(path)),
            (
                "client_crl_file",
                t.client_crl_file.as_deref().and_then(path),
            ),
        ])
    });
    tbl([
        ("listen", s(l.listen.to_string())),
        ("proxy_protocol", Some(Value::Boolean(l.proxy_protocol))),
        (
            "allow_ips",
            l.allow_ips.as_ref().and_then(|l| strs(&l.text)),
        ),
        ("deny_ips", l.deny_ips.as_ref().and_then(|l| strs(&l.text))),
        ("tls", tls),
    ])
}

fn upstream_tls(t: &crate::tls::UpstreamTls) -> Value {
    tbl([
        ("sni", t.sni_text().and_then(s)),
        ("ca_file", t.ca_file.as_deref().and_then(path)),
        (
            "insecure_skip_verify",
            Some(Value::Boolean(t.insecure_skip_verify)),
        ),
        (
            "client_cert_file",
            t.client_cert_file.as_deref().and_then(path),
        ),
        (
            "client_key_file",
            t.client_key_file.as_deref().and_then(path),
        ),
    ])
}

fn route(cfg: &Config, index: usize, r: &RouteConfig) -> Value {
    // An unnamed route is called "route[N]", which is not a valid name to write.
    let name = (r.name != format!("route[{index}]")).then(|| r.name.clone());
    let body = r.body.as_deref();
    let host = r.host.as_ref().map(|h| match h {
        HostMatch::Exact(h) => h.clone(),
        HostMatch::Suffix(suffix) => format!("*{suffix}"),
    });
    let (path, prefix, template) = match &r.path {
        PathMatch::Exact(p) => (s(p), None, None),
        PathMatch::Prefix(p) => (None, s(p), None),
        PathMatch::Template(segs) => {
            let mut t = String::new();
            for seg in segs {
                t.push('/');
                match seg {
                    TemplateSegment::Literal(l) => t.push_str(l),
                    TemplateSegment::Param(n) => t.push_str(&format!("{{{n}}}")),
                    TemplateSegment::CatchAll(n) => t.push_str(&format!("{{*{n}}}")),
                }
            }
            (None, None, s(t))
        }
    };
    let headers = (!r.headers.is_empty()).then(|| {
        Value::Table(
            (r.headers.iter())
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        )
    });
    let rewrite = r
        .rewrite
        .as_ref()
        .map(|rw| tbl([("from", s(&rw.from)), ("to", s(&rw.to))]));
    let req = r.require.as_ref();
    let roles = req.filter(|q| !q.roles.is_empty() || q.scopes.is_empty());
    let names = |idx: &[usize], of: &dyn Fn(usize) -> String| {
        Some(list(idx.iter().map(|&i| Value::String(of(i))).collect()))
    };
    tbl([
        ("name", name.and_then(s)),
        ("host", host.and_then(s)),
        ("path", path),
        ("path_prefix", prefix),
        ("path_template", template),
        ("methods", r.methods.as_ref().and_then(strs)),
        ("headers", headers),
        (
            "upstream",
            r.aggregate
                .is_none()
                .then(|| s(&cfg.upstreams[r.upstream].name))
                .flatten(),
        ),
        ("rewrite_prefix", rewrite),
        ("host_rewrite", r.host_rewrite.as_ref().and_then(s)),
        ("max_body", int(r.max_body)),
        ("auth", r.auth.and_then(|a| s(&cfg.auth[a].name))),
        ("require_roles", roles.and_then(|q| strs(&q.roles))),
        (
            "require_scopes",
            req.filter(|q| !q.scopes.is_empty())
                .and_then(|q| strs(&q.scopes)),
        ),
        (
            "require",
            req.and_then(|q| s(if q.all { "all" } else { "any" })),
        ),
        (
            "rate_limits",
            names(&r.rate_limits, &|i| cfg.rate_limits[i].name.clone()),
        ),
        ("quotas", names(&r.quotas, &|i| cfg.quotas[i].name.clone())),
        ("cost", r.cost.and_then(int)),
        (
            "require_client_cert",
            r.require_client_cert.then_some(Value::Boolean(true)),
        ),
        (
            "client_cert_sans",
            (!r.client_cert_sans.is_empty())
                .then(|| strs(&r.client_cert_sans))
                .flatten(),
        ),
        ("websocket", r.websocket.then_some(Value::Boolean(true))),
        (
            "upgrades",
            (!r.upgrades.is_empty())
                .then(|| strs(&r.upgrades))
                .flatten(),
        ),
        ("tunnel_idle_timeout", duration(r.tunnel_idle_timeout)),
        (
            "response_fields",
            r.response_fields.as_ref().and_then(|f| strs(&f.paths())),
        ),
        (
            "max_concurrent",
            r.bulkhead.and_then(|l| int(l.max_concurrent)),
        ),
        ("max_queued", r.bulkhead.and_then(|l| int(l.max_queued))),
        (
            "queue_timeout",
            r.bulkhead.and_then(|l| duration(l.queue_timeout)),
        ),
        (
            "allow_ips",
            r.allow_ips.as_ref().and_then(|l| strs(&l.text)),
        ),
        ("deny_ips", r.deny_ips.as_ref().and_then(|l| strs(&l.text))),
        (
            "bulkheads",
            (!r.pools.is_empty()).then(|| {
                let names = r.pools.iter().map(|&i| cfg.bulkheads[i].name.clone());
                Value::Array(names.map(Value::String).collect())
            }),
        ),
        ("fallback", r.fallback.as_deref().map(fallback)),
        ("waf", r.waf.as_deref().map(security::waf)),
        ("schema", r.validation.as_deref().and_then(security::schema)),
        (
            "validate_query",
            r.validation
                .as_deref()
                .and_then(|v| security::params(&v.query)),
        ),
        (
            "validate_headers",
            r.validation
                .as_deref()
                .and_then(|v| security::params(&v.headers)),
        ),
        ("cache", r.cache.as_deref().map(bff::cache)),
        (
            "aggregate",
            r.aggregate.as_deref().map(|a| bff::aggregate(cfg, a)),
        ),
        (
            "aggregate_timeout",
            r.aggregate.as_deref().and_then(|a| duration(a.timeout)),
        ),
        (
            "request_headers",
            r.request_headers.as_deref().map(bff::header_ops),
        ),
        (
            "response_headers",
            r.response_headers.as_deref().map(bff::header_ops),
        ),
        (
            "request_body",
            body.and_then(|b| b.request.as_ref()).map(bff::body),
        ),
        (
            "response_body",
            body.and_then(|b| b.response.as_ref()).map(bff::body),
        ),
        (
            "query_fields",
            body.and_then(|b| b.query_fields.as_ref()).and_then(s),
        ),
        ("status_overrides", body.and_then(bff::overrides)),
    ])
}

pub(super) fn fallback(f: &super::fallback::Fallback) -> Value {
    let body = match &f.body_file {
        Some(_) => None,
        None => s(String::from_utf8_lossy(&f.body)),
    };
    tbl([
        ("status", int(f.status)),
        ("content_type", s(&f.content_type)),
        ("body_file", f.body_file.as_deref().and_then(path)),
        ("body", body),
    ])
}

fn auth_policy(cfg: &Config, p: &AuthPolicy) -> Value {
    let mut t = Table::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            t.insert(k.to_owned(), v);
        }
    };
    put("name", s(&p.name));
    let src = &p.sources;
    let ca_file = src
        .ca_file
        .as_ref()
        .and_then(|f| s(f.display().to_string()));
    let paths = |ps: &[std::path::PathBuf]| {
        Some(list(
            ps.iter()
                .map(|x| Value::String(x.display().to_string()))
                .collect(),
        ))
    };
    match &p.kind {
        AuthKind::Jwt(j) => {
            put("type", s("jwt"));
            let algs: Vec<String> = j.algorithms.iter().map(|a| format!("{a:?}")).collect();
            put("algorithms", strs(&algs));
            put("secret_env", src.secret_env.as_ref().and_then(s));
            if !src.public_key_files.is_empty() {
                put("public_key_files", paths(&src.public_key_files));
            }
            put(
                "jwks_file",
                src.jwks_file
                    .as_ref()
                    .and_then(|f| s(f.display().to_string())),
            );
            if let Some(w) = &j.jwks {
                put("jwks_url", s(w.url.to_string()));
                put("ca_file", ca_file.clone());
                put("jwks_refresh", duration(w.refresh));
                put("jwks_min_refresh", duration(w.min_refresh));
            }
            put("issuer", strs(&j.issuers));
            put("audience", strs(&j.audiences));
            put("leeway", duration(j.leeway));
            put("required_claims", strs(&j.required_claims));
        }
        AuthKind::ApiKey(k) => {
            put("type", s("api_key"));
            let inline = (src.inline_keys.iter().zip(&k.keys))
                .map(|(how, (digest, c))| {
                    let (sha, env) = match how {
                        KeyRef::Sha256 => (s(hex(digest)), None),
                        KeyRef::Env(var) => (None, s(var)),
                    };
                    tbl([
                        ("sha256", sha),
                        ("key_env", env),
                        ("consumer", s(&c.id)),
                        ("tenant", c.tenant.as_ref().and_then(s)),
                        ("tier", c.tier.as_ref().and_then(s)),
                    ])
                })
                .collect();
            put("keys", Some(list(inline)));
            put(
                "keys_file",
                src.keys_file
                    .as_ref()
                    .and_then(|f| s(f.display().to_string())),
            );
        }
        AuthKind::Phantom(ph) => {
            put("type", s("phantom"));
            match &ph.backend {
                PhantomBackend::Redis { addr, key_prefix } => {
                    put("redis", s(addr.to_string()));
                    put("key_prefix", s(key_prefix));
                }
                PhantomBackend::Introspection { url, client_id, .. } => {
                    put("introspection_url", s(url.to_string()));
                    put("ca_file", ca_file.clone());
                    put("client_id", s(client_id));
                    let secret = src.client_secret_env.as_deref().unwrap_or(REDACTED);
                    put("client_secret_env", s(secret));
                }
            }
            put("verify", ph.verify.and_then(|v| s(&cfg.auth[v].name)));
            put("cache_ttl", duration(ph.cache_ttl));
            put("negative_ttl", duration(ph.negative_ttl));
            put("timeout", duration(ph.timeout));
        }
    }
    let ts = &p.source;
    put("token_header", ts.header.as_ref().and_then(s));
    put("token_cookie", ts.cookie.as_ref().and_then(s));
    put("token_query", ts.query.as_ref().and_then(s));
    put("forward_token", Some(Value::Boolean(ts.forward)));
    let id = &p.identity;
    let claims = (id.claims_to_headers.iter())
        .map(|(c, h)| (c.clone(), Value::String(h.clone())))
        .collect();
    put("claims_to_headers", Some(Value::Table(claims)));
    put("roles_claim", s(&id.roles_claim));
    put("scopes_claim", s(&id.scopes_claim));
    put("tenant_claim", id.tenant_claim.as_ref().and_then(s));
    put("tier_claim", id.tier_claim.as_ref().and_then(s));
    put("cache_size", int(p.cache_size));
    Value::Table(t)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn key(parts: &[KeyPart]) -> Option<Value> {
    let text: Vec<String> = (parts.iter())
        .map(|k| match k {
            KeyPart::Consumer => "consumer".to_owned(),
            KeyPart::ClientIp => "client_ip".to_owned(),
            KeyPart::Header(h) => format!("header:{h}"),
            KeyPart::Route => "route".to_owned(),
            KeyPart::Tenant => "tenant".to_owned(),
            KeyPart::Global => "global".to_owned(),
        })
        .collect();
    strs(&text)
}

/// `scope`, and `local_share` (only allowed, so only shown, with cluster scope).
fn placement(scope: Scope, share: f64) -> [(&'static str, Option<Value>); 2] {
    match scope {
        Scope::Gateway => [("scope", s("gateway")), ("local_share", None)],
        Scope::Cluster => [
            ("scope", s("cluster")),
            ("local_share", Some(Value::Float(share))),
        ],
    }
}

fn limits(cfg: &Config, t: &mut Table) {
    if !cfg.rate_limits.is_empty() {
        let rates = (cfg.rate_limits.iter())
            .map(|r| {
                let per = match r.per.as_secs() {
                    1 => "s",
                    60 => "min",
                    _ => "h",
                };
                let [scope, share] = placement(r.scope, r.local_share);
                tbl([
                    ("name", s(&r.name)),
                    ("key", key(&r.key)),
                    ("rate", s(format!("{}/{per}", r.tokens))),
                    ("burst", int(r.burst)),
                    ("cost", int(r.cost)),
                    scope,
                    share,
                    ("max_keys", int(r.max_keys)),
                ])
            })
            .collect();
        t.insert("rate_limit".into(), list(rates));
    }
    if !cfg.quotas.is_empty() {
        let quotas = (cfg.quotas.iter())
            .map(|q| {
                let window = match q.window {
                    Window::Minute => "minute",
                    Window::Hour => "hour",
                    Window::Day => "day",
                    Window::Month => "month",
                };
                let unit = match q.unit {
                    QuotaUnit::Requests => "",
                    QuotaUnit::Bytes => "B",
                };
                let [scope, share] = placement(q.scope, q.local_share);
                tbl([
                    ("name", s(&q.name)),
                    ("key", key(&q.key)),
                    ("limit", s(format!("{}{unit}/{window}", q.limit))),
                    scope,
                    share,
                    ("max_keys", int(q.max_keys)),
                ])
            })
            .collect();
        t.insert("quota".into(), list(quotas));
    }
    if !cfg.tiers.is_empty() {
        let tiers = (cfg.tiers.iter())
            .map(|tier| {
                let rates: Vec<String> = (tier.rate_limits.iter())
                    .map(|&i| cfg.rate_limits[i].name.clone())
                    .collect();
                let quotas: Vec<String> = (tier.quotas.iter())
                    .map(|&i| cfg.quotas[i].name.clone())
                    .collect();
                let v = tbl([("rate_limits", strs(&rates)), ("quotas", strs(&quotas))]);
                (tier.name.clone(), v)
            })
            .collect();
        t.insert("tier".into(), Value::Table(tiers));
    }
    if let Some(r) = &cfg.redis {
        // A password read from a variable is shown as the variable's name.
        let password_env = match (&r.password_env, &r.password) {
            (Some(var), _) => s(var),
            (None, Some(_)) => s(REDACTED),
            (None, None) => None,
        };
        t.insert(
            "redis".into(),
            tbl([
                ("addr", s(r.addr.to_string())),
                ("db", r.db.and_then(int)),
                ("password_env", password_env),
                ("timeout", duration(r.timeout)),
                ("key_prefix", s(&r.key_prefix)),
            ]),
        );
    }
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
