//! `docsort-worker run` as a library call: builds the worker from its config
//! and runs the pool until `shutdown` is cancelled.

use std::sync::Arc;
use std::time::Duration;

use docsort_schema::{Prompt, Taxonomy, TaxonomyError};
use tokio_util::sync::CancellationToken;

use crate::aws::Clients;
use crate::classify::{BedrockClassifier, BedrockSettings};
use crate::config::RunConfig;
use crate::gate::{GateConfig, ModelGate};
use crate::message::{Bounds, Worker};
use crate::metrics::{EmfWriter, Metrics, Summary};
use crate::pool::{self, PoolConfig, PoolError};
use crate::store::LabelStore;

/// The worker could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot load the taxonomy")]
    Taxonomy(#[from] TaxonomyError),
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
    let taxonomy = Taxonomy::load(config.classifier.taxonomy.as_deref())?;
    let prompt = Arc::new(Prompt::new(taxonomy));
    let metrics = Arc::new(Metrics::default());
    let c = &config.classifier;
    let gate = Arc::new(ModelGate::new(GateConfig { max_rps: c.model_max_rps, min_rps: c.model_min_rps, max_tpm: c.model_max_tpm }));
    let settings = BedrockSettings {
        model_id: c.model_id.clone(),
        max_text_chars: c.max_text_chars as usize,
        max_tokens: c.max_tokens,
        attempts: c.model_attempts,
    };
    let classifier = BedrockClassifier::new(clients.bedrock.clone(), settings, prompt.clone(), gate, metrics.clone());
    tracing::info!(model_id = %c.model_id, prompt_version = prompt.version(), table = %config.table, "classifier ready");
    let bounds = Bounds {
        max_object_bytes: config.limits.max_object_bytes,
        extract_timeout: Duration::from_secs(config.limits.extract_timeout_secs),
        isolation: config.limits.isolation().map_err(RunError::Extractor)?,
        lease_ttl: Duration::from_secs((config.visibility_timeout_secs as u64 / 2).max(5)),
    };
    let store = LabelStore::new(clients.dynamodb.clone(), config.table.clone());
    let worker = Arc::new(Worker::new(clients.s3.clone(), store, classifier, bounds, metrics));
    let pool_config = PoolConfig {
        queue_url: config.queue_url.clone(),
        concurrency: config.concurrency as usize,
        wait_time_secs: config.wait_time_secs,
        visibility_timeout_secs: config.visibility_timeout_secs,
        shutdown_grace: Duration::from_secs(config.shutdown_grace_secs),
    };
    let emf = config.metrics_namespace.clone().map(|ns| EmfWriter::new(ns, metrics_out));
    Ok(pool::run(worker, clients.sqs, pool_config, shutdown, emf).await?)
}
