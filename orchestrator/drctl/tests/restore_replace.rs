//! `drctl restore --replace` of PostgreSQL, end to end with a real primary
//! and standby and real pgBackRest: a bad `DELETE` undone in the primary's
//! place, the standby rebuilt and streaming, never two writable primaries,
//! a SIGKILL in the middle resumed without a second restore or fence, and
//! the refusal off a terminal whose hint works typed as printed.

mod common;

use common::{drctl, show, tempdir, wait_for};
use drctl_testkit::PgPair;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

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
         objectives:\n  tier-0: {{ rpo: 5s, rto: 2m, restore: {{ rpo: 1h, rto: 10m }} }}\n\
         datastores:\n  - name: orders-db\n    kind: postgres\n    tier: tier-0\n    primary: {{ zone: az1, url: \"{}\" }}\n    replicas: [ {{ zone: az2, url: \"{}\" }} ]\n\
         \x20   backup: {{ tool: pgbackrest, repo: {{ zone: az3, path: {} }}, full: \"0 3 * * 0\", retention: 7d }}\n",
        pair.primary_url(),
        pair.standby_url(),
        dir.join("repo").display()
    );
    std::fs::write(dir.join("drctl.yaml"), src).unwrap();
}

/// The copy's data folder (`--into c1`).
fn copy_data(dir: &Path) -> PathBuf {
    dir.join(".drctl/backup/copies/c1/data")
}

