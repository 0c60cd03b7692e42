//! Ingestion: the backfill's selection, fetched and extracted as the worker
//! does, staged in chunks that fill job folders; a full folder is planned
//! and submitted at once.

use std::collections::{BTreeMap, HashSet};

use docsort_producer::backfill::{BackfillSettings, Selected, Selector};
use docsort_schema::Job;
use futures::{stream, StreamExt};

use super::staging::{JobState, ManifestEntry, RunState, StagingError};
use super::{BatchError, BatchSummary, Run};
use crate::pipeline::job::{JobOutcome, Prepared, Ready};

impl Run<'_> {
    /// Stages every selected document that is not staged yet. Each job
    /// folder is submitted as soon as it is full, so jobs run while the rest
    /// is extracted.
    pub(super) async fn ingest(
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
