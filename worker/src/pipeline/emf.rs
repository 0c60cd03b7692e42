//! CloudWatch Embedded Metric Format lines on stdout: the run's counters as
//! metrics without PutMetricData calls.

use crate::events::Summary;

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
                "BudgetPauses",
                "Count",
                (now.budget_pauses - self.last.budget_pauses) as f64,
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
