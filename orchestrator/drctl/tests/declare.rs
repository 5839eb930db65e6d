//! Declaring a disaster end to end: the binary against a real PostgreSQL
//! primary + standby, a SIGKILL in the middle of a run, approvals and abort.

use drctl_testkit::PgPair;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::wait_for;

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        Dir(common::tempdir(&format!("declare-{name}")))
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = common::drctl_clean();
        c.args(args).current_dir(&self.0).env("NO_COLOR", "1");
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
    fn json(&self, args: &[&str]) -> Value {
        let (_, out, err) = self.run(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"))
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pg_topology(pg: &PgPair, max_lag: &str) -> String {
    format!(
        "version: 1
zones: [ {{ name: az1, region: r1 }}, {{ name: az2, region: r1 }} ]
objectives: {{ tier-0: {{ rpo: 5s, rto: 2m }} }}
datastores:
  - name: orders-db
    kind: postgres
    primary:  {{ zone: az1, url: \"{}\" }}
    replicas: [ {{ zone: az2, url: \"{}\" }} ]
    failover: {{ max_lag: {max_lag} }}
services:
  - {{ name: shop, tier: tier-0, zones: [az1, az2], depends_on: [orders-db] }}
",
        pg.primary_url(),
        pg.standby_url()
    )
}

#[test]
fn declare_fails_over_a_real_postgres_pair_and_measures_the_rto() {
    let pg = PgPair::start();
    let dir = Dir::new("pg");
    std::fs::write(dir.0.join("drctl.yaml"), pg_topology(&pg, "10s")).unwrap();
    pg.psql(pg.primary_port, "CREATE TABLE t (id int); INSERT INTO t VALUES (1)");
    pg.wait_replayed();

    // With structured logs on, an SRE can follow the failover in the log.
    let o = dir
        .cmd(&["declare", "--zone", "az1", "--reason", "az1 lost power", "--yes", "--log-format", "json"])
        .env("RUST_LOG", "drctl=info")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (code, out, err) =
        (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(code, 0, "{out}\n{err}");
    let id = out.lines().next().unwrap().trim().to_string();
    let events: Vec<Value> = err.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let started = events
        .iter()
        .find(|e| e["message"] == "step started" && e["step"] == "orders-db/failover")
        .unwrap_or_else(|| panic!("a `step started` event: {err}"));
    assert_eq!((started["execution"].as_str(), started["attempt"].as_u64()), (Some(id.as_str()), Some(1)), "{started}");
    assert!(events.iter().any(|e| e["message"] == "declared" && e["execution"] == id.as_str()), "{err}");
    assert!(events.iter().any(|e| e["message"] == "execution ended" && e["state"] == "succeeded"), "{err}");
    assert!(id.len() > 10 && !id.contains(' '), "the first line is the id: {id}");
    assert_eq!(pg.psql(pg.standby_port, "SELECT pg_is_in_recovery()"), "f", "the standby was promoted");
    let write = pg.try_psql(pg.primary_port, "SET default_transaction_read_only = off; INSERT INTO t VALUES (2)");
    assert!(write.as_ref().is_err_and(|e| e.contains("pg_hba.conf rejects")), "the old primary was fenced: {write:?}");
    assert_eq!(pg.psql(pg.standby_port, "SELECT count(*) FROM t"), "1");

    let show = dir.json(&["show", &id, "--output", "json"]);
    assert_eq!(show["state"], "succeeded");
    assert_eq!(show["reason"], "az1 lost power");
    for s in show["steps"].as_array().unwrap() {
        assert_eq!((s["state"].as_str(), s["attempts"].as_u64()), (Some("succeeded"), Some(1)), "{s}");
        assert!(s["started_at"].is_string() && s["finished_at"].is_string());
    }
    let rto = show["rto_s"].as_f64().unwrap();
    assert!(rto > 0.0 && rto < 30.0, "{rto}");
    let db = show["entities"].as_array().unwrap().iter().find(|e| e["name"] == "orders-db").unwrap();
    assert_eq!((db["rto_target_s"].as_f64(), db["meets_rto"].as_bool()), (Some(120.0), Some(true)));
    assert!(show["declared_at"].as_str().unwrap().ends_with('Z'));

    let list = dir.json(&["executions", "--output", "json"]);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["state"], "succeeded");

    // A declaration from the CLI opens the public incident, as one through
    // the API does, and says on it how the failover ended.
    let (code, out, err) = dir.run(&["status-page", "export", "site"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let page = std::fs::read_to_string(dir.0.join("site/index.html")).unwrap();
    assert!(page.contains("Failover in progress: az1"), "the incident is on the page");
    assert!(page.contains("Failover completed in"), "and says how it ended");
    assert!(!page.contains("az1 lost power"), "the reason is internal");
    // The incident's own page is exported with it, where the page links.
    let incident = std::fs::read_to_string(dir.0.join("site/incidents/1/index.html")).unwrap();
    assert!(page.contains(r#"<a href="/incidents/1">"#) && incident.contains("Failover completed in"), "{incident}");

    // The new world: status sees the new primary, plan fails back from it.
    let status = dir.json(&["status", "--output", "json"]);
    assert_eq!(status["datastores"][0]["primary_zone"], "az2");
    let plan = dir.json(&["plan", "--zone", "az2", "--output", "json"]);
    assert_eq!(
        (plan["steps"][0]["from_zone"].as_str(), plan["steps"][0]["to_zone"].as_str()),
        (Some("az2"), Some("az1"))
    );
    // ...but failing back onto the fenced old primary is refused, even forced.
    let (code, out, _) = dir.run(&["declare", "--zone", "az2", "--reason", "failback", "--yes", "--force"]);
    assert_eq!(code, 1);
    assert!(out.contains("is not a standby"), "{out}");
    assert_eq!(pg.psql(pg.standby_port, "SELECT pg_is_in_recovery()"), "f");
    // The refusal is journaled: the commander can find it afterwards.
    let refused = out.lines().next().unwrap().trim();
    let list = dir.json(&["executions", "--output", "json"]);
    assert_eq!((list[0]["id"].as_str(), list[0]["state"].as_str()), (Some(refused), Some("refused")), "{list:#}");
}

/// A standby cut off from its primary while the primary keeps committing
/// lacks those writes: refused over `max_lag`, naming the one override
/// that lifts it. (A standby whose replay is merely paused has received
/// everything and is not refused: promotion replays it.)
#[test]
fn a_lagging_standby_is_refused_unless_forced_and_a_refusal_changes_nothing() {
    let pg = PgPair::start_with_cuttable_link();
    let dir = Dir::new("lag");
    std::fs::write(dir.0.join("drctl.yaml"), pg_topology(&pg, "1s")).unwrap();
    pg.psql(pg.primary_port, "CREATE TABLE w (id serial)");
    pg.wait_replayed();
    pg.cut_link();
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        pg.psql(pg.primary_port, "INSERT INTO w DEFAULT VALUES");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, out, err) = dir.run(&["declare", "--zone", "az1", "--reason", "test", "--yes"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("over max_lag 1.0 s: --accept-lag promotes it anyway"), "{out}");
    assert!(err.contains("nothing in the world was changed"), "{err}");
    assert_eq!(pg.psql(pg.standby_port, "SELECT pg_is_in_recovery()"), "t", "still a standby");
    assert_eq!(
        pg.psql(pg.primary_port, "INSERT INTO w DEFAULT VALUES RETURNING 1"),
        "1",
        "not fenced: it still takes writes"
    );
    assert_eq!(dir.json(&["executions", "--output", "json"])[0]["state"], "refused");

    let (code, out, _) = dir.run(&["declare", "--zone", "az1", "--reason", "test", "--dry-run", "--force"]);
    assert_eq!(code, 0, "{out}");
    // A tired commander is told that the zone declared lost is not.
    assert!(
        out.contains("still alive in the declared scope: orders-db: the primary in az1 answers and takes writes"),
        "{out}"
    );
    assert_eq!(pg.psql(pg.standby_port, "SELECT pg_is_in_recovery()"), "t", "a dry run changes nothing");

    pg.restore_link();
    let (code, out, err) = dir.run(&["declare", "--zone", "az1", "--reason", "test", "--yes", "--force"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(pg.psql(pg.standby_port, "SELECT pg_is_in_recovery()"), "f");
}

fn runbook_topology(dir: &Dir, runbook: &str) {
    std::fs::write(dir.0.join("rb.yaml"), runbook).unwrap();
    std::fs::write(
        dir.0.join("drctl.yaml"),
        "version: 1
zones: [ { name: az1 }, { name: az2 } ]
services:
  - { name: job, zones: [az1, az2], failover: { runbook: rb.yaml } }
",
    )
    .unwrap();
}

/// Starts `drctl declare` in the background and returns it with its id.
fn spawn_declare(dir: &Dir) -> (std::process::Child, String) {
    let mut child = dir
        .cmd(&["declare", "--zone", "az1", "--reason", "drill", "--yes"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut first).unwrap();
    (child, first.trim().to_string())
}

fn step_state(show: &Value, id: &str) -> (String, u64) {
    let s = show["steps"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap();
    (s["state"].as_str().unwrap().to_string(), s["attempts"].as_u64().unwrap())
}

#[test]
fn a_killed_declare_resumes_and_never_repeats_a_finished_step() {
    let dir = Dir::new("kill");
    let effects = dir.0.join("effects.log");
    let append = |tag: &str| format!("{{ command: [\"sh\", \"-c\", \"echo {tag} >> {}\"] }}", effects.display());
    runbook_topology(
        &dir,
        &format!(
            "name: job
steps:
  - {{ id: first, action: exec, with: {} }}
  - {{ id: slow, action: wait, with: {{ for: 3s }}, needs: [first] }}
  - {{ id: last, action: exec, with: {}, needs: [slow] }}
",
            append("first"),
            append("last")
        ),
    );
    let (mut child, id) = spawn_declare(&dir);
    wait_for("the slow step to run", 30, || {
        let (_, out, _) = dir.run(&["show", &id, "--output", "json"]);
        serde_json::from_str::<Value>(&out).is_ok_and(|v| step_state(&v, "job/slow").0 == "running")
    });
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let show = dir.json(&["show", &id, "--output", "json"]);
    assert_eq!(step_state(&show, "job/first"), ("succeeded".into(), 1));
    assert_eq!(step_state(&show, "job/slow").0, "running", "the journal says where it stopped");
    assert_eq!(show["state"], "running");

    let (code, out, err) = dir.run(&["resume", &id]);
    assert_eq!(code, 0, "{out}\n{err}");
    let show = dir.json(&["show", &id, "--output", "json"]);
    assert_eq!(show["state"], "succeeded");
    assert_eq!(step_state(&show, "job/first"), ("succeeded".into(), 1), "a finished step does not run again");
    assert_eq!(step_state(&show, "job/slow"), ("succeeded".into(), 2), "the interrupted step ran again");
    assert_eq!(step_state(&show, "job/last"), ("succeeded".into(), 1));
    assert_eq!(std::fs::read_to_string(&effects).unwrap(), "first\nlast\n", "each effect exactly once");
    let (code, out, _) = dir.run(&["resume", &id]);
    assert_eq!(code, 0);
    assert!(out.contains("already succeeded"), "{out}");
}

/// docs/guide/safety.md "Never twice": an `exec` step a crash caught running is not
/// run again on resume; it waits, saying its effect may or may not have
/// happened. A second `resume` meanwhile is refused (one process per
/// execution). `approve --done` records it without running it; an
/// `idempotent: true` step simply runs again.
#[test]
fn an_exec_step_caught_running_by_a_crash_waits_for_a_commander_on_resume() {
    let dir = Dir::new("never-twice");
    let effects = dir.0.join("effects.log");
    let step = |tag: &str, secs: u32| {
        format!(
            "{{ command: [\"sh\", \"-c\", \"echo {tag} $DRCTL_EXECUTION $DRCTL_STEP $DRCTL_ATTEMPT >> {}; [ $DRCTL_ATTEMPT != 1 ] || sleep {secs}\"] }}",
            effects.display()
        )
    };
    runbook_topology(
        &dir,
        &format!(
            "name: job
steps:
  - {{ id: charge, action: exec, with: {} }}
  - {{ id: warm, action: exec, with: {}, idempotent: true, needs: [charge] }}
  - {{ id: last, action: exec, with: {}, needs: [warm] }}
",
            step("charge", 30),
            step("warm", 30),
            step("last", 0)
        ),
    );
    let (mut child, id) = spawn_declare(&dir);
    wait_for("the charge step to run", 30, || std::fs::read_to_string(&effects).is_ok_and(|e| e.contains("charge")));
    child.kill().unwrap();
    child.wait().unwrap();
    let log = std::fs::read_to_string(&effects).unwrap();
    assert_eq!(log, format!("charge {id} job/charge 1\n"), "the environment names the execution, step and attempt");

    let mut resume =
        dir.cmd(&["resume", &id]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for("the interrupted step to wait for a commander", 30, || {
        let (_, out, _) = dir.run(&["show", &id, "--output", "json"]);
        serde_json::from_str::<Value>(&out).is_ok_and(|v| step_state(&v, "job/charge").0 == "waiting_approval")
    });
    let show = dir.json(&["show", &id, "--output", "json"]);
    let note = show["steps"][0]["note"].as_str().unwrap_or_default();
    assert!(note.contains("may or may not have happened") && note.contains("--done"), "{note}");
    assert_eq!(std::fs::read_to_string(&effects).unwrap().lines().count(), 1, "not run again on its own");

    let (code, out, err) = dir.run(&["resume", &id]);
    assert_eq!(code, 1, "a second process resuming the same execution is refused: {out}\n{err}");
    assert!(err.contains("is being run by"), "{err}");

    let (code, out, err) = dir.run(&["approve", &id, "job/charge", "--done"]);
    assert_eq!(code, 0, "{out}\n{err}");
    // The warm step (idempotent) now runs; kill the resume mid-way through it.
    wait_for("the warm step to run", 30, || std::fs::read_to_string(&effects).is_ok_and(|e| e.contains("warm")));
    resume.kill().unwrap();
    resume.wait().unwrap();
    let (code, out, err) = dir.run(&["resume", &id]);
    assert_eq!(code, 0, "{out}\n{err}");
    let show = dir.json(&["show", &id, "--output", "json"]);
    assert_eq!(show["state"], "succeeded");
    let charge = &show["steps"][0];
    assert!(charge["note"].as_str().unwrap_or_default().contains("recorded as done"), "{charge}");
    let log = std::fs::read_to_string(&effects).unwrap();
    let count = |tag: &str| log.lines().filter(|l| l.starts_with(tag)).count();
    assert_eq!((count("charge"), count("warm"), count("last")), (1, 2, 1), "{log}");
}

#[test]
fn approvals_wait_for_a_commander_and_abort_stops_the_rest() {
    let dir = Dir::new("approve");
    runbook_topology(
        &dir,
        "name: job
steps:
  - { id: approve, action: approval, with: { role: commander, prompt: \"Move job to {{ to_zone }}?\" } }
  - { id: after, action: wait, with: { for: 10ms }, needs: [approve] }
",
    );
    let (child, id) = spawn_declare(&dir);
    wait_for("the approval to be asked", 30, || {
        let (_, out, _) = dir.run(&["show", &id, "--output", "json"]);
        serde_json::from_str::<Value>(&out).is_ok_and(|v| step_state(&v, "job/approve").0 == "waiting_approval")
    });
    let show = dir.json(&["show", &id, "--output", "json"]);
    let note = show["steps"][0]["note"].as_str().unwrap();
    assert_eq!(note, "Move job to az2?", "the prompt, templated");
    let (code, out, _) = dir.run(&["approve", &id, "job/approve", "--by", "alice"]);
    assert_eq!(code, 0, "{out}");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let show = dir.json(&["show", &id, "--output", "json"]);
    assert_eq!(show["state"], "succeeded");
    assert_eq!(show["steps"][0]["note"], "approved by alice");
    assert_eq!(dir.run(&["approve", &id, "job/after"]).0, 2, "only approval steps are approved");

    // A second declaration, aborted while it waits for approval.
    let (child, id2) = spawn_declare(&dir);
    wait_for("the approval to be asked", 30, || {
        let (_, out, _) = dir.run(&["show", &id2, "--output", "json"]);
        serde_json::from_str::<Value>(&out).is_ok_and(|v| step_state(&v, "job/approve").0 == "waiting_approval")
    });
    assert_eq!(dir.run(&["abort", &id2]).0, 0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let show = dir.json(&["show", &id2, "--output", "json"]);
    assert_eq!(show["state"], "aborted", "{show}");
    assert_eq!(step_state(&show, "job/approve").0, "skipped");
    assert_eq!(step_state(&show, "job/after").0, "skipped");
}

/// A one-thread HTTP server that answers with the given statuses in turn
/// (the last one repeats) and records each request's first line and body.
/// (request line, body) of every request received.
type RequestLog = std::sync::Arc<std::sync::Mutex<Vec<(String, String, Option<String>)>>>;

fn http_server(statuses: Vec<u16>) -> (u16, RequestLog) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head, body, key) = loop {
                let Ok(k) = conn.read(&mut chunk) else { break (String::new(), String::new(), None) };
                if k == 0 {
                    break (String::new(), String::new(), None);
                }
                buf.extend_from_slice(&chunk[..k]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        let key = text[..end].lines().find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("idempotency-key:").map(|v| v.trim().to_string())
                        });
                        break (
                            text.lines().next().unwrap_or("").to_string(),
                            text[end + 4..end + 4 + len].to_string(),
                            key,
                        );
                    }
                }
            };
            log.lock().unwrap().push((head, body, key));
            let status = statuses[n.min(statuses.len() - 1)];
            let _ = conn
                .write_all(format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes());
        }
    });
    (port, seen)
}

#[test]
fn http_request_retries_a_503_and_notify_posts_slack_compatible_json() {
    let (port, seen) = http_server(vec![503, 200]);
    let dir = Dir::new("http");
    runbook_topology(
        &dir,
        &format!(
            "name: job
steps:
  - {{ id: drain, action: http.request, with: {{ method: POST, url: \"http://127.0.0.1:{port}/drain?zone={{{{ from_zone }}}}\", body: \"now\" }}, retries: {{ attempts: 3, backoff: 10ms }} }}
  - {{ id: tell, action: notify, with: {{ url: \"http://127.0.0.1:{port}/hook\", text: \"job moved to {{{{ to_zone }}}} ({{{{ incident }}}})\" }}, needs: [drain] }}
"
        ),
    );
    let (code, out, err) = dir.run(&["declare", "--zone", "az1", "--reason", "drill", "--yes"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let id = out.lines().next().unwrap().to_string();
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert_eq!(requests[0].0, "POST /drain?zone=az1 HTTP/1.1");
    assert_eq!(requests[1].0, "POST /drain?zone=az1 HTTP/1.1", "a 503 is retried");
    assert_eq!(requests[2].0, "POST /hook HTTP/1.1");
    let body: Value = serde_json::from_str(&requests[2].1).unwrap();
    assert_eq!(body["text"], format!("job moved to az2 ({id})"));
    let show = dir.json(&["show", &id, "--output", "json"]);
    assert_eq!(step_state(&show, "job/drain"), ("succeeded".into(), 2));
    // One key per effect, the same on every attempt: the receiver applies it once.
    let keys: Vec<Option<String>> = requests.iter().map(|r| r.2.clone()).collect();
    let key = |step: &str| Some(format!("{id}/{step}").to_ascii_lowercase());
    assert_eq!(keys, [key("job/drain"), key("job/drain"), key("job/tell")], "Idempotency-Key headers");
}

/// A planned switchover (`declare --target`) under load, over a
/// replication link slowed to 300 ms each way: the old primary is fenced
/// while a client writes to it at well over 100 writes/s, the standby
/// catches up with its last write, and only then is promoted. Every write
/// the old primary acknowledged is on the new one.
#[test]
fn a_switchover_under_load_over_a_slow_link_loses_no_acknowledged_write() {
    let pg = PgPair::start_with_link_delay(Duration::from_millis(300));
    let dir = Dir::new("switchover");
    std::fs::write(dir.0.join("drctl.yaml"), pg_topology(&pg, "10s")).unwrap();
    pg.psql(pg.primary_port, "CREATE TABLE w (id bigserial PRIMARY KEY)");
    pg.wait_replayed();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let url = pg.primary_url();
    let writer = rt.spawn(async move {
        let c = drctl_providers::postgres::connect(&url, Duration::from_secs(5)).await.unwrap();
        let started = Instant::now();
        let mut acked: Vec<i64> = Vec::new();
        // Until the fence ends this session.
        while let Ok(row) = c.query_one("INSERT INTO w DEFAULT VALUES RETURNING id", &[]).await {
            acked.push(row.get(0));
        }
        (acked, started.elapsed())
    });
    // Let load build up behind the slow link.
    wait_for("the writer to get going", 30, || pg.psql(pg.primary_port, "SELECT count(*) >= 500 FROM w") == "t");
    let (code, out, err) = dir.run(&["declare", "--target", "orders-db", "--reason", "planned switchover", "--yes"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (acked, took) = rt.block_on(writer).unwrap();
    let rate = acked.len() as f64 / took.as_secs_f64();
    assert!(rate > 100.0, "the writer wrote {rate:.0}/s");
    let id = out.lines().next().unwrap().trim();
    let note = dir.json(&["show", id, "--output", "json"])["steps"][0]["note"].as_str().unwrap_or_default().to_string();
    assert!(note.contains("az1: fenced") && note.contains("replayed the old primary's last WAL"), "{note}");
    let last = *acked.last().unwrap();
    let present = pg.psql(pg.standby_port, &format!("SELECT count(*) FROM w WHERE id <= {last}"));
    assert_eq!(present, acked.len().to_string(), "acknowledged writes missing from the new primary ({note})");
    eprintln!("{} writes at {rate:.0}/s; {note}", acked.len());
}

/// The primary goes dark (dead, or cut off from drctl) with no way to
/// fence it: the run is refused, since promoting could leave two writable
/// primaries; `--unfenced orders-db/az1` (never `--force` alone) promotes
/// and says, in the journal, that it was not fenced. The last recorded lag
/// is what `max_lag` is checked against.
#[test]
fn with_the_primary_dark_and_no_fence_command_the_run_is_refused_unless_the_member_is_named_unfenced() {
    let pg = PgPair::start();
    let dir = Dir::new("dead");
    std::fs::write(dir.0.join("drctl.yaml"), pg_topology(&pg, "10s")).unwrap();
    pg.psql(pg.primary_port, "CREATE TABLE t (id int); INSERT INTO t VALUES (1)");
    pg.wait_replayed();
    // Monitoring records the lag while the primary is alive...
    let (code, _, _) = dir.run(&["status"]);
    assert_eq!(code, 0);
    // ...then the zone goes dark.
    pg.kill_primary();
    let (code, out, err) = dir.run(&["declare", "--zone", "az1", "--reason", "az1 is dark", "--yes"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("could leave two writable primaries"), "{out}");
    assert!(out.contains("fence: { command: [...] }"), "says how to fix it: {out}");
    assert_eq!(pg.psql(pg.standby_port, "SELECT pg_is_in_recovery()"), "t", "refused: nothing was promoted");

    let (code, out, _) = dir.run(&["declare", "--zone", "az1", "--reason", "az1 is dark", "--yes", "--force"]);
    assert_eq!(code, 1, "--force waives no fence: {out}");
    assert_eq!(pg.psql(pg.standby_port, "SELECT pg_is_in_recovery()"), "t", "refused: nothing was promoted");
    let (code, out, err) = dir.run(&[
        "declare",
        "--zone",
        "az1",
        "--reason",
        "az1 is dark",
        "--yes",
        "--force",
        "--unfenced",
        "orders-db/az1",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("lacked 0.0 s of writes when the primary was last seen answering"),
        "judged on the last sample: {out}"
    );
    let id = out.lines().next().unwrap().trim();
    let show = dir.json(&["show", id, "--output", "json"]);
    let note = show["steps"][0]["note"].as_str().unwrap_or_default();
    assert!(note.contains("az1: NOT FENCED"), "the journal says it was not fenced: {note}");
    assert_eq!(pg.psql(pg.standby_port, "SELECT pg_is_in_recovery()"), "f");
    assert_eq!(pg.psql(pg.standby_port, "SELECT count(*) FROM t"), "1", "the data is on the new primary");
}

/// The primary is alive and taking writes from a client that still
/// reaches it, but drctl cannot reach it (a one-way cut). Without a fence
/// command the run is refused and the world is untouched; with one, it is
/// powered off out of band before the standby is promoted, so the client's
/// writes stop before there is a second primary, and every write it had
/// acknowledged is on the new primary (replication still flowed).
#[test]
fn a_primary_cut_off_from_drctl_is_fenced_out_of_band_before_the_promote() {
    let pg = PgPair::start();
    let proxy = drctl_testkit::TcpProxy::start(pg.primary_port);
    let dir = Dir::new("cut");
    let topology = |fence: &str| {
        pg_topology(&pg, "10s").replace(
            &format!("url: \"{}\" }}", pg.primary_url()),
            &format!("url: \"postgres://postgres@127.0.0.1:{}/postgres\"{fence} }}", proxy.port),
        )
    };
    std::fs::write(dir.0.join("drctl.yaml"), topology("")).unwrap();
    pg.psql(pg.primary_port, "CREATE TABLE w (id serial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())");
    pg.wait_replayed();
    assert_eq!(dir.run(&["status"]).0, 0);

    // A client that reaches the primary directly keeps writing.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(i64, String)>::new()));
    let writer = {
        let (stop, acked, bin, port) = (stop.clone(), acked.clone(), pg.bin(), pg.primary_port);
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let sql = "INSERT INTO w DEFAULT VALUES RETURNING id, to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";
                if let Ok(row) = drctl_testkit::try_psql(&bin, port, sql) {
                    if let Some((id, at)) = row.split_once('|') {
                        acked.lock().unwrap().push((id.parse().unwrap_or(-1), at.to_string()));
                    }
                }
            }
        })
    };
    proxy.cut();

    let (code, out, _) = dir.run(&["declare", "--zone", "az1", "--reason", "az1 cut off", "--yes"]);
    assert_eq!(code, 1, "no fence command: refused: {out}");
    assert!(out.contains("could leave two writable primaries"), "{out}");
    let before = acked.lock().unwrap().len();
    while acked.lock().unwrap().len() < before + 5 {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(pg.psql(pg.standby_port, "SELECT pg_is_in_recovery()"), "t", "the world is untouched");

    let env_file = dir.0.join("fence.env");
    let argv = pg.power_off_primary_command(&env_file);
    let fence = format!(", fence: {{ command: {} }}", serde_json::to_string(&argv).unwrap());
    std::fs::write(dir.0.join("drctl.yaml"), topology(&fence)).unwrap();
    let (code, out, err) = dir.run(&["declare", "--zone", "az1", "--reason", "az1 cut off", "--yes"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let id = out.lines().next().unwrap().trim().to_string();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.join().unwrap();

    let show = dir.json(&["show", &id, "--output", "json"]);
    let step = &show["steps"][0];
    assert!(step["note"].as_str().unwrap_or_default().contains("az1: fenced out of band"), "{step}");
    let env = std::fs::read_to_string(&env_file).unwrap();
    for want in [
        "DRCTL_DATASTORE=orders-db",
        "DRCTL_ZONE=az1",
        &format!("DRCTL_EXECUTION={id}"),
        "DRCTL_STEP=orders-db/failover",
    ] {
        assert!(env.contains(want), "the fence command's environment lacks {want}: {env}");
    }
    // No write was acknowledged by the old primary once the new one existed
    // (times in one format, from the one machine's clock, compare as text).
    let finished = step["finished_at"].as_str().unwrap().to_string();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= before + 5, "the client kept writing to the cut-off primary: {}", acked.len());
    let after = acked.iter().filter(|(_, at)| *at > finished).count();
    assert_eq!(after, 0, "writes acknowledged by the old primary after the promote (split brain)");
    // Replication flowed until the power-off: the acknowledged writes are on the new primary.
    let present = pg.psql(pg.standby_port, "SELECT count(*) FROM w").parse::<usize>().unwrap();
    assert!(present + 2 >= acked.len(), "{present} of {} acknowledged writes survived", acked.len());
}

/// A declaration whose scope moves nothing is still a declaration: it is
/// journaled (an execution of no steps) from the CLI as through the API.
#[test]
fn a_declaration_that_moves_nothing_is_journaled() {
    let dir = Dir::new("nothing");
    std::fs::write(
        dir.0.join("drctl.yaml"),
        "version: 1
zones: [ { name: az1, region: r1 }, { name: az2, region: r1 }, { name: az3, region: r1 } ]
objectives: { tier-0: { rpo: 5s, rto: 2m } }
datastores:
  - name: orders-db
    kind: postgres
    primary:  { zone: az1, url: \"postgres://postgres@127.0.0.1:9/shop\" }
    replicas: [ { zone: az2, url: \"postgres://postgres@127.0.0.1:9/shop\" } ]
services:
  - { name: shop, tier: tier-0, zones: [az1, az2], depends_on: [orders-db] }
",
    )
    .unwrap();
    let (code, out, err) = dir.run(&["declare", "--zone", "az3", "--reason", "az3 is empty", "--yes"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let id = out.lines().next().unwrap().trim().to_string();
    assert!(out.contains("nothing to fail over; the declaration is journaled"), "{out}");
    let list = dir.json(&["executions", "--output", "json"]);
    assert_eq!((list[0]["id"].as_str(), list[0]["state"].as_str()), (Some(id.as_str()), Some("succeeded")), "{list:#}");
}

/// Walks a folder's files (state database, exported page) as bytes.
fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(path);
                }
            }
        }
    }
    found
}

/// Secrets planted in a connection URL (user info and `?password=`), a
/// webhook's path and a query token never appear on any face: command
/// output and errors, JSON, logs at debug level, the journal and the state
/// database, the exported status page.
#[test]
fn planted_secrets_appear_on_no_face() {
    let (port, seen) = http_server(vec![200, 404]);
    let closed = drctl_testkit::free_port();
    let dir = Dir::new("secrets");
    std::fs::write(
        dir.0.join("rb.yaml"),
        format!(
            "name: job
steps:
  - {{ id: tell, action: notify, with: {{ url: \"http://127.0.0.1:{port}/hooks/services/T0/B0/PLANTEDWEBHOOKPATH\", text: moved }} }}
  - {{ id: drain, action: http.request, with: {{ method: POST, url: \"http://127.0.0.1:{port}/drain?token=PLANTEDQUERYTOKEN\" }}, needs: [tell] }}
"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.0.join("drctl.yaml"),
        format!(
            "version: 1
zones: [ {{ name: az1 }}, {{ name: az2 }} ]
datastores:
  - name: ledger
    kind: postgres
    primary: {{ zone: az2, url: \"postgres://drctl:PLANTEDUSERINFO@127.0.0.1:{closed}/x?password=PLANTEDQUERYPW\" }}
    replicas: [ {{ zone: az1, url: \"postgres://drctl@127.0.0.1:{closed}/x?sslmode=disable&password=PLANTEDQUERYPW\" }} ]
services:
  - {{ name: job, zones: [az1, az2], failover: {{ runbook: rb.yaml }} }}
"
        ),
    )
    .unwrap();
    let secrets = ["PLANTEDUSERINFO", "PLANTEDQUERYPW", "PLANTEDWEBHOOKPATH", "PLANTEDQUERYTOKEN"];
    let mut faces = Vec::new();
    let (_, out, err) = dir.run(&["status"]);
    faces.push(("status", format!("{out}{err}")));
    let (_, out, err) = dir.run(&["status", "--output", "json"]);
    assert!(out.contains("127.0.0.1"), "the status names the member it could not reach: {out}");
    faces.push(("status --output json", format!("{out}{err}")));
    let declare = dir
        .cmd(&["declare", "--zone", "az1", "--reason", "drill", "--yes", "--log-format", "json"])
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (out, err) = (String::from_utf8_lossy(&declare.stdout), String::from_utf8_lossy(&declare.stderr));
    assert_eq!(declare.status.code(), Some(1), "the 404 fails the run: {out}\n{err}");
    let id = out.lines().next().unwrap().to_string();
    faces.push(("declare and its debug log", format!("{out}{err}")));
    let requests = seen.lock().unwrap().clone();
    assert!(requests[0].0.contains("PLANTEDWEBHOOKPATH"), "the webhook itself got its real URL: {requests:?}");
    assert!(requests[1].0.contains("token=PLANTEDQUERYTOKEN"), "{requests:?}");
    let (_, out, err) = dir.run(&["show", &id]);
    assert!(out.contains("hooks/services/***"), "the note names the webhook, redacted: {out}");
    faces.push(("show", format!("{out}{err}")));
    let (_, out, err) = dir.run(&["show", &id, "--output", "json"]);
    assert!(out.contains("token=***"), "the error names the request, redacted: {out}");
    faces.push(("show --output json", format!("{out}{err}")));
    let (_, out, err) = dir.run(&["executions"]);
    faces.push(("executions", format!("{out}{err}")));
    let (_, out, err) = dir.run(&["audit", "list"]);
    faces.push(("audit list", format!("{out}{err}")));
    let (code, out, err) = dir.run(&["status-page", "export", "site"]);
    assert_eq!(code, 0, "{out}{err}");
    for (face, text) in &faces {
        for secret in secrets {
            assert!(!text.contains(secret), "{face} shows {secret}:\n{text}");
        }
    }
    for secret in secrets {
        let leaked = files_containing(&dir.0.join(".drctl"), secret);
        assert!(leaked.is_empty(), "{secret} is stored in {leaked:?}");
        let leaked = files_containing(&dir.0.join("site"), secret);
        assert!(leaked.is_empty(), "{secret} is published in {leaked:?}");
    }
}

/// A health check per zone (`health: { zones: { ZONE: URL } }`) says
/// whether the service is alive in that zone: declaring az1 lost while
/// az1's own URL still answers is pointed out (the shared front door of
/// another service is not, it answers from any zone); `status` checks the
/// zone that serves; a URL for a zone the topology lacks is refused at its
/// line and column.
#[test]
fn a_health_check_per_zone_says_which_zone_still_looks_alive() {
    let (az1, _) = http_server(vec![200]);
    let (az2, _) = http_server(vec![200]);
    let (door, _) = http_server(vec![200]);
    let dir = Dir::new("zone-health");
    std::fs::write(
        dir.0.join("drctl.yaml"),
        format!(
            "version: 1
zones: [ {{ name: az1 }}, {{ name: az2 }} ]
services:
  - name: web
    zones: [az1, az2]
    health: {{ zones: {{ az1: \"http://127.0.0.1:{az1}/\", az2: \"http://127.0.0.1:{az2}/\" }} }}
  - name: shop
    zones: [az1, az2]
    health: {{ url: \"http://127.0.0.1:{door}/\" }}
"
        ),
    )
    .unwrap();
    let (code, out, err) = dir.run(&["declare", "--zone", "az1", "--reason", "test", "--dry-run"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let both = format!("{out}{err}");
    assert!(both.contains(&format!("web: passes its health check (http://127.0.0.1:{az1}/)")), "{both}");
    assert!(!both.contains(&format!("127.0.0.1:{az2}")), "az2 is not declared: {both}");
    assert!(!both.contains(&format!("127.0.0.1:{door}")), "a front door says nothing of az1: {both}");

    let status = dir.json(&["status", "--output", "json"]);
    assert_eq!(status["services"][0]["healthy"], true, "{status}");

    std::fs::write(
        dir.0.join("bad.yaml"),
        "version: 1\nzones: [ { name: az1 } ]\nservices:\n  - { name: web, zones: [az1], health: { zones: { az9: \"http://127.0.0.1:1/\" } } }\n",
    )
    .unwrap();
    let (code, _, err) = dir.run(&["validate", "-f", "bad.yaml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.yaml:4:") && err.contains("az9"), "{err}");
}
