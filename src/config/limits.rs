//! `[[rate_limit]]`, `[[quota]]`, `[tier.NAME]` and `[redis]`: raw TOML shape, validated model, and
//! the validation between the two.
//!
//! Flow: `validate.rs` hands the raw tables here before routes are validated; policies get indices
//! in file order and routes refer to them by name (`rate_limits = ["per_client"]`,
//! `quotas = ["daily"]`). Every problem is reported under its key path. The runtime
//! (`crate::ratelimit`) reads only the model types below.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use super::position::KeyPath;
use super::raw::DurationValue;
use super::units::{check_name, is_token, parse_size, resolve_addr};
use super::validate::Ctx;

/// What a limit counts requests by. A list in the config is a composite key (all parts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// The authenticated consumer (`Identity::consumer`); routes without auth may not use it.
    Consumer,
    /// The TCP peer's IP address.
    ClientIp,
    /// A request header's value, name lower-cased (`header:x-api-client`); absent = empty value.
    Header(String),
    /// The matched route's name.
    Route,
    /// The authenticated caller's tenant; routes without auth may not use it.
    Tenant,
    /// One bucket for everything.
    Global,
}

/// Where a budget lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// All cores of this process share it (lock-free atomics, leased per core).
    Gateway,
    /// All gateway processes share it through `[redis]`.
    Cluster,
}

/// `[[rate_limit]]`: a token bucket per key.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitPolicy {
    pub name: String,
    pub key: Vec<KeyPart>,
    /// Refill: `tokens` per `per` (`"100/s"` = 100 per second).
    pub tokens: u64,
    pub per: Duration,
    /// Bucket capacity B (default: the tokens of one `per`, at least 1).
    pub burst: u64,
    /// Tokens a request costs (routes may override with `cost`).
    pub cost: u64,
    pub scope: Scope,
    /// Cluster scope: fraction of rate and burst this node uses alone while Redis is unreachable
    /// (0 < share <= 1; default 1).
    pub local_share: f64,
    /// Distinct live keys the process keeps buckets for (beyond it, keys share buckets).
    pub max_keys: usize,
}

/// What a quota counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaUnit {
    Requests,
    /// Response body bytes sent to the client.
    Bytes,
}

/// Fixed quota windows, aligned to UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Minute,
    Hour,
    Day,
    Month,
}

/// `[[quota]]`: a counter per key per fixed window.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaPolicy {
    pub name: String,
    pub key: Vec<KeyPart>,
    /// Requests or bytes per window (`"10000/day"`, `"100GiB/month"`).
    pub limit: u64,
    pub unit: QuotaUnit,
    pub window: Window,
    pub scope: Scope,
    /// Cluster scope: fraction of the limit this node may use alone while Redis is unreachable.
    pub local_share: f64,
    pub max_keys: usize,
}

/// `[tier.NAME]`: the limits applied to consumers of that tier.
#[derive(Debug, Clone, PartialEq)]
pub struct TierConfig {
    pub name: String,
    /// Indices into `Config::rate_limits`.
    pub rate_limits: Vec<usize>,
    /// Indices into `Config::quotas`.
    pub quotas: Vec<usize>,
}

/// `[redis]`: the shared store for cluster-scoped limits and quotas. `Debug` hides the password.
#[derive(Clone, PartialEq)]
pub struct RedisConfig {
    pub addr: SocketAddr,
    pub db: Option<u32>,
    /// Read from the environment variable named by `password_env` at load time.
    pub password: Option<String>,
    /// The name of that variable (shown by admin `/config` instead of the password).
    pub password_env: Option<String>,
    /// Limit for each Redis round trip (and connect); past it the node falls back to local shares.
    pub timeout: Duration,
    /// Prefix of every key coregate writes.
    pub key_prefix: String,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("addr", &self.addr)
            .field("db", &self.db)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_env", &self.password_env)
            .field("timeout", &self.timeout)
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

/// One `[[rate_limit]]` table as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawRateLimit {
    pub name: Option<String>,
    pub key: Option<RawKey>,
    pub rate: Option<String>,
    pub burst: Option<i64>,
    pub cost: Option<i64>,
    pub scope: Option<String>,
    pub local_share: Option<ShareValue>,
    pub max_keys: Option<i64>,
}

