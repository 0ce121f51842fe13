//! One request through the pipeline: request id and trace span, path normalisation, the
//! protocol-neutral view, routing, the route's filter chain, then the route's target.
//!
//! Owns [`run`]. Data flow: the parsed head (spans over the connection buffer) becomes a
//! [`RequestView`] without copying; the router and the request phase of every filter
//! (`filter.rs`) read only the view. A filter's `Err(reply)` or a routing miss goes to the one
//! answer path (`answer` in mod.rs), which runs the response phase of the filters that ran and
//! renders the [`Reply`]. An admitted request goes to its route's [`Target`] (`target.rs`).

use std::rc::Rc;

use super::filter::{self, Admission, Filter, RESPONSE_BODY_MAX};
use super::sink::{Collected, Sink, Want};
use super::target::{self, Call, Target};
use super::{aggregate, answer, cache, inspect, realip, ClientConn, Consumed, Outcome};
use crate::config::RouteConfig;
use crate::http::head::{self, ResponseHead};
use crate::http::respond::{ErrorKind, Reply};
use crate::http::rewrite;
use crate::http::view::{Peer, RequestView};
use crate::router::{self, Match};
use crate::runtime::worker::Generation;
use crate::trace::Span;

/// What a route runs: its filter chain and its target, compiled with the config generation.
pub struct RouteChain {
    pub filters: Box<[Filter]>,
    pub target: Target,
    /// A filter needs the response body: the target relays into a buffer (`sink.rs`).
    buffer: Option<Want>,
    /// The route's WAF, for its body rules and its verdict (`inspect.rs`).
    pub waf: Option<std::sync::Arc<crate::waf::Policy>>,
    /// A filter reads request bodies: the request_body phase runs (`inspect.rs`).
    reads_body: bool,
    /// The route's response cache (`cache.rs`): this worker's copy of the policy.
    cache: Option<Rc<crate::cache::policy::CachePolicy>>,
}

impl RouteChain {
    pub fn new(route: &RouteConfig, ratelimited: bool) -> Self {
        let filters = filter::chain(route, ratelimited);
        let buffer = filters.iter().find_map(Filter::wants_response_body);
        let schema = route
            .validation
            .as_ref()
            .is_some_and(|v| v.schema.is_some());
        RouteChain {
            filters,
            target: match &route.aggregate {
                Some(agg) => Target::Aggregate(agg.clone()),
                None => Target::Upstream(route.upstream),
            },
            buffer,
            waf: route.waf.clone(),
            reads_body: schema
                || route.waf.is_some()
                || route.body.as_ref().is_some_and(|b| b.request.is_some()),
            cache: route.cache.as_deref().map(|p| Rc::new(p.clone())),
        }
    }
}

