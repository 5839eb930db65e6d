//! The lab's S3 endpoints: one real S3 HTTP server per zone (s3s over a
//! folder, with SigV4 authentication), so drctl reaches them through the
//! same aws-sdk-s3 code as it reaches AWS. The `s3-errors` fault answers a
//! share of requests `503 SlowDown`, as S3 does under throttling.

use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

/// The lab's S3 credentials. Not secrets: the lab's endpoints are on
/// loopback and hold only the lab's own workload.
pub use drctl_lab_api::{ACCESS_KEY, SECRET_KEY};

pub struct S3Server {
    pub addr: SocketAddr,
    /// Share of requests answered 503, in millionths.
    pub error_ppm: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn slow_down() -> http::Response<s3s::Body> {
    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate (drctl lab: s3-errors fault).</Message></Error>";
    let mut r = http::Response::new(s3s::Body::from(xml.to_string()));
    *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/xml"));
    r
}

/// s3s-fs with listings that carry ETags, as S3's do (s3s-fs leaves them
/// out; drctl compares ETags to find changed objects and verify copies),
/// and with object versions ([`crate::s3_versions`]).
#[derive(Debug)]
struct LabS3 {
    inner: s3s_fs::FileSystem,
    versions: Versions,
    /// The folder s3s-fs keeps the buckets in (a key `a/b/c` is the file
    /// `<root>/<bucket>/a/b/c`).
    root: std::path::PathBuf,
}

use crate::s3_versions::{self, internal, Status, Versions};
use s3s::{dto, S3Request, S3Response, S3Result};

fn versioned(s: Status) -> bool {
    s != Status::Never
}

fn built<T, E: std::fmt::Display>(r: Result<T, E>) -> S3Result<T> {
    r.map_err(|e| s3s::S3Error::with_message(s3s::S3ErrorCode::InternalError, e.to_string()))
}

impl LabS3 {
    /// Writes a stored version's bytes as the key's current object (s3s-fs
    /// only; the caller records the version).
    async fn put_current(
        &self,
        bucket: &str,
        key: &str,
        data: bytes::Bytes,
        content_type: Option<String>,
        metadata: Option<dto::Metadata>,
    ) -> S3Result<()> {
        use s3s::S3;
        let mut b = dto::PutObjectInput::builder();
        b.set_bucket(bucket.to_string());
        b.set_key(key.to_string());
        b.set_content_length(Some(data.len() as i64));
        b.set_content_type(content_type.and_then(|c| c.parse().ok()));
        b.set_metadata(metadata);
        b.set_body(Some(dto::StreamingBlob::from(s3s::Body::from(data))));
        self.inner.put_object(internal(built(b.build())?)).await?;
        Ok(())
    }

    async fn delete_current(&self, bucket: &str, key: &str) -> S3Result<()> {
        use s3s::S3;
        let mut b = dto::DeleteObjectInput::builder();
        b.set_bucket(bucket.to_string());
        b.set_key(key.to_string());
        match self.inner.delete_object(internal(built(b.build())?)).await {
            Ok(_) => {}
            Err(e) if *e.code() == s3s::S3ErrorCode::NoSuchKey => {}
            Err(e) => return Err(e),
        }
        self.prune(bucket, key);
        Ok(())
    }

    /// Removes the folders s3s-fs made for a key's path once they are
    /// empty: S3 has no folders, and a key's name (`users/<subject>/...`)
    /// must not outlive its last object. Called with the lock held, so no
    /// write of this endpoint is filling them meanwhile.
    fn prune(&self, bucket: &str, key: &str) {
        let top = self.root.join(bucket);
        let mut dir = top.join(key);
        while dir.pop() && dir.starts_with(&top) && dir != top {
            if std::fs::remove_dir(&dir).is_err() {
                break;
            }
        }
    }

