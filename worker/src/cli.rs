//! The command line: every flag, each also a `DOCSORT_*` variable, and how
//! each command's flags become the library's settings structs.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use docsort_schema::retry::Backoff;
use docsort_worker::batch::staging::S3Location;
use docsort_worker::batch::{BatchSettings, Quotas};
use docsort_worker::classify::bedrock::{BedrockSettings, Guardrail, DEFAULT_MODEL_ID};
use docsort_worker::classify::gate::GateConfig;
use docsort_worker::classify::local::{self, HeadChoice, LocalSettings, ReadingAsked};
use docsort_worker::classify::{ClassifierKind, ClassifierSettings};
use docsort_worker::extract::{Fallback, Isolation, Limits};
use docsort_worker::offline::train::CASCADE_TOLERANCE;
use docsort_worker::pipeline::RunSettings;

/// docsort worker: sorts PDFs from S3 into categories with a cheap Bedrock model
/// and writes one label per document to DynamoDB.
///
/// AWS region, credentials and endpoints come from the standard AWS chain
/// (AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_SQS, ...).
#[derive(Debug, Parser)]
#[command(name = "docsort-worker", version, about, long_about = None, args_override_self = true)]
pub struct Cli {
    /// Log format: `pretty` for people, `json` for log pipelines.
    #[arg(long, env = "DOCSORT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The worker's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pool: receive jobs from the queue until SIGTERM or ctrl-c.
    Run(RunArgs),
    /// Backfill through Bedrock batch inference (half the on-demand price): select what
    /// needs a label as `docsort-producer backfill` does, stage it, run batch jobs, write
    /// the labels. Killed at any point, run it again: it resumes from the staging prefix.
    Batch(BatchArgs),
    /// Extract text from local PDF files and print it with the outcome (for debugging a label).
    Extract(ExtractArgs),
    /// Classify local PDF files and folders (recursively) and print a table of labels.
    Classify(ClassifyArgs),
    /// Score a classifier on a labeled JSONL set ({"id","label","text"} per line):
    /// accuracy, per-category precision/recall, confusion matrix, time per document.
    Eval(EvalArgs),
    /// Fit a head for the local model on labeled examples (folders of PDFs per category, a
    /// manifest TSV, or a labeled JSONL): k-fold cross-validation, then the head file.
    /// Reads one example per core (at most 4), the model's kernels on one thread each,
    /// unless CANDLE_NUM_THREADS is set.
    Train(TrainArgs),
    /// Write sample PDFs of each default category into a folder (for the quickstart).
    Samples(SamplesArgs),
    /// Internal: extract one PDF from standard input and report as JSON (the worker's isolated extraction).
    #[command(hide = true)]
    ExtractChild {
        /// Characters to extract (0 = all).
        #[arg(long, default_value_t = 0)]
        max_text_chars: usize,
        /// Without usable text: `none`, `page-image` or `ocr`.
        #[arg(long, default_value = "none", value_parser = parse_fallback)]
        fallback: Fallback,
    },
}

