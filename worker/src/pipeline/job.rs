//! The job processor: what the worker does with one queue message. It parses
//! the body, takes each job to its final record (fetch, extract, classify,
//! conditional write) and says whether the message is deleted.

use std::sync::Arc;
use std::time::Duration;

use docsort_schema::retry::Retryable;
use docsort_schema::{Delivery, FailureReason, Job, LabelRecord, Outcome, Status};

use super::budget::Budget;
use super::fetch::{fetch, normalise_etag, FetchError, ObjectMeta};
use super::state::{Lease, StateError, StateStore};
use super::store::{LabelStore, StoreError, Written};
use crate::classify::{Classifier, ClassifyError};
use crate::events::{Event, Metrics};
use crate::extract::{extract_bounded, Extracted, Limits};

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
    /// This object was already labeled under this label version: no model call, no write.
    AlreadyLabeled,
    /// A newer object version's record is already stored.
    Superseded,
    /// Another worker is classifying this object version now: try again later.
    Deferred,
}

/// A job taken as far as the model by [`Worker::prepare`].
#[derive(Debug)]
pub enum Prepared {
    /// Finished without a model call.
    Done(JobOutcome),
    /// Extracted, waiting for the model.
    Ready(Box<Ready>),
}

/// A document extracted and waiting for the model.
#[derive(Debug)]
pub struct Ready {
    /// The job.
    pub job: Job,
    /// What S3 said about the object.
    pub meta: ObjectMeta,
    /// What extraction produced (text, or the first page's image).
    pub extracted: Extracted,
    /// Earlier deliveries of this object version that reached the model.
    pub attempts: u32,
}

/// What [`Worker::fetch_checked`] found.
enum Fetch {
    Got(super::fetch::Fetched),
    Done(JobOutcome),
}

/// A problem that is not the document's fault: the message is left for redelivery.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Classify(#[from] ClassifyError),
}

impl Retryable for JobError {
    /// Everything but a refused model call may pass on a later delivery.
    fn is_retryable(&self) -> bool {
        match self {
            JobError::Classify(e) => e.is_retryable(),
            _ => true,
        }
    }
}

/// Per-document bounds of a [`Worker`].
#[derive(Debug, Clone)]
pub struct Bounds {
    /// Largest object downloaded.
    pub max_object_bytes: u64,
    /// Extraction's time cap, isolation and memory ceiling.
    pub extract: Limits,
    /// How long a lease taken before the model call lasts.
    pub lease_ttl: Duration,
}

/// Everything needed to process a job; one per process, shared by the pool.
#[derive(Debug)]
pub struct Worker {
    s3: aws_sdk_s3::Client,
    store: LabelStore,
    state: StateStore,
    classifier: Classifier,
    bounds: Bounds,
    metrics: Arc<Metrics>,
    /// The daily spend cap, when set.
    budget: Option<Arc<Budget>>,
    /// Distinguishes this process's leases from other workers'.
    instance: String,
}

impl Worker {
    /// A worker that reads with `s3`, writes records to `store`, takes leases
    /// in `state` and asks `classifier`, counting into `metrics` and, when
    /// set, adding each answer's cost to `budget`.
    pub fn new(
        s3: aws_sdk_s3::Client,
        store: LabelStore,
        state: StateStore,
        classifier: Classifier,
        bounds: Bounds,
        metrics: Arc<Metrics>,
        budget: Option<Arc<Budget>>,
    ) -> Self {
        let instance = format!("{:016x}", rand::random::<u64>());
        Worker {
            s3,
            store,
            state,
            classifier,
            bounds,
            metrics,
            budget,
            instance,
        }
    }

    /// The run's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The daily spend cap, when set.
    pub fn budget(&self) -> Option<&Budget> {
        self.budget.as_deref()
    }

