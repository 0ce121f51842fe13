//! The response cache through real sockets: MISS then HIT with `Age`, `X-Cache` on every
//! answer; upstream freshness (`max-age`) over the route's `ttl`; `no-store`, `private` and
//! `Set-Cookie` never stored; Vary variants kept apart; a response to an authenticated request
//! never served to another caller unless the key has the identity or the upstream says `public`;
//! conditional revalidation (304 refreshes the entry); stale-while-revalidate (stale answer at
//! once, one background refresh); stale-if-error (5xx or a timed-out upstream answered from the
//! stale entry); request coalescing (concurrent misses, one upstream call); invalidation by an
//! unsafe method; purge through the admin API on every worker. Both drivers.

mod common;
use common::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// The mock's behaviour, switched by tests.
#[derive(Default)]
struct Knobs {
    version: AtomicUsize,
    failing: AtomicBool,
    /// Answers only after the gateway's response_timeout (2 s).
    hanging: AtomicBool,
}

fn origin(knobs: Arc<Knobs>) -> Upstream {
    Upstream::start(
        "origin",
        false,
        Arc::new(move |r: &Recorded| {
            let v = knobs.version.load(Ordering::SeqCst);
            let json = |body: String| {
                MockResponse::new(200, body).header("content-type", "application/json")
            };
            if knobs.failing.load(Ordering::SeqCst) {
                return MockResponse::new(500, "<html>down</html>");
            }
            let path = r.target.split('?').next().unwrap_or_default();
            match path {
                "/plain" | "/plain/x" => json(format!("{{\"v\":{v},\"t\":\"{}\"}}", r.target)),
                "/short" => json(format!("{{\"v\":{v}}}")).header("cache-control", "max-age=1"),
                "/nostore" => json(format!("{{\"v\":{v}}}")).header("cache-control", "no-store"),
                "/private" => json(format!("{{\"v\":{v}}}")).header("cache-control", "private"),
                "/cookie" => json(format!("{{\"v\":{v}}}")).header("set-cookie", "s=1"),
                "/public" => {
                    json(format!("{{\"v\":{v}}}")).header("cache-control", "public, max-age=60")
                }
                "/lang" => json(format!(
                    "{{\"lang\":\"{}\",\"v\":{v}}}",
                    r.header("accept-language").unwrap_or_default()
                ))
                .header("vary", "Accept-Language"),
                "/me" => json(format!(
                    "{{\"user\":\"{}\",\"v\":{v}}}",
                    r.header("authorization").unwrap_or_default()
                )),
                "/etag" => {
                    if r.header("if-none-match").as_deref() == Some("\"e1\"") {
                        MockResponse::new(304, "").header("etag", "\"e1\"")
                    } else {
                        // max-age=2: fresh for a whole second even when the exchange straddles
                        // a second boundary (ages are whole seconds, RFC 9111 4.2.3)
                        json(format!("{{\"v\":{v}}}"))
                            .header("etag", "\"e1\"")
                            .header("cache-control", "max-age=2")
                    }
                }
                "/swr-etag" if r.header("if-none-match").as_deref() == Some("\"s1\"") => {
                    MockResponse::new(304, "").header("etag", "\"s1\"")
                }
                "/swr-etag" => json(format!("{{\"v\":{v}}}"))
                    .header("etag", "\"s1\"")
                    .header("cache-control", "max-age=2, stale-while-revalidate=30"),
                "/slow" => json(format!("{{\"v\":{v}}}")).delay_ms(300),
                "/swr" => json(format!("{{\"v\":{v}}}"))
                    .header("cache-control", "max-age=1, stale-while-revalidate=30"),
                "/sie" if knobs.hanging.load(Ordering::SeqCst) => {
                    json(format!("{{\"v\":{v}}}")).delay_ms(3000)
                }
                "/sie" => json(format!("{{\"v\":{v}}}"))
                    .header("cache-control", "max-age=1, stale-if-error=60"),
                _ => MockResponse::new(404, "nope"),
            }
        }),
    )
}

fn gateway_config(up: &Upstream) -> String {
    let routes = route_toml(
        "popular",
        "origin",
        "path_prefix = \"/\"\ncache = { ttl = \"30s\", stale_if_error = \"1m\" }",
    ) + &route_toml(
        "per-user",
        "origin",
        "path = \"/u/me\"\nstrip_prefix = \"/u\"\ncache = { ttl = \"30s\", key = [\"identity\"] }",
    );
    config(
        "",
        &(upstream_toml("origin", &[up.addr], "response_timeout = \"2s\"") + &routes),
    )
}

fn x_cache(r: &Response) -> String {
    r.header("x-cache").unwrap_or_default()
}

