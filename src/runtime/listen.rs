//! Listener sockets: one SO_REUSEPORT socket per worker per configured address, and the probe that
//! keeps a second gateway from silently sharing them.
//!
//! Owns: binding before any worker starts, so that bind errors are reported at start-up and a `:0`
//! port is chosen once (by the first socket) and then shared by every worker's socket. The kernel's
//! reuseport hashing spreads incoming connections across the workers' sockets.
//!
//! SO_REUSEPORT has a trap: a second process of the same user that binds the same address with it
//! also succeeds, and the kernel then splits new connections between the two processes without a
//! word. So before binding, [`probe`] asks the kernel whether anyone else already holds each
//! address: it binds a throw-away socket *without* SO_REUSEPORT (with SO_REUSEADDR, so connections
//! of a previous run lingering in TIME_WAIT do not count) and never listens on it. Linux refuses
//! that bind with `EADDRINUSE` exactly when another socket listens on an overlapping address
//! (same port, same or wildcard IP, IPv4-mapped IPv6 included) or holds it without SO_REUSEADDR;
//! it refuses with `EADDRNOTAVAIL` when the IP is not one of this host's. We probe instead of
//! reading `/proc/net/tcp{,6}` because the kernel applies its own overlap rules (wildcards, v4/v6,
//! network namespaces) and sockets of other users count too, where `/proc` would need parsing,
//! overlap rules re-implemented and `/proc/*/fd` access to tell our sockets from theirs. Every
//! address is probed before the first of ours is bound, so our own sockets never trip the probe.
//! The window between probe and bind is a few syscalls. `--reuse-port-with-others` skips the probe
//! for the one case where sharing is wanted: a new gateway started next to the old one, which
//! then drains (a blue/green hand-over).

use std::io::ErrorKind;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Accept backlog per socket (`coregate tune` checks the sysctls that cap it).
pub const BACKLOG: i32 = 4096;

pub struct Listeners {
    /// The addresses actually bound (ports resolved).
    pub addrs: Vec<SocketAddr>,
    /// `per_worker[w]`: worker w's sockets, one per address.
    pub per_worker: Vec<Vec<std::net::TcpListener>>,
}

fn socket_for(addr: SocketAddr) -> std::io::Result<Socket> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    Socket::new(domain, Type::STREAM, Some(Protocol::TCP))
}

fn bind_one(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let s = socket_for(addr)?;
    s.set_reuse_port(true)?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&SockAddr::from(addr))?;
    s.listen(BACKLOG)?;
    Ok(s.into())
}

/// Whether `addr` could be bound by this process alone, without binding it for real: `Err` says
/// why not, naming the address. Port 0 always passes (the kernel picks a free port).
pub fn probe(addr: SocketAddr) -> Result<(), String> {
    probe_io(addr).map_err(|e| why_not(addr, &e))
}

fn probe_io(addr: SocketAddr) -> std::io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let s = socket_for(addr)?;
    s.set_reuse_address(true)?;
    s.bind(&SockAddr::from(addr))
}

/// The reason a bind of `addr` failed, in an operator's words.
fn why_not(addr: SocketAddr, e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::AddrInUse => format!("{addr} is already in use by another process"),
        ErrorKind::AddrNotAvailable => format!("{addr} is not an address of this host ({e})"),
        ErrorKind::PermissionDenied => format!(
            "not allowed to listen on {addr} ({e}; ports below 1024 need CAP_NET_BIND_SERVICE)"
        ),
        _ => format!("cannot listen on {addr}: {e}"),
    }
}

/// Binds every address once per worker. Unless `share` (`--reuse-port-with-others`), each address
/// is [`probe`]d first, all of them before the first bind, and any other listener is an error.
pub fn bind_all(addrs: &[SocketAddr], workers: usize, share: bool) -> Result<Listeners, String> {
    if !share {
        for &addr in addrs {
            probe_io(addr).map_err(|e| match e.kind() {
                ErrorKind::AddrInUse => format!(
                    "{}: a second gateway there would silently split its traffic through \
                     SO_REUSEPORT; stop the other process, listen elsewhere, or pass \
                     --reuse-port-with-others to share the address on purpose",
                    why_not(addr, &e)
                ),
                _ => why_not(addr, &e),
            })?;
        }
    }
    let mut per_worker: Vec<Vec<std::net::TcpListener>> =
        (0..workers).map(|_| Vec::new()).collect();
    let mut bound = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        let first = bind_one(addr).map_err(|e| why_not(addr, &e))?;
        let actual = first.local_addr().map_err(|e| why_not(addr, &e))?;
        per_worker[0].push(first);
        for socks in per_worker.iter_mut().skip(1) {
            socks.push(bind_one(actual).map_err(|e| why_not(actual, &e))?);
        }
        bound.push(actual);
    }
    Ok(Listeners {
        addrs: bound,
        per_worker,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener like another gateway's: SO_REUSEPORT on, so a plain reuseport bind would join it.
    fn other_instance() -> (Socket, SocketAddr) {
        let s = socket_for("127.0.0.1:0".parse().unwrap()).unwrap();
        s.set_reuse_port(true).unwrap();
        s.bind(&SockAddr::from(
            "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
        ))
        .unwrap();
        s.listen(16).unwrap();
        let addr = s.local_addr().unwrap().as_socket().unwrap();
        (s, addr)
    }

    #[test]
    fn probe_sees_a_reuseport_listener_of_another_process() {
        let (other, addr) = other_instance();
        let e = probe(addr).unwrap_err();
        assert!(
            e.contains(&addr.to_string()) && e.contains("already in use"),
            "{e}"
        );
        let wildcard: SocketAddr = format!("0.0.0.0:{}", addr.port()).parse().unwrap();
        assert!(probe(wildcard).is_err(), "an overlapping wildcard address");
        let e = bind_all(&[addr], 2, false).err().unwrap();
        assert!(e.contains("--reuse-port-with-others"), "{e}");
        let l = bind_all(&[addr], 2, true).unwrap();
        assert_eq!(l.addrs, vec![addr]);
        drop((l, other));
        probe(addr).unwrap();
    }

    #[test]
    fn probe_never_listens_and_allows_port_zero() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        probe(addr).unwrap();
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "the probe listened"
        );
        probe("127.0.0.1:0".parse().unwrap()).unwrap();
        // TEST-NET-3 is never an address of this host.
        let e = probe("203.0.113.7:8080".parse().unwrap()).unwrap_err();
        assert!(e.contains("not an address of this host"), "{e}");
    }
}
