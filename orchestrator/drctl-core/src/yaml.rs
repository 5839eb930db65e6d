//! A YAML document as a tree in which every node knows where it came from.
//!
//! serde-based YAML loaders stop at the first error and forget positions once
//! a value is deserialized. drctl must report *every* mistake in a file with
//! its `line:column`, including mistakes that are only visible after parsing
//! (an unknown zone, a dependency cycle), so files are loaded into this
//! positioned tree first and decoded by hand (see [`crate::decode`]).

use crate::diag::Pos;
use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use std::borrow::Cow;
use std::collections::HashMap;

/// A YAML node and the position where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node<'a> {
    pub pos: Pos,
    pub value: Value<'a>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// A scalar, borrowed from the source where it can be. `plain` is false
    /// for quoted and block scalars, which are always strings (so `"30"` is
    /// text while `30` may be a number).
    Scalar {
        text: Cow<'a, str>,
        plain: bool,
    },
    Seq(Vec<Node<'a>>),
    /// Entries in file order; duplicates are kept so the decoder can report them.
    Map(Vec<(Node<'a>, Node<'a>)>),
}

impl Node<'_> {
    /// `~`, `null`, or nothing at all.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true }
            if text.is_empty() || text == "~" || text.eq_ignore_ascii_case("null"))
    }

    /// What kind of YAML value this is, in words for error messages.
    pub fn kind_name(&self) -> &'static str {
        match &self.value {
            _ if self.is_null() => "nothing (null)",
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The value of `key` when this is a mapping that has it; reports nothing
    /// (used to peek at a discriminating key before decoding properly).
    pub fn peek(&self, key: &str) -> Option<&str> {
        match &self.value {
            Value::Map(entries) => {
                entries.iter().find(|(k, _)| k.as_scalar() == Some(key)).and_then(|(_, v)| v.as_scalar())
            }
            _ => None,
        }
    }

    pub fn as_scalar(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } if !self.is_null() => Some(text),
            _ => None,
        }
    }
}

/// A YAML syntax error at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

fn pos_of(span: &Span) -> Pos {
    Pos::new(span.start.line() as u32, span.start.col() as u32 + 1)
}

/// Parses the first document of `src`. An empty file is a null node at 1:1.
pub fn parse(src: &str) -> Result<Node<'_>, SyntaxError> {
    parse_streaming(src, &[], &mut |_, _| {})
}

type ParseEvent<'a> = Result<(Event<'a>, Span), saphyr_parser::ScanError>;

/// Parses like [`parse`], but hands each item of the top-level sequences
/// named in `sections` (e.g. `datastores`) to `on_item` as soon as it is
/// complete, instead of keeping it in the tree (those sequences come back
/// empty). A 100k-entity file thus never exists as one tree in memory:
/// each entity is decoded and its nodes freed while the parser reads on,
/// which halves the memory touched (and the page faults that cost more
/// than the parsing itself). Parsing on a second thread was tried and was
/// slower: the allocator's cross-thread frees cost more than it saved.
pub fn parse_streaming<'a>(
    src: &'a str,
    sections: &[&str],
    on_item: &mut dyn FnMut(&str, Node<'a>),
) -> Result<Node<'a>, SyntaxError> {
    let mut parser = Parser::new_from_str(src);
    build(std::iter::from_fn(|| parser.next_event()), sections, on_item)
}

