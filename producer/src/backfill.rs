//! The nightly backfill: lists a bucket prefix and enqueues the PDFs that
//! need a label, and only those.
//!
//! Each listing page (up to 1,000 keys) is compared with the labels table by
//! `BatchGetItem` (100 keys a request, ten at once, eventually consistent,
//! only the attributes the decision needs), so memory holds one page whatever the
//! bucket's size and an unchanged bucket enqueues nothing. What is selected
//! is [`decide`]d per object:
//! - no item, or an item for another etag (the object changed): enqueued;
//! - labeled under the current label version: skipped;
//! - labeled under another label version: enqueued with `--relabel`;
//! - failed: enqueued with `--retry-failed` when the reason may pass
//!   (`timeout`, `unparseable_answer`, and `not_found`, since the object is
//!   listed now); other failures (not a PDF, encrypted, ...) stay as they are.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Error;
use docsort_schema::record::{uri, PARTITION_KEY};
use docsort_schema::retry::Backoff;
use docsort_schema::{FailureReason, Job, Source};
use futures::{stream, StreamExt, TryStreamExt};
use indicatif::ProgressBar;

use crate::enqueue::{EnqueueSummary, Sender};

/// DynamoDB's limit of keys per `BatchGetItem`.
const BATCH_GET: usize = 100;
/// `BatchGetItem` requests of one listing page in flight at once.
const READS_AT_ONCE: usize = 10;
/// How often a backfill without a terminal logs its progress.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// What a backfill compares against and which documents it widens to.
#[derive(Debug, Clone)]
pub struct BackfillSettings {
    /// The bucket to list.
    pub bucket: String,
    /// Only keys under this prefix.
    pub prefix: String,
    /// The labels table.
    pub table: String,
    /// The current label version (the records' `prompt_version`).
    pub label_version: String,
    /// Also enqueue failed documents whose reason may pass.
    pub retry_failed: bool,
    /// Also enqueue documents labeled under another label version.
    pub relabel: bool,
}

/// The backfill stopped: listing or reading the table failed after retries.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("cannot list s3://{bucket}/{prefix}")]
    List {
        bucket: String,
        prefix: String,
        #[source]
        source: Box<aws_sdk_s3::error::SdkError<ListObjectsV2Error>>,
    },
    #[error("cannot read the labels table {table}")]
    Table {
        table: String,
        #[source]
        source: Box<SdkError<BatchGetItemError>>,
    },
    #[error("the labels table {table} left keys unprocessed after {attempts} attempts")]
    Unprocessed { table: String, attempts: u32 },
}

/// What one object's item says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The etag the item is for (absent for `not_found`).
    pub etag: Option<String>,
    /// `Ok(prompt_version)` of a label, or `Err(reason)` of a failure.
    pub outcome: Result<String, FailureReason>,
}

/// Why an object is enqueued or skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// No item yet: enqueue.
    New,
    /// An item for another etag: enqueue.
    Changed,
    /// Labeled under the current label version: skip.
    Labeled,
    /// Labeled under another label version: enqueue with `--relabel`, else skip.
    Stale { enqueue: bool },
    /// Failed: enqueue with `--retry-failed` when the reason may pass, else skip.
    Failed { enqueue: bool },
}

impl Decision {
    /// Whether the object goes on the queue.
    pub fn enqueue(self) -> bool {
        match self {
            Decision::New | Decision::Changed => true,
            Decision::Labeled => false,
            Decision::Stale { enqueue } | Decision::Failed { enqueue } => enqueue,
        }
    }
}

/// What to do with a listed object whose etag is `etag`, given its item.
pub fn decide(stored: Option<&Stored>, etag: &str, settings: &BackfillSettings) -> Decision {
    let Some(stored) = stored else {
        return Decision::New;
    };
    match (&stored.outcome, stored.etag.as_deref()) {
        (_, Some(other)) if other != etag => Decision::Changed,
        (Ok(version), _) if *version == settings.label_version => Decision::Labeled,
        (Ok(_), _) => Decision::Stale {
            enqueue: settings.relabel,
        },
        (Err(reason), _) => Decision::Failed {
            enqueue: settings.retry_failed
                && matches!(
                    reason,
                    FailureReason::Timeout
                        | FailureReason::UnparseableAnswer
                        | FailureReason::NotFound
                ),
        },
    }
}