fn parse_fallback(value: &str) -> Result<Fallback, String> {
    Fallback::parse(value).ok_or_else(|| format!("expected none, page-image or ocr, got {value:?}"))
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Which classifier answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClassifierArg {
    /// Amazon Bedrock Converse with `--model-id`.
    Bedrock,
    /// The embedded model in `--local-model-dir` (no network, no cost).
    Local,
}

/// How documents are classified; shared by every command that classifies.
#[derive(Debug, Clone, Args)]
pub struct ClassifierArgs {
    /// Which classifier answers [default: bedrock for `run`, local for `classify` and `eval`].
    #[arg(long, env = "DOCSORT_CLASSIFIER", value_enum)]
    pub classifier: Option<ClassifierArg>,
    /// Document tokens the local model reads at most [default: a head's own reading (the
    /// shipped head's: 192); 256 zero-shot; `train` fits for the shipped head's reading].
    #[arg(long, env = "DOCSORT_LOCAL_DOC_TOKENS", value_parser = clap::value_parser!(u32).range(16..=2048))]
    pub local_doc_tokens: Option<u32>,
    /// Document tokens the local model reads first: when its answer is confident (the
    /// head's own threshold, or `--local-confidence` zero-shot) the rest is not read.
    /// Equal to `--local-doc-tokens`: always read them all (a head then decides without
    /// its first stage) [default: a head's own reading (the shipped head's: 96); 64
    /// zero-shot; `train` fits for the shipped head's reading].
    #[arg(long, env = "DOCSORT_LOCAL_FIRST_TOKENS", value_parser = clap::value_parser!(u32).range(16..=2048))]
    pub local_first_tokens: Option<u32>,
    /// Probability of the best category, among the categories, at which the
    /// first reading's zero-shot answer is accepted (a head carries its own
    /// threshold, chosen by `train`).
    #[arg(long, env = "DOCSORT_LOCAL_CONFIDENCE", default_value_t = 0.9, value_parser = confidence)]
    pub local_confidence: f32,
    /// A trained head (`docsort-worker train`) that decides the local model's category
    /// from its hidden state [default: the shipped head, when it fits the taxonomy and reading].
    #[arg(long, env = "DOCSORT_LOCAL_HEAD", conflicts_with = "no_head")]
    pub head: Option<PathBuf>,
    /// No trained head: the local model's zero-shot label scores decide.
    #[arg(long, env = "DOCSORT_LOCAL_NO_HEAD")]
    pub no_head: bool,
    /// Folder with the local model's files (`scripts/fetch-model` puts them there)
    /// [default: ~/.cache/docsort/models/<model>].
    #[arg(long, env = "DOCSORT_LOCAL_MODEL_DIR")]
    pub local_model_dir: Option<PathBuf>,
    /// Bedrock model or inference profile id (any Converse model works).
    #[arg(long, env = "DOCSORT_MODEL_ID", default_value = DEFAULT_MODEL_ID)]
    pub model_id: String,
    /// TOML file with `[[category]]` name/description entries replacing the 8 default categories.
    #[arg(long, env = "DOCSORT_TAXONOMY")]
    pub taxonomy: Option<PathBuf>,
    /// Characters of document text sent to the model (the first pages decide; input tokens are the cost).
    #[arg(long, env = "DOCSORT_MAX_TEXT_CHARS", default_value_t = docsort_schema::prompt::DEFAULT_MAX_TEXT_CHARS as u32, value_parser = clap::value_parser!(u32).range(100..))]
    pub max_text_chars: u32,
    /// Output token cap per model call (the answer is one word).
    #[arg(long, env = "DOCSORT_MAX_TOKENS", default_value_t = 8, value_parser = clap::value_parser!(i32).range(1..=256))]
    pub max_tokens: i32,
    /// Seconds one model call attempt may take before it is retried.
    #[arg(long, env = "DOCSORT_MODEL_TIMEOUT_SECS", default_value_t = 30)]
    pub model_timeout_secs: u64,
    /// Attempts per model call on throttling, timeouts and 5xx (full-jitter backoff);
    /// after the last, the message is left for redelivery.
    #[arg(long, env = "DOCSORT_MODEL_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub model_attempts: u32,
    /// Ceiling of the pool-wide model request rate, per second (throttles halve the rate, successes raise it back).
    #[arg(long, env = "DOCSORT_MODEL_MAX_RPS", default_value_t = 20.0)]
    pub model_max_rps: f64,
    /// Floor of the pool-wide model request rate during a throttle storm, per second.
    #[arg(long, env = "DOCSORT_MODEL_MIN_RPS", default_value_t = 0.5)]
    pub model_min_rps: f64,
    /// Ceiling on model tokens per minute (input + output) for this process; unset: none.
    #[arg(long, env = "DOCSORT_MODEL_MAX_TPM")]
    pub model_max_tpm: Option<u64>,
    /// Bedrock guardrail id or ARN sent with every model call; when it intervenes the
    /// document is recorded `failed/blocked` with the policy that fired. Needs `--guardrail-version`.
    #[arg(long, env = "DOCSORT_GUARDRAIL_ID", requires = "guardrail_version")]
    pub guardrail_id: Option<String>,
    /// The guardrail's version: `DRAFT` or a published version number.
    #[arg(long, env = "DOCSORT_GUARDRAIL_VERSION", requires = "guardrail_id", value_parser = guardrail_version)]
    pub guardrail_version: Option<String>,
}

fn guardrail_version(value: &str) -> Result<String, String> {
    if value == "DRAFT"
        || (!value.is_empty() && value.len() <= 8 && value.bytes().all(|b| b.is_ascii_digit()))
    {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "expected DRAFT or a version number such as 1, got {value:?}"
        ))
    }
}

