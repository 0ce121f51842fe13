//! RESP2 wire format: the request encoder and an incremental, bounded reply parser.
//!
//! Owns: turning command arguments into a RESP array of bulk strings, and turning bytes read from
//! Redis into [`Value`]s.
//!
//! Key parts: [`parse`] looks at the unconsumed front of a connection's reusable read buffer and
//! returns `Ok(None)` until a whole reply is there, then the reply and how many bytes it used; the
//! caller advances its offset and reads more only when asked to. Nothing is copied until a reply is
//! complete, so a reply split over many reads costs one header re-scan per read, never a copy.
//!
//! Errors: malformed input is an `Err(&'static str)` naming the rule it broke; the caller drops the
//! connection (the stream is out of sync). A `-ERR ...` reply is not malformed: it parses as a
//! [`Reply`] of `Err(message)`, and an error nested inside an array makes the whole reply that
//! error (the rest of the array is still consumed, so the connection stays usable).
//!
//! Bounds (never panics, never allocates from an unchecked length): bulk strings up to
//! [`MAX_BULK`], arrays up to [`MAX_ARRAY_LEN`] elements and [`MAX_DEPTH`] levels, status and error
//! lines up to [`MAX_LINE`] bytes.

/// Largest bulk string accepted: Redis' own `proto-max-bulk-len` default.
pub const MAX_BULK: usize = 512 * 1024 * 1024;
/// Deepest array nesting accepted; the commands this client sends reply at most two levels deep.
pub const MAX_DEPTH: usize = 8;
/// Most elements in one array: far above any reply we ask for, low enough that a corrupt length
/// is caught before the buffer grows to hold it.
pub const MAX_ARRAY_LEN: usize = 1 << 24;
/// Longest `+` or `-` line (Lua error messages quote the script, so allow some room).
pub const MAX_LINE: usize = 64 * 1024;
/// Longest `:`, `$` or `*` line: a sign and 19 digits, with slack.
const MAX_NUM_LINE: usize = 32;
/// Preallocation cap for arrays: the declared length is only trusted as far as the bytes arrive.
const ARRAY_PREALLOC: usize = 64;

/// One RESP2 reply value (an error reply is the `Err` side of [`Reply`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `$-1` or `*-1`: the key or element does not exist.
    Nil,
    /// `:n`.
    Int(i64),
    /// `$n` binary-safe string.
    Bulk(Vec<u8>),
    /// `+text` status line, such as `OK` or `PONG`.
    Simple(String),
    /// `*n` array of values.
    Array(Vec<Value>),
}

impl Value {
    /// The integer of an `Int` reply.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The bytes of a `Bulk` reply or the text of a `Simple` one.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(b) => Some(b),
            Value::Simple(s) => Some(s.as_bytes()),
            _ => None,
        }
    }
}

/// A whole reply: a value, or the message of an error reply (without the leading `-`).
pub type Reply = Result<Value, String>;

/// Parses one reply from the front of `buf`: `Ok(None)` when more bytes are needed, else the reply
/// and the number of bytes it used.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, &'static str> {
    match parse_at(buf, 0, 0)? {
        Some((Item::Val(v), end)) => Ok(Some((Ok(v), end))),
        Some((Item::Err(e), end)) => Ok(Some((Err(e), end))),
        None => Ok(None),
    }
}

/// A parsed element: a value, or an error reply's message.
enum Item {
    Val(Value),
    Err(String),
}

/// `Ok(None)` is "incomplete"; `Some((item, end))` gives the position after the item.
type Step = Result<Option<(Item, usize)>, &'static str>;

