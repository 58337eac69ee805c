//! The archive on S3 (DESIGN.md §8.1): `s3://bucket/prefix`, a bucket with Object Lock
//! enabled (refused otherwise, at [`ArchiveStore::check`]). Each object is put once with
//! `If-None-Match: *` (S3 refuses the put if the key exists: no overwrite, not even a new
//! version), its SHA-256 checksum (S3 checks the bytes it received), and COMPLIANCE-mode
//! retention until the date asked, which nobody — the bucket's owner included — can shorten
//! or bypass. A key that exists is read back and compared: the same bytes are a re-upload after
//! a crash, other bytes a conflict. Reads (and retention) are of a key's first version, the one
//! this store wrote and Object Lock keeps: an unconditional PUT by someone else adds a version
//! S3 cannot refuse, and it is never what this store reads.
//!
//! The AWS SDK is async; this store is sync like the rest of the application: it owns a small
//! tokio runtime, runs each request there and waits for the answer on the calling thread (any
//! thread: it never blocks inside a runtime). Credentials, region and endpoint: the config, else the usual `AWS_*` variables.
//! The SDK retries throttling and transient errors (its standard policy); what still fails is
//! returned, and the archiver retries later.

use agentrail_archive::{ArchiveError, ArchiveStore, ObjectInfo, Put, same_or_conflict, valid_key};
use agentrail_event::hash::sha256;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::primitives::{ByteStream, DateTime, DateTimeFormat};
use aws_sdk_s3::types::{ChecksumAlgorithm, ObjectLockEnabled, ObjectLockMode};
use base64::Engine;

/// Where the archive is and how to reach it; `None` fields come from the `AWS_*` variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Config {
    /// `s3://bucket` or `s3://bucket/prefix`.
    pub url: String,
    /// An S3-compatible endpoint (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`); AWS's otherwise.
    pub endpoint: Option<String>,
    /// `AWS_REGION`, `AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
}

pub struct S3Archive {
    url: String,
    bucket: String,
    /// Prepended to every key, with its `/` (empty for the bucket's root).
    prefix: String,
    client: aws_sdk_s3::Client,
    /// Its own I/O runtime (`None` only while it is dropped).
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for S3Archive {
    /// The store may be dropped on a thread of another runtime (the server's, at shutdown),
    /// where dropping a runtime would block: its workers are told to stop, not waited for (no
    /// request is in flight once its last user is gone).
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for S3Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Archive({})", self.url)
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn not_worm(url: &str, reason: impl Into<String>) -> ArchiveError {
    ArchiveError::NotWorm {
        url: url.to_owned(),
        reason: reason.into(),
    }
}

/// An SDK error as one line: S3's code and message when it answered, else the whole chain
/// (a connection refused, a timeout).
fn describe<E>(e: &aws_sdk_s3::error::SdkError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match (e.code(), e.message()) {
        (Some(code), Some(msg)) => format!("{code}: {msg}"),
        (Some(code), None) => code.to_owned(),
        _ => DisplayErrorContext(e).to_string(),
    }
}

fn failed<E>(
    op: &'static str,
    key: &str,
) -> impl FnOnce(aws_sdk_s3::error::SdkError<E>) -> ArchiveError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let key = key.to_owned();
    move |e| ArchiveError::Io {
        op,
        key,
        source: std::io::Error::other(describe(&e)),
    }
}

impl S3Archive {
    pub fn open(cfg: &S3Config) -> Result<S3Archive, ArchiveError> {
        let url = cfg.url.clone();
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| not_worm(&url, "an S3 archive is s3://bucket[/prefix]"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_end_matches('/');
        if bucket.is_empty() {
            return Err(not_worm(&url, "no bucket in the URL"));
        }
        if !prefix.is_empty() {
            valid_key(prefix)?;
        }
        let key_id = cfg
            .access_key_id
            .clone()
            .or_else(|| env("AWS_ACCESS_KEY_ID"));
        let secret = cfg
            .secret_access_key
            .clone()
            .or_else(|| env("AWS_SECRET_ACCESS_KEY"));
        let (Some(key_id), Some(secret)) = (key_id, secret) else {
            return Err(not_worm(
                &url,
                "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the config's)",
            ));
        };
        let token = cfg
            .session_token
            .clone()
            .or_else(|| env("AWS_SESSION_TOKEN"));
        let region = cfg
            .region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        let endpoint = cfg
            .endpoint
            .clone()
            .or_else(|| env("AWS_ENDPOINT_URL_S3"))
            .or_else(|| env("AWS_ENDPOINT_URL"));
        let mut b = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region))
            .credentials_provider(Credentials::new(key_id, secret, token, None, "agentrail"));
        if let Some(e) = endpoint {
            // S3-compatible servers are addressed by path, not by bucket host name.
            b = b.endpoint_url(e).force_path_style(true);
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("agentrail-s3")
            .enable_all()
            .build()
            .map_err(|e| not_worm(&url, format!("cannot start its I/O runtime: {e}")))?;
        Ok(S3Archive {
            bucket: bucket.to_owned(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            client: aws_sdk_s3::Client::from_conf(b.build()),
            rt: Some(rt),
            url,
        })
    }

    /// Runs a request on the store's runtime and waits for it on this thread, whatever the
    /// thread (a runtime's blocking pool included: nothing here blocks inside a runtime).
    fn wait<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, ArchiveError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        // (Without a runtime, while dropped, `tx` is dropped here and `recv` fails at once.)
        if let Some(rt) = &self.rt {
            rt.spawn(async move {
                let _ = tx.send(fut.await);
            });
        }
        rx.recv().map_err(|_| ArchiveError::Io {
            op: "reach",
            key: self.url.clone(),
            source: std::io::Error::other("the S3 client's runtime stopped"),
        })
    }

