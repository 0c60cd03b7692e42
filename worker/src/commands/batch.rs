//! `docsort-worker batch`: the batch backfill, to completion.

use anyhow::Context;
use docsort_worker::pipeline::aws::Clients;

use crate::cli::BatchArgs;

pub async fn batch(args: BatchArgs) -> anyhow::Result<()> {
    let settings = args.settings()?;
    let sdk = aws_config::load_from_env().await;
    let clients = Clients::new(&sdk, settings.classifier.bedrock.attempt_timeout);
    let control = aws_sdk_bedrock::Client::new(&sdk);
    tracing::info!(bucket = %settings.bucket, prefix = %settings.prefix, staging = %settings.staging.uri(""), model_id = %settings.classifier.bedrock.model_id, "batch backfill started");
    let summary =
        docsort_worker::batch::run(&clients, &control, &settings, Box::new(std::io::stdout()))
            .await
            .with_context(|| {
                format!(
                    "batch backfill of s3://{}/{} stopped (run it again to resume)",
                    settings.bucket, settings.prefix
                )
            })?;
    println!("batch: {summary}");
    Ok(())
}
