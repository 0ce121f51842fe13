//! The one-shot HTTP/1.1 client (`coregate::client`) against tiny scripted std::net servers, under
//! both monoio drivers (io_uring skipped loudly where the kernel lacks it). Each server accepts one
//! connection, records the request bytes exactly as received, writes its scripted reply in the given
//! pieces, then either closes or holds the connection until the client closes it. Covers the three
//! body framings, a byte-exact POST, interim 1xx responses, timeouts, refused connections, size
//! limits and malformed responses.

use coregate::client::{self, ClientError, ClientOpts, Request, Url};
use std::future::Future;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Runs `f` on an io_uring runtime (skipped loudly when unavailable), then on an epoll runtime.
fn on_both_drivers<F, Fut>(f: F)
where
    F: Fn(&'static str) -> Fut,
    Fut: Future<Output = ()>,
{
    match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(mut rt) => rt.block_on(f("io_uring")),
        Err(e) => eprintln!("SKIP io_uring: {e}"),
    }
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("epoll runtime");
    rt.block_on(f("epoll"));
}

/// What the scripted server does after writing its reply.
#[derive(Clone, Copy)]
enum After {
    /// Close the connection (close-delimited bodies, truncation).
    Close,
    /// Keep it open until the client closes it: the client must not need EOF to finish.
    Hold,
}

/// A one-connection server on 127.0.0.1:0.
struct Server {
    addr: SocketAddr,
    thread: JoinHandle<Vec<u8>>,
}

impl Server {
    fn start(reply: Vec<Vec<u8>>, after: After) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let thread = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            // a client that never closes must not hang the test
            s.set_read_timeout(Some(Duration::from_secs(10))).ok();
            let request = read_request(&mut s);
            for piece in &reply {
                if s.write_all(piece).and_then(|_| s.flush()).is_err() {
                    break;
                }
            }
            match after {
                After::Close => {
                    let _ = s.shutdown(Shutdown::Write);
                }
                After::Hold => {
                    let mut sink = [0u8; 4096];
                    while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
                }
            }
            request
        });
        Server { addr, thread }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The request bytes the server received (head and Content-Length body), once the server is
    /// done. Polled from the runtime rather than joined: under io_uring the client's close is an
    /// operation the runtime submits when it next parks, so blocking here would hold the
    /// connection open.
    async fn received(self) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.thread.is_finished() {
            assert!(Instant::now() < deadline, "server thread did not finish");
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
        self.thread.join().expect("server thread")
    }
}

/// Reads one request head and its Content-Length body.
fn read_request(s: &mut impl Read) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return buf,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().expect("content-length"))
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    buf
}

fn opts() -> ClientOpts {
    ClientOpts {
        connect_timeout: Duration::from_secs(5),
        timeout: Duration::from_secs(5),
        max_body: 1024 * 1024,
        tls: None,
    }
}

fn pieces(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.to_vec()).collect()
}

async fn get(url: &str, o: &ClientOpts) -> Result<client::Response, ClientError> {
    client::get(url, &[], o).await
}

#[test]
fn get_with_content_length() {
    on_both_drivers(|driver| async move {
        let srv = Server::start(
            pieces(&[
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Multi: a\r\nx-multi: b\r\n\
                  Content-Length: 11\r\n\r\n",
                b"{\"keys\"",
                b":[]}",
            ]),
            After::Hold,
        );
        let url = Url::parse(&srv.url("/.well-known/jwks.json?v=2")).unwrap();
        let resp = client::send(&Request::get(&url), &opts())
            .await
            .unwrap_or_else(|e| panic!("{driver}: {e}"));
        assert_eq!(resp.status, 200, "{driver}");
        assert_eq!(resp.body, b"{\"keys\":[]}", "{driver}");
        assert_eq!(resp.header("content-type"), Some("application/json"));
        assert_eq!(
            resp.header("X-MULTI"),
            Some("a"),
            "first of repeated fields"
        );
        assert_eq!(resp.header("missing"), None);
        assert_eq!(resp.headers.len(), 4);
        let want = format!(
            "GET /.well-known/jwks.json?v=2 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            srv.addr
        );
        assert_eq!(
            String::from_utf8_lossy(&srv.received().await),
            want,
            "{driver}"
        );
    });
}

#[test]
fn chunked_body_with_extensions_and_trailers() {
    on_both_drivers(|driver| async move {
        let srv = Server::start(
            pieces(&[
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhel",
                b"lo\r\n6\r\n worl",
                b"d\r\n0\r\nX-Trailer: t\r\n\r\n",
            ]),
            After::Hold,
        );
        let resp = get(&srv.url("/c"), &opts())
            .await
            .unwrap_or_else(|e| panic!("{driver}: {e}"));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, b"hello world", "{driver}");
        assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
        srv.received().await;
    });
}

