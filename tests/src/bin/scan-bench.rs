//! Scanned documents offline: the texts of a labeled JSONL set (default
//! `../shared/eval/labeled.jsonl`) written as text PDFs and as scanner-like
//! image-only PDFs (grey paper, a slight rotation, noise, JPEG), both classified
//! by `docsort-worker classify --classifier local`. Prints accuracy on each,
//! OCR time per page (median, p90, max) and the peak memory of one document's
//! extraction with OCR (the extraction child and tesseract).
//!
//! `cargo build --workspace --bins && target/debug/scan-bench [LABELED.jsonl]`
//! (needs poppler-utils, tesseract-ocr, tesseract-ocr-eng and the local model).
//! The figures are in docs/benchmarks.md.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)] // a benchmark reports and panics

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use docsort_tests::env::built_binary;
use docsort_tests::scanned::{image_pdf, rasterize, scanner_like, Storage, A4_PT};
use docsort_worker::offline::samples::text_pdf;

/// Lines of at most `width` characters, at most `max_lines` of them.
fn wrap(text: &str, width: usize, max_lines: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.lines() {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines.truncate(max_lines);
    lines
}

/// `classify --classifier local` over `dir`: (right, total).
fn accuracy(dir: &Path) -> (usize, usize) {
    let out = dir.join("labels.jsonl");
    let status = Command::new(built_binary("docsort-worker"))
        .args(["classify", "--classifier", "local", "--out"])
        .arg(&out)
        .arg(dir)
        .env_remove("DOCSORT_CLASSIFIER")
        .stdout(Stdio::null())
        .status()
        .expect("run docsort-worker classify");
    assert!(status.success(), "classify failed on {}", dir.display());
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let right = rows
        .iter()
        .filter(|row| {
            let name = Path::new(row["path"].as_str().unwrap())
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let want = name.split_once('-').map(|(_, label)| label.to_owned());
            row["label"].as_str() == want.as_deref()
        })
        .count();
    (right, rows.len())
}

/// Peak resident memory of the largest waited-for descendant, in KiB.
fn children_peak_kib() -> u64 {
    // SAFETY: getrusage only writes into the struct we pass.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        u64::try_from(usage.ru_maxrss).unwrap_or(0)
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let set: PathBuf = std::env::args().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/eval/labeled.jsonl"),
        PathBuf::from,
    );
    let examples: Vec<serde_json::Value> = std::fs::read_to_string(&set)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", set.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let root = std::env::temp_dir().join(format!("docsort-scan-bench-{}", std::process::id()));
    let (text_dir, scan_dir) = (root.join("text"), root.join("scan"));
    std::fs::create_dir_all(&text_dir).unwrap();
    std::fs::create_dir_all(&scan_dir).unwrap();
    let started = Instant::now();
    for (i, example) in examples.iter().enumerate() {
        let label = example["label"].as_str().unwrap();
        let text = example["text"].as_str().unwrap();
        let pdf = text_pdf(&[wrap(text, 95, 52)]);
        let name = format!("{i:03}-{label}.pdf");
        let scan = scanner_like(&rasterize(&pdf, 150), i as u64);
        std::fs::write(text_dir.join(&name), &pdf).unwrap();
        std::fs::write(
            scan_dir.join(&name),
            image_pdf(&scan, Storage::Jpeg { quality: 75 }, A4_PT, 0),
        )
        .unwrap();
    }
    eprintln!(
        "scan-bench: {} documents rendered in {:.1} s into {}",
        examples.len(),
        started.elapsed().as_secs_f64(),
        root.display()
    );

    // OCR alone, one document at a time, as the worker's extraction child runs it.
    let worker = built_binary("docsort-worker");
    let mut times = Vec::new();
    let mut ocr_failed = 0;
    for entry in std::fs::read_dir(&scan_dir).unwrap() {
        let path = entry.unwrap().path();
        let start = Instant::now();
        let out = Command::new(&worker)
            .args([
                "extract-child",
                "--max-text-chars",
                "2000",
                "--fallback",
                "ocr",
            ])
            .stdin(std::fs::File::open(&path).unwrap())
            .output()
            .unwrap();
        times.push(start.elapsed().as_secs_f64());
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if report["result"].get("Ok").is_none() {
            ocr_failed += 1;
            eprintln!("{}: {}", path.display(), report["result"]);
        }
    }
    let ocr_peak_mib = children_peak_kib() as f64 / 1024.0;
    times.sort_by(f64::total_cmp);

    let (text_right, n) = accuracy(&text_dir);
    let (scan_right, scans) = accuracy(&scan_dir);
    println!("documents: {n} text PDFs, {scans} scanner-like image-only PDFs");
    println!(
        "accuracy: text {:.3} ({text_right}/{n}), scans through OCR {:.3} ({scan_right}/{scans})",
        text_right as f64 / n as f64,
        scan_right as f64 / scans as f64
    );
    println!(
        "OCR per page (render + tesseract, one thread): median {:.2} s, p90 {:.2} s, max {:.2} s; {ocr_failed} without text",
        percentile(&times, 0.5),
        percentile(&times, 0.9),
        percentile(&times, 1.0)
    );
    println!("peak memory of one document's extraction with OCR: {ocr_peak_mib:.0} MiB");
    let _ = std::fs::remove_dir_all(&root);
}
