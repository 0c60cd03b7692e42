//! The labels table out to downstream teams: a report of what it holds
//! ([`report`], a parallel scan folded into counts) and an export of its
//! records ([`export`], the label index when a label is given, a scan
//! otherwise), both page by page, so memory does not grow with the table.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::query::QueryError;
use aws_sdk_dynamodb::operation::scan::ScanError;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use docsort_schema::record::{format_timestamp, LABEL_INDEX};
use docsort_schema::{LabelRecord, Outcome, RecordError};
use futures::{stream, StreamExt, TryStreamExt};
use serde::Serialize;

/// Reading the table failed.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("DynamoDB Scan of {table} failed")]
    Scan {
        table: String,
        #[source]
        source: Box<SdkError<ScanError>>,
    },
    #[error("DynamoDB Query of {table} ({LABEL_INDEX}) failed")]
    Query {
        table: String,
        #[source]
        source: Box<SdkError<QueryError>>,
    },
    #[error("an item of {table} is not a label record")]
    Record {
        table: String,
        #[source]
        source: RecordError,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error("{0}: the export file must end in .jsonl or .csv")]
    Extension(PathBuf),
}

/// Which part of the table to read.
#[derive(Debug, Clone)]
pub struct TableQuery {
    /// The labels table.
    pub table: String,
    /// Only records classified at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Items per page (DynamoDB's `Limit`); `None`: up to 1 MB a page.
    pub page_size: Option<i32>,
}

impl TableQuery {
    fn since_value(&self) -> Option<AttributeValue> {
        self.since.map(|t| AttributeValue::S(format_timestamp(t)))
    }
}

/// What the table holds, folded from every record.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// Records read.
    pub documents: u64,
    /// Labeled documents per label.
    pub labels: BTreeMap<String, u64>,
    /// Documents per status (`labeled`, `failed`).
    pub statuses: BTreeMap<String, u64>,
    /// Failed documents per reason.
    pub failures: BTreeMap<String, u64>,
    /// Model cost per UTC day of `classified_at`, in USD.
    pub cost_per_day: BTreeMap<String, f64>,
    /// Documents per model id.
    pub models: BTreeMap<String, u64>,
    /// Input tokens over all records.
    pub input_tokens: u64,
    /// Output tokens over all records.
    pub output_tokens: u64,
    /// Model cost over all records, in USD.
    pub cost_usd: f64,
}

impl Report {
    fn add(&mut self, r: &LabelRecord) {
        self.documents += 1;
        *self
            .statuses
            .entry(r.status().as_str().to_owned())
            .or_default() += 1;
        match &r.outcome {
            Outcome::Labeled { label } => *self.labels.entry(label.clone()).or_default() += 1,
            Outcome::Failed { failure, .. } => {
                *self.failures.entry(failure.to_string()).or_default() += 1
            }
        }
        if let Some(model) = &r.model_id {
            *self.models.entry(model.clone()).or_default() += 1;
        }
        self.input_tokens += r.input_tokens;
        self.output_tokens += r.output_tokens;
        if let Some(cost) = r.cost_usd {
            self.cost_usd += cost;
            *self
                .cost_per_day
                .entry(r.classified_at.date_naive().to_string())
                .or_default() += cost;
        }
    }

    fn merge(mut self, other: Report) -> Report {
        let sum = |a: &mut BTreeMap<String, u64>, b: BTreeMap<String, u64>| {
            for (k, v) in b {
                *a.entry(k).or_default() += v;
            }
        };
        self.documents += other.documents;
        sum(&mut self.labels, other.labels);
        sum(&mut self.statuses, other.statuses);
        sum(&mut self.failures, other.failures);
        sum(&mut self.models, other.models);
        for (k, v) in other.cost_per_day {
            *self.cost_per_day.entry(k).or_default() += v;
        }
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cost_usd += other.cost_usd;
        self
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "documents: {}", self.documents)?;
        let section =
            |f: &mut std::fmt::Formatter<'_>, title: &str, rows: &BTreeMap<String, u64>| {
                writeln!(f, "\n{title}")?;
                rows.iter()
                    .try_for_each(|(k, v)| writeln!(f, "  {k:<48} {v:>10}"))
            };
        section(f, "STATUS", &self.statuses)?;
        section(f, "LABEL", &self.labels)?;
        section(f, "FAILURE", &self.failures)?;
        section(f, "MODEL", &self.models)?;
        writeln!(f, "\nCOST PER DAY (UTC)")?;
        for (day, cost) in &self.cost_per_day {
            writeln!(f, "  {day:<48} {cost:>10.4}")?;
        }
        writeln!(
            f,
            "\ntokens: {} in, {} out; cost: {:.4} USD",
            self.input_tokens, self.output_tokens, self.cost_usd
        )
    }
}

