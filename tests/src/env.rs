//! Per-test AWS resources on moto (uniquely named bucket, queue + DLQ, labels
//! and state tables), a Bedrock stand-in, and the worker pool running in-process.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, PutRequest, ScalarAttributeType, WriteRequest,
};
use aws_sdk_sqs::types::QueueAttributeName;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use docsort_schema::LabelRecord;
use docsort_worker::classify::bedrock::BedrockSettings;
use docsort_worker::classify::local::LocalSettings;
use docsort_worker::classify::{ClassifierKind, ClassifierSettings};
use docsort_worker::events::Summary;
use docsort_worker::extract::{Isolation, Limits};
use docsort_worker::pipeline::aws::{bedrock_client, s3_client, Clients};
use docsort_worker::pipeline::state::{LEASE_PREFIX, STATE_KEY};
use docsort_worker::pipeline::store::LabelStore;
use docsort_worker::pipeline::{self, RunError, RunSettings};
use tokio_util::sync::CancellationToken;

use crate::bedrock::{Call, Reply, StandIn};

/// The model id the tests' worker asks for (has a known price).
pub const MODEL_ID: &str = "us.anthropic.claude-haiku-4-5-20251001-v1:0";

/// An AWS config pointing at `endpoint` with dummy credentials.
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "docsort-tests",
        ))
        .load()
        .await
}

/// A unique lowercase name for this test's resources.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// One test's world.
pub struct TestEnv {
    /// moto's config (S3, SQS, DynamoDB).
    pub sdk: SdkConfig,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub bucket: String,
    pub queue_url: String,
    pub dlq_url: String,
    /// The labels table.
    pub table: String,
    /// The state table (leases).
    pub state_table: String,
    /// DynamoDB writes made through [`TestEnv::dynamodb`], which the
    /// in-process worker uses.
    pub writes: WriteCounter,
    /// The Bedrock stand-in.
    pub bedrock: StandIn,
}

impl Drop for TestEnv {
    /// A test whose stand-in refused a request fails: on AWS that call would
    /// have failed too.
    fn drop(&mut self) {
        let refused = self.bedrock.refusals();
        if !refused.is_empty() && !std::thread::panicking() {
            panic!(
                "the Bedrock stand-in refused {} request(s), as Bedrock would: {refused:?}",
                refused.len()
            );
        }
    }
}

/// Counts DynamoDB write requests (PutItem, UpdateItem, DeleteItem, ...) by
/// table and operation, as they go on the wire.
#[derive(Debug, Clone, Default)]
pub struct WriteCounter(Arc<Mutex<HashMap<(String, String), u64>>>);

impl WriteCounter {
    /// Requests of `operation` (e.g. `PutItem`) to `table` so far.
    pub fn count(&self, table: &str, operation: &str) -> u64 {
        let counts = self.0.lock().expect("write counter");
        counts
            .get(&(table.to_owned(), operation.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Write requests of any kind to `table` so far.
    pub fn total(&self, table: &str) -> u64 {
        let counts = self.0.lock().expect("write counter");
        counts
            .iter()
            .filter(|((t, _), _)| t == table)
            .map(|(_, n)| n)
            .sum()
    }
}

impl Intercept for WriteCounter {
    fn name(&self) -> &'static str {
        "WriteCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let operation = request
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("")
            .to_owned();
        if ![
            "PutItem",
            "UpdateItem",
            "DeleteItem",
            "BatchWriteItem",
            "TransactWriteItems",
        ]
        .contains(&operation.as_str())
        {
            return Ok(());
        }
        let table = request
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            .and_then(|v| v["TableName"].as_str().map(str::to_owned))
            .unwrap_or_default();
        *self
            .0
            .lock()
            .expect("write counter")
            .entry((table, operation))
            .or_default() += 1;
        Ok(())
    }
}

/// A DynamoDB client whose writes `counter` counts.
pub fn counted_dynamodb(sdk: &SdkConfig, counter: &WriteCounter) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(sdk)
            .interceptor(counter.clone())
            .build(),
    )
}

