//! Load balancing across upstream endpoints, observed through the `x-upstream` name each mock
//! puts on its responses: exact round-robin and weighted 1:3 spreads (workers=1, so one
//! balancer sees every request), least_conn steering away from a busy endpoint (held open with
//! a gate, no timing involved), p2c using every endpoint, and hash stickiness by header and by
//! client IP.

mod common;
use common::*;
use std::collections::BTreeMap;

const ONE_WORKER: &[&str] = &["--workers", "1"];

/// Sends `n` requests on one connection (`header` added when given); counts answers per upstream.
fn spread(gw: &Gateway, n: usize, header: Option<(&str, &str)>) -> BTreeMap<String, usize> {
    let mut c = Client::connect(gw.addr);
    let mut counts = BTreeMap::new();
    let headers: Vec<(&str, &str)> = header.into_iter().collect();
    for i in 0..n {
        let r = c.request(&req("GET", &format!("/b/{i}"), "lb.test", &headers, b""));
        assert_eq!(r.status, 200, "request {i}: {}", r.body_str());
        *counts
            .entry(r.header("x-upstream").unwrap_or_default())
            .or_insert(0) += 1;
    }
    counts
}

fn lb_config(ups: &[&Upstream], balance: &str) -> String {
    let addrs: Vec<_> = ups.iter().map(|u| u.addr).collect();
    config(
        "",
        &(upstream_toml("pool", &addrs, &format!("balance = \"{balance}\""))
            + &route_toml("lb", "pool", "path_prefix = \"/\"")),
    )
}

#[test]
fn round_robin_is_exact() {
    let (a, b, c) = (
        Upstream::fixed("a", 200, "a"),
        Upstream::fixed("b", 200, "b"),
        Upstream::fixed("c", 200, "c"),
    );
    let cfg = lb_config(&[&a, &b, &c], "round_robin");
    for_each_driver(|driver| {
        let gw = Gateway::start_with_args(&cfg, driver, ONE_WORKER);
        let counts = spread(&gw, 300, None);
        let want: BTreeMap<String, usize> = [("a", 100), ("b", 100), ("c", 100)]
            .map(|(k, v)| (k.to_string(), v))
            .into();
        assert_eq!(counts, want, "[{driver}] round_robin over 300 requests");
    });
}

#[test]
fn weighted_one_to_three() {
    let (a, b) = (
        Upstream::fixed("a", 200, "a"),
        Upstream::fixed("b", 200, "b"),
    );
    let body = format!(
        "[[upstream]]\nname = \"pool\"\nbalance = \"weighted\"\nendpoints = [{{ addr = \"{}\", weight = 1 }}, {{ addr = \"{}\", weight = 3 }}]\n\n",
        a.addr, b.addr
    ) + &route_toml("lb", "pool", "path_prefix = \"/\"");
    let cfg = config("", &body);
    for_each_driver(|driver| {
        let gw = Gateway::start_with_args(&cfg, driver, ONE_WORKER);
        let counts = spread(&gw, 400, None);
        let want: BTreeMap<String, usize> = [("a", 100), ("b", 300)]
            .map(|(k, v)| (k.to_string(), v))
            .into();
        assert_eq!(counts, want, "[{driver}] weighted 1:3 over 400 requests");
    });
}

/// Two gated endpoints: the second request must avoid the endpoint holding the first; once
/// that one finished, the next request (same client connection, so the first exchange is fully
/// accounted) must go back to it while the other is still busy.
fn busy_endpoint_is_avoided(balance: &str) {
    for_each_driver(|driver| {
        let (x, gx) = Upstream::gated("x");
        let (y, gy) = Upstream::gated("y");
        let gw = Gateway::start_with_args(&lb_config(&[&x, &y], balance), driver, ONE_WORKER);
        let total = |x: &Upstream, y: &Upstream| x.request_count() + y.request_count();

        let mut c1 = Client::connect(gw.addr);
        c1.send(&req("GET", "/first", "lb.test", &[], b""));
        assert!(
            wait_until(deadline(secs(10)), || total(&x, &y) == 1),
            "[{driver}] first request never reached an upstream"
        );
        let (busy, busy_gate, other, other_gate) = if x.request_count() == 1 {
            (&x, &gx, &y, &gy)
        } else {
            (&y, &gy, &x, &gx)
        };

        let mut c2 = Client::connect(gw.addr);
        c2.send(&req("GET", "/second", "lb.test", &[], b""));
        assert!(
            wait_until(deadline(secs(10)), || total(&x, &y) == 2),
            "[{driver}] second request never reached an upstream"
        );
        assert_eq!(
            (busy.request_count(), other.request_count()),
            (1, 1),
            "[{driver}] {balance}: second request went to the endpoint already busy ({})",
            busy.name
        );

        busy_gate.release();
        let r1 = c1.read_response();
        assert_eq!(
            (r1.status, r1.header("x-upstream")),
            (200, Some(busy.name.clone())),
            "[{driver}] first response"
        );
        let r3 = c1.request(&req("GET", "/third", "lb.test", &[], b""));
        assert_eq!(
            r3.header("x-upstream").as_deref(),
            Some(busy.name.as_str()),
            "[{driver}] {balance}: third request must go to the idle endpoint {} while {} is busy",
            busy.name,
            other.name
        );
        other_gate.release();
        assert_eq!(
            c2.read_response().header("x-upstream"),
            Some(other.name.clone()),
            "[{driver}] second response"
        );
    });
}

