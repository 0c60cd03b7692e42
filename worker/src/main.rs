use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;

use docsort_worker::aws::{bedrock_client, Clients};
use docsort_worker::batch::{classify_file, collect_pdfs, BatchSummary, OutputFile};
use docsort_worker::classify::Classifier;
use docsort_worker::config::{
    ClassifierConfig, ClassifierKind, ClassifyArgs, Cli, Command, EvalArgs, ExtractArgs, LogFormat,
    RunConfig,
};
use docsort_worker::metrics::Metrics;
use docsort_worker::{eval, extract, samples, service, shutdown};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
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
    if matches!(cli.command, Command::Extract(_) | Command::Samples(_)) {
        // These commands only print (`extract f.pdf | head`): a closed pipe ends
        // them quietly, as it does other command-line tools. Commands with
        // sockets keep Rust's default (SIGPIPE ignored, EPIPE is an error).
        // SAFETY: called before any other thread exists; SIG_DFL is a valid disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    init_tracing(cli.log_format);
    let result = match cli.command {
        Command::Run(config) => runtime().and_then(|rt| rt.block_on(run(config))),
        Command::Classify(args) => runtime().and_then(|rt| rt.block_on(classify(args))),
        Command::Eval(args) => runtime().and_then(|rt| rt.block_on(evaluate(args))),
        Command::Samples(args) => samples::write_samples(&args.dir)
            .map(|paths| paths.iter().for_each(|p| println!("{}", p.display())))
            .with_context(|| format!("cannot write samples into {}", args.dir.display())),
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("cannot start the async runtime")
}

/// A progress bar on a terminal (stderr), hidden otherwise.
fn progress(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let template = format!("{{spinner}} {{pos}}/{{len}} {what} {{wide_bar}} eta {{eta}}");
    bar.set_style(ProgressStyle::with_template(&template).expect("the template is valid"));
    bar
}

/// The classifier for `classify` and `eval` (local unless told otherwise).
async fn offline_classifier(config: &ClassifierConfig) -> anyhow::Result<Classifier> {
    let sdk = match config.classifier {
        Some(ClassifierKind::Bedrock) => Some(aws_config::load_from_env().await),
        _ => None,
    };
    let bedrock = || {
        bedrock_client(
            sdk.as_ref().expect("loaded for bedrock"),
            config.model_timeout(),
        )
    };
    Ok(Classifier::from_config(
        config,
        ClassifierKind::Local,
        bedrock,
        Arc::new(Metrics::default()),
    )?)
}

async fn classify(args: ClassifyArgs) -> anyhow::Result<()> {
    let files = collect_pdfs(&args.paths).context("cannot list the PDFs to classify")?;
    anyhow::ensure!(!files.is_empty(), "no .pdf files in {:?}", args.paths);
    let mut out = args.out.as_deref().map(OutputFile::create).transpose()?;
    let classifier = offline_classifier(&args.classifier).await?;
    let isolation = args
        .limits
        .isolation()
        .context("cannot find the extractor executable")?;
    let timeout = std::time::Duration::from_secs(args.limits.extract_timeout_secs);
    let bar = progress(files.len(), "documents");
    let mut summary = BatchSummary::default();
    let started = Instant::now();
    bar.suspend(|| println!("{:<24} {:>5}  {}", "LABEL", "PAGES", "FILE"));
    for file in &files {
        let result = classify_file(file, &classifier, &isolation, timeout)
            .await
            .with_context(|| format!("cannot classify {}", file.display()))?;
        let r = &result.record;
        let shown = match (&r.label, &r.failure) {
            (Some(l), _) => l.clone(),
            (None, Some(f)) => format!("failed/{f}"),
            (None, None) => "?".to_owned(),
        };
        let pages = r.pages.map_or("-".to_owned(), |p| p.to_string());
        bar.suspend(|| println!("{shown:<24} {pages:>5}  {}", file.display()));
        if let Some(out) = out.as_mut() {
            out.write(&result)?;
        }
        summary.add(&result);
        bar.inc(1);
    }
    bar.finish_and_clear();
    summary.total = started.elapsed();
    if let Some(out) = out {
        out.finish()?;
    }
    println!("\n{summary}");
    if let Some(path) = &args.out {
        println!("results:   {}", path.display());
    }
    Ok(())
}

async fn evaluate(args: EvalArgs) -> anyhow::Result<()> {
    let examples = eval::read_dataset(&args.dataset)?;
    let classifier = offline_classifier(&args.classifier).await?;
    let bar = progress(examples.len(), "examples");
    let report = eval::evaluate(&classifier, &examples, || bar.inc(1)).await?;
    bar.finish_and_clear();
    println!(
        "classifier: {} (prompt_version {})\ndataset:    {} ({} examples)\n",
        classifier.model_id(),
        classifier.prompt_version(),
        args.dataset.display(),
        examples.len()
    );
    println!("{report}");
    Ok(())
}

fn init_tracing(format: LogFormat) {
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

async fn run(config: RunConfig) -> anyhow::Result<()> {
    let sdk = aws_config::load_from_env().await;
    let clients = Clients::new(&sdk, config.classifier.model_timeout());
    let token = CancellationToken::new();
    shutdown::cancel_on_signal(token.clone());
    service::run(clients, config, token, Box::new(std::io::stdout()))
        .await
        .context("docsort-worker run stopped")?;
    Ok(())
}

fn extract_files(args: &ExtractArgs) -> anyhow::Result<()> {
    for path in &args.files {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        match extract::extract(&bytes, args.max_text_chars as usize) {
            Ok(x) => {
                let chars = x.text.chars().filter(|c| !c.is_whitespace()).count();
                println!(
                    "== {}: ok, {} pages, {} characters",
                    path.display(),
                    x.pages,
                    chars
                );
                println!("{}", x.text);
            }
            Err(e) => println!("== {}: failed/{}: {}", path.display(), e.reason(), e),
        }
    }
    Ok(())
}
