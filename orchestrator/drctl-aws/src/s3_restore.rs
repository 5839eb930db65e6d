//! S3 point-in-time restore from object versions.
//!
//! In a versioned bucket every overwrite and delete keeps the old version,
//! so the bucket as it was at any moment within the versions' retention
//! can be rebuilt: for each key, the version that was current at that
//! moment. Ransomware that overwrote every object, or a script that
//! deleted a prefix, is undone by making those versions current again.
//!
//! Nothing is ever destroyed: in place, a restored key gets a *new*
//! version copied from the old one (server-side), and a key created after
//! the moment is hidden behind a delete marker. Every version that existed
//! before the restore still exists after it, so a restore to the wrong
//! moment is itself undone by another restore.

use crate::iam::{Grant, On, Use};
use crate::s3::Bucket;
use crate::{Error, Result};
use aws_sdk_s3::types::ServerSideEncryption;
use std::collections::HashMap;
use std::time::SystemTime;

/// Where the restored objects go.
#[derive(Debug, Clone)]
pub enum Dest {
    /// The bucket itself: old versions made current, new keys deleted behind a marker.
    InPlace,
    /// Another bucket (or the same one), each key under `prefix` instead of the source prefix.
    Copy { bucket: Bucket, prefix: String },
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Keys whose version at the time was copied over (or into the destination).
    pub restored: u64,
    /// Keys created after the time, hidden behind a delete marker (in place only).
    pub deleted: u64,
    /// Keys already as they were.
    pub unchanged: u64,
    pub bytes: u64,
    /// Keys that could not be restored, and why; the others went on.
    pub failed: Vec<(String, String)>,
    /// The newest write the restored keys hold (their versions' times):
    /// how close to the point asked for the copy really is.
    #[serde(skip)]
    pub newest: Option<SystemTime>,
}

/// One entry of a key's history: a version or a delete marker.
type Entry = crate::s3_versions::Version;

/// Every key's history under `prefix`, each newest first as S3 lists it.
async fn history(b: &Bucket, prefix: &str) -> Result<HashMap<String, Vec<Entry>>> {
    let mut out: HashMap<String, Vec<Entry>> = HashMap::new();
    for v in crate::s3_versions::list(b, prefix).await? {
        out.entry(v.key.clone()).or_default().push(v);
    }
    Ok(out)
}

/// What to do with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    Keep,
    /// Make this version current (copy it).
    Copy {
        version: String,
        size: u64,
    },
    /// Hide the key behind a delete marker.
    Delete,
}

/// Decides a key from its history: the entry current at `at` is the newest
/// one at or before it; ties (one-second timestamps) go to the one S3
/// lists first, which is the newer.
fn decide(entries: &[Entry], at: SystemTime, in_place: bool) -> Plan {
    let then = current_at(entries, at);
    let now = entries.iter().find(|e| e.latest);
    match (then, in_place) {
        (Some(t), _) if !t.marker => match (now, in_place) {
            // The same version, or a later copy of it (a restore already
            // done): the key is as it was.
            (Some(n), true)
                if n.version == t.version
                    || (!n.marker && n.etag.is_some() && n.etag == t.etag && n.size == t.size) =>
            {
                Plan::Keep
            }
            _ => Plan::Copy { version: t.version.clone().unwrap_or_else(|| "null".into()), size: t.size },
        },
        // Absent (or deleted) at the time.
        _ if !in_place => Plan::Keep,
        _ => match now {
            Some(n) if !n.marker => Plan::Delete,
            _ => Plan::Keep,
        },
    }
}

/// The entry of a key current at `at`: the newest at or before it.
fn current_at(entries: &[Entry], at: SystemTime) -> Option<&Entry> {
    entries.iter().filter(|e| e.modified <= at).fold(None::<&Entry>, |best, e| match best {
        Some(b) if b.modified >= e.modified => Some(b),
        _ => Some(e),
    })
}

/// How a restore copies: as the datastore's replication does (its
/// encryption, objects at once), and in parts above what one `CopyObject`
/// may copy.
#[derive(Debug, Clone)]
pub struct Copying {
    /// Server-side encryption of what is written (`AES256` or `aws:kms`),
    /// as the datastore's `replication.sse`; `None`: the bucket's default.
    pub sse: Option<String>,
    /// The KMS key of `aws:kms` (`None`: the account's S3 key).
    pub kms_key_id: Option<String>,
    /// Keys restored at once.
    pub concurrency: usize,
    /// Versions above this many bytes are copied part by part
    /// (`UploadPartCopy`): a single `CopyObject` stops at 5 GiB.
    pub single_copy_max: u64,
    /// The size of each part of such a copy (raised when the object would
    /// need more than S3's 10,000 parts).
    pub part_size: u64,
}

