//! One HTTP/2 stream seen through the byte interface of [`crate::net::Stream`], so that an h2
//! request runs the very pipeline an HTTP/1.1 request runs (routing, filters, the upstream target,
//! the gateway's own answers) with per-stream state.
//!
//! Owns [`H2Stream`]. Data flow:
//!
//! - **Request body in.** `read_some` hands out the stream's DATA as the body framing the request's
//!   head promised (`server.rs` writes that head): raw bytes when the request declared a
//!   `content-length` (h2 itself refuses DATA that disagrees with it, RFC 9113 §8.1.1, as a stream
//!   error), chunked framing otherwise, so the strict HTTP/1.1 body path reads it unchanged. Flow
//!   control capacity is released as bytes are handed out: a slow upstream slows the client down.
//! - **Response out.** `write_all` takes what the relay or the answer path writes for a client
//!   (an HTTP/1.1 response head, then the body in the framing that head announced), parses the head
//!   with the same strict parser used for upstreams, and turns it into a HEADERS frame (hop-by-hop
//!   and connection fields dropped, RFC 9113 §8.2.2) and the body into DATA frames, waiting for
//!   send capacity so the client's window is the backpressure. The end of the body (the length
//!   reached, the last chunk) ends the stream.
//! - **Cancel.** [`H2Stream::gone`] resolves when the client resets the stream; the exchange then
//!   drops the upstream attempt. A stream closed before its response ended is reset (INTERNAL_ERROR)
//!   so the client can tell a cut from an end.

use std::future::poll_fn;
use std::rc::Rc;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use monoio::time::Instant;

use crate::http::chunked::{self, ChunkedDecoder};
use crate::http::head::{self, BodyKind, HeaderKind, ResponseHead};
use crate::net::{IoFail, TlsInfo};

/// Largest response head the adapter accepts from the gateway's own writers.
const MAX_HEAD: usize = 64 * 1024;

/// How the request body is handed to the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// END_STREAM came with the headers.
    None,
    /// Raw bytes (the request declared `content-length`).
    Raw,
    /// Chunked framing around each DATA frame.
    Chunked,
    /// A WebSocket over HTTP/2 stream (RFC 8441): raw bytes both ways once the upstream switched.
    Tunnel,
}

/// Where the response stands.
enum Out {
    /// Collecting the response head.
    Head(Vec<u8>),
    /// Sending the body: the framing the head announced.
    Body { send: SendStream<Bytes>, left: Left },
    /// The stream ended (or was reset).
    Done,
}

enum Left {
    Length(u64),
    Chunked(Box<ChunkedDecoder>),
    /// Tunnel bytes, until the gateway ends the stream.
    Tunnel,
}

/// What `readable` took from the stream ahead of `read_some`.
enum Ahead {
    Nothing,
    Data(Bytes),
    End,
    Failed,
}

/// An HTTP/2 stream as a byte stream; see the module doc.
pub struct H2Stream {
    recv: RecvStream,
    framing: BodyFraming,
    /// The request body ended (its terminator, if chunked, was handed out).
    recv_done: bool,
    respond: Option<SendResponse<Bytes>>,
    out: Out,
    tls: Option<Rc<TlsInfo>>,
    ahead: Ahead,
    /// The request is HEAD: the response's `content-length` announces no body.
    head_request: bool,
}

