//! `docsort-worker run` as a library call: builds the worker from its config
//! and runs the pool until `shutdown` is cancelled.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::aws::Clients;
use crate::classify::{Classifier, SetupError};
use crate::config::{ClassifierKind, RunConfig};
use crate::message::{Bounds, Worker};
use crate::metrics::{EmfWriter, Metrics, Summary};
use crate::pool::{self, PoolConfig, PoolError};
use crate::store::LabelStore;

/// The worker could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot set up the classifier")]
    Classifier(#[from] SetupError),
    #[error("cannot find the extractor executable")]
    Extractor(#[source] std::io::Error),
    #[error(transparent)]
    Pool(#[from] PoolError),
}

/// Runs the pool with `clients` as `config` says. Metric lines (when
/// `config.metrics_namespace` is set) go to `metrics_out`.
pub async fn run(
    clients: Clients,
    config: RunConfig,
    shutdown: CancellationToken,
    metrics_out: Box<dyn std::io::Write + Send>,
) -> Result<Summary, RunError> {
    let metrics = Arc::new(Metrics::default());
    let bedrock = clients.bedrock.clone();
    let classifier = Classifier::from_config(
        &config.classifier,
        ClassifierKind::Bedrock,
        || bedrock,
        metrics.clone(),
    )?;
    tracing::info!(model_id = classifier.model_id(), prompt_version = classifier.prompt_version(), table = %config.table, "classifier ready");
    let bounds = Bounds {
        max_object_bytes: config.limits.max_object_bytes,
        extract_timeout: Duration::from_secs(config.limits.extract_timeout_secs),
        isolation: config.limits.isolation().map_err(RunError::Extractor)?,
        lease_ttl: Duration::from_secs((config.visibility_timeout_secs as u64 / 2).max(5)),
    };
    let store = LabelStore::new(clients.dynamodb.clone(), config.table.clone());
    let worker = Arc::new(Worker::new(
        clients.s3.clone(),
        store,
        classifier,
        bounds,
        metrics,
    ));
    let pool_config = PoolConfig {
        queue_url: config.queue_url.clone(),
        concurrency: config.concurrency as usize,
        wait_time_secs: config.wait_time_secs,
        visibility_timeout_secs: config.visibility_timeout_secs,
        shutdown_grace: Duration::from_secs(config.shutdown_grace_secs),
    };
    let emf = config
        .metrics_namespace
        .clone()
        .map(|ns| EmfWriter::new(ns, metrics_out));
    Ok(pool::run(worker, clients.sqs, pool_config, shutdown, emf).await?)
}
