//! A streaming, tolerant reader of PDF content streams (ISO 32000 7.2, 8.9.7).
//!
//! lopdf's `Content::decode` builds every operation of a stream before the
//! first one runs: 430,000 operations of a 3.3 MB stream take 250 MiB. This
//! reader hands out one operator at a time with its operands, so memory stays
//! at the stream's own size and the interpreter can stop as soon as its text
//! budget is full. Syntax errors skip the offending byte and are remembered,
//! not fatal: one bad token must not cost a page its text.

use lopdf::{Dictionary, Object, StringFormat};

/// Arrays and dictionaries nested deeper than this are cut off (hostile input).
const MAX_NESTING: usize = 32;

fn is_white(b: u8) -> bool {
    matches!(b, b'\0' | b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')
}

fn is_delimiter(b: u8) -> bool {
    matches!(
        b,
        b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%'
    )
}

fn is_regular(b: u8) -> bool {
    !is_white(b) && !is_delimiter(b)
}

/// One token of a content stream.
enum Token<'a> {
    Object(Object),
    /// A bare keyword: an operator, or `true`/`false`/`null` (handled by the caller).
    Keyword(&'a [u8]),
    ArrayStart,
    ArrayEnd,
    DictStart,
    DictEnd,
}

/// The operations of one content stream, read one at a time.
pub(crate) struct Ops<'a> {
    data: &'a [u8],
    pos: usize,
    operands: Vec<Object>,
    first_error: Option<String>,
}

