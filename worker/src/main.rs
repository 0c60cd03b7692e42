//! `docsort-worker`: parses the command line and runs one command.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line program prints

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::ExtractChild {
        max_text_chars,
        fallback,
    } = cli.command
    {
        // The isolated extraction child: no runtime, no logging, JSON on stdout.
        return match docsort_worker::extract::run_child(max_text_chars, fallback) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("extract-child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if matches!(cli.command, Command::Extract(_) | Command::Samples(_)) {
        commands::die_quietly_on_closed_pipe();
    }
    commands::init_tracing(cli.log_format);
    let result = match cli.command {
        Command::Run(args) => commands::block_on(commands::run::run(args)),
        Command::Batch(args) => commands::block_on(commands::batch::batch(args)),
        Command::Classify(args) => commands::block_on(commands::classify::classify(args)),
        Command::Eval(args) => commands::block_on(commands::eval::eval(args)),
        Command::Train(args) => {
            // Training reads for throughput: one document per core, set before
            // the runtime starts any thread.
            let readers = docsort_worker::classify::local::one_document_per_core();
            commands::block_on(commands::train::train(args, readers))
        }
        Command::Samples(args) => commands::samples::samples(&args),
        Command::Extract(args) => commands::extract::extract(&args),
        Command::ExtractChild { .. } => unreachable!("handled above"),
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
