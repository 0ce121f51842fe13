//! coregate: a thread-per-core HTTP/1.1 API gateway on io_uring (monoio), with an epoll fallback.
//!
//! Request flow (see README for the picture): per-core SO_REUSEPORT listener (`runtime`) -> connection
//! driver (`proxy`) -> strict head parser (`http::head`) -> per-core route table (`router`) -> auth
//! (`auth`) -> rate limits (`ratelimit`) -> trace context (`trace`) -> upstream balancer and pool
//! (`upstream`) -> body relays (`proxy::relay`) -> counters and histograms (`metrics`) and the access
//! log (`accesslog`), with errors turned into responses in one place (`http::respond`). Each request
//! runs on its worker's current config generation (`runtime::worker`, `runtime::reload`); the
//! admin thread (`admin`) reads workers only through snapshots they send over their control channels.

pub mod accesslog;
pub mod admin;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod client;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod h2;
pub mod http;
pub mod metrics;
pub mod net;
pub mod otlp;
pub mod proxy;
pub mod ratelimit;
pub mod redis;
pub mod router;
pub mod runtime;
pub mod tls;
pub mod top;
pub mod trace;
pub mod transform;
pub mod tune;
pub mod upstream;
pub mod validate;
pub mod waf;