impl Copying {
    /// As the datastore's replication copies: its encryption and how many
    /// objects at once (the defaults where it has no `replication`).
    pub fn like_replication(r: Option<&drctl_core::topology::Replication>) -> Copying {
        let base = Copying::default();
        match r {
            Some(r) => Copying {
                sse: r.sse.clone(),
                kms_key_id: r.kms_key_id.clone(),
                concurrency: r.concurrency.max(1),
                ..base
            },
            None => base,
        }
    }
}

impl Default for Copying {
    fn default() -> Self {
        Copying { sse: None, kms_key_id: None, concurrency: 16, single_copy_max: 5 << 30, part_size: 256 << 20 }
    }
}

/// What was done to one key.
enum Done {
    Unchanged,
    Restored(u64),
    Deleted,
}

/// Restores `src` (the keys under `prefix`) as it was at `at`, copying as
/// [`Copying::default`] does.
pub async fn restore(src: &Bucket, prefix: &str, at: SystemTime, dest: &Dest) -> Result<Summary> {
    restore_with(src, prefix, at, dest, &Copying::default()).await
}

/// Restores `src` (the keys under `prefix`) as it was at `at`, copying as
/// `copying` says.
pub async fn restore_with(
    src: &Bucket,
    prefix: &str,
    at: SystemTime,
    dest: &Dest,
    copying: &Copying,
) -> Result<Summary> {
    use futures::StreamExt;
    let history = history(src, prefix).await?;
    // A bucket never versioned lists each object once, as version `null`,
    // and has no delete markers: it keeps nothing to go back to. (Read
    // from the listing rather than GetBucketVersioning, whose answer some
    // S3-compatible servers format in ways the SDK cannot read.)
    let versioned = history.values().flatten().any(|e| e.marker || e.version.as_deref().is_some_and(|v| v != "null"));
    if !versioned && !history.is_empty() {
        return Err(Error::Config(format!(
            "s3://{} has never been versioned: it keeps no old versions to restore from (enable versioning now to protect it from here on)",
            src.name
        )));
    }
    let mut keys: Vec<&String> = history.keys().collect();
    keys.sort();
    let mut summary = Summary::default();
    let in_place = matches!(dest, Dest::InPlace);
    let mut work = Vec::new();
    for key in keys {
        // S3 lists each key's entries newest first; keep that order for ties.
        let plan = decide(&history[key], at, in_place);
        if let Some(t) = current_at(&history[key], at).filter(|e| !e.marker) {
            summary.newest = summary.newest.max(Some(t.modified));
        }
        match plan {
            Plan::Keep => summary.unchanged += 1,
            plan => work.push((key.clone(), plan)),
        }
    }
    let results: Vec<(String, std::result::Result<Done, String>)> = futures::stream::iter(work)
        .map(|(key, plan)| async move {
            let done = apply(src, prefix, dest, &key, &plan, copying).await;
            (key, done)
        })
        .buffer_unordered(copying.concurrency.max(1))
        .collect()
        .await;
    for (key, done) in results {
        match done {
            Ok(Done::Restored(size)) => {
                summary.restored += 1;
                summary.bytes += size;
            }
            Ok(Done::Deleted) => summary.deleted += 1,
            Ok(Done::Unchanged) => summary.unchanged += 1,
            Err(why) => summary.failed.push((key, why)),
        }
    }
    summary.failed.sort();
    Ok(summary)
}

/// Carries out one key's plan.
async fn apply(
    src: &Bucket,
    prefix: &str,
    dest: &Dest,
    key: &str,
    plan: &Plan,
    copying: &Copying,
) -> std::result::Result<Done, String> {
    match plan {
        Plan::Keep => Ok(Done::Unchanged),
        Plan::Copy { version, size } => {
            let (bucket, target) = match dest {
                Dest::InPlace => (src, key.to_string()),
                Dest::Copy { bucket, prefix: p } => (bucket, format!("{p}{}", &key[prefix.len().min(key.len())..])),
            };
            let source = format!("{}/{}?versionId={}", src.name, urlencode(key), version);
            if *size > copying.single_copy_max {
                copy_in_parts(src, key, version, bucket, &target, &source, *size, copying).await?;
            } else {
                bucket
                    .client
                    .copy_object()
                    .bucket(&bucket.name)
                    .key(&target)
                    .copy_source(source)
                    .set_server_side_encryption(copying.sse.as_deref().map(ServerSideEncryption::from))
                    .set_ssekms_key_id(copying.kms_key_id.clone())
                    .send()
                    .await
                    .map_err(|e| crate::explain(&e))?;
            }
            Ok(Done::Restored(*size))
        }
        Plan::Delete => src
            .client
            .delete_object()
            .bucket(&src.name)
            .key(key)
            .send()
            .await
            .map(|_| Done::Deleted)
            .map_err(|e| crate::explain(&e)),
    }
}

