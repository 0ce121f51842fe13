//! Listener sockets: one SO_REUSEPORT socket per worker per configured address.
//!
//! Owns: binding before any worker starts, so that bind errors are reported at start-up and a `:0`
//! port is chosen once (by the first socket) and then shared by every worker's socket. The kernel's
//! reuseport hashing spreads incoming connections across the workers' sockets.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Accept backlog per socket.
const BACKLOG: i32 = 4096;

pub struct Listeners {
    /// The addresses actually bound (ports resolved).
    pub addrs: Vec<SocketAddr>,
    /// `per_worker[w]`: worker w's sockets, one per address.
    pub per_worker: Vec<Vec<std::net::TcpListener>>,
}

fn bind_one(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_port(true)?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&SockAddr::from(addr))?;
    s.listen(BACKLOG)?;
    Ok(s.into())
}

pub fn bind_all(addrs: &[SocketAddr], workers: usize) -> Result<Listeners, String> {
    let mut per_worker: Vec<Vec<std::net::TcpListener>> =
        (0..workers).map(|_| Vec::new()).collect();
    let mut bound = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        let first = bind_one(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let actual = first
            .local_addr()
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        per_worker[0].push(first);
        for socks in per_worker.iter_mut().skip(1) {
            socks.push(bind_one(actual).map_err(|e| format!("cannot listen on {actual}: {e}"))?);
        }
        bound.push(actual);
    }
    Ok(Listeners {
        addrs: bound,
        per_worker,
    })
}
