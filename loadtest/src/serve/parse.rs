//! Request parsing for `serve`: request heads parsed in place with httparse (headers on the stack,
//! no allocation) into the few facts a response depends on ([`Head`]: route, framing, connection
//! mode), and the chunked body walker used both to find a body's end and to copy it out for `/echo`.

use std::mem::MaybeUninit;

/// Largest request head and request body accepted.
pub const MAX_HEAD: usize = 64 << 10;
pub const MAX_BODY: usize = 64 << 20;
const MAX_HEADERS: usize = 64;
/// Longest `/delay/{ms}` honoured (one hour).
const MAX_DELAY_MS: u64 = 3_600_000;

/// Connection handling of a response, from the request's version and `Connection` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// HTTP/1.1 persistent: no `Connection` header needed.
    Keep11,
    /// HTTP/1.0 that asked for keep-alive: answered with `connection: keep-alive`.
    Keep10,
    /// `connection: close`, then close.
    Close,
}

/// What to answer (from method and path; the query string is ignored).
#[derive(Debug, Clone, Copy)]
pub enum Route {
    Fixed,
    Status(u16),
    Delay(u64),
    Echo,
    BadRequest,
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy)]
pub enum Framing {
    None,
    Length(usize),
    Chunked,
}

/// The parts of a request head the response depends on (copied out so the buffer is free again).
#[derive(Debug, Clone, Copy)]
pub struct Head {
    pub len: usize,
    pub route: Route,
    pub head_only: bool,
    pub mode: Mode,
    pub framing: Framing,
    pub expect_continue: bool,
}

/// The outcome of parsing the bytes at the front of the read buffer.
pub enum Parsed {
    Head(Head),
    Partial,
    /// Unusable request: answer with this status and close.
    Error(u16),
}

/// Parses the request head at the start of `buf`.
pub fn parse_head(buf: &[u8]) -> Parsed {
    let mut headers = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Error(431),
        Err(_) => return Parsed::Error(400),
    };
    let mut keep = req.version == Some(1);
    let (mut length, mut chunked, mut expect_continue) = (None, false, false);
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let Some(n) = parse_dec(h.value) else {
                return Parsed::Error(400);
            };
            if length.is_some_and(|l| l != n) {
                return Parsed::Error(400);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
            if !last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Parsed::Error(400);
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    keep = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && req.version == Some(0) {
                    keep = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            expect_continue = h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
    }
    let framing = match (chunked, length) {
        (true, Some(_)) => return Parsed::Error(400),
        (true, None) => Framing::Chunked,
        (false, Some(n)) if n > MAX_BODY => return Parsed::Error(413),
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::None,
    };
    let method = req.method.unwrap_or("");
    let path = req.path.unwrap_or("/");
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let route = if let Some(code) = path.strip_prefix("/status/") {
        match parse_dec(code.as_bytes()) {
            Some(c @ 200..=599) => Route::Status(c as u16),
            _ => Route::BadRequest,
        }
    } else if let Some(ms) = path.strip_prefix("/delay/") {
        match parse_dec(ms.as_bytes()) {
            Some(ms) if ms as u64 <= MAX_DELAY_MS => Route::Delay(ms as u64),
            _ => Route::BadRequest,
        }
    } else if path == "/echo" && (method == "POST" || method == "PUT") {
        Route::Echo
    } else {
        Route::Fixed
    };
    let mode = match (keep, req.version) {
        (false, _) => Mode::Close,
        (true, Some(0)) => Mode::Keep10,
        (true, _) => Mode::Keep11,
    };
    Parsed::Head(Head {
        len,
        route,
        head_only: method == "HEAD",
        mode,
        framing,
        expect_continue,
    })
}

/// Strict decimal (digits only, no sign, no overflow).
fn parse_dec(s: &[u8]) -> Option<usize> {
    if s.is_empty() || s.len() > 15 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |n, d| n * 10 + usize::from(d - b'0')))
}

/// Walks a chunked body at the start of `buf`, handing each data piece to `sink`. `Ok(Some(n))`:
/// complete in `n` bytes (trailers included); `Ok(None)`: more bytes needed; `Err(status)`: bad.
pub fn chunked(buf: &[u8], mut sink: impl FnMut(&[u8])) -> Result<Option<usize>, u16> {
    let (mut pos, mut total) = (0usize, 0usize);
    loop {
        let Some(nl) = memchr::memchr(b'\n', &buf[pos..]) else {
            return if buf.len() - pos > 1024 {
                Err(400)
            } else {
                Ok(None)
            };
        };
        let line = &buf[pos..pos + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let size = line
            .split(|&b| b == b';')
            .next()
            .unwrap_or(b"")
            .trim_ascii();
        if size.is_empty() || size.len() > 15 || !size.iter().all(u8::is_ascii_hexdigit) {
            return Err(400);
        }
        let size = size.iter().fold(0usize, |n, &d| {
            n * 16 + (d as char).to_digit(16).unwrap_or(0) as usize
        });
        pos += nl + 1;
        if size == 0 {
            loop {
                let Some(nl) = memchr::memchr(b'\n', &buf[pos..]) else {
                    return if buf.len() - pos > MAX_HEAD {
                        Err(431)
                    } else {
                        Ok(None)
                    };
                };
                let line = &buf[pos..pos + nl];
                pos += nl + 1;
                if line.is_empty() || line == b"\r" {
                    return Ok(Some(pos));
                }
            }
        }
        total += size;
        if total > MAX_BODY {
            return Err(413);
        }
        if buf.len() - pos < size + 2 {
            return Ok(None);
        }
        sink(&buf[pos..pos + size]);
        pos += size;
        if &buf[pos..pos + 2] != b"\r\n" {
            return Err(400);
        }
        pos += 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies() {
        let mut body = Vec::new();
        let buf = b"3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\nNEXT";
        assert_eq!(
            chunked(buf, |d| body.extend_from_slice(d)),
            Ok(Some(buf.len() - 4))
        );
        assert_eq!(body, b"abcde");
        for cut in 0..buf.len() - 4 {
            assert_eq!(chunked(&buf[..cut], |_| {}), Ok(None), "cut at {cut}");
        }
        assert_eq!(chunked(b"zz\r\n", |_| {}), Err(400));
        assert_eq!(chunked(b"3\r\nabcX\r\n", |_| {}), Err(400));
    }

    #[test]
    fn heads() {
        let Parsed::Head(h) = parse_head(b"GET /status/503?a=b HTTP/1.0\r\n\r\n") else {
            panic!("complete head");
        };
        assert!(matches!(h.route, Route::Status(503)) && h.mode == Mode::Close);
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\nHost:"),
            Parsed::Partial
        ));
        let both =
            b"POST /echo HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(parse_head(both), Parsed::Error(400)));
        assert_eq!(parse_dec(b"0042"), Some(42));
        assert_eq!(parse_dec(b"+1"), None);
    }
}
