//! Readiness with real components (docs/readiness.md): a real PostgreSQL
//! primary and standby whose replication link is cut while the primary
//! keeps writing, a fence check that starts failing, a runbook health URL
//! that stops answering, and an operator webhook receiver that verifies
//! every delivery with the Standard Webhooks reference library.

use drctl_testkit::{free_port, notify_python, PgPair, TcpProxy};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

mod common;
use common::*;

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Logs one JSON line per request: whether `standardwebhooks` verified it, and its payload.
const RECEIVER: &str = r#"
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
port, secret, log_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        headers = {k.lower(): v for k, v in self.headers.items()}
        entry = {"id": headers.get("webhook-id"), "verified": False}
        try:
            entry["payload"] = Webhook(secret).verify(body, headers)
            entry["verified"] = True
        except (WebhookVerificationError, ValueError) as e:
            entry["error"] = str(e)
        with open(log_file, "a") as f:
            f.write(json.dumps(entry) + "\n")
        self.send_response(200 if entry["verified"] else 400)
        self.end_headers()
    def log_message(self, *a):
        pass
HTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

/// The operators' webhook secret in these tests.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A webhook receiver verifying with the Standard Webhooks library, once it
/// listens: the process, its port, and the log it writes.
fn receiver(python: &Path, dir: &Path) -> (Proc, u16, PathBuf) {
    let port = free_port();
    let log = dir.join("received.jsonl");
    std::fs::write(dir.join("receiver.py"), RECEIVER).unwrap();
    let child = Command::new(python)
        .arg(dir.join("receiver.py"))
        .args([&port.to_string(), SECRET])
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(port, "the webhook receiver");
    (Proc(child), port, log)
}

fn received(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The fence check: succeeds, or fails as a PDU that cannot be reached would.
fn fence_check(path: &Path, works: bool) {
    let body = if works {
        "#!/bin/sh\necho the PDU answers\nexit 0\n"
    } else {
        "#!/bin/sh\necho no route to the PDU >&2\nexit 1\n"
    };
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, body).unwrap();
    Command::new("chmod").arg("+x").arg(&tmp).status().unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn topology(dir: &Path, pg: &PgPair, check: &Path, health: &str) {
    std::fs::create_dir_all(dir.join("runbooks")).unwrap();
    std::fs::write(
        dir.join("runbooks/orders-db.yaml"),
        format!(
            "name: orders-db-failover\nsteps:\n  - id: promote\n    action: postgres.promote\n    with: {{ datastore: orders-db, to_zone: \"{{{{ to_zone }}}}\" }}\n  - id: verify\n    action: http.health\n    with: {{ url: \"{health}/health\", within: 30s }}\n    needs: [promote]\n"
        ),
    )
    .unwrap();
    let yaml = format!(
        "version: 1\nname: shop\nzones:\n  - {{ name: az1, region: r1 }}\n  - {{ name: az2, region: r1 }}\n\
         objectives:\n  tier-0: {{ rpo: 5s, rto: 2m }}\n\
         datastores:\n  - name: orders-db\n    kind: postgres\n\
         \x20   primary: {{ zone: az1, url: \"{}\", fence: {{ command: [\"true\"], check: [\"{}\"] }} }}\n\
         \x20   replicas: [ {{ zone: az2, url: \"{}\" }} ]\n\
         \x20   failover: {{ runbook: runbooks/orders-db.yaml, max_lag: 2s }}\n\
         services:\n  - {{ name: checkout, tier: tier-0, zones: [az1, az2], depends_on: [orders-db] }}\n",
        pg.primary_url(),
        check.display(),
        pg.standby_url()
    );
    std::fs::write(dir.join("drctl.yaml"), yaml).unwrap();
}

fn readiness(base: &str, token: &str) -> Option<Value> {
    let r = client().get(format!("{base}/api/v1/readiness")).bearer_auth(token).send().ok()?;
    (r.status() == 200).then(|| r.json().unwrap())
}

fn scope<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["scopes"].as_array().unwrap().iter().find(|s| s["scope"]["name"] == name).unwrap()
}

