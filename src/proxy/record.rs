//! The record of one request: what its counters, latency histograms and access-log line need.
//!
//! Owns [`RequestRecord`], filled as the request goes (route, status, endpoint, timings, trace span,
//! subject, rate-limit decision; method and target are copied only while the access log or span
//! export is on),
//! and [`finish`], which records a request once when it ends, however it ends.

use std::time::Instant as StdInstant;

use super::ClientConn;
use crate::runtime::worker::Generation;
use crate::trace::Span;

/// What `finish` needs to know about the current request.
pub(super) struct RequestRecord {
    pub(super) start: StdInstant,
    pub(super) unix_ns: u64,
    pub(super) route: Option<usize>,
    /// 0 until a response (or its head) was sent.
    pub(super) status: u16,
    /// (upstream index, endpoint index) that answered.
    pub(super) upstream: Option<(usize, usize)>,
    pub(super) upstream_us: Option<u64>,
    pub(super) ratelimit: &'static str,
    pub(super) span: Option<Span>,
    pub(super) rid: [u8; 128],
    pub(super) rid_len: usize,
    /// Copied only while the access log or span export is on.
    pub(super) method: Vec<u8>,
    pub(super) target: Vec<u8>,
    pub(super) subject: String,
    /// The WAF's verdict for the log (`blocked:942100,941100`, `detected:...`); empty: none.
    pub(super) waf: String,
    /// The first value a WAF rule matched (`name=value`), with `log_payload` only.
    pub(super) waf_match: String,
}

impl RequestRecord {
    pub(super) fn new() -> Self {
        RequestRecord {
            start: StdInstant::now(),
            unix_ns: 0,
            route: None,
            status: 0,
            upstream: None,
            upstream_us: None,
            ratelimit: "",
            span: None,
            rid: [0; 128],
            rid_len: 0,
            method: Vec::new(),
            target: Vec::new(),
            subject: String::new(),
            waf: String::new(),
            waf_match: String::new(),
        }
    }

    /// Starts a request's record: now. The wall clock is read only for the access log (`wall`).
    pub(super) fn begin(&mut self, wall: bool) {
        self.start = StdInstant::now();
        self.unix_ns = if wall {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        } else {
            0
        };
        self.route = None;
        self.status = 0;
        self.upstream = None;
        self.upstream_us = None;
        self.ratelimit = "";
        self.span = None;
        self.rid_len = 0;
        self.method.clear();
        self.target.clear();
        self.subject.clear();
        self.waf.clear();
        self.waf_match.clear();
    }
}

/// Records a finished request: counters and latency of its route, one access-log line, one
/// exported span.
pub(super) fn finish(ctx: &Generation, c: &mut ClientConn) {
    let i = &c.info;
    let total_us = i.start.elapsed().as_micros() as u64;
    let rs = match i.route {
        Some(r) => &ctx.routes[r],
        None => &ctx.stats.unmatched,
    };
    // nginx's convention for a client that went away before any response
    let status = if i.status == 0 { 499 } else { i.status };
    rs.record(status);
    rs.total.record_us(total_us);
    rs.bytes_in.add(c.body_recv);
    rs.bytes_out.add(c.body_sent);
    if let Some(us) = i.upstream_us {
        rs.upstream.record_us(us);
    }
    if !ctx.records_requests() {
        return;
    }
    let route = i.route.map_or("", |r| ctx.cfg.routes[r].name.as_str());
    let (trace_id, span_id, parent): (&[u8], &[u8], &[u8]) = match &i.span {
        Some(s) => (
            &s.trace_id,
            &s.span_id,
            s.parent_id.as_ref().map_or(&[][..], |p| &p[..]),
        ),
        None => (b"", b"", b""),
    };
    let record = crate::accesslog::Record {
        unix_ns: i.unix_ns,
        request_id: &i.rid[..i.rid_len],
        trace_id,
        span_id,
        parent_span_id: parent,
        client_ip: super::realip::client(&c.peer_ip, &c.real_ip),
        method: &i.method,
        path: &i.target,
        route,
        upstream: i
            .upstream
            .map(|(u, ep)| ctx.upstreams[u].host_text[ep].as_str()),
        status,
        bytes_in: c.body_recv,
        bytes_out: c.body_sent,
        total_us,
        upstream_us: i.upstream_us,
        subject: (!i.subject.is_empty()).then_some(i.subject.as_str()),
        ratelimit: i.ratelimit,
        waf: &i.waf,
        waf_match: &i.waf_match,
    };
    ctx.log.record(&record);
    if let Some(s) = &i.span {
        ctx.spans.record(&record, s.flags);
    }
}
