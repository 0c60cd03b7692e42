//! Fitting a head for the local model (`docsort-worker train`): labeled
//! examples in, the model's features, k-fold cross-validation (grouped by
//! source when the examples name one), and the head out.
//!
//! Examples come as a folder with one subfolder of PDFs per category, a
//! manifest TSV (`file` and `category` columns, `file` relative to the
//! manifest; `source_repo` groups the folds, `licence` goes into the head's
//! provenance), or a labeled JSONL of texts (`{"id","label","text"}`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::classify::local::head::{
    argmax, fit, probabilities, FitSettings, Head, Provenance, Stage, Training, FEATURE,
    HEAD_FORMAT,
};
use crate::classify::local::{Features, LocalClassifier, LocalError};
use crate::extract::{extract_bounded, Fallback, Limits};
use crate::offline::eval::EvalReport;
use crate::offline::feature_cache::{self, FeatureCache};

/// Accuracy the cascade may lose against the whole reading and still be
/// chosen (in cross-validation).
pub const CASCADE_TOLERANCE: f64 = 0.01;

/// Fewest examples of a category a head learns it from.
pub const MIN_PER_CATEGORY: usize = 4;

/// One labeled example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The file, or the JSONL id.
    pub id: String,
    /// Its category (after aliases).
    pub category: String,
    /// Its source (folds keep a source together), when known.
    pub group: Option<String>,
    /// Index of the set it came from in [`ExampleSet::sources`].
    pub source: usize,
    /// Its licence, when the manifest says.
    pub licence: Option<String>,
    /// A PDF to extract, or a text.
    pub input: Input,
}

/// What an example gives the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A PDF file.
    Pdf(PathBuf),
    /// A document's text.
    Text(String),
}

/// The examples of every set given.
#[derive(Debug, Clone, Default)]
pub struct ExampleSet {
    pub examples: Vec<Example>,
    /// The sets, as given.
    pub sources: Vec<String>,
    /// Examples of categories outside the taxonomy, by category (not used).
    pub skipped: BTreeMap<String, usize>,
}

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
    #[error("{path} line {line}: not a {{\"id\",\"label\",\"text\"}} object")]
    Jsonl {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
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

/// Reads the examples of `paths` for `categories`; `aliases` rename
/// categories first (`scientific paper` -> `report`); `group_by` names the
/// manifest column that groups the folds (default `source_repo`).
pub fn read_examples(
    paths: &[PathBuf],
    categories: &[String],
    aliases: &BTreeMap<String, String>,
    group_by: Option<&str>,
) -> Result<ExampleSet, TrainError> {
    let mut set = ExampleSet::default();
    for path in paths {
        let source = set.sources.len();
        set.sources.push(path.display().to_string());
        let mut add = |id: String,
                       category: &str,
                       group: Option<String>,
                       licence: Option<String>,
                       input: Input| {
            let category = aliases
                .get(category)
                .cloned()
                .unwrap_or_else(|| category.to_owned());
            if categories.contains(&category) {
                set.examples.push(Example {
                    id,
                    category,
                    group,
                    source,
                    licence,
                    input,
                });
            } else {
                *set.skipped.entry(category).or_default() += 1;
            }
        };
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| TrainError::Read {
                path: p.to_owned(),
                source,
            })
        };
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if path.is_dir() {
            let mut folders: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|source| TrainError::Read {
                    path: path.clone(),
                    source,
                })?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect();
            folders.sort();
            for folder in folders {
                let category = folder
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let files = crate::offline::files::collect_pdfs(std::slice::from_ref(&folder))
                    .map_err(|source| TrainError::Read {
                        path: folder.clone(),
                        source,
                    })?;
                for file in files {
                    add(
                        file.display().to_string(),
                        &category,
                        None,
                        None,
                        Input::Pdf(file),
                    );
                }
            }
        } else if extension == "tsv" {
            let text = read(path)?;
            let mut lines = text.lines();
            let header: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
            let column = |name: &str| header.iter().position(|h| *h == name);
            let missing = |name: &str| TrainError::Manifest {
                path: path.clone(),
                message: format!(
                    "no {name:?} column in the header (columns: {})",
                    header.join(", ")
                ),
            };
            let file_col = column("file").ok_or_else(|| missing("file"))?;
            let category_col = column("category").ok_or_else(|| missing("category"))?;
            let group_col = match group_by {
                Some(name) => Some(column(name).ok_or_else(|| missing(name))?),
                None => column("source_repo"),
            };
            let licence_col = column("licence");
            let root = path.parent().unwrap_or(Path::new("."));
            for line in lines.filter(|l| !l.trim().is_empty()) {
                let cells: Vec<&str> = line.split('\t').collect();
                let cell = |i: Option<usize>| {
                    i.and_then(|i| cells.get(i))
                        .map(|c| c.trim().to_owned())
                        .filter(|c| !c.is_empty())
                };
                let (Some(file), Some(category)) = (cell(Some(file_col)), cell(Some(category_col)))
                else {
                    continue;
                };
                add(
                    file.clone(),
                    &category,
                    cell(group_col),
                    cell(licence_col),
                    Input::Pdf(root.join(file)),
                );
            }
        } else if extension == "jsonl" {
            for (i, line) in read(path)?.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let ex: crate::offline::eval::Example =
                    serde_json::from_str(line).map_err(|source| TrainError::Jsonl {
                        path: path.clone(),
                        line: i + 1,
                        source,
                    })?;
                add(ex.id, &ex.label, None, None, Input::Text(ex.text));
            }
        } else {
            return Err(TrainError::Kind { path: path.clone() });
        }
    }
    Ok(set)
}

