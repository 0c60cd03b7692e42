//! `docsort-worker classify`: local PDFs through the pool's extraction and
//! classifier, a table of labels, and optionally a result file.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use docsort_worker::classify::{Classifier, ClassifierKind, ClassifierSettings};
use docsort_worker::events::Metrics;
use docsort_worker::offline::files::{classify_file, collect_pdfs, BatchSummary, OutputFile};
use docsort_worker::pipeline::aws::bedrock_client;

use super::progress;
use crate::cli::ClassifyArgs;

/// The classifier for `classify` and `eval`; AWS is set up only for Bedrock.
pub async fn offline_classifier(settings: &ClassifierSettings) -> anyhow::Result<Classifier> {
    let sdk = match settings.kind {
        ClassifierKind::Bedrock => Some(aws_config::load_from_env().await),
        ClassifierKind::Local => None,
    };
    let bedrock = || match &sdk {
        Some(sdk) => bedrock_client(sdk, settings.bedrock.attempt_timeout),
        None => unreachable!("called only for the Bedrock classifier"),
    };
    Ok(Classifier::new(
        settings,
        bedrock,
        Arc::new(Metrics::default()),
    )?)
}

pub async fn classify(args: ClassifyArgs) -> anyhow::Result<()> {
    let files = collect_pdfs(&args.paths).context("cannot list the PDFs to classify")?;
    anyhow::ensure!(!files.is_empty(), "no .pdf files in {:?}", args.paths);
    let mut out = args.out.as_deref().map(OutputFile::create).transpose()?;
    let classifier = offline_classifier(&args.classifier.settings(ClassifierKind::Local)).await?;
    let limits = args.limits.extract_limits()?;
    let bar = progress(files.len(), "documents");
    let mut summary = BatchSummary::default();
    let started = Instant::now();
    bar.suspend(|| println!("{:<24} {:>5}  FILE", "LABEL", "PAGES"));
    for file in &files {
        let result = classify_file(file, &classifier, &limits)
            .await
            .with_context(|| format!("cannot classify {}", file.display()))?;
        let pages = result
            .record
            .pages
            .map_or("-".to_owned(), |p| p.to_string());
        let shown = result.record.outcome.to_string();
        bar.suspend(|| println!("{shown:<24} {pages:>5}  {}", file.display()));
        if let Some(out) = out.as_mut() {
            out.write(&result)?;
        }
        summary.add(&result);
        bar.inc(1);
    }
    bar.finish_and_clear();
    summary.total = started.elapsed();
    if let Some(out) = out {
        out.finish()?;
    }
    println!("\n{summary}");
    if let Some(path) = &args.out {
        println!("results:   {}", path.display());
    }
    Ok(())
}
