//! OTLP trace protobuf, written by hand for the one span shape the gateway sends.
//!
//! Owns the wire encoding of `opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest`
//! (field numbers from opentelemetry-proto's `trace.proto` and `common.proto`, v1). A worker
//! encodes each finished request as one `Span`, already wrapped as a `spans` entry (field 2) of a
//! `ScopeSpans`, into its batch buffer ([`span_entry`]); the exporter thread concatenates batches
//! and wraps them once in `ScopeSpans` -> `ResourceSpans` -> the request ([`request`]). Protobuf's
//! repeated fields are plain concatenations, so batches join without re-encoding. No allocation:
//! lengths are computed before the bytes that follow them are written.

use crate::accesslog::Record;

const LEN: u8 = 2;
const VARINT: u8 = 0;
const FIXED64: u8 = 1;

fn tag(out: &mut Vec<u8>, field: u8, wire: u8) {
    out.push((field << 3) | wire);
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// A length-delimited field's size on the wire, tag included (fields below 16).
fn field_len(body: usize) -> usize {
    1 + varint_len(body as u64) + body
}

fn bytes(out: &mut Vec<u8>, field: u8, b: &[u8]) {
    tag(out, field, LEN);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// An attribute value.
enum Val<'a> {
    Str(&'a [u8]),
    Int(i64),
}

impl Val<'_> {
    /// `AnyValue`'s size: `string_value` (1) or `int_value` (3).
    fn len(&self) -> usize {
        match self {
            Val::Str(s) => field_len(s.len()),
            Val::Int(i) => 1 + varint_len(*i as u64),
        }
    }
}

/// `KeyValue { key = 1; value = 2 }` as field `field` of the enclosing message.
fn attr(out: &mut Vec<u8>, field: u8, key: &str, v: Val<'_>) {
    let any = v.len();
    tag(out, field, LEN);
    varint(out, (field_len(key.len()) + field_len(any)) as u64);
    bytes(out, 1, key.as_bytes());
    tag(out, 2, LEN);
    varint(out, any as u64);
    match v {
        Val::Str(s) => bytes(out, 1, s),
        Val::Int(i) => {
            tag(out, 3, VARINT);
            varint(out, i as u64);
        }
    }
}

/// 2n lowercase hex characters -> n bytes (ids come from `trace.rs`, always valid hex).
fn unhex<const N: usize>(hex: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        let d = |c: u8| match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => 0,
        };
        *o = (d(hex[2 * i]) << 4) | d(hex[2 * i + 1]);
    }
    out
}

/// The request path without its query (what `url.path` means).
fn path_of(target: &[u8]) -> &[u8] {
    let end = target
        .iter()
        .position(|&b| b == b'?')
        .unwrap_or(target.len());
    &target[..end]
}

