//! A classifier's accuracy on a labeled JSONL set: per-category precision and
//! recall, the confusion matrix and time per document.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::files::quantile;
use crate::classify::{Classifier, ClassifyError};

/// One labeled text.
#[derive(Debug, Clone, Deserialize)]
pub struct Example {
    /// Identifier, shown for misses.
    pub id: String,
    /// The right category.
    pub label: String,
    /// The document's text.
    pub text: String,
}

/// The dataset cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} line {line}: not a {{\"id\",\"label\",\"text\"}} object")]
    Line {
        path: String,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Classify(#[from] ClassifyError),
}

/// Reads a JSONL dataset.
pub fn read_dataset(path: &Path) -> Result<Vec<Example>, EvalError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::Read {
        path: p.clone(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| EvalError::Line {
                path: p.clone(),
                line: i + 1,
                source,
            })
        })
        .collect()
}

/// What the classifier got right and wrong.
#[derive(Debug, Default)]
pub struct EvalReport {
    /// Category names, in taxonomy order (plus `unparseable` when it occurred).
    pub labels: Vec<String>,
    /// (gold, predicted) -> count.
    pub confusion: BTreeMap<(String, String), usize>,
    /// Misses: (id, gold, predicted).
    pub misses: Vec<(String, String, String)>,
    /// Time per example.
    pub times: Vec<Duration>,
    /// Input tokens over all examples.
    pub input_tokens: u64,
}

impl EvalReport {
    /// Correct / total.
    pub fn accuracy(&self) -> f64 {
        let total: usize = self.confusion.values().sum();
        let right: usize = self
            .confusion
            .iter()
            .filter(|((g, p), _)| g == p)
            .map(|(_, n)| n)
            .sum();
        if total == 0 {
            0.0
        } else {
            right as f64 / total as f64
        }
    }
}

/// Classifies every example; `progress` is called after each.
pub async fn evaluate(
    classifier: &Classifier,
    examples: &[Example],
    mut progress: impl FnMut(),
) -> Result<EvalReport, EvalError> {
    let mut report = EvalReport {
        labels: classifier.labels(),
        ..EvalReport::default()
    };
    for ex in examples {
        let started = Instant::now();
        let out = classifier
            .classify(&crate::extract::Extracted::from_text(ex.text.clone()))
            .await?;
        report.times.push(started.elapsed());
        report.input_tokens += out.input_tokens;
        let predicted = out.label.unwrap_or_else(|_| "unparseable".to_owned());
        if !report.labels.contains(&predicted) {
            report.labels.push(predicted.clone());
        }
        if predicted != ex.label {
            report
                .misses
                .push((ex.id.clone(), ex.label.clone(), predicted.clone()));
        }
        *report
            .confusion
            .entry((ex.label.clone(), predicted))
            .or_default() += 1;
        progress();
    }
    Ok(report)
}

impl std::fmt::Display for EvalReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total: usize = self.confusion.values().sum();
        let count = |g: Option<&str>, p: Option<&str>| -> usize {
            self.confusion
                .iter()
                .filter(|((gg, pp), _)| g.is_none_or(|g| g == gg) && p.is_none_or(|p| p == pp))
                .map(|(_, n)| n)
                .sum()
        };
        writeln!(
            f,
            "accuracy: {:.3} ({} of {})",
            self.accuracy(),
            total - self.misses.len(),
            total
        )?;
        writeln!(
            f,
            "\n{:<12} {:>9} {:>7} {:>8}",
            "category", "precision", "recall", "support"
        )?;
        for l in &self.labels {
            let tp = count(Some(l), Some(l));
            let predicted = count(None, Some(l));
            let support = count(Some(l), None);
            let ratio = |a: usize, b: usize| {
                if b == 0 {
                    "-".to_owned()
                } else {
                    format!("{:.2}", a as f64 / b as f64)
                }
            };
            writeln!(
                f,
                "{:<12} {:>9} {:>7} {:>8}",
                l,
                ratio(tp, predicted),
                ratio(tp, support),
                support
            )?;
        }
        writeln!(f, "\nconfusion (rows: right label, columns: predicted)")?;
        write!(f, "{:<12}", "")?;
        for l in &self.labels {
            write!(f, " {:>4}", &l[..l.len().min(4)])?;
        }
        writeln!(f)?;
        for g in &self.labels {
            write!(f, "{g:<12}")?;
            for p in &self.labels {
                write!(f, " {:>4}", count(Some(g), Some(p)))?;
            }
            writeln!(f)?;
        }
        if !self.misses.is_empty() {
            writeln!(f, "\nmisses:")?;
            for (id, g, p) in &self.misses {
                writeln!(f, "  {id}: {g} -> {p}")?;
            }
        }
        if self.times.is_empty() {
            return Ok(());
        }
        let mean =
            self.times.iter().sum::<Duration>().as_secs_f64() / self.times.len().max(1) as f64;
        write!(
            f,
            "\ntime per document: median {:.2} s, p90 {:.2} s, mean {:.2} s; input tokens per document {:.0}",
            quantile(&self.times, 0.5).as_secs_f64(),
            quantile(&self.times, 0.9).as_secs_f64(),
            mean,
            self.input_tokens as f64 / self.times.len().max(1) as f64
        )
    }
}
