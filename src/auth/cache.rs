//! Per-worker cache of verification results, so a repeat caller costs one hash lookup instead of a
//! signature check, a Redis round trip or an introspection call.
//!
//! Keyed by the credential itself (compared in full, so two credentials can never share an entry),
//! hashed with the process's random SipHash keys. Each entry expires at its own time: a token's
//! `exp`, the policy's TTL cap, or a short negative TTL for refusals. Bounded: when full, expired
//! entries are swept; if none expired, an arbitrary entry is evicted. Memory per entry is the
//! credential's length plus the identity (a few hundred bytes for a typical JWT).

use std::collections::HashMap;
use std::rc::Rc;

use super::identity::Identity;
use super::jwt::Reject;

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub type Verdict = Result<Rc<Identity>, Reject>;

struct Entry {
    verdict: Verdict,
    until_ms: u64,
}

pub struct Cache {
    map: HashMap<Box<[u8]>, Entry>,
    cap: usize,
}

impl Cache {
    pub fn new(cap: usize) -> Self {
        Cache {
            map: HashMap::with_capacity(cap.min(1024)),
            cap,
        }
    }

    /// A live entry for this credential.
    pub fn get(&mut self, key: &[u8], now_ms: u64) -> Option<Verdict> {
        let e = self.map.get(key)?;
        if e.until_ms > now_ms {
            return Some(e.verdict.clone());
        }
        self.map.remove(key);
        None
    }

    pub fn put(&mut self, key: &[u8], verdict: Verdict, until_ms: u64, now_ms: u64) {
        if self.cap == 0 || until_ms <= now_ms {
            return;
        }
        if self.map.len() >= self.cap && !self.map.contains_key(key) {
            self.map.retain(|_, e| e.until_ms > now_ms);
            if self.map.len() >= self.cap {
                if let Some(k) = self.map.keys().next().cloned() {
                    self.map.remove(&k);
                }
            }
        }
        self.map.insert(key.into(), Entry { verdict, until_ms });
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_and_bound() {
        let mut c = Cache::new(2);
        let id = Rc::new(Identity::default());
        c.put(b"a", Ok(id.clone()), 100, 0);
        c.put(b"b", Err(Reject::Expired), 50, 0);
        assert!(c.get(b"a", 10).is_some());
        assert_eq!(c.get(b"b", 60), None, "expired");
        c.put(b"b", Ok(id.clone()), 100, 0);
        c.put(b"c", Ok(id), 100, 0);
        assert_eq!(c.len(), 2, "bounded");
        assert!(c.get(b"c", 10).is_some());
        c.put(b"d", Err(Reject::Expired), 5, 10);
        assert!(
            c.get(b"d", 10).is_none(),
            "already expired entries are not stored"
        );
    }
}