    /// Processes one message body and says whether to delete the message.
    pub async fn handle(&self, message_id: &str, body: &str, receive_count: u32) -> Disposition {
        let jobs = match Delivery::parse(body) {
            Ok(Delivery::Jobs(jobs)) => jobs,
            Ok(Delivery::Ignore(reason)) => {
                self.metrics.emit(Event::Ignored {
                    message_id,
                    reason: &reason,
                });
                return Disposition::Delete;
            }
            Err(error) => {
                self.metrics.emit(Event::Rejected {
                    message_id,
                    receive_count,
                    error: &error,
                });
                return Disposition::Leave;
            }
        };
        let mut disposition = Disposition::Delete;
        for job in &jobs {
            let uri = &job.uri();
            let result = self.process(job, message_id).await;
            let event = match &result {
                Ok(JobOutcome::Labeled(label)) => Event::Labeled {
                    message_id,
                    uri,
                    label,
                },
                Ok(JobOutcome::Failed(reason)) => Event::Failed {
                    message_id,
                    uri,
                    reason,
                },
                Ok(JobOutcome::AlreadyLabeled) => Event::Skipped { message_id, uri },
                Ok(JobOutcome::Superseded) => Event::Superseded { message_id, uri },
                Ok(JobOutcome::Deferred) => Event::Deferred { message_id, uri },
                Err(error) => Event::Retried {
                    message_id,
                    uri,
                    receive_count,
                    error,
                    retryable: error.is_retryable(),
                },
            };
            if matches!(result, Ok(JobOutcome::Deferred) | Err(_)) {
                disposition = Disposition::Leave;
            }
            self.metrics.emit(event);
        }
        disposition
    }

    /// Processes one job to its final record.
    pub async fn process(&self, job: &Job, message_id: &str) -> Result<JobOutcome, JobError> {
        let version = self.classifier.prompt_version();
        let existing = self.store.get(&job.uri()).await?;
        let listed_etag = job.etag.as_deref().map(normalise_etag);
        if labeled_already(existing.as_ref(), version, listed_etag.as_deref()) {
            return Ok(JobOutcome::AlreadyLabeled);
        }
        let fetched = match self.fetch_checked(job, existing.as_ref()).await? {
            Fetch::Got(fetched) => fetched,
            Fetch::Done(outcome) => return Ok(outcome),
        };
        let meta = fetched.meta;
        let uri = job.uri();
        let owner = format!("{}/{message_id}", self.instance);
        let etag = meta.etag.clone().unwrap_or_default();
        if self
            .state
            .acquire_lease(&uri, &etag, &owner, self.bounds.lease_ttl)
            .await?
            == Lease::HeldElsewhere
        {
            return Ok(JobOutcome::Deferred);
        }
        // Another delivery may have stored the label between our read and the
        // lease (its holder had just released it): read again under the lease.
        let outcome = match self.store.get(&uri).await {
            Ok(existing) if labeled_already(existing.as_ref(), version, meta.etag.as_deref()) => {
                Ok(JobOutcome::AlreadyLabeled)
            }
            Ok(existing) => {
                self.classify_and_store(job, fetched.bytes, &meta, existing.as_ref())
                    .await
            }
            Err(e) => Err(e.into()),
        };
        if let Err(e) = self.state.release_lease(&uri, &owner).await {
            tracing::warn!(%uri, error = &e as &dyn std::error::Error, "cannot release lease; it expires by itself");
        }
        outcome
    }

