//! The protocol-neutral view of a request that the pipeline's decisions read.
//!
//! Owns [`RequestView`]: method, normalised path and target, host, header fields and the peer
//! (address and TLS facts). Routing, authentication, rate-limit keys and client-certificate checks
//! read only this view, never a protocol's parsed head, so an HTTP/2 stream can feed the same code.
//! An HTTP/1.1 view is spans over the connection buffer: building one copies nothing.

use super::head::RequestHead;
use crate::net::TlsInfo;
use crate::router::HeaderSource;

/// One request as the pipeline sees it.
pub struct RequestView<'a> {
    pub method: &'a [u8],
    /// The normalised path (`router::normalize`), without the query.
    pub path: &'a [u8],
    /// The normalised path and the query as received.
    pub target: &'a [u8],
    /// The request target exactly as received (before any decoding or normalisation): the WAF
    /// looks for encoded traversal in it.
    pub raw_target: &'a [u8],
    /// Host from the absolute-form target or the Host header (may be empty).
    pub host: &'a [u8],
    pub fields: Fields<'a>,
    pub peer: Peer<'a>,
}

/// Who sent the request.
#[derive(Clone, Copy)]
pub struct Peer<'a> {
    /// The client's IP address as text.
    pub ip: &'a str,
    /// Set when the request came over TLS.
    pub tls: Option<&'a TlsInfo>,
}

/// The request's header fields, per protocol.
#[derive(Clone, Copy)]
pub enum Fields<'a> {
    /// Spans of a parsed HTTP/1.1 head over its buffer.
    H1 {
        head: &'a RequestHead,
        buf: &'a [u8],
    },
}

impl<'a> Fields<'a> {
    /// The first field named `name` (any case).
    pub fn get(&self, name: &[u8]) -> Option<&'a [u8]> {
        match *self {
            Fields::H1 { head, buf } => head.header(buf, name),
        }
    }

    /// Every value of the fields named `name` (any case), in order.
    pub fn all<'n>(&self, name: &'n [u8]) -> impl Iterator<Item = &'a [u8]> + 'n
    where
        'a: 'n,
    {
        match *self {
            Fields::H1 { head, buf } => head
                .headers
                .iter()
                .filter(move |h| h.name.get(buf).eq_ignore_ascii_case(name))
                .map(move |h| h.value.get(buf)),
        }
    }
}

impl HeaderSource for Fields<'_> {
    fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.get(name)
    }
}

impl<'a> RequestView<'a> {
    /// The view of an HTTP/1.1 request; `path`/`target` are the normalised forms.
    pub fn h1(
        head: &'a RequestHead,
        buf: &'a [u8],
        path: &'a [u8],
        target: &'a [u8],
        peer: Peer<'a>,
    ) -> RequestView<'a> {
        RequestView {
            method: head.method(buf),
            path,
            target,
            raw_target: head.target(buf),
            host: head.host(buf),
            fields: Fields::H1 { head, buf },
            peer,
        }
    }
}
