//! Body relays: the rest of a request body to the upstream, and the response back to the client.
//!
//! Owns: streaming with backpressure. Content-Length bodies move rent-style: a buffer is read full from
//! one socket and the same buffer is written to the other, so memory stays at one buffer per side
//! whatever the body size. Chunked bodies are decoded strictly (`http::chunked`) and re-encoded with
//! our own framing (extensions dropped; trailers dropped unless the client sent `TE: trailers`, then
//! the validated fields that may be trailers are passed on), so the peer can never read a different
//! message than we did. Bodies that end at close are re-chunked for HTTP/1.1 clients.
//!
//! Errors: a client that disappears mid-body ends the exchange silently (the upstream connection is
//! dropped, never pooled); once a response head has been sent, a failure can only close the client
//! connection, which tells the client the body was truncated.

use monoio::time::Instant;

use super::sink::{Collected, Sink, State};
use super::{BodyLeft, ClientConn, Fail};
use crate::http::chunked::{self, ChunkedDecoder, ChunkedError};
use crate::http::head::{BodyKind, HeaderKind, ResponseHead};
use crate::http::respond::{ErrorKind, Reply};
use crate::http::rewrite::{write_client_response, OutFraming};
use crate::metrics::UpstreamError;
use crate::net::splice::{self, SpliceFail};
use crate::net::{IoFail, Stream};
use crate::runtime::worker::Generation;
use crate::upstream::pool::UpConn;

/// The client-facing error for a malformed or oversized chunked request body.
pub(crate) fn chunk_error(e: ChunkedError) -> Reply {
    match e {
        ChunkedError::BodyTooLarge => Reply::new(ErrorKind::BodyTooLarge),
        _ => Reply::new(ErrorKind::BadBody),
    }
}

/// Reads the next piece of request body from the client, appended to its buffer.
pub(super) async fn read_client(
    c: &mut ClientConn,
    timeout: std::time::Duration,
) -> Result<(), Fail> {
    match c
        .stream
        .read_some(&mut c.buf, Instant::now() + timeout)
        .await
    {
        Ok(0) | Err(IoFail::Error) => Err(Fail::Close),
        Err(IoFail::Timeout) => Err(Reply::new(ErrorKind::BadRequest {
            status: 408,
            reason: "request body not received in time",
        })
        .into()),
        Ok(_) => Ok(()),
    }
}

/// Reads the next piece of response body into the upstream connection's (cleared) buffer; Ok(0) is
/// end of stream. Err when the upstream failed or stalled past `timeout`.
async fn read_upstream(conn: &mut UpConn, timeout: std::time::Duration) -> Result<usize, ()> {
    conn.buf.clear();
    let n = match conn
        .stream
        .read_some(&mut conn.buf, Instant::now() + timeout)
        .await
    {
        Ok(n) => n,
        Err(IoFail::Timeout) => {
            conn.stats.error(UpstreamError::Timeout);
            return Err(());
        }
        Err(IoFail::Error) => {
            conn.stats.error(UpstreamError::Reset);
            return Err(());
        }
    };
    conn.stats.bytes_received.add(n as u64);
    Ok(n)
}

/// Reads more of a body that must continue; an end of stream here is the upstream cutting the
/// response short (counted as a reset).
async fn read_upstream_more(conn: &mut UpConn, timeout: std::time::Duration) -> Result<usize, ()> {
    match read_upstream(conn, timeout).await? {
        0 => {
            conn.stats.error(UpstreamError::Reset);
            Err(())
        }
        n => Ok(n),
    }
}