fn has(r: &Value, zone: &str, entity: &str, check: &str) -> bool {
    scope(r, zone)["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["entity"] == entity && f["check"] == check && f["severity"] == "error")
}

#[test]
fn a_standby_cut_off_a_failing_fence_check_and_a_dead_runbook_url_each_make_the_zone_not_ready_and_operators_hear_once()
{
    let python = notify_python();
    let pg = PgPair::start_with_cuttable_link();
    let dir = tempdir("readiness");
    pg.psql(pg.primary_port, "CREATE TABLE orders (at timestamptz)");

    // The primary keeps writing throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, bin, port) = (stop.clone(), pg.bin(), pg.primary_port);
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let _ = drctl_testkit::try_psql(&bin, port, "INSERT INTO orders VALUES (now())");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        })
    };

    // The runbook's health URL: a web server behind a link that can be cut.
    let web_port = free_port();
    let _web = Proc(
        Command::new("python3")
            .args(["-m", "http.server", &web_port.to_string(), "--bind", "127.0.0.1"])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(web_port, "the runbook's web server");
    let web = TcpProxy::start(web_port);

    let check = dir.join("fence-check.sh");
    fence_check(&check, true);
    topology(&dir, &pg, &check, &web.endpoint());

    // The operators' webhook receiver.
    let secret = SECRET;
    let (_receiver, hook_port, log) = receiver(&python, &dir);

    // One evaluation by hand: ready, exit 0.
    let out = drctl(&dir).args(["readiness", "-f", "drctl.yaml", "--output", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let once: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(once["scopes"].as_array().unwrap().len(), 2, "one scope per zone (one region: no region scope)");
    assert!(once["scopes"].as_array().unwrap().iter().all(|s| s["ready"] == true), "{once:#}");

    let viewer = token(&dir, "viewer", "viewer");
    let hook = format!("http://127.0.0.1:{hook_port}/hook");
    let srv = start(
        &dir,
        &["--evaluate-every", "1s", "--operator-webhook", &hook, "--operator-webhook-secret", secret],
        "http",
    );
    let base = srv.base.clone();
    wait_for("a first evaluation, every scope ready", 60, || {
        readiness(&base, &viewer).is_some_and(|r| r["scopes"].as_array().unwrap().iter().all(|s| s["ready"] == true))
    });
    let metrics = client().get(format!("{base}/metrics")).send().unwrap().text().unwrap();
    assert!(metrics.contains("drctl_ready{scope=\"az1\",kind=\"zone\"} 1"), "{metrics}");

    // The standby cut off from its primary, which keeps writing.
    pg.cut_link();
    wait_for("az1's scope not ready for the standby's lag", 60, || {
        readiness(&base, &viewer).is_some_and(|r| has(&r, "az1", "orders-db", "lag"))
    });
    let r = readiness(&base, &viewer).unwrap();
    assert_eq!(scope(&r, "az1")["ready"], false);
    assert_eq!(scope(&r, "az2")["ready"], true, "losing the standby's zone still works: {r:#}");
    wait_for("the operators told", 30, || !received(&log).is_empty());
    let told = received(&log);
    assert_eq!(told.len(), 1, "{told:#?}");
    assert_eq!(told[0]["verified"], true, "{told:#?}");
    let payload = &told[0]["payload"];
    assert_eq!(payload["type"], "readiness.changed");
    assert_eq!(payload["scopes"].as_array().unwrap().len(), 1, "{payload:#}");
    assert_eq!(payload["scopes"][0]["scope"]["name"], "az1");
    assert_eq!(payload["scopes"][0]["ready"], false);
    // Told by the very evaluation that first found it.
    let lag = scope(&r, "az1")["findings"].as_array().unwrap().iter().find(|f| f["check"] == "lag").unwrap().clone();
    assert_eq!(payload["evaluated_at"], lag["since"], "{payload:#} {lag:#}");

    // A fence check that fails, and a runbook URL that stops answering: each named.
    fence_check(&check, false);
    web.cut();
    wait_for("the fence check and the runbook URL named", 60, || {
        readiness(&base, &viewer)
            .is_some_and(|r| has(&r, "az1", "orders-db", "fence") && has(&r, "az1", "orders-db", "runbook"))
    });
    let r = readiness(&base, &viewer).unwrap();
    let messages: Vec<&str> =
        scope(&r, "az1")["findings"].as_array().unwrap().iter().map(|f| f["message"].as_str().unwrap()).collect();
    assert!(messages.iter().any(|m| m.contains("no route to the PDU")), "{messages:#?}");
    let metrics = client().get(format!("{base}/metrics")).send().unwrap().text().unwrap();
    assert!(metrics.contains("drctl_ready{scope=\"az1\",kind=\"zone\"} 0"), "{metrics}");
    let out = drctl(&dir).args(["readiness", "-f", "drctl.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("NOT READY") && text.contains("[fence] orders-db"), "{text}");
    assert_eq!(received(&log).len(), 1, "findings that persist or add up are not told again");

    // Everything restored: ready again, told once more.
    fence_check(&check, true);
    web.restore();
    pg.restore_link();
    wait_for("az1 ready again", 120, || readiness(&base, &viewer).is_some_and(|r| scope(&r, "az1")["ready"] == true));
    wait_for("the operators told it is ready again", 30, || received(&log).len() >= 2);
    // Three more evaluations: nothing more to tell.
    let mut seen = readiness(&base, &viewer).unwrap()["evaluated_at"].clone();
    let mut later = 0;
    wait_for("three more evaluations", 30, || {
        let now = readiness(&base, &viewer).unwrap()["evaluated_at"].clone();
        if now != seen {
            later += 1;
            seen = now;
        }
        later >= 3
    });
    let told = received(&log);
    assert_eq!(told.len(), 2, "{told:#?}");
    assert_eq!(told[1]["verified"], true);
    assert_eq!(told[1]["payload"]["scopes"][0]["scope"]["name"], "az1");
    assert_eq!(told[1]["payload"]["scopes"][0]["ready"], true);
    assert_eq!(told[1]["payload"]["scopes"][0]["was_ready"], false);

    let out = drctl(&dir).args(["status", "-f", "drctl.yaml"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("readiness: every scope ready"), "{}", show(&out));

    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    drop(srv);
}

/// What waits for a person reaches the operators' channel, once each: an
/// execution paused on a failed step, and an approval waiting longer than
/// its `remind_after`; evaluations that follow do not repeat them.
#[test]
fn a_paused_execution_and_an_approval_past_its_reminder_are_told_to_the_operators_once() {
    let python = notify_python();
    let dir = tempdir("readiness-waiting");
    std::fs::write(
        dir.join("rb.yaml"),
        "name: job\nsteps:\n  - { id: ask, action: approval, with: { prompt: \"go on?\", remind_after: 1s } }\n  \
         - { id: bad, action: exec, with: { command: [\"false\"] } }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("drctl.yaml"),
        "version: 1\nzones: [ { name: az1 }, { name: az2 } ]\nservices:\n  \
         - { name: job, zones: [az1, az2], failover: { runbook: rb.yaml } }\n",
    )
    .unwrap();
    let secret = SECRET;
    let (_receiver, hook_port, log) = receiver(&python, &dir);
    // The operators' mailbox: a real SMTP server (aiosmtpd) delivering into a Maildir.
    let maildir = dir.join("mail");
    let smtp_port = free_port();
    let _smtp = Proc(
        Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{smtp_port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(smtp_port, "the SMTP server");
    let commander = token(&dir, "ic", "commander");
    let hook = format!("http://127.0.0.1:{hook_port}/hook");
    let smtp = format!("smtp://127.0.0.1:{smtp_port}");
    let srv = start(
        &dir,
        &[
            "--evaluate-every",
            "1s",
            "--operator-webhook",
            &hook,
            "--operator-webhook-secret",
            secret,
            "--operator-email",
            "oncall@example.com",
            "--smtp",
            &smtp,
        ],
        "http",
    );
    let r = client()
        .post(format!("{}/api/v1/declare", srv.base))
        .bearer_auth(&commander)
        .json(&serde_json::json!({ "zones": ["az1"], "reason": "drill" }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().unwrap()["id"].as_str().unwrap().to_string();
    let kinds = || -> Vec<String> {
        received(&log)
            .iter()
            .filter(|m| m["verified"] == true)
            .map(|m| m["payload"]["type"].as_str().unwrap_or_default().to_string())
            .filter(|t| t != "readiness.changed")
            .collect()
    };
    wait_for("the waiting approval told", 60, || kinds().contains(&"approval.waiting".to_string()));
    // Approved: the failed step now pauses the execution, told too.
    let r = client()
        .post(format!("{}/api/v1/executions/{id}/approve", srv.base))
        .bearer_auth(&commander)
        .json(&serde_json::json!({ "step": "job/ask" }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
    wait_for("the paused execution told", 60, || kinds().contains(&"execution.paused".to_string()));
    // Several evaluations later, nothing more.
    let evaluated = |r: &Value| r["evaluated_at"].as_str().unwrap_or_default().to_string();
    let viewer = token(&dir, "v", "viewer");
    let first = readiness(&srv.base, &viewer).map(|r| evaluated(&r)).unwrap_or_default();
    wait_for("two more evaluations", 30, || readiness(&srv.base, &viewer).is_some_and(|r| evaluated(&r) > first));
    let later = readiness(&srv.base, &viewer).map(|r| evaluated(&r)).unwrap_or_default();
    wait_for("yet another evaluation", 30, || readiness(&srv.base, &viewer).is_some_and(|r| evaluated(&r) > later));
    assert_eq!(kinds().len(), 2, "each told once: {:#?}", received(&log));
    let told = received(&log);
    let paused = told.iter().find(|m| m["payload"]["type"] == "execution.paused").unwrap();
    assert_eq!(paused["payload"]["execution"], id.as_str());
    assert!(
        paused["payload"]["summary"].as_str().unwrap().contains(&format!("`drctl retry {id} job/bad`")),
        "{paused}"
    );
    let waiting = told.iter().find(|m| m["payload"]["type"] == "approval.waiting").unwrap();
    assert_eq!(waiting["payload"]["steps"], serde_json::json!(["job/ask"]), "{waiting}");
    // The same two, once each, by e-mail to the operators.
    let subjects = || -> Vec<String> {
        let out = Command::new(&python)
            .args([
                "-c",
                "import mailbox, sys, json; print(json.dumps([str(m['Subject']) + ' / ' + str(m['To']) for m in mailbox.Maildir(sys.argv[1], create=False)]))",
            ])
            .arg(&maildir)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    wait_for("the two e-mails", 30, || subjects().len() >= 2);
    let subjects = subjects();
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(
        subjects.contains(&format!("drctl: execution {id} is PAUSED: job/bad failed / oncall@example.com")),
        "{subjects:?}"
    );
    assert!(
        subjects.contains(&format!("drctl: execution {id} waits for approval of job/ask / oncall@example.com")),
        "{subjects:?}"
    );
    assert!(subjects.iter().all(|s| s.ends_with("/ oncall@example.com")), "{subjects:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
