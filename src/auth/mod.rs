//! Edge authentication: who is calling, decided once at the gateway; services behind it trust the
//! identity headers it sets.
//!
//! Flow for a request on a route with `auth = "<policy>"`:
//!
//! ```text
//! token.rs     credential from Authorization: Bearer / a header / a cookie / a query parameter
//! cache.rs     per-worker verdict cache, keyed by the credential     -> hit: done (a hash lookup)
//! jwt.rs       signature (keys.rs, JWKS from jwks.rs) + claims       -> 401 with the reason, or
//!              (unknown kid) wait for one JWKS refetch; no JWKS loaded yet -> 503
//! apikey.rs    SHA-256 digest, constant-time compare                 -> 401
//! phantom.rs   Redis / introspection exchange for the JWT            -> 401, or 503 if unreachable
//! identity.rs  claims -> Identity (headers, roles, scopes)           -> route requirement, 403
//! ```
//!
//! [`AuthShared`] is built once on the main thread (policies, JWKS state) and shared read-only;
//! each worker builds its own [`AuthRt`] from it: verdict caches and Redis clients are per core,
//! behind `RefCell`s, with no lock on the request path. The connection driver drops every managed
//! identity header a client sent (on every route) and appends the identity's headers upstream. A
//! credential that is not forwarded (`forward_token = false`, and a phantom policy's opaque token)
//! is removed from wherever the policy reads it: its header ([`AuthRt::strip_list`]), its cookie and
//! its query parameter ([`AuthRt::hidden`], cut by `http::credentials`).

pub mod apikey;
pub mod cache;
pub mod identity;
pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod phantom;
pub mod token;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::config::auth::{AuthKind, AuthPolicy, PhantomBackend};
use crate::config::Config;
use crate::http::credentials::Hidden;
use crate::http::view::RequestView;
use crate::redis::{RedisClient, RedisOpts};
use cache::{now_ms, Cache, Verdict};
use identity::Identity;
use jwks::JwksState;
use jwt::Reject;

/// Refusals of a bad JWT are remembered this long (a refreshed JWKS may add its key).
const JWT_NEGATIVE_TTL_MS: u64 = 1_000;
/// API-key verdicts are remembered this long (keys only change with the config).
const API_KEY_TTL_MS: u64 = 300_000;
const API_KEY_NEGATIVE_TTL_MS: u64 = 5_000;

/// A verified token's claims and its `exp` (whole seconds).
type Claims = (serde_json::Map<String, serde_json::Value>, Option<u64>);

/// Why a request is not let through.
#[derive(Debug, Clone)]
pub enum Denied {
    /// 401 with `WWW-Authenticate` (`bearer`: false for API-key policies).
    Unauthorized { reject: Reject, bearer: bool },
    /// 403: authenticated, but the route's roles/scopes are not met.
    Forbidden,
    /// 503: the token store, introspection endpoint or key server (a JWKS that never loaded) could
    /// not answer.
    Unavailable(String),
}

/// Process-wide, read-only auth state.
pub struct AuthShared {
    pub policies: Vec<AuthPolicy>,
    /// Per policy: its live JWKS (JWT policies with `jwks_url`).
    pub jwks: Vec<Option<Arc<JwksState>>>,
    /// Lower-cased identity header names the gateway manages (dropped from every client request).
    pub managed: Vec<Box<[u8]>>,
}

impl AuthShared {
    /// Builds the shared state and starts JWKS fetching (initial fetch happens here). `prev`: the
    /// previous generation's state on a reload; a JWKS set with the same URL starts from the keys
    /// it already has instead of being fetched again (a reload never leaves a policy keyless
    /// because the key server was briefly unreachable).
    pub fn start(cfg: &Config, prev: Option<&AuthShared>) -> Result<Arc<AuthShared>, String> {
        let mut states = Vec::new();
        let known = |url: &str| {
            prev.into_iter()
                .flat_map(|p| p.jwks.iter().flatten())
                .find(|s| s.source.url.to_string() == url)
        };
        let jwks = cfg
            .auth
            .iter()
            .map(|p| match &p.kind {
                AuthKind::Jwt(r) => r.jwks.clone().map(|src| {
                    // a set that never loaded (its URL was down) is not carried: fetched again
                    let carried = known(&src.url.to_string())
                        .filter(|old| old.loaded())
                        .map(|old| old.set.load_full());
                    let s = Arc::new(JwksState::new(src));
                    if let Some(set) = carried {
                        s.store(set);
                    }
                    states.push(s.clone());
                    s
                }),
                _ => None,
            })
            .collect();
        jwks::start(states)?;
        let mut managed: Vec<Box<[u8]>> = Vec::new();
        let mut add = |n: &str| {
            if !managed.iter().any(|m| m.as_ref() == n.as_bytes()) {
                managed.push(n.as_bytes().into());
            }
        };
        if !cfg.auth.is_empty() {
            add(identity::CONSUMER_HEADER);
            add(identity::TENANT_HEADER);
            add(identity::TIER_HEADER);
        }
        for p in &cfg.auth {
            for (_, h) in &p.identity.claims_to_headers {
                add(h);
            }
        }
        Ok(Arc::new(AuthShared {
            policies: cfg.auth.clone(),
            jwks,
            managed,
        }))
    }
}

