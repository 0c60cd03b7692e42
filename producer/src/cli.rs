//! The command line: every flag, each also a `DOCSORT_*` variable.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// docsort producer: enqueues S3 PDF keys for the docsort workers.
///
/// AWS region, credentials and endpoints come from the standard AWS chain
/// (AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_SQS, ...).
#[derive(Debug, Parser)]
#[command(name = "docsort-producer", version, about, long_about = None)]
pub struct Cli {
    /// Log format: `pretty` for people, `json` for log pipelines.
    #[arg(long, env = "DOCSORT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The producer's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List a bucket (under a prefix) and enqueue the PDFs (keys ending in .pdf, any case)
    /// that need a label: no item in the labels table, or an item for another etag.
    /// `--relabel` and `--retry-failed` widen the selection.
    Backfill(BackfillArgs),
    /// Enqueue the given s3://bucket/key URIs, or one URI per line from standard input.
    Enqueue(EnqueueArgs),
    /// What the labels table holds: documents per label, status and failure reason,
    /// cost per day, tokens and model ids (a parallel scan).
    Report(ReportArgs),
    /// Write the labels table's records to a .jsonl or .csv file (the label index
    /// with --label, a scan otherwise), page by page.
    Export(ExportArgs),
}

/// Which records of the labels table to read.
#[derive(Debug, Clone, Args)]
pub struct TableArgs {
    /// The labels table.
    #[arg(long, env = "DOCSORT_TABLE")]
    pub table: String,
    /// Only records classified at or after this time: RFC 3339 (`2026-12-01T00:00:00Z`)
    /// or a UTC day (`2026-12-01`).
    #[arg(long, env = "DOCSORT_SINCE", value_parser = since)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Items per DynamoDB page (default: as many as fit in 1 MB).
    #[arg(long, env = "DOCSORT_PAGE_SIZE", value_parser = clap::value_parser!(i32).range(1..))]
    pub page_size: Option<i32>,
}

impl TableArgs {
    /// The library's view of these flags.
    pub fn query(&self) -> docsort_producer::table::TableQuery {
        docsort_producer::table::TableQuery {
            table: self.table.clone(),
            since: self.since,
            page_size: self.page_size,
        }
    }
}

/// `docsort-producer report`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Which records.
    #[command(flatten)]
    pub table: TableArgs,
    /// Print JSON instead of a table.
    #[arg(long, env = "DOCSORT_JSON")]
    pub json: bool,
    /// Segments of the parallel scan (read at once).
    #[arg(long, env = "DOCSORT_SCAN_SEGMENTS", default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub segments: i32,
}

/// `docsort-producer export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// The file to write: `.jsonl` (one record per line) or `.csv`.
    #[arg(long, env = "DOCSORT_OUT")]
    pub out: std::path::PathBuf,
    /// Only records with this label (read through the label index).
    #[arg(long, env = "DOCSORT_LABEL")]
    pub label: Option<String>,
    /// Which records.
    #[command(flatten)]
    pub table: TableArgs,
}

fn since(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            format!("{s:?} is neither RFC 3339 (2026-12-01T00:00:00Z) nor a day (2026-12-01)")
        })
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Where jobs go.
#[derive(Debug, Clone, Args)]
pub struct QueueArgs {
    /// URL of the SQS work queue (not needed with `backfill --dry-run`).
    #[arg(long, env = "DOCSORT_QUEUE_URL")]
    pub queue_url: Option<String>,
    /// Batches of 10 sent at once.
    #[arg(long, env = "DOCSORT_SEND_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub send_concurrency: u32,
}

/// `docsort-producer backfill`.
#[derive(Debug, Clone, Args)]
pub struct BackfillArgs {
    /// Bucket to list.
    #[arg(long, env = "DOCSORT_BUCKET")]
    pub bucket: String,
    /// Only keys under this prefix (e.g. `inbox/2026/`).
    #[arg(long, env = "DOCSORT_PREFIX", default_value = "")]
    pub prefix: String,
    /// The labels table each listed object is compared with.
    #[arg(long, env = "DOCSORT_TABLE")]
    pub table: String,
    /// Also enqueue failed documents whose reason may pass on another try
    /// (timeout, unparseable_answer, not_found).
    #[arg(long, env = "DOCSORT_RETRY_FAILED")]
    pub retry_failed: bool,
    /// Also enqueue documents labeled under another label version (a new
    /// model, taxonomy or text budget).
    #[arg(long, env = "DOCSORT_RELABEL")]
    pub relabel: bool,
    /// List, compare and count, but send nothing (no queue needed).
    #[arg(long, env = "DOCSORT_DRY_RUN")]
    pub dry_run: bool,
    /// The workers' label version: what their records' `prompt_version`
    /// must be to count as current.
    #[command(flatten)]
    pub version: LabelVersionArgs,
    /// Queue settings.
    #[command(flatten)]
    pub queue: QueueArgs,
}

/// The label version the workers write, from the same settings they read.
#[derive(Debug, Clone, Args)]
pub struct LabelVersionArgs {
    /// The workers' Bedrock model or inference profile id.
    #[arg(long, env = "DOCSORT_MODEL_ID", default_value = docsort_schema::prompt::DEFAULT_MODEL_ID)]
    pub model_id: String,
    /// The workers' taxonomy file (default: the eight built-in categories).
    #[arg(long, env = "DOCSORT_TAXONOMY")]
    pub taxonomy: Option<std::path::PathBuf>,
    /// The workers' text budget, in characters.
    #[arg(long, env = "DOCSORT_MAX_TEXT_CHARS", default_value_t = docsort_schema::prompt::DEFAULT_MAX_TEXT_CHARS as u32)]
    pub max_text_chars: u32,
    /// The label version itself, instead of computing it from the three
    /// flags above (the local classifier's is in `docsort-worker eval`'s
    /// header and the worker's "classifier ready" log line).
    #[arg(long, env = "DOCSORT_LABEL_VERSION")]
    pub label_version: Option<String>,
}

impl LabelVersionArgs {
    /// The label version these flags name.
    pub fn label_version(&self) -> anyhow::Result<String> {
        use anyhow::Context;
        if let Some(version) = &self.label_version {
            return Ok(version.clone());
        }
        let taxonomy = docsort_schema::Taxonomy::load(self.taxonomy.as_deref())
            .context("cannot load the taxonomy (--taxonomy)")?;
        Ok(docsort_schema::Prompt::new(taxonomy).label_version(
            &self.model_id,
            self.max_text_chars as usize,
            b"",
        ))
    }
}

/// `docsort-producer enqueue`.
#[derive(Debug, Clone, Args)]
pub struct EnqueueArgs {
    /// Objects as s3://bucket/key (key as is, not URL-encoded). None, or `-`: read them from standard input.
    pub uris: Vec<String>,
    /// Queue settings.
    #[command(flatten)]
    pub queue: QueueArgs,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every flag of every command can also be set by a DOCSORT_* variable.
    #[test]
    fn every_flag_has_a_docsort_variable() {
        fn check(cmd: &clap::Command) {
            for arg in cmd.get_arguments().filter(|a| {
                !a.is_positional() && !["help", "version"].contains(&a.get_id().as_str())
            }) {
                let env = arg
                    .get_env()
                    .map(|e| e.to_string_lossy().into_owned())
                    .unwrap_or_default();
                assert!(
                    env.starts_with("DOCSORT_"),
                    "{} --{} has no DOCSORT_ variable",
                    cmd.get_name(),
                    arg.get_id()
                );
            }
            cmd.get_subcommands().for_each(check);
        }
        check(&super::Cli::command());
    }
}
