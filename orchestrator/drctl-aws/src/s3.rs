//! S3: measuring how far a replica bucket is behind, and copying objects
//! to replicas ourselves (`replication: { by: drctl }`).
//!
//! Copies keep the source's ETag: single-part objects are streamed (or
//! server-side copied) whole, multipart objects with the source's own part
//! size (read with `HeadObject partNumber=1`), so the ETag, which S3
//! computes from part digests, comes out identical. That makes
//! verification a plain comparison, and lets one rule measure the lag of
//! both drctl's copies and S3-native replication: an object is replicated
//! when the replica has it with the same size and ETag.
//!
//! Bodies are streamed from the GET straight into the PUT or UploadPart,
//! never held whole in memory; buckets on the same endpoint use
//! server-side copy instead. A failed object is retried with backoff, then
//! reported, and never stops the others. Multipart copies record each part
//! in the state store, so a copy interrupted by a crash resumes.

use crate::iam::{Grant, On, Use};
use crate::{api_error, explain, Error, Result};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective, ServerSideEncryption};
use aws_sdk_s3::Client;

/// The S3 client type, for callers that cache clients.
pub type S3Client = Client;
use drctl_core::status::{Measurement, ReplicaStatus};
use drctl_runtime::{Clock, SystemClock};
use drctl_state::ReplicatedObject;
use drctl_state::{MultipartCheckpoint, RunTotals, State};
use futures::{StreamExt, TryStreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// One bucket of a datastore, with a client for its endpoint.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub zone: String,
    pub name: String,
    /// The endpoint URL when not AWS's default (decides server-side copy).
    pub endpoint: Option<String>,
    pub client: Client,
}

/// A client for an endpoint (path-style for anything but AWS itself).
pub fn client_for(shared: &aws_config::SdkConfig, endpoint: Option<&str>, region: Option<&str>) -> Client {
    let mut b = aws_sdk_s3::config::Builder::from(shared);
    let endpoint = endpoint
        .map(str::to_string)
        .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
    if let Some(e) = &endpoint {
        // S3-compatible servers and emulators: path-style addressing, and
        // checksums only where the API requires them (many do not support
        // the streaming trailer the SDK otherwise sends).
        b = b
            .endpoint_url(e)
            .force_path_style(true)
            .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired);
    }
    if let Some(r) = region {
        b = b.region(aws_sdk_s3::config::Region::new(r.to_string()));
    }
    Client::from_conf(b.build())
}

/// What a listing says about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub last_modified: SystemTime,
}

impl ObjectInfo {
    /// Parts in the source's multipart upload, from its ETag (`<md5>-<n>`).
    fn parts(&self) -> Option<u32> {
        self.etag.rsplit_once('-').and_then(|(_, n)| n.parse().ok())
    }
}

fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_string()
}

/// Lists a whole bucket.
/// `ListObjectsV2` (and `HeadBucket` in the preflight): `s3:ListBucket`.
pub const LIST_BUCKETS: Grant = Grant {
    sid: "S3ListBuckets",
    actions: &["s3:ListBucket"],
    on: On::Buckets,
    uses: &[Use::Status, Use::Replicate, Use::Declare],
};

pub async fn list(bucket: &Bucket) -> Result<HashMap<String, ObjectInfo>> {
    let mut out = HashMap::new();
    let mut pages = bucket.client.list_objects_v2().bucket(&bucket.name).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| api_error(format!("listing bucket {} ({})", bucket.name, bucket.zone), &e))?;
        for o in page.contents() {
            let Some(key) = o.key() else { continue };
            out.insert(
                key.to_string(),
                ObjectInfo {
                    key: key.to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: o.e_tag().map(unquote).unwrap_or_default(),
                    last_modified: o
                        .last_modified()
                        .and_then(|d| SystemTime::try_from(*d).ok())
                        .unwrap_or(SystemTime::UNIX_EPOCH),
                },
            );
        }
    }
    Ok(out)
}

/// Objects of the primary that the replica lacks or has in another version.
pub fn out_of_sync<'a>(
    primary: &'a HashMap<String, ObjectInfo>,
    replica: &HashMap<String, ObjectInfo>,
) -> Vec<&'a ObjectInfo> {
    let mut v: Vec<&ObjectInfo> =
        primary.values().filter(|p| replica.get(&p.key).is_none_or(|r| r.size != p.size || r.etag != p.etag)).collect();
    v.sort_by(|a, b| a.key.cmp(&b.key));
    v
}

/// The age of the oldest primary object missing from or different in the replica (docs/lag-and-rpo.md).
pub fn lag_of(primary: &HashMap<String, ObjectInfo>, replica: &HashMap<String, ObjectInfo>, now: SystemTime) -> f64 {
    out_of_sync(primary, replica)
        .iter()
        .map(|o| now.duration_since(o.last_modified).unwrap_or_default().as_secs_f64())
        .fold(0.0, f64::max)
}

