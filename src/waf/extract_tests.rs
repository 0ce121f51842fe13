//! Unit tests of `extract.rs`: every splitter and decoder, on well-formed, hostile and truncated input.

use super::*;

type Args = Vec<(Source, String, String)>;

fn collect(run: impl FnOnce(&mut dyn FnMut(Source, &[u8], &[u8]))) -> Args {
    let mut got = Vec::new();
    run(&mut |src, name, value| {
        got.push((
            src,
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ))
    });
    got
}

fn arg(src: Source, name: &str, value: &str) -> (Source, String, String) {
    (src, name.to_owned(), value.to_owned())
}

fn decode(v: &str, plus: bool) -> (String, bool) {
    let mut out = Vec::new();
    let changed = percent_decode(v.as_bytes(), plus, &mut out);
    (String::from_utf8_lossy(&out).into_owned(), changed)
}

#[test]
fn percent_decoding() {
    assert_eq!(decode("a+b%20c", true), ("a b c".into(), true));
    assert_eq!(decode("a+b", false), ("a+b".into(), false));
    assert_eq!(decode("plain", true), ("plain".into(), false));
    // Decoded once only.
    assert_eq!(decode("%252e%252e", false), ("%2e%2e".into(), true));
    assert_eq!(decode("%u0027%U003c", false), ("'<".into(), true));
    assert_eq!(decode("%uD83D%uDE00", false), ("\u{1F600}".into(), true));
    assert_eq!(decode("%uD83Dx", false), ("\u{FFFD}x".into(), true));
    // Invalid escapes stay literal.
    assert_eq!(decode("%zz%4%u12%", false), ("%zz%4%u12%".into(), false));
    assert_eq!(decode("%zz%41", false), ("%zzA".into(), true));
}

#[test]
fn query_and_form() {
    let mut s = Scratch::default();
    let got = collect(|f| query(b"q=a+b%27&&flag&x%5By%5D=%252e%252e;c=d", &mut s, f));
    assert_eq!(
        got,
        vec![
            arg(Source::QueryName, "q", "q"),
            arg(Source::QueryValue, "q", "a b'"),
            arg(Source::QueryName, "flag", "flag"),
            arg(Source::QueryValue, "flag", ""),
            arg(Source::QueryName, "x[y]", "x[y]"),
            arg(Source::QueryValue, "x[y]", "%2e%2e;c=d"),
        ]
    );
    let got = collect(|f| form(b"u=%u0027+OR+1=1&p=%zz", &mut s, f));
    assert_eq!(
        got,
        vec![
            arg(Source::BodyName, "u", "u"),
            arg(Source::BodyValue, "u", "' OR 1=1"),
            arg(Source::BodyName, "p", "p"),
            arg(Source::BodyValue, "p", "%zz"),
        ]
    );
}

#[test]
fn cookie_pairs() {
    let got = collect(|f| cookies(b" a=1;b=\"x y\" ; ;c; d = %27 ;e=\"", f));
    assert_eq!(
        got,
        vec![
            arg(Source::CookieName, "a", "a"),
            arg(Source::CookieValue, "a", "1"),
            arg(Source::CookieName, "b", "b"),
            arg(Source::CookieValue, "b", "x y"),
            arg(Source::CookieName, "c", "c"),
            arg(Source::CookieValue, "c", ""),
            arg(Source::CookieName, "d", "d"),
            arg(Source::CookieValue, "d", "%27"),
            arg(Source::CookieName, "e", "e"),
            arg(Source::CookieValue, "e", "\""),
        ]
    );
}

#[test]
fn boundary_param() {
    assert_eq!(
        boundary(b"multipart/form-data; boundary=----abc123"),
        Some(&b"----abc123"[..])
    );
    assert_eq!(
        boundary(b"multipart/form-data; charset=utf-8; BOUNDARY=\"a;b c\"; x=y"),
        Some(&b"a;b c"[..])
    );
    assert_eq!(
        boundary(b"multipart/form-data;boundary=x;"),
        Some(&b"x"[..])
    );
    assert_eq!(boundary(b"multipart/form-data"), None);
    assert_eq!(boundary(b"multipart/form-data; boundary="), None);
    assert_eq!(boundary(b"multipart/form-data; boundary=\"open"), None);
    assert_eq!(boundary(b"text/plain; xboundary=1"), None);
}

