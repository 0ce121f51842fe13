//! Configuration: the TOML file format, its validation, and the validated model.
//!
//! Data flow: text -> `toml_edit` document (syntax errors; kept for positions) -> `raw` structs via
//! `serde_ignored` (every unknown key collected; a type error stops here) -> `validate` (every
//! semantic error collected) -> [`model::Config`]. Each problem is a key path + message; this module
//! attaches the file name and the 1-based line:column found by `position`, and returns either the
//! `Config` or all the [`ConfigError`]s, sorted by position. [`check_file`] (`coregate check`) adds
//! `preflight`: what `run` would fail on beyond the file (log file, bindable addresses), reported
//! the same way.

pub mod access_log;
pub mod aggregate;
pub mod auth;
mod bff;
mod breaker;
pub mod bulkhead;
pub mod cache;
pub mod dns;
pub mod fallback;
pub mod health;
pub mod http2;
pub mod ip;
#[cfg(test)]
mod key_list;
pub mod limits;
pub mod model;
mod position;
pub mod preflight;
mod raw;
pub mod render;
mod retry;
pub mod tls;
pub mod tracing;
pub mod transform;
pub mod units;
mod upgrade;
mod validate;
mod validation;
mod waf;

pub use ip::RealIpHeader;
pub use model::*;

use std::fmt;
use std::path::Path;

use position::KeyPath;

/// One problem in a config file, with where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// The file label (`load_file`: the path as given).
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column (in characters), when known.
    pub column: Option<usize>,
    /// Key path like `upstream[1].endpoints[0].weight`; empty when the problem is not about a key.
    pub path: String,
    /// Short, lower-case description saying what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    /// `file:line:column: path: message`; `:line:column` omitted when unknown, `path: ` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        f.write_str(": ")?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a config file (never empty when returned as an error).
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    /// One error per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and validates a config file; the file label in errors is `path` as given.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    read_and_parse(path, None)
}

/// What `coregate check` runs: [`load_file`], then the [`preflight::Preflight`] checks of what
/// `run` would fail on (log file, listen addresses), every problem with its key path and position.
pub fn check_file(path: &Path, opts: preflight::Preflight) -> Result<Config, ConfigErrors> {
    read_and_parse(path, Some(opts))
}

fn read_and_parse(
    path: &Path,
    preflight: Option<preflight::Preflight>,
) -> Result<Config, ConfigErrors> {
    let label = path.display().to_string();
    let base = path.parent().unwrap_or(Path::new("."));
    match std::fs::read_to_string(path) {
        Ok(text) => parse_checked(&text, &label, base, preflight),
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            message: format!("cannot read {label}: {e}"),
            file: label,
            line: None,
            column: None,
            path: String::new(),
        }])),
    }
}

/// Parses and validates config text; `file_label` is used as the file name in errors.
pub fn parse_str(text: &str, file_label: &str) -> Result<Config, ConfigErrors> {
    parse_in(text, file_label, Path::new("."))
}

/// [`parse_str`], with relative key-file paths resolved against `base`.
pub fn parse_in(text: &str, file_label: &str, base: &Path) -> Result<Config, ConfigErrors> {
    parse_checked(text, file_label, base, None)
}

