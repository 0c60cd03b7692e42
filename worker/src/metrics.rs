//! Outcome counters for the run summary, and one log event per outcome.

use std::sync::atomic::{AtomicU64, Ordering};

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
    /// Messages acknowledged without work (test events, non-create events).
    pub ignored: AtomicU64,
    /// Message bodies that are not docsort messages (left for the DLQ).
    pub rejected: AtomicU64,
    /// Model calls made.
    pub model_calls: AtomicU64,
    /// Input tokens billed.
    pub input_tokens: AtomicU64,
    /// Output tokens billed.
    pub output_tokens: AtomicU64,
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
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
            ignored: get(&self.ignored),
            rejected: get(&self.rejected),
            model_calls: get(&self.model_calls),
            input_tokens: get(&self.input_tokens),
            output_tokens: get(&self.output_tokens),
        }
    }
}

/// What a run did, logged when it ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub labeled: u64,
    pub failed: u64,
    pub skipped: u64,
    pub superseded: u64,
    pub retried: u64,
    pub ignored: u64,
    pub rejected: u64,
    pub model_calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}