/// Runs one parsed request to completion.
pub(super) async fn run(
    gen: &Rc<Generation>,
    c: &mut ClientConn,
    resp: &mut ResponseHead,
) -> Outcome {
    c.grpc = crate::http::respond::is_grpc(c.head.header(&c.buf, b"content-type"));
    // what the previous request on this connection put in its answer
    c.detail.clear();
    c.problems.clear();
    c.cache_label = "";
    let head = &c.head;
    let buf = &c.buf;
    // request id: keep a sane one, else generate
    let mut rid_store = [0u8; 128];
    let rid_len = match head
        .headers
        .iter()
        .find(|h| h.kind == head::HeaderKind::XRequestId)
        .map(|h| h.value.get(buf))
    {
        Some(v) if rewrite::sane_request_id(v) => {
            rid_store[..v.len()].copy_from_slice(v);
            v.len()
        }
        _ => {
            let mut gen_id = [0u8; 40];
            let n = gen.request_ids.borrow_mut().next(&mut gen_id);
            rid_store[..n].copy_from_slice(&gen_id[..n]);
            n
        }
    };
    let rid = &rid_store[..rid_len];
    c.info.rid[..rid_len].copy_from_slice(rid);
    c.info.rid_len = rid_len;
    if gen.records_requests() {
        c.info.method.extend_from_slice(head.method(buf));
        c.info.target.extend_from_slice(head.target(buf));
    }
    let span = Span::start(
        head.header(buf, b"traceparent"),
        &mut gen.span_ids.borrow_mut(),
        gen.cfg.tracing.as_ref().map(|t| t.sample_ratio),
    );
    c.info.span = Some(span);

    // the client's address (a trusted proxy's forwarding header, else the peer), and the
    // server-wide IP rules, before anything else looks at the request
    let sv = &gen.cfg.server;
    if !sv.trusted_proxies.is_empty() {
        let hdr = sv.real_ip_header;
        let (peer, trusted) = (&c.peer_ip, &sv.trusted_proxies);
        realip::client_ip(peer, trusted, hdr, head, buf, &mut c.real_ip);
    } else {
        // no allocation: the peer is the client (also after a reload dropped trusted_proxies)
        c.real_ip.clear();
    }
    let client_ip = realip::client(&c.peer_ip, &c.real_ip);
    let listener = c.listener.and_then(|i| gen.cfg.listeners.get(i));
    let lists = [
        (sv.allow_ips.as_ref(), sv.deny_ips.as_ref()),
        listener.map_or((None, None), |l| {
            (l.allow_ips.as_ref(), l.deny_ips.as_ref())
        }),
    ];
    if lists.iter().any(|&(allow, deny)| {
        (allow.is_some() || deny.is_some()) && !realip::ip_allowed(client_ip, allow, deny)
    }) {
        gen.stats.unmatched.ip_denied.inc();
        let reply = Reply::new(ErrorKind::IpDenied);
        return answer(gen, c, None, rid, &reply, None, &[], Consumed::Head).await;
    }

    // routing and the upstream see the normalised path (router/normalize.rs); the query is kept
    let raw_path = head.path(buf);
    let (path, target, normalized) =
        match router::normalize(raw_path, &gen.cfg.server.path_normalization, &mut c.norm) {
            Ok(false) => (raw_path, head.target(buf), false),
            Ok(true) => {
                let path_len = c.norm.len();
                c.norm
                    .extend_from_slice(&head.target(buf)[raw_path.len()..]);
                (&c.norm[..path_len], &c.norm[..], true)
            }
            Err(router::PathError(reason)) => {
                // a path that cannot be normalised (climbing above the root, encoded slashes...)
                // still meets the WAF of the route its raw form routes to: an attack gets the
                // WAF's answer, anything else the 400
                if let Some((route, reply)) = waf_on_raw_path(gen, c) {
                    let route = Some(route);
                    return answer(gen, c, route, rid, &reply, None, &[], Consumed::Head).await;
                }
                let kind = ErrorKind::BadRequest {
                    status: 400,
                    reason,
                };
                return answer(
                    gen,
                    c,
                    None,
                    rid,
                    &Reply::new(kind),
                    None,
                    &[],
                    Consumed::Head,
                )
                .await;
            }
        };
    let peer = Peer {
        ip: realip::client(&c.peer_ip, &c.real_ip),
        tls: c.stream.tls_info(),
    };
    let view = RequestView::h1(head, buf, path, target, peer);
    let route_idx = match gen
        .router
        .lookup(view.host, view.method, view.path, &view.fields)
    {
        Match::Route(i) => i,
        Match::MethodNotAllowed(allow) => {
            let reply = Reply::new(ErrorKind::MethodNotAllowed);
            return answer(gen, c, None, rid, &reply, Some(&allow), &[], Consumed::Head).await;
        }
        Match::NotFound => {
            let reply = Reply::new(ErrorKind::NoRoute);
            return answer(gen, c, None, rid, &reply, None, &[], Consumed::Head).await;
        }
    };
    let route = &gen.cfg.routes[route_idx];
    c.info.route = Some(route_idx);
    let chain = &gen.chains[route_idx];
    // a credential the route does not forward is not written to the access log either
    gen.auth.hidden(route.auth).strip_target(&mut c.info.target);

    // the request phase, in chain order
    let mut adm = Admission::default();
    let mut ran = 0;
    let mut refused = None;
    c.req_lines.clear();
    c.resp_lines.clear();
    c.fields = None;
    let mut work = filter::Work {
        limits: &mut c.limits,
        waf: &mut c.waf,
        problems: &mut c.problems,
        req_lines: &mut c.req_lines,
        resp_lines: &mut c.resp_lines,
        rid,
        fields: &mut c.fields,
    };
    for f in chain.filters.iter() {
        ran += 1;
        if let Err(reply) = f
            .request(gen, route, &view, head.body, &mut work, &mut adm)
            .await
        {
            refused = Some(reply);
            break;
        }
    }
    c.info.ratelimit = adm.ratelimit;
    let cached = match (&chain.cache, &refused) {
        (Some(policy), None) => {
            let id = adm.identity.as_deref();
            Some(cache::prepare(
                policy,
                &route.name,
                &view,
                id,
                &mut c.cache_key,
            ))
        }
        _ => None,
    };
    if gen.records_requests() {
        if let Some(who) = adm
            .identity
            .as_ref()
            .and_then(|id| id.consumer.as_ref().or(id.subject.as_ref()))
        {
            c.info.subject.push_str(who);
        }
    }
    let ran = &chain.filters[..ran];
    if let Some(reply) = refused {
        if let Some(policy) = &chain.waf {
            inspect::waf_verdict(gen, c, route_idx, policy, &adm);
        }
        match reply.kind {
            ErrorKind::IpDenied => gen.routes[route_idx].ip_denied.inc(),
            ErrorKind::Invalid => {
                let _ = inspect::invalid(gen, c, route_idx);
            }
            _ => {}
        }
        return answer(
            gen,
            c,
            Some(route_idx),
            rid,
            &reply,
            None,
            ran,
            Consumed::Head,
        )
        .await;
    }
    // the request_body phase, on routes whose filters read bodies
    if chain.reads_body {
        let verdict = inspect::body_phase(gen, c, route_idx, chain, &mut adm).await;
        if let Some(policy) = &chain.waf {
            inspect::waf_verdict(gen, c, route_idx, policy, &adm);
        }
        match verdict {
            inspect::Verdict::Pass => {}
            inspect::Verdict::Close => return Outcome::Close,
            inspect::Verdict::Refuse(reply, consumed) => {
                let route = Some(route_idx);
                return answer(gen, c, route, rid, &reply, None, ran, consumed).await;
            }
        }
    } else if let Some(policy) = &chain.waf {
        inspect::waf_verdict(gen, c, route_idx, policy, &adm);
    }
    // a response-body filter: the target relays into a buffer (allocated on such routes only)
    let mut collected = chain
        .buffer
        .clone()
        .map(|want| Collected::new(RESPONSE_BODY_MAX, want));
    let mut sink = match &mut collected {
        Some(b) => Sink::Buffer(b),
        None => Sink::Client,
    };
    match &chain.target {
        Target::Upstream(up) => {
            let call = Call {
                route: route_idx,
                upstream: *up,
                rid,
                span: &span,
                identity: adm.identity.as_deref(),
                normalized,
                filters: ran,
                cache: None,
            };
            match (cached, &chain.cache) {
                (Some(cache::Prepared::Lookup(lk)), Some(policy)) => {
                    cache::serve(gen, c, resp, &call, policy, lk, &mut sink).await
                }
                (Some(cache::Prepared::Unsafe), _) => {
                    let out = target::upstream(gen, c, resp, &call, &mut sink).await;
                    if (200..400).contains(&c.info.status) {
                        cache::invalidate(gen, &c.cache_key);
                    }
                    out
                }
                _ => target::upstream(gen, c, resp, &call, &mut sink).await,
            }
        }
        Target::Aggregate(agg) => {
            // the parts' requests are rendered from the request while it is at hand
            let (head, buf) = (&c.head, &c.buf);
            let peer = Peer {
                ip: realip::client(&c.peer_ip, &c.real_ip),
                tls: c.stream.tls_info(),
            };
            let target = if normalized {
                &c.norm[..]
            } else {
                head.target(buf)
            };
            let path = &target[..memchr::memchr(b'?', target).unwrap_or(target.len())];
            let view = RequestView::h1(head, buf, path, target, peer);
            let src = super::source::RequestValues {
                view: &view,
                route,
                identity: adm.identity.as_deref(),
                rid,
            };
            let https = c.stream.tls_info().is_some();
            let tp = span.traceparent();
            let reqs = aggregate::requests(gen, agg, &src, &tp, https, &c.req_lines);
            let call = aggregate::AggregateCall {
                route: route_idx,
                rid,
                filters: ran,
            };
            aggregate::run(gen, c, &call, agg, reqs).await
        }
    }
}

/// For a request whose path could not be normalised: the WAF of the route the raw path routes
/// to, when that WAF blocks it (route index and answer; counted and logged).
fn waf_on_raw_path(gen: &Generation, c: &mut ClientConn) -> Option<(usize, Reply)> {
    let (head, buf) = (&c.head, &c.buf);
    let peer = Peer {
        ip: realip::client(&c.peer_ip, &c.real_ip),
        tls: c.stream.tls_info(),
    };
    let raw_path = head.path(buf);
    let view = RequestView::h1(head, buf, raw_path, head.target(buf), peer);
    let Match::Route(idx) = gen
        .router
        .lookup(view.host, view.method, view.path, &view.fields)
    else {
        return None;
    };
    let policy = gen.chains[idx].waf.as_ref()?;
    let mut adm = Admission::default();
    policy.inspect_head(view.raw_target, &view.fields, &mut c.waf, &mut adm.waf);
    let blocks = policy.over(&adm.waf) && policy.mode == crate::waf::Mode::Block;
    inspect::waf_verdict(gen, c, idx, policy, &adm);
    let status = policy.status;
    blocks.then(|| (idx, Reply::new(ErrorKind::WafBlocked { status })))
}