/// Stops a server by its data folder (the restored copy at the end of a test).
fn stop(pair: &PgPair, data: &Path) {
    let _ = drctl_pgserver::command(&pair.bin(), "pg_ctl", drctl_pgserver::Lifetime::Independent)
        .arg("-D")
        .arg(data)
        .args(["-m", "immediate", "stop"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Whether a server runs on a data folder (`pg_ctl status`).
fn runs(pair: &PgPair, data: &Path) -> bool {
    drctl_pgserver::command(&pair.bin(), "pg_ctl", drctl_pgserver::Lifetime::Independent)
        .arg("-D")
        .arg(data)
        .arg("status")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// orders 1..=100 in a full backup, 101..=110 after it (in the WAL only);
/// returns once the backup's end is restorable.
fn orders_backed_up(pair: &PgPair, dir: &Path, extra: &str) {
    archive_mode_on(pair);
    pair.psql(
        pair.primary_port,
        &format!("{extra}CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders SELECT generate_series(1, 100)"),
    );
    let o = drctl(dir).args(["backup", "orders-db", "-f", "drctl.yaml"]).output().unwrap();
    assert!(o.status.success(), "{}", show(&o));
    pair.psql(pair.primary_port, "INSERT INTO orders SELECT generate_series(101, 110)");
    let o = drctl(dir).args(["backups", "-f", "drctl.yaml", "--output", "json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let earliest =
        chrono::DateTime::parse_from_rfc3339(v["datastores"][0]["earliest_restorable"].as_str().unwrap()).unwrap();
    // pgBackRest stamps a backup's end to the whole second, up to a second ahead.
    while chrono::Utc::now() < earliest + chrono::Duration::milliseconds(1500) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The moment before the bad delete, then the delete and a write after it
/// (both must be undone by the restore). Returns the point (RFC 3339).
fn bad_delete(pair: &PgPair) -> String {
    let point = pair.psql(
        pair.primary_port,
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    pair.psql(pair.primary_port, "DELETE FROM orders");
    pair.psql(pair.primary_port, "INSERT INTO orders VALUES (999)");
    pair.wait_replayed();
    assert_eq!(pair.psql(pair.standby_port, "SELECT count(*) FROM orders"), "1", "replication carried the delete");
    point
}

fn show_json(dir: &Path, id: &str) -> serde_json::Value {
    let o = drctl(dir).args(["show", id, "--output", "json", "-f", "drctl.yaml"]).output().unwrap();
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", show(&o)))
}

fn step<'a>(v: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    v["steps"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap_or_else(|| panic!("no step {id}: {v}"))
}

/// The restored data serves at the primary's address, the old primary's
/// folder serves nothing (stopped, its pg_hba.conf fenced), and the
/// standby streams from the new primary.
fn assert_replaced(pair: &PgPair, dir: &Path) {
    let p = pair.primary_port;
    assert_eq!(pair.psql(p, "SELECT count(*) FROM orders"), "110", "the rows before the delete are back");
    assert_eq!(pair.psql(p, "SELECT count(*) FROM orders WHERE id = 999"), "0", "the write after the point is gone");
    assert_eq!(pair.psql(p, "SELECT pg_is_in_recovery()"), "f");
    assert_eq!(
        pair.psql(p, "SHOW data_directory"),
        copy_data(dir).display().to_string(),
        "the primary's address reaches the restored copy"
    );
    let old = pair.dir.join("primary");
    assert!(!runs(pair, &old), "the old primary's folder serves nothing");
    let hba = std::fs::read_to_string(old.join("pg_hba.conf")).unwrap();
    assert!(hba.starts_with("# drctl fence:"), "the old primary stays fenced: {hba}");
    // A write at the primary's address reaches the rebuilt standby.
    pair.psql(p, "INSERT INTO orders VALUES (2000)");
    wait_for("the standby to replay a write made after the replace", 60, || {
        pair.try_psql(pair.standby_port, "SELECT count(*) FROM orders WHERE id = 2000").is_ok_and(|n| n == "1")
    });
    assert_eq!(pair.psql(pair.standby_port, "SELECT pg_is_in_recovery()"), "t");
    assert_eq!(pair.psql(pair.standby_port, "SELECT status FROM pg_stat_wal_receiver"), "streaming");
    assert_eq!(pair.psql(pair.standby_port, "SELECT count(*) FROM orders"), "111");
}

/// Counts, while it runs, the servers on the estate's two addresses that
/// take a write; the most ever seen at once must be one.
struct Watch {
    stop: Arc<AtomicBool>,
    most: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    fn start(pair: &PgPair) -> Watch {
        let (stop, most) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let (bin, ports) = (pair.bin(), [pair.primary_port, pair.standby_port]);
        let (s, m) = (stop.clone(), most.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let writable = ports
                    .iter()
                    .filter(|port| {
                        drctl_testkit::try_psql(&bin, **port, "BEGIN READ WRITE; SELECT pg_current_xact_id(); COMMIT")
                            .is_ok()
                    })
                    .count();
                m.fetch_max(writable, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        });
        Watch { stop, most, thread: Some(thread) }
    }

    fn most(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.most.load(Ordering::SeqCst)
    }
}

#[test]
fn a_bad_delete_is_undone_in_the_primarys_place_and_the_standby_streams_from_it() {
    let pair = PgPair::start();
    let dir = tempdir("replace");
    write_topology(&pair, &dir);
    orders_backed_up(&pair, &dir, "");
    let point = bad_delete(&pair);

    // A dry run says what it would do, and changes nothing.
    let o = drctl(&dir)
        .args(["restore", "orders-db", "--to", &point, "--replace", "--reason", "bad delete", "--dry-run"])
        .args(["--into", "c1", "-f", "drctl.yaml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    for line in ["orders-db/fence:", "orders-db/takeover:", "orders-db/standbys:", "orders-db/verify:", "dry run"] {
        assert!(out.contains(line), "the dry run says `{line}`: {out}");
    }
    assert!(out.contains(&format!("127.0.0.1:{}", pair.primary_port)), "it names the primary's address: {out}");

    // Off a terminal without --yes: refused, nothing changed, and the
    // command that goes ahead is printed.
    let o = drctl(&dir)
        .args(["restore", "orders-db", "--to", &point, "--replace", "--reason", "bad delete (ticket 7)"])
        .args(["--into", "c1", "-f", "drctl.yaml"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("not restored") && err.contains("not a terminal"), "{err}");
    let hint = err.lines().map(str::trim).find(|l| l.starts_with("drctl restore")).unwrap_or_else(|| panic!("{err}"));
    // drctl.yaml is the default topology: the hint needs no -f to reach it.
    assert!(hint.contains("--yes") && hint.contains("--replace"), "{hint}");
    assert_eq!(pair.psql(pair.primary_port, "SELECT count(*) FROM orders"), "1", "nothing was restored");
    assert!(!copy_data(&dir).exists(), "no copy was made");
    let o = drctl(&dir).args(["executions", "--output", "json", "-f", "drctl.yaml"]).output().unwrap();
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap(), serde_json::json!([]));

    // The hint, typed as printed (through a shell), does the replace.
    let watch = Watch::start(&pair);
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_drctl")).parent().unwrap().to_path_buf();
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(hint)
        .current_dir(&dir)
        .env("PATH", format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default()))
        .env("DRCTL_STATE", format!("sqlite://{}/state.db", dir.display()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let most = watch.most();
    assert_eq!(o.status.code(), Some(0), "{hint}\n{}", show(&o));
    assert!(most <= 1, "{most} servers on the estate's addresses took writes at once");
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let id = out.lines().next().unwrap().to_string();
    assert!(out.contains("in the primary's place"), "{out}");
    assert_replaced(&pair, &dir);

    let v = show_json(&dir, &id);
    assert_eq!(v["state"], "succeeded", "{v}");
    for s in ["restore", "start", "erasures", "fence", "takeover", "standbys", "verify"] {
        assert_eq!(step(&v, &format!("orders-db/{s}"))["state"], "succeeded", "{v}");
    }
    assert!(step(&v, "orders-db/fence")["note"].as_str().unwrap().contains("az1: fenced"), "{v}");
    assert!(step(&v, "orders-db/verify")["note"].as_str().unwrap().contains("az2 streams"), "{v}");

    let audit = drctl(&dir).args(["audit", "list", "-f", "drctl.yaml"]).output().unwrap();
    let audit = String::from_utf8_lossy(&audit.stdout).to_string();
    assert!(audit.contains("restore.dry_run") && audit.contains(&format!("execution {id}")), "{audit}");

    // Backups follow the restored copy (its folder, its new timeline).
    let o = drctl(&dir).args(["backup", "orders-db", "--kind", "full", "-f", "drctl.yaml"]).output().unwrap();
    assert!(o.status.success(), "{}", show(&o));
    stop(&pair, &copy_data(&dir));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_replace_killed_after_the_fence_resumes_without_a_second_restore_or_fence() {
    let pair = PgPair::start();
    let dir = tempdir("replace-kill");
    write_topology(&pair, &dir);
    // Enough data that rebuilding the standby takes a moment to kill it in.
    orders_backed_up(
        &pair,
        &dir,
        "CREATE TABLE big AS SELECT g, md5(g::text) AS h FROM generate_series(1, 400000) g; ",
    );
    let point = bad_delete(&pair);

    let mut child = drctl(&dir)
        .args(["restore", "orders-db", "--to", &point, "--replace", "--reason", "bad delete", "--yes"])
        .args(["--into", "c1", "-f", "drctl.yaml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let id = lines.next().unwrap().unwrap();
    // Keep reading its output so it never blocks on a full pipe.
    let reader = std::thread::spawn(move || lines.map_while(Result::ok).count());
    let mut fenced = false;
    wait_for("the fence to succeed", 300, || {
        let v = show_json(&dir, &id);
        fenced = step(&v, "orders-db/fence")["state"] == "succeeded";
        fenced || v["state"] != "running"
    });
    child.kill().unwrap(); // SIGKILL, between the fence and the end
    child.wait().unwrap();
    let _ = reader.join();
    let v = show_json(&dir, &id);
    assert!(fenced && v["state"] == "running", "killed mid-way, after the fence: {v}");

    let o = drctl(&dir).args(["resume", &id, "-f", "drctl.yaml"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let v = show_json(&dir, &id);
    assert_eq!(v["state"], "succeeded", "{v}");
    let restore = step(&v, "orders-db/restore");
    assert_eq!(restore["attempts"], 1, "one pgBackRest restore, not a second: {v}");
    assert!(!restore["note"].as_str().unwrap_or("").contains("delta"), "{v}");
    assert_eq!(step(&v, "orders-db/fence")["attempts"], 1, "the fence did not run again: {v}");
    let copies: Vec<String> = std::fs::read_dir(dir.join(".drctl/backup/copies"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(copies, ["c1"], "one copy, not a second one");
    assert_replaced(&pair, &dir);
    stop(&pair, &copy_data(&dir));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A standby that does not answer and has no `fence` command refuses the
/// replace before anything changes, naming the override; named, it goes on.
#[test]
fn a_member_that_cannot_be_fenced_refuses_the_replace_unless_named() {
    let pair = PgPair::start();
    let dir = tempdir("replace-unfenced");
    write_topology(&pair, &dir);
    orders_backed_up(&pair, &dir, "");
    let point = bad_delete(&pair);
    stop(&pair, &pair.dir.join("standby"));

    let o = drctl(&dir)
        .args(["restore", "orders-db", "--to", &point, "--replace", "--reason", "bad delete", "--yes"])
        .args(["--into", "c1", "-f", "drctl.yaml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let out = show(&o);
    assert!(out.contains("--unfenced orders-db/az2") && out.contains("refused"), "{out}");
    assert!(!copy_data(&dir).exists(), "nothing was restored");
    assert_eq!(pair.psql(pair.primary_port, "SELECT count(*) FROM orders"), "1", "the primary is untouched");
    let o = drctl(&dir).args(["executions", "--output", "json", "-f", "drctl.yaml"]).output().unwrap();
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap(), serde_json::json!([]));

    let o = drctl(&dir)
        .args(["restore", "orders-db", "--to", &point, "--replace", "--reason", "bad delete", "--yes"])
        .args(["--unfenced", "orders-db/az2", "--into", "c1", "-f", "drctl.yaml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let id = String::from_utf8_lossy(&o.stdout).lines().next().unwrap().to_string();
    let v = show_json(&dir, &id);
    assert!(step(&v, "orders-db/fence")["note"].as_str().unwrap().contains("az2: NOT FENCED"), "{v}");
    assert_eq!(pair.psql(pair.primary_port, "SELECT count(*) FROM orders"), "110");
    let audit = drctl(&dir).args(["audit", "list", "-f", "drctl.yaml"]).output().unwrap();
    assert!(String::from_utf8_lossy(&audit.stdout).contains("restore.refused"), "{}", show(&audit));
    stop(&pair, &copy_data(&dir));
    let _ = std::fs::remove_dir_all(&dir);
}

/// After a failover the backups follow the new primary (its folder, its
/// timeline), and a repository now in the primary's zone is warned about.
#[test]
fn after_a_failover_backups_follow_the_new_primary() {
    let pair = PgPair::start();
    let dir = tempdir("replace-follow");
    write_topology(&pair, &dir);
    // The repository in az2: another zone than the primary, until az2's
    // standby becomes the primary.
    let topo = std::fs::read_to_string(dir.join("drctl.yaml")).unwrap().replace("zone: az3", "zone: az2");
    std::fs::write(dir.join("drctl.yaml"), topo).unwrap();
    orders_backed_up(&pair, &dir, "");

    let o = drctl(&dir)
        .args(["declare", "--zone", "az1", "--reason", "az1 lost", "--yes", "-f", "drctl.yaml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(pair.psql(pair.standby_port, "SELECT pg_is_in_recovery()"), "f", "az2 is the primary now");

    // The new primary was made before archiving was turned on: the exact
    // settings are printed, and once applied the backup is of az2.
    let o = drctl(&dir).args(["backup", "orders-db", "-f", "drctl.yaml"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(show(&o).contains("archive_mode"), "{}", show(&o));
    pair.psql(pair.standby_port, "ALTER SYSTEM SET archive_mode = on");
    let out = drctl_pgserver::command(&pair.bin(), "pg_ctl", drctl_pgserver::Lifetime::Independent)
        .arg("-D")
        .arg(pair.dir.join("standby"))
        .arg("-l")
        .arg(pair.dir.join("standby.log"))
        .args(["-w", "-m", "fast", "restart"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let o = drctl(&dir).args(["backup", "orders-db", "-f", "drctl.yaml"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.contains("from its primary in az2"), "{out}");
    assert!(out.contains("the zone its primary is in now"), "the repository's zone is checked again: {out}");
    let conf = std::fs::read_to_string(dir.join(".drctl/backup/pgbackrest/orders-db.conf")).unwrap();
    assert!(conf.contains(&format!("pg1-port={}", pair.standby_port)), "{conf}");

    let o = drctl(&dir).args(["backups", "-f", "drctl.yaml", "--output", "json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", show(&o)));
    let d = &v["datastores"][0];
    assert!(d["warning"].as_str().unwrap_or("").contains("az2"), "{d}");
    assert!(d["error"].is_null(), "{d}");
    let _ = std::fs::remove_dir_all(&dir);
}
