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
/// out; drctl compares ETags to find changed objects and verify copies).
#[derive(Debug)]
struct LabS3 {
    inner: s3s_fs::FileSystem,
}

use s3s::{dto, S3Request, S3Response, S3Result};

// Every call the drctl copier and the AWS SDK make, passed through.
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

    async fn get_object(&self, req: S3Request<dto::GetObjectInput>) -> S3Result<S3Response<dto::GetObjectOutput>> {
        self.inner.get_object(req).await
    }

    async fn head_object(&self, req: S3Request<dto::HeadObjectInput>) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        self.inner.head_object(req).await
    }

    async fn put_object(&self, req: S3Request<dto::PutObjectInput>) -> S3Result<S3Response<dto::PutObjectOutput>> {
        self.inner.put_object(req).await
    }

    async fn copy_object(&self, req: S3Request<dto::CopyObjectInput>) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        self.inner.copy_object(req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        self.inner.delete_object(req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<dto::DeleteObjectsInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectsOutput>> {
        self.inner.delete_objects(req).await
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
        self.inner.complete_multipart_upload(req).await
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
        let template = s3s::S3Request {
            input: (),
            method: req.method.clone(),
            uri: req.uri.clone(),
            headers: req.headers.clone(),
            extensions: Default::default(),
            credentials: req.credentials.clone(),
            region: req.region.clone(),
            service: req.service.clone(),
            trailing_headers: None,
        };
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
            let head = self.inner.head_object(template.clone().map_input(|()| input)).await;
            if let Ok(h) = head {
                o.e_tag = h.output.e_tag;
            }
        }
        Ok(out)
    }
}

impl S3Server {
    /// Serves the buckets (sub-folders) of `root` on `addr`.
    pub async fn start(addr: SocketAddr, root: &Path, buckets: &[&str]) -> Result<S3Server, crate::Error> {
        for b in buckets {
            std::fs::create_dir_all(root.join(b))
                .map_err(|e| crate::Error::Io(format!("cannot create the bucket folder {b}: {e}")))?;
        }
        let fs = s3s_fs::FileSystem::new(root).map_err(|e| crate::Error::Io(format!("S3 folder: {e:?}")))?;
        let service = {
            let mut b = s3s::service::S3ServiceBuilder::new(LabS3 { inner: fs });
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

    pub fn set_error_rate(&self, rate: f64) {
        self.error_ppm.store((rate.clamp(0.0, 1.0) * 1e6) as u64, Ordering::SeqCst);
    }
}
