//! Per-route filters: the steps between routing and the route's target, with documented phases.
//!
//! Owns [`Filter`] and [`chain`], which builds a route's filter list when a config generation is
//! compiled (a boxed slice of enum values: no trait objects, no allocation per request). The
//! pipeline (`pipeline.rs`) runs each phase over the chain:
//!
//! - **request** (`Filter::request`): runs in chain order once the request head is parsed and
//!   routed, before any of the body is read. Reads only the protocol-neutral [`RequestView`]. `Ok`
//!   passes the request on; `Err(reply)` answers it (the gateway's own [`Reply`]: 401, 403, 413,
//!   429, 503...) and skips the rest of the chain and the target. What a filter learns (the caller's
//!   identity, rate-limit decisions) goes into [`Admission`] for later filters, the target and
//!   the access log. Default for a route with no filters: straight to the target.
//! - **response** (`Filter::response`): runs in reverse order for every response the client gets
//!   (the upstream's, or the gateway's own answer, including one a filter gave), but only for the
//!   filters whose request phase ran. It sees the status and may add header lines to the response
//!   head (`extra`). Default: adds nothing.
//! - **response_body** (`Filter::response_body`): only on routes where a filter asks for the
//!   response body ([`Filter::wants_response_body`]); the target then relays into a buffer
//!   (`sink.rs`) instead of the client. Runs in reverse order over a `Complete` buffered response
//!   (one the buffer admitted and that fit its cap); it may rewrite the body, and the response then
//!   goes out with a fresh Content-Length. Responses the buffer declined or spilled stream through
//!   untouched and skip this phase. Default: leaves the body alone.
//! - **request_body** (`inspect.rs`): only on routes whose filters read the request body (the
//!   WAF's body rules, a JSON Schema), after the request phase of the whole chain passed, so a
//!   body is never read for a request an earlier filter refuses. Every other body streams to the
//!   target unbuffered.
//!
//! Today's chain, in order: IP rules, WAF (head rules; its body rules run in the request_body
//! phase), client certificate (mTLS routes), authentication, body size, rate limits and quotas,
//! query and header validation, response field selection (`response_fields`).

use std::rc::Rc;

use crate::auth::identity::Identity;
use crate::auth::jwt::Reject;
use crate::auth::Denied;
use crate::config::RouteConfig;
use crate::http::head::BodyKind;
use crate::http::respond::{ErrorKind, Reply};
use crate::http::view::RequestView;
use crate::ratelimit::key::KeyInput;
use crate::ratelimit::Limited;
use crate::runtime::worker::Generation;
use crate::transform::fields::FieldSet;
use crate::transform::headers::HeaderOps;

use super::sink::{Collected, Want};

/// One step of a route's chain.
#[derive(Debug, Clone)]
pub enum Filter {
    /// The route's `allow_ips` / `deny_ips` against the client address (`realip.rs`): 403.
    /// First in the chain, before any credential is looked at.
    IpRules,
    /// The route's WAF (`crate::waf`): the raw target, path, query, inspected headers and
    /// cookies; at or over the threshold in block mode, the policy's status (403).
    Waf {
        policy: std::sync::Arc<crate::waf::Policy>,
    },
    /// A verified client certificate is required (`require_client_cert`), carrying one of `sans`
    /// when that allow-list is not empty (`client_cert_sans`).
    ClientCert { sans: Box<[String]> },
    /// Authentication by `[[auth]]` policy `policy`, then the route's `require` (roles, scopes).
    Auth { policy: usize },
    /// A declared body (Content-Length) larger than the route's `max_body`: 413 before any byte of
    /// it is read. Chunked bodies are counted as they stream.
    BodyLimit { max: u64 },
    /// The route's and the caller's tier's rate limits and quotas.
    RateLimit,
    /// `validate_query` / `validate_headers`: 400 listing every problem.
    Validate {
        checks: std::sync::Arc<crate::validate::Validation>,
    },
    /// `response_fields`: only these members of a successful JSON response reach the client.
    ResponseFields { fields: Box<FieldSet> },
    /// `response_body` (drop, rename, wrap, unwrap) and `query_fields` (`?fields=a,b`, parsed in
    /// the request phase: 400 when malformed) on successful JSON responses.
    JsonBody {
        t: std::sync::Arc<crate::config::transform::BodyTransforms>,
    },
    /// `request_headers` / `response_headers` (`transform::headers`): the request phase renders
    /// both sides' lines from the request; the response phase adds the response side's lines
    /// and the renamed fields of the upstream's head.
    Headers {
        request: Option<std::sync::Arc<HeaderOps>>,
        response: Option<std::sync::Arc<HeaderOps>>,
    },
}

