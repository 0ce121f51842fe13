//! Route targets: what an admitted request is sent to.
//!
//! Owns [`Target`] (today only `Upstream`: an `[[upstream]]` group through the balancer, the pool,
//! `exchange.rs` and `relay.rs`) and [`upstream`], the upstream target's whole run. A target is
//! called with a [`Sink`] (`sink.rs`) saying where the response goes: to the client as it
//! streams, or into a buffer.
//!
//! ```text
//! balance key (post-auth) -> upstream request head + buffered body into `out`
//!  -> 100-continue -> exchange (pick, connect or reuse, send, stream body, response head)
//!  -> response phase of the filters that ran -> relay the response into the sink
//!  -> (buffered: response-body phase, then the response goes out with its new length)
//!  -> connection back to the pool, byte quotas charged
//! ```
//! Failures go to the one answer path (`answer` in mod.rs) with how much of the request was read.

use std::time::Instant as StdInstant;

use monoio::time::Instant;

use super::filter::Filter;
use super::sink::{Sink, State};
use super::tunnel;
use super::{answer, exchange, relay, BodyLeft, ClientConn, Consumed, Fail, Outcome};
use crate::auth::identity::Identity;
use crate::http::chunked::{self, ChunkedDecoder};
use crate::http::head::{BodyKind, RequestHead, ResponseHead};
use crate::http::respond::{ErrorKind, Reply, Side};
use crate::http::rewrite::{self, Forwarding};
use crate::http::upgrade;
use crate::metrics::UpstreamError;
use crate::router;
use crate::runtime::worker::Generation;
use crate::trace::Span;
use crate::upstream::balance::hash_key;
use crate::upstream::pool::UpConn;
use crate::upstream::CallEnd;

/// Where a route sends admitted requests.
#[derive(Debug, Clone)]
pub enum Target {
    /// Index of an `[[upstream]]` group.
    Upstream(usize),
    /// Parts fanned out in parallel and merged (`aggregate.rs`).
    Aggregate(std::sync::Arc<crate::config::aggregate::Aggregate>),
}

/// What the upstream target needs from the pipeline.
pub(super) struct Call<'a> {
    pub route: usize,
    pub upstream: usize,
    pub rid: &'a [u8],
    pub span: &'a Span,
    pub identity: Option<&'a Identity>,
    /// The path was rewritten into `c.norm` (else the head's own target is forwarded).
    pub normalized: bool,
    /// The filters whose request phase ran (their response phase runs before the answer).
    pub filters: &'a [Filter],
    /// A cache fill: the response is collected for the route's cache (`cache.rs`).
    pub cache: Option<&'a super::cache::Fill>,
}

/// The hash-balancing key of a request, read from what the upstream will receive: a header the
/// gateway sets from the verified identity hashes that value, a header it strips (managed identity
/// and credential headers) hashes as absent, so a client-sent copy can never steer balancing.
fn balance_key(
    balance: &crate::config::Balance,
    head: &RequestHead,
    buf: &[u8],
    peer_ip: &str,
    identity: Option<&Identity>,
    strip: &[Box<[u8]>],
) -> Option<u64> {
    use crate::config::{Balance, HashKey};
    let Balance::Hash(key) = balance else {
        return None;
    };
    match key {
        HashKey::ClientIp => Some(hash_key(peer_ip.as_bytes())),
        HashKey::Identity => identity
            .and_then(|id| id.subject.as_ref().or(id.consumer.as_ref()))
            .map(|who| hash_key(who.as_bytes())),
        HashKey::Header(name) => {
            let name = name.as_bytes();
            if let Some((_, v)) = identity.and_then(|id| {
                id.headers
                    .iter()
                    .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
            }) {
                return Some(hash_key(v.as_bytes()));
            }
            if strip.iter().any(|s| s.eq_ignore_ascii_case(name)) {
                return None;
            }
            head.header(buf, name).map(hash_key)
        }
    }
}