/// Refuses a taxonomy with a category that has too few examples.
pub fn check_counts(categories: &[String], labels: &[usize]) -> Result<(), TrainError> {
    for (c, name) in categories.iter().enumerate() {
        let found = labels.iter().filter(|&&l| l == c).count();
        if found < MIN_PER_CATEGORY {
            return Err(TrainError::TooFew {
                category: name.clone(),
                found,
                needed: MIN_PER_CATEGORY,
            });
        }
    }
    Ok(())
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

/// Fold of each example: whole groups to the fold with the fewest examples
/// so far (largest groups first), or round-robin without groups.
pub fn folds(groups: &[Option<String>], k: usize) -> Vec<usize> {
    let k = k.max(2);
    if groups.iter().all(Option::is_none) {
        return (0..groups.len()).map(|i| i % k).collect();
    }
    let mut sizes: BTreeMap<String, usize> = BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        // An example without a group is its own group.
        let g = g.clone().unwrap_or_else(|| format!("#{i}"));
        *sizes.entry(g).or_default() += 1;
    }
    let mut order: Vec<(&String, &usize)> = sizes.iter().collect();
    order.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let mut load = vec![0usize; k];
    let mut fold_of: BTreeMap<&String, usize> = BTreeMap::new();
    for (g, n) in order {
        let f = (0..k).min_by_key(|&f| (load[f], f)).unwrap_or(0);
        load[f] += n;
        fold_of.insert(g, f);
    }
    groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let g = g.clone().unwrap_or_else(|| format!("#{i}"));
            fold_of.get(&g).copied().unwrap_or(0)
        })
        .collect()
}

/// What cross-validation chooses among.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// L2 penalties tried, for the head and its first stage separately.
    pub l2: Vec<f64>,
    /// The first stage's thresholds tried: the best category's probability
    /// that ends the reading after the first tokens.
    pub confidence: Vec<f32>,
    /// Gradient steps per fit.
    pub iterations: usize,
}

impl Default for Grid {
    fn default() -> Self {
        Grid {
            l2: vec![0.01, 0.03, 0.1, 0.3, 1.0],
            confidence: vec![
                0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999,
            ],
            iterations: FitSettings::default().iterations,
        }
    }
}

/// The settings cross-validation chose.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Choice {
    /// The head's L2 penalty.
    pub l2: f64,
    /// The first stage's L2 penalty and threshold; `None`: always read on.
    pub first: Option<(f64, f32)>,
}

/// Out-of-fold probabilities for the examples `subset`: each predicted by a
/// head fitted on the other folds' examples in `subset`.
fn out_of_fold(
    x: &[&[f32]],
    labels: &[usize],
    fold_of: &[usize],
    subset: &[usize],
    classes: usize,
    settings: FitSettings,
) -> BTreeMap<usize, Vec<f32>> {
    let folds: BTreeSet<usize> = subset.iter().map(|&i| fold_of[i]).collect();
    let mut out = BTreeMap::new();
    for f in folds {
        let train: Vec<usize> = subset
            .iter()
            .copied()
            .filter(|&i| fold_of[i] != f)
            .collect();
        let xs: Vec<Vec<f32>> = train.iter().map(|&i| x[i].to_vec()).collect();
        let ys: Vec<usize> = train.iter().map(|&i| labels[i]).collect();
        let (w, b) = fit(&xs, &ys, classes, settings);
        for &i in subset.iter().filter(|&&i| fold_of[i] == f) {
            out.insert(i, probabilities(&w, &b, x[i]));
        }
    }
    out
}

