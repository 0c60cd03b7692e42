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

use futures::StreamExt;

use crate::classify::local::head::{fit, Head, Provenance, Stage, Training, FEATURE, HEAD_FORMAT};
use crate::classify::local::{Features, LocalClassifier, LocalError};
use crate::extract::{extract_bounded, Fallback, Limits};
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
    /// A reading task ended without features (it panicked), or the reading
    /// machinery broke its own invariants.
    #[error("reading the examples failed: {0}")]
    Task(String),
}

/// How [`train`] reads its examples.
pub struct Reading<'a> {
    /// Per-document limits of extraction.
    pub limits: &'a Limits,
    /// Examples read at once (each on its own blocking thread; see
    /// [`crate::classify::local::one_document_per_core`]).
    pub readers: usize,
    /// Features kept from earlier runs, and where new ones go.
    pub cache: Option<&'a mut FeatureCache>,
}

/// The model's features of each example (`None` where a PDF yields no text),
/// from the cache where it has them (new ones are added to it as they come);
/// `progress` is called after each, in order. Up to `readers` examples are
/// read by the model at once, and one more has its text extracted meanwhile.
pub async fn featurize(
    classifier: &Arc<LocalClassifier>,
    examples: &[Example],
    reading: Reading<'_>,
    mut progress: impl FnMut(),
) -> Result<Vec<Option<Features>>, TrainError> {
    let Reading {
        limits,
        readers,
        mut cache,
    } = reading;
    // What the cache has; the key of each example it lacks.
    let mut kept = Vec::with_capacity(examples.len());
    for example in examples {
        let key = feature_cache::key(classifier.fit_for(), example.kind(), &example.bytes()?);
        kept.push(match cache.as_deref_mut().and_then(|c| c.get(&key)) {
            Some(features) => Ok(features),
            None => Err(key),
        });
    }
    let readers = readers.max(1);
    let permits = Arc::new(tokio::sync::Semaphore::new(readers));
    let unread: Vec<&Example> = examples
        .iter()
        .zip(&kept)
        .filter_map(|(example, k)| k.is_err().then_some(example))
        .collect();
    let mut read = futures::stream::iter(
        unread
            .into_iter()
            .map(|example| read_one(classifier.clone(), example, limits, permits.clone())),
    )
    .buffered(readers + 1);
    let mut out = Vec::with_capacity(examples.len());
    for k in kept {
        let features = match k {
            Ok(features) => Some(features),
            Err(key) => {
                let features = read
                    .next()
                    .await
                    .ok_or_else(|| TrainError::Task("an example was not read".to_owned()))??;
                if let (Some(cache), Some(features)) = (cache.as_deref_mut(), &features) {
                    cache.put(key, features)?;
                }
                features
            }
        };
        out.push(features);
        progress();
    }
    Ok(out)
}

/// One example's features: its text (extracted from a PDF, with OCR where
/// needed; `None` when there is none), then the model's reading of it once a
/// reader is free.
async fn read_one(
    classifier: Arc<LocalClassifier>,
    example: &Example,
    limits: &Limits,
    permits: Arc<tokio::sync::Semaphore>,
) -> Result<Option<Features>, TrainError> {
    let text = match &example.input {
        Input::Text(text) => text.clone(),
        Input::Pdf(_) => {
            let bytes = example.bytes()?;
            match extract_bounded(limits, bytes, classifier.max_text_chars(), Fallback::Ocr)
                .await
                .0
            {
                Ok(extracted) => extracted.text,
                Err(e) => {
                    tracing::info!(id = %example.id, reason = %e.reason(), "no text: not used");
                    return Ok(None);
                }
            }
        }
    };
    let _permit = permits
        .acquire_owned()
        .await
        .map_err(|e| TrainError::Task(format!("no reader: {e}")))?;
    let features = tokio::task::spawn_blocking(move || classifier.features(&text))
        .await
        .map_err(|e| TrainError::Task(format!("the feature task failed: {e}")))??;
    Ok(Some(features))
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
/// reporting nested cross-validation first, as `split` asks; examples are
/// read as `reading` says.
pub async fn train(
    classifier: &Arc<LocalClassifier>,
    set: &ExampleSet,
    reading: Reading<'_>,
    split: Split,
    grid: &Grid,
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
    let features = featurize(classifier, &set.examples, reading, progress).await?;
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
