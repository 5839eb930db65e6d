//! Drills end to end, through the binary: the README's main command on a
//! lab of its own, and drills against a lab started by `drctl lab up`,
//! stopped by `stop_when` and by Ctrl-C, healing every time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{drctl_clean, show, tempdir};

fn drctl() -> Command {
    drctl_clean()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn nothing_listens(base: u16) {
    for addr in [
        format!("127.0.0.1:{base}"),
        format!("127.0.1.1:{}", base + 32),
        format!("127.0.2.1:{}", base + 33),
        format!("127.0.3.2:{}", base + 90),
        format!("127.0.0.1:{}", base + 61),
    ] {
        assert!(std::net::TcpListener::bind(&addr).is_ok(), "{addr} is still taken");
    }
    let ps = Command::new("pgrep").args(["-f", &format!("drctl-lab-{base}")]).output().unwrap();
    assert!(ps.stdout.is_empty(), "processes left: {}", String::from_utf8_lossy(&ps.stdout));
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn a_zone_outage_drill_on_the_lab_reports_rto_and_lost_writes_and_leaves_nothing() {
    let base = 21100;
    let dir = tempdir("drill-zone");
    let report = dir.join("report");
    let started = Instant::now();
    let out = drctl()
        .current_dir(&dir)
        .arg("drill")
        .arg(repo().join("chaos/lab-zone-outage.yaml"))
        .args(["--lab", "--base-port", &base.to_string(), "--report"])
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(started.elapsed() < Duration::from_secs(60), "a lab drill takes well under a minute");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("objectives met") && stdout.contains("report.html"), "{stdout}");

    let r = json(&report.join("report.json"));
    assert_eq!(r["execution_state"], "succeeded", "{r:#}");
    assert_eq!(r["scope"]["zones"], serde_json::json!(["lab-az1"]));
    for s in r["services"].as_array().unwrap() {
        let (rto, target) = (s["rto_s"].as_f64().unwrap(), s["rto_target_s"].as_f64().unwrap());
        assert!(rto <= target && s["meets_rto"] == true, "{s}");
        assert!(s["rto_from_fault_s"].as_f64().unwrap() < 10.0, "under 10 s from the fault, detection included: {s}");
    }
    for d in r["datastores"].as_array().unwrap() {
        assert_eq!(d["failed_over_to"], "lab-az2", "{d}");
        let lost = d["lost_writes"].as_u64().unwrap_or_else(|| panic!("counted from the workload: {d}"));
        let acked = d["acknowledged_elsewhere"].as_u64().unwrap();
        assert!(acked > 10, "the workload ran before the fault: {d}");
        assert!(lost <= acked, "no more lost than were acknowledged: {d}");
        match d["name"].as_str().unwrap() {
            // Streaming replication on loopback ships each commit within a
            // millisecond: at most the commit in flight at the kill is lost.
            "orders-db" => assert!(lost <= 1, "PostgreSQL lost {lost} acknowledged rows: {d}"),
            // The copier runs every second and the workload writes an object
            // every 100 ms: what is lost is what the last pass had not copied,
            // about the lag measured before the fault, never more than ~2 s of it.
            "assets" => assert!(lost <= 20, "S3 lost {lost} objects, more than 2 s of the workload: {d}"),
            other => panic!("unexpected datastore {other}"),
        }
        assert!(d["rpo_s"].as_f64().unwrap() <= d["rpo_target_s"].as_f64().unwrap(), "{d}");
    }
    let db = r["datastores"].as_array().unwrap().iter().find(|d| d["name"] == "orders-db").unwrap();
    assert_eq!((db["writable_primaries_max"].as_u64(), db["split_brain_writes"].as_u64()), (Some(1), Some(0)), "{db}");
    assert_eq!(r["safe"], true, "{r:#}");
    let steps: Vec<&str> = r["steps"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert!(steps.contains(&"orders-db/failover") && steps.contains(&"payments/route"), "{steps:?}");
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(
        html.contains("<svg") && html.contains("payments") && !html.contains("<script"),
        "self-contained, no script"
    );
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("| orders-db | lab-az2 |"), "{md}");
    nothing_listens(base);

    // The lab's contract customer sees this drill as evidence, with the
    // numbers the report measured (the lab is down: its page says unknown,
    // and its state store is named, as the lab no longer runs to say it).
    let topo = dir.join(".drctl/lab/drctl.yaml");
    let lab_state = format!("sqlite://{}", dir.join(".drctl/lab/state.db").display());
    let out = drctl()
        .current_dir(&dir)
        .env("DRCTL_STATE", &lab_state)
        .args(["token", "create", "--name", "bank-auditor", "--role", "customer", "--customer", "example-bank", "-f"])
        .arg(&topo)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let port = drctl_testkit::free_port();
    let mut serve = drctl()
        .current_dir(&dir)
        .env("DRCTL_STATE", &lab_state)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "-f"])
        .arg(&topo)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let c = reqwest::blocking::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://127.0.0.1:{port}/customers/example-bank/assurance.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    let evidence: serde_json::Value = loop {
        if let Ok(r) = c.get(&url).bearer_auth(&token).send() {
            break r.json().unwrap();
        }
        assert!(Instant::now() < deadline, "the controller did not answer");
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = serve.kill();
    let _ = serve.wait();
    let payments = &evidence["services"][0];
    assert_eq!(payments["name"], "payments", "{evidence:#}");
    let drill = &payments["drills"][0];
    let measured = r["services"].as_array().unwrap().iter().find(|s| s["name"] == "payments").unwrap();
    assert_eq!(drill["id"], r["id"], "{evidence:#}");
    assert_eq!(drill["rto_s"], measured["rto_s"]);
    // payments stands on orders-db alone: its writes lost are that database's.
    let db_lost = db["lost_writes"].as_u64();
    assert_eq!(drill["lost_writes"].as_u64(), db_lost, "{evidence:#}");
    assert_eq!(
        (drill["passed"].as_bool(), drill["meets_contract_rto"].as_bool()),
        (Some(true), Some(true)),
        "{evidence:#}"
    );
    assert_eq!(evidence["summary"]["drills_passed"], 1);
    let _ = std::fs::remove_dir_all(dir);
}

