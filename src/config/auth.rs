//! `[[auth]]` policies and the route keys that use them: raw TOML shape, validated model, and the
//! validation between the two.
//!
//! Flow: `validate.rs` hands each raw `[[auth]]` table to [`policy`], which checks every key, reads
//! key material (PEM files, JWKS files, API-key files, secrets from environment variables) and
//! reports each problem under its key path, so a bad key file is a config error with a position.
//! Secrets live in the model only as key material; `Debug` never prints them. Routes refer to
//! policies by name (`auth = "users"`) and add `require_roles` / `require_scopes` checks.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::position::KeyPath;
use super::raw::{DurationValue, OneOrMany};
use super::units::is_token;
use super::validate::Ctx;
use crate::auth::keys::{self, Key, KeySet};
use crate::client::Url;

/// One `[[auth]]` table as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawAuth {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    // jwt (and phantom's `verify`)
    pub algorithms: Option<Vec<String>>,
    pub secret_env: Option<String>,
    pub public_key_files: Option<Vec<String>>,
    pub jwks_file: Option<String>,
    pub jwks_url: Option<String>,
    /// CA certificates (PEM) that verify an `https://` jwks_url or introspection_url in place of
    /// the system roots.
    pub ca_file: Option<String>,
    pub jwks_refresh: Option<DurationValue>,
    pub jwks_min_refresh: Option<DurationValue>,
    pub issuer: Option<OneOrMany>,
    pub audience: Option<OneOrMany>,
    pub leeway: Option<DurationValue>,
    pub required_claims: Option<Vec<String>>,
    // where the credential is read from
    pub token_header: Option<String>,
    pub token_cookie: Option<String>,
    pub token_query: Option<String>,
    pub forward_token: Option<bool>,
    // identity
    pub claims_to_headers: Option<BTreeMap<String, String>>,
    pub roles_claim: Option<String>,
    pub scopes_claim: Option<String>,
    pub tenant_claim: Option<String>,
    pub tier_claim: Option<String>,
    pub cache_size: Option<i64>,
    // api_key
    pub keys: Option<Vec<RawApiKey>>,
    pub keys_file: Option<String>,
    // phantom
    pub redis: Option<String>,
    pub key_prefix: Option<String>,
    pub introspection_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_env: Option<String>,
    pub verify: Option<String>,
    pub cache_ttl: Option<DurationValue>,
    pub negative_ttl: Option<DurationValue>,
    pub timeout: Option<DurationValue>,
}

/// One API key: its SHA-256 (hex) or an env var holding the key itself, and who it belongs to.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawApiKey {
    pub sha256: Option<String>,
    pub key_env: Option<String>,
    pub consumer: Option<String>,
    pub tenant: Option<String>,
    pub tier: Option<String>,
}

/// A keys file: `[[key]]` tables with the same fields as inline `keys`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeysFile {
    #[serde(default)]
    key: Vec<RawApiKey>,
}

/// A validated policy.
#[derive(Debug, Clone)]
pub struct AuthPolicy {
    pub name: String,
    pub kind: AuthKind,
    /// Where the key material came from (for showing the effective config, never secrets).
    pub sources: KeySources,
    /// Where the credential is read from.
    pub source: TokenSource,
    /// Claims (or consumer fields) copied to upstream headers.
    pub identity: IdentityMap,
    /// Verified results kept per worker.
    pub cache_size: usize,
}

#[derive(Debug, Clone)]
pub enum AuthKind {
    Jwt(Arc<JwtRules>),
    ApiKey(Arc<ApiKeys>),
    Phantom(Arc<PhantomRules>),
}

/// Where a policy's key material was read from: environment variable names and resolved file
/// paths, never a secret. Kept so that the effective config can be shown and checked again
/// (`config::render`, admin `/config`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySources {
    pub secret_env: Option<String>,
    pub public_key_files: Vec<std::path::PathBuf>,
    pub jwks_file: Option<std::path::PathBuf>,
    /// The inline `keys`, in order: they are the first entries of [`ApiKeys::keys`].
    pub inline_keys: Vec<KeyRef>,
    pub keys_file: Option<std::path::PathBuf>,
    pub client_secret_env: Option<String>,
    pub ca_file: Option<std::path::PathBuf>,
}

/// How an inline API key was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// `sha256 = "..."`: the digest kept in [`ApiKeys::keys`] is what was written.
    Sha256,
    /// `key_env = "VAR"`.
    Env(String),
}