impl ClassifierArgs {
    /// The settings these flags ask for; `default` when no classifier is named.
    pub fn settings(&self, default: ClassifierKind) -> ClassifierSettings {
        let kind = match self.classifier {
            Some(ClassifierArg::Bedrock) => ClassifierKind::Bedrock,
            Some(ClassifierArg::Local) => ClassifierKind::Local,
            None => default,
        };
        ClassifierSettings {
            kind,
            taxonomy: self.taxonomy.clone(),
            max_text_chars: self.max_text_chars as usize,
            bedrock: BedrockSettings {
                model_id: self.model_id.clone(),
                max_tokens: self.max_tokens,
                attempt_timeout: Duration::from_secs(self.model_timeout_secs),
                retry: Backoff::default().with_attempts(self.model_attempts),
                gate: GateConfig {
                    max_rps: self.model_max_rps,
                    min_rps: self.model_min_rps,
                    max_tpm: self.model_max_tpm,
                },
                guardrail: self
                    .guardrail_id
                    .clone()
                    .zip(self.guardrail_version.clone())
                    .map(|(id, version)| Guardrail { id, version }),
            },
            local: LocalSettings {
                model_dir: self
                    .local_model_dir
                    .clone()
                    .unwrap_or_else(local::default_model_dir),
                reading: ReadingAsked {
                    doc_tokens: self.local_doc_tokens.map(|t| t as usize),
                    first_tokens: self.local_first_tokens.map(|t| t as usize),
                    confidence: self.local_confidence,
                },
                head: match (&self.head, self.no_head) {
                    (_, true) => HeadChoice::None,
                    (Some(file), false) => HeadChoice::File(file.clone()),
                    (None, false) => HeadChoice::Default,
                },
            },
        }
    }
}

/// Limits applied to each document.
#[derive(Debug, Clone, Args)]
pub struct DocumentLimits {
    /// Largest object downloaded, in bytes; larger ones are recorded `failed/too_large` unread.
    #[arg(long, env = "DOCSORT_MAX_OBJECT_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_object_bytes: u64,
    /// Seconds text extraction of one document may take before it is recorded `failed/timeout`.
    #[arg(long, env = "DOCSORT_EXTRACT_TIMEOUT_SECS", default_value_t = 30)]
    pub extract_timeout_secs: u64,
    /// Memory ceiling of one document's extraction (child process address space), in MiB;
    /// a document needing more is recorded `failed/too_large`.
    #[arg(long, env = "DOCSORT_EXTRACT_MEMORY_MIB", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(64..))]
    pub extract_memory_mib: u64,
    /// Where extraction runs: `process` (a child process per document: time and memory caps,
    /// crashes contained) or `in-process` (no memory ceiling; for debugging).
    #[arg(long, env = "DOCSORT_EXTRACT_ISOLATION", value_enum, default_value_t = IsolationKind::Process)]
    pub extract_isolation: IsolationKind,
    /// The executable run as the extraction child (default: this docsort-worker).
    #[arg(long, env = "DOCSORT_EXTRACTOR_EXE", hide = true)]
    pub extractor_exe: Option<PathBuf>,
}

/// Where extraction runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IsolationKind {
    /// A child process per document.
    Process,
    /// This process's blocking thread pool.
    InProcess,
}

impl DocumentLimits {
    /// Extraction's bounds; the child process is this executable unless
    /// `--extractor-exe` names another.
    pub fn extract_limits(&self) -> anyhow::Result<Limits> {
        use anyhow::Context;
        let isolation = match self.extract_isolation {
            IsolationKind::InProcess => Isolation::InProcess,
            IsolationKind::Process => Isolation::Process {
                exe: match &self.extractor_exe {
                    Some(exe) => exe.clone(),
                    None => std::env::current_exe()
                        .context("cannot find the extractor executable (this docsort-worker)")?,
                },
                memory_mib: self.extract_memory_mib,
            },
        };
        Ok(Limits {
            timeout: Duration::from_secs(self.extract_timeout_secs),
            isolation,
        })
    }
}

