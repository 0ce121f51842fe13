use std::time::Duration;

use super::*;
use crate::config::parse_str;
use crate::config::validate::tests::{check_cases, errs, R, UP};

const REDIS: &str = "[redis]\naddr = \"127.0.0.1:6379\"\n";
const AUTH: &str = "[[auth]]\nname = \"keys\"\ntype = \"api_key\"\n\
    keys = [{ sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\", consumer = \"acme\" }]\n";
/// A valid `[[rate_limit]]` named `n`, keyed by client IP.
fn rl(n: &str, extra: &str) -> String {
    format!("[[rate_limit]]\nname = \"{n}\"\nkey = \"client_ip\"\nrate = \"10/s\"\n{extra}\n")
}
/// A valid `[[quota]]` named `n`, keyed by client IP.
fn qt(n: &str, extra: &str) -> String {
    format!("[[quota]]\nname = \"{n}\"\nkey = \"client_ip\"\nlimit = \"100/day\"\n{extra}\n")
}

fn config(text: &str) -> crate::config::Config {
    parse_str(&format!("{UP}{text}"), "t.toml").unwrap_or_else(|e| panic!("{e}"))
}

const FULL: &str = r#"
[redis]
addr = "127.0.0.1:6379"

[[rate_limit]]
name = "per_client"
key = "consumer"
rate = "100/s"

[[rate_limit]]
name = "slow"
key = ["client_ip", "header:X-App"]
rate = "5/min"
burst = 10
cost = 2
scope = "cluster"
local_share = 0.25
max_keys = 50

[[rate_limit]]
name = "hourly"
key = "global"
rate = "7/hour"
scope = "cluster"
local_share = 1

[[quota]]
name = "bytes"
key = "tenant"
limit = "100GiB/month"

[[quota]]
name = "daily"
key = ["route", "client_ip"]
limit = "10000/day"
scope = "cluster"
local_share = 0.5
max_keys = 7

[tier.pro]
rate_limits = ["slow", "per_client"]
quotas = ["bytes"]

[tier.free]
rate_limits = ["per_client"]

[tier.empty]

[[route]]
upstream = "u"
path = "/a"
auth = "keys"
rate_limits = ["per_client", "slow"]
quotas = ["daily", "bytes"]
cost = 3

[[route]]
upstream = "u"
path = "/b"
rate_limits = ["hourly"]
"#;

