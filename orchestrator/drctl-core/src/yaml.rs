//! A YAML document as a tree in which every node knows where it came from.
//!
//! serde-based YAML loaders stop at the first error and forget positions once
//! a value is deserialized. drctl must report *every* mistake in a file with
//! its `line:column`, including mistakes that are only visible after parsing
//! (an unknown zone, a dependency cycle), so files are loaded into this
//! positioned tree first and decoded by hand (see [`crate::decode`]).

use crate::diag::Pos;
use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use std::collections::HashMap;

/// A YAML node and the position where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar. `plain` is false for quoted and block scalars, which are
    /// always strings (so `"30"` is text while `30` may be a number).
    Scalar { text: String, plain: bool },
    Seq(Vec<Node>),
    /// Entries in file order; duplicates are kept so the decoder can report them.
    Map(Vec<(Node, Node)>),
}

impl Node {
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
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_scalar() == Some(key))
                .and_then(|(_, v)| v.as_scalar()),
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
pub fn parse(src: &str) -> Result<Node, SyntaxError> {
    let mut parser = Parser::new_from_str(src);
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    // Open collections: (start position, anchor, items). A map's items are
    // pushed as alternating keys and values.
    let mut stack: Vec<(Pos, usize, bool, Vec<Node>)> = Vec::new();
    let mut root: Option<Node> = None;
    let mut documents = 0;

    while let Some(ev) = parser.next_event() {
        let (event, span) = ev.map_err(|e| SyntaxError {
            pos: Pos::new(e.marker().line() as u32, e.marker().col() as u32 + 1),
            message: e.info().to_string(),
        })?;
        let pos = pos_of(&span);
        let (node, anchor) = match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(SyntaxError {
                        pos,
                        message: "more than one YAML document in this file".into(),
                    });
                }
                continue;
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => continue,
            Event::SequenceStart(anchor, _) => {
                stack.push((pos, anchor, false, Vec::new()));
                continue;
            }
            Event::MappingStart(anchor, _) => {
                stack.push((pos, anchor, true, Vec::new()));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (start, anchor, is_map, items) = stack.pop().ok_or_else(|| SyntaxError {
                    pos,
                    message: "unbalanced collection".into(),
                })?;
                let value = if is_map {
                    let mut entries = Vec::with_capacity(items.len() / 2);
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        entries.push((k, v));
                    }
                    Value::Map(entries)
                } else {
                    Value::Seq(items)
                };
                (Node { pos: start, value }, anchor)
            }
            Event::Scalar(text, style, anchor, _) => (
                Node {
                    pos,
                    value: Value::Scalar {
                        text: text.into_owned(),
                        plain: style == ScalarStyle::Plain,
                    },
                },
                anchor,
            ),
            Event::Alias(id) => match anchors.get(&id) {
                Some(node) => (Node { pos, ..node.clone() }, 0),
                None => {
                    return Err(SyntaxError {
                        pos,
                        message: "alias to an unknown anchor".into(),
                    })
                }
            },
        };
        if anchor > 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            Some((_, _, _, items)) => items.push(node),
            None => root = Some(node),
        }
    }
    Ok(root.unwrap_or(Node {
        pos: Pos::new(1, 1),
        value: Value::Scalar {
            text: String::new(),
            plain: true,
        },
    }))
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
    fn empty_input_is_null() {
        assert!(parse("").unwrap().is_null());
    }
}