fn count(up: &Upstream, path: &str) -> usize {
    up.requests().iter().filter(|r| r.target == path).count()
}

#[test]
fn hits_misses_and_what_is_never_stored() {
    let knobs = Arc::new(Knobs::default());
    let up = origin(knobs.clone());
    let cfg = gateway_config(&up);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        up.clear();
        let mut c = Client::connect(gw.addr);
        let first = c.get("/plain?a=1", "a.test");
        assert_eq!(
            (first.status, x_cache(&first)),
            (200, "MISS".into()),
            "[{driver}]"
        );
        let second = c.get("/plain?a=1", "a.test");
        assert_eq!(x_cache(&second), "HIT", "[{driver}]");
        assert_eq!(second.body, first.body, "[{driver}] byte-exact");
        assert_eq!(second.header("content-type"), first.header("content-type"));
        assert!(second.header("age").is_some(), "[{driver}] Age on a hit");
        assert_eq!(count(&up, "/plain?a=1"), 1, "[{driver}]");
        // the query is part of the default key; HEAD is answered from the GET's entry
        assert_eq!(x_cache(&c.get("/plain?a=2", "a.test")), "MISS");
        let head = c.request(&req("HEAD", "/plain?a=1", "a.test", &[], b""));
        assert_eq!(
            (head.status, x_cache(&head)),
            (200, "HIT".into()),
            "[{driver}]"
        );
        assert_eq!(
            head.header("content-length"),
            first.header("content-length")
        );
        // never stored
        for path in ["/nostore", "/private", "/cookie"] {
            for _ in 0..2 {
                let r = c.get(path, "a.test");
                assert_eq!(
                    (r.status, x_cache(&r)),
                    (200, "MISS".into()),
                    "[{driver}] {path}"
                );
            }
            assert_eq!(count(&up, path), 2, "[{driver}] {path}");
        }
        // the client's validators: 304 from the entry
        let etag = c.get("/etag", "a.test");
        let r = c.request(&req(
            "GET",
            "/etag",
            "a.test",
            &[("if-none-match", "\"e1\"")],
            b"",
        ));
        assert_eq!((r.status, x_cache(&r)), (304, "HIT".into()), "[{driver}]");
        assert!(r.body.is_empty() && etag.status == 200);
        // a request that says no-cache goes to the upstream (and refreshes the entry)
        let before = count(&up, "/plain?a=1");
        let r = c.request(&req(
            "GET",
            "/plain?a=1",
            "a.test",
            &[("cache-control", "no-cache")],
            b"",
        ));
        assert_eq!(x_cache(&r), "MISS", "[{driver}]");
        assert_eq!(count(&up, "/plain?a=1"), before + 1);
    });
}

#[test]
fn vary_and_identity_keep_callers_apart() {
    let knobs = Arc::new(Knobs::default());
    let up = origin(knobs.clone());
    let cfg = gateway_config(&up);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        up.clear();
        let mut c = Client::connect(gw.addr);
        let get = |c: &mut Client, path: &str, h: &[(&str, &str)]| {
            c.request(&req("GET", path, "a.test", h, b""))
        };
        let fr = get(&mut c, "/lang", &[("accept-language", "fr")]);
        let de = get(&mut c, "/lang", &[("accept-language", "de")]);
        assert!(fr.body_str().contains("\"fr\"") && de.body_str().contains("\"de\""));
        let fr2 = get(&mut c, "/lang", &[("accept-language", "fr")]);
        assert_eq!(
            (x_cache(&fr2), fr2.body.clone()),
            ("HIT".into(), fr.body.clone())
        );
        let none = get(&mut c, "/lang", &[]);
        assert_eq!(
            x_cache(&none),
            "MISS",
            "[{driver}] absent is its own variant"
        );

        // an authenticated caller's response is not stored under a shared key...
        let alice = get(&mut c, "/me", &[("authorization", "Bearer alice")]);
        let bob = get(&mut c, "/me", &[("authorization", "Bearer bob")]);
        assert!(alice.body_str().contains("alice") && bob.body_str().contains("bob"));
        assert_eq!(x_cache(&bob), "MISS", "[{driver}] never alice's answer");
        // ...unless the upstream says public
        let a = get(&mut c, "/public", &[("authorization", "Bearer alice")]);
        let b = get(&mut c, "/public", &[("authorization", "Bearer bob")]);
        assert_eq!((x_cache(&a), x_cache(&b)), ("MISS".into(), "HIT".into()));
    });
}

