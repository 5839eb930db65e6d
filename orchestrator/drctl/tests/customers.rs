//! Customers who are told, and who see their own contract (SPEC §12), with
//! real components: a real PostgreSQL pair behind the controller, a real
//! SMTP server (aiosmtpd) receiving the confirmations and notifications, a
//! webhook receiver that checks every signature with the Standard Webhooks
//! reference library (not with drctl's code), a controller killed between
//! an event and its delivery, customer tokens tried on every endpoint, the
//! post-incident report of a real failover, and the pages in Chromium.

use drctl_testkit::{free_port, notify_python, PgPair};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

mod common;
use common::*;

/// Two services, two customers: acme's contract covers checkout, globex's search.
fn topology(dir: &Path, pg: &PgPair) {
    let yaml = format!(
        "version: 1\nname: shop\nzones:\n  - {{ name: az1, region: r1 }}\n  - {{ name: az2, region: r1 }}\n\
         objectives:\n  tier-0: {{ rpo: 5s, rto: 2m }}\n\
         contracts:\n  - {{ customer: acme, services: [checkout], rpo: 10s, rto: 5m }}\n  - {{ customer: globex, services: [search], rto: 1h }}\n\
         datastores:\n  - name: orders-db\n    kind: postgres\n    primary: {{ zone: az1, url: \"{}\" }}\n    replicas: [ {{ zone: az2, url: \"{}\" }} ]\n    failover: {{ estimate: 5s, max_lag: 1h }}\n\
         services:\n  - {{ name: checkout, tier: tier-0, zones: [az1, az2], depends_on: [orders-db] }}\n  - {{ name: search, zones: [az1, az2] }}\n",
        pg.primary_url(),
        pg.standby_url()
    );
    std::fs::write(dir.join("drctl.yaml"), yaml).unwrap();
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn listening(port: u16) {
    wait_for(&format!("something to listen on {port}"), 60, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

/// aiosmtpd, delivering every message into a Maildir.
fn smtp_server(python: &Path, maildir: &Path) -> (Proc, u16) {
    let port = free_port();
    let child = Command::new(python)
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
        .arg(maildir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    listening(port);
    (Proc(child), port)
}

/// The messages in a Maildir, decoded by Python's `email` package.
const READ_MAIL: &str = r#"
import json, mailbox, sys
out = []
for key, m in sorted(mailbox.Maildir(sys.argv[1], create=False).items(), key=lambda kv: kv[1].get_date()):
    import email
    msg = email.message_from_bytes(m.as_bytes(), policy=email.policy.default)
    out.append({"to": str(msg["To"]), "subject": str(msg["Subject"]), "message_id": str(msg["Message-ID"]),
                "list_unsubscribe": str(msg.get("List-Unsubscribe", "")).strip(), "body": msg.get_content()})
print(json.dumps(out))
"#;

fn mails(python: &Path, maildir: &Path) -> Vec<Value> {
    let out = Command::new(python)
        .args(["-c", &READ_MAIL.replace("import json", "import json, email.policy")])
        .arg(maildir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    serde_json::from_slice::<Value>(&out.stdout).unwrap().as_array().cloned().unwrap_or_default()
}

fn mails_to(python: &Path, maildir: &Path, to: &str) -> Vec<Value> {
    mails(python, maildir).into_iter().filter(|m| m["to"] == to).collect()
}

/// A webhook receiver that verifies each delivery with the `standardwebhooks`
/// package, the secret read from a file; answers 503 while `fail` exists.
/// Logs one JSON line per request: the webhook-id, whether it verified, the body.
const RECEIVER: &str = r#"
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
port, secret_file, fail_file, log_file = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        headers = {k.lower(): v for k, v in self.headers.items()}
        entry = {"id": headers.get("webhook-id"), "verified": False, "answered": 200}
        try:
            secret = open(secret_file).read().strip()
            entry["payload"] = Webhook(secret).verify(body, headers)
            entry["verified"] = True
        except (WebhookVerificationError, OSError, ValueError) as e:
            entry["error"] = str(e)
        if not entry["verified"]:
            entry["answered"] = 400
        elif os.path.exists(fail_file):
            entry["answered"] = 503
        with open(log_file, "a") as f:
            f.write(json.dumps(entry) + "\n")
        self.send_response(entry["answered"])
        self.end_headers()
    def log_message(self, *a):
        pass
HTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

struct Receiver {
    _proc: Proc,
    url: String,
    secret: PathBuf,
    fail: PathBuf,
    log: PathBuf,
}

impl Receiver {
    fn start(python: &Path, dir: &Path) -> Receiver {
        let port = free_port();
        let script = dir.join("receiver.py");
        std::fs::write(&script, RECEIVER).unwrap();
        let (secret, fail, log) = (dir.join("secret"), dir.join("fail"), dir.join("received.jsonl"));
        let child = Command::new(python)
            .arg(&script)
            .args([port.to_string()])
            .args([&secret, &fail, &log])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        listening(port);
        Receiver { _proc: Proc(child), url: format!("http://127.0.0.1:{port}/hook"), secret, fail, log }
    }

    fn entries(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Deliveries that verified and were accepted.
    fn accepted(&self) -> Vec<Value> {
        self.entries().into_iter().filter(|e| e["verified"] == true && e["answered"] == 200).collect()
    }
}

fn subscriptions(dir: &Path) -> Vec<Value> {
    let out = drctl(dir).args(["subscriptions", "list", "--output", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    serde_json::from_slice::<Value>(&out.stdout).unwrap().as_array().cloned().unwrap()
}

fn link_in(body: &str, prefix: &str) -> String {
    let start = body.find(prefix).unwrap_or_else(|| panic!("no {prefix} in {body}"));
    body[start..].split_whitespace().next().unwrap().to_string()
}

#[test]
fn subscribers_are_told_by_email_and_signed_webhooks_and_a_restart_loses_nothing() {
    let python = notify_python();
    let pg = PgPair::start();
    let dir = tempdir("subscribers");
    topology(&dir, &pg);
    let maildir = dir.join("mail");
    let (_smtp, smtp_port) = smtp_server(&python, &maildir);
    let receiver = Receiver::start(&python, &dir);
    let operator = token(&dir, "ops", "operator");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let smtp = format!("smtp://127.0.0.1:{smtp_port}");
    let flags = ["--smtp", &smtp, "--notify-retry", "300ms", "--allow-private-webhooks", "--base-url", &base];
    let srv = start_on(&dir, port, &flags, "http");
    let c = client();

    // An e-mail subscription is pending until its confirmation link is followed.
    let r = c
        .post(format!("{base}/api/v1/subscriptions"))
        .json(&json!({"email": "sre@example.com", "services": ["checkout"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let made: Value = r.json().unwrap();
    assert_eq!(made["state"], "pending");
    assert!(made.get("secret").is_none());
    wait_for("the confirmation e-mail", 30, || !mails_to(&python, &maildir, "sre@example.com").is_empty());
    let confirmation = &mails_to(&python, &maildir, "sre@example.com")[0];
    assert_eq!(confirmation["subject"], "[shop] Confirm your subscription");
    let confirm = link_in(confirmation["body"].as_str().unwrap(), &format!("{base}/subscriptions/confirm/"));
    // The link opens a page whose button POSTs: following it confirms nothing.
    let opened = c.get(&confirm).send().unwrap().text().unwrap();
    assert!(opened.contains(r#"<form method="post">"#), "{opened}");
    assert_eq!(subscriptions(&dir).iter().find(|s| s["target"] == "sre@example.com").unwrap()["state"], "pending");
    let page = c.post(&confirm).send().unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().unwrap().contains("You are subscribed"));
    assert_eq!(c.post(format!("{base}/subscriptions/confirm/not-a-token")).send().unwrap().status(), 404);

    // The page's form, no JavaScript, in Japanese.
    let page = c.get(format!("{base}/?lang=ja")).send().unwrap().text().unwrap();
    assert!(page.contains(r#"<form method="post" action="/subscribe""#) && page.contains("通知を受け取る"), "{page}");
    assert!(!page.contains("<script"));
    let r = c
        .post(format!("{base}/subscribe"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("lang=ja&email=kaito%40example.jp&services=checkout&services=search")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().unwrap().contains("確認メールを送りました"));
    wait_for("the Japanese confirmation", 30, || !mails_to(&python, &maildir, "kaito@example.jp").is_empty());
    let ja = &mails_to(&python, &maildir, "kaito@example.jp")[0];
    assert_eq!(ja["subject"], "[shop] 購読の確認");
    assert!(ja["body"].as_str().unwrap().contains("checkout, search"), "{ja}");
    if let Some(browser) = chromium_or_skip() {
        let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page-subscribe-ja.png");
        let dom = render(&browser, &format!("{base}/?lang=ja"), &shot);
        assert!(dom.contains("通知を受け取る") && dom.contains(r#"type="email""#), "{dom}");
    }

    // A webhook: active at once, its secret shown once; the receiver is down (503).
    std::fs::write(&receiver.fail, "").unwrap();
    let r = c.post(format!("{base}/api/v1/subscriptions")).json(&json!({"webhook": receiver.url})).send().unwrap();
    assert_eq!(r.status(), 201);
    let hook: Value = r.json().unwrap();
    assert_eq!(hook["state"], "active");
    std::fs::write(&receiver.secret, hook["secret"].as_str().unwrap()).unwrap();
    let hook_id = hook["id"].as_i64().unwrap();

    // An incident: the confirmed address and the webhook are told; the
    // webhook's delivery fails and is retried with the same webhook-id.
    let r = c
        .post(format!("{base}/api/v1/incidents"))
        .bearer_auth(&operator)
        .json(&json!({"title": "Checkout is slow", "status": "investigating", "body": "We are looking into it.", "services": ["checkout"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let incident = r.json::<Value>().unwrap()["id"].as_i64().unwrap();
    wait_for("the incident e-mail", 30, || mails_to(&python, &maildir, "sre@example.com").len() == 2);
    let told = &mails_to(&python, &maildir, "sre@example.com")[1];
    assert_eq!(told["subject"], "[shop] Checkout is slow (investigating)");
    let body = told["body"].as_str().unwrap();
    assert!(
        body.contains("We are looking into it.") && body.contains(&format!("{base}/incidents/{incident}")),
        "{body}"
    );
    let unsubscribe = link_in(body, &format!("{base}/unsubscribe/"));
    assert_eq!(told["list_unsubscribe"], format!("<{unsubscribe}>"));
    wait_for("two failed attempts at the webhook", 30, || receiver.entries().len() >= 2);
    let attempts = receiver.entries();
    assert!(attempts.iter().all(|e| e["verified"] == true && e["answered"] == 503), "{attempts:?}");
    assert_eq!(attempts[0]["id"], attempts[1]["id"], "a retry is the same message");
    let listed = subscriptions(&dir);
    let row = listed.iter().find(|s| s["id"] == hook_id).unwrap();
    assert_eq!((row["failing"].as_bool(), row["deliveries"]["pending"].as_i64()), (Some(true), Some(1)), "{row:#}");
    assert!(row["last_error"].as_str().unwrap().contains("503"));
    let text = drctl(&dir).args(["subscriptions", "list"]).output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("active,failing"), "{}", show(&text));

    // The controller dies before the delivery succeeds; the receiver comes
    // back; the next controller delivers it, once.
    drop(srv);
    std::fs::remove_file(&receiver.fail).unwrap();
    let srv = start_on(&dir, port, &flags, "http");
    wait_for("the webhook delivered after the restart", 30, || !receiver.accepted().is_empty());
    let got = receiver.accepted();
    assert_eq!(got[0]["id"], attempts[0]["id"]);
    let payload = &got[0]["payload"];
    assert_eq!(payload["type"], "incident.created");
    assert_eq!(payload["incident"]["name"], "Checkout is slow");
    assert_eq!(payload["incident"]["shortlink"], format!("{base}/incidents/{incident}"));
    assert!(payload["unsubscribe"].as_str().unwrap().starts_with(&format!("{base}/unsubscribe/")));

    // Resolved: both told; every event exactly once per subscriber.
    let r = c
        .post(format!("{base}/api/v1/incidents/{incident}/updates"))
        .bearer_auth(&operator)
        .json(&json!({"status": "resolved", "body": "Fixed."}))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    wait_for("the resolution, both ways", 30, || {
        receiver.accepted().iter().any(|e| e["payload"]["type"] == "incident.resolved")
            && mails_to(&python, &maildir, "sre@example.com").len() >= 3
    });
    assert_eq!(mails_to(&python, &maildir, "sre@example.com").len(), 3, "{:#?}", mails(&python, &maildir));
    let resolved = &mails_to(&python, &maildir, "sre@example.com")[2];
    assert_eq!(resolved["subject"], "[shop] Checkout is slow (resolved)");
    // kaito follows checkout too but never confirmed: only the confirmation.
    assert_eq!(mails_to(&python, &maildir, "kaito@example.jp").len(), 1);

    // Maintenance is told too.
    let r = c
        .post(format!("{base}/api/v1/maintenance"))
        .bearer_auth(&operator)
        .json(&json!({"title": "Database upgrade", "body": "PostgreSQL 16", "services": ["search"],
            "starts_at": "2099-01-01T02:00:00Z", "ends_at": "2099-01-01T03:00:00Z"}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());
    wait_for("the maintenance webhook", 30, || {
        receiver.accepted().iter().any(|e| e["payload"]["type"] == "maintenance.scheduled")
    });
    let m = receiver.accepted().into_iter().find(|e| e["payload"]["type"] == "maintenance.scheduled").unwrap();
    assert_eq!(m["payload"]["scheduled_maintenance"]["name"], "Database upgrade");

    // Unsubscribed: told of nothing more.
    let page = c.post(&unsubscribe).send().unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().unwrap().contains("You are unsubscribed"));
    let r = c
        .post(format!("{base}/api/v1/incidents"))
        .bearer_auth(&operator)
        .json(&json!({"title": "Checkout errors", "status": "investigating", "services": ["checkout"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    wait_for("the second incident's webhook", 30, || {
        receiver.accepted().iter().any(|e| e["payload"]["incident"]["name"] == "Checkout errors")
    });
    let listed = subscriptions(&dir);
    let sre = listed.iter().find(|s| s["target"] == "sre@example.com").unwrap();
    assert_eq!(sre["state"], "unsubscribed");
    assert_eq!(
        (sre["deliveries"]["delivered"].as_i64(), sre["deliveries"]["pending"].as_i64()),
        (Some(3), Some(0)),
        "{sre:#}"
    );
    assert_eq!(mails_to(&python, &maildir, "sre@example.com").len(), 3);

    // Nothing twice: one accepted delivery per webhook-id, one per event.
    let accepted = receiver.accepted();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for e in &accepted {
        *by_id.entry(e["id"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert!(by_id.values().all(|n| *n == 1), "{by_id:?}");
    assert_eq!(accepted.len(), 4, "created, resolved, maintenance, the second incident: {accepted:#?}");
    let emails = mails(&python, &maildir);
    let mut ids: Vec<&str> = emails.iter().map(|m| m["message_id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), emails.len(), "one Message-ID per e-mail");

    // A forged signature is what the library rejects (the receiver is real).
    let forged = c
        .post(&receiver.url)
        .header("webhook-id", "msg_forged")
        .header("webhook-timestamp", chrono_now().to_string())
        .header("webhook-signature", "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(forged.status(), 400);

    // Bad input is refused plainly; the anonymous endpoint is rate-limited.
    for (body, why) in [
        (json!({"email": "not an address"}), "not an e-mail address"),
        (json!({"email": "a@example.com", "services": ["nope"]}), "not in the topology"),
        (json!({}), "one of `email` or `webhook`"),
    ] {
        let r = c.post(format!("{base}/api/v1/subscriptions")).json(&body).send().unwrap();
        let status = r.status();
        let text = r.text().unwrap();
        assert!(status == 422 || status == 429, "{status} {text}");
        if status == 422 {
            assert!(text.contains(why), "{text}");
        }
    }
    let mut limited = false;
    for _ in 0..8 {
        let r = c.post(format!("{base}/api/v1/subscriptions")).json(&json!({"email": "x@example.com"})).send().unwrap();
        if r.status() == 429 {
            assert!(r.text().unwrap().contains("too many subscriptions"));
            limited = true;
            break;
        }
    }
    assert!(limited, "the subscribe endpoint is rate-limited per address");
    drop(srv);
}

fn chrono_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn customer_token(dir: &Path, name: &str, customer: &str) -> String {
    let out = drctl(dir)
        .args(["token", "create", "--name", name, "--role", "customer", "--customer", customer])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_customer_sees_its_own_contract_and_the_report_of_a_real_failover() {
    let pg = PgPair::start();
    pg.psql(pg.primary_port, "CREATE TABLE orders (id serial PRIMARY KEY, at timestamptz DEFAULT now())");
    let dir = tempdir("customers");
    topology(&dir, &pg);
    let acme = customer_token(&dir, "acme-auditor", "acme");
    let globex = customer_token(&dir, "globex-auditor", "globex");
    let operator = token(&dir, "ops", "operator");
    let commander = token(&dir, "ic", "commander");
    let viewer = token(&dir, "watcher", "viewer");
    // A customer token names a customer the topology has a contract with.
    let out = drctl(&dir)
        .args(["token", "create", "--name", "x", "--role", "customer", "--customer", "initech"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no contract with customer `initech` (customers: acme, globex)")
    );
    let out = drctl(&dir).args(["token", "create", "--name", "x", "--role", "customer"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));

    let srv = start(&dir, &[], "http");
    let base = srv.base.clone();
    let c = client();
    wait_for("a first measurement", 30, || {
        c.get(format!("{base}/customers/acme"))
            .bearer_auth(&acme)
            .header("accept", "application/json")
            .send()
            .unwrap()
            .json::<Value>()
            .unwrap()["measured_at"]
            .is_string()
    });

    // acme's page: its contract's service, the contract's targets, live numbers against them.
    let page: Value = c
        .get(format!("{base}/customers/acme"))
        .bearer_auth(&acme)
        .header("accept", "application/json")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(page["customer"], "acme");
    let services = page["services"].as_array().unwrap();
    assert_eq!(services.len(), 1);
    assert_eq!(services[0]["name"], "checkout");
    assert_eq!(
        (services[0]["contract"]["rpo_s"].as_f64(), services[0]["contract"]["rto_s"].as_f64()),
        (Some(10.0), Some(300.0))
    );
    assert!(services[0]["live"]["rpo_s"].is_number(), "{page:#}");
    assert_eq!(services[0]["live"]["meets_rpo"], true, "{page:#}");

    // A real failover through the API: the incident it opens touches
    // acme's service; the report is drafted when it ends.
    let r = c
        .post(format!("{base}/api/v1/declare"))
        .bearer_auth(&commander)
        .json(&json!({"targets": ["orders-db", "checkout"], "reason": "az1 storage is failing"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().unwrap_or_default());
    let declared: Value = r.json().unwrap();
    let incident = declared["incident"].as_i64().unwrap();
    let execution = declared["id"].as_str().unwrap().to_string();
    let report: Value = {
        let mut got = Value::Null;
        wait_for("the post-incident report's draft", 60, || {
            let r = c.get(format!("{base}/api/v1/incidents/{incident}/report")).bearer_auth(&viewer).send().unwrap();
            if r.status() == 200 {
                got = r.json().unwrap();
                true
            } else {
                false
            }
        });
        got
    };
    let draft = report["body"].as_str().unwrap();
    for part in [
        "# Post-incident report: Failover in progress",
        "## Who decided what",
        "ic `declare`",
        "## Steps",
        "orders-db",
        "## Recovery time (RTO) against the targets",
        "| checkout |",
        "## Data (RPO) against the targets",
    ] {
        assert!(draft.contains(part), "{part:?} in:\n{draft}");
    }
    assert!(!draft.contains("az1 storage is failing"), "the declaration's reason is internal: {draft}");
    assert!(draft.contains(&execution));
    assert!(report["published_ms"].is_null());
    // Unpublished, the public incident page does not show it.
    let public = c.get(format!("{base}/incidents/{incident}")).send().unwrap();
    assert_eq!(public.status(), 200);
    let public = public.text().unwrap();
    assert!(public.contains("Failover in progress") && !public.contains("Post-incident report"), "{public}");
    // An operator edits and publishes it; a viewer may not.
    let edited = format!("{draft}\n## Cause\n\nA storage controller in az1 failed; **no data was lost**.\n");
    let r = c
        .put(format!("{base}/api/v1/incidents/{incident}/report"))
        .bearer_auth(&viewer)
        .json(&json!({"body": "x"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .put(format!("{base}/api/v1/incidents/{incident}/report"))
        .bearer_auth(&operator)
        .json(&json!({"body": edited}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let r = c.post(format!("{base}/api/v1/incidents/{incident}/report/publish")).bearer_auth(&operator).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap()["published_by"], "ops");
    let public = c.get(format!("{base}/incidents/{incident}")).send().unwrap().text().unwrap();
    assert!(
        public.contains("Post-incident report") && public.contains("<strong>no data was lost</strong>"),
        "{public}"
    );
    // The page and the feed link to it.
    let index = c.get(format!("{base}/")).send().unwrap().text().unwrap();
    assert!(index.contains(&format!(r#"<a href="/incidents/{incident}">"#)), "{index}");
    let atom = c.get(format!("{base}/feed.atom")).send().unwrap().text().unwrap();
    assert!(atom.contains(&format!(r#"<link href="{base}/incidents/{incident}"/>"#)), "{atom}");
    let audit = drctl(&dir).args(["audit", "list", "--output", "json"]).output().unwrap();
    let audit: Value = serde_json::from_slice(&audit.stdout).unwrap();
    for a in ["report.edit", "report.publish"] {
        assert!(audit.as_array().unwrap().iter().any(|e| e["action"] == a && e["actor"] == "ops"), "{a}");
    }

    // acme sees the incident that touched checkout; globex's page does not.
    let acme_page: Value =
        c.get(format!("{base}/customers/acme/assurance.json")).bearer_auth(&acme).send().unwrap().json().unwrap();
    let touched = acme_page["services"][0]["incidents"].as_array().unwrap();
    assert!(touched.iter().any(|i| i["id"] == incident), "{acme_page:#}");
    assert!(acme_page["audit_head"].as_str().is_some_and(|h| h.len() == 64));
    let globex_page: Value =
        c.get(format!("{base}/customers/globex/assurance.json")).bearer_auth(&globex).send().unwrap().json().unwrap();
    assert_eq!(globex_page["services"][0]["name"], "search");
    assert!(globex_page["services"][0]["incidents"].as_array().unwrap().is_empty());

    // Isolation on every endpoint: acme's token reaches its own page and
    // the public faces, and nothing names globex anywhere it can read.
    let mut paths: Vec<(String, &str)> = vec![
        ("/customers/globex".into(), "GET"),
        ("/customers/globex/assurance.json".into(), "GET"),
        ("/customers/globex/assurance.html".into(), "GET"),
        ("/customers/no-such-customer".into(), "GET"),
        ("/api/v1/subscriptions".into(), "GET"),
        (format!("/api/v1/incidents/{incident}/report"), "GET"),
        (format!("/api/v1/incidents/{incident}/report"), "PUT"),
        (format!("/api/v1/incidents/{incident}/report/publish"), "POST"),
        ("/api/v1/executions".into(), "GET"),
        (format!("/api/v1/executions/{execution}"), "GET"),
        ("/api/v1/incidents".into(), "GET"),
        ("/api/v1/incidents".into(), "POST"),
        ("/api/v1/audit".into(), "GET"),
        ("/api/v1/maintenance".into(), "POST"),
        ("/api/v1/declare".into(), "POST"),
        ("/api/v1/drills".into(), "POST"),
        (format!("/api/v1/executions/{execution}/approve"), "POST"),
        (format!("/api/v1/executions/{execution}/abort"), "POST"),
    ];
    let openapi: Value = c.get(format!("{base}/api/v1/openapi.json")).send().unwrap().json().unwrap();
    for (path, ops) in openapi["paths"].as_object().unwrap() {
        for op in ops.as_object().unwrap().keys() {
            let id = if path.contains("/incidents/") { incident.to_string() } else { execution.clone() };
            let path = path.replace("{id}", &id).replace("{name}", "globex");
            let method = match op.as_str() {
                "get" => "GET",
                "put" => "PUT",
                "post" => "POST",
                _ => continue,
            };
            if !paths.iter().any(|(p, m)| *p == path && *m == method) {
                paths.push((path, method));
            }
        }
    }
    assert!(paths.len() >= 18);
    for (path, method) in &paths {
        let req = match *method {
            "GET" => c.get(format!("{base}{path}")),
            "PUT" => c.put(format!("{base}{path}")).json(&json!({"body": "x"})),
            // A body every operator endpoint can decode, so the answer is about the token.
            _ => c.post(format!("{base}{path}")).json(&json!({"title": "x", "status": "investigating", "reason": "x",
                "experiment": "x", "step": "x", "starts_at": "2099-01-01T00:00:00Z", "ends_at": "2099-01-01T01:00:00Z"})),
        };
        let r = req.bearer_auth(&acme).send().unwrap();
        let status = r.status().as_u16();
        let body = r.text().unwrap();
        assert!(!body.to_lowercase().contains("globex"), "{method} {path} with acme's token names globex: {body}");
        let public = matches!(
            (*method, path.as_str()),
            ("GET", "/api/v1/status" | "/api/v1/openapi.json" | "/api/v1/leader") | ("POST", "/api/v1/subscriptions")
        );
        if (path.starts_with("/api/v1/") || path.starts_with("/customers/")) && !public {
            assert_eq!(status, 403, "{method} {path} with a customer token: {body}");
        }
    }
    for path in
        ["/", "/api/v1/status", "/api/v2/summary.json", "/feed.atom", "/metrics", &format!("/incidents/{incident}")]
    {
        let body = c.get(format!("{base}{path}")).bearer_auth(&acme).send().unwrap().text().unwrap();
        assert!(!body.contains("globex") && !body.contains("acme"), "{path} names a customer: {body}");
    }
    // An operator may read any customer; an unknown one is 404 to it.
    assert_eq!(c.get(format!("{base}/customers/globex")).bearer_auth(&operator).send().unwrap().status(), 200);
    assert_eq!(c.get(format!("{base}/customers/initech")).bearer_auth(&operator).send().unwrap().status(), 404);
    assert_eq!(c.get(format!("{base}/customers/acme")).bearer_auth(&viewer).send().unwrap().status(), 403);
    assert_eq!(c.get(format!("{base}/customers/acme")).send().unwrap().status(), 401);

    // The assurance report is self-contained: one inline stylesheet allowed
    // by its hash, nothing fetched, no script.
    let r = c.get(format!("{base}/customers/acme/assurance.html")).bearer_auth(&acme).send().unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.starts_with("default-src 'none'; style-src 'sha256-"), "{csp}");
    assert_eq!(r.headers()["cache-control"], "private, no-store");
    let html = r.text().unwrap();
    assert!(html.contains("<style>") && html.contains("@media print"));
    for outside in ["<script", "src=", "<link", "http://", "https://"] {
        let found = html.replace(&format!("{base}/incidents/"), "");
        assert!(!found.contains(outside), "{outside} in the self-contained report");
    }
    assert!(html.contains("Disaster-recovery assurance: acme") && html.contains("checkout"));

    // In Chromium: the pages as customers see them (screenshots for docs/).
    if let Some(browser) = chromium_or_skip() {
        let shots = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let report_file = shots.join("assurance-acme.html");
        std::fs::write(&report_file, &html).unwrap();
        let dom = render(&browser, &format!("file://{}", report_file.display()), &shots.join("customer-assurance.png"));
        assert!(dom.contains("Your services now") && dom.contains("checkout"), "{dom}");
        let dom = render(&browser, &format!("{base}/incidents/{incident}"), &shots.join("incident-page.png"));
        assert!(dom.contains("no data was lost"), "{dom}");
    }
    drop(srv);
}
