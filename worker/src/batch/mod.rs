//! The batch backfill (`docsort-worker batch`): the incremental backfill's
//! selection, labeled through Bedrock batch inference at half the
//! on-demand price.
//!
//! Files: this one holds the settings, the run's state machine and job
//! submission; `ingest` stages, `collect` joins outputs,
//! [`staging`] is the S3 layout, [`jobs`] the control plane, [`output`]
//! Bedrock's output lines, and `summary` what a run reports.
//!
//! A run goes through three stages, each resumable from the staging prefix
//! ([`staging`]) after a kill at any point (the first two overlap: a job is
//! submitted as soon as its folder is full):
//! 1. **Ingest.** List the prefix as the queue backfill does, then fetch and
//!    extract each selected object with the worker's bounds
//!    ([`Worker::prepare`]). Failures are recorded as usual. Each document
//!    becomes one JSONL record whose `modelInput` is the Converse request
//!    the on-demand classifier would send. Records are staged in chunks,
//!    with a manifest mapping `recordId` to bucket, key and etag. Chunks fill
//!    job folders up to the per-job record and size quotas ([`Quotas`]). A
//!    resumed run skips what is staged and re-extracts nothing of it.
//! 2. **Submit.** One job per folder, named after the run and folder: it is
//!    looked up by name before it is created, and created with that name as
//!    its idempotency token, so a resumed run finds its jobs and never pays
//!    twice. A folder below the job minimum goes to the on-demand queue.
//! 3. **Wait and collect.** Job statuses are polled with backoff. A finished
//!    job's outputs are joined to its manifest on `recordId`. Answers become
//!    labels, under the same conditional write rules, at the batch price,
//!    naming the job in `batch_job`. An answer that is no category gets the
//!    on-demand re-ask here (one Converse call, billed on-demand). Error
//!    records, and records a failed, stopped, expired or partial job never
//!    processed, go to the on-demand queue, where the pool labels them.

mod collect;
mod ingest;
pub mod jobs;
pub mod output;
pub mod staging;
mod summary;

use std::sync::Arc;
use std::time::Duration;

use docsort_producer::backfill::BackfillError;
use docsort_producer::Sender;
use docsort_schema::Job;
use indicatif::ProgressBar;

use crate::classify::bedrock::BedrockClassifier;
use crate::classify::pricing::Price;
use crate::classify::{Classifier, ClassifierSettings, SetupError};
use crate::events::Metrics;
use crate::extract::Limits;
use crate::pipeline::aws::Clients;
use crate::pipeline::emf::EmfWriter;
use crate::pipeline::job::{Bounds, Worker};
use crate::pipeline::state::StateStore;
use crate::pipeline::store::{LabelStore, StoreError};
use jobs::{Created, JobSpec, JobsError, Phase};
use staging::{JobState, RunState, S3Location, Staging, StagingError};
pub use summary::BatchSummary;

/// Bedrock's batch inference quotas that shape the jobs. Defaults are AWS's
/// published defaults for Anthropic models (Service Quotas, Amazon Bedrock);
/// an account with raised quotas sets its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Fewest records a job may have; smaller remainders go on-demand.
    pub min_records: u64,
    /// Most records in one job.
    pub max_records: u64,
    /// Most bytes of input in one job.
    pub max_job_bytes: u64,
    /// Most records in one input file (docsort's chunk, also what a resumed
    /// run may re-extract at most).
    pub max_file_records: u64,
    /// Most bytes in one input file.
    pub max_file_bytes: u64,
    /// Jobs submitted or in progress at once.
    pub max_running_jobs: usize,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            min_records: 100,
            max_records: 50_000,
            max_job_bytes: 5 * 1024 * 1024 * 1024,
            max_file_records: 1_000,
            max_file_bytes: 64 * 1024 * 1024,
            max_running_jobs: 20,
        }
    }
}

/// Everything `docsort-worker batch` needs to know.
#[derive(Debug, Clone)]
pub struct BatchSettings {
    /// The bucket to list.
    pub bucket: String,
    /// Only keys under this prefix.
    pub prefix: String,
    /// The labels table.
    pub table: String,
    /// The on-demand work queue (error records, records of jobs
    /// that ended early, folders below the minimum).
    pub queue_url: String,
    /// The batch service role Bedrock assumes to read inputs and write outputs.
    pub role_arn: String,
    /// Where inputs, manifests, outputs and the run state live.
    pub staging: S3Location,
    /// First wait between status polls; it doubles while nothing changes.
    pub poll: Duration,
    /// Longest wait between status polls.
    pub max_poll: Duration,
    /// Hours before Bedrock stops a job (24 to 168).
    pub timeout_hours: i32,
    /// Job shapes.
    pub quotas: Quotas,
    /// Documents fetched and extracted at once.
    pub concurrency: usize,
    /// Also select failed documents whose reason may pass.
    pub retry_failed: bool,
    /// Also select documents labeled under another label version.
    pub relabel: bool,
    /// Largest object downloaded.
    pub max_object_bytes: u64,
    /// Extraction's bounds.
    pub extract: Limits,
    /// The Bedrock classifier whose requests the records carry.
    pub classifier: ClassifierSettings,
    /// CloudWatch namespace of the EMF metric lines (one per collected job:
    /// labels, tokens, cost); `None`: no metric lines.
    pub metrics_namespace: Option<String>,
}

