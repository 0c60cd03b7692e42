//! `docsort-producer`: parses the command line and runs one command.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line program prints

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, LogFormat};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let sdk = aws_config::load_from_env().await;
    let result = match cli.command {
        Command::Backfill(args) => commands::backfill(&sdk, args).await,
        Command::Enqueue(args) => commands::enqueue(&sdk, args).await,
        Command::Report(args) => commands::report(&sdk, args).await,
        Command::Export(args) => commands::export(&sdk, args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain, once (no backtrace: this is for people).
            eprintln!("error: {e}");
            e.chain()
                .skip(1)
                .for_each(|cause| eprintln!("  caused by: {cause}"));
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,aws_config=warn,aws_smithy_runtime=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}
