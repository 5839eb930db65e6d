//! The positioned tree both readers build (YAML, and JSON through its
//! faster reader), and the limits every file read is held to: what the
//! decoders walk, whichever syntax the file was written in.

use crate::diag::Pos;
use std::borrow::Cow;
use std::io::Read;
use std::path::Path;

/// The largest file drctl reads: a 100,000-entity topology is about 15 MiB.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// The deepest nesting of lists and mappings (drctl's formats need about 8).
pub const MAX_DEPTH: usize = 64;

/// Reads a file to be parsed, refusing one larger than [`MAX_FILE_BYTES`]
/// without reading past the limit (a `/dev/zero` or a 10 GiB file costs
/// nothing). The error is in words, for a diagnostic at 1:1.
pub fn read_file(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut src = String::new();
    file.take(MAX_FILE_BYTES + 1).read_to_string(&mut src).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => "the file is not UTF-8 text".to_string(),
        _ => e.to_string(),
    })?;
    if src.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("the file is larger than {} MiB, the most drctl reads", MAX_FILE_BYTES >> 20));
    }
    Ok(src)
}

/// A node and the position where it starts.
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

/// A syntax error at a position (YAML's or JSON's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
    /// A limit (size, depth, aliases) was hit, not a YAML mistake: the
    /// message says what to do; no hint about brackets applies.
    pub limit: bool,
}

impl SyntaxError {
    /// The message as a diagnostic says it.
    pub fn describe(&self) -> String {
        if self.limit {
            format!("refused: {}", self.message)
        } else {
            format!("not valid YAML: {}", self.message)
        }
    }
}
