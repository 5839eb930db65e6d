//! The documentation's examples, checked: every `$ drctl ...` line in a
//! ```` ```console ```` block of README.md and docs/**/*.md.
//!
//! Conventions (docs/README.md repeats them for writers):
//! - A command that needs nothing but the repository (`validate`, `plan`,
//!   `graph`, `schema`, `iam-policy`, `--help`, `--version`) is run from the
//!   repository's root through `sh` (so `| tail -4` works), stderr folded
//!   into stdout, and the lines shown under it must be what it prints, in
//!   order and adjacent; a line `...` (indented or not) stands for any
//!   number of lines. Nothing shown: only the exit code is checked (0, 2
//!   or 3; never 1, a failure at run time).
//! - Every other `drctl` invocation in a console block (it needs a lab, a
//!   database, AWS: other tests run those for real) must name a subcommand
//!   that exists, and each `--flag` it passes must be one that
//!   subcommand's `--help` lists. A renamed flag breaks this test, not a
//!   reader's morning.
//! - In ```` ```sh ```` blocks every line is a command (no output shown):
//!   its `drctl` invocations are checked against `--help` as above, and
//!   `cargo run --release -- ARGS` counts as `drctl ARGS`. ```` ```text ````
//!   and untagged blocks are not checked.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Subcommands whose examples run offline, on the repository's files.
const OFFLINE: &[&str] = &["validate", "plan", "graph", "schema", "iam-policy", "--help", "--version", "help"];
/// Subcommands that take a subcommand of their own.
const NESTED: &[&str] = &["token", "subscriptions", "audit", "keys", "status-page", "lab", "bench"];

struct Example {
    file: String,
    line: usize,
    command: String,
    expected: Vec<String>,
    /// From a console block (run when offline); an sh block's lines are
    /// only checked against `--help`.
    console: bool,
}

fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            markdown_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
}

fn examples() -> Vec<Example> {
    let root = repo();
    let mut files = vec![root.join("README.md")];
    markdown_files(&root.join("docs"), &mut files);
    let mut found = Vec::new();
    for path in files {
        let name = path.strip_prefix(&root).unwrap().display().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut in_console = false;
        let mut in_sh = false;
        let mut indent = 0;
        let mut current: Option<Example> = None;
        let mut continued = false;
        for (i, line) in text.lines().enumerate() {
            let fence = line.trim_start();
            if fence.starts_with("```") {
                if in_console || in_sh {
                    found.extend(current.take());
                    (in_console, in_sh) = (false, false);
                } else {
                    in_console = fence.trim_end() == "```console";
                    in_sh = matches!(fence.trim_end(), "```sh" | "```bash" | "```shell");
                    // A block inside a list item is indented as a whole.
                    indent = line.len() - fence.len();
                }
                continue;
            }
            if !in_console && !in_sh {
                continue;
            }
            let line = line.get(indent..).unwrap_or(line.trim_start());
            if in_sh && !continued {
                // Every line of a shell block is a command; comments are not.
                found.extend(current.take());
                let cmd = line.trim();
                if !cmd.is_empty() && !cmd.starts_with('#') {
                    continued = cmd.ends_with('\\');
                    let command = cmd.trim_end_matches('\\').trim_end().to_string();
                    current = Some(Example {
                        file: name.clone(),
                        line: i + 1,
                        command,
                        expected: Vec::new(),
                        console: false,
                    });
                }
                continue;
            }
            if continued {
                if let Some(ex) = current.as_mut() {
                    ex.command.push(' ');
                    ex.command.push_str(line.trim().trim_end_matches('\\').trim_end());
                }
                continued = line.trim_end().ends_with('\\');
            } else if let Some(cmd) = line.strip_prefix("$ ") {
                found.extend(current.take());
                continued = cmd.trim_end().ends_with('\\');
                let command = cmd.trim_end().trim_end_matches('\\').trim_end().to_string();
                current =
                    Some(Example { file: name.clone(), line: i + 1, command, expected: Vec::new(), console: true });
            } else if let Some(ex) = current.as_mut() {
                ex.expected.push(line.trim_end().to_string());
            }
        }
        found.extend(current);
    }
    for ex in &mut found {
        while ex.expected.last().is_some_and(|l| l.is_empty()) {
            ex.expected.pop();
        }
    }
    found
}

