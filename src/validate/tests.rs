//! Unit tests for problem rendering and the query and header rules (body schema tests sit in
//! `schema.rs`).

use std::collections::HashMap;

use regex::Regex;
use serde_json::Value;

use super::params::{check_headers, check_query, ParamRule, ParamType};
use super::{render_problems, Location, Problem};

fn problem(location: Location, pointer: &str, message: &str) -> Problem {
    Problem {
        location,
        pointer: pointer.to_owned(),
        message: message.to_owned(),
    }
}

/// Renders `problems` inside an error object and parses the result back.
fn rendered(problems: &[Problem]) -> (String, Value) {
    let mut out = String::from("{\"error\":\"invalid request\"");
    render_problems(problems, &mut out);
    out.push('}');
    let value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out}: {e}"));
    (out, value)
}

#[test]
fn render_escapes_strings() {
    let message = "say \"hi\"\\ then\nleave\u{1}\t";
    let problems = [
        problem(Location::Body, "/a\"b", message),
        problem(Location::Query, "/q", "x"),
        problem(Location::Header, "/x-id", "y"),
    ];
    let (text, value) = rendered(&problems);
    assert!(
        text.contains(r#""message":"say \"hi\"\\ then\nleave\u0001\t""#),
        "{text}"
    );
    assert_eq!(value["problems"][0]["in"], "body");
    assert_eq!(value["problems"][0]["pointer"], "/a\"b");
    assert_eq!(value["problems"][0]["message"], message);
    assert_eq!(value["problems"][1]["in"], "query");
    assert_eq!(value["problems"][2]["in"], "header");
    assert!(value.get("problems_omitted").is_none());
}

#[test]
fn render_caps_at_twenty() {
    let many: Vec<Problem> = (0..25)
        .map(|i| problem(Location::Body, &format!("/{i}"), "bad"))
        .collect();
    let (_, value) = rendered(&many);
    assert_eq!(value["problems"].as_array().unwrap().len(), 20);
    assert_eq!(value["problems"][19]["pointer"], "/19");
    assert_eq!(value["problems_omitted"], 5);
    let (_, value) = rendered(&many[..20]);
    assert_eq!(value["problems"].as_array().unwrap().len(), 20);
    assert!(value.get("problems_omitted").is_none());
    let mut out = String::new();
    render_problems(&[], &mut out);
    assert_eq!(out, r#","problems":[]"#);
}

fn rule(name: &str, kind: ParamType) -> ParamRule {
    ParamRule::new(name, kind)
}

/// `(pointer, message)` of every problem the query gives.
fn query(rules: &[ParamRule], query: &str) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    check_query(rules, query.as_bytes(), &mut problems);
    assert!(problems.iter().all(|p| p.location == Location::Query));
    problems
        .into_iter()
        .map(|p| (p.pointer, p.message))
        .collect()
}

fn one(pointer: &str, message: &str) -> Vec<(String, String)> {
    vec![(pointer.to_owned(), message.to_owned())]
}

#[test]
fn query_required_and_types() {
    let mut id = rule("id", ParamType::Integer);
    id.required = true;
    let rules = [id, rule("tag", ParamType::String)];
    assert_eq!(
        query(&rules, ""),
        one("/id", "required query parameter is missing")
    );
    assert_eq!(
        query(&rules, "tag=x&ids=1"),
        one("/id", "required query parameter is missing")
    );
    assert!(query(&rules, "id=-12&tag=").is_empty());
    assert!(query(&rules, "&&id=%2B7&").is_empty());
    // `+` decodes to a space.
    for bad in ["id=1.5", "id=abc", "id=", "id", "id=1%20", "id=-", "id=+7"] {
        assert_eq!(
            query(&rules, bad),
            one("/id", "must be an integer"),
            "{bad}"
        );
    }
    let number = [rule("n", ParamType::Number)];
    for good in ["n=1", "n=-0.5", "n=1e3", "n=.5"] {
        assert!(query(&number, good).is_empty(), "{good}");
    }
    for bad in ["n=inf", "n=NaN", "n=abc", "n=", "n=1e999"] {
        assert_eq!(query(&number, bad), one("/n", "must be a number"), "{bad}");
    }
    let boolean = [rule("b", ParamType::Boolean)];
    assert!(query(&boolean, "b=true&b=false").is_empty());
    for bad in ["b=True", "b=1", "b=", "b=yes"] {
        assert_eq!(
            query(&boolean, bad),
            one("/b", "must be true or false"),
            "{bad}"
        );
    }
}

#[test]
fn query_constraints() {
    let mut page = rule("page", ParamType::Integer);
    page.min = Some(1.0);
    page.max = Some(10.0);
    let rules = [page];
    assert!(query(&rules, "page=1&page=10").is_empty());
    assert_eq!(query(&rules, "page=0"), one("/page", "must be at least 1"));
    assert_eq!(query(&rules, "page=11"), one("/page", "must be at most 10"));
    let mut ratio = rule("r", ParamType::Number);
    ratio.min = Some(0.5);
    assert_eq!(query(&[ratio], "r=0.25"), one("/r", "must be at least 0.5"));

    let mut name = rule("name", ParamType::String);
    name.pattern = Some(Regex::new("^[a-z]+$").unwrap());
    name.max_length = Some(4);
    let rules = [name];
    assert!(query(&rules, "name=abcd").is_empty());
    assert_eq!(
        query(&rules, "name=abc1"),
        one("/name", "does not match pattern ^[a-z]+$")
    );
    assert_eq!(
        query(&rules, "name=abcde"),
        one("/name", "longer than 4 bytes")
    );
    // Length is counted after decoding.
    assert!(query(&rules, "name=%61%62%63%64").is_empty());
    // Unanchored patterns match anywhere.
    let mut loose = rule("l", ParamType::String);
    loose.pattern = Some(Regex::new("[a-z]").unwrap());
    assert!(query(&[loose], "l=1a2").is_empty());

    let mut mode = rule("mode", ParamType::String);
    mode.values = Some(vec!["a".to_owned(), "b".to_owned()]);
    let rules = [mode];
    assert!(query(&rules, "mode=a&mode=b").is_empty());
    assert_eq!(
        query(&rules, "mode=c"),
        one("/mode", "must be one of: a, b")
    );
    assert_eq!(
        query(&rules, "mode=A"),
        one("/mode", "must be one of: a, b")
    );
}

#[test]
fn query_repeated_params_checked_each_time() {
    let rules = [rule("a", ParamType::Integer)];
    assert!(query(&rules, "a=1&a=2").is_empty());
    assert_eq!(
        query(&rules, "a=1&a=x&a=2"),
        one("/a", "must be an integer")
    );
    assert_eq!(query(&rules, "a=x&a=y").len(), 2);
}

#[test]
fn query_percent_decoding() {
    let mut text = rule("q x", ParamType::String);
    text.values = Some(vec!["a b+c".to_owned()]);
    let rules = [text];
    for good in ["q+x=a+b%2Bc", "q%20x=a%20b%2bc", "%71%20x=a b%2Bc"] {
        assert!(query(&rules, good).is_empty(), "{good}");
    }
    // Invalid escapes stay literal.
    let mut literal = rule("p", ParamType::String);
    literal.values = Some(vec!["%zz%4".to_owned(), "100%".to_owned()]);
    assert!(query(&[literal], "p=%zz%4&p=100%").is_empty());
    // Decoded bytes must be UTF-8; escaped multibyte characters are fine.
    let rules = [rule("s", ParamType::String)];
    assert!(query(&rules, "s=%C3%A9").is_empty());
    assert_eq!(query(&rules, "s=%FF"), one("/s", "is not valid UTF-8"));
    // Long escaped values decode on the heap.
    let mut long = rule("long", ParamType::String);
    long.max_length = Some(100);
    let rules = [long];
    assert!(query(&rules, &format!("long={}", "%61".repeat(100))).is_empty());
    assert_eq!(
        query(&rules, &format!("long={}", "%61".repeat(101))),
        one("/long", "longer than 100 bytes")
    );
    // Names are escaped in pointers.
    let rules = [rule("a/b~", ParamType::Integer)];
    assert_eq!(
        query(&rules, "a%2Fb~=x"),
        one("/a~1b~0", "must be an integer")
    );
}

#[test]
fn query_many_rules() {
    let mut rules: Vec<ParamRule> = (0..70)
        .map(|i| rule(&format!("p{i}"), ParamType::Integer))
        .collect();
    for i in [3, 66, 68, 69] {
        rules[i].required = true;
    }
    let problems = query(&rules, "p3=1&p%369=2&p68=x");
    assert_eq!(
        problems,
        [
            ("/p68".to_owned(), "must be an integer".to_owned()),
            (
                "/p66".to_owned(),
                "required query parameter is missing".to_owned()
            ),
        ]
    );
}

/// `(pointer, message)` of every problem the headers give; names are looked up lowercased.
fn headers(rules: &[ParamRule], given: &[(&str, &[u8])]) -> Vec<(String, String)> {
    let mut map: HashMap<String, Vec<&[u8]>> = HashMap::new();
    for (name, value) in given {
        map.entry(name.to_ascii_lowercase())
            .or_default()
            .push(value);
    }
    let mut lookup = |name: &str, visit: &mut dyn FnMut(&[u8])| {
        for value in map.get(&name.to_ascii_lowercase()).into_iter().flatten() {
            visit(value);
        }
    };
    let mut problems = Vec::new();
    check_headers(rules, &mut lookup, &mut problems);
    assert!(problems.iter().all(|p| p.location == Location::Header));
    problems
        .into_iter()
        .map(|p| (p.pointer, p.message))
        .collect()
}

#[test]
fn header_checks() {
    let mut tenant = rule("X-Tenant", ParamType::String);
    tenant.required = true;
    tenant.pattern = Some(Regex::new("^[a-z0-9-]+$").unwrap());
    let mut version = rule("X-Version", ParamType::Integer);
    version.max = Some(3.0);
    let rules = [tenant, version];
    assert_eq!(
        headers(&rules, &[]),
        one("/x-tenant", "required header is missing")
    );
    assert!(headers(&rules, &[("x-tenant", b"acme"), ("X-VERSION", b" 2\t")]).is_empty());
    assert_eq!(
        headers(
            &rules,
            &[
                ("x-tenant", b"acme"),
                ("x-version", b"2"),
                ("x-version", b"4")
            ]
        ),
        one("/x-version", "must be at most 3")
    );
    assert_eq!(
        headers(&rules, &[("x-tenant", b"Acme Corp")]),
        one("/x-tenant", "does not match pattern ^[a-z0-9-]+$")
    );
    assert_eq!(
        headers(&rules, &[("x-tenant", b"acme"), ("x-version", b"\xff")]),
        one("/x-version", "is not valid UTF-8")
    );
    // Header values are not percent-decoded.
    let mut raw = rule("x-raw", ParamType::String);
    raw.values = Some(vec!["a%20b".to_owned()]);
    assert!(headers(&[raw], &[("x-raw", b"a%20b")]).is_empty());
}
