//! The incident commander's paths through a failover that does not go to
//! plan, with the real binary: a failed step pauses the execution and says
//! what goes on; the commands it prints are run exactly as printed (retry
//! with the override the error names, skip, done by hand, abort); Ctrl-C
//! on a running `declare` says the failover goes on and a second detaches;
//! a `wait` resumed after a detach keeps the time it had left; and no
//! override but `--unfenced DATASTORE/ZONE` waives a fence.

use drctl_testkit::PgPair;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

mod common;
use common::wait_for;

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        Dir(common::tempdir(&format!("pause-{name}")))
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = common::drctl_clean();
        c.args(args).current_dir(&self.0).env("NO_COLOR", "1").env("USER", "alice");
        c
    }
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.cmd(args).stdin(Stdio::null()).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }
    /// Runs a command line drctl printed, split as a POSIX shell would
    /// (the printed commands quote nothing here), minus the leading `drctl`.
    fn run_printed(&self, line: &str) -> (i32, String, String) {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.first(), Some(&"drctl"), "a printed command starts with drctl: {line}");
        self.run(&words[1..])
    }
    fn show(&self, id: &str) -> Value {
        let (_, out, err) = self.run(&["show", id, "--output", "json"]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"))
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn step<'a>(show: &'a Value, id: &str) -> &'a Value {
    show["steps"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap_or_else(|| panic!("no {id}: {show}"))
}

/// The commands a paused `declare` printed, in order.
fn printed_commands(out: &str) -> Vec<String> {
    out.lines().map(str::trim).filter(|l| l.starts_with("drctl ")).map(str::to_string).collect()
}

fn runbook(dir: &Dir, runbook: &str, extra: &str) {
    std::fs::write(dir.0.join("rb.yaml"), runbook).unwrap();
    std::fs::write(
        dir.0.join("drctl.yaml"),
        format!(
            "version: 1
zones: [ {{ name: az1 }}, {{ name: az2 }} ]
services:
  - {{ name: job, zones: [az1, az2], failover: {{ runbook: rb.yaml }} }}
{extra}"
        ),
    )
    .unwrap();
}

/// A step that fails until `gate` exists, and one that needs it.
fn failing_runbook(dir: &Dir) -> PathBuf {
    let gate = dir.0.join("gate");
    let effects = dir.0.join("effects.log");
    runbook(
        dir,
        &format!(
            "name: job
steps:
  - {{ id: first, action: exec, with: {{ command: [sh, -c, \"echo first >> {e}\"] }} }}
  - {{ id: bad, action: exec, with: {{ command: [sh, -c, \"test -e {g} && echo bad >> {e}\"] }}, needs: [first] }}
  - {{ id: after, action: exec, with: {{ command: [sh, -c, \"echo after >> {e}\"] }}, needs: [bad] }}
",
            e = effects.display(),
            g = gate.display()
        ),
        "",
    );
    effects
}

/// A failed step pauses the execution: `declare` exits 1 and prints the
/// failed step, what is switched, and the commands that go on. Each
/// decision, run exactly as printed, ends the execution as it says, and
/// the journal says what was switched.
#[test]
fn a_failed_step_pauses_and_each_printed_decision_works_as_printed() {
    let dir = Dir::new("decisions");
    let effects = failing_runbook(&dir);

    // 1. Skip: gives the step up and what needs it; the journal says so.
    let (code, out, err) = dir.run(&["declare", "--zone", "az1", "--reason", "drill", "--yes"]);
    assert_eq!(code, 1, "a paused execution is not a success: {out}\n{err}");
    let id = out.lines().next().unwrap().trim().to_string();
    assert!(out.contains(&format!("{id} is PAUSED")), "{out}");
    assert!(out.contains("failed: job/bad (job)"), "says what failed: {out}");
    assert!(out.contains("partly switched: job (job/first done)"), "says what is switched: {out}");
    let show = dir.show(&id);
    assert_eq!(show["state"], "paused", "{show}");
    assert_eq!(step(&show, "job/after")["state"], "pending", "what needs the failed step waits with it");
    let commands = printed_commands(&out);
    assert_eq!(
        commands,
        [
            format!("drctl retry {id} job/bad"),
            format!("drctl skip {id} job/bad"),
            format!("drctl approve {id} job/bad --done"),
            format!("drctl abort {id}"),
        ],
        "{out}"
    );
    assert!(out.contains("gives it up, and what needs it: job/after"), "skip lists what it gives up: {out}");
    // resume does not choose for the commander.
    let (code, out, _) = dir.run(&["resume", &id]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("is paused") && out.contains(&format!("drctl abort {id}")), "{out}");
    let (code, out, err) = dir.run_printed(&commands[1]);
    assert_eq!(code, 1, "gave steps up: not a full failover: {out}\n{err}");
    assert!(out.contains("giving up job/bad and the 1 step(s) that need it:\n  job/after"), "{out}");
    let show = dir.show(&id);
    assert_eq!(show["state"], "failed", "{show}");
    assert_eq!(
        (
            step(&show, "job/first")["state"].as_str(),
            step(&show, "job/bad")["state"].as_str(),
            step(&show, "job/after")["state"].as_str()
        ),
        (Some("succeeded"), Some("skipped"), Some("skipped"))
    );
    assert!(step(&show, "job/bad")["note"].as_str().unwrap_or_default().contains("given up by alice"), "{show}");
    assert_eq!(std::fs::read_to_string(&effects).unwrap(), "first\n", "nothing given up ran");

    // 2. Abort: stops at once (nothing runs a paused execution).
    let (code, out, _) = dir.run(&["declare", "--zone", "az1", "--reason", "drill", "--yes"]);
    assert_eq!(code, 1);
    let id = out.lines().next().unwrap().trim().to_string();
    let abort = printed_commands(&out).pop().unwrap();
    assert_eq!(abort, format!("drctl abort {id}"));
    let (code, out, err) = dir.run_printed(&abort);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(&format!("{id}: aborted")), "{out}");
    let show = dir.show(&id);
    assert_eq!(show["state"], "aborted");
    assert_eq!(step(&show, "job/first")["state"], "succeeded", "the journal keeps what was switched");
    assert_eq!(step(&show, "job/bad")["state"], "failed");
    let after = step(&show, "job/after");
    assert_eq!(after["state"], "skipped");
    assert!(after["note"].as_str().unwrap_or_default().contains("aborted before this step started"), "{after}");

    // 3. Done by hand: what needs it goes on.
    let (code, out, _) = dir.run(&["declare", "--zone", "az1", "--reason", "drill", "--yes"]);
    assert_eq!(code, 1);
    let id = out.lines().next().unwrap().trim().to_string();
    let (code, out, err) = dir.run_printed(&printed_commands(&out)[2]);
    assert_eq!(code, 0, "{out}\n{err}");
    let show = dir.show(&id);
    assert_eq!(show["state"], "succeeded", "{show}");
    assert!(step(&show, "job/bad")["note"].as_str().unwrap_or_default().contains("done by hand"), "{show}");

    // 4. Retry once the cause is fixed.
    let (code, out, _) = dir.run(&["declare", "--zone", "az1", "--reason", "drill", "--yes"]);
    assert_eq!(code, 1);
    let id = out.lines().next().unwrap().trim().to_string();
    std::fs::write(dir.0.join("gate"), "").unwrap();
    let (code, out, err) = dir.run_printed(&printed_commands(&out)[0]);
    assert_eq!(code, 0, "{out}\n{err}");
    let show = dir.show(&id);
    assert_eq!(show["state"], "succeeded");
    assert_eq!(step(&show, "job/bad")["attempts"], 2, "{show}");
    let log = std::fs::read_to_string(&effects).unwrap();
    assert_eq!(log.lines().filter(|l| *l == "bad").count(), 1, "{log}");

    // Every decision is in the audit log, by whom.
    let (_, audit, _) = dir.run(&["audit", "list"]);
    for action in ["skip", "abort", "approve --done", "retry"] {
        assert!(audit.lines().any(|l| l.contains(action) && l.contains("alice")), "{action} audited: {audit}");
    }
}

/// `on_failure: continue`: the branches that do not need the failed step
/// go on; the execution still pauses on it at the end.
#[test]
fn on_failure_continue_lets_independent_branches_go_on() {
    let dir = Dir::new("continue");
    runbook(
        &dir,
        "name: job
on_failure: continue
steps:
  - { id: bad, action: exec, with: { command: [\"false\"] } }
  - { id: needs-bad, action: wait, with: { for: 10ms }, needs: [bad] }
  - { id: slow-a, action: wait, with: { for: 300ms } }
  - { id: slow-b, action: wait, with: { for: 10ms }, needs: [slow-a] }
",
        "",
    );
    let (code, out, err) = dir.run(&["declare", "--zone", "az1", "--reason", "drill", "--yes"]);
    assert_eq!(code, 1, "{out}\n{err}");
    let id = out.lines().next().unwrap().trim().to_string();
    let show = dir.show(&id);
    assert_eq!(show["state"], "paused");
    assert_eq!(step(&show, "job/slow-b")["state"], "succeeded", "the independent branch went on: {show}");
    assert_eq!(step(&show, "job/needs-bad")["state"], "pending");
}

/// A step made to fail on real PostgreSQL: the standby's replay is paused,
/// so after the old primary is fenced the standby cannot catch up within
/// `catch_up`; the promote fails and the execution pauses, naming
/// `--skip-catch-up`. The retry printed with it finishes the failover,
/// and `show` says the override was used, by whom, on which retry.
#[test]
fn a_promote_that_cannot_catch_up_pauses_and_the_printed_retry_with_its_override_finishes_it() {
    let pg = PgPair::start();
    let dir = Dir::new("catch-up");
    std::fs::write(
        dir.0.join("drctl.yaml"),
        format!(
            "version: 1
zones: [ {{ name: az1, region: r1 }}, {{ name: az2, region: r1 }} ]
datastores:
  - name: orders-db
    kind: postgres
    primary:  {{ zone: az1, url: \"{}\" }}
    replicas: [ {{ zone: az2, url: \"{}\" }} ]
    failover: {{ catch_up: 1s }}
services:
  - {{ name: shop, zones: [az1, az2], depends_on: [orders-db] }}
",
            pg.primary_url(),
            pg.standby_url()
        ),
    )
    .unwrap();
    pg.psql(pg.primary_port, "CREATE TABLE t (id int)");
    pg.wait_replayed();
    pg.psql(pg.standby_port, "SELECT pg_wal_replay_pause()");
    pg.psql(pg.primary_port, "INSERT INTO t SELECT generate_series(1, 100)");

    let (code, out, err) = dir.run(&["declare", "-f", "drctl.yaml", "--zone", "az1", "--reason", "az1 lost", "--yes"]);
    assert_eq!(code, 1, "{out}\n{err}");
    let id = out.lines().next().unwrap().trim().to_string();
    assert!(out.contains("failed: orders-db/failover (orders-db)"), "{out}");
    assert!(out.contains("not switched: orders-db, shop"), "{out}");
    assert_eq!(pg.psql(pg.standby_port, "SELECT pg_is_in_recovery()"), "t", "nothing was promoted");
    let commands = printed_commands(&out);
    let retry = format!("drctl retry {id} orders-db/failover --skip-catch-up");
    assert_eq!(
        commands.first(),
        Some(&retry),
        "the override the error names comes first, (drctl.yaml is the default: no -f needed): {out}"
    );
    assert!(out.contains("gives it up, and what needs it: shop/failover"), "{out}");

    let (code, out, err) = dir.run_printed(&retry);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(pg.psql(pg.standby_port, "SELECT pg_is_in_recovery()"), "f", "promoted");
    let show = dir.show(&id);
    assert_eq!(show["state"], "succeeded");
    let note = step(&show, "orders-db/failover")["note"].as_str().unwrap_or_default().to_string();
    assert!(note.contains("NOT CAUGHT UP") && note.contains("--skip-catch-up"), "the journal says so: {note}");
    let used = show["overrides"].as_array().unwrap();
    assert_eq!(used.len(), 1, "{show}");
    assert_eq!(
        (used[0]["override"].as_str(), used[0]["by"].as_str(), used[0]["with"].as_str()),
        (Some("--skip-catch-up"), Some("alice"), Some("retry orders-db/failover"))
    );
    let (_, text, _) = dir.run(&["show", &id]);
    assert!(text.contains("override --skip-catch-up by alice (retry orders-db/failover"), "{text}");
}

/// `--force` is `--accept-lag --skip-catch-up` and never waives a fence:
/// a dark primary with no fence command is refused even forced, naming
/// `--unfenced orders-db/az1`, which (typed as printed) promotes and is
/// journaled as not fenced.
#[test]
fn force_never_waives_a_fence_only_the_named_member_does() {
    let pg = PgPair::start();
    let dir = Dir::new("unfenced");
    std::fs::write(
        dir.0.join("drctl.yaml"),
        format!(
            "version: 1
zones: [ {{ name: az1, region: r1 }}, {{ name: az2, region: r1 }} ]
datastores:
  - name: orders-db
    kind: postgres
    primary:  {{ zone: az1, url: \"{}\" }}
    replicas: [ {{ zone: az2, url: \"{}\" }} ]
",
            pg.primary_url(),
            pg.standby_url()
        ),
    )
    .unwrap();
    pg.wait_replayed();
    pg.kill_primary();
    let (code, out, err) = dir.run(&["declare", "--zone", "az1", "--reason", "dark", "--yes", "--force"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("could leave two writable primaries"), "{out}");
    assert!(out.contains("`--unfenced orders-db/az1`"), "the refusal names the one override: {out}");
    assert_eq!(pg.psql(pg.standby_port, "SELECT pg_is_in_recovery()"), "t", "--force waived no fence");
    let (code, out, err) =
        dir.run(&["declare", "--zone", "az1", "--reason", "dark", "--yes", "--unfenced", "orders-db/az2"]);
    assert_eq!(code, 1, "another member named does not lift it: {out}\n{err}");
    let (code, out, err) =
        dir.run(&["declare", "--zone", "az1", "--reason", "dark", "--yes", "--unfenced", "orders-db/az1"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("overrides: --unfenced orders-db/az1 (by alice; journaled)"), "{out}");
    let id = out.lines().next().unwrap().trim().to_string();
    let show = dir.show(&id);
    assert!(
        step(&show, "orders-db/failover")["note"].as_str().unwrap_or_default().contains("az1: NOT FENCED"),
        "{show}"
    );
    assert_eq!(show["overrides"][0]["override"], "--unfenced orders-db/az1");
    assert_eq!(show["overrides"][0]["by"], "alice");
    let (_, audit, _) = dir.run(&["audit", "list"]);
    assert!(audit.contains("unfenced"), "the audit log keeps the override: {audit}");
    assert_eq!(pg.psql(pg.standby_port, "SELECT pg_is_in_recovery()"), "f");
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig} {pid}");
}

fn rfc3339(s: &str) -> SystemTime {
    let t = chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    SystemTime::from(t.with_timezone(&chrono::Utc))
}

/// SIGINT to a real running `declare`: the first says the failover goes on
/// and prints `show`, `resume` and `abort` for this id with the `-f` typed;
/// the second detaches (exit 130), and the printed `resume` finishes it,
/// its interrupted `wait` keeping only the time it had left.
#[test]
fn ctrl_c_says_the_failover_goes_on_and_resume_keeps_the_waits_remaining_time() {
    let dir = Dir::new("ctrl-c");
    runbook(
        &dir,
        "name: job
steps:
  - { id: slow, action: wait, with: { for: 6s } }
  - { id: last, action: wait, with: { for: 10ms }, needs: [slow] }
",
        "",
    );
    let mut child = dir
        .cmd(&["declare", "-f", "drctl.yaml", "--zone", "az1", "--reason", "drill", "--yes"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut first).unwrap();
    let id = first.trim().to_string();
    wait_for("the wait step to run", 30, || dir.show(&id)["steps"][0]["state"] == "running");
    let first_started = rfc3339(dir.show(&id)["steps"][0]["started_at"].as_str().unwrap());
    signal(child.id(), "-INT");
    // The first Ctrl-C's words, read as they come (stderr stays open: the run goes on).
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut all = String::new();
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.push_str(&String::from_utf8_lossy(&buf[..n]));
            let _ = tx.send(all.clone());
        }
    });
    let abort = format!("drctl abort {id}");
    let mut said = String::new();
    let until = Instant::now() + Duration::from_secs(10);
    while !said.contains(&abort) && Instant::now() < until {
        if let Ok(s) = rx.recv_timeout(Duration::from_millis(200)) {
            said = s;
        }
    }
    assert!(said.contains("the failover goes on"), "{said}");
    for hint in [format!("drctl show {id}"), format!("drctl resume {id}"), abort] {
        assert!(said.contains(&hint), "the first Ctrl-C prints `{hint}`: {said}");
    }
    assert!(child.try_wait().unwrap().is_none(), "the first Ctrl-C does not stop the failover");
    assert_eq!(dir.show(&id)["steps"][0]["state"], "running");
    signal(child.id(), "-INT");
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let said = rx.try_iter().last().unwrap_or(said);
    assert_eq!(status.code(), Some(130), "the second Ctrl-C detaches: {said}");
    assert!(said.contains("detached"), "{said}");
    let show = dir.show(&id);
    assert_eq!(show["state"], "running", "the journal keeps it resumable: {show}");

    let resume = format!("drctl resume {id} -f drctl.yaml");
    let resumed_at = SystemTime::now();
    let (code, out, err) = dir.run_printed(&resume);
    assert_eq!(code, 0, "{out}\n{err}");
    let show = dir.show(&id);
    assert_eq!(show["state"], "succeeded");
    let slow = step(&show, "job/slow");
    let note = slow["note"].as_str().unwrap_or_default();
    assert!(note.contains("after an interruption"), "{note}");
    // The deadline is the first attempt's: started + 6 s, kept in the journal.
    let deadline = rfc3339(note.split("until ").nth(1).and_then(|r| r.split(',').next()).unwrap());
    let kept = deadline.duration_since(first_started).unwrap_or_default();
    assert!(
        kept >= Duration::from_millis(5_990) && kept <= Duration::from_millis(6_500),
        "the deadline counts from the first start: {kept:?}"
    );
    assert!(resumed_at < deadline, "the test resumed before the deadline (else this proves nothing)");
    // The resumed wait ran to that deadline: not short of it, not a fresh 6 s from the resume.
    let finished = rfc3339(slow["finished_at"].as_str().unwrap());
    let early = deadline.duration_since(finished).unwrap_or_default();
    let late = finished.duration_since(deadline).unwrap_or_default();
    assert!(early < Duration::from_millis(100), "it waited to its deadline: {early:?} early");
    assert!(late < Duration::from_secs(2), "it kept its remaining time, not a fresh 6 s: {late:?} late");
}

/// The same decisions through the controller's API: a failed step pauses
/// the execution and `serve` leaves it paused; `retry` runs the step again
/// (paused again while the cause stays), `skip` gives it up with what needs
/// it, and `approve {done: true}` on another declaration lets the rest go
/// on. Each answers who decided, and the journal says it.
#[test]
fn through_the_api_a_paused_execution_is_retried_skipped_or_done_by_hand() {
    let dir = Dir::new("api");
    let effects = failing_runbook(&dir);
    let commander = common::token(&dir.0, "ic", "commander");
    let server = common::start(&dir.0, &[], "http");
    let c = common::client();
    let post = |path: &str, body: Value| {
        let r = c.post(format!("{}{path}", server.base)).bearer_auth(&commander).json(&body).send().unwrap();
        let code = r.status().as_u16();
        (code, r.json::<Value>().unwrap_or(Value::Null))
    };
    let get = |id: &str| -> Value {
        c.get(format!("{}/api/v1/executions/{id}", server.base)).bearer_auth(&commander).send().unwrap().json().unwrap()
    };
    let declare = || {
        let (code, body) = post("/api/v1/declare", serde_json::json!({ "zones": ["az1"], "reason": "api drill" }));
        assert_eq!(code, 202, "{body}");
        let id = body["id"].as_str().unwrap().to_string();
        wait_for("the execution to pause", 30, || get(&id)["state"] == "paused");
        id
    };

    let id = declare();
    // Retry while the cause stays: the step fails again, paused again.
    let (code, body) = post(&format!("/api/v1/executions/{id}/retry"), serde_json::json!({ "step": "job/bad" }));
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["by"], "ic", "{body}");
    wait_for("the retried step to fail again", 30, || {
        let r = get(&id);
        r["state"] == "paused" && step(&r, "job/bad")["attempts"] == 2
    });
    // A field the request does not define is refused, not ignored.
    let (code, body) =
        post(&format!("/api/v1/executions/{id}/skip"), serde_json::json!({ "step": "job/bad", "al": 1 }));
    assert_eq!(code, 422, "{body}");
    let (code, body) = post(&format!("/api/v1/executions/{id}/skip"), serde_json::json!({ "step": "job/bad" }));
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["given_up"], serde_json::json!(["job/after"]), "{body}");
    wait_for("the skipped execution to end", 30, || get(&id)["state"] == "failed");
    let r = get(&id);
    assert_eq!(step(&r, "job/after")["state"], "skipped", "{r}");

    let id = declare();
    let (code, body) =
        post(&format!("/api/v1/executions/{id}/approve"), serde_json::json!({ "step": "job/bad", "done": true }));
    assert_eq!(code, 200, "{body}");
    wait_for("the rest to go on after the step done by hand", 30, || get(&id)["state"] == "succeeded");
    assert_eq!(step(&get(&id), "job/after")["state"], "succeeded");
    let log = std::fs::read_to_string(&effects).unwrap();
    assert_eq!(log.lines().filter(|l| *l == "after").count(), 1, "only the done-by-hand one went on: {log}");
    assert_eq!(log.lines().filter(|l| *l == "bad").count(), 0, "the failing step never succeeded: {log}");
}
