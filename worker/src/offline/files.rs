//! Local files through the same extraction and classifier as the pool: the
//! folder walk, one record per file, the run's summary and the result file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use docsort_schema::{FailureReason, LabelRecord, Outcome, Source};
use serde::Serialize;

use crate::classify::{Classifier, ClassifyError};
use crate::extract::{extract_bounded, Limits};

/// One classified file: its path and the label record the pool would write.
#[derive(Debug, Clone, Serialize)]
pub struct FileResult {
    /// The file.
    pub path: PathBuf,
    /// The record (`uri` is `file://<absolute path>`, `bucket` is empty).
    #[serde(flatten)]
    pub record: LabelRecord,
    /// Time extraction and classification took.
    #[serde(skip)]
    pub elapsed: Duration,
}

/// Every `.pdf` (any case) in `paths`: files as given, folders recursively, sorted.
pub fn collect_pdfs(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut stack = vec![path.clone()];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir)? {
                    let p = entry?.path();
                    if p.is_dir() {
                        stack.push(p);
                    } else if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("pdf")) {
                        out.push(p);
                    }
                }
            }
        } else if path.exists() {
            out.push(path.clone());
        } else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} does not exist", path.display()),
            ));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Classifies one file into the record the pool would write for it.
pub async fn classify_file(
    path: &Path,
    classifier: &Classifier,
    limits: &Limits,
) -> Result<FileResult, ClassifyError> {
    let started = Instant::now();
    let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let record = |outcome| {
        LabelRecord::new(
            format!("file://{}", absolute.display()),
            String::new(),
            path.display().to_string(),
            classifier.prompt_version().to_owned(),
            Source::Manual,
            outcome,
        )
    };
    let record = match std::fs::read(path) {
        Err(e) => record(Outcome::failed(
            FailureReason::NotFound,
            format!("Cannot read the file: {e}."),
        )),
        Ok(bytes) => {
            let size = bytes.len() as u64;
            let (extracted, _) = extract_bounded(
                limits,
                bytes,
                classifier.max_text_chars(),
                classifier.fallback(),
            )
            .await;
            let mut record = match extracted {
                Err(e) => {
                    let mut r = record(Outcome::failed(e.reason(), e.detail()));
                    r.pages = e.pages();
                    r
                }
                Ok(x) => {
                    let answer = classifier.classify(&x).await?;
                    let mut r = record(answer.outcome());
                    r.attempts = 1;
                    classifier.fill_usage(&mut r, &x, &answer);
                    r
                }
            };
            record.size_bytes = Some(size);
            record
        }
    };
    Ok(FileResult {
        path: path.to_owned(),
        record,
        elapsed: started.elapsed(),
    })
}

/// Counts over a batch, printed at the end.
#[derive(Debug, Default)]
pub struct BatchSummary {
    /// Documents classified.
    pub documents: usize,
    /// Labeled documents per label.
    pub labels: BTreeMap<String, usize>,
    /// Failed documents per reason.
    pub failures: BTreeMap<String, usize>,
    /// Time per document.
    pub times: Vec<Duration>,
    /// Wall time of the batch.
    pub total: Duration,
}

impl BatchSummary {
    /// Adds one result.
    pub fn add(&mut self, r: &FileResult) {
        self.documents += 1;
        self.times.push(r.elapsed);
        match &r.record.outcome {
            Outcome::Labeled { label } => *self.labels.entry(label.clone()).or_default() += 1,
            Outcome::Failed { failure, .. } => {
                *self.failures.entry(failure.to_string()).or_default() += 1
            }
        }
    }
}

/// The `q` quantile of durations, nearest rank (zero when empty).
pub fn quantile(times: &[Duration], q: f64) -> Duration {
    let mut t = times.to_vec();
    t.sort();
    let rank = ((q * t.len() as f64).ceil() as usize).clamp(1, t.len().max(1)) - 1;
    t.get(rank).copied().unwrap_or_default()
}

