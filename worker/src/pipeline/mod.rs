//! The queue pipeline: `docsort-worker run` as a library call.
//!
//! Owns everything between the queue and the tables: the AWS clients
//! ([`aws`]), the pool's receive loop, heartbeat and deletes ([`pool`]), the
//! job processor ([`job`]), S3 downloads ([`fetch`]), the labels table
//! ([`store`]), the state table's leases ([`state`]) and daily spend counter
//! ([`budget`]), EMF metric lines
//! ([`emf`]) and signal handling ([`shutdown`]). It must not parse PDFs or
//! talk to a model itself: it calls [`crate::extract`] and
//! [`crate::classify`].

pub mod aws;
pub mod budget;
pub mod emf;
pub mod fetch;
pub mod job;
pub mod pool;
pub mod shutdown;
pub mod state;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::classify::{Classifier, ClassifierSettings, SetupError};
use crate::events::{Metrics, Summary};
use crate::extract::Limits;
use aws::Clients;
use budget::Budget;
use emf::EmfWriter;
use job::{Bounds, Worker};
use pool::{PoolConfig, PoolError};
use state::StateStore;
use store::LabelStore;

/// Everything `docsort-worker run` needs to know.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// URL of the SQS work queue.
    pub queue_url: String,
    /// The DynamoDB labels table.
    pub table: String,
    /// The DynamoDB state table (leases).
    pub state_table: String,
    /// Documents processed at once.
    pub concurrency: usize,
    /// Long-poll wait of each receive, in seconds (0-20).
    pub wait_time_secs: i32,
    /// Visibility timeout set on each received message, in seconds; renewed
    /// at half this period while the document is worked on.
    pub visibility_timeout_secs: i32,
    /// Time to finish in-flight documents after shutdown is requested.
    pub shutdown_grace: Duration,
    /// CloudWatch namespace of the EMF metric lines; `None`: no metric lines.
    pub metrics_namespace: Option<String>,
    /// The fleet's model spend per UTC day at which receiving stops; `None`: no cap.
    pub daily_budget_usd: Option<f64>,
    /// How old the known daily total may be before a receive reads it again.
    pub budget_refresh: Duration,
    /// Largest object downloaded, in bytes.
    pub max_object_bytes: u64,
    /// Extraction's bounds.
    pub extract: Limits,
    /// How documents are classified.
    pub classifier: ClassifierSettings,
}

/// The worker could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot set up the classifier")]
    Classifier(#[from] SetupError),
    #[error(transparent)]
    Pool(#[from] PoolError),
}

/// Runs the pool with `clients` as `settings` say until `shutdown` is
/// cancelled. Metric lines (when `settings.metrics_namespace` is set) go to
/// `metrics_out`.
pub async fn run(
    clients: Clients,
    settings: RunSettings,
    shutdown: CancellationToken,
    metrics_out: Box<dyn std::io::Write + Send>,
) -> Result<Summary, RunError> {
    let metrics = Arc::new(Metrics::default());
    let bedrock = clients.bedrock.clone();
    let classifier = Classifier::new(&settings.classifier, || bedrock, metrics.clone())?;
    tracing::info!(model_id = classifier.model_id(), prompt_version = classifier.prompt_version(), table = %settings.table, state_table = %settings.state_table, "classifier ready");
    let bounds = Bounds {
        max_object_bytes: settings.max_object_bytes,
        extract: settings.extract.clone(),
        lease_ttl: Duration::from_secs(
            (settings.visibility_timeout_secs.max(10) as u64 / 2).max(5),
        ),
    };
    let budget = settings.daily_budget_usd.map(|usd| {
        tracing::info!(daily_budget_usd = usd, "daily budget set");
        Arc::new(Budget::new(
            clients.dynamodb.clone(),
            settings.state_table.clone(),
            usd,
            settings.budget_refresh,
        ))
    });
    let worker = Arc::new(Worker::new(
        clients.s3.clone(),
        LabelStore::new(clients.dynamodb.clone(), settings.table.clone()),
        StateStore::new(clients.dynamodb.clone(), settings.state_table.clone()),
        classifier,
        bounds,
        metrics,
        budget,
    ));
    let pool_config = PoolConfig {
        queue_url: settings.queue_url.clone(),
        concurrency: settings.concurrency,
        wait_time_secs: settings.wait_time_secs,
        visibility_timeout_secs: settings.visibility_timeout_secs,
        shutdown_grace: settings.shutdown_grace,
    };
    let emf = settings
        .metrics_namespace
        .clone()
        .map(|ns| EmfWriter::new(ns, metrics_out));
    Ok(pool::run(worker, clients.sqs, pool_config, shutdown, emf).await?)
}