#[test]
fn full_config_model() {
    let c = config(&format!("{AUTH}{FULL}"));
    assert_eq!(c.rate_limits.len(), 3);
    let r = &c.rate_limits[0];
    assert_eq!(
        (r.name.as_str(), r.key.clone()),
        ("per_client", vec![KeyPart::Consumer])
    );
    assert_eq!((r.tokens, r.per), (100, Duration::from_secs(1)));
    assert_eq!((r.burst, r.cost, r.scope), (100, 1, Scope::Gateway));
    assert_eq!((r.local_share, r.max_keys), (1.0, 100_000));
    let r = &c.rate_limits[1];
    assert_eq!(
        r.key,
        vec![KeyPart::ClientIp, KeyPart::Header("x-app".into())]
    );
    assert_eq!((r.tokens, r.per), (5, Duration::from_secs(60)));
    assert_eq!((r.burst, r.cost, r.scope), (10, 2, Scope::Cluster));
    assert_eq!((r.local_share, r.max_keys), (0.25, 50));
    let r = &c.rate_limits[2];
    assert_eq!(r.key, vec![KeyPart::Global]);
    assert_eq!(
        (r.tokens, r.per, r.burst),
        (7, Duration::from_secs(3600), 7)
    );
    assert_eq!(r.local_share, 1.0);

    let q = &c.quotas[0];
    assert_eq!(
        (q.name.as_str(), q.key.clone()),
        ("bytes", vec![KeyPart::Tenant])
    );
    assert_eq!(
        (q.limit, q.unit, q.window),
        (100 << 30, QuotaUnit::Bytes, Window::Month)
    );
    assert_eq!(
        (q.scope, q.local_share, q.max_keys),
        (Scope::Gateway, 1.0, 100_000)
    );
    let q = &c.quotas[1];
    assert_eq!(q.key, vec![KeyPart::Route, KeyPart::ClientIp]);
    assert_eq!(
        (q.limit, q.unit, q.window),
        (10_000, QuotaUnit::Requests, Window::Day)
    );
    assert_eq!(
        (q.scope, q.local_share, q.max_keys),
        (Scope::Cluster, 0.5, 7)
    );

    let tiers: Vec<(&str, &[usize], &[usize])> = c
        .tiers
        .iter()
        .map(|t| (t.name.as_str(), &t.rate_limits[..], &t.quotas[..]))
        .collect();
    assert_eq!(
        tiers,
        [
            ("empty", &[][..], &[][..]),
            ("free", &[0][..], &[][..]),
            ("pro", &[1, 0][..], &[0][..]),
        ]
    );

    let a = &c.routes[0];
    assert_eq!(
        (&a.rate_limits[..], &a.quotas[..], a.cost),
        (&[0, 1][..], &[1, 0][..], Some(3))
    );
    let b = &c.routes[1];
    assert_eq!(
        (&b.rate_limits[..], &b.quotas[..], b.cost),
        (&[2][..], &[][..], None)
    );

    let redis = c.redis.as_ref().unwrap();
    assert_eq!(redis.addr, "127.0.0.1:6379".parse().unwrap());
    assert_eq!((redis.db, redis.password.as_deref()), (None, None));
    assert_eq!(redis.timeout, Duration::from_millis(200));
    assert_eq!(redis.key_prefix, "coregate:");
}

#[test]
fn nothing_configured() {
    let c = config(R);
    assert!(c.rate_limits.is_empty() && c.quotas.is_empty() && c.tiers.is_empty());
    assert!(c.redis.is_none());
    let r = &c.routes[0];
    assert!(r.rate_limits.is_empty() && r.quotas.is_empty() && r.cost.is_none());
}

#[test]
fn rate_forms() {
    for (rate, tokens, secs) in [
        ("1/s", 1, 1),
        ("3/sec", 3, 1),
        ("4/second", 4, 1),
        ("5/m", 5, 60),
        ("6/min", 6, 60),
        ("7/minute", 7, 60),
        ("8/h", 8, 3600),
        ("9/hour", 9, 3600),
        ("1000000000/s", 1_000_000_000, 1),
    ] {
        assert_eq!(
            parse_rate(rate),
            Ok((tokens, Duration::from_secs(secs))),
            "{rate}"
        );
    }
    let c = config(&rl("a", "rate = \"5/min\"\nburst = 1").replace("rate = \"10/s\"\n", ""));
    let r = &c.rate_limits[0];
    assert_eq!(
        (r.tokens, r.per, r.burst, r.cost),
        (5, Duration::from_secs(60), 1, 1)
    );
}

#[test]
fn quota_limit_forms() {
    use QuotaUnit::*;
    for (limit, n, unit, window) in [
        ("1/minute", 1, Requests, Window::Minute),
        ("10000/hour", 10_000, Requests, Window::Hour),
        ("17592186044415/day", (1 << 44) - 1, Requests, Window::Day),
        ("500MB/day", 500_000_000, Bytes, Window::Day),
        ("1B/month", 1, Bytes, Window::Month),
        ("100GiB/month", 100 << 30, Bytes, Window::Month),
        ("15TiB/month", 15 << 40, Bytes, Window::Month),
    ] {
        assert_eq!(parse_quota_limit(limit), Ok((n, unit, window)), "{limit}");
    }
}