const MP: &[u8] = b"preamble\r\n--XyZ\r\n\
Content-Disposition: form-data; name=\"note\"\r\n\
\r\n\
1' OR '1'='1\r\nsecond line\r\n\
--XyZ\r\n\
content-disposition: FORM-DATA; Name=upload; FILENAME=\"../../etc/passwd\"\r\n\
Content-Type: application/octet-stream\r\n\
\r\n\
FILE BYTES <script>\r\n\
--XyZ\r\n\
Content-Disposition: form-data; name=\"empty\"\r\n\
\r\n\
\r\n\
--XyZ--\r\nepilogue";

#[test]
fn multipart_parts() {
    let got = collect(|f| multipart(MP, b"XyZ", f).unwrap());
    assert_eq!(
        got,
        vec![
            arg(Source::BodyName, "note", "note"),
            arg(Source::BodyValue, "note", "1' OR '1'='1\r\nsecond line"),
            arg(Source::BodyName, "upload", "upload"),
            arg(Source::Filename, "upload", "../../etc/passwd"),
            arg(Source::BodyName, "empty", "empty"),
            arg(Source::BodyValue, "empty", ""),
        ]
    );
    // LF-only line endings.
    let lf = b"--b\nContent-Disposition: form-data; name=a\n\nv\n--b--\n";
    let got = collect(|f| multipart(lf, b"b", f).unwrap());
    assert_eq!(
        got,
        vec![
            arg(Source::BodyName, "a", "a"),
            arg(Source::BodyValue, "a", "v")
        ]
    );
}

#[test]
fn multipart_truncated() {
    // Cut inside the file part's headers: the first part is complete and reported.
    let cut = memchr::memmem::find(MP, b"Content-Type").unwrap();
    let got = collect(|f| multipart(&MP[..cut], b"XyZ", f).unwrap());
    assert_eq!(
        got,
        vec![
            arg(Source::BodyName, "note", "note"),
            arg(Source::BodyValue, "note", "1' OR '1'='1\r\nsecond line"),
        ]
    );
    // Cut inside a value: its prefix is still reported.
    let cut = memchr::memmem::find(MP, b"second").unwrap() + 2;
    let got = collect(|f| multipart(&MP[..cut], b"XyZ", f).unwrap());
    assert_eq!(
        got,
        vec![
            arg(Source::BodyName, "note", "note"),
            arg(Source::BodyValue, "note", "1' OR '1'='1\r\nse"),
        ]
    );
    // Every prefix is handled without panicking.
    for end in 0..MP.len() {
        let _ = multipart(&MP[..end], b"XyZ", &mut |_, _, _| {});
    }
}

#[test]
fn multipart_malformed() {
    let nop = &mut |_: Source, _: &[u8], _: &[u8]| {};
    assert_eq!(
        multipart(b"no boundary here", b"b", nop),
        Err(Malformed::Multipart)
    );
    assert_eq!(multipart(MP, b"", nop), Err(Malformed::Multipart));
    let bad_header = b"--b\r\nnot a header\r\n\r\nv\r\n--b--";
    assert_eq!(multipart(bad_header, b"b", nop), Err(Malformed::Multipart));
    let no_disposition = b"--b\r\nContent-Type: text/plain\r\n\r\nv\r\n--b--";
    assert_eq!(
        multipart(no_disposition, b"b", nop),
        Err(Malformed::Multipart)
    );
    let dup = b"--b\r\nContent-Disposition: form-data; name=a; name=b\r\n\r\nv\r\n--b--";
    assert_eq!(multipart(dup, b"b", nop), Err(Malformed::Multipart));
    let open_quote = b"--b\r\nContent-Disposition: form-data; name=\"a\r\n\r\nv\r\n--b--";
    assert_eq!(multipart(open_quote, b"b", nop), Err(Malformed::Multipart));
}

fn run_json(body: &str) -> (Args, Result<(), Malformed>) {
    let mut s = Scratch::default();
    let mut result = Ok(());
    let got = collect(|f| result = json(body.as_bytes(), &mut s, f));
    (got, result)
}

