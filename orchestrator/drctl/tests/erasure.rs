//! `drctl erase`, `drctl erasures` and the controller's erasure API, end
//! to end with a real PostgreSQL primary and standby: a standby whose
//! replay is paused keeps `erase` from finishing (exit 3) until it has
//! replayed the erasure; the controller's API records and erases, lists
//! the ledger, and counts open and overdue requests in `/metrics`. On an
//! etcd state store (real etcd), every key and value etcd holds after an
//! erasure is read directly: the identifier and the reason are nowhere in
//! clear, and the ledger's entries are there, sealed. `drctl bench
//! erasure` over PostgreSQL and versioned S3 buckets (moto) erases every
//! version it seeded in every bucket and leaves other keys alone.

mod aws;
mod common;

use common::{client, drctl, drctl_clean, show, start, tempdir, token, wait_for};
use drctl_testkit::{EtcdCluster, PgPair};

fn write_topology(pair: &PgPair, dir: &std::path::Path) {
    let yaml = format!(
        "{}contracts:\n  - {{ customer: acme, services: [checkout], rpo: 10s, rto: 5m }}\nerasure:\n  deadline: 30d\n  locate:\n    - {{ datastore: orders-db, sql: \"DELETE FROM customers WHERE id = $1\", check: \"SELECT count(*) FROM customers WHERE id = $1\" }}\n",
        pair.shop_topology("", "")
    );
    std::fs::write(dir.join("drctl.yaml"), yaml).unwrap();
    pair.psql(
        pair.primary_port,
        "CREATE TABLE customers (id text PRIMARY KEY); INSERT INTO customers SELECT 'cust-' || g FROM generate_series(1, 20) g",
    );
    pair.wait_replayed();
}

