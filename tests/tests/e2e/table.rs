//! Report and export of the labels table agree with what it holds, over
//! more than one page of Scan and Query.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Duration as Days, Utc};
use docsort_producer::table::{export, report, TableQuery};
use docsort_schema::{FailureReason, LabelRecord, Outcome, Source};
use docsort_tests::env::TestEnv;

use crate::common::answer;

const RECORDS: usize = 230;
const LABELS: [&str; 3] = ["invoice", "receipt", "contract"];

fn records(env: &TestEnv) -> Vec<LabelRecord> {
    let today = Utc::now();
    (0..RECORDS)
        .map(|i| {
            let outcome = if i % 10 == 9 {
                Outcome::failed(FailureReason::NoText, "No text.")
            } else {
                Outcome::Labeled {
                    label: LABELS[i % 3].into(),
                }
            };
            let key = format!("t/{i:04}.pdf");
            let mut r = LabelRecord::new(
                docsort_schema::record::uri(&env.bucket, &key),
                env.bucket.clone(),
                key,
                "pv".into(),
                Source::Backfill,
                outcome,
            );
            // Three days, newest first in key order.
            r.classified_at = today - Days::days((i % 3) as i64) - Days::seconds(i as i64);
            if i % 10 != 9 {
                r.model_id = Some(if i % 2 == 0 { "model-a" } else { "model-b" }.into());
                r.input_tokens = 100 + i as u64;
                r.output_tokens = 1;
                r.cost_usd = Some(0.0001 * (1 + i % 4) as f64);
            }
            r
        })
        .collect()
}

fn read_jsonl(path: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_to_string(path)
        .expect("export file")
        .lines()
        .map(|l| {
            let r: LabelRecord = serde_json::from_str(l).expect("a record per line");
            r.key
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn report_and_export_agree_with_the_table() {
    let env = TestEnv::new("table", |_| answer("invoice")).await;
    let all = records(&env);
    env.store(all.clone()).await;
    let query = TableQuery {
        table: env.table.clone(),
        since: None,
        page_size: Some(40),
    };

    let got = report(&env.dynamodb, &query, 3, &|_| {})
        .await
        .expect("report");
    assert_eq!(got.documents, RECORDS as u64);
    let mut labels = BTreeMap::new();
    let mut models = BTreeMap::new();
    let mut per_day: BTreeMap<String, f64> = BTreeMap::new();
    for r in &all {
        if let Some(l) = r.label() {
            *labels.entry(l.to_owned()).or_insert(0u64) += 1;
        }
        if let Some(m) = &r.model_id {
            *models.entry(m.clone()).or_insert(0u64) += 1;
        }
        if let Some(c) = r.cost_usd {
            *per_day
                .entry(r.classified_at.date_naive().to_string())
                .or_default() += c;
        }
    }
    assert_eq!(got.labels, labels);
    assert_eq!(got.models, models);
    assert_eq!(got.failures, BTreeMap::from([("no_text".to_owned(), 23)]));
    assert_eq!(got.statuses["failed"], 23);
    assert_eq!(got.statuses["labeled"], RECORDS as u64 - 23);
    assert_eq!(
        got.input_tokens,
        all.iter().map(|r| r.input_tokens).sum::<u64>()
    );
    assert_eq!(
        got.cost_per_day.keys().collect::<Vec<_>>(),
        per_day.keys().collect::<Vec<_>>()
    );
    for (day, cost) in &per_day {
        assert!((got.cost_per_day[day] - cost).abs() < 1e-9, "{day}");
    }

    let dir = std::env::temp_dir().join(format!("docsort-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let pages = std::sync::atomic::AtomicU64::new(0);
    let count = |_| {
        pages.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    };
    let everything = dir.join("all.jsonl");
    let n = export(&env.dynamodb, &query, None, &everything, &count)
        .await
        .expect("export");
    assert_eq!(n, RECORDS as u64);
    assert!(
        pages.load(std::sync::atomic::Ordering::Relaxed) > 1,
        "more than one scan page"
    );
    let keys: BTreeSet<String> = all.iter().map(|r| r.key.clone()).collect();
    assert_eq!(read_jsonl(&everything), keys);

    // One label since yesterday, through the label index.
    let since = Utc::now() - Days::days(1) - Days::minutes(10);
    let recent = TableQuery {
        since: Some(since),
        ..query.clone()
    };
    let invoices = dir.join("invoices.jsonl");
    export(&env.dynamodb, &recent, Some("invoice"), &invoices, &|_| {})
        .await
        .expect("export by label");
    let want: BTreeSet<String> = all
        .iter()
        .filter(|r| r.label() == Some("invoice") && r.classified_at >= since)
        .map(|r| r.key.clone())
        .collect();
    assert!(!want.is_empty());
    assert_eq!(read_jsonl(&invoices), want);

    let csv = dir.join("all.csv");
    export(&env.dynamodb, &recent, None, &csv, &|_| {})
        .await
        .expect("csv");
    let text = std::fs::read_to_string(&csv).expect("csv file");
    assert!(text.starts_with("uri,bucket,key,status,label,failure,detail"));
    let recent_count = all.iter().filter(|r| r.classified_at >= since).count();
    assert_eq!(
        text.lines().count(),
        recent_count + 1,
        "a header and one row per record"
    );
    let since_report = report(&env.dynamodb, &recent, 2, &|_| {})
        .await
        .expect("report since");
    assert_eq!(since_report.documents, recent_count as u64);
    std::fs::remove_dir_all(&dir).ok();
}