    /// Takes one job as far as the model without asking it (the batch
    /// backfill's ingestion): read, fetched and extracted, or finished
    /// without a model call (already labeled, superseded, or a failure
    /// record written). Takes no lease: the model is not called here.
    pub async fn prepare(&self, job: &Job) -> Result<Prepared, JobError> {
        let existing = self.store.get(&job.uri()).await?;
        let listed_etag = job.etag.as_deref().map(normalise_etag);
        let version = self.classifier.prompt_version();
        if labeled_already(existing.as_ref(), version, listed_etag.as_deref()) {
            return Ok(Prepared::Done(JobOutcome::AlreadyLabeled));
        }
        let fetched = match self.fetch_checked(job, existing.as_ref()).await? {
            Fetch::Got(fetched) => fetched,
            Fetch::Done(outcome) => return Ok(Prepared::Done(outcome)),
        };
        let meta = fetched.meta;
        match self
            .extract(job, fetched.bytes, &meta, existing.as_ref())
            .await?
        {
            Ok(extracted) => Ok(Prepared::Ready(Box::new(Ready {
                job: job.clone(),
                attempts: earlier_attempts(existing.as_ref(), &meta),
                meta,
                extracted,
            }))),
            Err(outcome) => Ok(Prepared::Done(outcome)),
        }
    }

    /// Downloads `job`'s object; a missing or oversized object gets its
    /// failure record, and an object already labeled or superseded needs
    /// nothing more.
    async fn fetch_checked(
        &self,
        job: &Job,
        existing: Option<&LabelRecord>,
    ) -> Result<Fetch, JobError> {
        let fetched = match fetch(&self.s3, job, self.bounds.max_object_bytes).await {
            Ok(f) => f,
            Err(FetchError::NotFound) => {
                let outcome = Outcome::failed(
                    FailureReason::NotFound,
                    "The object does not exist (deleted, or never written).",
                );
                let record = self.record(job, &ObjectMeta::default(), existing, false, outcome);
                return Ok(Fetch::Done(self.write(record).await?));
            }
            Err(FetchError::TooLarge { size, cap, meta }) => {
                let outcome = Outcome::failed(
                    FailureReason::TooLarge,
                    format!("The object is {size} bytes, over the worker's {cap}-byte cap."),
                );
                let record = self.record(job, &meta, existing, false, outcome);
                return Ok(Fetch::Done(self.write(record).await?));
            }
            Err(e) => return Err(e.into()),
        };
        let version = self.classifier.prompt_version();
        if labeled_already(existing, version, fetched.meta.etag.as_deref()) {
            return Ok(Fetch::Done(JobOutcome::AlreadyLabeled));
        }
        if let (Some(stored), Some(ours)) = (
            existing.and_then(|r| r.last_modified),
            fetched.meta.last_modified,
        ) {
            if stored > ours {
                return Ok(Fetch::Done(JobOutcome::Superseded));
            }
        }
        Ok(Fetch::Got(fetched))
    }

    /// Extracts the document within the worker's bounds; a document that
    /// cannot be read gets its failure record (`Err`: how the job ended).
    async fn extract(
        &self,
        job: &Job,
        bytes: Vec<u8>,
        meta: &ObjectMeta,
        existing: Option<&LabelRecord>,
    ) -> Result<Result<Extracted, JobOutcome>, JobError> {
        let budget = self.classifier.max_text_chars();
        let (extracted, stats) = extract_bounded(
            &self.bounds.extract,
            bytes,
            budget,
            self.classifier.fallback(),
        )
        .await;
        self.metrics.record_extraction(&job.uri(), stats);
        match extracted {
            Ok(x) => Ok(Ok(x)),
            Err(e) => {
                let outcome = Outcome::failed(e.reason(), e.detail());
                let mut record = self.record(job, meta, existing, false, outcome);
                record.pages = e.pages();
                Ok(Err(self.write(record).await?))
            }
        }
    }

