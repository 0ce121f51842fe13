//! Cluster-scope circuit breakers (`[upstream.circuit_breaker] scope = "cluster"`): a trip on any
//! worker of any gateway node opens the breaker everywhere, through Redis.
//!
//! Owns [`sync`], which each worker runs every [`SYNC_INTERVAL`] off the request path. Data flow:
//! a breaker that trips locally notes its open time (`Breaker::take_trip`); the next sync writes
//! `SET <key_prefix>breaker:<upstream> 1 PX <open ms>`, so the key lives exactly as long as the trip.
//! Every sync also reads the key's `PTTL`; a key with time left opens this worker's breaker for
//! that long (`Breaker::force_open`) when it is not open already. Using the key's remaining time
//! instead of a timestamp keeps node clocks out of it. Half-open trials stay per worker: each
//! worker tries for itself once the shared open time is over, and a failed trial publishes a new,
//! longer trip.
//!
//! A trip reaches the other workers and nodes within one sync interval plus a Redis round trip.
//! The request path never waits on Redis; when Redis is unreachable each worker's breaker keeps
//! working on its own calls (logged once per outage).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::redis::{RedisClient, Value};
use crate::runtime::worker::Generation;

/// How often each worker publishes its trips and reads the others'.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// Redis was unreachable at the last sync (one log line per outage, for the process).
static DOWN: AtomicBool = AtomicBool::new(false);

/// The Redis key of `upstream`'s shared trip (after `[redis] key_prefix`).
fn key(prefix: &str, upstream: &str) -> Vec<u8> {
    format!("{prefix}breaker:{upstream}").into_bytes()
}

/// One sync of every cluster-scope breaker of `gen` on this worker.
pub async fn sync(gen: &Generation) {
    let (Some(redis), Some(cfg)) = (gen.ratelimit.redis(), &gen.cfg.redis) else {
        return;
    };
    for up in &gen.upstreams {
        let Some(b) = &up.breaker else {
            continue;
        };
        if !up.cfg.circuit_breaker.as_ref().is_some_and(|c| c.cluster) {
            continue;
        }
        let key = key(&cfg.key_prefix, &up.name);
        let trip = b.borrow_mut().take_trip();
        if let Err(e) = sync_one(redis, &key, trip, up).await {
            if !DOWN.swap(true, Ordering::AcqRel) {
                eprintln!(
                    "coregate: redis {} unreachable ({e}); circuit breakers with scope = \"cluster\" trip per worker until it is back",
                    redis.addr()
                );
            }
            // the trip is published at the next sync that reaches Redis
            if let Some(t) = trip {
                let mut b = b.borrow_mut();
                if b.state() == super::breaker::State::Open {
                    b.note_trip(t);
                }
            }
            return;
        }
    }
    if DOWN.swap(false, Ordering::AcqRel) {
        eprintln!(
            "coregate: redis {} reachable again; circuit breaker trips are shared again",
            redis.addr()
        );
    }
}

async fn sync_one(
    redis: &RedisClient,
    key: &[u8],
    trip: Option<Duration>,
    up: &super::UpstreamRt,
) -> Result<(), crate::redis::RedisError> {
    if let Some(open_for) = trip {
        let ms = open_for.as_millis().max(1).to_string();
        redis
            .cmd(&[b"SET", key, b"1", b"PX", ms.as_bytes()])
            .await?;
    }
    if let Value::Int(ms) = redis.cmd(&[b"PTTL", key]).await? {
        if ms > 0 {
            up.breaker_force_open(Instant::now(), Duration::from_millis(ms as u64));
        }
    }
    Ok(())
}
