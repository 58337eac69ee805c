//! Strict JSON parsing (I-JSON, RFC 7493) and RFC 8785 canonical serialization (JCS).
//!
//! Why a hand-written parser: serde_json (the obvious crate) silently keeps the last of duplicate
//! keys and turns an integer literal that does not fit in u64/i64 into a *rounded* f64, and its
//! visitor API cannot tell `100000000000000000000` (an integer literal beyond 2^53 − 1, which must
//! be rejected: event numbers are stored exactly, never rounded) from `1e20` (a float literal,
//! which RFC 8785 accepts). No JCS crate rejects duplicates and out-of-range integer literals
//! either. So this module lexes JSON itself (RFC 8259 grammar), produces a `serde_json::Value` (so
//! the rest of the code uses the standard type), and leaves number formatting to `ryu-js`, which
//! implements ECMAScript `Number::toString` exactly.

use serde_json::{Map, Number, Value};
use std::cmp::Ordering;
use std::fmt;

/// Largest magnitude of an integer literal that is accepted: 2^53 − 1 (RFC 7493 §2.2, the
/// "safe integer" range, where every integer has exactly one IEEE-754 double).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Deepest nesting of arrays and objects accepted; deeper input is rejected rather than
/// risking the stack.
pub const MAX_DEPTH: usize = 128;

/// Why a JSON text was rejected, with the byte offset, line and column where it was noticed and
/// the path (`payload.messages[2]`) of the value being parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at line {line} column {column}{}", path_suffix(.path))]
pub struct JsonError {
    pub kind: JsonErrorKind,
    /// Byte offset in the input.
    pub offset: usize,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Path of the value where the problem is, `""` for the top level.
    pub path: String,
}

fn path_suffix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" (in {path})")
    }
}

/// A rejected literal as error messages show it: whole when short, else its first two
/// characters and its length (a card number sent as a JSON number must not come back in an
/// error body).
pub fn redact(literal: &str) -> String {
    let n = literal.chars().count();
    if n <= 8 {
        return literal.to_owned();
    }
    let head: String = literal.chars().take(2).collect();
    format!("{head}… ({n} characters)")
}

/// The kinds of problems the strict parser reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonErrorKind {
    #[error("input is not valid UTF-8")]
    InvalidUtf8,
    #[error("unexpected end of input")]
    UnexpectedEnd,
    #[error("unexpected character {0:?}")]
    UnexpectedChar(char),
    #[error("trailing characters after the JSON value")]
    TrailingCharacters,
    #[error("duplicate key {0:?}")]
    DuplicateKey(String),
    #[error("integer {} is outside ±(2^53−1) and cannot be represented exactly", redact(.0))]
    IntegerOutOfRange(String),
    #[error("number {} is not a finite IEEE-754 double", redact(.0))]
    NumberOutOfRange(String),
    #[error("number {} is too small for an IEEE-754 double: it would be stored as 0", redact(.0))]
    NumberUnderflow(String),
    #[error("invalid number \"{}\"", redact(.0))]
    InvalidNumber(String),
    #[error("invalid escape sequence")]
    InvalidEscape,
    #[error("lone surrogate \\u{0:04x} in string")]
    LoneSurrogate(u16),
    #[error("unescaped control character U+{0:04X} in string")]
    ControlCharacter(u32),
    #[error("nesting deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// A failure to write canonical JSON: only values built in code (not parsed by [`parse`]) can hit
/// these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    #[error("number {0} is not finite")]
    NonFinite(String),
    #[error("integer {0} is outside ±(2^53−1)")]
    IntegerOutOfRange(String),
}

/// Parses a JSON text strictly: valid UTF-8, RFC 8259 grammar, no duplicate keys, no lone
/// surrogates, integer literals within ±(2^53−1), finite numbers, depth ≤ [`MAX_DEPTH`].
pub fn parse(input: &[u8]) -> Result<Value, JsonError> {
    let text = match std::str::from_utf8(input) {
        Ok(t) => t,
        Err(e) => {
            let offset = e.valid_up_to();
            return Err(make_error(
                input,
                offset,
                JsonErrorKind::InvalidUtf8,
                Vec::new(),
            ));
        }
    };
    let mut p = Parser {
        text,
        s: text.as_bytes(),
        pos: 0,
    };
    let result = p.skip_ws().and_then(|()| p.value(0)).and_then(|v| {
        p.skip_ws()?;
        if p.pos < p.s.len() {
            return Err(p.fail(JsonErrorKind::TrailingCharacters));
        }
        Ok(v)
    });
    result.map_err(|e| make_error(input, e.offset, e.kind, e.path))
}

