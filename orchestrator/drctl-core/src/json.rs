//! The fast path for machine-written files: JSON, which is also YAML.
//!
//! A topology generated from an inventory or a CMDB is usually written as
//! JSON, and at 100,000 entities YAML parsing is most of the time drctl
//! takes to load it (the YAML grammar needs a character-level scanner with
//! lookahead; JSON needs none). A file whose first significant character
//! is `{` is read here instead, into the same positioned tree
//! ([`crate::yaml::Node`]) the YAML loader builds, with the same streaming
//! of large sections and the same nesting limit, so everything after it
//! (decoding, validation, every diagnostic and its position) is the same
//! code. Strings without escapes are borrowed from the source.

use crate::diag::Pos;
use crate::tree::{Node, SyntaxError, Value, MAX_DEPTH};
use std::borrow::Cow;

/// Whether `src` is a JSON document: its first character that is not
/// white space or a YAML comment line is `{`.
pub fn looks_like_json(src: &str) -> bool {
    for line in src.lines() {
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        return t.starts_with('{');
    }
    false
}

/// Parses a JSON document like [`crate::yaml::parse_streaming`]: the items
/// of the top-level arrays named in `sections` go to `on_item` as they
/// are completed (those arrays come back empty).
pub fn parse_streaming<'a>(
    src: &'a str,
    sections: &[&str],
    on_item: &mut dyn FnMut(&str, Node<'a>),
) -> Result<Node<'a>, SyntaxError> {
    let mut p = Parser { src, bytes: src.as_bytes(), at: 0, line: 1, line_start: 0, sections, counted: (0, 1) };
    let root = p.value(0, on_item, None)?;
    p.skip_space_and_comments();
    if p.at < p.bytes.len() {
        return Err(p.error("more text after the end of the JSON document"));
    }
    Ok(root)
}

struct Parser<'a, 's> {
    src: &'a str,
    bytes: &'a [u8],
    at: usize,
    line: u32,
    line_start: usize,
    /// Top-level keys whose arrays stream their items.
    sections: &'s [&'s str],
    /// The byte offset and column of the last position computed.
    counted: (usize, u32),
}

