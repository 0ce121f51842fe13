//! Incremental HTTP/1.1 response parsing for the load connections. `Parser::step` consumes bytes
//! from the front of the connection's read buffer and reports a finished response (status, whether
//! the connection must close) once its body is complete: Content-Length, chunked (with trailers)
//! and close-delimited bodies. Bodies are skipped as they stream in, so the buffer stays small.

/// Outcome of feeding the buffer once.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Consumed this many bytes; need more input to finish the current response.
    More(usize),
    /// A response finished after consuming this many bytes.
    Done {
        consumed: usize,
        status: u16,
        close: bool,
    },
    /// The response is malformed.
    Bad,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Fixed(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkCrlf,
    Trailer,
    UntilEof,
}

/// Response framing state for one connection.
#[derive(Debug)]
pub struct Parser {
    state: State,
    status: u16,
    close: bool,
}

impl Default for Parser {
    fn default() -> Self {
        Parser {
            state: State::Head,
            status: 0,
            close: false,
        }
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    memchr::memmem::find(b, b"\r\n")
}

impl Parser {
    /// Forget any partial response (after a reconnect).
    pub fn reset(&mut self) {
        *self = Parser::default();
    }

    /// True when the current response's body ends at EOF (no length, not chunked).
    pub fn until_eof(&self) -> bool {
        self.state == State::UntilEof
    }

    /// The response being read when the peer closed: its status (close-delimited bodies).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Advance over `buf` (bytes not yet consumed). `head_req`: the response answers a HEAD.
    pub fn step(&mut self, buf: &[u8], head_req: bool) -> Step {
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            match self.state {
                State::Head => {
                    let mut hdrs = [httparse::EMPTY_HEADER; 100];
                    let mut resp = httparse::Response::new(&mut hdrs);
                    let n = match resp.parse(rest) {
                        Ok(httparse::Status::Complete(n)) => n,
                        Ok(httparse::Status::Partial) => return Step::More(pos),
                        Err(_) => return Step::Bad,
                    };
                    pos += n;
                    let status = resp.code.unwrap_or(0);
                    self.status = status;
                    let mut close = resp.version == Some(0);
                    let (mut len, mut chunked) = (None, false);
                    for h in resp.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            match std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse::<u64>().ok())
                            {
                                Some(l) => len = Some(l),
                                None => return Step::Bad,
                            }
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked =
                                h.value.split(|&b| b == b',').next_back().is_some_and(|t| {
                                    t.trim_ascii().eq_ignore_ascii_case(b"chunked")
                                });
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            for t in h.value.split(|&b| b == b',') {
                                if t.trim_ascii().eq_ignore_ascii_case(b"close") {
                                    close = true;
                                } else if t.trim_ascii().eq_ignore_ascii_case(b"keep-alive") {
                                    close = false;
                                }
                            }
                        }
                    }
                    self.close = close;
                    if (100..200).contains(&status) && status != 101 {
                        continue; // interim response: the real one follows
                    }
                    self.state = if head_req || status == 204 || status == 304 {
                        State::Fixed(0)
                    } else if chunked {
                        State::ChunkSize
                    } else if let Some(l) = len {
                        State::Fixed(l)
                    } else {
                        State::UntilEof
                    };
                }
                State::Fixed(left) => {
                    let take = left.min(rest.len() as u64);
                    pos += take as usize;
                    if take < left {
                        self.state = State::Fixed(left - take);
                        return Step::More(pos);
                    }
                    self.state = State::Head;
                    return Step::Done {
                        consumed: pos,
                        status: self.status,
                        close: self.close,
                    };
                }
                State::ChunkSize => {
                    let Some(e) = find_crlf(rest) else {
                        return Step::More(pos);
                    };
                    let line = &rest[..e];
                    let hex = line
                        .split(|&b| b == b';')
                        .next()
                        .unwrap_or(b"")
                        .trim_ascii();
                    let Some(size) = std::str::from_utf8(hex)
                        .ok()
                        .and_then(|h| u64::from_str_radix(h, 16).ok())
                    else {
                        return Step::Bad;
                    };
                    pos += e + 2;
                    self.state = if size == 0 {
                        State::Trailer
                    } else {
                        State::ChunkData(size)
                    };
                }
                State::ChunkData(left) => {
                    let take = left.min(rest.len() as u64);
                    pos += take as usize;
                    if take < left {
                        self.state = State::ChunkData(left - take);
                        return Step::More(pos);
                    }
                    self.state = State::ChunkCrlf;
                }
                State::ChunkCrlf => {
                    if rest.len() < 2 {
                        return Step::More(pos);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Step::Bad;
                    }
                    pos += 2;
                    self.state = State::ChunkSize;
                }
                State::Trailer => {
                    let Some(e) = find_crlf(rest) else {
                        return Step::More(pos);
                    };
                    pos += e + 2;
                    if e == 0 {
                        self.state = State::Head;
                        return Step::Done {
                            consumed: pos,
                            status: self.status,
                            close: self.close,
                        };
                    }
                }
                State::UntilEof => return Step::More(buf.len()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(p: &mut Parser, b: &[u8]) -> Vec<Step> {
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            let s = p.step(&b[pos..], false);
            match s {
                Step::Done { consumed, .. } => {
                    pos += consumed;
                    out.push(s);
                }
                _ => {
                    out.push(s);
                    return out;
                }
            }
        }
    }

    #[test]
    fn content_length_and_chunked_and_close() {
        let mut p = Parser::default();
        let r = all(&mut p, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 404 NF\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nX: y\r\n\r\nHTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody");
        assert_eq!(
            r[0],
            Step::Done {
                consumed: 40,
                status: 200,
                close: false
            }
        );
        assert!(matches!(
            r[1],
            Step::Done {
                status: 404,
                close: false,
                ..
            }
        ));
        assert!(matches!(r[2], Step::More(_)));
        assert!(p.until_eof());
        assert_eq!(p.status(), 200);
    }

    #[test]
    fn split_input() {
        let msg = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        for cut in 1..msg.len() {
            let mut p = Parser::default();
            let Step::More(n) = p.step(&msg[..cut], false) else {
                panic!("cut {cut}")
            };
            assert!(
                matches!(p.step(&msg[n..], false), Step::Done { status: 200, .. }),
                "cut {cut}"
            );
        }
    }
}
