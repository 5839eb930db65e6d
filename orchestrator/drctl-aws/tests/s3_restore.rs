//! S3 point-in-time restore from versions, on the AWS API emulator with
//! versioned buckets: the bucket comes back as it was, and every version
//! that existed before the restore still exists after it.

mod common;

use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use common::{bucket, sdk};
use drctl_aws::s3::{self, Bucket};
use drctl_aws::s3_restore::{restore, restore_with, Copying, Dest};
use drctl_testkit::Moto;
use std::time::{Duration, SystemTime};

async fn versioned(b: &Bucket) {
    b.client
        .put_bucket_versioning()
        .bucket(&b.name)
        .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
        .send()
        .await
        .unwrap();
}

/// S3 keeps modification times to the second: waits until the clock has
/// moved into the next whole second, so that writes on either side of a
/// point are told apart.
fn next_second() -> SystemTime {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap();
    let next = Duration::from_secs(now.as_secs() + 1);
    while SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap() < next {
        std::thread::sleep(Duration::from_millis(20));
    }
    SystemTime::UNIX_EPOCH + next
}

async fn text(b: &Bucket, key: &str) -> Option<String> {
    s3::get_bytes(b, key).await.ok().map(|v| String::from_utf8_lossy(&v).to_string())
}

async fn version_counts(b: &Bucket) -> (usize, usize) {
    let v = b.client.list_object_versions().bucket(&b.name).send().await.unwrap();
    (v.versions().len(), v.delete_markers().len())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_is_restored_in_place_as_it_was_and_no_version_is_destroyed() {
    let moto = Moto::start();
    let sdk = sdk().await;
    let b = bucket(&sdk, &moto.endpoint(), "az1", "pitr-assets").await;
    versioned(&b).await;
    for k in ["users/a", "users/b", "other/x"] {
        s3::put_bytes(&b, k, format!("{k} v1").into_bytes()).await.unwrap();
    }
    let _ = next_second();
    let point = next_second() - Duration::from_millis(500);
    // Ransomware: overwrites, a delete, a new note.
    s3::put_bytes(&b, "users/a", b"ENCRYPTED".to_vec()).await.unwrap();
    b.client.delete_object().bucket(&b.name).key("users/b").send().await.unwrap();
    s3::put_bytes(&b, "users/README-ransom", b"pay".to_vec()).await.unwrap();
    s3::put_bytes(&b, "other/x", b"ENCRYPTED".to_vec()).await.unwrap();
    let before = version_counts(&b).await;

    // Only the prefix asked for.
    let sum = restore(&b, "users/", point, &Dest::InPlace).await.unwrap();
    assert_eq!((sum.restored, sum.deleted, sum.failed.len()), (2, 1, 0), "{sum:?}");
    assert_eq!(text(&b, "users/a").await.as_deref(), Some("users/a v1"));
    assert_eq!(text(&b, "users/b").await.as_deref(), Some("users/b v1"));
    assert_eq!(text(&b, "users/README-ransom").await, None, "created after the point: deleted");
    assert_eq!(text(&b, "other/x").await.as_deref(), Some("ENCRYPTED"), "outside the prefix: untouched");
    let after = version_counts(&b).await;
    // Two copies became new versions, one delete marker hides the note; nothing was destroyed.
    assert_eq!(after, (before.0 + 2, before.1 + 1));
    // The ransom note's version is still there, behind its marker.
    let v = b.client.list_object_versions().bucket(&b.name).prefix("users/README-ransom").send().await.unwrap();
    assert_eq!((v.versions().len(), v.delete_markers().len()), (1, 1));

    // Running it again changes nothing.
    let again = restore(&b, "users/", point, &Dest::InPlace).await.unwrap();
    assert_eq!((again.restored, again.deleted, again.unchanged), (0, 0, 3), "{again:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_is_restored_into_a_new_prefix_leaving_the_source_as_it_is() {
    let moto = Moto::start();
    let sdk = sdk().await;
    let b = bucket(&sdk, &moto.endpoint(), "az1", "pitr-src").await;
    let out = bucket(&sdk, &moto.endpoint(), "az2", "pitr-out").await;
    versioned(&b).await;
    s3::put_bytes(&b, "d/1", b"one".to_vec()).await.unwrap();
    let _ = next_second();
    let point = next_second() - Duration::from_millis(500);
    s3::put_bytes(&b, "d/1", b"bad".to_vec()).await.unwrap();
    s3::put_bytes(&b, "d/2", b"new".to_vec()).await.unwrap();
    let dest = Dest::Copy { bucket: out.clone(), prefix: "restored/".into() };
    let sum = restore(&b, "d/", point, &dest).await.unwrap();
    assert_eq!((sum.restored, sum.deleted), (1, 0), "{sum:?}");
    assert_eq!(text(&out, "restored/1").await.as_deref(), Some("one"));
    assert_eq!(text(&out, "restored/2").await, None);
    assert_eq!(text(&b, "d/1").await.as_deref(), Some("bad"), "the source is left as it is");

    // An unversioned bucket has nothing to restore from, and says so.
    let plain = bucket(&sdk, &moto.endpoint(), "az1", "pitr-plain").await;
    s3::put_bytes(&plain, "k", b"only copy".to_vec()).await.unwrap();
    let err = restore(&plain, "", point, &Dest::InPlace).await.unwrap_err();
    assert!(err.to_string().contains("never been versioned"), "{err}");
}

/// A version above what one `CopyObject` may copy comes back in parts,
/// server-side from that version, with its headers and the encryption the
/// datastore's replication asks for. (The threshold is lowered so that a
/// 12 MiB object stands for a 5 GiB one.)
#[tokio::test(flavor = "multi_thread")]
async fn a_large_version_is_restored_in_parts_encrypted_as_replication_encrypts() {
    let moto = Moto::start();
    let sdk = sdk().await;
    let b = bucket(&sdk, &moto.endpoint(), "az1", "pitr-large").await;
    versioned(&b).await;
    let original: Vec<u8> = (0..12u32 << 20).map(|i| (i % 251) as u8).collect();
    b.client
        .put_object()
        .bucket(&b.name)
        .key("video/big.bin")
        .content_type("video/mp4")
        .body(original.clone().into())
        .send()
        .await
        .unwrap();
    s3::put_bytes(&b, "video/small.txt", b"small v1".to_vec()).await.unwrap();
    let _ = next_second();
    let point = next_second() - Duration::from_millis(500);
    s3::put_bytes(&b, "video/big.bin", b"ENCRYPTED".to_vec()).await.unwrap();
    s3::put_bytes(&b, "video/small.txt", b"ENCRYPTED".to_vec()).await.unwrap();

    let copying =
        Copying { sse: Some("aws:kms".into()), single_copy_max: 5 << 20, part_size: 5 << 20, ..Copying::default() };
    let sum = restore_with(&b, "video/", point, &Dest::InPlace, &copying).await.unwrap();
    assert_eq!((sum.restored, sum.failed.len()), (2, 0), "{sum:?}");
    assert_eq!(sum.bytes, (12 << 20) + 8);
    assert_eq!(s3::get_bytes(&b, "video/big.bin").await.unwrap(), original, "the version's bytes, every part");
    assert_eq!(text(&b, "video/small.txt").await.as_deref(), Some("small v1"));
    let head = b.client.head_object().bucket(&b.name).key("video/big.bin").send().await.unwrap();
    assert_eq!(head.server_side_encryption().map(|s| s.as_str()), Some("aws:kms"));
    assert_eq!(head.content_type(), Some("video/mp4"), "the version's headers are kept");
    assert!(head.e_tag().unwrap_or_default().ends_with("-3\""), "three parts: {:?}", head.e_tag());
    // No upload left behind to pay for.
    let left = b.client.list_multipart_uploads().bucket(&b.name).send().await.unwrap();
    assert!(left.uploads().is_empty(), "{left:?}");
}

/// RDS restores on the emulator: it accepts the calls but ignores the
/// restore time (the point in time itself is proven on PostgreSQL and
/// S3), so this proves the calls, their order, and that a resumed restore
/// waits for its target instead of creating a second one.
#[tokio::test(flavor = "multi_thread")]
async fn an_rds_restore_makes_a_new_instance_once_and_a_resume_waits_for_it() {
    use drctl_aws::rds::Rds;
    use drctl_aws::rds_restore::{restore_cluster, restore_instance, Outcome};
    let moto = Moto::start();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .credentials_provider(aws_credential_types::Credentials::new("testing", "testing", None, None, "t"))
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(moto.endpoint())
        .load()
        .await;
    let rds = Rds::new(&sdk, None);
    rds.rds
        .create_db_instance()
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
    let wait = Duration::from_secs(60);
    let at = Some(SystemTime::now() - Duration::from_secs(60));
    let first = restore_instance(&rds, "ledger-a", "ledger-a-restore-1", at, wait).await.unwrap();
    assert_eq!(first, Outcome::Started);
    let again = restore_instance(&rds, "ledger-a", "ledger-a-restore-1", at, wait).await.unwrap();
    assert_eq!(again, Outcome::Existed, "a resumed restore does not create a second instance");
    let all = rds.rds.describe_db_instances().send().await.unwrap();
    let ids: Vec<&str> = all.db_instances().iter().filter_map(|i| i.db_instance_identifier()).collect();
    assert_eq!(ids.iter().filter(|i| i.starts_with("ledger-a-restore")).count(), 1, "{ids:?}");

    // No automated backups: refused in words.
    rds.rds
        .create_db_instance()
        .db_instance_identifier("nobackup")
        .db_instance_class("db.t3.micro")
        .engine("postgres")
        .allocated_storage(20)
        .master_username("admin")
        .master_user_password("not-a-secret-1")
        .backup_retention_period(0)
        .send()
        .await
        .unwrap();
    let err = restore_instance(&rds, "nobackup", "nobackup-r", None, wait).await.unwrap_err();
    assert!(err.to_string().contains("keeps no automated backups"), "{err}");

    rds.rds
        .create_db_cluster()
        .db_cluster_identifier("orders")
        .engine("aurora-postgresql")
        .master_username("admin")
        .master_user_password("not-a-secret-1")
        .send()
        .await
        .unwrap();
    assert_eq!(restore_cluster(&rds, "orders", "orders-restore-1", None, wait).await.unwrap(), Outcome::Started);
    assert_eq!(restore_cluster(&rds, "orders", "orders-restore-1", None, wait).await.unwrap(), Outcome::Existed);
}
