//! `docsort-worker train`: a head for the local model from labeled examples.

use std::collections::BTreeMap;

use anyhow::Context;
use docsort_worker::classify::local::HeadChoice;
use docsort_worker::classify::{Classifier, ClassifierKind};
use docsort_worker::offline::feature_cache::FeatureCache;
use docsort_worker::offline::train::{
    read_examples, train as fit_head, CrossValidation, Grid, Reading, Split,
};

use super::classify::offline_classifier;
use super::progress;
use crate::cli::TrainArgs;

/// Fits a head as `args` say, reading `readers` examples at once.
pub async fn train(args: TrainArgs, readers: usize) -> anyhow::Result<()> {
    let mut settings = args.classifier.settings(ClassifierKind::Local);
    anyhow::ensure!(
        settings.kind == ClassifierKind::Local,
        "a head is fitted for the local model: drop --classifier bedrock"
    );
    // Features do not depend on a head; load none. Unless told otherwise,
    // the head reads as the shipped one does.
    settings.local.head = HeadChoice::None;
    settings.local.reading = settings.local.reading.or_shipped()?;
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
    let mut l2 = args.l2.clone();
    l2.sort_by(f64::total_cmp);
    l2.dedup();
    let grid = Grid {
        l2,
        tolerance: args.cascade_tolerance,
        ..Grid::default()
    };
    let mut cache = args.cache.as_deref().map(FeatureCache::open).transpose()?;
    let total = set.examples.len();
    let started = std::time::Instant::now();
    let mut read_in = None;
    let split = Split {
        folds: args.folds as usize,
        deals: args.deals as usize,
    };
    let trained = fit_head(
        &classifier,
        &set,
        Reading {
            limits: &limits,
            readers,
            cache: cache.as_mut(),
        },
        split,
        &grid,
        || {
            bar.inc(1);
            let done = bar.position();
            if done as usize == total {
                read_in = Some(started.elapsed());
            }
            if bar.is_hidden() && (done % 10 == 0 || done as usize == total) {
                tracing::info!(
                    done,
                    total,
                    secs = started.elapsed().as_secs(),
                    "examples read"
                );
            }
        },
    )
    .await?;
    bar.finish_and_clear();
    let read_in = read_in.unwrap_or_else(|| started.elapsed());
    println!(
        "examples read in {:.0} s ({readers} at a time), cross-validated and fitted in {:.0} s{}",
        read_in.as_secs_f64(),
        (started.elapsed() - read_in).as_secs_f64(),
        cache
            .as_ref()
            .map(|c| format!(" ({} from the cache)", c.hits))
            .unwrap_or_default()
    );
    for id in &trained.unusable {
        println!("  no text, not used: {id}");
    }
    let head = &trained.head;
    let (t, cv) = (&head.training, &trained.cv);
    let fit_for = &head.fit_for;
    println!(
        "\n{}-fold nested cross-validation{} (each fold predicted with settings chosen and \
         fitted on the other folds), accuracy by reading:\n  the cascade as chosen ({} tokens \
         first, {:.0}% stopped there): {:.3}\n  always {} tokens: {:.3}\n  always the first {} \
         tokens: {:.3}",
        t.folds,
        if t.grouped { ", grouped by source" } else { "" },
        fit_for.first_tokens,
        cv.stopped_early * 100.0,
        cv.cascade.accuracy(),
        fit_for.doc_tokens,
        cv.full.accuracy(),
        fit_for.first_tokens,
        cv.first.accuracy()
    );
    if trained.other_deals.is_empty() {
        println!(
            "  (one deal of the sources to the folds; --deals 10 repeats it over others and \
             shows how much the figures owe to the split)"
        );
    } else {
        let all: Vec<&CrossValidation> = std::iter::once(cv).chain(&trained.other_deals).collect();
        // Mean, least and most of `f` over the deals, as "mean A, from B to C".
        let spread = |f: fn(&CrossValidation) -> f64, scale: f64, decimals: usize| {
            let v: Vec<f64> = all.iter().map(|c| f(c) * scale).collect();
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let each: Vec<String> = v.iter().map(|x| format!("{x:.decimals$}")).collect();
            format!(
                "mean {mean:.decimals$}, from {lo:.decimals$} to {hi:.decimals$} (by deal: {})",
                each.join(" ")
            )
        };
        println!(
            "\nover {} deals of the sources to the folds (the first as above), accuracy by \
             reading:\n  the cascade: {}\n    stopped early, %: {}\n  always {} tokens: {}\n  \
             always the first {} tokens: {}",
            all.len(),
            spread(|c| c.cascade.accuracy(), 1.0, 3),
            spread(|c| c.stopped_early, 100.0, 0),
            fit_for.doc_tokens,
            spread(|c| c.full.accuracy(), 1.0, 3),
            fit_for.first_tokens,
            spread(|c| c.first.accuracy(), 1.0, 3),
        );
    }
    println!("\n{}", cv.cascade);
    println!(
        "\nthe head: L2 {}; {}",
        t.l2,
        match &head.first {
            Some(s) => format!(
                "reads {} tokens first and stops there when a category is at least {} likely \
                 (first stage L2 {}), else reads {}",
                fit_for.first_tokens, s.confidence, s.l2, fit_for.doc_tokens
            ),
            None if fit_for.first_tokens >= fit_for.doc_tokens => {
                format!("always reads {} tokens", fit_for.doc_tokens)
            }
            None => format!(
                "always reads {} tokens (no first stage stopped early within {} of its \
                 accuracy; a larger --cascade-tolerance trades accuracy for speed)",
                fit_for.doc_tokens, args.cascade_tolerance
            ),
        }
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
