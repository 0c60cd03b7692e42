//! Downloads one object from S3, refusing ones over the size cap before reading them.

use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_object::GetObjectError;
use chrono::{DateTime, Utc};
use docsort_schema::Job;

/// A downloaded object and the metadata the record stores.
#[derive(Debug)]
pub struct Fetched {
    /// The object's bytes.
    pub bytes: Vec<u8>,
    /// The object's metadata.
    pub meta: ObjectMeta,
}

/// What S3 said about the object.
#[derive(Debug, Clone, Default)]
pub struct ObjectMeta {
    /// ETag without surrounding quotes.
    pub etag: Option<String>,
    /// Version id, on versioned buckets.
    pub version_id: Option<String>,
    /// Size in bytes.
    pub size: Option<u64>,
    /// Last-Modified.
    pub last_modified: Option<DateTime<Utc>>,
}

/// Why an object was not downloaded.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("the object does not exist")]
    NotFound,
    #[error("the object is {size} bytes, over the {cap}-byte cap")]
    TooLarge {
        size: u64,
        cap: u64,
        meta: ObjectMeta,
    },
    #[error("S3 GetObject failed")]
    S3(#[source] Box<SdkError<GetObjectError>>),
    #[error("reading the object body failed")]
    Body(#[source] aws_sdk_s3::primitives::ByteStreamError),
}

/// Strips the quotes S3 puts around ETags (events carry them bare).
pub fn normalise_etag(etag: &str) -> String {
    etag.trim_matches('"').to_owned()
}

/// Downloads `job`'s object (its version, when the job names one).
pub async fn fetch(
    s3: &aws_sdk_s3::Client,
    job: &Job,
    max_bytes: u64,
) -> Result<Fetched, FetchError> {
    let out = s3
        .get_object()
        .bucket(&job.bucket)
        .key(&job.key)
        .set_version_id(job.version_id.clone())
        .send()
        .await
        .map_err(|e| match &e {
            SdkError::ServiceError(se)
                if matches!(se.err(), GetObjectError::NoSuchKey(_))
                    || se.raw().status().as_u16() == 404 =>
            {
                FetchError::NotFound
            }
            _ => FetchError::S3(Box::new(e)),
        })?;
    let meta = ObjectMeta {
        etag: out.e_tag().map(normalise_etag),
        version_id: out
            .version_id()
            .map(str::to_owned)
            .or_else(|| job.version_id.clone()),
        size: out.content_length().and_then(|n| u64::try_from(n).ok()),
        last_modified: out
            .last_modified()
            .and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
    };
    if let Some(size) = meta.size.filter(|&s| s > max_bytes) {
        return Err(FetchError::TooLarge {
            size,
            cap: max_bytes,
            meta,
        });
    }
    let mut body = out.body;
    let mut bytes = Vec::with_capacity(meta.size.unwrap_or(0) as usize);
    while let Some(chunk) = body.try_next().await.map_err(FetchError::Body)? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > max_bytes {
            return Err(FetchError::TooLarge {
                size: bytes.len() as u64,
                cap: max_bytes,
                meta,
            });
        }
    }
    Ok(Fetched { bytes, meta })
}
