//! `GET /stats` from the admin listener: a tiny blocking HTTP/1.1 client for `coregate top`.
//!
//! Owns: [`fetch_stats`] (resolve, connect, send, read) and the pure response parser
//! [`parse_response`], which the read loop calls after every read. The admin listener answers with
//! `content-length` and closes the connection; a body without `content-length` runs to the close.
//!
//! Flow: `host:port` -> `ToSocketAddrs` (every refresh, so a name that moves is followed) -> first
//! address that connects within [`FETCH_TIMEOUT`] -> request -> reads until [`parse_response`]
//! has the whole body or the peer closes -> body text, only for a `200`.
//!
//! Errors: one line without the admin address (the caller adds it): `connection refused`,
//! `timed out`, `GET /stats answered 404 Not Found`, `bad response head: invalid HTTP version`.
//! Performance: one short connection per refresh; the admin thread serves one at a time.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::ops::Range;
use std::time::{Duration, Instant};

/// Budget for connecting, and again for the whole exchange after it: an admin listener slower than
/// this is reported (and retried next refresh) rather than freezing the screen.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest response accepted: a `/stats` document is kilobytes; this only bounds a confused peer.
const MAX_RESPONSE: usize = 16 << 20;
/// Response headers parsed; the admin listener sends three.
const MAX_HEADERS: usize = 32;
/// Bytes read per `read` call.
const READ_CHUNK: usize = 16 * 1024;

/// A complete response: status and where the body lies in the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub body: Range<usize>,
}

/// Fetches `/stats` from `admin` (`host:port`); returns the body of a `200`.
pub fn fetch_stats(admin: &str) -> Result<String, String> {
    // `coregate top` is its own short-lived CLI process, with no worker to stall
    #[allow(clippy::disallowed_methods)]
    let addrs: Vec<_> = admin
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {admin:?}: {e}"))?
        .collect();
    let mut last = format!("{admin:?} resolves to no address");
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, FETCH_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = io_reason(&e),
        }
    }
    let mut stream = stream.ok_or(last)?;
    let deadline = Instant::now() + FETCH_TIMEOUT;
    let io = |e: io::Error| io_reason(&e);
    stream.set_write_timeout(Some(FETCH_TIMEOUT)).map_err(io)?;
    stream.set_read_timeout(Some(FETCH_TIMEOUT)).map_err(io)?;
    let request = format!(
        "GET /stats HTTP/1.1\r\nhost: {admin}\r\naccept: application/json\r\n\
         connection: close\r\nuser-agent: coregate-top\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    read_body(&mut stream, deadline)
}

/// Reads one response from `r` until it is complete (or `deadline` passes after a read) and
/// returns the body of a `200` as text.
pub fn read_body(r: &mut impl Read, deadline: Instant) -> Result<String, String> {
    let mut buf = Vec::with_capacity(READ_CHUNK);
    let mut chunk = vec![0u8; READ_CHUNK];
    let resp = loop {
        let n = match r.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_reason(&e)),
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(resp) = parse_response(&buf, n == 0)? {
            break resp;
        }
        if buf.len() > MAX_RESPONSE {
            return Err(format!("response larger than {MAX_RESPONSE} bytes"));
        }
        if Instant::now() >= deadline {
            return Err("timed out".into());
        }
    };
    if resp.status != 200 {
        return Err(format!(
            "GET /stats answered {} {}",
            resp.status, resp.reason
        ));
    }
    String::from_utf8(buf[resp.body].to_vec()).map_err(|_| "body is not UTF-8".into())
}

