//! Highly available controllers (docs/guide/ha-etcd.md) on a real three-member etcd
//! cluster and real PostgreSQL: the leader SIGKILLed while a step waits
//! for approval hands over and every effect runs once; a leader cut off
//! from etcd stops acting before another leads, and no step ever runs
//! under two controllers (counted from what the steps themselves wrote);
//! followers serve the page, forward operator writes, and name the leader.

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
        let port = free_port();
        let log = dir.join(format!("{id}.log"));
        let child = drctl(dir, state)
            .args(["serve", "-f", "drctl.yaml", "--sample-every", "500ms", "--lease-ttl", "3s", "--id", id])
            .args(["--listen", &format!("127.0.0.1:{port}")])
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