/// Parses `input` and returns its canonical (RFC 8785) bytes.
pub fn canonicalize(input: &[u8]) -> Result<Vec<u8>, JsonError> {
    let value = parse(input)?;
    // A parsed value always canonicalizes: the parser enforces the same number rules.
    Ok(to_canonical_vec(&value).unwrap_or_default())
}

/// Serializes a value as RFC 8785 canonical JSON.
pub fn to_canonical_vec(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out)?;
    Ok(out)
}

/// Appends the RFC 8785 canonical form of `value` to `out`.
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            // RFC 8785 §3.2.3: sorted by the UTF-16 code units of the raw key. A map's own order
            // is not relied on (serde_json's `preserve_order` feature changes it), only checked:
            // usually it is that order already, and nothing needs collecting or sorting.
            let mut keys = map.keys();
            let mut prev = keys.next();
            let in_order = keys.all(|k| {
                let ok = prev.is_none_or(|p| utf16_cmp(p, k) == Ordering::Less);
                prev = Some(k);
                ok
            });
            let mut write = |i: usize, k: &str, v: &Value| {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                write_canonical(v, out)
            };
            if in_order {
                for (i, (k, v)) in map.iter().enumerate() {
                    write(i, k, v)?;
                }
            } else {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| utf16_cmp(a.0, b.0));
                for (i, (k, v)) in entries.into_iter().enumerate() {
                    write(i, k, v)?;
                }
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// Compares two strings by their UTF-16 code units (RFC 8785 §3.2.3).
pub fn utf16_cmp(a: &str, b: &str) -> Ordering {
    // Byte order equals UTF-16 order unless a character at or above U+E000 meets a supplementary
    // character; only then is the slower comparison needed.
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let common = ab.iter().zip(bb).take_while(|(x, y)| x == y).count();
    match (ab.get(common), bb.get(common)) {
        (Some(&x), Some(&y)) if x >= 0xEE || y >= 0xEE => a.encode_utf16().cmp(b.encode_utf16()),
        _ => ab.cmp(bb),
    }
}

fn write_number(n: &Number, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    if let Some(u) = n.as_u64() {
        if u > MAX_SAFE_INTEGER {
            return Err(CanonicalError::IntegerOutOfRange(u.to_string()));
        }
        out.extend_from_slice(u.to_string().as_bytes());
    } else if let Some(i) = n.as_i64() {
        if i.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(CanonicalError::IntegerOutOfRange(i.to_string()));
        }
        out.extend_from_slice(i.to_string().as_bytes());
    } else {
        let f = n.as_f64().unwrap_or(f64::NAN);
        if !f.is_finite() {
            return Err(CanonicalError::NonFinite(n.to_string()));
        }
        write_f64(f, out);
    }
    Ok(())
}

/// ECMAScript `Number::toString` of a finite double (RFC 8785 §3.2.2.3).
fn write_f64(f: f64, out: &mut Vec<u8>) {
    if f == 0.0 {
        // Both +0 and −0 serialize as "0".
        out.push(b'0');
        return;
    }
    let mut buf = ryu_js::Buffer::new();
    out.extend_from_slice(buf.format_finite(f).as_bytes());
}

/// Writes a string with the escaping of ECMAScript `JSON.stringify` (RFC 8785 §3.2.2.2): the
/// canonical form of `Value::String(s)`, without building one.
pub fn write_string(s: &str, out: &mut Vec<u8>) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    // Copy runs of bytes that need no escaping in one go; only `"`, `\\` and controls do.
    loop {
        let i = start + plain_run(&bytes[start..]);
        out.extend_from_slice(&bytes[start..i]);
        let Some(&b) = bytes.get(i) else {
            break;
        };
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x09 => out.extend_from_slice(b"\\t"),
            0x0A => out.extend_from_slice(b"\\n"),
            0x0C => out.extend_from_slice(b"\\f"),
            0x0D => out.extend_from_slice(b"\\r"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xF) as usize]);
            }
        }
        start = i + 1;
    }
    out.push(b'"');
}

/// How many leading bytes of `bytes` are string content that needs no escaping: no `"`, no
/// `\\`, no control character (< 0x20). Strings are most of an event's bytes and this is the
/// loop they go through when parsed and when canonicalized, so it looks at eight bytes at a
/// time (the classic "has a byte less than n" word test, exact for whether any byte matches).
fn plain_run(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let has_below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGH;
    let special = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
    let mut i = 0;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let w = u64::from_ne_bytes(chunk.try_into().unwrap_or([0; 8]));
        let hit = has_below(w, 0x20)
            | has_below(w ^ (ONES * u64::from(b'"')), 1)
            | has_below(w ^ (ONES * u64::from(b'\\')), 1);
        if hit != 0 {
            break;
        }
        i += 8;
    }
    i + bytes[i..]
        .iter()
        .position(|&b| special(b))
        .unwrap_or(bytes.len() - i)
}

