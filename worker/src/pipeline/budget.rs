//! The daily spend cap: one budget shared by every worker, kept as an atomic
//! per-UTC-day counter in the state table (`pk = "spend#YYYY-MM-DD"`,
//! `spent_nano_usd`, TTL `expires_at`).
//!
//! Every model answer adds its cost with one `UpdateItem ADD`, which returns
//! the day's total across all workers. The pool asks [`Budget::wait_for_room`]
//! before each receive: once the total reaches the budget it stops receiving,
//! so messages stay on the queue (their receive count does not grow toward
//! the DLQ and nothing is marked failed), and it resumes at the next UTC day.
//! A worker restarted with a higher budget compares the day's total with its
//! new budget. Documents already received finish: the overshoot is at most
//! one document per concurrent slot of the fleet.

use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::get_item::GetItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, NaiveDate, Utc};
use tokio_util::sync::CancellationToken;

use super::state::{EXPIRES_AT, STATE_KEY};
use crate::events::{Event, Metrics};

/// The counter's attribute: nano-USD, an integer, so adds are exact.
const SPENT: &str = "spent_nano_usd";

/// The spend counter could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("DynamoDB UpdateItem of the spend counter in {table} failed")]
    Add {
        table: String,
        #[source]
        source: Box<SdkError<UpdateItemError>>,
    },
    #[error("DynamoDB GetItem of the spend counter in {table} failed")]
    Read {
        table: String,
        #[source]
        source: Box<SdkError<GetItemError>>,
    },
}

/// What the worker knows of today's spend.
#[derive(Debug, Default)]
struct Seen {
    /// The UTC day of `spent`.
    day: Option<NaiveDate>,
    /// The fleet's spend that day, in nano-USD, as last seen.
    spent: u64,
    /// When the worker last read the counter.
    read_at: Option<tokio::time::Instant>,
    /// Whether the pause was already reported for `day`.
    reported: bool,
}

/// The daily budget shared through the state table.
#[derive(Debug)]
pub struct Budget {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// The budget, in nano-USD.
    limit: u64,
    /// How stale the known total may be before a receive reads it again.
    refresh: Duration,
    seen: Mutex<Seen>,
}

fn nano(usd: f64) -> u64 {
    (usd.max(0.0) * 1e9).round() as u64
}

/// The counter's key for `day`.
pub fn counter_key(day: NaiveDate) -> String {
    format!("spend#{day}")
}

impl Budget {
    /// A budget of `usd` per UTC day in `table`; the known total is read
    /// again when older than `refresh`.
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: String,
        usd: f64,
        refresh: Duration,
    ) -> Self {
        Budget {
            client,
            table,
            limit: nano(usd),
            refresh,
            seen: Mutex::default(),
        }
    }

    /// Adds `usd` to today's counter and notes the fleet's new total.
    pub async fn add(&self, usd: f64) -> Result<(), BudgetError> {
        let cost = nano(usd);
        if cost == 0 {
            return Ok(());
        }
        let now = Utc::now();
        let day = now.date_naive();
        let n = |v: u64| AttributeValue::N(v.to_string());
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(STATE_KEY, AttributeValue::S(counter_key(day)))
            .update_expression("ADD #spent :cost SET #expires = :expires")
            .expression_attribute_names("#spent", SPENT)
            .expression_attribute_names("#expires", EXPIRES_AT)
            .expression_attribute_values(":cost", n(cost))
            .expression_attribute_values(":expires", n(expiry(now)))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| BudgetError::Add {
                table: self.table.clone(),
                source: Box::new(e),
            })?;
        let total = out
            .attributes()
            .and_then(|a| a.get(SPENT))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        self.note(day, total);
        Ok(())
    }

    /// Today's total as the table has it now.
    pub async fn spent_today(&self) -> Result<u64, BudgetError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(
                STATE_KEY,
                AttributeValue::S(counter_key(Utc::now().date_naive())),
            )
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| BudgetError::Read {
                table: self.table.clone(),
                source: Box::new(e),
            })?;
        Ok(out
            .item()
            .and_then(|i| i.get(SPENT))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    fn note(&self, day: NaiveDate, total: u64) {
        let mut seen = self.seen.lock().expect("budget lock");
        if seen.day != Some(day) {
            *seen = Seen {
                day: Some(day),
                ..Seen::default()
            };
        }
        seen.spent = seen.spent.max(total);
        seen.read_at = Some(tokio::time::Instant::now());
    }

    fn stale(&self, day: NaiveDate) -> bool {
        let seen = self.seen.lock().expect("budget lock");
        seen.day != Some(day) || seen.read_at.is_none_or(|t| t.elapsed() >= self.refresh)
    }

    /// Returns when the pool may receive: at once while today's spend is
    /// below the budget; otherwise at the next UTC day, or when `shutdown`
    /// is cancelled. A counter that cannot be read does not stop the pool
    /// (the spend alarm still watches).
    pub async fn wait_for_room(&self, metrics: &Metrics, shutdown: &CancellationToken) {
        loop {
            let now = Utc::now();
            let day = now.date_naive();
            if self.stale(day) {
                match self.spent_today().await {
                    Ok(total) => self.note(day, total),
                    Err(e) => {
                        tracing::warn!(
                            error = &e as &dyn std::error::Error,
                            "cannot read today's spend; receiving on"
                        );
                        return;
                    }
                }
            }
            // Today's spend, the first time it is seen at or over the budget.
            let newly_reached = {
                let mut seen = self.seen.lock().expect("budget lock");
                if seen.day != Some(day) || seen.spent < self.limit {
                    return;
                }
                (!std::mem::replace(&mut seen.reported, true)).then_some(seen.spent)
            };
            if let Some(spent) = newly_reached {
                metrics.emit(Event::BudgetReached {
                    spent_usd: spent as f64 / 1e9,
                    budget_usd: self.limit as f64 / 1e9,
                });
            }
            let until_tomorrow = (next_day(now) - now)
                .to_std()
                .unwrap_or(Duration::from_secs(1));
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(until_tomorrow) => {}
            }
        }
    }
}

/// The next UTC midnight after `now`.
fn next_day(now: DateTime<Utc>) -> DateTime<Utc> {
    let tomorrow = now.date_naive().succ_opt().unwrap_or(now.date_naive());
    tomorrow.and_hms_opt(0, 0, 0).map_or(now, |t| t.and_utc())
}

/// When a counter written at `now` may go: two days after its day ends.
fn expiry(now: DateTime<Utc>) -> u64 {
    u64::try_from(next_day(now).timestamp()).unwrap_or(0) + 2 * 86_400
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_per_utc_day_and_expire_after_it() {
        let now: DateTime<Utc> = "2026-12-03T23:59:30Z".parse().unwrap();
        assert_eq!(counter_key(now.date_naive()), "spend#2026-12-03");
        let midnight: DateTime<Utc> = "2026-12-04T00:00:00Z".parse().unwrap();
        assert_eq!(next_day(now), midnight);
        assert_eq!(expiry(now), midnight.timestamp() as u64 + 2 * 86_400);
        assert_eq!(nano(0.0017), 1_700_000);
        assert_eq!(nano(-1.0), 0);
    }
}