/// A zone cut off but still running, both ways and one way: its primary
/// keeps taking its own zone's writes until drctl powers it off out of band
/// (the lab members' fence command); never two writable primaries, no write
/// acknowledged after the promote; the one-way cut loses nothing, since
/// replication still flowed.
#[test]
fn zone_partition_drills_fence_out_of_band_and_never_see_two_primaries() {
    for (experiment, base) in [("chaos/lab-zone-partition.yaml", 21400), ("chaos/lab-controller-cut.yaml", 21500)] {
        let dir = tempdir("drill-partition");
        let report = dir.join("report");
        let out = drctl()
            .current_dir(&dir)
            .arg("drill")
            .arg(repo().join(experiment))
            .args(["--lab", "--base-port", &base.to_string(), "--report"])
            .arg(&report)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{experiment}: {}", show(&out));
        let r = json(&report.join("report.json"));
        assert_eq!((r["safe"].as_bool(), r["execution_state"].as_str()), (Some(true), Some("succeeded")), "{r:#}");
        let db = r["datastores"].as_array().unwrap().iter().find(|d| d["name"] == "orders-db").unwrap();
        assert_eq!(db["writable_primaries_max"], 1, "{experiment}: {db}");
        assert_eq!(db["split_brain_writes"], 0, "{experiment}: {db}");
        let step = r["steps"].as_array().unwrap().iter().find(|s| s["id"] == "orders-db/failover").unwrap();
        assert!(step["note"].as_str().unwrap_or_default().contains("lab-az1: fenced out of band"), "{step}");
        let lost = db["lost_writes"].as_u64().unwrap();
        if experiment.contains("controller-cut") {
            assert!(lost <= 1, "the standby still received everything until the power-off: {db}");
        }
        let md = std::fs::read_to_string(report.join("report.md")).unwrap();
        assert!(md.contains("Safe: never two writable primaries"), "{md}");
        nothing_listens(base);
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn losing_the_zone_of_the_leading_controller_the_failover_is_led_from_another() {
    let base = 21600;
    let dir = tempdir("drill-controllers");
    let report = dir.join("report");
    let out = drctl()
        .current_dir(&dir)
        .arg("drill")
        .arg(repo().join("chaos/lab-controller-zone-outage.yaml"))
        .args(["--lab", "--base-port", &base.to_string(), "--report"])
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let r = json(&report.join("report.json"));
    assert_eq!((r["safe"].as_bool(), r["execution_state"].as_str()), (Some(true), Some("succeeded")), "{r:#}");
    assert_eq!(r["declare"], "controllers");
    let hits = r["faults"][0]["hits"].to_string();
    assert!(hits.contains("controller lab-az1-ctl in lab-az1: killed"), "{hits}");
    assert!(hits.contains("etcd member m1 in lab-az1: killed"), "{hits}");
    let declared = r["timeline"].as_array().unwrap().iter().find(|e| e["kind"] == "declared").unwrap();
    assert!(declared["what"].as_str().unwrap().contains("through the controllers"), "{declared}");
    // Every step was run by a controller outside the lost zone.
    for s in r["steps"].as_array().unwrap() {
        let by = s["ran_by"].as_str().unwrap_or_default();
        assert!(
            by.starts_with("controller:lab-az2-ctl:") || by.starts_with("controller:lab-az3-ctl:"),
            "{} ran by {by:?}",
            s["id"]
        );
    }
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("| ran by |") && (md.contains("lab-az2-ctl") || md.contains("lab-az3-ctl")), "{md}");
    nothing_listens(base);
    for z in 1..=3 {
        for addr in [format!("127.0.{z}.21:{}", base + 72), format!("127.0.{z}.20:{}", base + 70)] {
            assert!(std::net::TcpListener::bind(&addr).is_ok(), "{addr} is still taken");
        }
    }
    let left = Command::new("pgrep").args(["-f", &format!("127.0.1.21:{}", base + 72)]).output().unwrap();
    assert!(left.stdout.is_empty(), "etcd or controllers left: {}", String::from_utf8_lossy(&left.stdout));
    let _ = std::fs::remove_dir_all(dir);
}

/// Stops a detached lab even when the test fails halfway.
struct LabGuard(PathBuf);

impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = drctl().args(["lab", "down", "--dir"]).arg(&self.0).output();
    }
}