#[test]
fn redis_values() {
    std::env::set_var("CG_TEST_LIMITS_REDIS_PASS", "hunter2");
    let c = config(
        "[redis]\naddr = \"localhost:6380\"\ndb = 3\npassword_env = \"CG_TEST_LIMITS_REDIS_PASS\"\n\
         timeout = \"1.5s\"\nkey_prefix = \"gw:{a}\"\n",
    );
    let r = c.redis.unwrap();
    assert_eq!(r.addr.port(), 6380);
    assert_eq!((r.db, r.password.as_deref()), (Some(3), Some("hunter2")));
    assert_eq!(
        (r.timeout, r.key_prefix.as_str()),
        (Duration::from_millis(1500), "gw:{a}")
    );
    check_cases(&[
        (
            "[redis]\ndb = 1000001\npassword_env = \"CG_TEST_LIMITS_UNSET\"\ntimeout = \"0s\"\nkey_prefix = \"a b\"\n",
            &[
                "redis.addr: missing (expected an address like \"127.0.0.1:6379\")",
                "redis.db: must be between 0 and 1000000, got 1000001",
                "redis.password_env: environment variable CG_TEST_LIMITS_UNSET is not set",
                "redis.timeout: must be greater than 0",
                "redis.key_prefix: invalid key prefix \"a b\" (expected visible ASCII characters without spaces, like \"coregate:\")",
            ],
        ),
        ("[redis]\naddr = \"127.0.0.1:0\"\ndb = -1\n", &[
            "redis.addr: port 0 is not a valid redis port",
            "redis.db: must be between 0 and 1000000, got -1",
        ]),
        ("[redis]\naddr = \"x\"\ntimeout = 5\nkey_prefix = \"\"\n", &[
            "redis.addr: invalid address \"x\" (expected ip:port, [v6]:port or host:port)",
            "redis.timeout: missing unit in 5 (expected a string like \"5s\"; units ms, s, m or h)",
            "redis.key_prefix: invalid key prefix \"\" (expected visible ASCII characters without spaces, like \"coregate:\")",
        ]),
        ("[redis]\naddr = \"127.0.0.1:6379\"\nport = 1\n", &["redis.port: unknown key"]),
    ]);
}

#[test]
fn rate_limit_errors() {
    check_cases(&[
        ("[[rate_limit]]\n", &[
            "rate_limit[0].name: missing (expected a unique name like \"per_client\")",
            "rate_limit[0].key: missing (expected consumer, client_ip, header:<name>, route, tenant or global, or a list of them)",
            "rate_limit[0].rate: missing (expected a rate like \"100/s\")",
        ]),
        (&format!("{}{}", rl("a", ""), rl("a", "")), &["rate_limit[1].name: duplicate name \"a\" (also rate_limit[0])"]),
        (&rl("a b", ""), &["rate_limit[0].name: invalid name \"a b\" (expected letters, digits, _, . or -)"]),
        (&rl("a", "burst = 0\ncost = 0\nmax_keys = 100000001"), &[
            "rate_limit[0].burst: must be between 1 and 1000000000000, got 0",
            "rate_limit[0].cost: must be between 1 and 1000000000, got 0",
            "rate_limit[0].max_keys: must be between 1 and 100000000, got 100000001",
        ]),
        (&rl("a", "burst = 1000000000001\nmax_keys = 0"), &[
            "rate_limit[0].burst: must be between 1 and 1000000000000, got 1000000000001",
            "rate_limit[0].max_keys: must be between 1 and 100000000, got 0",
        ]),
        // The default burst is the rate's count.
        (&rl("a", "cost = 11"), &["rate_limit[0].cost: must not exceed burst (10)"]),
        (&rl("a", "cost = 6\nburst = 5"), &["rate_limit[0].cost: must not exceed burst (5)"]),
        (&rl("a", "cost = 20\nburst = 20"), &[]),
        // No second error about cost when the burst is unknown.
        (&rl("a", "cost = 20\nburst = -1"), &["rate_limit[0].burst: must be between 1 and 1000000000000, got -1"]),
        ("[[rate_limit]]\nname = \"a\"\nkey = \"global\"\nrate = \"x\"\ncost = 20\n", &[
            "rate_limit[0].rate: invalid rate \"x\" (expected a count per s, min or h, like \"100/s\")",
        ]),
        (&rl("a", "rate = 5").replace("rate = \"10/s\"\n", ""), &["rate_limit[0].rate: invalid type: integer `5`, expected a string"]),
        (&rl("a", "burst = 1.5"), &["rate_limit[0].burst: invalid type: floating point `1.5`, expected an integer"]),
        (&rl("a", "nme = 1"), &["rate_limit[0].nme: unknown key"]),
        ("[rate_limit]\nname = \"a\"\n", &["rate_limit: invalid type: table, expected an array (write [[rate_limit]], not [rate_limit])"]),
    ]);
}

