//! An S3-compatible bucket. Artifacts are uploaded with multipart uploads holding a bounded
//! number of parts in memory; the part size grows so that no upload needs more than
//! 10,000 parts. An artifact becomes visible only when its upload is completed; a failed
//! capture aborts the upload.

use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{Chunk, ObjectInfo, ObjectReader, StoreError};
use crate::secret::Secret;

/// Smallest part S3 accepts (except the last).
const MIN_PART: u64 = 5 << 20;
/// Default part size.
pub const DEFAULT_PART: u64 = 8 << 20;
/// Largest part S3 accepts.
const MAX_PART: u64 = 5 << 30;
/// S3's limit on parts per upload.
pub const MAX_PARTS: u32 = 10_000;
/// Parts in flight per artifact by default.
pub const DEFAULT_IN_FLIGHT: usize = 2;

/// Connection settings for one bucket.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// Endpoint URL (None: AWS).
    pub endpoint: Option<String>,
    /// Region.
    pub region: String,
    /// Bucket.
    pub bucket: String,
    /// Key prefix (no leading/trailing `/`).
    pub prefix: String,
    /// Path-style addressing.
    pub path_style: bool,
    /// Access key id and secret; None: from the environment.
    pub credentials: Option<(Secret, Secret)>,
    /// Parts in flight per artifact.
    pub max_in_flight: usize,
}

/// A bucket store.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    endpoint: String,
    max_in_flight: usize,
}

/// The part size for part number `n` (1-based): starts at `base` and doubles every 2,000
/// parts, so an upload of unknown length still fits in 10,000 parts (up to ~250 × base).
pub fn part_size(base: u64, n: u32) -> u64 {
    let doublings = (n.saturating_sub(1) / 2_000).min(10);
    (base << doublings).clamp(MIN_PART, MAX_PART)
}

/// The base part size for an artifact of about `hint` bytes: the smallest that fits the
/// hint in 9,000 parts (memory stays low), never below the default; growth covers hints
/// that were too small.
pub fn base_part_size(hint: Option<u64>) -> u64 {
    match hint {
        Some(h) => h.div_ceil(9_000).clamp(DEFAULT_PART, MAX_PART),
        None => DEFAULT_PART,
    }
}