/// What the response phase sees.
pub struct ResponseInput<'a> {
    pub limits: &'a crate::ratelimit::Output,
    /// Lines `response_headers` rendered in the request phase.
    pub lines: &'a [u8],
    /// The upstream's (or a cached) response head and its bytes; None for the gateway's own
    /// answers.
    pub upstream: Option<(&'a crate::http::head::ResponseHead, &'a [u8])>,
}

/// Largest response body a response-body filter works on; a larger one passes through untouched.
pub const RESPONSE_BODY_MAX: usize = 1 << 20;

/// What the request phase established, for later filters, the target and the log.
#[derive(Default)]
pub struct Admission {
    pub identity: Option<Rc<Identity>>,
    /// The rate-limit decision for the access log ("" when no policy applied).
    pub ratelimit: &'static str,
    /// What the route's WAF found so far (head, then body).
    pub waf: crate::waf::Findings,
}

/// Per-connection buffers the request phase works in.
pub struct Work<'c> {
    pub limits: &'c mut crate::ratelimit::Output,
    pub waf: &'c mut crate::waf::Scratch,
    pub problems: &'c mut Vec<crate::validate::Problem>,
    /// Lines `request_headers` adds upstream / `response_headers` adds to the response.
    pub req_lines: &'c mut Vec<u8>,
    pub resp_lines: &'c mut Vec<u8>,
    pub rid: &'c [u8],
    /// The request's `?fields=` selection (`query_fields`).
    pub fields: &'c mut Option<FieldSet>,
}

/// Builds route `route`'s chain.
pub fn chain(route: &RouteConfig, ratelimited: bool) -> Box<[Filter]> {
    let mut f = Vec::new();
    if route.allow_ips.is_some() || route.deny_ips.is_some() {
        f.push(Filter::IpRules);
    }
    if let Some(policy) = &route.waf {
        f.push(Filter::Waf {
            policy: policy.clone(),
        });
    }
    if route.require_client_cert || !route.client_cert_sans.is_empty() {
        f.push(Filter::ClientCert {
            sans: route.client_cert_sans.clone().into_boxed_slice(),
        });
    }
    if let Some(policy) = route.auth {
        f.push(Filter::Auth { policy });
    }
    f.push(Filter::BodyLimit {
        max: route.max_body,
    });
    if ratelimited {
        f.push(Filter::RateLimit);
    }
    if let Some(v) = route.validation.as_ref() {
        if !v.query.is_empty() || !v.headers.is_empty() {
            f.push(Filter::Validate { checks: v.clone() });
        }
    }
    if route.request_headers.is_some() || route.response_headers.is_some() {
        f.push(Filter::Headers {
            request: route.request_headers.clone(),
            response: route.response_headers.clone(),
        });
    }
    if let Some(t) = route.body.as_ref() {
        if t.response.is_some() || t.query_fields.is_some() {
            f.push(Filter::JsonBody { t: t.clone() });
        }
    }
    if let Some(fields) = &route.response_fields {
        f.push(Filter::ResponseFields {
            fields: Box::new(fields.clone()),
        });
    }
    f.into_boxed_slice()
}

