//! `drctl backup`, `backups`, `restore`, `resume` of a restore and restore
//! tests, end to end with real PostgreSQL and real pgBackRest.

mod common;

use common::{drctl, show, start, tempdir, wait_for};
use drctl_testkit::PgPair;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

/// Turns archive_mode on (a restart, as an operator would); drctl sets
/// archive_command itself.
fn archive_mode_on(pair: &PgPair) {
    pair.psql(pair.primary_port, "ALTER SYSTEM SET archive_mode = on");
    let out = drctl_pgserver::command(&pair.bin(), "pg_ctl", drctl_pgserver::Lifetime::Independent)
        .arg("-D")
        .arg(pair.dir.join("primary"))
        .arg("-l")
        .arg(pair.dir.join("primary.log"))
        .args(["-w", "-m", "fast", "restart"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn write_topology(pair: &PgPair, dir: &Path) {
    drctl_pgserver::hand_over(dir).unwrap();
    let src = format!(
        "version: 1\nname: shop\nzones:\n  - {{ name: az1, region: r1 }}\n  - {{ name: az2, region: r1 }}\n  - {{ name: az3, region: r1 }}\n\
         objectives:\n  tier-0: {{ rpo: 5s, rto: 2m, restore: {{ rpo: 1h, rto: 10m }}, drills: {{ every: 30d }} }}\n\
         datastores:\n  - name: orders-db\n    kind: postgres\n    tier: tier-0\n    primary: {{ zone: az1, url: \"{}\" }}\n    replicas: [ {{ zone: az2, url: \"{}\" }} ]\n\
         \x20   backup: {{ tool: pgbackrest, repo: {{ zone: az3, path: {} }}, full: \"0 3 * * 0\", retention: 7d }}\n",
        pair.primary_url(),
        pair.standby_url(),
        dir.join("repo").display()
    );
    std::fs::write(dir.join("drctl.yaml"), src).unwrap();
}

fn stop_copy(dir: &Path, name: &str, pair: &PgPair) {
    let data = dir.join(".drctl/backup/copies").join(name).join("data");
    let _ = drctl_pgserver::command(&pair.bin(), "pg_ctl", drctl_pgserver::Lifetime::Independent)
        .arg("-D")
        .arg(&data)
        .args(["-m", "immediate", "stop"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[test]
fn a_restore_killed_mid_way_resumes_into_the_same_copy_without_starting_over() {
    let pair = PgPair::start();
    let dir = tempdir("restore-kill");
    write_topology(&pair, &dir);
    archive_mode_on(&pair);
    // Enough data that the restore takes a moment to kill it in.
    pair.psql(
        pair.primary_port,
        "CREATE TABLE big AS SELECT g, md5(g::text) AS h FROM generate_series(1, 400000) g; CREATE TABLE orders (id int)",
    );
    let o = drctl(&dir).args(["backup", "orders-db", "-f", "drctl.yaml"]).output().unwrap();
    assert!(o.status.success(), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("backup"), "{}", show(&o));
    pair.psql(pair.primary_port, "INSERT INTO orders SELECT generate_series(1, 10)");

    let o = drctl(&dir).args(["backups", "-f", "drctl.yaml", "--output", "json"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let d = &v["datastores"][0];
    assert_eq!(d["name"], "orders-db");
    assert_eq!(d["kind"], "postgres");
    assert_eq!(d["last_backup"]["kind"], "full");
    assert_eq!(d["rpo_target_s"], 3600.0);
    assert_eq!(d["meets_rpo"], true);
    assert!(d["rpo_s"].as_f64().unwrap() < 600.0, "{d}");
    assert!(d["earliest_restorable"].is_string() && d["latest_restorable"].is_string(), "{d}");
    assert!(d["last_restore_test"].is_null());
    // pgBackRest stamps a backup's end to the whole second, up to a second
    // ahead: `-1s` is restorable once that point is over a second old.
    let earliest = chrono::DateTime::parse_from_rfc3339(d["earliest_restorable"].as_str().unwrap()).unwrap();
    while chrono::Utc::now() < earliest + chrono::Duration::milliseconds(1500) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // A dry run says what it would do, and does nothing.
    let o = drctl(&dir)
        .args(["restore", "orders-db", "--to", "-1s", "--reason", "look", "--dry-run", "-f", "drctl.yaml"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let first = out.lines().next().unwrap_or_default();
    assert!(first.len() >= 15 && first.starts_with("20"), "the id comes first: {out}");
    assert!(out.contains("pgbackrest restore --type=time") && out.contains("dry run"), "{out}");
    assert!(
        !dir.join(".drctl/backup/copies").exists()
            || std::fs::read_dir(dir.join(".drctl/backup/copies")).unwrap().next().is_none()
    );

    // The real one, killed while pgBackRest writes the copy.
    let mut child = drctl(&dir)
        .args([
            "restore",
            "orders-db",
            "--to",
            "latest",
            "--into",
            "c1",
            "--reason",
            "bad delete",
            "--yes",
            "-f",
            "drctl.yaml",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let id = lines.next().unwrap().unwrap();
    let data = dir.join(".drctl/backup/copies/c1/data");
    wait_for("pgBackRest writing the copy", 120, || {
        data.join("PG_VERSION").exists() || data.join("backup.manifest").exists()
    });
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();

    let o = drctl(&dir).args(["resume", &id, "-f", "drctl.yaml"]).output().unwrap();
    assert!(o.status.success(), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.contains("delta-restored"), "the resume continues the restore as a delta: {out}");
    assert!(out.contains("127.0.0.1:"), "it says where the copy runs: {out}");
    let copies: Vec<String> = std::fs::read_dir(dir.join(".drctl/backup/copies"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(copies, ["c1"], "one copy, not a second one");

    let o = drctl(&dir).args(["show", &id, "--output", "json", "-f", "drctl.yaml"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["state"], "succeeded", "{v}");
    let restore_step = v["steps"].as_array().unwrap().iter().find(|s| s["id"] == "orders-db/restore").unwrap();
    assert_eq!(restore_step["state"], "succeeded");

    // The copy holds what was committed before the restore was asked for.
    let port: u16 =
        out.split("127.0.0.1:").nth(1).and_then(|s| s.split('/').next()).and_then(|p| p.parse().ok()).unwrap();
    assert_eq!(drctl_testkit::try_psql(&pair.bin(), port, "SELECT count(*) FROM orders").unwrap(), "10");
    stop_copy(&dir, "c1", &pair);

    let audit = drctl(&dir).args(["audit", "list", "-f", "drctl.yaml"]).output().unwrap();
    let audit = String::from_utf8_lossy(&audit.stdout);
    assert!(audit.contains("restore") && audit.contains("resume"), "{audit}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_restore_test_whose_check_fails_reports_unverified_and_exits_3() {
    let pair = PgPair::start();
    let dir = tempdir("restore-test");
    write_topology(&pair, &dir);
    archive_mode_on(&pair);
    pair.psql(pair.primary_port, "CREATE TABLE orders (id int, created_at timestamptz DEFAULT now())");
    pair.psql(pair.primary_port, "INSERT INTO orders (id) SELECT generate_series(1, 5)");
    let o = drctl(&dir).args(["backup", "orders-db", "-f", "drctl.yaml"]).output().unwrap();
    assert!(o.status.success(), "{}", show(&o));
    pair.psql(pair.primary_port, "INSERT INTO orders (id) VALUES (6)");
    // Readiness knows the datastore was never restore-tested (drills: every 30d).
    assert!(
        restore_test_finding(&dir).unwrap_or_default().contains("never restore-tested"),
        "{:?}",
        restore_test_finding(&dir)
    );

    std::fs::write(
        dir.join("good.yaml"),
        "name: orders-restore-test\nrestore: { datastore: orders-db, to: latest }\nverify:\n  \
         - { sql: \"SELECT count(*) = 6 FROM orders\", expect: true }\n  \
         - { sql: \"SELECT max(created_at) FROM orders\", fresher_than: 10m }\n",
    )
    .unwrap();
    let o = drctl(&dir).args(["drill", "good.yaml", "-f", "drctl.yaml", "--report", "good-report"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("good-report/report.json")).unwrap()).unwrap();
    let rs = &r["restore"];
    assert_eq!(rs["datastore"], "orders-db");
    assert_eq!(rs["verified"], true, "{rs}");
    assert_eq!(rs["meets_rto"], true);
    assert_eq!(rs["resurrected_erasures"], 0);
    assert_eq!(rs["restore_target_s"], 600.0);
    assert!(rs["restore_s"].as_f64().unwrap() > 0.0);
    let err = rs["recovery_point_error_s"].as_f64().unwrap();
    assert!((0.0..5.0).contains(&err), "{rs}");
    assert!(rs["requested_point"].is_string() && rs["recovered_point"].is_string());
    assert_eq!(rs["checks"].as_array().unwrap().len(), 2);
    // The scratch copy is gone, and the last restore test is listed.
    assert!(std::fs::read_dir(dir.join(".drctl/backup/copies")).unwrap().next().is_none());
    let o = drctl(&dir).args(["backups", "-f", "drctl.yaml", "--output", "json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["datastores"][0]["last_restore_test"]["passed"], true, "{v}");
    assert_eq!(restore_test_finding(&dir), None, "a passing restore test satisfies readiness");

    std::fs::write(
        dir.join("bad.yaml"),
        "name: orders-restore-test\nrestore: { datastore: orders-db, to: latest }\nverify:\n  \
         - { sql: \"SELECT count(*) FROM orders\", expect: 1000 }\n",
    )
    .unwrap();
    let o = drctl(&dir).args(["drill", "bad.yaml", "-f", "drctl.yaml", "--report", "bad-report"]).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("bad-report/report.json")).unwrap()).unwrap();
    assert_eq!(r["restore"]["verified"], false);
    assert_eq!(r["restore"]["checks"][0]["passed"], false);
    assert_eq!(r["restore"]["checks"][0]["got"], "6");
    let o = drctl(&dir).args(["backups", "-f", "drctl.yaml", "--output", "json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["datastores"][0]["last_restore_test"]["passed"], false, "{v}");
    assert!(restore_test_finding(&dir).unwrap_or_default().contains("its last restore test failed"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A restore from a backup taken before an erasure keeps the subject
/// gone: the restore replays the ledger on the copy before its checks, and
/// nothing drctl writes (ledger, audit log, report) holds the identifier.
#[test]
fn a_restore_to_before_an_erasure_keeps_the_subject_gone() {
    const SUBJECT: &str = "cust-restore-4d2c";
    let pair = PgPair::start();
    let dir = tempdir("restore-erasure");
    write_topology(&pair, &dir);
    let mut topo = std::fs::read_to_string(dir.join("drctl.yaml")).unwrap();
    topo.push_str(
        "erasure:\n  deadline: 7d\n  locate:\n    - { datastore: orders-db, sql: \"DELETE FROM customers WHERE id = $1\", check: \"SELECT count(*) FROM customers WHERE id = $1\" }\n",
    );
    std::fs::write(dir.join("drctl.yaml"), topo).unwrap();
    archive_mode_on(&pair);
    pair.psql(
        pair.primary_port,
        &format!(
            "CREATE TABLE customers (id text PRIMARY KEY); INSERT INTO customers VALUES ('{SUBJECT}'), ('cust-other')"
        ),
    );
    let o = drctl(&dir).args(["backup", "orders-db", "-f", "drctl.yaml"]).output().unwrap();
    assert!(o.status.success(), "{}", show(&o));
    let o = drctl(&dir).args(["backups", "-f", "drctl.yaml", "--output", "json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let earliest =
        chrono::DateTime::parse_from_rfc3339(v["datastores"][0]["earliest_restorable"].as_str().unwrap()).unwrap();
    while chrono::Utc::now() < earliest + chrono::Duration::milliseconds(1500) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The point the restore goes back to: the subject was still there.
    let point = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    std::thread::sleep(std::time::Duration::from_millis(300));

    let o = drctl(&dir)
        .args(["erase", SUBJECT, "--reason", "request 17", "--yes", "--wait", "30s", "-f", "drctl.yaml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(out.lines().next(), Some("er-1"), "{out}");
    assert!(!out.contains(SUBJECT), "the subject is not printed back: {out}");
    assert_eq!(pair.psql(pair.primary_port, &format!("SELECT count(*) FROM customers WHERE id = '{SUBJECT}'")), "0");

    std::fs::write(
        dir.join("erased.yaml"),
        format!(
            "name: erasure-restore-test\nrestore: {{ datastore: orders-db, to: \"{point}\" }}\nverify:\n  \
             - {{ sql: \"SELECT count(*) FROM customers WHERE id LIKE 'cust-restore-%'\", expect: 0 }}\n  \
             - {{ sql: \"SELECT count(*) FROM customers\", expect: 1 }}\n"
        ),
    )
    .unwrap();
    let o = drctl(&dir).args(["drill", "erased.yaml", "-f", "drctl.yaml", "--report", "rep"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let report = std::fs::read_to_string(dir.join("rep/report.json")).unwrap();
    let r: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(r["restore"]["verified"], true, "{report}");
    assert_eq!(r["restore"]["resurrected_erasures"], 0);
    assert_eq!(r["restore"]["replayed_erasures"], 1, "the request made after the point was replayed: {report}");

    let o = drctl(&dir).args(["erasures", "--output", "json", "-f", "drctl.yaml"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let e = &v["erasures"][0];
    assert_eq!(e["id"], "er-1");
    assert_eq!(e["overdue"], false);
    assert!(e["erased_at"].is_string() && e["due_at"].is_string() && e["requested_at"].is_string(), "{e}");
    assert_eq!(e["copies"].as_array().unwrap().len(), 2, "the primary and the standby: {e}");
    assert!(e["copies"].as_array().unwrap().iter().all(|c| c["verified_at"].is_string()), "{e}");
    assert_eq!(e["backups"][0]["datastore"], "orders-db", "the backup taken before still holds it: {e}");
    // Read from pgBackRest, not estimated: the full backup by its label,
    // with no expiry while no newer full backup lets the retention drop it.
    let first = e["backups"][0]["backup"].as_str().unwrap_or_default().to_string();
    assert!(first.ends_with('F') && e["backups"][0]["expires_at"].is_null(), "{e}");
    assert_eq!(e["backups"].as_array().unwrap().len(), 1, "{e}");
    // A newer full backup, taken after the erasure, holds nothing; the
    // first now expires 7 days (the retention) after it.
    let o = drctl(&dir).args(["backup", "orders-db", "--kind", "full", "-f", "drctl.yaml"]).output().unwrap();
    assert!(o.status.success(), "{}", show(&o));
    let o = drctl(&dir).args(["erasures", "--output", "json", "-f", "drctl.yaml"]).output().unwrap();
    let later: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let held = later["erasures"][0]["backups"].as_array().unwrap().clone();
    assert_eq!(held.len(), 1, "{later}");
    assert_eq!(held[0]["backup"], first.as_str(), "{later}");
    let expires = chrono::DateTime::parse_from_rfc3339(held[0]["expires_at"].as_str().unwrap()).unwrap();
    let in_days = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_hours();
    assert!((167..=168).contains(&in_days), "7 days after the newer full backup: {later}");

    // Nothing drctl keeps holds the identifier in clear.
    let audit = drctl(&dir).args(["audit", "list", "-f", "drctl.yaml"]).output().unwrap();
    let dump = std::process::Command::new("sqlite3").arg(dir.join("state.db")).arg(".dump").output().unwrap();
    let dump = String::from_utf8_lossy(&dump.stdout).to_string();
    assert!(dump.contains("erasure/"), "the ledger is in the state file");
    for (what, text) in [
        ("erasures", later.to_string()),
        ("the audit log", String::from_utf8_lossy(&audit.stdout).to_string()),
        ("the state file", dump),
        ("the report", report),
    ] {
        assert!(!text.contains(SUBJECT), "{what} holds the subject: {text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The readiness finding about orders-db's restore test, if any scope has one.
fn restore_test_finding(dir: &Path) -> Option<String> {
    let o = drctl(dir).args(["readiness", "-f", "drctl.yaml", "--output", "json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", show(&o)));
    v["scopes"].as_array()?.iter().flat_map(|s| s["findings"].as_array().cloned().unwrap_or_default()).find_map(|f| {
        (f["entity"] == "orders-db" && f["check"] == "restore-test")
            .then(|| f["message"].as_str().unwrap_or("").to_string())
    })
}

/// `drctl serve` takes the backups the topology schedules, as their crons
/// come due, each audited by the scheduler before it starts.
#[test]
fn the_controller_takes_scheduled_backups_audited() {
    let pair = PgPair::start();
    let dir = tempdir("restore-scheduled");
    write_topology(&pair, &dir);
    // Every 5 seconds (the six-field form counts seconds), for the test.
    let yaml = std::fs::read_to_string(dir.join("drctl.yaml"))
        .unwrap()
        .replace("full: \"0 3 * * 0\"", "full: \"*/5 * * * * *\"");
    std::fs::write(dir.join("drctl.yaml"), yaml).unwrap();
    archive_mode_on(&pair);
    let backups = || -> serde_json::Value {
        let o = drctl(&dir).args(["backups", "-f", "drctl.yaml", "--output", "json"]).output().unwrap();
        serde_json::from_slice(&o.stdout).unwrap_or_default()
    };
    let srv = start(&dir, &["--evaluate-every", "1s"], "http");
    wait_for("a scheduled backup", 90, || backups()["datastores"][0]["last_backup"]["kind"] == "full");
    // The backup RPO reaches /metrics with the next readiness evaluation.
    let metrics = || common::client().get(format!("{}/metrics", srv.base)).send().unwrap().text().unwrap();
    wait_for("drctl_backup_rpo_seconds", 30, || {
        metrics().contains("drctl_backup_rpo_seconds{datastore=\"orders-db\"}")
    });
    assert!(metrics().contains("drctl_backup_rpo_target_seconds{datastore=\"orders-db\"} 3600.0"), "{}", metrics());
    let o = drctl(&dir).args(["audit", "list", "--output", "json"]).output().unwrap();
    let audit: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let entry = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "backup")
        .unwrap_or_else(|| panic!("the scheduled backup audited: {audit}"));
    assert_eq!(entry["actor"], "scheduler", "{entry}");
    assert_eq!(entry["request"]["kind"], "full", "{entry}");
    let _ = std::fs::remove_dir_all(&dir);
}