/// What a backfill did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackfillSummary {
    /// PDFs listed.
    pub listed: u64,
    /// With no item.
    pub new: u64,
    /// With an item for another etag.
    pub changed: u64,
    /// Labeled under the current label version (skipped).
    pub labeled: u64,
    /// Labeled under another label version (enqueued with `--relabel`).
    pub stale: u64,
    /// Failed (enqueued with `--retry-failed` when the reason may pass).
    pub failed: u64,
    /// Selected for the queue.
    pub selected: u64,
    /// Accepted by the queue (0 on a dry run).
    pub enqueued: u64,
    /// Selected but not accepted by the queue after retries.
    pub send_failed: u64,
    /// Labels table requests made (`BatchGetItem`, retries included).
    pub table_requests: u64,
    /// `SendMessageBatch` requests made (retries included).
    pub send_requests: u64,
    /// Listing pages read.
    pub list_pages: u64,
}

impl BackfillSummary {
    fn count(&mut self, decision: Decision) {
        match decision {
            Decision::New => self.new += 1,
            Decision::Changed => self.changed += 1,
            Decision::Labeled => self.labeled += 1,
            Decision::Stale { .. } => self.stale += 1,
            Decision::Failed { .. } => self.failed += 1,
        }
        if decision.enqueue() {
            self.selected += 1;
        }
    }
}

impl std::fmt::Display for BackfillSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "listed {} / new {} / changed {} / already labeled {} / other label version {} / failed {} / selected {} / enqueued {}",
            self.listed,
            self.new,
            self.changed,
            self.labeled,
            self.stale,
            self.failed,
            self.selected,
            self.enqueued
        )?;
        if self.send_failed > 0 {
            write!(f, " / not sent {}", self.send_failed)?;
        }
        Ok(())
    }
}

/// Whether a key names a PDF (by its extension, any case).
pub fn is_pdf_key(key: &str) -> bool {
    key.len() >= 4 && key.as_bytes()[key.len() - 4..].eq_ignore_ascii_case(b".pdf")
}

/// The objects of one listing page that need a label, as jobs (etag set).
#[derive(Debug, Default)]
pub struct Selected {
    /// The selected objects.
    pub jobs: Vec<Job>,
    /// PDFs on the page that were not selected.
    pub skipped: usize,
}

/// Lists a bucket prefix page by page and selects, per page, the objects that
/// need a label ([`decide`]). The queue backfill ([`backfill`]) sends them;
/// the batch backfill (`docsort-worker batch`) stages them for Bedrock batch
/// inference.
#[derive(Debug)]
pub struct Selector<'a> {
    s3: &'a aws_sdk_s3::Client,
    dynamodb: &'a aws_sdk_dynamodb::Client,
    settings: &'a BackfillSettings,
    /// The next listing page's continuation token.
    token: Option<String>,
    done: bool,
    /// What has been listed and decided so far (the send counts stay 0).
    pub summary: BackfillSummary,
}

impl<'a> Selector<'a> {
    /// A selection over `settings.bucket`/`settings.prefix`, starting at the first page.
    pub fn new(
        s3: &'a aws_sdk_s3::Client,
        dynamodb: &'a aws_sdk_dynamodb::Client,
        settings: &'a BackfillSettings,
    ) -> Self {
        Selector {
            s3,
            dynamodb,
            settings,
            token: None,
            done: false,
            summary: BackfillSummary::default(),
        }
    }

    /// The next listing page's selection; `None` after the last page.
    pub async fn next_page(&mut self) -> Result<Option<Selected>, BackfillError> {
        if self.done {
            return Ok(None);
        }
        let settings = self.settings;
        let page = self
            .s3
            .list_objects_v2()
            .bucket(&settings.bucket)
            .prefix(&settings.prefix)
            .set_continuation_token(self.token.take())
            .send()
            .await
            .map_err(|e| BackfillError::List {
                bucket: settings.bucket.clone(),
                prefix: settings.prefix.clone(),
                source: Box::new(e),
            })?;
        self.summary.list_pages += 1;
        self.token = page.next_continuation_token().map(str::to_owned);
        self.done = !page.is_truncated().unwrap_or(false) || self.token.is_none();
        let listed: Vec<(String, String)> = page
            .contents()
            .iter()
            .filter_map(|o| {
                let key = o.key().filter(|k| is_pdf_key(k))?;
                let etag = o.e_tag().unwrap_or_default().trim_matches('"').to_owned();
                Some((key.to_owned(), etag))
            })
            .collect();
        self.summary.listed += listed.len() as u64;
        let stored = read_items(self.dynamodb, settings, &listed, &mut self.summary).await?;
        let mut selected = Selected::default();
        for (key, etag) in listed {
            let decision = decide(stored.get(&key), &etag, settings);
            self.summary.count(decision);
            if decision.enqueue() {
                let mut job = Job::new(&settings.bucket, key, Source::Backfill);
                job.etag = Some(etag);
                selected.jobs.push(job);
            } else {
                selected.skipped += 1;
            }
        }
        Ok(Some(selected))
    }
}

