//! The aggregate target: one client request fans out to several upstream calls in parallel and
//! gets one merged JSON document.
//!
//! Owns [`requests`] and [`run`]. Data flow: while the request view is at hand, each part's
//! request head is rendered ([`requests`]: the path template from path parameters, query,
//! headers and identity; the part's passed-on client headers, identity headers, the route's
//! `request_headers` lines, request id, trace context and forwarding fields). Then [`run`]
//! issues every part at once (`subrequest::fetch`: breaker, balancer, pool, retries, exactly as
//! a proxied request), each bounded by its own timeout within the route's `aggregate_timeout`,
//! while the client socket is watched. The documents merge (`transform::merge`) under their keys
//! or into the root; a failed optional part becomes `null` plus an entry in `errors`, a failed
//! required part fails the request (504 when it timed out, else 502, naming the parts). The
//! client's auth, rate limits and WAF ran once, in the request phase, for the whole aggregate.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use monoio::time::Instant;

use super::filter::Filter;
use super::subrequest::{self, FetchError, Fetched};
use super::{answer, ClientConn, Consumed, Outcome};
use crate::config::aggregate::{Aggregate, AggregatePart};
use crate::http::respond::{render_document, Document, ErrorKind, Reply};
use crate::http::rewrite::push_header;
use crate::runtime::worker::Generation;
use crate::transform::merge::{self, Outcome as PartOutcome, Part};

/// One part's rendered request (and its cache key when the part has `cache_ttl`), or why it
/// could not be rendered.
pub(super) type PartRequest = Result<(Vec<u8>, Option<Vec<u8>>), String>;

/// What the aggregate needs from the request (besides the rendered part requests).
pub(super) struct AggregateCall<'a> {
    pub route: usize,
    pub rid: &'a [u8],
    pub filters: &'a [Filter],
}

/// Renders every part's request head from the request (see the module doc).
pub(super) fn requests(
    gen: &Generation,
    agg: &Aggregate,
    src: &super::source::RequestValues<'_>,
    traceparent: &[u8],
    https: bool,
    req_lines: &[u8],
) -> Vec<PartRequest> {
    agg.parts
        .iter()
        .map(|part| {
            let mut out = Vec::with_capacity(256);
            out.extend_from_slice(part.method.as_bytes());
            out.push(b' ');
            if let Err(missing) = part.path.render(src, &mut out) {
                return Err(format!("no value for {}", missing.0));
            }
            // a cached part's key: what it sends that can change its answer
            let mut key = part.cache_ttl.map(|_| {
                let mut k = b"\0aggregate\0".to_vec();
                k.extend_from_slice(gen.upstreams[part.upstream].name.as_bytes());
                k.push(0);
                k.extend_from_slice(&out);
                k
            });
            out.extend_from_slice(b" HTTP/1.1\r\n");
            let up = &gen.upstreams[part.upstream];
            push_header(&mut out, b"host", up.host_text[0].as_bytes());
            for name in &part.headers {
                for v in src.view.fields.all(name.as_bytes()) {
                    push_header(&mut out, name.as_bytes(), v);
                    if let Some(k) = key.as_mut() {
                        push_header(k, name.as_bytes(), v);
                    }
                }
            }
            if let (Some(k), Some(id)) = (key.as_mut(), src.identity) {
                let who = id
                    .subject
                    .as_deref()
                    .or(id.consumer.as_deref())
                    .unwrap_or_default();
                push_header(k, b"identity", who.as_bytes());
            }
            push_header(&mut out, b"x-forwarded-for", src.view.peer.ip.as_bytes());
            let proto: &[u8] = if https { b"https" } else { b"http" };
            push_header(&mut out, b"x-forwarded-proto", proto);
            push_header(&mut out, b"x-request-id", src.rid);
            push_header(&mut out, b"traceparent", traceparent);
            for (n, v) in src.identity.map_or(&[][..], |i| &i.headers) {
                push_header(&mut out, n.as_bytes(), v.as_bytes());
            }
            out.extend_from_slice(req_lines);
            out.extend_from_slice(b"\r\n");
            if let Some(k) = key.as_mut() {
                k.extend_from_slice(req_lines);
            }
            Ok((out, key))
        })
        .collect()
}

/// How one part ended.
enum Got {
    Response(Fetched),
    Failed(FetchError),
    /// Its request could not be rendered (a placeholder without a value).
    Unrendered(String),
}

/// Fetches one part within `deadline`.
async fn one(gen: &Generation, part: &AggregatePart, req: PartRequest, deadline: Instant) -> Got {
    let (mut req, key) = match req {
        Ok(r) => r,
        Err(why) => return Got::Unrendered(why),
    };
    if let Some(hit) = key
        .as_deref()
        .and_then(|k| super::cache_fill::part_hit(gen, k))
    {
        return Got::Response(hit);
    }
    let deadline = match part.timeout {
        Some(t) => deadline.min(Instant::now() + t),
        None => deadline,
    };
    let up = &gen.upstreams[part.upstream];
    let idempotent = matches!(part.method.as_str(), "GET" | "HEAD" | "OPTIONS");
    let head = part.method == "HEAD";
    let fetch = subrequest::fetch(gen, up, &mut req, idempotent, head, part.max_body);
    match monoio::time::timeout_at(deadline, fetch).await {
        Ok(Ok(f)) => {
            if let (Some(k), Some(ttl), true) =
                (key, part.cache_ttl, (200..300).contains(&f.resp.status))
            {
                super::cache_fill::part_fill(gen, &k, ttl, part.max_body, &f);
            }
            Got::Response(f)
        }
        Ok(Err(e)) => Got::Failed(e),
        Err(_) => Got::Failed(FetchError::Timeout),
    }
}