    async fn classify_and_store(
        &self,
        job: &Job,
        bytes: Vec<u8>,
        meta: &ObjectMeta,
        existing: Option<&LabelRecord>,
    ) -> Result<JobOutcome, JobError> {
        let extracted = match self.extract(job, bytes, meta, existing).await? {
            Ok(extracted) => extracted,
            Err(outcome) => return Ok(outcome),
        };
        let answer = self.classifier.classify(&extracted).await?;
        let mut record = self.record(job, meta, existing, true, answer.outcome());
        self.classifier.fill_usage(&mut record, &extracted, &answer);
        self.metrics.record_answer(
            answer.calls,
            answer.input_tokens,
            answer.output_tokens,
            record.cost_usd,
        );
        if let (Some(budget), Some(cost)) = (&self.budget, record.cost_usd) {
            if let Err(e) = budget.add(cost).await {
                tracing::warn!(uri = %record.uri, error = &e as &dyn std::error::Error, "cannot add this document's cost to the daily spend");
            }
        }
        self.write(record).await
    }

    /// Writes `record` under the write rules.
    async fn write(&self, record: LabelRecord) -> Result<JobOutcome, JobError> {
        Ok(match self.store.put(&record).await? {
            Written::Superseded => JobOutcome::Superseded,
            Written::Stored => match record.outcome {
                Outcome::Labeled { label } => JobOutcome::Labeled(label),
                Outcome::Failed { failure, .. } => JobOutcome::Failed(failure),
            },
        })
    }

    /// The record of `outcome` for `job`'s object; `reached_model` counts
    /// this delivery in `attempts`.
    fn record(
        &self,
        job: &Job,
        meta: &ObjectMeta,
        existing: Option<&LabelRecord>,
        reached_model: bool,
        outcome: Outcome,
    ) -> LabelRecord {
        let mut record = LabelRecord::new(
            job.uri(),
            job.bucket.clone(),
            job.key.clone(),
            self.classifier.prompt_version().to_owned(),
            job.source,
            outcome,
        );
        record.version_id = meta.version_id.clone();
        record.etag = meta.etag.clone();
        record.size_bytes = meta.size;
        record.last_modified = meta.last_modified;
        record.attempts = earlier_attempts(existing, meta) + u32::from(reached_model);
        record
    }
}

/// Deliveries of the object `meta` describes that reached the model, as
/// `existing` counts them (0 when it is about another object version).
fn earlier_attempts(existing: Option<&LabelRecord>, meta: &ObjectMeta) -> u32 {
    existing
        .filter(|r| r.etag.is_some() && r.etag == meta.etag)
        .map_or(0, |r| r.attempts)
}

/// Whether `record` is a label for the object with `etag` under `version`.
fn labeled_already(record: Option<&LabelRecord>, version: &str, etag: Option<&str>) -> bool {
    record.is_some_and(|r| {
        r.status() == Status::Labeled
            && r.prompt_version == version
            && etag.is_some()
            && r.etag.as_deref() == etag
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use docsort_schema::Source;

    fn stored(outcome: Outcome, version: &str, etag: Option<&str>) -> LabelRecord {
        let mut r = LabelRecord::new(
            "s3://b/k.pdf".into(),
            "b".into(),
            "k.pdf".into(),
            version.into(),
            Source::S3Event,
            outcome,
        );
        r.etag = etag.map(str::to_owned);
        r
    }

    #[test]
    fn only_a_label_of_this_object_and_version_is_kept() {
        let label = || Outcome::Labeled {
            label: "invoice".into(),
        };
        let same = stored(label(), "v1", Some("e1"));
        assert!(labeled_already(Some(&same), "v1", Some("e1")));
        // No record; another label version; another object (etag); an unknown etag.
        assert!(!labeled_already(None, "v1", Some("e1")));
        assert!(!labeled_already(Some(&same), "v2", Some("e1")));
        assert!(!labeled_already(Some(&same), "v1", Some("e2")));
        assert!(!labeled_already(Some(&same), "v1", None));
        assert!(!labeled_already(
            Some(&stored(label(), "v1", None)),
            "v1",
            None
        ));
        // A failure is never final: the document is tried again.
        let failed = stored(
            Outcome::failed(FailureReason::Timeout, "Slow."),
            "v1",
            Some("e1"),
        );
        assert!(!labeled_already(Some(&failed), "v1", Some("e1")));
    }
}