#[test]
fn revalidation_stale_answers_and_coalescing() {
    let knobs = Arc::new(Knobs::default());
    let up = origin(knobs.clone());
    let cfg = gateway_config(&up);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        up.clear();
        let mut c = Client::connect(gw.addr);
        // conditional revalidation: stale after max-age=2, the upstream says 304
        assert_eq!(x_cache(&c.get("/etag", "a.test")), "MISS");
        let again = |c: &mut Client, path: &str, want: &str| {
            let mut last = String::new();
            let ok = wait_until(deadline(secs(10)), || {
                last = x_cache(&c.get(path, "a.test"));
                last == want
            });
            assert!(ok, "[{driver}] {path}: never {want}, last {last}");
        };
        again(&mut c, "/etag", "REVALIDATED");
        let seen = up.requests();
        let cond = seen.iter().rfind(|r| r.target == "/etag").unwrap();
        assert_eq!(
            cond.header("if-none-match").as_deref(),
            Some("\"e1\""),
            "[{driver}]"
        );
        assert_eq!(
            x_cache(&c.get("/etag", "a.test")),
            "HIT",
            "[{driver}] fresh again"
        );

        // stale-while-revalidate: the stale entry at once, one refresh behind it
        knobs.version.store(1, Ordering::SeqCst);
        assert_eq!(x_cache(&c.get("/swr", "a.test")), "MISS");
        knobs.version.store(2, Ordering::SeqCst);
        let before = count(&up, "/swr");
        let mut stale = None;
        wait_until(deadline(secs(5)), || {
            let r = c.get("/swr", "a.test");
            let s = x_cache(&r) == "STALE";
            if s {
                stale = Some(r);
            }
            s
        });
        let stale = stale.expect("a STALE answer");
        assert!(
            stale.body_str().contains("\"v\":1"),
            "[{driver}] the old body"
        );
        up.wait_requests(before + 1, secs(5));
        let fresh_ok = wait_until(deadline(secs(5)), || {
            c.get("/swr", "a.test").body_str().contains("\"v\":2")
        });
        assert!(fresh_ok, "[{driver}] refreshed in the background");

        // a background refresh answered by a bare 304 keeps the stored lifetime and its
        // stale-while-revalidate window: once stale again the entry is again served stale at once
        // (not revalidated in the foreground, as the route's default window of 0 would have it)
        assert_eq!(x_cache(&c.get("/swr-etag", "a.test")), "MISS");
        again(&mut c, "/swr-etag", "STALE");
        again(&mut c, "/swr-etag", "HIT");
        assert_eq!(
            count(&up, "/swr-etag"),
            2,
            "[{driver}] one background refresh"
        );
        again(&mut c, "/swr-etag", "STALE");

        // stale-if-error: the upstream fails, the stale entry answers
        knobs.version.store(3, Ordering::SeqCst);
        assert_eq!(x_cache(&c.get("/sie", "a.test")), "MISS");
        knobs.failing.store(true, Ordering::SeqCst);
        again(&mut c, "/sie", "STALE");
        let r = c.get("/sie", "a.test");
        assert_eq!(r.status, 200, "[{driver}] never the 500");
        assert!(r.body_str().contains("\"v\":3"));
        knobs.failing.store(false, Ordering::SeqCst);
        // ...and when it does not answer in time (no response head: the exchange's 504 path);
        // the connection stays usable
        knobs.hanging.store(true, Ordering::SeqCst);
        let r = c.get("/sie", "a.test");
        assert_eq!((r.status, x_cache(&r)), (200, "STALE".into()), "[{driver}]");
        assert!(r.body_str().contains("\"v\":3"), "[{driver}]");
        knobs.hanging.store(false, Ordering::SeqCst);
        assert_eq!(c.get("/plain", "a.test").status, 200, "[{driver}]");

        // coalescing: 8 concurrent misses of one key, one upstream call
        let before = count(&up, "/slow");
        let addr = gw.addr;
        let threads: Vec<_> = (0..8)
            .map(|_| std::thread::spawn(move || get(addr, "/slow", "a.test")))
            .collect();
        let answers: Vec<Response> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(answers.iter().all(|r| r.status == 200), "[{driver}]");
        // one call per worker at most (each worker coalesces its own misses)
        let calls = count(&up, "/slow") - before;
        assert!(
            calls <= 2,
            "[{driver}] {calls} upstream calls for 8 concurrent misses"
        );
    });
}

