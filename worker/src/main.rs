use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use docsort_schema::{Prompt, Taxonomy};
use docsort_worker::aws::Clients;
use docsort_worker::classify::BedrockClassifier;
use docsort_worker::config::{Cli, Command, ExtractArgs, LogFormat, RunConfig};
use docsort_worker::message::Worker;
use docsort_worker::pool::{self, PoolConfig};
use docsort_worker::store::LabelStore;
use docsort_worker::{extract, shutdown};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let result = match cli.command {
        Command::Run(config) => run(config).await,
        Command::Extract(args) => extract_files(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "docsort-worker failed");
            eprintln!("error: {e:?}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,aws_config=warn,aws_smithy_runtime=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

async fn run(config: RunConfig) -> anyhow::Result<()> {
    let taxonomy = Taxonomy::load(config.classifier.taxonomy.as_deref())?;
    let prompt = Arc::new(Prompt::new(taxonomy));
    let sdk = aws_config::load_from_env().await;
    let clients = Clients::new(&sdk, config.classifier.model_timeout());
    let classifier = BedrockClassifier::new(
        clients.bedrock.clone(),
        config.classifier.model_id.clone(),
        prompt.clone(),
        config.classifier.max_text_chars as usize,
        config.classifier.max_tokens,
    );
    tracing::info!(model_id = %config.classifier.model_id, prompt_version = prompt.version(), table = %config.table, "classifier ready");
    let store = LabelStore::new(clients.dynamodb.clone(), config.table.clone());
    let worker = Arc::new(Worker::new(clients.s3.clone(), store, classifier, config.limits.clone()));
    let token = CancellationToken::new();
    shutdown::cancel_on_signal(token.clone());
    let pool_config = PoolConfig {
        queue_url: config.queue_url.clone(),
        concurrency: config.concurrency as usize,
        wait_time_secs: config.wait_time_secs,
        visibility_timeout_secs: config.visibility_timeout_secs,
        shutdown_grace: Duration::from_secs(config.shutdown_grace_secs),
    };
    pool::run(worker, clients.sqs, pool_config, token).await.context("worker pool stopped with an error")?;
    Ok(())
}

fn extract_files(args: &ExtractArgs) -> anyhow::Result<()> {
    for path in &args.files {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        match extract::extract(&bytes, args.max_text_chars as usize) {
            Ok(x) => {
                let chars = x.text.chars().filter(|c| !c.is_whitespace()).count();
                println!("== {}: ok, {} pages, {} characters", path.display(), x.pages, chars);
                println!("{}", x.text);
            }
            Err(e) => println!("== {}: failed/{}: {}", path.display(), e.reason(), e),
        }
    }
    Ok(())
}
