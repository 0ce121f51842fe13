//! The PROXY protocol (HAProxy's, versions 1 and 2) on listeners that opt in
//! (`proxy_protocol = true`): the load balancer in front says who the client is before the
//! connection's own bytes begin.
//!
//! Owns [`parse`] (strict: anything but a well-formed v1 line or v2 header is an error) and
//! [`read`], which the accept path runs before TLS or HTTP. Data flow: `read` peeks at the socket
//! without consuming until a whole header is there, then takes exactly the header's bytes, so the
//! TLS handshake or HTTP request after it stays in the socket untouched. A PROXY command gives the
//! client's address, which becomes the connection's peer (trusted-proxy rules, IP rules, rate
//! limits and logs all see it); LOCAL (v2 health checks) and UNKNOWN keep the TCP peer. A missing,
//! malformed or late header closes the connection without an answer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use monoio::net::TcpStream;
use monoio::time::Instant;

/// Longest v1 line, CRLF included (the spec's 107).
const V1_MAX: usize = 107;
/// v2's 12-byte signature.
const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Most header bytes looked at (a v2 header with TLVs longer than this is refused).
const PEEK: usize = 536;

/// What a header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The client's address.
    Proxied(SocketAddr),
    /// LOCAL (v2) or UNKNOWN: the connection's own peer stands.
    Local,
}

/// A header at the start of `buf`: `Ok(None)` while it is incomplete, else what it says and its
/// length.
pub fn parse(buf: &[u8]) -> Result<Option<(Header, usize)>, &'static str> {
    if buf.len() < 6 {
        let v1 = b"PROXY ".starts_with(buf);
        let v2 = V2_SIG.starts_with(buf);
        return if v1 || v2 {
            Ok(None)
        } else {
            Err("no PROXY header")
        };
    }
    if buf.starts_with(b"PROXY ") {
        return v1(buf);
    }
    if buf.len() < 16 {
        return match V2_SIG.starts_with(&buf[..buf.len().min(12)]) {
            true => Ok(None),
            false => Err("no PROXY header"),
        };
    }
    if &buf[..12] != V2_SIG {
        return Err("no PROXY header");
    }
    v2(buf)
}

fn v1(buf: &[u8]) -> Result<Option<(Header, usize)>, &'static str> {
    let Some(end) = buf.windows(2).take(V1_MAX - 1).position(|w| w == b"\r\n") else {
        return match buf.len() >= V1_MAX {
            true => Err("PROXY v1 line too long"),
            false => Ok(None),
        };
    };
    let line = std::str::from_utf8(&buf[6..end]).map_err(|_| "PROXY v1 line not ASCII")?;
    let len = end + 2;
    let mut f = line.split(' ');
    let proto = f.next().ok_or("PROXY v1 line empty")?;
    if proto == "UNKNOWN" {
        return Ok(Some((Header::Local, len)));
    }
    let (src, _dst, sport, _dport) = match (f.next(), f.next(), f.next(), f.next(), f.next()) {
        (Some(a), Some(b), Some(c), Some(d), None) => (a, b, c, d),
        _ => return Err("PROXY v1 line needs 5 fields"),
    };
    let ip: IpAddr = match proto {
        "TCP4" => IpAddr::V4(
            src.parse::<Ipv4Addr>()
                .map_err(|_| "bad PROXY v1 address")?,
        ),
        "TCP6" => IpAddr::V6(
            src.parse::<Ipv6Addr>()
                .map_err(|_| "bad PROXY v1 address")?,
        ),
        _ => return Err("PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN"),
    };
    let port_ok = |p: &str| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    if !port_ok(sport) || !port_ok(_dport) || _dst.parse::<IpAddr>().is_err() {
        return Err("bad PROXY v1 port or destination");
    }
    let port: u16 = sport.parse().map_err(|_| "bad PROXY v1 port")?;
    Ok(Some((Header::Proxied(SocketAddr::new(ip, port)), len)))
}

fn v2(buf: &[u8]) -> Result<Option<(Header, usize)>, &'static str> {
    let (ver_cmd, fam) = (buf[12], buf[13]);
    let body = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + body;
    if ver_cmd >> 4 != 2 {
        return Err("PROXY v2 version is not 2");
    }
    if len > PEEK {
        return Err("PROXY v2 header too long");
    }
    if buf.len() < len {
        return Ok(None);
    }
    let a = &buf[16..len];
    match ver_cmd & 0x0f {
        0 => return Ok(Some((Header::Local, len))),
        1 => {}
        _ => return Err("PROXY v2 command is not LOCAL or PROXY"),
    }
    let addr = match fam {
        // TCP over IPv4: src(4) dst(4) sport(2) dport(2)
        0x11 if a.len() >= 12 => {
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([a[8], a[9]]))
        }
        // TCP over IPv6: src(16) dst(16) sport(2) dport(2)
        0x21 if a.len() >= 36 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&a[..16]);
            SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(o)),
                u16::from_be_bytes([a[32], a[33]]),
            )
        }
        0x11 | 0x21 => return Err("PROXY v2 address block too short"),
        // UNSPEC or a Unix socket: nothing to say about the client
        0x00 | 0x31 => return Ok(Some((Header::Local, len))),
        _ => return Err("PROXY v2 family is not TCP"),
    };
    Ok(Some((Header::Proxied(addr), len)))
}

