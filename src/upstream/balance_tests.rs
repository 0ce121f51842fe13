use super::*;
use crate::config::{Endpoint, HashKey};

fn cfg(weights: &[u32], balance: Balance, max_fails: u32) -> UpstreamConfig {
    UpstreamConfig {
        name: "u".into(),
        endpoints: (0..weights.len())
            .map(|i| Endpoint {
                addr: ([127, 0, 0, 1], 8000 + i as u16).into(),
                weight: weights[i],
            })
            .collect(),
        discovery: None,
        balance,
        connect_timeout: Duration::from_secs(1),
        response_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        max_idle_per_endpoint: 4,
        retries: 1,
        max_fails,
        fail_timeout: Duration::from_secs(10),
        // the floor has tests of its own; these test the policies with it wide open
        max_ejection_percent: 100,
        panic_threshold: 0,
        tls: None,
        protocol: Default::default(),
        circuit_breaker: None,
        outlier_detection: None,
        health_check: None,
        adaptive_concurrency: None,
        retry: Default::default(),
        slow_start: None,
        bulkhead: None,
    }
}

fn hash_policy() -> Balance {
    Balance::Hash(HashKey::ClientIp)
}

fn all_policies() -> [Balance; 5] {
    use Balance::*;
    [RoundRobin, Weighted, LeastConn, P2c, hash_policy()]
}

fn seq(b: &mut Balancer, picks: usize, now: Instant) -> Vec<usize> {
    (0..picks).map(|_| b.pick(None, 0, now).unwrap()).collect()
}

fn counts(b: &mut Balancer, picks: usize, now: Instant) -> Vec<usize> {
    let mut c = vec![0; b.len()];
    for _ in 0..picks {
        c[b.pick(None, 0, now).unwrap()] += 1;
    }
    c
}

#[test]
fn round_robin_is_exact_and_ignores_weights() {
    let now = Instant::now();
    let mut b = Balancer::new(&cfg(&[1, 5, 1, 2], Balance::RoundRobin, 1), 0);
    assert_eq!(seq(&mut b, 8, now), [0, 1, 2, 3, 0, 1, 2, 3]);
    assert_eq!(counts(&mut b, 400, now), [100; 4]);
}

#[test]
fn round_robin_offsets_per_seed() {
    let now = Instant::now();
    let c = cfg(&[1; 4], Balance::RoundRobin, 1);
    for seed in 0..9u64 {
        let mut b = Balancer::new(&c, seed);
        assert_eq!(b.pick(None, 0, now), Some(seed as usize % 4));
    }
    // Four workers' first picks cover every endpoint once.
    let mut firsts: Vec<_> = (0..4)
        .map(|s| Balancer::new(&c, s).pick(None, 0, now).unwrap())
        .collect();
    firsts.sort_unstable();
    assert_eq!(firsts, [0, 1, 2, 3]);
}

#[test]
fn weighted_is_smooth_and_exact_per_cycle() {
    let now = Instant::now();
    let mut b = Balancer::new(&cfg(&[5, 1, 1], Balance::Weighted, 1), 0);
    assert_eq!(seq(&mut b, 7, now), [0, 0, 1, 0, 2, 0, 0]); // nginx's a a b a c a a
    let mut b = Balancer::new(&cfg(&[1, 3], Balance::Weighted, 1), 0);
    assert_eq!(
        seq(&mut b, 4, now),
        [1, 0, 1, 1],
        "interleaved, not a,b,b,b"
    );
    for seed in 0..12 {
        let mut b = Balancer::new(&cfg(&[2, 3, 5], Balance::Weighted, 1), seed);
        for _ in 0..20 {
            assert_eq!(counts(&mut b, 10, now), [2, 3, 5], "seed {seed}");
        }
    }
    // Workers with different seeds do not all start on the heaviest endpoint.
    let c = cfg(&[1, 1, 2], Balance::Weighted, 1);
    let firsts: Vec<_> = (0..4)
        .map(|s| Balancer::new(&c, s).pick(None, 0, now))
        .collect();
    assert!(firsts.iter().any(|&f| f != Some(2)), "{firsts:?}");
    // Ejected endpoints are skipped; the rest keep their proportions.
    let mut b = Balancer::new(&cfg(&[1, 2, 3], Balance::Weighted, 1), 0);
    assert_eq!(b.report_failure(2, now), Ejection::Ejected);
    assert_eq!(counts(&mut b, 30, now), [10, 20, 0]);
}