/// Sends an admitted request to upstream `call.upstream` and relays its response.
pub(super) async fn upstream(
    gen: &Generation,
    c: &mut ClientConn,
    resp: &mut ResponseHead,
    call: &Call<'_>,
    sink: &mut Sink<'_>,
) -> Outcome {
    let route = &gen.cfg.routes[call.route];
    let up = &gen.upstreams[call.upstream];
    let (rid, route_idx) = (call.rid, call.route);
    // a full bulkhead or an open circuit breaker answers at once: the upstream sees nothing
    let bulkheads = &gen.shared.bulkheads;
    let _permits = match bulkheads.guards(route_idx) {
        false => None,
        true => {
            let id = call.identity;
            let who = crate::proxy::bulkhead::Who {
                tenant: id.and_then(|i| i.tenant.as_deref()),
                consumer: id.and_then(|i| i.subject.as_deref().or(i.consumer.as_deref())),
                client_ip: super::realip::client(&c.peer_ip, &c.real_ip),
            };
            match bulkheads.enter(route_idx, &who).await {
                Some(p) => Some(p),
                None => return refuse(gen, c, call, Refusal::Busy, Consumed::Head).await,
            }
        }
    };
    let trial = match up.breaker_admit() {
        Ok(trial) => trial,
        Err(wait) => return refuse(gen, c, call, Refusal::Open(wait), Consumed::Head).await,
    };
    // the adaptive limit sheds at once when the upstream's latency says it is saturated
    let Some(adaptive) = up.adaptive_admit() else {
        up.breaker_record(StdInstant::now(), CallEnd::NoVerdict, trial);
        return refuse(gen, c, call, Refusal::Busy, Consumed::Head).await;
    };
    let head = &c.head;
    let buf = &c.buf;

    // everything the response phase needs from the head, before the buffer moves on
    let method_head = head.method(buf) == b"HEAD";
    let get_or_head = method_head || head.method(buf) == b"GET";
    // a request carrying an Idempotency-Key may be sent again whatever its method
    let idempotent = head.is_idempotent(buf)
        || (up.cfg.retry.idempotency_key && head.header(buf, b"idempotency-key").is_some());
    let client_minor = head.minor;
    let client_keep = head.keep_alive;
    let client_trailers = head.te_trailers;
    // a gRPC call's deadline bounds the wait for the upstream (and each read of its body)
    let response_timeout = match c.grpc {
        true => head
            .header(buf, b"grpc-timeout")
            .and_then(crate::http::respond::grpc_timeout)
            .map_or(up.cfg.response_timeout, |t| t.min(up.cfg.response_timeout)),
        false => up.cfg.response_timeout,
    };
    // the upgrade token (copied: the client buffer moves on before the 101 is checked)
    let mut token = [0u8; 64];
    let upgrade = upgrade::requested(head, buf, route.websocket, &route.upgrades)
        .filter(|t| t.len() <= token.len())
        .map(|t| {
            token[..t.len()].copy_from_slice(t);
            t.len()
        });
    let upgrade = upgrade.map(|n| &token[..n]);
    let key = balance_key(
        &up.cfg.balance,
        head,
        buf,
        super::realip::client(&c.peer_ip, &c.real_ip),
        call.identity,
        gen.auth.strip_list(route.auth),
    );

    // upstream request head + whatever body arrived with it
    let mut out = std::mem::take(&mut c.out);
    out.clear();
    write_head(gen, c, call, upgrade, &mut out);
    c.out = out;
    let (head, buf) = (&c.head, &c.buf);
    let head_len = head.head_len;
    let avail = &buf[head_len..];
    let (mut body, consumed) = match head.body {
        BodyKind::None | BodyKind::UntilClose => (BodyLeft::Done, 0),
        BodyKind::Length(n) => {
            let take = (avail.len() as u64).min(n) as usize;
            c.out.extend_from_slice(&avail[..take]);
            c.body_recv = take as u64;
            if take as u64 == n {
                (BodyLeft::Done, take)
            } else {
                (BodyLeft::Length(n - take as u64), take)
            }
        }
        BodyKind::Chunked => {
            let mut dec = Box::new(ChunkedDecoder::new(route.max_body));
            let (out, recv) = (&mut c.out, &mut c.body_recv);
            let res = dec.decode(avail, &mut |data: &[u8]| {
                *recv += data.len() as u64;
                chunked::write_chunk(out, data);
            });
            match res {
                Ok(p) if p.done => {
                    c.out.extend_from_slice(chunked::LAST_CHUNK);
                    (BodyLeft::Done, p.consumed)
                }
                Ok(p) => (BodyLeft::Chunked(dec), p.consumed),
                Err(e) => {
                    up.breaker_record(StdInstant::now(), CallEnd::NoVerdict, trial);
                    let reply = relay::chunk_error(e);
                    let (route, f) = (Some(route_idx), call.filters);
                    return answer(gen, c, route, rid, &reply, None, f, Consumed::Part).await;
                }
            }
        }
    };
    c.buf.drain(..head_len + consumed);
    if c.head.expect_continue && !matches!(body, BodyLeft::Done) {
        let deadline = Instant::now() + gen.cfg.server.client_body_timeout;
        if !super::send_continue(c, deadline).await {
            up.breaker_record(StdInstant::now(), CallEnd::NoVerdict, trial);
            return Outcome::Close;
        }
    }

    let up_start = StdInstant::now();
    let plan = exchange::ExchangePlan {
        up,
        key,
        idempotent,
        method_head,
        upgrade: upgrade.is_some(),
        response_timeout,
        hedgeable: get_or_head && upgrade.is_none(),
    };
    let read = |body: &BodyLeft| {
        if client_keep && matches!(body, BodyLeft::Done) {
            Consumed::Whole
        } else {
            Consumed::Part
        }
    };
    let exchange::Exchanged {
        mut conn,
        inflight,
        early,
    } = match exchange::exchange(gen, &plan, &mut exchange::Down::Client(c), &mut body, resp).await
    {
        Ok(v) => {
            if up.breaker.is_some() || up.adaptive.is_some() {
                let now = StdInstant::now();
                let grpc = exchange::grpc_status(resp, &v.conn.buf)
                    .and_then(|g| std::str::from_utf8(g).ok()?.trim().parse().ok());
                let end = CallEnd::Response(resp.status, grpc, now - up_start);
                up.breaker_record(now, end, trial);
                adaptive.latency(now - up_start);
            }
            v
        }
        Err(Fail::Close) => {
            up.breaker_record(StdInstant::now(), CallEnd::NoVerdict, trial);
            return Outcome::Close;
        }
        Err(Fail::Respond(e)) => {
            let end = match e.side {
                Side::Upstream | Side::Internal => CallEnd::Failed,
                Side::Downstream => CallEnd::NoVerdict,
            };
            up.breaker_record(StdInstant::now(), end, trial);
            let consumed = read(&body);
            if let Some(stale) = super::cache::stale_on_error(gen, c, call, consumed).await {
                return stale;
            }
            if e.kind == ErrorKind::NoHealthyUpstream {
                return refuse(gen, c, call, Refusal::NoUpstream, consumed).await;
            }
            return answer(
                gen,
                c,
                Some(route_idx),
                rid,
                &e,
                None,
                call.filters,
                consumed,
            )
            .await;
        }
    };
    if resp.status == 101 {
        // only asked-for upgrades get here (the exchange refuses any other 101)
        c.info.status = 101;
        c.info.upstream = Some((call.upstream, conn.endpoint));
        let up_us = up_start.elapsed().as_micros() as u64;
        c.info.upstream_us = Some(up_us);
        up.stats.latency.record_us(up_us);
        up.stats.record(101);
        let outcome = switch(gen, c, &mut conn, resp, call, upgrade.unwrap_or_default()).await;
        drop(inflight);
        return outcome;
    }
    // an upstream status the route overrides: its own document instead (the upstream's body
    // goes with its connection)
    let over = route.body.as_ref().and_then(|b| {
        let status = resp.status;
        b.overrides.iter().find(|o| o.statuses.contains(&status))
    });
    if let Some(o) = over {
        up.stats.record(resp.status);
        c.info.upstream = Some((call.upstream, conn.endpoint));
        c.info.upstream_us = Some(up_start.elapsed().as_micros() as u64);
        drop(inflight);
        let (r, f) = (call.route, call.filters);
        let why = "status_override";
        let consumed = read(&body);
        return super::answer_fallback(gen, c, r, rid, &o.answer, why, f, consumed).await;
    }
    // the answer is relayed while the rest of the body goes on (full duplex, `duplex.rs`); the
    // client connection closes after it unless the whole request was read by then, and an early
    // answer (the upstream stopped reading) gets no more of the body
    let duplex = !early && !matches!(body, BodyLeft::Done);
    let how = relay::RelayPlan {
        rid,
        keep: client_keep && !gen.drain.is_set() && matches!(body, BodyLeft::Done),
        client_minor,
        up_timeout: response_timeout,
        trailers: client_trailers,
        strip: route
            .response_headers
            .as_ref()
            .map_or(&[][..], |o| o.strip()),
    };
    c.info.status = resp.status;
    c.info.upstream = Some((call.upstream, conn.endpoint));
    super::response_phase(c, call.filters, Some((resp, &conn.buf)));
    let rest = duplex.then_some(&mut body);
    let mut result = relay::response(gen, c, &mut conn, resp, &how, sink, rest).await;
    let body_unread = !matches!(body, BodyLeft::Done);
    if let (Ok(r), Sink::Buffer(b)) = (&mut result, sink) {
        if b.state == State::Complete {
            // the response_body phase (reverse order), then the buffered response goes out
            for f in call.filters.iter().rev() {
                f.response_body(b, c.fields.as_ref());
            }
            if let Some(fill) = call.cache {
                super::cache::complete(gen, c, fill, b);
            }
            if relay::deliver(gen, c, b, &how, r.client_keep)
                .await
                .is_err()
            {
                r.client_keep = false;
            }
        }
    }
    drop(inflight);
    if !c.limits.charges.is_empty() {
        gen.ratelimit.charge(&c.limits.charges, c.body_sent);
    }
    let up_us = up_start.elapsed().as_micros() as u64;
    c.info.upstream_us = Some(up_us);
    up.stats.latency.record_us(up_us);
    match result {
        Ok(r) => {
            up.stats.record(resp.status);
            if r.upstream_reusable && !early && !body_unread {
                up.pool.borrow_mut().put(conn, std::time::Instant::now());
            }
            if body_unread {
                // let the client read the answer before its unread body makes our close a reset
                c.stream.linger_close(&mut c.buf).await;
            }
            if r.client_keep {
                Outcome::KeepAlive
            } else {
                Outcome::Close
            }
        }
        Err(relay::RelayFail::Close) => {
            up.stats.record(resp.status);
            Outcome::Close
        }
        Err(relay::RelayFail::BadUpstream(reason)) => {
            c.info.upstream_us = None;
            let consumed = read(&body);
            if let Some(stale) = super::cache::stale_on_error(gen, c, call, consumed).await {
                return stale;
            }
            let e = Reply::new(ErrorKind::BadUpstreamResponse { reason });
            answer(
                gen,
                c,
                Some(route_idx),
                rid,
                &e,
                None,
                call.filters,
                consumed,
            )
            .await
        }
    }
}

