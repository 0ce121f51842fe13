//! Argument extraction for the WAF: turns the attacker-controlled parts of a request into named
//! arguments, decoded the way a backend would decode them.
//!
//! This module owns the splitting and decoding only; it knows nothing about rules. The caller hands
//! it one request part at a time (the query string, a Cookie header value, or a body prefix with its
//! Content-Type) and a callback; each function walks its input once, left to right, and calls
//! `f(source, name, value)` for every argument it finds. `source` says where the argument came from
//! (rule targeting, exclusions, the log), `name` is the argument name (a dotted path for JSON) and
//! `value` the decoded value. Slices passed to the callback are only valid for that call.
//!
//! Decoding happens once (a double-encoded `%252e` becomes `%2e`, never `.`): any further
//! normalisation is the rule engine's business. When an input needs no decoding the callback gets
//! a slice of the input itself; otherwise the bytes are decoded into the caller's [`Scratch`], whose
//! buffers are cleared and refilled, so a warmed-up connection extracts without allocating.
//!
//! Every function is linear in its input and total: malformed input is either kept literally (bad
//! %-escapes) or reported as [`Malformed`] after everything before the damage has been reported, so
//! a truncated body prefix is still inspected.

/// Where an argument came from (for rule targeting, exclusions and the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Path,
    QueryName,
    QueryValue,
    HeaderValue,
    CookieName,
    CookieValue,
    BodyName,
    BodyValue,
    Filename,
}

/// The callback every extractor reports to: `f(source, name, value)`. The same type as a spelled-out
/// `&mut dyn FnMut(Source, &[u8], &[u8])` parameter; any `&mut` closure coerces to it.
pub type Sink<'a> = dyn FnMut(Source, &[u8], &[u8]) + 'a;

/// Reusable buffers (one per connection, reused across requests).
#[derive(Default)]
pub struct Scratch {
    /// Decoded argument name (or JSON object key).
    name: Vec<u8>,
    /// Decoded argument value (or JSON string leaf).
    value: Vec<u8>,
    /// Current dotted JSON path.
    path: Vec<u8>,
}

/// Why a body could not be split (the caller counts it as an anomaly; never panics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    Json,
    Multipart,
    TooDeep,
}

/// Deepest JSON nesting accepted (objects and arrays together).
const MAX_JSON_DEPTH: usize = 64;

/// Query string (after '?', without it): split on '&' (';' is not a separator), each `name=value`
/// (a piece without '=' is a name with an empty value), name and value percent-decoded once with
/// '+' as space. Calls `f(QueryName, name, name)` then `f(QueryValue, name, value)` for each piece
/// (empty pieces are skipped). Invalid %-escapes are kept literally.
pub fn query(q: &[u8], s: &mut Scratch, f: &mut Sink<'_>) {
    pairs(q, s, Source::QueryName, Source::QueryValue, f);
}

/// `application/x-www-form-urlencoded` body: same splitting and decoding as [`query`], but reports
/// `BodyName` / `BodyValue`.
pub fn form(body: &[u8], s: &mut Scratch, f: &mut Sink<'_>) {
    pairs(body, s, Source::BodyName, Source::BodyValue, f);
}

fn pairs(input: &[u8], s: &mut Scratch, name_src: Source, value_src: Source, f: &mut Sink<'_>) {
    for piece in input.split(|&b| b == b'&') {
        if piece.is_empty() {
            continue;
        }
        let (raw_name, raw_value) = match memchr::memchr(b'=', piece) {
            Some(eq) => (&piece[..eq], &piece[eq + 1..]),
            None => (piece, &b""[..]),
        };
        let name = decode_form(raw_name, &mut s.name);
        let value = decode_form(raw_value, &mut s.value);
        f(name_src, name, name);
        f(value_src, name, value);
    }
}

/// Form-decodes `raw` ('+' as space): borrows `raw` when there is nothing to decode.
fn decode_form<'a>(raw: &'a [u8], buf: &'a mut Vec<u8>) -> &'a [u8] {
    if memchr::memchr2(b'%', b'+', raw).is_none() {
        return raw;
    }
    percent_decode(raw, true, buf);
    buf
}

