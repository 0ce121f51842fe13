//! JSON Schema validation of request bodies, on the `jsonschema` crate.
//!
//! A schema is compiled once, at config load, into a [`BodySchema`]; per request,
//! [`BodySchema::check`] parses the buffered body and turns every validation error into a
//! [`Problem`] located by the error's instance path.
//!
//! Drafts: a schema without `$schema` is compiled as draft 2020-12; a `$schema` naming draft 4, 6,
//! 7, 2019-09 or 2020-12 selects that draft; any other `$schema` is refused at compile time.
//! References: only references inside the document (`#/$defs/...`, anchors, embedded `$id`s)
//! resolve. Nothing is fetched from the network or the filesystem, so a `$ref` to another document
//! is a compile error. `format` is an annotation, as draft 2020-12 specifies, and does not reject
//! values. `pattern` uses the crate's default engine (fancy-regex, with its backtracking limit).

use std::fmt::{self, Write as _};
use std::path::Path;

use jsonschema::{Draft, ValidationError, Validator};
use serde_json::Value;

use super::{Location, Problem};

/// The longest message (in bytes) taken from one validation error, as messages can quote parts of
/// the instance (or, at compile time, of the schema). Longer ones end in `...`.
const MAX_MESSAGE: usize = 200;

/// A compiled JSON Schema for request bodies (compiled once at config load; Send + Sync so it can
/// sit in an Arc'd config).
pub struct BodySchema {
    validator: Validator,
    draft: Draft,
}

// `BodySchema` sits in the config generation shared by every worker.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<BodySchema>();
};

impl BodySchema {
    /// Compiles `schema` (draft 2020-12 unless the document's `$schema` says another supported
    /// draft).
    ///
    /// Err: a human-readable message naming what is wrong with the schema, with the JSON pointer
    /// of the offending part of the schema when there is one.
    pub fn compile(schema: &Value) -> Result<BodySchema, String> {
        let draft = draft_of(schema)?;
        let validator = jsonschema::options()
            .with_draft(draft)
            .offline()
            .build(schema)
            .map_err(|error| describe_schema_error(&error))?;
        Ok(BodySchema { validator, draft })
    }

    /// Reads and compiles a schema file.
    ///
    /// Err: a message that names the path and the reason (an IO error, a JSON syntax error with
    /// its line and column, or what [`BodySchema::compile`] found).
    pub fn load(path: &Path) -> Result<BodySchema, String> {
        let shown = path.display();
        let bytes = std::fs::read(path)
            .map_err(|error| format!("cannot read JSON Schema file {shown}: {error}"))?;
        let schema: Value = serde_json::from_slice(&bytes)
            .map_err(|error| format!("JSON Schema file {shown} is not valid JSON: {error}"))?;
        Self::compile(&schema).map_err(|error| format!("JSON Schema file {shown}: {error}"))
    }

    /// Validates a request body, pushing one [`Problem`] (location [`Location::Body`]) per
    /// validation error into `problems`.
    ///
    /// A body that is not valid JSON (an empty one included) gives a single problem with pointer
    /// `""` and the message `body is not valid JSON: <reason at line L column C>`. Otherwise each
    /// problem's pointer is the error's instance path as a JSON pointer (`""` for the root) and
    /// its message is the validator's description, at most about 200 bytes.
    pub fn check(&self, body: &[u8], problems: &mut Vec<Problem>) {
        let instance: Value = match serde_json::from_slice(body) {
            Ok(instance) => instance,
            Err(error) => {
                problems.push(Problem {
                    location: Location::Body,
                    pointer: String::new(),
                    message: format!("body is not valid JSON: {error}"),
                });
                return;
            }
        };
        // The fast path: `is_valid` stops at the first failure and builds no error values.
        if self.validator.is_valid(&instance) {
            return;
        }
        for error in self.validator.iter_errors(&instance) {
            problems.push(Problem {
                location: Location::Body,
                pointer: error.instance_path().as_str().to_owned(),
                message: bounded_message(&error),
            });
        }
    }

    /// The draft the schema was compiled under.
    pub fn draft(&self) -> Draft {
        self.draft
    }
}

impl fmt::Debug for BodySchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BodySchema({})", draft_name(self.draft))
    }
}

/// The draft to compile `schema` under: its `$schema` when that names a known draft, else 2020-12.
fn draft_of(schema: &Value) -> Result<Draft, String> {
    match schema.get("$schema") {
        None => Ok(Draft::Draft202012),
        Some(Value::String(uri)) => match Draft::from_schema_uri(uri) {
            Draft::Unknown => Err(format!(
                "unsupported $schema {uri:?}: use a JSON Schema draft 4, 6, 7, 2019-09 or 2020-12 \
                 meta-schema URI (e.g. \"https://json-schema.org/draft/2020-12/schema\"), or omit \
                 $schema for draft 2020-12"
            )),
            draft => Ok(draft),
        },
        Some(_) => Err("invalid schema: $schema must be a string".to_owned()),
    }
}

