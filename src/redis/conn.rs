//! One Redis connection: its socket, a reusable read buffer and a reusable write buffer.
//!
//! Owns: connecting (bounded by `connect_timeout`), the AUTH/SELECT handshake, and one request's
//! round trip (write the encoded command, read until one whole reply is parsed). IO is `net`'s
//! timed rent-style IO over a [`Stream`] (plain TCP today): each buffer moves into the operation
//! and is put back when it completes, and every read and write is bounded by the round trip's
//! deadline, which the caller passes in. When the deadline fires the in-flight operation is
//! cancelled and keeps the moved buffer (the slot gets an empty one), and the caller drops the
//! connection.
//!
//! Errors: any failure leaves the connection unusable (the reply stream may be out of sync), so the
//! caller drops it. [`Failed::before_reply`] says no byte of the reply arrived, which is what lets
//! the client retry a reused connection once on a fresh one.

use std::io;
use std::net::SocketAddr;

use monoio::net::TcpStream;
use monoio::time::Instant;

use crate::net::{IoFail, Stream};

use super::resp::{self, Reply, Value};
use super::{RedisError, RedisOpts};

/// Initial read and write buffer size: Redis replies to our commands are small.
const BUF: usize = 4 * 1024;
/// A buffer that grew past this for a large value is replaced before the connection is pooled, so
/// idle connections do not pin memory.
const MAX_POOLED_BUF: usize = 64 * 1024;

/// Why a round trip failed; the connection must be dropped.
#[derive(Debug)]
pub(crate) struct Failed {
    pub err: RedisError,
    /// Nothing of the reply arrived (the write failed, or the peer closed or reset first).
    pub before_reply: bool,
}

pub(crate) struct Conn {
    stream: Stream,
    /// Bytes read; `rbuf[rpos..]` is not yet parsed.
    rbuf: Vec<u8>,
    rpos: usize,
    /// The encoded request; callers fill it after `clear`.
    pub wbuf: Vec<u8>,
}

impl Conn {
    /// Connects within `connect_timeout` and runs the AUTH/SELECT handshake (within `op_timeout`)
    /// when configured.
    pub async fn open(addr: SocketAddr, opts: &RedisOpts) -> Result<Conn, RedisError> {
        let stream = match monoio::time::timeout(
            opts.connect_timeout,
            TcpStream::connect_addr(addr),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(RedisError::Connect(e)),
            Err(_) => {
                return Err(RedisError::Connect(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connect timed out",
                )))
            }
        };
        // Requests are single small writes; never wait for Nagle.
        let _ = stream.set_nodelay(true);
        let mut conn = Conn {
            stream: Stream::Plain(stream),
            rbuf: Vec::with_capacity(BUF),
            rpos: 0,
            wbuf: Vec::with_capacity(BUF),
        };
        conn.handshake(opts).await?;
        Ok(conn)
    }

    /// AUTH then SELECT, pipelined in one write. A separate round trip from the first command, so
    /// a failed SELECT can never let that command run against database 0.
    async fn handshake(&mut self, opts: &RedisOpts) -> Result<(), RedisError> {
        let mut steps: [Option<&'static str>; 2] = [None, None];
        self.wbuf.clear();
        if let Some(pw) = &opts.password {
            resp::command(&mut self.wbuf, &[b"AUTH", pw.as_bytes()]);
            steps[0] = Some("AUTH");
        }
        if let Some(db) = opts.db {
            resp::array_header(&mut self.wbuf, 2);
            resp::bulk(&mut self.wbuf, b"SELECT");
            resp::bulk_u64(&mut self.wbuf, u64::from(db));
            steps[1] = Some("SELECT");
        }
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + opts.op_timeout;
        self.send(deadline).await.map_err(|f| f.err)?;
        let mut first_err = None;
        for step in steps.into_iter().flatten() {
            match self.read_reply(deadline).await.map_err(|f| f.err)? {
                Ok(Value::Simple(s)) if s == "OK" => {}
                Ok(_) => {
                    return Err(RedisError::Protocol("unexpected handshake reply".into()));
                }
                Err(msg) => {
                    first_err.get_or_insert(RedisError::Server(format!("{step}: {msg}")));
                }
            }
        }
        match first_err {
            None => Ok(()),
            Some(server_err) => Err(server_err),
        }
    }

    /// Sends `wbuf` and reads exactly one reply by `deadline`; anything after it is a protocol
    /// error.
    pub async fn round_trip(&mut self, deadline: Instant) -> Result<Reply, Failed> {
        self.send(deadline).await?;
        let reply = self.read_reply(deadline).await?;
        if self.rpos != self.rbuf.len() {
            return Err(fail(RedisError::Protocol(
                "unexpected bytes after reply".into(),
            )));
        }
        Ok(reply)
    }

    /// Readies the connection for the pool: empties the read buffer and gives back memory a large
    /// value made it grow.
    pub fn recycle(&mut self) {
        self.rbuf.clear();
        self.rpos = 0;
        if self.rbuf.capacity() > MAX_POOLED_BUF {
            self.rbuf = Vec::with_capacity(BUF);
        }
        if self.wbuf.capacity() > MAX_POOLED_BUF {
            self.wbuf = Vec::with_capacity(BUF);
        }
    }

    /// Writes `wbuf`. A failed write is `before_reply` (the server answered nothing); a timeout is
    /// not, since the server may have the command and still be working on it.
    async fn send(&mut self, deadline: Instant) -> Result<(), Failed> {
        match self.stream.write_all(&mut self.wbuf, deadline).await {
            Ok(()) => Ok(()),
            Err(e) => Err(Failed {
                err: io_error(e),
                before_reply: e == IoFail::Error,
            }),
        }
    }

    /// Parses one reply from the read buffer, reading more until it is complete or `deadline`.
    async fn read_reply(&mut self, deadline: Instant) -> Result<Reply, Failed> {
        loop {
            match resp::parse(&self.rbuf[self.rpos..]) {
                Ok(Some((reply, used))) => {
                    self.rpos += used;
                    if self.rpos == self.rbuf.len() {
                        self.rbuf.clear();
                        self.rpos = 0;
                    }
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(why) => return Err(fail(RedisError::Protocol(why.into()))),
            }
            let before_reply = self.rpos == self.rbuf.len();
            match self.fill(deadline).await {
                Ok(0) => {
                    return Err(Failed {
                        err: RedisError::Io(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "redis closed the connection",
                        )),
                        before_reply,
                    })
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(Failed {
                        err: io_error(e),
                        // a timeout is no sign the server is gone: never retried
                        before_reply: before_reply && e == IoFail::Error,
                    });
                }
            }
        }
    }

    /// One read into the spare capacity of `rbuf`, growing it when full. `Ok(0)` is end of stream.
    async fn fill(&mut self, deadline: Instant) -> Result<usize, IoFail> {
        if self.rpos > 0 && self.rbuf.len() == self.rbuf.capacity() {
            // Slide the unparsed tail to the front before growing.
            self.rbuf.drain(..self.rpos);
            self.rpos = 0;
        }
        self.stream.read_some(&mut self.rbuf, deadline).await
    }
}

/// A failed timed read or write as the caller sees it.
fn io_error(e: IoFail) -> RedisError {
    match e {
        IoFail::Timeout => RedisError::Timeout,
        IoFail::Error => RedisError::Io(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "connection reset or socket error",
        )),
    }
}

fn fail(err: RedisError) -> Failed {
    Failed {
        err,
        before_reply: false,
    }
}
