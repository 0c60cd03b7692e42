//! Text extraction benchmark over the shared corpus, side by side in one run:
//! docsort's extractor (full, and with the worker's default text budget),
//! lopdf's `extract_text`, and pdftotext (poppler) as the reference.
//!
//! `cargo run --release -p docsort-tests --bin extract-bench [-- --per-file]`
//! (needs `pdftotext`: `apt-get install poppler-utils`; the corpus from
//! DOCSORT_CORPUS or ../shared/corpus; `cargo build --release --bins` first for
//! the memory column, which runs each file through `docsort-worker extract-child`).
//!
//! Word recall and precision compare bags of lowercase words with pdftotext's,
//! over files where pdftotext finds at least 20 words. A silent failure is a file
//! where docsort reports success with less than half of pdftotext's words.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)] // test tooling reports and panics

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use docsort_tests::recall::{overlap, pdftotext, percentile, words, MIN_REFERENCE_WORDS};
use docsort_tests::{corpus, scenarios};
use docsort_worker::extract::{extract, ChildReport};

const DEFAULT_BUDGET: usize = 2000;

fn child_peak_kib(exe: &Path, bytes: &[u8]) -> Option<u64> {
    let mut child = Command::new(exe)
        .arg("extract-child")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(bytes).ok()?;
    let out = child.wait_with_output().ok()?;
    serde_json::from_slice::<ChildReport>(&out.stdout)
        .ok()
        .map(|r| r.peak_rss_kib)
}

#[derive(Default)]
struct Tally {
    recalls: Vec<f64>,
    precisions: Vec<f64>,
    silent: Vec<String>,
    failures: BTreeMap<String, usize>,
    time: Duration,
}