/// Reads every record (classified since `query.since`) with a parallel scan
/// of `segments` segments; `progress` is called with each page's item count.
pub async fn report(
    dynamodb: &aws_sdk_dynamodb::Client,
    query: &TableQuery,
    segments: i32,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Report, TableError> {
    let segments = segments.max(1);
    stream::iter(0..segments)
        .map(|segment| scan_segment(dynamodb, query, segment, segments, progress))
        .buffer_unordered(segments as usize)
        .try_fold(Report::default(), |a, b| async move { Ok(a.merge(b)) })
        .await
}

async fn scan_segment(
    dynamodb: &aws_sdk_dynamodb::Client,
    query: &TableQuery,
    segment: i32,
    segments: i32,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Report, TableError> {
    let mut report = Report::default();
    let mut start: Option<HashMap<String, AttributeValue>> = None;
    loop {
        let page = scan_page(dynamodb, query, Some((segment, segments)), start.take()).await?;
        for item in page.items() {
            let record =
                LabelRecord::from_item(item.clone()).map_err(|source| TableError::Record {
                    table: query.table.clone(),
                    source,
                })?;
            report.add(&record);
        }
        progress(page.items().len() as u64);
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return Ok(report),
        }
    }
}

/// One page of a scan of `query`'s records (of one `(segment, total)` of a
/// parallel scan, when given), from `start`.
async fn scan_page(
    dynamodb: &aws_sdk_dynamodb::Client,
    query: &TableQuery,
    segment: Option<(i32, i32)>,
    start: Option<HashMap<String, AttributeValue>>,
) -> Result<aws_sdk_dynamodb::operation::scan::ScanOutput, TableError> {
    let mut scan = dynamodb
        .scan()
        .table_name(&query.table)
        .set_segment(segment.map(|(s, _)| s))
        .set_total_segments(segment.map(|(_, n)| n))
        .set_limit(query.page_size)
        .set_exclusive_start_key(start);
    if let Some(since) = query.since_value() {
        scan = scan
            .filter_expression("classified_at >= :since")
            .expression_attribute_values(":since", since);
    }
    scan.send().await.map_err(|e| TableError::Scan {
        table: query.table.clone(),
        source: Box::new(e),
    })
}

/// Where export writes.
enum Sink {
    Jsonl(std::io::BufWriter<std::fs::File>),
    Csv(Box<csv::Writer<std::fs::File>>),
}

/// One CSV row: the record's attributes, flat.
#[derive(Serialize)]
struct Row<'a> {
    uri: &'a str,
    bucket: &'a str,
    key: &'a str,
    status: &'a str,
    label: &'a str,
    failure: &'a str,
    detail: &'a str,
    etag: Option<&'a str>,
    version_id: Option<&'a str>,
    size_bytes: Option<u64>,
    pages: Option<u32>,
    model_id: Option<&'a str>,
    prompt_version: &'a str,
    input_tokens: u64,
    output_tokens: u64,
    cost_usd: Option<f64>,
    classified_at: String,
    source: &'a str,
}