#[test]
fn least_conn_follows_in_flight_and_rotates_ties() {
    let now = Instant::now();
    let mut b = Balancer::new(&cfg(&[1; 3], Balance::LeastConn, 1), 0);
    assert_eq!(seq(&mut b, 6, now), [0, 1, 2, 0, 1, 2]);
    for i in [0, 0, 2] {
        b.on_request_start(i);
    }
    assert_eq!(b.pick(None, 0, now), Some(1));
    b.on_request_start(1);
    b.on_request_start(1);
    assert_eq!(b.pick(None, 0, now), Some(2));
    for _ in 0..3 {
        b.on_request_end(1);
    }
    assert_eq!((b.in_flight(0), b.in_flight(1), b.in_flight(2)), (2, 0, 1));
    // Open requests without closing them: in-flight stays level.
    let mut b = Balancer::new(&cfg(&[1; 3], Balance::LeastConn, 1), 7);
    for _ in 0..30 {
        let i = b.pick(None, 0, now).unwrap();
        b.on_request_start(i);
    }
    assert_eq!([b.in_flight(0), b.in_flight(1), b.in_flight(2)], [10; 3]);
}

#[test]
fn p2c_even_under_equal_load_and_avoids_loaded() {
    let now = Instant::now();
    let mut b = Balancer::new(&cfg(&[1; 4], Balance::P2c, 1), 3);
    for c in counts(&mut b, 40_000, now) {
        assert!((9_000..11_000).contains(&c), "{c}");
    }
    for _ in 0..100 {
        b.on_request_start(0);
    }
    let c = counts(&mut b, 10_000, now);
    assert_eq!(c[0], 0, "{c:?}");
    let mut b = Balancer::new(&cfg(&[1; 2], Balance::P2c, 1), 1);
    b.on_request_start(1);
    assert_eq!(counts(&mut b, 100, now), [100, 0]);
    // Different seeds, different random streams.
    let c = cfg(&[1; 8], Balance::P2c, 1);
    let (mut b0, mut b1) = (Balancer::new(&c, 0), Balancer::new(&c, 1));
    assert_ne!(seq(&mut b0, 32, now), seq(&mut b1, 32, now));
}

#[test]
fn hash_is_stable_even_and_minimal_on_ejection() {
    let now = Instant::now();
    let c = cfg(&[1; 5], hash_policy(), 1);
    let mut b = Balancer::new(&c, 0);
    let mut other = Balancer::new(&c, 3);
    let keys: Vec<u64> = (0..10_000u32).map(|k| hash_key(&k.to_le_bytes())).collect();
    let before: Vec<usize> = keys
        .iter()
        .map(|&k| b.pick(Some(k), 0, now).unwrap())
        .collect();
    let mut per = [0usize; 5];
    for (&k, &p) in keys.iter().zip(&before) {
        assert_eq!(b.pick(Some(k), 0, now), Some(p));
        assert_eq!(other.pick(Some(k), 0, now), Some(p), "same on every worker");
        per[p] += 1;
    }
    for n in per {
        assert!((1_700..2_300).contains(&n), "{per:?}");
    }
    assert_eq!(b.report_failure(2, now), Ejection::Ejected);
    for (&k, &p) in keys.iter().zip(&before) {
        let q = b.pick(Some(k), 0, now).unwrap();
        if p == 2 {
            assert_ne!(q, 2);
        } else {
            assert_eq!(q, p, "only the ejected endpoint's keys move");
        }
    }
    let later = now + Duration::from_secs(10);
    for (&k, &p) in keys.iter().zip(&before) {
        assert_eq!(b.pick(Some(k), 0, later), Some(p), "back after recovery");
    }
    assert_eq!(
        seq(&mut b, 5, later),
        [0, 1, 2, 3, 4],
        "no key: round robin"
    );
}

