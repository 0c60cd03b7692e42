//! The staging prefix: where a batch run keeps its model inputs, the
//! manifest that maps each record back to its object, Bedrock's outputs, and
//! the run's own state, so a run killed at any point resumes from S3 alone.
//!
//! ```text
//! <staging>/<run key>/run.json                            the unfinished run (RunState)
//! <staging>/<run key>/<run id>/input/job-0001/00001.jsonl  {"recordId","modelInput"} lines
//! <staging>/<run key>/<run id>/manifest/job-0001/00001.jsonl  ManifestEntry lines
//! <staging>/<run key>/<run id>/output/<job id>/00001.jsonl.out  written by Bedrock
//! ```
//!
//! The run key is a hash of the bucket and prefix: one unfinished run per
//! listing. A chunk is staged when its manifest is written (after its input),
//! so an input without a manifest is rewritten on resume, never submitted.

use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Error;
use aws_sdk_s3::operation::put_object::PutObjectError;
use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, Utc};
use docsort_schema::{Job, Source, TextSource};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// An `s3://bucket/prefix/` location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// The key prefix, empty or ending in `/`.
    pub prefix: String,
}

impl S3Location {
    /// Parses `s3://bucket[/prefix]`; the prefix gets a trailing `/`.
    pub fn parse(uri: &str) -> Result<S3Location, String> {
        let rest = uri
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{uri:?} is not an s3://bucket/prefix/ location"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!(
                "{uri:?} names no bucket (expected s3://bucket/prefix/)"
            ));
        }
        let prefix = match prefix.trim_end_matches('/') {
            "" => String::new(),
            p => format!("{p}/"),
        };
        Ok(S3Location {
            bucket: bucket.to_owned(),
            prefix,
        })
    }

    /// `s3://bucket/<prefix><rest>`.
    pub fn uri(&self, rest: &str) -> String {
        format!("s3://{}/{}{rest}", self.bucket, self.prefix)
    }
}

/// S3 reads and writes of the staging prefix failed.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    #[error("cannot write s3://{bucket}/{key}")]
    Put {
        bucket: String,
        key: String,
        #[source]
        source: Box<SdkError<PutObjectError>>,
    },
    #[error("cannot read s3://{bucket}/{key}")]
    Get {
        bucket: String,
        key: String,
        #[source]
        source: Box<SdkError<GetObjectError>>,
    },
    #[error(
        "s3://{bucket}/{key} is missing: was the staging prefix changed or expired during the run?"
    )]
    Missing { bucket: String, key: String },
    #[error("cannot read the body of s3://{bucket}/{key}")]
    Body {
        bucket: String,
        key: String,
        #[source]
        source: aws_sdk_s3::primitives::ByteStreamError,
    },
    #[error("cannot list s3://{bucket}/{prefix}")]
    List {
        bucket: String,
        prefix: String,
        #[source]
        source: Box<SdkError<ListObjectsV2Error>>,
    },
    #[error("s3://{bucket}/{key} line {line} is not what docsort wrote")]
    Parse {
        bucket: String,
        key: String,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
}

/// The state of an unfinished batch run (`run.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Names this run's folder, its jobs and their idempotency tokens.
    pub run_id: String,
    /// The listed bucket.
    pub bucket: String,
    /// The listed prefix.
    pub prefix: String,
    /// The label version the run stages for.
    pub label_version: String,
    /// The model the jobs run.
    pub model_id: String,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// Every selected document is staged (or recorded) and the jobs are planned.
    pub ingested: bool,
    /// The planned jobs, once ingested.
    pub jobs: Vec<JobState>,
}

/// One planned batch inference job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    /// The job's folder under `input/` and `manifest/` (`job-0001`).
    pub folder: String,
    /// Records staged for it.
    pub records: u64,
    /// Bytes of its input files.
    pub bytes: u64,
    /// Its ARN once created.
    pub arn: Option<String>,
    /// Its last known status.
    pub status: Option<String>,
    /// Its documents are all labeled or on the queue: nothing left to do.
    pub done: bool,
}

