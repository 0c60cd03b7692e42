//! Helpers shared by the end-to-end tests.

use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use docsort_schema::LabelRecord;
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

/// Writes `records` straight into the labels table (as workers would have).
pub async fn store(env: &TestEnv, records: Vec<LabelRecord>) {
    for chunk in records.chunks(25) {
        let requests = chunk
            .iter()
            .map(|r| {
                let item: std::collections::HashMap<String, AttributeValue> =
                    r.to_item().expect("item").into();
                WriteRequest::builder()
                    .put_request(
                        PutRequest::builder()
                            .set_item(Some(item))
                            .build()
                            .expect("put"),
                    )
                    .build()
            })
            .collect();
        env.dynamodb
            .batch_write_item()
            .request_items(&env.table, requests)
            .send()
            .await
            .expect("batch write");
    }
}
