//! Cluster-scoped budgets in Redis: one atomic Lua script per lease, batched so Redis sees a small
//! fraction of requests.
//!
//! Rate limits keep the same GCRA state as `gcra.rs` (a `tat`, in microseconds of Redis's own
//! `TIME`, so gateway clocks never need to agree). Quotas keep one integer counter per key and
//! window, with a TTL just past the window. Each call returns what the caller needs for the
//! response headers (remaining, time to full or to the window's end). Every function here is one
//! round trip; callers decide what a failure means (`RedisError::is_unavailable` -> local shares).

use crate::redis::{script_sha1_hex, RedisClient, RedisError, Value};

use super::gcra::Shape;

/// GCRA lease (ARGV[4] >= 1) or give-back of -ARGV[4] tokens (ARGV[4] < 0).
/// ARGV: interval ns, tau ns, want, min. Returns {granted, wait µs, remaining, µs until full}.
const RATE_SCRIPT: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local T = tonumber(ARGV[1]) / 1000
local tau = tonumber(ARGV[2]) / 1000
local want = tonumber(ARGV[3])
local min = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local function store(v)
  if v <= now then
    redis.call('DEL', KEYS[1])
  else
    redis.call('SET', KEYS[1], string.format('%.1f', v), 'PX', math.ceil((v - now) / 1000) + 1)
  end
end
if min < 0 then
  local back = math.max(tat + min * T, math.min(tat, now))
  if back < tat then store(back) end
  return {0, 0, 0, 0}
end
local base = math.max(tat, now)
local avail = math.floor((now + tau - base) / T)
if avail < 0 then avail = 0 end
if avail < min then
  return {0, math.ceil(base + min * T - tau - now), avail, math.ceil(base - now)}
end
local grant = math.min(want, avail)
local new = base + grant * T
store(new)
return {grant, 0, avail - grant, math.ceil(new - now)}
"#;

/// Quota counter. ARGV: mode (lease | add | refund), n, limit, ttl seconds.
/// Returns {granted, used after}.
const QUOTA_SCRIPT: &str = r#"
local n = tonumber(ARGV[2])
local used = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if ARGV[1] == 'lease' then
  local left = tonumber(ARGV[3]) - used
  if left < 1 then return {0, used} end
  local g = math.min(n, left)
  used = redis.call('INCRBY', KEYS[1], g)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
  return {g, used}
elseif ARGV[1] == 'add' then
  used = redis.call('INCRBY', KEYS[1], n)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
  return {n, used}
end
if used > 0 then used = redis.call('DECRBY', KEYS[1], math.min(n, used)) end
return {0, used}
"#;

/// The scripts' SHA-1s, computed once.
pub struct Scripts {
    rate: String,
    quota: String,
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts {
            rate: script_sha1_hex(RATE_SCRIPT),
            quota: script_sha1_hex(QUOTA_SCRIPT),
        }
    }
}

/// A rate-limit lease's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLease {
    pub granted: u64,
    /// When nothing was granted: ns until `min` tokens will be there.
    pub wait_ns: u64,
    /// Tokens left in the shared bucket after the grant.
    pub remaining: u64,
    /// ns until the shared bucket is full again.
    pub full_in_ns: u64,
}

fn ints(v: &Value, n: usize) -> Result<Vec<u64>, RedisError> {
    let bad = || RedisError::Protocol("unexpected reply from a limit script".into());
    match v {
        Value::Array(items) if items.len() >= n => items[..n]
            .iter()
            .map(|i| i.as_int().map(|x| x.max(0) as u64).ok_or_else(bad))
            .collect(),
        _ => Err(bad()),
    }
}

/// Leases up to `want` (at least `min`) tokens of the bucket at `key`.
pub async fn rate_lease(
    redis: &RedisClient,
    scripts: &Scripts,
    key: &[u8],
    shape: &Shape,
    want: u64,
    min: u64,
) -> Result<RateLease, RedisError> {
    let (mut a, mut b, mut c, mut d) = (
        itoa::Buffer::new(),
        itoa::Buffer::new(),
        itoa::Buffer::new(),
        itoa::Buffer::new(),
    );
    let args: [&[u8]; 4] = [
        a.format(shape.interval).as_bytes(),
        b.format(shape.tau).as_bytes(),
        c.format(want).as_bytes(),
        d.format(min.max(1)).as_bytes(),
    ];
    let v = redis
        .eval_cached(&scripts.rate, RATE_SCRIPT, &[key], &args)
        .await?;
    let r = ints(&v, 4)?;
    Ok(RateLease {
        granted: r[0],
        wait_ns: r[1].saturating_mul(1000),
        remaining: r[2],
        full_in_ns: r[3].saturating_mul(1000),
    })
}

/// Gives `tokens` unused tokens back to the bucket at `key`.
pub async fn rate_return(
    redis: &RedisClient,
    scripts: &Scripts,
    key: &[u8],
    shape: &Shape,
    tokens: u64,
) -> Result<(), RedisError> {
    let (mut a, mut b, mut c) = (
        itoa::Buffer::new(),
        itoa::Buffer::new(),
        itoa::Buffer::new(),
    );
    let args: [&[u8]; 4] = [
        a.format(shape.interval).as_bytes(),
        b.format(shape.tau).as_bytes(),
        b"0",
        c.format(-(tokens.min(i64::MAX as u64) as i64)).as_bytes(),
    ];
    redis
        .eval_cached(&scripts.rate, RATE_SCRIPT, &[key], &args)
        .await
        .map(|_| ())
}

/// What a quota call does.
#[derive(Debug, Clone, Copy)]
pub enum QuotaOp {
    /// Take up to n units while under the limit.
    Lease { limit: u64 },
    /// Count n units whatever the limit (bytes already sent, usage during an outage).
    Add,
    /// Give back n leased, unused units.
    Refund,
}

/// Runs `op` for `n` units on the counter at `key` (expiring `ttl_s` from now): (granted, used).
pub async fn quota(
    redis: &RedisClient,
    scripts: &Scripts,
    key: &[u8],
    op: QuotaOp,
    n: u64,
    ttl_s: u64,
) -> Result<(u64, u64), RedisError> {
    let (mut a, mut b, mut c) = (
        itoa::Buffer::new(),
        itoa::Buffer::new(),
        itoa::Buffer::new(),
    );
    let (mode, limit): (&[u8], u64) = match op {
        QuotaOp::Lease { limit } => (b"lease", limit),
        QuotaOp::Add => (b"add", 0),
        QuotaOp::Refund => (b"refund", 0),
    };
    let args: [&[u8]; 4] = [
        mode,
        a.format(n).as_bytes(),
        b.format(limit).as_bytes(),
        c.format(ttl_s.max(1)).as_bytes(),
    ];
    let v = redis
        .eval_cached(&scripts.quota, QUOTA_SCRIPT, &[key], &args)
        .await?;
    let r = ints(&v, 2)?;
    Ok((r[0], r[1]))
}