#[test]
fn close_delimited_body() {
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    on_both_drivers(|driver| {
        let big = big.clone();
        async move {
            let srv = Server::start(
                vec![
                    b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec(),
                    big.clone(),
                ],
                After::Close,
            );
            // exactly max_body is still fine
            let o = ClientOpts {
                max_body: big.len(),
                ..opts()
            };
            let resp = get(&srv.url("/"), &o)
                .await
                .unwrap_or_else(|e| panic!("{driver}: {e}"));
            assert_eq!(resp.status, 200);
            assert!(resp.body == big, "{driver}: body differs");
            srv.received().await;
        }
    });
}

#[test]
fn post_form_is_sent_byte_for_byte() {
    on_both_drivers(|driver| async move {
        let srv = Server::start(
            pieces(&[b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"active\":true}"]),
            After::Hold,
        );
        let url = Url::parse(&srv.url("/oauth2/introspect?realm=a%20b")).unwrap();
        let body = client::form_urlencode(&[
            ("token", "eyJ.a b/c+d="),
            ("token_type_hint", "access_token"),
        ]);
        let auth = client::basic_auth("gateway", "s3cret:&");
        let req = Request {
            method: "POST",
            url: &url,
            headers: &[
                ("Authorization", &auth),
                ("Accept", "application/json"),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            body: body.as_bytes(),
        };
        let resp = client::send(&req, &opts())
            .await
            .unwrap_or_else(|e| panic!("{driver}: {e}"));
        assert_eq!(
            (resp.status, &resp.body[..]),
            (200, &b"{\"active\":true}"[..])
        );
        let want_body = "token=eyJ.a+b%2Fc%2Bd%3D&token_type_hint=access_token";
        assert_eq!(body, want_body);
        let want = format!(
            "POST /oauth2/introspect?realm=a%20b HTTP/1.1\r\n\
             Host: {}\r\n\
             Authorization: Basic Z2F0ZXdheTpzM2NyZXQlM0ElMjY=\r\n\
             Accept: application/json\r\n\
             Content-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\
             Connection: close\r\n\
             \r\n\
             {want_body}",
            srv.addr,
            want_body.len()
        );
        assert_eq!(
            String::from_utf8_lossy(&srv.received().await),
            want,
            "{driver}"
        );
    });
}

#[test]
fn post_without_body_sends_content_length_zero() {
    on_both_drivers(|driver| async move {
        let srv = Server::start(pieces(&[b"HTTP/1.1 204 No Content\r\n\r\n"]), After::Hold);
        let url = Url::parse(&srv.url("/p")).unwrap();
        let req = Request {
            method: "POST",
            ..Request::get(&url)
        };
        let resp = client::send(&req, &opts())
            .await
            .unwrap_or_else(|e| panic!("{driver}: {e}"));
        assert_eq!((resp.status, resp.body.len()), (204, 0));
        let want = format!(
            "POST /p HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            srv.addr
        );
        assert_eq!(
            String::from_utf8_lossy(&srv.received().await),
            want,
            "{driver}"
        );
    });
}

#[test]
fn head_response_has_no_body() {
    on_both_drivers(|driver| async move {
        let srv = Server::start(
            pieces(&[b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"]),
            After::Hold,
        );
        let url = Url::parse(&srv.url("/h")).unwrap();
        let req = Request {
            method: "HEAD",
            ..Request::get(&url)
        };
        let resp = client::send(&req, &opts())
            .await
            .unwrap_or_else(|e| panic!("{driver}: {e}"));
        assert_eq!((resp.status, resp.body.len()), (200, 0));
        assert_eq!(resp.header("content-length"), Some("100"));
        srv.received().await;
    });
}

#[test]
fn interim_responses_are_skipped() {
    on_both_drivers(|driver| async move {
        let srv = Server::start(
            pieces(&[
                b"HTTP/1.1 100 Continue\r\n\r\n",
                b"HTTP/1.1 103 Early Hints\r\nLink: </k>; rel=preload\r\n\r\nHTTP/1.1 201 Created\r\n",
                b"Content-Length: 2\r\n\r\nok",
            ]),
            After::Hold,
        );
        let resp = get(&srv.url("/"), &opts())
            .await
            .unwrap_or_else(|e| panic!("{driver}: {e}"));
        assert_eq!(resp.status, 201, "{driver}");
        assert_eq!(resp.body, b"ok");
        assert_eq!(resp.header("link"), None, "interim headers are not kept");
        srv.received().await;
    });
}

#[test]
fn silent_server_times_out() {
    on_both_drivers(|driver| async move {
        let srv = Server::start(Vec::new(), After::Hold);
        let timeout = Duration::from_millis(300);
        let o = ClientOpts { timeout, ..opts() };
        let start = Instant::now();
        let err = get(&srv.url("/"), &o).await.expect_err(driver);
        let took = start.elapsed();
        assert!(matches!(err, ClientError::Timeout), "{driver}: {err}");
        assert!(took >= timeout, "{driver}: gave up early after {took:?}");
        assert!(
            took < timeout + Duration::from_secs(2),
            "{driver}: took {took:?}"
        );
        // the client closed the connection, so the holding server finishes
        srv.received().await;
    });
}

#[test]
fn refused_connection_is_a_connect_error() {
    on_both_drivers(|driver| async move {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = get(&format!("http://127.0.0.1:{port}/"), &opts())
            .await
            .expect_err(driver);
        match &err {
            ClientError::Connect(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused),
            other => panic!("{driver}: expected Connect, got {other}"),
        }
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
    });
}

#[test]
fn bodies_over_max_body_are_refused() {
    let cases: [(&str, Vec<Vec<u8>>, After); 3] = [
        (
            "content-length",
            pieces(&[b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n"]),
            After::Hold,
        ),
        (
            "chunked",
            pieces(&[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"]),
            After::Hold,
        ),
        (
            "close-delimited",
            pieces(&[b"HTTP/1.1 200 OK\r\n\r\nhello", b" world"]),
            After::Close,
        ),
    ];
    on_both_drivers(|driver| {
        let cases = cases.clone();
        async move {
            let o = ClientOpts {
                max_body: 10,
                ..opts()
            };
            for (name, reply, after) in cases {
                let srv = Server::start(reply, after);
                let err = get(&srv.url("/"), &o).await.expect_err(name);
                assert!(
                    matches!(err, ClientError::TooLarge),
                    "{driver} {name}: {err}"
                );
                srv.received().await;
            }
        }
    });
}

#[test]
fn malformed_responses_are_bad_response() {
    let cases: [(&str, &[u8], After); 8] = [
        (
            "non-digit status",
            b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
            After::Hold,
        ),
        ("not HTTP", b"SSH-2.0-OpenSSH_9.6\r\n\r\n", After::Hold),
        ("bad version", b"HTTP/2.0 200 OK\r\n\r\n", After::Hold),
        (
            "bad Content-Length",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            After::Hold,
        ),
        (
            "bad chunk size",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            After::Hold,
        ),
        ("nothing at all", b"", After::Close),
        (
            "truncated head",
            b"HTTP/1.1 200 OK\r\nContent-",
            After::Close,
        ),
        (
            "truncated body",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            After::Close,
        ),
    ];
    on_both_drivers(|driver| async move {
        for (name, reply, after) in cases {
            let srv = Server::start(vec![reply.to_vec()], after);
            let err = get(&srv.url("/"), &opts()).await.expect_err(name);
            assert!(
                matches!(err, ClientError::BadResponse(_)),
                "{driver} {name}: {err}"
            );
            let msg = err.to_string();
            assert!(!msg.contains('\n'), "{name}: one-line message: {msg:?}");
            srv.received().await;
        }
    });
}

#[test]
fn unsupported_and_malformed_urls_are_bad_url() {
    on_both_drivers(|driver| async move {
        let err = get("ftp://idp.example.com/jwks", &opts())
            .await
            .expect_err(driver);
        match &err {
            ClientError::BadUrl(m) => assert!(m.contains("unsupported URL scheme"), "{m}"),
            other => panic!("{driver}: expected BadUrl, got {other}"),
        }
        assert!(err.to_string().starts_with("bad URL: "), "{err}");
        let err = get("http://h:99999/", &opts()).await.expect_err(driver);
        assert!(matches!(err, ClientError::BadUrl(_)), "{err}");
    });
}

#[test]
fn header_injection_is_refused_before_connecting() {
    on_both_drivers(|driver| async move {
        // nothing listens on port 9 of this URL's host: a request that got that far would fail
        // with Connect instead
        let url = Url::parse("http://127.0.0.1:9/").unwrap();
        let req = Request {
            headers: &[("X-A", "1\r\nX-Injected: 1")],
            ..Request::get(&url)
        };
        let err = client::send(&req, &opts()).await.expect_err(driver);
        assert!(matches!(err, ClientError::BadRequest(_)), "{driver}: {err}");
    });
}