/// Where a credential comes from. Default: `Authorization: Bearer <token>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenSource {
    /// Lower-cased header name whose whole value is the token (`None`: Authorization Bearer).
    pub header: Option<String>,
    pub cookie: Option<String>,
    pub query: Option<String>,
    /// Keep the credential on the upstream request (default) or remove it.
    pub forward: bool,
}

/// How a verified identity becomes upstream headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityMap {
    /// (claim, lower-cased header); several claims for one header are comma-joined in this order.
    pub claims_to_headers: Vec<(String, String)>,
    pub roles_claim: String,
    pub scopes_claim: String,
    pub tenant_claim: Option<String>,
    pub tier_claim: Option<String>,
}

/// JWT verification rules.
pub struct JwtRules {
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// Keys known at start (secret, PEM files, JWKS file); a JWKS URL adds a refreshed set.
    pub static_keys: KeySet,
    pub jwks: Option<JwksSource>,
    pub issuers: Vec<String>,
    pub audiences: Vec<String>,
    pub leeway: Duration,
    /// Always includes "exp".
    pub required_claims: Vec<String>,
}

impl fmt::Debug for JwtRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtRules")
            .field("algorithms", &self.algorithms)
            .field("static_keys", &self.static_keys.keys.len())
            .field("jwks", &self.jwks)
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("leeway", &self.leeway)
            .field("required_claims", &self.required_claims)
            .finish()
    }
}

/// A JWKS fetched over HTTP at start and refreshed in the background.
#[derive(Debug, Clone)]
pub struct JwksSource {
    pub url: Url,
    /// Roots from the policy's `ca_file`; None = the system roots.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub refresh: Duration,
    /// At most one fetch per this interval when tokens name unknown `kid`s.
    pub min_refresh: Duration,
}

/// API keys, by SHA-256 of the key.
pub struct ApiKeys {
    pub keys: Vec<([u8; 32], Consumer)>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeys({} keys)", self.keys.len())
    }
}

/// Who an API key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    pub id: String,
    pub tenant: Option<String>,
    pub tier: Option<String>,
}

/// Phantom-token exchange rules.
#[derive(Debug)]
pub struct PhantomRules {
    pub backend: PhantomBackend,
    /// Index of a JWT policy that verifies the exchanged token (signature and claims); without it
    /// the token from the trusted store is only decoded.
    pub verify: Option<usize>,
    /// Upper bound of a positive cache entry (also bounded by the token's `exp`).
    pub cache_ttl: Duration,
    pub negative_ttl: Duration,
    pub timeout: Duration,
}

pub enum PhantomBackend {
    Redis {
        addr: std::net::SocketAddr,
        key_prefix: String,
    },
    Introspection {
        url: Url,
        client_id: String,
        client_secret: String,
        /// Roots from the policy's `ca_file`; None = the system roots.
        tls: Option<Arc<rustls::ClientConfig>>,
    },
}

impl fmt::Debug for PhantomBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PhantomBackend::Redis { addr, key_prefix } => {
                write!(f, "Redis {{ addr: {addr}, key_prefix: {key_prefix:?} }}")
            }
            PhantomBackend::Introspection { url, client_id, .. } => write!(
                f,
                "Introspection {{ url: {url:?}, client_id: {client_id:?}, client_secret: <redacted> }}"
            ),
        }
    }
}

/// A route's authorization rule on top of its policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    /// true: every listed role/scope is needed; false: any one of each list.
    pub all: bool,
}

const DEFAULT_CACHE: usize = 10_000;

impl Default for IdentityMap {
    /// `sub` -> X-User-Id, `roles` and `scope` -> X-User-Roles; roles from `roles`, scopes from
    /// `scope`; no tenant or tier claim.
    fn default() -> Self {
        IdentityMap {
            claims_to_headers: vec![
                ("sub".into(), "x-user-id".into()),
                ("roles".into(), "x-user-roles".into()),
                ("scope".into(), "x-user-roles".into()),
            ],
            roles_claim: "roles".into(),
            scopes_claim: "scope".into(),
            tenant_claim: None,
            tier_claim: None,
        }
    }
}

fn one_or_many(v: Option<OneOrMany>) -> Vec<String> {
    match v {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    }
}

/// A header name as written, lower-cased; an invalid one is recorded.
fn header_name(cx: &mut Ctx, p: KeyPath, v: Option<String>) -> Option<String> {
    let v = v?;
    if is_token(&v) {
        Some(v.to_ascii_lowercase())
    } else {
        cx.err(p, format!("\"{v}\" is not a valid header name"));
        None
    }
}

/// The value of environment variable `var`; unset or empty is recorded.
fn env(cx: &mut Ctx, p: KeyPath, var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            cx.err(p, format!("environment variable {var} is not set"));
            None
        }
    }
}

