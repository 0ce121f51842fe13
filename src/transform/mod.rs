//! Body transforms a route applies to what passes through it.
//!
//! Owns the pure byte-to-byte functions; the pipeline decides when they run (a filter's
//! response-body phase, `proxy/filter.rs`, over a response its target collected into a buffer,
//! `proxy/sink.rs`). Today: [`fields`], keeping only the listed members of a JSON response
//! (`response_fields`).

pub mod fields;