/// `docsort-worker run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// URL of the SQS work queue.
    #[arg(long, env = "DOCSORT_QUEUE_URL")]
    pub queue_url: String,
    /// Name of the DynamoDB labels table (one item per document; downstream apps read it).
    #[arg(long, env = "DOCSORT_TABLE")]
    pub table: String,
    /// Name of the DynamoDB state table (partition key `pk`, TTL `expires_at`):
    /// the workers' leases. The template creates it.
    #[arg(long, env = "DOCSORT_STATE_TABLE")]
    pub state_table: String,
    /// Documents processed at once by this process.
    #[arg(long, env = "DOCSORT_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// Long-poll wait of each receive, in seconds (0-20).
    #[arg(long, env = "DOCSORT_WAIT_TIME_SECS", default_value_t = 20, value_parser = clap::value_parser!(i32).range(0..=20))]
    pub wait_time_secs: i32,
    /// Visibility timeout set on each received message, in seconds; renewed at
    /// half this period while the document is worked on.
    #[arg(long, env = "DOCSORT_VISIBILITY_TIMEOUT_SECS", default_value_t = 120, value_parser = clap::value_parser!(i32).range(10..=43200))]
    pub visibility_timeout_secs: i32,
    /// Seconds to finish in-flight documents after SIGTERM before exiting anyway
    /// (unfinished messages return to the queue).
    #[arg(long, env = "DOCSORT_SHUTDOWN_GRACE_SECS", default_value_t = 90)]
    pub shutdown_grace_secs: u64,
    /// CloudWatch namespace for Embedded Metric Format lines on stdout (every 60 s:
    /// ModelCostUsd, ModelThrottles, ModelInputTokens, ModelOutputTokens, DocumentsLabeled,
    /// DocumentsFailed); unset: no metric lines.
    #[arg(long, env = "DOCSORT_METRICS_NAMESPACE")]
    pub metrics_namespace: Option<String>,
    /// Model spend per UTC day, in USD, shared by every worker on the same
    /// state table: when the day's total reaches it, workers stop receiving
    /// (messages stay queued) until the next UTC day. Unset: no cap.
    #[arg(long, env = "DOCSORT_DAILY_BUDGET_USD", value_parser = budget)]
    pub daily_budget_usd: Option<f64>,
    /// Seconds the known daily total may be old before a receive reads it again
    /// (0: read before every receive, one GetItem; this keeps spend after the
    /// cap within one document per slot).
    #[arg(long, env = "DOCSORT_BUDGET_REFRESH_SECS", default_value_t = 0)]
    pub budget_refresh_secs: u64,
    /// Classification settings.
    #[command(flatten)]
    pub classifier: ClassifierArgs,
    /// Per-document limits.
    #[command(flatten)]
    pub limits: DocumentLimits,
}

impl RunArgs {
    /// The pool's settings (Bedrock unless `--classifier local`).
    pub fn settings(&self) -> anyhow::Result<RunSettings> {
        Ok(RunSettings {
            queue_url: self.queue_url.clone(),
            table: self.table.clone(),
            state_table: self.state_table.clone(),
            concurrency: self.concurrency as usize,
            wait_time_secs: self.wait_time_secs,
            visibility_timeout_secs: self.visibility_timeout_secs,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            metrics_namespace: self.metrics_namespace.clone(),
            daily_budget_usd: self.daily_budget_usd,
            budget_refresh: Duration::from_secs(self.budget_refresh_secs),
            max_object_bytes: self.limits.max_object_bytes,
            extract: self.limits.extract_limits()?,
            classifier: self.classifier.settings(ClassifierKind::Bedrock),
        })
    }
}

