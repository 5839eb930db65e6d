//! The controller's background work: cron-scheduled drills on the lab
//! (shown on the status page as the last verified drill), an execution
//! left unfinished by a killed `drctl declare` resumed at start and
//! approved through the API, and a static export of the page.

use drctl_testkit::{free_port, PgPair};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

mod common;
use common::{drctl_clean, show, tempdir, wait_for, wait_listening};

fn drctl(dir: &Path) -> Command {
    let mut c = drctl_clean();
    c.current_dir(dir);
    c
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct LabGuard(PathBuf);
impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = drctl(&self.0).args(["lab", "down", "--dir"]).arg(&self.0).output();
    }
}

fn serve(dir: &Path, file: &str, env_state: Option<&str>) -> (Killed, String) {
    let port = free_port();
    let mut c = drctl(dir);
    if let Some(s) = env_state {
        c.env("DRCTL_STATE", s);
    }
    let child = c
        .args(["serve", "-f", file, "--sample-every", "500ms", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(port, "drctl serve");
    (Killed(child), format!("http://127.0.0.1:{port}"))
}

fn get(url: &str) -> String {
    reqwest::blocking::Client::builder().no_proxy().build().unwrap().get(url).send().unwrap().text().unwrap()
}

#[test]
fn cron_drills_run_on_the_lab_and_show_on_the_page() {
    let dir = tempdir("ctl-cron");
    let lab = dir.join("lab");
    let up = drctl(&dir).args(["lab", "up", "--detach", "--base-port", "21500", "--dir"]).arg(&lab).output().unwrap();
    let guard = LabGuard(lab.clone());
    assert!(up.status.success(), "{}", show(&up));
    // The lab's topology with a drill every 5 seconds (cron with seconds).
    let mut topo = std::fs::read_to_string(lab.join("drctl.yaml")).unwrap();
    topo.push_str("\ndrills:\n  - { experiment: pause.yaml, cron: \"*/5 * * * * *\" }\n");
    std::fs::write(lab.join("scheduled.yaml"), topo).unwrap();
    std::fs::write(
        lab.join("pause.yaml"),
        "name: scheduled-pause\nfaults:\n  - { kind: replication-pause, datastore: orders-db }\nduration: 2s\ndeclare: manual\n",
    )
    .unwrap();
    let (srv, base) = serve(&lab, "scheduled.yaml", None);
    wait_for("a scheduled drill on the page", 60, || {
        let page = get(&format!("{base}/"));
        page.split("id=\"svc-payments\"").nth(1).is_some_and(|s| {
            s.contains("RTO") && !s[..600.min(s.len())].contains("no drill yet") && s.contains("passed")
        })
    });
    let page = get(&format!("{base}/"));
    assert!(page.contains("Disaster-recovery drill: scheduled-pause"), "the drill was announced on the page");
    assert!(page.contains("The drill is over"), "and resolved with what it measured");
    let out = drctl(&lab).args(["audit", "list", "--output", "json", "-f", "scheduled.yaml"]).output().unwrap();
    let entries: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        entries.as_array().unwrap().iter().any(|e| e["action"] == "drill" && e["actor"] == "scheduler"),
        "{entries:#}"
    );
    let reports: Vec<_> = std::fs::read_dir(lab.join(".drctl/reports")).unwrap().collect();
    assert!(!reports.is_empty(), "the drill's report was written");
    drop(srv);
    drop(guard); // lab down needs lab.json: before the folder goes
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_resumes_an_unfinished_execution_and_the_api_approves_it() {
    let pg = PgPair::start();
    let dir = tempdir("ctl-resume");
    std::fs::create_dir_all(dir.join("runbooks")).unwrap();
    std::fs::write(
        dir.join("runbooks/checkout.yaml"),
        "name: checkout-failover\nsteps:\n  - id: approve\n    action: approval\n    with: { role: commander, prompt: \"Move checkout?\" }\n  - id: settle\n    action: wait\n    with: { for: 0s }\n    needs: [approve]\n",
    )
    .unwrap();
    std::fs::write(dir.join("drctl.yaml"), pg.shop_topology("", ", failover: { runbook: runbooks/checkout.yaml }"))
        .unwrap();
    let state = format!("sqlite://{}/state.db", dir.display());
    let mut declare = drctl(&dir)
        .env("DRCTL_STATE", &state)
        .args(["declare", "--target", "orders-db", "--target", "checkout", "--reason", "resume test", "--yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    {
        use std::io::BufRead;
        let mut r = std::io::BufReader::new(declare.stdout.as_mut().unwrap());
        r.read_line(&mut first).unwrap();
    }
    let id = first.trim().to_string();
    wait_for("the approval step", 30, || {
        let out = drctl(&dir).env("DRCTL_STATE", &state).args(["show", &id, "--output", "json"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).contains("waiting_approval")
    });
    declare.kill().unwrap();
    let _ = declare.wait();

    let token = drctl(&dir)
        .env("DRCTL_STATE", &state)
        .args(["token", "create", "--name", "ic", "--role", "commander"])
        .output()
        .unwrap();
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    let (_srv, base) = serve(&dir, "drctl.yaml", Some(&state));
    let c = reqwest::blocking::Client::builder().no_proxy().build().unwrap();
    let r = c
        .post(format!("{base}/api/v1/executions/{id}/approve"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"step": "checkout/approve"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
    wait_for("the resumed execution to succeed", 30, || {
        let v: serde_json::Value =
            c.get(format!("{base}/api/v1/executions/{id}")).bearer_auth(&token).send().unwrap().json().unwrap();
        v["state"] == "succeeded"
    });
    let v: serde_json::Value =
        c.get(format!("{base}/api/v1/executions/{id}")).bearer_auth(&token).send().unwrap().json().unwrap();
    let promote = v["steps"].as_array().unwrap().iter().find(|s| s["id"] == "orders-db/failover").unwrap();
    assert_eq!(promote["attempts"], 1, "the promote ran once, before the kill: {v:#}");

    // A static copy of the page, for hosting elsewhere.
    let export = drctl(&dir).env("DRCTL_STATE", &state).args(["status-page", "export", "site"]).output().unwrap();
    assert!(export.status.success(), "{}", show(&export));
    let index = std::fs::read_to_string(dir.join("site/index.html")).unwrap();
    assert!(index.contains("shop") && index.contains("orders-db"));
    assert!(std::fs::read_to_string(dir.join("site/ja/index.html")).unwrap().contains("lang=\"ja\""));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("site/api/v1/status")).unwrap()).unwrap();
    assert_eq!(json["datastores"][0]["name"], "orders-db");
    let _ = std::fs::remove_dir_all(&dir);
}
