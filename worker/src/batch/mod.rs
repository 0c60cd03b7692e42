//! The batch backfill (`docsort-worker batch`): the incremental backfill's
//! selection, labeled through Bedrock batch inference at half the
//! on-demand price.
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

pub mod jobs;
pub mod output;
pub mod staging;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use docsort_producer::backfill::{BackfillError, BackfillSettings, Selected, Selector};
use docsort_producer::Sender;
use docsort_schema::{Job, LabelRecord, Outcome, Source, Status};
use futures::{stream, StreamExt};
use indicatif::ProgressBar;

use crate::classify::bedrock::BedrockClassifier;
use crate::classify::pricing::Price;
use crate::classify::{Classifier, ClassifierSettings, SetupError};
use crate::events::Metrics;
use crate::extract::Limits;
use crate::pipeline::aws::Clients;
use crate::pipeline::emf::EmfWriter;
use crate::pipeline::job::{Bounds, JobOutcome, Prepared, Ready, Worker};
use crate::pipeline::state::StateStore;
use crate::pipeline::store::{LabelStore, StoreError, Written};
use jobs::{Created, JobSpec, JobsError, Phase};
use output::RecordResult;
use staging::{JobState, ManifestEntry, RunState, S3Location, Staging, StagingError};

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

/// What a batch run did (a resumed run counts what it did itself).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BatchSummary {
    /// PDFs listed.
    pub listed: u64,
    /// Selected (no current label).
    pub selected: u64,
    /// Already staged by the interrupted run this one resumed.
    pub resumed: u64,
    /// Staged as batch records now.
    pub staged: u64,
    /// Recorded without a model (failed extraction, missing, too large,
    /// or labeled meanwhile).
    pub recorded: u64,
    /// Jobs created by this run.
    pub jobs_created: u64,
    /// Labels written from batch answers.
    pub labeled: u64,
    /// Batch answers not written: an equal or newer record was there.
    pub superseded: u64,
    /// Error records (sent on-demand).
    pub error_records: u64,
    /// Answers that were no category, re-asked on-demand here.
    pub reasked: u64,
    /// Documents recorded `failed` after the re-ask (no category twice).
    pub failed: u64,
    /// Records a job never processed (sent on-demand).
    pub unprocessed: u64,
    /// Documents in folders below the job minimum (sent on-demand).
    pub below_minimum: u64,
    /// Documents sent to the on-demand queue, all reasons together.
    pub on_demand: u64,
    /// Tokens of the answers written (batch answers and re-asks).
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Cost of the answers written: batch price, plus on-demand for re-asks, USD.
    pub cost_usd: f64,
}

impl BatchSummary {
    /// The pool's counters for the same outcomes, for metric lines.
    fn events(&self) -> crate::events::Summary {
        crate::events::Summary {
            labeled: self.labeled,
            failed: self.failed,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cost_usd: self.cost_usd,
            ..Default::default()
        }
    }
}