#[test]
fn least_conn_avoids_busy_endpoint() {
    busy_endpoint_is_avoided("least_conn");
}

#[test]
fn p2c_uses_every_endpoint() {
    let ups: Vec<Upstream> = ["a", "b", "c"]
        .iter()
        .map(|n| Upstream::fixed(n, 200, n))
        .collect();
    let cfg = lb_config(&ups.iter().collect::<Vec<_>>(), "p2c");
    for_each_driver(|driver| {
        let gw = Gateway::start_with_args(&cfg, driver, ONE_WORKER);
        let counts = spread(&gw, 300, None);
        // Idle endpoints tie, so p2c picks among all of them: each expects ~100 of 300; 30 is far
        // below any plausible random deviation, and fails a balancer stuck on one endpoint.
        for u in &ups {
            let n = counts.get(&u.name).copied().unwrap_or(0);
            assert!(
                n >= 30,
                "[{driver}] p2c sent {n} of 300 requests to {}: {counts:?}",
                u.name
            );
        }
        assert_eq!(counts.values().sum::<usize>(), 300);
    });
}

#[test]
fn hash_by_header_is_sticky() {
    let ups: Vec<Upstream> = ["a", "b", "c"]
        .iter()
        .map(|n| Upstream::fixed(n, 200, n))
        .collect();
    let addrs: Vec<_> = ups.iter().map(|u| u.addr).collect();
    let cfg = config(
        "",
        &(upstream_toml(
            "pool",
            &addrs,
            "balance = \"hash\"\nhash_key = \"header:x-user-id\"",
        ) + &route_toml("lb", "pool", "path_prefix = \"/\"")),
    );
    for_each_driver(|driver| {
        // Two workers: stickiness must not depend on which worker serves the connection.
        let gw = Gateway::start(&cfg, driver);
        let mut owner: BTreeMap<String, String> = BTreeMap::new();
        for round in 0..5 {
            for user in 0..20 {
                let id = format!("user-{user}");
                let r = Client::connect(gw.addr).request(&req(
                    "GET",
                    "/h",
                    "lb.test",
                    &[("x-user-id", &id)],
                    b"",
                ));
                assert_eq!(r.status, 200);
                let got = r.header("x-upstream").unwrap_or_default();
                let first = owner.entry(id.clone()).or_insert_with(|| got.clone());
                assert_eq!(
                    *first, got,
                    "[{driver}] {id} moved from {first} to {got} in round {round}"
                );
            }
        }
        let used: std::collections::BTreeSet<_> = owner.values().collect();
        assert!(
            used.len() >= 2,
            "[{driver}] 20 users all hashed to one endpoint: {owner:?}"
        );
    });
}

/// Rendezvous hashing as a reload (or a DNS change) shows it: an endpoint leaves and the rest are
/// listed in another order; only the keys the leaver owned move.
#[test]
fn hash_keys_stay_with_their_endpoint_across_a_reload() {
    let ups: Vec<Upstream> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| Upstream::fixed(n, 200, n))
        .collect();
    let addrs: Vec<_> = ups.iter().map(|u| u.addr).collect();
    let pool = |addrs: &[std::net::SocketAddr]| {
        config(
            "",
            &(upstream_toml(
                "pool",
                addrs,
                "balance = \"hash\"\nhash_key = \"header:x-user-id\"",
            ) + &route_toml("lb", "pool", "path_prefix = \"/\"")),
        )
    };
    for_each_driver(|driver| {
        let gw = Gateway::start(&pool(&addrs), driver);
        let owners = || -> Vec<String> {
            let mut c = Client::connect(gw.addr);
            (0..40)
                .map(|user| {
                    let id = format!("user-{user}");
                    let h = [("x-user-id", id.as_str())];
                    let r = c.request(&req("GET", "/h", "lb.test", &h, b""));
                    assert_eq!(r.status, 200, "[{driver}]");
                    r.header("x-upstream").unwrap_or_default()
                })
                .collect()
        };
        let before = owners();
        assert!(before.iter().any(|o| o == "a"), "[{driver}] {before:?}");
        let rest: Vec<_> = addrs[1..].iter().rev().copied().collect();
        std::fs::write(&gw.config_path, pool(&rest)).unwrap();
        assert_eq!(gw.admin_post("/reload").status, 200, "[{driver}]");
        let after = owners();
        for (user, (was, is)) in before.iter().zip(&after).enumerate() {
            match was.as_str() {
                "a" => assert_ne!(is, "a", "[{driver}] user-{user}"),
                _ => assert_eq!(was, is, "[{driver}] user-{user} moved from {was} to {is}"),
            }
        }
    });
}

