//! HTTP/1.1 protocol upgrades (RFC 9110 §7.8): WebSocket (RFC 6455 §4) and the tokens a route
//! lists in `upgrades`: recognising a handshake the gateway may pass on, checking the upstream's
//! `101 Switching Protocols`, and the 101 head the client gets.
//!
//! Owns only byte-level decisions over parsed heads; the tunnel that follows a 101 is
//! `proxy/tunnel.rs`. A request only counts as an upgrade when everything about it is clean:
//! HTTP/1.1, no body (a handshake with a body is a smuggling shape, so it is forwarded as an
//! ordinary request with `Upgrade` stripped), `Connection` naming `upgrade`, and exactly one
//! `Upgrade` field offering a protocol the route allows (`websocket` on GET only).

use super::head::{BodyKind, Header};
use super::head::{HeaderKind, RequestHead, ResponseHead};
use super::rewrite::push_header;

/// The comma-separated tokens of a field value, trimmed.
fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Some field called `name` (one of `kind`) lists `token`.
fn lists(headers: &[Header], buf: &[u8], kind: HeaderKind, name: &[u8], token: &[u8]) -> bool {
    headers
        .iter()
        .filter(|h| h.kind == kind && h.name.get(buf).eq_ignore_ascii_case(name))
        .any(|h| tokens(h.value.get(buf)).any(|t| t.eq_ignore_ascii_case(token)))
}

/// The `Upgrade` fields (classified hop-by-hop).
fn upgrade_fields<'a>(headers: &'a [Header], buf: &'a [u8]) -> impl Iterator<Item = &'a Header> {
    headers.iter().filter(move |h| {
        h.kind == HeaderKind::HopByHop && h.name.get(buf).eq_ignore_ascii_case(b"upgrade")
    })
}

/// The protocol a clean upgrade request asks for that the route allows (see the module doc):
/// `websocket` when `websocket` is set (GET only, RFC 6455 §4.1), or one of `others` (lower-case
/// tokens, any method without a body), the first the client lists. None: not an upgrade the
/// gateway passes on; the request is forwarded with `Upgrade` stripped.
pub fn requested<'a>(
    head: &RequestHead,
    buf: &'a [u8],
    websocket: bool,
    others: &[String],
) -> Option<&'a [u8]> {
    if head.minor != 1
        || head.body != BodyKind::None
        || !lists(
            &head.headers,
            buf,
            HeaderKind::Connection,
            b"connection",
            b"upgrade",
        )
    {
        return None;
    }
    let mut fields = upgrade_fields(&head.headers, buf);
    let field = fields.next()?;
    if fields.next().is_some() {
        return None;
    }
    let get = head.method(buf) == b"GET";
    tokens(field.value.get(buf)).find(|t| {
        (websocket && get && t.eq_ignore_ascii_case(b"websocket"))
            || others.iter().any(|o| o.as_bytes().eq_ignore_ascii_case(t))
    })
}

/// The upstream's 101 switches to `token`, as asked.
pub fn switched(resp: &ResponseHead, buf: &[u8], token: &[u8]) -> bool {
    resp.status == 101
        && lists(
            &resp.headers,
            buf,
            HeaderKind::Connection,
            b"connection",
            b"upgrade",
        )
        && lists(&resp.headers, buf, HeaderKind::HopByHop, b"upgrade", token)
}

/// The header lines an upgrade request carries upstream in place of the stripped hop-by-hop ones.
pub fn write_request(out: &mut Vec<u8>, token: &[u8]) {
    out.extend_from_slice(b"connection: upgrade\r\n");
    push_header(out, b"upgrade", token);
}

/// Appends the 101 head sent to the client: the upstream's end-to-end fields
/// (`Sec-WebSocket-Accept`, `Sec-WebSocket-Protocol`, ...), our request id and `extra`, then
/// `Connection: upgrade` and `Upgrade: token`.
pub fn write_switching(
    out: &mut Vec<u8>,
    buf: &[u8],
    resp: &ResponseHead,
    token: &[u8],
    rid: &[u8],
    extra: &[u8],
) {
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    for h in resp.headers.iter().filter(|h| h.kind == HeaderKind::Other) {
        push_header(out, h.name.get(buf), h.value.get(buf));
    }
    push_header(out, b"x-request-id", rid);
    out.extend_from_slice(extra);
    write_request(out, token);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::{parse_request, parse_response, HeadLimits};

    const LIMITS: HeadLimits = HeadLimits {
        max_request_line: 8192,
        max_header_bytes: 65536,
        max_headers: 100,
    };

    fn req(raw: &str) -> bool {
        let mut head = RequestHead::default();
        parse_request(raw.as_bytes(), &LIMITS, &mut head)
            .unwrap()
            .unwrap();
        requested(&head, raw.as_bytes(), true, &[]).is_some()
    }

    #[test]
    fn only_clean_handshakes_are_upgrades() {
        let ok = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\nSec-WebSocket-Key: x\r\n\r\n";
        assert!(req(ok));
        for bad in [
            "POST /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET /ws HTTP/1.0\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
            "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n",
            "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\nUpgrade: h2c\r\n\r\n",
            "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\nhello",
            "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ] {
            assert!(!req(bad), "{bad}");
        }
    }

    #[test]
    fn the_101_must_switch_to_websocket_and_the_client_gets_a_clean_head() {
        let raw = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: abc\r\nKeep-Alive: timeout=5\r\n\r\n";
        let mut resp = ResponseHead::default();
        parse_response(raw.as_bytes(), 65536, false, &mut resp)
            .unwrap()
            .unwrap();
        assert!(switched(&resp, raw.as_bytes(), b"websocket"));
        let mut out = Vec::new();
        write_switching(
            &mut out,
            raw.as_bytes(),
            &resp,
            b"websocket",
            b"rid1",
            b"x-extra: 1\r\n",
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: abc\r\nx-request-id: rid1\r\nx-extra: 1\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"
        );
        let h2c = raw.replace("Upgrade: websocket", "Upgrade: h2c");
        parse_response(h2c.as_bytes(), 65536, false, &mut resp)
            .unwrap()
            .unwrap();
        assert!(!switched(&resp, h2c.as_bytes(), b"websocket"));
        assert!(switched(&resp, h2c.as_bytes(), b"h2c"));
    }

    #[test]
    fn configured_tokens_are_upgrades_too() {
        let raw =
            "POST /t HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: foo/2, Bar\r\n\r\n";
        let mut head = RequestHead::default();
        parse_request(raw.as_bytes(), &LIMITS, &mut head)
            .unwrap()
            .unwrap();
        let b = raw.as_bytes();
        assert_eq!(
            requested(&head, b, true, &["bar".into()]),
            Some(&b"Bar"[..])
        );
        assert_eq!(
            requested(&head, b, true, &["foo/2".into(), "bar".into()]),
            Some(&b"foo/2"[..])
        );
        assert_eq!(requested(&head, b, true, &["foo".into()]), None);
        assert_eq!(requested(&head, b, false, &[]), None);
    }
}