fn build<'a>(
    events: impl Iterator<Item = ParseEvent<'a>>,
    sections: &[&str],
    on_item: &mut dyn FnMut(&str, Node<'a>),
) -> Result<Node<'a>, SyntaxError> {
    let mut anchors: HashMap<usize, Node<'a>> = HashMap::new();
    // Children of every open collection live on one scratch stack; a
    // collection takes its children off it, into an exactly-sized vector,
    // when it closes. This avoids a growing vector per collection, which
    // for large files costs more in reallocation than parsing does.
    let mut scratch: Vec<Node<'a>> = Vec::with_capacity(1024);
    // Open collections: (start position, anchor, is a mapping, where its children start).
    let mut open: Vec<(Pos, usize, bool, usize)> = Vec::new();
    let mut root: Option<Node<'a>> = None;
    let mut documents = 0;
    // The streamed section the parser is inside, if any (set while the
    // top-level mapping's value being read is a sequence named in `sections`).
    let mut section: Option<String> = None;

    for ev in events {
        let (event, span) = ev.map_err(|e| SyntaxError {
            pos: Pos::new(e.marker().line() as u32, e.marker().col() as u32 + 1),
            message: e.info().to_string(),
        })?;
        let pos = pos_of(&span);
        let (node, anchor) = match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(SyntaxError { pos, message: "more than one YAML document in this file".into() });
                }
                continue;
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => continue,
            Event::SequenceStart(anchor, _) => {
                // A sequence that is the value of a streamed top-level key.
                if open.len() == 1 && open[0].2 && (scratch.len() - open[0].3) % 2 == 1 {
                    if let Some(key) = scratch.last().and_then(Node::as_scalar) {
                        if sections.contains(&key) {
                            section = Some(key.to_string());
                        }
                    }
                }
                open.push((pos, anchor, false, scratch.len()));
                continue;
            }
            Event::MappingStart(anchor, _) => {
                open.push((pos, anchor, true, scratch.len()));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (start, anchor, is_map, from) =
                    open.pop().ok_or_else(|| SyntaxError { pos, message: "unbalanced collection".into() })?;
                if open.len() == 1 {
                    section = None;
                }
                let value = if is_map {
                    let mut entries = Vec::with_capacity((scratch.len() - from) / 2);
                    let mut it = scratch.drain(from..);
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        entries.push((k, v));
                    }
                    Value::Map(entries)
                } else {
                    Value::Seq(scratch.drain(from..).collect())
                };
                (Node { pos: start, value }, anchor)
            }
            Event::Scalar(text, style, anchor, _) => {
                (Node { pos, value: Value::Scalar { text, plain: style == ScalarStyle::Plain } }, anchor)
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some(node) => (Node { pos, ..node.clone() }, 0),
                None => return Err(SyntaxError { pos, message: "alias to an unknown anchor".into() }),
            },
        };
        if anchor > 0 {
            anchors.insert(anchor, node.clone());
        }
        match (&section, open.len()) {
            (Some(name), 2) => on_item(name, node),
            (_, 0) => root = Some(node),
            _ => scratch.push(node),
        }
    }
    Ok(root.unwrap_or(Node { pos: Pos::new(1, 1), value: Value::Scalar { text: Cow::Borrowed(""), plain: true } }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_line_and_column() {
        let doc = parse("a: 1\nlist:\n  - x\n  - { y: z }\n").unwrap();
        let Value::Map(entries) = &doc.value else { panic!("not a map") };
        assert_eq!(entries[0].0.pos, Pos::new(1, 1));
        assert_eq!(entries[0].1.pos, Pos::new(1, 4));
        let Value::Seq(items) = &entries[1].1.value else { panic!("not a seq") };
        assert_eq!(items[0].pos, Pos::new(3, 5));
        let Value::Map(inner) = &items[1].value else { panic!("not a map") };
        assert_eq!(inner[0].1.pos, Pos::new(4, 10));
    }

    #[test]
    fn quoted_scalars_are_not_plain_and_nulls_are_recognised() {
        let doc = parse("a: '30'\nb:\nc: ~\n").unwrap();
        let Value::Map(e) = &doc.value else { panic!() };
        assert!(matches!(&e[0].1.value, Value::Scalar { plain: false, .. }));
        assert!(e[1].1.is_null());
        assert!(e[2].1.is_null());
    }

    #[test]
    fn aliases_resolve_to_the_anchored_node() {
        let doc = parse("base: &b { rpo: 5s }\nother: *b\n").unwrap();
        let Value::Map(e) = &doc.value else { panic!() };
        assert_eq!(e[0].1.value, e[1].1.value);
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1, "{err:?}");
        let err = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(err.pos.line, 2);
    }

    #[test]
    fn streamed_items_arrive_in_order_and_leave_the_sequence_empty() {
        let src = "a: 1\nitems:\n  - { n: 1 }\n  - { n: 2 }\nother: [x]\n";
        let mut seen = Vec::new();
        let root = parse_streaming(src, &["items"], &mut |section, node| {
            seen.push((section.to_string(), node.peek("n").map(str::to_string), node.pos));
        })
        .unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0], ("items".to_string(), Some("1".to_string()), Pos::new(3, 5)));
        let Value::Map(e) = &root.value else { panic!() };
        assert_eq!(e[1].1.value, Value::Seq(vec![]));
        let Value::Seq(other) = &e[2].1.value else { panic!("`other` is not a list") };
        assert_eq!(other[0].as_scalar(), Some("x"), "sections not named are kept");
    }

    #[test]
    fn a_syntax_error_after_streamed_items_still_has_its_position() {
        let mut src = String::from("items:\n");
        for i in 0..1000 {
            src.push_str(&format!("  - {{ name: n{i} }}\n"));
        }
        let mut count = 0;
        let err = parse_streaming(&format!("{src}  - [unclosed\n"), &["items"], &mut |_, _| count += 1).unwrap_err();
        assert!(err.pos.line >= 1001, "{err:?}");
        assert_eq!(count, 1000);
    }

    #[test]
    fn empty_input_is_null() {
        assert!(parse("").unwrap().is_null());
    }
}