    /// One delete, versioned or not (the lock held by the caller).
    async fn delete_one(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<String>,
    ) -> S3Result<dto::DeleteObjectOutput> {
        let status = self.versions.status(bucket);
        match version_id.filter(|v| versioned(status) && !v.is_empty()) {
            None if !versioned(status) => {
                self.delete_current(bucket, key).await?;
                Ok(dto::DeleteObjectOutput::default())
            }
            None => {
                self.delete_current(bucket, key).await?;
                let id = self.versions.mark_deleted(bucket, key)?;
                Ok(dto::DeleteObjectOutput { delete_marker: Some(true), version_id: Some(id), ..Default::default() })
            }
            // One version removed for good; the one before it becomes current.
            Some(id) => {
                let (gone, was_latest, now) = self.versions.remove(bucket, key, &id)?;
                if was_latest {
                    match now.filter(|v| !v.marker) {
                        Some(v) => {
                            let data = self.versions.data(bucket, key, &v.id)?;
                            self.put_current(bucket, key, data, v.content_type, v.metadata).await?
                        }
                        None => self.delete_current(bucket, key).await?,
                    }
                }
                Ok(dto::DeleteObjectOutput {
                    delete_marker: gone.marker.then_some(true),
                    version_id: Some(id),
                    ..Default::default()
                })
            }
        }
    }
}

// Every call the drctl copier, its restore and the AWS SDK make, passed
// through, with versions kept on the side for versioned buckets.
#[async_trait::async_trait]
impl s3s::S3 for LabS3 {
    async fn create_bucket(
        &self,
        req: S3Request<dto::CreateBucketInput>,
    ) -> S3Result<S3Response<dto::CreateBucketOutput>> {
        self.inner.create_bucket(req).await
    }

    async fn head_bucket(&self, req: S3Request<dto::HeadBucketInput>) -> S3Result<S3Response<dto::HeadBucketOutput>> {
        self.inner.head_bucket(req).await
    }

