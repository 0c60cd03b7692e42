//! The pool: long-poll receive, bounded concurrency, visibility heartbeat,
//! batched deletes, graceful shutdown. Receive failures are retried with
//! docsort's one backoff policy until the queue itself is missing or denied.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::operation::receive_message::ReceiveMessageError;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use docsort_schema::retry::{Backoff, Retryable};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::emf::EmfWriter;
use super::job::{Disposition, Worker};
use crate::events::Summary;

/// How often metric lines are written.
const METRICS_PERIOD: Duration = Duration::from_secs(60);

/// How the pool talks to its queue.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// The work queue.
    pub queue_url: String,
    /// Messages processed at once.
    pub concurrency: usize,
    /// Long-poll wait per receive (0-20 s).
    pub wait_time_secs: i32,
    /// Visibility timeout set on receive and renewed while a message is worked on.
    pub visibility_timeout_secs: i32,
    /// Time to finish in-flight work after shutdown is requested.
    pub shutdown_grace: Duration,
}

/// The pool cannot run at all (not a transient error).
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("cannot receive from queue {queue_url}")]
    Queue {
        queue_url: String,
        #[source]
        source: Box<SdkError<ReceiveMessageError>>,
    },
}

/// Receives and processes messages until `shutdown` is cancelled, then finishes
/// in-flight work (up to the grace period) and returns the run's counts.
pub async fn run(
    worker: Arc<Worker>,
    sqs: aws_sdk_sqs::Client,
    config: PoolConfig,
    shutdown: CancellationToken,
    emf: Option<EmfWriter>,
) -> Result<Summary, PoolError> {
    let metrics_stop = CancellationToken::new();
    let metrics_task = emf.map(|mut emf| {
        let worker = worker.clone();
        let stop = metrics_stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::now() + METRICS_PERIOD,
                METRICS_PERIOD,
            );
            loop {
                tokio::select! {
                    _ = tick.tick() => emf.flush(&worker.metrics().snapshot()),
                    () = stop.cancelled() => break,
                }
            }
            emf.flush(&worker.metrics().snapshot());
        })
    });
    let slots = Arc::new(Semaphore::new(config.concurrency));
    let mut tasks = JoinSet::new();
    let (done_tx, done_rx) = mpsc::channel::<String>(config.concurrency * 2 + 10);
    let deleter = tokio::spawn(delete_finished(
        sqs.clone(),
        config.queue_url.clone(),
        done_rx,
    ));
    let mut failures = 0u32;
    tracing::info!(queue_url = %config.queue_url, concurrency = config.concurrency, "worker pool started");

    let result = loop {
        while let Some(joined) = tasks.try_join_next() {
            if let Err(e) = joined {
                tracing::error!(error = %e, "a message task panicked; its message will be redelivered");
            }
        }
        // Receive only as many messages as there are free slots.
        let first = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let mut permits = vec![first];
        while permits.len() < 10 {
            match slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        // Over the daily budget, nothing is received until the next UTC day.
        // Checked with the slots in hand, right before receiving, so at most
        // one document per slot is paid after the budget is reached.
        if let Some(budget) = worker.budget() {
            budget.wait_for_room(worker.metrics(), &shutdown).await;
            if shutdown.is_cancelled() {
                break Ok(());
            }
        }
        let receive = sqs
            .receive_message()
            .queue_url(&config.queue_url)
            .max_number_of_messages(permits.len() as i32)
            .wait_time_seconds(config.wait_time_secs)
            .visibility_timeout(config.visibility_timeout_secs)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send();
        // A receive cut short by shutdown may have handed out messages: they
        // reappear after the visibility timeout. Nothing is lost.
        let received = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            r = receive => r,
        };
        let messages = match received {
            Ok(out) => {
                failures = 0;
                out.messages.unwrap_or_default()
            }
            Err(e) => {
                let e = ReceiveFailure(e);
                if !e.is_retryable() {
                    break Err(PoolError::Queue {
                        queue_url: config.queue_url.clone(),
                        source: Box::new(e.0),
                    });
                }
                failures += 1;
                let delay = RECEIVE_BACKOFF.delay(failures);
                tracing::warn!(
                    error = &e.0 as &dyn std::error::Error,
                    retry_in_ms = delay.as_millis() as u64,
                    "receive failed"
                );
                tokio::select! {
                    _ = shutdown.cancelled() => break Ok(()),
                    _ = tokio::time::sleep(delay) => continue,
                }
            }
        };
        for (message, permit) in messages.into_iter().zip(permits) {
            let worker = worker.clone();
            let sqs = sqs.clone();
            let done = done_tx.clone();
            let config = config.clone();
            tasks.spawn(async move {
                let _slot = permit;
                let Some(handle) = message.receipt_handle.clone() else {
                    return;
                };
                let work = process(&worker, &message);
                let disposition = tokio::select! {
                    d = work => d,
                    () = heartbeat(&sqs, &config, &handle) => Disposition::Leave,
                };
                if disposition == Disposition::Delete {
                    // The deleter only stops after every task has ended.
                    let _ = done.send(handle).await;
                }
            });
        }
    };

    tracing::info!(
        in_flight = tasks.len(),
        "receiving stopped; finishing in-flight messages"
    );
    let drained = tokio::time::timeout(config.shutdown_grace, async {
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined {
                tracing::error!(error = %e, "a message task panicked; its message will be redelivered");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            abandoned = tasks.len(),
            "grace period over; unfinished messages return to the queue"
        );
        tasks.shutdown().await;
    }
    drop(done_tx);
    if let Err(e) = deleter.await {
        tracing::error!(error = %e, "the delete task panicked");
    }
    metrics_stop.cancel();
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    let summary = worker.metrics().snapshot();
    tracing::info!(?summary, "worker pool stopped");
    result.map(|()| summary)
}

