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

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
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
            input_tokens: get(&self.input_tokens),
            output_tokens: get(&self.output_tokens),
            cost_usd: get(&self.cost_nano_usd) as f64 / 1e9,
            slowest_extract_ms: get(&self.slowest_extract_ms),
            slowest_document: self.slowest_document.lock().expect("metrics lock").clone(),
            peak_extract_rss_kib: get(&self.peak_extract_rss_kib),
        }
    }
}

/// What a run did, logged when it ends.
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
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    pub slowest_extract_ms: u64,
    pub slowest_document: String,
    pub peak_extract_rss_kib: u64,
}

/// Writes CloudWatch Embedded Metric Format lines: the counters' increase
/// since the previous line, with no dimensions. CloudWatch Logs turns them into
/// metrics (`ModelCostUsd`, `ModelThrottles`, ...) without PutMetricData calls.
pub struct EmfWriter {
    namespace: String,
    out: Box<dyn std::io::Write + Send>,
    last: Summary,
}

impl EmfWriter {
    /// Lines for `namespace` written to `out` (stdout in the worker).
    pub fn new(namespace: String, out: Box<dyn std::io::Write + Send>) -> Self {
        EmfWriter {
            namespace,
            out,
            last: Summary::default(),
        }
    }

    /// Writes one line with the increase since the last call.
    pub fn flush(&mut self, now: &Summary) {
        let metrics = [
            (
                "DocumentsLabeled",
                "Count",
                (now.labeled - self.last.labeled) as f64,
            ),
            (
                "DocumentsFailed",
                "Count",
                (now.failed - self.last.failed) as f64,
            ),
            (
                "ModelThrottles",
                "Count",
                (now.throttles - self.last.throttles) as f64,
            ),
            (
                "ModelInputTokens",
                "Count",
                (now.input_tokens - self.last.input_tokens) as f64,
            ),
            (
                "ModelOutputTokens",
                "Count",
                (now.output_tokens - self.last.output_tokens) as f64,
            ),
            ("ModelCostUsd", "None", now.cost_usd - self.last.cost_usd),
        ];
        let mut line = serde_json::json!({
            "_aws": {
                "Timestamp": chrono::Utc::now().timestamp_millis(),
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [[]],
                    "Metrics": metrics.iter().map(|(name, unit, _)| serde_json::json!({"Name": name, "Unit": unit})).collect::<Vec<_>>(),
                }],
            },
        });
        for (name, _, value) in metrics {
            line[name] = serde_json::json!(value);
        }
        if let Err(e) = writeln!(self.out, "{line}").and_then(|()| self.out.flush()) {
            tracing::warn!(error = %e, "cannot write metrics line");
        }
        self.last = now.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn emf_lines_carry_increases() {
        let buf = Buf::default();
        let mut emf = EmfWriter::new("Docsort".into(), Box::new(buf.clone()));
        let mut s = Summary {
            labeled: 3,
            throttles: 2,
            cost_usd: 0.003,
            ..Summary::default()
        };
        emf.flush(&s);
        s.labeled = 5;
        emf.flush(&s);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "Docsort"
        );
        assert_eq!(
            (
                lines[0]["DocumentsLabeled"].as_f64(),
                lines[0]["ModelThrottles"].as_f64()
            ),
            (Some(3.0), Some(2.0))
        );
        assert_eq!(
            (
                lines[1]["DocumentsLabeled"].as_f64(),
                lines[1]["ModelThrottles"].as_f64()
            ),
            (Some(2.0), Some(0.0))
        );
        assert!((lines[0]["ModelCostUsd"].as_f64().unwrap() - 0.003).abs() < 1e-12);
    }
}
