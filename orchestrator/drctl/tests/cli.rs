//! The binary as users and scripts see it: text output (golden files),
//! JSON, and SPEC §10's exit codes. Set UPDATE_GOLDEN=1 to rewrite the
//! golden files after an intended change, then review the diff.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn drctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drctl"))
        .args(args)
        .current_dir(repo())
        .env("COLUMNS", "100")
        .env("NO_COLOR", "1")
        .output()
        .expect("drctl runs")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(expected == actual, "{name} differs from the golden file (UPDATE_GOLDEN=1 to accept):\n--- expected\n{expected}\n--- actual\n{actual}");
}

fn temp_file(name: &str, content: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("drctl-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

const SAAS: &str = "examples/saas/drctl.yaml";

/// `drctl plan --output json | head -1` printed a panic ("failed printing
/// to stdout: Broken pipe") once head had read its line.
#[test]
fn a_reader_that_leaves_early_ends_the_output_quietly() {
    use std::io::Read;
    // A plan far longer than a pipe's buffer (64 KiB), so that drctl is
    // still writing when the reader goes.
    let mut yaml = String::from(
        "version: 1\nname: big\nzones: [{ name: a, region: r }, { name: b, region: r }]\n\
         objectives: { tier-1: { rpo: 1m, rto: 1h } }\nservices:\n",
    );
    for i in 0..2000 {
        yaml.push_str(&format!("  - {{ name: service-{i}, tier: tier-1, zones: [a, b] }}\n"));
    }
    let file = temp_file("big-plan.yaml", &yaml);
    let mut child = Command::new(env!("CARGO_BIN_EXE_drctl"))
        .args(["plan", "-f", file.to_str().expect("utf-8 path"), "--zone", "a", "--output", "json"])
        .current_dir(repo())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("drctl runs");
    let mut first = [0u8; 1];
    child.stdout.take().expect("stdout").read_exact(&mut first).expect("one byte");
    // The pipe's reading end is closed here: every later write fails.
    let out = child.wait_with_output().expect("drctl ends");
    assert_eq!(first[0], b'{');
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
    // Ended by the pipe, as `cat` would be (the shell's 141), not by a panic (101).
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc_sigpipe()), "{:?}: {stderr}", out.status);
}

fn libc_sigpipe() -> i32 {
    13
}