/// [`parse_in`], plus the `preflight` checks on a valid file when asked for.
fn parse_checked(
    text: &str,
    file_label: &str,
    base: &Path,
    preflight: Option<preflight::Preflight>,
) -> Result<Config, ConfigErrors> {
    let error = |offset: Option<usize>, path: String, message: String| {
        let (line, column) = match offset {
            Some(o) => {
                let (l, c) = position::line_col(text, o);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        ConfigError {
            file: file_label.to_owned(),
            line,
            column,
            path,
            message,
        }
    };
    let doc = match toml_edit::ImDocument::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let offset = e.span().map(|s| s.start);
            return Err(ConfigErrors(vec![error(
                offset,
                String::new(),
                one_line(e.message()),
            )]));
        }
    };
    let located = |path: KeyPath, message: String| {
        error(position::locate(&doc, &path), path.to_string(), message)
    };

    let mut unknown = Vec::new();
    let parsed: Result<raw::RawConfig, _> =
        serde_ignored::deserialize(toml::Deserializer::new(text), |p| {
            unknown.push(KeyPath::from_ignored(&p))
        });
    let mut errors: Vec<ConfigError> = unknown
        .into_iter()
        .map(|p| located(p, "unknown key".to_owned()))
        .collect();
    match parsed {
        Err(e) => {
            let offset = e.span().map(|s| s.start);
            let path = offset
                .map(|o| position::path_at(&doc, o))
                .unwrap_or_default();
            let mut message = type_message(e.message());
            if path.0.len() == 1 && message.ends_with("table, expected an array") {
                message.push_str(&format!(" (write [[{path}]], not [{path}])"));
            }
            errors.push(error(offset, path.to_string(), message));
        }
        Ok(raw) => match validate::validate(raw, base) {
            Ok(config) if errors.is_empty() => {
                let listen_is_list = doc
                    .get("server")
                    .and_then(|s| s.get("listen"))
                    .is_some_and(|l| l.is_array());
                let problems = preflight
                    .map(|o| preflight::problems(&config, listen_is_list, o))
                    .unwrap_or_default();
                if problems.is_empty() {
                    return Ok(config);
                }
                errors.extend(problems.into_iter().map(|(p, m)| located(p, m)));
            }
            Ok(_) => {}
            Err(problems) => errors.extend(problems.into_iter().map(|(p, m)| located(p, m))),
        },
    }
    // Stable: problems at the same place keep the order they were found in.
    errors.sort_by_key(|e| (e.line, e.column));
    Err(ConfigErrors(errors))
}

fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines.join("; ")
}

/// Serde's type names (`i64`, `struct RawServer`, `map`) in the words of the file format.
fn type_message(message: &str) -> String {
    let mut m = one_line(message);
    for (from, to) in [
        ("expected i64", "expected an integer"),
        ("expected a sequence", "expected an array"),
        ("expected a map", "expected a table"),
        ("invalid type: map", "invalid type: table"),
        ("invalid type: sequence", "invalid type: array"),
    ] {
        m = m.replace(from, to);
    }
    if let Some(i) = m.find("expected struct ") {
        m.truncate(i);
        m.push_str("expected a table");
    }
    m
}

#[cfg(test)]
mod tests {
    use super::validate::tests::check_cases;
    use super::*;
    use std::net::SocketAddr;
    use std::time::Duration;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn errors(text: &str) -> Vec<ConfigError> {
        parse_str(text, "t.toml").expect_err("should fail").0
    }

    /// (line, "path: message") per error.
    fn summary(text: &str) -> Vec<(Option<usize>, String)> {
        errors(text)
            .into_iter()
            .map(|e| (e.line, format!("{}: {}", e.path, e.message)))
            .collect()
    }

    #[test]
    fn every_default_applied() {
        let text = "[[upstream]]\nname = \"u\"\nendpoints = [\"127.0.0.1:9001\"]\n\n[[route]]\nupstream = \"u\"\n";
        let c = parse_str(text, "t.toml").unwrap();
        let s = &c.server;
        assert_eq!(s.listen, vec![addr("127.0.0.1:8080")]);
        assert_eq!(s.workers, 0);
        assert_eq!(s.header_timeout, Duration::from_secs(10));
        assert_eq!(s.keepalive_timeout, Duration::from_secs(60));
        assert_eq!(s.client_body_timeout, Duration::from_secs(60));
        assert_eq!(s.drain_timeout, Duration::from_secs(30));
        assert_eq!(s.max_request_line, 8 * 1024);
        assert_eq!(s.max_header_bytes, 32 * 1024);
        assert_eq!(s.max_headers, 100);
        assert!(c.admin.is_none());
        let u = &c.upstreams[0];
        assert_eq!(
            u.endpoints,
            vec![Endpoint {
                addr: addr("127.0.0.1:9001"),
                weight: 1
            }]
        );
        assert_eq!(u.balance, Balance::RoundRobin);
        assert_eq!(u.connect_timeout, Duration::from_secs(5));
        assert_eq!(u.response_timeout, Duration::from_secs(30));
        assert_eq!(u.idle_timeout, Duration::from_secs(60));
        assert_eq!(u.max_idle_per_endpoint, 64);
        assert_eq!(u.retries, 1);
        assert_eq!(u.max_fails, 1);
        assert_eq!(u.fail_timeout, Duration::from_secs(10));
        let r = &c.routes[0];
        assert_eq!(r.name, "route[0]");
        assert_eq!(r.host, None);
        assert_eq!(r.path, PathMatch::Prefix("/".into()));
        assert_eq!(r.methods, None);
        assert!(r.headers.is_empty());
        assert_eq!(r.upstream, 0);
        assert_eq!(r.rewrite, None);
        assert_eq!(r.host_rewrite, None);
        assert_eq!(r.max_body, 10 * 1024 * 1024);

        let empty = parse_str("", "t.toml").unwrap();
        assert_eq!(empty.server.listen, vec![addr("127.0.0.1:8080")]);
        assert!(empty.upstreams.is_empty() && empty.routes.is_empty());
    }