/// Builds the public error: line and column from the offset, path from the segments collected
/// while unwinding (innermost first).
fn make_error(input: &[u8], offset: usize, kind: JsonErrorKind, mut path: Vec<Seg>) -> JsonError {
    let offset = offset.min(input.len());
    let before = &input[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    path.reverse();
    JsonError {
        kind,
        offset,
        line,
        column,
        path: render_path(&path),
    }
}

/// One step of a path into a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Renders a path as `a.b[2].c`; keys that are not plain identifiers are quoted (`a["x.y"]`).
pub fn render_path(segs: &[Seg]) -> String {
    let mut s = String::new();
    for seg in segs {
        match seg {
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
            Seg::Key(k) => {
                let plain = !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !plain {
                    s.push_str(&format!("[{}]", serde_json::Value::String(k.clone())));
                } else {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    s.push_str(k);
                }
            }
        }
    }
    s
}

struct Fail {
    offset: usize,
    kind: JsonErrorKind,
    /// Innermost segment first; reversed when the error is made public.
    path: Vec<Seg>,
}

struct Parser<'a> {
    /// The input, known to be UTF-8 ...
    text: &'a str,
    /// ... and its bytes.
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn fail(&self, kind: JsonErrorKind) -> Fail {
        Fail {
            offset: self.pos,
            kind,
            path: Vec::new(),
        }
    }

    fn fail_here(&self) -> Fail {
        match self.peek_char() {
            Some(c) => self.fail(JsonErrorKind::UnexpectedChar(c)),
            None => self.fail(JsonErrorKind::UnexpectedEnd),
        }
    }

    fn peek_char(&self) -> Option<char> {
        // `s` came from a &str, and `pos` is always on a character boundary here.
        std::str::from_utf8(&self.s[self.pos..])
            .ok()
            .and_then(|t| t.chars().next())
    }

    fn skip_ws(&mut self) -> Result<(), Fail> {
        while let Some(&b) = self.s.get(self.pos) {
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                self.pos += 1;
            } else {
                break;
            }
        }
        Ok(())
    }

    fn expect_literal(&mut self, lit: &[u8], v: Value) -> Result<Value, Fail> {
        if self.s[self.pos..].starts_with(lit) {
            self.pos += lit.len();
            Ok(v)
        } else {
            // Point at the first character that differs.
            let same = self.s[self.pos..]
                .iter()
                .zip(lit)
                .take_while(|(a, b)| a == b)
                .count();
            self.pos += same;
            Err(self.fail_here())
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, Fail> {
        match self.s.get(self.pos) {
            None => Err(self.fail(JsonErrorKind::UnexpectedEnd)),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(Value::String),
            Some(b't') => self.expect_literal(b"true", Value::Bool(true)),
            Some(b'f') => self.expect_literal(b"false", Value::Bool(false)),
            Some(b'n') => self.expect_literal(b"null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.fail_here()),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, Fail> {
        if depth > MAX_DEPTH {
            return Err(self.fail(JsonErrorKind::TooDeep));
        }
        self.pos += 1; // '{'
        let mut map = Map::new();
        self.skip_ws()?;
        if self.s.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return Ok(Value::Object(map));
        }
        loop {
            if self.s.get(self.pos) != Some(&b'"') {
                return Err(self.fail_here());
            }
            let key_start = self.pos;
            let key = self.string()?;
            if map.contains_key(&key) {
                let mut f = Fail {
                    offset: key_start,
                    kind: JsonErrorKind::DuplicateKey(key.clone()),
                    path: Vec::new(),
                };
                f.path.push(Seg::Key(key));
                return Err(f);
            }
            self.skip_ws()?;
            if self.s.get(self.pos) != Some(&b':') {
                return Err(self.fail_here());
            }
            self.pos += 1;
            self.skip_ws()?;
            let v = match self.value(depth) {
                Ok(v) => v,
                Err(mut f) => {
                    f.path.push(Seg::Key(key));
                    return Err(f);
                }
            };
            map.insert(key, v);
            self.skip_ws()?;
            match self.s.get(self.pos) {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws()?;
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(map));
                }
                _ => return Err(self.fail_here()),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, Fail> {
        if depth > MAX_DEPTH {
            return Err(self.fail(JsonErrorKind::TooDeep));
        }
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.skip_ws()?;
        if self.s.get(self.pos) == Some(&b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            match self.value(depth) {
                Ok(v) => items.push(v),
                Err(mut f) => {
                    f.path.push(Seg::Index(items.len()));
                    return Err(f);
                }
            }
            self.skip_ws()?;
            match self.s.get(self.pos) {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws()?;
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.fail_here()),
            }
        }
    }

    fn number(&mut self) -> Result<Value, Fail> {
        let start = self.pos;
        let s = self.s;
        let mut i = self.pos;
        if s.get(i) == Some(&b'-') {
            i += 1;
        }
        let int_start = i;
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let int_digits = i - int_start;
        let mut is_integer = true;
        let bad = |i: usize| {
            let lit = String::from_utf8_lossy(&s[start..i.min(s.len())]).into_owned();
            Fail {
                offset: start,
                kind: JsonErrorKind::InvalidNumber(lit),
                path: Vec::new(),
            }
        };
        // RFC 8259: int = zero / ( digit1-9 *DIGIT )
        if int_digits == 0 || (int_digits > 1 && s[int_start] == b'0') {
            return Err(bad(i));
        }
        if s.get(i) == Some(&b'.') {
            is_integer = false;
            i += 1;
            let frac_start = i;
            while s.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == frac_start {
                return Err(bad(i));
            }
        }
        if matches!(s.get(i), Some(b'e' | b'E')) {
            is_integer = false;
            i += 1;
            if matches!(s.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let exp_start = i;
            while s.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == exp_start {
                return Err(bad(i));
            }
        }
        self.pos = i;
        // The slice is ASCII digits and signs only.
        let lit = String::from_utf8_lossy(&s[start..i]).into_owned();
        if is_integer {
            let out_of_range = || Fail {
                offset: start,
                kind: JsonErrorKind::IntegerOutOfRange(lit.clone()),
                path: Vec::new(),
            };
            let digits = &lit[(int_start - start)..];
            let magnitude = digits.parse::<u64>().unwrap_or(u64::MAX);
            if magnitude > MAX_SAFE_INTEGER {
                // Beyond ±(2^53−1) an integer literal is accepted only if it is exactly the
                // canonical (ECMAScript) text of a double, like the 295147905179352830000 that
                // RFC 8785 itself produces for 2^68: then canonicalization gives back the same
                // digits and nothing is rounded. Anything else would change: rejected.
                let f: f64 = lit.parse().map_err(|_| out_of_range())?;
                let mut canonical = Vec::new();
                write_f64(f, &mut canonical);
                if f.is_finite()
                    && canonical == lit.as_bytes()
                    && let Some(n) = Number::from_f64(f)
                {
                    return Ok(Value::Number(n));
                }
                return Err(out_of_range());
            }
            // `magnitude` ≤ 2^53 − 1, so the cast is exact.
            let n = if int_start > start {
                -(magnitude as i64)
            } else {
                magnitude as i64
            };
            return Ok(Value::Number(Number::from(n)));
        }
        let f: f64 = lit.parse().map_err(|_| bad(i))?;
        // A literal with a non-zero digit that parses to zero underflowed: refused, not rounded
        // to 0 (DESIGN: numbers that cannot be represented are rejected).
        let mantissa = lit.split(['e', 'E']).next().unwrap_or_default();
        if f == 0.0 && mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
            return Err(Fail {
                offset: start,
                kind: JsonErrorKind::NumberUnderflow(lit),
                path: Vec::new(),
            });
        }
        match Number::from_f64(f) {
            Some(n) if f.is_finite() => Ok(Value::Number(n)),
            _ => Err(Fail {
                offset: start,
                kind: JsonErrorKind::NumberOutOfRange(lit),
                path: Vec::new(),
            }),
        }
    }

    fn hex4(&mut self) -> Result<u16, Fail> {
        let Some(digits) = self.s.get(self.pos..self.pos + 4) else {
            self.pos = self.s.len();
            return Err(self.fail(JsonErrorKind::UnexpectedEnd));
        };
        let mut v: u16 = 0;
        for &d in digits {
            let x = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(self.fail(JsonErrorKind::InvalidEscape)),
            };
            v = (v << 4) | u16::from(x);
        }
        self.pos += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, Fail> {
        self.pos += 1; // opening quote
        let mut out = String::new();
        let s = self.s;
        loop {
            let run_start = self.pos;
            self.pos += plain_run(&s[self.pos..]);
            // The run lies between ASCII delimiters of a UTF-8 text: on character boundaries.
            out.push_str(&self.text[run_start..self.pos]);
            match s.get(self.pos) {
                None => return Err(self.fail(JsonErrorKind::UnexpectedEnd)),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(&b) if b < 0x20 => {
                    return Err(self.fail(JsonErrorKind::ControlCharacter(u32::from(b))));
                }
                Some(_) => {
                    let esc_start = self.pos;
                    self.pos += 1;
                    let Some(&e) = s.get(self.pos) else {
                        return Err(self.fail(JsonErrorKind::UnexpectedEnd));
                    };
                    self.pos += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{08}'),
                        b'f' => out.push('\u{0C}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let c = if (0xD800..0xDC00).contains(&hi) {
                                // A high surrogate must be followed by an escaped low surrogate.
                                if s.get(self.pos..self.pos + 2) != Some(b"\\u") {
                                    self.pos = esc_start;
                                    return Err(self.fail(JsonErrorKind::LoneSurrogate(hi)));
                                }
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    self.pos = esc_start;
                                    return Err(self.fail(JsonErrorKind::LoneSurrogate(hi)));
                                }
                                let cp = 0x10000
                                    + ((u32::from(hi) - 0xD800) << 10)
                                    + (u32::from(lo) - 0xDC00);
                                char::from_u32(cp)
                            } else if (0xDC00..0xE000).contains(&hi) {
                                self.pos = esc_start;
                                return Err(self.fail(JsonErrorKind::LoneSurrogate(hi)));
                            } else {
                                char::from_u32(u32::from(hi))
                            };
                            match c {
                                Some(c) => out.push(c),
                                None => return Err(self.fail(JsonErrorKind::InvalidEscape)),
                            }
                        }
                        _ => {
                            self.pos = esc_start;
                            return Err(self.fail(JsonErrorKind::InvalidEscape));
                        }
                    }
                }
            }
        }
    }
}