/// `docsort-worker batch`.
#[derive(Debug, Clone, Args)]
pub struct BatchArgs {
    /// Bucket to list.
    #[arg(long, env = "DOCSORT_BUCKET")]
    pub bucket: String,
    /// Only keys under this prefix (e.g. `archive/2025/`).
    #[arg(long, env = "DOCSORT_PREFIX", default_value = "")]
    pub prefix: String,
    /// ARN of the batch service role Bedrock assumes to read the staged inputs and
    /// write the outputs (the template's BatchRoleArn output).
    #[arg(long, env = "DOCSORT_BATCH_ROLE_ARN")]
    pub role_arn: String,
    /// Where inputs, the manifest, outputs and the run's state are kept:
    /// `s3://bucket/prefix/` (the template's staging bucket expires them).
    #[arg(long, env = "DOCSORT_BATCH_STAGING", value_parser = staging_location)]
    pub staging: S3Location,
    /// Seconds before the first job status poll; the wait doubles while nothing
    /// changes, up to `--max-poll-secs`.
    #[arg(long, env = "DOCSORT_BATCH_POLL_SECS", default_value_t = 60.0, value_parser = seconds)]
    pub poll_secs: f64,
    /// Longest wait between job status polls, in seconds.
    #[arg(long, env = "DOCSORT_BATCH_MAX_POLL_SECS", default_value_t = 900.0, value_parser = seconds)]
    pub max_poll_secs: f64,
    /// Hours before Bedrock stops an unfinished job (its unprocessed documents then go on-demand).
    #[arg(long, env = "DOCSORT_BATCH_TIMEOUT_HOURS", default_value_t = 24, value_parser = clap::value_parser!(i32).range(24..=168))]
    pub timeout_hours: i32,
    /// Fewest records per job (Bedrock's minimum); a smaller remainder is sent to the
    /// on-demand queue instead.
    #[arg(long, env = "DOCSORT_BATCH_MIN_RECORDS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub min_records: u64,
    /// Most records per job (Bedrock's quota).
    #[arg(long, env = "DOCSORT_BATCH_MAX_RECORDS", default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_records: u64,
    /// Most input bytes per job, in MiB (Bedrock's job size quota).
    #[arg(long, env = "DOCSORT_BATCH_MAX_JOB_MIB", default_value_t = 5 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_job_mib: u64,
    /// Records per staged input file (also the most a resumed run re-extracts).
    #[arg(long, env = "DOCSORT_BATCH_FILE_RECORDS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=50_000))]
    pub file_records: u64,
    /// Jobs submitted or in progress at once (Bedrock's concurrent job quota per model).
    #[arg(long, env = "DOCSORT_BATCH_MAX_JOBS", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_jobs: u32,
    /// The labels table.
    #[arg(long, env = "DOCSORT_TABLE")]
    pub table: String,
    /// URL of the SQS work queue: error records, unparseable answers, documents of jobs
    /// that failed, expired or stopped, and remainders below the minimum go there, to
    /// be labeled on-demand by `docsort-worker run`.
    #[arg(long, env = "DOCSORT_QUEUE_URL")]
    pub queue_url: String,
    /// Documents fetched and extracted at once.
    #[arg(long, env = "DOCSORT_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// Also select failed documents whose reason may pass on another try
    /// (timeout, unparseable_answer, not_found).
    #[arg(long, env = "DOCSORT_RETRY_FAILED")]
    pub retry_failed: bool,
    /// Also select documents labeled under another label version.
    #[arg(long, env = "DOCSORT_RELABEL")]
    pub relabel: bool,
    /// CloudWatch namespace for Embedded Metric Format lines on stdout, one per collected
    /// job (DocumentsLabeled, DocumentsFailed, ModelInputTokens, ModelOutputTokens,
    /// ModelCostUsd: the same metrics as the pool's); unset: no metric lines.
    #[arg(long, env = "DOCSORT_METRICS_NAMESPACE")]
    pub metrics_namespace: Option<String>,
    /// Classification settings (Bedrock only; the same as the pool's, so the labels
    /// carry the same label version).
    #[command(flatten)]
    pub classifier: ClassifierArgs,
    /// Per-document limits.
    #[command(flatten)]
    pub limits: DocumentLimits,
}

