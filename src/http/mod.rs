//! HTTP/1.1 on the wire: strict head parsing, chunked framing, proxy header rewriting, error responses.
//!
//! `head` parses request and response heads into spans over the connection buffer; `chunked` decodes
//! chunked bodies strictly; `rewrite` writes the heads we send (hop-by-hop removal, forwarding headers,
//! request ids); `credentials` removes a credential cookie or query parameter the upstream must not see;
//! `respond` is the one place where errors become responses; `view` is the protocol-neutral request the
//! pipeline's decisions read.

pub mod chunked;
pub mod credentials;
pub mod head;
pub mod respond;
pub mod rewrite;
pub mod upgrade;
pub mod view;
