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
//!
//! Leases: before a model call the worker writes a short lease item with
//! `uri = "lease#s3://bucket/key"` (conditional: no live lease by another worker
//! for the same etag), so two deliveries of one object racing in two workers make
//! one model call. Leases are deleted after the final write and carry a TTL
//! attribute `expires_at` in case a worker dies. They have no `status`: readers
//! that scan the table skip items whose `uri` starts with `lease#`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
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
    #[error("DynamoDB DeleteItem on table {table} failed")]
    Delete {
        table: String,
        #[source]
        source: Box<SdkError<DeleteItemError>>,
    },
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// Prefix of lease items' `uri`.
pub const LEASE_PREFIX: &str = "lease#";

/// Result of trying to take a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// This worker may call the model.
    Acquired,
    /// Another worker is classifying the same object version right now.
    HeldElsewhere,
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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

    /// Takes the lease on `uri` for `ttl`, unless another owner holds a live
    /// lease for the same `etag`.
    pub async fn acquire_lease(
        &self,
        uri: &str,
        etag: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let now = SystemTime::now();
        let until = epoch_ms(now + ttl);
        let expires_at = (now + ttl + Duration::from_secs(3600))
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let n = |v: u64| AttributeValue::N(v.to_string());
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PARTITION_KEY, s(&format!("{LEASE_PREFIX}{uri}")))
            .item("lease_owner", s(owner))
            .item("lease_etag", s(etag))
            .item("lease_until", n(until))
            .item("expires_at", n(expires_at))
            .condition_expression(
                "attribute_not_exists(#uri) OR lease_until < :now OR lease_etag <> :etag OR lease_owner = :owner",
            )
            .expression_attribute_names("#uri", PARTITION_KEY)
            .expression_attribute_values(":now", n(epoch_ms(now)))
            .expression_attribute_values(":etag", s(etag))
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Lease::Acquired),
            Err(SdkError::ServiceError(se)) if se.err().is_conditional_check_failed_exception() => {
                Ok(Lease::HeldElsewhere)
            }
            Err(e) => Err(StoreError::Put {
                table: self.table.clone(),
                source: Box::new(e),
            }),
        }
    }

    /// Deletes `owner`'s lease on `uri` (a lease taken over by another owner stays).
    pub async fn release_lease(&self, uri: &str, owner: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(
                PARTITION_KEY,
                AttributeValue::S(format!("{LEASE_PREFIX}{uri}")),
            )
            .condition_expression("lease_owner = :owner")
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(se)) if se.err().is_conditional_check_failed_exception() => {
                Ok(())
            }
            Err(e) => Err(StoreError::Delete {
                table: self.table.clone(),
                source: Box::new(e),
            }),
        }
    }

    /// Writes `record` if the write rules allow it.
    pub async fn put(&self, record: &LabelRecord) -> Result<Written, StoreError> {
        let item: HashMap<String, AttributeValue> = record.to_item()?.into();
        let mut values = HashMap::from([(
            ":failed".to_owned(),
            AttributeValue::S(Status::Failed.as_str().into()),
        )]);
        let condition = match (record.status, record.last_modified) {
            (_, None) => "attribute_not_exists(#uri) OR #status = :failed".to_owned(),
            (Status::Failed, Some(lm)) => {
                values.insert(":lm".into(), AttributeValue::S(format_timestamp(lm)));
                "attribute_not_exists(#uri) OR attribute_not_exists(last_modified) OR last_modified < :lm \
                 OR (last_modified = :lm AND #status = :failed)"
                    .to_owned()
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
                    .to_owned()
            }
        };
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