/// Every `drctl ...` invocation in a shell line, as its words (up to the
/// next `|`, `;`, `&&`, `)` or redirection).
fn invocations(command: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = command;
    while let Some(at) = rest.find("drctl ") {
        let before = &rest[..at];
        let starts_word = before.is_empty() || before.ends_with([' ', '(', ';', '|', '&']);
        let tail = &rest[at + "drctl ".len()..];
        let end = tail.find(['|', ';', ')', '>', '&', '#']).unwrap_or(tail.len());
        if starts_word {
            out.push(tail[..end].split_whitespace().map(str::to_string).collect());
        }
        rest = &tail[end..];
    }
    out
}

/// The subcommand words of an invocation, global flags skipped.
fn subcommand(words: &[String]) -> Vec<String> {
    let mut i = 0;
    while i < words.len() && (words[i] == "--state" || words[i] == "--log-format") {
        i += 2;
    }
    let mut sub = Vec::new();
    if let Some(first) = words.get(i) {
        sub.push(first.clone());
        if NESTED.contains(&first.as_str()) {
            if let Some(second) = words.get(i + 1).filter(|w| !w.starts_with('-')) {
                sub.push(second.clone());
            }
        }
    }
    sub
}

fn help(cache: &mut HashMap<Vec<String>, Option<String>>, sub: &[String]) -> Option<String> {
    cache
        .entry(sub.to_vec())
        .or_insert_with(|| {
            let o = Command::new(env!("CARGO_BIN_EXE_drctl")).args(sub).arg("--help").output().expect("drctl runs");
            o.status.success().then(|| String::from_utf8_lossy(&o.stdout).into_owned())
        })
        .clone()
}

/// The shown lines, `...` standing for any run of lines, against the real ones.
fn matches(expected: &[String], actual: &[&str]) -> bool {
    fn go(exp: &[String], act: &[&str]) -> bool {
        match exp.split_first() {
            None => act.is_empty(),
            Some((first, rest)) if first.trim() == "..." => (0..=act.len()).any(|skip| go(rest, &act[skip..])),
            Some((first, rest)) => act.first().is_some_and(|a| a.trim_end() == first) && go(rest, &act[1..]),
        }
    }
    go(expected, actual)
}