impl fmt::Display for Seg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&render_path(std::slice::from_ref(self)))
    }
}

/// Why bytes are not the canonical form of a JSON value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not canonical JSON at byte {offset}: {reason}")]
pub struct NotCanonical {
    pub offset: usize,
    pub reason: &'static str,
}

/// Checks that `input` is exactly the RFC 8785 canonical form of a value [`parse`] accepts,
/// without building the value: `check_canonical(b).is_ok()` agrees with
/// `canonicalize(b) == Ok(b)` (tested, and fuzzed), at a fraction of the cost. This is what
/// verifying stored events uses.
pub fn check_canonical(input: &[u8]) -> Result<(), NotCanonical> {
    if let Err(e) = std::str::from_utf8(input) {
        return Err(NotCanonical {
            offset: e.valid_up_to(),
            reason: "invalid UTF-8",
        });
    }
    let mut c = Canon { s: input, pos: 0 };
    c.value(0)?;
    if c.pos != input.len() {
        return Err(c.fail("trailing bytes after the value"));
    }
    Ok(())
}

struct Canon<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Canon<'a> {
    fn fail(&self, reason: &'static str) -> NotCanonical {
        NotCanonical {
            offset: self.pos,
            reason,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    /// `depth`: containers around this value (as in [`parse`], at most [`MAX_DEPTH`]).
    fn value(&mut self, depth: usize) -> Result<(), NotCanonical> {
        if matches!(self.peek(), Some(b'{' | b'[')) && depth >= MAX_DEPTH {
            return Err(self.fail("nested too deeply"));
        }
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string(false).map(|_| ()),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.fail("unexpected byte (whitespace is not canonical)")),
            None => Err(self.fail("unexpected end")),
        }
    }

    fn literal(&mut self, lit: &[u8]) -> Result<(), NotCanonical> {
        if self.s[self.pos..].starts_with(lit) {
            self.pos += lit.len();
            Ok(())
        } else {
            Err(self.fail("invalid literal"))
        }
    }

    fn object(&mut self, depth: usize) -> Result<(), NotCanonical> {
        self.pos += 1;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        let mut prev: Option<std::borrow::Cow<'a, str>> = None;
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.fail("expected a key"));
            }
            let at = self.pos;
            let key = self.string(true)?.unwrap_or_default();
            if let Some(p) = &prev
                && utf16_cmp(p, &key) != Ordering::Less
            {
                return Err(NotCanonical {
                    offset: at,
                    reason: "keys are not in strictly increasing UTF-16 order",
                });
            }
            if self.peek() != Some(b':') {
                return Err(self.fail("expected ':'"));
            }
            self.pos += 1;
            self.value(depth)?;
            prev = Some(key);
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.fail("expected ',' or '}'")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), NotCanonical> {
        self.pos += 1;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.value(depth)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.fail("expected ',' or ']'")),
            }
        }
    }

    /// A string at `pos` (its opening quote), in canonical escaping; its decoded text when
    /// `want` (object keys, whose order must be checked).
    fn string(&mut self, want: bool) -> Result<Option<std::borrow::Cow<'a, str>>, NotCanonical> {
        self.pos += 1;
        let start = self.pos;
        let mut owned: Option<Vec<u8>> = None;
        loop {
            // Skip the run of bytes that need no attention in one go.
            let rest = &self.s[self.pos..];
            let run = plain_run(rest);
            if let Some(o) = &mut owned {
                o.extend_from_slice(&rest[..run]);
            }
            self.pos += run;
            match self.s.get(self.pos).copied() {
                None => return Err(self.fail("unterminated string")),
                Some(b) if b < 0x20 => return Err(self.fail("unescaped control character")),
                Some(b'"') => break,
                Some(_) => {
                    let decoded = match self.s.get(self.pos + 1) {
                        Some(b'"') => b'"',
                        Some(b'\\') => b'\\',
                        Some(b'b') => 0x08,
                        Some(b't') => 0x09,
                        Some(b'n') => 0x0A,
                        Some(b'f') => 0x0C,
                        Some(b'r') => 0x0D,
                        Some(b'u') => {
                            // Only controls without a short form are written as \u00xx.
                            let d = |c: u8| match c {
                                b'0'..=b'9' => Some(c - b'0'),
                                b'a'..=b'f' => Some(c - b'a' + 10),
                                _ => None,
                            };
                            let v = match self.s.get(self.pos + 2..self.pos + 6) {
                                Some([b'0', b'0', h, l]) => {
                                    d(*h).zip(d(*l)).map(|(h, l)| (h << 4) | l)
                                }
                                _ => None,
                            };
                            match v {
                                Some(v @ 0x00..=0x1F)
                                    if !matches!(v, 0x08 | 0x09 | 0x0A | 0x0C | 0x0D) =>
                                {
                                    v
                                }
                                _ => return Err(self.fail("escape that RFC 8785 does not write")),
                            }
                        }
                        _ => return Err(self.fail("escape that RFC 8785 does not write")),
                    };
                    let len = if self.s[self.pos + 1] == b'u' { 6 } else { 2 };
                    if let Some(o) = &mut owned {
                        o.push(decoded);
                    } else if want {
                        let mut o = self.s[start..self.pos].to_vec();
                        o.push(decoded);
                        owned = Some(o);
                    }
                    self.pos += len;
                }
            }
        }
        let end = self.pos;
        self.pos += 1;
        if !want {
            return Ok(None);
        }
        // The input is valid UTF-8 and quotes and escapes are ASCII, so both are valid UTF-8.
        let text = match owned {
            Some(o) => std::borrow::Cow::Owned(String::from_utf8_lossy(&o).into_owned()),
            None => String::from_utf8_lossy(&self.s[start..end]),
        };
        Ok(Some(text))
    }

    fn number(&mut self) -> Result<(), NotCanonical> {
        let start = self.pos;
        let s = self.s;
        let mut i = start;
        if s.get(i) == Some(&b'-') {
            i += 1;
        }
        let digits = |i: &mut usize| {
            let from = *i;
            while s.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i - from
        };
        if digits(&mut i) == 0 {
            return Err(self.fail("invalid number"));
        }
        if s.get(i) == Some(&b'.') {
            i += 1;
            if digits(&mut i) == 0 {
                return Err(self.fail("invalid number"));
            }
        }
        if matches!(s.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(s.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if digits(&mut i) == 0 {
                return Err(self.fail("invalid number"));
            }
        }
        self.pos = i;
        let token = &s[start..i];
        // Canonical means: exactly ECMAScript's text of the double it denotes (which also rules
        // out leading zeros, "-0", integers that would round, and non-finite values).
        let f: f64 = std::str::from_utf8(token)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| self.fail("invalid number"))?;
        if !f.is_finite() {
            return Err(NotCanonical {
                offset: start,
                reason: "number is not a finite double",
            });
        }
        let mut canonical = Vec::with_capacity(24);
        write_f64(f, &mut canonical);
        if canonical != token {
            return Err(NotCanonical {
                offset: start,
                reason: "number is not in ECMAScript form",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Canonicalizes `input` and compares with `expected`, or with the error message.
    fn check(input: &str, expected: &str) {
        let got = match canonicalize(input.as_bytes()) {
            Ok(bytes) => String::from_utf8(bytes).unwrap(),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expected, "input: {input}");
    }

    /// `check_canonical` must agree with "canonicalizing changes nothing".
    fn check_fast(input: &[u8]) {
        let slow = canonicalize(input).is_ok_and(|c| c == input);
        assert_eq!(
            check_canonical(input).is_ok(),
            slow,
            "input {:?}: {:?}",
            String::from_utf8_lossy(input),
            check_canonical(input)
        );
    }

    #[test]
    fn the_fast_canonical_check_agrees_with_canonicalizing() {
        let cases: &[&str] = &[
            r#"{"a":1,"b":[true,false,null],"c":{"d":"e"}}"#,
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":1}"#,
            r#"{"a": 1}"#,
            r#"{"a":1.0}"#,
            r#"{"a":1.5}"#,
            r#"[1e+21,1e21,1E+21,0.000001,1e-7,1e-07]"#,
            r#"[-0,0,-1,01,1.50]"#,
            r#"[9007199254740991,9007199254740993,633333333333363400000]"#,
            r#""\u000f\n\"\\""#,
            r#""\u000F""#,
            r#""\u000a""#,
            r#""\/""#,
            r#""\u0041""#,
            r#""é€😀""#,
            "\"\u{7f}\u{2028}\"",
            "\"a\tb\"",
            r#"{"\u0001":1,"\u0002":2}"#,
            r#"{"\u0002":1,"\u0001":2}"#,
            "{\"\u{20ac}\":1,\"\u{1f600}\":2,\"\u{fb33}\":3}",
            "{\"\u{20ac}\":1,\"\u{fb33}\":3,\"\u{1f600}\":2}",
            r#"[]"#,
            r#"{}"#,
            r#"[{}]"#,
            r#"[1,]"#,
            r#"tru"#,
            r#""unterminated"#,
            "1 ",
        ];
        for c in cases {
            check_fast(c.as_bytes());
        }
        check_fast(b"\"\xff\"");
        for depth in [MAX_DEPTH, MAX_DEPTH + 1, MAX_DEPTH + 2] {
            let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            check_fast(deep.as_bytes());
        }
        // Every generated canonical output (testdata/jcs, made by an independent implementation)
        // passes.
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/jcs/output");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            check_fast(&bytes);
            assert!(check_canonical(&bytes).is_ok(), "{}", path.display());
            seen += 1;
        }
        assert!(seen >= 10, "only {seen} outputs in {}", dir.display());
    }

    #[test]
    fn rfc8785_main_example() {
        check(
            r#"{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],"string":"\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/","literals":[null,true,false]}"#,
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#,
        );
    }

    #[test]
    fn utf16_key_order() {
        check(
            "{\"\\u20ac\":1,\"\\r\":2,\"\\ufb33\":3,\"1\":4,\"\\ud83d\\ude00\":5,\"\\u0080\":6,\"\\u00f6\":7}",
            "{\"\\r\":2,\"1\":4,\"\u{80}\":6,\"ö\":7,\"€\":1,\"😀\":5,\"\u{fb33}\":3}",
        );
    }

    #[test]
    fn rfc8785_appendix_b_numbers() {
        let table = [
            (0x0000000000000000u64, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for (bits, want) in table {
            let mut out = Vec::new();
            write_f64(f64::from_bits(bits), &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), want, "bits {bits:016x}");
        }
        // serde_json's own float output differs from ES on these; ours must not.
        check(
            "[1e16,0.000001,-0.0,1e21,1e-7]",
            "[10000000000000000,0.000001,0,1e+21,1e-7]",
        );
        // Canonical output always parses back to itself, also for integral doubles beyond
        // 2^53 that ES prints as plain digits (found by the canonical_json fuzz target).
        check("6.333333333333634e20", "633333333333363400000");
        check("633333333333363400000", "633333333333363400000");
        check("10000000000000000", "10000000000000000");
        // But an integer literal that a double would round is refused, never rounded.
        check(
            "9007199254740993",
            "error: integer 90… (16 characters) is outside ±(2^53−1) and cannot be represented exactly at line 1 column 1",
        );
        check(
            "633333333333363392512",
            "error: integer 63… (21 characters) is outside ±(2^53−1) and cannot be represented exactly at line 1 column 1",
        );
    }

    #[test]
    fn rejects_what_i_json_forbids() {
        check(
            r#"{"a":1,"a":2}"#,
            "error: duplicate key \"a\" at line 1 column 8 (in a)",
        );
        check(
            r#"{"x":{"y":[1,{"b":1,"b":1}]}}"#,
            "error: duplicate key \"b\" at line 1 column 21 (in x.y[1].b)",
        );
        check(
            r#"["\ud800"]"#,
            "error: lone surrogate \\ud800 in string at line 1 column 3 (in [0])",
        );
        check(
            r#""\udc00x""#,
            "error: lone surrogate \\udc00 in string at line 1 column 2",
        );
        check(
            r#""\ud800\u0041""#,
            "error: lone surrogate \\ud800 in string at line 1 column 2",
        );
        check("9007199254740991", "9007199254740991");
        check("-9007199254740991", "-9007199254740991");
        // 2^53 and 10^20 are doubles whose canonical text is these very digits: kept as is.
        check("9007199254740992", "9007199254740992");
        check(
            "{\"n\":100000000000000000000}",
            "{\"n\":100000000000000000000}",
        );
        check(
            "{\"n\":\n 100000000000000000001}",
            "error: integer 10… (21 characters) is outside ±(2^53−1) and cannot be represented exactly at line 2 column 2 (in n)",
        );
        // Float literals of large magnitude are plain doubles, as in RFC 8785's own example.
        check("1e20", "100000000000000000000");
        check(
            "1e400",
            "error: number 1e400 is not a finite IEEE-754 double at line 1 column 1",
        );
        // ... and so are those too small to be anything but 0; zero itself in any spelling and
        // the smallest subnormal are fine.
        check(
            "{\"p\":[1e-400]}",
            "error: number 1e-400 is too small for an IEEE-754 double: it would be stored as 0 at line 1 column 7 (in p[0])",
        );
        check("-0.000e-999", "0");
        check("5e-324", "5e-324");
        check("NaN", "error: unexpected character 'N' at line 1 column 1");
        check(
            "-Infinity",
            "error: invalid number \"-\" at line 1 column 1",
        );
        check("01", "error: invalid number \"01\" at line 1 column 1");
        check("1.", "error: invalid number \"1.\" at line 1 column 1");
        check(
            "[1,]",
            "error: unexpected character ']' at line 1 column 4 (in [1])",
        );
        check(
            "{} x",
            "error: trailing characters after the JSON value at line 1 column 4",
        );
        check(
            "\"a\tb\"",
            "error: unescaped control character U+0009 in string at line 1 column 3",
        );
        check(
            "\"\\x\"",
            "error: invalid escape sequence at line 1 column 2",
        );
        check("", "error: unexpected end of input at line 1 column 1");
        check(
            "[tru]",
            "error: unexpected character ']' at line 1 column 5 (in [0])",
        );
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(matches!(parse(deep.as_bytes()), Err(e) if e.kind == JsonErrorKind::TooDeep));
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(ok.as_bytes()).is_ok());
        let err = parse(b"[\"\xff\"]").unwrap_err();
        assert_eq!(err.kind, JsonErrorKind::InvalidUtf8);
        assert_eq!(err.offset, 2);
    }

    #[test]
    fn string_escaping_follows_json_stringify() {
        check(
            r#""\u0000\u0001\u001f\b\t\n\f\r\u007f\u2028 \/ é \ud83d\ude00""#,
            "\"\\u0000\\u0001\\u001f\\b\\t\\n\\f\\r\u{7f}\u{2028} / é 😀\"",
        );
    }

    /// The word-at-a-time scan must find every byte that needs escaping wherever it sits in
    /// or across an eight-byte word, and nothing else (bytes ≥ 0x80, `#`, `]`, DEL, `!`).
    #[test]
    fn escapes_are_found_at_every_offset() {
        let specials = [
            "\"", "\\", "\u{0}", "\u{1f}", "\n", "\u{7f}", "é", "😀", "!", "#", "]",
        ];
        for len in 0..24 {
            for at in 0..=len {
                for sp in specials {
                    let s = format!("{}{sp}{}", "a".repeat(at), "b".repeat(len - at));
                    let mut out = Vec::new();
                    write_string(&s, &mut out);
                    assert_eq!(out, serde_json::to_vec(&s).unwrap(), "{s:?}");
                    assert_eq!(parse(&out).unwrap(), Value::String(s.clone()), "{s:?}");
                    let n = plain_run(s.as_bytes());
                    let naive = s.bytes().position(|b| b < 0x20 || b == b'"' || b == b'\\');
                    assert_eq!(n, naive.unwrap_or(s.len()), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn code_built_values_are_checked() {
        let v = serde_json::json!({ "big": 9007199254740992u64 });
        assert_eq!(
            to_canonical_vec(&v),
            Err(CanonicalError::IntegerOutOfRange("9007199254740992".into()))
        );
    }
}
