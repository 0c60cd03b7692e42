//! The labels table: reads and conditional writes (never read-modify-write).
//!
//! Write rules (DESIGN.md), enforced by the condition on every `PutItem`:
//! - no item yet: write;
//! - the stored object is older (`last_modified` smaller, or unknown): write;
//! - same object version: a label replaces a `failed` item, an item from
//!   another prompt_version, or another etag; it never rewrites an identical label;
//!   a failure replaces only a failure;
//! - the stored object is newer: never write.
//!
//! A failed condition means an equal or newer record is already there.
//! The table holds records only: coordination (leases) is in the state table
//! ([`super::state`]).

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::get_item::GetItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use docsort_schema::record::{format_timestamp, PARTITION_KEY};
use docsort_schema::{LabelRecord, RecordError, Status};

/// What a conditional write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The record is now the item.
    Stored,
    /// An equal or newer record is already there; nothing was written.
    Superseded,
}

/// Labels table errors (all transient from the worker's point of view, except `Record`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("DynamoDB GetItem on table {table} failed")]
    Get {
        table: String,
        #[source]
        source: Box<SdkError<GetItemError>>,
    },
    #[error("DynamoDB PutItem on table {table} failed")]
    Put {
        table: String,
        #[source]
        source: Box<SdkError<PutItemError>>,
    },
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// The labels table.
#[derive(Debug, Clone)]
pub struct LabelStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl LabelStore {
    /// The table `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        LabelStore { client, table }
    }

    /// The current item for `uri` (strongly consistent read).
    pub async fn get(&self, uri: &str) -> Result<Option<LabelRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, AttributeValue::S(uri.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::Get {
                table: self.table.clone(),
                source: Box::new(e),
            })?;
        Ok(out.item.map(LabelRecord::from_item).transpose()?)
    }

    /// Writes `record` if the write rules allow it (see the module docs).
    pub async fn put(&self, record: &LabelRecord) -> Result<Written, StoreError> {
        let item: HashMap<String, AttributeValue> = record.to_item()?.into();
        let (condition, values) = put_condition(record);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .expression_attribute_names("#uri", PARTITION_KEY)
            .expression_attribute_names("#status", "status")
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Written::Stored),
            Err(SdkError::ServiceError(se)) if se.err().is_conditional_check_failed_exception() => {
                Ok(Written::Superseded)
            }
            Err(e) => Err(StoreError::Put {
                table: self.table.clone(),
                source: Box::new(e),
            }),
        }
    }
}

/// The condition of a record's `PutItem` and its values: the write rules of
/// the module docs, as a DynamoDB condition expression (`#uri` and `#status`
/// name the key and `status`).
fn put_condition(record: &LabelRecord) -> (String, HashMap<String, AttributeValue>) {
    let mut values = HashMap::from([(
        ":failed".to_owned(),
        AttributeValue::S(Status::Failed.as_str().into()),
    )]);
    let condition = match (record.status(), record.last_modified) {
        (_, None) => "attribute_not_exists(#uri) OR #status = :failed",
        (Status::Failed, Some(lm)) => {
            values.insert(":lm".into(), AttributeValue::S(format_timestamp(lm)));
            "attribute_not_exists(#uri) OR attribute_not_exists(last_modified) OR last_modified < :lm \
             OR (last_modified = :lm AND #status = :failed)"
        }
        (Status::Labeled, Some(lm)) => {
            values.insert(":lm".into(), AttributeValue::S(format_timestamp(lm)));
            values.insert(
                ":pv".into(),
                AttributeValue::S(record.prompt_version.clone()),
            );
            values.insert(
                ":etag".into(),
                AttributeValue::S(record.etag.clone().unwrap_or_default()),
            );
            "attribute_not_exists(#uri) OR attribute_not_exists(last_modified) OR last_modified < :lm \
             OR (last_modified = :lm AND (#status = :failed OR prompt_version <> :pv OR etag <> :etag))"
        }
    };
    (condition.to_owned(), values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use docsort_schema::{FailureReason, Outcome, Source};

    fn record(outcome: Outcome, last_modified: Option<&str>) -> LabelRecord {
        let mut r = LabelRecord::new(
            "s3://b/k.pdf".into(),
            "b".into(),
            "k.pdf".into(),
            "pv1".into(),
            Source::Backfill,
            outcome,
        );
        r.etag = Some("e1".into());
        r.last_modified = last_modified.map(|t| t.parse().unwrap());
        r
    }

    fn labeled() -> Outcome {
        Outcome::Labeled {
            label: "invoice".into(),
        }
    }

    /// The placeholders a condition uses are exactly the values it is given.
    fn placeholders_match(condition: &str, values: &HashMap<String, AttributeValue>) {
        let mut used: Vec<&str> = condition
            .split(|c: char| !(c.is_alphanumeric() || c == ':' || c == '_'))
            .filter(|w| w.starts_with(':'))
            .collect();
        used.sort_unstable();
        used.dedup();
        let mut given: Vec<&str> = values.keys().map(String::as_str).collect();
        given.sort_unstable();
        assert_eq!(used, given, "{condition}");
    }

    #[test]
    fn a_record_without_a_version_time_replaces_only_a_failure() {
        let (condition, values) = put_condition(&record(labeled(), None));
        assert_eq!(condition, "attribute_not_exists(#uri) OR #status = :failed");
        placeholders_match(&condition, &values);
    }

    #[test]
    fn a_failure_never_replaces_a_label_of_the_same_version() {
        let (condition, values) = put_condition(&record(
            Outcome::failed(FailureReason::Timeout, "Slow."),
            Some("2026-11-24T08:00:00Z"),
        ));
        assert!(condition.contains("last_modified < :lm"));
        assert!(condition.contains("(last_modified = :lm AND #status = :failed)"));
        assert!(
            !condition.contains(":pv"),
            "a failure ignores the label version"
        );
        assert_eq!(
            values[":lm"],
            AttributeValue::S("2026-11-24T08:00:00.000Z".into())
        );
        placeholders_match(&condition, &values);
    }

    #[test]
    fn a_label_replaces_a_failure_another_version_or_another_etag_of_the_same_object() {
        let (condition, values) = put_condition(&record(labeled(), Some("2026-11-24T08:00:00Z")));
        assert!(condition.contains(
            "(last_modified = :lm AND (#status = :failed OR prompt_version <> :pv OR etag <> :etag))"
        ));
        assert_eq!(values[":pv"], AttributeValue::S("pv1".into()));
        assert_eq!(values[":etag"], AttributeValue::S("e1".into()));
        assert_eq!(values[":failed"], AttributeValue::S("failed".into()));
        placeholders_match(&condition, &values);
    }
}