impl<'a> Ops<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Ops {
            data,
            pos: 0,
            operands: Vec::new(),
            first_error: None,
        }
    }

    /// The first syntax problem met so far, if any.
    pub(crate) fn first_error(&self) -> Option<&str> {
        self.first_error.as_deref()
    }

    fn problem(&mut self, what: &str) {
        if self.first_error.is_none() {
            self.first_error = Some(format!("content stream: {what} at byte {}", self.pos));
        }
    }

    /// The next operator and its operands; `None` at the end of the stream.
    /// Operands left without an operator at the end are dropped.
    pub(crate) fn next_op(&mut self) -> Option<(&'a str, &[Object])> {
        self.operands.clear();
        loop {
            let token = self.token()?;
            match token {
                Token::Keyword(b"true") => self.operands.push(Object::Boolean(true)),
                Token::Keyword(b"false") => self.operands.push(Object::Boolean(false)),
                Token::Keyword(b"null") => self.operands.push(Object::Null),
                Token::Keyword(b"BI") => {
                    self.skip_inline_image();
                    return Some(("BI", &self.operands));
                }
                Token::Keyword(op) => {
                    // Regular characters are ASCII except for stray high bytes,
                    // which no operator contains.
                    let Ok(op) = std::str::from_utf8(op) else {
                        self.problem("unknown operator");
                        self.operands.clear();
                        continue;
                    };
                    return Some((op, &self.operands));
                }
                Token::Object(o) => self.operands.push(o),
                Token::ArrayStart => {
                    let array = self.array(0);
                    self.operands.push(array);
                }
                Token::DictStart => {
                    let dict = self.dictionary(0);
                    self.operands.push(dict);
                }
                Token::ArrayEnd | Token::DictEnd => self.problem("unbalanced ] or >>"),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Object {
        let mut items = Vec::new();
        while let Some(token) = self.token() {
            let item = match token {
                Token::ArrayEnd => return Object::Array(items),
                Token::DictEnd => {
                    self.problem("unbalanced >>");
                    continue;
                }
                _ if depth >= MAX_NESTING => {
                    self.problem("nesting too deep");
                    continue;
                }
                Token::ArrayStart => self.array(depth + 1),
                Token::DictStart => self.dictionary(depth + 1),
                Token::Object(o) => o,
                Token::Keyword(k) => keyword_object(k),
            };
            items.push(item);
        }
        self.problem("unterminated array");
        Object::Array(items)
    }

    fn dictionary(&mut self, depth: usize) -> Object {
        let mut dict = Dictionary::new();
        let mut key: Option<Vec<u8>> = None;
        while let Some(token) = self.token() {
            let value = match token {
                Token::DictEnd => return Object::Dictionary(dict),
                Token::ArrayEnd => {
                    self.problem("unbalanced ]");
                    continue;
                }
                _ if depth >= MAX_NESTING => {
                    self.problem("nesting too deep");
                    continue;
                }
                Token::ArrayStart => self.array(depth + 1),
                Token::DictStart => self.dictionary(depth + 1),
                Token::Object(Object::Name(name)) if key.is_none() => {
                    key = Some(name);
                    continue;
                }
                Token::Object(o) => o,
                Token::Keyword(k) => keyword_object(k),
            };
            match key.take() {
                Some(k) => dict.set(k, value),
                None => self.problem("dictionary key is not a name"),
            }
        }
        self.problem("unterminated dictionary");
        Object::Dictionary(dict)
    }

    /// Skips `BI <dict> ID <data> EI`; the image is not text.
    fn skip_inline_image(&mut self) {
        // The dictionary's keys and values, up to the ID keyword.
        loop {
            match self.token() {
                None => return,
                Some(Token::Keyword(b"ID")) => break,
                Some(Token::ArrayStart) => {
                    self.array(0);
                }
                Some(Token::DictStart) => {
                    self.dictionary(0);
                }
                Some(_) => {}
            }
        }
        // One white-space byte follows ID; the data ends at white space, EI,
        // then white space or the end (the data's length is not always given).
        let data = self.data;
        let start = (self.pos + 1).min(data.len());
        let mut i = start;
        while i + 2 <= data.len() {
            if &data[i..i + 2] == b"EI"
                && (i == start || is_white(data[i - 1]))
                && data.get(i + 2).is_none_or(|&b| is_white(b))
            {
                self.pos = i + 2;
                return;
            }
            i += 1;
        }
        self.problem("inline image without EI");
        self.pos = data.len();
    }

    fn skip_white_and_comments(&mut self) {
        while let Some(&b) = self.data.get(self.pos) {
            if is_white(b) {
                self.pos += 1;
            } else if b == b'%' {
                while self
                    .data
                    .get(self.pos)
                    .is_some_and(|&c| c != b'\n' && c != b'\r')
                {
                    self.pos += 1;
                }
            } else {
                break;
            }
        }
    }

    fn token(&mut self) -> Option<Token<'a>> {
        loop {
            self.skip_white_and_comments();
            let data = self.data;
            let &b = data.get(self.pos)?;
            match b {
                b'(' => return Some(Token::Object(self.literal_string())),
                b'/' => {
                    self.pos += 1;
                    return Some(Token::Object(Object::Name(self.name())));
                }
                b'[' => {
                    self.pos += 1;
                    return Some(Token::ArrayStart);
                }
                b']' => {
                    self.pos += 1;
                    return Some(Token::ArrayEnd);
                }
                b'<' if data.get(self.pos + 1) == Some(&b'<') => {
                    self.pos += 2;
                    return Some(Token::DictStart);
                }
                b'>' if data.get(self.pos + 1) == Some(&b'>') => {
                    self.pos += 2;
                    return Some(Token::DictEnd);
                }
                b'<' => return Some(Token::Object(self.hex_string())),
                b'0'..=b'9' | b'+' | b'-' | b'.' => {
                    let start = self.pos;
                    while data.get(self.pos).is_some_and(|&c| is_regular(c)) {
                        self.pos += 1;
                    }
                    return Some(Token::Object(number(&data[start..self.pos])));
                }
                _ if is_regular(b) => {
                    let start = self.pos;
                    while data.get(self.pos).is_some_and(|&c| is_regular(c)) {
                        self.pos += 1;
                    }
                    return Some(Token::Keyword(&data[start..self.pos]));
                }
                _ => {
                    // ')', a lone '>', '{', '}': nothing in a content stream.
                    self.problem("unexpected delimiter");
                    self.pos += 1;
                }
            }
        }
    }

    fn name(&mut self) -> Vec<u8> {
        let data = self.data;
        let mut out = Vec::new();
        while let Some(&c) = data.get(self.pos) {
            if !is_regular(c) {
                break;
            }
            if c == b'#' {
                if let Some(v) = data.get(self.pos + 1..self.pos + 3).and_then(hex_pair) {
                    out.push(v);
                    self.pos += 3;
                    continue;
                }
            }
            out.push(c);
            self.pos += 1;
        }
        out
    }

    fn literal_string(&mut self) -> Object {
        let data = self.data;
        self.pos += 1;
        let mut out = Vec::new();
        let mut depth = 0usize;
        while let Some(&c) = data.get(self.pos) {
            self.pos += 1;
            match c {
                b'(' => {
                    depth += 1;
                    out.push(c);
                }
                b')' if depth == 0 => return Object::String(out, StringFormat::Literal),
                b')' => {
                    depth -= 1;
                    out.push(c);
                }
                b'\\' => {
                    let Some(&e) = data.get(self.pos) else { break };
                    self.pos += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'0'..=b'7' => {
                            let mut v = u32::from(e - b'0');
                            for _ in 0..2 {
                                match data.get(self.pos) {
                                    Some(&d @ b'0'..=b'7') => {
                                        v = v * 8 + u32::from(d - b'0');
                                        self.pos += 1;
                                    }
                                    _ => break,
                                }
                            }
                            out.push((v & 0xff) as u8);
                        }
                        // A backslash before an end of line continues the string.
                        b'\r' => {
                            if data.get(self.pos) == Some(&b'\n') {
                                self.pos += 1;
                            }
                        }
                        b'\n' => {}
                        other => out.push(other),
                    }
                }
                _ => out.push(c),
            }
        }
        self.problem("unterminated string");
        Object::String(out, StringFormat::Literal)
    }

    fn hex_string(&mut self) -> Object {
        let data = self.data;
        self.pos += 1;
        let mut out = Vec::new();
        let mut high: Option<u8> = None;
        while let Some(&c) = data.get(self.pos) {
            self.pos += 1;
            let v = match c {
                b'>' => {
                    // An odd final digit is followed by an implied 0.
                    out.extend(high.map(|h| h << 4));
                    return Object::String(out, StringFormat::Hexadecimal);
                }
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ if is_white(c) => continue,
                _ => {
                    self.problem("bad hex digit");
                    continue;
                }
            };
            match high.take() {
                Some(h) => out.push(h << 4 | v),
                None => high = Some(v),
            }
        }
        self.problem("unterminated hex string");
        Object::String(out, StringFormat::Hexadecimal)
    }
}

