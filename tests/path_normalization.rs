//! Path normalisation through the real gateway, under both drivers: spellings of a protected path
//! (escapes, dot segments, repeated slashes, escape case) can never reach it around its auth, two
//! targets that normalise to the same path select the same route and send the same path upstream
//! (a generated property, checked over real sockets), malformed paths get 400 and never reach an
//! upstream, the query string is forwarded byte for byte, each `escaped_slashes` policy and
//! `merge_slashes = false` behave as documented, and absolute-form targets are routed and forwarded
//! in origin-form with the authority as Host.

mod common;
use common::*;

const KEY: &str = "k-normalise-1";

/// Two upstreams so the route a request took is visible: `/admin` (API key) -> `adm`, the rest ->
/// `pub`. `server` adds `[server]` keys.
fn cfg(server: &str, adm: &Upstream, public: &Upstream) -> String {
    std::env::set_var("CG_TEST_NORM_KEY", KEY);
    let auth = "[[auth]]\nname = \"keys\"\ntype = \"api_key\"\n\
                keys = [{ key_env = \"CG_TEST_NORM_KEY\", consumer = \"c\" }]\n\n";
    let body = auth.to_string()
        + &upstream_toml("adm", &[adm.addr], "")
        + &upstream_toml("pub", &[public.addr], "")
        + &route_toml("admin", "adm", "path_prefix = \"/admin\"\nauth = \"keys\"")
        + &route_toml("public", "pub", "path_prefix = \"/\"");
    config(server, &body)
}

const SEGMENTS: &[&str] = &["admin", "secret", "public", "a-b", "x.y", "~u", "v_1"];

/// A random path already in normal form.
fn normal_path(rng: &mut Rng) -> String {
    let n = 1 + rng.below(3);
    let mut p = String::new();
    for i in 0..n {
        p.push('/');
        // half of them under /admin, so the protected route is exercised
        let seg = if i == 0 && rng.chance(50) {
            "admin"
        } else {
            SEGMENTS[rng.below(SEGMENTS.len())]
        };
        p.push_str(seg);
    }
    if rng.chance(20) {
        p.push('/');
    }
    p
}

/// Percent-encodes one byte with hex digits in a random case.
fn escape(rng: &mut Rng, b: u8, out: &mut String) {
    let hex = format!("{b:02X}");
    out.push('%');
    for c in hex.chars() {
        out.push(if rng.chance(50) {
            c.to_ascii_lowercase()
        } else {
            c
        });
    }
}

/// A random spelling of `path` that normalises to it: unreserved bytes escaped, `./` and `x/../`
/// detours (their dots escaped at times), repeated slashes.
fn variant(rng: &mut Rng, path: &str) -> String {
    let mut out = String::new();
    let dot = |rng: &mut Rng, out: &mut String| {
        if rng.chance(30) {
            escape(rng, b'.', out)
        } else {
            out.push('.')
        }
    };
    for (i, seg) in path.split('/').enumerate().skip(1) {
        let last = i == path.split('/').count() - 1;
        out.push('/');
        if !last || !seg.is_empty() {
            while rng.chance(25) {
                out.push('/');
            }
            if rng.chance(25) {
                dot(rng, &mut out);
                out.push('/');
            }
            if rng.chance(25) {
                out.push_str(SEGMENTS[rng.below(SEGMENTS.len())]);
                out.push('/');
                dot(rng, &mut out);
                dot(rng, &mut out);
                out.push('/');
            }
        }
        for b in seg.bytes() {
            if rng.chance(30) {
                escape(rng, b, &mut out);
            } else {
                out.push(b as char);
            }
        }
    }
    out
}

fn send(gw: &Gateway, target: &str, headers: &[(&str, &str)]) -> Response {
    Client::connect(gw.addr).request(&req("GET", target, "api.test", headers, b""))
}

/// Any two spellings of one path take the same route and send the same (normal) path upstream;
/// without credentials, no spelling of a protected path reaches any upstream.
#[test]
fn spellings_of_one_path_route_and_forward_alike() {
    let adm = Upstream::recording("adm");
    let public = Upstream::recording("pub");
    let cfg = cfg("", &adm, &public);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut failures = Vec::new();
        for _ in 0..150 {
            let path = normal_path(&mut rng);
            let protected = path == "/admin" || path.starts_with("/admin/");
            let (a, b) = (variant(&mut rng, &path), variant(&mut rng, &path));
            for v in [&a, &b] {
                adm.clear();
                public.clear();
                let query = "?q=%2e%2E/..//x&k";
                let r = send(&gw, &format!("{v}{query}"), &[("x-api-key", KEY)]);
                let (hit, miss) = if protected {
                    (&adm, &public)
                } else {
                    (&public, &adm)
                };
                if r.status != 200 {
                    failures.push(format!("{v} (normal {path}): status {}", r.status));
                    continue;
                }
                let seen = hit.wait_requests(1, secs(5));
                let want = format!("{path}{query}");
                if seen.len() != 1 || seen[0].target != want || !miss.requests().is_empty() {
                    failures.push(format!(
                        "{v}: upstream {} saw {:?}, want {want:?}",
                        hit.name,
                        seen.iter().map(|s| &s.target).collect::<Vec<_>>()
                    ));
                }
                if protected {
                    adm.clear();
                    let r = send(&gw, v, &[]);
                    if r.status != 401
                        || !adm.requests().is_empty()
                        || !public.requests().is_empty()
                    {
                        failures.push(format!("{v} without a key: {} (bypass)", r.status));
                    }
                }
            }
        }
        assert!(
            failures.is_empty(),
            "[{driver}] {} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    });
}

/// (target, status, the target the public upstream must see; "" = none reaches any upstream)
const DEFAULT_CASES: &[(&str, u16, &str)] = &[
    ("/p//a/./b/../c?x=%2e%2E&y=//", 200, "/p/a/c?x=%2e%2E&y=//"),
    ("/p%41th/%7e%5F?%41", 200, "/pAth/~_?%41"),
    ("/q/%c3%a9%3a", 200, "/q/%C3%A9%3A"),
    ("/d/..", 200, "/"),
    ("/..", 400, ""),
    ("/%2e%2e/admin", 400, ""),
    ("/x/../../admin", 400, ""),
    ("/admin%2Fsecret", 400, ""),
    ("/x%2f..%2fadmin", 400, ""),
    ("/admin%5csecret", 400, ""),
    ("/x\\..\\admin", 400, ""),
    ("/a%zz", 400, ""),
    ("/a%2", 400, ""),
    ("/a%00b", 400, ""),
    ("//admin", 401, ""),
    ("/%61dmin/x", 401, ""),
    ("/ADMIN", 200, "/ADMIN"),
];

#[test]
fn concrete_paths_under_the_default_policy() {
    let adm = Upstream::recording("adm");
    let public = Upstream::recording("pub");
    let cfg = cfg("", &adm, &public);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        check_cases(driver, &gw, &adm, &public, DEFAULT_CASES);
    });
}