#[test]
fn rates() {
    let bad =
        |rate: &str| errs(&rl("a", &format!("rate = \"{rate}\"")).replace("rate = \"10/s\"\n", ""));
    assert_eq!(bad("100"), ["rate_limit[0].rate: invalid rate \"100\" (expected a count per s, min or h, like \"100/s\")"]);
    assert_eq!(
        bad("100/d"),
        ["rate_limit[0].rate: invalid rate \"100/d\": unknown unit \"d\" (expected s, min or h)"]
    );
    assert_eq!(bad("100/ s"), ["rate_limit[0].rate: invalid rate \"100/ s\": unknown unit \" s\" (expected s, min or h)"]);
    assert_eq!(bad("1.5/s"), ["rate_limit[0].rate: invalid rate \"1.5/s\": count must be an integer (expected a count per s, min or h, like \"100/s\")"]);
    assert_eq!(bad("/s"), ["rate_limit[0].rate: invalid rate \"/s\": count must be an integer (expected a count per s, min or h, like \"100/s\")"]);
    assert_eq!(bad("-1/s"), ["rate_limit[0].rate: invalid rate \"-1/s\": count must be an integer (expected a count per s, min or h, like \"100/s\")"]);
    assert_eq!(
        bad("0/s"),
        ["rate_limit[0].rate: count must be between 1 and 1000000000, got 0"]
    );
    assert_eq!(
        bad("1000000001/min"),
        ["rate_limit[0].rate: count must be between 1 and 1000000000, got 1000000001"]
    );
    assert_eq!(bad("99999999999999999999999/s"), ["rate_limit[0].rate: count must be between 1 and 1000000000, got 99999999999999999999999"]);
}