/// Lists `settings.bucket` under `settings.prefix` page by page, compares
/// each page with the labels table and sends a job for each selected object
/// (none when `sender` is `None`: a dry run).
pub async fn backfill(
    s3: &aws_sdk_s3::Client,
    dynamodb: &aws_sdk_dynamodb::Client,
    settings: &BackfillSettings,
    sender: Option<&Sender>,
    progress: &ProgressBar,
) -> Result<BackfillSummary, BackfillError> {
    let mut selector = Selector::new(s3, dynamodb, settings);
    let (mut enqueued, mut send_failed, mut send_requests) = (0, 0, 0);
    let mut last_log = Instant::now();
    while let Some(Selected { jobs, skipped }) = selector.next_page().await? {
        progress.inc_length((jobs.len() + skipped) as u64);
        // Skipped objects are done now; sent ones count as they are sent.
        progress.inc(skipped as u64);
        match sender {
            Some(sender) => {
                let sent: EnqueueSummary = sender.send_all(jobs, progress).await;
                enqueued += sent.enqueued;
                send_failed += sent.failed;
                send_requests += sent.requests;
            }
            None => progress.inc(jobs.len() as u64),
        }
        if progress.is_hidden() && last_log.elapsed() >= LOG_EVERY {
            last_log = Instant::now();
            tracing::info!(
                listed = selector.summary.listed,
                selected = selector.summary.selected,
                enqueued,
                "backfill in progress"
            );
        }
    }
    Ok(BackfillSummary {
        enqueued,
        send_failed,
        send_requests,
        ..selector.summary
    })
}

/// The items of `listed` keys, by key: batches of 100 keys, read at once.
async fn read_items(
    dynamodb: &aws_sdk_dynamodb::Client,
    settings: &BackfillSettings,
    listed: &[(String, String)],
    summary: &mut BackfillSummary,
) -> Result<HashMap<String, Stored>, BackfillError> {
    // Owned chunks: a future borrowing a chunk of `listed` is not provably
    // `Send` for every lifetime, and callers spawn the batch run.
    let chunks: Vec<Vec<(String, String)>> = listed.chunks(BATCH_GET).map(<[_]>::to_vec).collect();
    let batches: Vec<(HashMap<String, Stored>, u64)> = stream::iter(chunks)
        .map(|chunk| async move { read_batch(dynamodb, settings, &chunk).await })
        .buffer_unordered(READS_AT_ONCE)
        .try_collect()
        .await?;
    let mut out = HashMap::with_capacity(listed.len());
    for (items, requests) in batches {
        summary.table_requests += requests;
        out.extend(items);
    }
    Ok(out)
}

/// One `BatchGetItem` of up to 100 keys, unprocessed keys retried with
/// docsort's backoff; the items by key, and the requests made.
async fn read_batch(
    dynamodb: &aws_sdk_dynamodb::Client,
    settings: &BackfillSettings,
    chunk: &[(String, String)],
) -> Result<(HashMap<String, Stored>, u64), BackfillError> {
    let prefix = format!("s3://{}/", settings.bucket);
    let mut out = HashMap::with_capacity(chunk.len());
    let mut requests = 0;
    let keys: Vec<HashMap<String, AttributeValue>> = chunk
        .iter()
        .map(|(key, _)| {
            HashMap::from([(
                PARTITION_KEY.to_owned(),
                AttributeValue::S(uri(&settings.bucket, key)),
            )])
        })
        .collect();
    let mut request = KeysAndAttributes::builder()
        .set_keys(Some(keys))
        .projection_expression("#uri, etag, #status, failure, prompt_version")
        .expression_attribute_names("#uri", PARTITION_KEY)
        .expression_attribute_names("#status", "status")
        .build()
        .map_err(|_| BackfillError::Unprocessed {
            table: settings.table.clone(),
            attempts: 0,
        })?;
    let retry = Backoff::default();
    let mut attempt = 0;
    loop {
        attempt += 1;
        requests += 1;
        let response = dynamodb
            .batch_get_item()
            .request_items(&settings.table, request.clone())
            .send()
            .await
            .map_err(|e| BackfillError::Table {
                table: settings.table.clone(),
                source: Box::new(e),
            })?;
        for item in response
            .responses()
            .and_then(|r| r.get(&settings.table))
            .into_iter()
            .flatten()
        {
            let Some(key) = item
                .get(PARTITION_KEY)
                .and_then(|u| u.as_s().ok())
                .and_then(|u| u.strip_prefix(&prefix))
            else {
                continue;
            };
            if let Some(stored) = stored_of(item) {
                out.insert(key.to_owned(), stored);
            }
        }
        match response
            .unprocessed_keys()
            .and_then(|u| u.get(&settings.table))
            .filter(|k| !k.keys().is_empty())
        {
            None => return Ok((out, requests)),
            Some(left) if retry.retries_after(attempt) => {
                request = left.clone();
                tokio::time::sleep(retry.delay(attempt)).await;
            }
            Some(_) => {
                return Err(BackfillError::Unprocessed {
                    table: settings.table.clone(),
                    attempts: attempt,
                })
            }
        }
    }
}