impl<'a> Parser<'a, '_> {
    fn pos(&mut self) -> Pos {
        // Columns count characters, as the YAML loader's do. Positions are
        // asked in file order, so counting from the last one asked on this
        // line keeps a one-line (minified) file linear, not quadratic.
        let (from, col) = if self.counted.0 >= self.line_start && self.counted.0 <= self.at {
            self.counted
        } else {
            (self.line_start, 1)
        };
        let col = col + self.src[from..self.at].chars().count() as u32;
        self.counted = (self.at, col);
        Pos::new(self.line, col)
    }

    fn error(&mut self, message: impl Into<String>) -> SyntaxError {
        SyntaxError { pos: self.pos(), message: message.into(), limit: false }
    }

    fn skip_space_and_comments(&mut self) {
        while let Some(&b) = self.bytes.get(self.at) {
            match b {
                b'\n' => {
                    self.at += 1;
                    self.line += 1;
                    self.line_start = self.at;
                }
                b' ' | b'\t' | b'\r' => self.at += 1,
                // YAML comments are allowed around a JSON document (a
                // schema line at the top, say): only before a value.
                b'#' => {
                    while self.bytes.get(self.at).is_some_and(|&c| c != b'\n') {
                        self.at += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn expect(&mut self, c: u8, what: &str) -> Result<(), SyntaxError> {
        self.skip_space_and_comments();
        if self.bytes.get(self.at) == Some(&c) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(format!("expected {what}")))
        }
    }

    /// A value at nesting `depth`. The array under a top-level key named in
    /// `sections` is read with `stream_as` set: its items go to `on_item`.
    fn value(
        &mut self,
        depth: usize,
        on_item: &mut dyn FnMut(&str, Node<'a>),
        stream_as: Option<&str>,
    ) -> Result<Node<'a>, SyntaxError> {
        self.skip_space_and_comments();
        let pos = self.pos();
        match self.bytes.get(self.at) {
            Some(b'{') | Some(b'[') if depth >= MAX_DEPTH => Err(SyntaxError {
                limit: true,
                ..self.error(format!("lists and mappings are nested deeper than {MAX_DEPTH} levels here"))
            }),
            Some(b'{') => {
                self.at += 1;
                let mut entries = Vec::new();
                self.skip_space_and_comments();
                if self.bytes.get(self.at) == Some(&b'}') {
                    self.at += 1;
                    return Ok(Node { pos, value: Value::Map(entries) });
                }
                loop {
                    self.skip_space_and_comments();
                    if self.bytes.get(self.at) != Some(&b'"') {
                        return Err(self.error("expected a key in double quotes"));
                    }
                    let key = self.string()?;
                    self.expect(b':', "`:` after the key")?;
                    let streamed = match &key.value {
                        Value::Scalar { text, .. } if depth == 0 => self.sections.iter().find(|s| **s == text),
                        _ => None,
                    };
                    let value = self.value(depth + 1, on_item, streamed.copied())?;
                    entries.push((key, value));
                    self.skip_space_and_comments();
                    match self.bytes.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return Ok(Node { pos, value: Value::Map(entries) });
                        }
                        _ => return Err(self.error("expected `,` or `}`")),
                    }
                }
            }
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                self.skip_space_and_comments();
                if self.bytes.get(self.at) == Some(&b']') {
                    self.at += 1;
                    return Ok(Node { pos, value: Value::Seq(items) });
                }
                loop {
                    let item = self.value(depth + 1, on_item, None)?;
                    match stream_as {
                        Some(section) if depth == 1 => on_item(section, item),
                        _ => items.push(item),
                    }
                    self.skip_space_and_comments();
                    match self.bytes.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Node { pos, value: Value::Seq(items) });
                        }
                        _ => return Err(self.error("expected `,` or `]`")),
                    }
                }
            }
            Some(b'"') => self.string(),
            Some(_) => {
                // A number, true, false or null: a plain scalar, as YAML reads it.
                let start = self.at;
                while self.bytes.get(self.at).is_some_and(|c| c.is_ascii_alphanumeric() || b"+-.".contains(c)) {
                    self.at += 1;
                }
                let text = &self.src[start..self.at];
                let ok = matches!(text, "true" | "false" | "null")
                    || (!text.is_empty() && text.parse::<f64>().is_ok() && !text.starts_with('+'));
                if !ok {
                    self.at = start;
                    return Err(self.error("expected a value (a string in double quotes, a number, true, false, null, an object or an array)"));
                }
                Ok(Node { pos, value: Value::Scalar { text: Cow::Borrowed(text), plain: true } })
            }
            None => Err(self.error("the document ends where a value was expected")),
        }
    }

    /// A string in double quotes, borrowed unless it has escapes.
    fn string(&mut self) -> Result<Node<'a>, SyntaxError> {
        let pos = self.pos();
        self.at += 1;
        let start = self.at;
        loop {
            match self.bytes.get(self.at) {
                None | Some(b'\n') => return Err(self.error("a string is not closed on its line")),
                Some(b'"') => {
                    let text = Cow::Borrowed(&self.src[start..self.at]);
                    self.at += 1;
                    return Ok(Node { pos, value: Value::Scalar { text, plain: false } });
                }
                Some(b'\\') => break,
                Some(_) => self.at += 1,
            }
        }
        // Escapes: build the text.
        let mut out = String::from(&self.src[start..self.at]);
        loop {
            match self.bytes.get(self.at) {
                None | Some(b'\n') => return Err(self.error("a string is not closed on its line")),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(Node { pos, value: Value::Scalar { text: Cow::Owned(out), plain: false } });
                }
                Some(b'\\') => {
                    let c = match self.bytes.get(self.at + 1) {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            let c = self.unicode_escape()?;
                            out.push(c);
                            continue;
                        }
                        _ => return Err(self.error("an unknown escape in a string")),
                    };
                    out.push(c);
                    self.at += 2;
                }
                Some(_) => {
                    let ch = self.src[self.at..].chars().next().unwrap_or('\u{fffd}');
                    out.push(ch);
                    self.at += ch.len_utf8();
                }
            }
        }
    }

    /// `\uXXXX`, with a surrogate pair read as one character.
    fn unicode_escape(&mut self) -> Result<char, SyntaxError> {
        let hex = |p: &Self, at: usize| -> Option<u32> {
            p.src.get(at..at + 4).and_then(|h| u32::from_str_radix(h, 16).ok())
        };
        let first = hex(self, self.at + 2).ok_or_else(|| self.error("`\\u` needs four hex digits"))?;
        self.at += 6;
        let code = if (0xD800..0xDC00).contains(&first) && self.src[self.at..].starts_with("\\u") {
            let second = hex(self, self.at + 2).ok_or_else(|| self.error("`\\u` needs four hex digits"))?;
            self.at += 6;
            0x10000 + ((first - 0xD800) << 10) + (second.wrapping_sub(0xDC00) & 0x3FF)
        } else {
            first
        };
        char::from_u32(code).ok_or_else(|| self.error("`\\u` escape is not a character"))
    }
}