    async fn list_buckets(
        &self,
        req: S3Request<dto::ListBucketsInput>,
    ) -> S3Result<S3Response<dto::ListBucketsOutput>> {
        self.inner.list_buckets(req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<dto::GetBucketLocationInput>,
    ) -> S3Result<S3Response<dto::GetBucketLocationOutput>> {
        self.inner.get_bucket_location(req).await
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<dto::GetBucketVersioningInput>,
    ) -> S3Result<S3Response<dto::GetBucketVersioningOutput>> {
        let status = match self.versions.status(&req.input.bucket) {
            Status::Never => None,
            Status::Enabled => Some(dto::BucketVersioningStatus::from_static(dto::BucketVersioningStatus::ENABLED)),
            Status::Suspended => Some(dto::BucketVersioningStatus::from_static(dto::BucketVersioningStatus::SUSPENDED)),
        };
        Ok(S3Response::new(dto::GetBucketVersioningOutput { status, ..Default::default() }))
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<dto::PutBucketVersioningInput>,
    ) -> S3Result<S3Response<dto::PutBucketVersioningOutput>> {
        let bucket = req.input.bucket.clone();
        let enabled = match req.input.versioning_configuration.status.as_ref().map(|s| s.as_str()) {
            Some(dto::BucketVersioningStatus::ENABLED) => true,
            Some(dto::BucketVersioningStatus::SUSPENDED) => false,
            _ => return Err(s3s::s3_error!(MalformedXML, "Status is Enabled or Suspended")),
        };
        let _w = self.versions.lock.lock().await;
        let first = self.versions.status(&bucket) == Status::Never;
        self.versions
            .set_status(&bucket, enabled)
            .map_err(|e| s3s::S3Error::with_message(s3s::S3ErrorCode::InternalError, e.to_string()))?;
        // Objects written before versioning become its `null` versions.
        if first && enabled {
            let mut token = None;
            loop {
                let mut b = dto::ListObjectsV2Input::builder();
                b.set_bucket(bucket.clone());
                b.set_continuation_token(token.clone());
                let page = self.inner.list_objects_v2(internal(built(b.build())?)).await?.output;
                for o in page.contents.iter().flatten() {
                    if let Some(k) = &o.key {
                        if self.versions.history(&bucket, k).is_empty() {
                            self.versions.record(&self.inner, &bucket, k, true).await?;
                        }
                    }
                }
                token = page.next_continuation_token.filter(|_| page.is_truncated == Some(true));
                if token.is_none() {
                    break;
                }
            }
        }
        Ok(S3Response::new(dto::PutBucketVersioningOutput::default()))
    }

    async fn list_object_versions(
        &self,
        req: S3Request<dto::ListObjectVersionsInput>,
    ) -> S3Result<S3Response<dto::ListObjectVersionsOutput>> {
        if versioned(self.versions.status(&req.input.bucket)) {
            return s3_versions::list_page(&self.versions, &req.input);
        }
        // Never versioned: each object once, as version `null`.
        let mut b = dto::ListObjectsV2Input::builder();
        b.set_bucket(req.input.bucket.clone());
        b.set_prefix(req.input.prefix.clone());
        b.set_start_after(req.input.key_marker.clone());
        b.set_max_keys(req.input.max_keys);
        let listed = self.list_objects_v2(internal(built(b.build())?)).await?.output;
        let versions: Vec<dto::ObjectVersion> = listed
            .contents
            .iter()
            .flatten()
            .map(|o| dto::ObjectVersion {
                e_tag: o.e_tag.clone(),
                is_latest: Some(true),
                key: o.key.clone(),
                last_modified: o.last_modified.clone(),
                size: o.size,
                version_id: Some("null".into()),
                ..Default::default()
            })
            .collect();
        let truncated = listed.is_truncated == Some(true);
        let next = versions.last().and_then(|v| v.key.clone()).filter(|_| truncated);
        Ok(S3Response::new(dto::ListObjectVersionsOutput {
            name: Some(listed.name.unwrap_or_default()),
            prefix: listed.prefix,
            is_truncated: Some(truncated),
            next_key_marker: next,
            next_version_id_marker: truncated.then(|| "null".to_string()),
            versions: Some(versions),
            ..Default::default()
        }))
    }

    async fn get_object(&self, req: S3Request<dto::GetObjectInput>) -> S3Result<S3Response<dto::GetObjectOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let status = self.versions.status(&bucket);
        match req.input.version_id.clone().filter(|_| versioned(status)) {
            Some(id) => {
                let v = self.versions.find(&bucket, &key, &id)?;
                s3_versions::refuse_marker(&v)?;
                let data = self.versions.data(&bucket, &key, &id)?;
                let len = data.len() as i64;
                Ok(S3Response::new(dto::GetObjectOutput {
                    body: Some(dto::StreamingBlob::from(s3s::Body::from(data))),
                    content_length: Some(len),
                    content_type: v.content_type.as_deref().and_then(|c| c.parse().ok()),
                    e_tag: v.etag.clone().map(dto::ETag::Strong),
                    last_modified: Some(dto::Timestamp::from(
                        std::time::UNIX_EPOCH + std::time::Duration::from_micros(v.modified_us),
                    )),
                    metadata: v.metadata.clone(),
                    version_id: Some(v.id),
                    ..Default::default()
                }))
            }
            None => {
                let mut out = self.inner.get_object(req).await?;
                if versioned(status) {
                    out.output.version_id = self.versions.latest(&bucket, &key).map(|v| v.id);
                }
                Ok(out)
            }
        }
    }

    async fn head_object(&self, req: S3Request<dto::HeadObjectInput>) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let status = self.versions.status(&bucket);
        match req.input.version_id.clone().filter(|_| versioned(status)) {
            Some(id) => {
                let v = self.versions.find(&bucket, &key, &id)?;
                s3_versions::refuse_marker(&v)?;
                Ok(S3Response::new(dto::HeadObjectOutput {
                    content_length: Some(v.size as i64),
                    content_type: v.content_type.as_deref().and_then(|c| c.parse().ok()),
                    e_tag: v.etag.clone().map(dto::ETag::Strong),
                    last_modified: Some(dto::Timestamp::from(
                        std::time::UNIX_EPOCH + std::time::Duration::from_micros(v.modified_us),
                    )),
                    metadata: v.metadata.clone(),
                    version_id: Some(v.id),
                    ..Default::default()
                }))
            }
            None => {
                let mut out = self.inner.head_object(req).await?;
                if versioned(status) {
                    out.output.version_id = self.versions.latest(&bucket, &key).map(|v| v.id);
                }
                Ok(out)
            }
        }
    }

