//! A YAML document as a tree in which every node knows where it came from.
//!
//! serde-based YAML loaders stop at the first error and forget positions once
//! a value is deserialized. drctl must report *every* mistake in a file with
//! its `line:column`, including mistakes that are only visible after parsing
//! (an unknown zone, a dependency cycle), so files are loaded into this
//! positioned tree first and decoded by hand (see [`crate::decode`]).
//!
//! Files come from people and from scripts, and sometimes from an attacker
//! (a drill experiment posted to the API, a topology in a pull request), so
//! the loader has limits that turn hostile input into a positioned error
//! instead of an exhausted machine: a file size ([`MAX_FILE_BYTES`]), a
//! nesting depth ([`MAX_DEPTH`]: every later pass over the tree recurses, and
//! so does dropping it) and a budget for what aliases may copy
//! ([`MAX_ALIAS_NODES`]: nine levels of ten aliases would otherwise expand
//! to 10⁹ nodes). They are checked as events arrive, so they cost nothing
//! measurable on the 100k-entity parse.

use crate::diag::Pos;
pub use crate::tree::{read_file, Node, SyntaxError, Value, MAX_DEPTH, MAX_FILE_BYTES};
use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use std::borrow::Cow;
use std::collections::HashMap;

/// How many nodes aliases may copy in one file, all aliases together.
pub const MAX_ALIAS_NODES: usize = 100_000;

fn pos_of(span: &Span) -> Pos {
    Pos::new(span.start.line() as u32, span.start.col() as u32 + 1)
}

/// Parses the first document of `src`. An empty file is a null node at 1:1.
pub fn parse(src: &str) -> Result<Node<'_>, SyntaxError> {
    parse_streaming(src, &[], &mut |_, _| {})
}

type ParseEvent<'a> = Result<(Event<'a>, Span), saphyr_parser::ScanError>;

/// Parses like [`parse`] (a JSON document through the faster
/// [`crate::json`] reader), but hands each item of the top-level sequences
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
    if crate::json::looks_like_json(src) {
        return crate::json::parse_streaming(src, sections, on_item);
    }
    let mut parser = Parser::new_from_str(src);
    let end = end_of(src);
    build(std::iter::from_fn(|| parser.next_event()), sections, on_item, end)
        .map_err(|e| SyntaxError { pos: within(end, e.pos), ..e })
}

/// The position just after the last character of `src`, lines counted as
/// YAML counts them (LF, CRLF, a lone CR).
fn end_of(src: &str) -> Pos {
    let breaks = src.matches('\n').count() + src.matches('\r').count() - src.matches("\r\n").count();
    let last = src.rsplit(['\n', '\r']).next().unwrap_or("");
    Pos::new(breaks as u32 + 1, last.chars().count() as u32 + 1)
}

/// A position inside the file: the scanner places an error or an empty
/// node at the end of a file without a final line break on the line after
/// it, which no editor shows; such a position becomes the end of the file.
fn within(end: Pos, pos: Pos) -> Pos {
    if pos.line <= end.line {
        pos
    } else {
        end
    }
}