#[test]
fn erase_waits_for_a_paused_standby_and_exits_3_until_it_has_replayed() {
    let pair = PgPair::start();
    let dir = tempdir("erase-cli");
    write_topology(&pair, &dir);
    let o = drctl(&dir).args(["validate", "-f", "drctl.yaml"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));

    pair.psql(pair.standby_port, "SELECT pg_wal_replay_pause()");
    let o = drctl(&dir)
        .args(["erase", "cust-7", "--reason", "request 1", "--yes", "--wait", "1s", "-f", "drctl.yaml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.starts_with("er-1\n"), "{out}");
    assert!(out.contains("orders-db/az2") && out.contains("replayed up to"), "the open copy is named: {out}");
    assert!(out.contains("drctl erasures --verify -f drctl.yaml"), "{out}");
    assert!(!out.contains("cust-7"), "{out}");
    assert_eq!(pair.psql(pair.standby_port, "SELECT count(*) FROM customers WHERE id = 'cust-7'"), "1");
    let o = drctl(&dir).args(["erasures", "-f", "drctl.yaml", "--output", "json"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "open but not overdue: {}", show(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["erasures"][0]["verified_at"].is_null(), "{v}");

    pair.psql(pair.standby_port, "SELECT pg_wal_replay_resume()");
    // The hint, typed as printed.
    wait_for("the standby verified", 30, || {
        let o = drctl(&dir).args(["erasures", "--verify", "-f", "drctl.yaml", "--output", "json"]).output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        o.status.code() == Some(0) && v["erasures"][0]["verified_at"].is_string()
    });
    assert_eq!(pair.psql(pair.standby_port, "SELECT count(*) FROM customers WHERE id = 'cust-7'"), "0");

    // Refusals are bad input, with the way out.
    let o = drctl(&dir).args(["erase", " ", "--reason", "x", "--yes", "-f", "drctl.yaml"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    std::fs::write(dir.join("bare.yaml"), pair.shop_topology("", "")).unwrap();
    let o = drctl(&dir).args(["erase", "cust-8", "--reason", "x", "--yes", "-f", "bare.yaml"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("erasure:"), "{}", show(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_controller_records_erases_and_counts_requests_through_its_api() {
    let pair = PgPair::start();
    let dir = tempdir("erase-api");
    write_topology(&pair, &dir);
    let operator = token(&dir, "ops", "operator");
    let viewer = token(&dir, "look", "viewer");
    let srv = start(&dir, &[], "http");
    let http = client();
    let url = format!("{}/api/v1/erasures", srv.base);

    let r = http
        .post(&url)
        .bearer_auth(&viewer)
        .json(&serde_json::json!({"subject": "cust-3", "reason": "r"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(&url)
        .bearer_auth(&operator)
        .json(&serde_json::json!({"subject": "cust-3", "reason": "r", "dryrun": true}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().unwrap().contains("dryrun"));
    let r = http
        .post(&url)
        .bearer_auth(&operator)
        .json(&serde_json::json!({"subject": "cust-3", "reason": "ticket 3"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<serde_json::Value>().unwrap()["id"].as_str().unwrap().to_string();
    assert_eq!(id, "er-1");

    wait_for("every copy verified", 30, || {
        let v: serde_json::Value = http.get(&url).bearer_auth(&viewer).send().unwrap().json().unwrap();
        v["erasures"][0]["verified_at"].is_string()
    });
    assert_eq!(pair.psql(pair.primary_port, "SELECT count(*) FROM customers WHERE id = 'cust-3'"), "0");
    assert_eq!(pair.psql(pair.standby_port, "SELECT count(*) FROM customers WHERE id = 'cust-3'"), "0");
    wait_for("the metrics", 30, || {
        let m = http.get(format!("{}/metrics", srv.base)).send().unwrap().text().unwrap();
        m.contains("drctl_erasures_open 0\n") && m.contains("drctl_erasures_overdue 0\n")
    });
    let listed = http.get(&url).bearer_auth(&viewer).send().unwrap().text().unwrap();
    assert!(!listed.contains("cust-3"), "{listed}");
    let audit = drctl(&dir).args(["audit", "list", "-f", "drctl.yaml"]).output().unwrap();
    let audit = String::from_utf8_lossy(&audit.stdout);
    assert!(audit.contains("erasure er-1") && !audit.contains("cust-3"), "{audit}");
    // A customer's assurance report states the deadline kept, in counts only.
    let out = drctl(&dir)
        .args(["token", "create", "--name", "acme-auditor", "--role", "customer", "--customer", "acme"])
        .output()
        .unwrap();
    let acme = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let body = http
        .get(format!("{}/customers/acme/assurance.json", srv.base))
        .bearer_auth(&acme)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let assurance: serde_json::Value = serde_json::from_str(&body).unwrap();
    let e = &assurance["erasure"];
    assert_eq!((e["requests"].as_u64(), e["met"].as_u64(), e["missed"].as_u64()), (Some(1), Some(1), Some(0)), "{e}");
    assert_eq!(e["deadline_met"], true);
    assert!(e["statement"].as_str().unwrap().starts_with("every one of 1 request(s) to erase personal data"), "{e}");
    assert!(!body.contains("cust-3") && !body.contains("er-1"), "no request or identifier: {body}");
    let page = http
        .get(format!("{}/customers/acme/assurance.html", srv.base))
        .bearer_auth(&acme)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(page.contains("met its 30 days deadline"), "the page says it too");
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `drctl erase` on `--state etcd://...`, and a controller (`drctl serve`)
/// on the same etcd taking a request through its API and erasing it as the
/// leader: afterwards every key and value in the etcd cluster (not only
/// under drctl's prefix) is read with the etcd client drctl uses; none
/// holds either identifier or reason, in clear, hex or base64, and the
/// ledger's entries are there, sealed. `drctl erasures` reads them back
/// through the key kept outside etcd.
#[test]
fn on_etcd_the_ledger_is_sealed_and_no_key_or_value_holds_the_identifier() {
    const SUBJECT: &str = "ada.lovelace@example.com";
    const REASON: &str = "request 27 from the data protection office";
    const BY_API: &str = "grace.hopper@example.com";
    const API_REASON: &str = "ticket 28, by the controller";
    let etcd = EtcdCluster::start(1);
    let pair = PgPair::start();
    let dir = tempdir("erase-etcd");
    write_topology(&pair, &dir);
    pair.psql(pair.primary_port, &format!("INSERT INTO customers VALUES ('{SUBJECT}'), ('{BY_API}')"));
    pair.wait_replayed();
    let state = etcd.url("erasure");
    let cli = |args: &[&str]| {
        let o = drctl_clean().current_dir(&dir).env("DRCTL_STATE", &state).args(args).output().unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stdout).to_string(), show(&o))
    };
    let left = |subject: &str| {
        let query = format!("SELECT count(*) FROM customers WHERE id = '{subject}'");
        (pair.psql(pair.primary_port, &query), pair.psql(pair.standby_port, &query))
    };

    let (code, out, shown) = cli(&["erase", SUBJECT, "--reason", REASON, "--yes", "--wait", "30s", "-f", "drctl.yaml"]);
    assert_eq!(code, Some(0), "{shown}");
    assert!(out.starts_with("er-1\n") && !out.contains(SUBJECT), "{out}");
    assert_eq!(left(SUBJECT), ("0".into(), "0".into()));
    assert!(dir.join(".drctl/etcd-keys").is_dir(), "the data key is kept beside the topology, outside etcd");

    // The controller on the same etcd: the request through its API, erased
    // in the background by the leader.
    let (code, operator, shown) = cli(&["token", "create", "--name", "dpo", "--role", "operator"]);
    assert_eq!(code, Some(0), "{shown}");
    let port = drctl_testkit::free_port();
    let child = drctl_clean()
        .current_dir(&dir)
        .env("DRCTL_STATE", &state)
        .args(["serve", "-f", "drctl.yaml", "--sample-every", "300ms", "--lease-ttl", "3s", "--id", "ctl-1"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    // Killed when dropped, a failing assertion included.
    let serve = common::Server { child, base: format!("http://127.0.0.1:{port}"), port };
    common::wait_listening(port, "drctl serve on etcd");
    let http = client();
    let url = format!("{}/api/v1/erasures", serve.base);
    let r = http
        .post(&url)
        .bearer_auth(operator.trim())
        .json(&serde_json::json!({"subject": BY_API, "reason": API_REASON}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().unwrap_or_default());
    wait_for("the controller's request verified on every copy", 60, || {
        let v: serde_json::Value =
            http.get(&url).bearer_auth(operator.trim()).send().and_then(|r| r.json()).unwrap_or_default();
        v["erasures"].as_array().is_some_and(|l| l.len() == 2 && l.iter().all(|e| e["verified_at"].is_string()))
    });
    assert_eq!(left(BY_API), ("0".into(), "0".into()));
    drop(serve);

    // Every key and value in the cluster, read directly.
    use drctl_state::kv::Kv;
    let kv = drctl_etcd::EtcdKv::connect(&drctl_etcd::EtcdUrl::parse(&state).unwrap()).unwrap();
    let everything = kv.scan("\0", "\0").unwrap();
    let ledger: Vec<_> = everything.iter().filter(|(k, _)| k.starts_with("/erasure/erasure/")).collect();
    assert_eq!(
        ledger.len(),
        2,
        "the requests are in etcd: {:?}",
        everything.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    assert!(
        ledger.iter().all(|(_, v)| drctl_state::seal::Sealer::is_sealed(&v.value)),
        "the ledger's entries are sealed"
    );
    let b64 = |s: &str| {
        const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in s.as_bytes().chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    };
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    let mut forms = Vec::new();
    for secret in [SUBJECT, REASON, BY_API, API_REASON] {
        // base64 of the whole text, and of it behind one or two other bytes.
        let shifted =
            [b64(secret), b64(&format!("x{secret}"))[2..].to_string(), b64(&format!("xx{secret}"))[3..].to_string()];
        forms.push((secret, secret.to_string()));
        forms.push((secret, hex(secret)));
        forms.extend(shifted.into_iter().map(|f| (secret, f[..f.len() - 4].to_string())));
    }
    for (key, v) in &everything {
        let value = String::from_utf8_lossy(&v.value);
        for (secret, form) in &forms {
            assert!(
                !key.contains(form.as_str()) && !value.contains(form.as_str()),
                "etcd's key {key} holds `{secret}` in clear (as `{form}`): {value}"
            );
        }
    }

    // The ledger, read back through drctl with the key outside etcd.
    let (code, out, shown) = cli(&["erasures", "-f", "drctl.yaml", "--output", "json"]);
    assert_eq!(code, Some(0), "{shown}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{shown}"));
    let listed = v["erasures"].as_array().unwrap();
    let ids: Vec<&str> = listed.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids, ["er-1", "er-2"], "{v}");
    for e in listed {
        assert!(e["verified_at"].is_string(), "{v}");
        assert_eq!(e["copies"].as_array().map(Vec::len), Some(2), "{v}");
    }
    assert!(!out.contains(SUBJECT) && !out.contains(BY_API), "{out}");
    eprintln!("etcd held {} keys after a CLI and a controller erasure, the ledger's two sealed", everything.len());
    drop(etcd);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn bucket(s3: &aws_sdk_s3::Client, name: &str, versioned: bool) {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    s3.create_bucket().bucket(name).send().await.unwrap();
    if versioned {
        s3.put_bucket_versioning()
            .bucket(name)
            .versioning_configuration(
                VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build(),
            )
            .send()
            .await
            .unwrap();
    }
    s3.put_object()
        .bucket(name)
        .key("users/keep/a")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"not the bench's"))
        .send()
        .await
        .unwrap();
}

async fn versions(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> usize {
    let v = s3.list_object_versions().bucket(bucket).prefix(prefix).send().await.unwrap();
    v.versions().len() + v.delete_markers().len()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bench_erases_every_version_it_seeded_in_every_bucket_and_nothing_else() {
    let pair = PgPair::start();
    let moto = drctl_testkit::Moto::start();
    let sdk = aws::sdk(&moto.endpoint(), ("testing", "testing")).await;
    let s3 = drctl_aws::s3::client_for(&sdk, Some(&moto.endpoint()), None);
    for b in ["files-az1", "files-az2"] {
        bucket(&s3, b, true).await;
    }
    bucket(&s3, "files-plain", false).await;
    let dir = tempdir("bench-erasure-s3");
    let files = |replica: &str| {
        format!(
            "  - name: files\n    kind: s3\n    endpoint: \"{}\"\n    primary: {{ zone: az1, bucket: files-az1 }}\n    replicas: [ {{ zone: az2, bucket: {replica} }} ]\n",
            moto.endpoint()
        )
    };
    std::fs::write(dir.join("drctl.yaml"), pair.shop_topology(&files("files-az2"), "")).unwrap();
    std::fs::write(dir.join("plain.yaml"), pair.shop_topology(&files("files-plain"), "")).unwrap();

    let o = aws::drctl(&dir, &moto.endpoint(), ("testing", "testing"))
        .args(["bench", "erasure", "--subjects", "5", "-f", "drctl.yaml"])
        .output()
        .unwrap();
    let out = show(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("5 verified on every copy, 0 rows left"), "the PostgreSQL half: {out}");
    // 5 subjects x 2 objects x 2 versions, in each of the 2 buckets.
    assert!(out.contains("(2 buckets, 4 versions per subject in each, 40 in all)"), "{out}");
    assert!(out.contains("5 verified on every bucket"), "{out}");
    assert!(
        out.contains("versions left under drctl-bench-erasure/: 0 in files-az1 (az1), 0 in files-az2 (az2)"),
        "{out}"
    );
    for b in ["files-az1", "files-az2"] {
        assert_eq!(versions(&s3, b, "drctl-bench-erasure/").await, 0, "the bench's prefix emptied in {b}");
        assert_eq!(versions(&s3, b, "users/keep/").await, 1, "another key stays in {b}");
    }

    // A bucket that keeps no versions cannot show an erasure of every
    // version: refused before anything is seeded.
    let o = aws::drctl(&dir, &moto.endpoint(), ("testing", "testing"))
        .args(["bench", "erasure", "--subjects", "5", "-f", "plain.yaml"])
        .output()
        .unwrap();
    let out = show(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("files-plain (az2) of files is not versioned"), "{out}");
    assert_eq!(
        pair.psql(pair.primary_port, "SELECT count(*) FROM pg_tables WHERE tablename = 'drctl_bench_erasure'"),
        "0"
    );
    assert_eq!(versions(&s3, "files-az1", "drctl-bench-erasure/").await, 0);
    let _ = std::fs::remove_dir_all(&dir);
}