impl H2Stream {
    pub fn new(
        recv: RecvStream,
        respond: SendResponse<Bytes>,
        framing: BodyFraming,
        tls: Option<Rc<TlsInfo>>,
        head_request: bool,
    ) -> Self {
        H2Stream {
            recv,
            framing,
            recv_done: framing == BodyFraming::None,
            respond: Some(respond),
            out: Out::Head(Vec::new()),
            tls,
            ahead: Ahead::Nothing,
            head_request,
        }
    }

    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls.as_deref()
    }

    /// Reads the next piece of request body (see the module doc). `Ok(0)`: the body ended.
    pub async fn read_some(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Instant,
    ) -> Result<usize, IoFail> {
        if self.recv_done {
            return Ok(0);
        }
        let start = buf.len();
        // empty DATA frames hand out nothing: read on (a loop, so a flood of them costs no stack)
        let data = loop {
            let got = match std::mem::replace(&mut self.ahead, Ahead::Nothing) {
                Ahead::Data(d) => Ok(Some(Ok(d))),
                Ahead::End => Ok(None),
                Ahead::Failed => return Err(IoFail::Error),
                Ahead::Nothing => monoio::time::timeout_at(deadline, self.recv.data()).await,
            };
            match got {
                Err(_) => return Err(IoFail::Timeout),
                Ok(Some(Err(_))) => return Err(IoFail::Error),
                Ok(Some(Ok(data))) if data.is_empty() => continue,
                Ok(Some(Ok(data))) => break data,
                Ok(None) => {
                    self.recv_done = true;
                    if self.framing == BodyFraming::Chunked {
                        buf.extend_from_slice(chunked::LAST_CHUNK);
                        return Ok(buf.len() - start);
                    }
                    return Ok(0);
                }
            }
        };
        let _ = self.recv.flow_control().release_capacity(data.len());
        match self.framing {
            BodyFraming::Chunked => {
                chunked::write_chunk(buf, &data);
            }
            _ => buf.extend_from_slice(&data),
        }
        Ok(buf.len() - start)
    }

    /// Takes response bytes as an HTTP/1.1 client would read them (see the module doc).
    pub async fn write_all(&mut self, mut data: &[u8], deadline: Instant) -> Result<(), IoFail> {
        while !data.is_empty() {
            match &mut self.out {
                Out::Done => return Err(IoFail::Error),
                Out::Head(head) => {
                    head.extend_from_slice(data);
                    data = &[];
                    let mut resp = ResponseHead::default();
                    match head::parse_response(head, MAX_HEAD, self.head_request, &mut resp) {
                        Ok(None) if head.len() < MAX_HEAD => return Ok(()),
                        Ok(Some(())) => {}
                        _ => return self.fail(),
                    }
                    let head_bytes = std::mem::take(head);
                    // a WebSocket over h2 stream: the upstream's 101 is our 200 (RFC 8441 §5)
                    let tunnel = resp.status == 101 && self.framing == BodyFraming::Tunnel;
                    let status = if tunnel { 200 } else { resp.status };
                    let Some(response) = to_h2(&head_bytes, &resp, status) else {
                        return self.fail();
                    };
                    let body = head_bytes[resp.head_len..].to_vec();
                    let left = match resp.body {
                        _ if tunnel => Some(Left::Tunnel),
                        BodyKind::None | BodyKind::Length(0) => None,
                        BodyKind::Length(n) => Some(Left::Length(n)),
                        BodyKind::Chunked => {
                            let mut dec = Box::new(ChunkedDecoder::new(u64::MAX));
                            dec.keep_trailers();
                            Some(Left::Chunked(dec))
                        }
                        // the gateway never writes close-delimited bodies to h2 clients
                        BodyKind::UntilClose => return self.fail(),
                    };
                    let Some(mut respond) = self.respond.take() else {
                        return self.fail();
                    };
                    let end = left.is_none();
                    let send = match respond.send_response(response, end) {
                        Ok(s) => s,
                        Err(_) => return self.fail(),
                    };
                    self.out = match left {
                        None => Out::Done,
                        Some(left) => Out::Body { send, left },
                    };
                    if !body.is_empty() {
                        return Box::pin(self.write_all(&body, deadline)).await;
                    }
                }
                Out::Body { send, left } => {
                    let (payload, end) = match left {
                        Left::Length(rem) => length_piece(&mut data, rem),
                        Left::Tunnel => {
                            let piece = Bytes::copy_from_slice(data);
                            data = &[];
                            (piece, false)
                        }
                        Left::Chunked(dec) => {
                            let mut plain = Vec::new();
                            let p = match dec
                                .decode(data, &mut |d: &[u8]| plain.extend_from_slice(d))
                            {
                                Ok(p) => p,
                                Err(_) => return self.fail(),
                            };
                            data = &data[p.consumed..];
                            if p.done && !dec.trailers().is_empty() {
                                // the relay passed trailers on (the client sent `te: trailers`)
                                let Some(fields) = trailer_map(dec.trailers()) else {
                                    return self.fail();
                                };
                                if send_flow(send, Bytes::from(plain), false, deadline)
                                    .await
                                    .is_err()
                                    || send.send_trailers(fields).is_err()
                                {
                                    return self.fail();
                                }
                                self.out = Out::Done;
                                return Ok(());
                            }
                            (Bytes::from(plain), p.done)
                        }
                    };
                    if send_flow(send, payload, end, deadline).await.is_err() {
                        return self.fail();
                    }
                    if end {
                        self.out = Out::Done;
                        // bytes past the end of the body are not ours to send
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    /// Resolves when a read would make progress (DATA, the end of the stream or an error is
    /// waiting); what arrived is kept for `read_some`. Dropping it loses nothing.
    pub async fn readable(&mut self) {
        if !matches!(self.ahead, Ahead::Nothing) || self.recv_done {
            return;
        }
        self.ahead = match self.recv.data().await {
            Some(Ok(d)) => Ahead::Data(d),
            Some(Err(_)) => Ahead::Failed,
            None => Ahead::End,
        };
    }

    /// Ends our sending direction of a tunnel (END_STREAM); reads go on.
    pub fn end_stream(&mut self) {
        match std::mem::replace(&mut self.out, Out::Done) {
            Out::Body {
                mut send,
                left: Left::Tunnel,
            } => {
                let _ = send.send_data(Bytes::new(), true);
            }
            other => {
                self.out = other;
                self.close();
            }
        }
    }

    /// Resolves when the client reset the stream (or the connection went away).
    pub async fn gone(&mut self) {
        match &mut self.out {
            Out::Body { send, .. } => {
                let _ = poll_fn(|cx| send.poll_reset(cx)).await;
            }
            _ => match &mut self.respond {
                Some(r) => {
                    let _ = poll_fn(|cx| r.poll_reset(cx)).await;
                }
                None => std::future::pending::<()>().await,
            },
        }
    }

    /// Ends the stream: a response that did not end is reset, so the client sees a cut.
    pub fn close(&mut self) {
        match std::mem::replace(&mut self.out, Out::Done) {
            Out::Done => {}
            Out::Body { mut send, .. } => send.send_reset(h2::Reason::INTERNAL_ERROR),
            Out::Head(_) => {
                if let Some(mut r) = self.respond.take() {
                    r.send_reset(h2::Reason::INTERNAL_ERROR);
                }
            }
        }
    }

    fn fail(&mut self) -> Result<(), IoFail> {
        self.close();
        Err(IoFail::Error)
    }
}

/// The next DATA payload of a body with `rem` bytes left: as much of `data` as belongs to it
/// (taken off `data`), and whether that ends the body.
pub(super) fn length_piece(data: &mut &[u8], rem: &mut u64) -> (Bytes, bool) {
    let take = (data.len() as u64).min(*rem) as usize;
    *rem -= take as u64;
    let piece = Bytes::copy_from_slice(&data[..take]);
    *data = &data[take..];
    (piece, *rem == 0)
}

/// Trailer field lines (as the chunked decoder keeps them) as an h2 trailer block (lower-cased
/// names; fields that may not be trailers left out).
fn trailer_map(lines: &[u8]) -> Option<http::HeaderMap> {
    let mut map = http::HeaderMap::new();
    for (name, value) in chunked::for_each_trailer(lines) {
        if !chunked::trailer_allowed(name) {
            continue;
        }
        map.append(
            http::HeaderName::from_bytes(&name.to_ascii_lowercase()).ok()?,
            http::HeaderValue::from_bytes(value).ok()?,
        );
    }
    Some(map)
}

/// Sends `data` as DATA frames as the peer's window allows; `end` ends the stream with the last one.
pub(super) async fn send_flow(
    send: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
    deadline: Instant,
) -> Result<(), ()> {
    if data.is_empty() {
        return match end {
            true => send.send_data(data, true).map_err(|_| ()),
            false => Ok(()),
        };
    }
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let cap =
            match monoio::time::timeout_at(deadline, poll_fn(|cx| send.poll_capacity(cx))).await {
                Ok(Some(Ok(cap))) => cap,
                _ => return Err(()),
            };
        if cap == 0 {
            continue;
        }
        let piece = data.split_to(cap.min(data.len()));
        send.send_data(piece, end && data.is_empty())
            .map_err(|_| ())?;
    }
    Ok(())
}

/// The HEADERS of an HTTP/1.1 response head: the status and every field an h2 response may carry
/// (connection-specific fields dropped, RFC 9113 §8.2.2).
fn to_h2(buf: &[u8], resp: &ResponseHead, status: u16) -> Option<http::Response<()>> {
    let mut b = http::Response::builder().status(status);
    for h in &resp.headers {
        match h.kind {
            HeaderKind::Connection | HeaderKind::HopByHop | HeaderKind::TransferEncoding => {
                continue
            }
            _ => {}
        }
        let name = h.name.get(buf);
        // the HTTP/1.1 handshake's proof; RFC 8441 has none
        if status != resp.status && name.eq_ignore_ascii_case(b"sec-websocket-accept") {
            continue;
        }
        let value = h.value.get(buf);
        b = b.header(
            http::HeaderName::from_bytes(&name.to_ascii_lowercase()).ok()?,
            http::HeaderValue::from_bytes(value).ok()?,
        );
    }
    b.body(()).ok()
}