/// Writes the upstream request head of the client's current request into `out`: the target
/// normalised and prefix-rewritten (into `c.target`), forwarding, identity, trace and
/// `request_headers` fields (`c.req_lines`), credentials the route hides stripped.
pub(super) fn write_head(
    gen: &Generation,
    c: &mut ClientConn,
    call: &Call<'_>,
    upgrade: Option<&[u8]>,
    out: &mut Vec<u8>,
) {
    let route = &gen.cfg.routes[call.route];
    let up = &gen.upstreams[call.upstream];
    let hidden = gen.auth.hidden(route.auth);
    let (head, buf) = (&c.head, &c.buf);
    let target = if call.normalized {
        &c.norm[..]
    } else {
        head.target(buf)
    };
    c.target.clear();
    router::rewrite_target(route.rewrite.as_ref(), target, &mut c.target);
    hidden.strip_target(&mut c.target);
    let tls = c.stream.tls_info();
    let fwd = Forwarding {
        target: &c.target,
        host_rewrite: route.host_rewrite.as_deref().map(str::as_bytes),
        fallback_host: up.host_text[0].as_bytes(),
        client_ip: c.peer_ip.as_bytes(),
        request_id: call.rid,
        proto: if tls.is_some() { b"https" } else { b"http" },
        strip: gen.auth.strip_list(route.auth),
        strip_cookie: hidden.cookie,
        add: call.identity.map_or(&[][..], |i| &i.headers),
        transform_strip: route
            .request_headers
            .as_ref()
            .map_or(&[][..], |o| o.strip()),
        transform_lines: &c.req_lines,
        traceparent: &call.span.traceparent(),
        keep_tracestate: call.span.continued(),
        client_cert: tls
            .and_then(|t| t.client_cert.as_ref())
            .map(|cert| (cert.fingerprint.as_bytes(), cert.subject.as_bytes())),
        upgrade,
    };
    rewrite::write_upstream_request(out, buf, head, &fwd);
}

