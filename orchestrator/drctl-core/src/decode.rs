//! Hand-written decoding from the positioned YAML tree into raw types.
//!
//! Decoding never stops at the first problem: each helper records a
//! diagnostic and returns `None`, and the caller carries on with the rest of
//! the file. Unknown keys are errors (they are almost always typos) and come
//! with a "did you mean" hint drawn from the keys allowed at that place.

use crate::diag::{did_you_mean, Code, Diagnostic, Diagnostics, Pos};
use crate::duration::parse_duration;
use crate::yaml::{Node, Value};
use std::fmt::{self, Display};
use std::path::Path;
use std::time::Duration;

/// Describes the place being decoded, for messages. Formatted only when a
/// diagnostic is actually reported, so that decoding a 100k-entity file
/// does not build a million context strings it never prints.
pub type What<'a> = &'a dyn Display;

/// "`key` of OWNER".
pub struct Field<'a>(pub &'a str, pub What<'a>);

impl Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` of {}", self.0, self.1)
    }
}

/// "PART of OWNER", e.g. "the primary of datastore `orders-db`".
pub struct Of<'a>(pub &'a str, pub What<'a>);

impl Display for Of<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {}", self.0, self.1)
    }
}

/// "KIND `name`", or "a KIND" when the name is unknown.
pub struct Named<'a>(pub &'a str, pub Option<&'a str>);

impl Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(name) => write!(f, "{} `{name}`", self.0),
            None => write!(f, "a {}", self.0),
        }
    }
}

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T> {
    pub value: T,
    pub pos: Pos,
}

impl<T> Spanned<T> {
    pub fn new(value: T, pos: Pos) -> Self {
        Spanned { value, pos }
    }
}

/// The entries of a mapping whose keys were checked against an allowed set.
pub struct Fields<'a> {
    pub pos: Pos,
    entries: Vec<(&'a str, &'a Node<'a>)>,
    /// Where each entry's key is written, in the same order.
    key_pos: Vec<Pos>,
}

impl<'a> Fields<'a> {
    pub fn get(&self, key: &str) -> Option<&'a Node<'a>> {
        self.entries.iter().find(|(k, _)| *k == key).map(|(_, v)| *v).filter(|v| !v.is_null())
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Every entry in file order (for free-form mappings such as `records`).
    pub fn entries(&self) -> &[(&'a str, &'a Node<'a>)] {
        &self.entries
    }

    /// Every entry in file order with where its key is written (for
    /// errors about free-form keys, found without a scan per key).
    pub fn entries_at(&self) -> impl Iterator<Item = (&'a str, Pos, &'a Node<'a>)> + '_ {
        self.entries.iter().zip(&self.key_pos).map(|((k, v), p)| (*k, *p, *v))
    }
}

/// Decoding context: where diagnostics go.
pub struct Decoder<'d> {
    pub diags: &'d mut Diagnostics,
}

impl<'d> Decoder<'d> {
    pub fn new(diags: &'d mut Diagnostics) -> Self {
        Decoder { diags }
    }

    /// Reads a mapping, reporting duplicate keys and keys not in `allowed`
    /// (`allowed` empty means any key is fine).
    pub fn fields<'a>(&mut self, node: &'a Node<'a>, what: What, allowed: &[&str]) -> Option<Fields<'a>> {
        let Value::Map(map) = &node.value else {
            self.wrong_type(node, what, "a mapping");
            return None;
        };
        let mut entries: Vec<(&'a str, &'a Node<'a>)> = Vec::with_capacity(map.len());
        let mut key_pos: Vec<Pos> = Vec::with_capacity(map.len());
        // Past a few keys (a `records` or health `zones` map of 100,000
        // zones), duplicates are found by an index, not a scan: linear time.
        let mut index: Option<std::collections::HashMap<&'a str, usize>> = None;
        for (key, value) in map {
            let Some(name) = key.as_scalar() else {
                self.diags.error(Code::WrongType, key.pos, format!("a key in {what} must be a plain name"));
                continue;
            };
            let seen = match &index {
                Some(ix) => ix.get(name).map(|&i| &entries[i]),
                None => entries.iter().find(|(k, _)| *k == name),
            };
            if let Some((_, first)) = seen {
                let first_line = first.pos.line;
                self.diags
                    .error(Code::Duplicate, key.pos, format!("`{name}` is given twice in {what}"))
                    .with_hint(format!("the first one is on line {first_line}; keep one"));
                continue;
            }
            if !allowed.is_empty() && !allowed.contains(&name) {
                let hint = match did_you_mean(name, allowed.iter().copied()) {
                    Some(near) => format!("did you mean `{near}`? (allowed here: {})", allowed.join(", ")),
                    None if name == "<<" => "YAML merge keys are not supported; write the keys out".into(),
                    None => format!("allowed here: {}", allowed.join(", ")),
                };
                self.diags.error(Code::UnknownKey, key.pos, format!("unknown key `{name}` in {what}")).with_hint(hint);
                continue;
            }
            entries.push((name, value));
            key_pos.push(key.pos);
            match &mut index {
                Some(ix) => {
                    ix.insert(name, entries.len() - 1);
                }
                None if entries.len() >= 16 => {
                    index = Some(entries.iter().enumerate().map(|(i, (k, _))| (*k, i)).collect());
                }
                None => {}
            }
        }
        Some(Fields { pos: node.pos, entries, key_pos })
    }

    /// A required entry; reports its absence at the mapping's position.
    pub fn required<'a>(&mut self, fields: &Fields<'a>, key: &str, what: What) -> Option<&'a Node<'a>> {
        let found = fields.get(key);
        if found.is_none() {
            self.diags
                .error(Code::MissingKey, fields.pos, format!("{what} has no `{key}`"))
                .with_hint(format!("add `{key}:`"));
        }
        found
    }

    pub fn wrong_type(&mut self, node: &Node, what: What, expected: &str) {
        self.diags.error(Code::WrongType, node.pos, format!("{what} must be {expected}, not {}", node.kind_name()));
    }

    pub fn string(&mut self, node: &Node, what: What) -> Option<Spanned<String>> {
        match node.as_scalar() {
            Some(text) => Some(Spanned::new(text.to_owned(), node.pos)),
            None => {
                self.wrong_type(node, what, "a string");
                None
            }
        }
    }

    pub fn opt_string(&mut self, fields: &Fields, key: &str, what: What) -> Option<Spanned<String>> {
        let node = fields.get(key)?;
        self.string(node, &Field(key, what))
    }

    pub fn req_string(&mut self, fields: &Fields, key: &str, what: What) -> Option<Spanned<String>> {
        let node = self.required(fields, key, what)?;
        self.string(node, &Field(key, what))
    }

    pub fn duration(&mut self, node: &Node, what: What) -> Option<Spanned<Duration>> {
        let text = self.string(node, what)?;
        match parse_duration(&text.value) {
            Ok(d) => Some(Spanned::new(d, node.pos)),
            Err(why) => {
                self.diags
                    .error(Code::BadValue, node.pos, format!("{what}: {why}"))
                    .with_hint("write a duration such as 250ms, 30s, 2m, 1h30m or a number of seconds");
                None
            }
        }
    }

    pub fn opt_duration(&mut self, fields: &Fields, key: &str, what: What) -> Option<Spanned<Duration>> {
        let node = fields.get(key)?;
        self.duration(node, &Field(key, what))
    }

    pub fn unsigned(&mut self, node: &Node, what: What) -> Option<Spanned<u64>> {
        match node.as_scalar().map(str::parse::<u64>) {
            Some(Ok(n)) => Some(Spanned::new(n, node.pos)),
            _ => {
                self.diags.error(Code::WrongType, node.pos, format!("{what} must be a whole number of zero or more"));
                None
            }
        }
    }

    /// `true` or `false` (YAML 1.2 core schema: nothing else is a boolean).
    pub fn boolean(&mut self, node: &Node, what: What) -> Option<Spanned<bool>> {
        match node.as_scalar() {
            Some("true") => Some(Spanned::new(true, node.pos)),
            Some("false") => Some(Spanned::new(false, node.pos)),
            _ => {
                self.diags
                    .error(Code::WrongType, node.pos, format!("{what} must be `true` or `false`"))
                    .with_hint("write true or false, unquoted");
                None
            }
        }
    }

    /// A list; null or absent is an empty list.
    pub fn list<'a>(&mut self, node: Option<&'a Node<'a>>, what: What) -> &'a [Node<'a>] {
        match node {
            None => &[],
            Some(n) if n.is_null() => &[],
            Some(Node { value: Value::Seq(items), .. }) => items,
            Some(n) => {
                self.wrong_type(n, what, "a list");
                &[]
            }
        }
    }

    pub fn string_list(&mut self, node: Option<&Node>, what: What) -> Vec<Spanned<String>> {
        let items = self.list(node, what);
        items.iter().filter_map(|n| self.string(n, &Of("an item", what))).collect()
    }

    /// Checks that a string is one of `choices`, with a hint when it is not.
    pub fn choice(&mut self, value: &Spanned<String>, what: What, choices: &[&str]) -> bool {
        if choices.contains(&value.value.as_str()) {
            return true;
        }
        let hint = match did_you_mean(&value.value, choices.iter().copied()) {
            Some(near) => format!("did you mean `{near}`? (one of: {})", choices.join(", ")),
            None => format!("one of: {}", choices.join(", ")),
        };
        self.diags.error(Code::BadValue, value.pos, format!("{what} `{}` is not known", value.value)).with_hint(hint);
        false
    }
}

/// Converts a YAML node into JSON for free-form parameters (a runbook
/// step's `with`): plain scalars become booleans, numbers or null when they
/// look like one, everything quoted stays a string.
pub fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value as J;
    match &node.value {
        _ if node.is_null() => J::Null,
        Value::Scalar { text, plain: false } => J::String(text.to_string()),
        Value::Scalar { text, plain: true } => match &**text {
            "true" | "True" | "TRUE" => J::Bool(true),
            "false" | "False" | "FALSE" => J::Bool(false),
            t => {
                if let Ok(i) = t.parse::<i64>() {
                    J::from(i)
                } else if let Some(f) = t.parse::<f64>().ok().filter(|f| f.is_finite()) {
                    J::from(f)
                } else {
                    J::String(t.to_string())
                }
            }
        },
        Value::Seq(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => {
            J::Object(entries.iter().filter_map(|(k, v)| Some((k.as_scalar()?.to_string(), to_json(v)))).collect())
        }
    }
}

/// Reads one file of a drctl format (an experiment, a restore test) and
/// decodes it: every problem a diagnostic at its position, an unreadable
/// file named as `what` ("the experiment").
pub fn load_file<T>(
    path: &Path,
    what: &str,
    decode: impl FnOnce(&mut Decoder<'_>, &Node<'_>, &Path) -> Option<T>,
) -> Result<T, Vec<Diagnostic>> {
    match crate::yaml::read_file(path) {
        Ok(src) => load_source(&src, path, decode),
        Err(e) => {
            let mut d = Diagnostics::new(path);
            d.error(Code::Io, Pos::new(1, 1), format!("cannot read {what}: {e}"));
            Err(d.into_sorted())
        }
    }
}

/// Decodes `src`, the text of `path`, as [`load_file`] does.
pub fn load_source<T>(
    src: &str,
    path: &Path,
    decode: impl FnOnce(&mut Decoder<'_>, &Node<'_>, &Path) -> Option<T>,
) -> Result<T, Vec<Diagnostic>> {
    let mut diags = Diagnostics::new(path);
    let root = match crate::yaml::parse(src) {
        Ok(r) => r,
        Err(e) => {
            diags.error(Code::Syntax, e.pos, e.describe());
            return Err(diags.into_sorted());
        }
    };
    let decoded = decode(&mut Decoder::new(&mut diags), &root, path);
    match decoded {
        Some(t) if !diags.has_errors() => Ok(t),
        _ => Err(diags.into_sorted()),
    }
}
