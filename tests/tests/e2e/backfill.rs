//! The incremental backfill on moto: what it selects, with and without
//! `--relabel` and `--retry-failed`, over more than one page of S3's listing
//! (1,000 keys) and of DynamoDB's BatchGetItem (100 keys).

use std::collections::BTreeSet;

use docsort_producer::backfill::{backfill, BackfillSettings, BackfillSummary};
use docsort_producer::Sender;
use docsort_schema::{Delivery, FailureReason, LabelRecord, Outcome, Source};
use docsort_tests::env::TestEnv;
use indicatif::ProgressBar;
use tokio::task::JoinSet;

use crate::common::{answer, pdf};

/// More than one listing page.
const OBJECTS: usize = 1_010;
/// Of which these have a current label.
const LABELED: usize = 1_000;

fn key(i: usize) -> String {
    format!("night/{i:05}.pdf")
}

/// Uploads the objects and returns their etags, in order.
async fn upload(env: &TestEnv) -> Vec<String> {
    let mut tasks = JoinSet::new();
    for i in 0..OBJECTS {
        let s3 = env.s3.clone();
        let bucket = env.bucket.clone();
        tasks.spawn(async move {
            let out = s3
                .put_object()
                .bucket(bucket)
                .key(key(i))
                .body(pdf(&[&format!("Document {i}")]).into())
                .send()
                .await
                .expect("put object");
            (i, out.e_tag().expect("etag").trim_matches('"').to_owned())
        });
    }
    let mut etags = vec![String::new(); OBJECTS];
    while let Some(done) = tasks.join_next().await {
        let (i, etag) = done.expect("upload task");
        etags[i] = etag;
    }
    etags
}

fn record(
    env: &TestEnv,
    i: usize,
    etag: Option<&str>,
    version: &str,
    outcome: Outcome,
) -> LabelRecord {
    let mut r = LabelRecord::new(
        docsort_schema::record::uri(&env.bucket, &key(i)),
        env.bucket.clone(),
        key(i),
        version.to_owned(),
        Source::Backfill,
        outcome,
    );
    r.etag = etag.map(str::to_owned);
    r
}

/// Runs a backfill and takes what it enqueued off the queue: the keys.
async fn run(env: &TestEnv, settings: &BackfillSettings) -> (BackfillSummary, BTreeSet<String>) {
    let sender = Sender::new(env.sqs.clone(), env.queue_url.clone(), 4);
    let summary = backfill(
        &env.s3,
        &env.dynamodb,
        settings,
        Some(&sender),
        &ProgressBar::hidden(),
    )
    .await
    .expect("backfill");
    let mut keys = BTreeSet::new();
    loop {
        let out = env
            .sqs
            .receive_message()
            .queue_url(&env.queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive");
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for m in messages {
            let Ok(Delivery::Jobs(jobs)) = Delivery::parse(m.body().unwrap_or("")) else {
                panic!("not a job: {m:?}");
            };
            for job in jobs {
                assert_eq!(job.source, Source::Backfill);
                assert!(job.etag.is_some(), "the listed etag travels with the job");
                assert!(keys.insert(job.key), "enqueued twice");
            }
            env.sqs
                .delete_message()
                .queue_url(&env.queue_url)
                .receipt_handle(m.receipt_handle().unwrap_or(""))
                .send()
                .await
                .expect("delete");
        }
    }
    (summary, keys)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backfill_enqueues_only_what_needs_a_label() {
    let env = TestEnv::new("night", |_| answer("invoice")).await;
    let etags = upload(&env).await;
    let current = env.label_version();
    let labeled = || Outcome::Labeled {
        label: "invoice".into(),
    };
    let mut records: Vec<LabelRecord> = (0..LABELED)
        .map(|i| record(&env, i, Some(&etags[i]), &current, labeled()))
        .collect();
    // 6: labeled under another label version; 7, 8, 9: failed for reasons
    // that may pass (timeout; not_found, without etag) and one that will not.
    records[6] = record(&env, 6, Some(&etags[6]), "0ld0ld0ld0ld", labeled());
    records[7] = record(
        &env,
        7,
        Some(&etags[7]),
        &current,
        Outcome::failed(FailureReason::Timeout, "Slow."),
    );
    records[8] = record(
        &env,
        8,
        None,
        &current,
        Outcome::failed(FailureReason::NotFound, "Gone."),
    );
    records[9] = record(
        &env,
        9,
        Some(&etags[9]),
        &current,
        Outcome::failed(FailureReason::NotPdf, "No."),
    );
    env.store(records).await;
    // 5 is overwritten after it was labeled.
    env.put(&key(5), pdf(&["Document 5, second version"])).await;
    let new: BTreeSet<String> = (LABELED..OBJECTS).map(key).collect();

    let settings = env.backfill_settings("night/");
    let (summary, keys) = run(&env, &settings).await;
    let mut want = new.clone();
    want.insert(key(5));
    assert_eq!(keys, want, "{summary}");
    assert_eq!(
        (
            summary.listed,
            summary.new,
            summary.changed,
            summary.stale,
            summary.failed
        ),
        (OBJECTS as u64, 10, 1, 1, 3),
        "{summary}"
    );
    assert_eq!(summary.labeled, LABELED as u64 - 5, "{summary}");
    assert_eq!((summary.selected, summary.enqueued), (11, 11), "{summary}");
    assert_eq!(summary.list_pages, 2, "{summary}");
    assert!(summary.table_requests >= 11, "{summary}");

    let relabel = BackfillSettings {
        relabel: true,
        ..settings.clone()
    };
    let (_, keys) = run(&env, &relabel).await;
    let mut with_stale = want.clone();
    with_stale.insert(key(6));
    assert_eq!(keys, with_stale);

    let retry = BackfillSettings {
        retry_failed: true,
        ..settings.clone()
    };
    let (_, keys) = run(&env, &retry).await;
    let mut with_failed = want.clone();
    with_failed.extend([key(7), key(8)]);
    assert_eq!(keys, with_failed, "not_pdf is not retried");

    // A dry run compares and counts, and sends nothing.
    let dry = backfill(
        &env.s3,
        &env.dynamodb,
        &settings,
        None,
        &ProgressBar::hidden(),
    )
    .await
    .expect("dry run");
    assert_eq!((dry.selected, dry.enqueued), (11, 0));
    assert_eq!(env.depth(&env.queue_url).await, (0, 0));
}