/// Measures an S3 datastore: each replica's lag behind the primary bucket,
/// as of `now` (the controller's clock, the one its report is dated by).
pub async fn measure(primary: &Bucket, replicas: &[Bucket], now: SystemTime) -> Measurement {
    let (p, rs) = futures::join!(list(primary), futures::future::join_all(replicas.iter().map(list)));
    let p = match p {
        Ok(p) => p,
        Err(e) => {
            return Measurement {
                primary_zone: Some(primary.zone.clone()),
                replicas: replicas
                    .iter()
                    .map(|r| ReplicaStatus {
                        zone: r.zone.clone(),
                        healthy: false,
                        lag_s: None,
                        error: None,
                        detail: None,
                        ..Default::default()
                    })
                    .collect(),
                error: Some(e.to_string()),
            }
        }
    };
    let replicas = replicas
        .iter()
        .zip(rs)
        .map(|(b, listing)| match listing {
            Ok(r) => {
                let missing = out_of_sync(&p, &r).len();
                ReplicaStatus {
                    zone: b.zone.clone(),
                    healthy: true,
                    lag_s: Some(lag_of(&p, &r, now)),
                    error: None,
                    detail: Some(if missing == 0 { "in sync".into() } else { format!("{missing} objects behind") }),
                    ..Default::default()
                }
            }
            Err(e) => ReplicaStatus {
                zone: b.zone.clone(),
                healthy: false,
                lag_s: None,
                error: Some(e.to_string()),
                detail: None,
                ..Default::default()
            },
        })
        .collect();
    Measurement { primary_zone: Some(primary.zone.clone()), replicas, error: None }
}

/// How replication copies.
#[derive(Clone)]
pub struct Options {
    /// Objects copied at once per replica.
    pub concurrency: usize,
    /// Parts copied at once within one multipart object.
    pub part_concurrency: usize,
    /// `AES256` or `aws:kms`.
    pub sse: Option<String>,
    pub kms_key_id: Option<String>,
    /// Attempts per object, the first included.
    pub attempts: u32,
    pub backoff: Duration,
    /// A delete on the primary reaches the replicas (`deletes: replicate`).
    pub deletes: bool,
    /// The controller's clock: a copied object's lag is its age on it.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("concurrency", &self.concurrency)
            .field("part_concurrency", &self.part_concurrency)
            .field("sse", &self.sse)
            .field("kms_key_id", &self.kms_key_id)
            .field("attempts", &self.attempts)
            .field("backoff", &self.backoff)
            .field("deletes", &self.deletes)
            .finish_non_exhaustive()
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            concurrency: 16,
            part_concurrency: 4,
            sse: None,
            kms_key_id: None,
            attempts: 3,
            backoff: Duration::from_millis(200),
            deletes: true,
            clock: Arc::new(SystemClock),
        }
    }
}

/// Receives progress as objects are copied (a terminal progress bar, logs).
pub trait Progress: Send + Sync {
    fn planned(&self, _replica_zone: &str, _objects: u64, _bytes: u64) {}
    fn copied(&self, _key: &str, _bytes: u64) {}
    fn failed(&self, _key: &str, _error: &str) {}
}

/// Ignores progress.
pub struct NoProgress;
impl Progress for NoProgress {}

/// An object that could not be copied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    pub replica_zone: String,
    pub key: String,
    pub error: String,
}

/// An object replication did not touch because it may be the only copy
/// of a write: in a replica (a former primary, after a failover) and never
/// replicated from it. It stays until an operator resolves it
/// (`drctl replicate --resolve`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Conflict {
    pub datastore: String,
    pub zone: String,
    pub key: String,
    pub etag: String,
    pub reason: String,
}

/// The result of one replication pass over every replica.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub totals: RunTotals,
    /// Objects deleted from replicas because the primary deleted them.
    pub deleted: u64,
    pub failures: Vec<Failure>,
    pub conflicts: Vec<Conflict>,
    /// Replicas that could not be worked on at all (listing failed, ...).
    pub errors: Vec<String>,
    /// Per copied object: seconds from its write on the primary to its
    /// verified copy (the replication lag, for the histogram on /metrics).
    pub lags_s: Vec<f64>,
}

/// What one pass does to one replica, decided from the listings and what
/// replication accounts for (the manifest in the state store).
#[derive(Debug, Default, PartialEq)]
pub struct PassPlan {
    pub copy: Vec<ObjectInfo>,
    pub delete: Vec<ObjectInfo>,
    pub conflicts: Vec<(ObjectInfo, String)>,
    pub in_sync: u64,
    /// Objects seen identical on both sides that the manifest should now account for.
    pub newly_accounted: Vec<(ObjectInfo, ObjectInfo)>,
}

/// Decides a pass (pure, so every case is unit-tested): copy what the
/// primary has that the replica lacks or holds an accounted-for older copy
/// of; delete (when `deletes`) what the primary no longer has and the
/// replica holds only as a copy; and never touch an object the replica
/// holds that replication does not account for (written there, never
/// replicated): a conflict.
pub fn plan_pass(
    source: &HashMap<String, ObjectInfo>,
    dest: &HashMap<String, ObjectInfo>,
    known: &HashMap<String, drctl_state::ReplicatedObject>,
    deletes: bool,
    replica_zone: &str,
) -> PassPlan {
    let mut plan = PassPlan::default();
    let accounted = |d: &ObjectInfo| known.get(&d.key).is_some_and(|k| k.etag == d.etag);
    let kept = |d: &ObjectInfo| known.get(&d.key).is_some_and(|k| k.kept && k.etag == d.etag);
    let mut keys: Vec<&String> = source.keys().collect();
    keys.sort();
    for key in keys {
        let p = &source[key];
        match dest.get(key) {
            // The same bytes: by ETag, or (SSE-KMS, whose ETags are not
            // digests) the copy drctl made of exactly this source version.
            Some(d)
                if d.size == p.size
                    && (d.etag == p.etag
                        || known.get(key).is_some_and(|k| k.etag == d.etag && k.source_etag == p.etag)) =>
            {
                plan.in_sync += 1;
                if !accounted(d) {
                    plan.newly_accounted.push((p.clone(), d.clone()));
                }
            }
            Some(d) if kept(d) => plan.in_sync += 1,
            Some(d) if !accounted(d) => plan.conflicts.push((
                d.clone(),
                format!("written in {replica_zone} and never replicated; the primary has another version"),
            )),
            _ => plan.copy.push(p.clone()),
        }
    }
    let mut extra: Vec<&ObjectInfo> = dest.values().filter(|d| !source.contains_key(&d.key)).collect();
    extra.sort_by(|a, b| a.key.cmp(&b.key));
    for d in extra {
        if kept(d) {
            continue;
        }
        if accounted(d) {
            if deletes {
                plan.delete.push(d.clone());
            }
        } else {
            plan.conflicts.push((d.clone(), format!("only in {replica_zone}: written there and never replicated")));
        }
    }
    plan
}