/// Appends `r` as one `ScopeSpans.spans` entry; `scratch` holds the span body meanwhile (kept by
/// the caller so it is reused). `r` must carry trace and span ids.
pub fn span_entry(out: &mut Vec<u8>, scratch: &mut Vec<u8>, r: &Record<'_>) {
    let s = scratch;
    s.clear();
    bytes(s, 1, &unhex::<16>(r.trace_id));
    bytes(s, 2, &unhex::<8>(r.span_id));
    if r.parent_span_id.len() == 16 {
        bytes(s, 4, &unhex::<8>(r.parent_span_id));
    }
    // name: `{method} {route}` (OpenTelemetry's HTTP server span name), the method alone without
    // a route
    let method = if r.method.is_empty() {
        &b"HTTP"[..]
    } else {
        r.method
    };
    let name_len = method.len()
        + if r.route.is_empty() {
            0
        } else {
            1 + r.route.len()
        };
    tag(s, 5, LEN);
    varint(s, name_len as u64);
    s.extend_from_slice(method);
    if !r.route.is_empty() {
        s.push(b' ');
        s.extend_from_slice(r.route.as_bytes());
    }
    tag(s, 6, VARINT);
    varint(s, 2); // SPAN_KIND_SERVER
    tag(s, 7, FIXED64);
    s.extend_from_slice(&r.unix_ns.to_le_bytes());
    tag(s, 8, FIXED64);
    let end = r.unix_ns.saturating_add(r.total_us.saturating_mul(1000));
    s.extend_from_slice(&end.to_le_bytes());
    attr(s, 9, "http.request.method", Val::Str(method));
    if !r.path.is_empty() {
        attr(s, 9, "url.path", Val::Str(path_of(r.path)));
    }
    if !r.route.is_empty() {
        attr(s, 9, "http.route", Val::Str(r.route.as_bytes()));
    }
    attr(
        s,
        9,
        "http.response.status_code",
        Val::Int(i64::from(r.status)),
    );
    attr(s, 9, "client.address", Val::Str(r.client_ip.as_bytes()));
    if let Some(u) = r.upstream {
        attr(s, 9, "coregate.upstream", Val::Str(u.as_bytes()));
    }
    attr(s, 9, "http.request.body.size", Val::Int(r.bytes_in as i64));
    attr(
        s,
        9,
        "http.response.body.size",
        Val::Int(r.bytes_out as i64),
    );
    if let Some(sub) = r.subject {
        attr(s, 9, "enduser.id", Val::Str(sub.as_bytes()));
    }
    if !r.ratelimit.is_empty() {
        attr(s, 9, "coregate.ratelimit", Val::Str(r.ratelimit.as_bytes()));
    }
    if !r.request_id.is_empty() {
        attr(s, 9, "coregate.request_id", Val::Str(r.request_id));
    }
    if r.status >= 500 {
        // Status { code = 3 }: STATUS_CODE_ERROR (server spans leave 4xx unset)
        tag(s, 15, LEN);
        varint(s, 2);
        tag(s, 3, VARINT);
        varint(s, 2);
    }
    bytes(out, 2, s);
}

/// The whole export request around `spans` (concatenated [`span_entry`]s), into `out`.
pub fn request(out: &mut Vec<u8>, service_name: &str, spans: &[u8]) {
    const SCOPE: &str = "coregate";
    let version = env!("CARGO_PKG_VERSION");
    // Resource { attributes = 1 }: service.name (once per export: a small allocation is fine)
    let mut resource = Vec::with_capacity(64);
    attr(
        &mut resource,
        1,
        "service.name",
        Val::Str(service_name.as_bytes()),
    );
    // InstrumentationScope { name = 1; version = 2 }
    let scope_len = field_len(SCOPE.len()) + field_len(version.len());
    let scope_spans_len = field_len(scope_len) + spans.len();
    let resource_spans_len = field_len(resource.len()) + field_len(scope_spans_len);
    out.clear();
    out.reserve(field_len(resource_spans_len));
    tag(out, 1, LEN); // ExportTraceServiceRequest.resource_spans
    varint(out, resource_spans_len as u64);
    bytes(out, 1, &resource); // ResourceSpans.resource
    tag(out, 2, LEN); // ResourceSpans.scope_spans
    varint(out, scope_spans_len as u64);
    tag(out, 1, LEN); // ScopeSpans.scope
    varint(out, scope_len as u64);
    bytes(out, 1, SCOPE.as_bytes());
    bytes(out, 2, version.as_bytes());
    out.extend_from_slice(spans);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        for (v, want) in [
            (0u64, &[0u8][..]),
            (1, &[1]),
            (127, &[127]),
            (128, &[0x80, 1]),
            (300, &[0xac, 0x02]),
        ] {
            let mut out = Vec::new();
            varint(&mut out, v);
            assert_eq!(out, want);
            assert_eq!(varint_len(v), want.len());
        }
        assert_eq!(varint_len(u64::MAX), 10);
        assert_eq!(unhex::<2>(b"0aff"), [0x0a, 0xff]);
        assert_eq!(path_of(b"/a/b?x=1"), b"/a/b");
    }
}