/// Chooses the head's L2, and the first stage's L2 and threshold, by
/// cross-validation over the folds of the examples `subset`: the L2 with the
/// best accuracy (the larger of equals), then the first stage that stops the
/// most reading while the cascade stays within [`CASCADE_TOLERANCE`] of the
/// whole reading. No first stage when `cascade` is false or none qualifies.
pub fn choose(
    features: &[Features],
    labels: &[usize],
    fold_of: &[usize],
    subset: &[usize],
    classes: usize,
    grid: &Grid,
    cascade: bool,
) -> Choice {
    let folds: BTreeSet<usize> = subset.iter().map(|&i| fold_of[i]).collect();
    let middle = grid
        .l2
        .get(grid.l2.len() / 2)
        .copied()
        .unwrap_or(FitSettings::default().l2);
    if folds.len() < 2 {
        return Choice {
            l2: middle,
            first: None,
        };
    }
    let settings = |l2| FitSettings {
        l2,
        iterations: grid.iterations,
    };
    let full_x: Vec<&[f32]> = features.iter().map(|f| f.full.as_slice()).collect();
    let first_x: Vec<&[f32]> = features.iter().map(|f| f.first.as_slice()).collect();
    let n = subset.len() as f64;
    let right = |p: &BTreeMap<usize, Vec<f32>>, i: usize| argmax(&p[&i]) == labels[i];
    let mut best: Option<(f64, f64, BTreeMap<usize, Vec<f32>>)> = None;
    for &l2 in &grid.l2 {
        let p = out_of_fold(&full_x, labels, fold_of, subset, classes, settings(l2));
        let accuracy = subset.iter().filter(|&&i| right(&p, i)).count() as f64 / n;
        if best.as_ref().is_none_or(|(_, a, _)| accuracy >= *a) {
            best = Some((l2, accuracy, p));
        }
    }
    let Some((l2, full_accuracy, full_p)) = best else {
        return Choice {
            l2: middle,
            first: None,
        };
    };
    let mut first = None;
    if cascade {
        // (stopped, accuracy, l2, threshold) of the best first stage so far.
        let mut best: Option<(usize, f64, f64, f32)> = None;
        for &l2 in &grid.l2 {
            let p = out_of_fold(&first_x, labels, fold_of, subset, classes, settings(l2));
            for &t in &grid.confidence {
                let (mut stopped, mut correct) = (0usize, 0usize);
                for &i in subset {
                    let q = &p[&i];
                    let answer = if q[argmax(q)] >= t {
                        stopped += 1;
                        argmax(q)
                    } else {
                        argmax(&full_p[&i])
                    };
                    correct += usize::from(answer == labels[i]);
                }
                let accuracy = correct as f64 / n;
                tracing::debug!(
                    l2,
                    threshold = t,
                    stopped = stopped as f64 / n,
                    accuracy,
                    full_accuracy,
                    "first stage tried"
                );
                let better = best.is_none_or(|(s, a, _, _)| (stopped, accuracy) > (s, a));
                if stopped > 0 && accuracy >= full_accuracy - CASCADE_TOLERANCE && better {
                    best = Some((stopped, accuracy, l2, t));
                }
            }
        }
        first = best.map(|(_, _, l2, t)| (l2, t));
    }
    Choice { l2, first }
}

/// Cross-validation of the three readings a head can make.
#[derive(Debug, Default)]
pub struct CrossValidation {
    /// The cascade as chosen: the first stage when it is confident, else the
    /// whole reading.
    pub cascade: EvalReport,
    /// Always the whole reading.
    pub full: EvalReport,
    /// Always the first tokens only.
    pub first: EvalReport,
    /// Share of documents the cascade decided after the first tokens.
    pub stopped_early: f64,
    /// What each fold's training part chose.
    pub choices: Vec<Choice>,
}