/// One pass: copy every new or changed object of the primary to every replica.
pub async fn replicate_once(
    datastore: &str,
    primary: &Bucket,
    replicas: &[Bucket],
    state: &State,
    options: &Options,
    progress: &dyn Progress,
) -> Summary {
    let mut summary = Summary::default();
    let source = match list(primary).await {
        Ok(s) => s,
        Err(e) => {
            summary.errors.push(e.to_string());
            return summary;
        }
    };
    for replica in replicas {
        let dest = match list(replica).await {
            Ok(d) => d,
            Err(e) => {
                summary.errors.push(e.to_string());
                continue;
            }
        };
        // Without the manifest nothing can be told apart: touch nothing.
        let known = match state.replicated(datastore, &replica.zone) {
            Ok(k) => k,
            Err(e) => {
                summary
                    .errors
                    .push(format!("{} ({}): what was replicated is unknown: {e}", replica.name, replica.zone));
                continue;
            }
        };
        let plan = plan_pass(&source, &dest, &known, options.deletes, &replica.zone);
        summary.totals.skipped += plan.in_sync;
        let accounted: Vec<ReplicatedObject> =
            plan.newly_accounted.iter().flat_map(|(p, d)| copy_rows(primary, replica, p, &d.etag)).collect();
        if let Err(e) = state.record_replicated(datastore, &accounted) {
            summary.errors.push(format!("recording what {} holds: {e}", replica.zone));
        }
        let rows: Vec<(String, String, String)> =
            plan.conflicts.iter().map(|(d, reason)| (d.key.clone(), d.etag.clone(), reason.clone())).collect();
        if let Err(e) = state.replace_conflicts(datastore, &replica.zone, &rows) {
            summary.errors.push(format!("recording the conflicts in {}: {e}", replica.zone));
        }
        for (d, reason) in plan.conflicts {
            summary.conflicts.push(Conflict {
                datastore: datastore.to_string(),
                zone: replica.zone.clone(),
                key: d.key,
                etag: d.etag,
                reason,
            });
        }
        let todo = plan.copy;
        progress.planned(&replica.zone, todo.len() as u64, todo.iter().map(|o| o.size).sum());
        let copied = AtomicU64::new(0);
        let bytes = AtomicU64::new(0);
        // Owned items and an explicit `async move` over borrowed context:
        // a closure over `&ObjectInfo` would make this future unusable in
        // `tokio::spawn` (a higher-ranked lifetime the compiler cannot prove).
        let (copied_ref, bytes_ref) = (&copied, &bytes);
        let failures: Vec<Failure> = futures::stream::iter(todo)
            .map(|obj: ObjectInfo| async move {
                let (copied, bytes) = (copied_ref, bytes_ref);
                let done = match copy_with_retry(datastore, primary, replica, &obj, state, options).await {
                    Ok(dest_etag) => state
                        .record_replicated(datastore, &copy_rows(primary, replica, &obj, &dest_etag))
                        .map_err(Error::State),
                    Err(e) => Err(e),
                };
                match done {
                    Ok(()) => {
                        copied.fetch_add(1, Ordering::Relaxed);
                        bytes.fetch_add(obj.size, Ordering::Relaxed);
                        progress.copied(&obj.key, obj.size);
                        let lag = options.clock.now().duration_since(obj.last_modified).unwrap_or_default();
                        Ok(lag.as_secs_f64())
                    }
                    Err(e) => {
                        let error = e.to_string();
                        progress.failed(&obj.key, &error);
                        Err(Failure { replica_zone: replica.zone.clone(), key: obj.key.clone(), error })
                    }
                }
            })
            .buffer_unordered(options.concurrency.max(1))
            .collect::<Vec<std::result::Result<f64, Failure>>>()
            .await
            .into_iter()
            .filter_map(|r| match r {
                Ok(lag) => {
                    summary.lags_s.push(lag);
                    None
                }
                Err(f) => Some(f),
            })
            .collect();
        summary.totals.copied += copied.into_inner();
        summary.totals.bytes += bytes.into_inner();
        summary.totals.failed += failures.len() as u64;
        summary.failures.extend(failures);
        // Deletes: what the primary no longer has and the replica holds only as a copy.
        for d in plan.delete {
            let deleted = replica
                .client
                .delete_object()
                .bucket(&replica.name)
                .key(&d.key)
                .send()
                .await
                .map_err(api(format!("deleting {} ({})", d.key, replica.zone)));
            match deleted.and_then(|_| state.forget_replicated(datastore, &replica.zone, &d.key).map_err(Error::State))
            {
                Ok(()) => summary.deleted += 1,
                Err(e) => {
                    summary.totals.failed += 1;
                    summary.failures.push(Failure {
                        replica_zone: replica.zone.clone(),
                        key: d.key,
                        error: e.to_string(),
                    });
                }
            }
        }
    }
    summary
}

