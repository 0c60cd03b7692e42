//! Classification: a document's text in, one taxonomy category out.
//!
//! Owns the classifier interface ([`Classifier`]), the Bedrock Converse
//! classifier ([`bedrock`]) with its pool-wide rate gate ([`gate`]) and price
//! table ([`pricing`]), and the embedded local model ([`local`]). It must not
//! touch queues, tables or S3: the pipeline and the offline commands call it
//! with text and write what it answers.

mod answer;
pub mod bedrock;
pub mod gate;
pub mod local;
pub mod pricing;

use std::path::PathBuf;
use std::sync::Arc;

use docsort_schema::{LabelRecord, Prompt, Taxonomy};

use crate::events::Metrics;
use crate::extract::{Extracted, Fallback};
pub use answer::{Classification, ClassifyError, ModelErrorKind};
use bedrock::{BedrockClassifier, BedrockSettings};
use local::{LocalClassifier, LocalError, LocalSettings};

/// Which classifier answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassifierKind {
    /// Amazon Bedrock Converse.
    Bedrock,
    /// The embedded local model (no network, no cost).
    Local,
}

/// How documents are classified.
#[derive(Debug, Clone)]
pub struct ClassifierSettings {
    /// Which classifier answers.
    pub kind: ClassifierKind,
    /// A TOML taxonomy file replacing the default categories.
    pub taxonomy: Option<PathBuf>,
    /// Characters of document text the classifier reads.
    pub max_text_chars: usize,
    /// The Bedrock classifier's settings.
    pub bedrock: BedrockSettings,
    /// The local classifier's settings.
    pub local: LocalSettings,
}

/// A classifier could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot load the taxonomy")]
    Taxonomy(#[from] docsort_schema::TaxonomyError),
    #[error(transparent)]
    Local(#[from] LocalError),
}

/// The classifier a worker uses: Bedrock or the embedded local model. Both
/// produce the same [`Classification`] and the same label record.
#[derive(Debug, Clone)]
pub enum Classifier {
    /// Amazon Bedrock Converse.
    Bedrock(Box<BedrockClassifier>),
    /// The embedded model, run on the blocking pool.
    Local(Arc<LocalClassifier>),
}

impl Classifier {
    /// Builds the classifier `settings` ask for. `bedrock` is called only for
    /// the Bedrock classifier.
    pub fn new(
        settings: &ClassifierSettings,
        bedrock: impl FnOnce() -> aws_sdk_bedrockruntime::Client,
        metrics: Arc<Metrics>,
    ) -> Result<Classifier, SetupError> {
        let taxonomy = Taxonomy::load(settings.taxonomy.as_deref())?;
        let prompt = Arc::new(Prompt::new(taxonomy));
        Ok(match settings.kind {
            ClassifierKind::Bedrock => Classifier::Bedrock(Box::new(BedrockClassifier::new(
                bedrock(),
                settings.bedrock.clone(),
                prompt,
                settings.max_text_chars,
                metrics,
            ))),
            ClassifierKind::Local => {
                let local = &settings.local;
                let started = std::time::Instant::now();
                let model = LocalClassifier::load(
                    &local.model_dir,
                    prompt,
                    settings.max_text_chars,
                    local.reading,
                    &local.head,
                )?;
                tracing::info!(model = model.model_id(), dir = %local.model_dir.display(), head = model.head().is_some(), load_ms = started.elapsed().as_millis() as u64, "local model loaded");
                Classifier::Local(Arc::new(model))
            }
        })
    }

    /// The model id recorded with each label (`local:<name>` for the local model).
    pub fn model_id(&self) -> &str {
        match self {
            Classifier::Bedrock(c) => c.model_id(),
            Classifier::Local(c) => c.model_id(),
        }
    }

    /// The label version recorded with each label as `prompt_version`.
    pub fn prompt_version(&self) -> &str {
        match self {
            Classifier::Bedrock(c) => c.version(),
            Classifier::Local(c) => c.version(),
        }
    }

    /// Characters of document text the classifier reads.
    pub fn max_text_chars(&self) -> usize {
        match self {
            Classifier::Bedrock(c) => c.max_text_chars(),
            Classifier::Local(c) => c.max_text_chars(),
        }
    }

    /// What extraction does for a document without usable text: a page image
    /// for Bedrock (Claude reads it), OCR text for the local model.
    pub fn fallback(&self) -> Fallback {
        match self {
            Classifier::Bedrock(_) => Fallback::PageImage,
            Classifier::Local(_) => Fallback::Ocr,
        }
    }

    /// The taxonomy's category names, in order.
    pub fn labels(&self) -> Vec<String> {
        let prompt = match self {
            Classifier::Bedrock(c) => c.prompt(),
            Classifier::Local(c) => c.prompt(),
        };
        prompt
            .taxonomy()
            .categories()
            .iter()
            .map(|c| c.name.clone())
            .collect()
    }

    /// Cost of a classification in USD: Bedrock's price table, 0 for the local
    /// model, `None` for a Bedrock model with no known price.
    pub fn cost(&self, answer: &Classification) -> Option<f64> {
        match self {
            Classifier::Bedrock(c) => c
                .price()
                .map(|p| p.cost(answer.input_tokens, answer.output_tokens)),
            Classifier::Local(_) => Some(0.0),
        }
    }

    /// Writes what extraction and the model used into `record`: model,
    /// tokens, cost, pages and text size (the outcome is
    /// [`Classification::outcome`]).
    pub fn fill_usage(
        &self,
        record: &mut LabelRecord,
        extracted: &Extracted,
        answer: &Classification,
    ) {
        record.model_id = Some(self.model_id().to_owned());
        record.input_tokens = answer.input_tokens;
        record.output_tokens = answer.output_tokens;
        record.cost_usd = self.cost(answer);
        record.pages = Some(extracted.pages);
        record.text_chars = Some(extracted.text_chars());
        record.text_source = Some(extracted.source);
    }

    /// Classifies one document: its text (the text layer's or OCR's), or
    /// for Bedrock its first page's image when extraction made one.
    pub async fn classify(&self, document: &Extracted) -> Result<Classification, ClassifyError> {
        match self {
            Classifier::Bedrock(c) => c.classify(document).await,
            Classifier::Local(c) => {
                let (c, text) = (c.clone(), document.text.clone());
                let scored = tokio::task::spawn_blocking(move || c.classify(&text))
                    .await
                    .map_err(ClassifyError::Crashed)??;
                Ok(Classification {
                    label: Ok(scored.label),
                    input_tokens: scored.tokens_evaluated,
                    output_tokens: 1,
                    calls: 1,
                    blocked: None,
                })
            }
        }
    }
}
