use crate::config::*;

pub(crate) const UP: &str = "[[upstream]]\nname = \"u\"\nendpoints = [\"127.0.0.1:9001\"]\n";
pub(crate) const R: &str = "[[route]]\nupstream = \"u\"\n";

/// "path: message" for each error of `UP` + `text`; empty when valid.
pub(crate) fn errs(text: &str) -> Vec<String> {
    match parse_str(&format!("{UP}{text}"), "t.toml") {
        Ok(_) => Vec::new(),
        Err(e) => {
            e.0.iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect()
        }
    }
}

/// Each case: a snippet appended to `UP`, and the errors it must produce (all of them).
pub(crate) fn check_cases(cases: &[(&str, &[&str])]) {
    for (text, expected) in cases {
        assert_eq!(errs(text), *expected, "for:\n{text}");
    }
}

#[test]
fn route_paths_must_be_normal() {
    let h =
        "[[upstream]]\nname = \"u\"\nendpoints = [\"127.0.0.1:1\"]\n[[route]]\nupstream = \"u\"\n";
    for (route, want) in [
        ("path = \"/a//b\"", "route[0].path: \"/a//b\" can never match: requests are matched on normalised paths (write \"/a/b\")"),
        ("path_prefix = \"/%61pi\"", "route[0].path_prefix: \"/%61pi\" can never match: requests are matched on normalised paths (write \"/api\")"),
        ("path_prefix = \"/a/../b\"", "route[0].path_prefix: \"/a/../b\" can never match: requests are matched on normalised paths (write \"/b\")"),
        ("path = \"/a%2Fb\"", "route[0].path: \"/a%2Fb\" can never match: every request path like it gets 400 (encoded slash in path)"),
    ] {
        let text = format!("{h}{route}\n");
        let errs = parse_str(&text, "t.toml").unwrap_err().to_string();
        assert!(errs.contains(want), "{errs}");
    }
    let keep = format!(
        "[server]\npath_normalization = {{ escaped_slashes = \"keep\" }}\n{h}path = \"/a%2Fb\"\n"
    );
    assert!(parse_str(&keep, "t.toml").is_ok());
}

#[test]
fn hash_key_rules() {
    let h = "[[upstream]]\nname = \"h\"\nendpoints = [\"127.0.0.1:1\"]\n";
    let balance = |extra: &str| {
        let c = parse_str(&format!("{h}{extra}"), "t").unwrap_or_else(|e| panic!("{e}"));
        c.upstreams[0].balance.clone()
    };
    assert_eq!(
        balance("balance = \"hash\"\nhash_key = \"client_ip\""),
        Balance::Hash(HashKey::ClientIp)
    );
    let by_header = balance("balance = \"hash\"\nhash_key = \"header:X-Tenant\"");
    assert_eq!(by_header, Balance::Hash(HashKey::Header("x-tenant".into())));
    check_cases(&[
        (&format!("{h}balance = \"hash\""), &["upstream[1].hash_key: missing (expected \"header:<name>\", \"client_ip\" or \"identity\", required by balance = \"hash\")"]),
        (&format!("{h}balance = \"p2c\"\nhash_key = \"client_ip\""), &["upstream[1].hash_key: only allowed with balance = \"hash\""]),
        (&format!("{h}hash_key = \"client_ip\""), &["upstream[1].hash_key: only allowed with balance = \"hash\""]),
        (&format!("{h}balance = \"hash\"\nhash_key = \"cookie:x\""), &["upstream[1].hash_key: invalid hash_key \"cookie:x\" (expected \"header:<name>\", \"client_ip\" or \"identity\")"]),
        (&format!("{h}balance = \"hash\"\nhash_key = \"header:x y\""), &["upstream[1].hash_key: invalid header name \"x y\" (expected an HTTP token like x-user-id)"]),
        (&format!("{h}balance = \"hash\"\nhash_key = \"header:\""), &["upstream[1].hash_key: invalid header name \"\" (expected an HTTP token like x-user-id)"]),
        (&format!("{h}balance = \"rr\""), &["upstream[1].balance: unknown policy \"rr\" (expected round_robin, weighted, least_conn, p2c or hash)"]),
    ]);
}

#[test]
fn duplicate_names() {
    check_cases(&[
        (UP, &["upstream[1].name: duplicate name \"u\" (also upstream[0])"]),
        (&format!("{R}name = \"r\"\npath = \"/a\"\n{R}name = \"r\""), &["route[1].name: duplicate name \"r\" (also route[0])"]),
        (
            "[[upstream]]\nname = \"a b\"\nendpoints = [\"127.0.0.1:1\"]\n[[upstream]]\nendpoints = [\"127.0.0.1:1\"]\n",
            &[
                "upstream[1].name: invalid name \"a b\" (expected letters, digits, _, . or -)",
                "upstream[2].name: missing (expected a unique name like \"users\")",
            ],
        ),
        (&format!("{R}name = \"\""), &["route[0].name: invalid name \"\" (expected letters, digits, _, . or -)"]),
    ]);
}

#[test]
fn duplicate_route_conditions() {
    check_cases(&[
        (&format!("{R}{R}"), &["route[1]: same match as route[0]"]),
        // Method order, method case and template parameter names do not make routes differ.
        (
            &format!("{R}path = \"/a\"\n{R}path_template = \"/x/{{id}}\"\nmethods = [\"GET\", \"POST\"]\n{R}path_template = \"/x/{{name}}\"\nmethods = [\"post\", \"get\"]\n"),
            &["route[2]: same match as route[1]"],
        ),
        // Header names compare case-insensitively; every later duplicate names the first.
        (
            &format!("{R}headers = {{ X-A = \"1\" }}\n{R}headers = {{ x-a = \"1\" }}\n{R}headers = {{ x-A = \"1\" }}\n"),
            &["route[1]: same match as route[0]", "route[2]: same match as route[0]"],
        ),
    ]);
    for (a, b) in [
        ("path = \"/a\"", "path_prefix = \"/a\""),
        ("host = \"a.com\"", "host = \"*.a.com\""),
        ("methods = [\"GET\"]", "methods = [\"GET\", \"HEAD\"]"),
        ("headers = { x = \"1\" }", "headers = { x = \"2\" }"),
        ("headers = { x = \"1\" }", ""),
    ] {
        assert!(errs(&format!("{R}{a}\n{R}{b}\n")).is_empty(), "{a} vs {b}");
    }
}
