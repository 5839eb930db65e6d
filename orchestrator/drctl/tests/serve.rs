//! `drctl serve` through real HTTP, with a real PostgreSQL pair: the status
//! page and its JSON follow a paused standby's RPO; every role against every
//! operator endpoint; user text is escaped; the audit chain verifies and a
//! tampered entry is named; a declaration through the API fails over and
//! shows on the page; the page in headless Chromium, in both languages;
//! TLS; a clean shutdown on SIGTERM.

use drctl_testkit::{free_port, PgPair, TestCa};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::*;

fn topology(dir: &Path, pg: &PgPair) {
    std::fs::write(dir.join("drctl.yaml"), pg.shop_topology("    failover: { estimate: 5s, max_lag: 1h }\n", ""))
        .unwrap();
}

fn status_json(c: &reqwest::blocking::Client, base: &str) -> serde_json::Value {
    c.get(format!("{base}/api/v1/status")).send().unwrap().json().unwrap()
}

#[test]
fn the_controller_serves_the_page_the_api_and_the_audit_log() {
    let pg = PgPair::start_with_cuttable_link();
    pg.psql(pg.primary_port, "CREATE TABLE orders (id serial PRIMARY KEY, at timestamptz DEFAULT now())");
    let dir = std::env::temp_dir().join(format!("drctl-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    topology(&dir, &pg);
    let tokens: Vec<(&str, String)> =
        ["viewer", "operator", "commander", "admin"].iter().map(|r| (*r, token(&dir, &format!("t-{r}"), r))).collect();
    let srv = start(&dir, &[], "http");
    let c = client();
    wait_for("a first measurement", 20, || status_json(&c, &srv.base)["at"].is_string());

    // Public faces.
    for (path, ct) in [
        ("/", "text/html"),
        ("/api/v1/status", "application/json"),
        ("/api/v2/summary.json", "application/json"),
        ("/api/v2/status.json", "application/json"),
        ("/feed.atom", "application/atom+xml"),
        ("/metrics", "text/plain"),
        ("/api/v1/openapi.json", "application/json"),
        ("/static/status.css", "text/css"),
    ] {
        let r = c.get(format!("{}{path}", srv.base)).send().unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with(ct), "{path}");
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"), "{path}: {csp}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    }
    for path in [
        "components.json",
        "incidents.json",
        "incidents/unresolved.json",
        "scheduled-maintenances.json",
        "scheduled-maintenances/upcoming.json",
        "scheduled-maintenances/active.json",
    ] {
        let r = c.get(format!("{}/api/v2/{path}", srv.base)).send().unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let v: serde_json::Value = r.json().unwrap();
        assert_eq!(v["page"]["name"], "shop", "{path}");
    }
    assert_eq!(c.get(format!("{}/api/v2/nothing.json", srv.base)).send().unwrap().status(), 404);
    let summary: serde_json::Value = c.get(format!("{}/api/v2/summary.json", srv.base)).send().unwrap().json().unwrap();
    assert_eq!(summary["components"][0]["name"], "checkout");
    assert_eq!(summary["status"]["indicator"], "none", "{summary:#}");

    // A standby cut off from its primary: RPO climbs in the JSON, the page and the metrics.
    pg.cut_link();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(7) {
        pg.psql(pg.primary_port, "INSERT INTO orders DEFAULT VALUES");
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_for("RPO over the 5 s target", 10, || {
        let s = status_json(&c, &srv.base);
        s["datastores"][0]["rpo_s"].as_f64().unwrap_or(0.0) > 5.0 && s["datastores"][0]["meets_rpo"] == false
    });
    let page = c.get(format!("{}/", srv.base)).send().unwrap().text().unwrap();
    assert!(page.contains("Degraded performance"), "the banner says so");
    let row = page.split("<th scope=\"row\">orders-db</th>").nth(1).unwrap();
    assert!(
        row.trim_start().starts_with("<td><span class=\"miss\">"),
        "orders-db's RPO is shown as missed: {}",
        &row[..200]
    );
    let metrics = c.get(format!("{}/metrics", srv.base)).send().unwrap().text().unwrap();
    let rpo_line = metrics.lines().find(|l| l.starts_with("drctl_rpo_seconds{datastore=\"orders-db\"}")).unwrap();
    assert!(rpo_line.rsplit(' ').next().unwrap().parse::<f64>().unwrap() > 5.0, "{rpo_line}");
    pg.restore_link();
    wait_for("RPO back to about 0", 15, || {
        status_json(&c, &srv.base)["datastores"][0]["rpo_s"].as_f64().unwrap_or(9.0) < 1.0
    });

    // Every role against every operator endpoint.
    // (method, path, body, least role, the answer expected from it: None is any 2xx)
    let endpoints: Vec<(&str, String, serde_json::Value, usize, Option<u16>)> = vec![
        ("GET", "/api/v1/incidents".into(), serde_json::Value::Null, 0, None),
        ("GET", "/api/v1/executions".into(), serde_json::Value::Null, 0, None),
        ("POST", "/api/v1/incidents".into(), serde_json::json!({"title": "t", "status": "investigating"}), 1, None),
        (
            "POST",
            "/api/v1/incidents/1/updates".into(),
            serde_json::json!({"status": "identified", "body": "b"}),
            1,
            None,
        ),
        (
            "POST",
            "/api/v1/maintenance".into(),
            serde_json::json!({"title": "m", "starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-01T01:00:00Z"}),
            1,
            None,
        ),
        ("POST", "/api/v1/drills".into(), serde_json::json!({"experiment": "missing.yaml"}), 1, Some(422)),
        (
            "POST",
            "/api/v1/declare".into(),
            serde_json::json!({"targets": ["orders-db"], "reason": "r", "dry_run": true}),
            2,
            None,
        ),
        ("POST", "/api/v1/executions/none/approve".into(), serde_json::json!({"step": "x"}), 2, Some(404)),
        ("POST", "/api/v1/executions/none/abort".into(), serde_json::json!({}), 2, Some(404)),
        ("GET", "/api/v1/audit".into(), serde_json::Value::Null, 3, None),
    ];
    for (method, path, body, need, expected) in &endpoints {
        let send = |auth: Option<&str>| {
            let mut r = match *method {
                "GET" => c.get(format!("{}{path}", srv.base)),
                _ => c.post(format!("{}{path}", srv.base)).json(body),
            };
            if let Some(t) = auth {
                r = r.bearer_auth(t);
            }
            r.send().unwrap().status().as_u16()
        };
        assert_eq!(send(None), 401, "{method} {path} without a token");
        assert_eq!(send(Some("drctl_forged")), 401, "{method} {path} with a forged token");
        for (i, (role, tok)) in tokens.iter().enumerate() {
            let code = send(Some(tok));
            if i < *need {
                assert_eq!(code, 403, "{method} {path} as {role}");
            } else if let Some(expected) = expected {
                assert_eq!(code, *expected, "{method} {path} as {role}");
            } else {
                assert!((200..300).contains(&code), "{method} {path} as {role}: {code}");
            }
        }
    }
    let operator = &tokens[1].1;
    let commander = &tokens[2].1;

    // User text is text.
    let r = c
        .post(format!("{}/api/v1/incidents", srv.base))
        .bearer_auth(operator)
        .json(&serde_json::json!({"title": "Checkout <script>alert(1)</script> slow", "status": "investigating", "body": "Looking <b>into</b> it", "services": ["checkout"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let page = c.get(format!("{}/", srv.base)).send().unwrap().text().unwrap();
    assert!(
        page.contains("Checkout &lt;script&gt;alert(1)&lt;/script&gt; slow") && !page.contains("<script"),
        "escaped"
    );
    assert!(page.contains("Looking &lt;b&gt;into&lt;/b&gt; it"));
    let unresolved: serde_json::Value =
        c.get(format!("{}/api/v2/incidents/unresolved.json", srv.base)).send().unwrap().json().unwrap();
    let names: Vec<&str> =
        unresolved["incidents"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"Checkout <script>alert(1)</script> slow"),
        "Statuspage JSON carries the text as is: {names:?}"
    );
    let feed = c.get(format!("{}/feed.atom", srv.base)).send().unwrap().text().unwrap();
    assert!(!feed.contains("<script") && feed.contains("Checkout &lt;script&gt;"), "the feed escapes too");
    let big = "x".repeat(70 * 1024);
    let r = c
        .post(format!("{}/api/v1/incidents", srv.base))
        .bearer_auth(operator)
        .json(&serde_json::json!({"title": "t", "status": "investigating", "body": big}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 413, "requests are size-limited");

    // A declaration through the API: the same engine, and the page shows the incident it opened.
    let r = c
        .post(format!("{}/api/v1/declare", srv.base))
        .bearer_auth(commander)
        .json(&serde_json::json!({"targets": ["orders-db"], "reason": "drill through the API"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().unwrap_or_default());
    let declared: serde_json::Value = r.json().unwrap();
    let declared_id = declared["id"].as_str().expect("the declaration answers its execution's id").to_string();
    assert!(declared["incident"].is_i64(), "and the incident it opened: {declared:#}");
    wait_for("the failover to finish and the incident to say so", 60, || {
        let page = c.get(format!("{}/", srv.base)).send().unwrap().text().unwrap();
        page.contains("Failover in progress: orders-db") && page.contains("Failover completed in")
    });
    assert_eq!(pg.psql(pg.standby_port, "SELECT pg_is_in_recovery()"), "f", "the standby was promoted");
    let page = c.get(format!("{}/", srv.base)).send().unwrap().text().unwrap();
    assert!(!page.contains("drill through the API"), "the declaration's reason is internal, not on the public page");
    let execs: serde_json::Value =
        c.get(format!("{}/api/v1/executions", srv.base)).bearer_auth(&tokens[0].1).send().unwrap().json().unwrap();
    assert_eq!(
        (execs[0]["id"].as_str(), execs[0]["state"].as_str()),
        (Some(declared_id.as_str()), Some("succeeded")),
        "{execs:#}"
    );

    // Failing back onto the fenced old primary is refused, and the refusal is
    // journaled exactly as one from the CLI is.
    let r = c
        .post(format!("{}/api/v1/declare", srv.base))
        .bearer_auth(commander)
        .json(&serde_json::json!({"targets": ["orders-db"], "reason": "failback through the API"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 409);
    let refused: serde_json::Value = r.json().unwrap();
    let refused_id = refused["id"].as_str().expect("a refusal names its journaled execution").to_string();
    let list = drctl(&dir).args(["executions", "--output", "json"]).output().unwrap();
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let row = list.as_array().unwrap().iter().find(|e| e["id"] == refused_id.as_str()).expect("in `drctl executions`");
    assert_eq!(row["state"], "refused");

    // Headless Chromium renders the page in both languages.
    match chromium() {
        Some(browser) => {
            let shots = Path::new(env!("CARGO_TARGET_TMPDIR"));
            let en = render(&browser, &format!("{}/?lang=en", srv.base), &shots.join("status-page-en.png"));
            assert!(
                en.contains("Checkout &lt;script&gt;alert(1)&lt;/script&gt; slow")
                    && en.contains("Data at risk now (RPO)"),
                "{en}"
            );
            assert!(en.contains("orders-db"));
            let ja = render(&browser, &format!("{}/?lang=ja", srv.base), &shots.join("status-page-ja.png"));
            assert!(ja.contains("現在失われうるデータ（RPO）") && ja.contains("対応中のインシデント"), "{ja}");
            assert!(ja.contains("Checkout &lt;script&gt;"));
        }
        None if std::env::var_os("DRCTL_REQUIRE_CHROMIUM").is_some() => {
            panic!("chromium is required (DRCTL_REQUIRE_CHROMIUM)")
        }
        None => eprintln!("skipping the Chromium check: no chromium on this machine (.ci/run installs it)"),
    }

    // The audit log: every change above, chained; an edit is caught.
    let out = drctl(&dir).args(["audit", "verify"]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    let head = said.split("head ").nth(1).and_then(|h| h.split_whitespace().next()).unwrap().to_string();
    let out = drctl(&dir).args(["audit", "verify", "--head", &head]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let list = drctl(&dir).args(["audit", "list", "--output", "json"]).output().unwrap();
    let entries: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let actions: Vec<&str> = entries.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for a in ["token.create", "incident.create", "incident.update", "maintenance.create", "declare", "declare.refused"]
    {
        assert!(actions.contains(&a), "{a} audited: {actions:?}");
    }
    let declare = entries.as_array().unwrap().iter().find(|e| e["action"] == "declare").unwrap();
    assert_eq!(declare["actor"], "t-commander");
    assert_eq!(declare["source"], "127.0.0.1");
    assert!(!list.stdout.windows(6).any(|w| w == b"drctl_"), "no token secret in the audit log");
    // A removed tail still chains; the head kept elsewhere catches it.
    let db = dir.join("state.db");
    let cut = Command::new("sqlite3")
        .arg(&db)
        .arg("DROP TRIGGER audit_is_append_only_delete; DELETE FROM audit WHERE seq = (SELECT MAX(seq) FROM audit);")
        .output()
        .expect("the sqlite3 command (apt-get install sqlite3)");
    assert!(cut.status.success(), "{cut:?}");
    // Every writer appends its heads to a file beside the store: a cut
    // tail fails without being given a head.
    let out = drctl(&dir).args(["audit", "verify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "a cut tail verified: {}", show(&out));
    let out = drctl(&dir).args(["audit", "verify", "--head", &head]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no longer contains the head you kept"), "{}", show(&out));
    let tamper = Command::new("sqlite3")
        .arg(&db)
        .arg("DROP TRIGGER audit_is_append_only_update; UPDATE audit SET actor = 'mallory' WHERE seq = 3;")
        .output();
    // sqlite3 is a test requirement (.ci/run installs it): never skipped.
    let tamper = tamper.expect("the sqlite3 command (apt-get install sqlite3)");
    assert!(tamper.status.success(), "{tamper:?}");
    let out = drctl(&dir).args(["audit", "verify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("entry 3"), "{}", show(&out));

    // Someone lifts the fence on the old primary behind drctl's back: two
    // members take writes. The JSON, the metrics and the page say split brain.
    pg.unfence_primary();
    wait_for("split brain in the status", 15, || status_json(&c, &srv.base)["datastores"][0]["split_brain"] == true);
    let metrics = c.get(format!("{}/metrics", srv.base)).send().unwrap().text().unwrap();
    assert!(metrics.contains("drctl_split_brain{datastore=\"orders-db\"} 1"), "{metrics}");
    let page = c.get(format!("{}/", srv.base)).send().unwrap().text().unwrap();
    assert!(page.contains("two copies accept writes at once"), "the page tells customers");

    // SIGTERM: a clean stop.
    let mut srv = srv;
    unsafe {
        libc::kill(srv.child.id() as i32, libc::SIGTERM);
    }
    let status = srv.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tls_with_a_certificate_and_hsts() {
    let dir = std::env::temp_dir().join(format!("drctl-serve-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("drctl.yaml"),
        "version: 1\nname: tiny\nzones:\n  - { name: az1, region: r1 }\nobjectives:\n  tier-0: { rpo: 5s, rto: 2m }\nservices:\n  - { name: web, tier: tier-0 }\n",
    )
    .unwrap();
    TestCa::new(&dir).issue("cert.pem", "key.pem", "127.0.0.1", "serverAuth");
    let bad = drctl(&dir).args(["serve", "--tls-cert", "key.pem", "--tls-key", "key.pem"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "a key is not a certificate: {}", show(&bad));
    let admin = token(&dir, "root", "admin");
    let srv = start(&dir, &["--tls-cert", "cert.pem", "--tls-key", "key.pem", "--allow", "10.0.0.0/8"], "https");
    let cert = reqwest::Certificate::from_pem(&std::fs::read(dir.join("ca.pem")).unwrap()).unwrap();
    let c = reqwest::blocking::Client::builder().no_proxy().add_root_certificate(cert).build().unwrap();
    let r = c.get(format!("{}/", srv.base)).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    // --allow: the operator API refuses clients outside the allowed networks, even an admin.
    let r = c.get(format!("{}/api/v1/audit", srv.base)).bearer_auth(&admin).send().unwrap();
    assert_eq!(r.status(), 403, "127.0.0.1 is outside 10.0.0.0/8");
    assert!(r.text().unwrap().contains("127.0.0.1 may not use the operator API"));
    let plain = reqwest::blocking::Client::builder().no_proxy().build().unwrap();
    assert!(plain.get(srv.base.replace("https", "http") + "/").send().is_err(), "no plain HTTP on a TLS port");
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A topology with nothing to measure: the server's limits alone.
fn quiet_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("drctl-serve-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("drctl.yaml"),
        "version: 1\nzones: [ { name: az1 }, { name: az2 } ]\nservices:\n  - { name: web, zones: [az1, az2] }\n",
    )
    .unwrap();
    dir
}

/// One client past its rate is told to wait (429 and Retry-After) while
/// another address is still served.
#[test]
fn a_client_past_its_rate_is_told_to_wait_and_others_are_served() {
    let dir = quiet_dir("rate");
    let server = start(&dir, &["--rate-limit", "5"], "http");
    let c = client();
    let started = Instant::now();
    let answers: Vec<reqwest::blocking::Response> =
        (0..30).map(|_| c.get(format!("{}/api/v1/leader", server.base)).send().unwrap()).collect();
    let elapsed = started.elapsed().as_secs_f64();
    let ok = answers.iter().filter(|r| r.status() == 200).count();
    let limited: Vec<_> = answers.iter().filter(|r| r.status() == 429).collect();
    // A burst of 10, plus what 5/s refilled while the 30 requests ran.
    assert!(ok >= 10 && ok as f64 <= 11.0 + 5.0 * elapsed, "{ok} answered in {elapsed:.2}s");
    assert_eq!(ok + limited.len(), 30);
    assert_eq!(limited[0].headers()["retry-after"], "1");
    // The same server answers another client address at once.
    let other = reqwest::blocking::Client::builder()
        .no_proxy()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .build()
        .unwrap();
    assert_eq!(other.get(format!("{}/api/v1/leader", server.base)).send().unwrap().status(), 200);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Connections that say nothing cannot hold the controller: past
/// --max-connections a new client waits, and gets its answer once the
/// silent ones are closed after --header-timeout.
#[test]
fn silent_connections_cannot_hold_every_slot() {
    use std::io::{Read, Write};
    let dir = quiet_dir("slots");
    let server = start(&dir, &["--max-connections", "2", "--header-timeout", "1s"], "http");
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut silent: Vec<std::net::TcpStream> = (0..2).map(|_| std::net::TcpStream::connect(&addr).unwrap()).collect();
    // The listener's backlog is first in, first out: the silent ones take both slots.
    let started = Instant::now();
    let mut client = std::net::TcpStream::connect(&addr).unwrap();
    client.write_all(b"GET /api/v1/leader HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).unwrap();
    let waited = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(waited >= Duration::from_millis(600), "answered after {waited:?}: the cap did not hold it back");
    assert!(waited < Duration::from_secs(5), "answered after {waited:?}");
    for s in &mut silent {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut rest = Vec::new();
        assert!(s.read_to_end(&mut rest).is_ok(), "the server closed the silent connection");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A drill through the API reads only the topology's own chaos folders
/// (no `..`, no symbolic link out, no oversized file), and one that can
/// change production (not on a lab) needs a commander, not an operator.
#[test]
fn drills_through_the_api_read_only_chaos_folders_and_production_needs_a_commander() {
    let dir = quiet_dir("drills");
    std::fs::create_dir_all(dir.join("chaos")).unwrap();
    std::fs::create_dir_all(dir.join("elsewhere")).unwrap();
    let experiment =
        "name: pause\nfaults:\n  - { kind: latency, target: web, delay: 10ms }\nduration: 1s\ndeclare: manual\n";
    std::fs::write(dir.join("chaos/pause.yaml"), experiment).unwrap();
    std::fs::write(dir.join("elsewhere/pause.yaml"), experiment).unwrap();
    std::os::unix::fs::symlink(dir.join("elsewhere/pause.yaml"), dir.join("chaos/link-out.yaml")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("chaos/passwd.yaml")).unwrap();
    std::fs::write(dir.join("chaos/big.yaml"), format!("{experiment}# {}\n", "x".repeat(300 * 1024))).unwrap();
    let operator = token(&dir, "op", "operator");
    let commander = token(&dir, "cmd", "commander");
    let server = start(&dir, &[], "http");
    let c = client();
    let post = |tok: &str, experiment: &str| {
        let r = c
            .post(format!("{}/api/v1/drills", server.base))
            .bearer_auth(tok)
            .json(&serde_json::json!({ "experiment": experiment }))
            .send()
            .unwrap();
        let code = r.status().as_u16();
        (code, r.text().unwrap())
    };
    for refused in ["chaos/link-out.yaml", "chaos/passwd.yaml", "elsewhere/pause.yaml", "../etc/passwd", "/etc/passwd"]
    {
        let (code, body) = post(&commander, refused);
        assert_eq!(code, 422, "{refused}: {body}");
        assert!(!body.contains("root:"), "{refused}: the file's content leaked: {body}");
    }
    let (code, body) = post(&commander, "chaos/big.yaml");
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("at most 256 KiB"), "{body}");
    let (code, body) = post(&operator, "chaos/pause.yaml");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("runs on production, not on a lab"), "{body}");
    let (code, body) = post(&commander, "chaos/pause.yaml");
    assert_eq!(code, 202, "{body}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A keyed audit log verifies only with its key; its heads go to a file
/// and with the exported page, so a tail cut later is caught; and a change
/// the log cannot record is refused, from the CLI and through the API.
#[test]
fn the_audit_log_is_sealed_and_a_change_it_cannot_record_is_refused() {
    let dir = quiet_dir("audit-seal");
    std::fs::write(dir.join("audit.key"), "9f1c2e7a5b3d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6\n")
        .unwrap();
    let sealed = |c: &mut Command| {
        c.env("DRCTL_AUDIT_KEY_FILE", dir.join("audit.key")).env("DRCTL_AUDIT_HEAD_FILE", dir.join("heads"));
    };
    for name in ["ann", "bob"] {
        let mut c = drctl(&dir);
        sealed(&mut c);
        let out = c.args(["token", "create", "--name", name, "--role", "operator"]).output().unwrap();
        assert!(out.status.success(), "{}", show(&out));
    }
    assert_eq!(std::fs::read_to_string(dir.join("heads")).unwrap().lines().count(), 2);
    let mut verify = drctl(&dir);
    sealed(&mut verify);
    let out = verify.args(["audit", "verify"]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let out = drctl(&dir).args(["audit", "verify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "without the key a keyed log does not verify: {}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("audit key"), "{}", show(&out));
    let out = drctl(&dir).args(["status-page", "export", "site"]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let published = std::fs::read_to_string(dir.join("site/audit-head")).unwrap();
    assert!(published.starts_with("2 "), "{published}");

    // Someone with the database file cuts the last entry off.
    let out = Command::new("sqlite3")
        .arg(dir.join("state.db"))
        .arg("DROP TRIGGER audit_is_append_only_delete; DELETE FROM audit WHERE seq = 2;")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let mut verify = drctl(&dir);
    sealed(&mut verify);
    assert_eq!(
        verify.args(["audit", "verify"]).output().unwrap().status.code(),
        Some(1),
        "the head file every writer appends to catches the cut"
    );
    for head_file in [dir.join("heads"), dir.join("site/audit-head")] {
        let mut verify = drctl(&dir);
        sealed(&mut verify);
        let out = verify.args(["audit", "verify", "--head-file"]).arg(&head_file).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{}: {}", head_file.display(), show(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no longer contains the head"), "{}", show(&out));
    }

    // A head that cannot be written: the CLI's change is not made.
    let unwritable = dir.join("no/such/folder/heads");
    let out = drctl(&dir)
        .env("DRCTL_AUDIT_KEY_FILE", dir.join("audit.key"))
        .env("DRCTL_AUDIT_HEAD_FILE", &unwritable)
        .args(["token", "create", "--name", "carol", "--role", "admin"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was changed"), "{}", show(&out));
    let list = drctl(&dir).args(["token", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&list.stdout).contains("carol"), "{}", show(&list));

    // Nor through the API: 503, and no incident. (The cut tail made good
    // first: a controller does not start on a log that does not verify.)
    std::fs::remove_file(dir.join("heads")).unwrap();
    let mut c = drctl(&dir);
    sealed(&mut c);
    let out = c.args(["token", "create", "--name", "op", "--role", "operator"]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let operator = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let port = free_port();
    let child = drctl(&dir)
        .env("DRCTL_AUDIT_KEY_FILE", dir.join("audit.key"))
        .env("DRCTL_AUDIT_HEAD_FILE", &unwritable)
        .args(["serve", "-f", "drctl.yaml", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server { child, base: format!("http://127.0.0.1:{port}"), port };
    wait_for("serve listening", 30, || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    let c = client();
    let r = c
        .post(format!("{}/api/v1/incidents", server.base))
        .bearer_auth(&operator)
        .json(&serde_json::json!({"title": "unrecorded", "status": "investigating"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.text().unwrap().contains("nothing was changed"));
    let incidents: serde_json::Value =
        c.get(format!("{}/api/v1/incidents", server.base)).bearer_auth(&operator).send().unwrap().json().unwrap();
    assert_eq!(incidents, serde_json::json!([]), "the refused change was not made");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
