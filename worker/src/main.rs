use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use docsort_worker::aws::Clients;
use docsort_worker::config::{Cli, Command, ExtractArgs, LogFormat, RunConfig};
use docsort_worker::{extract, service, shutdown};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::ExtractChild { max_text_chars } = cli.command {
        // The isolated extraction child: no runtime, no logging, JSON on stdout.
        return match extract::run_child(max_text_chars) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("extract-child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    init_tracing(cli.log_format);
    let result = match cli.command {
        Command::Run(config) => tokio::runtime::Runtime::new().context("cannot start the async runtime").and_then(|rt| rt.block_on(run(config))),
        Command::Extract(args) => extract_files(&args),
        Command::ExtractChild { .. } => unreachable!("handled above"),
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
    let sdk = aws_config::load_from_env().await;
    let clients = Clients::new(&sdk, config.classifier.model_timeout());
    let token = CancellationToken::new();
    shutdown::cancel_on_signal(token.clone());
    service::run(clients, config, token, Box::new(std::io::stdout())).await.context("docsort-worker run stopped")?;
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
