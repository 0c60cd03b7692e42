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
use crate::extract::{extract_bounded, Fallback, Limits};
use crate::offline::eval::EvalError;
use crate::offline::feature_cache::{self, FeatureCache};

pub mod cv;
pub mod examples;

pub use cv::{choose, cross_validate, folds, Choice, CrossValidation, Grid, CASCADE_TOLERANCE};
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
/// called after each.
pub async fn featurize(
    classifier: &Arc<LocalClassifier>,
    examples: &[Example],
    limits: &Limits,
    mut cache: Option<&mut FeatureCache>,
    mut progress: impl FnMut(),
) -> Result<Vec<Option<Features>>, TrainError> {
    let mut out = Vec::with_capacity(examples.len());
    for ex in examples {
        let (kind, bytes) = match &ex.input {
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
        if let Some(kept) = cache.as_mut().and_then(|c| c.get(&key)) {
            out.push(Some(kept));
            progress();
            continue;
        }
        let text = match &ex.input {
            Input::Text(text) => Some(text.clone()),
            Input::Pdf(path) => {
                let (extracted, _) =
                    extract_bounded(limits, bytes, classifier.max_text_chars(), Fallback::Ocr)
                        .await;
                match extracted {
                    Ok(x) => Some(x.text),
                    Err(e) => {
                        tracing::info!(file = %path.display(), reason = %e.reason(), "no text: not used");
                        None
                    }
                }
            }
        };
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
        if let (Some(cache), Some(features)) = (cache.as_mut(), &features) {
            cache.put(key, features)?;
        }
        out.push(features);
        progress();
    }
    Ok(out)
}
/// What [`train`] did.
#[derive(Debug)]
pub struct Trained {
    /// The head fitted on every usable example.
    pub head: Head,
    /// Its cross-validation.
    pub cv: CrossValidation,
    /// Examples without text (not used).
    pub unusable: Vec<String>,
}

/// Fits the head of `classifier`'s model, prompt and reading on `set`,
/// reporting nested `folds_k`-fold cross-validation first; features come from
/// `cache` where it has them.
pub async fn train(
    classifier: &Arc<LocalClassifier>,
    set: &ExampleSet,
    limits: &Limits,
    folds_k: usize,
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
    let fold_of = folds(&groups, folds_k);
    let ids: Vec<String> = used.iter().map(|e| e.id.clone()).collect();
    let fit_for = classifier.fit_for().clone();
    let cascade = fit_for.first_tokens < fit_for.doc_tokens;
    let cv = cross_validate(&xs, &ys, &ids, &fold_of, &categories, grid, cascade);
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
    Ok(Trained { head, cv, unusable })
}
