//! The main path: backfill and upload notifications to labels.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
use docsort_producer::backfill::backfill;
use docsort_producer::Sender;
use docsort_schema::{FailureReason, Job, LabelRecord, Outcome, Prompt, Source, Status, Taxonomy};
use docsort_tests::bedrock::{document_of, label_for, Reply};
use docsort_tests::env::{TestEnv, MODEL_ID};
use docsort_tests::{corpus, wait};
use docsort_worker::extract::{read, Fallback};
use docsort_worker::offline::samples::text_pdf;
use indicatif::ProgressBar;

use crate::common::{answer, pdf, queue_invoices, wait_for_empty_queue, wait_for_item, DEADLINE};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backfill_over_corpus_labels_every_pdf_with_its_own_answer() {
    let Some(dir) = corpus::dir() else { return };
    // PDFs with a text layer from several groups, small enough for a debug build.
    let files: Vec<_> = ["invoice", "contract", "form", "report", "paper"]
        .iter()
        .flat_map(|g| corpus::group(&dir, g))
        .filter(|p| {
            std::fs::metadata(p)
                .map(|m| m.len() < 1_500_000)
                .unwrap_or(false)
        })
        .take(40)
        .collect();
    assert!(
        files.len() >= 30,
        "corpus has too few PDFs: {}",
        files.len()
    );

    let env = TestEnv::new("backfill", |call| {
        Reply::Answer(label_for(&call.document).to_owned())
    })
    .await;
    let prompt = Prompt::new(Taxonomy::default());
    let mut expected = std::collections::HashMap::new();
    for path in &files {
        let bytes = std::fs::read(path).expect("read corpus file");
        let name = path
            .strip_prefix(&dir)
            .expect("inside corpus")
            .to_string_lossy()
            .into_owned();
        let key = format!("backfill/{name}");
        // Text the model reads, or (little or no text) the page image, for which
        // the stand-in's document is empty.
        let outcome = read(&bytes, 2000, Fallback::PageImage)
            .map(|x| match x.image {
                Some(_) => label_for("").to_owned(),
                None => label_for(&document_of(&prompt.user_message(&x.text, 2000))).to_owned(),
            })
            .map_err(|e| e.reason());
        expected.insert(key.clone(), outcome);
        env.put(&key, bytes).await;
    }
    env.put("backfill/notes.txt", b"not a pdf".to_vec()).await;
    env.put("elsewhere/skip.pdf", pdf(&["outside the prefix"]))
        .await;

    let sender = Sender::new(env.sqs.clone(), env.queue_url.clone(), 4);
    let summary = backfill(
        &env.s3,
        &env.dynamodb,
        &env.backfill_settings("backfill/"),
        Some(&sender),
        &ProgressBar::hidden(),
    )
    .await
    .expect("backfill");
    assert_eq!(
        (
            summary.listed,
            summary.new,
            summary.enqueued,
            summary.send_failed
        ),
        (
            files.len() as u64,
            files.len() as u64,
            files.len() as u64,
            0
        )
    );

    let worker = env.start_worker().await;
    let items = wait::until("one record per PDF", Duration::from_secs(300), || async {
        let items = env.items().await;
        (items.len() >= files.len()).then_some(items)
    })
    .await;
    wait_for_empty_queue(&env).await;
    let run = worker.stop().await;

    assert_eq!(
        items.len(),
        files.len(),
        "exactly one item per PDF, nothing outside the prefix"
    );
    let mut labeled = 0;
    for (key, want) in &expected {
        let item = &items[key];
        assert_eq!(item.uri, format!("s3://{}/{key}", env.bucket));
        assert_eq!(item.source, Source::Backfill);
        assert_eq!(item.prompt_version, env.label_version());
        match want {
            Ok(label) => {
                labeled += 1;
                assert_eq!(
                    (item.status(), item.label()),
                    (Status::Labeled, Some(label.as_str())),
                    "{key}"
                );
                assert_eq!(item.model_id.as_deref(), Some(MODEL_ID));
                assert!(
                    item.input_tokens > 0
                        && item.output_tokens > 0
                        && item.cost_usd.unwrap_or(0.0) > 0.0,
                    "{key}: {item:?}"
                );
                assert_eq!(item.attempts, 1);
            }
            Err(reason) => assert_eq!(
                (item.status(), item.outcome.failure()),
                (Status::Failed, Some(reason)),
                "{key}"
            ),
        }
        let head = env
            .s3
            .head_object()
            .bucket(&env.bucket)
            .key(key)
            .send()
            .await
            .expect("head");
        assert_eq!(
            item.etag.as_deref(),
            head.e_tag().map(|e| e.trim_matches('"'))
        );
        assert_eq!(item.size_bytes, head.content_length().map(|n| n as u64));
    }
    assert!(labeled >= 30, "only {labeled} corpus PDFs were labeled");
    let calls = env.bedrock.calls();
    assert_eq!(calls.len(), labeled, "one model call per labeled document");
    assert_eq!(
        (run.labeled, run.model_calls),
        (labeled as u64, labeled as u64)
    );
    for call in &calls {
        assert_eq!(call.model_id, MODEL_ID);
        assert_eq!(call.inference_config["temperature"], 0.0);
        assert_eq!(call.inference_config["maxTokens"], 8);
        assert!(
            call.inference_config.get("topP").is_none(),
            "top_p must not be sent"
        );
        assert!(call.document.chars().count() <= 2000);
        assert_eq!(call.system, prompt.system());
    }

    // The next night, over the unchanged bucket: nothing to enqueue, no model call.
    let again = backfill(
        &env.s3,
        &env.dynamodb,
        &env.backfill_settings("backfill/"),
        Some(&sender),
        &ProgressBar::hidden(),
    )
    .await
    .expect("second backfill");
    assert_eq!(
        (again.listed, again.selected, again.enqueued),
        (files.len() as u64, 0, 0),
        "{again}"
    );
    assert_eq!(again.labeled as usize, labeled, "{again}");
    assert_eq!(env.depth(&env.queue_url).await, (0, 0));

    // Downstream read: every labeled item is on the label index, newest last.
    let some_label = items
        .values()
        .find_map(|i| i.label().map(str::to_owned))
        .expect("a label");
    let since = "2000-01-01T00:00:00.000Z";
    let out = env
        .dynamodb
        .query()
        .table_name(&env.table)
        .index_name(docsort_schema::record::LABEL_INDEX)
        .key_condition_expression("#l = :l AND classified_at > :t")
        .expression_attribute_names("#l", "label")
        .expression_attribute_values(":l", AttributeValue::S(some_label.clone()))
        .expression_attribute_values(":t", AttributeValue::S(since.into()))
        .send()
        .await
        .expect("query label-index");
    let via_index: Vec<LabelRecord> = out
        .items()
        .iter()
        .map(|i| LabelRecord::from_item(i.clone()).expect("record"))
        .collect();
    let want = items
        .values()
        .filter(|i| i.label() == Some(some_label.as_str()))
        .count();
    assert_eq!(via_index.len(), want);
    assert_eq!(env.leases().await, 0, "every lease was released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upload_notification_with_odd_key_is_labeled_under_the_exact_key() {
    let env = TestEnv::new("notify", |_| answer("Invoice.")).await;
    let arn = docsort_tests::env::queue_arn(&env.sqs, &env.queue_url).await;
    env.s3
        .put_bucket_notification_configuration()
        .bucket(&env.bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(arn)
                        .events(Event::S3ObjectCreated)
                        .build()
                        .expect("queue config"),
                )
                .build(),
        )
        .send()
        .await
        .expect("bucket notification");
    let worker = env.start_worker().await;
    let key = "inbox/Q3 report+final ünïcödé/Résumé 2026 (1) 文書 100%.pdf";
    env.put(key, pdf(&["INVOICE 2026-0042", "Amount due: 1,200.00 EUR"]))
        .await;

    let item = wait_for_item(&env, key).await;
    assert_eq!(
        (item.status(), item.label()),
        (Status::Labeled, Some("invoice"))
    );
    assert_eq!(item.key, key);
    assert_eq!(item.uri, format!("s3://{}/{key}", env.bucket));
    assert_eq!(item.source, Source::S3Event);
    wait_for_empty_queue(&env).await;
    let run = worker.stop().await;
    assert_eq!(env.items().await.len(), 1);
    assert_eq!(env.bedrock.call_count(), 1);
    assert!(env.bedrock.calls()[0]
        .document
        .contains("INVOICE 2026-0042"));
    assert!(
        run.ignored >= 1,
        "the s3:TestEvent is acknowledged: {run:?}"
    );
    assert_eq!(env.depth(&env.dlq_url).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_job_delivered_twice_costs_one_model_call() {
    let env = TestEnv::new("dup", |_| answer("contract")).await;
    env.put(
        "a.pdf",
        pdf(&[
            "MUTUAL NON-DISCLOSURE AGREEMENT",
            "The parties agree as follows.",
        ]),
    )
    .await;
    let body = Job::new(&env.bucket, "a.pdf", Source::Manual).to_body();
    let worker = env.start_worker().await;
    env.send(&body).await;
    let first = wait_for_item(&env, "a.pdf").await;
    wait_for_empty_queue(&env).await;
    env.send(&body).await;
    wait::until("the duplicate to be handled", DEADLINE, || async {
        (env.depth(&env.queue_url).await == (0, 0) && env.bedrock.call_count() >= 1).then_some(())
    })
    .await;
    let run = worker.stop().await;
    assert_eq!(run.skipped, 1, "{run:?}");
    assert_eq!(env.bedrock.call_count(), 1);
    let items = env.items().await;
    assert_eq!(items.len(), 1);
    assert_eq!(items["a.pdf"], first, "the second delivery wrote nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_garbage_answer_gets_one_reask_then_fails_unparseable() {
    // "stubborn" answers garbage twice; "recovers" answers garbage, then a category.
    let env = TestEnv::new("garbage", |call| {
        if call.document.contains("stubborn") || call.turns.len() == 1 {
            answer("I would say this looks like a banana")
        } else {
            answer("letter")
        }
    })
    .await;
    env.put(
        "stubborn.pdf",
        pdf(&["stubborn document", "with enough text to be read as text"]),
    )
    .await;
    env.put(
        "recovers.pdf",
        pdf(&["Dear Ms Smith, thank you for your letter."]),
    )
    .await;
    let worker = env.start_worker().await;
    for key in ["stubborn.pdf", "recovers.pdf"] {
        env.send(&Job::new(&env.bucket, key, Source::Manual).to_body())
            .await;
    }
    let stubborn = wait_for_item(&env, "stubborn.pdf").await;
    let recovers = wait_for_item(&env, "recovers.pdf").await;
    wait_for_empty_queue(&env).await;
    worker.stop().await;

    assert_eq!(stubborn.status(), Status::Failed);
    assert_eq!(
        stubborn.outcome.failure().cloned(),
        Some(FailureReason::UnparseableAnswer)
    );
    assert!(
        matches!(&stubborn.outcome, Outcome::Failed { detail, .. } if detail.contains("banana")),
        "{stubborn:?}"
    );
    assert_eq!(
        (recovers.status(), recovers.label()),
        (Status::Labeled, Some("letter"))
    );
    let calls = env.bedrock.calls();
    assert_eq!(calls.len(), 4, "one call and one re-ask per document");
    let reasks: Vec<_> = calls.iter().filter(|c| c.turns.len() == 3).collect();
    assert_eq!(reasks.len(), 2);
    for c in reasks {
        assert_eq!(c.turns[1].0, "assistant");
        assert!(c.turns[2].1.contains("exactly one word"));
    }
    assert!(
        stubborn.input_tokens > 0 && stubborn.output_tokens >= 2,
        "tokens of both calls count"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_object_fails_not_found_and_its_message_is_deleted() {
    let env = TestEnv::new("missing", |_| answer("invoice")).await;
    let worker = env.start_worker().await;
    env.send(&Job::new(&env.bucket, "gone/nothing here.pdf", Source::Manual).to_body())
        .await;
    let item = wait_for_item(&env, "gone/nothing here.pdf").await;
    wait_for_empty_queue(&env).await;
    let run = worker.stop().await;
    assert_eq!(
        (item.status(), item.outcome.failure().cloned()),
        (Status::Failed, Some(FailureReason::NotFound))
    );
    assert!(item.etag.is_none() && item.model_id.is_none());
    assert_eq!(item.attempts, 0);
    assert_eq!(env.bedrock.call_count(), 0);
    assert_eq!(run.failed, 1);
    assert_eq!(env.depth(&env.dlq_url).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn documents_that_are_not_readable_pdfs_fail_with_their_reason() {
    let env = TestEnv::new("bad", |_| answer("invoice")).await;
    env.put("notes.pdf", b"just some text, not a PDF".to_vec())
        .await;
    env.put("scan.pdf", text_pdf(&[vec![], vec![]])).await;
    env.put(
        "broken.pdf",
        b"%PDF-1.7\n1 0 obj << /Type /Catalog".to_vec(),
    )
    .await;
    let worker = env.start_worker().await;
    for key in ["notes.pdf", "scan.pdf", "broken.pdf"] {
        env.send(&Job::new(&env.bucket, key, Source::Manual).to_body())
            .await;
    }
    let want = [
        ("notes.pdf", FailureReason::NotPdf),
        ("scan.pdf", FailureReason::NoText),
        ("broken.pdf", FailureReason::Malformed),
    ];
    for (key, reason) in want {
        let item = wait_for_item(&env, key).await;
        assert_eq!(
            (item.status(), item.outcome.failure().cloned()),
            (Status::Failed, Some(reason)),
            "{key}"
        );
        assert!(item.etag.is_some() && item.size_bytes.is_some());
    }
    wait_for_empty_queue(&env).await;
    worker.stop().await;
    assert_eq!(env.bedrock.call_count(), 0, "no model call without text");
}

/// The labels table gets exactly one write per labeled document, so a
/// consumer of its stream sees one record per outcome; the lease's two writes
/// go to the state table. Prints the figures docs/benchmarks.md quotes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_labels_table_write_per_labeled_document() {
    const DOCS: u64 = 10;
    let env = TestEnv::new("writes", |_| answer("invoice")).await;
    queue_invoices(&env, "writes/", DOCS as usize).await;
    let worker = env.start_worker().await;
    docsort_tests::wait::until("every document labeled", DEADLINE, || async {
        let items = env.items().await;
        (items.len() as u64 == DOCS && items.values().all(|i| i.status() == Status::Labeled))
            .then_some(())
    })
    .await;
    wait_for_empty_queue(&env).await;
    let run = worker.stop().await;
    assert_eq!(run.labeled, DOCS, "{run:?}");

    let labels = env.writes.total(&env.table);
    let state = env.writes.total(&env.state_table);
    eprintln!(
        "DynamoDB writes per labeled document: labels table {:.2} ({labels} for {DOCS}), state table {:.2} ({state})",
        labels as f64 / DOCS as f64,
        state as f64 / DOCS as f64,
    );
    assert_eq!(env.writes.count(&env.table, "PutItem"), DOCS);
    assert_eq!(
        labels, DOCS,
        "only the records are written to the labels table"
    );
    assert_eq!(
        (
            env.writes.count(&env.state_table, "PutItem"),
            env.writes.count(&env.state_table, "DeleteItem")
        ),
        (DOCS, DOCS),
        "one lease taken and released per document"
    );
    assert_eq!(env.leases().await, 0);
}

/// A model whose first answers are empty or chatty: the re-ask is a call
/// Bedrock accepts (the stand-in refuses a blank assistant turn, and the
/// test environment fails on any refusal), and every document ends labeled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn empty_and_chatty_first_answers_get_a_valid_reask_and_end_labeled() {
    let env = TestEnv::new("reask", |call| {
        let asked_again = call.turns.len() > 1 || call.turns[0].1.contains("That is not one of");
        match (call.document.contains("quiet"), asked_again) {
            (_, true) => answer("invoice"),
            (true, false) => answer(""),
            (false, false) => answer("Sure! This document looks like an invoice to me."),
        }
    })
    .await;
    let keys = ["quiet-1.pdf", "quiet-2.pdf", "chatty-1.pdf", "chatty-2.pdf"];
    for key in keys {
        env.put(key, pdf(&[key, "INVOICE 12 Total 40.00 EUR"]))
            .await;
        env.send(&Job::new(&env.bucket, key, Source::Manual).to_body())
            .await;
    }
    let worker = env.start_worker().await;
    for key in keys {
        let item = wait_for_item(&env, key).await;
        assert_eq!(
            (item.status(), item.label()),
            (Status::Labeled, Some("invoice"))
        );
        assert!(item.input_tokens > 0);
    }
    wait_for_empty_queue(&env).await;
    worker.stop().await;
    let calls = env.bedrock.calls();
    assert_eq!(calls.len(), 8, "one re-ask per document");
    assert!(
        env.bedrock.refusals().is_empty(),
        "{:?}",
        env.bedrock.refusals()
    );
    for call in calls
        .iter()
        .filter(|c| c.document.contains("quiet") && c.turns[0].1.contains("That is not one of"))
    {
        assert_eq!(call.turns.len(), 1, "the empty answer is not echoed back");
    }
}
