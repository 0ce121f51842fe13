//! The request_body phase: reading a request body for the filters that look at it (the WAF's
//! body rules, JSON Schema validation), and their verdicts.
//!
//! Owns [`body_phase`] and [`waf_verdict`]. Only routes with such a filter get here, and only for
//! requests with a body the filter reads (the WAF: form, multipart and JSON bodies; a schema: any
//! body). The body is read into the connection buffer behind the head, raw, up to the phase's cap
//! (the WAF's `body_limit`, or the route's `max_body` when a schema needs the whole body), and
//! decoded (from chunked) into `ClientConn::body`. The raw bytes stay where they are, so the
//! target then sends them exactly as it sends any body that arrived with the head: a body read
//! whole is replayable (retries, hedging) like any small body. A body larger than the cap is
//! inspected up to the cap (`body_over_limit = "partial"`, the default) and the rest streams
//! through unread, or refused with 413 (`"reject"`); one larger than `max_body` is refused with 413
//! either way. A client that sent `Expect: 100-continue` gets its 100 here, before the read.
//! A route's `request_body` transform reads a JSON body whole the same way and puts the
//! transformed body in place of the raw one (with a Content-Length) for the target to send.

use monoio::time::Instant;

use super::filter::Admission;
use super::pipeline::RouteChain;
use super::{relay, ClientConn, Consumed, Fail};
use crate::http::chunked::ChunkedDecoder;
use crate::http::head::BodyKind;
use crate::http::respond::{ErrorKind, Reply};
use crate::runtime::worker::Generation;
use crate::waf::{Mode, OverLimit, Policy};

/// What the request_body phase decided.
pub(super) enum Verdict {
    /// On to the target.
    Pass,
    /// Answer this, after this much of the request was read.
    Refuse(Reply, Consumed),
    /// The client went away or stalled: close without an answer.
    Close,
}

/// Runs the request_body phase; see the module doc.
pub(super) async fn body_phase(
    gen: &Generation,
    c: &mut ClientConn,
    route_idx: usize,
    chain: &RouteChain,
    adm: &mut Admission,
) -> Verdict {
    let route = &gen.cfg.routes[route_idx];
    let schema = route.validation.as_ref().and_then(|v| v.schema.as_ref());
    let ct = c.head.header(&c.buf, b"content-type");
    let waf = chain.waf.as_deref().filter(|_| Policy::inspects(ct));
    let declared = match c.head.body {
        BodyKind::Length(n) => Some(n),
        BodyKind::Chunked => None,
        BodyKind::None | BodyKind::UntilClose => Some(0),
    };
    if declared == Some(0) {
        if schema.is_some() && matches!(c.head.method(&c.buf), b"POST" | b"PUT" | b"PATCH") {
            c.problems.push(crate::validate::Problem {
                location: crate::validate::Location::Body,
                pointer: String::new(),
                message: "a request body is required".into(),
            });
            return invalid(gen, c, route_idx);
        }
        return Verdict::Pass;
    }
    let transform = route
        .body
        .as_ref()
        .and_then(|b| b.request.as_ref())
        .filter(|_| ct.is_some_and(super::sink::is_json));
    if waf.is_none() && schema.is_none() && transform.is_none() {
        return Verdict::Pass;
    }
    let waf_cap = waf.map_or(0, |p| p.body_limit);
    // a schema or a transform needs the whole body: read until it ends (the decoder refuses
    // more than max_body)
    let cap = match schema.is_some() || transform.is_some() {
        true => usize::try_from(route.max_body)
            .unwrap_or(usize::MAX)
            .saturating_add(1),
        false => waf_cap,
    };
    if let (Some(p), Some(n)) = (waf, declared) {
        if p.over_limit == OverLimit::Reject && n > p.body_limit as u64 {
            return Verdict::Refuse(Reply::new(ErrorKind::BodyTooLarge), Consumed::Head);
        }
    }
    let (whole, raw_end) = match gather(gen, c, cap, route.max_body).await {
        Ok(v) => v,
        Err(Fail::Close) => return Verdict::Close,
        Err(Fail::Respond(reply)) => return Verdict::Refuse(reply, Consumed::Part),
    };
    // how much of the request an answer now leaves read
    let consumed = |c: &mut ClientConn| match whole {
        true => {
            c.buf.drain(..raw_end);
            Consumed::Whole
        }
        false => Consumed::Part,
    };
    if let Some(p) = waf {
        if p.over_limit == OverLimit::Reject && c.body.len() > p.body_limit {
            return Verdict::Refuse(Reply::new(ErrorKind::BodyTooLarge), Consumed::Part);
        }
        let seen = c.body.len().min(p.body_limit);
        let ct = c.head.header(&c.buf, b"content-type");
        let all = whole && seen == c.body.len();
        p.inspect_body(ct, &c.body[..seen], all, &mut c.waf, &mut adm.waf);
        if p.over(&adm.waf) && p.mode == Mode::Block {
            let reply = Reply::new(ErrorKind::WafBlocked { status: p.status });
            return Verdict::Refuse(reply, consumed(c));
        }
    }
    if let Some(s) = schema {
        if !whole {
            // bigger than max_body: the decoder refused it, so this is a body cut short
            return Verdict::Refuse(Reply::new(ErrorKind::BodyTooLarge), Consumed::Part);
        }
        s.check(&c.body, &mut c.problems);
        if !c.problems.is_empty() {
            let refused = invalid(gen, c, route_idx);
            if let Verdict::Refuse(reply, _) = refused {
                return Verdict::Refuse(reply, consumed(c));
            }
        }
    }
    if let (Some(t), true) = (transform, whole) {
        // the transformed body replaces the raw one behind the head, with a Content-Length
        let mut out = Vec::with_capacity(c.body.len());
        if t.apply(&c.body, &mut out).is_ok() {
            let head_len = c.head.head_len;
            c.buf.splice(head_len..raw_end, out.iter().copied());
            c.head.body = BodyKind::Length(out.len() as u64);
        }
    }
    Verdict::Pass
}