/// One worker's auth state.
pub struct AuthRt {
    shared: Arc<AuthShared>,
    caches: Vec<RefCell<Cache>>,
    redis: Vec<Option<RedisClient>>,
    /// Per policy: headers dropped on its routes (managed ones, plus the credential's header when
    /// it is not forwarded, plus Authorization for phantom tokens).
    strip_for: Vec<Vec<Box<[u8]>>>,
    /// Per policy: the cookie and query parameter names to cut from upstream requests (credentials
    /// read from there and not forwarded).
    hidden_for: Vec<HiddenNames>,
}

/// A policy's credential cookie and query parameter names, when the credential is not forwarded.
struct HiddenNames {
    cookie: Option<Box<[u8]>>,
    query: Option<Box<[u8]>>,
}

impl AuthRt {
    pub fn new(shared: Arc<AuthShared>) -> Self {
        let caches = shared
            .policies
            .iter()
            .map(|p| RefCell::new(Cache::new(p.cache_size)))
            .collect();
        let redis = shared
            .policies
            .iter()
            .map(|p| match &p.kind {
                AuthKind::Phantom(r) => match &r.backend {
                    PhantomBackend::Redis { addr, .. } => Some(RedisClient::new(
                        *addr,
                        RedisOpts {
                            connect_timeout: r.timeout,
                            op_timeout: r.timeout,
                            db: None,
                            password: None,
                            max_idle: 16,
                        },
                    )),
                    PhantomBackend::Introspection { .. } => None,
                },
                _ => None,
            })
            .collect();
        let strip_for = shared
            .policies
            .iter()
            .map(|p| {
                let mut v = shared.managed.clone();
                let cred: &[u8] = match &p.source.header {
                    Some(h) => h.as_bytes(),
                    None => b"authorization",
                };
                let phantom = matches!(p.kind, AuthKind::Phantom(_));
                if (!p.source.forward || phantom) && !v.iter().any(|m| m.as_ref() == cred) {
                    v.push(cred.into());
                }
                if phantom && !v.iter().any(|m| m.as_ref() == b"authorization") {
                    v.push(b"authorization".as_slice().into());
                }
                v
            })
            .collect();
        let hidden_for = shared
            .policies
            .iter()
            .map(|p| {
                let hide = !p.source.forward || matches!(p.kind, AuthKind::Phantom(_));
                let name =
                    |n: &Option<String>| n.as_ref().filter(|_| hide).map(|n| n.as_bytes().into());
                HiddenNames {
                    cookie: name(&p.source.cookie),
                    query: name(&p.source.query),
                }
            })
            .collect();
        AuthRt {
            shared,
            caches,
            redis,
            strip_for,
            hidden_for,
        }
    }

