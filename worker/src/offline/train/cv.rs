//! Choosing a head's settings by cross-validation, and nested
//! cross-validation of that choice: folds grouped by source, the L2 penalties
//! and the first stage's threshold.

use std::collections::{BTreeMap, BTreeSet};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::classify::local::head::{argmax, fit, probabilities, FitSettings};
use crate::classify::local::Features;
use crate::offline::eval::EvalReport;

/// Fold of each example: whole groups to the fold with the fewest examples
/// so far (largest groups first), or round-robin without groups. `deal` 0
/// takes groups of equal size in name order; another deal takes them in an
/// order of its own (fixed by the number), so repeating the cross-validation
/// over several deals shows how much its figure owes to one arbitrary split.
pub fn folds(groups: &[Option<String>], k: usize, deal: u64) -> Vec<usize> {
    let k = k.max(2);
    if deal == 0 && groups.iter().all(Option::is_none) {
        return (0..groups.len()).map(|i| i % k).collect();
    }
    // An example without a group is its own group.
    let name = |i: usize, g: &Option<String>| g.clone().unwrap_or_else(|| format!("#{i}"));
    let mut sizes: BTreeMap<String, usize> = BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        *sizes.entry(name(i, g)).or_default() += 1;
    }
    let tie = |g: &str| -> Vec<u8> {
        if deal == 0 {
            return g.as_bytes().to_vec();
        }
        let mut h = Sha256::new();
        h.update(deal.to_le_bytes());
        h.update(g.as_bytes());
        h.finalize().to_vec()
    };
    let mut order: Vec<(&String, usize, Vec<u8>)> =
        sizes.iter().map(|(g, &n)| (g, n, tie(g))).collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.2.cmp(&b.2)));
    let mut load = vec![0usize; k];
    let mut fold_of: BTreeMap<&String, usize> = BTreeMap::new();
    for (g, n, _) in order {
        let f = (0..k).min_by_key(|&f| (load[f], f)).unwrap_or(0);
        load[f] += n;
        fold_of.insert(g, f);
    }
    groups
        .iter()
        .enumerate()
        .map(|(i, g)| fold_of.get(&name(i, g)).copied().unwrap_or(0))
        .collect()
}

/// How the examples are split for cross-validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// Folds.
    pub folds: usize,
    /// Deals of the sources to folds ([`folds`]) the cross-validation is
    /// repeated over: 1 is deal 0 alone, which also chooses the head's settings.
    pub deals: usize,
}

/// The default [`Grid::tolerance`]: none. A first stage is kept only where
/// the inner cross-validation says stopping early costs nothing, because that
/// estimate flatters the cascade: on the shipped head's 148 PDFs, allowing one
/// point lost 1.9 on average over ten deals of the sources to folds.
pub const CASCADE_TOLERANCE: f64 = 0.0;

/// What cross-validation chooses among.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// L2 penalties tried, for the head and its first stage separately.
    pub l2: Vec<f64>,
    /// The first stage's thresholds tried: the best category's probability
    /// that ends the reading after the first tokens.
    pub confidence: Vec<f32>,
    /// Most gradient steps per fit.
    pub iterations: usize,
    /// A fit's convergence ([`FitSettings::convergence`]).
    pub convergence: f64,
    /// Cross-validated accuracy the cascade may lose against always reading
    /// on and still be chosen (0: stop early only where it costs nothing).
    pub tolerance: f64,
}

impl Default for Grid {
    fn default() -> Self {
        Grid {
            l2: vec![0.01, 0.03, 0.1, 0.3, 1.0],
            confidence: vec![
                0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999,
            ],
            iterations: FitSettings::default().iterations,
            convergence: FitSettings::default().convergence,
            tolerance: CASCADE_TOLERANCE,
        }
    }
}