fn check_cases(
    driver: &str,
    gw: &Gateway,
    adm: &Upstream,
    public: &Upstream,
    cases: &[(&str, u16, &str)],
) {
    for (target, status, want) in cases {
        adm.clear();
        public.clear();
        let r = send(gw, target, &[]);
        assert_eq!(r.status, *status, "[{driver}] {target}: {}", r.body_str());
        if r.status >= 400 {
            assert_error_json(&r, *status);
        }
        if want.is_empty() {
            assert!(
                adm.requests().is_empty() && public.requests().is_empty(),
                "[{driver}] {target} reached an upstream"
            );
        } else {
            let seen = public.wait_requests(1, secs(5));
            assert_eq!(seen[0].target, *want, "[{driver}] {target}");
        }
    }
}

#[test]
fn escaped_slash_policies_and_unmerged_slashes() {
    let adm = Upstream::recording("adm");
    let public = Upstream::recording("pub");
    let decode = cfg(
        "path_normalization = { merge_slashes = false, escaped_slashes = \"decode\" }",
        &adm,
        &public,
    );
    let keep = cfg(
        "path_normalization = { escaped_slashes = \"keep\" }",
        &adm,
        &public,
    );
    for_each_driver(|driver| {
        let gw = Gateway::start(&decode, driver);
        check_cases(
            driver,
            &gw,
            &adm,
            &public,
            &[
                ("/admin%2fsecret", 401, ""),
                ("/x%2F..%2Fadmin", 401, ""),
                ("/x\\..\\admin", 401, ""),
                ("/p%5Cq", 200, "/p/q"),
                ("/a//b/./c", 200, "/a//b/c"),
                ("//admin", 200, "//admin"),
            ],
        );
        drop(gw);
        let gw = Gateway::start(&keep, driver);
        check_cases(
            driver,
            &gw,
            &adm,
            &public,
            &[
                ("/admin%2fsecret", 200, "/admin%2Fsecret"),
                ("/x%2f..%2fadmin", 200, "/x%2F..%2Fadmin"),
                ("/p%5cq", 200, "/p%5Cq"),
                ("/a//b", 200, "/a/b"),
            ],
        );
    });
}

/// RFC 9112 §3.2.2: absolute-form is accepted, routed on its (normalised) path, and forwarded in
/// origin-form with Host taken from the authority (the client's Host header is ignored).
#[test]
fn absolute_form_targets() {
    let adm = Upstream::recording("adm");
    let public = Upstream::recording("pub");
    let cfg = cfg("", &adm, &public);
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let raw = "GET http://Real.Example:81//p/./x?q=1 HTTP/1.1\r\nHost: spoofed.test\r\n\r\n";
        let r = Client::connect(gw.addr).request(raw.as_bytes());
        assert_eq!(r.status, 200, "[{driver}] {}", r.body_str());
        let seen = public.wait_requests(1, secs(5));
        assert_eq!(seen[0].target, "/p/x?q=1", "[{driver}]");
        assert_eq!(
            seen[0].header_all("host"),
            ["Real.Example:81"],
            "[{driver}]"
        );
        assert_eq!(
            seen[0].header("x-forwarded-host").as_deref(),
            Some("Real.Example:81")
        );
        public.clear();
        let raw = "GET https://h.test HTTP/1.1\r\nHost: h.test\r\n\r\n";
        assert_eq!(Client::connect(gw.addr).request(raw.as_bytes()).status, 200);
        assert_eq!(
            public.wait_requests(1, secs(5))[0].target,
            "/",
            "[{driver}]"
        );
        public.clear();
        let raw = "GET http://h.test/admin/x HTTP/1.1\r\nHost: h.test\r\n\r\n";
        assert_eq!(Client::connect(gw.addr).request(raw.as_bytes()).status, 401);
        for bad in [
            "GET http://u@h.test/ HTTP/1.1\r\nHost: h.test\r\n\r\n",
            "GET ftp://h.test/ HTTP/1.1\r\nHost: h.test\r\n\r\n",
            "GET http://h.test/ HTTP/1.1\r\n\r\n",
        ] {
            let r = Client::connect(gw.addr).request(bad.as_bytes());
            assert_eq!(r.status, 400, "[{driver}] {bad:?}");
        }
        assert!(adm.requests().is_empty() && public.requests().is_empty());
    });
}