fn draft_name(draft: Draft) -> &'static str {
    match draft {
        Draft::Draft4 => "draft 4",
        Draft::Draft6 => "draft 6",
        Draft::Draft7 => "draft 7",
        Draft::Draft201909 => "draft 2019-09",
        Draft::Draft202012 => "draft 2020-12",
        _ => "unknown draft",
    }
}

/// Describes a compile error: the pointer into the schema (when the error has one) and the reason.
fn describe_schema_error(error: &ValidationError<'_>) -> String {
    let at = error.instance_path().as_str();
    let reason = bounded_message(error);
    if at.is_empty() {
        format!("invalid schema: {reason}")
    } else {
        format!("invalid schema at {at}: {reason}")
    }
}

/// `error`'s message, cut (at a character boundary) after [`MAX_MESSAGE`] bytes. Formatting stops
/// at the cut, so a huge instance quoted by the message is never serialised in full.
fn bounded_message(error: &ValidationError<'_>) -> String {
    let mut out = Bounded {
        out: String::new(),
        room: MAX_MESSAGE,
        cut: false,
    };
    // An `Err` here only means the cut was reached (or a formatter gave up): keep what was written.
    let _ = write!(out, "{error}");
    let mut message = out.out;
    if out.cut {
        message.push_str("...");
    }
    message
}

/// A `fmt::Write` that keeps at most `room` more bytes, then fails to stop the formatting.
struct Bounded {
    out: String,
    room: usize,
    cut: bool,
}

