//! Per-route request validation: the engine behind a route's `validate` settings.
//!
//! This module owns the checks themselves and the JSON rendering of their findings; the config
//! layer owns parsing the route settings into these types, and the request pipeline owns deciding
//! when to run them and writing the 400 response.
//!
//! Data flow:
//!
//! 1. At config load, a route's body schema is compiled once into a [`schema::BodySchema`]
//!    (`compile` or `load`), and its query and header declarations become [`params::ParamRule`]s.
//!    Both are immutable, `Send + Sync`, and live in the Arc'd config generation.
//! 2. Per request, the pipeline calls [`params::check_query`], [`params::check_headers`] and, once
//!    the body is buffered, [`schema::BodySchema::check`], all pushing into one `Vec<Problem>`.
//!    The parameter checks allocate nothing while every value passes.
//! 3. If the vector is non-empty the pipeline answers 400, appending [`render_problems`]'s output
//!    inside its usual JSON error object (at most [`MAX_RENDERED`] problems, plus a count of the
//!    rest).

pub mod params;
pub mod schema;

#[cfg(test)]
mod tests;

/// A route's compiled validation: `schema`, `validate_query`, `validate_headers`.
#[derive(Debug)]
pub struct Validation {
    pub schema: Option<schema::BodySchema>,
    /// Where the schema was read from (shown by `check --show`).
    pub schema_file: Option<std::path::PathBuf>,
    pub query: Vec<params::ParamRule>,
    pub headers: Vec<params::ParamRule>,
}

/// How many problems [`render_problems`] lists; the rest are only counted.
pub const MAX_RENDERED: usize = 20;

/// One validation problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Which part of the request the problem is in.
    pub location: Location,
    /// A JSON pointer into that part: the instance path for bodies ("" for the root), `/<name>`
    /// for query parameters and headers.
    pub pointer: String,
    /// A short human-readable description.
    pub message: String,
}

/// The part of a request a [`Problem`] is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// The JSON request body.
    Body,
    /// A query string parameter.
    Query,
    /// A request header.
    Header,
}

impl Location {
    /// The name rendered in a problem's `"in"` member.
    pub fn as_str(self) -> &'static str {
        match self {
            Location::Body => "body",
            Location::Query => "query",
            Location::Header => "header",
        }
    }
}

/// Renders `,"problems":[{"in":"body","pointer":"/items/0/qty","message":"..."}, ...]` into `out`.
///
/// The leading comma is deliberate: the output is appended inside the gateway's error object.
/// Strings are escaped by serde_json. At most [`MAX_RENDERED`] problems are listed; when more
/// exist, `,"problems_omitted":N` follows the array.
pub fn render_problems(problems: &[Problem], out: &mut String) {
    out.push_str(",\"problems\":[");
    for (i, problem) in problems.iter().take(MAX_RENDERED).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"in\":\"");
        out.push_str(problem.location.as_str());
        out.push_str("\",\"pointer\":");
        push_json_string(&problem.pointer, out);
        out.push_str(",\"message\":");
        push_json_string(&problem.message, out);
        out.push('}');
    }
    out.push(']');
    if problems.len() > MAX_RENDERED {
        out.push_str(",\"problems_omitted\":");
        out.push_str(&(problems.len() - MAX_RENDERED).to_string());
    }
}

/// Appends `s` as a quoted, escaped JSON string.
fn push_json_string(s: &str, out: &mut String) {
    // Serialising a `str` cannot fail; the fallback only keeps the output well-formed regardless.
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

/// Appends `segment` to a JSON pointer with RFC 6901 escaping (`~` as `~0`, `/` as `~1`).
pub(crate) fn push_pointer_segment(segment: &str, out: &mut String) {
    out.push('/');
    for c in segment.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            _ => out.push(c),
        }
    }
}
