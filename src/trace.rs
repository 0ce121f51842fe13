//! W3C Trace Context (`traceparent` / `tracestate`): continue the caller's trace or start one.
//!
//! Owns: parsing an incoming `traceparent` strictly (version 00 exactly 55 characters; a later
//! version is read by its version-00 prefix and forwarded as 00; lowercase hex only; all-zero trace
//! or parent ids and version `ff` are invalid), and [`SpanIds`], a per-worker id generator
//! (wyrand seeded from the OS, no locks). Data flow: the proxy calls [`Span::start`] once per
//! request; the span's `traceparent` (same trace id, the gateway's new span id, the caller's flags)
//! goes to the upstream in place of the client's, `tracestate` passes through only when the
//! client's `traceparent` was valid, and the trace, span and parent ids go to the access log. The
//! span (ids + start time + route + status in the log line) is what an OTLP exporter would send.
//!
//! A trace the gateway starts is marked sampled (`01`) when the gateway exports no spans: services
//! behind it that sample by their parent then record it. With `[tracing]` (`crate::otlp`), the
//! gateway decides by `sample_ratio` and says so in the flags, so the whole trace is recorded or
//! none of it; a continued trace keeps its caller's decision.

/// Random ids for one worker: wyrand, seeded once from the OS.
pub struct SpanIds {
    state: u64,
}

impl Default for SpanIds {
    fn default() -> Self {
        let mut seed = [0u8; 8];
        // ring's SystemRandom reads getrandom(2); fall back to time and address entropy
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            seed = (t ^ (&seed as *const _ as u64)).to_le_bytes();
        }
        SpanIds {
            state: u64::from_le_bytes(seed),
        }
    }
}

