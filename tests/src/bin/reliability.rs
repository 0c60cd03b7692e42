//! Prints docsort's reliability summary: a 200-document run whose worker is
//! SIGKILLed twice, and a run over every PDF of the corpus.
//!
//! `cargo build --workspace --bins && cargo run -p docsort-tests --bin reliability`
//! (needs `.venv` from `scripts/test`; the corpus from DOCSORT_CORPUS or ../shared/corpus).

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)] // test tooling reports and panics

use docsort_tests::{corpus, scenarios};

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let kill = scenarios::kill_run(200, 2).await;
    println!("docsort reliability summary");
    println!(
        "  kill run: {} documents, {} SIGKILLs, then SIGTERM",
        kill.documents, kill.kills
    );
    println!(
        "    lost {} | wrong label {} | model calls {} (duplicates {}, in flight at kills {})",
        kill.lost, kill.wrong, kill.model_calls, kill.duplicates, kill.in_flight_at_kills
    );
    println!(
        "    DLQ {} | stale leases (expire by TTL) {} | last worker exit {:?} | {:.1} s",
        kill.dlq,
        kill.leases_left,
        kill.final_exit,
        kill.elapsed.as_secs_f64()
    );
    let Some(dir) = corpus::dir() else { return };
    let run = scenarios::corpus_run(&dir).await;
    let failed: Vec<String> = run.failed.iter().map(|(r, n)| format!("{r} {n}")).collect();
    println!(
        "  corpus run: {} PDFs, worker survived: {}",
        run.files, run.worker_survived
    );
    println!(
        "    labeled {} | failed: {} | without item {}",
        run.labeled,
        failed.join(", "),
        run.missing.len()
    );
    println!(
        "    slowest extraction {} ms ({}) | peak extraction memory {:.0} MiB | {:.1} s",
        run.slowest_extract_ms,
        run.slowest_document,
        run.peak_extract_rss_kib as f64 / 1024.0,
        run.elapsed.as_secs_f64()
    );
}
