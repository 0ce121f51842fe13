//! The three demo services: tiny keep-alive HTTP/1.1 servers on loopback returning JSON.
//!
//! Owns: one accept thread per service and one thread per connection (blocking std IO). They exist so
//! that `coregate demo` works on a fresh machine with nothing else installed; they are not fast and
//! are not used by benchmarks.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

/// Starts a service on 127.0.0.1:0 and returns its address.
pub fn start(name: &'static str) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new()
        .name(format!("demo-{name}"))
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let _ = serve(name, conn);
                });
            }
        })?;
    Ok(addr)
}

fn serve(name: &str, conn: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut conn = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("/").to_string();
        let mut content_length = 0usize;
        let mut request_id = String::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                if k == "content-length" {
                    content_length = v.trim().parse().unwrap_or(0);
                } else if k == "x-request-id" {
                    request_id = v.trim().to_string();
                }
            }
        }
        let mut body_in = vec![0u8; content_length];
        reader.read_exact(&mut body_in)?;
        let (status, body) = respond(name, &method, &path, &body_in);
        let out = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-served-by: {name}\r\nx-seen-request-id: {request_id}\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(out.as_bytes())?;
    }
}

fn respond(name: &str, method: &str, path: &str, body: &[u8]) -> (&'static str, String) {
    let segs: Vec<&str> = path
        .split('?')
        .next()
        .unwrap_or("")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match (name, method, segs.as_slice()) {
        ("users", "GET", ["users"]) => (
            "200 OK",
            r#"[{"id":1,"name":"ada"},{"id":2,"name":"grace"}]"#.into(),
        ),
        ("users", "GET", ["users", id]) => (
            "200 OK",
            format!(
                r#"{{"id":{},"name":"user-{}"}}"#,
                json_num(id),
                json_num(id)
            ),
        ),
        ("orders", "GET", ["orders"]) => ("200 OK", r#"[{"id":100,"item":"book","qty":1}]"#.into()),
        ("orders", "POST", ["orders"]) => (
            "201 Created",
            format!(r#"{{"id":101,"received_bytes":{}}}"#, body.len()),
        ),
        ("products", "GET", ["catalog", id]) => (
            "200 OK",
            format!(
                r#"{{"id":{},"title":"product {}","price_cents":1999}}"#,
                json_num(id),
                json_num(id)
            ),
        ),
        ("products", "GET", ["catalog"]) => ("200 OK", r#"[{"id":3,"title":"product 3"}]"#.into()),
        _ => (
            "404 Not Found",
            format!(
                r#"{{"error":"{name} has no {method} {}"}}"#,
                path.replace('"', "")
            ),
        ),
    }
}

/// Digits only, so the demo's JSON stays valid whatever the path holds.
fn json_num(s: &str) -> String {
    let d: String = s.chars().filter(|c| c.is_ascii_digit()).take(18).collect();
    if d.is_empty() {
        "0".into()
    } else {
        d
    }
}