fn lab_faults(dir: &Path) -> usize {
    let out = drctl().args(["lab", "status", "--output", "json", "--dir"]).arg(dir).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["faults"].as_array().unwrap().len()
}

/// Starts a drill in the background and returns once its first fault is in force.
fn drill_until_injected(experiment: &Path, topo: &Path, report: &Path, lab: &Path) -> std::process::Child {
    let child = drctl()
        .arg("drill")
        .arg(experiment)
        .arg("-f")
        .arg(topo)
        .arg("--report")
        .arg(report)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    while lab_faults(lab) == 0 {
        assert!(Instant::now() < deadline, "the fault was never injected");
        std::thread::sleep(Duration::from_millis(200));
    }
    child
}

#[test]
fn drills_on_a_running_lab_heal_when_stopped_early_and_when_interrupted() {
    let base = 21300;
    let dir = tempdir("drill-external");
    let lab = dir.join("lab");
    let up =
        drctl().args(["lab", "up", "--detach", "--base-port", &base.to_string(), "--dir"]).arg(&lab).output().unwrap();
    let _guard = LabGuard(lab.clone());
    assert!(up.status.success(), "{}", show(&up));
    assert!(String::from_utf8_lossy(&up.stdout).contains("dig @127.0.0.1"), "{}", show(&up));
    let topo = lab.join("drctl.yaml");

    // stop_when: payments' connections reset in every zone (and not failed
    // over: the declaration is manual), so it stays down past 1 s. (A paused
    // replay no longer raises the RPO: the standby has received the data.)
    let pause = dir.join("pause.yaml");
    std::fs::write(
        &pause,
        "name: pause\nfaults:\n  - { kind: reset, target: payments }\nduration: 40s\nstop_when:\n  - { rto_above: 1s, service: payments }\ndeclare: manual\n",
    )
    .unwrap();
    let out =
        drctl().arg("drill").arg(&pause).arg("-f").arg(&topo).arg("--report").arg(dir.join("r1")).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "stopped early is an objective missed: {}", show(&out));
    let r = json(&dir.join("r1/report.json"));
    assert!(r["stopped_early"].as_str().unwrap().contains("payments has been down"), "{r:#}");
    assert!(r["faults"][0]["healed_at_s"].is_f64(), "{r:#}");
    assert_eq!(lab_faults(&lab), 0, "healed");

    // Ctrl-C in the middle of a drill: faults healed, a report still written.
    let slow = dir.join("slow.yaml");
    std::fs::write(
        &slow,
        "name: slow\nfaults:\n  - { kind: latency, target: orders-db, delay: 50ms }\nduration: 60s\ndeclare: manual\n",
    )
    .unwrap();
    let mut child = drill_until_injected(&slow, &topo, &dir.join("r2"), &lab);
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3));
    assert_eq!(lab_faults(&lab), 0, "healed on Ctrl-C");
    let r = json(&dir.join("r2/report.json"));
    assert!(r["stopped_early"].as_str().unwrap().contains("interrupted"), "{r:#}");

    // declare: manual: the drill waits for an operator's `drctl declare`.
    let manual = dir.join("manual.yaml");
    std::fs::write(
        &manual,
        "name: manual\nfaults:\n  - { kind: zone-outage, zones: [lab-az1] }\nduration: 50s\ndeclare: manual\n",
    )
    .unwrap();
    let child = drill_until_injected(&manual, &topo, &dir.join("r3"), &lab);
    let declared = drctl()
        .arg("declare")
        .arg("-f")
        .arg(&topo)
        .args(["--zone", "lab-az1", "--reason", "drill: lab-az1 lost", "--yes"])
        .output()
        .unwrap();
    assert_eq!(declared.status.code(), Some(0), "{}", show(&declared));
    let id = String::from_utf8_lossy(&declared.stdout).lines().next().unwrap().trim().to_string();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let r = json(&dir.join("r3/report.json"));
    assert_eq!(r["declare"], "manual");
    assert_eq!(r["execution"], id.as_str(), "{r:#}");
    assert!(r["services"].as_array().unwrap().iter().all(|s| s["meets_rto"] == true), "{r:#}");
    assert_eq!(lab_faults(&lab), 0, "healed");

    // Healing rebuilt the old primary as a standby: the lab is protected
    // again, and failing back is one more drill.
    let back = dir.join("back.yaml");
    std::fs::write(
        &back,
        "name: failback\nfaults:\n  - { kind: zone-outage, zones: [lab-az2] }\nduration: 40s\ndeclare: auto\n",
    )
    .unwrap();
    let out =
        drctl().arg("drill").arg(&back).arg("-f").arg(&topo).arg("--report").arg(dir.join("r4")).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let r = json(&dir.join("r4/report.json"));
    let db = r["datastores"].as_array().unwrap().iter().find(|d| d["name"] == "orders-db").unwrap();
    assert_eq!(db["failed_over_to"], "lab-az1", "{r:#}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("rebuilt as a standby of lab-az1"), "{}", show(&out));

    // A fault only the lab can inject, on a topology that is not a lab's: refused, exit 2.
    let plain = repo().join("examples/saas/drctl.yaml");
    let out = drctl()
        .current_dir(&dir)
        .arg("drill")
        .arg(repo().join("chaos/lab-zone-outage.yaml"))
        .arg("-f")
        .arg(&plain)
        .arg("--dry-run")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--lab"), "{}", show(&out));

    let down = drctl().args(["lab", "down", "--dir"]).arg(&lab).output().unwrap();
    assert!(down.status.success(), "{}", show(&down));
    nothing_listens(base);
    let again = drctl().args(["lab", "down", "--dir"]).arg(&lab).output().unwrap();
    assert!(again.status.success(), "lab down is harmless when nothing runs");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn without_postgresql_the_lab_says_how_to_install_it() {
    let dir = tempdir("drill-nopg");
    let out = drctl()
        .current_dir(&dir)
        .env("PG_BIN", "/nonexistent")
        .args(["lab", "up", "--base-port", "21700"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PG_BIN=/nonexistent"), "{}", show(&out));
    nothing_listens(21700);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn outside_the_lab_a_replication_pause_is_injected_by_sql_and_healed() {
    let pg = drctl_testkit::PgPair::start();
    let dir = tempdir("drill-nolab");
    std::fs::write(dir.join("drctl.yaml"), pg.shop_topology("", "")).unwrap();
    std::fs::write(
        dir.join("pause.yaml"),
        "name: pause\nfaults:\n  - { kind: replication-pause, datastore: orders-db }\nduration: 2s\ndeclare: manual\n",
    )
    .unwrap();
    let out =
        drctl().current_dir(&dir).args(["drill", "pause.yaml", "--report", "r", "--output", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("orders-db standby in az2: replication from the primary stopped") && stderr.contains("healed"),
        "{stderr}"
    );
    // The heal puts the standby's link back as it was: it streams again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while pg.psql(pg.standby_port, "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'") != "1" {
        assert!(std::time::Instant::now() < deadline, "the standby streams again after the heal");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_ne!(pg.psql(pg.standby_port, "SHOW primary_conninfo"), "", "its link put back as it was");
    let r = json(&dir.join("r/report.json"));
    let db = &r["datastores"][0];
    assert!(db["lost_writes"].is_null(), "nothing counts writes outside the lab: {db}");
    assert!(r["execution"].is_null(), "nothing was declared");
    let _ = std::fs::remove_dir_all(dir);
}