#[test]
fn hash_keys_follow_addresses_not_positions() {
    let now = Instant::now();
    let five = cfg(&[1; 5], hash_policy(), 1);
    let addr = |c: &UpstreamConfig, i: usize| c.endpoints[i].addr;
    let keys: Vec<u64> = (0..10_000u64).map(hash_key_of).collect();
    let owner = |c: &UpstreamConfig| {
        let mut b = Balancer::new(c, 0);
        keys.iter()
            .map(|&k| addr(c, b.pick(Some(k), 0, now).unwrap()))
            .collect::<Vec<_>>()
    };
    let before = owner(&five);
    // the first endpoint leaves (a reload, a DNS change): every other endpoint's index moves
    let mut four = five.clone();
    four.endpoints.remove(0);
    let gone = addr(&five, 0);
    for (k, (was, now_)) in before.iter().zip(owner(&four)).enumerate() {
        if *was == gone {
            assert_ne!(now_, gone);
        } else {
            assert_eq!(*was, now_, "key {k} moved though its endpoint stayed");
        }
    }
    // another order, same owners; an endpoint that joins takes about its share, from everyone
    let mut shuffled = five.clone();
    shuffled.endpoints.reverse();
    assert_eq!(owner(&shuffled), before);
    let mut six = five.clone();
    six.endpoints.push(Endpoint {
        addr: ([127, 0, 0, 1], 9000).into(),
        weight: 1,
    });
    let after = owner(&six);
    let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert!(after
        .iter()
        .zip(&before)
        .all(|(a, b)| a == b || a.port() == 9000));
    assert!(
        (1_300..2_100).contains(&moved),
        "{moved} of 10000 keys moved"
    );
    // pinned: placements agree across builds, platforms and gateways
    assert_eq!(
        endpoint_salt(([10, 0, 0, 1], 80).into()),
        0x3775_8770_e688_76ea
    );
    assert_ne!(
        endpoint_salt("[::1]:80".parse().unwrap()),
        endpoint_salt(([0, 0, 0, 1], 80).into())
    );
}

#[test]
fn passive_health_carries_by_address_under_the_same_rules() {
    let now = Instant::now();
    let old_cfg = cfg(&[1; 3], Balance::RoundRobin, 1);
    let mut old = Balancer::new(&old_cfg, 0);
    assert_eq!(old.report_failure(2, now), Ejection::Ejected);
    // endpoint 2 is now first, 0 has left, a new one joined
    let mut moved = old_cfg.clone();
    moved.endpoints = vec![
        old_cfg.endpoints[2],
        old_cfg.endpoints[1],
        Endpoint {
            addr: ([127, 0, 0, 1], 9000).into(),
            weight: 1,
        },
    ];
    let map = |i: usize| [None, Some(1), Some(0)][i];
    let mut next = Balancer::new(&moved, 0);
    next.carry_passive(&old, map);
    assert!(next.is_ejected(0, now) && !next.is_ejected(1, now) && !next.is_ejected(2, now));
    assert!(
        !next.is_ejected(0, now + Duration::from_secs(10)),
        "same deadline"
    );
    // other passive rules: nothing carries
    let mut stricter = moved.clone();
    stricter.fail_timeout = Duration::from_secs(60);
    let mut next = Balancer::new(&stricter, 0);
    next.carry_passive(&old, map);
    assert!(!next.is_ejected(0, now));
}

#[test]
fn ejection_window_and_recovery() {
    let t0 = Instant::now();
    let s = Duration::from_secs(1);
    let mut b = Balancer::new(&cfg(&[1; 3], Balance::RoundRobin, 3), 0);
    assert_eq!(b.report_failure(1, t0), Ejection::None);
    assert_eq!(b.report_failure(1, t0 + s), Ejection::None);
    assert!(!b.is_ejected(1, t0 + s));
    assert_eq!(b.report_failure(1, t0 + 2 * s), Ejection::Ejected);
    assert!(b.is_ejected(1, t0 + 2 * s));
    assert_eq!(
        b.report_failure(1, t0 + 3 * s),
        Ejection::None,
        "already ejected"
    );
    assert_eq!(counts(&mut b, 4, t0 + 3 * s), [2, 0, 2]);
    // Back exactly fail_timeout after the ejection.
    assert!(b.is_ejected(1, t0 + 11 * s));
    assert!(!b.is_ejected(1, t0 + 12 * s));
    assert_eq!(counts(&mut b, 6, t0 + 12 * s), [2, 2, 2]);
    // Failures spread beyond fail_timeout do not accumulate; success resets the count.
    assert_eq!(b.report_failure(0, t0), Ejection::None);
    assert_eq!(b.report_failure(0, t0 + 5 * s), Ejection::None);
    assert_eq!(b.report_failure(0, t0 + 10 * s), Ejection::None); // new window
    assert_eq!(b.report_failure(0, t0 + 11 * s), Ejection::None);
    b.report_success(0);
    assert_eq!(b.report_failure(0, t0 + 12 * s), Ejection::None);
    assert_eq!(b.report_failure(0, t0 + 13 * s), Ejection::None);
    assert_eq!(b.report_failure(0, t0 + 14 * s), Ejection::Ejected);
}