/// A 400 with the problems collected in `c.problems`, counted on the route.
pub(super) fn invalid(gen: &Generation, c: &mut ClientConn, route: usize) -> Verdict {
    c.detail.clear();
    crate::validate::render_problems(&c.problems, &mut c.detail);
    c.problems.clear();
    gen.routes[route].invalid.inc();
    Verdict::Refuse(Reply::new(ErrorKind::Invalid), Consumed::Head)
}

/// Reads the body behind the head until `cap` decoded bytes are in `c.body` or the body ends.
/// Returns whether the whole body is in, and where its raw bytes end in `c.buf`.
async fn gather(
    gen: &Generation,
    c: &mut ClientConn,
    cap: usize,
    max_body: u64,
) -> Result<(bool, usize), Fail> {
    let timeout = gen.cfg.server.client_body_timeout;
    let head_len = c.head.head_len;
    c.body.clear();
    if c.head.expect_continue {
        // the client waits for this before sending the body
        c.head.expect_continue = false;
        if !super::send_continue(c, Instant::now() + timeout).await {
            return Err(Fail::Close);
        }
    }
    match c.head.body {
        BodyKind::Length(n) => {
            let want = (n.min(cap as u64)) as usize;
            while c.buf.len() - head_len < want {
                relay::read_client(c, timeout).await?;
            }
            c.body.extend_from_slice(&c.buf[head_len..head_len + want]);
            Ok((want as u64 == n, head_len + want))
        }
        BodyKind::Chunked => {
            let mut dec = ChunkedDecoder::new(max_body);
            let mut pos = head_len;
            loop {
                let (buf, body) = (&c.buf, &mut c.body);
                let p = dec
                    .decode(&buf[pos..], &mut |d: &[u8]| body.extend_from_slice(d))
                    .map_err(relay::chunk_error)?;
                pos += p.consumed;
                if p.done {
                    return Ok((true, pos));
                }
                if c.body.len() >= cap {
                    return Ok((false, pos));
                }
                relay::read_client(c, timeout).await?;
            }
        }
        BodyKind::None | BodyKind::UntilClose => Ok((true, head_len)),
    }
}

/// Counts and logs what the route's WAF found (once per request, however the request ends) and
/// puts a block's rule ids in the answer (`c.detail`).
pub(super) fn waf_verdict(
    gen: &Generation,
    c: &mut ClientConn,
    route: usize,
    policy: &Policy,
    adm: &Admission,
) {
    let f = &adm.waf;
    if f.score == 0 {
        return;
    }
    let stats = &gen.routes[route];
    for fam in crate::waf::rules::Family::ALL {
        if f.families & (1 << fam.index()) != 0 {
            stats.waf_families[fam.index()].inc();
        }
    }
    let over = policy.over(f);
    let blocked = over && policy.mode == Mode::Block;
    if over {
        stats.waf[if blocked { 0 } else { 1 }].inc();
    }
    c.info.waf.push_str(match (blocked, over) {
        (true, _) => "blocked:",
        (false, true) => "detected:",
        (false, false) => "matched:",
    });
    let rules = f.rule_list();
    c.info.waf.push_str(&rules);
    if let Some(s) = &f.sample {
        c.info.waf_match.push_str(s);
    }
    if blocked {
        c.detail.clear();
        c.detail.push_str(",\"rules\":[");
        c.detail.push_str(&rules);
        c.detail.push(']');
    }
}
