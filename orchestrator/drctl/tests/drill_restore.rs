//! Logical disasters drilled end to end on a lab of their own, through the
//! binary: the damage is done, the drill restores the datastore in place to
//! the moment before it, and the report counts what came back and what the
//! restore gave up, from the lab workload's acknowledgements.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{drctl_clean, show, tempdir};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn nothing_listens(base: u16) {
    for addr in [format!("127.0.0.1:{base}"), format!("127.0.1.1:{}", base + 32), format!("127.0.3.2:{}", base + 90)] {
        assert!(std::net::TcpListener::bind(&addr).is_ok(), "{addr} is still taken");
    }
    let ps = Command::new("pgrep").args(["-f", &format!("drctl-lab-{base}")]).output().unwrap();
    assert!(ps.stdout.is_empty(), "processes left: {}", String::from_utf8_lossy(&ps.stdout));
}

#[test]
fn the_ransomware_drill_restores_the_bucket_from_its_versions_and_counts_what_came_back() {
    let base = 22700;
    let dir = tempdir("drill-ransomware");
    let report = dir.join("report");
    let out = drctl_clean()
        .current_dir(&dir)
        .arg("drill")
        .arg(repo().join("chaos/lab-ransomware.yaml"))
        .args(["--lab", "--base-port", &base.to_string(), "--report"])
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("objectives met") && stdout.contains("restore   assets"), "{stdout}");

    let r = json(&report.join("report.json"));
    assert_eq!(r["execution_state"], "succeeded", "{r:#}");
    let x = &r["restore"];
    assert_eq!(x["datastore"], "assets", "{x:#}");
    assert_eq!(x["verified"], true, "{x:#}");
    assert_eq!(x["meets_rto"], true, "{x:#}");
    let (before, back) = (x["acknowledged_before_point"].as_u64().unwrap(), x["came_back"].as_u64().unwrap());
    assert!(before >= 20, "the workload wrote before the fault: {x:#}");
    assert_eq!(back, before, "every object acknowledged before the fault is back, intact: {x:#}");
    assert!(x["lost_writes"].as_u64().is_some(), "the writes after the fault are counted: {x:#}");
    assert!(x["restore_s"].as_f64().unwrap() < 30.0, "{x:#}");
    let err = x["recovery_point_error_s"].as_f64().unwrap();
    assert!((0.0..1.0).contains(&err), "the newest object back is under a second before the point: {x:#}");
    for key in ["requested_point", "recovered_point", "restore_target_s", "checks", "resurrected_erasures"] {
        assert!(x.get(key).is_some(), "the restore object has `{key}`: {x:#}");
    }
    let assets = r["datastores"].as_array().unwrap().iter().find(|d| d["name"] == "assets").unwrap();
    assert_eq!(assets["lost_writes"], x["lost_writes"], "{assets:#}");
    let steps: Vec<&str> = r["steps"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(steps, ["assets/restore"], "the restore's own journal: {steps:?}");
    assert!(r["faults"][0]["hits"][0].as_str().unwrap().contains("overwrote"), "{r:#}");
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("## Restores"), "{md}");
    nothing_listens(base);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_bad_delete_drill_restores_orders_db_in_the_primarys_place() {
    let base = 22800;
    let dir = tempdir("drill-bad-delete");
    let report = dir.join("report");
    let out = drctl_clean()
        .current_dir(&dir)
        .arg("drill")
        .arg(repo().join("chaos/lab-bad-delete.yaml"))
        .args(["--lab", "--base-port", &base.to_string(), "--report"])
        .arg(&report)
        .output()
        .unwrap();
    let r = report.join("report.json");
    if out.status.code() == Some(2)
        && String::from_utf8_lossy(&out.stderr).contains("--replace for PostgreSQL is not available")
    {
        // Until PostgreSQL --replace lands: refused before any damage, in words.
        assert!(!r.exists(), "nothing ran: {}", show(&out));
        nothing_listens(base);
        let _ = std::fs::remove_dir_all(dir);
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let r = json(&r);
    let x = &r["restore"];
    assert_eq!(x["datastore"], "orders-db", "{x:#}");
    // Recovered when the restore ended: after the declaration, by the restore's time.
    let (declared, recovered) = (r["declared_at_s"].as_f64().unwrap(), r["recovered_at_s"].as_f64().unwrap());
    assert!(recovered > declared && recovered - declared >= x["restore_s"].as_f64().unwrap(), "{r:#}");
    assert_eq!(x["verified"], true, "{x:#}");
    let (before, back) = (x["acknowledged_before_point"].as_u64().unwrap(), x["came_back"].as_u64().unwrap());
    assert!(before >= 40, "{x:#}");
    assert_eq!(back, before, "every row acknowledged before the delete is back: {x:#}");
    assert!(x["recovery_point_error_s"].as_f64().unwrap() < 1.0, "{x:#}");
    let db = r["datastores"].as_array().unwrap().iter().find(|d| d["name"] == "orders-db").unwrap();
    assert_eq!((db["writable_primaries_max"].as_u64(), db["split_brain_writes"].as_u64()), (Some(1), Some(0)), "{db}");
    nothing_listens(base);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn without_pgbackrest_the_lab_still_fails_over_and_a_restore_drill_says_how_to_install_it() {
    let base = 22900;
    let dir = tempdir("drill-nopgbackrest");
    let out = drctl_clean()
        .current_dir(&dir)
        .env("PGBACKREST", "/nonexistent/pgbackrest")
        .arg("drill")
        .arg(repo().join("chaos/lab-bad-delete.yaml"))
        .args(["--lab", "--base-port", &base.to_string(), "--report", "r"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("pgBackRest is not installed") && stderr.contains("apt-get install pgbackrest"),
        "{stderr}"
    );
    assert!(!dir.join("r/report.json").exists(), "refused before any fault");
    nothing_listens(base);

    // The hint, typed as printed, names a real package of this machine's distribution.
    let hint = Command::new("apt-cache").args(["show", "pgbackrest"]).output();
    if let Ok(h) = hint {
        assert!(h.status.success(), "`apt-get install pgbackrest` installs a real package");
    }

    // The main command keeps working without pgBackRest (archiving off).
    let out = drctl_clean()
        .current_dir(&dir)
        .env("PGBACKREST", "/nonexistent/pgbackrest")
        .arg("drill")
        .arg(repo().join("chaos/lab-zone-outage.yaml"))
        .args(["--lab", "--base-port", &base.to_string(), "--report", "z"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let topo = std::fs::read_to_string(dir.join(".drctl/lab/drctl.yaml")).unwrap();
    assert!(!topo.contains("tool: pgbackrest"), "no backup where nothing can take it: {topo}");
    nothing_listens(base);
    let _ = std::fs::remove_dir_all(dir);
}