/// Creates the state table as infra/ defines it: key `pk` (TTL `expires_at`
/// is set by the template; moto ignores it, and no test relies on expiry).
pub async fn create_state_table(dynamodb: &aws_sdk_dynamodb::Client, table: &str) {
    dynamodb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(STATE_KEY)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(STATE_KEY)
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .send()
        .await
        .expect("create state table");
}

/// Creates the labels table as infra/ defines it: key `uri`, GSI `label-index`.
pub async fn create_table(dynamodb: &aws_sdk_dynamodb::Client, table: &str) {
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("attribute")
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("key")
    };
    dynamodb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("uri"))
        .attribute_definitions(attr("label"))
        .attribute_definitions(attr("classified_at"))
        .key_schema(key("uri", KeyType::Hash))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(docsort_schema::record::LABEL_INDEX)
                .key_schema(key("label", KeyType::Hash))
                .key_schema(key("classified_at", KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .expect("gsi"),
        )
        .send()
        .await
        .expect("create table");
}

impl TestEnv {
    /// New resources named after `name`, and a stand-in replying by `script`.
    /// The queue redrives to its DLQ after 3 receives.
    pub async fn new(
        name: &str,
        script: impl Fn(&Call) -> Reply + Send + Sync + 'static,
    ) -> TestEnv {
        let moto = crate::moto::shared();
        let sdk = sdk_config(&moto.endpoint).await;
        let s3 = s3_client(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let base = unique(name);
        s3.create_bucket()
            .bucket(&base)
            .send()
            .await
            .expect("create bucket");
        let dlq_url = sqs
            .create_queue()
            .queue_name(format!("{base}-dlq"))
            .send()
            .await
            .expect("create dlq")
            .queue_url
            .expect("dlq url");
        let dlq_arn = queue_arn(&sqs, &dlq_url).await;
        let redrive =
            serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3}).to_string();
        let queue_url = sqs
            .create_queue()
            .queue_name(&base)
            .attributes(QueueAttributeName::RedrivePolicy, redrive)
            .attributes(QueueAttributeName::VisibilityTimeout, "30")
            .send()
            .await
            .expect("create queue")
            .queue_url
            .expect("queue url");
        create_table(&dynamodb, &base).await;
        let state_table = format!("{base}-state");
        create_state_table(&dynamodb, &state_table).await;
        TestEnv::attach(base.clone(), queue_url, dlq_url, base, state_table, script).await
    }

    /// Resources that exist already (e.g. created by a CloudFormation stack),
    /// and a stand-in replying by `script`.
    pub async fn attach(
        bucket: String,
        queue_url: String,
        dlq_url: String,
        table: String,
        state_table: String,
        script: impl Fn(&Call) -> Reply + Send + Sync + 'static,
    ) -> TestEnv {
        let sdk = sdk_config(&crate::moto::shared().endpoint).await;
        let bedrock = StandIn::start(script).await;
        let writes = WriteCounter::default();
        TestEnv {
            s3: s3_client(&sdk),
            sqs: aws_sdk_sqs::Client::new(&sdk),
            dynamodb: counted_dynamodb(&sdk, &writes),
            sdk,
            bucket,
            queue_url,
            dlq_url,
            table,
            state_table,
            writes,
            bedrock,
        }
    }

    /// Uploads `bytes` under `key`.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(bytes.into())
            .send()
            .await
            .expect("put object");
    }

    /// Writes `records` straight into the labels table, as workers would
    /// have: `BatchWriteItem`s of 25, up to 32 at once.
    pub async fn store(&self, records: Vec<LabelRecord>) {
        let mut batches = tokio::task::JoinSet::new();
        let slots = Arc::new(tokio::sync::Semaphore::new(32));
        for chunk in records.chunks(25) {
            let requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|r| {
                    let item: HashMap<String, AttributeValue> =
                        r.to_item().expect("a record is an item").into();
                    WriteRequest::builder()
                        .put_request(
                            PutRequest::builder()
                                .set_item(Some(item))
                                .build()
                                .expect("put request"),
                        )
                        .build()
                })
                .collect();
            let (dynamodb, table, slots) =
                (self.dynamodb.clone(), self.table.clone(), slots.clone());
            batches.spawn(async move {
                let _slot = slots.acquire_owned().await.expect("semaphore open");
                dynamodb
                    .batch_write_item()
                    .request_items(table, requests)
                    .send()
                    .await
                    .expect("batch write");
            });
        }
        while let Some(done) = batches.join_next().await {
            done.expect("batch write task");
        }
    }

    /// The record for `key`, if any.
    pub async fn item(&self, key: &str) -> Option<LabelRecord> {
        LabelStore::new(self.dynamodb.clone(), self.table.clone())
            .get(&docsort_schema::record::uri(&self.bucket, key))
            .await
            .expect("get item")
    }

    /// Every item of the labels table, each read as a record (an item that
    /// is not one fails the test: the table holds records only), by key.
    pub async fn items(&self) -> HashMap<String, LabelRecord> {
        let mut out = HashMap::new();
        let mut pages = self
            .dynamodb
            .scan()
            .table_name(&self.table)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let item = item.expect("scan");
            let record = LabelRecord::from_item(item).expect("every labels table item is a record");
            out.insert(record.key.clone(), record);
        }
        out
    }

    /// How many lease items are in the state table.
    pub async fn leases(&self) -> usize {
        let out = self
            .dynamodb
            .scan()
            .table_name(&self.state_table)
            .send()
            .await
            .expect("scan");
        out.items()
            .iter()
            .filter(|i| {
                i.get(STATE_KEY)
                    .and_then(|u| u.as_s().ok())
                    .is_some_and(|u| u.starts_with(LEASE_PREFIX))
            })
            .count()
    }

    /// (visible, in flight) messages on a queue.
    pub async fn depth(&self, queue_url: &str) -> (u64, u64) {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes");
        let get = |name| {
            out.attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (
            get(QueueAttributeName::ApproximateNumberOfMessages),
            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }

    /// Sends a raw body to the work queue.
    pub async fn send(&self, body: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .expect("send message");
    }

    /// The label version of the tests' worker ([`TestEnv::run_settings`]).
    pub fn label_version(&self) -> String {
        docsort_schema::Prompt::new(docsort_schema::Taxonomy::default())
            .label_version(MODEL_ID, 2000, b"")
    }

    /// A backfill of this bucket's `prefix` against this labels table, for
    /// the tests' worker's label version.
    pub fn backfill_settings(&self, prefix: &str) -> docsort_producer::backfill::BackfillSettings {
        docsort_producer::backfill::BackfillSettings {
            bucket: self.bucket.clone(),
            prefix: prefix.to_owned(),
            table: self.table.clone(),
            label_version: self.label_version(),
            retry_failed: false,
            relabel: false,
        }
    }

    /// Starts the worker pool in this process with the tests' defaults.
    pub async fn start_worker(&self) -> RunningWorker {
        self.start_worker_with(|_| {}).await
    }

    /// The `docsort-worker run` arguments the tests use, then `extra` (later
    /// flags win): the same settings as [`TestEnv::run_settings`].
    pub fn run_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "--queue-url",
            &self.queue_url,
            "--table",
            &self.table,
            "--state-table",
            &self.state_table,
            "--model-id",
            MODEL_ID,
            "--concurrency",
            "4",
            "--wait-time-secs",
            "1",
            "--visibility-timeout-secs",
            "30",
            "--shutdown-grace-secs",
            "30",
            "--model-timeout-secs",
            "10",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        args
    }

    /// The worker settings the tests use: `docsort-worker run`'s defaults but
    /// for short waits and timeouts. Extraction runs in child processes of the
    /// built `docsort-worker` binary, as in production.
    pub fn run_settings(&self) -> RunSettings {
        let mut bedrock = BedrockSettings::new(MODEL_ID);
        bedrock.attempt_timeout = Duration::from_secs(10);
        RunSettings {
            queue_url: self.queue_url.clone(),
            table: self.table.clone(),
            state_table: self.state_table.clone(),
            concurrency: 4,
            wait_time_secs: 1,
            visibility_timeout_secs: 30,
            shutdown_grace: Duration::from_secs(30),
            metrics_namespace: None,
            daily_budget_usd: None,
            budget_refresh: Duration::ZERO,
            max_object_bytes: 64 * 1024 * 1024,
            extract: Limits {
                timeout: Duration::from_secs(30),
                isolation: Isolation::Process {
                    exe: worker_exe(),
                    memory_mib: 1024,
                },
            },
            classifier: ClassifierSettings {
                kind: ClassifierKind::Bedrock,
                taxonomy: None,
                max_text_chars: 2000,
                bedrock,
                local: LocalSettings::default(),
            },
        }
    }

    /// Starts the worker pool in this process with [`TestEnv::run_settings`]
    /// as `adjust` changes them.
    pub async fn start_worker_with(&self, adjust: impl FnOnce(&mut RunSettings)) -> RunningWorker {
        let mut settings = self.run_settings();
        adjust(&mut settings);
        let bedrock_sdk = sdk_config(&self.bedrock.endpoint).await;
        let clients = Clients {
            s3: self.s3.clone(),
            sqs: self.sqs.clone(),
            dynamodb: self.dynamodb.clone(),
            bedrock: bedrock_client(&bedrock_sdk, settings.classifier.bedrock.attempt_timeout),
        };
        let token = CancellationToken::new();
        let handle = tokio::spawn(pipeline::run(
            clients,
            settings,
            token.clone(),
            Box::new(std::io::sink()),
        ));
        RunningWorker { token, handle }
    }

    /// Environment for a `docsort-worker` or `docsort-producer` child process:
    /// moto for S3/SQS/DynamoDB, the stand-in for Bedrock Runtime and the
    /// control plane's batch jobs.
    pub fn child_env(&self) -> Vec<(String, String)> {
        let moto = &crate::moto::shared().endpoint;
        [
            ("AWS_ENDPOINT_URL", moto.as_str()),
            (
                "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
                self.bedrock.endpoint.as_str(),
            ),
            ("AWS_ENDPOINT_URL_BEDROCK", self.bedrock.endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    }
}

/// A workspace binary built next to this test executable (`scripts/test` builds them first).
pub fn built_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // Tests run from target/<profile>/deps, binaries from target/<profile>.
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join(name))
        .collect();
    candidates.iter().find(|p| p.exists()).cloned().unwrap_or_else(|| {
        panic!("{name} is not built next to {}: run `cargo build --workspace --bins` first (scripts/test does)", exe.display())
    })
}