    /// The credential cookie and query parameter to remove from the upstream request of a route
    /// with this policy (empty when the policy forwards its credential, or there is no policy).
    pub fn hidden(&self, policy: Option<usize>) -> Hidden<'_> {
        match policy.map(|p| &self.hidden_for[p]) {
            Some(h) => Hidden {
                cookie: h.cookie.as_deref(),
                query: h.query.as_deref(),
            },
            None => Hidden::default(),
        }
    }

    /// Header names to drop from the upstream request of a route with this policy (or none).
    pub fn strip_list(&self, policy: Option<usize>) -> &[Box<[u8]>] {
        match policy {
            Some(p) => &self.strip_for[p],
            None => &self.shared.managed,
        }
    }

    /// Authenticates a request against policy `policy`.
    pub async fn authenticate(
        &self,
        policy: usize,
        req: &RequestView<'_>,
    ) -> Result<Rc<Identity>, Denied> {
        let pol = &self.shared.policies[policy];
        let bearer = !matches!(pol.kind, AuthKind::ApiKey(_));
        let deny = |reject| Denied::Unauthorized { reject, bearer };
        let cred = token::extract(&pol.source, &req.fields, req.target).map_err(deny)?;
        let now = now_ms();
        if let Some(v) = self.caches[policy].borrow_mut().get(cred, now) {
            return v.map_err(deny);
        }
        let (verdict, until) = match &pol.kind {
            AuthKind::Jwt(_) => {
                let v = self.verify_jwt(policy, cred, now).await?;
                let until = match &v {
                    Ok(id) => id.expires.map_or(now + API_KEY_TTL_MS, |e| e * 1000),
                    Err(_) => now + JWT_NEGATIVE_TTL_MS,
                };
                (v, until)
            }
            AuthKind::ApiKey(keys) => match apikey::find(keys, cred) {
                Some(c) => (
                    Ok(Rc::new(Identity::from_consumer(c))),
                    now + API_KEY_TTL_MS,
                ),
                None => (Err(Reject::UnknownApiKey), now + API_KEY_NEGATIVE_TTL_MS),
            },
            AuthKind::Phantom(rules) => {
                let answer = match &rules.backend {
                    PhantomBackend::Redis { key_prefix, .. } => {
                        let redis = self.redis[policy].as_ref().expect("phantom redis client");
                        phantom::redis_lookup(redis, key_prefix, cred).await
                    }
                    PhantomBackend::Introspection {
                        url,
                        client_id,
                        client_secret,
                        tls,
                    } => {
                        let endpoint = phantom::Endpoint {
                            url,
                            client_id,
                            client_secret,
                            tls: tls.clone(),
                        };
                        phantom::introspect(&endpoint, cred, rules.timeout).await
                    }
                };
                let answer = answer.map_err(|u| Denied::Unavailable(u.0))?;
                let v = self.exchanged(policy, rules.verify, answer, now).await?;
                let until = match &v {
                    Ok(id) => {
                        let cap = now + rules.cache_ttl.as_millis() as u64;
                        id.expires.map_or(cap, |e| cap.min(e * 1000))
                    }
                    Err(_) => now + rules.negative_ttl.as_millis() as u64,
                };
                (v, until)
            }
        };
        self.caches[policy]
            .borrow_mut()
            .put(cred, verdict.clone(), until, now);
        verdict.map_err(deny)
    }

    /// Signature and claims of a JWT under JWT policy `policy`; the identity uses that policy's
    /// header mapping. `Err`: the policy's key server is unavailable (503, not cached).
    async fn verify_jwt(&self, policy: usize, cred: &[u8], now_ms: u64) -> Result<Verdict, Denied> {
        let (claims, exp) = match self.jwt_claims(policy, cred, now_ms).await? {
            Ok(c) => c,
            Err(r) => return Ok(Err(r)),
        };
        let map = &self.shared.policies[policy].identity;
        Ok(Ok(Rc::new(Identity::from_claims(&claims, map, exp))))
    }

    /// Verifies a JWT's signature and claims under JWT policy `policy`. A token whose key the
    /// policy's JWKS does not hold waits for one refetch of that set (bounded, shared with every
    /// request that waits on it). Outer `Err`: the JWKS has never loaded, so the token cannot be
    /// judged (503); inner `Err`: the token is refused (401).
    async fn jwt_claims(
        &self,
        policy: usize,
        cred: &[u8],
        now_ms: u64,
    ) -> Result<Result<Claims, Reject>, Denied> {
        let AuthKind::Jwt(rules) = &self.shared.policies[policy].kind else {
            return Ok(Err(Reject::Malformed));
        };
        let Ok(token) = std::str::from_utf8(cred) else {
            return Ok(Err(Reject::Malformed));
        };
        let jwks = self.shared.jwks[policy].as_deref();
        let mut waited = false;
        let signed = loop {
            let seen = jwks.map_or(0, JwksState::epoch);
            let checked = match jwks.map(|s| s.set.load()) {
                Some(set) => jwt::verify(token, &rules.algorithms, &[&rules.static_keys, &set]),
                None => jwt::verify(token, &rules.algorithms, &[&rules.static_keys]),
            };
            let failed = match checked {
                Ok(signed) => break signed,
                Err(f) => f,
            };
            let Some(s) = jwks else {
                return Ok(Err(failed.reject));
            };
            let keys_may_help = (failed.key_unknown || !s.loaded())
                && matches!(failed.reject, Reject::UnknownKey | Reject::BadSignature);
            if !keys_may_help {
                return Ok(Err(failed.reject));
            }
            if waited || !s.refetch(seen, jwks::REFETCH_WAIT).await {
                if !s.loaded() {
                    return Err(Denied::Unavailable(format!(
                        "JWKS {} has not loaded yet",
                        s.source.url
                    )));
                }
                return Ok(Err(failed.reject));
            }
            waited = true;
        };
        Ok(
            jwt::check_claims(&signed.payload, rules, now_ms / 1000).map(|claims| {
                let exp = jwt::exp_of(&claims);
                (claims, exp)
            }),
        )
    }

    /// The identity behind a phantom token's backend answer. `Err`: the `verify` policy's key
    /// server is unavailable.
    async fn exchanged(
        &self,
        policy: usize,
        verify: Option<usize>,
        answer: phantom::Answer,
        now_ms: u64,
    ) -> Result<Verdict, Denied> {
        let (claims, jwt) = match answer {
            phantom::Answer::Inactive => return Ok(Err(Reject::Revoked)),
            phantom::Answer::Claims(c) => (c, None),
            phantom::Answer::Jwt(jwt) => {
                let claims = match verify {
                    Some(v) => self
                        .jwt_claims(v, jwt.as_bytes(), now_ms)
                        .await?
                        .map(|c| c.0),
                    None => phantom::decode_claims(&jwt).ok_or(Reject::Malformed),
                };
                match claims {
                    Ok(c) => (c, Some(jwt)),
                    Err(r) => return Ok(Err(r)),
                }
            }
        };
        let exp = jwt::exp_of(&claims);
        if exp.is_some_and(|e| e * 1000 <= now_ms) {
            return Ok(Err(Reject::Expired));
        }
        let map = &self.shared.policies[policy].identity;
        let id = Identity::from_claims(&claims, map, exp);
        Ok(Ok(Rc::new(match jwt {
            Some(j) => id.with_authorization(&j),
            None => id,
        })))
    }
}