/// A Cookie header value: `a=1; b=2` split on ';', each piece trimmed; reports `CookieName`
/// (name, name) and `CookieValue` (name, value). Values are not percent-decoded, except that a value
/// wrapped in double quotes loses the quotes. A piece without '=' is a name with an empty value.
pub fn cookies(v: &[u8], f: &mut Sink<'_>) {
    for piece in v.split(|&b| b == b';') {
        let piece = piece.trim_ascii();
        if piece.is_empty() {
            continue;
        }
        let (name, value) = match memchr::memchr(b'=', piece) {
            Some(eq) => (piece[..eq].trim_ascii(), piece[eq + 1..].trim_ascii()),
            None => (piece, &b""[..]),
        };
        let value = match value {
            [b'"', inner @ .., b'"'] => inner,
            other => other,
        };
        f(Source::CookieName, name, name);
        f(Source::CookieValue, name, value);
    }
}

/// Extracts the `boundary` parameter from a Content-Type value (quoted or not, parameter name
/// case-insensitive). `None` when absent, empty or when the parameters are unparsable before it.
pub fn boundary(content_type: &[u8]) -> Option<&[u8]> {
    let start = memchr::memchr(b';', content_type)?;
    for param in Params::new(&content_type[start..]) {
        let (key, value) = param.ok()?;
        if key.eq_ignore_ascii_case(b"boundary") {
            return (!value.is_empty()).then_some(value);
        }
    }
    None
}

/// One `key=value` parameter, or `Err` when the parameter list is unparsable.
type Param<'a> = Result<(&'a [u8], &'a [u8]), ()>;

/// Iterator over `; key=value` parameters (RFC 7231 / RFC 6266 style). Quoted values are returned
/// without their quotes but with any backslash escapes left as they are. Yields `Err(())` once (and
/// then stops) on an unterminated quote or garbage after a quoted value.
struct Params<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Params<'a> {
    fn new(b: &'a [u8]) -> Self {
        Params { b, i: 0 }
    }

    fn fail(&mut self) -> Option<Param<'a>> {
        self.i = self.b.len();
        Some(Err(()))
    }
}

impl<'a> Iterator for Params<'a> {
    type Item = Param<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.b;
        while self.i < b.len() && (b[self.i] == b';' || b[self.i].is_ascii_whitespace()) {
            self.i += 1;
        }
        if self.i >= b.len() {
            return None;
        }
        let key_start = self.i;
        while self.i < b.len() && b[self.i] != b'=' && b[self.i] != b';' {
            self.i += 1;
        }
        let key = b[key_start..self.i].trim_ascii();
        if self.i >= b.len() || b[self.i] == b';' {
            return Some(Ok((key, &b""[..])));
        }
        self.i += 1; // '='
        while self.i < b.len() && b[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
        if b.get(self.i) != Some(&b'"') {
            let value_start = self.i;
            self.i += memchr::memchr(b';', &b[self.i..]).unwrap_or(b.len() - self.i);
            return Some(Ok((key, b[value_start..self.i].trim_ascii())));
        }
        self.i += 1; // opening quote
        let value_start = self.i;
        loop {
            match b.get(self.i) {
                None => return self.fail(),
                Some(b'\\') => self.i += 2,
                Some(b'"') => break,
                Some(_) => self.i += 1,
            }
        }
        let value = &b[value_start..self.i];
        self.i += 1; // closing quote
        while self.i < b.len() && b[self.i] != b';' {
            if !b[self.i].is_ascii_whitespace() {
                return self.fail();
            }
            self.i += 1;
        }
        Some(Ok((key, value)))
    }
}