impl std::fmt::Display for BatchSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "listed {} / selected {} / staged {} / staged by the interrupted run {} / recorded without a model {} / jobs created {} / labeled {} / re-asked {} / failed after the re-ask {} / already stored {} / on-demand {} (error records {}, unprocessed {}, below the job minimum {}) / cost ${:.6}",
            self.listed,
            self.selected,
            self.staged,
            self.resumed,
            self.recorded,
            self.jobs_created,
            self.labeled,
            self.reasked,
            self.failed,
            self.superseded,
            self.on_demand,
            self.error_records,
            self.unprocessed,
            self.below_minimum,
            self.cost_usd
        )
    }
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

    /// Stages every selected document that is not staged yet. Each job
    /// folder is submitted as soon as it is full, so jobs run while the rest
    /// is extracted.
    async fn ingest(
        &self,
        state: &mut RunState,
        version: &str,
        summary: &mut BatchSummary,
    ) -> Result<(), BatchError> {
        let mut writer = ChunkWriter::resume(self, state).await?;
        summary.resumed = writer.staged.len() as u64;
        let selection = BackfillSettings {
            bucket: self.settings.bucket.clone(),
            prefix: self.settings.prefix.clone(),
            table: self.settings.table.clone(),
            label_version: version.to_owned(),
            retry_failed: self.settings.retry_failed,
            relabel: self.settings.relabel,
        };
        let mut selector = Selector::new(&self.clients.s3, &self.clients.dynamodb, &selection);
        while let Some(Selected { jobs, .. }) = selector.next_page().await? {
            let jobs: Vec<Job> = jobs
                .into_iter()
                .filter(|j| !writer.staged.contains(&j.uri()))
                .collect();
            let mut prepared = stream::iter(jobs)
                .map(|job| async move {
                    let result = self.worker.prepare(&job).await;
                    (job, result)
                })
                .buffer_unordered(self.settings.concurrency.max(1));
            let mut retry_on_demand = Vec::new();
            while let Some((job, result)) = prepared.next().await {
                match result {
                    Ok(Prepared::Ready(ready)) => {
                        if let Some(full) = writer.add(self, &ready).await? {
                            self.seal(state, full, summary).await?;
                        }
                        summary.staged += 1;
                    }
                    Ok(Prepared::Done(outcome)) => {
                        summary.recorded += 1;
                        if let JobOutcome::Failed(reason) = outcome {
                            tracing::info!(uri = %job.uri(), %reason, "recorded as failed");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(uri = %job.uri(), error = &e as &dyn std::error::Error, "cannot stage this document; it goes to the on-demand queue");
                        retry_on_demand.push(job);
                    }
                }
            }
            drop(prepared);
            self.enqueue(retry_on_demand, summary).await?;
            tracing::info!(
                listed = selector.summary.listed,
                selected = selector.summary.selected,
                staged = summary.staged,
                "batch ingestion in progress"
            );
        }
        writer.flush(self).await?;
        summary.listed = selector.summary.listed;
        summary.selected = selector.summary.selected;
        // The last folder, and any a kill left staged but not yet planned.
        for (folder, (records, bytes)) in writer.folders {
            if !state.jobs.iter().any(|j| j.folder == folder) {
                self.seal(state, (folder, records, bytes), summary).await?;
            }
        }
        Ok(())
    }

    /// Plans the job of a folder that takes no more records, and submits
    /// what the job quota allows; a folder below the job minimum goes to the
    /// on-demand queue instead.
    async fn seal(
        &self,
        state: &mut RunState,
        (folder, records, bytes): (String, u64, u64),
        summary: &mut BatchSummary,
    ) -> Result<(), BatchError> {
        let mut job = JobState {
            folder,
            records,
            bytes,
            arn: None,
            status: None,
            done: false,
        };
        if records < self.settings.quotas.min_records {
            let entries = self
                .staging
                .job_manifest(&state.run_id, &job.folder)
                .await?;
            tracing::info!(folder = %job.folder, records, min_records = self.settings.quotas.min_records, "below the batch job minimum: these documents go to the on-demand queue");
            summary.below_minimum += entries.len() as u64;
            self.enqueue(entries.iter().map(ManifestEntry::job).collect(), summary)
                .await?;
            job.status = Some("OnDemand".into());
            job.done = true;
        }
        state.jobs.push(job);
        self.staging.save_state(state).await?;
        self.submit(state, summary).await
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

    /// Joins a finished job's outputs to its manifest: labels for answers,
    /// the on-demand queue for everything else.
    async fn collect(
        &self,
        state: &RunState,
        index: usize,
        arn: &str,
        summary: &mut BatchSummary,
    ) -> Result<(), BatchError> {
        let job = &state.jobs[index];
        let mut entries: HashMap<String, ManifestEntry> = self
            .staging
            .job_manifest(&state.run_id, &job.folder)
            .await?
            .into_iter()
            .map(|e| (e.record_id.clone(), e))
            .collect();
        let out_prefix = format!(
            "{}{}/",
            self.staging.output_prefix(&state.run_id),
            jobs::job_id(arn)
        );
        let mut labels = Vec::new();
        let mut on_demand = Vec::new();
        for key in self.staging.list(&out_prefix).await? {
            if key.ends_with("manifest.json.out") {
                let counts = self.staging.get(&key).await?;
                tracing::info!(%arn, manifest = %String::from_utf8_lossy(&counts).trim(), "batch job output manifest");
                continue;
            }
            if !key.ends_with(".jsonl.out") {
                continue;
            }
            let bytes = self.staging.get(&key).await?;
            for (n, line) in bytes.split(|b| *b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let record = match output::parse_line(line) {
                    Ok(parsed) => parsed,
                    Err(e) => {
                        tracing::warn!(%key, line = n + 1, error = %e, "unreadable output line; its record goes on-demand");
                        continue;
                    }
                };
                let Some(entry) = entries.remove(&record.record_id) else {
                    tracing::warn!(%key, record_id = %record.record_id, "output record not in the manifest (or seen twice); ignored");
                    continue;
                };
                match record.result {
                    RecordResult::Answer {
                        text,
                        input_tokens,
                        output_tokens,
                    } => {
                        let mut answer = Answer {
                            outcome: Outcome::Labeled {
                                label: String::new(),
                            },
                            input_tokens,
                            output_tokens,
                            cost_usd: self.price.map(|p| p.cost(input_tokens, output_tokens)),
                        };
                        if let Ok(category) = self.classifier.prompt().parse_answer(&text) {
                            answer.outcome = Outcome::Labeled {
                                label: category.name.clone(),
                            };
                        } else {
                            summary.reasked += 1;
                            // The re-ask's outcome replaces the placeholder.
                            if let Err(why) =
                                self.reask(&record.model_input, &text, &mut answer).await
                            {
                                tracing::info!(uri = %entry.uri(), answer = %text, %why, "cannot re-ask; the document goes on-demand");
                                on_demand.push(entry.job());
                                continue;
                            }
                        }
                        labels.push(self.batch_record(&entry, answer, arn));
                    }
                    RecordResult::Error(error) => {
                        tracing::info!(uri = %entry.uri(), %error, "error record; it goes on-demand");
                        summary.error_records += 1;
                        on_demand.push(entry.job());
                    }
                }
            }
        }
        summary.unprocessed += entries.len() as u64;
        if !entries.is_empty() {
            tracing::info!(%arn, records = entries.len(), status = job.status.as_deref().unwrap_or(""), "records without output; they go on-demand");
        }
        on_demand.extend(entries.values().map(ManifestEntry::job));
        let written: Vec<Result<(Written, LabelRecord), StoreError>> = stream::iter(labels)
            .map(|record| async move { self.store.put(&record).await.map(|w| (w, record)) })
            .buffer_unordered(16)
            .collect()
            .await;
        for result in written {
            match result? {
                (Written::Stored, record) => {
                    match record.status() {
                        Status::Labeled => summary.labeled += 1,
                        Status::Failed => summary.failed += 1,
                    }
                    summary.input_tokens += record.input_tokens;
                    summary.output_tokens += record.output_tokens;
                    summary.cost_usd += record.cost_usd.unwrap_or(0.0);
                }
                (Written::Superseded, _) => summary.superseded += 1,
            }
        }
        if let Some(emf) = &self.emf {
            // What this job added, as the pool's metrics (ModelCostUsd, ...).
            emf.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .flush(&summary.events());
        }
        self.enqueue(on_demand, summary).await
    }

    /// Asks once more on-demand after a batch answer that was no category;
    /// adds the re-ask's outcome, tokens and on-demand cost to `answer`.
    async fn reask(
        &self,
        request: &serde_json::Value,
        text: &str,
        answer: &mut Answer,
    ) -> Result<(), String> {
        let reasked = match self.classifier.reask_after(request, text).await {
            None => return Err("the output's modelInput is not what docsort staged".into()),
            Some(Err(e)) => return Err(error_chain(&e)),
            Some(Ok(reasked)) => reasked,
        };
        answer.outcome = reasked.outcome();
        answer.input_tokens += reasked.input_tokens;
        answer.output_tokens += reasked.output_tokens;
        let on_demand = self
            .classifier
            .price()
            .map(|p| p.cost(reasked.input_tokens, reasked.output_tokens));
        answer.cost_usd = answer.cost_usd.zip(on_demand).map(|(a, b)| a + b);
        Ok(())
    }

    /// The record of a batch answer (after its re-ask, when it needed one).
    fn batch_record(&self, entry: &ManifestEntry, answer: Answer, arn: &str) -> LabelRecord {
        let mut record = LabelRecord::new(
            entry.uri(),
            entry.bucket.clone(),
            entry.key.clone(),
            self.classifier.version().to_owned(),
            Source::Backfill,
            answer.outcome,
        );
        record.version_id = entry.version_id.clone();
        record.etag = entry.etag.clone();
        record.size_bytes = entry.size_bytes;
        record.last_modified = entry.last_modified;
        record.model_id = Some(self.classifier.model_id().to_owned());
        record.input_tokens = answer.input_tokens;
        record.output_tokens = answer.output_tokens;
        record.cost_usd = answer.cost_usd;
        record.pages = Some(entry.pages);
        record.text_chars = Some(entry.text_chars);
        record.text_source = Some(entry.text_source);
        record.batch_job = Some(arn.to_owned());
        record.attempts = entry.attempts + 1;
        record
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

/// A batch answer, after its re-ask when it needed one.
struct Answer {
    outcome: Outcome,
    input_tokens: u64,
    output_tokens: u64,
    /// Batch price of the batch answer plus on-demand price of the re-ask.
    cost_usd: Option<f64>,
}

/// `error: cause: cause` in one line.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// Fills job folders with chunks of records, within the quotas.
struct ChunkWriter {
    run_id: String,
    /// URIs the interrupted run staged (not staged again; a listing
    /// never repeats a key within one run).
    staged: HashSet<String>,
    /// Each folder's (records, bytes) so far.
    folders: BTreeMap<String, (u64, u64)>,
    /// The folder being filled, and its next chunk number.
    folder: u32,
    chunk: u32,
    next_record: u64,
    input: Vec<u8>,
    manifest: Vec<ManifestEntry>,
}

impl ChunkWriter {
    /// A writer continuing after what the run has staged already.
    async fn resume(run: &Run<'_>, state: &RunState) -> Result<ChunkWriter, StagingError> {
        let mut writer = ChunkWriter {
            run_id: state.run_id.clone(),
            staged: HashSet::new(),
            folders: BTreeMap::new(),
            folder: 1,
            chunk: 1,
            next_record: 1,
            input: Vec::new(),
            manifest: Vec::new(),
        };
        for (folder, chunk, entries) in run.staging.manifests(&state.run_id).await? {
            let counts = writer.folders.entry(folder.clone()).or_default();
            for entry in &entries {
                counts.0 += 1;
                counts.1 += entry.bytes;
                writer.staged.insert(entry.uri());
                let id = entry.record_id.parse::<u64>().unwrap_or(0);
                writer.next_record = writer.next_record.max(id + 1);
            }
            if let Some(n) = folder
                .strip_prefix("job-")
                .and_then(|n| n.parse::<u32>().ok())
            {
                if (n, chunk) >= (writer.folder, writer.chunk) {
                    (writer.folder, writer.chunk) = (n, chunk + 1);
                }
            }
        }
        // A planned folder takes no more records.
        if state.jobs.iter().any(|j| j.folder == writer.folder_name()) {
            (writer.folder, writer.chunk) = (writer.folder + 1, 1);
        }
        Ok(writer)
    }

    fn folder_name(&self) -> String {
        format!("job-{:04}", self.folder)
    }

    /// Adds one record, first closing the chunk or the job folder it would
    /// overflow; a closed folder is returned with its (records, bytes).
    async fn add(
        &mut self,
        run: &Run<'_>,
        ready: &Ready,
    ) -> Result<Option<(String, u64, u64)>, StagingError> {
        let record_id = format!("{:011}", self.next_record);
        self.next_record += 1;
        let mut line = serde_json::to_vec(&serde_json::json!({
            "recordId": record_id,
            "modelInput": run.classifier.converse_body(&ready.extracted),
        }))
        .expect("a record serialises");
        line.push(b'\n');
        let quotas = &run.settings.quotas;
        let (folder_records, folder_bytes) = self
            .folders
            .get(&self.folder_name())
            .copied()
            .unwrap_or_default();
        let records = folder_records + self.manifest.len() as u64 + 1;
        let bytes = folder_bytes + (self.input.len() + line.len()) as u64;
        let mut full = None;
        if records > quotas.max_records || bytes > quotas.max_job_bytes {
            self.flush(run).await?;
            let name = self.folder_name();
            if let Some(&(records, bytes)) = self.folders.get(&name) {
                full = Some((name, records, bytes));
                self.folder += 1;
                self.chunk = 1;
            }
        } else if self.manifest.len() as u64 >= quotas.max_file_records
            || (self.input.len() + line.len()) as u64 > quotas.max_file_bytes
        {
            self.flush(run).await?;
        }
        let meta = &ready.meta;
        self.manifest.push(ManifestEntry {
            record_id,
            bucket: ready.job.bucket.clone(),
            key: ready.job.key.clone(),
            version_id: meta.version_id.clone(),
            etag: meta.etag.clone(),
            size_bytes: meta.size,
            last_modified: meta.last_modified,
            pages: ready.extracted.pages,
            text_chars: ready.extracted.text_chars(),
            text_source: ready.extracted.source,
            attempts: ready.attempts,
            bytes: line.len() as u64,
        });
        self.input.extend_from_slice(&line);
        Ok(full)
    }

    /// Stages the open chunk, if it has records.
    async fn flush(&mut self, run: &Run<'_>) -> Result<(), StagingError> {
        if self.manifest.is_empty() {
            return Ok(());
        }
        let folder = self.folder_name();
        let input = std::mem::take(&mut self.input);
        let manifest = std::mem::take(&mut self.manifest);
        let bytes = input.len() as u64;
        run.staging
            .put_chunk(&self.run_id, &folder, self.chunk, input, &manifest)
            .await?;
        let counts = self.folders.entry(folder).or_default();
        counts.0 += manifest.len() as u64;
        counts.1 += bytes;
        self.chunk += 1;
        Ok(())
    }
}