    #[test]
    fn all_independent_problems_reported_with_lines() {
        let text = r#"[server]
listen = "127.0.0.1:8080"
header_timout = "5s"

[[upstream]]
name = "users"
endpoints = ["127.0.0.1:9001"]
connect_timeout = "5 seconds"

[[route]]
path_prefix = "/a"
upstream = "users"

[[route]]
pathprefix = "/b"
upstream = "user"
"#;
        assert_eq!(
            summary(text),
            vec![
                (Some(3), "server.header_timout: unknown key".to_string()),
                (
                    Some(8),
                    "upstream[0].connect_timeout: invalid duration \"5 seconds\": unknown unit \" seconds\" \
                     (expected a number with unit ms, s, m or h, like \"10s\")"
                        .to_string()
                ),
                (Some(15), "route[1].pathprefix: unknown key".to_string()),
                (Some(16), "route[1].upstream: no upstream named \"user\"".to_string()),
            ]
        );
        let e = &errors(text)[0];
        assert_eq!(
            (e.file.as_str(), e.line, e.column),
            ("t.toml", Some(3), Some(1))
        );
    }

    #[test]
    fn display_formats() {
        let mut e = ConfigError {
            file: "gw.toml".into(),
            line: Some(3),
            column: Some(5),
            path: "route[2].upstream".into(),
            message: "no upstream named \"user\"".into(),
        };
        assert_eq!(
            e.to_string(),
            "gw.toml:3:5: route[2].upstream: no upstream named \"user\""
        );
        e.line = None;
        e.column = None;
        assert_eq!(
            e.to_string(),
            "gw.toml: route[2].upstream: no upstream named \"user\""
        );
        e.path.clear();
        assert_eq!(e.to_string(), "gw.toml: no upstream named \"user\"");
        let all = ConfigErrors(vec![e.clone(), e]);
        assert_eq!(
            all.to_string(),
            "gw.toml: no upstream named \"user\"\ngw.toml: no upstream named \"user\""
        );
    }

