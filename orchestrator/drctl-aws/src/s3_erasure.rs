//! S3's part of an erasure: every version of every key under a subject's
//! prefix, destroyed, on the primary bucket and on every replica.
//!
//! In a versioned bucket a plain delete only adds a delete marker: every
//! old version is still there, readable by anyone who asks for it by id.
//! That is not erasure. Here each version and each delete marker is
//! deleted by its version id, which removes it for good, and verification
//! lists the versions under the prefix: clean means none at all.

use crate::s3::Bucket;
use crate::{api_error, Result};
use futures::{StreamExt, TryStreamExt};

/// Every (key, version id) under `prefix`, delete markers included.
async fn versions(b: &Bucket, prefix: &str) -> Result<Vec<(String, Option<String>)>> {
    let mut out = Vec::new();
    let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
    loop {
        let page = b
            .client
            .list_object_versions()
            .bucket(&b.name)
            .prefix(prefix)
            .set_key_marker(key_marker.clone())
            .set_version_id_marker(version_marker.clone())
            .send()
            .await
            // The prefix holds the subject: never in a message.
            .map_err(|e| api_error(format!("listing versions in bucket {} ({})", b.name, b.zone), &e))?;
        for v in page.versions() {
            if let Some(k) = v.key() {
                out.push((k.to_string(), v.version_id().map(str::to_string)));
            }
        }
        for m in page.delete_markers() {
            if let Some(k) = m.key() {
                out.push((k.to_string(), m.version_id().map(str::to_string)));
            }
        }
        if page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_string);
        version_marker = page.next_version_id_marker().map(str::to_string);
        if key_marker.is_none() && version_marker.is_none() {
            break;
        }
    }
    Ok(out)
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
