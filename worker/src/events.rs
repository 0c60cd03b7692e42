//! Internal events: every outcome the worker reaches is logged and counted in
//! one place ([`Metrics::emit`]), so a log line and its metric cannot drift
//! apart. The counters feed the run's [`Summary`] and the EMF metric lines
//! (`crate::pipeline::emf`). Used by the pipeline and the classifiers; depends
//! on neither.

use std::sync::atomic::{AtomicU64, Ordering};

use docsort_schema::FailureReason;

/// Something worth a log line and a count.
#[derive(Debug)]
pub enum Event<'a> {
    /// A document got a label.
    Labeled {
        /// The queue message.
        message_id: &'a str,
        /// The document.
        uri: &'a str,
        /// The category.
        label: &'a str,
    },
    /// A document was recorded `failed/<reason>`.
    Failed {
        /// The queue message.
        message_id: &'a str,
        /// The document.
        uri: &'a str,
        /// Why.
        reason: &'a FailureReason,
    },
    /// The document was already labeled for this object and label version: no model call, no write.
    Skipped {
        /// The queue message.
        message_id: &'a str,
        /// The document.
        uri: &'a str,
    },
    /// A newer object version's record is already stored.
    Superseded {
        /// The queue message.
        message_id: &'a str,
        /// The document.
        uri: &'a str,
    },
    /// Another worker holds the document's lease: the message is left for later.
    Deferred {
        /// The queue message.
        message_id: &'a str,
        /// The document.
        uri: &'a str,
    },
    /// A failure that is not the document's: the message is left for redelivery.
    Retried {
        /// The queue message.
        message_id: &'a str,
        /// The document.
        uri: &'a str,
        /// Deliveries of the message so far.
        receive_count: u32,
        /// What failed.
        error: &'a (dyn std::error::Error + 'static),
        /// Whether retrying may help; `false` is a configuration problem
        /// (unknown model, access denied), logged as an error.
        retryable: bool,
    },
    /// A message acknowledged with nothing to classify (test events, non-create events).
    Ignored {
        /// The queue message.
        message_id: &'a str,
        /// Why there is nothing to do.
        reason: &'a str,
    },
    /// A message body that is no docsort message: left for the DLQ.
    Rejected {
        /// The queue message.
        message_id: &'a str,
        /// Deliveries of the message so far.
        receive_count: u32,
        /// Why it was not understood.
        error: &'a (dyn std::error::Error + 'static),
    },
    /// The model service throttled a request; the pool's rate is now `rate`.
    Throttled {
        /// The pool-wide request rate after the throttle, per second.
        rate: f64,
    },
    /// An HTTP request to the model (retries included).
    ModelRequest,
    /// The fleet's spend today reached the daily budget: receiving stops
    /// until the next UTC day.
    BudgetReached {
        /// Today's spend, in USD.
        spent_usd: f64,
        /// The budget, in USD.
        budget_usd: f64,
    },
}

/// Counts of what the pool did. Shared by all tasks.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Documents that got a label.
    pub labeled: AtomicU64,
    /// Documents recorded `failed/<reason>`.
    pub failed: AtomicU64,
    /// Documents already labeled for this object and prompt (no model call).
    pub skipped: AtomicU64,
    /// Documents whose record was superseded by a newer object version.
    pub superseded: AtomicU64,
    /// Documents left for redelivery after a transient error.
    pub retried: AtomicU64,
    /// Documents left for later because another worker held their lease.
    pub deferred: AtomicU64,
    /// Messages acknowledged without work (test events, non-create events).
    pub ignored: AtomicU64,
    /// Message bodies that are not docsort messages (left for the DLQ).
    pub rejected: AtomicU64,
    /// Model calls that produced an answer (a re-ask is a second call).
    pub model_calls: AtomicU64,
    /// HTTP requests to the model, retries included.
    pub model_requests: AtomicU64,
    /// Requests the model service throttled.
    pub throttles: AtomicU64,
    /// Times receiving paused because the daily budget was reached.
    pub budget_pauses: AtomicU64,
    /// Input tokens billed.
    pub input_tokens: AtomicU64,
    /// Output tokens billed.
    pub output_tokens: AtomicU64,
    /// Model cost, in nano-USD.
    pub cost_nano_usd: AtomicU64,
    /// Longest extraction, in milliseconds.
    pub slowest_extract_ms: AtomicU64,
    /// Highest peak memory of an extraction child, in KiB.
    pub peak_extract_rss_kib: AtomicU64,
    /// The document of the longest extraction.
    pub slowest_document: std::sync::Mutex<String>,
}

fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    /// Logs `event` and counts it.
    pub fn emit(&self, event: Event<'_>) {
        match event {
            Event::Labeled {
                message_id,
                uri,
                label,
            } => {
                inc(&self.labeled);
                tracing::info!(message_id, uri, label, "labeled");
            }
            Event::Failed {
                message_id,
                uri,
                reason,
            } => {
                inc(&self.failed);
                tracing::info!(message_id, uri, reason = %reason, "failed");
            }
            Event::Skipped { message_id, uri } => {
                inc(&self.skipped);
                tracing::info!(message_id, uri, "already labeled; no model call");
            }
            Event::Superseded { message_id, uri } => {
                inc(&self.superseded);
                tracing::info!(
                    message_id,
                    uri,
                    "a newer object version is already recorded"
                );
            }
            Event::Deferred { message_id, uri } => {
                inc(&self.deferred);
                tracing::info!(
                    message_id,
                    uri,
                    "another worker is classifying this object; message left for later"
                );
            }
            Event::Retried {
                message_id,
                uri,
                receive_count,
                error,
                retryable,
            } => {
                inc(&self.retried);
                if retryable {
                    tracing::warn!(
                        message_id,
                        uri,
                        receive_count,
                        error,
                        "transient failure; message left for redelivery"
                    );
                } else {
                    tracing::error!(
                        message_id, uri, receive_count, error,
                        "the model rejected the call (check --model-id, the region and bedrock:InvokeModel); message left for redelivery"
                    );
                }
            }
            Event::Ignored { message_id, reason } => {
                inc(&self.ignored);
                tracing::info!(
                    message_id,
                    reason,
                    "message acknowledged, nothing to classify"
                );
            }
            Event::Rejected {
                message_id,
                receive_count,
                error,
            } => {
                inc(&self.rejected);
                tracing::warn!(
                    message_id,
                    receive_count,
                    error,
                    "message body is not a docsort message; leaving it for the DLQ"
                );
            }
            Event::Throttled { rate } => {
                inc(&self.throttles);
                tracing::debug!(rate, "model throttled: pool rate halved");
            }
            Event::ModelRequest => inc(&self.model_requests),
            Event::BudgetReached {
                spent_usd,
                budget_usd,
            } => {
                inc(&self.budget_pauses);
                tracing::warn!(
                    spent_usd,
                    budget_usd,
                    "daily budget reached: receiving paused until the next UTC day (messages stay on the queue)"
                );
            }
        }
    }

    /// Counts one document's model answer: calls, tokens and cost.
    pub fn record_answer(
        &self,
        calls: u32,
        input_tokens: u64,
        output_tokens: u64,
        cost_usd: Option<f64>,
    ) {
        self.model_calls
            .fetch_add(u64::from(calls), Ordering::Relaxed);
        self.input_tokens.fetch_add(input_tokens, Ordering::Relaxed);
        self.output_tokens
            .fetch_add(output_tokens, Ordering::Relaxed);
        if let Some(cost) = cost_usd {
            self.cost_nano_usd
                .fetch_add((cost * 1e9).round() as u64, Ordering::Relaxed);
        }
    }

    /// Records one extraction's time and memory.
    pub fn record_extraction(&self, uri: &str, stats: crate::extract::ExtractStats) {
        self.peak_extract_rss_kib
            .fetch_max(stats.peak_rss_kib, Ordering::Relaxed);
        if self
            .slowest_extract_ms
            .fetch_max(stats.elapsed_ms, Ordering::Relaxed)
            < stats.elapsed_ms
        {
            *self.slowest_document.lock().expect("metrics lock") = uri.to_owned();
        }
    }

    /// A point-in-time copy for the summary.
    pub fn snapshot(&self) -> Summary {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Summary {
            labeled: get(&self.labeled),
            failed: get(&self.failed),
            skipped: get(&self.skipped),
            superseded: get(&self.superseded),
            retried: get(&self.retried),
            deferred: get(&self.deferred),
            ignored: get(&self.ignored),
            rejected: get(&self.rejected),
            model_calls: get(&self.model_calls),
            model_requests: get(&self.model_requests),
            throttles: get(&self.throttles),
            budget_pauses: get(&self.budget_pauses),
            input_tokens: get(&self.input_tokens),
            output_tokens: get(&self.output_tokens),
            cost_usd: get(&self.cost_nano_usd) as f64 / 1e9,
            slowest_extract_ms: get(&self.slowest_extract_ms),
            slowest_document: self.slowest_document.lock().expect("metrics lock").clone(),
            peak_extract_rss_kib: get(&self.peak_extract_rss_kib),
        }
    }
}

/// What a run did, logged when it ends (see [`Metrics`] for each count).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub labeled: u64,
    pub failed: u64,
    pub skipped: u64,
    pub superseded: u64,
    pub retried: u64,
    pub deferred: u64,
    pub ignored: u64,
    pub rejected: u64,
    pub model_calls: u64,
    pub model_requests: u64,
    pub throttles: u64,
    pub budget_pauses: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    pub slowest_extract_ms: u64,
    pub slowest_document: String,
    pub peak_extract_rss_kib: u64,
}