/// Parses the response received so far. `Ok(None)`: more bytes are needed. `eof`: the peer has
/// closed, so a body without `content-length` ends here and anything shorter is an error.
pub fn parse_response(buf: &[u8], eof: bool) -> Result<Option<Response>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    let head_len = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if !eof => return Ok(None),
        Ok(httparse::Status::Partial) if buf.is_empty() => {
            return Err("connection closed without a response".into())
        }
        Ok(httparse::Status::Partial) => {
            return Err("connection closed in the middle of the response head".into())
        }
        Err(e) => return Err(format!("bad response head: {e}")),
    };
    let mut content_length = None;
    for h in res.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("chunked responses are not supported (expected content-length)".into());
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    format!("bad content-length {:?}", String::from_utf8_lossy(h.value))
                })?;
            content_length = Some(n);
        }
    }
    let have = buf.len() - head_len;
    let end = match content_length {
        Some(n) if have >= n => head_len + n,
        Some(n) if eof => return Err(format!("connection closed after {have} of {n} body bytes")),
        None if eof => buf.len(),
        _ => return Ok(None),
    };
    Ok(Some(Response {
        status: res.code.unwrap_or(0),
        reason: res.reason.unwrap_or("").to_string(),
        body: head_len..end,
    }))
}

/// Short lowercase text for the errors an operator will see, e.g. "connection refused" rather
/// than "Connection refused (os error 111)".
fn io_reason(e: &io::Error) -> String {
    use io::ErrorKind as K;
    match e.kind() {
        // A socket read timeout surfaces as WouldBlock on Unix.
        K::WouldBlock => "timed out".into(),
        k @ (K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::TimedOut
        | K::BrokenPipe
        | K::NotConnected
        | K::AddrNotAvailable
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::UnexpectedEof) => k.to_string(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    /// Hands out its script one piece per `read`, then EOF.
    struct Script(Vec<&'static [u8]>);

    impl Read for Script {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let piece = self.0.remove(0);
            out[..piece.len()].copy_from_slice(piece);
            Ok(piece.len())
        }
    }

    #[test]
    fn body_by_content_length_across_reads() {
        let mut s = Script(vec![
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 14",
            b"\r\nconnection: close\r\n\r\n{\"workers\":",
            b" 2}",
            b"trailing garbage that is never read",
        ]);
        assert_eq!(read_body(&mut s, far()).unwrap(), "{\"workers\": 2}");
        assert_eq!(
            s.0.len(),
            1,
            "stops reading once content-length is satisfied"
        );
    }

    #[test]
    fn body_until_close_without_content_length() {
        let mut s = Script(vec![b"HTTP/1.0 200 OK\r\n\r\n{}", b"\n"]);
        assert_eq!(read_body(&mut s, far()).unwrap(), "{}\n");
    }

    #[test]
    fn bad_responses_are_clear_errors() {
        let cases: &[(&[&'static [u8]], &str)] = &[
            (
                &[b"garbage\r\n\r\n"],
                "bad response head: invalid HTTP version",
            ),
            (&[], "connection closed without a response"),
            (
                &[b"HTTP/1.1 200 OK\r\ncontent-le"],
                "connection closed in the middle of the response head",
            ),
            (
                &[b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{}"],
                "connection closed after 2 of 10 body bytes",
            ),
            (
                &[b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\nnot found"],
                "GET /stats answered 404 Not Found",
            ),
            (
                &[b"HTTP/1.1 200 OK\r\ncontent-length: ten\r\n\r\n"],
                "bad content-length \"ten\"",
            ),
            (
                &[b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"],
                "chunked responses are not supported (expected content-length)",
            ),
        ];
        for (script, want) in cases {
            let got = read_body(&mut Script(script.to_vec()), far()).unwrap_err();
            assert_eq!(got, *want, "script {script:?}");
        }
    }

    #[test]
    fn partial_responses_ask_for_more() {
        assert_eq!(parse_response(b"", false), Ok(None));
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\n", false), Ok(None));
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n";
        assert_eq!(parse_response(head, false), Ok(None));
        let full = [&head[..], b"abcd"].concat();
        let r = parse_response(&full, false).unwrap().unwrap();
        assert_eq!((r.status, &full[r.body]), (200, &b"abcd"[..]));
    }

    #[test]
    fn refused_connection_reads_as_connection_refused() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let e = fetch_stats(&addr.to_string()).unwrap_err();
        assert_eq!(e, "connection refused");
        let e = fetch_stats("no-port-here").unwrap_err();
        assert!(e.starts_with("cannot resolve \"no-port-here\""), "{e}");
    }
}
