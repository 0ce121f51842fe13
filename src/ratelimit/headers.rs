//! The `RateLimit-Policy` and `RateLimit` response fields (IETF httpapi rate-limit-headers draft)
//! and `Retry-After`.
//!
//! Both fields are Structured Field lists with one item per policy applied to the request, named
//! by a quoted policy id: `RateLimit-Policy: "per_client";q=200;w=2, "daily";q=10000;w=86400` and
//! `RateLimit: "per_client";r=57;t=1, "daily";r=9120;t=50000`. For a token bucket, q is the burst
//! and w the seconds it takes to refill from empty; r is the tokens left and t the seconds until
//! the bucket is full again. For a quota, q/w are the limit and window length, r what is left and
//! t the seconds to the window's end. Byte quotas add `qu="content-bytes"`.
//!
//! **Performance.** Every limited response carries both fields, so the parts that never change are
//! rendered once per policy at start ([`PolicyItem`]), each with the line prefix or `, `
//! separator it needs: a request copies one prepared `RateLimit-Policy` item and one `RateLimit`
//! item head, and formats only `r` and `t` (with `itoa`). A quota over calendar months, whose `w`
//! changes, formats `w` too in the months whose length differs from the prepared one.

/// Prefix of the `RateLimit-Policy` line, in front of the first item.
const POLICY_PREFIX: &[u8] = b"ratelimit-policy: ";
/// End of the `RateLimit-Policy` line and prefix of the `RateLimit` line, before the first item.
const STATE_PREFIX: &[u8] = b"\r\nratelimit: ";

/// The two field values being built for one request, and the header lines they become.
#[derive(Default)]
pub struct Fields {
    /// `ratelimit-policy: ` and the items so far (empty while no policy applied).
    policy: Vec<u8>,
    /// `\r\nratelimit: ` and the items so far.
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
    #[inline]
    pub fn push(&mut self, item: &PolicyItem, window_s: u64, remaining: u64, reset_s: u64) {
        // the prepared texts start with their line prefix; later items swap it for ", "
        let (policy_from, state_from) = if self.policy.is_empty() {
            (0, 0)
        } else {
            self.policy.extend_from_slice(b", ");
            self.state.extend_from_slice(b", ");
            (POLICY_PREFIX.len(), STATE_PREFIX.len())
        };
        let mut n = itoa::Buffer::new();
        let window_s = window_s.max(1);
        if window_s == item.window_s {
            self.policy.extend_from_slice(&item.policy[policy_from..]);
        } else {
            self.policy
                .extend_from_slice(&item.policy[policy_from..item.head_end]);
            self.policy.extend_from_slice(b";w=");
            self.policy.extend_from_slice(n.format(window_s).as_bytes());
            self.policy.extend_from_slice(item.tail.as_bytes());
        }
        self.state.extend_from_slice(&item.state[state_from..]);
        self.state.extend_from_slice(n.format(remaining).as_bytes());
        self.state.extend_from_slice(b";t=");
        self.state.extend_from_slice(n.format(reset_s).as_bytes());
    }

    /// Appends the header lines (and `retry-after` when given) to `out`.
    #[inline]
    pub fn write(&self, out: &mut Vec<u8>, retry_after_s: Option<u64>) {
        if !self.policy.is_empty() {
            out.extend_from_slice(&self.policy);
            out.extend_from_slice(&self.state);
            out.extend_from_slice(b"\r\n");
        }
        if let Some(s) = retry_after_s {
            out.extend_from_slice(b"retry-after: ");
            out.extend_from_slice(itoa::Buffer::new().format(s.max(1)).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// A policy's fixed parts, formatted once at start.
#[derive(Debug, Clone)]
pub struct PolicyItem {
    /// `ratelimit-policy: "name";q=N;w=W` then `tail`.
    policy: Box<[u8]>,
    /// Where `;w=` starts in `policy`.
    head_end: usize,
    /// The `W` rendered in `policy`.
    window_s: u64,
    /// `;qu="content-bytes"` or empty.
    tail: &'static str,
    /// `\r\nratelimit: "name";r=`
    state: Box<[u8]>,
}

impl PolicyItem {
    /// The items of policy `name` with quota (or burst) `quota`, prepared for a `w` of `window_s`
    /// (others are formatted when pushed).
    pub fn new(name: &str, quota: u64, window_s: u64, bytes: bool) -> PolicyItem {
        let window_s = window_s.max(1);
        let tail = if bytes { ";qu=\"content-bytes\"" } else { "" };
        let head = format!("ratelimit-policy: \"{name}\";q={quota}");
        PolicyItem {
            policy: format!("{head};w={window_s}{tail}").into_bytes().into(),
            head_end: head.len(),
            window_s,
            tail,
            state: format!("\r\nratelimit: \"{name}\";r=").into_bytes().into(),
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
        f.push(&PolicyItem::new("per_client", 200, 2, false), 2, 57, 1);
        f.push(
            &PolicyItem::new("daily_bytes", 1 << 30, 86_400, true),
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

    #[test]
    fn a_window_other_than_the_prepared_one_is_formatted() {
        let monthly = PolicyItem::new("monthly", 100, 31 * 86_400, true);
        let burst = PolicyItem::new("b", 5, 0, false);
        for first in [false, true] {
            let mut f = Fields::default();
            if !first {
                f.push(&burst, 0, 4, 0);
            }
            f.push(&monthly, 30 * 86_400, 7, 9);
            let mut out = Vec::new();
            f.write(&mut out, None);
            let lead = if first { "" } else { "\"b\";q=5;w=1, " };
            let state = if first { "" } else { "\"b\";r=4;t=0, " };
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!(
                    "ratelimit-policy: {lead}\"monthly\";q=100;w=2592000;qu=\"content-bytes\"\r\n\
                     ratelimit: {state}\"monthly\";r=7;t=9\r\n"
                )
            );
        }
    }
}