impl S3Store {
    /// Build a client; no request is made.
    pub fn new(settings: S3Settings) -> Self {
        let mut conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .force_path_style(settings.path_style)
            // NB: many self-hosted S3 servers reject the SDK's default trailing checksums.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .read_timeout(Duration::from_secs(120))
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(4));
        if let Some(e) = &settings.endpoint {
            conf = conf.endpoint_url(e.clone());
        }
        let creds = match &settings.credentials {
            Some((id, secret)) => Some((id.expose().to_string(), secret.expose().to_string())),
            None => match (
                std::env::var("AWS_ACCESS_KEY_ID"),
                std::env::var("AWS_SECRET_ACCESS_KEY"),
            ) {
                (Ok(id), Ok(secret)) => Some((id, secret)),
                _ => None,
            },
        };
        if let Some((id, secret)) = creds {
            conf = conf.credentials_provider(Credentials::new(id, secret, None, None, "arca"));
        }
        let endpoint = settings
            .endpoint
            .clone()
            .unwrap_or_else(|| "https://s3.amazonaws.com".into());
        Self {
            client: aws_sdk_s3::Client::from_conf(conf.build()),
            bucket: settings.bucket,
            prefix: settings.prefix.trim_matches('/').to_string(),
            endpoint,
            max_in_flight: settings.max_in_flight.max(1),
        }
    }

    /// `s3://bucket/prefix`.
    pub fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{}", self.prefix, key)
        }
    }

    fn rel_key<'a>(&self, full: &'a str) -> &'a str {
        if self.prefix.is_empty() {
            full
        } else {
            full.strip_prefix(&self.prefix)
                .map(|k| k.trim_start_matches('/'))
                .unwrap_or(full)
        }
    }

    fn map_err<E>(
        &self,
        op: &'static str,
        key: &str,
        err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let target = format!("{} ({})", self.describe(), self.endpoint);
        match &err {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => StoreError::Unreachable {
                target,
                detail: short(&DisplayErrorContext(&err).to_string()),
            },
            SdkError::ServiceError(se) => {
                let status = se.raw().status().as_u16();
                let code = se.err().code().unwrap_or_default().to_string();
                match code.as_str() {
                    "NoSuchBucket" => StoreError::Missing {
                        target: format!("bucket {}", self.bucket),
                    },
                    "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "AccessDenied"
                    | "InvalidSignature"
                    | "Forbidden" => StoreError::Denied {
                        target,
                        detail: code,
                    },
                    _ if status == 403 => StoreError::Denied {
                        target,
                        detail: format!("HTTP 403 {code}").trim().to_string(),
                    },
                    _ if status == 404 && op == "check bucket" => StoreError::Missing {
                        target: format!("bucket {}", self.bucket),
                    },
                    _ => StoreError::Other {
                        op,
                        key: key.to_string(),
                        target,
                        detail: format!(
                            "HTTP {status} {code} {}",
                            se.err().message().unwrap_or_default()
                        )
                        .trim()
                        .to_string(),
                    },
                }
            }
            _ => StoreError::Other {
                op,
                key: key.to_string(),
                target,
                detail: short(&DisplayErrorContext(&err).to_string()),
            },
        }
    }

    /// The bucket exists and the credentials work (HEAD bucket, then a list).
    pub async fn probe(&self) -> Result<(), StoreError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| self.map_err("check bucket", "", e))?;
        self.client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.full_key(""))
            .max_keys(1)
            .send()
            .await
            .map_err(|e| self.map_err("list", "", e))?;
        Ok(())
    }

    /// Upload a stream: one PUT when it fits one part, multipart otherwise.
    pub async fn put_stream(
        &self,
        key: &str,
        mut rx: mpsc::Receiver<Chunk>,
        size_hint: Option<u64>,
    ) -> Result<u64, StoreError> {
        let full = self.full_key(key);
        let base = base_part_size(size_hint);
        let mut part_no: u32 = 1;
        let mut buf = BytesMut::with_capacity(base as usize);
        let mut upload_id: Option<String> = None;
        let mut in_flight: JoinSet<Result<CompletedPart, StoreError>> = JoinSet::new();
        let mut parts: Vec<CompletedPart> = Vec::new();
        let mut total: u64 = 0;

        let outcome: Result<(), StoreError> = async {
            loop {
                let msg = rx.recv().await;
                let commit = match msg {
                    Some(Chunk::Data(b)) => {
                        total += b.len() as u64;
                        buf.extend_from_slice(&b);
                        false
                    }
                    Some(Chunk::Commit) => true,
                    None => {
                        return Err(StoreError::Aborted {
                            key: key.to_string(),
                        })
                    }
                };
                let target = part_size(base, part_no) as usize;
                if commit && upload_id.is_none() {
                    // Small artifact: a single PUT.
                    let body = std::mem::take(&mut buf).freeze();
                    self.client
                        .put_object()
                        .bucket(&self.bucket)
                        .key(&full)
                        .body(ByteStream::from(body))
                        .send()
                        .await
                        .map_err(|e| self.map_err("upload", key, e))?;
                    return Ok(());
                }
                while buf.len() >= target || (commit && !buf.is_empty()) {
                    let take = buf.len().min(target);
                    let body = buf.split_to(take).freeze();
                    if upload_id.is_none() {
                        let created = self
                            .client
                            .create_multipart_upload()
                            .bucket(&self.bucket)
                            .key(&full)
                            .send()
                            .await
                            .map_err(|e| self.map_err("start upload of", key, e))?;
                        upload_id = created.upload_id().map(str::to_string);
                    }
                    if part_no > MAX_PARTS {
                        return Err(StoreError::Other {
                            op: "upload",
                            key: key.to_string(),
                            target: self.describe(),
                            detail: "more than 10,000 parts".into(),
                        });
                    }
                    while in_flight.len() >= self.max_in_flight {
                        if let Some(done) = in_flight.join_next().await {
                            parts.push(joined(done)??);
                        }
                    }
                    let client = self.client.clone();
                    let (bucket, k, id, n) = (
                        self.bucket.clone(),
                        full.clone(),
                        upload_id.clone().unwrap_or_default(),
                        part_no,
                    );
                    let me = self.clone();
                    let rel = key.to_string();
                    in_flight.spawn(async move {
                        let out = client
                            .upload_part()
                            .bucket(bucket)
                            .key(k)
                            .upload_id(id)
                            .part_number(n as i32)
                            .body(ByteStream::from(body))
                            .send()
                            .await
                            .map_err(|e| me.map_err("upload part of", &rel, e))?;
                        Ok(CompletedPart::builder()
                            .part_number(n as i32)
                            .set_e_tag(out.e_tag().map(str::to_string))
                            .build())
                    });
                    part_no += 1;
                    if buf.capacity() < part_size(base, part_no) as usize {
                        buf.reserve(part_size(base, part_no) as usize);
                    }
                }
                if commit {
                    break;
                }
            }
            while let Some(done) = in_flight.join_next().await {
                parts.push(joined(done)??);
            }
            parts.sort_by_key(|p| p.part_number());
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(&full)
                .upload_id(upload_id.clone().unwrap_or_default())
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(std::mem::take(&mut parts)))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| self.map_err("complete upload of", key, e))?;
            Ok(())
        }
        .await;

        if let Err(e) = outcome {
            in_flight.abort_all();
            if let Some(id) = upload_id {
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&full)
                    .upload_id(id)
                    .send()
                    .await;
            }
            return Err(e);
        }
        Ok(total)
    }

    /// PUT a small object.
    pub async fn put_bytes(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| self.map_err("upload", key, e))?;
        Ok(())
    }

    /// GET a small object.
    pub async fn get_bytes(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let resp = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await;
        match resp {
            Ok(out) => {
                let data = out.body.collect().await.map_err(|e| StoreError::Other {
                    op: "download",
                    key: key.to_string(),
                    target: self.describe(),
                    detail: e.to_string(),
                })?;
                Ok(Some(data.into_bytes()))
            }
            Err(SdkError::ServiceError(se)) if se.err().is_no_such_key() => Ok(None),
            Err(e) => Err(self.map_err("download", key, e)),
        }
    }

    /// GET an object as a stream.
    pub async fn get_stream(&self, key: &str) -> Result<(ObjectReader, u64), StoreError> {
        let resp = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await;
        match resp {
            Ok(out) => {
                let len = out.content_length().unwrap_or_default().max(0) as u64;
                Ok((Box::new(out.body.into_async_read()), len))
            }
            Err(SdkError::ServiceError(se)) if se.err().is_no_such_key() => {
                Err(StoreError::NotFound {
                    target: self.describe(),
                    key: key.to_string(),
                })
            }
            Err(e) => Err(self.map_err("download", key, e)),
        }
    }

    /// Common prefixes one level below `prefix`.
    pub async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let full = self.full_key(prefix);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let resp = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&full)
                .delimiter("/")
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.map_err("list", prefix, e))?;
            for cp in resp.common_prefixes() {
                if let Some(p) = cp.prefix() {
                    let name = p
                        .strip_prefix(&full)
                        .unwrap_or(p)
                        .trim_end_matches('/')
                        .to_string();
                    if !name.is_empty() {
                        out.push(name);
                    }
                }
            }
            match resp.next_continuation_token() {
                Some(t) if resp.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// All objects below `prefix`.
    pub async fn list_objects(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let full = self.full_key(prefix);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let resp = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&full)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.map_err("list", prefix, e))?;
            for o in resp.contents() {
                if let Some(k) = o.key() {
                    out.push(ObjectInfo {
                        key: self.rel_key(k).to_string(),
                        size: o.size().unwrap_or_default().max(0) as u64,
                        modified: o.last_modified().and_then(|t| {
                            chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
                        }),
                    });
                }
            }
            match resp.next_continuation_token() {
                Some(t) if resp.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Abort the multipart uploads below `prefix` that were started before `cutoff`: what a
    /// killed run leaves behind. S3 keeps (and bills) their parts until they are aborted,
    /// and they never show in object listings. Returns the keys of the aborted uploads.
    pub async fn abort_stale_uploads(
        &self,
        prefix: &str,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let full = self.full_key(prefix);
        let mut stale: Vec<(String, String)> = Vec::new();
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let resp = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(&full)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| self.map_err("list uploads", prefix, e))?;
            for u in resp.uploads() {
                let started = u
                    .initiated()
                    .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()));
                // NB: an upload without a start time is left alone: it may be running now.
                if let (Some(k), Some(id), Some(t)) = (u.key(), u.upload_id(), started) {
                    if t < cutoff {
                        stale.push((k.to_string(), id.to_string()));
                    }
                }
            }
            if resp.is_truncated() != Some(true) {
                break;
            }
            key_marker = resp.next_key_marker().map(str::to_string);
            id_marker = resp.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() && id_marker.is_none() {
                break;
            }
        }
        let mut aborted = Vec::with_capacity(stale.len());
        for (k, id) in stale {
            let rel = self.rel_key(&k).to_string();
            self.client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&k)
                .upload_id(id)
                .send()
                .await
                .map_err(|e| self.map_err("abort upload of", &rel, e))?;
            aborted.push(rel);
        }
        Ok(aborted)
    }

    /// DELETE an object.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| self.map_err("delete", key, e))?;
        Ok(())
    }
}

