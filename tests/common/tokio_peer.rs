//! Test peers built on tokio (tonic, the `h2` crate's server): a runtime on a thread of its own
//! around a listener on 127.0.0.1:0.

/// Runs `serve` with a listener on 127.0.0.1:0, on a tokio runtime in a thread of its own (for
/// test peers built on tokio: tonic, the `h2` crate's server); returns the listener's address.
pub fn serve<F, Fut>(serve: F) -> std::net::SocketAddr
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            serve(listener).await
        });
    });
    rx.recv().expect("test server address")
}