/// The decision's view of an item; `None` for an item that is no record.
fn stored_of(item: &HashMap<String, AttributeValue>) -> Option<Stored> {
    let s = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    let outcome = match s("status")?.as_str() {
        "labeled" => Ok(s("prompt_version").unwrap_or_default()),
        _ => Err(FailureReason::from(s("failure").unwrap_or_default())),
    };
    Some(Stored {
        etag: s("etag"),
        outcome,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(retry_failed: bool, relabel: bool) -> BackfillSettings {
        BackfillSettings {
            bucket: "b".into(),
            prefix: String::new(),
            table: "t".into(),
            label_version: "v2".into(),
            retry_failed,
            relabel,
        }
    }

    fn stored(etag: Option<&str>, outcome: Result<&str, FailureReason>) -> Stored {
        Stored {
            etag: etag.map(str::to_owned),
            outcome: outcome.map(str::to_owned),
        }
    }

    #[test]
    fn pdf_keys_match_any_case() {
        for yes in ["a.pdf", "dir/B.PDF", "x.Pdf"] {
            assert!(is_pdf_key(yes));
        }
        for no in ["a.pdfx", "pdf", "a.txt", "dir/pdf/", "é.pd"] {
            assert!(!is_pdf_key(no));
        }
    }

    #[test]
    fn only_new_and_changed_objects_are_selected_by_default() {
        let s = settings(false, false);
        assert_eq!(decide(None, "e1", &s), Decision::New);
        let labeled = stored(Some("e1"), Ok("v2"));
        assert_eq!(decide(Some(&labeled), "e1", &s), Decision::Labeled);
        assert_eq!(decide(Some(&labeled), "e9", &s), Decision::Changed);
        let old = stored(Some("e1"), Ok("v1"));
        assert_eq!(
            decide(Some(&old), "e1", &s),
            Decision::Stale { enqueue: false }
        );
        let failed = stored(Some("e1"), Err(FailureReason::Timeout));
        assert_eq!(
            decide(Some(&failed), "e1", &s),
            Decision::Failed { enqueue: false }
        );
        assert_eq!(decide(Some(&failed), "e2", &s), Decision::Changed);
        for d in [Decision::New, Decision::Changed] {
            assert!(d.enqueue());
        }
        assert!(!Decision::Labeled.enqueue());
    }

    #[test]
    fn relabel_adds_other_label_versions() {
        let s = settings(false, true);
        let old = stored(Some("e1"), Ok("v1"));
        assert_eq!(
            decide(Some(&old), "e1", &s),
            Decision::Stale { enqueue: true }
        );
        let current = stored(Some("e1"), Ok("v2"));
        assert_eq!(decide(Some(&current), "e1", &s), Decision::Labeled);
    }

    #[test]
    fn retry_failed_adds_only_reasons_that_may_pass() {
        let s = settings(true, false);
        for (reason, enqueue) in [
            (FailureReason::Timeout, true),
            (FailureReason::UnparseableAnswer, true),
            (FailureReason::NotFound, true),
            (FailureReason::NotPdf, false),
            (FailureReason::Encrypted, false),
            (FailureReason::NoText, false),
            (FailureReason::Malformed, false),
            (FailureReason::TooLarge, false),
        ] {
            // not_found records carry no etag
            let etag = (reason != FailureReason::NotFound).then_some("e1");
            let failed = stored(etag, Err(reason.clone()));
            assert_eq!(
                decide(Some(&failed), "e1", &s),
                Decision::Failed { enqueue },
                "{reason}"
            );
        }
    }
}
