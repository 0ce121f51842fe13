//! One DNS question to one server, answered: the transport under [`super::resolver`].
//!
//! Owns: [`exchange`], which sends a query over UDP (EDNS0, 1232-byte payload: the size the DNS
//! flag day settled on, below common path MTUs) and, when the answer comes back truncated, asks
//! again over TCP (two-byte length prefix, RFC 7766). Messages are built and parsed by
//! `hickory-proto`; the sockets are blocking std sockets with deadlines, because this only ever runs
//! on the discovery thread or while a config loads, never on a worker.
//!
//! Spoofing: a UDP reply counts only when it comes from the server's address (the socket is
//! connected), carries the query's random id and repeats its question; anything else is ignored
//! until the deadline.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

/// The EDNS0 UDP payload size we advertise.
const UDP_PAYLOAD: u16 = 1232;
/// The largest TCP answer read (the length prefix's limit).
const TCP_MAX: usize = 65_535;

/// Why a server gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Nothing (matching) before the deadline.
    Timeout,
    /// A socket error, or an answer that does not parse.
    Io(String),
    /// The server answered SERVFAIL, REFUSED, NOTIMP, FORMERR...: another server may do better.
    Rcode(ResponseCode),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Timeout => f.write_str("timed out"),
            WireError::Io(e) => f.write_str(e),
            WireError::Rcode(c) => write!(f, "server answered {c}"),
        }
    }
}

/// Asks `server` for `name`'s `rtype` records within `timeout` (each of the UDP and TCP legs).
/// `Ok` is an answer with NOERROR or NXDOMAIN (the name's authoritative state); other response codes
/// are [`WireError::Rcode`].
pub fn exchange(
    server: SocketAddr,
    name: &Name,
    rtype: RecordType,
    timeout: Duration,
) -> Result<Message, WireError> {
    let mut q = Message::query();
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(name.clone(), rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(UDP_PAYLOAD);
    q.edns = Some(edns);
    let bytes = q.to_vec().map_err(|e| WireError::Io(e.to_string()))?;
    let answer = udp(server, &bytes, &q, timeout)?;
    let answer = if answer.metadata.truncation {
        tcp(server, &bytes, &q, timeout)?
    } else {
        answer
    };
    match answer.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => Ok(answer),
        code => Err(WireError::Rcode(code)),
    }
}

fn io(e: std::io::Error) -> WireError {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => WireError::Timeout,
        _ => WireError::Io(e.to_string()),
    }
}

/// The answer to `q`, or `None` for a datagram that is not (a stray or spoofed reply).
fn matching(buf: &[u8], q: &Message) -> Option<Message> {
    let m = Message::from_vec(buf).ok()?;
    (m.metadata.id == q.metadata.id && m.queries == q.queries).then_some(m)
}

fn udp(
    server: SocketAddr,
    bytes: &[u8],
    q: &Message,
    timeout: Duration,
) -> Result<Message, WireError> {
    let local: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local).map_err(io)?;
    sock.connect(server).map_err(io)?;
    sock.send(bytes).map_err(io)?;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; usize::from(UDP_PAYLOAD).max(512) + 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(WireError::Timeout);
        }
        sock.set_read_timeout(Some(left)).map_err(io)?;
        let n = sock.recv(&mut buf).map_err(io)?;
        if let Some(m) = matching(&buf[..n], q) {
            return Ok(m);
        }
    }
}

fn tcp(
    server: SocketAddr,
    bytes: &[u8],
    q: &Message,
    timeout: Duration,
) -> Result<Message, WireError> {
    let deadline = Instant::now() + timeout;
    let mut s = TcpStream::connect_timeout(&server, timeout).map_err(io)?;
    let left = |d: Instant| {
        let l = d.saturating_duration_since(Instant::now());
        if l.is_zero() {
            Err(WireError::Timeout)
        } else {
            Ok(l)
        }
    };
    s.set_write_timeout(Some(left(deadline)?)).map_err(io)?;
    let len = u16::try_from(bytes.len()).map_err(|_| WireError::Io("query too long".into()))?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    s.write_all(&framed).map_err(io)?;
    s.set_read_timeout(Some(left(deadline)?)).map_err(io)?;
    let mut prefix = [0u8; 2];
    s.read_exact(&mut prefix).map_err(io)?;
    let n = usize::from(u16::from_be_bytes(prefix)).min(TCP_MAX);
    let mut buf = vec![0u8; n];
    s.set_read_timeout(Some(left(deadline)?)).map_err(io)?;
    s.read_exact(&mut buf).map_err(io)?;
    matching(&buf, q)
        .ok_or_else(|| WireError::Io("the TCP answer does not match the question".into()))
}
