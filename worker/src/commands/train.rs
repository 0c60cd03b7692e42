//! `docsort-worker train`: a head for the local model from labeled examples.

use std::collections::BTreeMap;

use anyhow::Context;
use docsort_worker::classify::local::head::FitSettings;
use docsort_worker::classify::local::HeadChoice;
use docsort_worker::classify::{Classifier, ClassifierKind};
use docsort_worker::offline::train::{read_examples, train as fit_head};

use super::classify::offline_classifier;
use super::progress;
use crate::cli::TrainArgs;

pub async fn train(args: TrainArgs) -> anyhow::Result<()> {
    let mut settings = args.classifier.settings(ClassifierKind::Local);
    anyhow::ensure!(
        settings.kind == ClassifierKind::Local,
        "a head is fitted for the local model: drop --classifier bedrock"
    );
    // Features do not depend on a head; load none.
    settings.local.head = HeadChoice::None;
    let Classifier::Local(classifier) = offline_classifier(&settings).await? else {
        anyhow::bail!("a head is fitted for the local model");
    };
    let categories = classifier.fit_for().categories.clone();
    let aliases: BTreeMap<String, String> = args.alias.iter().cloned().collect();
    let set = read_examples(
        &args.examples,
        &categories,
        &aliases,
        args.group_by.as_deref(),
    )?;
    println!(
        "examples: {} for {} categories from {} set(s)",
        set.examples.len(),
        categories.len(),
        set.sources.len()
    );
    for (category, n) in &set.skipped {
        println!("  skipped {n} example(s) of {category:?}: not a category of the taxonomy (see --alias)");
    }
    let limits = args.limits.extract_limits()?;
    let bar = progress(set.examples.len(), "examples read by the model");
    let fit = FitSettings {
        l2: args.l2,
        ..FitSettings::default()
    };
    let total = set.examples.len();
    let started = std::time::Instant::now();
    let trained = fit_head(&classifier, &set, &limits, args.folds as usize, fit, || {
        bar.inc(1);
        let done = bar.position();
        if bar.is_hidden() && (done % 10 == 0 || done as usize == total) {
            tracing::info!(
                done,
                total,
                secs = started.elapsed().as_secs(),
                "examples read"
            );
        }
    })
    .await?;
    bar.finish_and_clear();
    for id in &trained.unusable {
        println!("  no text, not used: {id}");
    }
    let t = &trained.head.training;
    let cv = &trained.cv;
    let (fit_for, cascade) = (&trained.head.fit_for, trained.head.first.is_some());
    println!(
        "\n{}-fold cross-validation{}, accuracy by reading:\n  the cascade ({} tokens first; the rest when the best category is below {} likely, {:.0}% stopped early): {:.3}\n  always {} tokens: {:.3}\n  always the first {} tokens: {:.3}",
        t.folds,
        if t.grouped { ", grouped by source" } else { "" },
        fit_for.first_tokens,
        classifier.reading().confidence,
        cv.stopped_early * 100.0,
        cv.cascade.accuracy(),
        fit_for.doc_tokens,
        cv.full.accuracy(),
        fit_for.first_tokens,
        cv.first.accuracy()
    );
    println!(
        "\nreading chosen: {}\n\n{}",
        if cascade {
            "the cascade (within a point of the whole reading)"
        } else {
            "the whole reading (the cascade lost more than a point)"
        },
        if cascade { &cv.cascade } else { &cv.full }
    );
    std::fs::write(&args.out, trained.head.to_json())
        .with_context(|| format!("cannot write the head to {}", args.out.display()))?;
    println!(
        "\nhead: {} ({} examples; use it with --head {})",
        args.out.display(),
        t.examples,
        args.out.display()
    );
    Ok(())
}
