use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Parser;
use docsort_producer::backfill::backfill;
use docsort_producer::config::{BackfillArgs, Cli, Command, EnqueueArgs, LogFormat, QueueArgs};
use docsort_producer::enqueue::parse_uri;
use docsort_producer::{EnqueueSummary, Sender};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let sdk = aws_config::load_from_env().await;
    let result = match cli.command {
        Command::Backfill(args) => run_backfill(&sdk, args).await,
        Command::Enqueue(args) => run_enqueue(&sdk, args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:?}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,aws_config=warn,aws_smithy_runtime=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

fn sender(sdk: &aws_config::SdkConfig, queue: &QueueArgs) -> Sender {
    Sender::new(
        aws_sdk_sqs::Client::new(sdk),
        queue.queue_url.clone(),
        queue.send_concurrency as usize,
    )
}

/// A progress bar on a terminal, nothing otherwise.
fn progress(len: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos}/{len} jobs {wide_bar} {per_sec} eta {eta}")
            .expect("the template is valid"),
    );
    bar
}

fn finish(summary: EnqueueSummary, what: &str) -> anyhow::Result<()> {
    println!("{what}: {summary}");
    if summary.failed > 0 {
        bail!("{} job(s) could not be enqueued; see the log above and run again (enqueuing twice is harmless)", summary.failed);
    }
    Ok(())
}

async fn run_backfill(sdk: &aws_config::SdkConfig, args: BackfillArgs) -> anyhow::Result<()> {
    let s3 = s3_client(sdk);
    let sender = (!args.dry_run).then(|| sender(sdk, &args.queue));
    let bar = progress(0);
    let summary = backfill(&s3, &args.bucket, &args.prefix, sender.as_ref(), &bar)
        .await
        .with_context(|| format!("backfill of s3://{}/{} stopped", args.bucket, args.prefix))?;
    bar.finish_and_clear();
    finish(
        summary,
        if args.dry_run {
            "backfill (dry run, nothing sent)"
        } else {
            "backfill"
        },
    )
}

async fn run_enqueue(sdk: &aws_config::SdkConfig, args: EnqueueArgs) -> anyhow::Result<()> {
    let mut uris = args.uris.clone();
    if uris.is_empty() || uris == ["-"] {
        uris = std::io::stdin()
            .lock()
            .lines()
            .collect::<Result<Vec<_>, _>>()
            .context("cannot read URIs from standard input")?
            .into_iter()
            .filter(|l| !l.trim().is_empty())
            .collect();
    }
    let jobs = uris
        .iter()
        .enumerate()
        .map(|(i, u)| {
            parse_uri(u).with_context(|| format!("URI #{} (expected s3://bucket/key)", i + 1))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let bar = progress(jobs.len() as u64);
    let listed = jobs.len() as u64;
    let mut summary = sender(sdk, &args.queue).send_all(jobs, &bar).await;
    bar.finish_and_clear();
    summary.listed = listed;
    finish(summary, "enqueue")
}

/// Path-style addressing for custom endpoints (local stand-ins, S3-compatible stores).
fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let custom_endpoint =
        sdk.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(custom_endpoint)
            .build(),
    )
}
