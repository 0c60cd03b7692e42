//! Sends jobs to the work queue in batches of 10, retrying with docsort's one
//! backoff policy the entries SQS failed for reasons other than the entry itself.

use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchError;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use docsort_schema::retry::{Backoff, Retryable};
use docsort_schema::{Job, Source};
use futures::{stream, StreamExt};
use indicatif::ProgressBar;

/// SQS accepts at most 10 entries per batch.
pub const BATCH: usize = 10;

/// Counts of a producer run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnqueueSummary {
    /// Objects listed (or URIs given).
    pub listed: u64,
    /// Jobs the queue accepted.
    pub enqueued: u64,
    /// Jobs that could not be sent after retries.
    pub failed: u64,
    /// `SendMessageBatch` requests made, retries included.
    pub requests: u64,
}

impl std::fmt::Display for EnqueueSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "listed {} / enqueued {} / failed {}",
            self.listed, self.enqueued, self.failed
        )
    }
}

/// A URI given to `enqueue` is not `s3://bucket/key`.
#[derive(Debug, thiserror::Error)]
#[error("{uri:?} is not an s3://bucket/key URI")]
pub struct BadUri {
    /// The text given.
    pub uri: String,
}

/// Parses `s3://bucket/key` into a manual job.
pub fn parse_uri(uri: &str) -> Result<Job, BadUri> {
    let bad = || BadUri {
        uri: uri.to_owned(),
    };
    let rest = uri.trim().strip_prefix("s3://").ok_or_else(bad)?;
    let (bucket, key) = rest.split_once('/').ok_or_else(bad)?;
    if bucket.is_empty() || key.is_empty() {
        return Err(bad());
    }
    Ok(Job::new(bucket, key, Source::Manual))
}

/// Sends jobs to one queue.
#[derive(Debug, Clone)]
pub struct Sender {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    concurrency: usize,
}

impl Sender {
    /// A sender to `queue_url` with `concurrency` batches in flight.
    pub fn new(sqs: aws_sdk_sqs::Client, queue_url: String, concurrency: usize) -> Self {
        Sender {
            sqs,
            queue_url,
            concurrency: concurrency.max(1),
        }
    }

    /// Sends `jobs`; returns how many were accepted and how many failed.
    pub async fn send_all(&self, jobs: Vec<Job>, progress: &ProgressBar) -> EnqueueSummary {
        let batches: Vec<Vec<Job>> = jobs.chunks(BATCH).map(<[Job]>::to_vec).collect();
        let results: Vec<(u64, u64, u64)> = stream::iter(batches)
            .map(|batch| async move {
                let n = batch.len() as u64;
                let (failed, requests) = self.send_batch(batch).await;
                progress.inc(n);
                (n - failed, failed, requests)
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        results.iter().fold(
            EnqueueSummary::default(),
            |s, &(enqueued, failed, requests)| EnqueueSummary {
                listed: 0,
                enqueued: s.enqueued + enqueued,
                failed: s.failed + failed,
                requests: s.requests + requests,
            },
        )
    }

    /// Sends up to 10 jobs, retrying (docsort's [`Backoff`]) the entries and
    /// requests that failed on SQS's side; returns the number not sent and
    /// the requests made.
    async fn send_batch(&self, mut pending: Vec<Job>) -> (u64, u64) {
        let retry = Backoff::default();
        let mut rejected = 0u64;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let entries = pending
                .iter()
                .enumerate()
                .filter_map(|(i, job)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(job.to_body())
                        .build()
                        .ok()
                })
                .collect::<Vec<_>>();
            let sent = self
                .sqs
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await;
            let mut again = Vec::new();
            match sent {
                Ok(out) => {
                    for failed in out.failed() {
                        let job = failed
                            .id()
                            .parse::<usize>()
                            .ok()
                            .and_then(|i| pending.get(i));
                        let Some(job) = job else { continue };
                        if failed.sender_fault() {
                            // The entry itself is wrong: sending it again cannot help.
                            tracing::error!(uri = %job.uri(), code = failed.code(), message = failed.message(), "queue rejected job");
                            rejected += 1;
                        } else {
                            again.push(job.clone());
                        }
                    }
                }
                Err(e) => {
                    let e = SendFailure(e);
                    if !e.is_retryable() {
                        tracing::error!(
                            jobs = pending.len(),
                            error = &e.0 as &dyn std::error::Error,
                            "queue refused the batch"
                        );
                        return (rejected + pending.len() as u64, u64::from(attempt));
                    }
                    tracing::warn!(
                        error = &e.0 as &dyn std::error::Error,
                        attempt,
                        "batch send failed"
                    );
                    again = pending;
                }
            }
            if again.is_empty() {
                return (rejected, u64::from(attempt));
            }
            if !retry.retries_after(attempt) {
                tracing::error!(jobs = again.len(), attempts = attempt, "giving up on jobs");
                return (rejected + again.len() as u64, u64::from(attempt));
            }
            pending = again;
            tokio::time::sleep(retry.delay(attempt)).await;
        }
    }
}

/// A `SendMessageBatch` request that failed as a whole.
struct SendFailure(SdkError<SendMessageBatchError>);

impl Retryable for SendFailure {
    /// A missing queue or denied access never pass by waiting; throttling,
    /// 5xx and connection trouble may.
    fn is_retryable(&self) -> bool {
        let SdkError::ServiceError(se) = &self.0 else {
            return true;
        };
        let status = se.raw().status().as_u16();
        !(se.err().is_queue_does_not_exist() || status == 403)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_with_keys_as_given() {
        let job = parse_uri("s3://docs/in box/a+b é.pdf").unwrap();
        assert_eq!(
            (job.bucket.as_str(), job.key.as_str(), job.source),
            ("docs", "in box/a+b é.pdf", Source::Manual)
        );
        for bad in ["docs/a.pdf", "s3://docs", "s3:///a.pdf", "s3://docs/"] {
            assert!(parse_uri(bad).is_err(), "{bad}");
        }
    }
}
