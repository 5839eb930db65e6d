//! The lab's S3 endpoints keep object versions as a versioned S3 bucket
//! does, driven with the real AWS SDK: overwrites and deletes keep the old
//! versions, a version is read and copied back by its id, drctl's
//! point-in-time restore puts a bucket back as it was (destroying no
//! version), and drctl's replicator copies between two endpoints as before.

use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use drctl_aws::s3::{self, Bucket};
use drctl_aws::s3_restore::{restore, Dest};
use drctl_lab::s3::S3Server;
use std::time::{Duration, SystemTime};

async fn endpoint(name: &str, buckets: &[&str]) -> (S3Server, std::path::PathBuf) {
    let root = std::env::temp_dir().join(format!("drctl-lab-s3v-{name}-{}", std::process::id()));
    S3Server::wipe(&root);
    let server = S3Server::start("127.0.0.1:0".parse().unwrap(), &root, buckets).await.expect("the endpoint starts");
    (server, root)
}

async fn bucket(server: &S3Server, name: &str) -> Bucket {
    let url = format!("http://{}", server.addr);
    let clients = drctl_control::live::Clients::new(drctl_lab::credentials());
    Bucket {
        zone: "lab-az1".into(),
        name: name.into(),
        client: clients.s3(Some(&url), Some("lab")).await,
        endpoint: Some(url),
    }
}

async fn text(b: &Bucket, key: &str) -> Option<String> {
    s3::get_bytes(b, key).await.ok().map(|v| String::from_utf8_lossy(&v).to_string())
}