impl BatchArgs {
    /// The batch run's settings.
    pub fn settings(&self) -> anyhow::Result<BatchSettings> {
        if self.classifier.classifier == Some(ClassifierArg::Local) {
            anyhow::bail!(
                "batch inference runs Bedrock models: drop --classifier local (DOCSORT_CLASSIFIER)"
            );
        }
        if self.min_records > self.max_records {
            anyhow::bail!(
                "--min-records {} is above --max-records {}: no job could be formed",
                self.min_records,
                self.max_records
            );
        }
        if self.classifier.guardrail_id.is_some() {
            anyhow::bail!("Bedrock batch inference jobs take no guardrail: drop --guardrail-id (DOCSORT_GUARDRAIL_ID), or backfill through the queue (docsort-producer backfill)");
        }
        Ok(BatchSettings {
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
            table: self.table.clone(),
            queue_url: self.queue_url.clone(),
            role_arn: self.role_arn.clone(),
            staging: self.staging.clone(),
            poll: Duration::from_secs_f64(self.poll_secs),
            max_poll: Duration::from_secs_f64(self.max_poll_secs),
            timeout_hours: self.timeout_hours,
            quotas: Quotas {
                min_records: self.min_records,
                max_records: self.max_records,
                max_job_bytes: self.max_job_mib * 1024 * 1024,
                max_file_records: self.file_records,
                max_running_jobs: self.max_jobs as usize,
                ..Quotas::default()
            },
            concurrency: self.concurrency as usize,
            retry_failed: self.retry_failed,
            relabel: self.relabel,
            max_object_bytes: self.limits.max_object_bytes,
            extract: self.limits.extract_limits()?,
            classifier: self.classifier.settings(ClassifierKind::Bedrock),
            metrics_namespace: self.metrics_namespace.clone(),
        })
    }
}

fn staging_location(value: &str) -> Result<S3Location, String> {
    S3Location::parse(value)
}

fn seconds(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 => Ok(s),
        _ => Err(format!("{value:?} is not a number of seconds above 0")),
    }
}

/// `docsort-worker extract`.
#[derive(Debug, Clone, Args)]
pub struct ExtractArgs {
    /// PDF files to extract.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Characters to extract per document (0 = the whole document).
    #[arg(long, env = "DOCSORT_MAX_TEXT_CHARS", default_value_t = 0)]
    pub max_text_chars: u32,
    /// Without usable text on the first pages: `none` (report no_text), `page-image`
    /// (what Bedrock is sent; `--save-images` keeps the PNGs) or `ocr` (what the local model reads).
    #[arg(long, env = "DOCSORT_FALLBACK", default_value = "none", value_parser = parse_fallback)]
    pub fallback: Fallback,
    /// Folder to write each page image to (`<file name>.png`), with `--fallback page-image`.
    #[arg(long, env = "DOCSORT_SAVE_IMAGES")]
    pub save_images: Option<PathBuf>,
}

/// `docsort-worker classify`.
#[derive(Debug, Clone, Args)]
pub struct ClassifyArgs {
    /// PDF files, or folders searched recursively for *.pdf.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Also write the results to this file: `.jsonl` (one label record per document,
    /// plus `path`) or `.csv`.
    #[arg(long, env = "DOCSORT_OUT")]
    pub out: Option<PathBuf>,
    /// Classification settings.
    #[command(flatten)]
    pub classifier: ClassifierArgs,
    /// Per-document limits.
    #[command(flatten)]
    pub limits: DocumentLimits,
}

/// `docsort-worker eval`.
#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// Labeled JSONL file: one {"id", "label", "text"} object per line.
    pub dataset: PathBuf,
    /// Classification settings.
    #[command(flatten)]
    pub classifier: ClassifierArgs,
}

