//! Question: what does authenticating a request cost: a full JWT verification (HS256, RS256,
//! ES256: signature + claims checks + identity building) against a verdict-cache hit, and an API
//! key lookup?
//!
//! Decision it backs: the per-worker verdict cache (`auth::cache`). If a cache hit is two orders of
//! magnitude cheaper than an RS256/ES256 verification, a repeat caller must never pay for the
//! signature again, and the cache earns its memory (about the token's length per entry).
//!
//! Tokens are realistic (sub, iss, aud, exp, roles, scope; 300-600 bytes). Keys are the test
//! fixtures in `tests/fixtures/keys/`.
//!
//! Run: `cargo bench --bench auth_verify -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;
use std::rc::Rc;
use std::time::Duration;

use coregate::auth::apikey;
use coregate::auth::cache::{now_ms, Cache};
use coregate::auth::identity::Identity;
use coregate::auth::jwt::{check_claims, exp_of, verify_signature};
use coregate::auth::keys::{Key, KeySet};
use coregate::config::auth::{ApiKeys, Consumer, IdentityMap, JwtRules};
use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/keys/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn claims() -> serde_json::Value {
    let now = now_ms() / 1000;
    serde_json::json!({
        "sub": "user-1234567", "iss": "https://idp.example.com", "aud": "api",
        "exp": now + 3600, "iat": now, "roles": ["reader", "writer"], "scope": "read write admin",
        "email": "someone@example.com"
    })
}

fn bench(c: &mut Criterion) {
    let cases: Vec<(&str, Algorithm, EncodingKey, Key)> = vec![
        (
            "HS256",
            Algorithm::HS256,
            EncodingKey::from_secret(b"a-32-byte-secret-for-hmac-sha256"),
            Key::secret(b"a-32-byte-secret-for-hmac-sha256", None),
        ),
        (
            "RS256",
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&fixture("rsa.key")).unwrap(),
            Key::from_pem(&fixture("rsa.pub")).unwrap(),
        ),
        (
            "ES256",
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&fixture("ec.key")).unwrap(),
            Key::from_pem(&fixture("ec.pub")).unwrap(),
        ),
    ];
    let mut g = c.benchmark_group("jwt");
    for (name, alg, enc, key) in cases {
        let token = encode(&Header::new(alg), &claims(), &enc).unwrap();
        let set = KeySet { keys: vec![key] };
        let rules = JwtRules {
            algorithms: vec![alg],
            static_keys: KeySet::default(),
            jwks: None,
            issuers: vec!["https://idp.example.com".into()],
            audiences: vec!["api".into()],
            leeway: Duration::from_secs(30),
            required_claims: vec!["exp".into()],
        };
        let m = IdentityMap::default();
        g.bench_function(format!("verify/{name}"), |b| {
            b.iter(|| {
                let s = verify_signature(black_box(&token), &[alg], &[&set]).unwrap();
                let claims = check_claims(&s.payload, &rules, now_ms() / 1000).unwrap();
                black_box(Identity::from_claims(&claims, &m, exp_of(&claims)))
            })
        });
        let mut cache = Cache::new(10_000);
        let now = now_ms();
        for i in 0..5_000u32 {
            cache.put(
                format!("{token}{i}").as_bytes(),
                Ok(Rc::new(Identity::default())),
                now + 3_600_000,
                now,
            );
        }
        cache.put(
            token.as_bytes(),
            Ok(Rc::new(Identity::default())),
            now + 3_600_000,
            now,
        );
        g.bench_function(format!("cache_hit/{name}"), |b| {
            b.iter(|| black_box(cache.get(black_box(token.as_bytes()), now_ms()).is_some()))
        });
    }
    g.finish();
    let keys = ApiKeys {
        keys: (0..100)
            .map(|i| {
                let c = Consumer {
                    id: format!("c{i}"),
                    tenant: None,
                    tier: None,
                };
                (apikey::digest(format!("key-{i}").as_bytes()), c)
            })
            .collect(),
    };
    c.bench_function("api_key/find_among_100", |b| {
        b.iter(|| black_box(apikey::find(&keys, black_box(b"key-77")).is_some()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
