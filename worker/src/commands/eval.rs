//! `docsort-worker eval`: a classifier's accuracy on a labeled JSONL set.

use docsort_worker::classify::ClassifierKind;
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
        "classifier: {} (prompt_version {})\ndataset:    {} ({} examples)\n",
        classifier.model_id(),
        classifier.prompt_version(),
        args.dataset.display(),
        examples.len()
    );
    println!("{report}");
    Ok(())
}
