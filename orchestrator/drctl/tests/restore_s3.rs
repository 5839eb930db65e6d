//! `drctl restore` of an S3 datastore from its versions, on the AWS API
//! emulator: in place (`--replace`) and into another bucket, with every
//! version that existed before still there afterwards.

mod aws;
mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use drctl_testkit::Moto;
use std::time::{Duration, SystemTime};

/// S3 keeps modification times to the second: waits until the clock is in
/// the next whole second, so writes on either side of a point differ.
fn next_second() -> SystemTime {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap();
    let next = Duration::from_secs(now.as_secs() + 1);
    while SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap() < next {
        std::thread::sleep(Duration::from_millis(20));
    }
    SystemTime::UNIX_EPOCH + next
}

async fn get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<String> {
    let o = s3.get_object().bucket(bucket).key(key).send().await.ok()?;
    Some(String::from_utf8_lossy(&o.body.collect().await.ok()?.into_bytes()).to_string())
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &str) {
    s3.put_object().bucket(bucket).key(key).body(ByteStream::from(body.as_bytes().to_vec())).send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn ransomware_is_undone_from_versions_in_place_and_into_another_bucket() {
    let moto = Moto::start();
    let sdk = aws::sdk(&moto.endpoint(), ("testing", "testing")).await;
    let s3 = drctl_aws::s3::client_for(&sdk, Some(&moto.endpoint()), None);
    s3.create_bucket().bucket("assets-a").send().await.unwrap();
    s3.put_bucket_versioning()
        .bucket("assets-a")
        .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
        .send()
        .await
        .unwrap();
    put(&s3, "assets-a", "img/a", "a v1").await;
    put(&s3, "assets-a", "img/b", "b v1").await;
    let _ = next_second();
    let point = next_second() - Duration::from_millis(500);
    put(&s3, "assets-a", "img/a", "ENCRYPTED").await;
    s3.delete_object().bucket("assets-a").key("img/b").send().await.unwrap();
    put(&s3, "assets-a", "img/README-pay", "pay").await;

    let dir = common::tempdir("restore-s3");
    std::fs::write(
        dir.join("drctl.yaml"),
        format!(
            "version: 1\nzones: [ {{ name: az1, region: us-east-1 }}, {{ name: az2, region: us-east-1 }} ]\n\
             objectives: {{ t: {{ rpo: 1m, rto: 1h, restore: {{ rpo: 1h, rto: 1h }} }} }}\n\
             datastores:\n  - name: assets\n    kind: s3\n    tier: t\n    endpoint: \"{}\"\n    primary: {{ zone: az1, bucket: assets-a }}\n    backup: {{ versions: 7d }}\n",
            moto.endpoint()
        ),
    )
    .unwrap();
    let at = chrono_like(point);

    // Into another bucket first: the source is left as it is.
    let (code, out, err) = aws::outcome(
        aws::drctl(&dir, &moto.endpoint(), ("testing", "testing"))
            .env("DRCTL_STATE", format!("sqlite://{}/state.db", dir.display()))
            .args([
                "restore",
                "assets",
                "--to",
                &at,
                "--into",
                "assets-restored/copy/",
                "--reason",
                "look",
                "-f",
                "drctl.yaml",
            ]),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(get(&s3, "assets-restored", "copy/img/a").await.as_deref(), Some("a v1"));
    assert_eq!(get(&s3, "assets-restored", "copy/img/b").await.as_deref(), Some("b v1"));
    assert_eq!(get(&s3, "assets-restored", "copy/img/README-pay").await, None);
    assert_eq!(get(&s3, "assets-a", "img/a").await.as_deref(), Some("ENCRYPTED"));

    let before = s3.list_object_versions().bucket("assets-a").send().await.unwrap();
    let (code, out, err) = aws::outcome(
        aws::drctl(&dir, &moto.endpoint(), ("testing", "testing"))
            .env("DRCTL_STATE", format!("sqlite://{}/state.db", dir.display()))
            .args([
                "restore",
                "assets",
                "--to",
                &at,
                "--replace",
                "--reason",
                "ransomware",
                "--yes",
                "-f",
                "drctl.yaml",
            ]),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.lines().next().unwrap_or_default().starts_with("20"), "the id first: {out}");
    assert!(out.contains("2 key(s) restored") && out.contains("1 hidden behind a delete marker"), "{out}");
    assert_eq!(get(&s3, "assets-a", "img/a").await.as_deref(), Some("a v1"));
    assert_eq!(get(&s3, "assets-a", "img/b").await.as_deref(), Some("b v1"));
    assert_eq!(get(&s3, "assets-a", "img/README-pay").await, None);
    let after = s3.list_object_versions().bucket("assets-a").send().await.unwrap();
    assert_eq!(after.versions().len(), before.versions().len() + 2, "two new versions, none destroyed");
    assert_eq!(after.delete_markers().len(), before.delete_markers().len() + 1);
    for v in before.versions() {
        assert!(after.versions().iter().any(|w| w.version_id() == v.version_id()), "{:?} kept", v.key());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// RFC 3339 with milliseconds, UTC.
fn chrono_like(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `drctl restore` of an RDS instance on the emulator (which accepts a
/// point-in-time restore but ignores the time itself): a new instance
/// beside the datastore, named after its source and point, journaled, and
/// a resume that finds it made instead of making a second (`--replace`:
/// restore_rds_replace.rs).
#[tokio::test(flavor = "multi_thread")]
async fn an_rds_datastore_is_restored_into_a_new_instance_once() {
    let moto = Moto::start();
    let sdk = aws::sdk(&moto.endpoint(), ("testing", "testing")).await;
    let rds = aws_sdk_rds::Client::new(&sdk);
    rds.create_db_instance()
        .db_instance_identifier("ledger-a")
        .db_instance_class("db.t3.micro")
        .engine("postgres")
        .allocated_storage(20)
        .master_username("admin")
        .master_user_password("not-a-secret-1")
        .backup_retention_period(7)
        .send()
        .await
        .unwrap();
    let dir = common::tempdir("restore-rds");
    std::fs::write(
        dir.join("drctl.yaml"),
        "version: 1\nzones: [ { name: az1, region: us-east-1, aws_zone: us-east-1a } ]\n\
         datastores:\n  - name: ledger-db\n    kind: rds-instance\n    primary: { zone: az1, instance: ledger-a }\n    backup: { retention: 7d }\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        aws::outcome(
            aws::drctl(&dir, &moto.endpoint(), ("testing", "testing"))
                .env("DRCTL_STATE", format!("sqlite://{}/state.db", dir.display()))
                .args(args),
        )
    };
    let (code, out, err) = run(&["restore", "ledger-db", "--to", "2026-12-06T05:00:00Z", "--reason", "bad migration"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let id = out.lines().next().unwrap().trim().to_string();
    assert!(out.contains("into a new rds-instance: ledger-a-restored-20261206050000"), "{out}");
    assert!(
        out.contains("ledger-db/restore succeeded: ledger-a-restored-20261206050000 restored from ledger-a"),
        "{out}"
    );
    let all = rds.describe_db_instances().send().await.unwrap();
    let ids: Vec<&str> = all.db_instances().iter().filter_map(|i| i.db_instance_identifier()).collect();
    assert!(ids.contains(&"ledger-a-restored-20261206050000"), "{ids:?}");
    // Resumed (as after a crash): it finds the instance made, and makes no second.
    let (code, out, err) = run(&["resume", &id]);
    assert_eq!(code, 0, "{out}\n{err}");
    let all = rds.describe_db_instances().send().await.unwrap();
    assert_eq!(all.db_instances().len(), 2, "the source and one restored instance");
    let _ = std::fs::remove_dir_all(&dir);
}

fn sha256_hex(body: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(body.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

async fn scratch_buckets(s3: &aws_sdk_s3::Client) -> Vec<String> {
    let all = s3.list_buckets().send().await.unwrap();
    all.buckets()
        .iter()
        .filter_map(|b| b.name())
        .filter(|n| n.starts_with("drctl-restore-"))
        .map(str::to_string)
        .collect()
}

/// A restore test of an S3 datastore (`drctl drill`): the bucket as it was
/// at the point asked for, in a scratch bucket of its own, checked by key
/// counts and a chosen key's checksum, measured, then removed; `--keep`
/// leaves it; a checksum that does not match exits 3; an SQL check on an
/// S3 datastore is refused where it is written.
#[tokio::test(flavor = "multi_thread")]
async fn an_s3_restore_test_checks_a_scratch_copy_and_removes_it() {
    let moto = Moto::start();
    let sdk = aws::sdk(&moto.endpoint(), ("testing", "testing")).await;
    let s3 = drctl_aws::s3::client_for(&sdk, Some(&moto.endpoint()), None);
    s3.create_bucket().bucket("assets-a").send().await.unwrap();
    s3.put_bucket_versioning()
        .bucket("assets-a")
        .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
        .send()
        .await
        .unwrap();
    put(&s3, "assets-a", "img/a", "a v1").await;
    put(&s3, "assets-a", "img/b", "b v1").await;
    put(&s3, "assets-a", "docs/terms", "terms").await;
    let written = next_second() - Duration::from_millis(1000);
    let point = next_second() - Duration::from_millis(500);
    put(&s3, "assets-a", "img/a", "ENCRYPTED").await;
    put(&s3, "assets-a", "img/README-pay", "pay").await;

    let dir = common::tempdir("restore-test-s3");
    std::fs::write(
        dir.join("drctl.yaml"),
        format!(
            "version: 1\nzones: [ {{ name: az1, region: us-east-1 }} ]\n\
             objectives: {{ t: {{ rpo: 1m, rto: 1h, restore: {{ rpo: 1h, rto: 10m }} }} }}\n\
             datastores:\n  - name: assets\n    kind: s3\n    tier: t\n    endpoint: \"{}\"\n    primary: {{ zone: az1, bucket: assets-a }}\n    backup: {{ versions: 7d }}\n\
             services:\n  - {{ name: media, tier: t, zones: [az1], depends_on: [assets] }}\n\
             contracts:\n  - {{ customer: acme, services: [media], rpo: 1h, rto: 1h }}\n",
            moto.endpoint()
        ),
    )
    .unwrap();
    let test = |name: &str, sha: &str| {
        std::fs::write(
            dir.join(name),
            format!(
                "name: assets-restore-test\nrestore: {{ datastore: assets, to: \"{}\" }}\nverify:\n  - {{ objects: \"img/\", expect: 2 }}\n  - {{ objects: \"\", at_least: 3 }}\n  - {{ key: img/a, sha256: \"{sha}\" }}\n",
                chrono_like(point)
            ),
        )
        .unwrap();
    };
    test("good.yaml", &sha256_hex("a v1"));
    test("bad.yaml", &sha256_hex("ENCRYPTED"));
    let run = |args: &[&str]| {
        aws::outcome(
            aws::drctl(&dir, &moto.endpoint(), ("testing", "testing"))
                .env("DRCTL_STATE", format!("sqlite://{}/state.db", dir.display()))
                .args(args),
        )
    };
    let report = |sub: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(sub).join("report.json")).unwrap()).unwrap()
    };

    let (code, out, err) = run(&["drill", "good.yaml", "-f", "drctl.yaml", "--report", "good"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("✓ sha256 of `img/a`") && out.contains("verified"), "{out}");
    let r = report("good")["restore"].clone();
    assert_eq!(r["verified"], true, "{r}");
    assert_eq!(r["checks"].as_array().unwrap().len(), 3, "{r}");
    assert_eq!(r["checks"][0]["got"], 2, "img/a and img/b, not the ransom note written after: {r}");
    let error = r["recovery_point_error_s"].as_f64().unwrap();
    let newest = chrono::DateTime::parse_from_rfc3339(r["recovered_point"].as_str().unwrap()).unwrap();
    assert_eq!(newest.timestamp(), chrono::DateTime::<chrono::Utc>::from(written).timestamp(), "{r}");
    assert!((0.0..2.0).contains(&error), "the newest write restored is the last before the point: {r}");
    assert!(r["restore_s"].as_f64().unwrap() > 0.0 && r["meets_rto"] == true, "{r}");
    assert!(scratch_buckets(&s3).await.is_empty(), "the copy is removed with its bucket");
    assert_eq!(get(&s3, "assets-a", "img/a").await.as_deref(), Some("ENCRYPTED"), "the source is untouched");

    let (code, out, err) = run(&["drill", "good.yaml", "-f", "drctl.yaml", "--report", "kept", "--keep", "1h"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let kept = report("kept")["restore"]["kept"]["bucket"].as_str().unwrap().to_string();
    assert!(out.contains(&format!("the copy is kept in bucket {kept}")), "{out}");
    assert_eq!(scratch_buckets(&s3).await, std::slice::from_ref(&kept));
    assert_eq!(get(&s3, &kept, "img/a").await.as_deref(), Some("a v1"));

    // The status page and the customer's pages show the last tested restore beside the drills.
    // (blocking HTTP and browsers: off the async runtime's threads)
    tokio::task::block_in_place(|| {
        let port = drctl_testkit::free_port();
        let child = aws::drctl(&dir, &moto.endpoint(), ("testing", "testing"))
            .env("DRCTL_STATE", format!("sqlite://{}/state.db", dir.display()))
            .args(["serve", "-f", "drctl.yaml", "--sample-every", "300ms", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        common::wait_listening(port, "drctl serve");
        let srv = common::Server { child, base: format!("http://127.0.0.1:{port}"), port };
        let c = common::client();
        common::wait_for("the datastores on the status page", 30, || {
            c.get(&srv.base).send().and_then(|r| r.text()).is_ok_and(|p| p.contains("Last tested restore"))
        });
        let acme = {
            let (code, out, err) =
                run(&["token", "create", "--name", "auditor", "--role", "customer", "--customer", "acme"]);
            assert_eq!(code, 0, "{out}\n{err}");
            out.trim().to_string()
        };
        let evidence: serde_json::Value = c
            .get(format!("{}/customers/acme/assurance.json", srv.base))
            .bearer_auth(&acme)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let tested = &evidence["services"][0]["restore_tests"][0];
        assert_eq!(tested["datastore"], "assets", "{evidence}");
        assert_eq!(tested["passed"], true, "{evidence}");
        let assurance = c.get(format!("{}/customers/acme/assurance.html", srv.base)).bearer_auth(&acme).send().unwrap();
        let assurance = assurance.text().unwrap();
        if let Some(browser) = common::chromium_or_skip() {
            let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
            let dom =
                common::render(&browser, &format!("{}/?lang=en", srv.base), &shots.join("status-restore-test.png"));
            let row = dom.split("<tr>").find(|r| r.contains(r#"<th scope="row">assets</th>"#)).unwrap_or_default();
            assert!(
                row.contains("recovery-point error") && row.contains(r#"<span class="met">passed</span>"#),
                "{dom}"
            );
            let ja =
                common::render(&browser, &format!("{}/?lang=ja", srv.base), &shots.join("status-restore-test-ja.png"));
            assert!(ja.contains("直近の復元テスト"), "{ja}");
            let file = shots.join("assurance-restore-test.html");
            std::fs::write(&file, &assurance).unwrap();
            let dom =
                common::render(&browser, &format!("file://{}", file.display()), &shots.join("assurance-restore.png"));
            let section = dom.split("<h2>Tested restores</h2>").nth(1).unwrap_or_default();
            assert!(
                section.contains("<td>assets</td>") && section.contains(r#"<span class="met">passed</span>"#),
                "{dom}"
            );
        }
        drop(srv);
    });

    let (code, out, err) = run(&["drill", "bad.yaml", "-f", "drctl.yaml", "--report", "bad"]);
    assert_eq!(code, 3, "{out}\n{err}");
    let r = report("bad")["restore"].clone();
    assert_eq!(r["verified"], false, "{r}");
    assert_eq!(r["checks"][2]["passed"], false, "{r}");
    assert_eq!(scratch_buckets(&s3).await, [kept], "a failed test's copy is removed too");
    let (code, out, _) = run(&["backups", "-f", "drctl.yaml", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(code, 0, "{out}");
    assert_eq!(v["datastores"][0]["last_restore_test"]["passed"], false, "{v}");

    // An SQL check on an S3 datastore, refused where it is written.
    std::fs::write(
        dir.join("sql.yaml"),
        "name: t\nrestore: { datastore: assets }\nverify:\n  - { objects: \"img/\", at_least: 1 }\n  - { sql: \"SELECT 1\", expect: 1 }\n",
    )
    .unwrap();
    let (code, out, err) = run(&["drill", "sql.yaml", "-f", "drctl.yaml"]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("sql.yaml:5:5: error") && err.contains("an SQL check on `assets`, an S3 datastore"), "{err}");
    assert!(err.contains("hint: check an S3 copy with"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An RDS restore to before an erasure replays the ledger on the restored
/// instance through the `locate` entry's `url`; on the emulator the new
/// instance's endpoint answers nothing, so the restore says the replay is
/// pending, with how many requests, instead of claiming it done.
#[tokio::test(flavor = "multi_thread")]
async fn an_rds_restore_says_the_erasure_replay_is_pending_when_the_copy_cannot_be_reached() {
    let moto = Moto::start();
    let sdk = aws::sdk(&moto.endpoint(), ("testing", "testing")).await;
    let rds = aws_sdk_rds::Client::new(&sdk);
    rds.create_db_instance()
        .db_instance_identifier("ledger-a")
        .db_instance_class("db.t3.micro")
        .engine("postgres")
        .allocated_storage(20)
        .master_username("admin")
        .master_user_password("not-a-secret-1")
        .backup_retention_period(7)
        .send()
        .await
        .unwrap();
    let dir = common::tempdir("restore-rds-erasure");
    std::fs::write(
        dir.join("drctl.yaml"),
        "version: 1\nzones: [ { name: az1, region: us-east-1, aws_zone: us-east-1a } ]\n\
         datastores:\n  - name: ledger-db\n    kind: rds-instance\n    primary: { zone: az1, instance: ledger-a }\n    backup: { retention: 7d }\n\
         erasure:\n  locate:\n    - { datastore: ledger-db, url: \"postgres://eraser@127.0.0.1:1/ledger\", sql: \"DELETE FROM accounts WHERE owner = $1\", check: \"SELECT count(*) FROM accounts WHERE owner = $1\" }\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        aws::outcome(
            aws::drctl(&dir, &moto.endpoint(), ("testing", "testing"))
                .env("DRCTL_STATE", format!("sqlite://{}/state.db", dir.display()))
                .args(args),
        )
    };
    // Recorded in the ledger (the database itself is not reachable here: not verified).
    let (code, out, err) = run(&["erase", "cust-1", "--reason", "request 5", "--yes", "--wait", "1s"]);
    assert_eq!(code, 3, "{out}\n{err}");
    let (code, out, err) = run(&["restore", "ledger-db", "--to", "-1h", "--reason", "bad migration"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(
            "erasure replay PENDING: 1 request(s) made since the point are not replayed on ledger-a-restored-"
        ),
        "{out}"
    );
    assert!(out.contains("do not let it serve before they are"), "{out}");
    assert!(!out.contains("cust-1"), "never the subject: {out}");
    let _ = std::fs::remove_dir_all(&dir);
}