/// The manifest rows of one copy: the copy in the replica, and the source
/// it came from (accounted for in the primary's zone too, so that after a
/// failover it is known to have been replicated).
fn copy_rows(primary: &Bucket, replica: &Bucket, src: &ObjectInfo, dest_etag: &str) -> Vec<ReplicatedObject> {
    vec![
        ReplicatedObject {
            zone: replica.zone.clone(),
            key: src.key.clone(),
            etag: dest_etag.to_string(),
            source_etag: src.etag.clone(),
            kept: false,
        },
        ReplicatedObject {
            zone: primary.zone.clone(),
            key: src.key.clone(),
            etag: src.etag.clone(),
            source_etag: src.etag.clone(),
            kept: false,
        },
    ]
}

async fn copy_with_retry(
    datastore: &str,
    src: &Bucket,
    dst: &Bucket,
    obj: &ObjectInfo,
    state: &State,
    options: &Options,
) -> Result<String> {
    let backoff = drctl_runtime::Backoff::new(options.attempts, options.backoff);
    let seed = obj.key.len() as u64;
    let mut attempt = 1;
    loop {
        match copy_object(datastore, src, dst, obj, state, options).await {
            Ok(etag) => return Ok(etag),
            Err(e) if is_transient(&e) => match backoff.pause_after(attempt, seed) {
                Some(pause) => {
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                None => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
}

/// Failures worth another attempt: the network, throttling, 5xx, a copy that did not verify.
fn is_transient(e: &Error) -> bool {
    match e {
        Error::Api { transient, .. } => *transient,
        Error::Verify { .. } => true,
        _ => false,
    }
}

fn api<E>(what: String) -> impl FnOnce(aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Error
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    move |e| api_error(what, &e)
}

/// Percent-encodes a key for `x-amz-copy-source`, keeping `/`.
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn same_endpoint(a: &Bucket, b: &Bucket) -> bool {
    a.endpoint == b.endpoint
}

/// What a copy keeps of the source object (content type, cache control,
/// encoding, disposition, user metadata) and the encryption it is written
/// with, applied to a PUT or a multipart start from a GET or HEAD answer:
/// one list for every path that writes an object.
macro_rules! keep_headers {
    ($req:expr, $from:expr, $options:expr) => {
        $req.set_content_type($from.content_type().map(str::to_string))
            .set_cache_control($from.cache_control().map(str::to_string))
            .set_content_encoding($from.content_encoding().map(str::to_string))
            .set_content_disposition($from.content_disposition().map(str::to_string))
            .set_metadata($from.metadata().cloned())
            .set_server_side_encryption(sse($options))
            .set_ssekms_key_id($options.kms_key_id.clone())
    };
}

fn sse(options: &Options) -> Option<ServerSideEncryption> {
    options.sse.as_deref().map(ServerSideEncryption::from)
}

/// Copying: `CopyObject`, `GetObject`, `PutObject`, `HeadObject` (a read),
/// the multipart calls (`UploadPartCopy` reads its source), and
/// `DeleteObject` for deletes that replicate.
pub const COPY_OBJECTS: Grant = Grant {
    sid: "S3CopyObjects",
    actions: &["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
    on: On::CopiedObjects,
    uses: &[Use::Replicate],
};

async fn copy_object(
    datastore: &str,
    src: &Bucket,
    dst: &Bucket,
    obj: &ObjectInfo,
    state: &State,
    options: &Options,
) -> Result<String> {
    let what = |op: &str| format!("{op} {} ({} -> {})", obj.key, src.zone, dst.zone);
    let etag = match obj.parts() {
        None if same_endpoint(src, dst) && obj.size <= 5 << 30 => {
            let mut req = dst
                .client
                .copy_object()
                .bucket(&dst.name)
                .key(&obj.key)
                .copy_source(format!("{}/{}", src.name, encode_key(&obj.key)))
                .metadata_directive(MetadataDirective::Copy)
                .set_server_side_encryption(sse(options))
                .set_ssekms_key_id(options.kms_key_id.clone());
            req = req.copy_source_if_match(format!("\"{}\"", obj.etag));
            let out = req.send().await.map_err(api(what("copying")))?;
            out.copy_object_result().and_then(|r| r.e_tag()).map(unquote).unwrap_or_default()
        }
        None => {
            let got = src
                .client
                .get_object()
                .bucket(&src.name)
                .key(&obj.key)
                .if_match(format!("\"{}\"", obj.etag))
                .send()
                .await
                .map_err(api(what("reading")))?;
            let length = got.content_length().unwrap_or(obj.size as i64);
            let put = dst.client.put_object().bucket(&dst.name).key(&obj.key).content_length(length);
            // Headers first: attaching the body moves it out of `got`.
            let out = keep_headers!(put, got, options).body(got.body).send().await.map_err(api(what("writing")))?;
            out.e_tag().map(unquote).unwrap_or_default()
        }
        Some(parts) => copy_multipart(datastore, src, dst, obj, parts, state, options).await?,
    };
    // With SSE-KMS the ETag is not a digest of the content; compare sizes instead.
    if options.sse.as_deref() == Some("aws:kms") {
        let head =
            dst.client.head_object().bucket(&dst.name).key(&obj.key).send().await.map_err(api(what("verifying")))?;
        if head.content_length().unwrap_or(-1) as u64 != obj.size {
            return Err(Error::Verify { key: obj.key.clone(), why: "size differs".into() });
        }
        return Ok(head.e_tag().map(unquote).unwrap_or(etag));
    } else if etag != obj.etag {
        return Err(Error::Verify { key: obj.key.clone(), why: format!("ETag {etag} instead of {}", obj.etag) });
    }
    Ok(etag)
}

/// Copies a multipart object part by part with the source's part size, resuming a recorded upload.
async fn copy_multipart(
    datastore: &str,
    src: &Bucket,
    dst: &Bucket,
    obj: &ObjectInfo,
    parts: u32,
    state: &State,
    options: &Options,
) -> Result<String> {
    let part_size = source_part_size(src, dst, obj).await?;
    let m = Multipart { datastore, src, dst, obj, state, options, part_size };
    let checkpoint = match m.recorded_upload().await? {
        Some(cp) => cp,
        None => m.start_upload().await?,
    };
    let done: HashMap<i32, String> = checkpoint.parts.iter().cloned().collect();
    let upload_id = checkpoint.upload_id.clone();
    let todo: Vec<i32> = (1..=parts as i32).filter(|n| !done.contains_key(n)).collect();
    let server_side = same_endpoint(src, dst);
    let uploaded: Vec<(i32, String)> = futures::stream::iter(todo)
        .map(|n| m.copy_part(n, &upload_id, server_side))
        .buffer_unordered(options.part_concurrency.max(1))
        .try_collect()
        .await?;
    let mut all: Vec<(i32, String)> = done.into_iter().chain(uploaded).collect();
    all.sort_by_key(|(n, _)| *n);
    let etag = m.complete(&upload_id, &all).await?;
    state.clear_multipart(datastore, &dst.zone, &obj.key)?;
    Ok(etag)
}

/// The size of the source's parts: the size of its first.
async fn source_part_size(src: &Bucket, dst: &Bucket, obj: &ObjectInfo) -> Result<u64> {
    let head = src
        .client
        .head_object()
        .bucket(&src.name)
        .key(&obj.key)
        .part_number(1)
        .send()
        .await
        .map_err(api(copying_what("reading the part size of", src, dst, obj)))?;
    Ok(head.content_length().unwrap_or(0).max(1) as u64)
}

/// What an error in copying `obj` was doing (`op`), and between which zones.
fn copying_what(op: &str, src: &Bucket, dst: &Bucket, obj: &ObjectInfo) -> String {
    format!("{op} {} ({} -> {})", obj.key, src.zone, dst.zone)
}

/// One multipart copy of `obj` from `src` to `dst`, in parts of `part_size`,
/// its progress recorded in the state so an interrupted copy resumes.
struct Multipart<'a> {
    datastore: &'a str,
    src: &'a Bucket,
    dst: &'a Bucket,
    obj: &'a ObjectInfo,
    state: &'a State,
    options: &'a Options,
    part_size: u64,
}

impl Multipart<'_> {
    fn what(&self, op: &str) -> String {
        copying_what(op, self.src, self.dst, self.obj)
    }

    /// The upload recorded for this object, if it can still be resumed;
    /// one that cannot is dropped (aborted when the source changed).
    async fn recorded_upload(&self) -> Result<Option<MultipartCheckpoint>> {
        let (datastore, dst, obj) = (self.datastore, self.dst, self.obj);
        let mut checkpoint = self.state.multipart_checkpoint(datastore, &dst.zone, &obj.key)?;
        if let Some(cp) = &checkpoint {
            if cp.source_etag != obj.etag || cp.part_size != self.part_size {
                // The source changed since: that upload is useless now.
                let _ = dst
                    .client
                    .abort_multipart_upload()
                    .bucket(&dst.name)
                    .key(&obj.key)
                    .upload_id(&cp.upload_id)
                    .send()
                    .await;
                self.state.clear_multipart(datastore, &dst.zone, &obj.key)?;
                checkpoint = None;
            }
        }
        if let Some(cp) = &checkpoint {
            // S3 may have aborted the upload since (a lifecycle rule, an
            // operator): its parts are gone, and resuming it would fail forever.
            let alive = dst
                .client
                .list_parts()
                .bucket(&dst.name)
                .key(&obj.key)
                .upload_id(&cp.upload_id)
                .max_parts(1)
                .send()
                .await;
            if let Err(e) = alive {
                let code = e
                    .as_service_error()
                    .and_then(|s| aws_sdk_s3::error::ProvideErrorMetadata::code(s).map(str::to_string));
                if code.as_deref() == Some("NoSuchUpload") {
                    tracing::warn!(datastore, key = %obj.key, zone = %dst.zone, "the recorded multipart upload is gone; starting the copy again");
                    self.state.clear_multipart(datastore, &dst.zone, &obj.key)?;
                    checkpoint = None;
                }
            }
        }
        Ok(checkpoint)
    }

    /// Starts a new upload with the source's headers, and records it.
    async fn start_upload(&self) -> Result<MultipartCheckpoint> {
        let (src, dst, obj, options) = (self.src, self.dst, self.obj, self.options);
        let full =
            src.client.head_object().bucket(&src.name).key(&obj.key).send().await.map_err(api(self.what("reading")))?;
        let start = dst.client.create_multipart_upload().bucket(&dst.name).key(&obj.key);
        let created =
            keep_headers!(start, full, options).send().await.map_err(api(self.what("starting the copy of")))?;
        let cp = MultipartCheckpoint {
            upload_id: created.upload_id().unwrap_or_default().to_string(),
            source_etag: obj.etag.clone(),
            part_size: self.part_size,
            parts: Vec::new(),
        };
        self.state.start_multipart(self.datastore, &dst.zone, &obj.key, &cp)?;
        Ok(cp)
    }

    /// Copies part `n` (server-side when both buckets share an endpoint,
    /// otherwise read and written again) and records it.
    async fn copy_part(&self, n: i32, upload_id: &str, server_side: bool) -> Result<(i32, String)> {
        let first = (n as u64 - 1) * self.part_size;
        let last = (first + self.part_size).min(self.obj.size) - 1;
        let range = format!("bytes={first}-{last}");
        let etag = if server_side {
            self.copy_part_within(n, upload_id, &range).await?
        } else {
            self.copy_part_through(n, upload_id, &range, (last - first + 1) as i64).await?
        };
        self.state.record_part(self.datastore, &self.dst.zone, &self.obj.key, n, &etag)?;
        Ok((n, etag))
    }

    /// Part `n` copied by S3 itself (`UploadPartCopy`).
    async fn copy_part_within(&self, n: i32, upload_id: &str, range: &str) -> Result<String> {
        let (src, dst, obj) = (self.src, self.dst, self.obj);
        let out = dst
            .client
            .upload_part_copy()
            .bucket(&dst.name)
            .key(&obj.key)
            .upload_id(upload_id)
            .part_number(n)
            .copy_source(format!("{}/{}", src.name, encode_key(&obj.key)))
            .copy_source_range(range)
            .copy_source_if_match(format!("\"{}\"", obj.etag))
            .send()
            .await
            .map_err(api(format!("copying part {n} of {}", obj.key)))?;
        Ok(out.copy_part_result().and_then(|r| r.e_tag()).map(unquote).unwrap_or_default())
    }

    /// Part `n` read from the source and written to the destination.
    async fn copy_part_through(&self, n: i32, upload_id: &str, range: &str, length: i64) -> Result<String> {
        let (src, dst, obj) = (self.src, self.dst, self.obj);
        let got = src
            .client
            .get_object()
            .bucket(&src.name)
            .key(&obj.key)
            .range(range)
            .if_match(format!("\"{}\"", obj.etag))
            .send()
            .await
            .map_err(api(format!("reading part {n} of {}", obj.key)))?;
        let out = dst
            .client
            .upload_part()
            .bucket(&dst.name)
            .key(&obj.key)
            .upload_id(upload_id)
            .part_number(n)
            .content_length(length)
            .body(got.body)
            .send()
            .await
            .map_err(api(format!("writing part {n} of {}", obj.key)))?;
        Ok(out.e_tag().map(unquote).unwrap_or_default())
    }

    /// Completes the upload from its parts, in order; returns the new ETag.
    async fn complete(&self, upload_id: &str, all: &[(i32, String)]) -> Result<String> {
        let (dst, obj) = (self.dst, self.obj);
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                all.iter()
                    .map(|(n, e)| CompletedPart::builder().part_number(*n).e_tag(format!("\"{e}\"")).build())
                    .collect(),
            ))
            .build();
        let completed = dst
            .client
            .complete_multipart_upload()
            .bucket(&dst.name)
            .key(&obj.key)
            .upload_id(upload_id)
            .multipart_upload(completed)
            .send()
            .await;
        Ok(match completed {
            Ok(out) => out.e_tag().map(unquote).unwrap_or_default(),
            // The completion may have happened with its answer lost or unreadable
            // (a dropped connection, or an S3-compatible server's odd XML): the
            // object itself says whether it did.
            Err(e) => match dst.client.head_object().bucket(&dst.name).key(&obj.key).send().await {
                Ok(head) if head.e_tag().map(unquote).as_deref() == Some(obj.etag.as_str()) => obj.etag.clone(),
                _ => return Err(api_error(self.what("finishing the copy of"), &e)),
            },
        })
    }
}

/// Reads a whole small object (tests and tools).
pub async fn get_bytes(bucket: &Bucket, key: &str) -> Result<Vec<u8>> {
    let got =
        bucket.client.get_object().bucket(&bucket.name).key(key).send().await.map_err(api(format!("reading {key}")))?;
    let data = got.body.collect().await.map_err(|e| Error::Api {
        what: format!("reading {key}"),
        why: e.to_string(),
        transient: true,
    })?;
    Ok(data.into_bytes().to_vec())
}

/// Writes a small object (tests and tools).
pub async fn put_bytes(bucket: &Bucket, key: &str, data: Vec<u8>) -> Result<()> {
    bucket
        .client
        .put_object()
        .bucket(&bucket.name)
        .key(key)
        .body(ByteStream::from(data))
        .send()
        .await
        .map_err(api(format!("writing {key}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str, size: u64, etag: &str, age_s: u64, now: SystemTime) -> ObjectInfo {
        ObjectInfo { key: key.into(), size, etag: etag.into(), last_modified: now - Duration::from_secs(age_s) }
    }

    #[test]
    fn lag_is_the_age_of_the_oldest_object_missing_or_different() {
        let now = SystemTime::now();
        let p: HashMap<_, _> = [obj("a", 1, "x", 100, now), obj("b", 2, "y", 30, now), obj("c", 3, "z", 5, now)]
            .into_iter()
            .map(|o| (o.key.clone(), o))
            .collect();
        let mut r = p.clone();
        assert_eq!(lag_of(&p, &r, now), 0.0);
        r.remove("c");
        assert!((lag_of(&p, &r, now) - 5.0).abs() < 0.01);
        r.get_mut("b").unwrap().etag = "old".into();
        assert!((lag_of(&p, &r, now) - 30.0).abs() < 0.01);
    }

    #[test]
    fn multipart_etags_give_the_part_count_and_keys_are_encoded() {
        let now = SystemTime::now();
        assert_eq!(obj("a", 1, "d41d8cd98f00b204e9800998ecf8427e-12", 0, now).parts(), Some(12));
        assert_eq!(obj("a", 1, "d41d8cd98f00b204e9800998ecf8427e", 0, now).parts(), None);
        assert_eq!(encode_key("dir/a b+c.txt"), "dir/a%20b%2Bc.txt");
    }
}

#[cfg(test)]
mod pass_tests {
    use super::*;

    fn obj(key: &str, etag: &str) -> ObjectInfo {
        ObjectInfo { key: key.into(), size: 1, etag: etag.into(), last_modified: SystemTime::UNIX_EPOCH }
    }

    fn map(objs: &[ObjectInfo]) -> HashMap<String, ObjectInfo> {
        objs.iter().map(|o| (o.key.clone(), o.clone())).collect()
    }

    fn known(rows: &[(&str, &str, &str, bool)]) -> HashMap<String, ReplicatedObject> {
        rows.iter()
            .map(|(k, e, s, kept)| {
                (
                    k.to_string(),
                    ReplicatedObject {
                        zone: "az1".into(),
                        key: k.to_string(),
                        etag: e.to_string(),
                        source_etag: s.to_string(),
                        kept: *kept,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_kms_copy_of_this_source_version_is_in_sync_whatever_its_etag() {
        let plan = plan_pass(
            &map(&[obj("k", "src1")]),
            &map(&[obj("k", "kms-xyz")]),
            &known(&[("k", "kms-xyz", "src1", false)]),
            true,
            "az1",
        );
        assert_eq!((plan.in_sync, plan.copy.len()), (1, 0));
        // A new source version is copied over drctl's own old copy.
        let plan = plan_pass(
            &map(&[obj("k", "src2")]),
            &map(&[obj("k", "kms-xyz")]),
            &known(&[("k", "kms-xyz", "src1", false)]),
            true,
            "az1",
        );
        assert_eq!(plan.copy.len(), 1);
    }

    #[test]
    fn what_replication_does_not_account_for_is_never_touched() {
        let source = map(&[obj("shared", "s1")]);
        let dest = map(&[obj("shared", "changed-here"), obj("mine", "m1"), obj("copied", "c1")]);
        let k = known(&[("shared", "s0", "s0", false), ("copied", "c1", "c1", false)]);
        let plan = plan_pass(&source, &dest, &k, true, "az1");
        let conflicts: Vec<&str> = plan.conflicts.iter().map(|(o, _)| o.key.as_str()).collect();
        assert_eq!(conflicts, ["shared", "mine"]);
        assert!(plan.copy.is_empty(), "not overwritten");
        assert_eq!(plan.delete.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), ["copied"]);
        let quiet = plan_pass(&source, &dest, &k, false, "az1");
        assert!(quiet.delete.is_empty(), "deletes: keep");
        let kept = known(&[("mine", "m1", "m1", true), ("shared", "changed-here", "changed-here", true)]);
        let plan = plan_pass(&source, &dest, &kept, true, "az1");
        assert_eq!(plan.conflicts.iter().map(|(o, _)| o.key.as_str()).collect::<Vec<_>>(), ["copied"]);
    }
}

/// What a permission probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permission {
    Allowed,
    /// Refused, with S3's words.
    Denied(String),
    /// Not found out, and why.
    Unknown(String),
}

/// Whether these credentials may put a replication configuration on
/// `bucket` (`s3:PutReplicationConfiguration`), found out without changing
/// it: the probe is a configuration with no rules, which S3 refuses for
/// its shape only after it has authorized the request (AccessDenied
/// first), so it is never applied. A bucket that has a configuration of
/// its own is not probed (a server that accepted the empty one would
/// replace it); a server that accepts it has it deleted again at once.
/// Reading a bucket's replication configuration (the role, the rules).
pub const READ_REPLICATION: Grant = Grant {
    sid: "S3ReadReplication",
    actions: &["s3:GetReplicationConfiguration", "s3:GetBucketVersioning"],
    on: On::NativeBuckets,
    uses: &[Use::Declare],
};

/// `PutBucketReplication` (and `DeleteBucketReplication`, which S3
/// authorizes as the same action).
pub const WRITE_REPLICATION: Grant = Grant {
    sid: "S3TurnReplicationAround",
    actions: &["s3:PutReplicationConfiguration"],
    on: On::NativeBuckets,
    uses: &[Use::Declare],
};

pub async fn replication_permission(bucket: &Bucket) -> Permission {
    use aws_sdk_s3::types::ReplicationConfiguration;
    let own = bucket.client.get_bucket_replication().bucket(&bucket.name).send().await;
    if own.as_ref().is_ok_and(|o| o.replication_configuration().is_some_and(|c| !c.rules().is_empty())) {
        return Permission::Unknown(format!("{} has a replication configuration of its own; not probed", bucket.name));
    }
    let probe = match ReplicationConfiguration::builder()
        .role("arn:aws:iam::000000000000:role/drctl-permission-probe")
        .set_rules(Some(Vec::new()))
        .build()
    {
        Ok(p) => p,
        Err(e) => return Permission::Unknown(format!("cannot build the probe: {e}")),
    };
    match bucket.client.put_bucket_replication().bucket(&bucket.name).replication_configuration(probe).send().await {
        Ok(_) => {
            // Not AWS: this server took an empty configuration. Undo it.
            let _ = bucket.client.delete_bucket_replication().bucket(&bucket.name).send().await;
            Permission::Allowed
        }
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            let code = aws_sdk_s3::error::ProvideErrorMetadata::code(&e).unwrap_or_default().to_string();
            if code == "AccessDenied" || status == Some(403) {
                Permission::Denied(explain(&e))
            } else if status.is_some() {
                // Authorized, then refused for the probe's shape.
                Permission::Allowed
            } else {
                Permission::Unknown(explain(&e))
            }
        }
    }
}

/// S3 native replication (`by: s3`) turned around after a failover: the new
/// primary replicates into every other bucket (the former primary
/// included), and the former primary's rules are disabled, so that writes
/// flow from the bucket that takes them. The IAM role is the one the
/// former primary's configuration used (or one already on the new primary).
/// Verified by reading the configuration back. Idempotent.
/// `PutBucketReplication` hands S3 the replication role: `iam:PassRole`.
pub const PASS_REPLICATION_ROLE: Grant =
    Grant { sid: "IamPassReplicationRole", actions: &["iam:PassRole"], on: On::ReplicationRole, uses: &[Use::Declare] };

pub async fn turn_native_replication(new_primary: &Bucket, others: &[Bucket]) -> Result<String> {
    use aws_sdk_s3::types::{
        DeleteMarkerReplication, DeleteMarkerReplicationStatus, Destination, ReplicationConfiguration, ReplicationRule,
        ReplicationRuleFilter, ReplicationRuleStatus,
    };
    let read = |b: &Bucket| {
        let b = b.clone();
        async move { b.client.get_bucket_replication().bucket(&b.name).send().await }
    };
    let mine = read(new_primary).await.ok().and_then(|o| o.replication_configuration);
    let mut role = mine.as_ref().map(|c| c.role().to_string()).filter(|r| !r.is_empty());
    let mut former = Vec::new();
    for b in others {
        if let Ok(out) = read(b).await {
            if let Some(cfg) = out.replication_configuration {
                role = role.or_else(|| Some(cfg.role().to_string()).filter(|r| !r.is_empty()));
                former.push((b.clone(), cfg));
            }
        }
    }
    let role = role.ok_or_else(|| {
        Error::Config(format!(
            "no replication role to use: no bucket of the datastore has a readable replication configuration; give {} one (its rules may be disabled)",
            new_primary.name
        ))
    })?;
    let rules: Vec<ReplicationRule> = others
        .iter()
        .enumerate()
        .map(|(i, b)| {
            ReplicationRule::builder()
                .id(format!("drctl-to-{}", b.name))
                .priority(i as i32 + 1)
                .status(ReplicationRuleStatus::Enabled)
                .filter(ReplicationRuleFilter::builder().prefix("").build())
                .delete_marker_replication(
                    DeleteMarkerReplication::builder().status(DeleteMarkerReplicationStatus::Enabled).build(),
                )
                .destination(
                    Destination::builder()
                        .bucket(format!("arn:aws:s3:::{}", b.name))
                        .build()
                        .map_err(|e| Error::Config(format!("a replication destination for {}: {e}", b.name)))?,
                )
                .build()
                .map_err(|e| Error::Config(format!("a replication rule for {}: {e}", b.name)))
        })
        .collect::<Result<_>>()?;
    let cfg = ReplicationConfiguration::builder()
        .role(&role)
        .set_rules(Some(rules))
        .build()
        .map_err(|e| Error::Config(format!("the replication configuration: {e}")))?;
    new_primary
        .client
        .put_bucket_replication()
        .bucket(&new_primary.name)
        .replication_configuration(cfg)
        .send()
        .await
        .map_err(|e| api_error(format!("configuring replication from {} ({})", new_primary.name, new_primary.zone), &e))?;
    // The former primaries stop replicating into what is now the primary.
    let mut disabled = Vec::new();
    for (b, cfg) in former.into_iter().filter(|(b, _)| b.name != new_primary.name) {
        if cfg.rules().iter().all(|r| r.status() == &ReplicationRuleStatus::Disabled) {
            continue;
        }
        let rules: Vec<ReplicationRule> = cfg
            .rules()
            .iter()
            .map(|r| {
                ReplicationRule::builder()
                    .set_id(r.id().map(str::to_string))
                    .set_priority(r.priority())
                    .set_filter(r.filter().cloned())
                    .set_delete_marker_replication(r.delete_marker_replication().cloned())
                    .set_destination(r.destination().cloned())
                    .status(ReplicationRuleStatus::Disabled)
                    .build()
                    .map_err(|e| Error::Config(format!("a replication rule of {}: {e}", b.name)))
            })
            .collect::<Result<_>>()?;
        let off = ReplicationConfiguration::builder()
            .role(cfg.role())
            .set_rules(Some(rules))
            .build()
            .map_err(|e| Error::Config(format!("the replication configuration of {}: {e}", b.name)))?;
        b.client
            .put_bucket_replication()
            .bucket(&b.name)
            .replication_configuration(off)
            .send()
            .await
            .map_err(|e| api_error(format!("disabling replication from {} ({})", b.name, b.zone), &e))?;
        disabled.push(b.name.clone());
    }
    // Verified: read back.
    let now = read(new_primary)
        .await
        .map_err(|e| api_error(format!("reading back the replication of {}", new_primary.name), &e))?;
    let enabled: Vec<String> = now
        .replication_configuration
        .iter()
        .flat_map(|c| c.rules())
        .filter(|r| r.status() == &ReplicationRuleStatus::Enabled)
        .filter_map(|r| r.destination().map(|d| d.bucket().trim_start_matches("arn:aws:s3:::").to_string()))
        .collect();
    let missing: Vec<&str> =
        others.iter().map(|b| b.name.as_str()).filter(|n| !enabled.iter().any(|e| e == n)).collect();
    if !missing.is_empty() {
        return Err(Error::Verify {
            key: new_primary.name.clone(),
            why: format!("replication into {} is not enabled after configuring it", missing.join(", ")),
        });
    }
    let mut note = format!("native replication now runs from {} into {}", new_primary.name, enabled.join(", "));
    if !disabled.is_empty() {
        note.push_str(&format!("; disabled on {}", disabled.join(", ")));
    }
    Ok(note)
}

/// Every permission this module's calls need.
pub const PERMISSIONS: &[Grant] =
    &[LIST_BUCKETS, COPY_OBJECTS, READ_REPLICATION, WRITE_REPLICATION, PASS_REPLICATION_ROLE];