pub(super) fn resolve(base: &Path, file: &str) -> std::path::PathBuf {
    let p = Path::new(file);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Validates one `[[auth]]`. `jwt_names` maps earlier JWT policy names to indices (for `verify`).
pub(super) fn policy(
    cx: &mut Ctx,
    p: &KeyPath,
    mut a: RawAuth,
    base: &Path,
    jwt_names: &BTreeMap<String, usize>,
) -> Option<AuthPolicy> {
    let name = match a.name.take() {
        Some(n) => n,
        None => {
            cx.err(p.key("name"), "missing (expected a policy name)");
            return None;
        }
    };
    let mut source = TokenSource {
        header: header_name(cx, p.key("token_header"), a.token_header.take()),
        cookie: a.token_cookie.take(),
        query: a.token_query.take(),
        forward: a.forward_token.unwrap_or(true),
    };
    let sources = KeySources {
        secret_env: a.secret_env.clone(),
        public_key_files: (a.public_key_files.iter().flatten())
            .map(|f| resolve(base, f))
            .collect(),
        jwks_file: a.jwks_file.as_deref().map(|f| resolve(base, f)),
        inline_keys: (a.keys.iter().flatten())
            .map(|k| match &k.key_env {
                Some(var) => KeyRef::Env(var.clone()),
                None => KeyRef::Sha256,
            })
            .collect(),
        keys_file: a.keys_file.as_deref().map(|f| resolve(base, f)),
        client_secret_env: a.client_secret_env.clone(),
        ca_file: a.ca_file.as_deref().map(|f| resolve(base, f)),
    };
    let identity = identity_map(cx, p, &mut a);
    let cache_size = cx.int(
        p.key("cache_size"),
        a.cache_size,
        DEFAULT_CACHE,
        0,
        10_000_000,
    );
    let kind = match a.kind.take().as_deref() {
        Some("jwt") => AuthKind::Jwt(Arc::new(jwt_rules(cx, p, &mut a, base)?)),
        Some("api_key") => AuthKind::ApiKey(Arc::new(api_keys(cx, p, &mut a, base))),
        Some("phantom") => AuthKind::Phantom(Arc::new(phantom(cx, p, &mut a, base, jwt_names)?)),
        Some(other) => {
            cx.err(
                p.key("type"),
                format!("unknown type \"{other}\" (expected jwt, api_key or phantom)"),
            );
            return None;
        }
        None => {
            cx.err(p.key("type"), "missing (expected jwt, api_key or phantom)");
            return None;
        }
    };
    if matches!(kind, AuthKind::ApiKey(_)) && source.header.is_none() {
        source.header = Some("x-api-key".into());
    }
    Some(AuthPolicy {
        name,
        kind,
        sources,
        source,
        identity,
        cache_size,
    })
}

fn identity_map(cx: &mut Ctx, p: &KeyPath, a: &mut RawAuth) -> IdentityMap {
    let d = IdentityMap::default();
    let claims_to_headers = match a.claims_to_headers.take() {
        None => d.claims_to_headers,
        Some(m) => m
            .into_iter()
            .filter_map(|(claim, header)| {
                header_name(cx, p.key("claims_to_headers").key(&claim), Some(header))
                    .map(|h| (claim, h))
            })
            .collect(),
    };
    IdentityMap {
        claims_to_headers,
        roles_claim: a.roles_claim.take().unwrap_or(d.roles_claim),
        scopes_claim: a.scopes_claim.take().unwrap_or(d.scopes_claim),
        tenant_claim: a.tenant_claim.take(),
        tier_claim: a.tier_claim.take(),
    }
}

fn jwt_rules(cx: &mut Ctx, p: &KeyPath, a: &mut RawAuth, base: &Path) -> Option<JwtRules> {
    let ap = p.key("algorithms");
    let mut algorithms = Vec::new();
    match a.algorithms.take() {
        None => cx.err(ap.clone(), "missing (expected a list like [\"RS256\"])"),
        Some(list) if list.is_empty() => cx.err(ap.clone(), "empty list"),
        Some(list) => {
            for (i, s) in list.iter().enumerate() {
                match keys::parse_alg(s) {
                    Some(a) => algorithms.push(a),
                    None => cx.err(
                        ap.index(i),
                        format!(
                            "unsupported algorithm \"{s}\" (expected one of {})",
                            keys::ALG_NAMES
                        ),
                    ),
                }
            }
        }
    }
    let mut static_keys = Vec::new();
    if let Some(var) = a.secret_env.take() {
        if let Some(secret) = env(cx, p.key("secret_env"), &var) {
            static_keys.push(Key::secret(secret.as_bytes(), None));
        }
    }
    for (i, f) in a
        .public_key_files
        .take()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let kp = p.key("public_key_files").index(i);
        match std::fs::read(resolve(base, f)) {
            Err(e) => cx.err(kp, format!("cannot read {f}: {e}")),
            Ok(pem) => match Key::from_pem(&pem) {
                Ok(k) => static_keys.push(k),
                Err(m) => cx.err(kp, format!("{f}: {m}")),
            },
        }
    }
    if let Some(f) = a.jwks_file.take() {
        match std::fs::read(resolve(base, &f)) {
            Err(e) => cx.err(p.key("jwks_file"), format!("cannot read {f}: {e}")),
            Ok(text) => match KeySet::from_jwks(&text) {
                Ok((set, _skipped)) => static_keys.extend(set.keys),
                Err(m) => cx.err(p.key("jwks_file"), format!("{f}: {m}")),
            },
        }
    }
    let refresh = cx.duration(p.key("jwks_refresh"), a.jwks_refresh.take(), 300, false);
    let min_refresh = cx.duration(
        p.key("jwks_min_refresh"),
        a.jwks_min_refresh.take(),
        30,
        false,
    );
    let https = a.jwks_url.as_deref().is_some_and(is_https);
    let tls = ca_file(cx, p, a.ca_file.take(), base, https, "jwks_url");
    let jwks = a.jwks_url.take().and_then(|u| match Url::parse(&u) {
        Ok(url) => Some(JwksSource {
            url,
            tls,
            refresh,
            min_refresh,
        }),
        Err(m) => {
            cx.err(p.key("jwks_url"), m);
            None
        }
    });
    if static_keys.is_empty() && jwks.is_none() {
        cx.err(
            p.key("algorithms"),
            "no keys (expected secret_env, public_key_files, jwks_file or jwks_url)",
        );
    }
    let mut required_claims = a.required_claims.take().unwrap_or_default();
    if !required_claims.iter().any(|c| c == "exp") {
        required_claims.insert(0, "exp".into());
    }
    Some(JwtRules {
        algorithms,
        static_keys: KeySet { keys: static_keys },
        jwks,
        issuers: one_or_many(a.issuer.take()),
        audiences: one_or_many(a.audience.take()),
        leeway: cx.duration(p.key("leeway"), a.leeway.take(), 30, true),
        required_claims,
    })
}

