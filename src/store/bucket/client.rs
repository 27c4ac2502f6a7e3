//! The client of the S3-compatible bucket (Tigris, AWS S3, R2, MinIO...) that recordings go
//! to when `BUCKET_NAME` is set: the connection, keys under the optional prefix, and requests
//! retried with backoff.
//!
//! Every request goes through [`Bucket::request`]. The store's definite answers (not found,
//! already exists, precondition failed) are answers, not failures. Failures are counted by
//! kind; those that may pass (unreachable, timed out, 5xx, throttled) are retried with
//! jittered exponential backoff for up to `BUCKET_RETRY_TIMEOUT`, each retry counted.
//! object_store's own retries are turned off: ours count and log every retry, re-sign each
//! attempt, and retry conditional creates after a timeout too, which is safe here because a
//! create that finds its key taken checks whether the object there is the one it sent.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3CopyIfNotExists};
use object_store::path::Path;
use object_store::{
    ClientConfigKey, GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt as _, PutMode,
    PutOptions, PutPayload, RetryConfig, UpdateVersion,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::failure::{Answer, BucketError, FailureKind, RequestFailed, classify};
use super::health::Health;
use crate::config::Config;
use crate::files::FsError;
use crate::metrics::Metrics;
use crate::store::{Fetched, Stat, Version};

/// The first wait before a retry; each further wait doubles, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two attempts: in a long outage, one attempt every few seconds.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Keys removed per batch of [`Bucket::delete_each`]: S3's DeleteObjects takes 1,000.
const DELETE_BATCH: usize = 1000;
/// Creates sent for one key while the store refuses them with nothing there.
const CREATE_ATTEMPTS: usize = 3;
/// The size of each part of a multipart upload (S3 wants at least 5 MiB but for the last),
/// and the largest file the bucket store writes in one request.
pub const UPLOAD_PART: usize = 8 << 20;
/// Objects read at once by [`Bucket::get_each`].
const PARALLEL_GETS: usize = 8;

/// The version an object's metadata gives.
pub fn version_of(meta: &ObjectMeta) -> Version {
    Version {
        e_tag: meta.e_tag.clone(),
        version: meta.version.clone(),
    }
}

/// What a store knows of an object from its metadata.
pub fn stat_of(meta: &ObjectMeta) -> Stat {
    Stat {
        size: meta.size,
        version: version_of(meta),
    }
}

/// What a check of the bucket found.
enum Probe {
    Answered,
    NoSuchBucket,
    Failed(FailureKind, Option<object_store::Error>),
}

/// Why the server cannot start with the bucket it was given.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("the bucket settings are not usable: {0}")]
    Settings(#[source] object_store::Error),
    #[error(
        "bucket {bucket} does not exist at {endpoint}: create it (`fly storage create`), or fix \
         BUCKET_NAME or AWS_ENDPOINT_URL_S3"
    )]
    NoSuchBucket { bucket: String, endpoint: String },
    #[error(
        "bucket {bucket} at {endpoint} refused the credentials ({kind}): check AWS_ACCESS_KEY_ID, \
         AWS_SECRET_ACCESS_KEY and AWS_REGION: {source}"
    )]
    Refused {
        bucket: String,
        endpoint: String,
        kind: FailureKind,
        #[source]
        source: object_store::Error,
    },
}

impl From<&Version> for UpdateVersion {
    fn from(version: &Version) -> Self {
        UpdateVersion {
            e_tag: version.e_tag.clone(),
            version: version.version.clone(),
        }
    }
}

/// What the bucket holds, as a handle shared by the sink, the catalog and `/healthz`.
#[derive(Clone)]
pub struct Bucket {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    name: String,
    /// Where the endpoint is, for messages (no credentials in it).
    endpoint: String,
    prefix: Path,
    retry_timeout: Duration,
    check_timeout: Duration,
    health: Health,
    metrics: Arc<Metrics>,
}

