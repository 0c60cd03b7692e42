//! The nightly backfill at scale, on moto: a prefix of N objects (default
//! 20,000), 90% already labeled under the current label version, then the
//! real `docsort-producer backfill` binary run over it. Prints objects per
//! second, requests by kind and the producer's peak memory. With TABLE_ITEMS,
//! the labels table is then filled to that many records and `report` and
//! `export` are timed over it, with their peak memory.
//!
//! `cargo build --workspace --bins && target/debug/backfill-bench [OBJECTS [TABLE_ITEMS]]`
//! (needs `.venv` from `scripts/test`). The figures are in docs/benchmarks.md.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)] // test tooling reports and panics

use std::sync::Arc;
use std::time::Instant;

use docsort_schema::{LabelRecord, Outcome, Source};
use docsort_tests::bedrock::Reply;
use docsort_tests::env::{built_binary, TestEnv};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

fn key(i: usize) -> String {
    format!("archive/{:03}/{i:07}.pdf", i % 1000)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let objects: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("OBJECTS is a number"))
        .unwrap_or(20_000);
    // Records in the table for the report and export runs (0: none).
    let table_items: usize = std::env::args()
        .nth(2)
        .map(|n| n.parse().expect("TABLE_ITEMS is a number"))
        .unwrap_or(0);
    let labeled = objects * 9 / 10;
    let env = TestEnv::new("scale", |_| Reply::Answer("invoice".into())).await;
    let version = env.label_version();

    let started = Instant::now();
    let slots = Arc::new(Semaphore::new(32));
    let mut tasks = JoinSet::new();
    for i in 0..objects {
        let (s3, bucket, slots) = (env.s3.clone(), env.bucket.clone(), slots.clone());
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await.unwrap();
            let out = s3
                .put_object()
                .bucket(bucket)
                .key(key(i))
                .body(format!("%PDF-1.4 object {i}").into_bytes().into())
                .send()
                .await
                .expect("put object");
            (i, out.e_tag().unwrap().trim_matches('"').to_owned())
        });
    }
    let mut etags = vec![String::new(); objects];
    while let Some(done) = tasks.join_next().await {
        let (i, etag) = done.unwrap();
        etags[i] = etag;
    }
    let records = (0..labeled)
        .map(|i| {
            let mut r = LabelRecord::new(
                docsort_schema::record::uri(&env.bucket, &key(i)),
                env.bucket.clone(),
                key(i),
                version.clone(),
                Source::Backfill,
                Outcome::Labeled {
                    label: "invoice".into(),
                },
            );
            r.etag = Some(etags[i].clone());
            r
        })
        .collect();
    env.store(records).await;
    println!(
        "setup: {objects} objects, {labeled} labeled, in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let (out, elapsed, peak_kib) = run_measured(
        &env,
        &[
            "backfill",
            "--bucket",
            &env.bucket,
            "--prefix",
            "archive/",
            "--table",
            &env.table,
            "--queue-url",
            &env.queue_url,
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let finished: serde_json::Value = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "backfill finished")
        .expect("the producer's closing log line");
    let f = &finished["fields"];
    println!("{}", stdout.trim());
    println!(
        "backfill over {objects} objects: {:.1} s, {:.0} objects/s, peak memory {:.1} MiB",
        elapsed.as_secs_f64(),
        objects as f64 / elapsed.as_secs_f64(),
        peak_kib as f64 / 1024.0
    );
    println!(
        "requests: ListObjectsV2 {} | BatchGetItem {} | SendMessageBatch {}",
        f["list_requests"], f["table_requests"], f["send_requests"]
    );
    assert_eq!(f["enqueued"], objects as u64 - labeled as u64);

    if table_items > labeled {
        table_run(&env, labeled, table_items).await;
    }
}

/// Fills the labels table up to `items` records, then times `report` and
/// `export` over it with their peak memory.
async fn table_run(env: &TestEnv, from: usize, items: usize) {
    let started = Instant::now();
    let records = (from..items)
        .map(|i| {
            let key = format!("table-only/{i:07}.pdf");
            let mut r = LabelRecord::new(
                docsort_schema::record::uri(&env.bucket, &key),
                env.bucket.clone(),
                key,
                "v".into(),
                Source::Backfill,
                Outcome::Labeled {
                    label: ["invoice", "receipt", "report"][i % 3].into(),
                },
            );
            r.cost_usd = Some(0.0008);
            r
        })
        .collect();
    env.store(records).await;
    println!(
        "table setup: {items} records in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let out_file = std::env::temp_dir().join(format!("docsort-bench-{}.jsonl", std::process::id()));
    let out_path = out_file.display().to_string();
    for args in [
        vec!["report", "--table", &env.table],
        vec!["export", "--table", &env.table, "--out", &out_path],
        vec![
            "export", "--table", &env.table, "--label", "invoice", "--out", &out_path,
        ],
    ] {
        let (out, elapsed, peak_kib) = run_measured(env, &args).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let first = stdout.lines().next().unwrap_or("");
        println!(
            "{}: {:.1} s, peak memory {:.1} MiB ({first})",
            args.join(" ")
                .replace(&env.table, "TABLE")
                .replace(&out_path, "OUT.jsonl"),
            elapsed.as_secs_f64(),
            peak_kib as f64 / 1024.0
        );
    }
    std::fs::remove_file(&out_file).ok();
}

/// Runs `docsort-producer ARGS` against the test's stand-ins: its output,
/// wall time and own peak resident memory (KiB).
async fn run_measured(
    env: &TestEnv,
    args: &[&str],
) -> (std::process::Output, std::time::Duration, u64) {
    let started = Instant::now();
    let mut child = tokio::process::Command::new(built_binary("docsort-producer"))
        .args(args)
        .envs(env.child_env())
        .env("DOCSORT_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run docsort-producer");
    // The producer's own peak (VmHWM), read while it runs: getrusage's
    // children maximum would carry this large process's over (fork, exec).
    let status_file = format!("/proc/{}/status", child.id().expect("pid"));
    let mut peak_kib = 0u64;
    let stdout_pipe = child.stdout.take().expect("stdout");
    let stderr_pipe = child.stderr.take().expect("stderr");
    let read_all = |mut pipe: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
        tokio::spawn(async move {
            let mut buf = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut pipe, &mut buf)
                .await
                .ok();
            buf
        })
    };
    let stdout_task = read_all(Box::new(stdout_pipe));
    let stderr_task = read_all(Box::new(stderr_pipe));
    let status = loop {
        if let Some(kib) = std::fs::read_to_string(&status_file).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        }) {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let elapsed = started.elapsed();
    let out_bytes = stdout_task.await.unwrap();
    let err_bytes = stderr_task.await.unwrap();
    let out = std::process::Output {
        status,
        stdout: out_bytes,
        stderr: err_bytes,
    };
    (out, elapsed, peak_kib)
}
