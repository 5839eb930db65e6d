//! The controller against someone who holds its files or its network
//! (docs/hardening.md), with real components: the real binary, its real
//! SQLite file read with the `sqlite3` tool, a real SMTP server (aiosmtpd).

use drctl_testkit::{free_port, notify_python};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};

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

/// A topology whose one database is down: its URL carries a user and a
/// password that must never reach a public face.
fn topology(dir: &Path) -> String {
    let dead = free_port();
    let url = format!("postgres://admin:hunter2@127.0.0.1:{dead}/postgres");
    let yaml = format!(
        "version: 1\nname: shop\nzones:\n  - {{ name: az1, region: r1 }}\n  - {{ name: az2, region: r1 }}\n\
         objectives:\n  tier-0: {{ rpo: 5s, rto: 2m }}\n\
         datastores:\n  - name: orders-db\n    kind: postgres\n    primary: {{ zone: az1, url: \"{url}\" }}\n    replicas: [ {{ zone: az2, url: \"{url}\" }} ]\n\
         services:\n  - {{ name: checkout, tier: tier-0, zones: [az1, az2], depends_on: [orders-db] }}\n"
    );
    std::fs::write(dir.join("drctl.yaml"), yaml).unwrap();
    dead.to_string()
}

/// `drctl` in `dir` with its state in the default place, `.drctl/state.db`.
fn drctl_default(dir: &Path) -> Command {
    let mut c = drctl(dir);
    c.env("DRCTL_STATE", "sqlite://.drctl/state.db");
    c
}