    async fn put_object(&self, req: S3Request<dto::PutObjectInput>) -> S3Result<S3Response<dto::PutObjectOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        if !versioned(self.versions.status(&bucket)) {
            return self.inner.put_object(req).await;
        }
        let _w = self.versions.lock.lock().await;
        let mut out = self.inner.put_object(req).await?;
        out.output.version_id = Some(self.versions.record(&self.inner, &bucket, &key, false).await?);
        Ok(out)
    }

    async fn copy_object(&self, req: S3Request<dto::CopyObjectInput>) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let source = match &req.input.copy_source {
            dto::CopySource::Bucket { bucket, key, version_id } => {
                Some((bucket.to_string(), key.to_string(), version_id.as_deref().map(str::to_string)))
            }
            _ => None,
        };
        let dest_versioned = versioned(self.versions.status(&bucket));
        let from_version = source.clone().and_then(|(b, k, v)| {
            let v = v.filter(|v| versioned(self.versions.status(&b)) && !v.is_empty())?;
            Some((b, k, v))
        });
        let _w = self.versions.lock.lock().await;
        let Some((sb, sk, sv)) = from_version else {
            let mut out = self.inner.copy_object(req).await?;
            if dest_versioned {
                out.output.version_id = Some(self.versions.record(&self.inner, &bucket, &key, false).await?);
            }
            return Ok(out);
        };
        // A copy of one stored version (how a restore makes it current again).
        let v = self.versions.find(&sb, &sk, &sv)?;
        s3_versions::refuse_marker(&v)?;
        let data = self.versions.data(&sb, &sk, &sv)?;
        let replace =
            req.input.metadata_directive.as_ref().is_some_and(|d| d.as_str() == dto::MetadataDirective::REPLACE);
        let (content_type, metadata) = if replace {
            (req.input.content_type.clone(), req.input.metadata.clone())
        } else {
            (v.content_type.clone(), v.metadata.clone())
        };
        self.put_current(&bucket, &key, data, content_type, metadata).await?;
        let version_id =
            if dest_versioned { Some(self.versions.record(&self.inner, &bucket, &key, false).await?) } else { None };
        Ok(S3Response::new(dto::CopyObjectOutput {
            copy_object_result: Some(dto::CopyObjectResult {
                e_tag: v.etag.clone().map(dto::ETag::Strong),
                last_modified: Some(dto::Timestamp::from(std::time::SystemTime::now())),
                ..Default::default()
            }),
            copy_source_version_id: Some(sv),
            version_id,
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        if !versioned(self.versions.status(&bucket)) {
            return self.inner.delete_object(req).await;
        }
        let _w = self.versions.lock.lock().await;
        Ok(S3Response::new(self.delete_one(&bucket, &key, req.input.version_id.clone()).await?))
    }

    async fn delete_objects(
        &self,
        req: S3Request<dto::DeleteObjectsInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectsOutput>> {
        let bucket = req.input.bucket.clone();
        if !versioned(self.versions.status(&bucket)) {
            return self.inner.delete_objects(req).await;
        }
        let _w = self.versions.lock.lock().await;
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for o in &req.input.delete.objects {
            match self.delete_one(&bucket, &o.key, o.version_id.clone()).await {
                Ok(d) => deleted.push(dto::DeletedObject {
                    delete_marker: d.delete_marker,
                    delete_marker_version_id: d.delete_marker.and(d.version_id.clone()),
                    key: Some(o.key.clone()),
                    version_id: o.version_id.clone(),
                }),
                Err(e) => errors.push(dto::Error {
                    code: Some(e.code().as_str().to_string()),
                    key: Some(o.key.clone()),
                    message: e.message().map(str::to_string),
                    version_id: o.version_id.clone(),
                }),
            }
        }
        Ok(S3Response::new(dto::DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
        self.inner.create_multipart_upload(req).await
    }

    async fn upload_part(&self, req: S3Request<dto::UploadPartInput>) -> S3Result<S3Response<dto::UploadPartOutput>> {
        self.inner.upload_part(req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<dto::UploadPartCopyInput>,
    ) -> S3Result<S3Response<dto::UploadPartCopyOutput>> {
        self.inner.upload_part_copy(req).await
    }

    async fn list_parts(&self, req: S3Request<dto::ListPartsInput>) -> S3Result<S3Response<dto::ListPartsOutput>> {
        self.inner.list_parts(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        if !versioned(self.versions.status(&bucket)) {
            return self.inner.complete_multipart_upload(req).await;
        }
        let _w = self.versions.lock.lock().await;
        let mut out = self.inner.complete_multipart_upload(req).await?;
        out.output.version_id = Some(self.versions.record(&self.inner, &bucket, &key, false).await?);
        Ok(out)
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
        self.inner.abort_multipart_upload(req).await
    }

    async fn list_objects_v2(
        &self,
        req: s3s::S3Request<s3s::dto::ListObjectsV2Input>,
    ) -> s3s::S3Result<s3s::S3Response<s3s::dto::ListObjectsV2Output>> {
        let bucket = req.input.bucket.clone();
        let mut out = self.inner.list_objects_v2(req).await?;
        for o in out.output.contents.iter_mut().flatten() {
            if o.e_tag.is_some() {
                continue;
            }
            let Some(key) = o.key.clone() else { continue };
            let mut b = s3s::dto::HeadObjectInput::builder();
            b.set_bucket(bucket.clone());
            b.set_key(key);
            let Ok(input) = b.build() else { continue };
            if let Ok(h) = self.inner.head_object(internal(input)).await {
                o.e_tag = h.output.e_tag;
            }
        }
        Ok(out)
    }
}

impl S3Server {
    /// Serves the buckets (sub-folders) of `root` on `addr`.
    pub async fn start(addr: SocketAddr, root: &Path, buckets: &[&str]) -> Result<S3Server, crate::Error> {
        std::fs::create_dir_all(root)
            .map_err(|e| crate::Error::Io(format!("cannot create the S3 folder {}: {e}", root.display())))?;
        for b in buckets {
            std::fs::create_dir_all(root.join(b))
                .map_err(|e| crate::Error::Io(format!("cannot create the bucket folder {b}: {e}")))?;
        }
        let fs = s3s_fs::FileSystem::new(root).map_err(|e| crate::Error::Io(format!("S3 folder: {e:?}")))?;
        // The lab's buckets are versioned from the start, as a bucket that
        // is to be restored to a point in time must be.
        let versions = Versions::new(root);
        for b in buckets {
            versions
                .set_status(b, true)
                .map_err(|e| crate::Error::Io(format!("cannot turn versioning on for {b}: {e}")))?;
        }
        let service = {
            let mut b = s3s::service::S3ServiceBuilder::new(LabS3 { inner: fs, versions, root: root.to_path_buf() });
            b.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
            b.build()
        };
        let listener = TcpListener::bind(addr).await.map_err(|e| crate::Error::Io(format!("S3 on {addr}: {e}")))?;
        let addr = listener.local_addr().map_err(|e| crate::Error::Io(e.to_string()))?;
        let error_ppm = Arc::new(AtomicU64::new(0));
        let errors = error_ppm.clone();
        let task = tokio::spawn(async move {
            let mut seed = addr.port() as u64 | 1;
            loop {
                let Ok((sock, _)) = listener.accept().await else { continue };
                let service = service.clone();
                let errors = errors.clone();
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let conn_seed = std::sync::Mutex::new(seed);
                let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let service = service.clone();
                    let rate = errors.load(Ordering::Relaxed);
                    let fail = rate > 0 && {
                        let mut s = conn_seed.lock().unwrap_or_else(|p| p.into_inner());
                        *s ^= *s << 13;
                        *s ^= *s >> 7;
                        *s ^= *s << 17;
                        *s % 1_000_000 < rate
                    };
                    async move {
                        if fail {
                            return Ok(slow_down());
                        }
                        hyper::service::Service::call(&service, req).await
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
        Ok(S3Server { addr, error_ppm, task })
    }

    /// Removes an endpoint's folder and its versions' side folder.
    pub fn wipe(root: &Path) {
        let _ = std::fs::remove_dir_all(root);
        let _ = std::fs::remove_dir_all(Versions::new(root).dir());
    }

    pub fn set_error_rate(&self, rate: f64) {
        self.error_ppm.store((rate.clamp(0.0, 1.0) * 1e6) as u64, Ordering::SeqCst);
    }
}
