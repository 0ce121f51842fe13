//! What a route changes in what passes through it: pure byte-to-byte functions; the pipeline
//! decides when they run.
//!
//! - [`fields`]: keep only the listed members of a JSON body (`response_fields`), run by a
//!   filter's response-body phase (`proxy/filter.rs`) over a response its target collected
//!   into a buffer (`proxy/sink.rs`).
//! - [`headers`]: set/add/remove/rename header fields (`request_headers`, `response_headers`),
//!   values from [`template`].
//! - [`template`]: `{id}`, `{query.x}`, `{identity.subject}`... rendered from the request, for
//!   header values and aggregation part paths.
//! - [`json`]: drop / rename / wrap / unwrap members of a JSON body, `?fields=` selections.
//! - [`merge`]: the aggregation target's merge of part documents into one JSON object.

pub mod fields;
pub mod headers;
pub mod json;
pub mod merge;
pub mod template;
