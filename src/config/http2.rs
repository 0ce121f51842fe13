//! `[server] http2 = { ... }`: the limits every downstream HTTP/2 connection runs with
//! (`h2/server.rs` applies them), each with a safe default.
//!
//! Owns [`Http2Config`] and turning the raw table into it, errors naming the key.

use serde::Deserialize;

use super::position::KeyPath;
use super::raw::SizeValue;
use super::validate::Ctx;

/// `[server] http2`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawHttp2 {
    pub max_concurrent_streams: Option<i64>,
    pub stream_window: Option<SizeValue>,
    pub connection_window: Option<SizeValue>,
    pub max_client_resets: Option<i64>,
    pub max_error_resets: Option<i64>,
}

/// Downstream HTTP/2 limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http2Config {
    /// SETTINGS_MAX_CONCURRENT_STREAMS: streams beyond it are refused (RST_STREAM REFUSED_STREAM).
    pub max_concurrent_streams: u32,
    /// Receive window of each stream: request body bytes a client may send ahead of the upstream.
    pub stream_window: u32,
    /// Receive window of the connection: the most unread request body one connection can hold.
    pub connection_window: u32,
    /// Streams the client may reset before they are served (Rapid Reset, CVE-2023-44487) before
    /// the connection gets GOAWAY ENHANCE_YOUR_CALM.
    pub max_client_resets: usize,
    /// Streams we may reset for the client's protocol errors before GOAWAY ENHANCE_YOUR_CALM.
    pub max_error_resets: usize,
}

impl Default for Http2Config {
    fn default() -> Self {
        Http2Config {
            max_concurrent_streams: 128,
            stream_window: 256 * 1024,
            connection_window: 1024 * 1024,
            max_client_resets: 20,
            max_error_resets: 1024,
        }
    }
}

/// Largest flow-control window (RFC 9113 §6.9.1).
const MAX_WINDOW: u64 = (1 << 31) - 1;

/// `[server] http2` (`p`: its key path).
pub(super) fn http2(cx: &mut Ctx, p: &KeyPath, raw: Option<RawHttp2>) -> Http2Config {
    let d = Http2Config::default();
    let Some(r) = raw else {
        return d;
    };
    let window = |cx: &mut Ctx, key: &str, v: Option<SizeValue>, default: u32| -> u32 {
        let n = cx.size(p.key(key), v, default as u64, 65_535);
        if n > MAX_WINDOW {
            cx.err(
                p.key(key),
                format!("must be at most {MAX_WINDOW} bytes (RFC 9113 §6.9.1)"),
            );
            return default;
        }
        n as u32
    };
    let stream_window = window(cx, "stream_window", r.stream_window, d.stream_window);
    let connection_window = window(
        cx,
        "connection_window",
        r.connection_window,
        d.connection_window,
    );
    Http2Config {
        max_concurrent_streams: cx.int(
            p.key("max_concurrent_streams"),
            r.max_concurrent_streams,
            d.max_concurrent_streams,
            1,
            10_000,
        ),
        stream_window,
        connection_window,
        max_client_resets: cx.int(
            p.key("max_client_resets"),
            r.max_client_resets,
            d.max_client_resets,
            1,
            100_000,
        ),
        max_error_resets: cx.int(
            p.key("max_error_resets"),
            r.max_error_resets,
            d.max_error_resets,
            1,
            100_000,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::super::validate::tests::check_cases;
    use super::*;
    use crate::config::parse_str;

    #[test]
    fn defaults_values_and_errors() {
        let c = parse_str("[server]\n", "t.toml").unwrap();
        assert_eq!(c.server.http2, Http2Config::default());
        let c = parse_str(
            "[server]\nhttp2 = { max_concurrent_streams = 8, stream_window = \"64KiB\", connection_window = \"4MiB\", max_client_resets = 5, max_error_resets = 50 }\n",
            "t.toml",
        )
        .unwrap();
        let h = &c.server.http2;
        assert_eq!(
            (
                h.max_concurrent_streams,
                h.stream_window,
                h.connection_window,
                h.max_client_resets,
                h.max_error_resets
            ),
            (8, 65_536, 4 << 20, 5, 50)
        );
        check_cases(&[(
            "[server]\nhttp2 = { max_concurrent_streams = 0, stream_window = \"1KiB\", connection_window = \"4GiB\", max_client_resets = -1 }\n",
            &[
                "server.http2.max_concurrent_streams: must be between 1 and 10000, got 0",
                "server.http2.stream_window: must be at least 65535",
                "server.http2.connection_window: must be at most 2147483647 bytes (RFC 9113 §6.9.1)",
                "server.http2.max_client_resets: must be between 1 and 100000, got -1",
            ],
        )]);
    }
}
