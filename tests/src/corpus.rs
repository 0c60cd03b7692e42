//! The shared corpus of real-world PDFs (`DOCSORT_CORPUS`, default `../shared/corpus`).

use std::path::PathBuf;

/// The corpus directory, or `None` (with a loud message) when this machine
/// lacks it. With `DOCSORT_REQUIRE_CORPUS=1` (CI sets it) a missing corpus
/// fails the test instead.
pub fn dir() -> Option<PathBuf> {
    let dir = std::env::var_os("DOCSORT_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"));
    if dir.join("manifest.tsv").is_file() {
        Some(dir)
    } else if std::env::var("DOCSORT_REQUIRE_CORPUS").is_ok_and(|v| v == "1") {
        panic!(
            "corpus not found at {} and DOCSORT_REQUIRE_CORPUS=1: set DOCSORT_CORPUS to the folder with manifest.tsv",
            dir.display()
        );
    } else {
        eprintln!(
            "\n*** SKIPPED: corpus not found at {} (set DOCSORT_CORPUS to the folder with manifest.tsv). \
             CI always has it; this test did not run. ***\n",
            dir.display()
        );
        None
    }
}

/// The PDFs of one corpus group folder (e.g. `invoice`), sorted.
pub fn group(dir: &std::path::Path, name: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(name))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "pdf"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}