    fn full(&self, key: &str) -> Result<String, ArchiveError> {
        valid_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    fn compare(&self, key: &str, bytes: &[u8]) -> Result<Put, ArchiveError> {
        let stored = self.get(key)?.ok_or_else(|| ArchiveError::Io {
            op: "read back",
            key: key.to_owned(),
            source: std::io::Error::other(
                "S3 refused the put as if the object existed, but it cannot be read",
            ),
        })?;
        same_or_conflict(key, &stored, bytes)
    }
}

/// The first version written of `full`, and whether the key has a delete marker. Object Lock
/// keeps that version, and a version someone put on top of it (an unconditional PUT, which S3
/// cannot refuse) is never what this store reads or reports. Versions of a key come newest
/// first. `None` without versioning (the plain object is read).
async fn first_version(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    full: &str,
    key: &str,
) -> Result<(Option<String>, bool), ArchiveError> {
    // Every page: whoever can put versions could push the first one past the first page.
    let (mut first, mut deleted) = (None, false);
    let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
    loop {
        let page = client
            .list_object_versions()
            .bucket(bucket)
            .prefix(full)
            .set_key_marker(key_marker.clone())
            .set_version_id_marker(version_marker.clone())
            .send()
            .await
            .map_err(failed("list the versions of", key))?;
        // ("null" is the id of a version written before versioning: a real one.)
        if let Some(v) = page
            .versions()
            .iter()
            .rfind(|v| v.key() == Some(full))
            .and_then(|v| v.version_id())
        {
            first = Some(v.to_owned());
        }
        deleted |= page.delete_markers().iter().any(|d| d.key() == Some(full));
        // Keys come in order and `full` sorts before every key it is a prefix of: once a page
        // holds another key, every version of `full` has been seen.
        let past = page.versions().iter().any(|v| v.key() != Some(full))
            || page.delete_markers().iter().any(|d| d.key() != Some(full));
        if past || page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        version_marker = page.next_version_id_marker().map(str::to_owned);
        if key_marker.is_none() && version_marker.is_none() {
            break;
        }
    }
    Ok((first, deleted))
}

impl ArchiveStore for S3Archive {
    fn url(&self) -> String {
        self.url.clone()
    }

    /// From the SHA-256 checksum S3 checked when it received the first version (a single-part
    /// put's is of the whole object), without downloading it; read and hashed when S3 keeps
    /// none.
    fn digest(&self, key: &str) -> Result<Option<(u64, [u8; 32])>, ArchiveError> {
        let full = self.full(key)?;
        let (client, bucket, key_owned) =
            (self.client.clone(), self.bucket.clone(), key.to_owned());
        let head = self.wait(async move {
            let (first, deleted) = first_version(&client, &bucket, &full, &key_owned).await?;
            if first.is_none() && deleted {
                return Ok(None);
            }
            match client
                .head_object()
                .bucket(&bucket)
                .key(&full)
                .set_version_id(first)
                .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
                .send()
                .await
            {
                Ok(h) => Ok(Some(h)),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
                Err(e) => Err(failed("read the checksum of", &key_owned)(e)),
            }
        })??;
        let Some(head) = head else {
            return Ok(None);
        };
        let sum = head
            .checksum_sha256()
            .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
            .and_then(|b| <[u8; 32]>::try_from(b).ok());
        match (
            sum,
            head.content_length().and_then(|n| u64::try_from(n).ok()),
        ) {
            (Some(sum), Some(len)) => Ok(Some((len, sum))),
            _ => Ok(self.get(key)?.map(|b| (b.len() as u64, sha256(&b)))),
        }
    }

