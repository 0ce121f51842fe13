//! A real gRPC server and client for tests: tonic (on a tokio runtime of its own thread), with a
//! small `test.Echo` service declared by hand (prost messages, tonic's server and client
//! machinery, no protoc): unary, failing, slow, server-streaming, client-streaming and
//! bidirectional methods.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tonic::codegen::{http, BoxFuture, Context, Poll, Service};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

/// The one message type of `test.Echo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Msg {
    #[prost(string, tag = "1")]
    pub text: String,
    #[prost(uint32, tag = "2")]
    pub n: u32,
}

pub fn msg(text: &str, n: u32) -> Msg {
    Msg {
        text: text.to_owned(),
        n,
    }
}

/// `test.Echo`: what the methods do is documented on [`EchoService::call`].
#[derive(Clone, Default)]
pub struct EchoService {
    /// Connections the server accepted.
    pub connections: Arc<AtomicUsize>,
}

type MsgStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<Msg, Status>> + Send>>;

struct Unary;
impl Service<Request<Msg>> for Unary {
    type Response = Response<Msg>;
    type Error = Status;
    type Future = BoxFuture<Response<Msg>, Status>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: Request<Msg>) -> Self::Future {
        Box::pin(async move {
            // a request header, to show metadata reached the server
            let tag = req
                .metadata()
                .get("x-tag")
                .map(|v| format!("+{}", v.to_str().unwrap_or("")));
            let m = req.into_inner();
            match m.text.as_str() {
                "fail" => Err(Status::not_found("no such thing: caf\u{e9} 100%")),
                "slow" => {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    Ok(Response::new(m))
                }
                _ => {
                    let mut r = Response::new(Msg {
                        text: format!("echo:{}{}", m.text, tag.unwrap_or_default()),
                        n: m.n + 1,
                    });
                    r.metadata_mut()
                        .insert("x-upstream", "tonic".parse().unwrap());
                    Ok(r)
                }
            }
        })
    }
}

struct Count;
impl Service<Request<Msg>> for Count {
    type Response = Response<MsgStream>;
    type Error = Status;
    type Future = BoxFuture<Response<MsgStream>, Status>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: Request<Msg>) -> Self::Future {
        let m = req.into_inner();
        Box::pin(async move {
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            tokio::spawn(async move {
                for i in 0..m.n {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    if tx.send(Ok(msg(&m.text, i))).await.is_err() {
                        return;
                    }
                }
            });
            let s: MsgStream = Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx));
            Ok(Response::new(s))
        })
    }
}

struct Sum;
impl Service<Request<Streaming<Msg>>> for Sum {
    type Response = Response<Msg>;
    type Error = Status;
    type Future = BoxFuture<Response<Msg>, Status>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: Request<Streaming<Msg>>) -> Self::Future {
        Box::pin(async move {
            let mut s = req.into_inner();
            let (mut total, mut count) = (0u32, 0u32);
            while let Some(m) = s.message().await? {
                total += m.n;
                count += 1;
            }
            Ok(Response::new(msg(&format!("{count} messages"), total)))
        })
    }
}

struct Chat;
impl Service<Request<Streaming<Msg>>> for Chat {
    type Response = Response<MsgStream>;
    type Error = Status;
    type Future = BoxFuture<Response<MsgStream>, Status>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: Request<Streaming<Msg>>) -> Self::Future {
        Box::pin(async move {
            let mut s = req.into_inner();
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            tokio::spawn(async move {
                while let Ok(Some(m)) = s.message().await {
                    let reply = msg(&format!("re:{}", m.text), m.n * 2);
                    if tx.send(Ok(reply)).await.is_err() {
                        return;
                    }
                }
            });
            let s: MsgStream = Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx));
            Ok(Response::new(s))
        })
    }
}

