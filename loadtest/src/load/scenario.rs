//! What to send: the target (`Target`: address, Host header) and the request mix (`Plan`).
//! A plan comes from the command line (one fixed request) or a TOML scenario file (weighted
//! request templates with `{rand:A..B}` / `{user}` placeholders, optional JWT minting per user).
//! Everything is parsed and validated once at start (tokens minted there too); each connection then
//! owns a `Renderer` that writes requests into its reusable buffer without allocating.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

/// Where the load goes.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// `host[:port]` as written in the URL, for the Host header.
    pub host: String,
    /// Path and query from the URL ("/" when absent).
    pub path: String,
}

/// Parse `http://host[:port][/path]` and resolve the host.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("bad URL {url:?}: only http://host:port/path is supported"))?;
    let (host, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if host.is_empty() || host.contains('@') || host.contains(char::is_whitespace) {
        return Err(format!("bad URL {url:?}: missing or invalid host"));
    }
    let with_port = if host.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']')) {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    // parsed once when the load generator starts (not the gateway's workers)
    #[allow(clippy::disallowed_methods)]
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("bad URL {url:?}: cannot resolve {with_port}: {e}"))?
        .next()
        .ok_or_else(|| format!("bad URL {url:?}: {with_port} resolves to nothing"))?;
    Ok(Target {
        addr,
        host: host.to_string(),
        path,
    })
}

/// A piece of a template string.
#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Lit(String),
    Rand(u64, u64),
    User,
}

fn push_lit(out: &mut Vec<Seg>, l: &str) {
    if l.is_empty() {
        return;
    }
    match out.last_mut() {
        Some(Seg::Lit(prev)) => prev.push_str(l),
        _ => out.push(Seg::Lit(l.to_string())),
    }
}

/// Split `s` into literals and `{rand:A..B}` / `{user}` placeholders; other braces stay literal.
fn parse_template(s: &str, what: &str) -> Result<Vec<Seg>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('{') {
        let tail = &rest[i + 1..];
        let close = tail.find('}');
        let seg = match close.map(|j| &tail[..j]) {
            Some("user") => Some(Seg::User),
            Some(inner) if inner.starts_with("rand:") => {
                let bad = || {
                    format!("{what}: bad placeholder {{{inner}}}: want {{rand:A..B}} with A <= B")
                };
                let (a, b) = inner["rand:".len()..].split_once("..").ok_or_else(bad)?;
                let a: u64 = a.trim().parse().map_err(|_| bad())?;
                let b: u64 = b.trim().parse().map_err(|_| bad())?;
                if a > b {
                    return Err(bad());
                }
                Some(Seg::Rand(a, b))
            }
            _ => None,
        };
        match (seg, close) {
            (Some(seg), Some(j)) => {
                push_lit(&mut out, &rest[..i]);
                out.push(seg);
                rest = &tail[j + 1..];
            }
            _ => {
                push_lit(&mut out, &rest[..=i]);
                rest = tail;
            }
        }
    }
    push_lit(&mut out, rest);
    Ok(out)
}

/// One kind of request in the mix.
#[derive(Debug, Clone)]
struct Template {
    method: String,
    path: Vec<Seg>,
    headers: Vec<(String, Vec<Seg>)>,
    body: Option<Vec<Seg>>,
}

/// The validated request mix shared (read-only) by all connections.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: Target,
    /// What the report calls the target (URL or scenario file).
    pub label: String,
    templates: Vec<Template>,
    /// Cumulative weights, same order as `templates`.
    cumulative: Vec<u64>,
    users: u64,
    /// Pre-rendered `Authorization: Bearer ...` values per user (index = user - 1).
    tokens: Option<Vec<String>>,
}

/// The command-line pieces a plan needs.
pub struct CliRequest<'a> {
    pub url: Option<&'a str>,
    pub method: &'a str,
    pub headers: &'a [String],
    pub body: Option<String>,
}