impl std::fmt::Display for BatchSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |m: &BTreeMap<String, usize>| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(f, "documents: {}", self.documents)?;
        writeln!(
            f,
            "labels:    {}",
            if self.labels.is_empty() {
                "-".into()
            } else {
                list(&self.labels)
            }
        )?;
        writeln!(
            f,
            "failures:  {}",
            if self.failures.is_empty() {
                "-".into()
            } else {
                list(&self.failures)
            }
        )?;
        write!(
            f,
            "time:      {:.1} s in all, per document median {:.2} s, p90 {:.2} s",
            self.total.as_secs_f64(),
            quantile(&self.times, 0.5).as_secs_f64(),
            quantile(&self.times, 0.9).as_secs_f64()
        )
    }
}

/// Writes results as JSON lines or CSV, by the file's extension.
pub enum OutputFile {
    /// One JSON object per document.
    Jsonl(std::io::BufWriter<std::fs::File>),
    /// A header row and one row per document.
    Csv(Box<csv::Writer<std::fs::File>>),
}

/// Cannot write the output file.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{0}: the output file must end in .jsonl or .csv")]
    Extension(PathBuf),
    #[error("cannot write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write CSV")]
    Csv(#[from] csv::Error),
    #[error("cannot write JSON")]
    Json(#[from] serde_json::Error),
}

impl OutputFile {
    /// Creates `path` (`.jsonl` or `.csv`).
    pub fn create(path: &Path) -> Result<Self, OutputError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let io = |source| OutputError::Io {
            path: path.to_owned(),
            source,
        };
        match ext.as_deref() {
            Some("jsonl") => Ok(OutputFile::Jsonl(std::io::BufWriter::new(
                std::fs::File::create(path).map_err(io)?,
            ))),
            Some("csv") => Ok(OutputFile::Csv(Box::new(csv::Writer::from_writer(
                std::fs::File::create(path).map_err(io)?,
            )))),
            _ => Err(OutputError::Extension(path.to_owned())),
        }
    }

    /// Appends one result.
    pub fn write(&mut self, r: &FileResult) -> Result<(), OutputError> {
        use std::io::Write;
        match self {
            OutputFile::Jsonl(w) => {
                serde_json::to_writer(&mut *w, r)?;
                w.write_all(b"\n").map_err(|source| OutputError::Io {
                    path: r.path.clone(),
                    source,
                })
            }
            OutputFile::Csv(w) => {
                let rec = &r.record;
                let (label, failure, detail) = match &rec.outcome {
                    Outcome::Labeled { label } => (label.as_str(), "", ""),
                    Outcome::Failed { failure, detail } => ("", failure.as_str(), detail.as_str()),
                };
                w.serialize(CsvRow {
                    path: r.path.display().to_string(),
                    status: rec.status().as_str(),
                    label,
                    failure,
                    detail,
                    pages: rec.pages,
                    text_chars: rec.text_chars,
                    model_id: rec.model_id.as_deref().unwrap_or(""),
                    prompt_version: &rec.prompt_version,
                    input_tokens: rec.input_tokens,
                    output_tokens: rec.output_tokens,
                    cost_usd: rec.cost_usd,
                })?;
                Ok(())
            }
        }
    }

    /// Flushes the file.
    pub fn finish(self) -> Result<(), OutputError> {
        use std::io::Write;
        match self {
            OutputFile::Jsonl(mut w) => w.flush().map_err(|source| OutputError::Io {
                path: PathBuf::new(),
                source,
            }),
            OutputFile::Csv(mut w) => w.flush().map_err(|source| OutputError::Io {
                path: PathBuf::new(),
                source,
            }),
        }
    }
}

#[derive(Serialize)]
struct CsvRow<'a> {
    path: String,
    status: &'a str,
    label: &'a str,
    failure: &'a str,
    detail: &'a str,
    pages: Option<u32>,
    text_chars: Option<u64>,
    model_id: &'a str,
    prompt_version: &'a str,
    input_tokens: u64,
    output_tokens: u64,
    cost_usd: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let times: Vec<Duration> = (1..=10).map(Duration::from_secs).collect();
        assert_eq!(quantile(&times, 0.5), Duration::from_secs(5));
        assert_eq!(quantile(&times, 0.9), Duration::from_secs(9));
        assert_eq!(quantile(&times[..1], 0.9), Duration::from_secs(1));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