impl Filter {
    /// The request phase; see the module doc.
    pub async fn request(
        &self,
        gen: &Generation,
        route: &RouteConfig,
        req: &RequestView<'_>,
        body: BodyKind,
        work: &mut Work<'_>,
        adm: &mut Admission,
    ) -> Result<(), Reply> {
        match self {
            Filter::Waf { policy } => {
                policy.inspect_head(req.raw_target, &req.fields, work.waf, &mut adm.waf);
                match policy.over(&adm.waf) && policy.mode == crate::waf::Mode::Block {
                    true => Err(Reply::new(ErrorKind::WafBlocked {
                        status: policy.status,
                    })),
                    false => Ok(()),
                }
            }
            Filter::Validate { checks } => {
                let query = match memchr::memchr(b'?', req.target) {
                    Some(q) => &req.target[q + 1..],
                    None => &b""[..],
                };
                crate::validate::params::check_query(&checks.query, query, work.problems);
                let fields = &req.fields;
                let mut each = |name: &str, visit: &mut dyn FnMut(&[u8])| {
                    fields.all(name.as_bytes()).for_each(&mut *visit)
                };
                crate::validate::params::check_headers(&checks.headers, &mut each, work.problems);
                match work.problems.is_empty() {
                    true => Ok(()),
                    false => Err(Reply::new(ErrorKind::Invalid)),
                }
            }
            Filter::IpRules => {
                let (allow, deny) = (route.allow_ips.as_ref(), route.deny_ips.as_ref());
                match super::realip::ip_allowed(req.peer.ip, allow, deny) {
                    true => Ok(()),
                    false => Err(Reply::new(ErrorKind::IpDenied)),
                }
            }
            Filter::ClientCert { sans } => {
                let cert = req.peer.tls.and_then(|t| t.client_cert.as_ref());
                match cert {
                    Some(c) if sans.is_empty() || c.has_any_san(sans) => Ok(()),
                    Some(_) => Err(Reply::new(ErrorKind::ClientCertNotAllowed)),
                    None => Err(Reply::new(ErrorKind::ClientCertRequired)),
                }
            }
            Filter::Auth { policy } => {
                let id = match gen.auth.authenticate(*policy, req).await {
                    Ok(id) if route.require.as_ref().is_none_or(|r| id.satisfies(r)) => id,
                    Ok(_) | Err(Denied::Forbidden) => return Err(Reply::new(ErrorKind::Forbidden)),
                    Err(Denied::Unauthorized { reject, bearer }) => {
                        return Err(Reply::new(ErrorKind::Unauthorized {
                            reason: reject.reason(),
                            bearer,
                            presented: reject != Reject::Missing,
                        }))
                    }
                    Err(Denied::Unavailable(why)) => {
                        gen.auth_unavailable(&why);
                        return Err(Reply::new(ErrorKind::AuthUnavailable));
                    }
                };
                adm.identity = Some(id);
                Ok(())
            }
            Filter::ResponseFields { .. } => Ok(()),
            Filter::JsonBody { t } => {
                let Some(param) = &t.query_fields else {
                    return Ok(());
                };
                let value = crate::auth::token::query_param(req.target, param.as_bytes());
                let Some(value) = value else {
                    return Ok(());
                };
                let value = crate::transform::template::percent_decode(value);
                let max = crate::config::transform::MAX_QUERY_FIELDS;
                match crate::transform::json::fields_from_query(&value, max) {
                    Ok(set) => {
                        *work.fields = Some(set);
                        Ok(())
                    }
                    Err(message) => {
                        work.problems.push(crate::validate::Problem {
                            location: crate::validate::Location::Query,
                            pointer: format!("/{param}"),
                            message,
                        });
                        Err(Reply::new(ErrorKind::Invalid))
                    }
                }
            }
            Filter::Headers { request, response } => {
                let src = super::source::RequestValues {
                    view: req,
                    route,
                    identity: adm.identity.as_deref(),
                    rid: work.rid,
                };
                if let Some(ops) = request {
                    let fields = &req.fields;
                    let mut values = |name: &[u8], push: &mut dyn FnMut(&[u8])| {
                        fields.all(name).for_each(&mut *push)
                    };
                    ops.render(&src, &mut values, work.req_lines);
                }
                if let Some(ops) = response {
                    // renames come from the response head, in the response phase
                    ops.render(
                        &src,
                        &mut |_: &[u8], _: &mut dyn FnMut(&[u8])| {},
                        work.resp_lines,
                    );
                }
                Ok(())
            }
            Filter::BodyLimit { max } => match body {
                BodyKind::Length(n) if n > *max => Err(Reply::new(ErrorKind::BodyTooLarge)),
                _ => Ok(()),
            },
            Filter::RateLimit => {
                let input = KeyInput {
                    headers: &req.fields,
                    client_ip: req.peer.ip.as_bytes(),
                    identity: adm.identity.as_deref(),
                    route: &route.name,
                };
                let admitted = gen.ratelimit.admit(route, &input, work.limits).await;
                adm.ratelimit = match admitted {
                    // tiers exist, but none of their policies (nor the route's) applied
                    Ok(()) if !work.limits.applied() => "",
                    Ok(()) => "allowed",
                    Err(Limited::Rate) => "limited",
                    Err(Limited::Quota) => "quota_exceeded",
                };
                match admitted {
                    Ok(()) => Ok(()),
                    Err(Limited::Rate) => Err(Reply::new(ErrorKind::RateLimited)),
                    Err(Limited::Quota) => Err(Reply::new(ErrorKind::QuotaExceeded)),
                }
            }
        }
    }

