//! `coregate::redis::RedisClient` against a real redis-server (and, for failure paths a real server
//! cannot produce on demand, scripted fake servers), every test under both the epoll and io_uring
//! drivers.

mod common;

use common::redis::RedisServer;
use coregate::redis::{script_sha1_hex, RedisClient, RedisError, RedisOpts, Value};
use std::cell::RefCell;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Generous: these bound hangs, they do not measure speed.
const OP_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

fn opts() -> RedisOpts {
    RedisOpts {
        connect_timeout: CONNECT_TIMEOUT,
        op_timeout: OP_TIMEOUT,
        db: None,
        password: None,
        max_idle: 8,
    }
}

fn client(addr: SocketAddr) -> RedisClient {
    RedisClient::new(addr, opts())
}

/// Runs `body` under epoll, then under io_uring (skipped loudly when the host lacks io_uring).
/// `body` gets the driver name, to keep keys apart when both runs share one server.
fn on_both_drivers<F, Fut>(body: F)
where
    F: Fn(&'static str) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("epoll runtime");
    rt.block_on(body("epoll"));
    match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(mut rt) => rt.block_on(body("io_uring")),
        Err(e) => eprintln!("SKIPPED io_uring run: io_uring unavailable on this host: {e}"),
    }
}

fn k(driver: &str, name: &str) -> Vec<u8> {
    format!("{driver}:{name}").into_bytes()
}

#[test]
fn basic_commands() {
    let server = RedisServer::start();
    on_both_drivers(|d| {
        let server = &server;
        async move {
            let c = client(server.addr);
            let key = k(d, "greeting");
            assert_eq!(c.get(&key).await.unwrap(), None);
            c.set_ex(&key, b"hello", 100).await.unwrap();
            assert_eq!(c.get(&key).await.unwrap(), Some(b"hello".to_vec()));
            let ttl: i64 = server
                .cmd(&["TTL", &format!("{d}:greeting")])
                .parse()
                .unwrap();
            assert!((1..=100).contains(&ttl), "ttl {ttl}");
            assert_eq!(c.del(&key).await.unwrap(), 1);
            assert_eq!(c.del(&key).await.unwrap(), 0);
            assert_eq!(c.get(&key).await.unwrap(), None);

            let counter = k(d, "counter");
            assert_eq!(c.incr_by(&counter, 5).await.unwrap(), 5);
            assert_eq!(c.incr_by(&counter, -7).await.unwrap(), -2);
            assert!(c.expire(&counter, 50).await.unwrap());
            assert!(!c.expire(&k(d, "missing"), 50).await.unwrap());

            // Binary-safe keys and values.
            let bin_key = k(d, "bin\r\n\0key");
            let bin_val = b"\0\r\n$-1\r\n*3\xff".to_vec();
            c.set_ex(&bin_key, &bin_val, 60).await.unwrap();
            assert_eq!(c.get(&bin_key).await.unwrap(), Some(bin_val));

            assert_eq!(
                c.cmd(&[b"PING"]).await.unwrap(),
                Value::Simple("PONG".into())
            );
            assert_eq!(
                c.cmd(&[b"ECHO", b"x"]).await.unwrap(),
                Value::Bulk(b"x".to_vec())
            );

            // A server error is not an outage, and the connection stays usable.
            c.set_ex(&key, b"not a number", 60).await.unwrap();
            match c.incr_by(&key, 1).await {
                Err(e @ RedisError::Server(_)) => assert!(!e.is_unavailable()),
                other => panic!("INCRBY on a string: {other:?}"),
            }
            assert!(matches!(
                c.set_ex(&key, b"v", 0).await,
                Err(RedisError::Server(_))
            ));
            assert!(matches!(c.cmd(&[]).await, Err(RedisError::Protocol(_))));
            assert_eq!(c.idle_connections(), 1, "one connection, reused throughout");
            assert_eq!(c.get(&key).await.unwrap(), Some(b"not a number".to_vec()));
        }
    });
}

