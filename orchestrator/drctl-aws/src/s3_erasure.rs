//! S3's part of an erasure: every version of every key under a subject's
//! prefix, destroyed, on the primary bucket and on every replica.
//!
//! In a versioned bucket a plain delete only adds a delete marker: every
//! old version is still there, readable by anyone who asks for it by id.
//! That is not erasure. Here each version and each delete marker is
//! deleted by its version id, which removes it for good, and verification
//! lists the versions under the prefix: clean means none at all.

use crate::iam::{Grant, On, Use};
use crate::s3::Bucket;
use crate::{api_error, Result};
use futures::{StreamExt, TryStreamExt};

/// Every (key, version id) under `prefix`, delete markers included.
async fn versions(b: &Bucket, prefix: &str) -> Result<Vec<(String, Option<String>)>> {
    Ok(crate::s3_versions::list(b, prefix).await?.into_iter().map(|v| (v.key, v.version)).collect())
}

/// Deletes every version and delete marker under `prefix`; returns how many.
pub async fn erase_prefix(b: &Bucket, prefix: &str) -> Result<u64> {
    let all = versions(b, prefix).await?;
    let n = all.len() as u64;
    futures::stream::iter(all)
        .map(|(key, version)| async move {
            b.client
                .delete_object()
                .bucket(&b.name)
                .key(&key)
                .set_version_id(version)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| api_error(format!("deleting a version in bucket {} ({})", b.name, b.zone), &e))
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(n)
}

/// How many versions and delete markers are left under `prefix` (0: clean).
pub async fn versions_left(b: &Bucket, prefix: &str) -> Result<u64> {
    Ok(versions(b, prefix).await?.len() as u64)
}

/// Listing and destroying every version under a subject's prefix, on
/// every bucket of the datastore (`DeleteObject` with a version id is
/// `s3:DeleteObjectVersion`).
pub const ERASE_VERSIONS: Grant = Grant {
    sid: "S3EraseVersions",
    actions: &["s3:ListBucketVersions", "s3:DeleteObjectVersion"],
    on: On::ErasedPrefixes,
    uses: &[Use::Erase],
};

pub const PERMISSIONS: &[Grant] = &[ERASE_VERSIONS];