#[test]
fn validate_accepts_the_example_and_exits_0() {
    let o = drctl(&["validate", "-f", SAAS]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    golden("validate_saas.txt", &text(&o.stdout));
}

#[test]
fn validate_reports_every_error_with_positions_and_exits_2() {
    let bad = temp_file(
        "bad.yaml",
        "version: 1
zones: [ { name: az1 }, { name: az2 } ]
objectives: { tier-0: { rto: 2m } }
datastores:
  - { name: db, kind: postgres, primary: { zone: az1, url: \"postgres://h/d\" } }
services:
  - { name: api, tier: tier0, zones: [az1], depend_on: [db] }
  - { name: web, zones: [az3], depends_on: [api, web] }
",
    );
    let o = drctl(&["validate", "-f", bad.to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    let err = text(&o.stderr).replace(bad.to_str().unwrap(), "bad.yaml");
    golden("validate_bad.txt", &err);
}

#[test]
fn validate_json_lists_diagnostics() {
    let bad =
        temp_file("bad2.yaml", "version: 1\nzones: [ { name: az1 } ]\nservices:\n  - { name: a, depends_on: [b] }\n");
    let o = drctl(&["validate", "-f", bad.to_str().unwrap(), "--output", "json"]);
    assert_eq!(code(&o), 2);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"], 1);
    let d = &v["diagnostics"][0];
    assert_eq!((d["line"].as_u64(), d["column"].as_u64(), d["code"].as_str()), (Some(4), Some(29), Some("E007")));
}

#[test]
fn a_missing_file_is_bad_input_with_advice() {
    let o = drctl(&["validate", "-f", "no/such/drctl.yaml"]);
    assert_eq!(code(&o), 2);
    let err = text(&o.stderr);
    assert!(err.contains("no/such/drctl.yaml:1:1: error[E009]: cannot read the topology"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

/// Nine levels of ten aliases: 10^9 nodes if a loader expanded them.
fn alias_bomb(first_line: &str) -> String {
    let mut src = format!("{first_line}\nbomb0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..9 {
        let prev = format!("*a{}", level - 1);
        src.push_str(&format!("bomb{level}: &a{level} [{}]\n", vec![prev; 10].join(", ")));
    }
    src
}

/// Hostile files in each of the three formats are bad input with a
/// position, answered at once: no exhausted memory, no overflowed stack.
#[test]
fn hostile_files_are_bad_input_with_positions_in_every_format() {
    let bomb = temp_file("bomb.yaml", &alias_bomb("version: 1"));
    let o = drctl(&["validate", "-f", bomb.to_str().unwrap()]);
    assert_eq!(code(&o), 2, "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("bomb.yaml:") && err.contains("error[E001]") && err.contains("alias bomb"), "{err}");

    let deep = temp_file("deep.yaml", &format!("version: 1\nname: {}{}\n", "[".repeat(100_000), "]".repeat(100_000)));
    let o = drctl(&["validate", "-f", deep.to_str().unwrap()]);
    assert_eq!(code(&o), 2, "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("deep.yaml:2:"), "{}", text(&o.stderr));
    let mut block = String::from("version: 1\nname:\n");
    for level in 1..200 {
        block.push_str(&format!("{}k{level}:\n", "  ".repeat(level)));
    }
    let deep = temp_file("deep-block.yaml", &block);
    let o = drctl(&["validate", "-f", deep.to_str().unwrap()]);
    assert_eq!(code(&o), 2, "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("deep-block.yaml:"), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("nested deeper than 64 levels"), "{}", text(&o.stderr));

    // A runbook named by a topology: the error points into the runbook.
    let dir = bomb.parent().unwrap();
    std::fs::create_dir_all(dir.join("runbooks")).unwrap();
    std::fs::write(dir.join("runbooks/bomb.yaml"), alias_bomb("name: bomb")).unwrap();
    let topo = std::fs::read_to_string(repo().join(SAAS)).unwrap().replacen(
        "failover: { estimate: 25s, max_lag: 10s }",
        "failover: { estimate: 25s, max_lag: 10s, runbook: runbooks/bomb.yaml }",
        1,
    );
    let with_runbook = temp_file("with-runbook.yaml", &topo);
    let o = drctl(&["validate", "-f", with_runbook.to_str().unwrap()]);
    assert_eq!(code(&o), 2, "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("runbooks/bomb.yaml:"), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("alias bomb"), "{}", text(&o.stderr));

    // A chaos experiment given to a drill.
    let experiment = temp_file("exp-bomb.yaml", &alias_bomb("name: bomb"));
    let o = drctl(&["drill", experiment.to_str().unwrap(), "-f", SAAS, "--dry-run"]);
    assert_eq!(code(&o), 2, "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("exp-bomb.yaml:") && text(&o.stderr).contains("alias bomb"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn plan_text_for_the_incident_commander() {
    let o = drctl(&["plan", "-f", SAAS, "--zone", "use1-az1"]);
    assert_eq!(code(&o), 3, "targets are missed in the example: exit 3");
    golden("plan_saas_az1.txt", &text(&o.stdout));
    let o = drctl(&["plan", "-f", SAAS, "--zone", "use1-az1", "--parallel", "3"]);
    golden("plan_saas_az1_parallel3.txt", &text(&o.stdout));
}

#[test]
fn plan_exits_0_when_every_target_is_met() {
    let o = drctl(&["plan", "-f", SAAS, "--zone", "use1-az2"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stdout));
    assert!(text(&o.stdout).contains("Every affected entity meets its RTO target."));
}

#[test]
fn plan_json_is_the_contract() {
    let o = drctl(&["plan", "-f", SAAS, "--zone", "use1-az1", "--output", "json"]);
    assert_eq!(code(&o), 3);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["scope"]["zones"][0], "use1-az1");
    assert_eq!(v["parallel"], serde_json::Value::Null);
    assert_eq!(v["makespan_s"], v["critical_path_s"]);
    let payments = v["entities"].as_array().unwrap().iter().find(|e| e["name"] == "payments").unwrap();
    assert_eq!(payments["rto_target_s"], 90.0, "acme's contract");
    assert_eq!(payments["meets_rto"], false);
}

#[test]
fn plan_with_everything_lost_lists_the_unrecoverable() {
    let o = drctl(&["plan", "-f", SAAS, "--region", "us-east-1"]);
    assert_eq!(code(&o), 3);
    let out = text(&o.stdout);
    assert!(out.contains("✗ orders-db: every replica of orders-db is in the disaster scope"), "{out}");
    assert!(out.contains("✗ billing-db: every member of billing-db is in the lost region us-east-1"), "{out}");
    assert!(out.contains("✗ reporting: blocked by ledger-db, analytics-db"), "{out}");
    assert!(out.contains("✗ 18 entities unrecoverable."), "{out}");
}

#[test]
fn plan_flags_are_checked() {
    let o = drctl(&["plan", "-f", SAAS]);
    assert_eq!(code(&o), 2);
    assert!(text(&o.stderr).contains("say what is lost"));
    let o = drctl(&["plan", "-f", SAAS, "--zone", "use1-az9"]);
    assert_eq!(code(&o), 2);
    assert!(text(&o.stderr).contains("zone `use1-az9` is not in the topology (zones: use1-az1, use1-az2, use1-az3)"));
    let o = drctl(&["plan", "-f", SAAS, "--zone", "use1-az1", "--parallel", "many"]);
    assert_eq!(code(&o), 2);
    let o = drctl(&["plan", "-f", SAAS, "--zone", "use1-az1", "--parallel", "0"]);
    assert_eq!(code(&o), 2);
}

#[test]
fn graph_draws_dot_and_mermaid_with_the_disaster_highlighted() {
    let o = drctl(&["graph", "-f", SAAS, "--zone", "use1-az1"]);
    assert_eq!(code(&o), 0);
    let dot = text(&o.stdout);
    assert!(dot.starts_with("digraph \"shop\" {"), "{dot}");
    assert!(dot.contains("\"checkout\" -> \"payments\";"));
    assert!(dot.contains("\"orders-db\" [shape=cylinder"));
    assert!(dot.contains("⟳ fails over"));
    let o = drctl(&["graph", "-f", SAAS, "--region", "us-east-1", "--format", "mermaid"]);
    assert_eq!(code(&o), 0);
    let mermaid = text(&o.stdout);
    assert!(mermaid.starts_with("flowchart LR\n"));
    assert!(mermaid.contains("classDef unrecoverable"));
    golden("graph_saas.mmd", &mermaid);
}

#[test]
fn schema_is_json_schema_and_accepts_the_example_keys() {
    let o = drctl(&["schema"]);
    assert_eq!(code(&o), 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_eq!(v["additionalProperties"], false);
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("drctl.schema.json")).unwrap()).unwrap();
    assert_eq!(v, committed, "drctl.schema.json is stale: run `drctl schema > drctl.schema.json`");
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(code(&drctl(&["no-such-command"])), 2);
    assert_eq!(code(&drctl(&["plan", "--output", "yaml", "--zone", "a"])), 2);
    assert_eq!(code(&drctl(&["--help"])), 0);
}

#[test]
fn completions_cover_the_commands_and_their_flags_in_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let o = drctl(&["completions", shell]);
        assert_eq!(code(&o), 0, "{shell}");
        let script = text(&o.stdout);
        for word in ["declare", "zone", "reason", "drill", "lab", "approve"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    assert_eq!(code(&drctl(&["completions", "powershell"])), 2, "an unknown shell is bad input");
}

#[test]
fn help_texts_stand_on_their_own() {
    // No reference to a document the user does not have.
    let o = drctl(&["--help"]);
    assert!(!text(&o.stdout).contains("SPEC"), "{}", text(&o.stdout));
    let o = drctl(&["declare", "--help"]);
    assert!(text(&o.stdout).contains("--parallel <N>") && text(&o.stdout).contains("At most this many steps at once"));
}

#[test]
fn help_ends_with_an_example_and_the_exit_codes() {
    for args in [&["--help"][..], &["declare", "--help"], &["lab", "up", "-h"], &["token", "create", "--help"]] {
        let o = drctl(args);
        assert_eq!(code(&o), 0, "{args:?}");
        let help = text(&o.stdout);
        let (example, exit) = (help.find("\nExample:"), help.find("\nExit codes:"));
        assert!(example.is_some_and(|e| exit.is_some_and(|x| e < x)), "{args:?}:\n{help}");
    }
}

#[test]
fn man_writes_a_page_per_command_that_man_can_read() {
    let dir = std::env::temp_dir().join(format!("drctl-man-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let o = drctl(&["man", dir.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    for page in ["drctl.1", "drctl-declare.1", "drctl-lab-up.1", "drctl-token-create.1", "drctl-status-page-export.1"] {
        let roff = std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(roff.contains(".SH EXAMPLE") && roff.contains(".SH \"EXIT STATUS\""), "{page}:\n{roff}");
    }
    assert!(!dir.join("drctl-man.1").exists(), "the hidden `man` command has no page of its own");
    let listed = text(&o.stdout);
    assert!(listed.lines().count() > 30 && listed.contains("drctl-lab-up.1"), "{listed}");
    // Rendered as a reader sees it (when groff is installed): the example
    // keeps its dashes and the exit codes their meaning.
    if let Ok(r) = Command::new("groff").args(["-man", "-Tutf8", "-P-cbou"]).arg(dir.join("drctl-declare.1")).output() {
        let page = text(&r.stdout).replace('\u{2010}', "-").replace('\u{2212}', "-");
        assert!(page.contains("drctl declare -f examples/local/drctl.yaml --zone az1"), "{page}");
        assert!(page.contains("EXIT STATUS") && page.contains("an RTO target was missed"), "{page}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