/// `docsort-worker train`.
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// Labeled examples: folders with one subfolder of PDFs per category, manifest .tsv
    /// files (`file` and `category` columns), or labeled .jsonl files ({"id","label","text"}).
    #[arg(required = true)]
    pub examples: Vec<PathBuf>,
    /// Where to write the head (JSON); use it with `--head`.
    #[arg(long, env = "DOCSORT_TRAIN_OUT")]
    pub out: PathBuf,
    /// Cross-validation folds. The settings are chosen inside each fold's training part by a
    /// cross-validation over the other folds, so the time grows with the square of the folds:
    /// 5 take seconds once the features are read, one per source (44 for the shipped head)
    /// more than 20 minutes on 2 cores.
    #[arg(long, env = "DOCSORT_TRAIN_FOLDS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..=50))]
    pub folds: u32,
    /// Repeat the cross-validation over this many deals of the sources to the folds and
    /// report the spread of its accuracy: with few sources, one split's figure owes much to
    /// which sources happened to land together. The first deal still chooses the head's
    /// settings, so the head is the same; each more deal costs one more cross-validation.
    #[arg(long, env = "DOCSORT_TRAIN_DEALS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub deals: u32,
    /// Manifest column that groups the folds, so no source is in both training and test
    /// [default: `source_repo` when the manifest has it].
    #[arg(long, env = "DOCSORT_TRAIN_GROUP_BY")]
    pub group_by: Option<String>,
    /// Rename a category of the examples before use, `FROM=TO` (repeatable), e.g.
    /// `--alias "scientific paper=report"`. Categories outside the taxonomy are skipped.
    #[arg(long, env = "DOCSORT_TRAIN_ALIAS", value_delimiter = ';', value_parser = alias)]
    pub alias: Vec<(String, String)>,
    /// L2 penalties on the standardised weights to choose among, comma-separated: the
    /// head and its first stage each take the one with the best cross-validated accuracy.
    #[arg(long, env = "DOCSORT_TRAIN_L2", value_delimiter = ',', default_value = "0.01,0.03,0.1,0.3,1", value_parser = penalty)]
    pub l2: Vec<f64>,
    /// Cross-validated accuracy the reading cascade may give up for speed: a first stage
    /// (stop after the first tokens when confident) is kept only if the cascade stays
    /// within this much of always reading on (0.01: one point). The default, 0, stops early
    /// only where it costs nothing; a larger value stops more often, for speed.
    #[arg(long, env = "DOCSORT_TRAIN_CASCADE_TOLERANCE", default_value_t = CASCADE_TOLERANCE, value_parser = tolerance)]
    pub cascade_tolerance: f64,
    /// Keep the model's features of each example in this file (JSON lines), and reuse them:
    /// a rerun reads only examples that are new or changed. Safe to delete.
    #[arg(long, env = "DOCSORT_TRAIN_CACHE")]
    pub cache: Option<PathBuf>,
    /// Classification settings (the local model, taxonomy and reading the head is for).
    #[command(flatten)]
    pub classifier: ClassifierArgs,
    /// Per-document limits.
    #[command(flatten)]
    pub limits: DocumentLimits,
}

fn alias(value: &str) -> Result<(String, String), String> {
    value
        .split_once('=')
        .map(|(a, b)| (a.trim().to_owned(), b.trim().to_owned()))
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .ok_or_else(|| format!("expected FROM=TO, e.g. \"scientific paper=report\", got {value:?}"))
}

/// `docsort-worker samples`.
#[derive(Debug, Clone, Args)]
pub struct SamplesArgs {
    /// Folder to write the sample PDFs into (created if missing).
    pub dir: PathBuf,
}

fn budget(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(usd) if usd.is_finite() && usd >= 0.0 => Ok(usd),
        _ => Err(format!(
            "{s:?} is not an amount of US dollars (e.g. 30 or 2.50)"
        )),
    }
}

fn penalty(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(l2) if l2.is_finite() && l2 > 0.0 => Ok(l2),
        _ => Err(format!("{s:?} is not a positive L2 penalty (e.g. 0.1)")),
    }
}

fn tolerance(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(t) if (0.0..1.0).contains(&t) => Ok(t),
        _ => Err(format!(
            "{s:?} is not an accuracy to give up between 0 and 1 (e.g. 0.01 for one point)"
        )),
    }
}

fn confidence(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("{s:?} is not a probability between 0 and 1")),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every flag of every command can also be set by a DOCSORT_* variable.
    #[test]
    fn every_flag_has_a_docsort_variable() {
        fn check(cmd: &clap::Command) {
            if cmd.is_hide_set() {
                return;
            }
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