/// Inline `keys` and `keys_file` entries.
fn api_keys(cx: &mut Ctx, p: &KeyPath, a: &mut RawAuth, base: &Path) -> ApiKeys {
    let mut keys = Vec::new();
    for (i, k) in a.keys.take().unwrap_or_default().into_iter().enumerate() {
        keys.extend(api_key(cx, &p.key("keys").index(i), k));
    }
    if let Some(file) = a.keys_file.take() {
        let fp = p.key("keys_file");
        match std::fs::read_to_string(resolve(base, &file)) {
            Err(e) => cx.err(fp, format!("cannot read {file}: {e}")),
            Ok(text) => match toml::from_str::<RawKeysFile>(&text) {
                Err(e) => cx.err(fp, format!("{file}: {}", e.message())),
                Ok(f) => {
                    for (i, k) in f.key.into_iter().enumerate() {
                        let kp = KeyPath::root().key(&format!("{file}: key")).index(i);
                        keys.extend(api_key(cx, &kp, k));
                    }
                }
            },
        }
    }
    if keys.is_empty() {
        cx.err(
            p.key("keys"),
            "no API keys (expected keys = [...] or keys_file)",
        );
    }
    ApiKeys { keys }
}

fn api_key(cx: &mut Ctx, p: &KeyPath, k: RawApiKey) -> Option<([u8; 32], Consumer)> {
    let hash = match (k.sha256, k.key_env) {
        (Some(h), None) => {
            let parsed = decode_hex32(&h);
            if parsed.is_none() {
                cx.err(
                    p.key("sha256"),
                    "expected 64 hex digits (the SHA-256 of the key)",
                );
            }
            parsed
        }
        (None, Some(var)) => {
            env(cx, p.key("key_env"), &var).map(|key| crate::auth::apikey::digest(key.as_bytes()))
        }
        (Some(_), Some(_)) => {
            cx.err(p.key("key_env"), "not allowed together with sha256");
            None
        }
        (None, None) => {
            cx.err(p.key("sha256"), "missing (expected sha256 or key_env)");
            None
        }
    };
    let consumer = k.consumer;
    if consumer.is_none() {
        cx.err(p.key("consumer"), "missing (expected the consumer id)");
    }
    Some((
        hash?,
        Consumer {
            id: consumer?,
            tenant: k.tenant,
            tier: k.tier,
        },
    ))
}

fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

fn is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

/// The client TLS config for a policy's `ca_file`, which only an `https://` `url_key` may use.
fn ca_file(
    cx: &mut Ctx,
    p: &KeyPath,
    file: Option<String>,
    base: &Path,
    https: bool,
    url_key: &str,
) -> Option<Arc<rustls::ClientConfig>> {
    let file = file?;
    if !https {
        cx.err(
            p.key("ca_file"),
            format!("only for an https:// {url_key} (it verifies that server's certificate)"),
        );
        return None;
    }
    match crate::tls::ca_file_roots(&resolve(base, &file)) {
        Ok(roots) => Some(crate::client::tls::config(roots)),
        Err(m) => {
            cx.err(p.key("ca_file"), m);
            None
        }
    }
}

fn phantom(
    cx: &mut Ctx,
    p: &KeyPath,
    a: &mut RawAuth,
    base: &Path,
    jwt_names: &BTreeMap<String, usize>,
) -> Option<PhantomRules> {
    let https = a.introspection_url.as_deref().is_some_and(is_https);
    let tls = ca_file(cx, p, a.ca_file.take(), base, https, "introspection_url");
    let backend = match (a.redis.take(), a.introspection_url.take()) {
        (Some(addr), None) => {
            let addr = cx.check(
                &p.key("redis"),
                super::units::resolve_addr(addr.trim_start_matches("redis://")),
            );
            addr.map(|addr| PhantomBackend::Redis {
                addr,
                key_prefix: a.key_prefix.take().unwrap_or_else(|| "phantom:".into()),
            })
        }
        (None, Some(u)) => {
            let url = cx.check(&p.key("introspection_url"), Url::parse(&u));
            let client_id = a.client_id.take();
            if client_id.is_none() {
                cx.err(
                    p.key("client_id"),
                    "missing (the introspection endpoint's client id)",
                );
            }
            let secret = match a.client_secret_env.take() {
                Some(var) => env(cx, p.key("client_secret_env"), &var),
                None => {
                    cx.err(
                        p.key("client_secret_env"),
                        "missing (env var with the client secret)",
                    );
                    None
                }
            };
            Some(PhantomBackend::Introspection {
                url: url?,
                client_id: client_id?,
                client_secret: secret?,
                tls,
            })
        }
        (Some(_), Some(_)) => {
            cx.err(
                p.key("introspection_url"),
                "not allowed together with redis",
            );
            None
        }
        (None, None) => {
            cx.err(
                p.key("redis"),
                "missing (expected redis or introspection_url)",
            );
            None
        }
    };
    let verify = a.verify.take().and_then(|v| {
        let found = jwt_names.get(&v).copied();
        cx.check(
            &p.key("verify"),
            found.ok_or(format!(
                "no jwt policy named \"{v}\" defined before this one"
            )),
        )
    });
    Some(PhantomRules {
        backend: backend?,
        verify,
        cache_ttl: cx.duration(p.key("cache_ttl"), a.cache_ttl.take(), 300, true),
        negative_ttl: cx.duration(p.key("negative_ttl"), a.negative_ttl.take(), 5, true),
        timeout: cx.duration(p.key("timeout"), a.timeout.take(), 2, false),
    })
}

/// A route's `require_roles` / `require_scopes` / `require` keys.
pub(super) fn requirement(
    cx: &mut Ctx,
    p: &KeyPath,
    has_auth: bool,
    roles: Option<Vec<String>>,
    scopes: Option<Vec<String>>,
    require: Option<String>,
) -> Option<Requirement> {
    if roles.is_none() && scopes.is_none() {
        if require.is_some() {
            cx.err(
                p.key("require"),
                "only allowed with require_roles or require_scopes",
            );
        }
        return None;
    }
    if !has_auth {
        let k = if roles.is_some() {
            "require_roles"
        } else {
            "require_scopes"
        };
        cx.err(
            p.key(k),
            "needs an auth policy on the route (auth = \"...\")",
        );
    }
    let all = match require.as_deref() {
        None | Some("any") => false,
        Some("all") => true,
        Some(o) => {
            cx.err(
                p.key("require"),
                format!("unknown value \"{o}\" (expected any or all)"),
            );
            false
        }
    };
    Some(Requirement {
        roles: roles.unwrap_or_default(),
        scopes: scopes.unwrap_or_default(),
        all,
    })
}
