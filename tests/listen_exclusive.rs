//! A listen address another process already listens on is refused at start-up: a second gateway
//! there would bind with SO_REUSEPORT too and the kernel would silently split new connections
//! between the two. `coregate run` exits non-zero naming the address and why, before it prints a
//! ready line; with `--reuse-port-with-others` (a deliberate hand-over) it starts and shares.

mod common;
use common::*;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::SocketAddr;

/// What another gateway instance looks like to the kernel: a listener with SO_REUSEPORT (and
/// SO_REUSEADDR) on, so a plain reuseport bind by us would succeed and join it.
fn other_instance() -> (std::net::TcpListener, SocketAddr) {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    s.set_reuse_port(true).unwrap();
    s.set_reuse_address(true).unwrap();
    s.bind(&SockAddr::from(SocketAddr::from(([127, 0, 0, 1], 0))))
        .unwrap();
    s.listen(128).unwrap();
    let l: std::net::TcpListener = s.into();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// No request is sent in these tests, so the upstream is a port nobody listens on.
fn gateway_config() -> String {
    config(
        "",
        &(upstream_toml("u", &[closed_port()], "") + &route_toml("r", "u", "path_prefix = \"/\"")),
    )
}

#[test]
fn second_instance_on_a_taken_address_refuses_to_start() {
    let (_other, addr) = other_instance();
    let cfg = gateway_config();
    let listen = addr.to_string();
    for_each_driver(|driver| {
        let e = match Gateway::try_start(&cfg, driver, &["--listen", &listen]) {
            Ok(gw) => panic!(
                "[{driver}] started on {addr}, where another process listens: {:?}",
                gw.listen
            ),
            Err(e) => e,
        };
        assert!(
            e.contains("exited (Some(") && !e.contains("exit status: 0"),
            "[{driver}] must exit non-zero before its ready line: {e}"
        );
        assert!(
            e.contains(&format!("{addr} is already in use by another process")),
            "[{driver}] the error names the address and why: {e}"
        );
        assert!(
            e.contains("--reuse-port-with-others"),
            "[{driver}] the error names the way out: {e}"
        );
    });
}

#[test]
fn reuse_port_with_others_shares_on_purpose() {
    let (_other, addr) = other_instance();
    let cfg = gateway_config();
    let listen = addr.to_string();
    for_each_driver(|driver| {
        let gw = Gateway::start_with_args(
            &cfg,
            driver,
            &["--listen", &listen, "--reuse-port-with-others"],
        );
        assert_eq!(gw.listen, vec![addr], "[{driver}] ready line");
    });
}

#[test]
fn taken_admin_address_refuses_to_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let cfg = gateway_config().replace(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        &format!("[admin]\nlisten = \"{addr}\""),
    );
    for_each_driver(|driver| {
        let e = Gateway::try_start(&cfg, driver, &[])
            .err()
            .unwrap_or_else(|| panic!("[{driver}] started with its admin address taken"));
        assert!(
            e.contains(&format!("admin listener: {addr} is already in use")),
            "[{driver}] {e}"
        );
    });
}