#[test]
fn eval_cached_falls_back_on_noscript() {
    let server = RedisServer::start();
    let script = "return {KEYS[1], ARGV[1], tonumber(ARGV[2]) + 1}";
    let sha = script_sha1_hex(script);
    assert_eq!(server.cmd(&["SCRIPT", "LOAD", script]), sha);
    on_both_drivers(|d| {
        let (server, sha) = (&server, sha.as_str());
        async move {
            assert_eq!(server.cmd(&["SCRIPT", "FLUSH"]), "OK");
            assert_eq!(server.cmd(&["CONFIG", "RESETSTAT"]), "OK");
            assert_eq!(server.cmd(&["SCRIPT", "EXISTS", sha]), "0");
            let c = client(server.addr);
            let key = k(d, "script");
            let want = Value::Array(vec![
                Value::Bulk(key.clone()),
                Value::Bulk(b"a".to_vec()),
                Value::Int(42),
            ]);

            match c.evalsha(sha, &[&key], &[b"a", b"41"]).await {
                Err(RedisError::Server(msg)) => assert!(msg.starts_with("NOSCRIPT"), "{msg}"),
                other => panic!("EVALSHA of an unloaded script: {other:?}"),
            }
            // NOSCRIPT -> EVAL, which also loads the script...
            let got = c.eval_cached(sha, script, &[&key], &[b"a", b"41"]).await;
            assert_eq!(got.unwrap(), want);
            assert_eq!(server.cmd(&["SCRIPT", "EXISTS", sha]), "1");
            assert_eq!(eval_calls(server), 1);
            // ...so the next call is served by EVALSHA alone.
            let got = c.eval_cached(sha, script, &[&key], &[b"a", b"41"]).await;
            assert_eq!(got.unwrap(), want);
            assert_eq!(eval_calls(server), 1);

            assert_eq!(
                c.eval(
                    "return redis.call('INCRBY', KEYS[1], ARGV[1])",
                    &[&key],
                    &[b"3"]
                )
                .await
                .unwrap(),
                Value::Int(3)
            );
            match c.eval("return redis.call('NOSUCHCMD')", &[], &[]).await {
                Err(e @ RedisError::Server(_)) => assert!(!e.is_unavailable()),
                other => panic!("failing script: {other:?}"),
            }
            assert_eq!(c.eval("return nil", &[], &[]).await.unwrap(), Value::Nil);
            assert_eq!(c.idle_connections(), 1);
        }
    });
}

/// `calls=` of `cmdstat_eval` in INFO commandstats (0 when EVAL never ran).
fn eval_calls(server: &RedisServer) -> u64 {
    let info = server.cmd(&["INFO", "commandstats"]);
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_eval:calls="))
        .map(|rest| rest.split(',').next().unwrap().parse().unwrap())
        .unwrap_or(0)
}

#[test]
fn large_value_round_trips() {
    let server = RedisServer::start();
    let value: Vec<u8> = (0..1024 * 1024).map(|i| (i * 31 % 251) as u8).collect();
    on_both_drivers(|d| {
        let (server, value) = (&server, &value);
        async move {
            let c = client(server.addr);
            let key = k(d, "big");
            c.set_ex(&key, value, 60).await.unwrap();
            assert_eq!(
                server.cmd(&["STRLEN", &format!("{d}:big")]),
                value.len().to_string()
            );
            for _ in 0..3 {
                assert_eq!(c.get(&key).await.unwrap().as_deref(), Some(&value[..]));
            }
            // Small calls after the large one reuse the (shrunk) connection.
            assert_eq!(c.incr_by(&k(d, "after"), 1).await.unwrap(), 1);
            assert_eq!(c.idle_connections(), 1);
        }
    });
}