/// The batch run stopped; run it again to resume.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("cannot set up the classifier")]
    Classifier(#[from] SetupError),
    #[error("batch inference runs Bedrock models only (not the local model)")]
    NotBedrock,
    #[error("an unfinished batch run of this prefix ({run_id}) was staged for model {model_id} and label version {label_version}; run it again with the same model, taxonomy and text budget to finish it, or delete {state_uri} to abandon it")]
    OtherRun {
        run_id: String,
        model_id: String,
        label_version: String,
        state_uri: String,
    },
    #[error(transparent)]
    Select(#[from] BackfillError),
    #[error(transparent)]
    Staging(#[from] StagingError),
    #[error(transparent)]
    Jobs(#[from] JobsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} document(s) could not be sent to the on-demand queue; run again (sending twice is harmless)")]
    Enqueue(u64),
}

/// One batch run's fixed parts.
struct Run<'a> {
    settings: &'a BatchSettings,
    clients: &'a Clients,
    control: &'a aws_sdk_bedrock::Client,
    classifier: &'a BedrockClassifier,
    worker: Worker,
    staging: Staging,
    store: LabelStore,
    sender: Sender,
    /// The batch price of the model, when known.
    price: Option<Price>,
    /// Metric lines, when a namespace is set.
    emf: Option<std::sync::Mutex<EmfWriter>>,
}

/// Runs (or resumes) the batch backfill of `settings.bucket`/`settings.prefix`
/// to completion: every selected document ends labeled, recorded as failed,
/// or on the on-demand queue.
/// Metric lines (when `settings.metrics_namespace` is set) go to `metrics_out`.
pub async fn run(
    clients: &Clients,
    control: &aws_sdk_bedrock::Client,
    settings: &BatchSettings,
    metrics_out: Box<dyn std::io::Write + Send>,
) -> Result<BatchSummary, BatchError> {
    let metrics = Arc::new(Metrics::default());
    let bedrock = clients.bedrock.clone();
    let classifier = Classifier::new(&settings.classifier, || bedrock, metrics.clone())?;
    let Classifier::Bedrock(bedrock) = &classifier else {
        return Err(BatchError::NotBedrock);
    };
    let price = bedrock.price().map(Price::batch);
    let store = LabelStore::new(clients.dynamodb.clone(), settings.table.clone());
    let worker = Worker::new(
        clients.s3.clone(),
        store.clone(),
        // `prepare` takes no lease: the state table is not used.
        StateStore::new(clients.dynamodb.clone(), String::new()),
        classifier.clone(),
        Bounds {
            max_object_bytes: settings.max_object_bytes,
            extract: settings.extract.clone(),
            lease_ttl: Duration::from_secs(60),
        },
        metrics,
        None,
    );
    let run = Run {
        settings,
        clients,
        control,
        classifier: bedrock,
        worker,
        staging: Staging::new(
            clients.s3.clone(),
            settings.staging.clone(),
            &settings.bucket,
            &settings.prefix,
        ),
        store,
        sender: Sender::new(clients.sqs.clone(), settings.queue_url.clone(), 4),
        price,
        emf: settings
            .metrics_namespace
            .clone()
            .map(|ns| std::sync::Mutex::new(EmfWriter::new(ns, metrics_out))),
    };
    run.go().await
}

impl Run<'_> {
    async fn go(&self) -> Result<BatchSummary, BatchError> {
        let mut summary = BatchSummary::default();
        let version = self.classifier.version().to_owned();
        let model_id = self.classifier.model_id().to_owned();
        let mut state = match self.staging.load_state().await? {
            Some(state) if state.label_version == version && state.model_id == model_id => {
                tracing::info!(run_id = %state.run_id, ingested = state.ingested, jobs = state.jobs.len(), "resuming the unfinished batch run");
                state
            }
            Some(state) => {
                return Err(BatchError::OtherRun {
                    run_id: state.run_id,
                    model_id: state.model_id,
                    label_version: state.label_version,
                    state_uri: self.staging.state_uri(),
                })
            }
            None => {
                let state = RunState {
                    run_id: format!(
                        "{}-{:08x}",
                        chrono::Utc::now().format("%Y%m%dt%H%M%S"),
                        rand::random::<u32>()
                    ),
                    bucket: self.settings.bucket.clone(),
                    prefix: self.settings.prefix.clone(),
                    label_version: version.clone(),
                    model_id,
                    started_at: chrono::Utc::now(),
                    ingested: false,
                    jobs: Vec::new(),
                };
                self.staging.save_state(&state).await?;
                tracing::info!(run_id = %state.run_id, staging = %self.staging.location.uri(""), "batch run started");
                state
            }
        };
        if !state.ingested {
            self.ingest(&mut state, &version, &mut summary).await?;
            state.ingested = true;
            self.staging.save_state(&state).await?;
        }
        self.wait_and_collect(&mut state, &mut summary).await?;
        self.staging.finish(&state).await?;
        Ok(summary)
    }

    /// Creates the planned jobs that have none yet, as many as the running
    /// job quota allows (a quota or throttling refusal: later).
    async fn submit(
        &self,
        state: &mut RunState,
        summary: &mut BatchSummary,
    ) -> Result<(), BatchError> {
        let mut running = state
            .jobs
            .iter()
            .filter(|j| j.arn.is_some() && !j.done)
            .count();
        for i in 0..state.jobs.len() {
            let job = &state.jobs[i];
            if job.arn.is_some() || job.done {
                continue;
            }
            if running >= self.settings.quotas.max_running_jobs {
                break;
            }
            match jobs::create(
                self.control,
                &self.spec(state, job),
                &self.token(state, job),
            )
            .await?
            {
                Created::Job(arn) => {
                    tracing::info!(folder = %job.folder, records = job.records, %arn, "batch job submitted");
                    state.jobs[i].arn = Some(arn);
                    summary.jobs_created += 1;
                    running += 1;
                    // Saved at once: a kill now must not lose the ARN.
                    self.staging.save_state(state).await?;
                }
                Created::NotNow(why) => {
                    tracing::info!(folder = %job.folder, %why, "job quota reached; submitting later");
                    break;
                }
            }
        }
        Ok(())
    }

    /// Submits the planned jobs (as many at once as the quota allows), polls
    /// them with backoff and collects each as it finishes.
    async fn wait_and_collect(
        &self,
        state: &mut RunState,
        summary: &mut BatchSummary,
    ) -> Result<(), BatchError> {
        let mut delay = self.settings.poll;
        loop {
            let mut changed = false;
            self.submit(state, summary).await?;
            for i in 0..state.jobs.len() {
                let (Some(arn), false) = (state.jobs[i].arn.clone(), state.jobs[i].done) else {
                    continue;
                };
                let status = match jobs::status(self.control, &arn).await {
                    Ok(status) => status,
                    // Bedrock answered no (access denied, no such job): polling cannot help.
                    Err(e) if e.is_refusal() => return Err(e.into()),
                    Err(e) => {
                        tracing::warn!(%arn, error = &e as &dyn std::error::Error, "cannot read the job's status; polling again later");
                        continue;
                    }
                };
                let name = status.status.as_str().to_owned();
                if state.jobs[i].status.as_deref() != Some(&name) {
                    tracing::info!(%arn, status = %name, message = status.message.as_deref().unwrap_or(""), "batch job status");
                    state.jobs[i].status = Some(name);
                    changed = true;
                }
                if Phase::of(&status.status) != Phase::Running {
                    self.collect(state, i, &arn, summary).await?;
                    state.jobs[i].done = true;
                    changed = true;
                }
            }
            if changed {
                self.staging.save_state(state).await?;
                delay = self.settings.poll;
            } else {
                delay = (delay * 2).min(self.settings.max_poll.max(self.settings.poll));
            }
            if state.jobs.iter().all(|j| j.done) {
                return Ok(());
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// Sends documents to the on-demand queue.
    async fn enqueue(&self, jobs: Vec<Job>, summary: &mut BatchSummary) -> Result<(), BatchError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let sent = self.sender.send_all(jobs, &ProgressBar::hidden()).await;
        summary.on_demand += sent.enqueued;
        if sent.failed > 0 {
            return Err(BatchError::Enqueue(sent.failed));
        }
        Ok(())
    }

    fn spec(&self, state: &RunState, job: &JobState) -> JobSpec {
        JobSpec {
            name: format!("docsort-{}-{}", state.run_id, job.folder),
            input_uri: self
                .staging
                .uri(&self.staging.input_prefix(&state.run_id, &job.folder)),
            output_uri: self.staging.uri(&self.staging.output_prefix(&state.run_id)),
            model_id: state.model_id.clone(),
            role_arn: self.settings.role_arn.clone(),
            timeout_hours: self.settings.timeout_hours,
        }
    }

    /// The job's idempotency token: the same for every attempt at the same job.
    fn token(&self, state: &RunState, job: &JobState) -> String {
        format!("{}-{}", state.run_id, job.folder)
    }
}