    #[test]
    fn unreadable_file_is_one_error() {
        let e = load_file(Path::new("/nonexistent/gw.toml")).unwrap_err().0;
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].path, "");
        assert_eq!(e[0].line, None);
        assert!(
            e[0].message
                .starts_with("cannot read /nonexistent/gw.toml: "),
            "{}",
            e[0].message
        );
    }

    #[test]
    fn load_file_reads_and_labels() {
        let path =
            std::env::temp_dir().join(format!("coregate-cfg-test-{}.toml", std::process::id()));
        std::fs::write(&path, "[server]\nworkers = -1\n").unwrap();
        let e = load_file(&path).unwrap_err().0;
        std::fs::remove_file(&path).unwrap();
        assert_eq!(e[0].file, path.display().to_string());
        assert_eq!(
            e[0].to_string(),
            format!(
                "{}:2:1: server.workers: must be between 0 and 4096, got -1",
                path.display()
            )
        );
    }

    /// Sets the variables the example's header says to export.
    pub(crate) fn set_example_env() {
        for (var, value) in [
            ("COREGATE_JWT_SECRET", "dev-only-jwt-secret"),
            ("COREGATE_BETA_KEY", "dev-only-beta-key"),
            ("COREGATE_IDP_CLIENT_SECRET", "dev-only-client-secret"),
            ("COREGATE_REDIS_PASSWORD", "dev-only"),
        ] {
            std::env::set_var(var, value);
        }
    }

    /// The example uses every key, so this is also the "full valid file" test.
    #[test]
    fn example_config_is_valid() {
        set_example_env();
        let c = parse_in(
            include_str!("../../examples/gateway.toml"),
            "examples/gateway.toml",
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let s = &c.server;
        assert_eq!(
            s.listen,
            vec![addr("127.0.0.1:8080"), addr("127.0.0.1:8081")]
        );
        assert_eq!(s.workers, 0);
        let timeouts = [
            s.header_timeout,
            s.keepalive_timeout,
            s.client_body_timeout,
            s.drain_timeout,
        ];
        assert_eq!(timeouts, [10, 60, 60, 30].map(Duration::from_secs));
        assert_eq!(
            (s.max_request_line, s.max_header_bytes, s.max_headers),
            (8192, 32768, 100)
        );
        assert_eq!(
            c.admin.as_ref().map(|a| a.listen),
            Some(addr("127.0.0.1:9901"))
        );

        assert_eq!(c.upstreams.len(), 3);
        let u = &c.upstreams[0];
        assert_eq!(u.name, "users");
        let ep = |a: &str, weight| Endpoint {
            addr: addr(a),
            weight,
        };
        assert_eq!(
            u.endpoints,
            vec![ep("127.0.0.1:9001", 1), ep("127.0.0.1:9002", 3)]
        );
        assert_eq!(u.balance, Balance::Weighted);
        let timeouts = [
            u.connect_timeout,
            u.response_timeout,
            u.idle_timeout,
            u.fail_timeout,
        ];
        assert_eq!(timeouts, [2, 15, 90, 15].map(Duration::from_secs));
        assert_eq!(
            (u.max_idle_per_endpoint, u.retries, u.max_fails),
            (32, 2, 3)
        );
        let orders = &c.upstreams[1];
        assert_eq!(
            orders.balance,
            Balance::Hash(HashKey::Header("x-user-id".into()))
        );
        assert_eq!(orders.endpoints.len(), 3);
        assert_eq!(c.upstreams[2].balance, Balance::LeastConn);
        assert_eq!(c.upstreams[2].max_fails, 0);

        let names: Vec<&str> = c.routes.iter().map(|r| r.name.as_str()).collect();
        let expected = [
            "user-by-id",
            "user-search",
            "users",
            "orders-canary",
            "orders",
            "order-intake",
            "files",
        ];
        let with_auth = [
            "static-sites",
            "admin-api",
            "partner-reports",
            "internal",
            "opaque",
            "introspected",
            "mobile-user",
            "popular",
            "dashboard",
            "catalogue",
            "live",
            "route[18]",
        ];
        assert_eq!(names, [&expected[..], &with_auth[..]].concat());
        let auth: Vec<&str> = c.auth.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            auth,
            ["users", "internal", "partners", "opaque", "introspected"]
        );
        let tiers: Vec<&str> = c.tiers.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(tiers, ["default", "free", "premium"]);
        assert_eq!((c.rate_limits.len(), c.quotas.len()), (2, 2));
        let redis = c.redis.as_ref().unwrap();
        assert_eq!(redis.password.as_deref(), Some("dev-only"));
        let r = &c.routes[8];
        assert_eq!(r.auth, Some(0));
        assert!(r.require.as_ref().is_some_and(|q| q.all));
        let r = &c.routes[9];
        assert_eq!((r.auth, r.cost), (Some(2), Some(5)));
        assert_eq!(
            (r.rate_limits.clone(), r.quotas.clone()),
            (vec![0], vec![0])
        );
        assert_eq!(
            c.access_log.sink,
            access_log::LogSink::File(
                Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/access.log")).into()
            )
        );
        let r = &c.routes[0];
        assert_eq!(r.host, Some(HostMatch::Exact("api.example.com".into())));
        let lit = |s: &str| TemplateSegment::Literal(s.into());
        let param = TemplateSegment::Param("id".into());
        assert_eq!(
            r.path,
            PathMatch::Template(vec![lit("api"), lit("users"), param])
        );
        assert_eq!(
            r.methods,
            Some(vec!["GET".into(), "PUT".into(), "DELETE".into()])
        );
        assert_eq!(r.upstream, 0);
        let rw = |from: &str, to: &str| {
            Some(PrefixRewrite {
                from: from.into(),
                to: to.into(),
            })
        };
        assert_eq!(r.rewrite, rw("/api", ""));
        assert_eq!(r.max_body, 1 << 20);
        let r = &c.routes[1];
        assert_eq!(r.path, PathMatch::Exact("/api/users/search".into()));
        assert_eq!(r.host_rewrite.as_deref(), Some("search.internal:8080"));
        assert_eq!(c.routes[2].path, PathMatch::Prefix("/api/users".into()));
        assert_eq!(c.routes[2].rewrite, rw("/api/users", "/v2/users"));
        let r = &c.routes[3];
        assert_eq!(r.headers, vec![("x-canary".to_string(), "1".to_string())]);
        assert_eq!((r.upstream, r.rewrite.clone()), (1, rw("/api", "")));
        assert_eq!(r.host_rewrite.as_deref(), Some("orders.internal"));
        let catch_all = TemplateSegment::CatchAll("key".into());
        let files = vec![
            lit("files"),
            TemplateSegment::Param("bucket".into()),
            catch_all,
        ];
        assert_eq!(
            (c.routes[6].path.clone(), c.routes[6].max_body),
            (PathMatch::Template(files), 0)
        );
        let r = &c.routes[7];
        assert_eq!(
            r.host,
            Some(HostMatch::Suffix(".static.example.com".into()))
        );
        assert_eq!(
            (r.path.clone(), r.upstream, r.max_body),
            (PathMatch::Prefix("/".into()), 2, 1024)
        );
        assert_eq!(c.routes[18].max_body, 10 << 20);
        let live = &c.routes[17];
        assert!(live.websocket && live.tunnel_idle_timeout == std::time::Duration::from_secs(60));
        let fields = c.routes[13].response_fields.as_ref().map(|f| f.paths());
        assert_eq!(fields.unwrap(), ["id", "name", "avatar.small"]);
    }

    #[test]
    fn other_value_forms() {
        let text = "[server]\nlisten = \"[::1]:8081\"\nheader_timeout = \"1.5s\"\nmax_header_bytes = \"64KB\"\n\
                    [[upstream]]\nname = \"u\"\nendpoints = [\"127.0.0.1:1\"]\nbalance = \"p2c\"\n\
                    [[route]]\nhost = \"API.Example.com\"\nmethods = [\"get\"]\nupstream = \"u\"\n";
        let c = parse_str(text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.server.listen, vec![addr("[::1]:8081")]);
        assert_eq!(c.server.header_timeout, Duration::from_millis(1500));
        assert_eq!(c.server.max_header_bytes, 64_000);
        assert_eq!(c.upstreams[0].balance, Balance::P2c);
        assert_eq!(
            c.routes[0].host,
            Some(HostMatch::Exact("api.example.com".into()))
        );
        assert_eq!(c.routes[0].methods, Some(vec!["GET".to_string()]));
    }

    #[test]
    fn upstream_and_server_values() {
        check_cases(&[
            (
                "[[upstream]]\nname = \"v\"\nendpoints = [{ addr = \"127.0.0.1:1\", weight = 0 }, { weight = 2 }, \"127.0.0.1:0\", \"127.0.0.1:1\"]",
                &[
                    "upstream[1].endpoints[0].weight: must be between 1 and 1000, got 0",
                    "upstream[1].endpoints[1].addr: missing (expected an address like \"127.0.0.1:9001\")",
                    "upstream[1].endpoints[2]: port 0 is not a valid endpoint port",
                    "upstream[1].endpoints[3]: duplicate endpoint 127.0.0.1:1",
                ],
            ),
            ("[[upstream]]\nname = \"v\"\nendpoints = []", &["upstream[1].endpoints: empty list (expected at least one endpoint)"]),
            (
                "[[upstream]]\nname = \"v\"\nendpoints = [\"127.0.0.1:1\"]\nretries = 11\nmax_fails = -1\nidle_timeout = \"0s\"",
                &[
                    "upstream[1].retries: must be between 0 and 10, got 11",
                    "upstream[1].max_fails: must be between 0 and 4294967295, got -1",
                    "upstream[1].idle_timeout: must be greater than 0",
                ],
            ),
            (
                "[server]\nlisten = []\nworkers = 5000\nmax_headers = 0\nmax_header_bytes = 0\nheader_timeout = 5\n",
                &[
                    "server.listen: empty list (expected at least one address)",
                    "server.workers: must be between 0 and 4096, got 5000",
                    "server.max_headers: must be between 1 and 128, got 0",
                    "server.max_header_bytes: must be at least 1",
                    "server.header_timeout: missing unit in 5 (expected a string like \"5s\"; units ms, s, m or h)",
                ],
            ),
            ("[admin]\nlisten = \"127.0.0.1:8080\"\n", &["admin.listen: 127.0.0.1:8080 is also a server.listen address"]),
            ("[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n", &[]),
            ("[admin]\nlisten = \"x\"\n", &["admin.listen: invalid address \"x\" (expected ip:port, [v6]:port or host:port)"]),
            ("[server]\nlisten = \"127.0.0.1:0\"\ndrain_timeout = \"0s\"\n[[upstream]]\nname = \"l\"\nendpoints = [\"localhost:9000\"]", &[]),
        ]);
    }
}