/// One `[[quota]]` table as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawQuota {
    pub name: Option<String>,
    pub key: Option<RawKey>,
    pub limit: Option<String>,
    pub scope: Option<String>,
    pub local_share: Option<ShareValue>,
    pub max_keys: Option<i64>,
}

/// One `[tier.NAME]` table as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawTier {
    pub rate_limits: Option<Vec<String>>,
    pub quotas: Option<Vec<String>>,
}

/// `[redis]` as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawRedis {
    pub addr: Option<String>,
    pub db: Option<i64>,
    pub password_env: Option<String>,
    pub timeout: Option<DurationValue>,
    pub key_prefix: Option<String>,
}

/// `key`: one key part or a list of them.
#[derive(Debug)]
pub(crate) enum RawKey {
    One(String),
    Many(Vec<String>),
}

/// `local_share`: a TOML float or integer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShareValue(pub f64);

impl<'de> Deserialize<'de> for RawKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key like \"consumer\" or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawKey::One(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(RawKey::Many)
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for ShareValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ShareValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number like 0.5")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(ShareValue(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(ShareValue(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ShareValue(v as f64))
            }
        }
        deserializer.deserialize_any(V)
    }
}

const MAX_RATE: u64 = 1_000_000_000;
const MAX_BURST: u64 = 1_000_000_000_000;
const MAX_COST: u64 = 1_000_000_000;
const DEFAULT_MAX_KEYS: u64 = 100_000;
const MAX_KEYS: u64 = 100_000_000;
/// Largest quota limit plus one: 16 TiB (or 2^44 requests).
const LIMIT_CAP: u64 = 1 << 44;
const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(200);
const DEFAULT_KEY_PREFIX: &str = "coregate:";
const KEY_PARTS: &str = "consumer, client_ip, header:<name>, route, tenant or global";

/// The validated `[[rate_limit]]`, `[[quota]]`, `[tier.NAME]` and `[redis]` tables, and the names
/// routes refer to. A policy with an error is `None` (its name still resolves, so routes that use
/// it get no second error); `Config` is only built when there is no error, so then none is `None`.
pub(super) struct Limits {
    rate_limits: Vec<Option<RateLimitPolicy>>,
    quotas: Vec<Option<QuotaPolicy>>,
    tiers: Vec<TierConfig>,
    redis: Option<RedisConfig>,
    rate_names: BTreeMap<String, usize>,
    quota_names: BTreeMap<String, usize>,
}

impl Limits {
    /// Whether a valid `[redis]` section is there (cluster-scope breakers need one too).
    pub(super) fn has_redis(&self) -> bool {
        self.redis.is_some()
    }
}

/// What a route's `rate_limits`, `quotas` and `cost` keys resolve to.
pub(super) struct RouteLimits {
    pub rate_limits: Vec<usize>,
    pub quotas: Vec<usize>,
    pub cost: Option<u64>,
}

impl Limits {
    /// `(rate_limits, quotas, tiers, redis)` for `Config`.
    pub(super) fn into_model(
        self,
    ) -> (
        Vec<RateLimitPolicy>,
        Vec<QuotaPolicy>,
        Vec<TierConfig>,
        Option<RedisConfig>,
    ) {
        let rate_limits = self.rate_limits.into_iter().flatten().collect();
        let quotas = self.quotas.into_iter().flatten().collect();
        (rate_limits, quotas, self.tiers, self.redis)
    }
}

