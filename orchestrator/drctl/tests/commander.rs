//! The incident commander at a terminal: the hints drctl prints work when
//! typed exactly as printed (on the lab, whose executions live in the
//! lab's own store), a zone typed short is suggested, a confirmation
//! answered with anything but the zone's name declares nothing and exits 1,
//! and a refused declaration is audited by the login name even without
//! `$USER`. Against the real lab and a real PostgreSQL pair.

use drctl_testkit::PgPair;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;
use common::{drctl_clean, show, tempdir};

fn drctl(dir: &Path) -> Command {
    let mut c = drctl_clean();
    c.current_dir(dir).env("NO_COLOR", "1").stdin(Stdio::null());
    c
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

struct LabGuard(PathBuf);
impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = drctl(&self.0).args(["lab", "down", "--dir"]).arg(&self.0).output();
    }
}

/// Every `drctl ...` command printed between backticks.
fn printed_commands(out: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (i, part) in out.split('`').enumerate() {
        if i % 2 == 1 && part.starts_with("drctl ") && !found.contains(&part.to_string()) {
            found.push(part.to_string());
        }
    }
    found
}

/// Runs a printed command as a person would: pasted into a shell in `dir`,
/// with the drctl under test first on the PATH.
fn typed(dir: &Path, command: &str) -> Output {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_drctl"));
    let path = format!("{}:{}", bin.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .env_remove("DRCTL_STATE")
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn the_hints_a_lab_declaration_prints_reach_the_labs_store_typed_as_printed() {
    let dir = tempdir("commander-hints");
    let up = drctl(&dir).args(["lab", "up", "--detach", "--base-port", "24700", "--dir", "lab"]).output().unwrap();
    let guard = LabGuard(dir.join("lab"));
    assert!(up.status.success(), "{}", show(&up));

    // A zone typed short is suggested, and nothing is declared.
    let o = drctl(&dir)
        .args(["declare", "-f", "lab/drctl.yaml", "--zone", "az1", "--reason", "typo", "--yes"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("did you mean `lab-az1`?"), "{}", show(&o));

    let o = drctl(&dir)
        .args(["declare", "-f", "lab/drctl.yaml", "--zone", "lab-az1", "--reason", "hints as printed", "--yes"])
        .output()
        .unwrap();
    let out = text(&o);
    assert!(matches!(o.status.code(), Some(0) | Some(3)), "the failover ran: {}", show(&o));
    let id = out.lines().next().unwrap().trim().to_string();
    let hints = printed_commands(&out);
    for wanted in ["show", "abort", "executions"] {
        assert!(
            hints.iter().any(|h| h.starts_with(&format!("drctl {wanted}"))),
            "a `drctl {wanted}` hint is printed: {out}"
        );
    }
    for h in &hints {
        assert!(h.contains("-f lab/drctl.yaml"), "the hint names the lab's topology: {h}");
        let o = typed(&dir, h);
        assert!(o.status.success(), "`{h}` works as printed: {}", show(&o));
        if h.contains(&id) || h.contains("executions") {
            assert!(text(&o).contains(&id), "`{h}` reached the store that holds {id}: {}", show(&o));
        }
    }

    // The same commands with -f reach the lab's store; without, the default one.
    let listed = drctl(&dir).args(["executions", "-f", "lab/drctl.yaml", "--output", "json"]).output().unwrap();
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["id"], id.as_str(), "{listed}");
    let elsewhere = drctl(&dir).args(["executions", "--output", "json"]).output().unwrap();
    assert!(!text(&elsewhere).contains(&id), "the default store does not hold the lab's execution");
    let audit = drctl(&dir).args(["audit", "list", "-f", "lab/drctl.yaml", "--output", "json"]).output().unwrap();
    assert!(text(&audit).contains(&format!("execution {id}")), "the lab's audit log: {}", show(&audit));

    // The lab stopped (its lab.json gone), its topology still means its store.
    drop(guard);
    let o = drctl(&dir).args(["show", &id, "-f", "lab/drctl.yaml", "--output", "json"]).output().unwrap();
    assert!(o.status.success(), "{}", show(&o));
    let shown: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(shown["id"], id.as_str());
    let _ = std::fs::remove_dir_all(&dir);
}

fn pg_topology(pg: &PgPair) -> String {
    format!(
        "version: 1
zones: [ {{ name: az1, region: r1 }}, {{ name: az2, region: r1 }} ]
objectives: {{ tier-0: {{ rpo: 5s, rto: 2m }} }}
datastores:
  - name: orders-db
    kind: postgres
    primary:  {{ zone: az1, url: \"{}\" }}
    replicas: [ {{ zone: az2, url: \"{}\" }} ]
services:
  - {{ name: shop, tier: tier-0, zones: [az1, az2], depends_on: [orders-db] }}
",
        pg.primary_url(),
        pg.standby_url()
    )
}

/// The login name of this test's user, as the system knows it.
fn login_name() -> String {
    let o = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn a_confirmation_answered_y_declares_nothing_and_exits_1() {
    let pg = PgPair::start();
    let dir = tempdir("commander-confirm");
    std::fs::write(dir.join("drctl.yaml"), pg_topology(&pg)).unwrap();
    let drctl_bin = env!("CARGO_BIN_EXE_drctl");
    // A terminal (script(1) gives drctl one), answered `y` instead of the zone's name.
    let o = Command::new("script")
        .args(["-qec", &format!("{drctl_bin} declare --zone az1 --reason 'confirm test'"), "/dev/null"])
        .current_dir(&dir)
        .env_remove("DRCTL_STATE")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"y\n")?;
            child.wait_with_output()
        })
        .unwrap();
    let out = text(&o);
    assert!(out.contains("Type az1 to confirm"), "the question was asked: {}", show(&o));
    assert_eq!(o.status.code(), Some(1), "a wrong answer is not done: {}", show(&o));
    assert!(out.contains("not declared"), "{}", show(&o));
    assert_eq!(pg.psql(pg.standby_port, "SELECT pg_is_in_recovery()"), "t", "nothing was promoted");
    let listed = drctl(&dir).args(["executions", "--output", "json"]).output().unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&listed.stdout).unwrap(), Value::Array(vec![]), "nothing journaled");
    let audit = drctl(&dir).args(["audit", "list", "--output", "json"]).output().unwrap();
    let audit: Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert!(
        audit.as_array().unwrap().iter().all(|e| !e["action"].as_str().unwrap_or_default().starts_with("declare")),
        "nothing audited as declared: {audit}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_refused_declaration_is_audited_with_its_reason_by_the_login_name_without_user() {
    let pg = PgPair::start();
    let dir = tempdir("commander-refused");
    std::fs::write(dir.join("drctl.yaml"), pg_topology(&pg)).unwrap();
    pg.psql(pg.primary_port, "CREATE TABLE t (id int); INSERT INTO t VALUES (1)");
    pg.wait_replayed();
    let o = drctl(&dir).arg("status").output().unwrap();
    assert!(o.status.success(), "{}", show(&o));
    // The zone goes dark; its primary has no fence command: refused.
    pg.kill_primary();
    // Its standby answers, so the RPO is still a number (what it may lack),
    // with the primary's darkness said beside it.
    let o = drctl(&dir).args(["status", "--output", "json"]).output().unwrap();
    let st: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", show(&o)));
    let db = &st["datastores"][0];
    assert!(db["rpo_s"].is_number(), "the standby answers, the RPO is known: {db}");
    assert!(db["error"].as_str().unwrap().contains("unreachable"), "{db}");
    assert_eq!(db["replicas"][0]["wal"]["streaming"], false, "{db}");
    let o = drctl(&dir)
        .args(["declare", "--zone", "az1", "--reason", "az1 is dark", "--yes"])
        .env_remove("USER")
        .env_remove("LOGNAME")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let audit = drctl(&dir).args(["audit", "list", "--output", "json"]).output().unwrap();
    let audit: Value = serde_json::from_slice(&audit.stdout).unwrap();
    let refused = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "declare.refused")
        .unwrap_or_else(|| panic!("declare.refused audited: {audit}"));
    assert_eq!(refused["actor"], login_name().as_str(), "by the login name, from the uid: {refused}");
    let why = refused["request"]["refused"].to_string();
    assert!(why.contains("two writable primaries"), "with its reason: {refused}");
    assert_eq!(refused["request"]["reason"], "az1 is dark");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An old primary that could not be fenced (dead when the zone was
/// declared) comes back writable: the writes it took past the promotion
/// point, which the new primary never received, are counted from its own
/// WAL and recorded on the execution, shown by `show`, once.
#[test]
fn an_old_primary_that_comes_back_has_its_unreplicated_writes_counted_on_the_execution() {
    let pg = PgPair::start_with_cuttable_link();
    let dir = tempdir("commander-returned");
    std::fs::write(dir.join("drctl.yaml"), pg_topology(&pg)).unwrap();
    pg.psql(pg.primary_port, "CREATE EXTENSION pg_walinspect");
    pg.psql(pg.primary_port, "CREATE TABLE t (id int)");
    pg.wait_replayed();
    // Cut off, the primary takes 5 writes the standby never receives, then dies.
    pg.cut_link();
    for i in 0..5 {
        pg.psql(pg.primary_port, &format!("INSERT INTO t VALUES ({i})"));
    }
    pg.kill_primary();
    let o = drctl(&dir)
        .args([
            "declare",
            "--zone",
            "az1",
            "--reason",
            "az1 is dark",
            "--yes",
            "--force",
            "--unfenced",
            "orders-db/az1",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let id = String::from_utf8_lossy(&o.stdout).lines().next().unwrap().trim().to_string();
    assert_eq!(pg.psql(pg.standby_port, "SELECT count(*) FROM t"), "0", "the new primary lacks the 5 writes");

    // Power comes back to az1: its old primary answers, writable.
    pg.restart_primary();
    let o = drctl(&dir).args(["status", "--output", "json"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("the old primary in az1 answers again, writable, holding"), "{}", show(&o));
    let shown = drctl(&dir).args(["show", &id, "--output", "json"]).output().unwrap();
    let r: Value = serde_json::from_slice(&shown.stdout).unwrap_or_else(|_| panic!("{}", show(&shown)));
    let old = r["old_primaries"].as_array().unwrap();
    assert_eq!(old.len(), 1, "{r:#}");
    let detail = old[0]["detail"].as_str().unwrap();
    let commits: u64 = detail.split("holding ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!((5..=7).contains(&commits), "the 5 writes it took past the fork: {detail}");
    assert!(detail.contains("rebuild it as a standby of az2"), "{detail}");
    // Looked at again: recorded once.
    let _ = drctl(&dir).args(["status"]).output().unwrap();
    let text = drctl(&dir).args(["show", &id]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert_eq!(text.matches("the old primary in az1 answers again").count(), 1, "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without `pg_walinspect`, a standby's own bounds read a quiet spell
/// before a cut as lag. The looks kept in the state store (each `status`,
/// as a controller's samples) say when the primary was last at the
/// standby's position: the RPO reads the writes it missed, not the quiet.
#[test]
fn the_primarys_recent_positions_keep_the_rpo_to_the_writes_missed_after_a_quiet_spell() {
    let pg = PgPair::start_with_cuttable_link();
    let dir = tempdir("commander-marks");
    std::fs::write(dir.join("drctl.yaml"), pg_topology(&pg)).unwrap();
    pg.psql(pg.primary_port, "CREATE TABLE t (id int)");
    pg.wait_replayed();
    let rpo = || -> f64 {
        let o = drctl(&dir).args(["status", "--output", "json"]).output().unwrap();
        let st: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", show(&o)));
        st["datastores"][0]["rpo_s"].as_f64().unwrap_or(f64::NAN)
    };
    // A quiet spell, looked at now and then.
    let quiet_until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < quiet_until {
        assert!(rpo() < 1.0);
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    pg.cut_link();
    assert!(rpo() < 1.0, "nothing written since the cut");
    let writes_until = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut i = 0;
    while std::time::Instant::now() < writes_until {
        pg.psql(pg.primary_port, &format!("INSERT INTO t VALUES ({i})"));
        i += 1;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let missed = rpo();
    assert!((2.0..=4.5).contains(&missed), "3 s of missed writes after 5 s of quiet read {missed} s");
    let _ = std::fs::remove_dir_all(&dir);
}