#[test]
fn max_fails_zero_never_ejects() {
    let now = Instant::now();
    let mut b = Balancer::new(&cfg(&[1; 2], Balance::RoundRobin, 0), 0);
    for _ in 0..100 {
        assert_eq!(b.report_failure(0, now), Ejection::None);
    }
    assert!(!b.is_ejected(0, now));
    assert_eq!(counts(&mut b, 2, now), [1, 1]);
}

#[test]
fn empty_gives_none_and_the_last_healthy_is_never_ejected() {
    let now = Instant::now();
    for policy in all_policies() {
        let mut b = Balancer::new(&cfg(&[1; 3], policy.clone(), 1), 0);
        assert_eq!(b.report_failure(0, now), Ejection::Ejected);
        assert_eq!(b.report_failure(1, now), Ejection::Ejected);
        assert_eq!(b.report_failure(2, now), Ejection::Spared, "{policy:?}");
        assert_eq!(b.pick(Some(42), 0, now), Some(2), "{policy:?}");
        assert_eq!(b.pick(None, 0b111, now), Some(2), "{policy:?}");
        let mut e = Balancer::new(&cfg(&[], policy, 1), 5);
        assert!(e.is_empty());
        assert_eq!(e.pick(Some(1), 0, now), None);
    }
}

#[test]
fn a_sole_endpoint_is_never_ejected() {
    let now = Instant::now();
    let mut c = cfg(&[1], Balance::RoundRobin, 1);
    c.max_ejection_percent = 100;
    let mut b = Balancer::new(&c, 0);
    for _ in 0..5 {
        assert_eq!(b.report_failure(0, now), Ejection::Spared);
        assert_eq!(b.pick(None, 0, now), Some(0));
    }
}

#[test]
fn max_ejection_percent_caps_ejections() {
    let now = Instant::now();
    let mut c = cfg(&[1; 4], Balance::RoundRobin, 1);
    c.max_ejection_percent = 50;
    let mut b = Balancer::new(&c, 0);
    assert_eq!(b.report_failure(0, now), Ejection::Ejected);
    assert_eq!(b.report_failure(1, now), Ejection::Ejected);
    assert_eq!(b.report_failure(2, now), Ejection::Spared, "3 of 4 > 50%");
    assert_eq!(counts(&mut b, 4, now), [0, 0, 2, 2]);
    // once an ejection ends, another endpoint may take its place
    let later = now + Duration::from_secs(10);
    assert_eq!(b.report_failure(2, later), Ejection::Ejected);
    c.max_ejection_percent = 0;
    let mut b = Balancer::new(&c, 0);
    assert_eq!(b.report_failure(0, now), Ejection::Spared);
}

#[test]
fn panic_threshold_balances_over_all() {
    let now = Instant::now();
    let mut c = cfg(&[1; 4], Balance::RoundRobin, 1);
    c.panic_threshold = 50;
    let mut b = Balancer::new(&c, 0);
    assert_eq!(b.report_failure(0, now), Ejection::Ejected);
    assert_eq!(b.report_failure(1, now), Ejection::Ejected);
    // 2 of 4 healthy = 50%: not below the threshold
    assert_eq!(counts(&mut b, 4, now), [0, 0, 2, 2]);
    assert!(!b.last_pick_panicked());
    assert_eq!(b.report_failure(2, now), Ejection::Ejected);
    // 1 of 4 healthy: panic, every endpoint takes traffic again
    assert_eq!(counts(&mut b, 8, now), [2, 2, 2, 2]);
    assert!(b.last_pick_panicked());
    c.panic_threshold = 0;
    let mut b = Balancer::new(&c, 0);
    for i in 0..3 {
        b.report_failure(i, now);
    }
    assert_eq!(counts(&mut b, 4, now), [0, 0, 0, 4]);
    assert!(!b.last_pick_panicked());
}