impl Service<http::Request<tonic::body::Body>> for EchoService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    /// `Unary` echoes (with the `x-tag` metadata; `text` "fail": NOT_FOUND with a non-ASCII message; "slow": answers after
    /// 3 s), `Count` streams `n` messages 300 ms apart, `Sum` adds up a client stream, `Chat`
    /// answers each message of a bidirectional stream as it comes. Anything else: UNIMPLEMENTED.
    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let codec = ProstCodec::<Msg, Msg>::default();
            let mut grpc = tonic::server::Grpc::new(codec);
            Ok(match req.uri().path() {
                "/test.Echo/Unary" => grpc.unary(Unary, req).await,
                "/test.Echo/Count" => grpc.server_streaming(Count, req).await,
                "/test.Echo/Sum" => grpc.client_streaming(Sum, req).await,
                "/test.Echo/Chat" => grpc.streaming(Chat, req).await,
                _ => Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

impl tonic::server::NamedService for EchoService {
    const NAME: &'static str = "test.Echo";
}

/// A running tonic server (h2c) for `test.Echo`; stops with the test process.
pub struct GrpcUpstream {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
}

impl GrpcUpstream {
    pub fn start() -> GrpcUpstream {
        let svc = EchoService::default();
        let connections = svc.connections.clone();
        let counted = connections.clone();
        let addr = super::tokio_peer::serve(move |listener| async move {
            let incoming = async_stream(listener, counted);
            let _ = tonic::transport::Server::builder()
                .serve_with_incoming(svc, incoming)
                .await;
        });
        GrpcUpstream { addr, connections }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Accepted sockets as the stream tonic serves, counting them.
fn async_stream(
    listener: tokio::net::TcpListener,
    counted: Arc<AtomicUsize>,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let got = listener.accept().await.map(|(s, _)| s);
            counted.fetch_add(1, Ordering::SeqCst);
            if tx.send(got).await.is_err() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Runs `f` with a tonic client connected (h2c) to `addr`, on a fresh tokio runtime.
pub fn with_client<F, Fut, T>(addr: SocketAddr, f: F) -> T
where
    F: FnOnce(tonic::client::Grpc<tonic::transport::Channel>) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(async move {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .expect("grpc connect");
        f(tonic::client::Grpc::new(channel)).await
    })
}

fn path(method: &str) -> http::uri::PathAndQuery {
    format!("/test.Echo/{method}").parse().unwrap()
}

pub fn codec() -> ProstCodec<Msg, Msg> {
    ProstCodec::default()
}

/// Calls a unary method.
pub async fn unary(
    g: &mut tonic::client::Grpc<tonic::transport::Channel>,
    method: &str,
    req: Request<Msg>,
) -> Result<Response<Msg>, Status> {
    g.ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    g.unary(req, path(method), codec()).await
}

/// Calls a server-streaming method.
pub async fn server_stream(
    g: &mut tonic::client::Grpc<tonic::transport::Channel>,
    method: &str,
    req: Msg,
) -> Result<Streaming<Msg>, Status> {
    g.ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    Ok(g.server_streaming(Request::new(req), path(method), codec())
        .await?
        .into_inner())
}

/// Calls a client-streaming method with `msgs`.
pub async fn client_stream(
    g: &mut tonic::client::Grpc<tonic::transport::Channel>,
    method: &str,
    msgs: Vec<Msg>,
) -> Result<Msg, Status> {
    g.ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    let s = tokio_stream::iter(msgs);
    Ok(g.client_streaming(Request::new(s), path(method), codec())
        .await?
        .into_inner())
}

/// Calls a bidirectional method with a request stream fed by the returned sender.
pub async fn bidi_open(
    g: &mut tonic::client::Grpc<tonic::transport::Channel>,
    method: &str,
) -> Result<(tokio::sync::mpsc::Sender<Msg>, Streaming<Msg>), Status> {
    g.ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let s = tokio_stream::wrappers::ReceiverStream::new(rx);
    let replies = g
        .streaming(Request::new(s), path(method), codec())
        .await?
        .into_inner();
    Ok((tx, replies))
}

/// Calls a bidirectional method: `msgs` go out, the replies come back as a stream.
pub async fn bidi(
    g: &mut tonic::client::Grpc<tonic::transport::Channel>,
    method: &str,
    msgs: Vec<Msg>,
) -> Result<Streaming<Msg>, Status> {
    g.ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    let s = tokio_stream::iter(msgs);
    Ok(g.streaming(Request::new(s), path(method), codec())
        .await?
        .into_inner())
}
