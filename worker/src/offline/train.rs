//! Fitting a head for the local model (`docsort-worker train`): labeled
//! examples in, the model's features, k-fold cross-validation (grouped by
//! source when the examples name one), and the head out.
//!
//! Examples come as a folder with one subfolder of PDFs per category, a
//! manifest TSV (`file` and `category` columns, `file` relative to the
//! manifest; `source_repo` groups the folds, `licence` goes into the head's
//! provenance), or a labeled JSONL of texts (`{"id","label","text"}`).
//!
//! [`examples`] reads the examples, [`cv`] chooses the settings and
//! cross-validates them; this module reads the features and fits the head.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use crate::classify::local::head::{fit, Head, Provenance, Stage, Training, FEATURE, HEAD_FORMAT};
use crate::classify::local::{Features, LocalClassifier, LocalError};
use crate::extract::{extract_bounded, ExtractError, Fallback, Limits};
use crate::offline::eval::EvalError;
use crate::offline::feature_cache::{self, FeatureCache};

pub mod cv;
pub mod examples;

pub use cv::{
    choose, cross_validate, folds, Choice, CrossValidation, Grid, Split, CASCADE_TOLERANCE,
};
pub use examples::{check_counts, read_examples, Example, ExampleSet, Input};

/// Fewest examples of a category a head learns it from.
pub const MIN_PER_CATEGORY: usize = 4;

/// Training cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error(transparent)]
    Dataset(#[from] EvalError),
    #[error(
        "{path} is neither a folder of category subfolders, a manifest .tsv nor a labeled .jsonl"
    )]
    Kind { path: PathBuf },
    #[error("category {category:?} has {found} usable example(s); a head needs at least {needed} of each category to learn it from: add {} more, or drop the category from the taxonomy", needed - found)]
    TooFew {
        category: String,
        found: usize,
        needed: usize,
    },
    #[error(transparent)]
    Local(#[from] LocalError),
}

/// The model's features of each example (`None` where a PDF yields no text),
/// from `cache` where it has them (new ones are added to it); `progress` is
/// called after each. Once an example's text is in hand, the next one's is
/// extracted (another process, or a blocking thread) while the model reads it.
pub async fn featurize(
    classifier: &Arc<LocalClassifier>,
    examples: &[Example],
    limits: &Limits,
    mut cache: Option<&mut FeatureCache>,
    mut progress: impl FnMut(),
) -> Result<Vec<Option<Features>>, TrainError> {
    let mut out = Vec::with_capacity(examples.len());
    let mut ahead = None;
    for i in 0..examples.len() {
        let current = match ahead.take() {
            Some(started) => started,
            None => start(classifier, &examples[i], limits, cache.as_deref_mut())?,
        };
        let (key, text) = match current {
            Started::Cached(kept) => {
                out.push(Some(kept));
                progress();
                continue;
            }
            Started::Text(key, text) => (key, Some(text)),
            Started::Extracting(key, task) => {
                let text = match task.await {
                    Ok(Ok(text)) => Some(text),
                    Ok(Err(e)) => {
                        tracing::info!(id = %examples[i].id, reason = %e.reason(), "no text: not used");
                        None
                    }
                    Err(e) => {
                        tracing::info!(id = %examples[i].id, error = %e, "the extraction task failed: not used");
                        None
                    }
                };
                (key, text)
            }
        };
        // One extraction at a time, overlapping the model's reading.
        if let Some(next) = examples.get(i + 1) {
            ahead = Some(start(classifier, next, limits, cache.as_deref_mut())?);
        }
        let features = match text {
            Some(text) => {
                let c = classifier.clone();
                let features = tokio::task::spawn_blocking(move || c.features(&text))
                    .await
                    .map_err(|e| {
                        LocalError::from(candle_core::Error::Msg(format!(
                            "the feature task failed: {e}"
                        )))
                    })??;
                Some(features)
            }
            None => None,
        };
        if let (Some(cache), Some(features)) = (cache.as_deref_mut(), &features) {
            cache.put(key, features)?;
        }
        out.push(features);
        progress();
    }
    Ok(out)
}

/// An example on its way to features.
enum Started {
    /// The cache had them.
    Cached(Features),
    /// A labeled text, under its cache key.
    Text(String, String),
    /// A PDF whose text is being extracted, under its cache key.
    Extracting(
        String,
        tokio::task::JoinHandle<Result<String, ExtractError>>,
    ),
}

/// Looks `example` up in `cache` and, when it is a PDF not there, starts
/// extracting its text.
fn start(
    classifier: &LocalClassifier,
    example: &Example,
    limits: &Limits,
    cache: Option<&mut FeatureCache>,
) -> Result<Started, TrainError> {
    let (kind, bytes) = match &example.input {
        Input::Text(text) => ("text", text.as_bytes().to_vec()),
        Input::Pdf(path) => (
            "pdf",
            std::fs::read(path).map_err(|source| TrainError::Read {
                path: path.clone(),
                source,
            })?,
        ),
    };
    let key = feature_cache::key(classifier.fit_for(), kind, &bytes);
    if let Some(kept) = cache.and_then(|c| c.get(&key)) {
        return Ok(Started::Cached(kept));
    }
    Ok(match &example.input {
        Input::Text(text) => Started::Text(key, text.clone()),
        Input::Pdf(_) => {
            let (limits, chars) = (limits.clone(), classifier.max_text_chars());
            Started::Extracting(
                key,
                tokio::spawn(async move {
                    extract_bounded(&limits, bytes, chars, Fallback::Ocr)
                        .await
                        .0
                        .map(|x| x.text)
                }),
            )
        }
    })
}