fn parse_at(buf: &[u8], pos: usize, depth: usize) -> Step {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let body = pos + 1;
    match kind {
        b'+' | b'-' => {
            let Some((line, end)) = line(buf, body, MAX_LINE)? else {
                return Ok(None);
            };
            let text = std::str::from_utf8(line).map_err(|_| "status line is not UTF-8")?;
            let item = if kind == b'+' {
                Item::Val(Value::Simple(text.to_owned()))
            } else {
                Item::Err(text.to_owned())
            };
            Ok(Some((item, end)))
        }
        b':' => {
            let Some((line, end)) = line(buf, body, MAX_NUM_LINE)? else {
                return Ok(None);
            };
            Ok(Some((Item::Val(Value::Int(parse_int(line)?)), end)))
        }
        b'$' => {
            let Some((line, start)) = line(buf, body, MAX_NUM_LINE)? else {
                return Ok(None);
            };
            let Some(len) = length(parse_int(line)?, MAX_BULK, "bulk length above limit")? else {
                return Ok(Some((Item::Val(Value::Nil), start)));
            };
            let end = start + len;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err("bulk string not followed by CRLF");
            }
            Ok(Some((
                Item::Val(Value::Bulk(buf[start..end].to_vec())),
                end + 2,
            )))
        }
        b'*' => {
            let Some((line, mut at)) = line(buf, body, MAX_NUM_LINE)? else {
                return Ok(None);
            };
            let Some(len) = length(parse_int(line)?, MAX_ARRAY_LEN, "array length above limit")?
            else {
                return Ok(Some((Item::Val(Value::Nil), at)));
            };
            if depth + 1 > MAX_DEPTH {
                return Err("arrays nested too deep");
            }
            let mut items = Vec::with_capacity(len.min(ARRAY_PREALLOC));
            let mut first_err = None;
            for _ in 0..len {
                let Some((item, end)) = parse_at(buf, at, depth + 1)? else {
                    return Ok(None);
                };
                at = end;
                match item {
                    Item::Val(v) => items.push(v),
                    Item::Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            let item = match first_err {
                Some(e) => Item::Err(e),
                None => Item::Val(Value::Array(items)),
            };
            Ok(Some((item, at)))
        }
        _ => Err("unknown reply type byte"),
    }
}

/// The line starting at `pos` (without its CRLF) and the position after the CRLF. A line longer
/// than `max`, a bare CR or a bare LF is an error.
fn line(buf: &[u8], pos: usize, max: usize) -> Result<Option<(&[u8], usize)>, &'static str> {
    let rest = buf.get(pos..).unwrap_or_default();
    let window = &rest[..rest.len().min(max + 2)];
    let Some(lf) = memchr::memchr(b'\n', window) else {
        if rest.len() >= max + 2 {
            return Err("reply line too long");
        }
        if memchr::memchr(b'\r', window).is_some_and(|cr| cr + 1 < window.len()) {
            return Err("bare CR in reply line");
        }
        return Ok(None);
    };
    if lf == 0 || window[lf - 1] != b'\r' {
        return Err("bare LF in reply line");
    }
    let content = &window[..lf - 1];
    if memchr::memchr(b'\r', content).is_some() {
        return Err("bare CR in reply line");
    }
    Ok(Some((content, pos + lf + 1)))
}

/// A strict decimal `i64`: optional `-`, then at least one digit, nothing else.
fn parse_int(s: &[u8]) -> Result<i64, &'static str> {
    const BAD: &str = "malformed integer";
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() {
        return Err(BAD);
    }
    // Accumulate negatively so that i64::MIN parses.
    let mut acc: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(BAD);
        }
        acc = acc
            .checked_mul(10)
            .and_then(|a| a.checked_sub(i64::from(d - b'0')))
            .ok_or(BAD)?;
    }
    if neg {
        Ok(acc)
    } else {
        acc.checked_neg().ok_or(BAD)
    }
}

