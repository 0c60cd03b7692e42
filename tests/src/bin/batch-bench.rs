//! On-demand against batch inference, side by side on the same documents:
//! every PDF of the corpus (`DOCSORT_CORPUS`, default `../shared/corpus`)
//! is uploaded twice to moto. One copy is labeled through the queue by the
//! worker pool (on-demand Converse). The other goes through
//! `docsort::batch::run` (one batch job on the stand-in). The stand-in bills
//! text at one token per 4 characters and an image at width x height / 750.
//!
//! Prints, for each route, the documents labeled, the tokens and the cost
//! per 1,000 labeled documents at the model's price, their ratio, and the
//! batch run's phases: ingestion (list, fetch, extract, stage) and
//! collection (outputs joined, labels written).
//!
//! `cargo build --workspace --bins && DOCSORT_MOTO_SERVER=.venv/bin/moto_server target/debug/batch-bench`
//! The figures are in docs/benchmarks.md#batch-inference.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)] // a benchmark reports and panics

use std::time::{Duration, Instant};

use docsort_producer::backfill::backfill;
use docsort_producer::Sender;
use docsort_schema::LabelRecord;
use docsort_tests::bedrock::{label_for, Reply};
use docsort_tests::env::{sdk_config, TestEnv, MODEL_ID};
use docsort_tests::{corpus, wait};
use docsort_worker::batch::staging::S3Location;
use docsort_worker::batch::{BatchSettings, Quotas};
use docsort_worker::pipeline::aws::{bedrock_client, Clients};
use indicatif::ProgressBar;

/// (documents labeled, input tokens, output tokens, cost USD) of records under `prefix`.
fn totals(items: &[&LabelRecord]) -> (usize, u64, u64, f64) {
    let labeled: Vec<&&LabelRecord> = items.iter().filter(|r| r.label().is_some()).collect();
    (
        labeled.len(),
        labeled.iter().map(|r| r.input_tokens).sum(),
        labeled.iter().map(|r| r.output_tokens).sum(),
        labeled.iter().map(|r| r.cost_usd.unwrap_or(0.0)).sum(),
    )
}

#[tokio::main]
async fn main() {
    let Some(dir) = corpus::dir() else {
        eprintln!("batch-bench needs the corpus: set DOCSORT_CORPUS (default ../shared/corpus)");
        std::process::exit(2);
    };
    let files = docsort_tests::scenarios::walk(&dir);
    let env = TestEnv::new("batch-bench", |call| {
        Reply::Answer(label_for(&call.document).to_owned())
    })
    .await;
    let stage = format!("{}-stage", env.bucket);
    env.s3.create_bucket().bucket(&stage).send().await.unwrap();
    for (i, file) in files.iter().enumerate() {
        let bytes = std::fs::read(file).unwrap();
        for route in ["ondemand", "batch"] {
            env.put(&format!("{route}/{i:04}.pdf"), bytes.clone()).await;
        }
    }
    let n = files.len();
    println!("documents: {n} corpus PDFs, each uploaded under ondemand/ and batch/");

    // On-demand: the queue backfill, then the pool.
    let started = Instant::now();
    let sender = Sender::new(env.sqs.clone(), env.queue_url.clone(), 4);
    backfill(
        &env.s3,
        &env.dynamodb,
        &env.backfill_settings("ondemand/"),
        Some(&sender),
        &ProgressBar::hidden(),
    )
    .await
    .unwrap();
    let worker = env.start_worker().await;
    wait::until(
        "every on-demand document recorded",
        Duration::from_secs(1800),
        || async {
            let done = env
                .items()
                .await
                .keys()
                .filter(|k| k.starts_with("ondemand/"))
                .count();
            (done == n && env.depth(&env.queue_url).await == (0, 0)).then_some(())
        },
    )
    .await;
    worker.stop().await;
    let on_demand_secs = started.elapsed().as_secs_f64();

    // Batch: the same documents through one batch job.
    let run = env.run_settings();
    let settings = BatchSettings {
        bucket: env.bucket.clone(),
        prefix: "batch/".into(),
        table: env.table.clone(),
        queue_url: env.queue_url.clone(),
        role_arn: "arn:aws:iam::123456789012:role/docsort-batch".into(),
        staging: S3Location::parse(&format!("s3://{stage}/staging/")).unwrap(),
        poll: Duration::from_millis(200),
        max_poll: Duration::from_secs(1),
        timeout_hours: 24,
        quotas: Quotas::default(),
        concurrency: run.concurrency,
        retry_failed: false,
        relabel: false,
        max_object_bytes: run.max_object_bytes,
        extract: run.extract.clone(),
        classifier: run.classifier.clone(),
        metrics_namespace: None,
    };
    let bedrock_sdk = sdk_config(&env.bedrock.endpoint).await;
    let clients = Clients {
        s3: env.s3.clone(),
        sqs: env.sqs.clone(),
        dynamodb: env.dynamodb.clone(),
        bedrock: bedrock_client(&bedrock_sdk, Duration::from_secs(10)),
    };
    let control = aws_sdk_bedrock::Client::new(&bedrock_sdk);
    env.bedrock.batch.hold(true);
    let started = Instant::now();
    let task = tokio::spawn(async move {
        docsort_worker::batch::run(&clients, &control, &settings, Box::new(std::io::sink())).await
    });
    wait::until(
        "the batch job to run",
        Duration::from_secs(1800),
        || async {
            let jobs = env.bedrock.batch.jobs();
            (jobs.first().is_some_and(|j| j.status == "InProgress")).then_some(())
        },
    )
    .await;
    let ingest_secs = started.elapsed().as_secs_f64();
    env.bedrock.batch.hold(false);
    let collected = Instant::now();
    let summary = task.await.unwrap().unwrap();
    let collect_secs = collected.elapsed().as_secs_f64();
    println!("batch: {summary}");
    assert_eq!(
        summary.on_demand, 0,
        "every batch document answered by the job"
    );

    let items = env.items().await;
    let of = |prefix: &str| -> Vec<&LabelRecord> {
        items
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, r)| r)
            .collect()
    };
    let (od_n, od_in, od_out, od_cost) = totals(&of("ondemand/"));
    let (b_n, b_in, b_out, b_cost) = totals(&of("batch/"));
    let per_1000 = |cost: f64, docs: usize| cost / docs.max(1) as f64 * 1000.0;
    println!();
    println!(
        "| route | labeled | input tokens | output tokens | cost per 1,000 labeled documents |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| on-demand | {od_n} | {od_in} | {od_out} | ${:.4} |",
        per_1000(od_cost, od_n)
    );
    println!(
        "| batch | {b_n} | {b_in} | {b_out} | ${:.4} |",
        per_1000(b_cost, b_n)
    );
    println!(
        "batch / on-demand cost per labeled document: {:.3}",
        per_1000(b_cost, b_n) / per_1000(od_cost, od_n)
    );
    println!(
        "on-demand route: {on_demand_secs:.1} s; batch ingestion {ingest_secs:.1} s ({:.1} documents/s), collection {collect_secs:.1} s ({:.1} records/s)",
        n as f64 / ingest_secs,
        b_n as f64 / collect_secs
    );
    println!("model: {MODEL_ID}");
}