/// Copies one version above what `CopyObject` may copy: a multipart
/// upload whose parts are copied server-side from the version
/// (`UploadPartCopy` with a byte range), its headers kept; an upload that
/// fails is aborted, so no parts are left to pay for.
#[allow(clippy::too_many_arguments)]
async fn copy_in_parts(
    src: &Bucket,
    key: &str,
    version: &str,
    dst: &Bucket,
    target: &str,
    source: &str,
    size: u64,
    copying: &Copying,
) -> std::result::Result<(), String> {
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    let head = src
        .client
        .head_object()
        .bucket(&src.name)
        .key(key)
        .version_id(version)
        .send()
        .await
        .map_err(|e| format!("reading the version's headers: {}", crate::explain(&e)))?;
    let created = dst
        .client
        .create_multipart_upload()
        .bucket(&dst.name)
        .key(target)
        .set_content_type(head.content_type().map(str::to_string))
        .set_cache_control(head.cache_control().map(str::to_string))
        .set_content_encoding(head.content_encoding().map(str::to_string))
        .set_content_disposition(head.content_disposition().map(str::to_string))
        .set_metadata(head.metadata().cloned())
        .set_server_side_encryption(copying.sse.as_deref().map(ServerSideEncryption::from))
        .set_ssekms_key_id(copying.kms_key_id.clone())
        .send()
        .await
        .map_err(|e| format!("starting the copy in parts: {}", crate::explain(&e)))?;
    let upload = created.upload_id().unwrap_or_default().to_string();
    let part_size = copying.part_size.max(size.div_ceil(10_000)).max(5 << 20);
    let copied = async {
        let mut parts = Vec::new();
        let (mut start, mut number) = (0u64, 1i32);
        while start < size {
            let end = (start + part_size).min(size) - 1;
            let out = dst
                .client
                .upload_part_copy()
                .bucket(&dst.name)
                .key(target)
                .upload_id(&upload)
                .part_number(number)
                .copy_source(source)
                .copy_source_range(format!("bytes={start}-{end}"))
                .send()
                .await
                .map_err(|e| format!("copying part {number}: {}", crate::explain(&e)))?;
            let etag = out.copy_part_result().and_then(|r| r.e_tag()).unwrap_or_default().to_string();
            parts.push(CompletedPart::builder().part_number(number).e_tag(etag).build());
            start = end + 1;
            number += 1;
        }
        let completed = dst
            .client
            .complete_multipart_upload()
            .bucket(&dst.name)
            .key(target)
            .upload_id(&upload)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await;
        match completed {
            Ok(_) => Ok(()),
            // The completion may have happened with its answer lost or
            // unreadable (a dropped connection, an S3-compatible server's
            // odd XML): an upload that is gone and an object of the right
            // size say it did.
            Err(e) => {
                let gone =
                    dst.client.list_parts().bucket(&dst.name).key(target).upload_id(&upload).send().await.is_err();
                let head = dst.client.head_object().bucket(&dst.name).key(target).send().await;
                match head {
                    Ok(h) if gone && h.content_length() == Some(size as i64) => Ok(()),
                    _ => Err(format!("completing the copy in parts: {}", crate::explain(&e))),
                }
            }
        }
    }
    .await;
    if copied.is_err() {
        // Aborting a completed upload fails harmlessly; one left open costs money.
        let _ = dst.client.abort_multipart_upload().bucket(&dst.name).key(target).upload_id(&upload).send().await;
    }
    copied
}

/// Reading each key's history, and the version to bring back (a copy
/// whose source is a version is read as `s3:GetObjectVersion`).
pub const READ_VERSIONS: Grant = Grant {
    sid: "S3RestoreReadVersions",
    actions: &["s3:ListBucketVersions", "s3:GetObjectVersion"],
    on: On::RestoreSources,
    uses: &[Use::Restore],
};