#[test]
fn json_escapes() {
    let (got, result) =
        run_json(r#" {"q" : "\u0027 OR 1=1 -- \"x\"\\\/\n", "k\u00e9y": "\ud83d\ude00"} "#);
    assert_eq!(result, Ok(()));
    assert_eq!(
        got,
        vec![
            arg(Source::BodyName, "q", "q"),
            arg(Source::BodyValue, "q", "' OR 1=1 -- \"x\"\\/\n"),
            arg(Source::BodyName, "k\u{e9}y", "k\u{e9}y"),
            arg(Source::BodyValue, "k\u{e9}y", "\u{1F600}"),
        ]
    );
}

#[test]
fn json_paths() {
    let (got, result) = run_json(
        r#"{"user":{"tags":["a",["b",{"c":"d"}]],"n":1.5e3,"ok":true,"z":null},"top":[]}"#,
    );
    assert_eq!(result, Ok(()));
    assert_eq!(
        got,
        vec![
            arg(Source::BodyName, "user", "user"),
            arg(Source::BodyName, "user.tags", "tags"),
            arg(Source::BodyValue, "user.tags.0", "a"),
            arg(Source::BodyValue, "user.tags.1.0", "b"),
            arg(Source::BodyName, "user.tags.1.1.c", "c"),
            arg(Source::BodyValue, "user.tags.1.1.c", "d"),
            arg(Source::BodyName, "user.n", "n"),
            arg(Source::BodyName, "user.ok", "ok"),
            arg(Source::BodyName, "user.z", "z"),
            arg(Source::BodyName, "top", "top"),
        ]
    );
    let (got, result) = run_json(r#"["x", "y"]"#);
    assert_eq!(result, Ok(()));
    assert_eq!(
        got,
        vec![
            arg(Source::BodyValue, "0", "x"),
            arg(Source::BodyValue, "1", "y")
        ]
    );
    let (got, _) = run_json(r#""top""#);
    assert_eq!(got, vec![arg(Source::BodyValue, "", "top")]);
}

#[test]
fn json_invalid_prefix_keeps_earlier_leaves() {
    let (got, result) = run_json(r#"{"a":"1' UNION SELECT","b":["x","trunc"#);
    assert_eq!(result, Err(Malformed::Json));
    assert_eq!(
        got,
        vec![
            arg(Source::BodyName, "a", "a"),
            arg(Source::BodyValue, "a", "1' UNION SELECT"),
            arg(Source::BodyName, "b", "b"),
            arg(Source::BodyValue, "b.0", "x"),
        ]
    );
    for bad in [
        "",
        "{",
        "{\"a\"}",
        "[1,]",
        "01",
        "1.",
        "tru",
        "\"\\x\"",
        "\"a\nb\"",
        "{} x",
        "\"\\u12\"",
    ] {
        assert_eq!(run_json(bad).1, Err(Malformed::Json), "{bad:?}");
    }
    // A lone surrogate is reported as U+FFFD, then flagged.
    let (got, result) = run_json(r#"["\ud800x"]"#);
    assert_eq!(result, Err(Malformed::Json));
    assert_eq!(got, vec![arg(Source::BodyValue, "0", "\u{FFFD}x")]);
    // Invalid UTF-8 is reported as is, then flagged.
    let mut got = Vec::new();
    let result = json(b"[\"a\xffb\"]", &mut Scratch::default(), &mut |_, _, v| {
        got.push(v.to_vec())
    });
    assert_eq!(
        (result, got),
        (Err(Malformed::Json), vec![b"a\xffb".to_vec()])
    );
    // Every prefix is handled without panicking.
    let doc = r#"{"a":[{"b":"\ud83d\ude00\"x"},-1.5E+2,false,null],"c":"d"}"#;
    assert_eq!(run_json(doc).1, Ok(()));
    for end in 0..doc.len() {
        let _ = json(
            &doc.as_bytes()[..end],
            &mut Scratch::default(),
            &mut |_, _, _| {},
        );
    }
}

#[test]
fn json_depth_limit() {
    let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
    assert_eq!(run_json(&ok).1, Ok(()));
    let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
    assert_eq!(run_json(&deep).1, Err(Malformed::TooDeep));
    let deep_objects = "{\"a\":".repeat(100_000);
    assert_eq!(run_json(&deep_objects).1, Err(Malformed::TooDeep));
}

#[test]
fn scratch_is_reused() {
    let mut s = Scratch::default();
    query(b"a=%41%42", &mut s, &mut |_, _, _| {});
    json(br#"{"k\n":"v\n"}"#, &mut s, &mut |_, _, _| {}).unwrap();
    let caps = (s.name.capacity(), s.value.capacity(), s.path.capacity());
    query(b"a=%41%42", &mut s, &mut |_, _, _| {});
    json(br#"{"k\n":"v\n"}"#, &mut s, &mut |_, _, _| {}).unwrap();
    assert_eq!(
        caps,
        (s.name.capacity(), s.value.capacity(), s.path.capacity())
    );
}