async fn counts(b: &Bucket, prefix: &str) -> (usize, usize) {
    let v = b.client.list_object_versions().bucket(&b.name).prefix(prefix).send().await.unwrap();
    (v.versions().len(), v.delete_markers().len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwrites_and_deletes_keep_versions_and_a_restore_brings_the_bucket_back() {
    let (server, root) = endpoint("pitr", &["assets"]).await;
    let b = bucket(&server, "assets").await;
    let status = b.client.get_bucket_versioning().bucket("assets").send().await.unwrap();
    assert_eq!(
        status.status(),
        Some(&BucketVersioningStatus::Enabled),
        "the lab's buckets are versioned from the start"
    );

    for k in ["users/a", "users/b", "users/c"] {
        s3::put_bytes(&b, k, format!("{k} v1").into_bytes()).await.unwrap();
    }
    let point = SystemTime::now();
    std::thread::sleep(Duration::from_millis(20));
    // Ransomware: overwrites, a delete, a note.
    s3::put_bytes(&b, "users/a", b"ENCRYPTED".to_vec()).await.unwrap();
    s3::put_bytes(&b, "users/c", b"ENCRYPTED".to_vec()).await.unwrap();
    let del = b.client.delete_object().bucket("assets").key("users/b").send().await.unwrap();
    assert_eq!(del.delete_marker(), Some(true), "a delete in a versioned bucket leaves a marker");
    s3::put_bytes(&b, "users/README-ransom", b"pay".to_vec()).await.unwrap();
    assert_eq!(text(&b, "users/b").await, None, "deleted: no current version");

    // Every version is listed, newest first, and readable by its id.
    let listed = b.client.list_object_versions().bucket("assets").prefix("users/a").send().await.unwrap();
    let ids: Vec<&str> = listed.versions().iter().filter_map(|v| v.version_id()).collect();
    assert_eq!(ids.len(), 2, "{listed:?}");
    assert_eq!(listed.versions()[0].is_latest(), Some(true));
    let old = b.client.get_object().bucket("assets").key("users/a").version_id(ids[1]).send().await.unwrap();
    let body = old.body.collect().await.unwrap().into_bytes();
    assert_eq!(&body[..], b"users/a v1");
    let head = b.client.head_object().bucket("assets").key("users/a").send().await.unwrap();
    assert_eq!(head.version_id(), Some(ids[0]), "the current version names itself");
    let before = counts(&b, "").await;
    assert_eq!(before, (6, 1));

    // drctl's point-in-time restore, in place, as on AWS.
    let sum = restore(&b, "users/", point, &Dest::InPlace).await.unwrap();
    assert_eq!((sum.restored, sum.deleted, sum.failed.len()), (3, 1, 0), "{sum:?}");
    for k in ["users/a", "users/b", "users/c"] {
        assert_eq!(text(&b, k).await, Some(format!("{k} v1")), "{k} as it was");
    }
    assert_eq!(text(&b, "users/README-ransom").await, None, "created after the point: hidden");
    assert_eq!(counts(&b, "").await, (before.0 + 3, before.1 + 1), "no version destroyed");
    let again = restore(&b, "users/", point, &Dest::InPlace).await.unwrap();
    assert_eq!((again.restored, again.deleted), (0, 0), "a second run finds nothing to do: {again:?}");

    // Removing the newest version for good makes the one before it current.
    let newest = b.client.list_object_versions().bucket("assets").prefix("users/a").send().await.unwrap();
    let top = newest.versions()[0].version_id().unwrap().to_string();
    b.client.delete_object().bucket("assets").key("users/a").version_id(&top).send().await.unwrap();
    assert_eq!(text(&b, "users/a").await.as_deref(), Some("ENCRYPTED"));
    let missing = b.client.get_object().bucket("assets").key("users/a").version_id(&top).send().await;
    assert!(missing.is_err(), "a removed version is gone");
    drop(server);
    S3Server::wipe(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_never_versioned_says_so_and_turning_versioning_on_keeps_what_it_held() {
    let (server, root) = endpoint("plain", &[]).await;
    let b = bucket(&server, "plain").await;
    b.client.create_bucket().bucket("plain").send().await.unwrap();
    s3::put_bytes(&b, "k", b"one".to_vec()).await.unwrap();
    s3::put_bytes(&b, "k", b"two".to_vec()).await.unwrap();
    let err = restore(&b, "", SystemTime::now(), &Dest::InPlace).await.unwrap_err();
    assert!(err.to_string().contains("never been versioned"), "{err}");
    let v = b.client.list_object_versions().bucket("plain").send().await.unwrap();
    assert_eq!(v.versions()[0].version_id(), Some("null"));

    b.client
        .put_bucket_versioning()
        .bucket("plain")
        .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
        .send()
        .await
        .unwrap();
    s3::put_bytes(&b, "k", b"three".to_vec()).await.unwrap();
    let v = b.client.list_object_versions().bucket("plain").send().await.unwrap();
    let ids: Vec<&str> = v.versions().iter().filter_map(|x| x.version_id()).collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[1], "null", "what it held before is its null version");
    let null = b.client.get_object().bucket("plain").key("k").version_id("null").send().await.unwrap();
    assert_eq!(&null.body.collect().await.unwrap().into_bytes()[..], b"two");
    drop(server);
    S3Server::wipe(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replicator_copies_between_versioned_lab_endpoints() {
    let (s1, r1) = endpoint("rep1", &["src"]).await;
    let (s2, r2) = endpoint("rep2", &["dst"]).await;
    let src = bucket(&s1, "src").await;
    let mut dst = bucket(&s2, "dst").await;
    dst.zone = "lab-az2".into();
    for i in 0..5 {
        s3::put_bytes(&src, &format!("o/{i}"), vec![b'x'; 1000 + i]).await.unwrap();
    }
    // One object big enough for a multipart copy.
    s3::put_bytes(&src, "o/big", vec![b'y'; 9 * 1024 * 1024]).await.unwrap();
    let state = drctl_state::State::in_memory().unwrap();
    let sum =
        s3::replicate_once("assets", &src, std::slice::from_ref(&dst), &*state, &Default::default(), &s3::NoProgress)
            .await;
    assert!(sum.errors.is_empty(), "{:?}", sum.errors);
    let a = s3::list(&src).await.unwrap();
    let b = s3::list(&dst).await.unwrap();
    assert_eq!(a.len(), 6);
    assert_eq!(a.keys().collect::<std::collections::BTreeSet<_>>(), b.keys().collect());
    assert_eq!(s3::get_bytes(&dst, "o/big").await.unwrap().len(), 9 * 1024 * 1024);
    let (versions, _) = counts(&dst, "").await;
    assert_eq!(versions, 6, "each copy is a version on the replica");
    drop((s1, s2));
    S3Server::wipe(&r1);
    S3Server::wipe(&r2);
}

/// Every file and folder under `dir`: its path and its bytes (folders: none).
fn walk(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.push((p.display().to_string(), Vec::new()));
            out.extend(walk(&p));
        } else {
            out.push((p.display().to_string(), std::fs::read(&p).unwrap_or_default()));
        }
    }
    out
}

/// What drctl's erasure does on a versioned bucket: each version and delete
/// marker deleted by its id. Once the last one is gone the key is gone
/// for good: not listed, not readable, and nothing on the endpoint's disk
/// (its objects nor its side folder of versions) holds its name or bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_every_version_by_its_id_leaves_no_trace_of_the_key() {
    let (server, root) = endpoint("erase", &["assets"]).await;
    let b = bucket(&server, "assets").await;
    let key = "users/cust-4711/avatar.png";
    for n in 1..=3 {
        s3::put_bytes(&b, key, format!("portrait of cust-4711, take {n}").into_bytes()).await.unwrap();
    }
    b.client.delete_object().bucket("assets").key(key).send().await.unwrap();
    s3::put_bytes(&b, "users/cust-0042/avatar.png", b"someone else".to_vec()).await.unwrap();
    let listed = b.client.list_object_versions().bucket("assets").prefix("users/cust-4711/").send().await.unwrap();
    let mut ids: Vec<String> = listed.versions().iter().filter_map(|v| v.version_id().map(str::to_string)).collect();
    ids.extend(listed.delete_markers().iter().filter_map(|m| m.version_id().map(str::to_string)));
    assert_eq!(ids.len(), 4, "three versions and a marker: {listed:?}");

    // Oldest first: the current object is rewritten from older versions as
    // newer ones go, until none is left.
    for id in ids.iter().rev() {
        b.client.delete_object().bucket("assets").key(key).version_id(id).send().await.unwrap();
    }
    assert_eq!(counts(&b, "users/cust-4711/").await, (0, 0), "no version and no marker left");
    assert_eq!(text(&b, key).await, None);
    let gone = b.client.get_object().bucket("assets").key(key).version_id(&ids[0]).send().await;
    assert!(gone.is_err(), "a deleted version cannot be read by its id");
    let again = b.client.delete_object().bucket("assets").key(key).version_id(&ids[0]).send().await;
    assert!(again.is_err(), "a version deleted for good is not found again");
    assert_eq!(counts(&b, "users/cust-4711/").await, (0, 0), "and deleting it again leaves no marker");

    let hex: String = key.bytes().map(|c| format!("{c:02x}")).collect();
    let mut versions_dir = root.clone().into_os_string();
    versions_dir.push(".versions");
    let on_disk: Vec<(String, Vec<u8>)> =
        walk(&root).into_iter().chain(walk(std::path::Path::new(&versions_dir))).collect();
    assert!(on_disk.iter().any(|(p, _)| p.contains("assets")), "the walk sees the endpoint's folders: {on_disk:?}");
    for (path, bytes) in &on_disk {
        let content = String::from_utf8_lossy(bytes);
        assert!(
            !path.contains("cust-4711") && !path.contains(&hex) && !content.contains("cust-4711"),
            "{path} keeps the erased key: {content}"
        );
    }
    assert_eq!(text(&b, "users/cust-0042/avatar.png").await.as_deref(), Some("someone else"), "another key stays");
    assert_eq!(counts(&b, "users/cust-0042/").await, (1, 0));
    drop(server);
    S3Server::wipe(&root);
}
