//! Word recall of an extraction against pdftotext (poppler), the reference of
//! the extraction benchmark and of the corpus recall test.
//!
//! Texts are compared as bags of lowercase words (runs of letters and digits).

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Files where pdftotext finds fewer words are not scored.
pub const MIN_REFERENCE_WORDS: usize = 20;

/// A bag of lowercase words.
pub fn words(text: &str) -> HashMap<String, usize> {
    let mut bag = HashMap::new();
    for w in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        *bag.entry(w.to_lowercase()).or_default() += 1;
    }
    bag
}

/// Words of `a` also in `b`, counted with multiplicity.
pub fn overlap(a: &HashMap<String, usize>, b: &HashMap<String, usize>) -> usize {
    a.iter()
        .map(|(w, n)| (*n).min(b.get(w).copied().unwrap_or(0)))
        .sum()
}

/// The `p` quantile (nearest rank) of `values`; NaN when empty.
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * p).round() as usize]
}

/// Whether `pdftotext` can be run here.
pub fn pdftotext_available() -> bool {
    Command::new("pdftotext")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// pdftotext's text of `path` (`None` when it fails) and the time it took.
pub fn pdftotext(path: &Path) -> (Option<String>, Duration) {
    let start = Instant::now();
    let out = Command::new("pdftotext")
        .args(["-q", "-enc", "UTF-8"])
        .arg(path)
        .arg("-")
        .stderr(Stdio::null())
        .output();
    let elapsed = start.elapsed();
    match out {
        Ok(o) if o.status.success() => (
            Some(String::from_utf8_lossy(&o.stdout).into_owned()),
            elapsed,
        ),
        _ => (None, elapsed),
    }
}