#[test]
fn retries_prefer_untried() {
    let now = Instant::now();
    for policy in all_policies() {
        let mut b = Balancer::new(&cfg(&[1, 2, 3, 4], policy.clone(), 1), 1);
        for round in 0..50u64 {
            let key = Some(hash_key(&round.to_le_bytes()));
            let mut tried = 0u64;
            for _ in 0..4 {
                let i = b.pick(key, tried, now).unwrap();
                assert_eq!(tried >> i & 1, 0, "{policy:?}: {i} already tried");
                tried |= 1 << i;
            }
            // Every endpoint tried: a tried one comes back rather than None.
            assert!(b.pick(key, tried, now).is_some());
            // Untried but ejected endpoint 3: a tried healthy one instead.
            let mut b2 = b.clone();
            b2.report_failure(3, now);
            let again = b2.pick(key, 0b0111, now);
            assert!(matches!(again, Some(0..=2)), "{policy:?}");
        }
    }
}

#[test]
fn more_than_64_endpoints() {
    let now = Instant::now();
    let mut b = Balancer::new(&cfg(&[1; 70], Balance::RoundRobin, 1), 65);
    assert_eq!(b.pick(None, u64::MAX, now), Some(65));
    assert_eq!(counts(&mut b, 700, now), vec![10; 70]);
    let mut b = Balancer::new(&cfg(&[1; 70], hash_policy(), 1), 0);
    let mut seen = [false; 70];
    for k in 0..20_000u32 {
        seen[b.pick(Some(hash_key(&k.to_le_bytes())), 0, now).unwrap()] = true;
    }
    assert!(seen.iter().all(|&s| s));
}

#[test]
fn hash_key_is_stable_and_spreads() {
    assert_ne!(hash_key(b"a"), hash_key(b"a\0"));
    assert_ne!(hash_key(b"user-42"), hash_key(b"user-43"));
    assert_ne!(hash_key(b"0123456789abcdef"), hash_key(b"0123456789abcdeg"));
    // Pinned values: the hash must not change between builds or platforms.
    assert_eq!(hash_key(b""), 0xe9e0_033e_3bad_af36);
    assert_eq!(hash_key(b"10.0.0.1"), 0xa04b_979b_d73d_90f7);
    assert_eq!(hash_key(b"x-user-id: 123456789"), 0xa984_2bed_854a_2412);
}

#[test]
fn consecutive_5xx_eject_for_growing_times_within_the_floor() {
    let t0 = Instant::now();
    let mut c = cfg(&[1; 3], Balance::RoundRobin, 3);
    c.max_ejection_percent = 100;
    c.outlier_detection = Some(crate::config::OutlierConfig {
        consecutive_5xx: 2,
        base_ejection_time: Duration::from_secs(10),
        max_ejection_time: Duration::from_secs(15),
        ..outlier_defaults()
    });
    let mut b = Balancer::new(&c, 0);
    assert_eq!(b.report_status(0, 500, t0), Ejection::None);
    assert_eq!(
        b.report_status(0, 404, t0),
        Ejection::None,
        "a non-5xx ends the run"
    );
    assert_eq!(b.report_status(0, 502, t0), Ejection::None);
    assert_eq!(b.report_status(0, 503, t0), Ejection::Ejected);
    assert!(b.is_ejected(0, t0 + Duration::from_secs(9)));
    let t1 = t0 + Duration::from_secs(10);
    assert!(!b.is_ejected(0, t1));
    b.report_status(0, 500, t1);
    assert_eq!(b.report_status(0, 500, t1), Ejection::Ejected);
    // the second ejection: 2 x 10 s, capped at 15 s
    assert!(b.is_ejected(0, t1 + Duration::from_secs(14)));
    assert!(!b.is_ejected(0, t1 + Duration::from_secs(15)));
    // the floor: with 0 already out, 1 more ejected leaves the last one in
    b.report_status(1, 500, t1);
    assert_eq!(b.report_status(1, 500, t1), Ejection::Ejected);
    b.report_status(2, 500, t1);
    assert_eq!(
        b.report_status(2, 500, t1),
        Ejection::Spared,
        "the last healthy one stays"
    );
}

