//! A real S3 server for the object-storage tests: s3s-fs (an S3 implementation over a
//! folder) served in-process on 127.0.0.1, with SigV4 checked against fixed credentials.
//!
//! s3s-fs checks `If-None-Match: *` and `If-Match` and then writes, in two steps: two
//! conditional writes of one key at the same moment could both pass the check. S3 and Tigris
//! make the check and the write one step, and the no-clobber guarantee rests on that, so this
//! server serialises writes to get the same guarantee; everything else is s3s-fs's own.
//! Listings give `LastModified` in whole seconds, as S3 does (s3s-fs would give the file's
//! own, finer time). It can also be stopped (connections refused) and started again on the
//! same port, and made to answer `503 Slow Down` to a number of requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use object_store::ObjectStoreExt as _;
use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub const BUCKET: &str = "recall-frames-test";
pub const ACCESS_KEY: &str = "test-access-key";
pub const SECRET_KEY: &str = "test-secret-key-0123456789";
pub const REGION: &str = "auto";

pub struct S3Server {
    pub addr: SocketAddr,
    faults: Arc<Faults>,
    service: s3s::service::S3Service,
    client: Arc<dyn object_store::ObjectStore>,
    accept: Option<JoinHandle<()>>,
    _temp: TempDir,
}

#[derive(Default)]
struct Faults {
    /// Requests still to be answered with 503 Slow Down.
    slow_down: AtomicU32,
    /// Serialises writes, so that a conditional write's check and write are one step.
    writes: tokio::sync::Mutex<()>,
    /// While set, deletions are answered with 503 Slow Down: a deletion that hangs.
    hold_deletes: std::sync::atomic::AtomicBool,
}

impl S3Server {
    /// A server on 127.0.0.1 (a free port) with an empty bucket [`BUCKET`].
    pub async fn start() -> Self {
        let temp = tempfile::tempdir().expect("temporary folder");
        let root = temp.path().to_owned();
        std::fs::create_dir(root.join(BUCKET)).expect("the bucket's folder");
        let faults = Arc::new(Faults::default());
        let fs = s3s_fs::FileSystem::new(&root).expect("s3s-fs over the folder");
        let mut builder = s3s::service::S3ServiceBuilder::new(Guarded {
            fs,
            faults: faults.clone(),
        });
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let client = Arc::new(
            object_store::aws::AmazonS3Builder::new()
                .with_bucket_name(BUCKET)
                .with_region(REGION)
                .with_access_key_id(ACCESS_KEY)
                .with_secret_access_key(SECRET_KEY)
                .with_endpoint(format!("http://{addr}"))
                .with_allow_http(true)
                .build()
                .expect("a client of the test bucket"),
        );
        let mut server = S3Server {
            addr,
            faults,
            service,
            client,
            accept: None,
            _temp: temp,
        };
        server.accept = Some(tokio::spawn(serve(listener, server.service.clone())));
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops listening and drops every open connection: requests are refused.
    pub async fn stop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await;
        }
    }

    /// Listens again on the same port, over the same folder.
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("bind the same port");
        self.accept = Some(tokio::spawn(serve(listener, self.service.clone())));
    }

    /// Answers the next `requests` requests with 503 Slow Down.
    pub fn slow_down(&self, requests: u32) {
        self.faults.slow_down.store(requests, Ordering::SeqCst);
    }

    /// While `held`, every deletion is answered with 503 Slow Down (and retried by the
    /// server): a deletion caught half-way.
    pub fn hold_deletes(&self, held: bool) {
        self.faults.hold_deletes.store(held, Ordering::SeqCst);
    }

    /// The server flags that store recordings in this server's bucket.
    pub fn flags(&self, prefix: Option<&str>) -> Vec<String> {
        let mut flags: Vec<String> = [
            "--bucket-name",
            BUCKET,
            "--bucket-region",
            REGION,
            "--bucket-access-key-id",
            ACCESS_KEY,
            "--bucket-secret-access-key",
            SECRET_KEY,
            "--bucket-endpoint",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([self.endpoint()])
        .collect();
        if let Some(prefix) = prefix {
            flags.extend(["--bucket-prefix".to_owned(), prefix.to_owned()]);
        }
        flags
    }

    /// The environment `fly storage create` would give the binary for this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("BUCKET_NAME", BUCKET.to_owned()),
            ("AWS_ENDPOINT_URL_S3", self.endpoint()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
        ]
    }

    /// A client of the bucket, as a person checking it with any S3 tool would use.
    pub fn client(&self) -> Arc<dyn object_store::ObjectStore> {
        self.client.clone()
    }

    /// Every key in the bucket, sorted.
    pub async fn keys(&self) -> Vec<String> {
        use futures_util::TryStreamExt as _;
        let mut keys: Vec<String> = self
            .client()
            .list(None)
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .expect("the bucket lists");
        keys.sort();
        keys
    }

    /// The object at `key`, or `None`.
    pub async fn get(&self, key: &str) -> Option<bytes::Bytes> {
        match self.client().get(&key.into()).await {
            Ok(found) => Some(found.bytes().await.expect("the object's body")),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(error) => panic!("GET {key}: {error}"),
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
    }
}