#[test]
fn keys() {
    let key = |k: &str| {
        let text = format!("[[rate_limit]]\nname = \"a\"\nkey = {k}\nrate = \"1/s\"\n");
        let mut out = errs(&text);
        // The same rules for quotas.
        let quota = format!("[[quota]]\nname = \"a\"\nkey = {k}\nlimit = \"1/day\"\n");
        let q: Vec<String> = errs(&quota)
            .iter()
            .map(|e| e.replacen("quota", "rate_limit", 1))
            .collect();
        assert_eq!(out, q, "{k}");
        if out.is_empty() {
            let c = config(&text);
            out = vec![format!("{:?}", c.rate_limits[0].key)];
        }
        out
    };
    assert_eq!(key("\"tenant\""), ["[Tenant]"]);
    assert_eq!(
        key("\"header:X-Api-Client\""),
        ["[Header(\"x-api-client\")]"]
    );
    assert_eq!(key("[\"global\"]"), ["[Global]"]);
    assert_eq!(
        key("[\"consumer\", \"route\", \"header:a\", \"header:b\"]"),
        ["[Consumer, Route, Header(\"a\"), Header(\"b\")]"]
    );
    assert_eq!(key("\"user\""), ["rate_limit[0].key: unknown key part \"user\" (expected consumer, client_ip, header:<name>, route, tenant or global)"]);
    assert_eq!(key("\"Consumer\""), ["rate_limit[0].key: unknown key part \"Consumer\" (expected consumer, client_ip, header:<name>, route, tenant or global)"]);
    assert_eq!(key("\"header:\""), ["rate_limit[0].key: invalid header name \"\" (expected an HTTP token like x-api-client)"]);
    assert_eq!(key("[\"client_ip\", \"header:a b\"]"), ["rate_limit[0].key[1]: invalid header name \"a b\" (expected an HTTP token like x-api-client)"]);
    assert_eq!(
        key("[]"),
        ["rate_limit[0].key: empty list (expected at least one key part)"]
    );
    assert_eq!(
        key("[\"consumer\", \"route\", \"consumer\"]"),
        ["rate_limit[0].key[2]: duplicate key part \"consumer\""]
    );
    assert_eq!(
        key("[\"header:X-A\", \"header:x-a\"]"),
        ["rate_limit[0].key[1]: duplicate key part \"header:x-a\""]
    );
    assert_eq!(
        key("[\"consumer\", \"global\"]"),
        ["rate_limit[0].key[1]: \"global\" cannot be combined with other key parts"]
    );
    assert_eq!(
        key("[\"global\", \"global\"]"),
        [
            "rate_limit[0].key[0]: \"global\" cannot be combined with other key parts",
            "rate_limit[0].key[1]: duplicate key part \"global\"",
        ]
    );
    assert_eq!(key("[\"x\", \"x\"]"), [
        "rate_limit[0].key[0]: unknown key part \"x\" (expected consumer, client_ip, header:<name>, route, tenant or global)",
        "rate_limit[0].key[1]: unknown key part \"x\" (expected consumer, client_ip, header:<name>, route, tenant or global)",
    ]);
    assert_eq!(key("1"), ["rate_limit[0].key: invalid type: integer `1`, expected a key like \"consumer\" or a list of them"]);
    assert_eq!(
        key("[1]"),
        ["rate_limit[0].key[0]: invalid type: integer `1`, expected a string"]
    );
}

#[test]
fn scope_and_share() {
    check_cases(&[
        (&rl("a", "scope = \"cluster\""), &["rate_limit[0].scope: scope = \"cluster\" needs a [redis] section"]),
        (&qt("a", "scope = \"cluster\""), &["quota[0].scope: scope = \"cluster\" needs a [redis] section"]),
        (&format!("{REDIS}{}", rl("a", "scope = \"cluster\"")), &[]),
        // An invalid [redis] is reported on its own.
        (&format!("[redis]\n{}", rl("a", "scope = \"cluster\"")), &["redis.addr: missing (expected an address like \"127.0.0.1:6379\")"]),
        (&rl("a", "scope = \"local\""), &["rate_limit[0].scope: unknown scope \"local\" (expected gateway or cluster)"]),
        (&rl("a", "local_share = 0.5"), &["rate_limit[0].local_share: only allowed with scope = \"cluster\""]),
        (&qt("a", "scope = \"gateway\"\nlocal_share = 1"), &["quota[0].local_share: only allowed with scope = \"cluster\""]),
        (&format!("{REDIS}{}", rl("a", "scope = \"cluster\"\nlocal_share = 0")), &["rate_limit[0].local_share: must be greater than 0 and at most 1, got 0"]),
        (&format!("{REDIS}{}", qt("a", "scope = \"cluster\"\nlocal_share = 1.5")), &["quota[0].local_share: must be greater than 0 and at most 1, got 1.5"]),
        (&format!("{REDIS}{}", qt("a", "scope = \"cluster\"\nlocal_share = -0.5")), &["quota[0].local_share: must be greater than 0 and at most 1, got -0.5"]),
        (&format!("{REDIS}{}", qt("a", "scope = \"cluster\"\nlocal_share = nan")), &["quota[0].local_share: must be greater than 0 and at most 1, got NaN"]),
        (&rl("a", "local_share = \"half\""), &["rate_limit[0].local_share: invalid type: string \"half\", expected a number like 0.5"]),
        (&qt("a", "max_keys = 0"), &["quota[0].max_keys: must be between 1 and 100000000, got 0"]),
    ]);
}

