//! Asks a Bedrock model (Converse API) for one category.
//!
//! Temperature 0 only (some newer models reject `temperature` with `top_p`), a
//! tiny `maxTokens`, the taxonomy in the system prompt and the document's first
//! characters in the user turn. An answer outside the taxonomy gets one re-ask;
//! a second bad answer is `unparseable_answer`.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::converse::{
    ConverseError, ConverseOutput as ConverseResponse,
};
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, ConverseOutput, InferenceConfiguration, Message,
    SystemContentBlock,
};
use docsort_schema::{AnswerError, FailureReason, LabelRecord, Prompt, Status};
use rand::Rng;

use crate::extract::Extracted;
use crate::gate::ModelGate;
use crate::metrics::Metrics;

/// What the model said about one document.
#[derive(Debug, Clone)]
pub struct Classification {
    /// The category, or why the last answer was not one.
    pub label: Result<String, AnswerError>,
    /// Input tokens over all calls.
    pub input_tokens: u64,
    /// Output tokens over all calls.
    pub output_tokens: u64,
    /// Model calls made (1, or 2 after a re-ask).
    pub calls: u32,
}

/// The model could not be asked. Never recorded as `failed`: the message stays
/// on the queue for redelivery.
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error("Bedrock Converse failed ({kind}) after {attempts} attempt(s)")]
    Model {
        /// Attempts made.
        attempts: u32,
        /// Error code, e.g. `ThrottlingException`, or `timeout` / `dispatch`.
        kind: String,
        #[source]
        source: Box<SdkError<ConverseError>>,
    },
    #[error("Bedrock Converse request could not be built")]
    Build(#[from] aws_sdk_bedrockruntime::error::BuildError),
    #[error("the local model failed")]
    Local(#[from] crate::local::LocalError),
}

impl ClassifyError {
    /// Whether retrying later may help (throttling, timeouts, 5xx) rather than a
    /// configuration problem (unknown model, access denied, invalid request).
    pub fn is_transient(&self) -> bool {
        matches!(self, ClassifyError::Model { kind, .. } if is_retryable(kind))
    }
}

/// Error codes worth another attempt: throttling, timeouts, 5xx, connection trouble.
fn is_retryable(kind: &str) -> bool {
    matches!(
        kind,
        "ThrottlingException"
            | "ServiceUnavailableException"
            | "InternalServerException"
            | "ModelTimeoutException"
            | "ModelNotReadyException"
            | "ModelErrorException"
            | "timeout"
            | "dispatch"
            | "response"
    )
}

/// A Bedrock classifier: one client, one model, one prompt, shared by the pool.
///
/// The client must not retry by itself (see [`crate::aws::bedrock_client`]):
/// every attempt goes through the pool's [`ModelGate`], with bounded retries
/// and full-jitter backoff here.
#[derive(Debug, Clone)]
pub struct BedrockClassifier {
    client: aws_sdk_bedrockruntime::Client,
    model_id: String,
    prompt: Arc<Prompt>,
    max_text_chars: usize,
    max_tokens: i32,
    gate: Arc<ModelGate>,
    attempts: u32,
    metrics: Arc<Metrics>,
    /// On-demand price of `model_id`, when known.
    price: Option<crate::pricing::Price>,
}

/// Settings of a [`BedrockClassifier`].
#[derive(Debug, Clone)]
pub struct BedrockSettings {
    /// Model or inference profile id.
    pub model_id: String,
    /// Characters of text sent.
    pub max_text_chars: usize,
    /// Output token cap.
    pub max_tokens: i32,
    /// Attempts per model call (throttles, timeouts, 5xx) before the message is left for redelivery.
    pub attempts: u32,
}

impl BedrockClassifier {
    /// A classifier for `settings.model_id` with `prompt`, pacing calls through `gate`.
    pub fn new(
        client: aws_sdk_bedrockruntime::Client,
        settings: BedrockSettings,
        prompt: Arc<Prompt>,
        gate: Arc<ModelGate>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let price = crate::pricing::price_for(&settings.model_id);
        if price.is_none() {
            tracing::warn!(model_id = %settings.model_id, "no price known for this model: records will have no cost_usd");
        }
        BedrockClassifier {
            client,
            model_id: settings.model_id,
            prompt,
            max_text_chars: settings.max_text_chars,
            max_tokens: settings.max_tokens,
            gate,
            attempts: settings.attempts.max(1),
            metrics,
            price,
        }
    }

    /// The model id recorded with each label.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Characters of document text sent to the model.
    pub fn max_text_chars(&self) -> usize {
        self.max_text_chars
    }

    /// The prompt (and its version).
    pub fn prompt(&self) -> &Prompt {
        &self.prompt
    }

    /// Classifies one document's text.
    pub async fn classify(&self, text: &str) -> Result<Classification, ClassifyError> {
        let mut messages = vec![user(self.prompt.user_message(text, self.max_text_chars))?];
        let mut result = Classification {
            label: Err(AnswerError::Empty),
            input_tokens: 0,
            output_tokens: 0,
            calls: 0,
        };
        for _ in 0..2 {
            let response = self.converse_with_retries(&messages).await?;
            result.calls += 1;
            if let Some(usage) = response.usage() {
                result.input_tokens += u64::try_from(usage.input_tokens()).unwrap_or(0);
                result.output_tokens += u64::try_from(usage.output_tokens()).unwrap_or(0);
            }
            let answer = answer_text(&response);
            result.label = self.prompt.parse_answer(&answer).map(|c| c.name.clone());
            if result.label.is_ok() {
                break;
            }
            tracing::debug!(answer = %answer, "answer is not a category; asking again");
            messages.push(
                Message::builder()
                    .role(ConversationRole::Assistant)
                    .content(ContentBlock::Text(answer))
                    .build()?,
            );
            messages.push(user(self.prompt.reask())?);
        }
        Ok(result)
    }

    async fn converse_with_retries(
        &self,
        messages: &[Message],
    ) -> Result<ConverseResponse, ClassifyError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.gate.acquire().await;
            Metrics::inc(&self.metrics.model_requests);
            match self.converse(messages).await {
                Ok(response) => {
                    let tokens = response
                        .usage()
                        .map_or(0, |u| u.total_tokens().max(0) as u64);
                    self.gate.on_success(tokens);
                    return Ok(response);
                }
                Err((kind, e)) => {
                    if kind == "ThrottlingException" {
                        Metrics::inc(&self.metrics.throttles);
                        self.gate.on_throttle();
                    }
                    if !is_retryable(&kind) || attempt >= self.attempts {
                        return Err(ClassifyError::Model {
                            attempts: attempt,
                            kind,
                            source: Box::new(e),
                        });
                    }
                    let cap = 200u64.saturating_mul(1 << attempt.min(6)).min(10_000);
                    let delay = Duration::from_millis(rand::rng().random_range(0..=cap));
                    tracing::debug!(kind = %kind, attempt, delay_ms = delay.as_millis() as u64, "model call failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn converse(
        &self,
        messages: &[Message],
    ) -> Result<ConverseResponse, (String, SdkError<ConverseError>)> {
        self.client
            .converse()
            .model_id(&self.model_id)
            .system(SystemContentBlock::Text(self.prompt.system().to_owned()))
            .set_messages(Some(messages.to_vec()))
            .inference_config(
                InferenceConfiguration::builder()
                    .max_tokens(self.max_tokens)
                    .temperature(0.0)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                let kind = match &e {
                    SdkError::ServiceError(se) => {
                        se.err().code().unwrap_or("ServiceError").to_owned()
                    }
                    SdkError::TimeoutError(_) => "timeout".to_owned(),
                    SdkError::DispatchFailure(_) => "dispatch".to_owned(),
                    SdkError::ResponseError(_) => "response".to_owned(),
                    _ => "other".to_owned(),
                };
                (kind, e)
            })
    }
}

fn user(text: String) -> Result<Message, aws_sdk_bedrockruntime::error::BuildError> {
    Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text(text))
        .build()
}

fn answer_text(response: &ConverseResponse) -> String {
    match response.output() {
        Some(ConverseOutput::Message(m)) => m
            .content()
            .iter()
            .filter_map(|b| b.as_text().ok())
            .cloned()
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The classifier a worker uses: Bedrock or the embedded local model. Both
/// produce the same [`Classification`] and the same label record.
#[derive(Debug, Clone)]
pub enum Classifier {
    /// Amazon Bedrock Converse.
    Bedrock(BedrockClassifier),
    /// The embedded model, run on the blocking pool.
    Local(Arc<crate::local::LocalClassifier>),
}

impl Classifier {
    /// The model id recorded with each label (`local:<name>` for the local model).
    pub fn model_id(&self) -> &str {
        match self {
            Classifier::Bedrock(c) => c.model_id(),
            Classifier::Local(c) => c.model_id(),
        }
    }

    /// The `prompt_version` recorded with each label.
    pub fn prompt_version(&self) -> &str {
        match self {
            Classifier::Bedrock(c) => c.prompt().version(),
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

    /// Cost of a classification in USD: Bedrock's price table, 0 for the local
    /// model, `None` for a Bedrock model with no known price.
    pub fn cost(&self, answer: &Classification) -> Option<f64> {
        match self {
            Classifier::Bedrock(c) => c
                .price
                .map(|p| p.cost(answer.input_tokens, answer.output_tokens)),
            Classifier::Local(_) => Some(0.0),
        }
    }

    /// Writes what extraction and the model produced into `record`: model,
    /// tokens, cost, pages, text size, and the label, or
    /// `failed/unparseable_answer`. `attempts` is the caller's.
    pub fn fill_record(
        &self,
        record: &mut LabelRecord,
        extracted: &Extracted,
        answer: Classification,
    ) {
        record.model_id = Some(self.model_id().to_owned());
        record.input_tokens = answer.input_tokens;
        record.output_tokens = answer.output_tokens;
        record.cost_usd = self.cost(&answer);
        record.pages = Some(extracted.pages);
        record.text_chars = Some(
            extracted
                .text
                .chars()
                .filter(|c| !c.is_whitespace())
                .count() as u64,
        );
        match answer.label {
            Ok(label) => {
                record.status = Status::Labeled;
                record.label = Some(label);
            }
            Err(e) => {
                record.status = Status::Failed;
                record.failure = Some(FailureReason::UnparseableAnswer);
                record.detail = Some(format!(
                    "The model's answer after one re-ask was not a category: {e}."
                ));
            }
        }
    }

    /// Classifies one document's text.
    pub async fn classify(&self, text: &str) -> Result<Classification, ClassifyError> {
        match self {
            Classifier::Bedrock(c) => c.classify(text).await,
            Classifier::Local(c) => {
                let (c, text) = (c.clone(), text.to_owned());
                match tokio::task::spawn_blocking(move || c.classify(&text)).await {
                    Ok(result) => Ok(result?),
                    Err(e) => Err(crate::local::LocalError::Crashed(e.to_string()).into()),
                }
            }
        }
    }
}

/// A classifier could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot load the taxonomy")]
    Taxonomy(#[from] docsort_schema::TaxonomyError),
    #[error(transparent)]
    Local(#[from] crate::local::LocalError),
}

impl Classifier {
    /// Builds the classifier `config` asks for (`default` when it names none).
    /// `bedrock` is called only for the Bedrock classifier.
    pub fn from_config(
        config: &crate::config::ClassifierConfig,
        default: crate::config::ClassifierKind,
        bedrock: impl FnOnce() -> aws_sdk_bedrockruntime::Client,
        metrics: Arc<Metrics>,
    ) -> Result<Classifier, SetupError> {
        use crate::config::ClassifierKind;
        let taxonomy = docsort_schema::Taxonomy::load(config.taxonomy.as_deref())?;
        let prompt = Arc::new(Prompt::new(taxonomy));
        let max_text_chars = config.max_text_chars as usize;
        Ok(match config.classifier.unwrap_or(default) {
            ClassifierKind::Bedrock => {
                let gate = Arc::new(ModelGate::new(crate::gate::GateConfig {
                    max_rps: config.model_max_rps,
                    min_rps: config.model_min_rps,
                    max_tpm: config.model_max_tpm,
                }));
                let settings = BedrockSettings {
                    model_id: config.model_id.clone(),
                    max_text_chars,
                    max_tokens: config.max_tokens,
                    attempts: config.model_attempts,
                };
                Classifier::Bedrock(BedrockClassifier::new(
                    bedrock(),
                    settings,
                    prompt,
                    gate,
                    metrics,
                ))
            }
            ClassifierKind::Local => {
                let dir = config
                    .local_model_dir
                    .clone()
                    .unwrap_or_else(crate::local::default_model_dir);
                let started = std::time::Instant::now();
                let reading = crate::local::Reading {
                    doc_tokens: config.local_doc_tokens as usize,
                    first_tokens: config.local_first_tokens.min(config.local_doc_tokens) as usize,
                    confidence: config.local_confidence,
                };
                let local =
                    crate::local::LocalClassifier::load(&dir, prompt, max_text_chars, reading)?;
                tracing::info!(model = local.model_id(), dir = %dir.display(), load_ms = started.elapsed().as_millis() as u64, "local model loaded");
                Classifier::Local(Arc::new(local))
            }
        })
    }
}
