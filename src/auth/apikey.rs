//! API keys: the gateway stores only SHA-256 digests and finds a presented key by its digest.
//!
//! Lookup hashes the presented key, then compares that digest with every configured digest in
//! constant time (no early exit, no map probe whose timing depends on the secret), so response
//! timing says nothing about how close a guess was. With the usual handful to a few thousand keys
//! this costs well under a microsecond more than a map lookup, and results are cached per worker
//! anyway.

use ring::digest;

use crate::config::auth::{ApiKeys, Consumer};

/// SHA-256 of a key, as stored in config (`sha256 = "<hex>"`).
pub fn digest(key: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, key);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Constant-time equality of two digests.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for i in 0..32 {
        diff |= a[i] ^ b[i];
    }
    // black_box keeps the compiler from turning the fold into an early exit
    std::hint::black_box(diff) == 0
}

/// The consumer owning `key`, if any.
pub fn find<'a>(keys: &'a ApiKeys, key: &[u8]) -> Option<&'a Consumer> {
    let d = digest(key);
    let mut found = None;
    for (h, c) in &keys.keys {
        if ct_eq(h, &d) && found.is_none() {
            found = Some(c);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_by_digest() {
        let c = |id: &str| Consumer {
            id: id.into(),
            tenant: None,
            tier: Some("free".into()),
        };
        let keys = ApiKeys {
            keys: vec![(digest(b"k-one"), c("one")), (digest(b"k-two"), c("two"))],
        };
        assert_eq!(find(&keys, b"k-two").map(|c| c.id.as_str()), Some("two"));
        assert!(find(&keys, b"k-three").is_none());
        assert!(find(&keys, b"").is_none());
        // the digest of "abc" (FIPS 180-2 example)
        let hex: String = digest(b"abc").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