/// A declared length: `-1` is nil (`None`), other negatives are errors and so are lengths above
/// `max` (reported as `too_long`).
fn length(n: i64, max: usize, too_long: &'static str) -> Result<Option<usize>, &'static str> {
    if n == -1 {
        return Ok(None);
    }
    match usize::try_from(n) {
        Ok(len) if len <= max => Ok(Some(len)),
        Ok(_) => Err(too_long),
        Err(_) => Err("negative length"),
    }
}

/// Appends `*n\r\n`: the header of a command with `n` arguments.
pub fn array_header(out: &mut Vec<u8>, n: usize) {
    out.push(b'*');
    push_u64(out, n as u64);
    out.extend_from_slice(b"\r\n");
}

/// Appends one bulk-string argument.
pub fn bulk(out: &mut Vec<u8>, arg: &[u8]) {
    out.push(b'$');
    push_u64(out, arg.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(arg);
    out.extend_from_slice(b"\r\n");
}

/// Appends a signed integer argument as a bulk string.
pub fn bulk_i64(out: &mut Vec<u8>, n: i64) {
    bulk(out, itoa::Buffer::new().format(n).as_bytes());
}

/// Appends an unsigned integer argument as a bulk string.
pub fn bulk_u64(out: &mut Vec<u8>, n: u64) {
    bulk(out, itoa::Buffer::new().format(n).as_bytes());
}

/// Appends a whole command: header and every argument.
pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    array_header(out, args.len());
    for a in args {
        bulk(out, a);
    }
}

fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk_v(s: &[u8]) -> Value {
        Value::Bulk(s.to_vec())
    }

    /// Every reply type, as (wire bytes, expected reply).
    fn samples() -> Vec<(Vec<u8>, Reply)> {
        let big = vec![b'\r'; 1000];
        let mut big_wire = b"$1000\r\n".to_vec();
        big_wire.extend_from_slice(&big);
        big_wire.extend_from_slice(b"\r\n");
        vec![
            (b"+OK\r\n".to_vec(), Ok(Value::Simple("OK".into()))),
            (b"+\r\n".to_vec(), Ok(Value::Simple(String::new()))),
            (
                b"-ERR unknown command\r\n".to_vec(),
                Err("ERR unknown command".into()),
            ),
            (b":0\r\n".to_vec(), Ok(Value::Int(0))),
            (b":-42\r\n".to_vec(), Ok(Value::Int(-42))),
            (
                b":9223372036854775807\r\n".to_vec(),
                Ok(Value::Int(i64::MAX)),
            ),
            (
                b":-9223372036854775808\r\n".to_vec(),
                Ok(Value::Int(i64::MIN)),
            ),
            (b"$-1\r\n".to_vec(), Ok(Value::Nil)),
            (b"$0\r\n\r\n".to_vec(), Ok(bulk_v(b""))),
            (b"$5\r\nhello\r\n".to_vec(), Ok(bulk_v(b"hello"))),
            (b"$4\r\na\r\nb\r\n".to_vec(), Ok(bulk_v(b"a\r\nb"))),
            (big_wire, Ok(Value::Bulk(big))),
            (b"*-1\r\n".to_vec(), Ok(Value::Nil)),
            (b"*0\r\n".to_vec(), Ok(Value::Array(vec![]))),
            (
                b"*3\r\n:1\r\n$1\r\nx\r\n*2\r\n+a\r\n$-1\r\n".to_vec(),
                Ok(Value::Array(vec![
                    Value::Int(1),
                    bulk_v(b"x"),
                    Value::Array(vec![Value::Simple("a".into()), Value::Nil]),
                ])),
            ),
            (
                b"*3\r\n:1\r\n-ERR inner\r\n-ERR second\r\n".to_vec(),
                Err("ERR inner".into()),
            ),
            (nested(MAX_DEPTH), Ok(nested_value(MAX_DEPTH))),
        ]
    }

    /// `depth` arrays each holding the next, the innermost holding `:7`.
    fn nested(depth: usize) -> Vec<u8> {
        let mut wire = b"*1\r\n".repeat(depth);
        wire.extend_from_slice(b":7\r\n");
        wire
    }

    fn nested_value(depth: usize) -> Value {
        (0..depth).fold(Value::Int(7), |v, _| Value::Array(vec![v]))
    }

    #[test]
    fn parses_every_reply_type() {
        for (wire, want) in samples() {
            assert_eq!(parse(&wire), Ok(Some((want, wire.len()))), "{wire:?}");
        }
    }

    #[test]
    fn split_at_every_byte_boundary() {
        for (wire, want) in samples() {
            for cut in 0..wire.len() {
                // The reusable buffer holds only the first part: incomplete, not an error.
                let mut buf = wire[..cut].to_vec();
                assert_eq!(parse(&buf), Ok(None), "cut {cut} of {wire:?}");
                buf.extend_from_slice(&wire[cut..]);
                assert_eq!(parse(&buf), Ok(Some((want.clone(), wire.len()))));
            }
        }
    }

    #[test]
    fn byte_at_a_time_stream_of_replies() {
        // All samples back to back, fed one byte per "read" into one buffer with a read offset,
        // the way a connection consumes pipelined replies.
        let all = samples();
        let stream: Vec<u8> = all.iter().flat_map(|(w, _)| w.clone()).collect();
        let mut buf = Vec::new();
        let mut start = 0;
        let mut got = Vec::new();
        for &b in &stream {
            buf.push(b);
            while let Some((reply, used)) = parse(&buf[start..]).unwrap() {
                got.push(reply);
                start += used;
            }
        }
        assert_eq!(start, buf.len());
        let want: Vec<Reply> = all.into_iter().map(|(_, r)| r).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn leaves_trailing_bytes_for_the_next_reply() {
        assert_eq!(parse(b":1\r\n:2\r\n"), Ok(Some((Ok(Value::Int(1)), 4))));
    }

    #[test]
    fn rejects_garbage() {
        let too_long_bulk = format!("${}\r\n", MAX_BULK + 1);
        let too_long_array = format!("*{}\r\n", MAX_ARRAY_LEN + 1);
        let long_line = [b"+".as_slice(), &vec![b'a'; MAX_LINE + 2]].concat();
        let cases: Vec<&[u8]> = vec![
            b"?",
            b"hello\r\n",
            b"\r\n",
            b":\r\n",
            b":-\r\n",
            b":+1\r\n",
            b": 1\r\n",
            b":12a\r\n",
            b":9223372036854775808\r\n",
            b":-9223372036854775809\r\n",
            b":99999999999999999999999\r\n",
            b"$abc\r\n",
            b"$-2\r\n",
            b"$3\r\nabcX\r\n",
            b"$3\r\nabc\n\n",
            b"$1\r\n\r\n\r\n",
            b"*-2\r\n",
            b"*1\r\n?",
            b"*2\r\n:1\r\nx",
            b"+ok\n",
            b"+o\rk\r\n",
            b"-\xff\r\n",
            too_long_bulk.as_bytes(),
            too_long_array.as_bytes(),
            &long_line,
        ];
        for c in cases {
            assert!(
                parse(c).is_err(),
                "accepted {:?}",
                String::from_utf8_lossy(c)
            );
        }
        assert_eq!(parse(&nested(MAX_DEPTH + 1)), Err("arrays nested too deep"));
        // A huge declared array is rejected from its header, before any element arrives.
        assert!(parse(b"*4294967296\r\n").is_err());
    }

    #[test]
    fn huge_declared_lengths_wait_without_allocating() {
        // Within limits but not yet arrived: incomplete, and nothing sized from the header.
        assert_eq!(parse(format!("${MAX_BULK}\r\nabc").as_bytes()), Ok(None));
        assert_eq!(
            parse(format!("*{MAX_ARRAY_LEN}\r\n:1\r\n").as_bytes()),
            Ok(None)
        );
    }

    #[test]
    fn random_and_mutated_input_never_panics() {
        // xorshift: deterministic, no dev-dependency.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet = b"+-:$*\r\n0123456789-ab";
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let buf: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let _ = parse(&buf);
        }
        for (wire, _) in samples() {
            for i in 0..wire.len() {
                let mut m = wire.clone();
                m[i] = (next() & 0xff) as u8;
                if let Ok(Some((_, used))) = parse(&m) {
                    assert!(used <= m.len());
                }
            }
        }
    }

    #[test]
    fn encodes_commands() {
        let mut out = Vec::new();
        command(&mut out, &[b"SET", b"k", b"a\r\nb"]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n");
        out.clear();
        array_header(&mut out, 3);
        bulk_i64(&mut out, -5);
        bulk_i64(&mut out, i64::MIN);
        bulk_u64(&mut out, u64::MAX);
        assert_eq!(
            out,
            b"*3\r\n$2\r\n-5\r\n$20\r\n-9223372036854775808\r\n$20\r\n18446744073709551615\r\n"
        );
    }
}
