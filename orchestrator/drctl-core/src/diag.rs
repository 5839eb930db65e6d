//! Diagnostics: what is wrong with an input file, where, and how to fix it.
//!
//! Every error a user can cause by editing a file ends up here, so that they
//! are all reported together (one run of `drctl validate` shows every
//! mistake) and all look the same: `file:line:column: error[CODE]: what`,
//! then an optional `hint:` line. Codes are stable so that scripts and docs
//! can refer to them.

use std::fmt;
use std::path::{Path, PathBuf};

/// A place in a source file, both 1-based, columns counted in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl Pos {
    pub const fn new(line: u32, col: u32) -> Self {
        Pos { line, col }
    }
}

/// How bad a diagnostic is: errors make the file unusable, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// Stable diagnostic codes. Never renumber: add new ones at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Code {
    /// The file is not valid YAML.
    Syntax,
    /// A key that the format does not define (usually a typo).
    UnknownKey,
    /// A required key is absent.
    MissingKey,
    /// A value has the wrong type (a list where a mapping is expected, ...).
    WrongType,
    /// A value has the right type but is not allowed (bad duration, bad enum value).
    BadValue,
    /// Two things share a name that must be unique.
    Duplicate,
    /// A reference to something that is not declared.
    UnknownReference,
    /// A dependency cycle.
    Cycle,
    /// The file could not be read.
    Io,
    /// A datastore that cannot fail over (warning).
    NoReplica,
    /// Something legal but probably not what was meant (warning).
    Suspicious,
    // Requests a command or the operator API refuses (not file problems).
    /// A name the topology does not have in that role.
    NotInTopology,
    /// Asked to copy or resolve a datastore drctl does not replicate.
    NotReplicated,
    /// A declaration that says nothing is lost.
    EmptyScope,
    /// A scope the planner cannot plan (an unknown zone, region or target).
    BadScope,
    /// Resuming an execution planned from a topology that has changed since.
    TopologyChanged,
    /// A decision about a step the execution does not have.
    NoSuchStep,
    /// A decision about a step that is not waiting for one.
    NotWaiting,
    /// An object named for conflict resolution that cannot be read.
    NoSuchObject,
    /// An approval its runbook keeps to a role the approver does not have.
    NotYourApproval,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Syntax => "E001",
            Code::UnknownKey => "E002",
            Code::MissingKey => "E003",
            Code::WrongType => "E004",
            Code::BadValue => "E005",
            Code::Duplicate => "E006",
            Code::UnknownReference => "E007",
            Code::Cycle => "E008",
            Code::Io => "E009",
            Code::NoReplica => "W001",
            Code::Suspicious => "W002",
            Code::NotInTopology => "E101",
            Code::NotReplicated => "E102",
            Code::EmptyScope => "E103",
            Code::BadScope => "E104",
            Code::TopologyChanged => "E105",
            Code::NoSuchStep => "E106",
            Code::NotWaiting => "E107",
            Code::NoSuchObject => "E108",
            Code::NotYourApproval => "E109",
        }
    }

    /// What to do about a refused request, when the message alone does not say.
    pub fn hint(self) -> Option<&'static str> {
        Some(match self {
            Code::NotInTopology => "`drctl validate -f drctl.yaml` lists what the topology declares",
            Code::NotReplicated => {
                "drctl copies s3 datastores with `replication: { by: drctl }`; others replicate natively and are watched"
            }
            Code::EmptyScope => {
                "name what is lost: --zone ZONE, --region REGION or --target NAME (each repeatable); `zones`, `regions` or `targets` in the API"
            }
            Code::BadScope => "`drctl plan --zone ZONE` shows what a scope would move before it is declared",
            Code::NoSuchStep | Code::NotWaiting => "`drctl show ID` lists the execution's steps and their states",
            Code::NoSuchObject => "`drctl status` lists the conflicts replication recorded, with their zones and keys",
            Code::NotYourApproval => {
                "ask someone with an admin token, or approve on the controller's machine with `drctl approve ID STEP` (local access to the state store is an admin's)"
            }
            _ => return None,
        })
    }
}

/// One problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: Code,
    pub file: PathBuf,
    pub pos: Pos,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {sev}[{}]: {}",
            self.file.display(),
            self.pos.line,
            self.pos.col,
            self.code.as_str(),
            self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Collects diagnostics for one file while it is decoded and validated.
#[derive(Debug)]
pub struct Diagnostics {
    file: PathBuf,
    items: Vec<Diagnostic>,
    /// "Did you mean" hints given so far (see [`Diagnostics::suggest`]).
    suggested: usize,
}

/// The most "did you mean" hints one file gets. Each compares a name with
/// every candidate: a file of many unknown references among many names
/// (100,000 of each) would otherwise take quadratic time to be refused.
pub const MAX_SUGGESTIONS: usize = 100;

impl Diagnostics {
    pub fn new(file: &Path) -> Self {
        Diagnostics { file: file.to_path_buf(), items: Vec::new(), suggested: 0 }
    }

