//! Bodies larger than rustls' buffers stream both ways over a TLS listener, both drivers: an
//! 8 MiB chunked download followed by a second request on the same TLS connection, a 6 MiB
//! Content-Length upload and a 3 MiB chunked upload to an upstream that checksums what it got.
//! Each is checked byte for byte (length and FNV-64) at the far end.

mod common;
use common::tls::*;
use common::*;

const MIB: u64 = 1 << 20;

fn tls_config(up: &Upstream, leaf: &Leaf) -> String {
    config(
        "",
        &(tls_listener(&[leaf], "")
            + &upstream_toml("u", &[up.addr], "")
            + &route_toml("all", "u", "path_prefix = \"/\"\nmax_body = \"64MiB\"")),
    )
}

#[test]
fn large_download_streams_over_tls_and_keeps_the_connection() {
    let ca = Ca::new("streaming CA");
    let leaf = ca.server("api", &["api.test"]);
    let len = 8 * MIB;
    let up = Upstream::download("d", len);
    let cfg = tls_config(&up, &leaf);
    let client = ClientOpts::trusting(&ca).build();
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let mut c = TlsClient::open(tls_addr(&gw), &client, "api.test");
        for round in 0..2 {
            let r = c.get("/big", "api.test");
            assert_eq!(r.status, 200, "[{driver}] round {round}");
            assert_eq!(r.body.len() as u64, len, "[{driver}] round {round}");
            assert_eq!(
                fnv64(&r.body),
                pattern_fnv(len),
                "[{driver}] round {round}: body differs"
            );
        }
    });
}

#[test]
fn large_uploads_stream_over_tls() {
    let ca = Ca::new("streaming CA");
    let leaf = ca.server("api", &["api.test"]);
    let up = Upstream::discard("sink");
    let cfg = tls_config(&up, &leaf);
    let client = ClientOpts::trusting(&ca).build();
    let body = pattern_vec(6 * MIB as usize);
    // odd chunk sizes, so chunk boundaries fall across TLS records
    let mut chunked = Vec::new();
    let mut sent = Vec::new();
    let mut off = 0usize;
    let mut size = 1usize;
    while off < 3 * MIB as usize {
        let n = size.min(3 * MIB as usize - off);
        chunked.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        chunked.extend_from_slice(&body[off..off + n]);
        chunked.extend_from_slice(b"\r\n");
        sent.extend_from_slice(&body[off..off + n]);
        off += n;
        size = size * 7 % 70_001 + 1;
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    for_each_driver(|driver| {
        let gw = Gateway::start(&cfg, driver);
        let mut c = TlsClient::open(tls_addr(&gw), &client, "api.test");
        let r = c.request(&req("POST", "/up", "api.test", &[], &body));
        assert_eq!(r.status, 200, "[{driver}] {}", r.body_str());
        assert_eq!(
            r.body_str(),
            format!("{} {:016x}", body.len(), fnv64(&body)),
            "[{driver}] Content-Length upload"
        );
        let mut raw = req(
            "POST",
            "/up",
            "api.test",
            &[("Transfer-Encoding", "chunked")],
            b"",
        );
        raw.extend_from_slice(&chunked);
        let r = c.request(&raw);
        assert_eq!(r.status, 200, "[{driver}] {}", r.body_str());
        assert_eq!(
            r.body_str(),
            format!("{} {:016x}", sent.len(), fnv64(&sent)),
            "[{driver}] chunked upload"
        );
    });
}