fn serve(dir: &Path, extra: &[&str]) -> Server {
    let port = free_port();
    let child = drctl_default(dir)
        .args(["serve", "-f", "drctl.yaml", "--sample-every", "300ms", "--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(dir.join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    wait_listening(port, "drctl serve");
    Server { child, base: format!("http://127.0.0.1:{port}"), port }
}

/// aiosmtpd delivering into a Maildir; `extra` more of its flags.
fn smtp_server(python: &Path, maildir: &Path, extra: &[&str]) -> (Proc, u16) {
    let port = free_port();
    let child = Command::new(python)
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
        .arg(maildir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(port, "aiosmtpd");
    (Proc(child), port)
}

/// Every message body in a Maildir, raw.
fn mail_bodies(maildir: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(maildir.join("new")) else { return vec![] };
    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok()).collect()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

fn sqlite3(db: &Path, sql: &str) -> std::process::Output {
    Command::new("sqlite3").arg(db).arg(sql).output().expect("the sqlite3 tool runs")
}

/// The link starting with `prefix` in a (quoted-printable or plain) mail.
fn link_in(body: &str, prefix: &str) -> Option<String> {
    let body = body.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=");
    let at = body.find(prefix)?;
    Some(body[at..].chars().take_while(|c| !c.is_whitespace() && *c != '>' && *c != '"').collect())
}

#[test]
fn the_state_file_alone_shows_no_secret_address_or_token_and_is_private() {
    let python = notify_python();
    let dir = tempdir("at-rest");
    topology(&dir);
    let maildir = dir.join("mail");
    let (_smtp, smtp_port) = smtp_server(&python, &maildir, &[]);
    let out = drctl_default(&dir).args(["token", "create", "--name", "ops", "--role", "operator"]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let operator = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let smtp = format!("smtp://127.0.0.1:{smtp_port}");
    let srv = serve(&dir, &["--smtp", &smtp, "--allow-private-webhooks"]);
    let c = client();

    let email = "victim.person@example.org";
    let r = c.post(format!("{}/api/v1/subscriptions", srv.base)).json(&json!({"email": email})).send().unwrap();
    assert_eq!(r.status(), 201);
    let hook_url = format!("http://127.0.0.1:{}/secret-hook-path", free_port());
    let r = c.post(format!("{}/api/v1/subscriptions", srv.base)).json(&json!({"webhook": hook_url})).send().unwrap();
    assert_eq!(r.status(), 201);
    let hook: Value = r.json().unwrap();
    let secret = hook["secret"].as_str().unwrap().to_string();
    let unsubscribe = hook["unsubscribe_url"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    wait_for("the confirmation mail", 30, || !mail_bodies(&maildir).is_empty());
    let body = mail_bodies(&maildir).remove(0);
    let confirm = link_in(&body, &format!("{}/subscriptions/confirm/", srv.base)).expect("a confirmation link");
    let confirm_token = confirm.rsplit('/').next().unwrap().to_string();
    // The confirmation was sent: its row in the outbox keeps no link.
    let db = dir.join(".drctl/state.db");
    wait_for("the delivery recorded", 30, || {
        let out = drctl_default(&dir).args(["subscriptions", "list", "--output", "json"]).output().unwrap();
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("victim")
    });
    // The operator sees the address (the store opens it with its key).
    let r = c.get(format!("{}/api/v1/incidents", srv.base)).bearer_auth(&operator).send().unwrap();
    assert_eq!(r.status(), 200);

    // What someone holding the files alone reads: the whole database, its
    // WAL, as text, as the sqlite3 tool dumps it and as raw bytes.
    let dump = sqlite3(&db, ".dump");
    assert!(dump.status.success(), "{}", show(&dump));
    let mut everything = String::from_utf8_lossy(&dump.stdout).to_string();
    for f in ["state.db", "state.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.join(".drctl").join(f)) {
            everything.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    for (what, needle) in [
        ("the subscriber's address", email),
        ("its local part", "victim.person"),
        ("the webhook's signing secret", secret.as_str()),
        ("the signing secret's key part", &secret["whsec_".len()..]),
        ("the webhook URL", "secret-hook-path"),
        ("the unsubscribe token", unsubscribe.as_str()),
        ("the confirmation token", confirm_token.as_str()),
        ("the operator's token", operator.as_str()),
        ("the confirmation link", "/subscriptions/confirm/"),
    ] {
        assert!(!everything.contains(needle), "{what} is in the state files in clear");
    }

    // Private on disk: the folder 0700, every file in it 0600; the keys
    // beside the database, not in it.
    assert_eq!(mode(&dir.join(".drctl")), 0o700);
    for f in ["state.db", "state.db-wal", "state.db-shm"] {
        let p = dir.join(".drctl").join(f);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{f}");
        }
    }
    let keys = dir.join(".drctl/state.db-keys");
    assert_eq!(mode(&keys), 0o700);
    for f in ["data.key", "audit.key", "audit-head"] {
        assert_eq!(mode(&keys.join(f)), 0o600, "{f}");
    }
    drop(srv);

    // With the key, the address is still there for the operator.
    let out = drctl_default(&dir).args(["subscriptions", "list", "--output", "json"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(email), "{}", show(&out));
    // Without it (the file copied elsewhere), nothing opens.
    let elsewhere = tempdir("at-rest-copy");
    std::fs::create_dir_all(elsewhere.join(".drctl")).unwrap();
    std::fs::copy(&db, elsewhere.join(".drctl/state.db")).unwrap();
    let _ = std::fs::copy(dir.join(".drctl/state.db-wal"), elsewhere.join(".drctl/state.db-wal"));
    topology(&elsewhere);
    let out = drctl_default(&elsewhere).args(["subscriptions", "list", "--output", "json"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains(email), "{}", show(&out));

    // A rotated key: what the old one sealed still opens.
    let out = drctl_default(&dir).args(["keys", "rotate"]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let out = drctl_default(&dir).args(["subscriptions", "list", "--output", "json"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(email), "{}", show(&out));
    let out = drctl_default(&dir).args(["audit", "verify"]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let _ = std::fs::remove_dir_all(&elsewhere);
}

/// The audit hash of an entry as drctl computes it without a key, in
/// Python: what anyone who can write the file can recompute.
const REWRITE: &str = r#"
import hashlib, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.executescript("DROP TRIGGER IF EXISTS audit_is_append_only_update; DROP TRIGGER IF EXISTS audit_is_append_only_insert; DROP TRIGGER IF EXISTS audit_is_append_only_delete;")
rows = db.execute("SELECT seq, at_ms, actor, source, action, target, request FROM audit ORDER BY seq").fetchall()
prev = "0" * 64
for seq, at_ms, actor, source, action, target, request in rows:
    if seq == int(sys.argv[2]):
        actor = "viewer-mallory"
    fields = [str(seq), str(at_ms), actor, source, action, target, request, prev]
    text = "".join("%d:%s;" % (len(f.encode()), f) for f in fields)
    h = hashlib.sha256(text.encode()).hexdigest()
    db.execute("UPDATE audit SET actor = ?, prev_hash = ?, hash = ? WHERE seq = ?", (actor, prev, h, seq))
    prev = h
db.commit()
"#;

#[test]
fn a_rewritten_audit_chain_fails_verify_and_the_store_refuses_replace() {
    let dir = tempdir("audit-rewrite");
    topology(&dir);
    for n in 0..3 {
        let out = drctl_default(&dir)
            .args(["token", "create", "--name", &format!("t{n}"), "--role", "viewer"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", show(&out));
    }
    let out = drctl_default(&dir).args(["audit", "verify"]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("keyed"), "keyed by default: {}", show(&out));
    let db = dir.join(".drctl/state.db");

    // The store refuses a replace, an update and a delete.
    let out = sqlite3(
        &db,
        "INSERT OR REPLACE INTO audit (seq, at_ms, actor, source, action, target, request, prev_hash, hash) SELECT seq, at_ms, 'mallory', source, action, target, request, prev_hash, hash FROM audit WHERE seq = 2",
    );
    assert!(!out.status.success(), "INSERT OR REPLACE passed: {}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("append-only"), "{}", show(&out));
    assert!(!sqlite3(&db, "UPDATE audit SET actor = 'mallory' WHERE seq = 2").status.success());
    assert!(!sqlite3(&db, "DELETE FROM audit WHERE seq = 3").status.success());

    // Entry 2 re-attributed and the whole chain recomputed.
    let python = notify_python();
    let out = Command::new(&python).args(["-c", REWRITE]).arg(&db).arg("2").output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let out = drctl_default(&dir).args(["audit", "verify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "the rewritten chain verified: {}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("entry 1"), "{}", show(&out));

    // And the controller refuses to serve on it.
    let port = free_port();
    let out = drctl_default(&dir)
        .args(["serve", "-f", "drctl.yaml", "--listen", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("audit log does not verify"), "{}", show(&out));
}

#[test]
fn a_cut_tail_fails_verify_without_being_given_a_head() {
    let dir = tempdir("audit-cut");
    topology(&dir);
    for n in 0..3 {
        let out = drctl_default(&dir)
            .args(["token", "create", "--name", &format!("t{n}"), "--role", "viewer"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", show(&out));
    }
    let db = dir.join(".drctl/state.db");
    let out = sqlite3(&db, "DROP TRIGGER audit_is_append_only_delete; DELETE FROM audit WHERE seq = 3");
    assert!(out.status.success(), "{}", show(&out));
    let out = drctl_default(&dir).args(["audit", "verify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "a cut tail verified: {}", show(&out));
}

#[test]
fn a_second_controller_on_one_sqlite_file_is_refused() {
    let dir = tempdir("second-serve");
    topology(&dir);
    let _first = serve(&dir, &[]);
    let port = free_port();
    let out = drctl_default(&dir)
        .args(["serve", "-f", "drctl.yaml", "--listen", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another `drctl serve`"), "{}", show(&out));
}

/// An SMTP server that offers AUTH on a plain connection and no STARTTLS,
/// and writes down every AUTH it receives (and every message).
const SMTP_NO_TLS: &str = r#"
import asyncio, sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
log = sys.argv[2]
def note(line):
    with open(log, "a") as f:
        f.write(line + "\n")
def authenticator(server, session, envelope, mechanism, auth_data):
    note("AUTH %s %r" % (mechanism, auth_data))
    return AuthResult(success=True)
class Handler:
    async def handle_DATA(self, server, session, envelope):
        note("MAIL to %s" % ",".join(envelope.rcpt_tos))
        return "250 OK"
c = Controller(Handler(), hostname="127.0.0.1", port=int(sys.argv[1]), authenticator=authenticator, auth_require_tls=False)
c.start()
note("READY")
asyncio.get_event_loop().run_forever()
"#;

#[test]
fn smtp_credentials_never_travel_in_clear() {
    let python = notify_python();
    let dir = tempdir("smtp-clear");
    topology(&dir);
    let log = dir.join("smtp.log");
    let port = free_port();
    let _smtp = Proc(
        Command::new(&python)
            .args(["-c", SMTP_NO_TLS, &port.to_string()])
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(port, "the SMTP server");
    let run = |url: &str, extra: &[&str]| {
        let lport = free_port();
        drctl_default(&dir)
            .env("DRCTL_SMTP_PASSWORD", "s3cret-pw")
            .args(["serve", "-f", "drctl.yaml", "--listen", &format!("127.0.0.1:{lport}"), "--smtp", url])
            .args(extra)
            .output()
            .unwrap()
    };
    // Plain smtp:// with credentials, an unknown scheme: refused at start.
    let out = run(&format!("smtp://mailer@127.0.0.1:{port}"), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("smtps://"), "{}", show(&out));
    let out = run("ftp://x", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));

    // STARTTLS required, a server without it: the mail fails, no AUTH is sent.
    let lport = free_port();
    let srv = {
        let child = drctl_default(&dir)
            .env("DRCTL_SMTP_PASSWORD", "s3cret-pw")
            .args(["serve", "-f", "drctl.yaml", "--notify-retry", "200ms", "--listen", &format!("127.0.0.1:{lport}")])
            .args(["--smtp", &format!("smtp+starttls://mailer@127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("serve.log")).unwrap())
            .spawn()
            .unwrap();
        wait_listening(lport, "drctl serve");
        Server { child, base: format!("http://127.0.0.1:{lport}"), port: lport }
    };
    let c = client();
    let r =
        c.post(format!("{}/api/v1/subscriptions", srv.base)).json(&json!({"email": "a@example.org"})).send().unwrap();
    assert_eq!(r.status(), 201);
    wait_for("a failed attempt", 30, || {
        let out = drctl_default(&dir).args(["subscriptions", "list", "--output", "json"]).output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v.as_array().is_some_and(|a| a.iter().any(|s| s["failing"] == true))
    });
    drop(srv);
    let seen = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!seen.contains("AUTH"), "the server received AUTH without TLS: {seen}");
    assert!(!seen.contains("MAIL"), "{seen}");

    // The control: allowed in clear, the same server does receive AUTH,
    // so the check above could have seen one.
    let lport = free_port();
    let child = drctl_default(&dir)
        .env("DRCTL_SMTP_PASSWORD", "s3cret-pw")
        .args(["serve", "-f", "drctl.yaml", "--notify-retry", "200ms", "--listen", &format!("127.0.0.1:{lport}")])
        .args(["--smtp", &format!("smtp://mailer@127.0.0.1:{port}"), "--smtp-insecure"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("serve2.log")).unwrap())
        .spawn()
        .unwrap();
    wait_listening(lport, "drctl serve");
    let _srv = Server { child, base: format!("http://127.0.0.1:{lport}"), port: lport };
    let r = c
        .post(format!("http://127.0.0.1:{lport}/api/v1/subscriptions"))
        .json(&json!({"email": "b@example.org"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    wait_for("AUTH over the insecure connection", 30, || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("AUTH")
    });
}

#[test]
fn public_faces_name_the_class_of_a_failure_and_private_addresses_are_refused_in_every_spelling() {
    let dir = tempdir("public-faces");
    let dead_port = topology(&dir);
    let srv = serve(&dir, &[]);
    let c = client();
    let status_url = format!("{}/api/v1/status", srv.base);
    wait_for("a measurement of the dead database", 60, || {
        c.get(&status_url)
            .send()
            .ok()
            .and_then(|r| r.json::<Value>().ok())
            .is_some_and(|v| v["datastores"].as_array().is_some_and(|d| d.iter().any(|d| d["error"].is_string())))
    });
    let status: Value = c.get(&status_url).send().unwrap().json().unwrap();
    let error = status["datastores"][0]["error"].as_str().unwrap();
    assert!(error.starts_with("the database"), "{error}");
    for path in ["/api/v1/status", "/", "/feed.atom", "/api/v2/summary.json"] {
        // The page's own address (its links) aside.
        let body = c.get(format!("{}{path}", srv.base)).send().unwrap().text().unwrap().replace(&srv.base, "BASE");
        for leak in ["postgres://", "127.0.0.1", dead_port.as_str(), "admin", "hunter2"] {
            assert!(!body.contains(leak), "{path} names `{leak}`");
        }
    }
    for (i, url) in [
        "http://[::127.0.0.1]/x",
        "http://[64:ff9b::7f00:1]/x",
        "http://[::ffff:0:7f00:1]/x",
        "http://[2002:7f00:1::]/x",
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/x",
        "http://0.0.0.1/x",
        "http://224.0.0.1/x",
        "http://198.18.0.1/x",
        "http://[fec0::1]/x",
        "http://[ff02::1]/x",
        "http://2130706433/x",
    ]
    .into_iter()
    .enumerate()
    {
        // Each from a network of its own: subscribing is rate-limited per /24.
        let from = std::net::IpAddr::from([127, 0, 10 + i as u8, 1]);
        let c = reqwest::blocking::Client::builder().no_proxy().local_address(from).build().unwrap();
        let r = c.post(format!("{}/api/v1/subscriptions", srv.base)).json(&json!({"webhook": url})).send().unwrap();
        assert_eq!(r.status(), 422, "{url} was accepted");
    }
}

/// Requests the API refuses (an unknown execution, a role too low, a step
/// not waiting, a decision already made) are audited as refused, or not
/// at all: the log never shows a change that was not made.
#[test]
fn refused_requests_are_never_audited_as_changes() {
    let dir = tempdir("audit-refused");
    let dead = free_port();
    std::fs::create_dir_all(dir.join("runbooks")).unwrap();
    std::fs::write(
        dir.join("runbooks/checkout.yaml"),
        "name: checkout-failover\nsteps:\n  - id: approve\n    action: approval\n    with: { role: admin, prompt: \"Move checkout?\" }\n  - id: after\n    action: exec\n    with: { command: [\"true\"] }\n    needs: [approve]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("drctl.yaml"),
        format!(
            "version: 1\nname: shop\nzones:\n  - {{ name: az1, region: r1 }}\n  - {{ name: az2, region: r1 }}\n\
             objectives:\n  tier-0: {{ rpo: 5s, rto: 2m }}\n\
             datastores:\n  - name: orders-db\n    kind: postgres\n    primary: {{ zone: az1, url: \"postgres://u@127.0.0.1:{dead}/p\" }}\n    replicas: [ {{ zone: az2, url: \"postgres://u@127.0.0.1:{dead}/p\" }} ]\n\
             services:\n  - {{ name: checkout, tier: tier-0, zones: [az1, az2], failover: {{ runbook: runbooks/checkout.yaml }} }}\n"
        ),
    )
    .unwrap();
    let token = |name: &str, role: &str| {
        let out = drctl_default(&dir).args(["token", "create", "--name", name, "--role", role]).output().unwrap();
        assert!(out.status.success(), "{}", show(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let (viewer, commander, admin) = (token("watcher", "viewer"), token("ic", "commander"), token("root", "admin"));
    let srv = serve(&dir, &[]);
    let c = client();
    let post = |path: &str, token: &str, body: Value| {
        let r = c.post(format!("{}{path}", srv.base)).bearer_auth(token).json(&body).send().unwrap();
        let status = r.status().as_u16();
        (status, r.text().unwrap_or_default())
    };
    let audit = || -> Vec<Value> {
        let out = drctl_default(&dir).args(["audit", "list", "--output", "json"]).output().unwrap();
        assert!(out.status.success(), "{}", show(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };

    // A preflight refusal: audited, as refused.
    let (status, body) = post("/api/v1/declare", &commander, json!({"targets": ["orders-db"], "reason": "drill"}));
    assert_eq!(status, 409, "{body}");

    let (status, body) = post("/api/v1/declare", &commander, json!({"targets": ["checkout"], "reason": "drill"}));
    assert_eq!(status, 202, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"].as_str().unwrap().to_string();
    wait_for("the approval step", 30, || {
        let v: Value = c
            .get(format!("{}/api/v1/executions/{id}", srv.base))
            .bearer_auth(&viewer)
            .send()
            .and_then(|r| r.json())
            .unwrap_or_default();
        v["steps"].as_array().is_some_and(|s| s.iter().any(|s| s["state"] == "waiting_approval"))
    });
    let before = audit().len();

    // Not found, not the caller's to decide, not waiting: none of them a change.
    let step = json!({"step": "checkout/approve"});
    for (path, body) in [
        ("/api/v1/executions/no-such-execution/approve", step.clone()),
        ("/api/v1/executions/no-such-execution/abort", json!({})),
        ("/api/v1/executions/no-such-execution/retry", step.clone()),
        ("/api/v1/executions/no-such-execution/skip", step.clone()),
    ] {
        let (status, body) = post(path, &commander, body);
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (status, body) = post("/api/v1/incidents/999/report/publish", &admin, json!({}));
    assert_eq!(status, 404, "{body}");
    let (status, body) = post(&format!("/api/v1/executions/{id}/approve"), &viewer, step.clone());
    assert_eq!(status, 403, "{body}");
    let (status, body) = post(&format!("/api/v1/executions/{id}/retry"), &commander, step.clone());
    assert!(status == 409 || status == 422, "{status} {body}");
    assert_eq!(audit().len(), before, "a request refused before it reached anything is not audited");

    // An approval that needs an admin, asked by a commander: kept, as refused.
    let (status, body) = post(&format!("/api/v1/executions/{id}/approve"), &commander, step.clone());
    assert_eq!(status, 403, "{body}");
    let (status, body) = post(&format!("/api/v1/executions/{id}/approve"), &admin, step.clone());
    assert_eq!(status, 200, "{body}");
    // Approved again: nothing changes, nothing is audited.
    let (status, body) = post(&format!("/api/v1/executions/{id}/approve"), &admin, step.clone());
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["already"], true, "{body}");
    wait_for("the execution to end", 30, || {
        let v: Value = c
            .get(format!("{}/api/v1/executions/{id}", srv.base))
            .bearer_auth(&viewer)
            .send()
            .and_then(|r| r.json())
            .unwrap_or_default();
        v["state"] == "succeeded"
    });
    // Aborting what has ended changes nothing.
    let (status, body) = post(&format!("/api/v1/executions/{id}/abort"), &commander, json!({}));
    assert_eq!(status, 200, "{body}");

    let entries = audit();
    for e in &entries {
        assert!(["done", "refused", "dry_run"].contains(&e["outcome"].as_str().unwrap_or_default()), "{e:#}");
        assert!(!e["target"].as_str().unwrap_or_default().contains("no-such-execution"), "{e:#}");
        assert!(
            !["abort", "retry", "skip", "report.publish"].contains(&e["action"].as_str().unwrap_or_default()),
            "{e:#}"
        );
    }
    let of = |action: &str| entries.iter().filter(|e| e["action"] == action).collect::<Vec<_>>();
    let refused = of("declare.refused");
    assert_eq!(refused.len(), 1, "{entries:#?}");
    assert_eq!(refused[0]["outcome"], "refused");
    let refused = of("approve.refused");
    assert_eq!(refused.len(), 1, "{entries:#?}");
    assert_eq!((refused[0]["outcome"].as_str(), refused[0]["actor"].as_str()), (Some("refused"), Some("ic")));
    let approved = of("approve");
    assert_eq!(approved.len(), 1, "approved once, audited once: {entries:#?}");
    assert_eq!((approved[0]["outcome"].as_str(), approved[0]["actor"].as_str()), (Some("done"), Some("root")));
    assert_eq!(of("declare").len(), 1, "{entries:#?}");
    assert_eq!(of("declare")[0]["outcome"], "done");
    let _ = std::fs::remove_dir_all(&dir);
}