/// Why the upstream was not asked.
enum Refusal {
    /// The route's bulkhead is full.
    Busy,
    /// The circuit breaker is open for this long yet.
    Open(std::time::Duration),
    /// Every endpoint is ejected.
    NoUpstream,
}

/// Answers a request the upstream was not asked about: the route's fallback when it has one (not
/// for gRPC calls, which get their status), else 503 (`Retry-After` for a full bulkhead or an
/// open breaker).
async fn refuse(
    gen: &Generation,
    c: &mut ClientConn,
    call: &Call<'_>,
    why: Refusal,
    consumed: Consumed,
) -> Outcome {
    if let Some(stale) = super::cache::stale_on_error(gen, c, call, consumed).await {
        return stale;
    }
    let route = &gen.cfg.routes[call.route];
    let (f, rid) = (call.filters, call.rid);
    if let Some(fb) = route.fallback.as_deref().filter(|_| !c.grpc) {
        let why = match why {
            Refusal::Busy => "busy",
            Refusal::Open(_) => "circuit_open",
            Refusal::NoUpstream => "no_upstream",
        };
        return super::answer_fallback(gen, c, call.route, rid, fb, why, f, consumed).await;
    }
    let kind = match why {
        Refusal::Busy => ErrorKind::RouteBusy,
        Refusal::Open(wait) => {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let retry_after = secs.clamp(1, u64::from(u32::MAX)) as u32;
            ErrorKind::CircuitOpen { retry_after }
        }
        Refusal::NoUpstream => ErrorKind::NoHealthyUpstream,
    };
    answer(
        gen,
        c,
        Some(call.route),
        rid,
        &Reply::new(kind),
        None,
        f,
        consumed,
    )
    .await
}

