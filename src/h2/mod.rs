//! HTTP/2. Downstream: cleartext h2c with prior knowledge (recognised from the connection
//! preface on a plain listener) and h2 over TLS (chosen by ALPN). Built on hyperium `h2` over monoio's poll-io adapter (see
//! README design notes for why not monoio-http's fork).
//!
//! Owns the connection driver ([`server`]), the per-stream byte adapter ([`stream`]) through
//! which every h2 stream runs the same pipeline as an HTTP/1.1 request, and TLS over poll-based
//! IO for the codec ([`tls_io`]). Upstream HTTP/2: the multiplexed connection pool
//! ([`client`]) and the per-request byte adapter ([`call`]) through which the upstream exchange
//! drives an h2 upstream as it drives an HTTP/1.1 one.

pub mod call;
pub mod client;
pub mod server;
pub mod stream;
pub mod tls_io;

pub use stream::H2Stream;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