/// `multipart/form-data` body with `boundary` (the Content-Type parameter, without the leading
/// "--"). For each part its headers are parsed (`Content-Disposition: form-data; name="x";
/// filename="y"`, quoted or unquoted parameters, names case-insensitive; `filename*` counts as a
/// filename), then `BodyName` (name, name) is reported; a part with a filename reports `Filename`
/// (name, filename) and not its content, any other part reports `BodyValue` (name, content).
///
/// A body truncated in the middle (the caller may hold only a prefix) reports what it has and
/// returns `Ok`: the last part's headers if they are complete, and its content so far (a prefix of
/// the real value is still worth inspecting). A missing first boundary, garbage after a boundary,
/// an unparsable header line, a part without Content-Disposition, or a duplicated Content-Disposition
/// or parameter (classic evasions) give `Err(Multipart)`.
pub fn multipart(body: &[u8], boundary: &[u8], f: &mut Sink<'_>) -> Result<(), Malformed> {
    if boundary.is_empty() {
        return Err(Malformed::Multipart);
    }
    let finder = memchr::memmem::Finder::new(boundary);
    let mut delim = find_delimiter(body, 0, &finder).ok_or(Malformed::Multipart)?;
    loop {
        // `delim` is the start of "--boundary"; decide whether it closes the body or opens a part.
        let mut i = delim + 2 + boundary.len();
        if body.get(i..i + 2) == Some(&b"--"[..]) {
            return Ok(());
        }
        while i < body.len() && (body[i] == b' ' || body[i] == b'\t') {
            i += 1;
        }
        match body.get(i) {
            None => return Ok(()),
            Some(b'\n') => i += 1,
            Some(b'\r') => match body.get(i + 1) {
                None => return Ok(()),
                Some(b'\n') => i += 2,
                Some(_) => return Err(Malformed::Multipart),
            },
            // "--boundary-" at the very end may be the start of the closing "--".
            Some(b'-') if i + 1 == body.len() => return Ok(()),
            Some(_) => return Err(Malformed::Multipart),
        }
        let Some((headers, content_start)) = part_headers(body, i)? else {
            return Ok(()); // truncated inside the headers
        };
        let next = find_delimiter(body, content_start, &finder);
        let content = match next {
            Some(d) => {
                // The line break before "--boundary" belongs to the delimiter.
                let mut end = d.saturating_sub(1).max(content_start);
                if end > content_start && body[end - 1] == b'\r' {
                    end -= 1;
                }
                &body[content_start..end]
            }
            None => &body[content_start..],
        };
        f(Source::BodyName, headers.name, headers.name);
        match headers.filename {
            Some(filename) => f(Source::Filename, headers.name, filename),
            None => f(Source::BodyValue, headers.name, content),
        }
        match next {
            Some(d) => delim = d,
            None => return Ok(()),
        }
    }
}

/// What a part's headers say about it.
struct PartHeaders<'a> {
    name: &'a [u8],
    filename: Option<&'a [u8]>,
}

/// Parses the part headers starting at `i`. `Ok(None)` when the body ends before the blank line;
/// otherwise the headers and where the content starts.
fn part_headers(body: &[u8], mut i: usize) -> Result<Option<(PartHeaders<'_>, usize)>, Malformed> {
    let mut disposition: Option<&[u8]> = None;
    loop {
        let Some(nl) = memchr::memchr(b'\n', &body[i..]) else {
            return Ok(None);
        };
        let line = &body[i..i + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        i += nl + 1;
        if line.is_empty() {
            break;
        }
        let colon = memchr::memchr(b':', line).ok_or(Malformed::Multipart)?;
        let name = &line[..colon];
        if name.is_empty() || name.iter().any(|b| b.is_ascii_whitespace()) {
            return Err(Malformed::Multipart);
        }
        if name.eq_ignore_ascii_case(b"content-disposition") {
            if disposition.is_some() {
                return Err(Malformed::Multipart);
            }
            disposition = Some(&line[colon + 1..]);
        }
    }
    let disposition = disposition.ok_or(Malformed::Multipart)?;
    let params_start = memchr::memchr(b';', disposition).unwrap_or(disposition.len());
    let mut name = None;
    let mut filename = None;
    for param in Params::new(&disposition[params_start..]) {
        let (key, value) = param.map_err(|()| Malformed::Multipart)?;
        let slot = if key.eq_ignore_ascii_case(b"name") {
            &mut name
        } else if key.eq_ignore_ascii_case(b"filename") || key.eq_ignore_ascii_case(b"filename*") {
            &mut filename
        } else {
            continue;
        };
        if slot.replace(value).is_some() {
            return Err(Malformed::Multipart);
        }
    }
    let headers = PartHeaders {
        name: name.unwrap_or(b""),
        filename,
    };
    Ok(Some((headers, i)))
}

/// Finds the next delimiter "--boundary" at or after `from` that starts a line (at the start of
/// the body or right after '\n'); returns the index of its first '-'.
fn find_delimiter(body: &[u8], from: usize, finder: &memchr::memmem::Finder<'_>) -> Option<usize> {
    let tail = body.get(from..)?;
    finder.find_iter(tail).map(|at| from + at).find_map(|at| {
        let d = at.checked_sub(2)?;
        let at_line_start = d == 0 || body[d - 1] == b'\n';
        (d >= from && &body[d..at] == b"--" && at_line_start).then_some(d)
    })
}

/// JSON body: walks the document and reports every object key as `BodyName` (path, key) and every
/// string leaf as `BodyValue` (path, decoded string: JSON escapes such as `\u0027` and `\"`
/// resolved, surrogate pairs joined). Numbers, booleans and null are not reported. `path` is the
/// dotted path of the member or element: object members by key, array elements by index, so
/// `{"user":{"tags":["a"]}}` reports key "user" at path `user`, key "tags" at `user.tags` and value
/// "a" at `user.tags.0`; a top-level string has the empty path.
///
/// Nesting deeper than 64 gives `Err(TooDeep)`; invalid JSON gives `Err(Json)`, but everything
/// reported before the error stays reported (a truncated prefix of a big body still gets its leading
/// leaves inspected). Strings with invalid UTF-8 or lone surrogates (which become U+FFFD) are still
/// reported, and make the result `Err(Json)` once the document has been walked.
pub fn json(body: &[u8], s: &mut Scratch, f: &mut Sink<'_>) -> Result<(), Malformed> {
    s.path.clear();
    let mut w = Walker {
        b: body,
        i: 0,
        suspect: false,
        path: &mut s.path,
        key: &mut s.name,
        value: &mut s.value,
        f,
    };
    w.ws();
    w.value(0)?;
    w.ws();
    if w.i != body.len() || w.suspect {
        return Err(Malformed::Json);
    }
    Ok(())
}

/// A decoded JSON string: a range of the input (no escapes) or the contents of a scratch buffer.
enum Str {
    Raw(usize, usize),
    Buf,
}

/// Recursive-descent JSON walker; recursion is bounded by [`MAX_JSON_DEPTH`].
struct Walker<'a, 'f> {
    b: &'a [u8],
    i: usize,
    /// Set when a string had invalid UTF-8 or a lone surrogate (reported, then flagged).
    suspect: bool,
    path: &'a mut Vec<u8>,
    key: &'a mut Vec<u8>,
    value: &'a mut Vec<u8>,
    f: &'f mut Sink<'f>,
}

impl Walker<'_, '_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), Malformed> {
        match self.b.get(self.i) {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => {
                let b = self.b;
                let v = match self.string(false)? {
                    Str::Raw(start, end) => &b[start..end],
                    Str::Buf => &self.value[..],
                };
                (self.f)(Source::BodyValue, self.path, v);
                Ok(())
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(Malformed::Json),
        }
    }