/// Writing the restored keys (a copy, and each call of a copy in parts,
/// is `s3:PutObject`; a failed one is aborted) and, in place,
/// hiding keys created since behind a delete marker.
pub const WRITE_RESTORED: Grant = Grant {
    sid: "S3RestoreWriteObjects",
    actions: &["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
    on: On::RestoreDestObjects,
    uses: &[Use::Restore],
};

/// Finding the destination bucket (`HeadBucket` is `s3:ListBucket`) and
/// making it when it does not exist yet.
pub const DEST_BUCKETS: Grant = Grant {
    sid: "S3RestoreDestinations",
    actions: &["s3:ListBucket", "s3:CreateBucket"],
    on: On::RestoreDestBuckets,
    uses: &[Use::Restore],
};

pub const PERMISSIONS: &[Grant] = &[READ_VERSIONS, WRITE_RESTORED, DEST_BUCKETS, SCRATCH_COPIES];

/// How many keys `b` holds under `prefix` now (current versions).
pub async fn count_under(b: &Bucket, prefix: &str) -> Result<u64> {
    Ok(crate::s3::list(b).await?.keys().filter(|k| k.starts_with(prefix)).count() as u64)
}

/// The SHA-256 (lower-case hex) of `key`'s current content in `b`;
/// `None` when there is no such key.
pub async fn sha256_of(b: &Bucket, key: &str) -> Result<Option<String>> {
    use sha2::Digest;
    let out = match b.client.get_object().bucket(&b.name).key(key).send().await {
        Ok(o) => o,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
        Err(e) => return Err(crate::api_error(format!("reading {key} in bucket {}", b.name), &e)),
    };
    let mut hash = sha2::Sha256::new();
    let mut body = out.body;
    while let Some(chunk) = body.try_next().await.map_err(|e| Error::Api {
        what: format!("reading {key} in bucket {}", b.name),
        why: e.to_string(),
        transient: true,
    })? {
        hash.update(&chunk);
    }
    Ok(Some(hash.finalize().iter().map(|b| format!("{b:02x}")).collect()))
}

/// Removes a restored copy's bucket: every version and delete marker in
/// it, then the bucket.
pub async fn remove_bucket(b: &Bucket) -> Result<u64> {
    let n = crate::s3_erasure::erase_prefix(b, "").await?;
    b.client
        .delete_bucket()
        .bucket(&b.name)
        .send()
        .await
        .map_err(|e| crate::api_error(format!("removing bucket {}", b.name), &e))?;
    Ok(n)
}

/// What a restore test does with its copy in a bucket of its own
/// (`drctl-restore-*`): reads a key to compare its checksum, and removes
/// the copy with every version, then the bucket.
pub const SCRATCH_COPIES: Grant = Grant {
    sid: "S3RestoreTestScratch",
    actions: &["s3:GetObject", "s3:ListBucketVersions", "s3:DeleteObjectVersion", "s3:DeleteBucket"],
    on: On::ScratchCopies,
    uses: &[Use::Restore],
};

/// Percent-encodes a key for `x-amz-copy-source` (slashes kept).
fn urlencode(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn e(v: &str, secs: u64, latest: bool, marker: bool) -> Entry {
        Entry {
            key: "k".into(),
            version: Some(v.into()),
            modified: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
            latest,
            marker,
            size: 1,
            etag: Some(format!("\"{v}\"")),
        }
    }

    #[test]
    fn each_key_goes_back_to_its_version_at_the_time() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        // Overwritten after: the old version comes back.
        assert_eq!(
            decide(&[e("v2", 150, true, false), e("v1", 50, false, false)], at, true),
            Plan::Copy { version: "v1".into(), size: 1 }
        );
        // Untouched: kept.
        assert_eq!(decide(&[e("v1", 50, true, false)], at, true), Plan::Keep);
        // Created after: hidden behind a marker, in place; left out of a copy.
        assert_eq!(decide(&[e("v1", 150, true, false)], at, true), Plan::Delete);
        assert_eq!(decide(&[e("v1", 150, true, false)], at, false), Plan::Keep);
        // Deleted after: back.
        assert_eq!(
            decide(&[e("m", 150, true, true), e("v1", 50, false, false)], at, true),
            Plan::Copy { version: "v1".into(), size: 1 }
        );
        // Deleted before and still deleted: nothing to do.
        assert_eq!(decide(&[e("m", 60, true, true), e("v1", 50, false, false)], at, true), Plan::Keep);
    }

    #[test]
    fn copy_sources_are_encoded() {
        assert_eq!(urlencode("a b/c+d"), "a%20b/c%2Bd");
    }
}
