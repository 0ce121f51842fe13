//! The response cache's shared tier in Redis (`cache = { shared = "redis", ... }`): one copy of
//! each entry for every core and every node, behind each worker's own store.
//!
//! Owns the entry's wire form ([`encode`] / [`decode`]), and the Redis side of lookups, fills and
//! purges. Data flow: a worker that misses in its own store asks Redis (`GET`) before the
//! upstream; a hit is checked against the request's Vary values, aged by the time it spent in
//! Redis, put in the worker's store and served. A fill goes to Redis in the background (`SET ..
//! EX` for as long as the entry may be served, stale windows included; its tags in sets), never
//! delaying the response. A purge deletes the matching Redis keys (`SCAN MATCH` / tag sets) and
//! appends itself to a purge log (`INCR` a sequence, the purge under that number); every worker of
//! every node polls the sequence once a second ([`poll_purges`]) and applies what it has not seen
//! to its own store. Redis down: lookups miss, fills and purges are dropped; each worker keeps
//! serving from its own store.
//!
//! Keys: `{key_prefix}cache:{entry key}` (the entry key starts with the path, so path and prefix
//! purges are key-pattern scans), `{key_prefix}cache-tag:{tag}`, `{key_prefix}cache-purge-seq`,
//! `{key_prefix}cache-purge:{n}`.

use std::time::Instant;

use super::freshness::Freshness;
use super::store::VaryPair;
use super::{Purge, Stored};
use crate::http::head::{parse_response, ResponseHead};
use crate::redis::{RedisClient, Value};

const MAGIC: &[u8; 4] = b"CGC1";
/// Largest response head a decoded entry may have.
const MAX_HEAD: usize = 64 * 1024;
/// How long a purge stays in the log for nodes to pick up.
const PURGE_LOG_SECS: u64 = 600;

/// An entry read back from Redis.
pub struct Shared {
    pub vary: Vec<VaryPair>,
    pub tags: Vec<Box<[u8]>>,
    pub fresh: Freshness,
    pub value: Stored,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

/// The wire form of an entry: its freshness (ages as of now), Vary values, tags, head and body.
pub fn encode(vary: &[VaryPair], tags: &[Box<[u8]>], f: &Freshness, st: &Stored) -> Vec<u8> {
    let now = Instant::now();
    let mut out = Vec::with_capacity(64 + st.head.len() + st.body.len());
    out.extend_from_slice(MAGIC);
    for n in [
        unix_now(),
        f.age(now),
        f.lifetime,
        f.stale_while_revalidate,
        f.stale_if_error,
    ] {
        out.extend_from_slice(&n.to_be_bytes());
    }
    out.push(u8::from(f.must_revalidate));
    out.extend_from_slice(&(vary.len() as u32).to_be_bytes());
    for (name, value) in vary {
        put_bytes(&mut out, name);
        match value {
            Some(v) => {
                out.push(1);
                put_bytes(&mut out, v);
            }
            None => out.push(0),
        }
    }
    out.extend_from_slice(&(tags.len() as u32).to_be_bytes());
    for t in tags {
        put_bytes(&mut out, t);
    }
    put_bytes(&mut out, &st.head);
    out.extend_from_slice(&st.body);
    out
}

/// A cursor over the wire form; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<usize> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?) as usize)
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()?;
        self.take(n)
    }
}

/// Reads an entry back (None for anything malformed: a foreign or corrupt value is a miss).
pub fn decode(b: &[u8]) -> Option<Shared> {
    let mut r = Reader(b);
    if r.take(4)? != MAGIC {
        return None;
    }
    let (written, age) = (r.u64()?, r.u64()?);
    let (lifetime, swr, sie) = (r.u64()?, r.u64()?, r.u64()?);
    let must_revalidate = r.take(1)?[0] == 1;
    let mut vary = Vec::new();
    for _ in 0..r.u32()?.min(64) {
        let name = r.bytes()?.into();
        let value = match r.take(1)?[0] {
            1 => Some(r.bytes()?.into()),
            _ => None,
        };
        vary.push((name, value));
    }
    let mut tags = Vec::new();
    for _ in 0..r.u32()?.min(256) {
        tags.push(r.bytes()?.into());
    }
    let head: Box<[u8]> = r.bytes()?.into();
    if head.len() > MAX_HEAD {
        return None;
    }
    let mut resp = ResponseHead::default();
    parse_response(&head, MAX_HEAD, false, &mut resp).ok()??;
    let fresh = Freshness {
        stored_at: Instant::now(),
        // the time it spent in Redis counts
        initial_age: age.saturating_add(unix_now().saturating_sub(written)),
        lifetime,
        stale_while_revalidate: swr,
        stale_if_error: sie,
        must_revalidate,
    };
    Some(Shared {
        vary,
        tags,
        fresh,
        value: Stored {
            head,
            resp,
            body: r.0.into(),
        },
    })
}