/// The built `docsort-worker`.
pub fn worker_exe() -> PathBuf {
    built_binary("docsort-worker")
}

/// A worker pool running in this process.
pub struct RunningWorker {
    token: CancellationToken,
    handle: tokio::task::JoinHandle<Result<Summary, RunError>>,
}

impl RunningWorker {
    /// Requests shutdown (as SIGTERM does) and returns the run's counts.
    pub async fn stop(self) -> Summary {
        match self.try_stop().await {
            Ok(summary) => summary,
            Err(e) => panic!("{e}"),
        }
    }

    /// Whether the pool is still running (it has not stopped or panicked by itself).
    pub fn is_running(&self) -> bool {
        !self.handle.is_finished()
    }

    /// Requests shutdown and returns the run's counts, or how the pool ended
    /// otherwise (an error, or a panic).
    pub async fn try_stop(self) -> Result<Summary, String> {
        self.token.cancel();
        match self.handle.await {
            Ok(Ok(summary)) => Ok(summary),
            Ok(Err(e)) => Err(format!(
                "the pool stopped with an error: {:?}",
                anyhow::Error::from(e)
            )),
            Err(e) => Err(format!("the pool task panicked: {e}")),
        }
    }
}

/// The ARN of a queue.
pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .expect("queue arn")
}
