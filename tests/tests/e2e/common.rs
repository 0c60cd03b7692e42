//! Helpers shared by the end-to-end tests.

use std::time::Duration;

use docsort_schema::{Job, LabelRecord, Source};
use docsort_tests::bedrock::Reply;
use docsort_tests::env::TestEnv;
use docsort_tests::wait;
use docsort_worker::offline::samples::text_pdf;

pub const DEADLINE: Duration = Duration::from_secs(120);

pub fn answer(text: &str) -> Reply {
    Reply::Answer(text.to_owned())
}

pub fn pdf(lines: &[&str]) -> Vec<u8> {
    text_pdf(&[lines.iter().map(|l| (*l).to_owned()).collect()])
}

pub async fn wait_for_item(env: &TestEnv, key: &str) -> LabelRecord {
    wait::until(&format!("a record for {key}"), DEADLINE, || env.item(key)).await
}

pub async fn wait_for_empty_queue(env: &TestEnv) {
    wait::until("the work queue to be empty", DEADLINE, || async {
        (env.depth(&env.queue_url).await == (0, 0)).then_some(())
    })
    .await;
}

/// Uploads `n` small invoices under `prefix` and queues a manual job for each.
pub async fn queue_invoices(env: &TestEnv, prefix: &str, n: usize) {
    for i in 0..n {
        let key = format!("{prefix}{i:02}.pdf");
        env.put(
            &key,
            pdf(&["INVOICE", &format!("Number {i}, total 10.00 EUR")]),
        )
        .await;
        env.send(&Job::new(&env.bucket, &key, Source::Manual).to_body())
            .await;
    }
}
