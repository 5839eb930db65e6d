//! Highly available controllers (docs/guide/ha-etcd.md) on a real three-member etcd
//! cluster and real PostgreSQL: the leader SIGKILLed while a step waits
//! for approval hands over and every effect runs once; a leader cut off
//! from etcd stops acting before another leads, and no step ever runs
//! under two controllers (counted from what the steps themselves wrote);
//! followers serve the page, forward operator writes, and name the leader;
//! the leader judges a forwarded request by the client it came from, and
//! only when a controller says so.

use drctl_testkit::{free_port, EtcdCluster, PgPair, TcpProxy};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{client, drctl_clean, show, wait_for, wait_listening};

fn drctl(dir: &Path, state: &str) -> Command {
    let mut c = drctl_clean();
    c.current_dir(dir).env("DRCTL_STATE", state);
    c
}

fn tempdir(name: &str) -> PathBuf {
    let d = common::tempdir(&format!("ha-{name}"));
    std::fs::create_dir_all(d.join("runbooks")).unwrap();
    d
}

/// A `drctl serve` process, SIGKILLed on drop; its log is kept in the folder.
struct Controller {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Controller {
    fn start(dir: &Path, state: &str, id: &str) -> Controller {
        Controller::start_with(dir, state, id, &[])
    }

    fn start_with(dir: &Path, state: &str, id: &str, extra: &[&str]) -> Controller {
        let port = free_port();
        let log = dir.join(format!("{id}.log"));
        let child = drctl(dir, state)
            .args(["serve", "-f", "drctl.yaml", "--sample-every", "500ms", "--lease-ttl", "3s", "--id", id])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        wait_listening(port, &format!("serve {id}"));
        Controller { child, base: format!("http://127.0.0.1:{port}"), log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn leader(&self, c: &reqwest::blocking::Client) -> serde_json::Value {
        c.get(format!("{}/api/v1/leader", self.base)).send().and_then(|r| r.json()).unwrap_or(serde_json::Value::Null)
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
    }
}

fn token(dir: &Path, state: &str) -> String {
    let out = drctl(dir, state).args(["token", "create", "--name", "ic", "--role", "commander"]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn execution(c: &reqwest::blocking::Client, base: &str, token: &str, id: &str) -> serde_json::Value {
    c.get(format!("{base}/api/v1/executions/{id}")).bearer_auth(token).send().unwrap().json().unwrap()
}

fn step<'a>(v: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    v["steps"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap_or_else(|| panic!("no step {id}: {v:#}"))
}

#[test]
fn the_leader_killed_at_an_approval_hands_over_and_every_effect_runs_once() {
    let pg = PgPair::start();
    let etcd = EtcdCluster::start(3);
    let state = etcd.url("handover");
    let dir = tempdir("handover");
    let effects = dir.join("effects.log");
    let effect = |name: &str| {
        format!("{{ command: [\"sh\", \"-c\", \"echo {name} $DRCTL_EXECUTION $PPID >> {}\"] }}", effects.display())
    };
    std::fs::write(
        dir.join("runbooks/checkout.yaml"),
        format!(
            "name: checkout-failover\nsteps:\n  - id: before\n    action: exec\n    with: {}\n  - id: approve\n    action: approval\n    with: {{ role: commander, prompt: \"Move checkout?\" }}\n    needs: [before]\n  - id: after\n    action: exec\n    with: {}\n    needs: [approve]\n",
            effect("before"),
            effect("after")
        ),
    )
    .unwrap();
    std::fs::write(dir.join("drctl.yaml"), pg.shop_topology("", ", failover: { runbook: runbooks/checkout.yaml }"))
        .unwrap();
    let token = token(&dir, &state);
    let c = client();

    let mut a = Controller::start(&dir, &state, "az1-ctl");
    wait_for("az1-ctl to lead", 20, || a.leader(&c)["leading"] == true);
    let b = Controller::start(&dir, &state, "az2-ctl");
    let who = b.leader(&c);
    assert_eq!(
        (who["self"].as_str(), who["leader"].as_str(), who["leading"].as_bool()),
        (Some("az2-ctl"), Some("az1-ctl"), Some(false)),
        "{who}"
    );
    assert_eq!(who["url"], a.base.as_str());

    // A follower serves the page and the status the leader measured.
    wait_for("the follower to serve the leader's measurement", 20, || {
        let v: serde_json::Value =
            c.get(format!("{}/api/v1/status", b.base)).send().and_then(|r| r.json()).unwrap_or_default();
        v["datastores"][0]["name"] == "orders-db"
    });
    let page = c.get(format!("{}/", b.base)).send().unwrap().text().unwrap();
    assert!(page.contains("orders-db") && page.contains("checkout"), "{page}");

    // Declared through the follower: forwarded to the leader, which runs it.
    let r = c
        .post(format!("{}/api/v1/declare", b.base))
        .bearer_auth(&token)
        .json(&serde_json::json!({"targets": ["orders-db", "checkout"], "reason": "ha drill"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "{}\n{}", r.text().unwrap_or_default(), b.log());
    let id = r.json::<serde_json::Value>().unwrap()["id"].as_str().unwrap().to_string();
    wait_for("the approval step", 30, || {
        step(&execution(&c, &b.base, &token, &id), "checkout/approve")["state"] == "waiting_approval"
    });

    // The leader dies with its zone.
    let killed = Instant::now();
    let a_pid = a.pid();
    a.kill();
    wait_for("az2-ctl to lead", 20, || b.leader(&c)["leading"] == true);
    let takeover = killed.elapsed();
    eprintln!("takeover after SIGKILL of the leader: {:.2} s (lease TTL 3 s)", takeover.as_secs_f64());
    assert!(takeover < Duration::from_secs(3 + 2), "takeover took {takeover:?}\n{}", b.log());

    let r = c
        .post(format!("{}/api/v1/executions/{id}/approve", b.base))
        .bearer_auth(&token)
        .json(&serde_json::json!({"step": "checkout/approve"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
    wait_for("the execution to succeed under the new leader", 30, || {
        execution(&c, &b.base, &token, &id)["state"] == "succeeded"
    });
    let v = execution(&c, &b.base, &token, &id);
    assert_eq!(step(&v, "orders-db/failover")["attempts"], 1, "PostgreSQL was promoted once: {v:#}");
    let ran_by = |s: &str| step(&v, s)["ran_by"].as_str().unwrap_or_default().to_string();
    assert!(ran_by("checkout/before").starts_with("controller:az1-ctl:"), "{v:#}");
    assert!(ran_by("checkout/after").starts_with("controller:az2-ctl:"), "{v:#}");

    // Every effect once: the steps' own record of what they did.
    let lines: Vec<String> = std::fs::read_to_string(&effects).unwrap().lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0], format!("before {id} {a_pid}"));
    assert_eq!(lines[1], format!("after {id} {}", b.pid()));
    assert_eq!(pg.psql(pg.standby_port, "SELECT pg_is_in_recovery()"), "f", "the standby was promoted");

    // The page exported from the shared state, with the leader gone.
    let export = drctl(&dir, &state).args(["status-page", "export", "site"]).output().unwrap();
    assert!(export.status.success(), "{}", show(&export));
    assert!(std::fs::read_to_string(dir.join("site/index.html")).unwrap().contains("orders-db"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_leader_cut_off_from_etcd_stops_before_another_runs_its_step() {
    let pg = PgPair::start();
    let etcd = EtcdCluster::start(3);
    let dir = tempdir("cutoff");
    let ticks = dir.join("ticks.log");
    // A long step that says, every 100 ms, which controller runs it (its parent).
    std::fs::write(
        dir.join("runbooks/checkout.yaml"),
        format!(
            "name: checkout-failover\nsteps:\n  - id: tick\n    action: exec\n    idempotent: true\n    with: {{ command: [\"sh\", \"-c\", \"i=0; while [ $i -lt 30 ]; do echo $PPID $(date +%s%N) >> {}; sleep 0.1; i=$((i+1)); done\"] }}\n",
            ticks.display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("drctl.yaml"), pg.shop_topology("", ", failover: { runbook: runbooks/checkout.yaml }"))
        .unwrap();
    // az1-ctl reaches etcd through one proxy the test cuts; az2-ctl directly.
    let proxy = TcpProxy::start(etcd.ports[0]);
    let cut_off_url = format!("etcd://127.0.0.1:{}/cutoff", proxy.port);
    let state = etcd.url("cutoff");
    let token = token(&dir, &state);
    let c = client();
    let a = Controller::start(&dir, &cut_off_url, "az1-ctl");
    wait_for("az1-ctl to lead", 20, || a.leader(&c)["leading"] == true);
    let b = Controller::start(&dir, &state, "az2-ctl");
    wait_for("az2-ctl to follow", 20, || b.leader(&c)["leader"] == "az1-ctl");

    let r = c
        .post(format!("{}/api/v1/declare", a.base))
        .bearer_auth(&token)
        .json(&serde_json::json!({"targets": ["checkout"], "reason": "partition drill"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().unwrap_or_default());
    let id = r.json::<serde_json::Value>().unwrap()["id"].as_str().unwrap().to_string();
    let by = |pid: u32| {
        std::fs::read_to_string(&ticks)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(p, _)| p.parse::<u32>().ok() == Some(pid))
            .filter_map(|(_, t)| t.parse::<u128>().ok())
            .collect::<Vec<_>>()
    };
    wait_for("the step to run on az1-ctl", 20, || by(a.pid()).len() >= 5);

    let cut = Instant::now();
    proxy.cut();
    wait_for("az2-ctl to lead", 20, || b.leader(&c)["leading"] == true);
    let takeover = cut.elapsed();
    eprintln!("takeover after cutting the leader off etcd: {:.2} s (lease TTL 3 s)", takeover.as_secs_f64());
    wait_for("the execution to succeed under az2-ctl", 30, || {
        execution(&c, &b.base, &token, &id)["state"] == "succeeded"
    });

    let (from_a, from_b) = (by(a.pid()), by(b.pid()));
    assert!(!from_b.is_empty(), "az2-ctl ran the step again (idempotent, caught running)");
    let last_a = *from_a.iter().max().unwrap();
    let first_b = *from_b.iter().min().unwrap();
    assert!(
        last_a < first_b,
        "the step ran under two controllers at once: az1-ctl ticked until {last_a}, az2-ctl from {first_b}"
    );
    assert_eq!(from_b.len(), 30, "az2-ctl ran it once, whole");
    assert!(a.log().contains("lost the lead"), "{}", a.log());
    let v = execution(&c, &b.base, &token, &id);
    assert!(step(&v, "checkout/tick")["ran_by"].as_str().unwrap_or_default().starts_with("controller:az2-ctl:"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A client bound to one loopback address (Linux answers on all of 127/8).
fn client_from(ip: &str) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .local_address(ip.parse::<std::net::IpAddr>().unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[test]
fn the_leader_limits_the_client_a_follower_forwards_for_and_ignores_forged_headers() {
    let etcd = EtcdCluster::start(1);
    let state = etcd.url("forwarded");
    let dir = tempdir("forwarded");
    // No datastore answers: nothing here needs one.
    let dead = free_port();
    std::fs::write(
        dir.join("drctl.yaml"),
        format!(
            "version: 1\nname: shop\nzones:\n  - {{ name: az1, region: r1 }}\n  - {{ name: az2, region: r1 }}\n\
             objectives:\n  tier-0: {{ rpo: 5s, rto: 2m }}\n\
             datastores:\n  - name: orders-db\n    kind: postgres\n    primary: {{ zone: az1, url: \"postgres://u@127.0.0.1:{dead}/p\" }}\n    replicas: [ {{ zone: az2, url: \"postgres://u@127.0.0.1:{dead}/p\" }} ]\n\
             services:\n  - {{ name: checkout, tier: tier-0, zones: [az1, az2], depends_on: [orders-db] }}\n"
        ),
    )
    .unwrap();
    let out = drctl(&dir, &state).args(["token", "create", "--name", "ops", "--role", "operator"]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let operator = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let c = client();
    let a = Controller::start_with(&dir, &state, "az1-ctl", &["--allow-private-webhooks"]);
    wait_for("az1-ctl to lead", 20, || a.leader(&c)["leading"] == true);
    let b = Controller::start_with(&dir, &state, "az2-ctl", &["--allow-private-webhooks"]);
    wait_for("az2-ctl to follow", 20, || b.leader(&c)["leader"] == "az1-ctl");

    let subscribe = |from: &reqwest::blocking::Client, base: &str, n: u32, headers: &[(&str, &str)]| {
        let mut r = from
            .post(format!("{base}/api/v1/subscriptions"))
            .json(&serde_json::json!({"webhook": format!("http://127.0.0.1:9/hook-{n}")}));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let r = r.send().unwrap();
        let status = r.status().as_u16();
        (status, r.text().unwrap_or_default())
    };

    // A client through the follower has its network's five subscriptions,
    // then waits: counted by the leader against its own network.
    let x = client_from("127.0.1.5");
    for n in 0..5 {
        let (status, body) = subscribe(&x, &b.base, n, &[]);
        assert_eq!(status, 201, "{body}\n{}\n{}", a.log(), b.log());
    }
    let (status, body) = subscribe(&x, &b.base, 5, &[]);
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("this network"), "{body}");

    // Another network through the same follower has its own allowance:
    // the follower's clients do not share one.
    let y = client_from("127.0.2.5");
    let (status, body) = subscribe(&y, &b.base, 10, &[]);
    assert_eq!(status, 201, "the leader judged the follower, not the client: {body}");

    // A client in the used-up network forging the headers, straight to the
    // leader: ignored, judged by its own address.
    let z = client_from("127.0.1.9");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
    let forged_proof = format!("{now}.{}", "0".repeat(64));
    let forged = [
        ("x-drctl-forwarded-by", "az2-ctl"),
        ("x-drctl-forwarded-for", "127.0.3.3"),
        ("x-drctl-forwarded-proof", forged_proof.as_str()),
    ];
    let (status, body) = subscribe(&z, &a.base, 20, &forged);
    assert_eq!(status, 429, "a forged header counted: {body}");
    // The same through the follower: stripped, and forwarded for the real client.
    let (status, body) = subscribe(&z, &b.base, 21, &forged);
    assert_eq!(status, 429, "a forged header counted: {body}");
    let (status, body) = subscribe(&z, &b.base, 22, &[("x-drctl-forwarded-for", "127.0.4.4")]);
    assert_eq!(status, 429, "a forged header counted: {body}");

    // The audit log names the client, not the follower.
    let r = client_from("127.0.5.7")
        .post(format!("{}/api/v1/incidents", b.base))
        .bearer_auth(&operator)
        .json(&serde_json::json!({"title": "Slow checkout", "status": "investigating"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap_or_default());
    let r = client_from("127.0.5.8")
        .post(format!("{}/api/v1/incidents", a.base))
        .bearer_auth(&operator)
        .header("x-drctl-forwarded-for", "10.1.2.3")
        .json(&serde_json::json!({"title": "Slow search", "status": "investigating"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap_or_default());
    let out = drctl(&dir, &state).args(["audit", "list", "--output", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let source_of = |title: &str| {
        entries
            .iter()
            .find(|e| e["request"]["title"] == title)
            .map(|e| e["source"].as_str().unwrap_or_default().to_string())
            .unwrap_or_else(|| panic!("no entry for {title}: {entries:#?}"))
    };
    assert_eq!(source_of("Slow checkout"), "127.0.5.7");
    assert_eq!(source_of("Slow search"), "127.0.5.8");
    let _ = std::fs::remove_dir_all(&dir);
}