#[test]
fn concurrent_tasks_share_the_pool() {
    const TASKS: usize = 50;
    let server = RedisServer::start();
    on_both_drivers(|d| {
        let server = &server;
        async move {
            let c = client(server.addr);
            let counter = k(d, "hits");
            for round in 0..2 {
                let handles: Vec<_> = (0..TASKS)
                    .map(|i| {
                        let (c, counter) = (c.clone(), counter.clone());
                        let key = k(d, &format!("task{i}"));
                        let value = format!("value-{round}-{i}").repeat(i + 1).into_bytes();
                        monoio::spawn(async move {
                            c.set_ex(&key, &value, 60).await.unwrap();
                            c.incr_by(&counter, 1).await.unwrap();
                            assert_eq!(c.get(&key).await.unwrap(), Some(value));
                        })
                    })
                    .collect();
                for h in handles {
                    h.await;
                }
                let total = (round + 1) * TASKS;
                assert_eq!(
                    c.get(&counter).await.unwrap(),
                    Some(total.to_string().into())
                );
                let idle = c.idle_connections();
                assert!((1..=8).contains(&idle), "idle {idle} not within max_idle");
            }
        }
    });
}

#[test]
fn outage_fails_fast_and_recovers() {
    // A RefCell so the shared test body can stop and restart it (never borrowed across an await).
    let server = RefCell::new(RedisServer::start());
    let addr = server.borrow().addr;
    on_both_drivers(|d| {
        let server = &server;
        async move {
            let (c, ctl) = (client(addr), client(addr));
            let key = k(d, "outage");
            warm_pool(&c, &ctl, 4).await;
            assert_eq!(c.idle_connections(), 4);

            server.borrow_mut().stop();
            for _ in 0..3 {
                // Fast means refused at once, never waiting out a timeout: the error says which.
                let err = c.incr_by(&key, 1).await.unwrap_err();
                assert!(err.is_unavailable(), "{err:?}");
                assert!(
                    matches!(&err, RedisError::Connect(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
                    "a stopped server must be refused, not waited for: {err:?}"
                );
            }
            assert_eq!(
                c.idle_connections(),
                0,
                "broken connections are never pooled"
            );

            server.borrow_mut().restart();
            assert_eq!(c.incr_by(&key, 1).await.unwrap(), 1);

            // Restart while the pool holds connections to the old process: no call may fail.
            warm_pool(&c, &ctl, 4).await;
            assert_eq!(c.idle_connections(), 4);
            server.borrow_mut().restart();
            assert_eq!(c.incr_by(&key, 1).await.unwrap(), 1);
            warm_pool(&c, &ctl, 4).await;
            server.borrow_mut().restart();
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let (c, key) = (c.clone(), key.clone());
                    monoio::spawn(async move { c.incr_by(&key, 1).await })
                })
                .collect();
            for h in handles {
                h.await.unwrap();
            }
            assert_eq!(c.get(&key).await.unwrap(), Some(b"4".to_vec()));
        }
    });
}

/// How long `warm_pool` waits for its calls to be parked on the server together.
const WARM_TIMEOUT: Duration = Duration::from_secs(10);

/// Leaves exactly `n` idle connections in `c`'s pool (`n <= max_idle`, pool empty or holding fewer
/// than `n`): `n` calls each park in a `BLPOP` on the server, so each holds its own connection;
/// only when the server reports all `n` blocked (checked through `ctl`, a client with a pool of
/// its own) does `ctl` push the `n` elements that release them. Nothing depends on how the
/// runtime happens to interleave the tasks: concurrency is a condition we wait for, with a deadline.
async fn warm_pool(c: &RedisClient, ctl: &RedisClient, n: usize) {
    let list = b"warm-pool".to_vec();
    ctl.del(&list).await.unwrap();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (c, list) = (c.clone(), list.clone());
            monoio::spawn(async move { c.cmd(&[b"BLPOP", &list, b"10"]).await.unwrap() })
        })
        .collect();
    let deadline = Instant::now() + WARM_TIMEOUT;
    loop {
        let blocked = blocked_clients(ctl).await;
        if blocked >= n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {blocked} of {n} calls parked on the server within {WARM_TIMEOUT:?}"
        );
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut push: Vec<&[u8]> = vec![b"RPUSH", &list];
    push.extend(std::iter::repeat_n(&b"x"[..], n));
    ctl.cmd(&push).await.unwrap();
    for h in handles {
        h.await;
    }
}

