//! AWS clients, built once from the standard aws-config chain.

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::SdkConfig;
use std::time::Duration;

/// Every AWS client the worker uses.
#[derive(Clone, Debug)]
pub struct Clients {
    /// Reads the PDFs.
    pub s3: aws_sdk_s3::Client,
    /// Receives, extends and deletes queue messages.
    pub sqs: aws_sdk_sqs::Client,
    /// Reads and conditionally writes label records.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// Calls Converse.
    pub bedrock: aws_sdk_bedrockruntime::Client,
}

impl Clients {
    /// Builds the clients from one shared config (S3, SQS and DynamoDB keep the
    /// SDK's standard retries).
    pub fn new(config: &SdkConfig, model_timeout: Duration) -> Self {
        Clients {
            s3: s3_client(config),
            sqs: aws_sdk_sqs::Client::new(config),
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            bedrock: bedrock_client(config, model_timeout),
        }
    }
}

/// A Bedrock Runtime client that makes one attempt per call, with a timeout:
/// retries and pacing are the pool's own ([`crate::classify::gate::ModelGate`]), so a
/// throttle slows every task at once.
pub fn bedrock_client(
    config: &SdkConfig,
    attempt_timeout: Duration,
) -> aws_sdk_bedrockruntime::Client {
    let conf = aws_sdk_bedrockruntime::config::Builder::from(config)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(attempt_timeout)
                .build(),
        )
        .build();
    aws_sdk_bedrockruntime::Client::from_conf(conf)
}

/// An S3 client; with a custom endpoint (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`,
/// e.g. a local stand-in or S3-compatible store) it uses path-style addressing,
/// since `bucket.localhost` style names do not resolve there.
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    let custom_endpoint =
        config.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    let conf = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(custom_endpoint)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}