    fn check(&self) -> Result<(), ArchiveError> {
        let got = self.wait(
            self.client
                .get_object_lock_configuration()
                .bucket(&self.bucket)
                .send(),
        )?;
        match got {
            Ok(out)
                if out
                    .object_lock_configuration()
                    .and_then(|c| c.object_lock_enabled())
                    == Some(&ObjectLockEnabled::Enabled) =>
            {
                Ok(())
            }
            Ok(_) => Err(not_worm(
                &self.url,
                format!("bucket {} does not have Object Lock enabled", self.bucket),
            )),
            Err(e) if e.code() == Some("ObjectLockConfigurationNotFoundError") => Err(not_worm(
                &self.url,
                format!(
                    "bucket {} has no Object Lock (it can only be enabled when the bucket is created: --object-lock-enabled-for-bucket)",
                    self.bucket
                ),
            )),
            Err(e) => Err(not_worm(
                &self.url,
                format!(
                    "cannot read bucket {}'s Object Lock configuration: {}",
                    self.bucket,
                    describe(&e)
                ),
            )),
        }
    }

    fn put_once(
        &self,
        key: &str,
        bytes: &[u8],
        retain_until: Option<&str>,
    ) -> Result<Put, ArchiveError> {
        let full = self.full(key)?;
        let checksum = base64::engine::general_purpose::STANDARD.encode(sha256(bytes));
        let mut put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .if_none_match("*")
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(checksum)
            .body(ByteStream::from(bytes.to_vec()));
        if let Some(until) = retain_until {
            let date = DateTime::from_str(until, DateTimeFormat::DateTime).map_err(|e| {
                ArchiveError::Io {
                    op: "set the retention of",
                    key: key.to_owned(),
                    source: std::io::Error::other(format!("{until:?} is not RFC 3339: {e}")),
                }
            })?;
            put = put
                .object_lock_mode(ObjectLockMode::Compliance)
                .object_lock_retain_until_date(date);
        }
        match self.wait(put.send())? {
            Ok(_) => Ok(Put::Written),
            // The key exists (412), or another put of it is in flight (409).
            Err(e)
                if matches!(
                    e.raw_response().map(|r| r.status().as_u16()),
                    Some(412 | 409)
                ) =>
            {
                self.compare(key, bytes)
            }
            Err(e) => Err(failed("put", key)(e)),
        }
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ArchiveError> {
        let full = self.full(key)?;
        let (client, bucket, key_owned) =
            (self.client.clone(), self.bucket.clone(), key.to_owned());
        self.wait(async move {
            let key = key_owned.as_str();
            let (first, deleted) = first_version(&client, &bucket, &full, key).await?;
            if first.is_none() && deleted {
                return Ok(None);
            }
            let out = client
                .get_object()
                .bucket(bucket)
                .key(&full)
                .set_version_id(first)
                .send()
                .await;
            match out {
                Ok(o) => o
                    .body
                    .collect()
                    .await
                    .map(|b| Some(b.into_bytes().to_vec()))
                    .map_err(|e| ArchiveError::Io {
                        op: "read",
                        key: key.to_owned(),
                        source: std::io::Error::other(e.to_string()),
                    }),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
                Err(e) => Err(failed("get", key)(e)),
            }
        })?
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ArchiveError> {
        // Every key with a version, each with its first version's size: a delete marker (which
        // Object Lock cannot refuse) hides a key from ListObjects, never from this list, and
        // the locked version behind it is what `get` reads.
        let full = format!("{}{prefix}", self.prefix);
        let mut sizes: std::collections::BTreeMap<String, u64> = Default::default();
        let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let page = self
                .wait(
                    self.client
                        .list_object_versions()
                        .bucket(&self.bucket)
                        .prefix(&full)
                        .set_key_marker(key_marker.clone())
                        .set_version_id_marker(version_marker.clone())
                        .send(),
                )?
                .map_err(failed("list", prefix))?;
            // Versions of a key come newest first: the last one seen is its first.
            for v in page.versions() {
                if let Some(k) = v.key().and_then(|k| k.strip_prefix(&self.prefix)) {
                    let size = v.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
                    sizes.insert(k.to_owned(), size);
                }
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            version_marker = page.next_version_id_marker().map(str::to_owned);
            if key_marker.is_none() && version_marker.is_none() {
                break;
            }
        }
        Ok(sizes
            .into_iter()
            .map(|(key, size)| ObjectInfo { key, size })
            .collect())
    }

    fn retention(&self, key: &str) -> Result<Option<String>, ArchiveError> {
        let full = self.full(key)?;
        let (client, bucket, key_owned) =
            (self.client.clone(), self.bucket.clone(), key.to_owned());
        // HEAD of the first version carries its lock (GetObjectRetention needs one more
        // permission).
        let head = self.wait(async move {
            let (first, _) = first_version(&client, &bucket, &full, &key_owned).await?;
            client
                .head_object()
                .bucket(&bucket)
                .key(&full)
                .set_version_id(first)
                .send()
                .await
                .map_err(failed("read the retention of", &key_owned))
        })??;
        if head.object_lock_mode() != Some(&ObjectLockMode::Compliance) {
            return Ok(None);
        }
        Ok(head
            .object_lock_retain_until_date()
            .and_then(|d| d.fmt(DateTimeFormat::DateTime).ok()))
    }
}