impl Bucket {
    /// The bucket of `config` (which must have `bucket_name`), checked with one listing: a
    /// bucket that does not exist or refuses the credentials is an error, as it never
    /// mends by itself; one that cannot be reached is not, as an outage does, and the server
    /// starts degraded rather than not at all.
    pub async fn connect(config: &Config, metrics: Arc<Metrics>) -> Result<Self, StartupError> {
        let name = config.bucket_name.clone().unwrap_or_default();
        // Other AWS_* variables (AWS_SESSION_TOKEN, AWS_ALLOW_HTTP...) come from the
        // environment; those the configuration holds override it.
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&name)
            .with_retry(RetryConfig {
                max_retries: 0,
                ..RetryConfig::default()
            })
            // One option at a time: `with_client_options` would drop those from the
            // environment (a proxy...).
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                format!("{}ms", config.bucket_request_timeout.as_millis()),
            )
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                format!("{}s", CONNECT_TIMEOUT.as_secs()),
            )
            // Large files are put in place by a create-only multipart copy.
            .with_copy_if_not_exists(S3CopyIfNotExists::Multipart);
        if config
            .bucket_endpoint
            .as_ref()
            .is_some_and(|url| url.scheme() == "http")
        {
            // Asked for by the endpoint setting itself: a store on the same network.
            builder = builder.with_allow_http(true);
        }
        let endpoint = match &config.bucket_endpoint {
            Some(url) => {
                let url = url.as_str().trim_end_matches('/').to_owned();
                builder = builder.with_endpoint(&url);
                url
            }
            None => "AWS S3".to_owned(),
        };
        if let Some(region) = &config.bucket_region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &config.bucket_access_key_id {
            builder = builder.with_access_key_id(key.expose());
        }
        if let Some(secret) = &config.bucket_secret_access_key {
            builder = builder.with_secret_access_key(secret.expose());
        }
        let store = builder.build().map_err(StartupError::Settings)?;
        let bucket = Bucket {
            inner: Arc::new(Inner {
                store: Arc::new(store),
                name,
                endpoint,
                prefix: config
                    .bucket_prefix
                    .as_deref()
                    .map(Path::from)
                    .unwrap_or_default(),
                retry_timeout: config.bucket_retry_timeout,
                check_timeout: config.bucket_check_timeout,
                health: Health::new(metrics.clone()),
                metrics,
            }),
        };
        match bucket.probe().await {
            Probe::Answered => {}
            Probe::NoSuchBucket => {
                return Err(StartupError::NoSuchBucket {
                    bucket: bucket.inner.name.clone(),
                    endpoint: bucket.inner.endpoint.clone(),
                });
            }
            Probe::Failed(kind, Some(source)) if !kind.is_transient() => {
                return Err(StartupError::Refused {
                    bucket: bucket.inner.name.clone(),
                    endpoint: bucket.inner.endpoint.clone(),
                    kind,
                    source,
                });
            }
            Probe::Failed(..) => tracing::error!(
                bucket = bucket.inner.name,
                endpoint = bucket.inner.endpoint,
                "the bucket cannot be reached: starting degraded (/healthz says so); frames wait \
                 and are retried for BUCKET_RETRY_TIMEOUT, and the bucket is checked every \
                 BUCKET_CHECK_INTERVAL"
            ),
        }
        Ok(bucket)
    }

    /// Where the bucket is, for the start-up log.
    pub fn describe(&self) -> String {
        let prefix = &self.inner.prefix;
        if prefix.as_ref().is_empty() {
            format!("bucket {} at {}", self.inner.name, self.inner.endpoint)
        } else {
            format!(
                "bucket {} at {}, under {prefix}/",
                self.inner.name, self.inner.endpoint
            )
        }
    }

    pub fn health(&self) -> &Health {
        &self.inner.health
    }

    /// Checks the bucket every `interval` until `stop` is cancelled, so that `/healthz` and
    /// `bucket_up` follow the bucket even when nothing is being recorded.
    pub fn watch(&self, interval: Duration, stop: CancellationToken) -> JoinHandle<()> {
        let bucket = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await; // the first tick is immediate; `connect` has just checked
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = ticks.tick() => { bucket.probe().await; }
                }
            }
        })
    }

    /// One listing of at most a key under the prefix, not retried, and given up after
    /// BUCKET_CHECK_TIMEOUT.
    async fn probe(&self) -> Probe {
        let prefix = self.inner.prefix.clone();
        let listing = async {
            self.inner
                .store
                .list(Some(&prefix))
                .next()
                .await
                .transpose()
        };
        let limit = self.inner.check_timeout;
        let error = match tokio::time::timeout(limit, listing).await {
            Ok(Ok(_)) => {
                self.inner.health.succeeded();
                return Probe::Answered;
            }
            Ok(Err(error)) => error,
            Err(_elapsed) => {
                let why = format!("no answer within {limit:?}");
                let kind = FailureKind::Timeout;
                self.inner
                    .health
                    .failed(kind, &why, "check", prefix.as_ref());
                return Probe::Failed(kind, None);
            }
        };
        match classify(&error) {
            Ok(answer) => {
                self.inner.health.succeeded();
                match answer {
                    Answer::NotFound => Probe::NoSuchBucket,
                    Answer::Conflict => Probe::Answered,
                }
            }
            Err(kind) => {
                self.inner
                    .health
                    .failed(kind, &error, "check", prefix.as_ref());
                Probe::Failed(kind, Some(error))
            }
        }
    }

    // ---- keys ----

    /// The key of `parts` below the prefix.
    pub fn key<'a>(&self, parts: impl IntoIterator<Item = &'a str>) -> Path {
        parts
            .into_iter()
            .fold(self.inner.prefix.clone(), |path, part| path.join(part))
    }

    /// The prefix that recordings are listed under.
    pub fn root(&self) -> &Path {
        &self.inner.prefix
    }

    // ---- requests ----

    /// Sends a request (`send` makes one attempt) until it succeeds, the store answers, the
    /// failure is not transient, or `BUCKET_RETRY_TIMEOUT` would pass. Returns the result and
    /// whether any attempt failed: a write that failed may still have landed.
    async fn request<T, F, Fut>(
        &self,
        action: &'static str,
        key: &Path,
        mut send: F,
    ) -> Result<(Result<T, Answer>, bool), BucketError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = object_store::Result<T>>,
    {
        let inner = &self.inner;
        // Tokio's clock, which tests can pause and advance.
        let started = tokio::time::Instant::now();
        let mut retries: u32 = 0;
        loop {
            let error = match send().await {
                Ok(value) => {
                    inner.health.succeeded();
                    return Ok((Ok(value), retries > 0));
                }
                Err(error) => error,
            };
            let kind = match classify(&error) {
                Ok(answer) => {
                    inner.health.succeeded();
                    return Ok((Err(answer), retries > 0));
                }
                Err(kind) => kind,
            };
            inner.health.failed(kind, &error, action, key.as_ref());
            let wait = backoff(retries);
            if !kind.is_transient() || started.elapsed() + wait > inner.retry_timeout {
                return Err(BucketError::Request(Box::new(RequestFailed {
                    action,
                    key: key.to_string(),
                    kind,
                    retries,
                    elapsed: started.elapsed(),
                    source: error,
                })));
            }
            retries += 1;
            inner.metrics.bucket_retries.inc();
            // 1st, 2nd, 4th, 8th... retry of a request: an outage shows, without a flood.
            if retries.is_power_of_two() {
                tracing::warn!(action, %key, %kind, retries, ?wait, %error, "bucket request failed; retrying");
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Writes `bytes` at `key` only if nothing is there (`If-None-Match: *`).
    ///
    /// A refusal is checked by reading the key back. If nothing is there (S3's `409
    /// ConditionalRequestConflict`: a concurrent create that may yet fail), the create is
    /// sent again. If an attempt had failed and the object there is `bytes`, that attempt
    /// landed, and the write is ours. The version written, or `None` when an object was
    /// there already and nothing was written.
    pub async fn create(&self, key: &Path, bytes: Bytes) -> Result<Option<Version>, BucketError> {
        let payload = PutPayload::from_bytes(bytes.clone());
        let mut uncertain = false;
        for _ in 0..CREATE_ATTEMPTS {
            let (result, failed) = self
                .request("create", key, || {
                    self.inner
                        .store
                        .put_opts(key, payload.clone(), PutMode::Create.into())
                })
                .await?;
            uncertain |= failed;
            match result {
                Ok(put) => {
                    return Ok(Some(Version {
                        e_tag: put.e_tag,
                        version: put.version,
                    }));
                }
                Err(Answer::NotFound) => break,
                Err(Answer::Conflict) => match self.get(key).await? {
                    Some(found) if uncertain && found.bytes == bytes => {
                        return Ok(Some(found.version));
                    }
                    Some(_) => return Ok(None),
                    None => {
                        tracing::debug!(%key, "a create was refused but nothing is there; sending it again");
                        tokio::time::sleep(backoff(0)).await;
                    }
                },
            }
        }
        Err(BucketError::Unexpected {
            key: key.to_string(),
            why: "a create-only write was neither done nor refused for an existing object".into(),
        })
    }

    /// Writes `bytes` at `key` if the object there is still at `expected`
    /// (`If-Match`), or, with no `expected`, if there is none (`If-None-Match: *`).
    /// `None` when another writer got there first. As for [`Bucket::create`], a conflict
    /// after a failed attempt is checked against what is there.
    pub async fn swap(
        &self,
        key: &Path,
        bytes: Bytes,
        expected: Option<&Version>,
    ) -> Result<Option<Version>, BucketError> {
        let Some(expected) = expected else {
            return self.create(key, bytes).await;
        };
        let payload = PutPayload::from_bytes(bytes.clone());
        let mode = PutMode::Update(expected.into());
        let (result, uncertain) = self
            .request("update", key, || {
                self.inner
                    .store
                    .put_opts(key, payload.clone(), PutOptions::from(mode.clone()))
            })
            .await?;
        match result {
            Ok(put) => Ok(Some(Version {
                e_tag: put.e_tag,
                version: put.version,
            })),
            Err(_) if uncertain => match self.get(key).await? {
                Some(found) if found.bytes == bytes => Ok(Some(found.version)),
                _ => Ok(None),
            },
            Err(_) => Ok(None),
        }
    }

    /// Writes `bytes` at `key`, replacing whatever is there: the last writer wins.
    pub async fn overwrite(&self, key: &Path, bytes: Bytes) -> Result<(), BucketError> {
        let payload = PutPayload::from_bytes(bytes);
        let (result, _) = self
            .request("write", key, || self.inner.store.put(key, payload.clone()))
            .await?;
        result.map(drop).map_err(|answer| BucketError::Unexpected {
            key: key.to_string(),
            why: format!("an unconditional write answered {answer:?}"),
        })
    }

    /// Writes the file `file`, of `size` bytes, at `key` only if nothing is there, holding
    /// one part of it in memory at a time: uploaded in parts to `staging` (a key no listing
    /// of recordings shows), copied into place by a create-only copy (S3's multipart copy,
    /// completed with `If-None-Match: *`), and `staging` removed. `None` when an object was
    /// there already. A conflict after a failed copy attempt is checked against what is
    /// there, by size.
    pub async fn create_from_file(
        &self,
        key: &Path,
        file: &std::path::Path,
        size: u64,
        staging: &Path,
    ) -> Result<Option<()>, BucketError> {
        let (uploaded, _) = self
            .request("upload", staging, || self.upload(staging, file))
            .await?;
        uploaded.map_err(|answer| BucketError::Unexpected {
            key: staging.to_string(),
            why: format!("an upload answered {answer:?}"),
        })?;
        let (copied, uncertain) = self
            .request("copy", key, || {
                self.inner.store.copy_if_not_exists(staging, key)
            })
            .await?;
        let created = match copied {
            Ok(()) => Some(()),
            Err(_) if uncertain => {
                let (found, _) = self
                    .request("check", key, || self.inner.store.head(key))
                    .await?;
                found.ok().filter(|meta| meta.size == size).map(drop)
            }
            Err(_) => None,
        };
        if let Err(error) = self.delete(staging).await {
            tracing::warn!(%staging, %error, "could not remove an upload's staging object");
        }
        Ok(created)
    }

    /// One attempt at uploading `file` to `key` in parts, read one part at a time; a failed
    /// upload is aborted.
    async fn upload(&self, key: &Path, file: &std::path::Path) -> object_store::Result<()> {
        use tokio::io::AsyncReadExt as _;
        let generic = |source: std::io::Error| object_store::Error::Generic {
            store: "local file",
            source: Box::new(FsError::Io {
                action: "read",
                path: file.to_owned(),
                source,
            }),
        };
        let mut reader = tokio::fs::File::open(file).await.map_err(generic)?;
        let mut upload = self.inner.store.put_multipart(key).await?;
        let sent = async {
            loop {
                let mut part = bytes::BytesMut::with_capacity(UPLOAD_PART);
                while part.len() < UPLOAD_PART {
                    if reader.read_buf(&mut part).await.map_err(generic)? == 0 {
                        break;
                    }
                }
                if part.is_empty() {
                    return upload.complete().await.map(drop);
                }
                upload.put_part(part.freeze().into()).await?;
            }
        }
        .await;
        if sent.is_err() {
            let _ = upload.abort().await;
        }
        sent
    }

    /// Removes the object at `key`; none there is not an error.
    pub async fn delete(&self, key: &Path) -> Result<(), BucketError> {
        let (result, _) = self
            .request("delete", key, || self.inner.store.delete(key))
            .await?;
        match result {
            Ok(()) | Err(Answer::NotFound) => Ok(()),
            Err(answer) => Err(BucketError::Unexpected {
                key: key.to_string(),
                why: format!("a delete answered {answer:?}"),
            }),
        }
    }

    /// Removes the objects at `keys` with object_store's `delete_stream` (S3's
    /// DeleteObjects, up to 1,000 keys a request), [`DELETE_BATCH`] keys at a time, each
    /// batch retried as any request is. One already gone is not an error.
    pub async fn delete_each(&self, keys: Vec<Path>) -> Result<(), BucketError> {
        for batch in keys.chunks(DELETE_BATCH) {
            let first = &batch[0];
            let (result, _) = self
                .request("delete", first, || async {
                    let locations: Vec<object_store::Result<Path>> =
                        batch.iter().cloned().map(Ok).collect();
                    let locations = futures_util::stream::iter(locations);
                    let mut deleted = self.inner.store.delete_stream(locations.boxed());
                    while let Some(done) = deleted.next().await {
                        match done {
                            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                            Err(error) => return Err(error),
                        }
                    }
                    Ok(())
                })
                .await?;
            if let Err(answer) = result
                && !matches!(answer, Answer::NotFound)
            {
                return Err(BucketError::Unexpected {
                    key: first.to_string(),
                    why: format!("a batch delete answered {answer:?}"),
                });
            }
        }
        Ok(())
    }

    /// The object at `key`, or `None` when there is none.
    pub async fn get(&self, key: &Path) -> Result<Option<Fetched>, BucketError> {
        self.get_opts(key, GetOptions::default())
            .await
            .map(|found| found.map(|(fetched, _)| fetched))
    }

    /// The bytes of the object at `key` from `offset` on, with its size; `None` when there
    /// is no object.
    pub async fn get_from(&self, key: &Path, offset: u64) -> Result<Option<Bytes>, BucketError> {
        let options = GetOptions {
            range: (offset > 0).then_some(GetRange::Offset(offset)),
            ..GetOptions::default()
        };
        self.get_opts(key, options)
            .await
            .map(|found| found.map(|(fetched, _)| fetched.bytes))
    }

    /// The objects at `keys`, whole and in the same order, a few requests at a time; one gone
    /// since it was listed is left out.
    pub async fn get_each(&self, keys: Vec<Path>) -> Result<Vec<Bytes>, BucketError> {
        let fetched: Vec<Result<Option<Bytes>, BucketError>> = futures_util::stream::iter(keys)
            .map(|key| async move { self.get_from(&key, 0).await })
            .buffered(PARALLEL_GETS)
            .collect()
            .await;
        fetched.into_iter().filter_map(Result::transpose).collect()
    }

    /// The size and version of the object at `key`, without its bytes; `None` when there
    /// is none.
    pub async fn head(&self, key: &Path) -> Result<Option<ObjectMeta>, BucketError> {
        let (result, _) = self
            .request("read", key, || self.inner.store.head(key))
            .await?;
        self.found(key, result)
    }

    /// The bytes `range` of the object at `key` (all with `None`), as the answer to a
    /// request whose body is yet to be read: only the request is retried. A body that
    /// breaks part-way ends its stream with the error, counted against the bucket's health
    /// like any failed request.
    pub async fn get_stream(
        &self,
        key: &Path,
        range: Option<Range<u64>>,
    ) -> Result<
        Option<(
            ObjectMeta,
            Range<u64>,
            BoxStream<'static, Result<Bytes, BucketError>>,
        )>,
        BucketError,
    > {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let started = tokio::time::Instant::now();
        let (result, _) = self
            .request("read", key, || {
                self.inner.store.get_opts(key, options.clone())
            })
            .await?;
        let Some(got) = self.found(key, result)? else {
            return Ok(None);
        };
        let (meta, range) = (got.meta.clone(), got.range.clone());
        let body = self.unretried("read", key, started, got.into_stream());
        Ok(Some((meta, range, body)))
    }

    /// `stream`'s items with each failure counted against the bucket's health like a
    /// failed request (never retried: the stream ends with it).
    fn unretried<T: 'static>(
        &self,
        action: &'static str,
        key: &Path,
        started: tokio::time::Instant,
        stream: BoxStream<'static, object_store::Result<T>>,
    ) -> BoxStream<'static, Result<T, BucketError>> {
        let (bucket, key) = (self.clone(), key.clone());
        stream
            .map(move |item| {
                item.map_err(|source| {
                    let kind = classify(&source).err().unwrap_or(FailureKind::Other);
                    bucket
                        .inner
                        .health
                        .failed(kind, &source, action, key.as_ref());
                    BucketError::Request(Box::new(RequestFailed {
                        action,
                        key: key.to_string(),
                        kind,
                        retries: 0,
                        elapsed: started.elapsed(),
                        source,
                    }))
                })
            })
            .boxed()
    }

    /// A read's answer: `None` for no object.
    fn found<T>(&self, key: &Path, result: Result<T, Answer>) -> Result<Option<T>, BucketError> {
        match result {
            Ok(found) => Ok(Some(found)),
            Err(Answer::NotFound) => Ok(None),
            Err(Answer::Conflict) => Err(BucketError::Unexpected {
                key: key.to_string(),
                why: "a read answered a precondition failure".into(),
            }),
        }
    }

    async fn get_opts(
        &self,
        key: &Path,
        options: GetOptions,
    ) -> Result<Option<(Fetched, ObjectMeta)>, BucketError> {
        // The body is read inside the attempt, so a connection that breaks mid-body is
        // retried like one that never connected.
        let (result, _) = self
            .request("read", key, || async {
                let got = self.inner.store.get_opts(key, options.clone()).await?;
                let meta = got.meta.clone();
                let bytes = got.bytes().await?;
                Ok((bytes, meta))
            })
            .await?;
        Ok(self.found(key, result)?.map(|(bytes, meta)| {
            (
                Fetched {
                    bytes,
                    version: version_of(&meta),
                },
                meta,
            )
        }))
    }

    /// Every object under `prefix`, at any depth, in key order.
    pub async fn list(&self, prefix: &Path) -> Result<Vec<ObjectMeta>, BucketError> {
        let (result, _) = self
            .request("list", prefix, || async {
                let mut objects: Vec<ObjectMeta> = Vec::new();
                let mut listing = self.inner.store.list(Some(prefix));
                while let Some(object) = listing.next().await {
                    objects.push(object?);
                }
                Ok(objects)
            })
            .await?;
        let mut objects = result.map_err(|answer| self.no_bucket(prefix, answer))?;
        objects.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(objects)
    }

    /// Every object under `prefix`, at any depth, as object_store pages through them (in
    /// key order, a page of up to 1,000 at a time). Unlike [`Bucket::list`], nothing is
    /// retried: a page that fails ends the stream with the error.
    pub fn list_stream(
        &self,
        prefix: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta, BucketError>> {
        let started = tokio::time::Instant::now();
        self.unretried("list", prefix, started, self.inner.store.list(Some(prefix)))
    }

    /// The chunks (see [`super::chunk_name`]) right under `dir`, in name order.
    pub async fn list_chunks(&self, dir: &Path) -> Result<Vec<ObjectMeta>, BucketError> {
        let mut objects = self.list(dir).await?;
        objects.retain(|object| {
            object.location.prefix_match(dir).is_some_and(|mut parts| {
                parts
                    .next()
                    .is_some_and(|name| super::is_chunk_name(name.as_ref()))
                    && parts.next().is_none()
            })
        });
        Ok(objects)
    }

    /// The names of the "folders" right under `prefix`: the next part of the keys below it.
    pub async fn list_folders(&self, prefix: &Path) -> Result<Vec<String>, BucketError> {
        let (result, _) = self
            .request("list", prefix, || {
                self.inner.store.list_with_delimiter(Some(prefix))
            })
            .await?;
        let listed = result.map_err(|answer| self.no_bucket(prefix, answer))?;
        let mut names: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|folder| folder.filename().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    fn no_bucket(&self, prefix: &Path, answer: Answer) -> BucketError {
        BucketError::Unexpected {
            key: prefix.to_string(),
            why: format!(
                "a listing answered {answer:?}: does bucket {} exist?",
                self.inner.name
            ),
        }
    }
}

/// The wait before retry number `retries + 1`: doubling from [`FIRST_BACKOFF`] up to
/// [`MAX_BACKOFF`], each drawn between half and all of that, so that instances retrying
/// the same outage spread out.
fn backoff(retries: u32) -> Duration {
    let full = FIRST_BACKOFF
        .saturating_mul(1 << retries.min(16))
        .min(MAX_BACKOFF);
    let half = full / 2;
    half + half.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter() {
        for retries in 0..40 {
            let full = FIRST_BACKOFF
                .saturating_mul(1 << retries.min(16))
                .min(MAX_BACKOFF);
            let wait = backoff(retries);
            assert!(wait >= full / 2 && wait <= full, "{retries}: {wait:?}");
        }
        assert!(backoff(30) >= MAX_BACKOFF / 2);
    }

    /// The settings of a bucket at `endpoint` (on loopback), plus `extra`.
    fn config(endpoint: std::net::SocketAddr, extra: &[&str]) -> Config {
        let endpoint = format!("http://{endpoint}");
        let mut args = vec![
            "--bucket-name",
            "frames",
            "--bucket-region",
            "us-east-1",
            "--bucket-access-key-id",
            "test-key",
            "--bucket-secret-access-key",
            "test-secret",
            "--bucket-endpoint",
            &endpoint,
        ];
        args.extend(extra);
        Config::from_args(args).unwrap()
    }

    /// A bucket that accepts connections and never answers: the check gives up at
    /// BUCKET_CHECK_TIMEOUT (before BUCKET_REQUEST_TIMEOUT), and the server starts degraded.
    #[tokio::test(start_paused = true)]
    async fn a_hanging_bucket_is_found_out_at_the_check_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let config = config(
            address,
            &[
                "--bucket-check-timeout",
                "700ms",
                "--bucket-request-timeout",
                "3s",
            ],
        );
        let started = tokio::time::Instant::now();
        let bucket = Bucket::connect(&config, Arc::new(Metrics::default()))
            .await
            .expect("a hanging bucket starts the server degraded");
        assert_eq!(started.elapsed(), Duration::from_millis(700));
        let reason = bucket.health().degraded_reason().expect("degraded");
        assert!(reason.contains("timeout"), "{reason}");
        silent.abort();
    }

    /// A bucket that refuses connections: each request is retried with doubling waits and
    /// given up once the next wait would pass BUCKET_RETRY_TIMEOUT.
    #[tokio::test(start_paused = true)]
    async fn a_failing_request_backs_off_until_the_retry_timeout() {
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        // Attempts end within 100 ms, even where the clock jumps while one waits.
        let config = config(
            closed,
            &[
                "--bucket-retry-timeout",
                "3s",
                "--bucket-request-timeout",
                "100ms",
            ],
        );
        let metrics = Arc::new(Metrics::default());
        let bucket = Bucket::connect(&config, metrics.clone()).await.unwrap();
        let started = tokio::time::Instant::now();
        let error = bucket
            .get(&Path::from("rec/recording.json"))
            .await
            .expect_err("nothing answers");
        let BucketError::Request(failed) = error else {
            panic!("a request failure: {error}");
        };
        assert_eq!(failed.kind, FailureKind::Unreachable);
        // Waits are drawn from 50-100, 100-200, 200-400, 400-800, 800-1600 ms. Four retries
        // always fit in 3 s (at most 1.5 s of waits and 0.5 s of attempts before the fourth);
        // a sixth never does (the first six waits add up to at least 3.15 s).
        assert!(
            (4..=5).contains(&failed.retries),
            "{} retries",
            failed.retries
        );
        assert!(started.elapsed() >= Duration::from_millis(750));
        assert_eq!(metrics.bucket_retries.get(), u64::from(failed.retries));
    }
}