/// Reads the next piece of request body from the client and writes it to the upstream.
pub(crate) async fn request_body_step(
    ctx: &Generation,
    c: &mut ClientConn,
    conn: &mut UpConn,
    body: &mut BodyLeft,
) -> Result<(), Fail> {
    let timeout = ctx.cfg.server.client_body_timeout;
    match body {
        BodyLeft::Done => {}
        BodyLeft::Length(rem) => {
            read_client(c, timeout).await?;
            let take = (c.buf.len() as u64).min(*rem) as usize;
            c.body_recv += take as u64;
            conn.stats.bytes_sent.add(take as u64);
            if conn
                .stream
                .write_prefix(&mut c.buf, take, Instant::now() + timeout)
                .await
                .is_err()
            {
                return Err(Reply::new(ErrorKind::UpstreamReset).into());
            }
            c.buf.drain(..take);
            *rem -= take as u64;
            if *rem == 0 {
                *body = BodyLeft::Done;
            }
        }
        BodyLeft::Chunked(dec) => {
            read_client(c, timeout).await?;
            c.out.clear();
            let (out, recv) = (&mut c.out, &mut c.body_recv);
            let p = dec
                .decode(&c.buf, &mut |data: &[u8]| {
                    *recv += data.len() as u64;
                    chunked::write_chunk(out, data);
                })
                .map_err(chunk_error)?;
            if p.done {
                c.out.extend_from_slice(chunked::LAST_CHUNK);
            }
            c.buf.drain(..p.consumed);
            conn.stats.bytes_sent.add(c.out.len() as u64);
            let r = conn
                .stream
                .write_all(&mut c.out, Instant::now() + timeout)
                .await;
            c.out.clear();
            if r.is_err() {
                return Err(Reply::new(ErrorKind::UpstreamReset).into());
            }
            if p.done {
                *body = BodyLeft::Done;
            }
        }
    }
    Ok(())
}

/// How the response relay ended.
pub(crate) struct Relayed {
    /// The upstream connection is clean and may go back to the pool.
    pub upstream_reusable: bool,
    /// The client connection stays open for the next request.
    pub client_keep: bool,
}

fn push_data(out: &mut Vec<u8>, data: &[u8], framing: OutFraming) {
    if data.is_empty() {
        return;
    }
    if framing == OutFraming::Chunked {
        chunked::write_chunk(out, data);
    } else {
        out.extend_from_slice(data);
    }
}

/// What the response relay needs to know about the request.
pub(crate) struct RelayPlan<'a> {
    pub rid: &'a [u8],
    /// The client wants keep-alive and we are not draining.
    pub keep: bool,
    pub client_minor: u8,
    /// Longest wait for each read of the upstream body.
    pub up_timeout: std::time::Duration,
    /// The client reads trailers (`TE: trailers`): a chunked response's trailer fields are
    /// passed on (those that may be trailers), else dropped.
    pub trailers: bool,
    /// Response fields the route's `response_headers` drop.
    pub strip: &'a [Box<[u8]>],
}

