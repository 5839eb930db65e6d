//! `drctl man DIR`: the man pages, drctl.1 and one per command
//! (drctl-lab-up.1, ...), made from the same clap definition as `--help`
//! so the two cannot drift. The release tarball ships them
//! (`scripts/release.sh`).
//!
//! clap_mangen renders the name, synopsis, description, options and
//! subcommands; the end of each `--help` (an example and the exit codes,
//! `help.rs`) becomes the EXAMPLE and EXIT STATUS sections here, laid out
//! as man pages lay them out rather than as one filled paragraph.

use crate::flags::Cli;
use crate::{Failure, Outcome};
use anyhow::Context as _;
use clap::CommandFactory;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes every page into `dir` (created if needed); prints their paths.
pub fn write(dir: &Path) -> Result<Outcome, Failure> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    page_and_below(&cmd, dir, &mut written)?;
    let mut out = std::io::stdout().lock();
    for p in &written {
        // A closed pipe (`| head`) is not a failure.
        let _ = writeln!(out, "{}", p.display());
    }
    Ok(Outcome::Done)
}

fn page_and_below(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let name = cmd.get_display_name().unwrap_or_else(|| cmd.get_name()).to_string();
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page(cmd)?).with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        page_and_below(sub, dir, written)?;
    }
    Ok(())
}

/// One page, in roff.
pub fn page(cmd: &clap::Command) -> anyhow::Result<Vec<u8>> {
    // The end of --help is rendered below, section by section.
    let bare = cmd.clone().after_help(None::<&str>).after_long_help(None::<&str>);
    let man = clap_mangen::Man::new(bare).manual("drctl manual").source(format!("drctl {}", env!("CARGO_PKG_VERSION")));
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut out)?;
    }
    if let Some(end) = cmd.get_after_help() {
        out.extend_from_slice(end_sections(&end.to_string()).as_bytes());
    }
    Ok(out)
}

/// "Example:" and "Exit codes:" blocks (and a closing paragraph) as man
/// sections: examples verbatim, one tagged paragraph per exit code.
fn end_sections(text: &str) -> String {
    let mut roff = String::new();
    for block in text.split("\n\n") {
        let mut lines = block.lines();
        let Some(head) = lines.next() else { continue };
        match head.trim() {
            "Example:" | "Examples:" => {
                roff.push_str(".SH EXAMPLE\n.nf\n.RS 2\n");
                for l in lines {
                    roff.push_str(&escape(l.trim_start()));
                    roff.push('\n');
                }
                roff.push_str(".RE\n.fi\n");
            }
            "Exit codes:" => {
                roff.push_str(".SH \"EXIT STATUS\"\n");
                for l in lines {
                    let l = l.trim_start();
                    let (code, what) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
                    roff.push_str(&format!(".TP\n.B {}\n{}\n", escape(code), escape(what.trim())));
                }
            }
            _ => {
                roff.push_str(".SH \"SEE ALSO\"\n");
                for l in block.lines() {
                    roff.push_str(&escape(l));
                    roff.push('\n');
                }
            }
        }
    }
    roff
}

/// Text as roff shows it literally: backslashes, minus signs (so options
/// copy as typed) and a leading dot or quote escaped.
fn escape(line: &str) -> String {
    let mut s = line.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        s.insert_str(0, "\\&");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_help_becomes_example_and_exit_status_sections() {
        let roff = end_sections(crate::help::DECLARE);
        assert!(roff.contains(".SH EXAMPLE\n.nf\n.RS 2\ndrctl declare \\-f examples/local/drctl.yaml"), "{roff}");
        assert!(roff.contains(".SH \"EXIT STATUS\"\n.TP\n.B 0\nfailed over"), "{roff}");
        assert!(roff.contains(".TP\n.B 3\n"), "{roff}");
    }

    #[test]
    fn roff_control_characters_are_escaped() {
        assert_eq!(escape(".hidden"), "\\&.hidden");
        assert_eq!(escape("a\\b --x"), "a\\eb \\-\\-x");
    }
}
