//! A scripted HTTP/2 upstream for tests: the `h2` crate's server (hyperium) on a tokio runtime
//! of its own thread, h2c. Each stream's request (head, body, the connection it came on) is
//! recorded and answered by a handler that may respond, respond with trailers, or refuse the
//! stream (RST_STREAM REFUSED_STREAM; the handler is asked before the body is read, and again
//! after), and a request's `x-delay-ms` holds its answer back.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// What the upstream saw of one stream.
#[derive(Debug, Clone)]
pub struct SeenStream {
    pub connection: usize,
    pub method: String,
    pub uri: String,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl SeenStream {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }
}

/// How the handler answers a stream.
pub enum Answer {
    /// Status, headers, body, trailers.
    Respond(
        u16,
        Vec<(&'static str, String)>,
        Vec<u8>,
        Option<Vec<(&'static str, String)>>,
    ),
    /// RST_STREAM REFUSED_STREAM before reading anything.
    Refuse,
}

pub type H2Handler = Arc<dyn Fn(usize, &SeenStream) -> Answer + Send + Sync>;

pub struct H2Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<SeenStream>>>,
    pub connections: Arc<AtomicUsize>,
}

impl H2Upstream {
    /// `handler(n, stream)`: `n` counts streams across connections from 0. `max_streams`: the
    /// SETTINGS_MAX_CONCURRENT_STREAMS it announces.
    pub fn start(max_streams: u32, handler: H2Handler) -> H2Upstream {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (s2, c2) = (seen.clone(), connections.clone());
        let addr = super::tokio_peer::serve(move |listener| async move {
            let count = Arc::new(AtomicUsize::new(0));
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let conn_id = c2.fetch_add(1, Ordering::SeqCst);
                let (seen, handler, count) = (s2.clone(), handler.clone(), count.clone());
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::Builder::new()
                        .max_concurrent_streams(max_streams)
                        .handshake::<_, Bytes>(sock)
                        .await
                    else {
                        return;
                    };
                    while let Some(Ok((req, respond))) = conn.accept().await {
                        let n = count.fetch_add(1, Ordering::SeqCst);
                        let (seen, handler) = (seen.clone(), handler.clone());
                        tokio::spawn(serve_stream(conn_id, n, req, respond, seen, handler));
                    }
                });
            }
        });
        H2Upstream {
            addr,
            seen,
            connections,
        }
    }

    pub fn seen(&self) -> Vec<SeenStream> {
        self.seen.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn serve_stream(
    conn_id: usize,
    n: usize,
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    seen: Arc<Mutex<Vec<SeenStream>>>,
    handler: H2Handler,
) {
    let (parts, mut recv) = req.into_parts();
    let mut stream = SeenStream {
        connection: conn_id,
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers,
        body: Vec::new(),
    };
    // the handler may refuse before the body is read
    let refuse = matches!(handler(n, &stream), Answer::Refuse);
    if refuse {
        seen.lock().unwrap().push(stream);
        respond.send_reset(h2::Reason::REFUSED_STREAM);
        return;
    }
    while let Some(Ok(d)) = recv.data().await {
        let _ = recv.flow_control().release_capacity(d.len());
        stream.body.extend_from_slice(&d);
    }
    let delay = stream.header("x-delay-ms").and_then(|d| d.parse().ok());
    let answer = handler(n, &stream);
    seen.lock().unwrap().push(stream);
    if let Some(ms) = delay {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    let Answer::Respond(status, headers, body, trailers) = answer else {
        respond.send_reset(h2::Reason::REFUSED_STREAM);
        return;
    };
    let mut b = http::Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(k, v);
    }
    let end = body.is_empty() && trailers.is_none();
    let Ok(mut send) = respond.send_response(b.body(()).unwrap(), end) else {
        return;
    };
    if end {
        return;
    }
    if !body.is_empty() {
        let _ = send.send_data(Bytes::from(body), trailers.is_none());
    }
    if let Some(t) = trailers {
        let mut map = http::HeaderMap::new();
        for (k, v) in t {
            map.insert(k, v.parse().unwrap());
        }
        let _ = send.send_trailers(map);
    }
}
