//! S3 replication and lag against moto's server through the real aws-sdk-s3.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use common::{bucket, handle, sdk};
use drctl_aws::s3::{self, measure, replicate_once, Bucket, NoProgress, Options, Progress};
use drctl_runtime::MockClock;
use drctl_state::State;
use drctl_testkit::{Moto, TcpProxy};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

async fn put_many(b: &Bucket, n: usize, prefix: &str) {
    for i in 0..n {
        s3::put_bytes(b, &format!("{prefix}{i:04}.txt"), format!("object {i} of {prefix}").into_bytes()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replication_copies_what_is_new_or_changed_keeps_metadata_and_verifies() {
    let moto = Moto::start();
    let sdk = sdk().await;
    let src = bucket(&sdk, &moto.endpoint(), "az1", "shop-assets-az1").await;
    let dst = bucket(&sdk, &moto.endpoint(), "az2", "shop-assets-az2").await;
    put_many(&src, 20, "img/").await;
    src.client
        .put_object()
        .bucket(&src.name)
        .key("docs/readme with space.txt")
        .content_type("text/plain; charset=utf-8")
        .metadata("owner", "team-a")
        .body(ByteStream::from_static(b"hello"))
        .send()
        .await
        .unwrap();
    // Lag is read on the controller's clock, the one its reports are dated
    // by: here an hour ahead of the machine's (and of S3's timestamps).
    let an_hour_on = SystemTime::now() + Duration::from_secs(3600);
    let before = measure(&src, std::slice::from_ref(&dst), an_hour_on).await;
    let lag = before.replicas[0].lag_s.unwrap();
    assert!((3595.0..3700.0).contains(&lag), "21 objects missing, on a clock an hour on: lag {lag}");
    assert_eq!(before.replicas[0].detail.as_deref(), Some("21 objects behind"));

    let state = State::in_memory().unwrap();
    let controller = Options { clock: Arc::new(MockClock::starting_at(an_hour_on)), ..Options::default() };
    let first = replicate_once("assets", &src, std::slice::from_ref(&dst), &*state, &controller, &NoProgress).await;
    assert_eq!((first.totals.copied, first.totals.failed, first.totals.skipped), (21, 0, 0), "{:?}", first.failures);
    assert_eq!(first.lags_s.len(), 21, "a lag per copied object");
    assert!(
        first.lags_s.iter().all(|&l| (3595.0..3700.0).contains(&l)),
        "written an hour before the copy on the controller's clock: {:?}",
        first.lags_s
    );
    assert_eq!(first.totals.bytes, 5 + (0..20).map(|i| format!("object {i} of img/").len() as u64).sum::<u64>());

    let head = dst.client.head_object().bucket(&dst.name).key("docs/readme with space.txt").send().await.unwrap();
    assert_eq!(head.content_type(), Some("text/plain; charset=utf-8"));
    assert_eq!(head.metadata().and_then(|m| m.get("owner")).map(String::as_str), Some("team-a"));
    assert_eq!(s3::get_bytes(&dst, "img/0007.txt").await.unwrap(), b"object 7 of img/");

    let after = measure(&src, std::slice::from_ref(&dst), SystemTime::now()).await;
    assert_eq!(after.replicas[0].lag_s, Some(0.0));
    assert_eq!(after.replicas[0].detail.as_deref(), Some("in sync"));

    let again =
        replicate_once("assets", &src, std::slice::from_ref(&dst), &*state, &Options::default(), &NoProgress).await;
    assert_eq!((again.totals.copied, again.totals.skipped), (0, 21), "nothing new: nothing copied");

    s3::put_bytes(&src, "img/0003.txt", b"changed".to_vec()).await.unwrap();
    let changed =
        replicate_once("assets", &src, std::slice::from_ref(&dst), &*state, &Options::default(), &NoProgress).await;
    assert_eq!((changed.totals.copied, changed.totals.skipped), (1, 20));
    assert_eq!(s3::get_bytes(&dst, "img/0003.txt").await.unwrap(), b"changed");
}

/// Uploads `size` bytes as a multipart object with `part` byte parts.
async fn put_multipart(b: &Bucket, key: &str, size: usize, part: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    let up = b
        .client
        .create_multipart_upload()
        .bucket(&b.name)
        .key(key)
        .content_type("application/x-test")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap();
    let mut parts = Vec::new();
    for (n, chunk) in data.chunks(part).enumerate() {
        let out = b
            .client
            .upload_part()
            .bucket(&b.name)
            .key(key)
            .upload_id(id)
            .part_number(n as i32 + 1)
            .body(ByteStream::from(chunk.to_vec()))
            .send()
            .await
            .unwrap();
        parts.push(CompletedPart::builder().part_number(n as i32 + 1).e_tag(out.e_tag().unwrap()).build());
    }
    // moto 5.2 completes the upload but answers with an XML root the SDK
    // rejects; the object's existence is what counts.
    let _ = b
        .client
        .complete_multipart_upload()
        .bucket(&b.name)
        .key(key)
        .upload_id(id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
        .send()
        .await;
    b.client.head_object().bucket(&b.name).key(key).send().await.expect("the multipart upload completed");
    data
}

async fn etag(b: &Bucket, key: &str) -> String {
    b.client.head_object().bucket(&b.name).key(key).send().await.unwrap().e_tag().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_objects_keep_their_etag_server_side_and_streamed_across_endpoints() {
    let (moto_a, moto_b) = (Moto::start(), Moto::start());
    let sdk = sdk().await;
    let src = bucket(&sdk, &moto_a.endpoint(), "az1", "big-az1").await;
    let same = bucket(&sdk, &moto_a.endpoint(), "az2", "big-az2").await;
    let other = bucket(&sdk, &moto_b.endpoint(), "az3", "big-az3").await;
    let data = put_multipart(&src, "backups/db.dump", 12 * 1024 * 1024 + 123, 5 * 1024 * 1024).await;
    s3::put_bytes(&src, "small.txt", b"tiny".to_vec()).await.unwrap();
    let source_etag = etag(&src, "backups/db.dump").await;
    assert!(source_etag.ends_with("-3\""), "{source_etag}");

    let state = State::in_memory().unwrap();
    let sum =
        replicate_once("big", &src, &[same.clone(), other.clone()], &*state, &Options::default(), &NoProgress).await;
    assert_eq!((sum.totals.copied, sum.totals.failed), (4, 0), "{:?} {:?}", sum.failures, sum.errors);
    for dst in [&same, &other] {
        assert_eq!(etag(dst, "backups/db.dump").await, source_etag, "copy in {} keeps the ETag", dst.zone);
        assert_eq!(s3::get_bytes(dst, "backups/db.dump").await.unwrap(), data);
        let head = dst.client.head_object().bucket(&dst.name).key("backups/db.dump").send().await.unwrap();
        assert_eq!(head.content_type(), Some("application/x-test"));
    }
    assert!(
        state.multipart_checkpoint("big", "az3", "backups/db.dump").unwrap().is_none(),
        "finished copies leave no checkpoint"
    );
    let m = measure(&src, &[same, other], SystemTime::now()).await;
    assert!(m.replicas.iter().all(|r| r.lag_s == Some(0.0)), "{m:?}");
}

/// Cuts a proxy after a number of objects were copied.
struct CutAfter<'a> {
    n: u64,
    seen: AtomicU64,
    proxy: &'a TcpProxy,
}

impl Progress for CutAfter<'_> {
    fn copied(&self, _key: &str, _bytes: u64) {
        if self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.n {
            self.proxy.cut();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_that_disappears_mid_run_is_reported_and_the_next_run_completes() {
    let (moto_a, moto_b) = (Moto::start(), Moto::start());
    let proxy = TcpProxy::start(moto_b.port);
    let sdk = sdk().await;
    let src = bucket(&sdk, &moto_a.endpoint(), "az1", "logs-az1").await;
    bucket(&sdk, &moto_b.endpoint(), "az2", "logs-az2").await;
    let dst = handle(&sdk, &proxy.endpoint(), "az2", "logs-az2");
    put_many(&src, 150, "log/").await;

    let state = State::in_memory().unwrap();
    let options = Options { concurrency: 4, backoff: Duration::from_millis(20), ..Options::default() };
    let cutter = CutAfter { n: 40, seen: AtomicU64::new(0), proxy: &proxy };
    let broken = replicate_once("logs", &src, std::slice::from_ref(&dst), &*state, &options, &cutter).await;
    assert!(broken.totals.copied >= 40 && broken.totals.copied < 150, "{:?}", broken.totals);
    assert_eq!(broken.totals.copied + broken.totals.failed, 150, "every object is either copied or reported");
    let f = &broken.failures[0];
    assert_eq!(f.replica_zone, "az2");
    assert!(
        f.error.contains("cannot reach") || f.error.contains("did not answer") || f.error.contains("could not be read"),
        "{}",
        f.error
    );

    proxy.restore();
    let next = replicate_once("logs", &src, std::slice::from_ref(&dst), &*state, &options, &NoProgress).await;
    assert_eq!(next.totals.failed, 0, "{:?}", next.failures);
    // A copy whose answer was lost in the cut may have landed anyway: it was
    // reported failed (unverified), and is now found in sync and skipped.
    assert!(
        next.totals.copied <= broken.totals.failed,
        "only what failed may be copied again: {:?} after {:?}",
        next.totals,
        broken.totals
    );
    assert!(next.totals.copied > 0);
    assert_eq!(next.totals.copied + next.totals.skipped, 150);
    let m = measure(&src, &[dst], SystemTime::now()).await;
    assert_eq!(m.replicas[0].lag_s, Some(0.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_bucket_or_endpoint_is_explained() {
    let moto = Moto::start();
    let sdk = sdk().await;
    let src = bucket(&sdk, &moto.endpoint(), "az1", "present-az1").await;
    let missing = handle(&sdk, &moto.endpoint(), "az2", "absent-az2");
    let m = measure(&src, &[missing], SystemTime::now()).await;
    let why = m.replicas[0].error.as_deref().unwrap();
    assert!(why.contains("NoSuchBucket") && why.contains("create it or fix `bucket:`"), "{why}");
    assert!(!m.replicas[0].healthy);

    let dead = handle(&sdk, &format!("http://127.0.0.1:{}", drctl_testkit::free_port()), "az1", "present-az1");
    let m = measure(&dead, &[], SystemTime::now()).await;
    assert!(m.error.as_deref().unwrap().contains("cannot reach the endpoint"), "{m:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_multipart_copy_interrupted_by_a_crash_resumes_its_upload() {
    let (moto_a, moto_b) = (Moto::start(), Moto::start());
    let sdk = sdk().await;
    let src = bucket(&sdk, &moto_a.endpoint(), "az1", "resume-az1").await;
    let dst = bucket(&sdk, &moto_b.endpoint(), "az2", "resume-az2").await;
    let part = 5 * 1024 * 1024;
    let data = put_multipart(&src, "big.bin", 2 * part + 4321, part).await;
    let source_etag = etag(&src, "big.bin").await;

    // What a crash after the first part leaves: an open upload, one part recorded.
    let state = State::in_memory().unwrap();
    let up = dst
        .client
        .create_multipart_upload()
        .bucket(&dst.name)
        .key("big.bin")
        .content_type("application/x-test")
        .send()
        .await
        .unwrap();
    let upload_id = up.upload_id().unwrap().to_string();
    let p1 = dst
        .client
        .upload_part()
        .bucket(&dst.name)
        .key("big.bin")
        .upload_id(&upload_id)
        .part_number(1)
        .body(ByteStream::from(data[..part].to_vec()))
        .send()
        .await
        .unwrap();
    let checkpoint = drctl_state::MultipartCheckpoint {
        upload_id: upload_id.clone(),
        source_etag: source_etag.trim_matches('"').to_string(),
        part_size: part as u64,
        parts: Vec::new(),
    };
    state.start_multipart("big", "az2", "big.bin", &checkpoint).unwrap();
    state.record_part("big", "az2", "big.bin", 1, p1.e_tag().unwrap().trim_matches('"')).unwrap();

    let sum = replicate_once("big", &src, std::slice::from_ref(&dst), &*state, &Options::default(), &NoProgress).await;
    assert_eq!((sum.totals.copied, sum.totals.failed), (1, 0), "{:?}", sum.failures);
    assert_eq!(etag(&dst, "big.bin").await, source_etag);
    assert_eq!(s3::get_bytes(&dst, "big.bin").await.unwrap(), data);
    let open = dst.client.list_multipart_uploads().bucket(&dst.name).send().await.unwrap();
    assert!(open.uploads().is_empty(), "the recorded upload was finished, not abandoned: {:?}", open.uploads());
    assert!(state.multipart_checkpoint("big", "az2", "big.bin").unwrap().is_none());
}

/// Fails the way the default chain does when no source has credentials.
#[derive(Debug)]
struct NoCredentialsAnywhere;

impl aws_credential_types::provider::ProvideCredentials for NoCredentialsAnywhere {
    fn provide_credentials<'a>(&'a self) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::ready(Err(
            aws_credential_types::provider::error::CredentialsError::not_loaded(
                "no providers in chain provided credentials",
            ),
        ))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_credentials_are_explained() {
    let moto = Moto::start();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .credentials_provider(NoCredentialsAnywhere)
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await;
    let b = handle(&sdk, &moto.endpoint(), "az1", "any-az1");
    let m = measure(&b, &[], SystemTime::now()).await;
    let why = m.error.unwrap();
    assert!(why.contains("no AWS credentials found"), "{why}");
}

#[tokio::test(flavor = "multi_thread")]
async fn copies_are_encrypted_when_asked() {
    let (moto_a, moto_b) = (Moto::start(), Moto::start());
    let sdk = sdk().await;
    let src = bucket(&sdk, &moto_a.endpoint(), "az1", "plain-az1").await;
    let same = bucket(&sdk, &moto_a.endpoint(), "az2", "sealed-az2").await;
    let other = bucket(&sdk, &moto_b.endpoint(), "az3", "sealed-az3").await;
    s3::put_bytes(&src, "secret.txt", b"the recipe".to_vec()).await.unwrap();
    let state = State::in_memory().unwrap();
    let options = Options { sse: Some("AES256".into()), ..Options::default() };
    let sum = replicate_once("sealed", &src, &[same.clone(), other.clone()], &*state, &options, &NoProgress).await;
    assert_eq!((sum.totals.copied, sum.totals.failed), (2, 0), "{:?}", sum.failures);
    for dst in [&same, &other] {
        let head = dst.client.head_object().bucket(&dst.name).key("secret.txt").send().await.unwrap();
        assert_eq!(head.server_side_encryption().map(|s| s.as_str()), Some("AES256"), "copy in {}", dst.zone);
        assert_eq!(s3::get_bytes(dst, "secret.txt").await.unwrap(), b"the recipe");
    }
    // SSE-KMS: ETags are no digests, so the second pass decides from what
    // the first copied (the manifest's source ETag), and copies nothing.
    let kms = Options { sse: Some("aws:kms".into()), ..Options::default() };
    let sealed = bucket(&sdk, &moto_a.endpoint(), "az4", "kms-az4").await;
    let first = replicate_once("kms", &src, std::slice::from_ref(&sealed), &*state, &kms, &NoProgress).await;
    assert_eq!((first.totals.copied, first.totals.failed), (1, 0), "{:?}", first.failures);
    let head = sealed.client.head_object().bucket(&sealed.name).key("secret.txt").send().await.unwrap();
    assert_eq!(head.server_side_encryption().map(|s| s.as_str()), Some("aws:kms"));
    let second = replicate_once("kms", &src, std::slice::from_ref(&sealed), &*state, &kms, &NoProgress).await;
    assert_eq!((second.totals.copied, second.totals.skipped), (0, 1), "the second pass copies nothing");
}

async fn keys(b: &Bucket) -> Vec<String> {
    let mut k: Vec<String> = s3::list(b).await.unwrap().into_keys().collect();
    k.sort();
    k
}

/// docs/guide/safety.md, nothing lost in S3, through a failover and back: a write the
/// old primary took but never replicated is kept (and reported) when
/// replication turns around, and so is one changed there since; new writes
/// on the new primary arrive; a delete on the new primary reaches the old
/// one, for what had been replicated.
#[tokio::test(flavor = "multi_thread")]
async fn after_a_failover_replication_keeps_unreplicated_writes_and_replicates_deletes() {
    let moto = Moto::start();
    let sdk = sdk().await;
    let az1 = bucket(&sdk, &moto.endpoint(), "az1", "fb-assets-az1").await;
    let az2 = bucket(&sdk, &moto.endpoint(), "az2", "fb-assets-az2").await;
    let state = State::in_memory().unwrap();
    let opts = Options::default();
    for k in ["a", "b", "gone"] {
        s3::put_bytes(&az1, k, format!("{k} v1").into_bytes()).await.unwrap();
    }
    let first = replicate_once("assets", &az1, std::slice::from_ref(&az2), &*state, &opts, &NoProgress).await;
    assert_eq!(first.totals.copied, 3);
    // A delete on the primary reaches the replica on the next pass.
    az1.client.delete_object().bucket(&az1.name).key("gone").send().await.unwrap();
    let deleted = replicate_once("assets", &az1, std::slice::from_ref(&az2), &*state, &opts, &NoProgress).await;
    assert_eq!((deleted.deleted, deleted.totals.copied), (1, 0));
    assert_eq!(keys(&az2).await, ["a", "b"]);

    // az1 takes writes that never get replicated, then az1 is lost.
    s3::put_bytes(&az1, "only-in-az1", b"the only copy".to_vec()).await.unwrap();
    s3::put_bytes(&az1, "a", b"a v2, never replicated".to_vec()).await.unwrap();
    // Failed over: az2 is the primary; it takes new writes and a delete.
    s3::put_bytes(&az2, "new", b"written after the failover".to_vec()).await.unwrap();
    az2.client.delete_object().bucket(&az2.name).key("b").send().await.unwrap();

    let back = replicate_once("assets", &az2, std::slice::from_ref(&az1), &*state, &opts, &NoProgress).await;
    assert!(back.failures.is_empty() && back.errors.is_empty(), "{back:?}");
    assert_eq!(back.totals.copied, 1, "the new write arrives");
    assert_eq!(back.deleted, 1, "b had been replicated, so its delete is replicated");
    let mut conflicts: Vec<(String, String)> = back.conflicts.iter().map(|c| (c.key.clone(), c.zone.clone())).collect();
    conflicts.sort();
    assert_eq!(conflicts, [("a".to_string(), "az1".to_string()), ("only-in-az1".to_string(), "az1".to_string())]);
    assert!(
        back.conflicts.iter().all(|c| c.datastore == "assets" && c.reason.contains("never replicated")),
        "{back:?}"
    );
    assert_eq!(keys(&az1).await, ["a", "new", "only-in-az1"]);
    assert_eq!(s3::get_bytes(&az1, "a").await.unwrap(), b"a v2, never replicated", "not overwritten");
    assert_eq!(s3::get_bytes(&az1, "only-in-az1").await.unwrap(), b"the only copy", "not deleted");

    // An operator keeps one, discards the other: kept stays and goes quiet,
    // discarded is replaced by the primary's version.
    let a_etag = back.conflicts.iter().find(|c| c.key == "a").unwrap().etag.clone();
    let only_etag = back.conflicts.iter().find(|c| c.key == "only-in-az1").unwrap().etag.clone();
    state.keep_replicated("assets", "az1", "only-in-az1", &only_etag).unwrap();
    state
        .record_replicated(
            "assets",
            &[drctl_state::ReplicatedObject {
                zone: "az1".into(),
                key: "a".into(),
                etag: a_etag.clone(),
                source_etag: a_etag,
                kept: false,
            }],
        )
        .unwrap();
    let resolved = replicate_once("assets", &az2, std::slice::from_ref(&az1), &*state, &opts, &NoProgress).await;
    assert!(resolved.conflicts.is_empty(), "{resolved:?}");
    assert_eq!(resolved.totals.copied, 1);
    assert_eq!(s3::get_bytes(&az1, "a").await.unwrap(), b"a v1");
    assert_eq!(s3::get_bytes(&az1, "only-in-az1").await.unwrap(), b"the only copy");
}

/// On a versioned replica a replicated delete is a delete marker: the old
/// version is still there. `deletes: keep` replicates no delete.
#[tokio::test(flavor = "multi_thread")]
async fn a_versioned_replica_keeps_the_old_version_behind_a_delete_marker() {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    let moto = Moto::start();
    let sdk = sdk().await;
    let src = bucket(&sdk, &moto.endpoint(), "az1", "ver-assets-az1").await;
    let dst = bucket(&sdk, &moto.endpoint(), "az2", "ver-assets-az2").await;
    dst.client
        .put_bucket_versioning()
        .bucket(&dst.name)
        .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
        .send()
        .await
        .unwrap();
    let state = State::in_memory().unwrap();
    s3::put_bytes(&src, "doc", b"customer data".to_vec()).await.unwrap();
    replicate_once("assets", &src, std::slice::from_ref(&dst), &*state, &Options::default(), &NoProgress).await;
    src.client.delete_object().bucket(&src.name).key("doc").send().await.unwrap();
    let keep = Options { deletes: false, ..Options::default() };
    let kept = replicate_once("assets", &src, std::slice::from_ref(&dst), &*state, &keep, &NoProgress).await;
    assert_eq!((kept.deleted, kept.conflicts.len()), (0, 0), "deletes: keep");
    assert_eq!(keys(&dst).await, ["doc"]);
    let gone =
        replicate_once("assets", &src, std::slice::from_ref(&dst), &*state, &Options::default(), &NoProgress).await;
    assert_eq!(gone.deleted, 1);
    assert!(keys(&dst).await.is_empty(), "the current version is gone");
    let versions = dst.client.list_object_versions().bucket(&dst.name).send().await.unwrap();
    assert_eq!(versions.versions().len(), 1, "the old version is kept");
    assert_eq!(versions.delete_markers().len(), 1, "behind a delete marker");
}

/// A recorded multipart upload that S3 aborted since (a lifecycle rule, an
/// operator) is detected, forgotten, and the copy started again: it does
/// not fail on every pass forever.
#[tokio::test(flavor = "multi_thread")]
async fn a_multipart_upload_aborted_by_s3_is_detected_and_the_copy_restarted() {
    let (moto_a, moto_b) = (Moto::start(), Moto::start());
    let sdk = sdk().await;
    let src = bucket(&sdk, &moto_a.endpoint(), "az1", "aborted-az1").await;
    let dst = bucket(&sdk, &moto_b.endpoint(), "az2", "aborted-az2").await;
    let part = 5 * 1024 * 1024;
    let data = put_multipart(&src, "big.bin", 2 * part + 10, part).await;
    let source_etag = etag(&src, "big.bin").await;
    let state = State::in_memory().unwrap();
    let up = dst.client.create_multipart_upload().bucket(&dst.name).key("big.bin").send().await.unwrap();
    let upload_id = up.upload_id().unwrap().to_string();
    let checkpoint = drctl_state::MultipartCheckpoint {
        upload_id: upload_id.clone(),
        source_etag: source_etag.trim_matches('"').to_string(),
        part_size: part as u64,
        parts: vec![(1, "\"not-a-real-part\"".into())],
    };
    state.start_multipart("big", "az2", "big.bin", &checkpoint).unwrap();
    dst.client.abort_multipart_upload().bucket(&dst.name).key("big.bin").upload_id(&upload_id).send().await.unwrap();

    let sum = replicate_once("big", &src, std::slice::from_ref(&dst), &*state, &Options::default(), &NoProgress).await;
    assert_eq!((sum.totals.copied, sum.totals.failed), (1, 0), "{:?}", sum.failures);
    assert_eq!(s3::get_bytes(&dst, "big.bin").await.unwrap(), data);
    assert!(state.multipart_checkpoint("big", "az2", "big.bin").unwrap().is_none());
}
