use std::path::Path;

use super::*;
use crate::config::parse_in;

/// The example file (every key), with the variables its header says to export.
fn example() -> Config {
    crate::config::tests::set_example_env();
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"));
    parse_in(
        include_str!("../../examples/gateway.toml"),
        "examples/gateway.toml",
        dir,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn rendering_round_trips_and_is_a_fixpoint() {
    let c = example();
    let text = to_toml(&c);
    // Rendered paths are absolute, so the base directory no longer matters.
    let again = parse_in(&text, "rendered.toml", Path::new("/"))
        .unwrap_or_else(|e| panic!("{e}\n--- rendered ---\n{text}"));
    assert_eq!(
        to_toml(&again),
        text,
        "render(parse(render(c))) == render(c)"
    );
    assert_eq!(again.server.listen, c.server.listen);
    assert_eq!(again.upstreams, c.upstreams);
    assert_eq!(again.rate_limits, c.rate_limits);
    assert_eq!(again.quotas, c.quotas);
    assert_eq!(again.tiers, c.tiers);
    assert_eq!(again.redis, c.redis);
    assert_eq!(again.access_log, c.access_log);
    let names = |c: &Config| c.routes.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&again), names(&c));
    for (a, b) in again.routes.iter().zip(&c.routes) {
        assert_eq!(
            (&a.host, &a.path, &a.methods, &a.headers, &a.rewrite),
            (&b.host, &b.path, &b.methods, &b.headers, &b.rewrite)
        );
        assert_eq!(
            (
                a.upstream,
                a.auth,
                &a.require,
                &a.rate_limits,
                &a.quotas,
                a.cost
            ),
            (
                b.upstream,
                b.auth,
                &b.require,
                &b.rate_limits,
                &b.quotas,
                b.cost
            )
        );
        assert_eq!((&a.host_rewrite, a.max_body), (&b.host_rewrite, b.max_body));
    }
    for (a, b) in again.auth.iter().zip(&c.auth) {
        assert_eq!(
            (&a.name, &a.sources, &a.source),
            (&b.name, &b.sources, &b.source)
        );
        // A table comes back in key order; only the order of claims for one header matters
        // (they are joined in order), and that is kept.
        let sorted = |m: &crate::config::auth::IdentityMap| {
            let mut m = m.clone();
            m.claims_to_headers.sort();
            m
        };
        assert_eq!(sorted(&a.identity), sorted(&b.identity));
        assert_eq!(a.cache_size, b.cache_size);
    }
}

#[test]
fn secrets_are_shown_as_their_variables() {
    let text = to_toml(&example());
    for secret in [
        "dev-only-jwt-secret",
        "dev-only-beta-key",
        "dev-only-client-secret",
        "dev-only\"",
    ] {
        assert!(!text.contains(secret), "{secret} leaked:\n{text}");
    }
    for var in [
        "secret_env = \"COREGATE_JWT_SECRET\"",
        "key_env = \"COREGATE_BETA_KEY\"",
        "client_secret_env = \"COREGATE_IDP_CLIENT_SECRET\"",
        "password_env = \"COREGATE_REDIS_PASSWORD\"",
    ] {
        assert!(text.contains(var), "{var} missing:\n{text}");
    }
}

#[test]
fn json_has_the_same_document() {
    let c = example();
    let json: serde_json::Value = serde_json::from_str(&to_json(&c)).unwrap();
    let toml: toml::Value = toml::from_str(&to_toml(&c)).unwrap();
    assert_eq!(json, serde_json::to_value(&toml).unwrap());
    assert_eq!(json["server"]["header_timeout"], "10s");
    assert_eq!(json["route"][0]["name"], "user-by-id");
}

#[test]
fn durations_use_the_largest_exact_unit() {
    let d = |ms: u64| duration(Duration::from_millis(ms)).unwrap();
    let text = |v: Value| v.as_str().unwrap().to_owned();
    assert_eq!(text(d(0)), "0s");
    assert_eq!(text(d(250)), "250ms");
    assert_eq!(text(d(1500)), "1500ms");
    assert_eq!(text(d(90_000)), "90s");
    assert_eq!(text(d(120_000)), "2m");
    assert_eq!(text(d(7_200_000)), "2h");
    let sub = text(duration(Duration::from_micros(1500)).unwrap());
    assert_eq!(sub, "0.0015s");
    let back = crate::config::units::parse_duration(&sub).unwrap();
    assert_eq!(back, Duration::from_micros(1500));
}
