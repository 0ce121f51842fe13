//! A real HTTP/2 client for tests: the `h2` crate (hyperium) on a monoio runtime of its own
//! (epoll driver, poll-io sockets), prior knowledge (h2c).

use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use h2::client::SendRequest;
use monoio::io::IntoPollIo;

/// A response as an h2 client saw it.
#[derive(Debug)]
pub struct H2Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl H2Response {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Opens one h2c connection to `addr` and runs `f` with its request handle on a fresh runtime.
pub fn with_h2<F, Fut, T>(addr: SocketAddr, f: F) -> T
where
    F: FnOnce(SendRequest<Bytes>) -> Fut,
    Fut: Future<Output = T>,
{
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("test runtime");
    rt.block_on(async move {
        let tcp = monoio::net::TcpStream::connect(addr)
            .await
            .expect("connect");
        let io = tcp.into_poll_io().expect("poll io");
        let (send, conn) = h2::client::handshake(io).await.expect("h2 handshake");
        monoio::spawn(async move {
            let _ = conn.await;
        });
        f(send).await
    })
}

/// Sends one request (`body` as DATA frames of at most `piece` bytes, no content-length unless
/// the request has one) and reads the whole response.
pub async fn h2_request(
    send: &mut SendRequest<Bytes>,
    req: http::Request<()>,
    body: &[u8],
    piece: usize,
) -> Result<H2Response, h2::Error> {
    let ready = send.clone().ready().await?;
    *send = ready;
    let end = body.is_empty();
    let (resp, mut stream) = send.send_request(req, end)?;
    if !end {
        let pieces: Vec<&[u8]> = body.chunks(piece.max(1)).collect();
        for (i, p) in pieces.iter().enumerate() {
            stream.reserve_capacity(p.len());
            let mut left = Bytes::copy_from_slice(p);
            while !left.is_empty() {
                let cap = match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
                    Some(c) => c?,
                    None => break,
                };
                let take = left.split_to(cap.min(left.len()));
                let last = i + 1 == pieces.len() && left.is_empty();
                stream.send_data(take, last)?;
            }
        }
    }
    let resp = resp.await?;
    let (parts, mut recv) = resp.into_parts();
    let mut out = Vec::new();
    while let Some(d) = recv.data().await {
        let d = d?;
        let _ = recv.flow_control().release_capacity(d.len());
        out.extend_from_slice(&d);
    }
    Ok(H2Response {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: out,
    })
}

/// `GET http://a.test{path}`.
pub fn h2_get(path: &str) -> http::Request<()> {
    http::Request::get(format!("http://a.test{path}"))
        .body(())
        .unwrap()
}