/// Validates every `[[rate_limit]]`, `[[quota]]`, `[tier.NAME]` and `[redis]`.
pub(super) fn limits(
    cx: &mut Ctx,
    rate_limits: Vec<RawRateLimit>,
    quotas: Vec<RawQuota>,
    tiers: BTreeMap<String, RawTier>,
    redis: Option<RawRedis>,
) -> Limits {
    let has_redis = redis.is_some();
    let redis = redis.and_then(|r| redis_config(cx, r));
    let mut rate_names = BTreeMap::new();
    let rate_limits = rate_limits
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let p = KeyPath::root().key("rate_limit").index(i);
            if let Some(name) = &r.name {
                cx.unique(&mut rate_names, &p, "rate_limit", name, i);
            }
            rate_limit(cx, &p, r, has_redis)
        })
        .collect();
    let mut quota_names = BTreeMap::new();
    let quotas = quotas
        .into_iter()
        .enumerate()
        .map(|(i, q)| {
            let p = KeyPath::root().key("quota").index(i);
            if let Some(name) = &q.name {
                cx.unique(&mut quota_names, &p, "quota", name, i);
            }
            quota(cx, &p, q, has_redis)
        })
        .collect();
    // A `BTreeMap` iterates in name order, which is the order `Config::tiers` keeps.
    let mut out_tiers = Vec::new();
    for (name, t) in tiers {
        let p = KeyPath::root().key("tier").key(&name);
        let name = cx.check(&p, check_name(&name).map(|_| name));
        let rate = refs(
            cx,
            &p.key("rate_limits"),
            "rate_limit",
            t.rate_limits,
            &rate_names,
        );
        let quota = refs(cx, &p.key("quotas"), "quota", t.quotas, &quota_names);
        if let Some(name) = name {
            out_tiers.push(TierConfig {
                name,
                rate_limits: rate.into_iter().map(|(_, i)| i).collect(),
                quotas: quota.into_iter().map(|(_, i)| i).collect(),
            });
        }
    }
    Limits {
        rate_limits,
        quotas,
        tiers: out_tiers,
        redis,
        rate_names,
        quota_names,
    }
}

/// A route's `rate_limits`, `quotas` and `cost`. `has_auth`: the route has an `auth` key.
pub(super) fn route_limits(
    cx: &mut Ctx,
    p: &KeyPath,
    has_auth: bool,
    rate_limits: Option<Vec<String>>,
    quotas: Option<Vec<String>>,
    cost: Option<i64>,
    limits: &Limits,
) -> RouteLimits {
    let rate = refs(
        cx,
        &p.key("rate_limits"),
        "rate_limit",
        rate_limits,
        &limits.rate_names,
    );
    let quota = refs(cx, &p.key("quotas"), "quota", quotas, &limits.quota_names);
    if !has_auth {
        for (jp, i) in &rate {
            if let Some(pol) = &limits.rate_limits[*i] {
                needs_auth(cx, jp, "rate_limit", &pol.name, &pol.key);
            }
        }
        for (jp, i) in &quota {
            if let Some(pol) = &limits.quotas[*i] {
                needs_auth(cx, jp, "quota", &pol.name, &pol.key);
            }
        }
    }
    let cp = p.key("cost");
    let cost = cost.and_then(|c| int_in(cx, &cp, Some(c), 1, 1, MAX_COST));
    if let Some(c) = cost {
        let too_small = rate
            .iter()
            .filter_map(|(_, i)| limits.rate_limits[*i].as_ref())
            .find(|pol| c > pol.burst);
        if let Some(pol) = too_small {
            let message = format!(
                "must not exceed burst of rate_limit \"{}\" ({})",
                pol.name, pol.burst
            );
            cx.err(cp, message);
        }
    }
    RouteLimits {
        rate_limits: rate.into_iter().map(|(_, i)| i).collect(),
        quotas: quota.into_iter().map(|(_, i)| i).collect(),
        cost,
    }
}

/// Consumer and tenant keys exist only for authenticated requests.
fn needs_auth(cx: &mut Ctx, p: &KeyPath, kind: &str, name: &str, key: &[KeyPart]) {
    let part = key.iter().find_map(|k| match k {
        KeyPart::Consumer => Some("consumer"),
        KeyPart::Tenant => Some("tenant"),
        _ => None,
    });
    if let Some(part) = part {
        let message =
            format!("{kind} \"{name}\" is keyed by {part}, which needs auth on this route");
        cx.err(p.clone(), message);
    }
}

