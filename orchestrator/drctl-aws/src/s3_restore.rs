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

/// Restores `src` (the keys under `prefix`) as it was at `at`.
pub async fn restore(src: &Bucket, prefix: &str, at: SystemTime, dest: &Dest) -> Result<Summary> {
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
    for key in keys {
        // S3 lists each key's entries newest first; keep that order for ties.
        let plan = decide(&history[key], at, in_place);
        if let Some(t) = current_at(&history[key], at).filter(|e| !e.marker) {
            summary.newest = summary.newest.max(Some(t.modified));
        }
        let result = match &plan {
            Plan::Keep => {
                summary.unchanged += 1;
                continue;
            }
            Plan::Copy { version, size } => {
                let (bucket, target) = match dest {
                    Dest::InPlace => (src, key.clone()),
                    Dest::Copy { bucket, prefix: p } => (bucket, format!("{p}{}", &key[prefix.len().min(key.len())..])),
                };
                let source = format!("{}/{}?versionId={}", src.name, urlencode(key), version);
                bucket
                    .client
                    .copy_object()
                    .bucket(&bucket.name)
                    .key(&target)
                    .copy_source(source)
                    .send()
                    .await
                    .map(|_| {
                        summary.restored += 1;
                        summary.bytes += size;
                    })
                    .map_err(|e| crate::explain(&e))
            }
            Plan::Delete => src
                .client
                .delete_object()
                .bucket(&src.name)
                .key(key)
                .send()
                .await
                .map(|_| summary.deleted += 1)
                .map_err(|e| crate::explain(&e)),
        };
        if let Err(why) = result {
            summary.failed.push((key.clone(), why));
        }
    }
    Ok(summary)
}

/// Reading each key's history, and the version to bring back (a copy
/// whose source is a version is read as `s3:GetObjectVersion`).
pub const READ_VERSIONS: Grant = Grant {
    sid: "S3RestoreReadVersions",
    actions: &["s3:ListBucketVersions", "s3:GetObjectVersion"],
    on: On::RestoreSources,
    uses: &[Use::Restore],
};

/// Writing the restored keys (a copy is `s3:PutObject`) and, in place,
/// hiding keys created since behind a delete marker.
pub const WRITE_RESTORED: Grant = Grant {
    sid: "S3RestoreWriteObjects",
    actions: &["s3:PutObject", "s3:DeleteObject"],
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