/// Why the response relay stopped early.
pub(crate) enum RelayFail {
    /// A side failed mid-response: the client connection must be closed (the upstream connection is
    /// not reusable either).
    Close,
    /// The upstream's body was malformed before any byte went to the client: answer 502 instead.
    BadUpstream(&'static str),
}

impl From<()> for RelayFail {
    fn from(_: ()) -> Self {
        RelayFail::Close
    }
}

/// Relays the response into `sink`: to the client (head, then the body as it arrives), or into a
/// buffer (see `sink.rs`: a declined or spilled response still reaches the client untouched).
/// `duplex`: the request body still to send, moved on while the response body is awaited
/// (`duplex.rs`).
pub(crate) async fn response(
    ctx: &Generation,
    c: &mut ClientConn,
    conn: &mut UpConn,
    resp: &ResponseHead,
    how: &RelayPlan<'_>,
    sink: &mut Sink<'_>,
    duplex: Option<&mut BodyLeft>,
) -> Result<Relayed, RelayFail> {
    let framing = match resp.body {
        BodyKind::None => OutFraming::None,
        BodyKind::Length(n) => OutFraming::Length(n),
        BodyKind::Chunked | BodyKind::UntilClose if how.client_minor == 1 => OutFraming::Chunked,
        BodyKind::Chunked | BodyKind::UntilClose => OutFraming::Close,
    };
    let mut to = To {
        buffer: match sink {
            Sink::Buffer(b) => b.admit(resp, &conn.buf).then_some(&mut **b),
            Sink::Client => None,
        },
        rid: how.rid,
        keep: how.keep && framing != OutFraming::Close,
        framing,
        client_timeout: ctx.cfg.server.client_body_timeout,
        trailers: how.trailers && framing == OutFraming::Chunked,
        strip: how.strip,
    };
    c.out.clear();
    if to.buffer.is_none() {
        to.client_head(c, &conn.buf, resp);
    }
    let mut duplex = duplex.map(|body| Duplex { ctx, body });
    let relayed = body(c, conn, resp, how.up_timeout, &mut to, &mut duplex).await;
    match (relayed, to.buffer) {
        (Ok(upstream_reusable), Some(b)) => {
            b.state = State::Complete;
            Ok(Relayed {
                upstream_reusable,
                // the buffered response goes out with a Content-Length
                client_keep: how.keep,
            })
        }
        (Ok(upstream_reusable), None) => Ok(Relayed {
            upstream_reusable,
            client_keep: to.keep,
        }),
        // still buffering: the client has seen nothing, so it gets a 502 rather than a cut
        (Err(RelayFail::Close), Some(_)) => {
            Err(RelayFail::BadUpstream("upstream response body failed"))
        }
        (Err(e), _) => Err(e),
    }
}

/// Where the body goes while it streams: the buffer, until (unless) it spills to the client.
struct To<'s> {
    buffer: Option<&'s mut Collected>,
    rid: &'s [u8],
    /// The client connection stays open after a streamed response.
    keep: bool,
    framing: OutFraming,
    client_timeout: std::time::Duration,
    /// Trailer fields go to the client.
    trailers: bool,
    strip: &'s [Box<[u8]>],
}

impl To<'_> {
    /// Renders the client's response head into `c.out`.
    fn client_head(&self, c: &mut ClientConn, buf: &[u8], resp: &ResponseHead) {
        let (rid, keep, framing) = (self.rid, self.keep, self.framing);
        write_client_response(
            &mut c.out, buf, resp, rid, keep, framing, &c.extra, self.strip,
        );
    }

    /// Body bytes, into the buffer or framed into `c.out`.
    fn push(&mut self, out: &mut Vec<u8>, data: &[u8]) {
        match &mut self.buffer {
            Some(b) => b.body.extend_from_slice(data),
            None => push_data(out, data, self.framing),
        }
    }

    /// Sends `c.out` to the client; while buffering, spills first when the body outgrew the cap.
    async fn flush(&mut self, c: &mut ClientConn) -> Result<(), ()> {
        if let Some(b) = &mut self.buffer {
            if b.body.len() <= b.cap {
                return Ok(());
            }
            b.state = State::Spilled;
            c.out.clear();
            let (head, resp) = (&b.head, &b.resp);
            let (rid, keep, framing) = (self.rid, self.keep, self.framing);
            let strip = self.strip;
            write_client_response(&mut c.out, head, resp, rid, keep, framing, &c.extra, strip);
            push_data(&mut c.out, &b.body, framing);
            b.body = Vec::new();
            self.buffer = None;
        }
        write(c, Instant::now() + self.client_timeout).await
    }

    /// Moves the first `k` bytes of `src` on: rent-style to the client, or into the buffer.
    async fn pass(&mut self, c: &mut ClientConn, src: &mut Vec<u8>, k: usize) -> Result<(), ()> {
        match &mut self.buffer {
            Some(b) => {
                b.body.extend_from_slice(&src[..k]);
                Ok(())
            }
            None => {
                let deadline = Instant::now() + self.client_timeout;
                c.stream
                    .write_prefix(src, k, deadline)
                    .await
                    .map_err(|_| ())
            }
        }
    }
}

/// The request body still going to the upstream while its response is relayed.
struct Duplex<'a> {
    ctx: &'a Generation,
    body: &'a mut BodyLeft,
}