#[test]
fn unsafe_methods_invalidate_and_purge_reaches_every_worker() {
    let knobs = Arc::new(Knobs::default());
    let up = origin(knobs.clone());
    let cfg = gateway_config(&up);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        up.clear();
        // fill both workers (fresh connections land on either) until the entry gauge, summed over
        // the workers, says both paths are on both
        let entries = || gw.metric("coregate_cache_entries");
        let fill = || {
            let ok = wait_until(deadline(secs(10)), || {
                for path in ["/plain", "/plain/x"] {
                    get(gw.addr, path, "a.test");
                }
                entries() == Some(4)
            });
            assert!(
                ok,
                "[{driver}] both paths cached on both workers: {:?}",
                entries()
            );
        };
        fill();
        let r = gw.admin_post("/cache/purge?prefix=/plain");
        assert_eq!(r.status, 200, "[{driver}] {}", r.body_str());
        // both paths on both workers
        assert!(
            r.body_str().contains("\"purged\":4,\"workers\":2"),
            "{}",
            r.body_str()
        );
        // nothing of it left on any worker: every fresh connection misses once per worker
        let misses = (0..8)
            .filter(|_| x_cache(&get(gw.addr, "/plain", "a.test")) == "MISS")
            .count();
        assert!(misses >= 1, "[{driver}] purged");
        // a successful POST to the path drops its entries (on the worker that served it)
        let mut c = Client::connect(gw.addr);
        c.get("/plain", "a.test");
        assert_eq!(x_cache(&c.get("/plain", "a.test")), "HIT");
        let r = c.request(&req("POST", "/plain", "a.test", &[], b"{}"));
        assert_eq!(r.status, 200);
        assert_eq!(x_cache(&c.get("/plain", "a.test")), "MISS", "[{driver}]");
        let r = gw.admin_post("/cache/purge?nothing=1");
        assert_eq!(r.status, 400);
    });
}

#[test]
fn per_user_entries_under_real_auth() {
    use common::jwt::{claims, mint};
    use jsonwebtoken::Algorithm;
    const SECRET: &str = "cache-test-secret-0123456789abcdef";
    std::env::set_var("CG_CACHE_JWT_SECRET", SECRET);
    let up = Upstream::start(
        "origin",
        false,
        Arc::new(|r: &Recorded| {
            let who = r.header("x-user").unwrap_or_default();
            MockResponse::new(200, format!("{{\"user\":\"{who}\"}}"))
                .header("content-type", "application/json")
        }),
    );
    let auth = "[[auth]]\nname = \"hs\"\ntype = \"jwt\"\nalgorithms = [\"HS256\"]\nsecret_env = \"CG_CACHE_JWT_SECRET\"\nclaims_to_headers = { sub = \"X-User\" }\n\n";
    let routes = route_toml(
        "mine",
        "origin",
        "path = \"/me\"\nauth = \"hs\"\ncache = { ttl = \"60s\", key = [\"identity\"] }",
    ) + &route_toml(
        "shared",
        "origin",
        "path = \"/feed\"\nauth = \"hs\"\ncache = { ttl = \"60s\" }",
    );
    let cfg = config(
        "",
        &(auth.to_string() + &upstream_toml("origin", &[up.addr], "") + &routes),
    );
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        up.clear();
        let mut c = Client::connect(gw.addr);
        let token = |sub: &str| {
            let t = mint(
                Algorithm::HS256,
                SECRET,
                None,
                claims(sub, serde_json::json!({})),
            );
            format!("Bearer {t}")
        };
        let (alice, bob) = (token("alice"), token("bob"));
        let get = |c: &mut Client, path: &str, t: &str| {
            c.request(&req("GET", path, "a.test", &[("authorization", t)], b""))
        };
        // key with identity: each caller their own entry
        assert_eq!(x_cache(&get(&mut c, "/me", &alice)), "MISS", "[{driver}]");
        let a2 = get(&mut c, "/me", &alice);
        assert_eq!(
            (x_cache(&a2), a2.body_str()),
            ("HIT".into(), "{\"user\":\"alice\"}".into())
        );
        let b1 = get(&mut c, "/me", &bob);
        assert_eq!(
            (x_cache(&b1), b1.body_str()),
            ("MISS".into(), "{\"user\":\"bob\"}".into())
        );
        let b2 = get(&mut c, "/me", &bob);
        assert_eq!(
            b2.body_str(),
            "{\"user\":\"bob\"}",
            "[{driver}] never alice's"
        );
        // a shared key on an authenticated route: not stored unless the upstream says public
        let f1 = get(&mut c, "/feed", &alice);
        let f2 = get(&mut c, "/feed", &bob);
        assert_eq!((x_cache(&f1), x_cache(&f2)), ("MISS".into(), "MISS".into()));
        assert_eq!(f2.body_str(), "{\"user\":\"bob\"}", "[{driver}]");
        // no credentials: 401 before the cache is asked
        let r = c.get("/me", "a.test");
        assert_eq!(r.status, 401, "[{driver}]");
    });
}