    /// The response phase; see the module doc. `extra` collects header lines for the response head.
    pub fn response(&self, r: &ResponseInput<'_>, extra: &mut Vec<u8>) {
        match self {
            // RateLimit-Policy / RateLimit / Retry-After, rendered when the request was admitted
            Filter::RateLimit => extra.extend_from_slice(&r.limits.headers),
            Filter::Headers {
                response: Some(ops),
                ..
            } => {
                extra.extend_from_slice(r.lines);
                if let Some((head, buf)) = r.upstream {
                    let mut values = |name: &[u8], push: &mut dyn FnMut(&[u8])| {
                        head.headers
                            .iter()
                            .filter(|h| h.name.get(buf).eq_ignore_ascii_case(name))
                            .for_each(|h| push(h.value.get(buf)))
                    };
                    ops.write_renamed(&mut values, extra);
                }
            }
            _ => {}
        }
    }

    /// Which responses this filter needs whole (the response_body phase), if any.
    pub(crate) fn wants_response_body(&self) -> Option<Want> {
        match self {
            Filter::ResponseFields { .. } | Filter::JsonBody { .. } => Some(Want::Json),
            _ => None,
        }
    }

    /// The response_body phase; see the module doc. A body that is not JSON after all is left as
    /// the upstream sent it.
    pub(crate) fn response_body(&self, b: &mut Collected, selected: Option<&FieldSet>) {
        if b.is_json_success() && self.transform_json(&mut b.body, selected) {
            b.transformed = true;
        }
    }

    /// This filter's change to a JSON response body (a successful one; `selected`: the
    /// request's `?fields=`); false when it changed nothing (not its job, or the body is not
    /// JSON after all: then it is left as it was).
    pub(crate) fn transform_json(&self, body: &mut Vec<u8>, selected: Option<&FieldSet>) -> bool {
        let mut out = Vec::with_capacity(body.len());
        let changed = match self {
            Filter::ResponseFields { fields } => {
                crate::transform::fields::keep(body, fields, &mut out).is_ok()
            }
            Filter::JsonBody { t } => {
                let mut changed = false;
                if let Some(rt) = &t.response {
                    if rt.apply(body, &mut out).is_ok() {
                        std::mem::swap(body, &mut out);
                        changed = true;
                    }
                    out.clear();
                }
                if let Some(set) = selected {
                    if crate::transform::fields::keep(body, set, &mut out).is_ok() {
                        std::mem::swap(body, &mut out);
                        changed = true;
                    }
                }
                return changed;
            }
            _ => false,
        };
        if changed {
            *body = out;
        }
        changed
    }
}
