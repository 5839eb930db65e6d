//! `drctl restore --replace` of an `rds-instance` (and of an
//! `rds-cluster`, its copy given an instance first) on moto's server: the
//! instance restored to the point takes the primary's identifier (so its
//! endpoint name), the old primary is kept renamed aside, listed read
//! replicas are made again from the new primary; an erasure replay that
//! cannot reach the copy pauses the run before anything is switched; a
//! run SIGKILLed right after a rename took effect (before drctl saw the
//! answer) resumes without restoring or renaming anything twice; so does
//! a cluster's, killed after its instance was added or a rename.
//!
//! moto gives every instance the same `DbiResourceId`, so the instance
//! behind a name is told apart by its `InstanceCreateTime`.

mod aws;
mod common;

use drctl_testkit::Moto;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOPOLOGY: &str = "version: 1
zones:
  - { name: az1, region: us-east-1, aws_zone: us-east-1a }
  - { name: az2, region: us-east-1, aws_zone: us-east-1b }
datastores:
  - name: ledger-db
    kind: rds-instance
    primary: { zone: az1, instance: ledger-a }
    backup: { retention: 7d }
";

const REPLICA: &str = "    replicas: [ { zone: az2, instance: ledger-b } ]\n";

const ERASURE: &str = "erasure:\n  locate:\n    - { datastore: ledger-db, url: \"postgres://eraser@127.0.0.1:1/ledger\", sql: \"DELETE FROM accounts WHERE owner = $1\", check: \"SELECT count(*) FROM accounts WHERE owner = $1\" }\n";

async fn primary(rds: &aws_sdk_rds::Client, with_replica: bool) {
    rds.create_db_instance()
        .db_instance_identifier("ledger-a")
        .db_instance_class("db.t3.micro")
        .engine("postgres")
        .allocated_storage(20)
        .master_username("admin")
        .master_user_password("not-a-secret-1")
        .availability_zone("us-east-1a")
        .backup_retention_period(7)
        .send()
        .await
        .unwrap();
    if with_replica {
        rds.create_db_instance_read_replica()
            .db_instance_identifier("ledger-b")
            .source_db_instance_identifier("ledger-a")
            .availability_zone("us-east-1b")
            .send()
            .await
            .unwrap();
    }
}

/// Every instance: identifier → (status, creation time, replica of, zone).
async fn instances(
    rds: &aws_sdk_rds::Client,
) -> std::collections::BTreeMap<String, (String, String, Option<String>, Option<String>)> {
    let all = rds.describe_db_instances().send().await.unwrap();
    all.db_instances()
        .iter()
        .map(|i| {
            (
                i.db_instance_identifier().unwrap().to_string(),
                (
                    i.db_instance_status().unwrap_or_default().to_string(),
                    format!("{:?}", i.instance_create_time()),
                    i.read_replica_source_db_instance_identifier().map(str::to_string),
                    i.availability_zone().map(str::to_string),
                ),
            )
        })
        .collect()
}

fn named<'a, V>(all: &'a std::collections::BTreeMap<String, V>, prefix: &str) -> Vec<&'a String> {
    all.keys().filter(|k| k.starts_with(prefix)).collect()
}

fn run(dir: &Path, endpoint: &str, args: &[&str]) -> (i32, String, String) {
    aws::outcome(
        aws::drctl(dir, endpoint, ("testing", "testing"))
            .env("DRCTL_STATE", format!("sqlite://{}/state.db", dir.display()))
            .args(args),
    )
}

fn show_json(dir: &Path, endpoint: &str, id: &str) -> serde_json::Value {
    let (_, out, err) = run(dir, endpoint, &["show", id, "--output", "json"]);
    serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}\n{err}"))
}