fn split_header(h: &str) -> Result<(String, String), String> {
    let (n, v) = h
        .split_once(':')
        .ok_or_else(|| format!("bad header {h:?}: want \"Name: value\""))?;
    let n = n.trim();
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_graphic()) || v.contains(['\r', '\n']) {
        return Err(format!("bad header {h:?}"));
    }
    Ok((n.to_string(), v.trim().to_string()))
}

fn check_method(m: &str) -> Result<(), String> {
    if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(format!("bad method {m:?}"));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    target: Option<String>,
    #[serde(default)]
    request: Vec<RequestSpec>,
    jwt: Option<JwtSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestSpec {
    #[serde(default = "one")]
    weight: u64,
    #[serde(default = "get")]
    method: String,
    #[serde(default = "slash")]
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JwtSpec {
    #[serde(default = "hs256")]
    alg: String,
    key: Option<String>,
    key_file: Option<String>,
    #[serde(default = "thousand")]
    users: u64,
    issuer: Option<String>,
    audience: Option<String>,
    ttl: Option<String>,
    #[serde(default)]
    claims: toml::Table,
}

fn one() -> u64 {
    1
}
fn thousand() -> u64 {
    1000
}
fn get() -> String {
    "GET".into()
}
fn slash() -> String {
    "/".into()
}
fn hs256() -> String {
    "HS256".into()
}

impl Plan {
    /// One fixed request from the command line.
    pub fn from_cli(cli: &CliRequest) -> Result<Plan, String> {
        let url = cli
            .url
            .ok_or("missing URL (give one, or a --scenario with `target`)")?;
        let target = parse_url(url)?;
        check_method(cli.method)?;
        let headers = cli
            .headers
            .iter()
            .map(|h| split_header(h).map(|(n, v)| (n, vec![Seg::Lit(v)])))
            .collect::<Result<_, _>>()?;
        let t = Template {
            method: cli.method.to_string(),
            path: vec![Seg::Lit(target.path.clone())],
            headers,
            body: cli.body.clone().map(|b| vec![Seg::Lit(b)]),
        };
        Ok(Plan {
            label: url.to_string(),
            target,
            templates: vec![t],
            cumulative: vec![1],
            users: 1,
            tokens: None,
        })
    }

    /// A scenario file; `cli.url` (when given) overrides its `target`, `cli.headers` apply to all.
    pub fn from_scenario(file: &Path, cli: &CliRequest) -> Result<Plan, String> {
        let name = file.display();
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read scenario {name}: {e}"))?;
        let sc: ScenarioFile = toml::from_str(&text)
            .map_err(|e| format!("invalid scenario {name}: {}", e.message()))?;
        let url = cli
            .url
            .map(str::to_string)
            .or(sc.target)
            .ok_or_else(|| format!("invalid scenario {name}: no `target` and no URL given"))?;
        let target = parse_url(&url).map_err(|e| format!("invalid scenario {name}: {e}"))?;
        if sc.request.is_empty() {
            return Err(format!("invalid scenario {name}: no [[request]] entries"));
        }
        let base = target.path.trim_end_matches('/').to_string();
        let global: Vec<(String, String)> = cli
            .headers
            .iter()
            .map(|h| split_header(h))
            .collect::<Result<_, _>>()?;
        let (mut templates, mut cumulative, mut total) = (Vec::new(), Vec::new(), 0u64);
        for (i, r) in sc.request.iter().enumerate() {
            let what = format!("invalid scenario {name}: request {}", i + 1);
            check_method(&r.method).map_err(|e| format!("{what}: {e}"))?;
            if !r.path.starts_with('/') {
                return Err(format!("{what}: path {:?} must start with '/'", r.path));
            }
            if r.weight == 0 {
                return Err(format!("{what}: weight must be at least 1"));
            }
            let mut pairs = global.clone();
            pairs.extend(r.headers.iter().map(|(n, v)| (n.clone(), v.clone())));
            let mut headers = Vec::with_capacity(pairs.len());
            for (n, v) in &pairs {
                split_header(&format!("{n}: {v}")).map_err(|e| format!("{what}: {e}"))?;
                headers.push((n.clone(), parse_template(v, &what)?));
            }
            total += r.weight;
            cumulative.push(total);
            templates.push(Template {
                method: r.method.clone(),
                path: parse_template(&format!("{base}{}", r.path), &what)?,
                headers,
                body: r
                    .body
                    .as_deref()
                    .map(|b| parse_template(b, &what))
                    .transpose()?,
            });
        }
        let (users, tokens) = match &sc.jwt {
            Some(j) => {
                let dir = file.parent().unwrap_or(Path::new("."));
                (
                    j.users,
                    Some(
                        mint_tokens(j, dir)
                            .map_err(|e| format!("invalid scenario {name}: jwt: {e}"))?,
                    ),
                )
            }
            None => (1000, None),
        };
        Ok(Plan {
            label: url,
            target,
            templates,
            cumulative,
            users,
            tokens,
        })
    }
}

fn mint_tokens(j: &JwtSpec, dir: &Path) -> Result<Vec<String>, String> {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    if j.users == 0 || j.users > 1_000_000 {
        return Err("users must be in 1..=1000000".into());
    }
    let (alg, key) = match j.alg.as_str() {
        "HS256" => {
            let k = j.key.as_deref().ok_or("HS256 needs `key`")?;
            (Algorithm::HS256, EncodingKey::from_secret(k.as_bytes()))
        }
        "RS256" => {
            let f = j.key_file.as_deref().ok_or("RS256 needs `key_file`")?;
            let p = dir.join(f);
            let pem = std::fs::read(&p)
                .map_err(|e| format!("cannot read key_file {}: {e}", p.display()))?;
            (
                Algorithm::RS256,
                EncodingKey::from_rsa_pem(&pem)
                    .map_err(|e| format!("key_file {}: {e}", p.display()))?,
            )
        }
        other => return Err(format!("unsupported alg {other:?} (HS256 or RS256)")),
    };
    let ttl = match &j.ttl {
        Some(t) => super::parse_duration(t).map_err(|e| format!("ttl: {e}"))?,
        None => Duration::from_secs(3600),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let header = Header::new(alg);
    let mut base = serde_json::Map::new();
    for (k, v) in &j.claims {
        base.insert(
            k.clone(),
            serde_json::to_value(v).map_err(|e| format!("claim {k}: {e}"))?,
        );
    }
    if let Some(i) = &j.issuer {
        base.insert("iss".into(), i.clone().into());
    }
    if let Some(a) = &j.audience {
        base.insert("aud".into(), a.clone().into());
    }
    base.insert("iat".into(), now.into());
    base.insert("exp".into(), (now + ttl.as_secs()).into());
    let mut out = Vec::with_capacity(j.users as usize);
    for u in 1..=j.users {
        let mut claims = base.clone();
        claims.insert("sub".into(), format!("user-{u}").into());
        let tok = encode(&header, &claims, &key).map_err(|e| format!("cannot sign: {e}"))?;
        out.push(format!("Bearer {tok}"));
    }
    Ok(out)
}

/// Per-connection request writer: a small PRNG and a scratch buffer for bodies.
pub struct Renderer {
    rng: u64,
    body: Vec<u8>,
}

impl Renderer {
    pub fn new(seed: u64) -> Renderer {
        Renderer {
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            body: Vec::with_capacity(256),
        }
    }

    fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n <= 1 {
            0
        } else {
            ((self.next() as u128 * n as u128) >> 64) as u64
        }
    }

    fn put(&mut self, segs: &[Seg], user: u64, out: &mut Vec<u8>) {
        for s in segs {
            match s {
                Seg::Lit(l) => out.extend_from_slice(l.as_bytes()),
                Seg::Rand(a, b) => {
                    let v = a + self.below(b - a + 1);
                    push_u64(out, v);
                }
                Seg::User => {
                    out.extend_from_slice(b"user-");
                    push_u64(out, user);
                }
            }
        }
    }

    /// Append one request of `plan` to `out`; returns true when it is a HEAD request.
    pub fn render(&mut self, plan: &Plan, out: &mut Vec<u8>) -> bool {
        let total = *plan.cumulative.last().unwrap_or(&1);
        let pick = self.below(total);
        let idx = plan.cumulative.iter().position(|&c| pick < c).unwrap_or(0);
        let t = &plan.templates[idx];
        let user = 1 + self.below(plan.users);
        let mut body = std::mem::take(&mut self.body);
        body.clear();
        if let Some(b) = &t.body {
            self.put(b, user, &mut body);
        }
        out.extend_from_slice(t.method.as_bytes());
        out.push(b' ');
        self.put(&t.path, user, out);
        out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        out.extend_from_slice(plan.target.host.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (n, v) in &t.headers {
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            self.put(v, user, out);
            out.extend_from_slice(b"\r\n");
        }
        if let Some(tokens) = &plan.tokens {
            out.extend_from_slice(b"Authorization: ");
            out.extend_from_slice(tokens[(user - 1) as usize].as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if t.body.is_some() {
            out.extend_from_slice(b"Content-Length: ");
            push_u64(out, body.len() as u64);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&body);
        self.body = body;
        t.method.eq_ignore_ascii_case("HEAD")
    }
}

fn push_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Describe a plan in one line (for the report's target field when a scenario is used).
pub fn describe(plan: &Plan) -> String {
    let mut s = plan.label.clone();
    if plan.templates.len() > 1 || plan.tokens.is_some() {
        let _ = write!(s, " ({} request kinds", plan.templates.len());
        if plan.tokens.is_some() {
            let _ = write!(s, ", JWT for {} users", plan.users);
        }
        s.push(')');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scenario file shown in the README (its section on scenario files), so the documented
    /// format cannot drift from the parser.
    fn readme_scenario() -> String {
        let readme = include_str!("../../../README.md");
        let section = &readme[readme
            .find("**Scenario files**")
            .expect("README documents scenario files")..];
        let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let end = start + section[start..].find("```").expect("closed block");
        section[start..end].to_string()
    }

    #[test]
    fn readme_scenario_parses_and_renders() {
        let path = std::env::temp_dir().join(format!(
            "coregate-load-readme-scenario-{}.toml",
            std::process::id()
        ));
        std::fs::write(&path, readme_scenario()).unwrap();
        let cli = CliRequest {
            url: None,
            method: "GET",
            headers: &[],
            body: None,
        };
        let plan = Plan::from_scenario(&path, &cli);
        let _ = std::fs::remove_file(&path);
        let plan = plan.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan.target.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            (plan.templates.len(), plan.cumulative.clone()),
            (2, vec![8, 10])
        );
        assert_eq!(plan.users, 1000);
        assert_eq!(plan.tokens.as_ref().map(Vec::len), Some(1000));
        let mut r = Renderer::new(7);
        let (mut gets, mut posts) = (0, 0);
        for _ in 0..200 {
            let mut out = Vec::new();
            r.render(&plan, &mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("\r\nAuthorization: Bearer "), "{text}");
            if let Some(rest) = text.strip_prefix("GET /api/users/") {
                let id: u64 = rest.split(' ').next().unwrap().parse().unwrap();
                assert!((1..=1000).contains(&id) && text.contains("\r\nx-tenant: t"));
                gets += 1;
            } else {
                assert!(text.starts_with("POST /api/orders HTTP/1.1\r\n"), "{text}");
                let body = text.split("\r\n\r\n").nth(1).unwrap();
                let v: serde_json::Value = serde_json::from_str(body).unwrap();
                assert!(v["user"].as_str().unwrap().starts_with("user-"), "{body}");
                assert!((1..=50).contains(&v["item"].as_u64().unwrap()), "{body}");
                posts += 1;
            }
        }
        assert!(gets > posts && posts > 0, "weights 8:2, got {gets}:{posts}");
    }
}