/// Before a read of the upstream body: in duplex, moves request body pieces on until the
/// upstream has something. An upstream that stopped reading gets no more of the body (its answer
/// is still relayed); a client that fails or stalls cuts the response.
async fn pump(
    c: &mut ClientConn,
    conn: &mut UpConn,
    duplex: &mut Option<Duplex<'_>>,
) -> Result<(), RelayFail> {
    if let Some(d) = duplex {
        let pumped = super::duplex::pump_until_upstream(d.ctx, c, conn, d.body)
            .await
            .map_err(|_| RelayFail::Close)?;
        if pumped == super::duplex::Pumped::UpstreamStopped {
            *duplex = None;
        }
    }
    Ok(())
}

/// Relays the body (after the head, already in `c.out` when streaming); returns whether the
/// upstream connection is clean for the pool. A body that does not fit in the connection's buffer
/// streams through a large one from the worker's pool (`net/relay_buf.rs`), which the connection
/// gives back when it is pooled or closed.
async fn body(
    c: &mut ClientConn,
    conn: &mut UpConn,
    resp: &ResponseHead,
    up_timeout: std::time::Duration,
    to: &mut To<'_>,
    duplex: &mut Option<Duplex<'_>>,
) -> Result<bool, RelayFail> {
    c.body_sent = 0;
    let head_len = resp.head_len;
    Ok(match resp.body {
        BodyKind::None => {
            to.flush(c).await?;
            resp.keep_alive && conn.buf.len() == head_len
        }
        BodyKind::Length(n) => {
            let avail = conn.buf.len() - head_len;
            let take = (avail as u64).min(n) as usize;
            to.push(&mut c.out, &conn.buf[head_len..head_len + take]);
            c.body_sent = take as u64;
            let mut extra = avail > take;
            to.flush(c).await?;
            let mut rem = n - take as u64;
            if rem > 0 && to.buffer.is_none() && duplex.is_none() && splice::worth(rem) {
                rem = spliced(c, conn, rem, up_timeout, to.client_timeout).await?;
            }
            conn.widen(rem);
            while rem > 0 {
                pump(c, conn, duplex).await?;
                let got = read_upstream_more(conn, up_timeout).await?;
                let k = (got as u64).min(rem) as usize;
                extra |= got > k;
                to.pass(c, &mut conn.buf, k).await?;
                rem -= k as u64;
                c.body_sent += k as u64;
            }
            resp.keep_alive && !extra
        }
        BodyKind::Chunked => {
            let mut dec = ChunkedDecoder::new(u64::MAX);
            if to.trailers {
                dec.keep_trailers();
            }
            let mut start = head_len;
            let mut first = true;
            loop {
                let (out, sent) = (&mut c.out, &mut c.body_sent);
                let decoded = dec.decode(&conn.buf[start..], &mut |data: &[u8]| {
                    *sent += data.len() as u64;
                    to.push(out, data)
                });
                let p = match decoded {
                    Ok(p) => p,
                    Err(_) => {
                        conn.stats.error(UpstreamError::BadResponse);
                        if first || to.buffer.is_some() {
                            // nothing was written to the client yet: it gets a 502, not a cut
                            c.out.clear();
                            c.body_sent = 0;
                            return Err(RelayFail::BadUpstream("malformed chunked response body"));
                        }
                        return Err(RelayFail::Close);
                    }
                };
                first = false;
                if p.done {
                    let streaming = to.buffer.is_none();
                    let chunked = to.framing == OutFraming::Chunked;
                    if streaming && chunked {
                        chunked::write_last_chunk(&mut c.out, dec.trailers());
                    }
                    to.flush(c).await?;
                    if !streaming && to.buffer.is_none() && chunked {
                        // spilled by its last piece: the body still needs its last chunk
                        chunked::write_last_chunk(&mut c.out, dec.trailers());
                        write(c, Instant::now() + to.client_timeout).await?;
                    }
                    break resp.keep_alive && start + p.consumed == conn.buf.len();
                }
                to.flush(c).await?;
                start = 0;
                pump(c, conn, duplex).await?;
                conn.widen(u64::MAX);
                read_upstream_more(conn, up_timeout).await?;
            }
        }
        BodyKind::UntilClose => {
            to.push(&mut c.out, &conn.buf[head_len..]);
            c.body_sent = (conn.buf.len() - head_len) as u64;
            loop {
                to.flush(c).await?;
                conn.widen(u64::MAX);
                if read_upstream(conn, up_timeout).await? == 0 {
                    if to.buffer.is_none() && to.framing == OutFraming::Chunked {
                        c.out.extend_from_slice(chunked::LAST_CHUNK);
                        write(c, Instant::now() + to.client_timeout).await?;
                    }
                    break false;
                }
                to.push(&mut c.out, &conn.buf);
                c.body_sent += conn.buf.len() as u64;
            }
        }
    })
}