#[test]
fn every_documented_command_exists_and_the_offline_ones_print_what_is_shown() {
    let root = repo();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_drctl")).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut cache = HashMap::new();
    let top = help(&mut cache, &[]).expect("drctl --help works");
    let mut failures = Vec::new();
    let (mut ran, mut checked) = (0, 0);
    for ex in examples() {
        let at = format!("{}:{}: `{}`", ex.file, ex.line, ex.command);
        // The README's way of running drctl from a checkout.
        let command = ex.command.replace("cargo run --release -- ", "drctl ");
        for words in invocations(&command) {
            let sub = subcommand(&words);
            if sub.is_empty() || sub[0].starts_with('-') {
                continue;
            }
            let Some(text) = help(&mut cache, &sub) else {
                failures.push(format!("{at}: `drctl {}` is not a command", sub.join(" ")));
                continue;
            };
            for word in &words {
                let flag = word.split('=').next().unwrap_or(word);
                if flag.starts_with("--") && flag.len() > 2 && !text.contains(flag) && !top.contains(flag) {
                    failures.push(format!("{at}: `drctl {}` has no flag {flag}", sub.join(" ")));
                }
            }
            checked += 1;
        }
        let words: Vec<&str> = ex.command.split_whitespace().collect();
        let offline =
            ex.console && words.first() == Some(&"drctl") && words.get(1).is_some_and(|w| OFFLINE.contains(w));
        if !offline {
            continue;
        }
        let o = Command::new("sh")
            .arg("-c")
            .arg(format!("{{ {}\n}} 2>&1", ex.command))
            .current_dir(&root)
            .env("PATH", &path)
            .env("COLUMNS", "100")
            .env("NO_COLOR", "1")
            .output()
            .expect("sh runs");
        ran += 1;
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let lines: Vec<&str> = out.lines().collect();
        let code = o.status.code();
        if ex.expected.is_empty() {
            if !matches!(code, Some(0 | 2 | 3)) {
                failures.push(format!("{at}: exited {code:?}:\n{out}"));
            }
        } else if !matches(&ex.expected, &lines) {
            failures
                .push(format!("{at}: prints\n{out}\nwhich is not what the page shows:\n{}", ex.expected.join("\n")));
        }
    }
    eprintln!("{ran} documented commands run, {checked} drctl invocations checked against --help");
    assert!(ran >= 5 && checked >= 20, "the docs' examples were not found ({ran} run, {checked} checked)");
    assert!(failures.is_empty(), "{} documented examples are wrong:\n\n{}", failures.len(), failures.join("\n\n"));
}

/// Pages other helpers of the same change write; empty this list once they
/// are merged, so a link to a page that never came is caught.
const WRITTEN_ELSEWHERE: &[&str] = &[
    "docs/declaring.md",
    "docs/lag-and-rpo.md",
    "docs/customers.md",
    "docs/commands.md",
    "docs/hardening.md",
    "docs/restore.md",
    "docs/install.md",
    "docs/readiness.md",
];

/// A heading as GitHub turns it into an anchor.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.push(slug(line.trim_start_matches('#')));
        }
    }
    out
}

#[test]
fn every_link_in_the_docs_points_at_something_the_repository_has() {
    let root = repo();
    let mut files = vec![root.join("README.md")];
    markdown_files(&root.join("docs"), &mut files);
    let mut failures = Vec::new();
    for path in &files {
        let name = path.strip_prefix(&root).unwrap().display().to_string();
        let text = std::fs::read_to_string(path).unwrap();
        let mut in_code = false;
        for (i, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("```") {
                in_code = !in_code;
                continue;
            }
            if in_code {
                continue;
            }
            let mut rest = line;
            while let Some(at) = rest.find("](") {
                let tail = &rest[at + 2..];
                let end = tail.find(')').unwrap_or(tail.len());
                let link = &tail[..end];
                rest = &tail[end..];
                if link.contains("://") || link.starts_with("mailto:") {
                    continue;
                }
                let (file, anchor) = link.split_once('#').unwrap_or((link, ""));
                let target = if file.is_empty() { path.clone() } else { path.parent().unwrap().join(file) };
                let Ok(target) = target.canonicalize() else {
                    let relative = path.parent().unwrap().join(file);
                    let normal = normalize(&relative, &root);
                    if !WRITTEN_ELSEWHERE.contains(&normal.as_str()) {
                        failures.push(format!("{name}:{}: `{link}`: no such file", i + 1));
                    }
                    continue;
                };
                if !anchor.is_empty() && target.extension().is_some_and(|e| e == "md") {
                    let body = std::fs::read_to_string(&target).unwrap_or_default();
                    if !anchors(&body).iter().any(|a| a == anchor) {
                        failures.push(format!("{name}:{}: `{link}`: no heading makes the anchor #{anchor}", i + 1));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} broken links:\n{}", failures.len(), failures.join("\n"));
}

/// `docs/guide/../declaring.md` as `docs/declaring.md`, relative to the root.
fn normalize(path: &Path, root: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in path.strip_prefix(root).unwrap_or(path).components() {
        match c {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    parts.join("/")
}
