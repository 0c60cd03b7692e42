//! What the worker does with one queue message: parse it, process each job,
//! write the outcome, and decide whether the message is deleted.

use std::sync::Arc;
use std::time::Duration;

use docsort_schema::{Delivery, FailureReason, Job, LabelRecord, Status};

use crate::classify::{Classifier, ClassifyError};
use crate::extract::{extract_bounded, Isolation};
use crate::fetch::{fetch, normalise_etag, FetchError, ObjectMeta};
use crate::metrics::Metrics;
use crate::store::{LabelStore, Lease, StoreError, Written};

/// Whether a message is finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Every job in it has its final record (or needed none): delete it.
    Delete,
    /// Leave it: it is redelivered after the visibility timeout, or reaches the DLQ.
    Leave,
}

/// How one job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Labeled now.
    Labeled(String),
    /// Recorded as `failed/<reason>`.
    Failed(FailureReason),
    /// This object was already labeled with this prompt: no model call, no write.
    AlreadyLabeled,
    /// A newer object version's record is already stored.
    Superseded,
    /// Another worker is classifying this object version now: try again later.
    Deferred,
}

/// A problem that is not the document's fault: the message is left for redelivery.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Classify(#[from] ClassifyError),
}

/// Per-document bounds of a [`Worker`].
#[derive(Debug, Clone)]
pub struct Bounds {
    /// Largest object downloaded.
    pub max_object_bytes: u64,
    /// Wall-time cap of extraction.
    pub extract_timeout: Duration,
    /// Where extraction runs (and its memory ceiling).
    pub isolation: Isolation,
    /// How long a lease taken before the model call lasts.
    pub lease_ttl: Duration,
}

/// Everything needed to process a job; one per process, shared by the pool.
#[derive(Debug)]
pub struct Worker {
    s3: aws_sdk_s3::Client,
    store: LabelStore,
    classifier: Classifier,
    bounds: Bounds,
    metrics: Arc<Metrics>,
    /// Distinguishes this process's leases from other workers'.
    instance: String,
}

impl Worker {
    /// A worker that reads with `s3`, writes to `store` and asks `classifier`,
    /// counting into `metrics`.
    pub fn new(
        s3: aws_sdk_s3::Client,
        store: LabelStore,
        classifier: Classifier,
        bounds: Bounds,
        metrics: Arc<Metrics>,
    ) -> Self {
        let instance = format!("{:016x}", rand::random::<u64>());
        Worker {
            s3,
            store,
            classifier,
            bounds,
            metrics,
            instance,
        }
    }

    /// The run's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Processes one message body and says whether to delete the message.
    pub async fn handle(&self, message_id: &str, body: &str, receive_count: u32) -> Disposition {
        let jobs = match Delivery::parse(body) {
            Ok(Delivery::Jobs(jobs)) => jobs,
            Ok(Delivery::Ignore(why)) => {
                Metrics::inc(&self.metrics.ignored);
                tracing::info!(message_id, reason = %why, "message acknowledged, nothing to classify");
                return Disposition::Delete;
            }
            Err(e) => {
                Metrics::inc(&self.metrics.rejected);
                tracing::warn!(
                    message_id, receive_count, error = %e,
                    "message body is not a docsort message; leaving it for the DLQ"
                );
                return Disposition::Leave;
            }
        };
        let mut disposition = Disposition::Delete;
        for job in &jobs {
            let uri = job.uri();
            match self.process(job, message_id).await {
                Ok(JobOutcome::Deferred) => {
                    Metrics::inc(&self.metrics.deferred);
                    tracing::info!(message_id, %uri, "another worker is classifying this object; message left for later");
                    disposition = Disposition::Leave;
                }
                Ok(outcome) => self.log_outcome(message_id, &uri, &outcome),
                Err(e) => {
                    Metrics::inc(&self.metrics.retried);
                    if matches!(&e, JobError::Classify(c) if !c.is_transient()) {
                        tracing::error!(
                            message_id, %uri, error = &e as &dyn std::error::Error,
                            "the model rejected the call (check --model-id, the region and bedrock:InvokeModel); message left for redelivery"
                        );
                    } else {
                        tracing::warn!(message_id, %uri, receive_count, error = &e as &dyn std::error::Error, "transient failure; message left for redelivery");
                    }
                    disposition = Disposition::Leave;
                }
            }
        }
        disposition
    }

    fn log_outcome(&self, message_id: &str, uri: &str, outcome: &JobOutcome) {
        match outcome {
            JobOutcome::Labeled(label) => {
                Metrics::inc(&self.metrics.labeled);
                tracing::info!(message_id, uri, label = %label, "labeled");
            }
            JobOutcome::Failed(reason) => {
                Metrics::inc(&self.metrics.failed);
                tracing::info!(message_id, uri, reason = %reason, "failed");
            }
            JobOutcome::AlreadyLabeled => {
                Metrics::inc(&self.metrics.skipped);
                tracing::info!(message_id, uri, "already labeled; no model call");
            }
            JobOutcome::Superseded => {
                Metrics::inc(&self.metrics.superseded);
                tracing::info!(
                    message_id,
                    uri,
                    "a newer object version is already recorded"
                );
            }
            JobOutcome::Deferred => {}
        }
    }

