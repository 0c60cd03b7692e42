//! The state table: coordination between workers, never read by downstream
//! apps. Partition key `pk` (S); every item carries a TTL attribute
//! `expires_at` (epoch seconds) so that what a dead worker left behind goes
//! away by itself.
//!
//! Leases: before a model call the worker writes `pk = "lease#s3://bucket/key"`
//! (conditional: no live lease by another worker for the same etag), so two
//! deliveries of one object racing in two workers make one model call. The
//! lease is deleted after the record is written.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;

/// The state table's partition key attribute.
pub const STATE_KEY: &str = "pk";
/// The state table's TTL attribute (epoch seconds).
pub const EXPIRES_AT: &str = "expires_at";
/// Prefix of lease items' `pk`.
pub const LEASE_PREFIX: &str = "lease#";
/// How long an item outlives its use before DynamoDB's TTL removes it.
const TTL_SLACK: Duration = Duration::from_secs(3600);

/// State table errors (transient from the worker's point of view).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("DynamoDB PutItem on state table {table} failed")]
    Put {
        table: String,
        #[source]
        source: Box<SdkError<PutItemError>>,
    },
    #[error("DynamoDB DeleteItem on state table {table} failed")]
    Delete {
        table: String,
        #[source]
        source: Box<SdkError<DeleteItemError>>,
    },
}

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

/// The state table.
#[derive(Debug, Clone)]
pub struct StateStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl StateStore {
    /// The table `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        StateStore { client, table }
    }

    /// Takes the lease on `uri` for `ttl`, unless another owner holds a live
    /// lease for the same `etag`.
    pub async fn acquire_lease(
        &self,
        uri: &str,
        etag: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StateError> {
        let now = SystemTime::now();
        let until = epoch_ms(now + ttl);
        let expires_at = (now + ttl + TTL_SLACK)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let n = |v: u64| AttributeValue::N(v.to_string());
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(STATE_KEY, s(&lease_key(uri)))
            .item("lease_owner", s(owner))
            .item("lease_etag", s(etag))
            .item("lease_until", n(until))
            .item(EXPIRES_AT, n(expires_at))
            .condition_expression(
                "attribute_not_exists(#pk) OR lease_until < :now OR lease_etag <> :etag OR lease_owner = :owner",
            )
            .expression_attribute_names("#pk", STATE_KEY)
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
            Err(e) => Err(StateError::Put {
                table: self.table.clone(),
                source: Box::new(e),
            }),
        }
    }

    /// Deletes `owner`'s lease on `uri` (a lease taken over by another owner stays).
    pub async fn release_lease(&self, uri: &str, owner: &str) -> Result<(), StateError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(STATE_KEY, AttributeValue::S(lease_key(uri)))
            .condition_expression("lease_owner = :owner")
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(se)) if se.err().is_conditional_check_failed_exception() => {
                Ok(())
            }
            Err(e) => Err(StateError::Delete {
                table: self.table.clone(),
                source: Box::new(e),
            }),
        }
    }
}

/// The state table key of `uri`'s lease.
pub fn lease_key(uri: &str) -> String {
    format!("{LEASE_PREFIX}{uri}")
}