impl Grid {
    /// How a head with penalty `l2` is fitted.
    pub fn settings(&self, l2: f64) -> FitSettings {
        FitSettings {
            l2,
            iterations: self.iterations,
            convergence: self.convergence,
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
    // Each fold's fit is independent: fitted in parallel.
    folds
        .par_iter()
        .flat_map_iter(|&f| {
            let train: Vec<usize> = subset
                .iter()
                .copied()
                .filter(|&i| fold_of[i] != f)
                .collect();
            let xs: Vec<Vec<f32>> = train.iter().map(|&i| x[i].to_vec()).collect();
            let ys: Vec<usize> = train.iter().map(|&i| labels[i]).collect();
            let (w, b) = fit(&xs, &ys, classes, settings);
            subset
                .iter()
                .filter(|&&i| fold_of[i] == f)
                .map(|&i| (i, probabilities(&w, &b, x[i])))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Chooses the head's L2, and the first stage's L2 and threshold, by
/// cross-validation over the folds of the examples `subset`: the L2 with the
/// best accuracy (the larger of equals), then the first stage that stops the
/// most reading while the cascade stays within the grid's tolerance of the
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
    let full_x: Vec<&[f32]> = features.iter().map(|f| f.full.as_slice()).collect();
    let first_x: Vec<&[f32]> = features.iter().map(|f| f.first.as_slice()).collect();
    let n = subset.len() as f64;
    let right = |p: &BTreeMap<usize, Vec<f32>>, i: usize| argmax(&p[&i]) == labels[i];
    // Out-of-fold probabilities for each penalty, computed in parallel.
    let per_l2 = |x: &[&[f32]]| -> Vec<(f64, BTreeMap<usize, Vec<f32>>)> {
        grid.l2
            .par_iter()
            .map(|&l2| {
                let p = out_of_fold(x, labels, fold_of, subset, classes, grid.settings(l2));
                (l2, p)
            })
            .collect()
    };
    let mut best: Option<(f64, f64, BTreeMap<usize, Vec<f32>>)> = None;
    for (l2, p) in per_l2(&full_x) {
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
        for (l2, p) in per_l2(&first_x) {
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
                if stopped > 0 && accuracy >= full_accuracy - grid.tolerance && better {
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
    let classes = categories.len();
    let mut early = 0usize;
    let folds: BTreeSet<usize> = fold_of.iter().copied().collect();
    // Each fold's choice and fits are independent: made in parallel, read in order.
    let fitted: Vec<_> = folds
        .par_iter()
        .map(|&f| {
            let train: Vec<usize> = (0..features.len()).filter(|&i| fold_of[i] != f).collect();
            let choice = choose(features, labels, fold_of, &train, classes, grid, cascade);
            let ys: Vec<usize> = train.iter().map(|&i| labels[i]).collect();
            let full_x: Vec<Vec<f32>> = train.iter().map(|&i| features[i].full.clone()).collect();
            let full = fit(&full_x, &ys, classes, grid.settings(choice.l2));
            // Without a cascade the first tokens are the whole reading: no second head.
            let stage = cascade.then(|| {
                let (first_l2, threshold) = choice.first.unwrap_or((choice.l2, f32::INFINITY));
                let first_x: Vec<Vec<f32>> =
                    train.iter().map(|&i| features[i].first.clone()).collect();
                (
                    fit(&first_x, &ys, classes, grid.settings(first_l2)),
                    threshold,
                )
            });
            (f, choice, full, stage)
        })
        .collect();
    for (f, choice, (fw, fb), stage) in fitted {
        cv.choices.push(choice);
        let test: Vec<usize> = (0..features.len()).filter(|&i| fold_of[i] == f).collect();
        for i in test {
            let p_full = probabilities(&fw, &fb, &features[i].full);
            let full = argmax(&p_full);
            let (p_first, threshold) = match &stage {
                Some(((sw, sb), threshold)) => {
                    (probabilities(sw, sb, &features[i].first), *threshold)
                }
                None => (p_full, f32::INFINITY),
            };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_keep_a_source_together_and_balance_sizes() {
        let groups: Vec<Option<String>> = ["a", "a", "a", "b", "b", "c", "d", "d"]
            .iter()
            .map(|g| Some((*g).to_owned()))
            .collect();
        let f = folds(&groups, 2, 0);
        assert_eq!(f[0], f[1]);
        assert_eq!(f[1], f[2]);
        assert_eq!(f[3], f[4]);
        assert_eq!(f[6], f[7]);
        let in_first = f.iter().filter(|&&x| x == f[0]).count();
        assert_eq!(in_first, 4, "{f:?}");
        assert_eq!(folds(&[None, None, None], 2, 0), [0, 1, 0]);
    }

    /// Other deals split the groups otherwise, each the same every time, and
    /// still keep a group together and the folds' sizes balanced.
    #[test]
    fn other_deals_split_the_groups_otherwise() {
        let groups: Vec<Option<String>> = (0..40)
            .map(|i| Some(format!("g{}", i / 2)))
            .chain((0..6).map(|_| None))
            .collect();
        let first = folds(&groups, 5, 0);
        let dealt: Vec<Vec<usize>> = (1..=3).map(|d| folds(&groups, 5, d)).collect();
        for (d, f) in (1..=3).zip(&dealt) {
            assert_eq!(*f, folds(&groups, 5, d), "deal {d} is not fixed");
            assert_ne!(*f, first, "deal {d} splits as deal 0 does");
            for pair in f[..40].chunks(2) {
                assert_eq!(pair[0], pair[1], "deal {d} split a group: {f:?}");
            }
            let mut sizes = [0usize; 5];
            for &x in f {
                sizes[x] += 1;
            }
            assert!(
                sizes.iter().all(|&n| (9..=10).contains(&n)),
                "deal {d}: {sizes:?}"
            );
        }
        assert_ne!(dealt[0], dealt[1]);
        // Without groups, a deal is a shuffled round-robin.
        let alone = folds(&[None, None, None, None], 2, 7);
        assert_eq!(alone.iter().filter(|&&x| x == 0).count(), 2, "{alone:?}");
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
        let fold_of = folds(&vec![None; 30], 5, 0);
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
    fn the_tolerance_trades_accuracy_for_early_stops() {
        // The first tokens mislead on every tenth example, and more confidently
        // than they tell the truth on the others: any first stage costs accuracy.
        let (xs, ys) = clusters(|i, x| {
            if i % 10 != 0 {
                return x.to_vec();
            }
            let mut wrong = vec![0.0; 3];
            wrong[(i % 3 + 1) % 3] = 6.0;
            wrong
        });
        let fold_of = folds(&vec![None; 30], 5, 0);
        let all: Vec<usize> = (0..30).collect();
        let grid = |tolerance| Grid {
            l2: vec![0.1, 1.0],
            tolerance,
            ..Grid::default()
        };
        let strict = choose(&xs, &ys, &fold_of, &all, 3, &grid(0.0), true);
        assert_eq!(strict.first, None, "{strict:?}");
        let lenient = choose(&xs, &ys, &fold_of, &all, 3, &grid(0.2), true);
        assert!(lenient.first.is_some(), "{lenient:?}");
    }
}
