//! Collection: a finished job's outputs joined to its manifest on
//! `recordId`; answers become labels (the re-ask on-demand when one is no
//! category), everything else goes to the on-demand queue.

use std::collections::HashMap;

use docsort_schema::{LabelRecord, Outcome, Source, Status};
use futures::{stream, StreamExt};

use super::output::{self, RecordResult};
use super::staging::{ManifestEntry, RunState};
use super::{jobs, BatchError, BatchSummary, Run};
use crate::pipeline::store::{StoreError, Written};

impl Run<'_> {
    /// Joins a finished job's outputs to its manifest: labels for answers,
    /// the on-demand queue for everything else.
    pub(super) async fn collect(
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