fn entry_key(prefix: &str, key: &[u8]) -> Vec<u8> {
    [prefix.as_bytes(), b"cache:", key].concat()
}

/// The entry for `key` in Redis, when there is one.
pub async fn fetch(redis: &RedisClient, prefix: &str, key: &[u8]) -> Option<Shared> {
    let v = redis.get(&entry_key(prefix, key)).await.ok()??;
    decode(&v)
}

/// Writes an entry (and its tags) for `ttl` seconds; errors are dropped (the worker's own store
/// has it).
pub async fn put(
    redis: &RedisClient,
    prefix: &str,
    key: &[u8],
    bytes: Vec<u8>,
    tags: Vec<Box<[u8]>>,
    ttl: u64,
) {
    let k = entry_key(prefix, key);
    if redis.set_ex(&k, &bytes, ttl.max(1)).await.is_err() {
        return;
    }
    let ttl_text = ttl.max(1).to_string();
    for t in tags {
        let tk = [prefix.as_bytes(), b"cache-tag:", &t].concat();
        let _ = redis.cmd(&[b"SADD", &tk, &k]).await;
        // the set lives as long as its latest member
        let _ = redis.cmd(&[b"EXPIRE", &tk, ttl_text.as_bytes()]).await;
    }
}

/// Escapes glob metacharacters for `SCAN MATCH`.
fn glob_escape(b: &[u8], out: &mut Vec<u8>) {
    for &c in b {
        if matches!(c, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(c);
    }
}

/// Deletes every key matching `pattern`; how many went.
async fn delete_matching(redis: &RedisClient, pattern: &[u8]) -> usize {
    let (mut cursor, mut n) = (b"0".to_vec(), 0);
    loop {
        let Ok(Value::Array(reply)) = redis
            .cmd(&[b"SCAN", &cursor, b"MATCH", pattern, b"COUNT", b"500"])
            .await
        else {
            return n;
        };
        let mut it = reply.into_iter();
        let (Some(Value::Bulk(next)), Some(Value::Array(keys))) = (it.next(), it.next()) else {
            return n;
        };
        for k in keys.iter().filter_map(Value::as_bytes) {
            if let Ok(d) = redis.del(k).await {
                n += d as usize;
            }
        }
        if next == b"0" {
            return n;
        }
        cursor = next;
    }
}

/// Removes what `p` names from Redis and logs the purge for every node; how many entries went.
pub async fn purge(redis: &RedisClient, prefix: &str, p: &Purge) -> usize {
    let base = [prefix.as_bytes(), b"cache:"].concat();
    let mut pattern = base.clone();
    let n = match p {
        Purge::Path(path) => {
            glob_escape(path, &mut pattern);
            pattern.extend_from_slice(b"\0*");
            delete_matching(redis, &pattern).await
        }
        Purge::Prefix(path) => {
            glob_escape(path, &mut pattern);
            pattern.push(b'*');
            delete_matching(redis, &pattern).await
        }
        Purge::All => {
            pattern.push(b'*');
            delete_matching(redis, &pattern).await
        }
        Purge::Tag(tag) => {
            let tk = [prefix.as_bytes(), b"cache-tag:", tag].concat();
            let mut n = 0;
            if let Ok(Value::Array(keys)) = redis.cmd(&[b"SMEMBERS", &tk]).await {
                for k in keys.iter().filter_map(Value::as_bytes) {
                    n += redis.del(k).await.unwrap_or(0) as usize;
                }
            }
            let _ = redis.del(&tk).await;
            n
        }
    };
    // the log other nodes' workers poll
    let seq_key = [prefix.as_bytes(), b"cache-purge-seq"].concat();
    if let Ok(seq) = redis.incr_by(&seq_key, 1).await {
        let k = [
            prefix.as_bytes(),
            b"cache-purge:",
            seq.to_string().as_bytes(),
        ]
        .concat();
        let _ = redis.set_ex(&k, &encode_purge(p), PURGE_LOG_SECS).await;
    }
    n
}

fn encode_purge(p: &Purge) -> Vec<u8> {
    let (kind, arg): (u8, &[u8]) = match p {
        Purge::Path(a) => (b'p', a),
        Purge::Prefix(a) => (b'f', a),
        Purge::Tag(a) => (b't', a),
        Purge::All => (b'a', b""),
    };
    [&[kind][..], arg].concat()
}

fn decode_purge(b: &[u8]) -> Option<Purge> {
    let (&kind, arg) = b.split_first()?;
    Some(match kind {
        b'p' => Purge::Path(arg.to_vec()),
        b'f' => Purge::Prefix(arg.to_vec()),
        b't' => Purge::Tag(arg.to_vec()),
        b'a' => Purge::All,
        _ => return None,
    })
}

/// Whether a generation has a route whose cache is shared, and the Redis to share it in.
fn shared_redis(g: &crate::runtime::worker::Generation) -> Option<(RedisClient, String)> {
    let shared = g
        .cfg
        .routes
        .iter()
        .any(|r| r.cache.as_ref().is_some_and(|c| c.shared));
    let redis = g.ratelimit.redis()?.clone();
    let prefix = g.cfg.redis.as_ref()?.key_prefix.clone();
    shared.then_some((redis, prefix))
}

/// Carries an admin purge to Redis (entries and log) off the control path.
pub fn purge_in_background(g: &crate::runtime::worker::Generation, what: Purge) {
    if let Some((redis, prefix)) = shared_redis(g) {
        monoio::spawn(async move {
            purge(&redis, &prefix, &what).await;
        });
    }
}

/// How often a worker looks at the purge log.
const PURGE_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// A worker's task: applies purges other nodes (or this one) logged to its own store, once a
/// second, while its generation shares a cache.
pub async fn follow_purges(cur: std::rc::Rc<crate::runtime::worker::Current>) {
    let mut seen: Option<i64> = None;
    let mut first = true;
    loop {
        if !std::mem::take(&mut first) {
            monoio::time::sleep(PURGE_POLL).await;
        }
        let g = cur.get();
        let Some((redis, prefix)) = shared_redis(&g) else {
            seen = None;
            continue;
        };
        let Some(from) = seen else {
            // start at the log's end: older purges were applied before this worker's entries
            seen = purge_seq(&redis, &prefix).await;
            continue;
        };
        let (upto, purges) = poll_purges(&redis, &prefix, from).await;
        seen = Some(upto);
        for p in purges {
            g.cache.purge(&p);
        }
        let st = g.cache.store.borrow();
        if let Some(st) = st.as_ref() {
            g.stats.cache_bytes.set(st.bytes() as i64);
            g.stats.cache_entries.set(st.len() as i64);
        }
    }
}

/// The purge log's sequence now (0 when Redis has none or cannot be reached).
pub async fn purge_seq(redis: &RedisClient, prefix: &str) -> Option<i64> {
    let seq_key = [prefix.as_bytes(), b"cache-purge-seq"].concat();
    match redis.get(&seq_key).await {
        Ok(Some(v)) => std::str::from_utf8(&v).ok()?.parse().ok(),
        Ok(None) => Some(0),
        Err(_) => None,
    }
}

/// The purges logged after `seen` (and the sequence they end at).
pub async fn poll_purges(redis: &RedisClient, prefix: &str, seen: i64) -> (i64, Vec<Purge>) {
    let Some(seq) = purge_seq(redis, prefix).await else {
        return (seen, Vec::new());
    };
    let mut out = Vec::new();
    // a node that was away long may have missed some: at most the last 1000
    for s in (seen + 1).max(seq - 1000)..=seq {
        let k = [prefix.as_bytes(), b"cache-purge:", s.to_string().as_bytes()].concat();
        if let Ok(Some(v)) = redis.get(&k).await {
            out.extend(decode_purge(&v));
        }
    }
    (seq.max(seen), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_junk_is_a_miss() {
        let head =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n";
        let mut resp = ResponseHead::default();
        parse_response(head, MAX_HEAD, false, &mut resp)
            .unwrap()
            .unwrap();
        let st = Stored {
            head: head[..].into(),
            resp,
            body: b"{}"[..].into(),
        };
        let f = Freshness {
            stored_at: Instant::now(),
            initial_age: 5,
            lifetime: 60,
            stale_while_revalidate: 10,
            stale_if_error: 300,
            must_revalidate: false,
        };
        let vary: Vec<VaryPair> = vec![
            (b"accept-language"[..].into(), Some(b"fr"[..].into())),
            (b"x-absent"[..].into(), None),
        ];
        let tags: Vec<Box<[u8]>> = vec![b"products"[..].into()];
        let wire = encode(&vary, &tags, &f, &st);
        let back = decode(&wire).unwrap();
        assert_eq!(back.vary, vary);
        assert_eq!(back.tags, tags);
        assert_eq!(&back.value.body[..], b"{}");
        assert_eq!(
            back.value.header(b"content-type"),
            Some(&b"application/json"[..])
        );
        assert_eq!((back.fresh.lifetime, back.fresh.stale_if_error), (60, 300));
        assert!(back.fresh.initial_age >= 5);
        for cut in 0..wire.len() - 2 {
            assert!(decode(&wire[..cut]).is_none(), "truncated at {cut}");
        }
        assert!(decode(b"junk").is_none());
        for p in [
            Purge::Path(b"/a".to_vec()),
            Purge::Prefix(b"/b".to_vec()),
            Purge::Tag(b"t".to_vec()),
            Purge::All,
        ] {
            assert_eq!(decode_purge(&encode_purge(&p)), Some(p));
        }
        let mut g = Vec::new();
        glob_escape(b"/a*b?[c]\\", &mut g);
        assert_eq!(g, b"/a\\*b\\?\\[c\\]\\\\");
    }
}