impl SpanIds {
    #[inline]
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.state) * u128::from(self.state ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// A non-zero 64-bit id.
    fn nonzero(&mut self) -> u64 {
        loop {
            let v = self.next();
            if v != 0 {
                return v;
            }
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_into(dst: &mut [u8], v: u64) {
    let n = dst.len();
    for (i, d) in dst.iter_mut().enumerate() {
        *d = HEX[((v >> ((n - 1 - i) * 4)) & 0xf) as usize];
    }
}

fn lower_hex(s: &[u8]) -> bool {
    s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The gateway's span of one request, all ids as lowercase hex text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub trace_id: [u8; 32],
    pub span_id: [u8; 16],
    /// The caller's span, when the request carried a valid `traceparent`.
    pub parent_id: Option<[u8; 16]>,
    pub flags: [u8; 2],
}

/// The ids of a valid incoming `traceparent`: (trace id, parent id, flags).
pub fn parse_traceparent(v: &[u8]) -> Option<([u8; 32], [u8; 16], [u8; 2])> {
    let v = v.trim_ascii();
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let (version, trace, parent, flags) = (&v[0..2], &v[3..35], &v[36..52], &v[53..55]);
    if !lower_hex(version) || version == b"ff" {
        return None;
    }
    // version 00 is exactly 55 characters; a later version may append fields after a dash
    if (version == b"00" && v.len() != 55) || (v.len() > 55 && v[55] != b'-') {
        return None;
    }
    if !lower_hex(trace) || !lower_hex(parent) || !lower_hex(flags) {
        return None;
    }
    if trace.iter().all(|&b| b == b'0') || parent.iter().all(|&b| b == b'0') {
        return None;
    }
    Some((
        trace.try_into().ok()?,
        parent.try_into().ok()?,
        flags.try_into().ok()?,
    ))
}

impl Span {
    /// Continues the trace of `traceparent` when it is valid, else starts a new sampled trace.
    /// `ratio`: `[tracing] sample_ratio` when spans are exported: a trace the gateway starts is
    /// sampled with that probability (decided from its random trace id); without export every
    /// new trace is marked sampled. A continued trace keeps the caller's flags (parent-based).
    pub fn start(traceparent: Option<&[u8]>, ids: &mut SpanIds, ratio: Option<f64>) -> Span {
        let mut span_id = [0u8; 16];
        hex_into(&mut span_id, ids.nonzero());
        match traceparent.and_then(parse_traceparent) {
            Some((trace_id, parent, flags)) => Span {
                trace_id,
                span_id,
                parent_id: Some(parent),
                flags,
            },
            None => {
                let mut trace_id = [0u8; 32];
                let high = ids.nonzero();
                hex_into(&mut trace_id[..16], high);
                hex_into(&mut trace_id[16..], ids.next());
                let sampled = match ratio {
                    None => true,
                    // `high` is uniform over 1..=u64::MAX: 0 never samples, 1 always does
                    Some(r) => (high as f64) <= r * u64::MAX as f64 && r > 0.0,
                };
                Span {
                    trace_id,
                    span_id,
                    parent_id: None,
                    flags: if sampled { *b"01" } else { *b"00" },
                }
            }
        }
    }

    /// Whether the client's `tracestate` belongs to this trace (it does only if we continued it).
    pub fn continued(&self) -> bool {
        self.parent_id.is_some()
    }

    /// The `traceparent` value sent upstream: version 00, our span as the parent.
    pub fn traceparent(&self) -> [u8; 55] {
        let mut out = [0u8; 55];
        out[0..3].copy_from_slice(b"00-");
        out[3..35].copy_from_slice(&self.trace_id);
        out[35] = b'-';
        out[36..52].copy_from_slice(&self.span_id);
        out[52] = b'-';
        out[53..55].copy_from_slice(&self.flags);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn continues_a_valid_trace() {
        let mut ids = SpanIds::default();
        let s = Span::start(Some(GOOD), &mut ids, None);
        assert_eq!(&s.trace_id, b"4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(s.parent_id.as_ref().unwrap(), b"00f067aa0ba902b7");
        assert!(s.continued());
        let tp = s.traceparent();
        assert_eq!(&tp[..36], b"00-4bf92f3577b34da6a3ce929d0e0e4736-");
        assert_ne!(&tp[36..52], b"00f067aa0ba902b7", "our own span id");
        assert_eq!(&tp[52..], b"-01");
        assert!(parse_traceparent(&tp).is_some());
    }

    #[test]
    fn later_versions_are_read_by_their_prefix() {
        let v = b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra";
        let (t, p, f) = parse_traceparent(v).unwrap();
        assert_eq!(&t, b"4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(&p, b"00f067aa0ba902b7");
        assert_eq!(&f, b"00");
        assert!(
            parse_traceparent(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00x")
                .is_none()
        );
    }

    #[test]
    fn rejects_malformed_values_and_starts_fresh() {
        for bad in [
            &b""[..],
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            b"0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(
                parse_traceparent(bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut ids = SpanIds::default();
        let a = Span::start(Some(b"garbage"), &mut ids, None);
        let b = Span::start(None, &mut ids, None);
        assert!(!a.continued());
        assert_ne!(a.trace_id, b.trace_id);
        assert_ne!(a.span_id, b.span_id);
        assert_eq!(&a.flags, b"01");
        assert!(parse_traceparent(&a.traceparent()).is_some());
    }

    #[test]
    fn new_traces_are_sampled_by_ratio_and_continued_ones_by_their_caller() {
        let mut ids = SpanIds::default();
        let sampled = |ids: &mut SpanIds, r: f64| {
            (0..10_000)
                .filter(|_| &Span::start(None, ids, Some(r)).flags == b"01")
                .count()
        };
        assert_eq!(sampled(&mut ids, 0.0), 0);
        assert_eq!(sampled(&mut ids, 1.0), 10_000);
        let tenth = sampled(&mut ids, 0.1);
        assert!((800..1200).contains(&tenth), "{tenth}");
        // the caller's decision stands, whatever the ratio
        let unsampled = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert_eq!(
            &Span::start(Some(unsampled), &mut ids, Some(1.0)).flags,
            b"00"
        );
        assert_eq!(&Span::start(Some(GOOD), &mut ids, Some(0.0)).flags, b"01");
    }
}
