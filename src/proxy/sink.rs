//! Where a target's response goes: straight to the client, or into a buffer.
//!
//! Owns [`Sink`] and [`Collected`]. A target is called with a sink; the relay (`relay.rs`) streams
//! the upstream's response into it:
//!
//! - [`Sink::Client`]: the response head and body stream to the client connection as they arrive,
//!   framed for the client (today HTTP/1.x), with no buffering beyond one read.
//! - [`Sink::Buffer`]: the response is collected (the upstream's head copied, the body de-chunked)
//!   for a consumer that needs all of it: a filter's response-body phase (`response_fields`), and
//!   later aggregation parts and cache fills. [`Collected::admit`] decides from the head whether
//!   this response is wanted at all; one that is not (wrong type, no body, declared larger than
//!   the cap) streams to the client as if the sink were `Client`. A body that outgrows the cap
//!   while it streams is *spilled*: what was collected goes to the client first, then the rest
//!   streams, so a large response is passed through untouched instead of failing.
//!
//! The consumer checks [`Collected::state`] afterwards: only a `Complete` response is in the buffer;
//! the client has not seen any of it yet.

use crate::http::head::{BodyKind, ResponseHead};

/// Where the relay puts a response.
pub(crate) enum Sink<'a> {
    Client,
    Buffer(&'a mut Collected),
}

/// Which responses a buffer wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Want {
    /// Successful (2xx) JSON (`application/json`, `*/*+json`) with no content coding: what a
    /// JSON body transform can work on. Everything else passes through.
    Json,
    /// A cache fill (`proxy/cache.rs`): the statuses the route's cache keeps, whatever their
    /// type; also a 304 or a 5xx when [`Collected::accept_304`] / `accept_5xx` say a stored
    /// entry stands ready for them.
    Cache(std::rc::Rc<crate::cache::policy::CachePolicy>),
}

/// What became of a buffered response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Nothing relayed yet.
    Empty,
    /// The head did not qualify: the response streamed to the client untouched.
    Declined,
    /// The body outgrew the cap: it streamed to the client untouched.
    Spilled,
    /// Head and whole body are in the buffer; the client has seen none of it.
    Complete,
}

/// A response collected by [`Sink::Buffer`].
pub(crate) struct Collected {
    /// Largest body collected (bytes); larger ones stream through.
    pub cap: usize,
    pub want: Want,
    /// A copy of the upstream's response head bytes; `resp`'s spans point into it.
    pub head: Vec<u8>,
    pub resp: ResponseHead,
    /// The body, without transfer framing.
    pub body: Vec<u8>,
    pub state: State,
    /// A response-body filter changed the body (so a strong `ETag` no longer describes it).
    pub transformed: bool,
    /// (cache fills) collect a 304: it answers validators the cache sent.
    pub accept_304: bool,
    /// (cache fills) collect a 5xx: a stale entry may answer instead.
    pub accept_5xx: bool,
}

impl Collected {
    pub fn new(cap: usize, want: Want) -> Self {
        Collected {
            cap,
            want,
            head: Vec::new(),
            resp: ResponseHead::default(),
            body: Vec::new(),
            state: State::Empty,
            transformed: false,
            accept_304: false,
            accept_5xx: false,
        }
    }

    /// Decides from the response head (`buf` holds it) whether to collect this response; if so,
    /// keeps a copy of the head. Otherwise the state becomes `Declined`.
    pub fn admit(&mut self, resp: &ResponseHead, buf: &[u8]) -> bool {
        let header = |name: &[u8]| resp.header(buf, name);
        let fits = match resp.body {
            // a cache keeps bodiless answers too (204, HEAD-less 301...), and takes 304s
            BodyKind::None => matches!(self.want, Want::Cache(_)),
            BodyKind::Length(n) => n <= self.cap as u64,
            BodyKind::Chunked | BodyKind::UntilClose => true,
        };
        let coded = header(b"content-encoding")
            .is_some_and(|v| !v.trim_ascii().eq_ignore_ascii_case(b"identity"));
        let wanted = match &self.want {
            Want::Json => {
                (200..300).contains(&resp.status)
                    && !coded
                    && header(b"content-type").is_some_and(is_json)
            }
            Want::Cache(policy) => {
                policy.statuses.contains(&resp.status)
                    || (resp.status == 304 && self.accept_304)
                    || (resp.status >= 500 && self.accept_5xx)
            }
        };
        if !(fits && wanted) {
            self.state = State::Declined;
            return false;
        }
        self.head.clear();
        self.head.extend_from_slice(&buf[..resp.head_len]);
        self.resp = resp.clone();
        self.body.clear();
        true
    }

    /// The collected response is a successful, uncoded JSON one (what JSON body transforms
    /// work on; a buffer that wants more than JSON, like a cache fill, holds others too).
    pub fn is_json_success(&self) -> bool {
        let header = |name: &[u8]| self.resp.header(&self.head, name);
        (200..300).contains(&self.resp.status)
            && header(b"content-encoding")
                .is_none_or(|v| v.trim_ascii().eq_ignore_ascii_case(b"identity"))
            && header(b"content-type").is_some_and(is_json)
    }
}

/// `application/json` or any `+json` media type, parameters ignored.
pub(crate) fn is_json(content_type: &[u8]) -> bool {
    let mt = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    mt.eq_ignore_ascii_case(b"application/json")
        || (mt.len() > 5 && mt[mt.len() - 5..].eq_ignore_ascii_case(b"+json") && mt.contains(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::parse_response;

    fn admit(raw: &str, cap: usize) -> (bool, State) {
        let mut resp = ResponseHead::default();
        parse_response(raw.as_bytes(), 64 * 1024, false, &mut resp)
            .unwrap()
            .unwrap();
        let mut c = Collected::new(cap, Want::Json);
        (c.admit(&resp, raw.as_bytes()), c.state)
    }

    #[test]
    fn admits_only_small_enough_uncoded_successful_json() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(admit(ok, 2), (true, State::Empty));
        assert!(!admit(ok, 1).0, "declared larger than the cap");
        let problem = "HTTP/1.1 200 OK\r\nContent-Type: Application/Problem+JSON\r\ntransfer-encoding: chunked\r\n\r\n";
        assert!(
            admit(problem, 1).0,
            "chunked: the cap is enforced while it streams"
        );
        for declined in [
            "HTTP/1.1 500 Oops\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\ncontent-length: 2\r\n\r\n",
            "HTTP/1.1 204 No Content\r\ncontent-type: application/json\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-type: json\r\ncontent-length: 2\r\n\r\n",
        ] {
            assert_eq!(admit(declined, 100), (false, State::Declined), "{declined}");
        }
    }
}