fn build<'a>(
    events: impl Iterator<Item = ParseEvent<'a>>,
    sections: &[&str],
    on_item: &mut dyn FnMut(&str, Node<'a>),
    end: Pos,
) -> Result<Node<'a>, SyntaxError> {
    // Anchored nodes with how many nodes each holds, the price of an alias.
    let mut anchors: HashMap<usize, (Node<'a>, usize)> = HashMap::new();
    let mut alias_nodes = 0usize;
    // Children of every open collection live on one scratch stack; a
    // collection takes its children off it, into an exactly-sized vector,
    // when it closes. This avoids a growing vector per collection, which
    // for large files costs more in reallocation than parsing does.
    let mut scratch: Vec<Node<'a>> = Vec::with_capacity(1024);
    // Open collections: (start position, anchor, is a mapping, where its
    // children start, how many nodes it holds so far).
    let mut open: Vec<(Pos, usize, bool, usize, usize)> = Vec::new();
    let mut root: Option<Node<'a>> = None;
    let mut documents = 0;
    // The streamed section the parser is inside, if any (set while the
    // top-level mapping's value being read is a sequence named in `sections`).
    let mut section: Option<String> = None;

    for ev in events {
        let (event, span) = ev.map_err(|e| SyntaxError {
            pos: Pos::new(e.marker().line() as u32, e.marker().col() as u32 + 1),
            message: e.info().to_string(),
            limit: false,
        })?;
        let pos = within(end, pos_of(&span));
        if matches!(event, Event::SequenceStart(..) | Event::MappingStart(..)) && open.len() >= MAX_DEPTH {
            return Err(SyntaxError {
                pos,
                message: format!("lists and mappings are nested deeper than {MAX_DEPTH} levels here"),
                limit: true,
            });
        }
        let (node, anchor, size) = match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(SyntaxError {
                        pos,
                        message: "more than one YAML document in this file".into(),
                        limit: false,
                    });
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
                open.push((pos, anchor, false, scratch.len(), 1));
                continue;
            }
            Event::MappingStart(anchor, _) => {
                open.push((pos, anchor, true, scratch.len(), 1));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (start, anchor, is_map, from, size) = open.pop().ok_or_else(|| SyntaxError {
                    pos,
                    message: "unbalanced collection".into(),
                    limit: false,
                })?;
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
                (Node { pos: start, value }, anchor, size)
            }
            Event::Scalar(text, style, anchor, _) => {
                (Node { pos, value: Value::Scalar { text, plain: style == ScalarStyle::Plain } }, anchor, 1)
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some((node, size)) => {
                    alias_nodes = alias_nodes.saturating_add(*size);
                    if alias_nodes > MAX_ALIAS_NODES {
                        return Err(SyntaxError {
                            pos,
                            message: format!(
                                "aliases here expand to more than {MAX_ALIAS_NODES} nodes (an alias bomb?): write the values out, or use fewer nested aliases"
                            ),
                            limit: true,
                        });
                    }
                    (Node { pos, ..node.clone() }, 0, *size)
                }
                None => return Err(SyntaxError { pos, message: "alias to an unknown anchor".into(), limit: false }),
            },
        };
        if anchor > 0 {
            anchors.insert(anchor, (node.clone(), size));
        }
        if let Some(parent) = open.last_mut() {
            parent.4 = parent.4.saturating_add(size);
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
    fn an_alias_bomb_is_refused_at_the_alias_that_breaks_the_budget() {
        // Nine levels of ten aliases: 10^9 nodes if expanded.
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..9 {
            let prev = format!("*a{}", level - 1);
            src.push_str(&format!("a{level}: &a{level} [{}]\n", vec![prev; 10].join(", ")));
        }
        let err = parse(&src).unwrap_err();
        assert!(err.message.contains("alias bomb"), "{err:?}");
        assert!(err.pos.line >= 5 && err.pos.line <= 9, "the position of the alias that broke the budget: {err:?}");
    }

    #[test]
    fn a_few_aliases_of_a_shared_value_are_fine() {
        let mut src = String::from("base: &b { rpo: 5s, rto: 1m, tier: gold }\nitems:\n");
        for _ in 0..1000 {
            src.push_str("  - *b\n");
        }
        assert!(parse(&src).is_ok());
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_refused_with_its_position() {
        let deep = format!("a: {}{}\n", "[".repeat(MAX_DEPTH + 10), "]".repeat(MAX_DEPTH + 10));
        let err = parse(&deep).unwrap_err();
        assert!(err.message.contains("nested deeper"), "{err:?}");
        assert_eq!(err.pos.line, 1);
        assert_eq!(err.pos.col as usize, 4 + MAX_DEPTH - 1, "the first bracket past the limit");
        let ok = format!("a: {}{}\n", "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
        assert!(parse(&ok).is_ok());
        // Deep block nesting, the way indentation writes it, too.
        let mut block = String::new();
        for level in 0..200 {
            block.push_str(&format!("{}k{level}:\n", "  ".repeat(level)));
        }
        assert!(parse(&block).unwrap_err().message.contains("nested deeper"));
    }

    #[test]
    fn files_over_the_size_limit_are_refused_without_reading_them_whole() {
        let dir = std::env::temp_dir().join(format!("drctl-yaml-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.yaml");
        let file = std::fs::File::create(&big).unwrap();
        file.set_len(MAX_FILE_BYTES + 1).unwrap();
        let err = read_file(&big).unwrap_err();
        assert!(err.contains("larger than 64 MiB"), "{err}");
        let binary = dir.join("bin.yaml");
        std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
        assert!(read_file(&binary).unwrap_err().contains("not UTF-8"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_error_at_the_end_of_a_file_without_a_final_line_break_is_on_its_last_line() {
        let err = parse("a: 1\nb: { c: d").unwrap_err();
        assert_eq!(err.pos.line, 2, "{err:?}");
        assert!(err.pos.col <= 10, "{err:?}");
    }

    #[test]
    fn empty_input_is_null() {
        assert!(parse("").unwrap().is_null());
    }
}