/// A list of policy names (at `p`) -> (element path, index) of each known, first-listed one.
fn refs(
    cx: &mut Ctx,
    p: &KeyPath,
    kind: &str,
    names: Option<Vec<String>>,
    known: &BTreeMap<String, usize>,
) -> Vec<(KeyPath, usize)> {
    let mut out: Vec<(KeyPath, usize)> = Vec::new();
    for (j, name) in names.unwrap_or_default().into_iter().enumerate() {
        let jp = p.index(j);
        match known.get(&name) {
            None => cx.err(jp, format!("no {kind} named \"{name}\"")),
            Some(i) if out.iter().any(|(_, o)| o == i) => {
                cx.err(jp, format!("duplicate {kind} \"{name}\""))
            }
            Some(&i) => out.push((jp, i)),
        }
    }
    out
}

fn rate_limit(
    cx: &mut Ctx,
    p: &KeyPath,
    r: RawRateLimit,
    has_redis: bool,
) -> Option<RateLimitPolicy> {
    let name = policy_name(cx, p, r.name);
    let key = key(cx, p, r.key);
    let rp = p.key("rate");
    let rate = cx
        .required(rp.clone(), r.rate, "a rate like \"100/s\"")
        .and_then(|s| cx.check(&rp, parse_rate(&s)));
    let bp = p.key("burst");
    // Unknown (`None`) when invalid, or when defaulted from an invalid rate.
    let burst = match (r.burst, rate) {
        (None, Some((tokens, _))) => Some(tokens),
        (None, None) => None,
        (b, _) => int_in(cx, &bp, b, 1, 1, MAX_BURST),
    };
    let cp = p.key("cost");
    let cost = int_in(cx, &cp, r.cost, 1, 1, MAX_COST);
    if let (Some(c), Some(b)) = (cost, burst) {
        if c > b {
            cx.err(cp, format!("must not exceed burst ({b})"));
        }
    }
    let (scope, local_share, max_keys) =
        placement(cx, p, r.scope, r.local_share, r.max_keys, has_redis);
    let (tokens, per) = rate?;
    Some(RateLimitPolicy {
        name: name?,
        key: key?,
        tokens,
        per,
        burst: burst?,
        cost: cost?,
        scope: scope?,
        local_share: local_share?,
        max_keys: max_keys?,
    })
}

fn quota(cx: &mut Ctx, p: &KeyPath, q: RawQuota, has_redis: bool) -> Option<QuotaPolicy> {
    let name = policy_name(cx, p, q.name);
    let key = key(cx, p, q.key);
    let lp = p.key("limit");
    let expected = "a limit like \"10000/day\" or \"100GiB/month\"";
    let limit = cx
        .required(lp.clone(), q.limit, expected)
        .and_then(|s| cx.check(&lp, parse_quota_limit(&s)));
    let (scope, local_share, max_keys) =
        placement(cx, p, q.scope, q.local_share, q.max_keys, has_redis);
    let (limit, unit, window) = limit?;
    Some(QuotaPolicy {
        name: name?,
        key: key?,
        limit,
        unit,
        window,
        scope: scope?,
        local_share: local_share?,
        max_keys: max_keys?,
    })
}

fn policy_name(cx: &mut Ctx, p: &KeyPath, name: Option<String>) -> Option<String> {
    let np = p.key("name");
    cx.required(np.clone(), name, "a unique name like \"per_client\"")
        .and_then(|n| cx.check(&np, check_name(&n).map(|_| n)))
}

/// `scope`, `local_share` and `max_keys` (each `None` when invalid).
fn placement(
    cx: &mut Ctx,
    p: &KeyPath,
    scope: Option<String>,
    share: Option<ShareValue>,
    max_keys: Option<i64>,
    has_redis: bool,
) -> (Option<Scope>, Option<f64>, Option<usize>) {
    let sp = p.key("scope");
    let scope = match scope.as_deref() {
        None | Some("gateway") => Some(Scope::Gateway),
        Some("cluster") => {
            if !has_redis {
                cx.err(sp, "scope = \"cluster\" needs a [redis] section");
            }
            Some(Scope::Cluster)
        }
        Some(other) => {
            let message = format!("unknown scope \"{other}\" (expected gateway or cluster)");
            cx.err(sp, message);
            None
        }
    };
    let shp = p.key("local_share");
    let local_share = match share {
        None => Some(1.0),
        Some(ShareValue(x)) if !(x > 0.0 && x <= 1.0) => {
            cx.err(
                shp,
                format!("must be greater than 0 and at most 1, got {x}"),
            );
            None
        }
        Some(ShareValue(x)) => {
            if scope == Some(Scope::Gateway) {
                cx.err(shp, "only allowed with scope = \"cluster\"");
            }
            Some(x)
        }
    };
    let max_keys = int_in(
        cx,
        &p.key("max_keys"),
        max_keys,
        DEFAULT_MAX_KEYS,
        1,
        MAX_KEYS,
    )
    .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    (scope, local_share, max_keys)
}

