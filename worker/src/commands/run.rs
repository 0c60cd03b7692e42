//! `docsort-worker run`: the pool, until SIGTERM or ctrl-c.

use anyhow::Context;
use docsort_worker::pipeline::{self, aws::Clients, shutdown};
use tokio_util::sync::CancellationToken;

use crate::cli::RunArgs;

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let settings = args.settings()?;
    let sdk = aws_config::load_from_env().await;
    let clients = Clients::new(&sdk, settings.classifier.bedrock.attempt_timeout);
    let token = CancellationToken::new();
    shutdown::cancel_on_signal(token.clone());
    pipeline::run(clients, settings, token, Box::new(std::io::stdout()))
        .await
        .context("docsort-worker run stopped")?;
    Ok(())
}