fn main() {
    let per_file = std::env::args().any(|a| a == "--per-file");
    let Some(dir) = corpus::dir() else {
        std::process::exit(1)
    };
    if !docsort_tests::recall::pdftotext_available() {
        eprintln!("extract-bench: pdftotext not found; install poppler-utils");
        std::process::exit(1);
    }
    let exe = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("docsort-worker")))
        .filter(|p| p.exists());
    let files = scenarios::walk(&dir);
    let (mut ours, mut budgeted, mut lopdf_tally, mut reference) = (
        Tally::default(),
        Tally::default(),
        Tally::default(),
        Tally::default(),
    );
    let (mut bytes_total, mut pages_total, mut peak_kib, mut slowest) =
        (0u64, 0u64, 0u64, (Duration::ZERO, String::new()));
    if per_file {
        println!(
            "{:<70} {:>6} {:>6} {:>6} {:>6}",
            "file", "words", "recall", "prec", "lopdf"
        );
    }
    for path in &files {
        let bytes = std::fs::read(path).expect("read corpus file");
        let name = path
            .strip_prefix(&dir)
            .unwrap_or(path)
            .display()
            .to_string();
        bytes_total += bytes.len() as u64;
        let (ref_text, ref_time) = pdftotext(path);
        reference.time += ref_time;
        let ref_words = ref_text.as_deref().map(words).unwrap_or_default();
        let ref_count: usize = ref_words.values().sum();
        if ref_text.is_none() {
            *reference.failures.entry("error".into()).or_default() += 1;
        }

        let start = Instant::now();
        let full = extract(&bytes, 0);
        let t = start.elapsed();
        ours.time += t;
        if t > slowest.0 {
            slowest = (t, name.clone());
        }
        let start = Instant::now();
        let _ = extract(&bytes, DEFAULT_BUDGET);
        budgeted.time += start.elapsed();

        let start = Instant::now();
        let lopdf_text = lopdf::Document::load_mem(&bytes).ok().and_then(|d| {
            d.extract_text(&d.get_pages().keys().copied().collect::<Vec<_>>())
                .ok()
        });
        lopdf_tally.time += start.elapsed();

        if let Some(exe) = &exe {
            peak_kib = peak_kib.max(child_peak_kib(exe, &bytes).unwrap_or(0));
        }
        let (mut recall, mut precision) = (f64::NAN, f64::NAN);
        match &full {
            Ok(x) => {
                pages_total += u64::from(x.pages);
                let got = words(&x.text);
                let got_count: usize = got.values().sum();
                if ref_count >= MIN_REFERENCE_WORDS {
                    let hit = overlap(&got, &ref_words);
                    recall = hit as f64 / ref_count as f64;
                    precision = if got_count == 0 {
                        0.0
                    } else {
                        hit as f64 / got_count as f64
                    };
                    ours.recalls.push(recall);
                    ours.precisions.push(precision);
                    if recall < 0.5 {
                        ours.silent.push(format!("{name} (recall {recall:.2})"));
                    }
                }
            }
            Err(e) => {
                *ours.failures.entry(e.reason().to_string()).or_default() += 1;
                if ref_count >= MIN_REFERENCE_WORDS {
                    ours.recalls.push(0.0);
                }
            }
        }
        let mut lopdf_recall = f64::NAN;
        if ref_count >= MIN_REFERENCE_WORDS {
            let got = lopdf_text.as_deref().map(words).unwrap_or_default();
            let hit = overlap(&got, &ref_words);
            lopdf_recall = hit as f64 / ref_count as f64;
            lopdf_tally.recalls.push(lopdf_recall);
            let n: usize = got.values().sum();
            lopdf_tally
                .precisions
                .push(if n == 0 { 0.0 } else { hit as f64 / n as f64 });
            if lopdf_text.is_some() && lopdf_recall < 0.5 {
                lopdf_tally.silent.push(name.clone());
            }
        }
        if lopdf_text.is_none() {
            *lopdf_tally.failures.entry("error".into()).or_default() += 1;
        }
        if per_file {
            println!(
                "{name:<70} {ref_count:>6} {recall:>6.2} {precision:>6.2} {lopdf_recall:>6.2}"
            );
        }
    }
    let mb = bytes_total as f64 / 1e6;
    let row = |label: &str, t: &mut Tally| {
        let secs = t.time.as_secs_f64();
        let failures = t
            .failures
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "{label:<28} {:>7.3} {:>7.3} {:>7.3} {:>7} {:>8.1} {:>8.1} {:>8.2}  {}",
            percentile(&mut t.recalls, 0.5),
            percentile(&mut t.recalls, 0.1),
            percentile(&mut t.precisions, 0.5),
            t.silent.len(),
            mb / secs,
            pages_total as f64 / secs,
            secs,
            if failures.is_empty() {
                "-".into()
            } else {
                failures
            }
        );
    };
    println!("\n{} files, {:.1} MB, {} pages (docsort's count); reference: pdftotext (poppler), files with >= 20 reference words: {}", files.len(), mb, pages_total, ours.recalls.len());
    println!(
        "{:<28} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8}  failures",
        "extractor", "rec p50", "rec p10", "prec50", "silent", "MB/s", "pages/s", "wall s"
    );
    row("docsort (full)", &mut ours);
    budgeted.recalls.clear();
    row(
        &format!("docsort (budget {DEFAULT_BUDGET} chars)"),
        &mut budgeted,
    );
    row("lopdf extract_text", &mut lopdf_tally);
    row("pdftotext (process per file)", &mut reference);
    println!(
        "\nspeed vs pdftotext: full {:.2}x, budget {:.2}x, lopdf {:.2}x (wall time ratio; docsort and lopdf in-process)",
        reference.time.as_secs_f64() / ours.time.as_secs_f64(),
        reference.time.as_secs_f64() / budgeted.time.as_secs_f64(),
        reference.time.as_secs_f64() / lopdf_tally.time.as_secs_f64()
    );
    println!(
        "slowest file (docsort, full): {} in {:.0} ms",
        slowest.1,
        slowest.0.as_secs_f64() * 1000.0
    );
    if exe.is_some() {
        println!(
            "peak memory of one extraction (child process, full extraction): {:.0} MiB",
            peak_kib as f64 / 1024.0
        );
    }
    if !ours.silent.is_empty() {
        println!("\nsilent failures (docsort reported success with < 50% of the reference words):");
        for s in &ours.silent {
            println!("  {s}");
        }
    }
}