/// After the upstream's 101: the client gets the 101 head, then the connection is a tunnel
/// (`tunnel.rs`) until it ends; it is never reused on either side.
async fn switch(
    gen: &Generation,
    c: &mut ClientConn,
    conn: &mut UpConn,
    resp: &ResponseHead,
    call: &Call<'_>,
    token: &[u8],
) -> Outcome {
    let route = &gen.cfg.routes[call.route];
    if !upgrade::switched(resp, &conn.buf, token) {
        conn.stats.error(UpstreamError::BadResponse);
        let reason = "upstream switched to a protocol other than the one asked for";
        let e = Reply::new(ErrorKind::BadUpstreamResponse { reason });
        return answer(
            gen,
            c,
            Some(call.route),
            call.rid,
            &e,
            None,
            call.filters,
            Consumed::Part,
        )
        .await;
    }
    super::response_phase(c, call.filters, Some((resp, &conn.buf)));
    c.out.clear();
    upgrade::write_switching(&mut c.out, &conn.buf, resp, token, call.rid, &c.extra);
    // frames the upstream sent right behind its 101
    let early = conn.buf.len() - resp.head_len;
    c.out.extend_from_slice(&conn.buf[resp.head_len..]);
    let deadline = Instant::now() + route.tunnel_idle_timeout;
    if c.stream.write_all(&mut c.out, deadline).await.is_err() {
        return Outcome::Close;
    }
    c.out.clear();
    // frames the client sent right behind its handshake
    if !c.buf.is_empty() {
        let n = c.buf.len() as u64;
        if conn.stream.write_all(&mut c.buf, deadline).await.is_err() {
            return Outcome::Close;
        }
        c.body_recv += n;
        c.buf.clear();
    }
    gen.stats.tunnels_open.add(1);
    let t = tunnel::run(&mut c.stream, &mut c.buf, conn, route.tunnel_idle_timeout).await;
    gen.stats.tunnels_open.add(-1);
    c.body_sent = early as u64 + t.to_client;
    c.body_recv += t.to_upstream;
    if !c.limits.charges.is_empty() {
        // byte quotas count what the tunnel delivered to the client
        gen.ratelimit.charge(&c.limits.charges, c.body_sent);
    }
    Outcome::Close
}