/// `blocked_clients` from the server's `INFO clients`.
async fn blocked_clients(ctl: &RedisClient) -> usize {
    let info = ctl.cmd(&[b"INFO", b"clients"]).await.unwrap();
    let Value::Bulk(text) = info else {
        panic!("INFO answered {info:?}")
    };
    String::from_utf8_lossy(&text)
        .lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no blocked_clients in INFO: {}",
                String::from_utf8_lossy(&text)
            )
        })
}

#[test]
fn auth_and_select_on_new_connections() {
    let server = RedisServer::start();
    on_both_drivers(|d| {
        let server = &server;
        async move {
            let key = k(d, "db");
            let in_db3 = RedisClient::new(
                server.addr,
                RedisOpts {
                    db: Some(3),
                    ..opts()
                },
            );
            in_db3.set_ex(&key, b"three", 60).await.unwrap();
            assert_eq!(client(server.addr).get(&key).await.unwrap(), None);
            let again = RedisClient::new(
                server.addr,
                RedisOpts {
                    db: Some(3),
                    ..opts()
                },
            );
            assert_eq!(again.get(&key).await.unwrap(), Some(b"three".to_vec()));

            let bad_db = RedisClient::new(
                server.addr,
                RedisOpts {
                    db: Some(999),
                    ..opts()
                },
            );
            match bad_db.set_ex(&key, b"wrong db", 60).await {
                Err(RedisError::Server(msg)) => assert!(msg.starts_with("SELECT"), "{msg}"),
                other => panic!("SELECT 999: {other:?}"),
            }
            assert_eq!(bad_db.idle_connections(), 0);

            assert_eq!(
                server.cmd(&["CONFIG", "SET", "requirepass", "s3cret"]),
                "OK"
            );
            let with_pw = RedisOpts {
                password: Some("s3cret".into()),
                db: Some(3),
                ..opts()
            };
            let authed = RedisClient::new(server.addr, with_pw.clone());
            assert_eq!(authed.get(&key).await.unwrap(), Some(b"three".to_vec()));
            match client(server.addr).get(&key).await {
                Err(RedisError::Server(msg)) => assert!(msg.starts_with("NOAUTH"), "{msg}"),
                other => panic!("no password: {other:?}"),
            }
            let wrong = RedisClient::new(
                server.addr,
                RedisOpts {
                    password: Some("nope".into()),
                    ..opts()
                },
            );
            match wrong.get(&key).await {
                Err(e @ RedisError::Server(_)) => assert!(!e.is_unavailable(), "{e}"),
                other => panic!("wrong password: {other:?}"),
            }
            authed
                .cmd(&[b"CONFIG", b"SET", b"requirepass", b""])
                .await
                .unwrap();
        }
    });
}

/// A fake server that serves scripted connections in accept order, then hands its listener back
/// so the test can check that no further connection is pending. Each script step reads one
/// request and then answers with `Some(bytes)` or closes the connection on `None`; the connection
/// is closed after its last step too.
fn fake_server(
    scripts: Vec<Vec<Option<&'static [u8]>>>,
) -> (SocketAddr, std::thread::JoinHandle<TcpListener>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        for script in scripts {
            let (mut s, _) = listener.accept().unwrap();
            for step in script {
                let mut buf = [0u8; 1024];
                if s.read(&mut buf).unwrap_or(0) == 0 {
                    break;
                }
                match step {
                    Some(reply) => s.write_all(reply).unwrap(),
                    None => break,
                }
            }
        }
        listener
    });
    (addr, handle)
}