/// Nested k-fold cross-validation: each fold is predicted by heads whose
/// settings were chosen ([`choose`]) and fitted on the other folds alone, so
/// the figures are those of the whole procedure on examples it never saw.
pub fn cross_validate(
    features: &[Features],
    labels: &[usize],
    ids: &[String],
    fold_of: &[usize],
    categories: &[String],
    grid: &Grid,
    cascade: bool,
) -> CrossValidation {
    let report = || EvalReport {
        labels: categories.to_vec(),
        ..EvalReport::default()
    };
    let mut cv = CrossValidation {
        cascade: report(),
        full: report(),
        first: report(),
        ..CrossValidation::default()
    };
    let record = |r: &mut EvalReport, i: usize, predicted: usize| {
        let (gold, predicted) = (&categories[labels[i]], &categories[predicted]);
        if gold != predicted {
            r.misses
                .push((ids[i].clone(), gold.clone(), predicted.clone()));
        }
        *r.confusion
            .entry((gold.clone(), predicted.clone()))
            .or_default() += 1;
    };
    let settings = |l2| FitSettings {
        l2,
        iterations: grid.iterations,
    };
    let classes = categories.len();
    let mut early = 0usize;
    let folds: BTreeSet<usize> = fold_of.iter().copied().collect();
    for &f in &folds {
        let train: Vec<usize> = (0..features.len()).filter(|&i| fold_of[i] != f).collect();
        let test: Vec<usize> = (0..features.len()).filter(|&i| fold_of[i] == f).collect();
        let choice = choose(features, labels, fold_of, &train, classes, grid, cascade);
        cv.choices.push(choice);
        let ys: Vec<usize> = train.iter().map(|&i| labels[i]).collect();
        let full_x: Vec<Vec<f32>> = train.iter().map(|&i| features[i].full.clone()).collect();
        let first_x: Vec<Vec<f32>> = train.iter().map(|&i| features[i].first.clone()).collect();
        let (fw, fb) = fit(&full_x, &ys, classes, settings(choice.l2));
        let (first_l2, threshold) = choice.first.unwrap_or((choice.l2, f32::INFINITY));
        let (sw, sb) = fit(&first_x, &ys, classes, settings(first_l2));
        for i in test {
            let full = argmax(&probabilities(&fw, &fb, &features[i].full));
            let p_first = probabilities(&sw, &sb, &features[i].first);
            let first = argmax(&p_first);
            record(&mut cv.full, i, full);
            record(&mut cv.first, i, first);
            if p_first[first] >= threshold {
                early += 1;
                record(&mut cv.cascade, i, first);
            } else {
                record(&mut cv.cascade, i, full);
            }
        }
    }
    cv.stopped_early = early as f64 / features.len().max(1) as f64;
    cv
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
    let settings = |l2| FitSettings {
        l2,
        iterations: grid.iterations,
    };
    let full_x: Vec<Vec<f32>> = xs.iter().map(|f| f.full.clone()).collect();
    let (weights, bias) = fit(&full_x, &ys, categories.len(), settings(choice.l2));
    let first = choice.first.map(|(l2, confidence)| {
        let first_x: Vec<Vec<f32>> = xs.iter().map(|f| f.first.clone()).collect();
        let (weights, bias) = fit(&first_x, &ys, categories.len(), settings(l2));
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
            balanced: true,
            cv_accuracy: Some((cv.cascade.accuracy() * 1000.0).round() / 1000.0),
            folds: distinct_folds.len(),
            grouped,
            provenance,
        },
    };
    Ok(Trained { head, cv, unusable })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_keep_a_source_together_and_balance_sizes() {
        let groups: Vec<Option<String>> = ["a", "a", "a", "b", "b", "c", "d", "d"]
            .iter()
            .map(|g| Some((*g).to_owned()))
            .collect();
        let f = folds(&groups, 2);
        assert_eq!(f[0], f[1]);
        assert_eq!(f[1], f[2]);
        assert_eq!(f[3], f[4]);
        assert_eq!(f[6], f[7]);
        let in_first = f.iter().filter(|&&x| x == f[0]).count();
        assert_eq!(in_first, 4, "{f:?}");
        assert_eq!(folds(&[None, None, None], 2), [0, 1, 0]);
    }

    /// Three separable clusters; the first-stage features are `first(i, x)`.
    fn clusters(first: impl Fn(usize, &[f32]) -> Vec<f32>) -> (Vec<Features>, Vec<usize>) {
        (0..30)
            .map(|i| {
                let c = i % 3;
                let jitter = (i as f32 * 0.37).sin() * 0.3;
                let mut x = vec![jitter, -jitter, 0.5 * jitter];
                x[c] += 2.0;
                let f = Features {
                    first: first(i, &x),
                    full: x,
                    tokens_evaluated: 0,
                };
                (f, c)
            })
            .unzip()
    }

    #[test]
    fn the_first_stage_is_kept_only_when_it_loses_nothing() {
        let grid = Grid {
            l2: vec![0.1, 1.0],
            ..Grid::default()
        };
        let fold_of = folds(&vec![None; 30], 5);
        let all: Vec<usize> = (0..30).collect();
        // The first tokens tell as much as the whole reading: stop there.
        let (xs, ys) = clusters(|_, x| x.to_vec());
        let choice = choose(&xs, &ys, &fold_of, &all, 3, &grid, true);
        assert!(choice.first.is_some(), "{choice:?}");
        let ids: Vec<String> = (0..30).map(|i| i.to_string()).collect();
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let cv = cross_validate(&xs, &ys, &ids, &fold_of, &names, &grid, true);
        assert_eq!(cv.choices.len(), 5);
        assert_eq!(cv.cascade.accuracy(), 1.0);
        assert_eq!(cv.full.accuracy(), 1.0);
        assert!(cv.stopped_early > 0.5, "{}", cv.stopped_early);
        // The first tokens tell nothing: always read on.
        let (xs, ys) = clusters(|i, _| vec![(i as f32 * 1.7).cos(), 1.0, 0.0]);
        let choice = choose(&xs, &ys, &fold_of, &all, 3, &grid, true);
        assert_eq!(choice.first, None);
        let cv = cross_validate(&xs, &ys, &ids, &fold_of, &names, &grid, true);
        assert_eq!(cv.cascade.accuracy(), 1.0);
        assert!(cv.first.accuracy() < 0.7, "{}", cv.first.accuracy());
        // No cascade asked for: none chosen.
        let (xs, ys) = clusters(|_, x| x.to_vec());
        assert_eq!(
            choose(&xs, &ys, &fold_of, &all, 3, &grid, false).first,
            None
        );
    }

    #[test]
    fn a_category_with_too_few_examples_is_refused_by_name() {
        let categories = vec!["invoice".to_owned(), "receipt".to_owned()];
        let e = check_counts(&categories, &[0, 0, 0, 0, 1, 1]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "category \"receipt\" has 2 usable example(s); a head needs at least 4 of each category to learn it from: add 2 more, or drop the category from the taxonomy"
        );
        assert!(check_counts(&categories, &[0, 0, 0, 0, 1, 1, 1, 1]).is_ok());
    }

    #[test]
    fn manifests_folders_and_jsonl_are_read_with_aliases_and_groups() {
        let dir = std::env::temp_dir().join(format!("docsort-train-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("set/invoice")).unwrap();
        std::fs::write(dir.join("set/invoice/a.pdf"), b"%PDF").unwrap();
        std::fs::write(
            dir.join("m.tsv"),
            "file\tsource_repo\tlicence\tcategory\nx.pdf\torg/r\tMIT\tscientific paper\ny.pdf\torg/s\tMIT\tslides\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("t.jsonl"),
            "{\"id\":\"1\",\"label\":\"invoice\",\"text\":\"Total due\"}\n",
        )
        .unwrap();
        let categories = vec!["invoice".to_owned(), "report".to_owned()];
        let aliases = BTreeMap::from([("scientific paper".to_owned(), "report".to_owned())]);
        let set = read_examples(
            &[dir.join("set"), dir.join("m.tsv"), dir.join("t.jsonl")],
            &categories,
            &aliases,
            None,
        )
        .unwrap();
        let got: Vec<(&str, Option<&str>)> = set
            .examples
            .iter()
            .map(|e| (e.category.as_str(), e.group.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("invoice", None),
                ("report", Some("org/r")),
                ("invoice", None)
            ]
        );
        assert_eq!(set.examples[1].licence.as_deref(), Some("MIT"));
        assert_eq!(set.skipped, BTreeMap::from([("slides".to_owned(), 1)]));
        // A group column only matters for manifests.
        assert!(read_examples(&[dir.join("t.jsonl")], &categories, &aliases, Some("team")).is_ok());
        assert!(matches!(
            read_examples(&[dir.join("m.tsv")], &categories, &aliases, Some("team")),
            Err(TrainError::Manifest { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