    /// [`did_you_mean`], for the first [`MAX_SUGGESTIONS`] unknown names of
    /// the file; `None` after (the error still names what is unknown).
    pub fn suggest<'a>(&mut self, word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
        if self.suggested >= MAX_SUGGESTIONS {
            return None;
        }
        self.suggested += 1;
        did_you_mean(word, candidates)
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    pub fn error(&mut self, code: Code, pos: Pos, message: impl Into<String>) -> &mut Diagnostic {
        self.push(Severity::Error, code, pos, message)
    }

    pub fn warning(&mut self, code: Code, pos: Pos, message: impl Into<String>) -> &mut Diagnostic {
        self.push(Severity::Warning, code, pos, message)
    }

    fn push(&mut self, severity: Severity, code: Code, pos: Pos, message: impl Into<String>) -> &mut Diagnostic {
        self.items.push(Diagnostic {
            severity,
            code,
            file: self.file.clone(),
            pos,
            message: message.into(),
            hint: None,
        });
        self.items.last_mut().expect("just pushed")
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    /// Moves another file's diagnostics (a runbook's) into this collection.
    pub fn extend(&mut self, other: Vec<Diagnostic>) {
        self.items.extend(other);
    }

    /// The diagnostics sorted by file and position, errors first on a tie.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.items.sort_by(|a, b| (&a.file, a.pos, a.severity).cmp(&(&b.file, b.pos, b.severity)));
        self.items
    }
}

impl Diagnostic {
    pub fn with_hint(&mut self, hint: impl Into<String>) -> &mut Self {
        self.hint = Some(hint.into());
        self
    }
}

/// The closest of `candidates` to `word`, when it is close enough to be a
/// plausible typo. Used for "did you mean ...?" hints.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(&str, f64)> = None;
    for cand in candidates {
        let score = strsim::jaro_winkler(&word.to_ascii_lowercase(), &cand.to_ascii_lowercase());
        if score > 0.8 && best.is_none_or(|(_, s)| score > s) {
            best = Some((cand, score));
        }
    }
    best.map(|(c, _)| c)
}

/// The name a typed name most likely meant, for a scope on the command
/// line: a close spelling ([`did_you_mean`]), or else the one name that
/// contains it as a whole part (`az1` for `lab-az1`, `orders` for
/// `orders-db`), as people shorten names they type under stress.
pub fn closest_name<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str> + Clone) -> Option<&'a str> {
    if let Some(near) = did_you_mean(word, candidates.clone()) {
        return Some(near);
    }
    let w = word.to_ascii_lowercase();
    if w.is_empty() {
        return None;
    }
    let parts = |c: &str| -> bool {
        let c = c.to_ascii_lowercase();
        c.split(['-', '_', '.']).any(|p| p == w)
            || c.ends_with(&format!("-{w}"))
            || c.starts_with(&format!("{w}-"))
            || c.contains(&format!("-{w}-"))
    };
    let mut found = candidates.into_iter().filter(|c| parts(c));
    match (found.next(), found.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

/// A list of names for a message: the first eight, and how many in all.
pub(crate) fn abbreviated(names: &[&str]) -> String {
    if names.len() <= 8 {
        names.join(", ")
    } else {
        format!("{}, ... ({} in all)", names[..8].join(", "), names.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_gets_a_bounded_number_of_suggestions() {
        let mut d = Diagnostics::new(Path::new("t.yaml"));
        for _ in 0..MAX_SUGGESTIONS {
            assert_eq!(d.suggest("zone-a", ["zone-b", "other"]), Some("zone-b"));
        }
        assert_eq!(d.suggest("zone-a", ["zone-b"]), None, "past the bound, no more comparisons");
    }

    #[test]
    fn a_shortened_zone_name_suggests_the_one_it_is_part_of() {
        let zones = ["lab-az1", "lab-az2", "lab-az3"];
        assert_eq!(closest_name("az1", zones), Some("lab-az1"));
        assert_eq!(closest_name("lab-az4", zones).map(|z| z.starts_with("lab-az")), Some(true));
        assert_eq!(closest_name("use1-az1", ["use1-az1", "use1-az2"]), Some("use1-az1"));
        assert_eq!(closest_name("orders", ["orders-db", "payments"]), Some("orders-db"));
        assert_eq!(closest_name("zzz", zones), None);
    }

    #[test]
    fn suggests_close_names_only() {
        let keys = ["depends_on", "zones", "tier", "health"];
        assert_eq!(did_you_mean("depend_on", keys), Some("depends_on"));
        assert_eq!(did_you_mean("zone", keys), Some("zones"));
        assert_eq!(did_you_mean("colour", keys), None);
    }

    #[test]
    fn display_has_file_line_column_code_and_hint() {
        let mut d = Diagnostics::new(Path::new("drctl.yaml"));
        d.error(Code::UnknownKey, Pos::new(3, 5), "unknown key `depend_on`").with_hint("did you mean `depends_on`?");
        let out = d.into_sorted()[0].to_string();
        assert_eq!(out, "drctl.yaml:3:5: error[E002]: unknown key `depend_on`\n  hint: did you mean `depends_on`?");
    }
}