/// One manifest line: a record id and the object it stands for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// The record's `recordId` in the input and output files.
    pub record_id: String,
    pub bucket: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<DateTime<Utc>>,
    /// What extraction saw.
    pub pages: u32,
    pub text_chars: u64,
    pub text_source: TextSource,
    /// Earlier deliveries of this object version that reached the model.
    pub attempts: u32,
    /// Bytes of the record's input line.
    pub bytes: u64,
}

impl ManifestEntry {
    /// The on-demand queue job for this document.
    pub fn job(&self) -> Job {
        let mut job = Job::new(&self.bucket, &self.key, Source::Backfill);
        job.version_id = self.version_id.clone();
        job.etag = self.etag.clone();
        job
    }

    /// `s3://bucket/key`.
    pub fn uri(&self) -> String {
        docsort_schema::record::uri(&self.bucket, &self.key)
    }
}

/// The staging prefix of one listing (bucket and prefix).
#[derive(Debug, Clone)]
pub struct Staging {
    s3: aws_sdk_s3::Client,
    /// The staging location.
    pub location: S3Location,
    /// `<staging prefix><run key>/`.
    run_root: String,
}

impl Staging {
    /// The staging area of listing `bucket`/`prefix` under `location`.
    pub fn new(s3: aws_sdk_s3::Client, location: S3Location, bucket: &str, prefix: &str) -> Self {
        let key = Sha256::new()
            .chain_update(bucket.as_bytes())
            .chain_update([0])
            .chain_update(prefix.as_bytes())
            .finalize();
        let run_key: String = key[..6].iter().map(|b| format!("{b:02x}")).collect();
        let run_root = format!("{}{run_key}/", location.prefix);
        Staging {
            s3,
            location,
            run_root,
        }
    }

    fn state_key(&self) -> String {
        format!("{}run.json", self.run_root)
    }

    /// `s3://` URI of the unfinished run's state.
    pub fn state_uri(&self) -> String {
        self.uri(&self.state_key())
    }

    /// `<run>/input/<folder>/` as a key prefix.
    pub fn input_prefix(&self, run_id: &str, folder: &str) -> String {
        format!("{}{run_id}/input/{folder}/", self.run_root)
    }

    fn manifest_prefix(&self, run_id: &str) -> String {
        format!("{}{run_id}/manifest/", self.run_root)
    }

    /// `<run>/output/` as a key prefix; Bedrock writes under `<job id>/`.
    pub fn output_prefix(&self, run_id: &str) -> String {
        format!("{}{run_id}/output/", self.run_root)
    }

