//! Key servers over https, both drivers: a JWKS fetched from an `https://` jwks_url whose
//! certificate chains to the policy's `ca_file` (a private CA) verifies tokens; the same server
//! without `ca_file` (system roots only) fails verification, so the policy has no keys and
//! answers 503 while the gateway logs why; a `ca_file` beside a plain `http://` URL is a config
//! error naming the key.

mod common;
use common::jwt::*;
use common::tls::*;
use common::*;

use jsonwebtoken::Algorithm;
use serde_json::json;

fn get(gw: &Gateway, token: &str) -> Response {
    let auth = format!("Bearer {token}");
    Client::connect(gw.addr).request(&req(
        "GET",
        "/x",
        "t.test",
        &[("Authorization", &auth)],
        b"",
    ))
}

fn gateway_config(rec: &Upstream, policy: &str) -> String {
    config(
        "",
        &(policy.to_string()
            + &upstream_toml("u", &[rec.addr], "")
            + &route_toml("r", "u", "path_prefix = \"/\"\nauth = \"j\"")),
    )
}

fn jwt_policy(url: &str, extra: &str) -> String {
    format!(
        "[[auth]]\nname = \"j\"\ntype = \"jwt\"\nalgorithms = [\"RS256\"]\n\
         jwks_url = \"{url}\"\njwks_refresh = \"1h\"\n{extra}\n"
    )
}

#[test]
fn jwks_over_https_verified_by_the_policys_ca_file() {
    let ca = Ca::new("idp private CA");
    let idp_cert = ca.server("idp", &["127.0.0.1"]);
    let idp = TlsUpstream::start(
        "idp",
        &idp_cert,
        TlsUpstreamOpts {
            body: Some(rsa_jwks(&[("a", "rsa")])),
            ..Default::default()
        },
    );
    let rec = Upstream::recording("rec");
    let url = format!("https://{}/jwks.json", idp.addr);
    let trusted = gateway_config(&rec, &jwt_policy(&url, &kv_path("ca_file", &ca.file)));
    let untrusted = gateway_config(&rec, &jwt_policy(&url, ""));
    let token = mint(Algorithm::RS256, "rsa", Some("a"), claims("u1", json!({})));
    for_each_driver(|d| {
        let gw = Gateway::start(&trusted, d);
        let ok = wait_until(deadline(secs(10)), || get(&gw, &token).status == 200);
        assert!(ok, "[{d}] token verified with keys fetched over https");
        assert!(idp.request_count() >= 1, "[{d}] the JWKS was fetched");
        drop(gw);

        // the system roots do not know the private CA: no keys, 503, and a log line saying why
        let gw = Gateway::start(&untrusted, d);
        let r = get(&gw, &token);
        assert_eq!(r.status, 503, "[{d}] {}", r.body_str());
        gw.wait_log("certificate verification failed");
    });
}

#[test]
fn ca_file_needs_an_https_url() {
    let ca = Ca::new("idp private CA");
    let rec = Upstream::recording("rec");
    let cfg = gateway_config(
        &rec,
        &jwt_policy(
            "http://127.0.0.1:9/jwks.json",
            &kv_path("ca_file", &ca.file),
        ),
    );
    let err = Gateway::try_start(&cfg, "epoll", &[])
        .err()
        .expect("config refused");
    assert!(
        err.contains("auth[0].ca_file") && err.contains("https://"),
        "{err}"
    );
}