async fn process(worker: &Worker, message: &Message) -> Disposition {
    let id = message.message_id().unwrap_or("?");
    let receive_count = message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    worker
        .handle(id, message.body().unwrap_or(""), receive_count)
        .await
}

/// Extends the message's visibility at half the timeout, for as long as the
/// work runs (this future is dropped when the work ends). Returns only if the
/// message can no longer be extended (e.g. its receipt handle expired).
async fn heartbeat(sqs: &aws_sdk_sqs::Client, config: &PoolConfig, handle: &str) {
    let period = Duration::from_secs((config.visibility_timeout_secs.max(2) / 2) as u64);
    loop {
        tokio::time::sleep(period).await;
        let extended = sqs
            .change_message_visibility()
            .queue_url(&config.queue_url)
            .receipt_handle(handle)
            .visibility_timeout(config.visibility_timeout_secs)
            .send()
            .await;
        match extended {
            Ok(_) => tracing::debug!("visibility extended"),
            Err(e) => {
                tracing::warn!(
                    error = &e as &dyn std::error::Error,
                    "cannot extend visibility; abandoning the message to its redelivery"
                );
                return;
            }
        }
    }
}

/// Deletes finished messages in batches of up to 10.
async fn delete_finished(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    mut done: mpsc::Receiver<String>,
) {
    let mut batch = Vec::with_capacity(10);
    while done.recv_many(&mut batch, 10).await > 0 {
        let entries = batch
            .drain(..)
            .enumerate()
            .filter_map(|(i, handle)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .build()
                    .ok()
            })
            .collect::<Vec<_>>();
        match sqs
            .delete_message_batch()
            .queue_url(&queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => {
                for failed in out.failed() {
                    tracing::warn!(
                        code = failed.code(),
                        message = failed.message(),
                        "delete failed; the message will be redelivered and found done"
                    );
                }
            }
            Err(e) => tracing::warn!(
                error = &e as &dyn std::error::Error,
                "delete batch failed; the messages will be redelivered and found done"
            ),
        }
    }
}

/// The receive loop's delays: docsort's backoff, retried for as long as the
/// worker runs (the attempt count only grows the delay up to its cap).
const RECEIVE_BACKOFF: Backoff = Backoff {
    attempts: u32::MAX,
    ..Backoff::STANDARD
};

/// A failed receive.
struct ReceiveFailure(SdkError<ReceiveMessageError>);

impl Retryable for ReceiveFailure {
    /// A missing queue, a malformed queue URL or denied access never pass by
    /// waiting; everything else (throttling, 5xx, connection trouble) may.
    fn is_retryable(&self) -> bool {
        let SdkError::ServiceError(se) = &self.0 else {
            return true;
        };
        let status = se.raw().status().as_u16();
        !(se.err().is_queue_does_not_exist()
            || se.err().is_invalid_address()
            || status == 403
            || status == 404)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::types::error::{InvalidAddress, QueueDoesNotExist, RequestThrottled};
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn failure(err: ReceiveMessageError, status: u16) -> ReceiveFailure {
        let raw = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        ReceiveFailure(SdkError::service_error(err, raw))
    }

    #[test]
    fn a_missing_or_denied_queue_stops_the_pool_and_the_rest_is_retried() {
        let missing = ReceiveMessageError::QueueDoesNotExist(QueueDoesNotExist::builder().build());
        let bad_url = ReceiveMessageError::InvalidAddress(InvalidAddress::builder().build());
        let denied =
            ReceiveMessageError::generic(ErrorMetadata::builder().code("AccessDenied").build());
        let throttled = ReceiveMessageError::RequestThrottled(RequestThrottled::builder().build());
        let internal =
            ReceiveMessageError::generic(ErrorMetadata::builder().code("InternalError").build());
        assert!(!failure(missing, 400).is_retryable());
        assert!(!failure(bad_url, 404).is_retryable());
        assert!(!failure(denied, 403).is_retryable());
        assert!(failure(throttled, 400).is_retryable());
        assert!(failure(internal, 500).is_retryable());
        assert!(ReceiveFailure(SdkError::timeout_error("slow")).is_retryable());
    }
}