/// Polls every part's future until all are done (parts run concurrently on this worker).
async fn join_all<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut outs: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in futs.iter_mut().zip(outs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outs.into_iter().flatten().collect()
}

/// Runs the fan-out and answers the client (see the module doc).
pub(super) async fn run(
    gen: &Generation,
    c: &mut ClientConn,
    call: &AggregateCall<'_>,
    agg: &Aggregate,
    reqs: Vec<PartRequest>,
) -> Outcome {
    let start = std::time::Instant::now();
    let deadline = Instant::now() + agg.timeout;
    let futs: Vec<_> = agg
        .parts
        .iter()
        .zip(reqs)
        .map(|(part, req)| one(gen, part, req, deadline))
        .collect();
    let got = monoio::select! {
        got = join_all(futs) => Some(got),
        _ = super::exchange::client_gone(&mut c.stream) => None,
    };
    let Some(got) = got else {
        // the client left: every part is cancelled (their connections dropped, never pooled)
        return Outcome::Close;
    };
    let up_us = start.elapsed().as_micros() as u64;
    c.info.upstream_us = Some(up_us);
    gen.routes[call.route].upstream.record_us(up_us);

    let outcomes: Vec<PartOutcome> = got
        .iter()
        .map(|g| match g {
            Got::Response(f) if (200..300).contains(&f.resp.status) => PartOutcome::Json(&f.body),
            Got::Response(f) => PartOutcome::Failed {
                status: f.resp.status,
                error: "bad_status",
            },
            Got::Failed(e) => PartOutcome::Failed {
                status: 0,
                error: e.token(),
            },
            Got::Unrendered(_) => PartOutcome::Failed {
                status: 0,
                error: "missing_value",
            },
        })
        .collect();
    let parts: Vec<Part> = agg
        .parts
        .iter()
        .zip(&outcomes)
        .map(|(p, &outcome)| Part {
            name: &p.key,
            placement: &p.placement,
            outcome,
        })
        .collect();
    let mut body = Vec::with_capacity(got.iter().map(weight).sum::<usize>() + 64);
    let failed = merge::merge(&parts, &mut body);
    let required: Vec<usize> = failed
        .iter()
        .copied()
        .filter(|&i| agg.parts[i].required)
        .collect();
    if !required.is_empty() {
        return fail(gen, c, call, agg, &parts, &got, &required).await;
    }
    // the response-body phase over the merged document (`response_fields`...)
    for f in call.filters.iter().rev() {
        f.transform_json(&mut body, c.fields.as_ref());
    }
    let keep = super::keep_after(gen, c, Consumed::Head);
    super::response_phase(c, call.filters, None);
    c.out.clear();
    let doc = Document {
        status: 200,
        content_type: "application/json",
        body: &body,
        marker: &[],
    };
    let n = render_document(&mut c.out, &doc, call.rid, keep, &c.extra);
    c.info.route = Some(call.route);
    c.info.status = 200;
    super::send_answer(gen, c, n, keep).await
}

/// Bytes a part contributes to the merged document (for sizing the buffer).
fn weight(g: &Got) -> usize {
    match g {
        Got::Response(f) => f.body.len(),
        _ => 0,
    }
}

/// Answers a request whose required part failed: 504 when one timed out, else 502, with the
/// failed parts in the answer's `parts` member.
async fn fail(
    gen: &Generation,
    c: &mut ClientConn,
    call: &AggregateCall<'_>,
    agg: &Aggregate,
    parts: &[Part<'_>],
    got: &[Got],
    required: &[usize],
) -> Outcome {
    use std::fmt::Write;
    let timed_out = required
        .iter()
        .any(|&i| matches!(got[i], Got::Failed(FetchError::Timeout)));
    c.detail.clear();
    c.detail.push_str(",\"parts\":[");
    for (n, &i) in required.iter().enumerate() {
        let (status, error) = match parts[i].outcome {
            PartOutcome::Failed { status, error } => (status, error),
            PartOutcome::Json(_) => (0, "not_json"),
        };
        if n > 0 {
            c.detail.push(',');
        }
        let key = serde_json::to_string(&agg.parts[i].key).unwrap_or_default();
        let _ = write!(c.detail, "{{\"part\":{key},\"error\":\"{error}\"");
        if status != 0 {
            let _ = write!(c.detail, ",\"status\":{status}");
        }
        if let Got::Unrendered(why) = &got[i] {
            let why = serde_json::to_string(why).unwrap_or_default();
            let _ = write!(c.detail, ",\"detail\":{why}");
        }
        c.detail.push('}');
    }
    c.detail.push(']');
    let kind = match timed_out {
        true => ErrorKind::ResponseTimeout,
        false => ErrorKind::BadUpstreamResponse {
            reason: "a required part of the aggregate failed",
        },
    };
    let reply = Reply::new(kind);
    let (route, rid) = (Some(call.route), call.rid);
    answer(
        gen,
        c,
        route,
        rid,
        &reply,
        None,
        call.filters,
        Consumed::Head,
    )
    .await
}