#[test]
fn hash_by_client_ip_is_sticky() {
    let ups: Vec<Upstream> = ["a", "b", "c"]
        .iter()
        .map(|n| Upstream::fixed(n, 200, n))
        .collect();
    let addrs: Vec<_> = ups.iter().map(|u| u.addr).collect();
    let cfg = config(
        "",
        &(upstream_toml(
            "pool",
            &addrs,
            "balance = \"hash\"\nhash_key = \"client_ip\"",
        ) + &route_toml("lb", "pool", "path_prefix = \"/\"")),
    );
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..30 {
            let r = Client::connect(gw.addr).get(&format!("/ip/{i}"), "lb.test");
            assert_eq!(r.status, 200);
            seen.insert(r.header("x-upstream").unwrap_or_default());
        }
        assert_eq!(
            seen.len(),
            1,
            "[{driver}] one client IP must stick to one endpoint, saw {seen:?}"
        );
    });
}

/// Hash balancing on an authenticated route reads what the upstream receives: the identity header
/// the gateway sets from the verified token (a client-sent copy never steers), and
/// `hash_key = "identity"` hashes the token's subject.
#[test]
fn hash_keys_on_authenticated_routes_ignore_spoofed_headers() {
    use common::jwt::{claims, mint};
    const SECRET: &str = "hash-identity-secret";
    std::env::set_var("CG_TEST_HASH_SECRET", SECRET);
    let ups: Vec<Upstream> = ["a", "b", "c"]
        .iter()
        .map(|n| Upstream::fixed(n, 200, n))
        .collect();
    let addrs: Vec<_> = ups.iter().map(|u| u.addr).collect();
    let auth = "[[auth]]\nname = \"jwt\"\ntype = \"jwt\"\nalgorithms = [\"HS256\"]\n\
                secret_env = \"CG_TEST_HASH_SECRET\"\nclaims_to_headers = { sub = \"X-User-Id\" }\n\n";
    let cfg = config(
        "",
        &(auth.to_string()
            + &upstream_toml(
                "by_header",
                &addrs,
                "balance = \"hash\"\nhash_key = \"header:x-user-id\"",
            )
            + &upstream_toml(
                "by_identity",
                &addrs,
                "balance = \"hash\"\nhash_key = \"identity\"",
            )
            + &route_toml("h", "by_header", "path_prefix = \"/h\"\nauth = \"jwt\"")
            + &route_toml("i", "by_identity", "path_prefix = \"/i\"\nauth = \"jwt\"")),
    );
    let token = |sub: &str| {
        format!(
            "Bearer {}",
            mint(
                jsonwebtoken::Algorithm::HS256,
                SECRET,
                None,
                claims(sub, serde_json::json!({}))
            )
        )
    };
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let send = |path: &str, headers: &[(&str, &str)]| {
            let r = Client::connect(gw.addr).request(&req("GET", path, "lb.test", headers, b""));
            assert_eq!(r.status, 200, "[{driver}] {path}: {}", r.body_str());
            r.header("x-upstream").unwrap_or_default()
        };
        let alice = token("alice");
        for prefix in ["/h", "/i"] {
            // spoofed identity headers (and their underscore spellings) vary; the verified subject
            // does not, so neither does the endpoint
            let mut seen = std::collections::BTreeSet::new();
            for n in 0..30 {
                let spoof = format!("user-{n}");
                seen.insert(send(
                    prefix,
                    &[
                        ("authorization", &alice),
                        ("x-user-id", &spoof),
                        ("X_User_Id", &spoof),
                    ],
                ));
            }
            assert_eq!(
                seen.len(),
                1,
                "[{driver}] {prefix}: spoofed x-user-id steered balancing: {seen:?}"
            );
            // different subjects spread and each sticks
            let mut owners = std::collections::BTreeMap::new();
            for round in 0..2 {
                for u in 0..20 {
                    let who = format!("sub-{u}");
                    let got = send(prefix, &[("authorization", &token(&who))]);
                    let first = owners.entry(who.clone()).or_insert_with(|| got.clone());
                    assert_eq!(
                        *first, got,
                        "[{driver}] {prefix} {who} moved in round {round}"
                    );
                }
            }
            let used: std::collections::BTreeSet<_> = owners.values().collect();
            assert!(
                used.len() >= 2,
                "[{driver}] {prefix}: 20 subjects on one endpoint"
            );
        }
    });
}