fn step<'a>(v: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    v["steps"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap_or_else(|| panic!("no step {id}: {v}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_rds_instance_is_replaced_by_its_restored_copy_under_the_same_name() {
    let moto = Moto::start();
    let ep = moto.endpoint();
    let rds = aws_sdk_rds::Client::new(&aws::sdk(&ep, ("testing", "testing")).await);
    primary(&rds, true).await;
    let before = instances(&rds).await;
    let dir = common::tempdir("restore-rds-replace");
    std::fs::write(dir.join("drctl.yaml"), format!("{TOPOLOGY}{REPLICA}")).unwrap();
    let to = "2026-12-06T05:00:00Z";

    // The dry run lists the steps and checks, and changes nothing.
    let (code, out, err) =
        run(&dir, &ep, &["restore", "ledger-db", "--to", to, "--replace", "--reason", "x", "--dry-run"]);
    assert_eq!(code, 0, "{out}\n{err}");
    for line in [
        "ledger-db/restore: restore ledger-a as it was at 2026-12-06T05:00:00.000000Z into a new instance ledger-a-restored-20261206050000",
        "ledger-db/erasures: replay the erasure requests made since the point on ledger-a-restored-20261206050000",
        "ledger-db/fence: rename the old primary ledger-a to ledger-a-replaced-",
        "ledger-db/switch: rename ledger-a-restored-20261206050000 to ledger-a",
        "ledger-db/replicas: rename the read replica ledger-b (az2) to ledger-b-replaced-",
        "✓ ledger-db/replicas: the read replica ledger-b (az2) will be renamed",
        "dry run: every check passed; nothing was changed",
    ] {
        assert!(out.contains(line), "{line}\n{out}");
    }
    assert_eq!(instances(&rds).await, before, "a dry run changes nothing");
    // Without --yes and a terminal it asks, and changes nothing.
    let (code, out, err) = run(&dir, &ep, &["restore", "ledger-db", "--to", to, "--replace", "--reason", "x"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("asks for confirmation"), "{err}");
    assert_eq!(instances(&rds).await, before);

    let (code, out, err) =
        run(&dir, &ep, &["restore", "ledger-db", "--to", to, "--replace", "--reason", "ticket 7", "--yes"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let id = out.lines().next().unwrap().trim().to_string();
    assert!(
        out.contains("ledger-a is the instance restored to the point; the old primary is kept at ledger-a-replaced-"),
        "{out}"
    );
    let after = instances(&rds).await;
    let aside = named(&after, "ledger-a-replaced-");
    let replica_aside = named(&after, "ledger-b-replaced-");
    assert_eq!(after.len(), 4, "the restored primary, the old one, the new replica and the old one: {after:?}");
    assert_eq!((aside.len(), replica_aside.len()), (1, 1), "{after:?}");
    assert!(named(&after, "ledger-a-restored-").is_empty(), "the copy took the name: {after:?}");
    // The instance named ledger-a now is a new one; the old one is aside.
    assert_ne!(after["ledger-a"].1, before["ledger-a"].1, "ledger-a is the restored instance: {after:?}");
    assert_eq!(after[aside[0]].1, before["ledger-a"].1, "the old primary is kept aside: {after:?}");
    assert_eq!(after[replica_aside[0]].1, before["ledger-b"].1, "the old replica is kept aside: {after:?}");
    assert_eq!(after["ledger-b"].2.as_deref(), Some("ledger-a"), "ledger-b replicates the new primary");
    assert_eq!(after["ledger-b"].3.as_deref(), Some("us-east-1b"), "in its own zone");
    assert_ne!(after["ledger-b"].1, before["ledger-b"].1, "ledger-b was made again: {after:?}");
    let v = show_json(&dir, &ep, &id);
    assert_eq!(v["state"], "succeeded", "{v}");
    let fence = step(&v, "ledger-db/fence")["note"].as_str().unwrap().to_string();
    assert!(fence.contains("not stopped: RDS does not stop an instance with read replicas"), "{fence}");

    // The public incident says how it ended; the reason stays internal.
    let (code, out, err) = run(&dir, &ep, &["status-page", "export", "site"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let page = std::fs::read_to_string(dir.join("site/index.html")).unwrap();
    assert!(page.contains("Restoring ledger-db to an earlier point"), "the incident is on the page");
    assert!(page.contains("restored and serving again"), "and says how it ended");
    assert!(!page.contains("ticket 7"), "the reason is internal");

    // Resumed once more: nothing to do, nothing moves.
    let (code, out, err) = run(&dir, &ep, &["resume", &id]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(instances(&rds).await, after);

    let _ = std::fs::remove_dir_all(&dir);
}

/// Every cluster: identifier → (status, creation time).
async fn clusters(rds: &aws_sdk_rds::Client) -> std::collections::BTreeMap<String, (String, String)> {
    let all = rds.describe_db_clusters().send().await.unwrap();
    all.db_clusters()
        .iter()
        .map(|c| {
            (
                c.db_cluster_identifier().unwrap().to_string(),
                (c.status().unwrap_or_default().to_string(), format!("{:?}", c.cluster_create_time())),
            )
        })
        .collect()
}

/// An Aurora cluster: restored into a new cluster, an instance like the
/// old writer added to it (a restored cluster has none), the old cluster
/// renamed aside and the copy renamed to its identifier, so its endpoint
/// names. Resumed, nothing moves.
///
/// moto does not move a renamed cluster's members with it (it lists them
/// by the identifier they were made in), so the new instance is checked
/// by itself, not through the cluster's member list.
#[tokio::test(flavor = "multi_thread")]
async fn an_aurora_cluster_is_replaced_by_its_restored_copy_under_the_same_name() {
    let moto = Moto::start();
    let ep = moto.endpoint();
    let rds = aws_sdk_rds::Client::new(&aws::sdk(&ep, ("testing", "testing")).await);
    aws::aurora_cluster(&rds, "orders-aurora", &[("orders-aurora-1", "us-east-1a")]).await;
    let before = clusters(&rds).await;
    let dir = common::tempdir("restore-rds-replace-cluster");
    std::fs::write(
        dir.join("drctl.yaml"),
        format!("{TOPOLOGY}  - {{ name: orders, kind: rds-cluster, cluster: orders-aurora }}\n"),
    )
    .unwrap();
    let to = "2026-12-06T05:00:00Z";

    let (code, out, err) =
        run(&dir, &ep, &["restore", "orders", "--to", to, "--replace", "--reason", "x", "--dry-run"]);
    assert_eq!(code, 0, "{out}\n{err}");
    for line in [
        "orders/restore: restore the cluster orders-aurora as it was at 2026-12-06T05:00:00.000000Z into a new cluster orders-aurora-restored-20261206050000",
        "orders/instances: add orders-aurora-restored-20261206050000-1 (db.r6g.large) to orders-aurora-restored-20261206050000",
        "orders/fence: rename the old cluster orders-aurora to orders-aurora-replaced-",
        "orders/switch: rename orders-aurora-restored-20261206050000 to orders-aurora",
        "dry run: every check passed; nothing was changed",
    ] {
        assert!(out.contains(line), "{line}\n{out}");
    }
    assert_eq!(clusters(&rds).await, before, "a dry run changes nothing");

    let (code, out, err) =
        run(&dir, &ep, &["restore", "orders", "--to", to, "--replace", "--reason", "ticket 8", "--yes"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let id = out.lines().next().unwrap().trim().to_string();
    assert!(
        out.contains(
            "orders-aurora is the cluster restored to the point; the old cluster is kept at orders-aurora-replaced-"
        ),
        "{out}"
    );
    let after = clusters(&rds).await;
    let aside = named(&after, "orders-aurora-replaced-");
    assert_eq!(after.len(), 2, "the restored cluster and the old one: {after:?}");
    assert_eq!(aside.len(), 1, "{after:?}");
    assert_ne!(after["orders-aurora"].1, before["orders-aurora"].1, "orders-aurora is the restored cluster: {after:?}");
    assert_eq!(after[aside[0]].1, before["orders-aurora"].1, "the old cluster is kept aside: {after:?}");
    assert_eq!(after[aside[0]].0, "stopped", "the old cluster takes no write at its members' endpoints: {after:?}");
    let made = rds
        .describe_db_instances()
        .db_instance_identifier("orders-aurora-restored-20261206050000-1")
        .send()
        .await
        .unwrap();
    let made = &made.db_instances()[0];
    assert_eq!(made.db_instance_class(), Some("db.r6g.large"), "the old writer's class");
    assert_eq!(made.engine(), Some("aurora-postgresql"));
    assert_eq!(made.db_instance_status(), Some("available"));
    let v = show_json(&dir, &ep, &id);
    assert_eq!(v["state"], "succeeded", "{v}");
    let ids: Vec<&str> = v["steps"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["orders/restore", "orders/instances", "orders/erasures", "orders/fence", "orders/switch"]);

    // Resumed once more: nothing to do, nothing moves.
    let instances_after = instances(&rds).await;
    let (code, out, err) = run(&dir, &ep, &["resume", &id]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(clusters(&rds).await, after);
    assert_eq!(instances(&rds).await, instances_after);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The copy cannot be reached from here (moto's endpoints answer
/// nothing): the replay is pending, the run pauses after the restore with
/// the primary untouched; the commander's `approve --done` (replayed by
/// hand) lets it go on, and the old primary, without replicas, is stopped.
#[tokio::test(flavor = "multi_thread")]
async fn an_erasure_replay_that_cannot_reach_the_copy_pauses_the_replace_before_the_switch() {
    let moto = Moto::start();
    let ep = moto.endpoint();
    let rds = aws_sdk_rds::Client::new(&aws::sdk(&ep, ("testing", "testing")).await);
    primary(&rds, false).await;
    let before = instances(&rds).await;
    let dir = common::tempdir("restore-rds-replace-pending");
    std::fs::write(dir.join("drctl.yaml"), format!("{TOPOLOGY}{ERASURE}")).unwrap();
    let (code, out, err) = run(&dir, &ep, &["erase", "cust-1", "--reason", "request 5", "--yes", "--wait", "1s"]);
    assert_eq!(code, 3, "recorded, not verified: {out}\n{err}");

    let (code, out, err) =
        run(&dir, &ep, &["restore", "ledger-db", "--to", "-1h", "--replace", "--reason", "x", "--yes"]);
    assert_eq!(code, 1, "{out}\n{err}");
    let id = out.lines().next().unwrap().trim().to_string();
    assert!(err.contains("is paused"), "{err}");
    assert!(out.contains("ledger-db/erasures failed: erasure replay PENDING: 1 request(s)"), "{out}");
    assert!(err.contains(&format!("approve {id} ledger-db/erasures --done")), "{err}");
    assert!(!out.contains("cust-1") && !err.contains("cust-1"), "never the subject");
    let paused = instances(&rds).await;
    assert_eq!(paused["ledger-a"], before["ledger-a"], "the primary is untouched: {paused:?}");
    assert_eq!(named(&paused, "ledger-a-restored-").len(), 1, "{paused:?}");
    assert!(named(&paused, "ledger-a-replaced-").is_empty(), "{paused:?}");

    // Replayed by hand, the commander says so: the run goes on to its end.
    let (code, out, err) = run(&dir, &ep, &["approve", &id, "ledger-db/erasures", "--done", "--by", "alice"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let after = instances(&rds).await;
    assert_eq!(after.len(), 2, "{after:?}");
    assert_ne!(after["ledger-a"].1, before["ledger-a"].1, "ledger-a is the restored instance: {after:?}");
    let aside = named(&after, "ledger-a-replaced-");
    assert_eq!(after[aside[0]].0, "stopped", "the old primary takes no writes at its new name: {after:?}");
    let v = show_json(&dir, &ep, &id);
    assert_eq!(v["state"], "succeeded", "{v}");
    assert_eq!(step(&v, "ledger-db/replicas")["note"], "no read replica listed: none to rebuild", "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A cluster's replace replays the erasures through the restored
/// cluster's own endpoint (its instances are added first); where that
/// endpoint cannot be reached from here (the emulator's names resolve
/// nowhere), it pauses before anything is renamed, as for an instance.
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_replace_replays_erasures_through_the_restored_endpoint_or_pauses_before_the_switch() {
    let moto = Moto::start();
    let ep = moto.endpoint();
    let rds = aws_sdk_rds::Client::new(&aws::sdk(&ep, ("testing", "testing")).await);
    aws::aurora_cluster(&rds, "orders-aurora", &[("orders-aurora-1", "us-east-1a")]).await;
    let before = clusters(&rds).await;
    let dir = common::tempdir("restore-rds-replace-cluster-erasure");
    std::fs::write(
        dir.join("drctl.yaml"),
        format!(
            "{TOPOLOGY}  - {{ name: orders, kind: rds-cluster, cluster: orders-aurora }}\nerasure:\n  locate:\n    - {{ datastore: orders, url: \"postgres://eraser@127.0.0.1:1/app\", sql: \"DELETE FROM users WHERE id = $1\", check: \"SELECT count(*) FROM users WHERE id = $1\" }}\n"
        ),
    )
    .unwrap();
    let (code, out, err) = run(&dir, &ep, &["erase", "cust-1", "--reason", "request 6", "--yes", "--wait", "1s"]);
    assert_eq!(code, 3, "recorded, not verified: {out}\n{err}");
    let (code, out, err) = run(&dir, &ep, &["restore", "orders", "--to", "-1h", "--replace", "--reason", "x", "--yes"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("orders/erasures failed: erasure replay PENDING: 1 request(s)"), "{out}");
    assert!(out.contains("not reachable from here") || out.contains("did not answer"), "tried the endpoint: {out}");
    assert!(!out.contains("no instance yet"), "the replace added its instances first: {out}");
    assert!(!out.contains("cust-1") && !err.contains("cust-1"), "never the subject");
    let paused = clusters(&rds).await;
    assert_eq!(paused["orders-aurora"], before["orders-aurora"], "the cluster is untouched: {paused:?}");
    assert!(named(&paused, "orders-aurora-replaced-").is_empty(), "{paused:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An HTTP proxy in front of moto that logs each request's body and can
/// hold one: the request matching `hold` is sent on to moto (its effect
/// happens) but its answer is kept back, as when drctl dies after AWS
/// acted and before it heard so.
struct Proxy {
    port: u16,
    bodies: Arc<Mutex<Vec<String>>>,
    hold: Arc<Mutex<Option<String>>>,
    held: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: &str) -> Proxy {
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let p = Proxy { port, bodies: Arc::default(), hold: Arc::default(), held: Arc::default() };
        let (bodies, hold, held) = (p.bodies.clone(), p.hold.clone(), p.held.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let (bodies, hold, held, upstream) = (bodies.clone(), hold.clone(), held.clone(), upstream.clone());
                std::thread::spawn(move || {
                    let _ = serve(client, &upstream, &bodies, &hold, &held);
                });
            }
        });
        p
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The requests seen so far whose body holds every one of `parts`.
    fn count(&self, parts: &[&str]) -> usize {
        self.bodies.lock().unwrap().iter().filter(|b| parts.iter().all(|p| b.contains(p))).count()
    }
}

/// One client connection: each request sent to moto on a connection of
/// its own, its answer passed back with `Connection: close`.
fn serve(
    client: TcpStream,
    upstream: &str,
    bodies: &Mutex<Vec<String>>,
    hold: &Mutex<Option<String>>,
    held: &AtomicBool,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let end = line == "\r\n";
        if !line.to_ascii_lowercase().starts_with("connection:") {
            head.push_str(&line);
        }
        if end {
            break;
        }
    }
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>()))
        .and_then(Result::ok)
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let text = String::from_utf8_lossy(&body).to_string();
    bodies.lock().unwrap().push(text.clone());
    let head = head.replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1);
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(head.as_bytes())?;
    up.write_all(&body)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    let holding = {
        let mut h = hold.lock().unwrap();
        let hit = h.as_deref().is_some_and(|p| text.contains(p));
        if hit {
            *h = None;
        }
        hit
    };
    if holding {
        held.store(true, Ordering::SeqCst);
        // Never answered: the client dies waiting.
        std::thread::sleep(Duration::from_secs(600));
        return Ok(());
    }
    (&client).write_all(&answer)?;
    Ok(())
}

/// Starts `drctl restore --replace` (or `resume`) through the proxy,
/// holding the request that matches `hold`; SIGKILLs it once moto acted
/// on that request. Gives the execution's id.
fn killed_at(dir: &Path, proxy: &Proxy, args: &[&str], hold: &str) -> String {
    *proxy.hold.lock().unwrap() = Some(hold.to_string());
    proxy.held.store(false, Ordering::SeqCst);
    let mut child = aws::drctl(dir, &proxy.endpoint(), ("testing", "testing"))
        .env("DRCTL_STATE", format!("sqlite://{}/state.db", dir.display()))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let id = lines.next().unwrap().unwrap().trim().to_string();
    let reader = std::thread::spawn(move || lines.map_while(Result::ok).count());
    let deadline = Instant::now() + Duration::from_secs(120);
    while !proxy.held.load(Ordering::SeqCst) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("drctl ended ({status}) before sending `{hold}`");
        }
        assert!(Instant::now() < deadline, "drctl never sent `{hold}`");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: the rename happened, drctl never heard.
    child.wait().unwrap();
    let _ = reader.join();
    id
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replace_killed_after_each_rename_took_effect_resumes_without_restoring_or_renaming_twice() {
    let moto = Moto::start();
    let ep = moto.endpoint();
    let rds = aws_sdk_rds::Client::new(&aws::sdk(&ep, ("testing", "testing")).await);
    primary(&rds, true).await;
    let before = instances(&rds).await;
    let proxy = Proxy::start(&ep);
    let dir = common::tempdir("restore-rds-replace-kill");
    std::fs::write(dir.join("drctl.yaml"), format!("{TOPOLOGY}{REPLICA}")).unwrap();
    let to = "2026-12-06T05:00:00Z";

    // Killed once the old primary was renamed aside (the fence's rename).
    let rename_aside = "Action=ModifyDBInstance&Version=2014-10-31&DBInstanceIdentifier=ledger-a&";
    let id = killed_at(
        &dir,
        &proxy,
        &["restore", "ledger-db", "--to", to, "--replace", "--reason", "x", "--yes"],
        rename_aside,
    );
    let v = show_json(&dir, &ep, &id);
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(step(&v, "ledger-db/restore")["state"], "succeeded", "{v}");
    assert_eq!(step(&v, "ledger-db/fence")["state"], "running", "killed inside the fence: {v}");
    assert_eq!(named(&instances(&rds).await, "ledger-a-replaced-").len(), 1, "the rename took effect");

    // Resumed, and killed again once the copy took the name (the switch's rename).
    let take_name = "Action=ModifyDBInstance&Version=2014-10-31&DBInstanceIdentifier=ledger-a-restored-";
    assert_eq!(killed_at(&dir, &proxy, &["resume", &id], take_name), id);
    let v = show_json(&dir, &ep, &id);
    assert_eq!(step(&v, "ledger-db/fence")["state"], "succeeded", "{v}");
    assert_eq!(step(&v, "ledger-db/switch")["state"], "running", "{v}");

    // Resumed to its end.
    let (code, out, err) = run(&dir, &proxy.endpoint(), &["resume", &id]);
    assert_eq!(code, 0, "{out}\n{err}");
    let v = show_json(&dir, &ep, &id);
    assert_eq!(v["state"], "succeeded", "{v}");
    assert_eq!(step(&v, "ledger-db/restore")["attempts"], 1, "{v}");
    assert!(step(&v, "ledger-db/fence")["note"].as_str().unwrap().contains("already (an earlier attempt)"), "{v}");
    assert!(step(&v, "ledger-db/switch")["note"].as_str().unwrap().contains("by an earlier attempt"), "{v}");

    // One restore, one rename of each instance, one new replica.
    assert_eq!(proxy.count(&["Action=RestoreDBInstanceToPointInTime"]), 1);
    assert_eq!(proxy.count(&[rename_aside]), 1, "the old primary renamed once");
    assert_eq!(proxy.count(&[take_name]), 1, "the copy renamed once");
    assert_eq!(proxy.count(&["Action=ModifyDBInstance&Version=2014-10-31&DBInstanceIdentifier=ledger-b&"]), 1);
    assert_eq!(proxy.count(&["Action=ModifyDBInstance"]), 3, "three renames in all");
    assert_eq!(proxy.count(&["Action=CreateDBInstanceReadReplica"]), 1);
    let after = instances(&rds).await;
    assert_eq!(after.len(), 4, "{after:?}");
    assert_ne!(after["ledger-a"].1, before["ledger-a"].1, "ledger-a is the restored instance: {after:?}");
    assert_eq!(after[named(&after, "ledger-a-replaced-")[0]].1, before["ledger-a"].1, "{after:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An Aurora cluster's replace SIGKILLed once the instance was added,
/// once the old cluster was renamed aside and once the copy took its name
/// (each time after moto acted, before drctl heard): resumed, it restores,
/// adds and renames each only once.
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_replace_killed_after_each_change_took_effect_resumes_without_doing_it_twice() {
    let moto = Moto::start();
    let ep = moto.endpoint();
    let rds = aws_sdk_rds::Client::new(&aws::sdk(&ep, ("testing", "testing")).await);
    aws::aurora_cluster(&rds, "orders-aurora", &[("orders-aurora-1", "us-east-1a")]).await;
    let before = clusters(&rds).await;
    let proxy = Proxy::start(&ep);
    let dir = common::tempdir("restore-rds-replace-cluster-kill");
    std::fs::write(
        dir.join("drctl.yaml"),
        format!("{TOPOLOGY}  - {{ name: orders, kind: rds-cluster, cluster: orders-aurora }}\n"),
    )
    .unwrap();
    let to = "2026-12-06T05:00:00Z";

    let add = "Action=CreateDBInstance&";
    let id = killed_at(&dir, &proxy, &["restore", "orders", "--to", to, "--replace", "--reason", "x", "--yes"], add);
    let v = show_json(&dir, &ep, &id);
    assert_eq!(step(&v, "orders/instances")["state"], "running", "killed inside the instances step: {v}");
    let rename_aside = "Action=ModifyDBCluster&Version=2014-10-31&DBClusterIdentifier=orders-aurora&";
    assert_eq!(killed_at(&dir, &proxy, &["resume", &id], rename_aside), id);
    let v = show_json(&dir, &ep, &id);
    assert_eq!(step(&v, "orders/fence")["state"], "running", "{v}");
    assert_eq!(named(&clusters(&rds).await, "orders-aurora-replaced-").len(), 1, "the rename took effect");
    let take_name = "Action=ModifyDBCluster&Version=2014-10-31&DBClusterIdentifier=orders-aurora-restored-";
    assert_eq!(killed_at(&dir, &proxy, &["resume", &id], take_name), id);

    let (code, out, err) = run(&dir, &proxy.endpoint(), &["resume", &id]);
    assert_eq!(code, 0, "{out}\n{err}");
    let v = show_json(&dir, &ep, &id);
    assert_eq!(v["state"], "succeeded", "{v}");
    assert!(step(&v, "orders/instances")["note"].as_str().unwrap().contains("made by an earlier attempt"), "{v}");
    assert!(step(&v, "orders/fence")["note"].as_str().unwrap().contains("already (an earlier attempt)"), "{v}");
    assert!(step(&v, "orders/switch")["note"].as_str().unwrap().contains("by an earlier attempt"), "{v}");
    assert_eq!(proxy.count(&["Action=RestoreDBClusterToPointInTime"]), 1, "one restore");
    assert_eq!(proxy.count(&[add]), 1, "one instance added");
    assert_eq!(proxy.count(&[rename_aside]), 1, "the old cluster renamed once");
    assert_eq!(proxy.count(&[take_name]), 1, "the copy renamed once");
    assert_eq!(proxy.count(&["Action=StopDBCluster&"]), 1, "the old cluster stopped once");
    let after = clusters(&rds).await;
    assert_eq!(after.len(), 2, "{after:?}");
    assert_ne!(after["orders-aurora"].1, before["orders-aurora"].1, "orders-aurora is the restored cluster: {after:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `drctl serve`, killed on drop.
struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The controller, started after a kill, finishes the replace through the
/// restore's own steps (against the cloud API, not a failover plan) and
/// says on the incident how it ended.
#[tokio::test(flavor = "multi_thread")]
async fn the_controller_finishes_an_rds_replace_killed_after_the_old_primary_was_renamed() {
    let moto = Moto::start();
    let ep = moto.endpoint();
    let rds = aws_sdk_rds::Client::new(&aws::sdk(&ep, ("testing", "testing")).await);
    primary(&rds, true).await;
    let before = instances(&rds).await;
    let proxy = Proxy::start(&ep);
    let dir = common::tempdir("restore-rds-replace-serve");
    std::fs::write(dir.join("drctl.yaml"), format!("{TOPOLOGY}{REPLICA}")).unwrap();
    let id = killed_at(
        &dir,
        &proxy,
        &["restore", "ledger-db", "--to", "2026-12-06T05:00:00Z", "--replace", "--reason", "x", "--yes"],
        "Action=ModifyDBInstance&Version=2014-10-31&DBInstanceIdentifier=ledger-a&",
    );
    let port = drctl_testkit::free_port();
    let srv = Serve(
        aws::drctl(&dir, &ep, ("testing", "testing"))
            .env("DRCTL_STATE", format!("sqlite://{}/state.db", dir.display()))
            .args(["serve", "-f", "drctl.yaml", "--sample-every", "300ms", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("serve.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    common::wait_for("the controller to finish the replace", 120, || show_json(&dir, &ep, &id)["state"] != "running");
    drop(srv);
    let v = show_json(&dir, &ep, &id);
    assert_eq!(v["state"], "succeeded", "{v}\n{}", std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default());
    assert_eq!(step(&v, "ledger-db/restore")["attempts"], 1, "{v}");
    let after = instances(&rds).await;
    assert_eq!(after.len(), 4, "{after:?}");
    assert_ne!(after["ledger-a"].1, before["ledger-a"].1, "ledger-a is the restored instance: {after:?}");
    assert_eq!(after["ledger-b"].2.as_deref(), Some("ledger-a"), "{after:?}");
    let (code, out, err) = run(&dir, &ep, &["status-page", "export", "site"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let page = std::fs::read_to_string(dir.join("site/index.html")).unwrap();
    assert!(page.contains("restored and serving again"), "the incident says how it ended");
    let _ = std::fs::remove_dir_all(&dir);
}
