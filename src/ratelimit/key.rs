//! Limit keys: a request's value for a policy's `key` parts, as text and as a fingerprint.
//!
//! The text (`consumer=alice`, `ip=10.0.0.7|header=mobile`) is written into a per-worker scratch
//! buffer, so building a key does not allocate; the fingerprint is a seeded foldhash (quality
//! variant) of the policy index and that text. Fingerprints index the gateway-wide tables; the
//! text names the Redis key of a cluster-scoped budget (hashed with SHA-256 when long or not
//! printable).
//!
//! **Performance and DoS.** The fingerprint runs on every limited request, so it is a folded
//! multiply over 8-byte words rather than SipHash (keyed SipHash-1-3 was about a fifth of an
//! `admit` in `benches/ratelimit_hot.rs`).
//! [`foldhash`] is the hash hashbrown ships by default (already in our dependency tree). Its seeds
//! are random per process, so an attacker who cannot read fingerprints cannot aim collisions at a
//! victim's bucket or at one table probe chain. Unlike SipHash it makes no claim against an
//! attacker who recovers the seed by observing hash outputs (directly or through timing); the
//! limiter never puts a fingerprint in a response.

use std::hash::{BuildHasher, Hasher};

use foldhash::quality::RandomState;

use crate::auth::identity::Identity;
use crate::config::limits::KeyPart;
use crate::router::HeaderSource;

/// Longest key text used as is in a Redis key; longer ones are hashed.
const MAX_PLAIN_KEY: usize = 128;

/// What a key is made of for one request.
pub struct KeyInput<'a> {
    pub headers: &'a dyn HeaderSource,
    pub client_ip: &'a [u8],
    pub identity: Option<&'a Identity>,
    pub route: &'a str,
}

/// Writes the key text of `parts` for `input` into `out` (cleared first).
pub fn write_text(parts: &[KeyPart], input: &KeyInput<'_>, out: &mut Vec<u8>) {
    out.clear();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b'|');
        }
        // each arm copies its constant label itself: a fixed-size copy is a store, not a call
        let value: &[u8] = match part {
            KeyPart::Consumer => {
                out.extend_from_slice(b"consumer=");
                input
                    .identity
                    .and_then(|id| id.consumer.as_deref())
                    .unwrap_or("")
                    .as_bytes()
            }
            KeyPart::Tenant => {
                out.extend_from_slice(b"tenant=");
                input
                    .identity
                    .and_then(|id| id.tenant.as_deref())
                    .unwrap_or("")
                    .as_bytes()
            }
            KeyPart::ClientIp => {
                out.extend_from_slice(b"ip=");
                input.client_ip
            }
            KeyPart::Header(name) => {
                out.extend_from_slice(b"header=");
                input.headers.header(name.as_bytes()).unwrap_or(b"")
            }
            KeyPart::Route => {
                out.extend_from_slice(b"route=");
                input.route.as_bytes()
            }
            KeyPart::Global => {
                out.extend_from_slice(b"global");
                b""
            }
        };
        out.extend_from_slice(value);
    }
}

/// The per-process random seed of fingerprints.
#[derive(Default)]
pub struct Fingerprinter(RandomState);

impl Fingerprinter {
    /// A non-zero fingerprint of `text` under policy `policy`.
    #[inline]
    pub fn of(&self, policy: usize, text: &[u8]) -> u64 {
        let mut h = self.0.build_hasher();
        h.write_usize(policy);
        h.write(text);
        h.finish().max(1)
    }
}

/// Appends `text` to a Redis key: as is when short and printable, else a SHA-256 digest.
pub fn push_redis_key(out: &mut Vec<u8>, text: &[u8]) {
    let plain = text.len() <= MAX_PLAIN_KEY && text.iter().all(|b| (0x21..0x7f).contains(b));
    if plain {
        out.extend_from_slice(text);
        return;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, text);
    out.push(b'#');
    for b in &digest.as_ref()[..16] {
        out.extend_from_slice(format!("{b:02x}").as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct H(&'static [(&'static [u8], &'static [u8])]);
    impl HeaderSource for H {
        fn header(&self, name: &[u8]) -> Option<&[u8]> {
            self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        }
    }

    #[test]
    fn composite_keys_name_every_part() {
        let id = Identity {
            consumer: Some("alice".into()),
            tenant: Some("acme".into()),
            ..Default::default()
        };
        let input = KeyInput {
            headers: &H(&[(b"x-app", b"mobile")]),
            client_ip: b"10.0.0.7",
            identity: Some(&id),
            route: "users",
        };
        let mut out = Vec::new();
        let parts = [
            KeyPart::Consumer,
            KeyPart::ClientIp,
            KeyPart::Header("x-app".into()),
            KeyPart::Route,
            KeyPart::Tenant,
        ];
        write_text(&parts, &input, &mut out);
        assert_eq!(
            out,
            b"consumer=alice|ip=10.0.0.7|header=mobile|route=users|tenant=acme"
        );
        write_text(&[KeyPart::Header("x-none".into())], &input, &mut out);
        assert_eq!(out, b"header=", "absent header: one shared empty key");
        write_text(&[KeyPart::Global], &input, &mut out);
        assert_eq!(out, b"global");
    }

    #[test]
    fn fingerprints_separate_policies_and_keys() {
        let f = Fingerprinter::default();
        assert_eq!(f.of(0, b"ip=1"), f.of(0, b"ip=1"));
        assert_ne!(f.of(0, b"ip=1"), f.of(1, b"ip=1"));
        assert_ne!(f.of(0, b"ip=1"), f.of(0, b"ip=2"));
        assert_ne!(f.of(0, b""), 0);
    }

    #[test]
    fn redis_keys_stay_short_and_printable() {
        let mut out = b"p:".to_vec();
        push_redis_key(&mut out, b"consumer=alice");
        assert_eq!(out, b"p:consumer=alice");
        let mut out = Vec::new();
        push_redis_key(&mut out, b"header=a b");
        assert_eq!(out.len(), 33);
        assert!(out.starts_with(b"#"));
        let mut long = Vec::new();
        push_redis_key(&mut long, &[b'x'; 500]);
        assert_eq!(long.len(), 33);
    }
}
