//! `docsort-worker eval`: a classifier's accuracy on a labeled JSONL set.

use docsort_worker::classify::{Classifier, ClassifierKind};
use docsort_worker::extract::peak_rss_kib;
use docsort_worker::offline::eval::{evaluate, read_dataset};

use super::classify::offline_classifier;
use super::progress;
use crate::cli::EvalArgs;

pub async fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let examples = read_dataset(&args.dataset)?;
    let classifier = offline_classifier(&args.classifier.settings(ClassifierKind::Local)).await?;
    let bar = progress(examples.len(), "examples");
    let report = evaluate(&classifier, &examples, || bar.inc(1)).await?;
    bar.finish_and_clear();
    println!(
        "classifier: {} (prompt_version {})\ndecided by: {}\ndataset:    {} ({} examples)\n",
        classifier.model_id(),
        classifier.prompt_version(),
        decided_by(&classifier),
        args.dataset.display(),
        examples.len()
    );
    println!("{report}");
    let kib = peak_rss_kib();
    if kib > 0 {
        println!(
            "peak memory: {:.2} GiB (this process's high-water resident set)",
            kib as f64 / (1024.0 * 1024.0)
        );
    }
    Ok(())
}

/// What decides the local model's category, and how it reads.
fn decided_by(classifier: &Classifier) -> String {
    let Classifier::Local(local) = classifier else {
        return "the model's answer".to_owned();
    };
    let r = local.reading();
    match local.head() {
        Some(head) => match &head.first {
            Some(stage) => format!(
                "a trained head: {} tokens first, stopping there at {} confidence, else {}",
                r.first_tokens, stage.confidence, r.doc_tokens
            ),
            None => format!("a trained head, reading {} tokens", r.doc_tokens),
        },
        None => format!(
            "zero-shot label scores: {} tokens first, stopping there at {} confidence, else {}",
            r.first_tokens, r.confidence, r.doc_tokens
        ),
    }
}