#[test]
fn quota_errors() {
    let bad = |limit: &str| {
        errs(&qt("a", &format!("limit = \"{limit}\"")).replace("limit = \"100/day\"\n", ""))
    };
    let expected = "expected a count or a size, then /minute, /hour, /day or /month, like \"10000/day\" or \"100GiB/month\"";
    assert_eq!(
        bad("100"),
        [format!(
            "quota[0].limit: invalid limit \"100\" ({expected})"
        )]
    );
    assert_eq!(
        bad("GiB/day"),
        [format!(
            "quota[0].limit: invalid limit \"GiB/day\" ({expected})"
        )]
    );
    assert_eq!(bad("100/week"), ["quota[0].limit: invalid limit \"100/week\": unknown window \"week\" (expected minute, hour, day or month)"]);
    assert_eq!(bad("100/d"), ["quota[0].limit: invalid limit \"100/d\": unknown window \"d\" (expected minute, hour, day or month)"]);
    assert_eq!(bad("100gb/day"), ["quota[0].limit: invalid limit \"100gb/day\": unknown unit \"gb\" (expected B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)"]);
    assert_eq!(bad("1.5GiB/day"), ["quota[0].limit: invalid limit \"1.5GiB/day\": unknown unit \".5GiB\" (expected B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)"]);
    assert_eq!(
        bad("0/day"),
        ["quota[0].limit: must be between 1 and 17592186044415 requests, got 0"]
    );
    assert_eq!(
        bad("17592186044416/day"),
        ["quota[0].limit: must be between 1 and 17592186044415 requests, got 17592186044416"]
    );
    assert_eq!(bad("0MiB/day"), ["quota[0].limit: must be at least 1 byte"]);
    assert_eq!(
        bad("16TiB/month"),
        ["quota[0].limit: must be less than 16TiB, got \"16TiB\""]
    );
    assert_eq!(
        bad("99999999999TiB/month"),
        ["quota[0].limit: must be less than 16TiB, got \"99999999999TiB\""]
    );
    check_cases(&[
        ("[[quota]]\n", &[
            "quota[0].name: missing (expected a unique name like \"per_client\")",
            "quota[0].key: missing (expected consumer, client_ip, header:<name>, route, tenant or global, or a list of them)",
            "quota[0].limit: missing (expected a limit like \"10000/day\" or \"100GiB/month\")",
        ]),
        (&format!("{}{}{}", qt("a", ""), qt("b", ""), qt("a", "")), &["quota[2].name: duplicate name \"a\" (also quota[0])"]),
        // Rate limits and quotas have separate names.
        (&format!("{}{}", qt("a", ""), rl("a", "")), &[]),
        (&qt("a", "cost = 1\nburst = 1"), &["quota[0].cost: unknown key", "quota[0].burst: unknown key"]),
    ]);
}

#[test]
fn tier_errors() {
    let limits = format!("{}{}{}", rl("r1", ""), rl("r2", ""), qt("q1", ""));
    check_cases(&[
        (&format!("{limits}[tier.free]\nrate_limits = [\"r1\", \"x\", \"r1\"]\nquotas = [\"r1\", \"q1\", \"q1\"]\n"), &[
            "tier.free.rate_limits[1]: no rate_limit named \"x\"",
            "tier.free.rate_limits[2]: duplicate rate_limit \"r1\"",
            "tier.free.quotas[0]: no quota named \"r1\"",
            "tier.free.quotas[2]: duplicate quota \"q1\"",
        ]),
        (&format!("{limits}[tier.\"a b\"]\nrate_limits = [\"r2\"]\n"), &["tier.\"a b\": invalid name \"a b\" (expected letters, digits, _, . or -)"]),
        (&format!("{limits}[tier.free]\nrate_limit = [\"r2\"]\n"), &["tier.free.rate_limit: unknown key"]),
        ("[tier]\nfree = 1\n", &["tier.free: invalid type: integer `1`, expected a table"]),
        // A policy with an error still resolves by name: no second error.
        (&format!("{}[tier.free]\nrate_limits = [\"r1\"]\n", rl("r1", "burst = 0")), &["rate_limit[0].burst: must be between 1 and 1000000000000, got 0"]),
    ]);
}

