//! `serve` and `relay` over real sockets: the routes, framing, keep-alive and pipelining of the
//! benchmark backend, its deterministic stall, the relay's transparency and close propagation, and
//! the binary's listening line, signal exit and bad-address exit. Clients are plain std threads
//! with read timeouts; every wait has a deadline.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coregate_load::relay::{self, RelayArgs};
use coregate_load::serve::{self, ServeArgs, ServeHandle};

const TIMEOUT: Duration = Duration::from_secs(10);

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn serve_with(f: impl FnOnce(&mut ServeArgs)) -> ServeHandle {
    let mut args = ServeArgs {
        listen: any_port(),
        ..ServeArgs::default()
    };
    f(&mut args);
    serve::start(&args).expect("serve starts")
}

#[derive(Debug, Clone, PartialEq)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The response exactly as received.
    raw: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One client connection with a carry-over buffer (pipelined responses arrive together).
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write request");
    }

    /// Reads more bytes into the buffer; false on EOF.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16384];
        let n = self.stream.read(&mut chunk).expect("read (timed out?)");
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// Reads one response (Content-Length framed, or none for 204/304).
    fn recv(&mut self) -> Resp {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut r = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) = r.parse(&self.buf).expect("valid response") {
                let status = r.code.unwrap();
                let headers: Vec<(String, String)> = r
                    .headers
                    .iter()
                    .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into()))
                    .collect();
                let len = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| v.parse::<usize>().unwrap());
                while self.buf.len() < head + len {
                    assert!(self.fill(), "EOF inside a response body");
                }
                let raw: Vec<u8> = self.buf.drain(..head + len).collect();
                let body = raw[head..].to_vec();
                return Resp {
                    status,
                    headers,
                    body,
                    raw,
                };
            }
            assert!(self.fill(), "EOF before a response");
        }
    }

    fn get(&mut self, path: &str) -> Resp {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        self.recv()
    }

    /// True once the peer has closed (EOF or reset) with nothing more to read.
    fn closed(&mut self) -> bool {
        let mut b = [0u8; 64];
        match self.stream.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

#[test]
fn fixed_body_keep_alive_over_100_requests() {
    let srv = serve_with(|_| {});
    let mut c = Client::connect(srv.addr);
    for _ in 0..100 {
        let r = c.get("/anything?x=1");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("content-length"), Some("60"));
        assert_eq!(r.header("connection"), None);
        assert_eq!(r.body, serve::fixed_body(60));
    }
    assert!(r#"{"data":"x"}"#.as_bytes() == serve::fixed_body(12).as_slice());
    srv.stop();

    let srv = serve_with(|a| a.body_size = 100_000);
    let mut c = Client::connect(srv.addr);
    assert_eq!(c.get("/").body.len(), 100_000);
    assert_eq!(c.get("/").body.len(), 100_000);
    srv.stop();
}

#[test]
fn status_codes_and_head() {
    let srv = serve_with(|_| {});
    let mut c = Client::connect(srv.addr);
    let r = c.get("/status/503");
    assert_eq!((r.status, r.body.len()), (503, 60));
    let r = c.get("/status/204");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("content-length"), None);
    assert!(r.body.is_empty());
    assert_eq!(c.get("/status/404").status, 404);
    assert_eq!(c.get("/status/150").status, 400);
    assert_eq!(c.get("/status/abc").status, 400);
    c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET /status/201 HTTP/1.1\r\n\r\n");
    while !c.buf.windows(4).any(|w| w == b"\r\n\r\n") {
        assert!(c.fill());
    }
    let end = c.buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(c.buf.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(String::from_utf8_lossy(&c.buf[..end]).contains("content-length: 60"));
    c.buf.drain(..end);
    assert_eq!(c.recv().status, 201);
    srv.stop();
}

#[test]
fn delay_route_and_default_delay() {
    let srv = serve_with(|_| {});
    let mut c = Client::connect(srv.addr);
    let t = Instant::now();
    assert_eq!(c.get("/delay/200").status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    srv.stop();

    let srv = serve_with(|a| a.delay = 100);
    let mut c = Client::connect(srv.addr);
    let t = Instant::now();
    c.get("/");
    assert!(
        t.elapsed() >= Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
    srv.stop();
}

#[test]
fn echo_content_length_and_chunked() {
    let srv = serve_with(|_| {});
    let mut c = Client::connect(srv.addr);
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world");
    let r = c.recv();
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, b"hello world".as_slice())
    );
    assert_eq!(r.header("content-type"), Some("application/json"));

    // Chunked, split across writes, with an extension and a trailer.
    c.send(b"PUT /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n");
    c.send(b"6\r\n chunk\r\n0\r\nX-Trailer: 1\r\n\r\n");
    let r = c.recv();
    assert_eq!(r.body, b"hello chunk");
    assert_eq!(r.header("content-length"), Some("11"));

    // A body larger than the read buffer, and a POST elsewhere is just the fixed response.
    let big = vec![b'z'; 200_000];
    c.send(
        format!(
            "POST /echo HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            big.len()
        )
        .as_bytes(),
    );
    c.send(&big);
    assert_eq!(c.recv().body, big);
    c.send(b"POST /other HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(c.recv().body, serve::fixed_body(60));
    assert_eq!(c.get("/status/202").status, 202);
    srv.stop();
}

#[test]
fn pipelined_requests_answered_in_order() {
    let srv = serve_with(|_| {});
    let mut c = Client::connect(srv.addr);
    c.send(
        b"GET /status/201 HTTP/1.1\r\n\r\nPOST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
          GET /status/503 HTTP/1.1\r\n\r\n",
    );
    let r1 = c.recv();
    let r2 = c.recv();
    let r3 = c.recv();
    assert_eq!((r1.status, r2.status, r3.status), (201, 200, 503));
    assert_eq!(r2.body, b"abc");
    srv.stop();
}

#[test]
fn connection_close_and_http10() {
    let srv = serve_with(|_| {});
    let mut c = Client::connect(srv.addr);
    c.send(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(c.recv().header("connection"), Some("close"));
    assert!(c.closed());

    let mut c = Client::connect(srv.addr);
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(c.recv().header("connection"), Some("close"));
    assert!(c.closed());

    let mut c = Client::connect(srv.addr);
    c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.recv().header("connection"), Some("keep-alive"));
    assert_eq!(c.get("/").status, 200);

    let mut c = Client::connect(srv.addr);
    c.send(b"GARBAGE\r\n\r\n");
    assert_eq!(c.recv().status, 400);
    assert!(c.closed());
    srv.stop();
}

#[test]
fn stall_holds_the_request_after_n_responses_once() {
    let srv = serve_with(|a| {
        a.stall_after = Some(5);
        a.stall_ms = Some(500);
    });
    let mut c = Client::connect(srv.addr);
    for _ in 0..5 {
        let t = Instant::now();
        c.get("/");
        assert!(t.elapsed() < Duration::from_millis(200));
    }
    let t = Instant::now();
    c.get("/");
    assert!(
        t.elapsed() >= Duration::from_millis(450),
        "6th: {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    c.get("/");
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "7th: {:?}",
        t.elapsed()
    );
    srv.stop();
}

#[test]
fn workers_share_the_port_and_stop_closes_connections() {
    let srv = serve_with(|a| a.workers = 2);
    let mut clients: Vec<Client> = (0..8).map(|_| Client::connect(srv.addr)).collect();
    for c in &mut clients {
        assert_eq!(c.get("/").status, 200);
    }
    srv.stop();
    for c in &mut clients {
        assert!(c.closed());
    }
}

#[test]
fn relay_is_transparent_and_propagates_close() {
    let srv = serve_with(|_| {});
    let rel = relay::start(&RelayArgs {
        listen: any_port(),
        ..RelayArgs::new(srv.addr)
    })
    .expect("relay starts");
    let mut direct = Client::connect(srv.addr);
    let mut via = Client::connect(rel.addr);
    for i in 0..100 {
        let path = ["/", "/status/503", "/status/204"][i % 3];
        assert_eq!(via.get(path).raw, direct.get(path).raw);
    }
    via.send(b"POST /echo HTTP/1.1\r\nContent-Length: 4\r\n\r\nping");
    assert_eq!(via.recv().body, b"ping");
    // The upstream closes after this one: the relay must close the client side too.
    via.send(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(via.recv().status, 200);
    assert!(via.closed());
    rel.stop();
    srv.stop();
}

/// Spawns the binary with stderr piped; returns the child and its first stderr line.
fn spawn_bin(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coregate-load"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn coregate-load");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stderr).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(TIMEOUT).expect("a stderr line in time");
    (child, line)
}

fn wait_exit(child: &mut Child) -> i32 {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().expect("exited normally");
        }
        assert!(Instant::now() < deadline, "did not exit in time");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn binary_prints_listening_line_answers_and_exits_0_on_sigterm() {
    let (mut child, line) = spawn_bin(&["serve", "--listen", "127.0.0.1:0"]);
    let addr = line
        .trim()
        .strip_prefix("coregate-load serve: listening on ")
        .unwrap_or_else(|| panic!("unexpected line {line:?}"));
    let mut c = Client::connect(addr.parse().unwrap());
    assert_eq!(c.get("/").body, serve::fixed_body(60));
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    assert_eq!(wait_exit(&mut child), 0);
}

#[test]
fn binary_exits_2_when_the_address_is_in_use() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    for cmd in [
        vec!["serve", "--listen", &addr],
        vec!["relay", "--listen", &addr, "--upstream", "127.0.0.1:9"],
    ] {
        let (mut child, line) = spawn_bin(&cmd);
        assert_eq!(wait_exit(&mut child), 2);
        assert!(line.contains("cannot listen on"), "{line:?}");
    }
}