/// Joins the fake server and asserts no connection beyond its script was made.
fn assert_no_more_connections(handle: std::thread::JoinHandle<TcpListener>) {
    let listener = handle.join().expect("fake server panicked");
    listener.set_nonblocking(true).unwrap();
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("unexpected extra connection: {other:?}"),
    }
}

#[test]
fn reused_connection_closed_before_reply_is_retried_once() {
    on_both_drivers(|_| async {
        // Connection 1 answers once, then reads the next request and closes without a reply;
        // connection 2 answers the retried request.
        let (addr, handle) =
            fake_server(vec![vec![Some(b"+PONG\r\n"), None], vec![Some(b":7\r\n")]]);
        let c = client(addr);
        assert_eq!(
            c.cmd(&[b"PING"]).await.unwrap(),
            Value::Simple("PONG".into())
        );
        assert_eq!(c.incr_by(b"k", 1).await.unwrap(), 7);
        drop(c);
        assert_no_more_connections(handle);
    });
}

#[test]
fn fresh_connection_closed_before_reply_is_not_retried() {
    on_both_drivers(|_| async {
        let (addr, handle) = fake_server(vec![vec![None]]);
        let err = client(addr).incr_by(b"k", 1).await.unwrap_err();
        assert!(matches!(err, RedisError::Io(_)), "{err:?}");
        assert!(err.is_unavailable());
        assert_no_more_connections(handle);
    });
}

#[test]
fn connection_closed_mid_reply_is_not_retried() {
    on_both_drivers(|_| async {
        // The second reply stops after 3 of its 10 bytes and the connection closes.
        let (addr, handle) = fake_server(vec![vec![Some(b"+PONG\r\n"), Some(b"$10\r\nabc")]]);
        let c = client(addr);
        c.cmd(&[b"PING"]).await.unwrap();
        let err = c.get(b"k").await.unwrap_err();
        assert!(matches!(err, RedisError::Io(_)), "{err:?}");
        assert_eq!(c.idle_connections(), 0);
        drop(c);
        assert_no_more_connections(handle);
    });
}

#[test]
fn malformed_reply_is_a_protocol_error_and_drops_the_connection() {
    on_both_drivers(|_| async {
        let (addr, handle) = fake_server(vec![vec![Some(b"!garbage\r\n")]]);
        let c = client(addr);
        let err = c.get(b"k").await.unwrap_err();
        assert!(matches!(err, RedisError::Protocol(_)), "{err:?}");
        assert!(!err.is_unavailable());
        assert_eq!(c.idle_connections(), 0);
        drop(c);
        assert_no_more_connections(handle);
    });
}

#[test]
fn silent_server_times_out() {
    on_both_drivers(|_| async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            // Accept and read, never answer, until the test is done.
            let (mut s, _): (TcpStream, _) = listener.accept().unwrap();
            let _ = s.read(&mut [0u8; 1024]);
            let _ = released.recv();
        });
        let op_timeout = Duration::from_millis(300);
        let c = RedisClient::new(
            addr,
            RedisOpts {
                op_timeout,
                ..opts()
            },
        );
        let started = Instant::now();
        let err = c.get(b"k").await.unwrap_err();
        assert!(matches!(err, RedisError::Timeout), "{err:?}");
        assert!(err.is_unavailable());
        assert!(started.elapsed() >= op_timeout);
        assert_eq!(c.idle_connections(), 0);
        release.send(()).unwrap();
        holder.join().unwrap();
    });
}

#[test]
fn refused_connection_is_unavailable() {
    on_both_drivers(|_| async {
        let closed = common::closed_port();
        let err = client(closed).get(b"k").await.unwrap_err();
        assert!(matches!(err, RedisError::Connect(_)), "{err:?}");
        assert!(err.is_unavailable());
    });
}
