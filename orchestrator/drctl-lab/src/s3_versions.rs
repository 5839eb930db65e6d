//! Object versions for the lab's S3 endpoints.
//!
//! s3s-fs keeps one copy of each key. A versioned S3 bucket keeps every
//! version and every delete, and that history is what a point-in-time
//! restore (and the lab's ransomware drill) goes back to. This layer adds
//! it around s3s-fs without changing how objects are stored: the current
//! version of each key stays where s3s-fs keeps it, so every call the
//! replicator makes (multipart included) passes through unchanged, and each
//! version written while versioning is on is also kept in a side folder
//! beside the endpoint's root, with a small index per key:
//!
//! ```text
//! <root>.versions/<bucket>/status                 Enabled | Suspended
//! <root>.versions/<bucket>/keys/<hex key>/index   JSON, oldest first
//! <root>.versions/<bucket>/keys/<hex key>/<id>    one version's bytes
//! ```
//!
//! Writes to one endpoint are serialised (one lock), so a key's current
//! object and its newest version never disagree; the lab's traffic is a
//! few requests a second. A bucket never versioned lists its objects as
//! version `null`, as S3 does.

use s3s::dto::{self, Timestamp};
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// One entry of a key's history: a version or a delete marker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Version {
    pub id: String,
    /// Microseconds since the epoch.
    pub modified_us: u64,
    pub marker: bool,
    pub etag: Option<String>,
    pub size: u64,
    pub content_type: Option<String>,
    pub metadata: Option<HashMap<String, String>>,
}

impl Version {
    fn modified(&self) -> Timestamp {
        Timestamp::from(SystemTime::UNIX_EPOCH + Duration::from_micros(self.modified_us))
    }
}

/// A bucket's versioning state, as PutBucketVersioning set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Never,
    Enabled,
    Suspended,
}

/// The side folder of versions, and the lock its writers take.
#[derive(Debug)]
pub(crate) struct Versions {
    dir: PathBuf,
    pub(crate) lock: tokio::sync::Mutex<()>,
    counter: AtomicU64,
}

fn io(e: std::io::Error) -> S3Error {
    S3Error::with_message(S3ErrorCode::InternalError, format!("the lab's version store: {e}"))
}