fn joined(
    r: Result<Result<CompletedPart, StoreError>, tokio::task::JoinError>,
) -> Result<Result<CompletedPart, StoreError>, StoreError> {
    r.map_err(|e| StoreError::Other {
        op: "upload part",
        key: String::new(),
        target: String::new(),
        detail: e.to_string(),
    })
}

fn short(s: &str) -> String {
    let one_line = s.replace('\n', " ");
    if one_line.len() > 300 {
        let mut cut = 300;
        while !one_line.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}…", &one_line[..cut])
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_grow_to_fit_ten_thousand() {
        let base = DEFAULT_PART;
        assert_eq!(part_size(base, 1), base);
        assert_eq!(part_size(base, 2000), base);
        assert_eq!(part_size(base, 2001), base * 2);
        let capacity: u64 = (1..=MAX_PARTS).map(|n| part_size(base, n)).sum();
        // 2000 × (8+16+32+64+128) MiB ≈ 496 GiB with the default base.
        assert!(capacity > 450 << 30, "{capacity}");
        // With a hint, the hinted size fits in 9,000 parts of the base size.
        let hint = 3u64 << 40; // 3 TiB
        let b = base_part_size(Some(hint));
        assert!(b * 9000 >= hint, "{b}");
        assert_eq!(base_part_size(Some(1 << 30)), DEFAULT_PART);
        assert!((MIN_PART..=MAX_PART).contains(&b));
    }
}
