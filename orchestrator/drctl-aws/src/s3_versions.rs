//! Every version and delete marker under a prefix of a bucket: the one
//! listing both a restore from versions (which rebuilds each key's history)
//! and an erasure (which destroys every version) stand on, so that the
//! pagination of `ListObjectVersions`, easy to get subtly wrong, is
//! written once.

use crate::s3::Bucket;
use crate::{api_error, Result};
use std::time::{Duration, SystemTime};

/// One entry of a key's history: a version or a delete marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub key: String,
    /// `None` where the server gives no id; `"null"` in a never-versioned bucket.
    pub version: Option<String>,
    pub modified: SystemTime,
    /// The current entry of its key.
    pub latest: bool,
    /// A delete marker rather than a version.
    pub marker: bool,
    pub size: u64,
    pub etag: Option<String>,
}

fn to_system(t: Option<&aws_sdk_s3::primitives::DateTime>) -> SystemTime {
    t.map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(t.as_secs_f64().max(0.0)))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Every version and delete marker under `prefix`, in the order S3 lists
/// them (per key, newest first; versions of a page before its markers).
/// The error names the bucket and never the prefix: an erasure's prefix
/// holds the subject.
pub async fn list(b: &Bucket, prefix: &str) -> Result<Vec<Version>> {
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
            .map_err(|e| api_error(format!("listing versions in bucket {} ({})", b.name, b.zone), &e))?;
        for v in page.versions() {
            let Some(k) = v.key() else { continue };
            out.push(Version {
                key: k.to_string(),
                version: v.version_id().map(str::to_string),
                modified: to_system(v.last_modified()),
                latest: v.is_latest().unwrap_or(false),
                marker: false,
                size: v.size().unwrap_or(0).max(0) as u64,
                etag: v.e_tag().map(str::to_string),
            });
        }
        for m in page.delete_markers() {
            let Some(k) = m.key() else { continue };
            out.push(Version {
                key: k.to_string(),
                version: m.version_id().map(str::to_string),
                modified: to_system(m.last_modified()),
                latest: m.is_latest().unwrap_or(false),
                marker: true,
                size: 0,
                etag: None,
            });
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
