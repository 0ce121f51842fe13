//! One request to an HTTP/2 upstream seen through the byte interface of [`crate::net::Stream`],
//! so the exchange and the relays (`proxy/exchange.rs`, `proxy/relay.rs`) drive an h2 upstream
//! exactly as they drive an HTTP/1.1 one: the mirror of the downstream adapter (`stream.rs`).
//!
//! Owns [`H2Call`]. Data flow:
//!
//! - **Request out.** `write_all` takes what the exchange writes for an HTTP/1.1 upstream (the
//!   request head `http::rewrite` produced, then the body in the framing that head announced). The
//!   head becomes a HEADERS frame: `:method`, `:scheme`, `:authority` from `Host`, `:path` from the
//!   target, every other field except the connection-specific ones (RFC 9113 §8.2.2), and `te:
//!   trailers` on gRPC requests (gRPC servers require it; TE being hop-by-hop, the HTTP/1.1 head
//!   never carries it). The body becomes DATA frames sent as the upstream's window
//!   allows (its window is the backpressure on the client), the end of the body ends the stream.
//! - **Response in.** `read_some` hands out the response as HTTP/1.1 bytes: a head (status, fields,
//!   and framing: the upstream's `content-length` when it sent one, else chunked; a response whose
//!   HEADERS ended the stream, such as a gRPC trailers-only answer, gets `content-length: 0`), then
//!   each DATA frame (flow-control capacity released as it is handed out), then for a chunked body
//!   the last chunk with the upstream's trailers as the trailer section (gRPC's `grpc-status` and
//!   `grpc-message` travel there).
//! - **Refused.** A request the upstream never processed (the connection could not open the
//!   stream, RST_STREAM with REFUSED_STREAM, a graceful GOAWAY that left it out) is reported by
//!   [`H2Call::unprocessed`]: the exchange may retry it on another connection whatever its method
//!   (RFC 9113 §8.7).
//! - **Cancel.** Dropping the call before the response ended resets the stream (the h2 codec sends
//!   RST_STREAM CANCEL), which is what the upstream must see when the client left.

use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use h2::{RecvStream, SendStream};
use monoio::time::Instant;

use super::client::Lease;
use super::stream::{length_piece, send_flow};
use crate::http::chunked::{self, ChunkedDecoder};
use crate::http::rewrite::push_header;
use crate::net::IoFail;

/// Largest request head the adapter accepts from the gateway's own writer.
const MAX_HEAD: usize = 256 * 1024;

enum Out {
    /// Collecting the request head.
    Head(Vec<u8>),
    /// Sending the body.
    Body {
        send: SendStream<Bytes>,
        left: Left,
    },
    Done,
}

enum Left {
    Length(u64),
    Chunked(Box<ChunkedDecoder>),
}

enum In {
    /// The request is not sent yet.
    NotSent,
    Waiting(ResponseFuture),
    /// The response head arrived while `readable` waited (`read_some` renders it).
    Arrived(Result<http::Response<RecvStream>, h2::Error>),
    /// Handing out the body; `chunked`: the head announced chunked framing; `ahead`: what
    /// `readable` took from the stream.
    Body {
        recv: RecvStream,
        chunked: bool,
        ahead: Option<Option<Result<Bytes, h2::Error>>>,
    },
    Done,
}

/// One upstream h2 stream as a byte stream; see the module doc.
pub struct H2Call {
    send: Option<SendRequest<Bytes>>,
    /// Counts this stream on its connection until the call is dropped.
    _lease: Lease,
    tls: bool,
    out: Out,
    inp: In,
    unprocessed: bool,
}

impl H2Call {
    pub fn new(send: SendRequest<Bytes>, lease: Lease, tls: bool) -> Self {
        H2Call {
            send: Some(send),
            _lease: lease,
            tls,
            out: Out::Head(Vec::new()),
            inp: In::NotSent,
            unprocessed: false,
        }
    }