/// An integer in `lo..=hi` (`default` when absent); `None` when out of range (recorded, in the
/// words of `Ctx::int`).
fn int_in(
    cx: &mut Ctx,
    p: &KeyPath,
    v: Option<i64>,
    default: u64,
    lo: u64,
    hi: u64,
) -> Option<u64> {
    match v {
        None => Some(default),
        Some(n) => match u64::try_from(n) {
            Ok(n) if (lo..=hi).contains(&n) => Some(n),
            _ => {
                cx.err(p.clone(), format!("must be between {lo} and {hi}, got {n}"));
                None
            }
        },
    }
}

/// `key = "consumer"` or `key = ["consumer", "header:x-app"]`.
fn key(cx: &mut Ctx, p: &KeyPath, v: Option<RawKey>) -> Option<Vec<KeyPart>> {
    let kp = p.key("key");
    let expected = format!("{KEY_PARTS}, or a list of them");
    let items: Vec<(KeyPath, String)> = match cx.required(kp.clone(), v, &expected)? {
        RawKey::One(s) => vec![(kp, s)],
        RawKey::Many(list) if list.is_empty() => {
            cx.err(kp, "empty list (expected at least one key part)");
            return None;
        }
        RawKey::Many(list) => list
            .into_iter()
            .enumerate()
            .map(|(i, s)| (kp.index(i), s))
            .collect(),
    };
    let alone = items.len() == 1;
    let (mut seen, mut ok) = (Vec::new(), true);
    for (ip, s) in items {
        let Some(part) = cx.check(&ip, parse_key_part(&s)) else {
            ok = false;
            continue;
        };
        if seen.contains(&part) {
            cx.err(ip, format!("duplicate key part \"{s}\""));
            ok = false;
        } else if part == KeyPart::Global && !alone {
            cx.err(ip, "\"global\" cannot be combined with other key parts");
            ok = false;
        }
        seen.push(part);
    }
    ok.then_some(seen)
}

/// One key part: `consumer`, `client_ip`, `header:<name>` (lower-cased), `route`, `tenant`,
/// `global`.
pub(crate) fn parse_key_part(s: &str) -> Result<KeyPart, String> {
    Ok(match s {
        "consumer" => KeyPart::Consumer,
        "client_ip" => KeyPart::ClientIp,
        "route" => KeyPart::Route,
        "tenant" => KeyPart::Tenant,
        "global" => KeyPart::Global,
        _ => match s.strip_prefix("header:") {
            Some(name) if is_token(name) => KeyPart::Header(name.to_ascii_lowercase()),
            Some(name) => {
                return Err(format!(
                    "invalid header name \"{name}\" (expected an HTTP token like x-api-client)"
                ))
            }
            None => return Err(format!("unknown key part \"{s}\" (expected {KEY_PARTS})")),
        },
    })
}

/// `"100/s"` -> (100, 1s): a count 1..=10^9 per `s`/`sec`/`second`, `m`/`min`/`minute` or
/// `h`/`hour`.
pub(crate) fn parse_rate(s: &str) -> Result<(u64, Duration), String> {
    let expected = "expected a count per s, min or h, like \"100/s\"";
    let Some((count, unit)) = s.trim().split_once('/') else {
        return Err(format!("invalid rate \"{s}\" ({expected})"));
    };
    let secs = match unit {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        other => {
            return Err(format!(
                "invalid rate \"{s}\": unknown unit \"{other}\" (expected s, min or h)"
            ))
        }
    };
    if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid rate \"{s}\": count must be an integer ({expected})"
        ));
    }
    match count.parse::<u64>() {
        Ok(n) if (1..=MAX_RATE).contains(&n) => Ok((n, Duration::from_secs(secs))),
        _ => Err(format!(
            "count must be between 1 and {MAX_RATE}, got {count}"
        )),
    }
}

