//! The binary's commands: each turns its flags into the library's settings,
//! calls the library and prints for people. Nothing here is library code.

pub mod batch;
pub mod classify;
pub mod eval;
pub mod extract;
pub mod run;
pub mod samples;
pub mod train;

use std::future::Future;
use std::io::IsTerminal;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::LogFormat;

/// Runs `future` to completion on a new multi-threaded runtime.
pub fn block_on(future: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()
        .context("cannot start the async runtime")?
        .block_on(future)
}

/// Logs on stderr, filtered by `RUST_LOG` (default: info, AWS internals quiet).
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "info,aws_config=warn,aws_smithy_runtime=warn,lopdf=error",
        )
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

/// Commands that only print (`extract f.pdf | head`) end quietly when the
/// pipe closes, as other command-line tools do. Commands with sockets keep
/// Rust's default (SIGPIPE ignored, EPIPE is an error).
pub fn die_quietly_on_closed_pipe() {
    // SAFETY: called before any other thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// A progress bar on a terminal (stderr), hidden otherwise.
pub fn progress(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let template = format!("{{spinner}} {{pos}}/{{len}} {what} {{wide_bar}} eta {{eta}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}
