//! The producer's commands: flags in, library calls, a summary out.

use std::io::{BufRead, IsTerminal};

use anyhow::{bail, Context};
use docsort_producer::backfill::{backfill as list_and_compare, BackfillSettings};
use docsort_producer::enqueue::parse_uri;
use docsort_producer::{EnqueueSummary, Sender};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::{BackfillArgs, EnqueueArgs, ExportArgs, QueueArgs, ReportArgs};

fn sender(sdk: &aws_config::SdkConfig, queue: &QueueArgs) -> anyhow::Result<Sender> {
    let Some(url) = &queue.queue_url else {
        bail!("no queue: set --queue-url or DOCSORT_QUEUE_URL (backfill --dry-run needs none)");
    };
    Ok(Sender::new(
        aws_sdk_sqs::Client::new(sdk),
        url.clone(),
        queue.send_concurrency as usize,
    ))
}

/// A counter of items read on a terminal, nothing otherwise.
fn spinner(what: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) =
        ProgressStyle::with_template(&format!("{{spinner}} {{pos}} {what} {{per_sec}}"))
    {
        bar.set_style(style);
    }
    bar
}

pub async fn report(sdk: &aws_config::SdkConfig, args: ReportArgs) -> anyhow::Result<()> {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let bar = spinner("records");
    let query = args.table.query();
    let report = docsort_producer::table::report(&dynamodb, &query, args.segments, &|n| bar.inc(n))
        .await
        .with_context(|| format!("report of {} stopped", query.table))?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

pub async fn export(sdk: &aws_config::SdkConfig, args: ExportArgs) -> anyhow::Result<()> {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let bar = spinner("records");
    let query = args.table.query();
    let written = docsort_producer::table::export(
        &dynamodb,
        &query,
        args.label.as_deref(),
        &args.out,
        &|n| bar.inc(n),
    )
    .await
    .with_context(|| format!("export of {} stopped", query.table))?;
    bar.finish_and_clear();
    println!(
        "export: {written} records written to {}",
        args.out.display()
    );
    Ok(())
}

/// A progress bar on a terminal, nothing otherwise.
fn progress(len: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {pos}/{len} objects {wide_bar} {per_sec} eta {eta}")
    {
        bar.set_style(style);
    }
    bar
}

fn finish(summary: EnqueueSummary, what: &str) -> anyhow::Result<()> {
    println!("{what}: {summary}");
    if summary.failed > 0 {
        bail!("{} job(s) could not be enqueued; see the log above and run again (enqueuing twice is harmless)", summary.failed);
    }
    Ok(())
}

pub async fn backfill(sdk: &aws_config::SdkConfig, args: BackfillArgs) -> anyhow::Result<()> {
    let settings = BackfillSettings {
        bucket: args.bucket.clone(),
        prefix: args.prefix.clone(),
        table: args.table.clone(),
        label_version: args.version.label_version()?,
        retry_failed: args.retry_failed,
        relabel: args.relabel,
    };
    let sender = if args.dry_run {
        None
    } else {
        Some(sender(sdk, &args.queue)?)
    };
    tracing::info!(bucket = %settings.bucket, prefix = %settings.prefix, table = %settings.table, label_version = %settings.label_version, retry_failed = settings.retry_failed, relabel = settings.relabel, "backfill started");
    let s3 = s3_client(sdk);
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let bar = progress(0);
    let summary = list_and_compare(&s3, &dynamodb, &settings, sender.as_ref(), &bar)
        .await
        .with_context(|| format!("backfill of s3://{}/{} stopped", args.bucket, args.prefix))?;
    bar.finish_and_clear();
    tracing::info!(
        listed = summary.listed,
        new = summary.new,
        changed = summary.changed,
        labeled = summary.labeled,
        stale = summary.stale,
        failed = summary.failed,
        selected = summary.selected,
        enqueued = summary.enqueued,
        list_requests = summary.list_pages,
        table_requests = summary.table_requests,
        send_requests = summary.send_requests,
        "backfill finished"
    );
    let what = if args.dry_run {
        "backfill (dry run, nothing sent)"
    } else {
        "backfill"
    };
    println!("{what}: {summary}");
    if summary.send_failed > 0 {
        bail!("{} job(s) could not be enqueued; see the log above and run again (enqueuing twice is harmless)", summary.send_failed);
    }
    Ok(())
}

pub async fn enqueue(sdk: &aws_config::SdkConfig, args: EnqueueArgs) -> anyhow::Result<()> {
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
    let mut summary = sender(sdk, &args.queue)?.send_all(jobs, &bar).await;
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