/// What [`train`] did.
#[derive(Debug)]
pub struct Trained {
    /// The head fitted on every usable example.
    pub head: Head,
    /// Its cross-validation (the sources dealt to folds as deal 0).
    pub cv: CrossValidation,
    /// The same cross-validation over the other deals asked for (1, 2, ...).
    pub other_deals: Vec<CrossValidation>,
    /// Examples without text (not used).
    pub unusable: Vec<String>,
}

/// Fits the head of `classifier`'s model, prompt and reading on `set`,
/// reporting nested cross-validation first, as `split` asks; features come
/// from `cache` where it has them.
pub async fn train(
    classifier: &Arc<LocalClassifier>,
    set: &ExampleSet,
    limits: &Limits,
    split: Split,
    grid: &Grid,
    cache: Option<&mut FeatureCache>,
    progress: impl FnMut(),
) -> Result<Trained, TrainError> {
    let categories = classifier.fit_for().categories.clone();
    let labels_of = |examples: &[&Example]| -> Vec<usize> {
        examples
            .iter()
            .map(|e| {
                categories
                    .iter()
                    .position(|c| *c == e.category)
                    .unwrap_or(0)
            })
            .collect()
    };
    // Refuse before the slow part, then again on what has text.
    let all: Vec<&Example> = set.examples.iter().collect();
    check_counts(&categories, &labels_of(&all))?;
    let features = featurize(classifier, &set.examples, limits, cache, progress).await?;
    let mut used = Vec::new();
    let mut xs: Vec<Features> = Vec::new();
    let mut unusable = Vec::new();
    for (ex, f) in set.examples.iter().zip(features) {
        match f {
            Some(f) => {
                used.push(ex);
                xs.push(f);
            }
            None => unusable.push(ex.id.clone()),
        }
    }
    let ys = labels_of(&used);
    check_counts(&categories, &ys)?;
    let groups: Vec<Option<String>> = used.iter().map(|e| e.group.clone()).collect();
    let grouped = groups.iter().any(Option::is_some);
    let fold_of = folds(&groups, split.folds, 0);
    let ids: Vec<String> = used.iter().map(|e| e.id.clone()).collect();
    let fit_for = classifier.fit_for().clone();
    let cascade = fit_for.first_tokens < fit_for.doc_tokens;
    let cv = cross_validate(&xs, &ys, &ids, &fold_of, &categories, grid, cascade);
    let other_deals = (1..split.deals.max(1) as u64)
        .map(|deal| {
            let fold_of = folds(&groups, split.folds, deal);
            cross_validate(&xs, &ys, &ids, &fold_of, &categories, grid, cascade)
        })
        .collect();
    let everything: Vec<usize> = (0..xs.len()).collect();
    let choice = choose(
        &xs,
        &ys,
        &fold_of,
        &everything,
        categories.len(),
        grid,
        cascade,
    );
    let full_x: Vec<Vec<f32>> = xs.iter().map(|f| f.full.clone()).collect();
    let (weights, bias) = fit(&full_x, &ys, categories.len(), grid.settings(choice.l2));
    let first = choice.first.map(|(l2, confidence)| {
        let first_x: Vec<Vec<f32>> = xs.iter().map(|f| f.first.clone()).collect();
        let (weights, bias) = fit(&first_x, &ys, categories.len(), grid.settings(l2));
        Stage {
            weights,
            bias,
            confidence,
            l2,
        }
    });
    let mut per_category = BTreeMap::new();
    for &y in &ys {
        *per_category.entry(categories[y].clone()).or_default() += 1;
    }
    let provenance = set
        .sources
        .iter()
        .enumerate()
        .map(|(s, source)| {
            let mine: Vec<&&Example> = used.iter().filter(|e| e.source == s).collect();
            let mut licences = BTreeMap::new();
            for e in &mine {
                if let Some(l) = &e.licence {
                    *licences.entry(l.clone()).or_default() += 1;
                }
            }
            Provenance {
                source: source.clone(),
                examples: mine.len(),
                licences,
            }
        })
        .collect();
    let distinct_folds: BTreeSet<usize> = fold_of.iter().copied().collect();
    let head = Head {
        format: HEAD_FORMAT,
        fit_for,
        feature: FEATURE.to_owned(),
        weights,
        bias,
        first,
        training: Training {
            examples: xs.len(),
            per_category,
            l2: choice.l2,
            iterations: grid.iterations,
            convergence: Some(grid.convergence),
            balanced: true,
            cv_accuracy: Some((cv.cascade.accuracy() * 1000.0).round() / 1000.0),
            folds: distinct_folds.len(),
            grouped,
            provenance,
        },
    };
    Ok(Trained {
        head,
        cv,
        other_deals,
        unusable,
    })
}
