//! DNS service discovery as a client and the upstreams see it, against a real authoritative DNS
//! server (hickory-server, `common::dns`) whose records the tests change while the gateway runs:
//! A records followed on their TTL with pooled connections of endpoints that stay kept; SRV
//! records' ports, weights and priorities; a DNS outage keeps the last good set (and a reload
//! during it still succeeds); truncated UDP answers asked again over TCP; names that do not
//! resolve at load are config errors at their key.

mod common;
use common::dns::DnsServer;
use common::*;

use std::net::SocketAddr;

/// Two recording upstreams on 127.0.0.2 and 127.0.0.3 sharing one port, as the addresses of one
/// name do (body: their name).
fn pair() -> (Upstream, Upstream) {
    loop {
        let a = Upstream::recording_on("a", "127.0.0.2:0".parse().unwrap()).unwrap();
        let b_addr = SocketAddr::new([127, 0, 0, 3].into(), a.addr.port());
        if let Ok(b) = Upstream::recording_on("b", b_addr) {
            return (a, b);
        }
    }
}

fn dns_config(dns: &DnsServer, upstream: &str) -> String {
    config(
        "",
        &format!(
            "[dns]\nservers = [\"{}\"]\nmin_ttl = \"1s\"\ntimeout = \"2s\"\nattempts = 1\n\n\
             {upstream}\n{}",
            dns.addr,
            route_toml("users", "users", "path_prefix = \"/\"")
        ),
    )
}

/// The bodies of `n` requests on one keep-alive connection.
fn bodies(gw: &Gateway, n: usize) -> Vec<String> {
    let mut c = Client::connect(gw.addr);
    (0..n)
        .map(|_| {
            let r = c.get("/x", "t.test");
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            String::from_utf8_lossy(&r.body).into_owned()
        })
        .collect()
}

fn dns_metric(gw: &Gateway, series: &str) -> u64 {
    gw.metric(series).unwrap_or(0)
}

#[test]
fn a_records_are_followed_on_their_ttl_and_pools_of_endpoints_that_stay_are_kept() {
    for_each_driver(|driver| {
        let dns = DnsServer::start("svc.test");
        let (a, _b) = pair();
        let port = a.addr.port();
        dns.set_addrs("users.svc.test", 1, &["127.0.0.2"]);
        let up = format!(
            "[[upstream]]\nname = \"users\"\nendpoints = [\"users.svc.test:{port}\"]\n\
             dns_refresh = \"ttl\"\n"
        );
        // one worker: the pool the test watches is the only one
        let gw = Gateway::start_with_args(&dns_config(&dns, &up), driver, &["--workers", "1"]);
        assert_eq!(bodies(&gw, 3), ["a", "a", "a"]);
        assert_eq!(a.accepted(), 1, "one pooled connection");
        let gen0 = dns_metric(&gw, "coregate_config_generation");

        // a second address appears: both serve, and a's pooled connection is still the one used
        dns.set_addrs("users.svc.test", 1, &["127.0.0.2", "127.0.0.3"]);
        assert!(
            wait_until(deadline(secs(10)), || {
                dns_metric(&gw, "coregate_dns_endpoints{upstream=\"users\"}") == 2
            }),
            "the new address was not picked up: {}",
            gw.stderr_text()
        );
        gw.wait_log("coregate: dns: upstream users now has 2 endpoint(s)");
        let mut seen = bodies(&gw, 4);
        seen.sort();
        assert_eq!(seen, ["a", "a", "b", "b"]);
        assert_eq!(
            a.accepted(),
            1,
            "a's pooled connection was dropped by the switch"
        );
        assert!(dns_metric(&gw, "coregate_config_generation") > gen0);
        assert!(
            dns_metric(
                &gw,
                "coregate_dns_resolutions_total{upstream=\"users\",outcome=\"changed\"}"
            ) >= 1
        );
        assert_eq!(
            dns_metric(&gw, "coregate_config_reloads_total{result=\"ok\"}"),
            0
        );

        // the first address goes away: only b is asked
        dns.set_addrs("users.svc.test", 1, &["127.0.0.3"]);
        assert!(wait_until(deadline(secs(10)), || {
            dns_metric(&gw, "coregate_dns_endpoints{upstream=\"users\"}") == 1
        }));
        gw.wait_log("coregate: dns: upstream users now has 1 endpoint(s) (127.0.0.3:");
        assert_eq!(bodies(&gw, 3), ["b", "b", "b"]);
        // unchanged answers are counted, not switched to
        let unchanged = "coregate_dns_resolutions_total{upstream=\"users\",outcome=\"unchanged\"}";
        assert!(wait_until(deadline(secs(10)), || dns_metric(
            &gw, unchanged
        ) >= 1));

        // /config shows the name as written, not the addresses of the moment
        let cfg = String::from_utf8_lossy(&gw.admin_get("/config").body).into_owned();
        assert!(cfg.contains(&format!("users.svc.test:{port}")), "{cfg}");
        assert!(cfg.contains("dns_refresh = \"ttl\""), "{cfg}");
    });
}