impl fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if s.len() <= self.room {
            self.out.push_str(s);
            self.room -= s.len();
            return Ok(());
        }
        let mut end = self.room;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.out.push_str(s.get(..end).unwrap_or_default());
        self.room = 0;
        self.cut = true;
        Err(fmt::Error)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::BodySchema;
    use crate::validate::{Location, Problem};

    fn schema(value: Value) -> BodySchema {
        match BodySchema::compile(&value) {
            Ok(schema) => schema,
            Err(error) => panic!("schema {value} should compile: {error}"),
        }
    }

    fn check(schema: &BodySchema, body: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        schema.check(body.as_bytes(), &mut problems);
        problems
    }

    fn pointers(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.pointer.as_str()).collect()
    }

    fn compile_error(value: Value) -> String {
        match BodySchema::compile(&value) {
            Ok(_) => panic!("schema {value} should not compile"),
            Err(error) => error,
        }
    }

    #[test]
    fn schema_required_and_types() {
        let s = schema(json!({
            "type": "object",
            "required": ["name", "qty"],
            "properties": {"name": {"type": "string"}, "qty": {"type": "integer"}}
        }));
        assert!(check(&s, r#"{"name":"a","qty":2}"#).is_empty());
        let problems = check(&s, r#"{"qty":"x"}"#);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().all(|p| p.location == Location::Body));
        let missing = problems.iter().find(|p| p.pointer.is_empty()).unwrap();
        assert!(
            missing.message.contains("\"name\" is a required property"),
            "{missing:?}"
        );
        let wrong = problems.iter().find(|p| p.pointer == "/qty").unwrap();
        assert!(wrong.message.contains("integer"), "{wrong:?}");
        // The root itself of the wrong type.
        assert_eq!(pointers(&check(&s, "[1]")), [""]);
    }

    #[test]
    fn schema_nested_array_item_pointers() {
        let s = schema(json!({
            "type": "object",
            "properties": {"items": {"type": "array", "items": {
                "type": "object",
                "properties": {"qty": {"type": "integer", "minimum": 0}}
            }}}
        }));
        let problems = check(&s, r#"{"items":[{"qty":1},{"qty":"two"},{"qty":-1}]}"#);
        assert_eq!(pointers(&problems), ["/items/1/qty", "/items/2/qty"]);
        assert!(problems[1].message.contains("minimum"), "{problems:?}");
    }

    #[test]
    fn schema_pointer_escapes_keys() {
        let s =
            schema(json!({"properties": {"a/b": {"type": "string"}, "c~d": {"type": "string"}}}));
        let problems = check(&s, r#"{"a/b":1,"c~d":2}"#);
        let mut got = pointers(&problems);
        got.sort_unstable();
        assert_eq!(got, ["/a~1b", "/c~0d"]);
    }

    #[test]
    fn schema_non_json_body() {
        let s = schema(json!({"type": "object"}));
        for body in ["{\"a\":", "", "{\"a\":1}x", "\u{FEFF}{}"] {
            let problems = check(&s, body);
            assert_eq!(problems.len(), 1, "{body:?}: {problems:?}");
            assert_eq!(problems[0].pointer, "");
            assert!(
                problems[0].message.starts_with("body is not valid JSON: "),
                "{problems:?}"
            );
            assert!(
                problems[0].message.contains("line 1 column"),
                "{problems:?}"
            );
        }
        let mut problems = Vec::new();
        s.check(b"{\"a\":\"\xff\"}", &mut problems);
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn schema_long_messages_are_cut() {
        let s = schema(json!({"type": "integer"}));
        let long = format!("\"{}\"", "é".repeat(1000));
        let problems = check(&s, &long);
        assert_eq!(problems.len(), 1);
        let message = &problems[0].message;
        assert!(
            message.len() <= 203 && message.ends_with("..."),
            "{message}"
        );
    }

    #[test]
    fn schema_compile_errors() {
        let error =
            compile_error(json!({"type": "object", "properties": {"a": {"type": "strin"}}}));
        assert!(
            error.starts_with("invalid schema at /properties/a/type: "),
            "{error}"
        );
        let error = compile_error(json!({"minimum": "zero"}));
        assert!(error.contains("/minimum"), "{error}");
        let error = compile_error(json!(5));
        assert!(error.starts_with("invalid schema"), "{error}");
        // Only internal references resolve.
        let error = compile_error(json!({"$ref": "#/$defs/missing"}));
        assert!(error.contains("missing"), "{error}");
        let error = compile_error(json!({"$ref": "other.json"}));
        assert!(error.contains("other.json"), "{error}");
        let error = compile_error(json!({"$ref": "https://example.com/s.json"}));
        assert!(error.contains("example.com"), "{error}");
        let error = compile_error(json!({"$schema": "https://example.com/my-meta"}));
        assert!(
            error.starts_with("unsupported $schema \"https://example.com/my-meta\""),
            "{error}"
        );
        assert_eq!(
            compile_error(json!({"$schema": 7})),
            "invalid schema: $schema must be a string"
        );
        // Boolean schemas are schemas.
        assert!(check(&schema(json!(true)), "1").is_empty());
        assert_eq!(check(&schema(json!(false)), "1").len(), 1);
    }

    #[test]
    fn schema_2020_12_features() {
        let s = schema(json!({
            "type": "array",
            "prefixItems": [{"type": "string"}, {"$ref": "#/$defs/qty"}],
            "items": false,
            "$defs": {"qty": {"type": "integer", "minimum": 1}}
        }));
        assert_eq!(s.draft(), jsonschema::Draft::Draft202012);
        assert!(check(&s, r#"["a",1]"#).is_empty());
        assert_eq!(pointers(&check(&s, r#"["a",0]"#)), ["/1"]);
        assert_eq!(check(&s, r#"["a",1,2]"#).len(), 1);
        let s = schema(json!({
            "type": "object",
            "properties": {"a": {"type": "integer"}},
            "unevaluatedProperties": false
        }));
        assert_eq!(check(&s, r#"{"a":1,"b":2}"#).len(), 1);
    }

    #[test]
    fn schema_draft_detection() {
        // The array form of `items` is draft 7's tuple validation; 2020-12 forbids it.
        let tuple = json!({"items": [{"type": "string"}]});
        assert!(compile_error(tuple.clone()).starts_with("invalid schema at /items"));
        let mut draft7 = tuple;
        draft7["$schema"] = json!("http://json-schema.org/draft-07/schema#");
        let s = schema(draft7);
        assert_eq!(s.draft(), jsonschema::Draft::Draft7);
        assert_eq!(format!("{s:?}"), "BodySchema(draft 7)");
        assert!(check(&s, r#"["a",1]"#).is_empty());
        assert_eq!(pointers(&check(&s, "[1]")), ["/0"]);
        let s = schema(json!({"$schema": "https://json-schema.org/draft/2020-12/schema"}));
        assert_eq!(format!("{s:?}"), "BodySchema(draft 2020-12)");
    }

    #[test]
    fn schema_load_reports_path_and_reason() {
        let dir = std::env::temp_dir().join(format!("coregate-validate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.json");
        std::fs::write(&good, r#"{"type": "object"}"#).unwrap();
        assert!(BodySchema::load(&good).is_ok());
        let syntax = dir.join("syntax.json");
        std::fs::write(&syntax, "{\n  \"type\": \"object\",\n}").unwrap();
        let error = BodySchema::load(&syntax).unwrap_err();
        assert!(
            error.contains("syntax.json") && error.contains("line 3 column 1"),
            "{error}"
        );
        let invalid = dir.join("invalid.json");
        std::fs::write(&invalid, r#"{"type": 1}"#).unwrap();
        let error = BodySchema::load(&invalid).unwrap_err();
        assert!(
            error.contains("invalid.json: invalid schema at /type"),
            "{error}"
        );
        let error = BodySchema::load(&dir.join("absent.json")).unwrap_err();
        assert!(
            error.starts_with("cannot read JSON Schema file ") && error.contains("absent.json")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
