//! Asks a Bedrock model (Converse API) for one category.
//!
//! Temperature 0 only (some newer models reject `temperature` with `top_p`), a
//! tiny `maxTokens`, the taxonomy in the system prompt and the document's first
//! characters in the user turn. An answer outside the taxonomy gets one re-ask;
//! a second bad answer is `unparseable_answer`.

use std::sync::Arc;

use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::converse::{ConverseError, ConverseOutput as ConverseResponse};
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, ConverseOutput, InferenceConfiguration, Message, SystemContentBlock,
};
use docsort_schema::{AnswerError, Prompt};

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
    #[error("Bedrock Converse failed after the SDK's retries ({kind})")]
    Model {
        /// Error code, e.g. `ThrottlingException`, or `timeout` / `dispatch`.
        kind: String,
        #[source]
        source: Box<SdkError<ConverseError>>,
    },
    #[error("Bedrock Converse request could not be built")]
    Build(#[from] aws_sdk_bedrockruntime::error::BuildError),
}

impl ClassifyError {
    /// Whether the model service asked us to slow down.
    pub fn is_throttling(&self) -> bool {
        matches!(self, ClassifyError::Model { kind, .. } if kind == "ThrottlingException")
    }
}

/// A Bedrock classifier: one client, one model, one prompt, shared by the pool.
#[derive(Debug, Clone)]
pub struct BedrockClassifier {
    client: aws_sdk_bedrockruntime::Client,
    model_id: String,
    prompt: Arc<Prompt>,
    max_text_chars: usize,
    max_tokens: i32,
}

impl BedrockClassifier {
    /// A classifier for `model_id` with `prompt`.
    pub fn new(
        client: aws_sdk_bedrockruntime::Client,
        model_id: String,
        prompt: Arc<Prompt>,
        max_text_chars: usize,
        max_tokens: i32,
    ) -> Self {
        BedrockClassifier { client, model_id, prompt, max_text_chars, max_tokens }
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
        let mut result = Classification { label: Err(AnswerError::Empty), input_tokens: 0, output_tokens: 0, calls: 0 };
        for _ in 0..2 {
            let response = self.converse(&messages).await?;
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
            messages.push(Message::builder().role(ConversationRole::Assistant).content(ContentBlock::Text(answer)).build()?);
            messages.push(user(self.prompt.reask())?);
        }
        Ok(result)
    }

    async fn converse(&self, messages: &[Message]) -> Result<ConverseResponse, ClassifyError> {
        self.client
            .converse()
            .model_id(&self.model_id)
            .system(SystemContentBlock::Text(self.prompt.system().to_owned()))
            .set_messages(Some(messages.to_vec()))
            .inference_config(InferenceConfiguration::builder().max_tokens(self.max_tokens).temperature(0.0).build())
            .send()
            .await
            .map_err(|e| {
                let kind = match &e {
                    SdkError::ServiceError(se) => se.err().code().unwrap_or("ServiceError").to_owned(),
                    SdkError::TimeoutError(_) => "timeout".to_owned(),
                    SdkError::DispatchFailure(_) => "dispatch".to_owned(),
                    SdkError::ResponseError(_) => "response".to_owned(),
                    _ => "other".to_owned(),
                };
                ClassifyError::Model { kind, source: Box::new(e) }
            })
    }
}

fn user(text: String) -> Result<Message, aws_sdk_bedrockruntime::error::BuildError> {
    Message::builder().role(ConversationRole::User).content(ContentBlock::Text(text)).build()
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