    fn object(&mut self, depth: usize) -> Result<(), Malformed> {
        if depth > MAX_JSON_DEPTH {
            return Err(Malformed::TooDeep);
        }
        self.i += 1; // '{'
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(());
        }
        let base = self.path.len();
        loop {
            if self.b.get(self.i) != Some(&b'"') {
                return Err(Malformed::Json);
            }
            let b = self.b;
            let key = match self.string(true)? {
                Str::Raw(start, end) => &b[start..end],
                Str::Buf => &self.key[..],
            };
            if base > 0 {
                self.path.push(b'.');
            }
            self.path.extend_from_slice(key);
            (self.f)(Source::BodyName, self.path, key);
            self.ws();
            if self.b.get(self.i) != Some(&b':') {
                return Err(Malformed::Json);
            }
            self.i += 1;
            self.ws();
            self.value(depth)?;
            self.path.truncate(base);
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(Malformed::Json),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), Malformed> {
        if depth > MAX_JSON_DEPTH {
            return Err(Malformed::TooDeep);
        }
        self.i += 1; // '['
        self.ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            return Ok(());
        }
        let base = self.path.len();
        let mut index: u64 = 0;
        loop {
            if base > 0 {
                self.path.push(b'.');
            }
            push_decimal(self.path, index);
            self.value(depth)?;
            self.path.truncate(base);
            index += 1;
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b']') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(Malformed::Json),
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Malformed> {
        if self.b.get(self.i..self.i + word.len()) != Some(word) {
            return Err(Malformed::Json);
        }
        self.i += word.len();
        Ok(())
    }