fn hex_pair(pair: &[u8]) -> Option<u8> {
    let s = std::str::from_utf8(pair).ok()?;
    u8::from_str_radix(s, 16).ok()
}

fn keyword_object(k: &[u8]) -> Object {
    match k {
        b"true" => Object::Boolean(true),
        b"false" => Object::Boolean(false),
        // Operators inside arrays are invalid; keep them as null placeholders.
        _ => Object::Null,
    }
}

/// A number token. Writers produce oddities like `--5`, `1.2.3` or `5-`;
/// like other readers, take the longest valid prefix after collapsing signs.
fn number(token: &[u8]) -> Object {
    let negative = token
        .iter()
        .take_while(|&&c| c == b'+' || c == b'-')
        .filter(|&&c| c == b'-')
        .count()
        % 2
        == 1;
    let body: &[u8] = {
        let start = token
            .iter()
            .position(|&c| c != b'+' && c != b'-')
            .unwrap_or(token.len());
        let rest = &token[start..];
        let mut seen_dot = false;
        let end = rest
            .iter()
            .position(|&c| {
                if c == b'.' && !seen_dot {
                    seen_dot = true;
                    false
                } else {
                    !c.is_ascii_digit()
                }
            })
            .unwrap_or(rest.len());
        &rest[..end]
    };
    let sign = if negative { -1.0 } else { 1.0 };
    if body.contains(&b'.') {
        let value = std::str::from_utf8(body)
            .ok()
            .and_then(|s| {
                if s == "." {
                    Some(0.0)
                } else {
                    s.parse::<f32>().ok()
                }
            })
            .unwrap_or(0.0);
        Object::Real(sign * value)
    } else {
        match std::str::from_utf8(body)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
        {
            Some(v) => Object::Integer(if negative { -v } else { v }),
            // Too long for an integer, or empty: a real number (or zero).
            None => Object::Real(
                sign * std::str::from_utf8(body)
                    .ok()
                    .and_then(|s| s.parse::<f32>().ok())
                    .unwrap_or(0.0),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(data: &[u8]) -> Vec<(String, Vec<Object>)> {
        let mut ops = Ops::new(data);
        let mut out = Vec::new();
        while let Some((op, a)) = ops.next_op() {
            out.push((op.to_owned(), a.to_vec()));
        }
        out
    }

    #[test]
    fn operators_with_operands() {
        let ops = all(b"BT /F1 12 Tf 1 0 0 1 72.5 -.5 Tm (Hello) Tj [(A) -120 (B)] TJ ET");
        let names: Vec<&str> = ops.iter().map(|(o, _)| o.as_str()).collect();
        assert_eq!(names, ["BT", "Tf", "Tm", "Tj", "TJ", "ET"]);
        assert_eq!(
            ops[1].1,
            vec![Object::Name(b"F1".to_vec()), Object::Integer(12)]
        );
        assert_eq!(ops[2].1[4], Object::Real(72.5));
        assert_eq!(ops[2].1[5], Object::Real(-0.5));
        assert_eq!(
            ops[4].1[0],
            Object::Array(vec![
                Object::string_literal("A"),
                Object::Integer(-120),
                Object::string_literal("B")
            ])
        );
    }

    #[test]
    fn strings_escapes_and_hex() {
        let ops = all(b"(a\\(b\\)c (nested) \\101\\n\\\nd) Tj <48 65 6c6C6f7> Tj");
        assert_eq!(
            ops[0].1[0],
            Object::String(b"a(b)c (nested) A\nd".to_vec(), StringFormat::Literal)
        );
        assert_eq!(
            ops[1].1[0],
            Object::String(b"Hellop".to_vec(), StringFormat::Hexadecimal)
        );
    }

    #[test]
    fn names_comments_dicts_and_quotes() {
        let ops = all(b"/Span <</ActualText (x) /MCID 3>> BDC % comment ) ( [\n/A#20B gs 1 2 (q) \" (r) ' EMC");
        assert_eq!(ops[0].0, "BDC");
        let Object::Dictionary(d) = &ops[0].1[1] else {
            panic!("not a dictionary: {:?}", ops[0].1)
        };
        assert_eq!(d.get(b"MCID").ok(), Some(&Object::Integer(3)));
        assert_eq!(
            ops[1],
            ("gs".to_owned(), vec![Object::Name(b"A B".to_vec())])
        );
        assert_eq!(ops[2].0, "\"");
        assert_eq!(ops[2].1.len(), 3);
        assert_eq!(ops[3].0, "'");
        assert_eq!(ops[4].0, "EMC");
    }

    #[test]
    fn inline_image_data_is_skipped() {
        let ops = all(b"q BI /W 2 /H 1 /BPC 8 /CS /G ID \x01EI )(\xffEI\n EIx\n EI Q (after) Tj");
        let names: Vec<&str> = ops.iter().map(|(o, _)| o.as_str()).collect();
        assert_eq!(names, ["q", "BI", "Q", "Tj"]);
        assert_eq!(ops[3].1[0], Object::string_literal("after"));
    }

    #[test]
    fn odd_numbers_and_garbage_do_not_stop_the_stream() {
        let mut ops = Ops::new(b"--5 1.2.3 5- . Td ) } (ok) Tj [ (unterminated");
        let (op, a) = ops.next_op().expect("Td");
        assert_eq!(op, "Td");
        assert_eq!(
            a,
            [
                Object::Integer(5),
                Object::Real(1.2),
                Object::Integer(5),
                Object::Real(0.0)
            ]
        );
        let (op, a) = ops.next_op().expect("Tj");
        assert_eq!((op, a), ("Tj", [Object::string_literal("ok")].as_slice()));
        assert!(ops.next_op().is_none());
        assert!(ops.first_error().is_some());
    }

    #[test]
    fn deep_nesting_is_cut_off() {
        let data = [b"[".repeat(10_000), b"1 Tc".to_vec()].concat();
        let mut ops = Ops::new(&data);
        assert!(ops.next_op().is_none());
        assert!(ops.first_error().is_some());
    }
}