/// Changes land while requests are in flight on every worker: none fails, and each address in
/// the set serves.
#[test]
fn set_changes_under_traffic_lose_no_request() {
    for_each_driver(|driver| {
        let dns = DnsServer::start("svc.test");
        let (a, b) = pair();
        dns.set_addrs("users.svc.test", 1, &["127.0.0.2"]);
        let up = format!(
            "[[upstream]]\nname = \"users\"\nendpoints = [\"users.svc.test:{}\"]\n\
             dns_refresh = \"ttl\"\n",
            a.addr.port()
        );
        let gw = Gateway::start_with_args(&dns_config(&dns, &up), driver, &["--workers", "2"]);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let (addr, stop) = (gw.addr, stop.clone());
                std::thread::spawn(move || {
                    let mut c = Client::connect(addr);
                    let mut statuses = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        statuses.push(c.get("/x", "t.test").status);
                    }
                    statuses
                })
            })
            .collect();
        let gen = |gw: &Gateway| dns_metric(gw, "coregate_config_generation");
        for (i, set) in [
            &["127.0.0.2", "127.0.0.3"][..],
            &["127.0.0.3"],
            &["127.0.0.2"],
        ]
        .iter()
        .enumerate()
        {
            dns.set_addrs("users.svc.test", 1, set);
            let want = 2 + i as u64;
            assert!(
                wait_until(deadline(secs(10)), || gen(&gw) >= want),
                "generation {} after change {i}: {}",
                gen(&gw),
                gw.stderr_text()
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let statuses: Vec<u16> = clients
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        assert!(statuses.len() > 100, "only {} requests", statuses.len());
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
        assert!(a.request_count() > 0 && b.request_count() > 0);
    });
}

#[test]
fn srv_records_give_ports_weights_and_priorities() {
    for_each_driver(|driver| {
        let dns = DnsServer::start("svc.test");
        let (one, two, backup) = (
            Upstream::fixed("one", 200, "one"),
            Upstream::fixed("two", 200, "two"),
            Upstream::fixed("backup", 200, "backup"),
        );
        for host in ["one", "two", "backup"] {
            dns.set_addrs(&format!("{host}.svc.test"), 30, &["127.0.0.1"]);
        }
        dns.set_srv(
            "_http._tcp.users.svc.test",
            30,
            &[
                (10, 1, one.addr.port(), "one.svc.test"),
                (10, 3, two.addr.port(), "two.svc.test"),
                // a higher priority number is a backup: not used while priority 10 has targets
                (20, 1, backup.addr.port(), "backup.svc.test"),
            ],
        );
        let up = "[[upstream]]\nname = \"users\"\nendpoints = [\"_http._tcp.users.svc.test\"]\n\
                  dns_refresh = \"ttl\"\nbalance = \"weighted\"\n";
        // one worker: one smooth-weighted rotation
        let gw = Gateway::start_with_args(&dns_config(&dns, up), driver, &["--workers", "1"]);
        let seen = bodies(&gw, 8);
        let count = |n: &str| seen.iter().filter(|b| *b == n).count();
        assert_eq!(
            (count("one"), count("two"), count("backup")),
            (2, 6, 0),
            "{seen:?}"
        );
        let stats = String::from_utf8_lossy(&gw.admin_get("/stats").body).into_owned();
        let doc: serde_json::Value = serde_json::from_str(&stats).unwrap();
        assert_eq!(doc["dns"][0]["upstream"], "users", "{stats}");
        assert_eq!(doc["dns"][0]["endpoints"], 2, "{stats}");

        // the SRV set changes: the backup's priority now leads
        dns.set_srv(
            "_http._tcp.users.svc.test",
            1,
            &[(5, 1, backup.addr.port(), "backup.svc.test")],
        );
        // the old answer's TTL (30 s) runs out first: min_ttl does not shorten it, so reload to
        // see the new records now (a reload resolves names again)
        assert_eq!(gw.admin_post("/reload").status, 200);
        assert_eq!(bodies(&gw, 2), ["backup", "backup"]);
    });
}

