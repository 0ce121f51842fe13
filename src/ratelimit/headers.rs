//! The `RateLimit-Policy` and `RateLimit` response fields (IETF httpapi rate-limit-headers draft)
//! and `Retry-After`.
//!
//! Both fields are Structured Field lists with one item per policy applied to the request, named
//! by a quoted policy id: `RateLimit-Policy: "per_client";q=200;w=2, "daily";q=10000;w=86400` and
//! `RateLimit: "per_client";r=57;t=1, "daily";r=9120;t=50000`. For a token bucket, q is the burst
//! and w the seconds it takes to refill from empty; r is the tokens left and t the seconds until
//! the bucket is full again. For a quota, q/w are the limit and window length, r what is left and
//! t the seconds to the window's end. Byte quotas add `qu="content-bytes"`.

use std::io::Write as _;

/// The two field values being built for one request, and the header lines they become.
#[derive(Default)]
pub struct Fields {
    policy: Vec<u8>,
    state: Vec<u8>,
}

impl Fields {
    pub fn clear(&mut self) {
        self.policy.clear();
        self.state.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.policy.is_empty()
    }

    /// Adds one policy's item to both fields.
    pub fn push(&mut self, item: &PolicyItem, window_s: u64, remaining: u64, reset_s: u64) {
        if !self.policy.is_empty() {
            self.policy.extend_from_slice(b", ");
            self.state.extend_from_slice(b", ");
        }
        self.policy.extend_from_slice(item.head.as_bytes());
        let mut n = itoa::Buffer::new();
        self.policy.extend_from_slice(b";w=");
        self.policy
            .extend_from_slice(n.format(window_s.max(1)).as_bytes());
        self.policy.extend_from_slice(item.tail.as_bytes());
        self.state.extend_from_slice(item.name.as_bytes());
        self.state.extend_from_slice(b";r=");
        self.state.extend_from_slice(n.format(remaining).as_bytes());
        self.state.extend_from_slice(b";t=");
        self.state.extend_from_slice(n.format(reset_s).as_bytes());
    }

    /// Appends the header lines (and `retry-after` when given) to `out`.
    pub fn write(&self, out: &mut Vec<u8>, retry_after_s: Option<u64>) {
        if !self.policy.is_empty() {
            out.extend_from_slice(b"ratelimit-policy: ");
            out.extend_from_slice(&self.policy);
            out.extend_from_slice(b"\r\nratelimit: ");
            out.extend_from_slice(&self.state);
            out.extend_from_slice(b"\r\n");
        }
        if let Some(s) = retry_after_s {
            let _ = write!(out, "retry-after: {}\r\n", s.max(1));
        }
    }
}

/// A policy's fixed parts, formatted once at start.
#[derive(Debug, Clone)]
pub struct PolicyItem {
    /// `"name"`
    name: String,
    /// `"name";q=N`
    head: String,
    /// `;qu="content-bytes"` or empty.
    tail: &'static str,
}

impl PolicyItem {
    pub fn new(name: &str, quota: u64, bytes: bool) -> PolicyItem {
        PolicyItem {
            name: format!("\"{name}\""),
            head: format!("\"{name}\";q={quota}"),
            tail: if bytes { ";qu=\"content-bytes\"" } else { "" },
        }
    }
}

/// Whole seconds, rounded up, of a ns span.
pub fn ceil_secs(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_list_every_policy() {
        let mut f = Fields::default();
        f.push(&PolicyItem::new("per_client", 200, false), 2, 57, 1);
        f.push(
            &PolicyItem::new("daily_bytes", 1 << 30, true),
            86_400,
            5,
            50_000,
        );
        let mut out = Vec::new();
        f.write(&mut out, Some(0));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ratelimit-policy: \"per_client\";q=200;w=2, \"daily_bytes\";q=1073741824;w=86400;qu=\"content-bytes\"\r\n\
             ratelimit: \"per_client\";r=57;t=1, \"daily_bytes\";r=5;t=50000\r\n\
             retry-after: 1\r\n"
        );
        f.clear();
        let mut out = Vec::new();
        f.write(&mut out, None);
        assert!(out.is_empty());
        assert_eq!(
            (ceil_secs(1), ceil_secs(1_000_000_000), ceil_secs(0)),
            (1, 1, 0)
        );
    }
}