    fn number(&mut self) -> Result<(), Malformed> {
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match self.b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(Malformed::Json),
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if !matches!(self.b.get(self.i), Some(b'0'..=b'9')) {
                return Err(Malformed::Json);
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.b.get(self.i) {
                self.i += 1;
            }
            if !matches!(self.b.get(self.i), Some(b'0'..=b'9')) {
                return Err(Malformed::Json);
            }
            self.digits();
        }
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// Scans the string at `self.i` (on its opening quote). Without escapes the result is a range
    /// of the input; with escapes it is decoded into the key or value buffer.
    fn string(&mut self, into_key: bool) -> Result<Str, Malformed> {
        let b = self.b;
        let start = self.i + 1; // past the opening quote
        let mut i = start;
        let mut escaped = false;
        loop {
            let rest = b.get(i..).unwrap_or_default();
            let stop = memchr::memchr2(b'"', b'\\', rest).ok_or(Malformed::Json)?;
            let chunk = &rest[..stop];
            if chunk.iter().any(|&c| c < 0x20) {
                return Err(Malformed::Json);
            }
            let out = if into_key {
                &mut *self.key
            } else {
                &mut *self.value
            };
            if !escaped && rest[stop] == b'"' {
                self.i = i + stop + 1;
                if std::str::from_utf8(chunk).is_err() {
                    self.suspect = true;
                }
                return Ok(Str::Raw(start, i + stop));
            }
            if !escaped {
                out.clear();
                escaped = true;
            }
            out.extend_from_slice(chunk);
            i += stop;
            if rest[stop] == b'"' {
                self.i = i + 1;
                if std::str::from_utf8(out).is_err() {
                    self.suspect = true;
                }
                return Ok(Str::Buf);
            }
            let esc = *b.get(i + 1).ok_or(Malformed::Json)?;
            i += 2;
            let byte = match esc {
                b'"' | b'\\' | b'/' => esc,
                b'b' => 0x08,
                b'f' => 0x0c,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'u' => {
                    let unit = hex4(b, i).ok_or(Malformed::Json)?;
                    i += 4;
                    let next = match b.get(i..i + 2) {
                        Some(b"\\u") => hex4(b, i + 2),
                        _ => None,
                    };
                    let (c, pair) = utf16(unit, next);
                    if pair {
                        i += 6;
                    }
                    self.suspect |= c.is_none();
                    push_char(out, c);
                    continue;
                }
                _ => return Err(Malformed::Json),
            };
            out.push(byte);
        }
    }
}

/// Joins a UTF-16 code unit with the `next` one when they form a surrogate pair (the bool says
/// `next` was used). `None` for a lone surrogate.
fn utf16(unit: u32, next: Option<u32>) -> (Option<char>, bool) {
    match next {
        Some(low) if (0xD800..0xDC00).contains(&unit) && (0xDC00..0xE000).contains(&low) => {
            let c = char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00));
            (c, true)
        }
        _ => (char::from_u32(unit), false),
    }
}

/// Appends `c` as UTF-8, U+FFFD for `None`.
fn push_char(out: &mut Vec<u8>, c: Option<char>) {
    let c = c.unwrap_or(char::REPLACEMENT_CHARACTER);
    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Four hex digits at `b[i..i + 4]` as a UTF-16 code unit.
fn hex4(b: &[u8], i: usize) -> Option<u32> {
    let digits = b.get(i..i.checked_add(4)?)?;
    digits
        .iter()
        .try_fold(0u32, |acc, &c| Some(acc << 4 | u32::from(hex(c)?)))
}

/// Percent-decodes `v` into `out` (cleared first); with `plus`, '+' becomes a space. IIS-style
/// `%uXXXX` is decoded into UTF-8 (`%uD83D%uDE00` surrogate pairs joined, a lone surrogate becomes
/// U+FFFD). Invalid escapes are copied literally. Returns true when anything was decoded.
pub fn percent_decode(v: &[u8], plus: bool, out: &mut Vec<u8>) -> bool {
    out.clear();
    out.reserve(v.len());
    let mut decoded = false;
    let mut i = 0;
    while let Some(&c) = v.get(i) {
        if c == b'+' && plus {
            out.push(b' ');
            decoded = true;
            i += 1;
            continue;
        }
        if c != b'%' {
            // Copy the run up to the next byte that may need decoding.
            let run = if plus {
                memchr::memchr2(b'%', b'+', &v[i..])
            } else {
                memchr::memchr(b'%', &v[i..])
            };
            let end = run.map_or(v.len(), |n| i + n);
            out.extend_from_slice(&v[i..end]);
            i = end;
            continue;
        }
        let pair = v
            .get(i + 1)
            .copied()
            .and_then(hex)
            .zip(v.get(i + 2).copied().and_then(hex));
        if let Some((h, l)) = pair {
            out.push(h << 4 | l);
            decoded = true;
            i += 3;
            continue;
        }
        if let (Some(b'u' | b'U'), Some(unit)) = (v.get(i + 1), hex4(v, i + 2)) {
            i += 6;
            let next = match v.get(i..i + 2) {
                Some(b"%u" | b"%U") => hex4(v, i + 2),
                _ => None,
            };
            let (c, pair) = utf16(unit, next);
            if pair {
                i += 6;
            }
            push_char(out, c);
            decoded = true;
            continue;
        }
        out.push(c);
        i += 1;
    }
    decoded
}

#[cfg(test)]
#[path = "extract_tests.rs"]
mod tests;