    /// Processes one job to its final record.
    pub async fn process(&self, job: &Job, message_id: &str) -> Result<JobOutcome, JobError> {
        let prompt_version = self.classifier.prompt_version();
        let existing = self.store.get(&job.uri()).await?;
        if labeled_already(
            existing.as_ref(),
            prompt_version,
            job.etag.as_deref().map(normalise_etag).as_deref(),
        ) {
            return Ok(JobOutcome::AlreadyLabeled);
        }
        let fetched = match fetch(&self.s3, job, self.bounds.max_object_bytes).await {
            Ok(f) => f,
            Err(FetchError::NotFound) => {
                let detail = "The object does not exist (deleted, or never written).";
                return self
                    .write_failure(
                        job,
                        &ObjectMeta::default(),
                        FailureReason::NotFound,
                        detail,
                        None,
                        existing.as_ref(),
                    )
                    .await;
            }
            Err(FetchError::TooLarge { size, cap, meta }) => {
                let detail =
                    format!("The object is {size} bytes, over the worker's {cap}-byte cap.");
                return self
                    .write_failure(
                        job,
                        &meta,
                        FailureReason::TooLarge,
                        &detail,
                        None,
                        existing.as_ref(),
                    )
                    .await;
            }
            Err(e) => return Err(e.into()),
        };
        let meta = fetched.meta;
        if labeled_already(existing.as_ref(), prompt_version, meta.etag.as_deref()) {
            return Ok(JobOutcome::AlreadyLabeled);
        }
        if let (Some(stored), Some(ours)) = (
            existing.as_ref().and_then(|r| r.last_modified),
            meta.last_modified,
        ) {
            if stored > ours {
                return Ok(JobOutcome::Superseded);
            }
        }
        let uri = job.uri();
        let owner = format!("{}/{message_id}", self.instance);
        let etag = meta.etag.clone().unwrap_or_default();
        if self
            .store
            .acquire_lease(&uri, &etag, &owner, self.bounds.lease_ttl)
            .await?
            == Lease::HeldElsewhere
        {
            return Ok(JobOutcome::Deferred);
        }
        // Another delivery may have stored the label between our read and the
        // lease (its holder had just released it): read again under the lease.
        let existing = self.store.get(&uri).await?;
        let outcome = if labeled_already(existing.as_ref(), prompt_version, meta.etag.as_deref()) {
            Ok(JobOutcome::AlreadyLabeled)
        } else {
            self.classify_and_store(job, fetched.bytes, &meta, existing.as_ref())
                .await
        };
        if let Err(e) = self.store.release_lease(&uri, &owner).await {
            tracing::warn!(%uri, error = &e as &dyn std::error::Error, "cannot release lease; it expires by itself");
        }
        outcome
    }

    async fn classify_and_store(
        &self,
        job: &Job,
        bytes: Vec<u8>,
        meta: &ObjectMeta,
        existing: Option<&LabelRecord>,
    ) -> Result<JobOutcome, JobError> {
        let budget = self.classifier.max_text_chars();
        let (extracted, stats) = extract_bounded(
            &self.bounds.isolation,
            bytes,
            budget,
            self.bounds.extract_timeout,
        )
        .await;
        self.metrics.record_extraction(&job.uri(), stats);
        let extracted = match extracted {
            Ok(x) => x,
            Err(e) => {
                let detail = e.detail();
                return self
                    .write_failure(job, meta, e.reason(), &detail, e.pages(), existing)
                    .await;
            }
        };
        let answer = self.classifier.classify(&extracted.text).await?;
        Metrics::add(&self.metrics.model_calls, u64::from(answer.calls));
        Metrics::add(&self.metrics.input_tokens, answer.input_tokens);
        Metrics::add(&self.metrics.output_tokens, answer.output_tokens);
        let mut record = self.base_record(job, meta, existing, true);
        self.classifier.fill_record(&mut record, &extracted, answer);
        if let Some(cost) = record.cost_usd {
            Metrics::add(&self.metrics.cost_nano_usd, (cost * 1e9).round() as u64);
        }
        let outcome = match &record.label {
            Some(label) => JobOutcome::Labeled(label.clone()),
            None => JobOutcome::Failed(FailureReason::UnparseableAnswer),
        };
        Ok(match self.store.put(&record).await? {
            Written::Stored => outcome,
            Written::Superseded => JobOutcome::Superseded,
        })
    }

    async fn write_failure(
        &self,
        job: &Job,
        meta: &ObjectMeta,
        reason: FailureReason,
        detail: &str,
        pages: Option<u32>,
        existing: Option<&LabelRecord>,
    ) -> Result<JobOutcome, JobError> {
        let mut record = self.base_record(job, meta, existing, false);
        record.status = Status::Failed;
        record.failure = Some(reason.clone());
        record.detail = Some(detail.to_owned());
        record.pages = pages;
        Ok(match self.store.put(&record).await? {
            Written::Stored => JobOutcome::Failed(reason),
            Written::Superseded => JobOutcome::Superseded,
        })
    }

    fn base_record(
        &self,
        job: &Job,
        meta: &ObjectMeta,
        existing: Option<&LabelRecord>,
        reached_model: bool,
    ) -> LabelRecord {
        let same_object = existing.filter(|r| r.etag.is_some() && r.etag == meta.etag);
        let attempts = same_object.map_or(0, |r| r.attempts) + u32::from(reached_model);
        let mut record = LabelRecord::new(
            job.uri(),
            job.bucket.clone(),
            job.key.clone(),
            self.classifier.prompt_version().to_owned(),
            job.source,
        );
        record.status = Status::Labeled;
        record.version_id = meta.version_id.clone();
        record.etag = meta.etag.clone();
        record.size_bytes = meta.size;
        record.last_modified = meta.last_modified;
        record.attempts = attempts;
        record
    }
}

/// Whether `record` is a label for the object with `etag` under `prompt_version`.
fn labeled_already(record: Option<&LabelRecord>, prompt_version: &str, etag: Option<&str>) -> bool {
    record.is_some_and(|r| {
        r.status == Status::Labeled
            && r.prompt_version == prompt_version
            && etag.is_some()
            && r.etag.as_deref() == etag
    })
}