#[test]
fn slow_start_ramps_a_returning_endpoint_from_a_tenth() {
    let mut c = cfg(&[1, 1], Balance::RoundRobin, 1);
    c.fail_timeout = Duration::from_secs(1);
    c.slow_start = Some(Duration::from_secs(10));
    let mut b = Balancer::new(&c, 0);
    let t0 = Instant::now();
    assert_eq!(
        counts(&mut b, 1000, t0),
        [500, 500],
        "nothing returned: no ramp"
    );
    assert_eq!(b.report_failure(0, t0), Ejection::Ejected);
    assert_eq!(counts(&mut b, 100, t0), [0, 100]);
    // back at t0 + 1 s: weighted like 0.1 against 1 just after (~9% of picks), 0.55 at 5.5 s
    // in (~35%), its whole share after 10 s
    let share = |b: &mut Balancer, at: Duration| counts(b, 4000, t0 + at)[0] as f64 / 4000.0;
    let early = share(&mut b, Duration::from_millis(1100));
    assert!((0.05..0.13).contains(&early), "{early}");
    let mid = share(&mut b, Duration::from_millis(6500));
    assert!((0.30..0.41).contains(&mid), "{mid}");
    assert_eq!(share(&mut b, Duration::from_secs(12)), 0.5);
    // hash balancing keeps its keys
    let mut h = cfg(&[1, 1], hash_policy(), 1);
    h.slow_start = Some(Duration::from_secs(10));
    h.fail_timeout = Duration::from_secs(1);
    let mut b = Balancer::new(&h, 0);
    let key = (0..)
        .map(hash_key_of)
        .find(|&k| b.pick(Some(k), 0, t0) == Some(0))
        .unwrap();
    b.report_failure(0, t0);
    let back = t0 + Duration::from_millis(1001);
    assert!((0..50).all(|_| b.pick(Some(key), 0, back) == Some(0)));
}

fn hash_key_of(i: u64) -> u64 {
    hash_key(&i.to_le_bytes())
}

fn with_outlier(n: usize, gw: u32) -> Balancer {
    let mut c = cfg(&vec![1; n], Balance::RoundRobin, 0);
    c.max_ejection_percent = 50;
    c.outlier_detection = Some(crate::config::OutlierConfig {
        consecutive_5xx: 100,
        consecutive_gateway_errors: gw,
        ..outlier_defaults()
    });
    Balancer::new(&c, 0)
}

#[test]
fn consecutive_gateway_errors_count_failed_calls_and_502_to_504() {
    let mut b = with_outlier(3, 3);
    let t = Instant::now();
    assert_eq!(b.report_status(0, 503, t), Ejection::None);
    assert_eq!(b.report_failure(0, t), Ejection::None, "a reset counts too");
    assert_eq!(
        b.report_status(0, 500, t),
        Ejection::None,
        "a 500 ends the run"
    );
    assert_eq!(b.report_status(0, 502, t), Ejection::None);
    assert_eq!(b.report_status(0, 504, t), Ejection::None);
    assert_eq!(b.report_failure(0, t), Ejection::Ejected);
    assert!(b.is_ejected(0, t + Duration::from_secs(29)));
    assert!(!b.is_ejected(0, t + Duration::from_secs(30)));
}

#[test]
fn success_rate_outliers_are_ejected_once_per_interval() {
    let mut b = with_outlier(6, 0);
    let t = Instant::now();
    assert_eq!(
        b.check_success_rates(t),
        (0, 0),
        "starts the first interval"
    );
    for ep in 0..6 {
        for i in 0..200 {
            // endpoint 5 fails a third of its calls, the others one in a hundred
            let bad = if ep == 5 { i % 3 == 0 } else { i % 100 == 0 };
            b.report_status(ep, if bad { 500 } else { 200 }, t);
        }
    }
    assert_eq!(
        b.check_success_rates(t + Duration::from_secs(5)),
        (0, 0),
        "not due"
    );
    assert_eq!(b.check_success_rates(t + Duration::from_secs(10)), (1, 0));
    let later = t + Duration::from_secs(11);
    assert!(b.is_ejected(5, later) && !b.is_ejected(4, later));
    // too few endpoints with enough calls: no verdict
    for ep in 0..4 {
        for _ in 0..200 {
            b.report_status(ep, 200, later);
        }
    }
    assert_eq!(b.check_success_rates(t + Duration::from_secs(20)), (0, 0));
}

fn outlier_defaults() -> crate::config::OutlierConfig {
    crate::config::OutlierConfig {
        consecutive_5xx: 5,
        consecutive_gateway_errors: 0,
        base_ejection_time: Duration::from_secs(30),
        max_ejection_time: Duration::from_secs(300),
        interval: Duration::from_secs(10),
        success_rate_min_hosts: 5,
        success_rate_request_volume: 100,
        success_rate_stdev_factor: 1.9,
    }
}