/// Moves the rest of a Content-Length body (`rem` bytes, nothing to see or re-frame) through a
/// pipe when both sides are plain TCP (`net/splice.rs`); returns what is left to copy: 0, or
/// `rem` when no pipe could be had or a side is TLS.
async fn spliced(
    c: &mut ClientConn,
    conn: &mut UpConn,
    rem: u64,
    up_timeout: std::time::Duration,
    client_timeout: std::time::Duration,
) -> Result<u64, RelayFail> {
    let (Stream::Plain(up), Stream::Plain(client)) = (&mut conn.stream, &mut c.stream) else {
        return Ok(rem);
    };
    let (stats, sent) = (&conn.stats, &mut c.body_sent);
    let moved = |k: u64| {
        stats.bytes_received.add(k);
        *sent += k;
    };
    match splice::relay_exact(up, client, rem, up_timeout, client_timeout, moved).await {
        Ok(()) => Ok(0),
        Err(SpliceFail::NoPipe) => Ok(rem),
        Err(SpliceFail::Upstream { timed_out }) => {
            conn.stats.error(match timed_out {
                true => UpstreamError::Timeout,
                false => UpstreamError::Reset,
            });
            Err(RelayFail::Close)
        }
        Err(SpliceFail::Client) => Err(RelayFail::Close),
    }
}

/// Sends a `Complete` buffered response to the client with a Content-Length (a transformed body
/// keeps its `ETag` only as a weak one).
pub(crate) async fn deliver(
    ctx: &Generation,
    c: &mut ClientConn,
    b: &mut Collected,
    how: &RelayPlan<'_>,
    keep: bool,
) -> Result<(), ()> {
    let (rid, strip) = (how.rid, how.strip);
    if b.transformed {
        let head = &b.head;
        if let Some(i) = b.resp.headers.iter().position(|h| {
            h.kind == HeaderKind::Other && h.name.get(head).eq_ignore_ascii_case(b"etag")
        }) {
            let v = b.resp.headers.remove(i).value.get(head);
            c.extra.extend_from_slice(b"etag: ");
            if !v.starts_with(b"W/") {
                c.extra.extend_from_slice(b"W/");
            }
            c.extra.extend_from_slice(v);
            c.extra.extend_from_slice(b"\r\n");
        }
    }
    let len = b.body.len();
    c.out.clear();
    let framing = OutFraming::Length(len as u64);
    write_client_response(
        &mut c.out, &b.head, &b.resp, rid, keep, framing, &c.extra, strip,
    );
    c.out.extend_from_slice(&b.body);
    c.body_sent = len as u64;
    write(c, Instant::now() + ctx.cfg.server.client_body_timeout).await
}

/// Writes and clears `c.out`.
async fn write(c: &mut ClientConn, deadline: Instant) -> Result<(), ()> {
    let r = c.stream.write_all(&mut c.out, deadline).await;
    c.out.clear();
    r.map_err(|_| ())
}