#[test]
fn route_references() {
    let limits = format!(
        "{REDIS}{AUTH}{}{}{}",
        rl("r1", "burst = 20"),
        rl("r2", ""),
        qt("q1", "")
    );
    let consumer = "[[rate_limit]]\nname = \"per_consumer\"\nkey = [\"route\", \"consumer\"]\nrate = \"1/s\"\n\
                    [[quota]]\nname = \"per_tenant\"\nkey = [\"tenant\", \"consumer\"]\nlimit = \"1/day\"\n";
    check_cases(&[
        (&format!("{limits}{R}rate_limits = [\"r1\", \"nope\", \"r1\"]\nquotas = [\"q1\", \"r1\", \"q1\"]\n"), &[
            "route[0].rate_limits[1]: no rate_limit named \"nope\"",
            "route[0].rate_limits[2]: duplicate rate_limit \"r1\"",
            "route[0].quotas[1]: no quota named \"r1\"",
            "route[0].quotas[2]: duplicate quota \"q1\"",
        ]),
        (&format!("{limits}{R}rate_limits = [\"r1\"]\ncost = 20\n"), &[]),
        (&format!("{limits}{R}rate_limits = [\"r1\", \"r2\"]\ncost = 11\n"), &["route[0].cost: must not exceed burst of rate_limit \"r2\" (10)"]),
        (&format!("{limits}{R}cost = 0\n"), &["route[0].cost: must be between 1 and 1000000000, got 0"]),
        (&format!("{limits}{R}cost = 1000000001\n"), &["route[0].cost: must be between 1 and 1000000000, got 1000000001"]),
        // Without rate limits on the route, cost only applies to the caller's tier's.
        (&format!("{limits}{R}cost = 1000\n"), &[]),
        (&format!("{limits}{consumer}{R}rate_limits = [\"r1\", \"per_consumer\"]\nquotas = [\"per_tenant\"]\n"), &[
            "route[0].rate_limits[1]: rate_limit \"per_consumer\" is keyed by consumer, which needs auth on this route",
            "route[0].quotas[0]: quota \"per_tenant\" is keyed by tenant, which needs auth on this route",
        ]),
        (&format!("{limits}{consumer}{R}auth = \"keys\"\nrate_limits = [\"per_consumer\"]\nquotas = [\"per_tenant\"]\n"), &[]),
        // An unknown auth policy is reported once; the route still counts as authenticated.
        (&format!("{limits}{consumer}{R}auth = \"nope\"\nrate_limits = [\"per_consumer\"]\n"), &["route[0].auth: no auth policy named \"nope\""]),
        (&format!("{limits}{R}rate_limits = \"r1\"\n"), &["route[0].rate_limits: invalid type: string \"r1\", expected an array"]),
    ]);
}

#[test]
fn errors_carry_line_and_column() {
    let text = format!("{UP}[[rate_limit]]\nname = \"a\"\nkey = \"client_ip\"\nrate = \"0/s\"\n\n[tier.free]\nquotas = [\"x\"]\n");
    let e = parse_str(&text, "t.toml").unwrap_err().0;
    let at: Vec<(Option<usize>, Option<usize>, &str)> = e
        .iter()
        .map(|e| (e.line, e.column, e.path.as_str()))
        .collect();
    assert_eq!(
        at,
        [
            (Some(7), Some(1), "rate_limit[0].rate"),
            (Some(10), Some(11), "tier.free.quotas[0]"),
        ]
    );
    let e = parse_str(&format!("{UP}{R}rate_limits = [\"x\"]\n"), "t.toml")
        .unwrap_err()
        .0;
    assert_eq!((e[0].line, e[0].column), (Some(6), Some(16)));
}