/// `"10000/day"` -> requests, `"100GiB/month"` -> bytes; windows `minute`, `hour`, `day`, `month`.
pub(crate) fn parse_quota_limit(s: &str) -> Result<(u64, QuotaUnit, Window), String> {
    let expected = "expected a count or a size, then /minute, /hour, /day or /month, \
                    like \"10000/day\" or \"100GiB/month\"";
    let Some((amount, window)) = s.trim().split_once('/') else {
        return Err(format!("invalid limit \"{s}\" ({expected})"));
    };
    let window = match window {
        "minute" => Window::Minute,
        "hour" => Window::Hour,
        "day" => Window::Day,
        "month" => Window::Month,
        other => {
            return Err(format!(
                "invalid limit \"{s}\": unknown window \"{other}\" (expected minute, hour, day or month)"
            ))
        }
    };
    let digits = amount.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!("invalid limit \"{s}\" ({expected})"));
    }
    if digits == amount.len() {
        return match amount.parse::<u64>() {
            Ok(n) if (1..LIMIT_CAP).contains(&n) => Ok((n, QuotaUnit::Requests, window)),
            _ => Err(format!(
                "must be between 1 and {} requests, got {amount}",
                LIMIT_CAP - 1
            )),
        };
    }
    let bytes = match parse_size(amount) {
        Ok(n) => n,
        Err(m) if m.contains("too large") => LIMIT_CAP,
        Err(_) => {
            let unit = &amount[digits..];
            return Err(format!(
                "invalid limit \"{s}\": unknown unit \"{unit}\" \
                 (expected B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)"
            ));
        }
    };
    match bytes {
        0 => Err("must be at least 1 byte".to_owned()),
        n if n >= LIMIT_CAP => Err(format!("must be less than 16TiB, got \"{amount}\"")),
        n => Ok((n, QuotaUnit::Bytes, window)),
    }
}

fn redis_config(cx: &mut Ctx, r: RawRedis) -> Option<RedisConfig> {
    let p = KeyPath::root().key("redis");
    let ap = p.key("addr");
    let addr = cx
        .required(ap.clone(), r.addr, "an address like \"127.0.0.1:6379\"")
        .and_then(|a| cx.check(&ap, resolve_addr(&a)));
    let addr = match addr {
        Some(a) if a.port() == 0 => {
            cx.err(ap, "port 0 is not a valid redis port");
            None
        }
        a => a,
    };
    let db =
        r.db.map(|d| int_in(cx, &p.key("db"), Some(d), 0, 0, 1_000_000).map(|d| d as u32));
    let password_env = r.password_env.clone();
    let password = r.password_env.map(|var| {
        let value = std::env::var(&var).ok().filter(|v| !v.is_empty());
        if value.is_none() {
            let message = format!("environment variable {var} is not set");
            cx.err(p.key("password_env"), message);
        }
        value
    });
    let timeout = match r.timeout {
        None => DEFAULT_REDIS_TIMEOUT,
        t => cx.duration(p.key("timeout"), t, 0, false),
    };
    let key_prefix = r
        .key_prefix
        .unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_owned());
    let prefix_ok = !key_prefix.is_empty() && key_prefix.bytes().all(|b| b.is_ascii_graphic());
    if !prefix_ok {
        let message = format!(
            "invalid key prefix \"{key_prefix}\" (expected visible ASCII characters without spaces, like \"coregate:\")"
        );
        cx.err(p.key("key_prefix"), message);
    }
    Some(RedisConfig {
        addr: addr?,
        // An invalid optional value is `Some(None)`.
        db: db.map(|d| d.ok_or(())).transpose().ok()?,
        password: password.map(|v| v.ok_or(())).transpose().ok()?,
        password_env,
        timeout,
        key_prefix: prefix_ok.then_some(key_prefix)?,
    })
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;