/// Reads the connection's PROXY header by `deadline`, consuming exactly its bytes.
pub async fn read(tcp: &TcpStream, deadline: Instant) -> Result<Header, &'static str> {
    let mut buf = [0u8; PEEK];
    loop {
        match monoio::time::timeout_at(deadline, tcp.readable(false)).await {
            Ok(Ok(())) => {}
            _ => return Err("no PROXY header in time"),
        }
        // SAFETY: a valid open socket and a buffer we own; MSG_PEEK consumes nothing.
        let n = unsafe {
            libc::recv(
                tcp.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        match n {
            0 => return Err("closed before a PROXY header"),
            n if n > 0 => {
                if let Some((header, len)) = parse(&buf[..n as usize])? {
                    // SAFETY: as above; the `len` bytes are in the socket (just peeked)
                    let took = unsafe {
                        libc::recv(
                            tcp.as_raw_fd(),
                            buf.as_mut_ptr().cast(),
                            len,
                            libc::MSG_DONTWAIT,
                        )
                    };
                    return match took == len as isize {
                        true => Ok(header),
                        false => Err("PROXY header could not be consumed"),
                    };
                }
                // a header split across packets: look again shortly
                monoio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            _ => match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => {}
                _ => return Err("socket error before a PROXY header"),
            },
        }
        if Instant::now() >= deadline {
            return Err("no PROXY header in time");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2_tcp4(cmd: u8, src: [u8; 4], port: u16) -> Vec<u8> {
        let mut h = V2_SIG.to_vec();
        h.extend_from_slice(&[0x20 | cmd, 0x11, 0, 12]);
        h.extend_from_slice(&src);
        h.extend_from_slice(&[127, 0, 0, 1]);
        h.extend_from_slice(&port.to_be_bytes());
        h.extend_from_slice(&443u16.to_be_bytes());
        h
    }

    #[test]
    fn v1_lines() {
        let line = b"PROXY TCP4 203.0.113.9 10.0.0.1 56324 443\r\nGET /";
        let (h, n) = parse(line).unwrap().unwrap();
        assert_eq!(h, Header::Proxied("203.0.113.9:56324".parse().unwrap()));
        assert_eq!(&line[n..], b"GET /");
        let six = b"PROXY TCP6 2001:db8::1 2001:db8::2 1000 443\r\n";
        assert_eq!(
            parse(six).unwrap().unwrap().0,
            Header::Proxied("[2001:db8::1]:1000".parse().unwrap())
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap().0,
            Header::Local
        );
        assert_eq!(
            parse(b"PROXY TCP4 203.0.113.9 10.0").unwrap(),
            None,
            "incomplete"
        );
        assert_eq!(parse(b"PRO").unwrap(), None);
        for bad in [
            &b"PROXY TCP4 203.0.113.9 10.0.0.1 56324\r\n"[..],
            b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 203.0.113.9 10.0.0.1 99999 443\r\n",
            b"PROXY TCP4  203.0.113.9 10.0.0.1 1 2\r\n",
            b"PROXY UDP4 203.0.113.9 10.0.0.1 1 2\r\n",
            b"GET / HTTP/1.1\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert!(parse(&long).is_err());
    }

    #[test]
    fn v2_headers() {
        let mut h = v2_tcp4(1, [198, 51, 100, 7], 4000);
        let len = h.len();
        h.extend_from_slice(b"\x16\x03\x01");
        let (hdr, n) = parse(&h).unwrap().unwrap();
        assert_eq!(
            (hdr, n),
            (Header::Proxied("198.51.100.7:4000".parse().unwrap()), len)
        );
        assert_eq!(parse(&h[..20]).unwrap(), None, "incomplete");
        assert_eq!(
            parse(&v2_tcp4(0, [0; 4], 0)).unwrap().unwrap().0,
            Header::Local,
            "LOCAL"
        );
        let mut bad = v2_tcp4(1, [1, 2, 3, 4], 1);
        bad[12] = 0x11;
        assert!(parse(&bad).is_err(), "version 1 in a v2 header");
        let mut short = v2_tcp4(1, [1, 2, 3, 4], 1);
        short[15] = 4;
        short.truncate(20);
        assert!(parse(&short).is_err(), "address block too short");
    }
}