    /// The upstream never processed this request (see the module doc).
    pub fn unprocessed(&self) -> bool {
        self.unprocessed
    }

    /// A stream that failed before its response head: was it refused unprocessed?
    fn failed(&mut self, e: &h2::Error) {
        let refused = e.reason() == Some(h2::Reason::REFUSED_STREAM) && e.is_remote();
        // GOAWAY NO_ERROR is a graceful shutdown: streams it left out were never seen. (A stream
        // the upstream did take and then lost to the connection's end reports the same error;
        // a graceful shutdown promises to finish those, so this is the rare broken promise.)
        let goaway = e.is_go_away() && e.is_remote() && e.reason() == Some(h2::Reason::NO_ERROR);
        if refused || goaway {
            self.unprocessed = true;
        }
    }

    /// Takes request bytes as an HTTP/1.1 upstream would read them (see the module doc).
    pub async fn write_all(&mut self, mut data: &[u8], deadline: Instant) -> Result<(), IoFail> {
        while !data.is_empty() {
            match &mut self.out {
                Out::Done => return Err(IoFail::Error),
                Out::Head(head) => {
                    let Some(end) = memchr::memmem::find(data, b"\r\n\r\n") else {
                        head.extend_from_slice(data);
                        if head.len() > MAX_HEAD {
                            return Err(IoFail::Error);
                        }
                        return Ok(());
                    };
                    head.extend_from_slice(&data[..end + 4]);
                    data = &data[end + 4..];
                    let head = std::mem::take(head);
                    let Some((req, left)) = to_h2(&head, self.tls) else {
                        self.out = Out::Done;
                        return Err(IoFail::Error);
                    };
                    self.start(req, left, deadline).await?;
                }
                Out::Body { send, left } => {
                    let (payload, end) = match left {
                        Left::Length(rem) => length_piece(&mut data, rem),
                        Left::Chunked(dec) => {
                            let mut plain = Vec::new();
                            let Ok(p) =
                                dec.decode(data, &mut |d: &[u8]| plain.extend_from_slice(d))
                            else {
                                return Err(IoFail::Error);
                            };
                            data = &data[p.consumed..];
                            (Bytes::from(plain), p.done)
                        }
                    };
                    if send_flow(send, payload, end, deadline).await.is_err() {
                        self.out = Out::Done;
                        return Err(IoFail::Error);
                    }
                    if end {
                        self.out = Out::Done;
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    /// Opens the stream with the request's HEADERS.
    async fn start(
        &mut self,
        req: http::Request<()>,
        left: Option<Left>,
        deadline: Instant,
    ) -> Result<(), IoFail> {
        let Some(send) = self.send.take() else {
            return Err(IoFail::Error);
        };
        // waits for the previous stream this handle opened to be sent (never long)
        let ready = match monoio::time::timeout_at(deadline, send.ready()).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => {
                // the connection is gone or going away: nothing was sent
                self.unprocessed = true;
                self.out = Out::Done;
                return Err(IoFail::Error);
            }
            Err(_) => return Err(IoFail::Timeout),
        };
        let mut ready = ready;
        match ready.send_request(req, left.is_none()) {
            Ok((resp, send)) => {
                self.inp = In::Waiting(resp);
                self.out = match left {
                    Some(left) => Out::Body { send, left },
                    None => Out::Done,
                };
                Ok(())
            }
            Err(_) => {
                // refused before anything was sent
                self.unprocessed = true;
                self.out = Out::Done;
                Err(IoFail::Error)
            }
        }
    }

    /// Hands out the next response bytes (see the module doc). `Ok(0)`: the response ended.
    pub async fn read_some(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Instant,
    ) -> Result<usize, IoFail> {
        let start = buf.len();
        loop {
            match &mut self.inp {
                In::NotSent => return Err(IoFail::Error),
                In::Done => return Ok(0),
                In::Waiting(_) | In::Arrived(_) => {
                    let got = match std::mem::replace(&mut self.inp, In::NotSent) {
                        In::Arrived(got) => got,
                        In::Waiting(mut fut) => {
                            match monoio::time::timeout_at(deadline, &mut fut).await {
                                Err(_) => {
                                    self.inp = In::Waiting(fut);
                                    return Err(IoFail::Timeout);
                                }
                                Ok(got) => got,
                            }
                        }
                        _ => unreachable!("matched above"),
                    };
                    let resp = match got {
                        Err(e) => {
                            // no response head: the stream may have been refused unprocessed
                            self.failed(&e);
                            self.inp = In::Done;
                            return Err(IoFail::Error);
                        }
                        Ok(r) => r,
                    };
                    let (parts, recv) = resp.into_parts();
                    let chunked = response_head(&parts, recv.is_end_stream(), buf);
                    self.inp = match recv.is_end_stream() {
                        true => In::Done,
                        false => In::Body {
                            recv,
                            chunked,
                            ahead: None,
                        },
                    };
                    return Ok(buf.len() - start);
                }
                In::Body {
                    recv,
                    chunked,
                    ahead,
                } => {
                    let got = match ahead.take() {
                        Some(got) => got,
                        None => match monoio::time::timeout_at(deadline, recv.data()).await {
                            Err(_) => return Err(IoFail::Timeout),
                            Ok(got) => got,
                        },
                    };
                    match got {
                        Some(Ok(d)) if d.is_empty() => continue,
                        Some(Ok(d)) => {
                            let _ = recv.flow_control().release_capacity(d.len());
                            match chunked {
                                true => chunked::write_chunk(buf, &d),
                                false => buf.extend_from_slice(&d),
                            }
                            return Ok(buf.len() - start);
                        }
                        Some(Err(_)) => {
                            self.inp = In::Done;
                            return Err(IoFail::Error);
                        }
                        None => {
                            let chunked = *chunked;
                            let trailers =
                                monoio::time::timeout_at(deadline, recv.trailers()).await;
                            self.inp = In::Done;
                            let trailers = match trailers {
                                Err(_) => return Err(IoFail::Timeout),
                                Ok(Err(_)) => return Err(IoFail::Error),
                                Ok(Ok(t)) => t,
                            };
                            if chunked {
                                last_chunk(buf, trailers.as_ref());
                            }
                            return Ok(buf.len() - start);
                        }
                    }
                }
            }
        }
    }

    /// Resolves when `read_some` would make progress (the response head, DATA, the end of the
    /// body or an error is waiting); what arrived is kept for it. Dropping it loses nothing, so
    /// the exchange can race it against the client's request body (full duplex).
    pub async fn readable(&mut self) {
        match &mut self.inp {
            In::NotSent => std::future::pending::<()>().await,
            In::Waiting(fut) => {
                let got = fut.await;
                self.inp = In::Arrived(got);
            }
            In::Body { recv, ahead, .. } if ahead.is_none() => {
                *ahead = Some(recv.data().await);
            }
            _ => {}
        }
    }
}

/// Fields that never cross into HTTP/2 (RFC 9113 §8.2.2), or that the pseudo-headers carry: the
/// head parser's own classification of connection, hop-by-hop, framing and Host fields.
fn connection_specific(name: &[u8]) -> bool {
    use crate::http::head::{classify, HeaderKind::*};
    matches!(
        classify(name),
        Connection | HopByHop | TransferEncoding | Host
    )
}

/// The h2 request for an HTTP/1.1 request head written by the gateway, and how its body is framed
/// (`None`: no body).
fn to_h2(head: &[u8], tls: bool) -> Option<(http::Request<()>, Option<Left>)> {
    let mut lines = head[..head.len() - 4]
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let line = lines.next()?;
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (method, target) = (parts.next()?, parts.next()?);
    let mut b = http::Request::builder().method(http::Method::from_bytes(method).ok()?);
    let mut authority: Option<&[u8]> = None;
    let mut left = None;
    let mut grpc = false;
    for l in lines {
        let colon = memchr::memchr(b':', l)?;
        let (name, value) = (&l[..colon], l[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"host") {
            authority = Some(value);
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let n = crate::http::head::parse_content_length(value)?;
            left = (n > 0).then_some(Left::Length(n));
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            left = Some(Left::Chunked(Box::new(ChunkedDecoder::new(u64::MAX))));
        } else if name.eq_ignore_ascii_case(b"content-type") {
            grpc = crate::http::respond::is_grpc(Some(value));
        }
        if connection_specific(name) {
            continue;
        }
        b = b.header(
            http::HeaderName::from_bytes(&name.to_ascii_lowercase()).ok()?,
            http::HeaderValue::from_bytes(value).ok()?,
        );
    }
    if grpc {
        // TE is hop-by-hop, so the HTTP/1.1 head never carries it; gRPC servers require it
        b = b.header(http::header::TE, "trailers");
    }
    let uri = http::Uri::builder()
        .scheme(if tls { "https" } else { "http" })
        .authority(authority?)
        .path_and_query(target)
        .build()
        .ok()?;
    Some((b.uri(uri).body(()).ok()?, left))
}

/// Writes the HTTP/1.1 head for an h2 response; returns whether the body is chunked.
fn response_head(parts: &http::response::Parts, ended: bool, out: &mut Vec<u8>) -> bool {
    let status = parts.status.as_u16();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or("Unknown")
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    let length = parts.headers.contains_key(http::header::CONTENT_LENGTH);
    for (name, value) in &parts.headers {
        push_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    let no_body = status == 204 || status == 304 || (100..200).contains(&status);
    let chunked = !length && !ended && !no_body;
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    } else if !length && !no_body {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
    chunked
}

/// The last chunk with `trailers` as the trailer section (fields that may not be trailers, RFC
/// 9110 §6.5.1, left out).
fn last_chunk(out: &mut Vec<u8>, trailers: Option<&http::HeaderMap>) {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        if !crate::http::chunked::trailer_allowed(name.as_str().as_bytes()) {
            continue;
        }
        push_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_head_becomes_h2_headers() {
        let head =
            b"POST /pkg.Svc/Call?x=1 HTTP/1.1\r\nhost: api.test\r\nconnection: keep-alive\r\n\
te: trailers\r\ncontent-type: application/grpc\r\ntransfer-encoding: chunked\r\n\r\n";
        let (req, left) = to_h2(head, true).unwrap();
        assert_eq!(req.uri().to_string(), "https://api.test/pkg.Svc/Call?x=1");
        assert_eq!(req.method(), "POST");
        assert_eq!(req.headers().get("te").unwrap(), "trailers");
        assert!(req.headers().get("connection").is_none());
        assert!(req.headers().get("transfer-encoding").is_none());
        assert!(req.headers().get("host").is_none());
        assert!(matches!(left, Some(Left::Chunked(_))));
        let (req, left) = to_h2(
            b"GET / HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(req.uri().to_string(), "http://a/");
        assert!(left.is_none());
        assert!(
            to_h2(b"GET / HTTP/1.1\r\nx: y\r\n\r\n", false).is_none(),
            "no host"
        );
    }

    #[test]
    fn response_framing_and_trailers() {
        let resp = http::Response::builder()
            .status(200)
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        let (parts, ()) = resp.into_parts();
        let mut out = Vec::new();
        assert!(response_head(&parts, false, &mut out));
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.ends_with("transfer-encoding: chunked\r\n\r\n"));
        let mut out = Vec::new();
        assert!(!response_head(&parts, true, &mut out), "trailers-only");
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("content-length: 0\r\n"));
        let mut t = http::HeaderMap::new();
        t.insert("grpc-status", "0".parse().unwrap());
        t.insert("content-length", "5".parse().unwrap());
        let mut out = Vec::new();
        last_chunk(&mut out, Some(&t));
        assert_eq!(out, b"0\r\ngrpc-status: 0\r\n\r\n");
    }
}