#[test]
fn a_dns_outage_keeps_the_last_good_set_and_reloads_still_work() {
    for_each_driver(|driver| {
        let mut dns = DnsServer::start("svc.test");
        let (a, _b) = pair();
        dns.set_addrs("users.svc.test", 1, &["127.0.0.2"]);
        let up = format!(
            "[[upstream]]\nname = \"users\"\nendpoints = [\"users.svc.test:{}\"]\n\
             dns_refresh = \"ttl\"\n",
            a.addr.port()
        );
        let gw = Gateway::start(&dns_config(&dns, &up), driver);
        assert_eq!(bodies(&gw, 1), ["a"]);
        dns.stop();
        let failed = "coregate_dns_resolutions_total{upstream=\"users\",outcome=\"failed\"}";
        assert!(
            wait_until(deadline(secs(10)), || dns_metric(&gw, failed) >= 2),
            "no failure counted: {}",
            gw.metrics()
        );
        gw.wait_log("coregate: dns: upstream users:");
        gw.wait_log("keeping its 1 endpoint(s)");
        assert_eq!(
            dns_metric(&gw, "coregate_dns_endpoints{upstream=\"users\"}"),
            1
        );
        assert_eq!(bodies(&gw, 2), ["a", "a"]);
        // a reload while DNS is down keeps the addresses this process last resolved
        let r = gw.admin_post("/reload");
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(bodies(&gw, 1), ["a"]);
        let stats = String::from_utf8_lossy(&gw.admin_get("/stats").body).into_owned();
        assert!(
            stats.contains("\"last_error\": \"A users.svc.test."),
            "{stats}"
        );
    });
}

#[test]
fn truncated_answers_are_asked_again_over_tcp() {
    let dns = DnsServer::start("svc.test");
    // 200 A records (about 3.2 KB) fit neither the 1232-byte UDP payload we advertise nor our
    // receive buffer: only the TCP retry can bring them
    let ips: Vec<String> = (0..200)
        .map(|i| format!("127.0.{}.{}", 1 + i / 100, 1 + i % 100))
        .collect();
    let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
    dns.set_addrs("many.svc.test", 60, &ips);
    let up = "[[upstream]]\nname = \"users\"\nendpoints = [\"many.svc.test:9\"]\n\
              dns_refresh = \"ttl\"\n";
    let gw = Gateway::start(&dns_config(&dns, up), "epoll");
    assert_eq!(
        gw.metric("coregate_dns_endpoints{upstream=\"users\"}"),
        Some(200)
    );
}

#[test]
fn names_that_do_not_resolve_at_load_are_errors_at_their_key() {
    let dns = DnsServer::start("svc.test");
    let up =
        "[[upstream]]\nname = \"users\"\nendpoints = [\"127.0.0.1:9\", \"nowhere.svc.test:80\"]\n\
              dns_refresh = \"ttl\"\n";
    let path = write_temp(&dns_config(&dns, up), "toml");
    let (status, _out, err) = run_cli(
        &["check", "--config", &path.display().to_string()],
        secs(30),
    );
    assert!(!status.unwrap().success(), "{err}");
    assert!(err.contains("upstream[0].endpoints[1]"), "{err}");
    assert!(
        err.contains(
            "cannot resolve \"nowhere.svc.test:80\": \"nowhere.svc.test\" has no A or AAAA records"
        ),
        "{err}"
    );
    // the error names the file position of the entry
    let p = path.display().to_string();
    assert!(err.contains(&format!("{p}:")), "{err}");
}