impl Sink {
    fn create(path: &Path) -> Result<Sink, TableError> {
        let file = || {
            std::fs::File::create(path).map_err(|source| TableError::Write {
                path: path.to_owned(),
                source,
            })
        };
        match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl") => Ok(Sink::Jsonl(std::io::BufWriter::new(file()?))),
            Some("csv") => Ok(Sink::Csv(Box::new(csv::Writer::from_writer(file()?)))),
            _ => Err(TableError::Extension(path.to_owned())),
        }
    }

    fn write(&mut self, path: &Path, r: &LabelRecord) -> Result<(), TableError> {
        let io = |source| TableError::Write {
            path: path.to_owned(),
            source,
        };
        match self {
            Sink::Jsonl(w) => {
                serde_json::to_writer(&mut *w, r).map_err(|e| io(e.into()))?;
                w.write_all(b"\n").map_err(io)
            }
            Sink::Csv(w) => {
                let (label, failure, detail) = match &r.outcome {
                    Outcome::Labeled { label } => (label.as_str(), "", ""),
                    Outcome::Failed { failure, detail } => ("", failure.as_str(), detail.as_str()),
                };
                w.serialize(Row {
                    uri: &r.uri,
                    bucket: &r.bucket,
                    key: &r.key,
                    status: r.status().as_str(),
                    label,
                    failure,
                    detail,
                    etag: r.etag.as_deref(),
                    version_id: r.version_id.as_deref(),
                    size_bytes: r.size_bytes,
                    pages: r.pages,
                    model_id: r.model_id.as_deref(),
                    prompt_version: &r.prompt_version,
                    input_tokens: r.input_tokens,
                    output_tokens: r.output_tokens,
                    cost_usd: r.cost_usd,
                    classified_at: format_timestamp(r.classified_at),
                    source: r.source.as_str(),
                })
                .map_err(|source| TableError::Csv {
                    path: path.to_owned(),
                    source,
                })
            }
        }
    }

    fn finish(self, path: &Path) -> Result<(), TableError> {
        match self {
            Sink::Jsonl(mut w) => w.flush(),
            Sink::Csv(mut w) => w.flush(),
        }
        .map_err(|source| TableError::Write {
            path: path.to_owned(),
            source,
        })
    }
}

/// Writes the records (of `label`, when given, through the label index;
/// all otherwise) classified since `query.since` to `out` (`.jsonl`: one
/// record per line; `.csv`: a header and one row per record), page by page.
/// Returns the number written; `progress` is called with each page's count.
pub async fn export(
    dynamodb: &aws_sdk_dynamodb::Client,
    query: &TableQuery,
    label: Option<&str>,
    out: &Path,
    progress: &dyn Fn(u64),
) -> Result<u64, TableError> {
    let mut sink = Sink::create(out)?;
    let mut written = 0;
    let mut start: Option<HashMap<String, AttributeValue>> = None;
    loop {
        let (items, next) = match label {
            Some(label) => {
                let mut q = dynamodb
                    .query()
                    .table_name(&query.table)
                    .index_name(LABEL_INDEX)
                    .set_limit(query.page_size)
                    .set_exclusive_start_key(start.take())
                    .expression_attribute_names("#label", "label")
                    .expression_attribute_values(":label", AttributeValue::S(label.to_owned()));
                q = match query.since_value() {
                    Some(since) => q
                        .key_condition_expression("#label = :label AND classified_at >= :since")
                        .expression_attribute_values(":since", since),
                    None => q.key_condition_expression("#label = :label"),
                };
                let page = q.send().await.map_err(|e| TableError::Query {
                    table: query.table.clone(),
                    source: Box::new(e),
                })?;
                (page.items, page.last_evaluated_key)
            }
            None => {
                let page = scan_page(dynamodb, query, None, start.take()).await?;
                (page.items, page.last_evaluated_key)
            }
        };
        let items = items.unwrap_or_default();
        for item in &items {
            let record =
                LabelRecord::from_item(item.clone()).map_err(|source| TableError::Record {
                    table: query.table.clone(),
                    source,
                })?;
            sink.write(out, &record)?;
        }
        written += items.len() as u64;
        progress(items.len() as u64);
        match next {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => break,
        }
    }
    sink.finish(out)?;
    Ok(written)
}
