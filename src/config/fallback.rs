//! A route's degraded answer and its bulkhead: `fallback = { ... }` and `max_concurrent`.
//!
//! Owns reading the fallback table into a [`Fallback`]: `status` (200-599, default 200),
//! `content_type` (default `application/json`), and the body from `body_file` (read once here,
//! relative to the config file, at most [`MAX_FALLBACK_BODY`]) or inline `body`. A reload reads
//! the file again. Every problem names its key.

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::position::KeyPath;
use super::validate::Ctx;

/// Largest fallback body.
pub const MAX_FALLBACK_BODY: u64 = 1024 * 1024;

/// `fallback = { status, body_file | body, content_type }` as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawFallback {
    pub status: Option<i64>,
    pub body_file: Option<String>,
    pub body: Option<String>,
    pub content_type: Option<String>,
}

/// The answer a route gives when its upstream cannot be asked: the breaker is open, every
/// endpoint is down, or the route's bulkhead is full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
    /// Where the body came from (shown by `check --show`); None for an inline body.
    pub body_file: Option<std::path::PathBuf>,
}

/// `route.fallback` (`p`: the key).
pub(super) fn fallback(
    cx: &mut Ctx,
    p: &KeyPath,
    raw: Option<RawFallback>,
    base: &Path,
) -> Option<Arc<Fallback>> {
    let f = raw?;
    let status = cx.int(p.key("status"), f.status, 200u16, 200, 599);
    let content_type = f.content_type.unwrap_or_else(|| "application/json".into());
    if content_type.is_empty() || content_type.bytes().any(|b| b < 0x20 || b == 0x7f) {
        cx.err(
            p.key("content_type"),
            "must be a media type like \"application/json\"",
        );
    }
    let (body, body_file) = match (f.body, f.body_file) {
        (Some(_), Some(_)) => {
            cx.err(p.key("body_file"), "give body_file or body, not both");
            return None;
        }
        (Some(b), None) => (b.into_bytes(), None),
        (None, None) => (Vec::new(), None),
        (None, Some(file)) => {
            let path = super::auth::resolve(base, &file);
            match std::fs::read(&path) {
                Ok(b) if b.len() as u64 > MAX_FALLBACK_BODY => {
                    cx.err(
                        p.key("body_file"),
                        format!("{} is larger than 1 MiB", path.display()),
                    );
                    return None;
                }
                Ok(b) => (b, Some(path)),
                Err(e) => {
                    cx.err(
                        p.key("body_file"),
                        format!("cannot read {}: {e}", path.display()),
                    );
                    return None;
                }
            }
        }
    };
    Some(Arc::new(Fallback {
        status,
        content_type,
        body,
        body_file,
    }))
}

#[cfg(test)]
mod tests {
    use crate::config::validate::tests::{check_cases, R};

    #[test]
    fn fallback_and_bulkhead_rules() {
        let route = |extra: &str| format!("{R}{extra}\n");
        check_cases(&[
            (&route("max_concurrent = 100\nfallback = { status = 200, body = \"{}\", content_type = \"application/json\" }"), &[]),
            (&route("max_concurrent = 0"), &["route[0].max_concurrent: must be between 1 and 1000000, got 0"]),
            (&route("fallback = { status = 99 }"), &["route[0].fallback.status: must be between 200 and 599, got 99"]),
            (&route("fallback = { body = \"x\", body_file = \"f\" }"), &["route[0].fallback.body_file: give body_file or body, not both"]),
            (&route("fallback = { body_file = \"/nonexistent/fallback.json\" }"), &["route[0].fallback.body_file: cannot read /nonexistent/fallback.json: No such file or directory (os error 2)"]),
        ]);
    }
}