fn hex(key: &str) -> String {
    key.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(name: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> =
        (0..name.len()).step_by(2).map(|i| u8::from_str_radix(name.get(i..i + 2)?, 16).ok()).collect();
    String::from_utf8(bytes?).ok()
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// A request the wrapper makes of s3s-fs itself (which reads only the input).
pub(crate) fn internal<T>(input: T) -> S3Request<T> {
    S3Request {
        input,
        method: http::Method::GET,
        uri: http::Uri::default(),
        headers: Default::default(),
        extensions: Default::default(),
        credentials: None,
        region: None,
        service: None,
        trailing_headers: None,
    }
}

fn built<T, E: std::fmt::Display>(r: Result<T, E>) -> S3Result<T> {
    r.map_err(|e| S3Error::with_message(S3ErrorCode::InternalError, e.to_string()))
}

/// Reads a streamed body whole.
pub(crate) async fn collect(body: Option<dto::StreamingBlob>) -> S3Result<bytes::Bytes> {
    use futures::StreamExt;
    let mut out = Vec::new();
    if let Some(mut b) = body {
        while let Some(chunk) = b.next().await {
            let chunk = chunk.map_err(|e| S3Error::with_message(S3ErrorCode::InternalError, e.to_string()))?;
            out.extend_from_slice(&chunk);
        }
    }
    Ok(out.into())
}

fn etag_value(e: &dto::ETag) -> String {
    match e {
        dto::ETag::Strong(v) | dto::ETag::Weak(v) => v.clone(),
    }
}

impl Versions {
    pub(crate) fn new(root: &Path) -> Versions {
        let mut name = root.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(".versions");
        Versions { dir: root.with_file_name(name), lock: Default::default(), counter: AtomicU64::new(0) }
    }

    /// The side folder itself.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.dir.join(bucket)
    }

    fn key_dir(&self, bucket: &str, key: &str) -> PathBuf {
        self.bucket_dir(bucket).join("keys").join(hex(key))
    }

    pub(crate) fn status(&self, bucket: &str) -> Status {
        match std::fs::read_to_string(self.bucket_dir(bucket).join("status")).as_deref().map(str::trim) {
            Ok("Enabled") => Status::Enabled,
            Ok("Suspended") => Status::Suspended,
            _ => Status::Never,
        }
    }

    pub(crate) fn set_status(&self, bucket: &str, enabled: bool) -> std::io::Result<()> {
        let dir = self.bucket_dir(bucket);
        std::fs::create_dir_all(dir.join("keys"))?;
        std::fs::write(dir.join("status"), if enabled { "Enabled" } else { "Suspended" })
    }

    pub(crate) fn history(&self, bucket: &str, key: &str) -> Vec<Version> {
        std::fs::read_to_string(self.key_dir(bucket, key).join("index"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    fn save(&self, bucket: &str, key: &str, history: &[Version]) -> S3Result<()> {
        let dir = self.key_dir(bucket, key);
        std::fs::create_dir_all(&dir).map_err(io)?;
        let tmp = dir.join("index.tmp");
        std::fs::write(&tmp, serde_json::to_vec(history).unwrap_or_default()).map_err(io)?;
        std::fs::rename(&tmp, dir.join("index")).map_err(io)
    }

    /// The newest entry of a key's history.
    pub(crate) fn latest(&self, bucket: &str, key: &str) -> Option<Version> {
        self.history(bucket, key).pop()
    }

    pub(crate) fn find(&self, bucket: &str, key: &str, id: &str) -> S3Result<Version> {
        self.history(bucket, key)
            .into_iter()
            .find(|v| v.id == id)
            .ok_or_else(|| S3Error::with_message(S3ErrorCode::NoSuchVersion, format!("no version {id} of {key}")))
    }

    pub(crate) fn data(&self, bucket: &str, key: &str, id: &str) -> S3Result<bytes::Bytes> {
        std::fs::read(self.key_dir(bucket, key).join(id)).map(Into::into).map_err(io)
    }

    /// A new version id: time-ordered, unique on this endpoint; `null`
    /// while versioning is suspended (as S3 does).
    fn new_id(&self, status: Status) -> String {
        match status {
            Status::Suspended | Status::Never => "null".into(),
            Status::Enabled => {
                format!("{:016x}{:06x}", now_us(), self.counter.fetch_add(1, Ordering::SeqCst) & 0xffffff)
            }
        }
    }

    /// Appends an entry (a `null` one replaces the previous `null`).
    fn push(&self, bucket: &str, key: &str, v: Version, data: Option<&[u8]>) -> S3Result<()> {
        let dir = self.key_dir(bucket, key);
        std::fs::create_dir_all(&dir).map_err(io)?;
        if let Some(d) = data {
            std::fs::write(dir.join(&v.id), d).map_err(io)?;
        }
        let mut h = self.history(bucket, key);
        h.retain(|x| x.id != v.id);
        h.push(v);
        self.save(bucket, key, &h)
    }

    /// Records the object s3s-fs now holds at `key` as its newest version.
    /// Call with the lock held, right after the write.
    /// `null`: as the `null` version (an object written before versioning).
    pub(crate) async fn record(
        &self,
        fs: &s3s_fs::FileSystem,
        bucket: &str,
        key: &str,
        null: bool,
    ) -> S3Result<String> {
        use s3s::S3;
        let mut b = dto::GetObjectInput::builder();
        b.set_bucket(bucket.to_string());
        b.set_key(key.to_string());
        let got = fs.get_object(internal(built(b.build())?)).await?.output;
        let data = collect(got.body).await?;
        let status = self.status(bucket);
        let v = Version {
            id: if null { "null".into() } else { self.new_id(status) },
            modified_us: now_us(),
            marker: false,
            etag: got.e_tag.as_ref().map(etag_value),
            size: data.len() as u64,
            content_type: got.content_type.map(|c| c.to_string()),
            metadata: got.metadata,
        };
        let id = v.id.clone();
        self.push(bucket, key, v, Some(&data))?;
        Ok(id)
    }

    /// Records a delete marker as the key's newest entry.
    pub(crate) fn mark_deleted(&self, bucket: &str, key: &str) -> S3Result<String> {
        let v = Version {
            id: self.new_id(self.status(bucket)),
            modified_us: now_us(),
            marker: true,
            etag: None,
            size: 0,
            content_type: None,
            metadata: None,
        };
        let id = v.id.clone();
        self.push(bucket, key, v, None)?;
        Ok(id)
    }

    /// Removes one entry for good. Returns it, and the entry now newest.
    /// A key whose last entry goes is gone from the side folder too: its
    /// folder is named after the key, and a key erased from every version
    /// (drctl's erasure) must leave no trace of its name, as on S3.
    pub(crate) fn remove(&self, bucket: &str, key: &str, id: &str) -> S3Result<(Version, bool, Option<Version>)> {
        let mut h = self.history(bucket, key);
        let pos = h
            .iter()
            .position(|v| v.id == id)
            .ok_or_else(|| S3Error::with_message(S3ErrorCode::NoSuchVersion, format!("no version {id} of {key}")))?;
        let was_latest = pos + 1 == h.len();
        let gone = h.remove(pos);
        let dir = self.key_dir(bucket, key);
        if h.is_empty() {
            std::fs::remove_dir_all(&dir).map_err(io)?;
        } else {
            let _ = std::fs::remove_file(dir.join(id));
            self.save(bucket, key, &h)?;
        }
        Ok((gone, was_latest, h.last().cloned()))
    }

    /// Every key with a history under `prefix`, in key order.
    pub(crate) fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut keys: Vec<String> = std::fs::read_dir(self.bucket_dir(bucket).join("keys"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| unhex(&e.file_name().to_string_lossy()))
            .filter(|k| k.starts_with(prefix))
            .collect();
        keys.sort();
        keys
    }
}

/// A page of ListObjectVersions over the histories, newest first per key.
pub(crate) fn list_page(
    versions: &Versions,
    input: &dto::ListObjectVersionsInput,
) -> S3Result<S3Response<dto::ListObjectVersionsOutput>> {
    let prefix = input.prefix.clone().unwrap_or_default();
    let max = input.max_keys.filter(|m| *m > 0).unwrap_or(1000).min(1000) as usize;
    let key_marker = input.key_marker.clone().filter(|k| !k.is_empty());
    let id_marker = input.version_id_marker.clone().filter(|k| !k.is_empty());
    let mut out_versions = Vec::new();
    let mut markers = Vec::new();
    let mut taken = 0usize;
    let mut truncated = false;
    let mut last: Option<(String, String)> = None;
    'keys: for key in versions.keys(&input.bucket, &prefix) {
        if let Some(km) = &key_marker {
            if key < *km || (key == *km && id_marker.is_none()) {
                continue;
            }
        }
        let h = versions.history(&input.bucket, &key);
        let newest = h.len().saturating_sub(1);
        let mut skipping = key_marker.as_deref() == Some(key.as_str()) && id_marker.is_some();
        for (i, v) in h.iter().enumerate().rev() {
            if skipping {
                if Some(&v.id) == id_marker.as_ref() {
                    skipping = false;
                }
                continue;
            }
            if taken == max {
                truncated = true;
                break 'keys;
            }
            taken += 1;
            last = Some((key.clone(), v.id.clone()));
            if v.marker {
                markers.push(dto::DeleteMarkerEntry {
                    is_latest: Some(i == newest),
                    key: Some(key.clone()),
                    last_modified: Some(v.modified()),
                    owner: None,
                    version_id: Some(v.id.clone()),
                });
            } else {
                out_versions.push(dto::ObjectVersion {
                    e_tag: v.etag.clone().map(dto::ETag::Strong),
                    is_latest: Some(i == newest),
                    key: Some(key.clone()),
                    last_modified: Some(v.modified()),
                    size: Some(v.size as i64),
                    storage_class: Some(dto::ObjectVersionStorageClass::from_static(
                        dto::ObjectVersionStorageClass::STANDARD,
                    )),
                    version_id: Some(v.id.clone()),
                    ..Default::default()
                });
            }
        }
    }
    // The next page starts after the last entry this one holds.
    let (next_key, next_id) = match (truncated, last) {
        (true, Some((k, v))) => (Some(k), Some(v)),
        _ => (None, None),
    };
    Ok(S3Response::new(dto::ListObjectVersionsOutput {
        delete_markers: (!markers.is_empty()).then_some(markers),
        versions: (!out_versions.is_empty()).then_some(out_versions),
        is_truncated: Some(truncated),
        key_marker: input.key_marker.clone(),
        version_id_marker: input.version_id_marker.clone(),
        max_keys: Some(max as i32),
        name: Some(input.bucket.clone()),
        prefix: input.prefix.clone(),
        next_key_marker: next_key,
        next_version_id_marker: next_id,
        ..Default::default()
    }))
}

/// What GetObject/HeadObject answer for a stored version.
pub(crate) fn refuse_marker(v: &Version) -> S3Result<()> {
    if v.marker {
        return Err(s3_error!(MethodNotAllowed, "this version is a delete marker"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_their_folder_names() {
        for k in ["workload/000000000001", "a b/ü+?", ""] {
            assert_eq!(unhex(&hex(k)).as_deref(), Some(k));
        }
    }

    #[test]
    fn versions_are_ordered_and_a_listing_pages_newest_first() {
        let root = std::env::temp_dir().join(format!("drctl-s3v-{}", std::process::id()));
        let v = Versions::new(&root);
        v.set_status("b", true).unwrap();
        for key in ["k1", "k2"] {
            for n in 0..3 {
                let e = Version {
                    id: v.new_id(Status::Enabled),
                    modified_us: 1_000 + n,
                    marker: n == 2 && key == "k2",
                    etag: Some(format!("{key}{n}")),
                    size: 1,
                    content_type: None,
                    metadata: None,
                };
                v.push("b", key, e, Some(b"x")).unwrap();
            }
        }
        let mut input = dto::ListObjectVersionsInput::builder();
        input.set_bucket("b".into());
        input.set_max_keys(Some(4));
        let mut input = input.build().unwrap();
        let page = list_page(&v, &input).unwrap().output;
        let ids: Vec<String> =
            page.versions.iter().flatten().map(|x| x.e_tag.as_ref().map(etag_value).unwrap_or_default()).collect();
        assert_eq!(ids, ["k12", "k11", "k10"], "newest first per key; then k2's newest, a marker");
        assert_eq!(page.delete_markers.as_ref().map(|m| m.len()), Some(1));
        assert_eq!(page.is_truncated, Some(true));
        input.key_marker = page.next_key_marker.clone();
        input.version_id_marker = page.next_version_id_marker.clone();
        let rest = list_page(&v, &input).unwrap().output;
        let ids: Vec<String> =
            rest.versions.iter().flatten().map(|x| x.e_tag.as_ref().map(etag_value).unwrap_or_default()).collect();
        assert_eq!(ids, ["k21", "k20"]);
        assert_eq!(rest.is_truncated, Some(false));
        let _ = std::fs::remove_dir_all(root.with_file_name(format!("drctl-s3v-{}.versions", std::process::id())));
    }
}