    /// `s3://` URI of a key in the staging bucket.
    pub fn uri(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.location.bucket)
    }

    /// The unfinished run, if there is one.
    pub async fn load_state(&self) -> Result<Option<RunState>, StagingError> {
        let Some(bytes) = self.get_optional(&self.state_key()).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StagingError::Parse {
                bucket: self.location.bucket.clone(),
                key: self.state_key(),
                line: 1,
                source,
            })
    }

    /// Writes the run's state.
    pub async fn save_state(&self, state: &RunState) -> Result<(), StagingError> {
        let body = serde_json::to_vec_pretty(state).expect("a run state serialises");
        self.put(&self.state_key(), body).await
    }

    /// Ends the run: its state goes to `<run id>/run.json` (the record of
    /// what it did) and a later run starts afresh.
    pub async fn finish(&self, state: &RunState) -> Result<(), StagingError> {
        let body = serde_json::to_vec_pretty(state).expect("a run state serialises");
        self.put(&format!("{}{}/run.json", self.run_root, state.run_id), body)
            .await?;
        self.s3
            .delete_object()
            .bucket(&self.location.bucket)
            .key(self.state_key())
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %aws_sdk_s3::error::DisplayErrorContext(&e), "cannot delete the run state; the next run sees a finished run and starts afresh");
            })
            .ok();
        Ok(())
    }

    /// Stages one chunk: its input lines, then its manifest (the commit).
    pub async fn put_chunk(
        &self,
        run_id: &str,
        folder: &str,
        chunk: u32,
        input: Vec<u8>,
        manifest: &[ManifestEntry],
    ) -> Result<(), StagingError> {
        let name = format!("{chunk:05}.jsonl");
        self.put(
            &format!("{}{name}", self.input_prefix(run_id, folder)),
            input,
        )
        .await?;
        let mut lines = Vec::new();
        for entry in manifest {
            serde_json::to_writer(&mut lines, entry).expect("a manifest entry serialises");
            lines.push(b'\n');
        }
        self.put(
            &format!("{}{folder}/{name}", self.manifest_prefix(run_id)),
            lines,
        )
        .await
    }

    /// Every staged chunk's manifest, by job folder: `(folder, chunk number, entries)`.
    pub async fn manifests(
        &self,
        run_id: &str,
    ) -> Result<Vec<(String, u32, Vec<ManifestEntry>)>, StagingError> {
        let prefix = self.manifest_prefix(run_id);
        let mut out = Vec::new();
        for key in self.list(&prefix).await? {
            let Some((folder, file)) = key
                .strip_prefix(&prefix)
                .and_then(|rest| rest.split_once('/'))
            else {
                continue;
            };
            let Some(chunk) = file
                .strip_suffix(".jsonl")
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let entries = self.read_lines(&key).await?;
            out.push((folder.to_owned(), chunk, entries));
        }
        out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        Ok(out)
    }

    /// The manifest entries of one job folder.
    pub async fn job_manifest(
        &self,
        run_id: &str,
        folder: &str,
    ) -> Result<Vec<ManifestEntry>, StagingError> {
        let prefix = format!("{}{folder}/", self.manifest_prefix(run_id));
        let mut out = Vec::new();
        for key in self.list(&prefix).await? {
            out.extend(self.read_lines::<ManifestEntry>(&key).await?);
        }
        Ok(out)
    }

    /// Keys under `prefix` in the staging bucket.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StagingError> {
        let mut keys = Vec::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(&self.location.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| StagingError::List {
                bucket: self.location.bucket.clone(),
                prefix: prefix.to_owned(),
                source: Box::new(e),
            })?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        Ok(keys)
    }

    /// The JSON lines of a staging object (blank lines skipped).
    pub async fn read_lines<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Vec<T>, StagingError> {
        let bytes = self.get(key).await?;
        bytes
            .split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
            .map(|(i, line)| {
                serde_json::from_slice(line).map_err(|source| StagingError::Parse {
                    bucket: self.location.bucket.clone(),
                    key: key.to_owned(),
                    line: i + 1,
                    source,
                })
            })
            .collect()
    }

    /// A staging object's bytes.
    pub async fn get(&self, key: &str) -> Result<Vec<u8>, StagingError> {
        self.get_optional(key)
            .await?
            .ok_or_else(|| StagingError::Missing {
                bucket: self.location.bucket.clone(),
                key: key.to_owned(),
            })
    }

    async fn get_optional(&self, key: &str) -> Result<Option<Vec<u8>>, StagingError> {
        let out = match self
            .s3
            .get_object()
            .bucket(&self.location.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(SdkError::ServiceError(e)) if e.err().is_no_such_key() => return Ok(None),
            Err(e) => {
                return Err(StagingError::Get {
                    bucket: self.location.bucket.clone(),
                    key: key.to_owned(),
                    source: Box::new(e),
                })
            }
        };
        let body = out
            .body
            .collect()
            .await
            .map_err(|source| StagingError::Body {
                bucket: self.location.bucket.clone(),
                key: key.to_owned(),
                source,
            })?;
        Ok(Some(body.to_vec()))
    }

    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StagingError> {
        self.s3
            .put_object()
            .bucket(&self.location.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| StagingError::Put {
                bucket: self.location.bucket.clone(),
                key: key.to_owned(),
                source: Box::new(e),
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_locations_parse() {
        let l = S3Location::parse("s3://b/some/prefix").unwrap();
        assert_eq!(
            (l.bucket.as_str(), l.prefix.as_str()),
            ("b", "some/prefix/")
        );
        assert_eq!(l.uri("x/"), "s3://b/some/prefix/x/");
        let l = S3Location::parse("s3://b/").unwrap();
        assert_eq!(l.prefix, "");
        for bad in ["b/prefix", "s3:///prefix", "https://b/p"] {
            assert!(S3Location::parse(bad).is_err(), "{bad}");
        }
    }
}