/// Accepts connections until aborted; aborting drops the set, which aborts every
/// connection.
async fn serve(listener: TcpListener, service: s3s::service::S3Service) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                // Small requests and answers: no waiting for delayed ACKs.
                let _ = stream.set_nodelay(true);
                let service = service.clone();
                connections.spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
            Some(_) = connections.join_next() => {}
        }
    }
}

struct Guarded {
    fs: s3s_fs::FileSystem,
    faults: Arc<Faults>,
}

impl Guarded {
    fn fault(&self) -> S3Result<()> {
        let slow = &self.faults.slow_down;
        let take = slow.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        match take {
            Ok(_) => Err(s3_error!(SlowDown, "injected by the test")),
            Err(_) => Ok(()),
        }
    }
}

impl Guarded {
    fn held_delete(&self) -> S3Result<()> {
        if self.faults.hold_deletes.load(Ordering::SeqCst) {
            return Err(s3_error!(SlowDown, "deletions held by the test"));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl S3 for Guarded {
    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        self.fault()?;
        let _one_at_a_time = self.faults.writes.lock().await;
        self.fs.put_object(req).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.fault()?;
        self.fs.get_object(req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.fault()?;
        self.fs.head_object(req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.fault()?;
        self.fs.head_bucket(req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.fault()?;
        let mut listed = self.fs.list_objects_v2(req).await?;
        for object in listed.output.contents.iter_mut().flatten() {
            if let Some(modified) = &mut object.last_modified {
                *modified = whole_second(modified);
            }
        }
        Ok(listed)
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.fault()?;
        self.fs.create_multipart_upload(req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        self.fault()?;
        self.fs.upload_part(req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        self.fault()?;
        self.fs.upload_part_copy(req).await
    }

    /// Checks `If-None-Match` and writes, one at a time as for `put_object`.
    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.fault()?;
        let _one_at_a_time = self.faults.writes.lock().await;
        self.fs.complete_multipart_upload(req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.fault()?;
        self.fs.abort_multipart_upload(req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.fault()?;
        self.held_delete()?;
        let _one_at_a_time = self.faults.writes.lock().await;
        self.fs.delete_object(req).await
    }

    /// object_store deletes even one key with a `DeleteObjects` request.
    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.fault()?;
        self.held_delete()?;
        let _one_at_a_time = self.faults.writes.lock().await;
        self.fs.delete_objects(req).await
    }
}

/// `time` cut to its whole second, as S3 keeps `LastModified` (an HTTP date has no
/// fractions).
fn whole_second(time: &Timestamp) -> Timestamp {
    let mut text = Vec::new();
    time.format(TimestampFormat::HttpDate, &mut text)
        .expect("a time formats as an HTTP date");
    let text = String::from_utf8(text).expect("an HTTP date is ASCII");
    Timestamp::parse(TimestampFormat::HttpDate, &text).expect("an HTTP date parses")
}
