//! Asks a Bedrock model (Converse API) for one category.
//!
//! Temperature 0 only (some newer models reject `temperature` with `top_p`), a
//! tiny `maxTokens`, the taxonomy in the system prompt and the document's first
//! characters in the user turn. An answer outside the taxonomy gets one re-ask;
//! a second bad answer is `unparseable_answer`. Every attempt passes the
//! pool-wide [`ModelGate`]; failed attempts are retried by docsort's one
//! [`Backoff`] policy when their [`ModelErrorKind`] says another may succeed.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_bedrockruntime::error::SdkError;
use aws_sdk_bedrockruntime::operation::converse::{
    ConverseError, ConverseOutput as ConverseResponse,
};
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, ConverseOutput, GuardrailAssessment, GuardrailConfiguration,
    GuardrailTrace, ImageBlock, ImageFormat, ImageSource, InferenceConfiguration, Message,
    StopReason, SystemContentBlock,
};
use docsort_schema::retry::{Backoff, Retryable};
use docsort_schema::{AnswerError, Prompt};

use super::answer::{Classification, ClassifyError, ModelErrorKind};
use super::gate::{GateConfig, ModelGate};
use super::pricing::Price;
use crate::events::{Event, Metrics};
use crate::extract::Extracted;

pub use docsort_schema::prompt::DEFAULT_MODEL_ID;

/// Settings of a [`BedrockClassifier`].
#[derive(Debug, Clone)]
pub struct BedrockSettings {
    /// Model or inference profile id.
    pub model_id: String,
    /// Output token cap per call (the answer is one word).
    pub max_tokens: i32,
    /// Time one call attempt may take (set on the client, see
    /// [`crate::pipeline::aws::bedrock_client`]).
    pub attempt_timeout: Duration,
    /// Attempts and delays on throttling, timeouts and 5xx; after the last,
    /// the message is left for redelivery.
    pub retry: Backoff,
    /// The pool-wide request rate limits.
    pub gate: GateConfig,
    /// A Bedrock guardrail applied to every call, when set.
    pub guardrail: Option<Guardrail>,
}

/// A Bedrock guardrail: its id (or ARN) and version (`DRAFT` or a number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guardrail {
    /// Guardrail id or ARN.
    pub id: String,
    /// `DRAFT` or a published version number.
    pub version: String,
}

impl BedrockSettings {
    /// Settings for `model_id` with docsort's defaults.
    pub fn new(model_id: impl Into<String>) -> Self {
        BedrockSettings {
            model_id: model_id.into(),
            max_tokens: 8,
            attempt_timeout: Duration::from_secs(30),
            retry: Backoff::default(),
            gate: GateConfig::default(),
            guardrail: None,
        }
    }
}

/// A Bedrock classifier: one client, one model, one prompt, shared by the pool.
///
/// The client must not retry by itself (see [`crate::pipeline::aws::bedrock_client`]):
/// every attempt goes through the pool's [`ModelGate`], with retries here.
#[derive(Debug, Clone)]
pub struct BedrockClassifier {
    client: aws_sdk_bedrockruntime::Client,
    settings: BedrockSettings,
    prompt: Arc<Prompt>,
    max_text_chars: usize,
    version: String,
    gate: Arc<ModelGate>,
    metrics: Arc<Metrics>,
    /// On-demand price of the model, when known.
    price: Option<Price>,
    /// The guardrail sent with every call (with its trace, to name the policy that fired).
    guardrail: Option<GuardrailConfiguration>,
}

impl BedrockClassifier {
    /// A classifier asking `prompt` of `settings.model_id` about the first
    /// `max_text_chars` characters, counting into `metrics`.
    pub fn new(
        client: aws_sdk_bedrockruntime::Client,
        settings: BedrockSettings,
        prompt: Arc<Prompt>,
        max_text_chars: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        let price = super::pricing::price_for(&settings.model_id);
        if price.is_none() {
            tracing::warn!(model_id = %settings.model_id, "no price known for this model: records will have no cost_usd");
        }
        let version = prompt.label_version(&settings.model_id, max_text_chars, b"");
        let guardrail = settings.guardrail.as_ref().map(|g| {
            GuardrailConfiguration::builder()
                .guardrail_identifier(&g.id)
                .guardrail_version(&g.version)
                .trace(GuardrailTrace::Enabled)
                .build()
        });
        BedrockClassifier {
            guardrail,
            client,
            gate: Arc::new(ModelGate::new(settings.gate)),
            settings,
            prompt,
            max_text_chars,
            version,
            metrics,
            price,
        }
    }

    /// The model id recorded with each label.
    pub fn model_id(&self) -> &str {
        &self.settings.model_id
    }

    /// The label version recorded with each label.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Characters of document text sent to the model.
    pub fn max_text_chars(&self) -> usize {
        self.max_text_chars
    }

    /// The prompt.
    pub fn prompt(&self) -> &Prompt {
        &self.prompt
    }

    /// The model's on-demand price, when known.
    pub fn price(&self) -> Option<Price> {
        self.price
    }

    /// Classifies one document: its text, or its first page's image when
    /// extraction made one.
    pub async fn classify(&self, document: &Extracted) -> Result<Classification, ClassifyError> {
        let first = match &document.image {
            Some(image) => image_message(image.png.clone(), self.prompt.image_message())?,
            None => user(
                self.prompt
                    .user_message(&document.text, self.max_text_chars),
            )?,
        };
        self.ask(vec![first], 2).await
    }

    /// Asks once more after `answer`, which was no category: the re-ask
    /// [`Self::classify`] makes, for a first answer that came from elsewhere
    /// (a batch inference job). `first` is the first user turn as sent there
    /// ([`Self::converse_body`]); `None` when it is not what docsort sends.
    /// The tokens and calls counted are the re-ask's only.
    pub async fn reask_after(
        &self,
        first_request: &serde_json::Value,
        answer: &str,
    ) -> Option<Result<Classification, ClassifyError>> {
        let first = first_message(first_request)?;
        Some(match reask(vec![first], answer, self.prompt.reask()) {
            Ok(messages) => self.ask(messages, 1).await,
            Err(e) => Err(e.into()),
        })
    }

    /// Asks `messages`, and again after an answer that is no category, up to
    /// `tries` answers.
    async fn ask(
        &self,
        mut messages: Vec<Message>,
        tries: usize,
    ) -> Result<Classification, ClassifyError> {
        let mut result = Classification {
            label: Err(AnswerError::Empty),
            input_tokens: 0,
            output_tokens: 0,
            calls: 0,
            blocked: None,
        };
        for attempt in 1..=tries {
            let response = self.converse_with_retries(&messages).await?;
            result.calls += 1;
            if let Some(usage) = response.usage() {
                result.input_tokens += u64::try_from(usage.input_tokens()).unwrap_or(0);
                result.output_tokens += u64::try_from(usage.output_tokens()).unwrap_or(0);
            }
            if *response.stop_reason() == StopReason::GuardrailIntervened {
                result.blocked = Some(self.intervention(&response));
                break;
            }
            let answer = answer_text(&response);
            result.label = self.prompt.parse_answer(&answer).map(|c| c.name.clone());
            if result.label.is_ok() || attempt == tries {
                break;
            }
            tracing::debug!(answer = %answer, "answer is not a category; asking again");
            messages = reask(messages, &answer, self.prompt.reask())?;
        }
        Ok(result)
    }

    /// The Converse request body of [`Self::classify`]'s first call, as JSON:
    /// the same system prompt, first user turn (text, or page image and
    /// question) and inference settings. A batch inference record's
    /// `modelInput` (`modelInvocationType: Converse`). Batch jobs take no
    /// guardrail, so none is set.
    pub fn converse_body(&self, document: &Extracted) -> serde_json::Value {
        let content = match &document.image {
            Some(image) => serde_json::json!([
                {"image": {"format": "png", "source": {"bytes": aws_smithy_types::base64::encode(&image.png)}}},
                {"text": self.prompt.image_message()},
            ]),
            None => serde_json::json!([
                {"text": self.prompt.user_message(&document.text, self.max_text_chars)}
            ]),
        };
        serde_json::json!({
            "system": [{"text": self.prompt.system()}],
            "messages": [{"role": "user", "content": content}],
            "inferenceConfig": {"maxTokens": self.settings.max_tokens, "temperature": 0.0},
        })
    }

    /// Which guardrail intervened, and which of its policies fired.
    fn intervention(&self, response: &ConverseResponse) -> String {
        let guardrail = self
            .settings
            .guardrail
            .as_ref()
            .map_or_else(String::new, |g| {
                format!(" {} (version {})", g.id, g.version)
            });
        let trace = response.trace().and_then(|t| t.guardrail());
        let mut fired: Vec<String> = Vec::new();
        if let Some(trace) = trace {
            let inputs = trace
                .input_assessment()
                .into_iter()
                .flat_map(|m| m.values());
            let outputs = trace
                .output_assessments()
                .into_iter()
                .flat_map(|m| m.values().flatten());
            for assessment in inputs.chain(outputs) {
                for policy in policies_fired(assessment) {
                    if !fired.contains(&policy) {
                        fired.push(policy);
                    }
                }
            }
        }
        let fired = if fired.is_empty() {
            "its trace names no policy".to_owned()
        } else {
            fired.join(", ")
        };
        format!("The Bedrock guardrail{guardrail} intervened: {fired}. No label is stored.")
    }

    async fn converse_with_retries(
        &self,
        messages: &[Message],
    ) -> Result<ConverseResponse, ClassifyError> {
        let retry = self.settings.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.gate.acquire().await;
            self.metrics.emit(Event::ModelRequest);
            let error = match self.converse(messages).await {
                Ok(response) => {
                    let tokens = response
                        .usage()
                        .map_or(0, |u| u.total_tokens().max(0) as u64);
                    self.gate.on_success(tokens);
                    return Ok(response);
                }
                Err(e) => e,
            };
            let kind = ModelErrorKind::of(&error);
            if kind == ModelErrorKind::Throttled {
                self.gate.on_throttle();
                self.metrics.emit(Event::Throttled {
                    rate: self.gate.rate(),
                });
            }
            if !kind.is_retryable() || !retry.retries_after(attempt) {
                return Err(ClassifyError::Model {
                    attempts: attempt,
                    kind,
                    source: Box::new(error),
                });
            }
            let delay = retry.delay(attempt);
            tracing::debug!(
                ?kind,
                attempt,
                delay_ms = delay.as_millis() as u64,
                "model call failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn converse(
        &self,
        messages: &[Message],
    ) -> Result<ConverseResponse, SdkError<ConverseError>> {
        self.client
            .converse()
            .model_id(&self.settings.model_id)
            .system(SystemContentBlock::Text(self.prompt.system().to_owned()))
            .set_messages(Some(messages.to_vec()))
            .set_guardrail_config(self.guardrail.clone())
            .inference_config(
                InferenceConfiguration::builder()
                    .max_tokens(self.settings.max_tokens)
                    .temperature(0.0)
                    .build(),
            )
            .send()
            .await
    }
}

/// The conversation that asks again after `answer`. Bedrock refuses a blank
/// text block, so an empty answer is not echoed: the re-ask joins the first
/// user turn as a second block. Any other answer is shown as the assistant's
/// turn, then the re-ask follows as the user's.
fn reask(
    mut messages: Vec<Message>,
    answer: &str,
    reask: String,
) -> Result<Vec<Message>, aws_sdk_bedrockruntime::error::BuildError> {
    if answer.trim().is_empty() {
        let first = messages.remove(0);
        let mut content = first.content().to_vec();
        content.push(ContentBlock::Text(reask));
        messages.insert(
            0,
            Message::builder()
                .role(ConversationRole::User)
                .set_content(Some(content))
                .build()?,
        );
    } else {
        messages.push(
            Message::builder()
                .role(ConversationRole::Assistant)
                .content(ContentBlock::Text(answer.to_owned()))
                .build()?,
        );
        messages.push(user(reask)?);
    }
    Ok(messages)
}

/// A user turn of a page image (PNG) and the question.
fn image_message(
    png: Vec<u8>,
    question: String,
) -> Result<Message, aws_sdk_bedrockruntime::error::BuildError> {
    Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Image(
            ImageBlock::builder()
                .format(ImageFormat::Png)
                .source(ImageSource::Bytes(Blob::new(png)))
                .build()?,
        ))
        .content(ContentBlock::Text(question))
        .build()
}

/// The first user turn of a request body [`BedrockClassifier::converse_body`]
/// wrote; `None` for any other shape.
fn first_message(body: &serde_json::Value) -> Option<Message> {
    let blocks = body["messages"][0]["content"].as_array()?;
    match blocks.as_slice() {
        [text] => user(text["text"].as_str()?.to_owned()).ok(),
        [image, question] => {
            let png = aws_smithy_types::base64::decode(image["image"]["source"]["bytes"].as_str()?)
                .ok()?;
            image_message(png, question["text"].as_str()?.to_owned()).ok()
        }
        _ => None,
    }
}

fn user(text: String) -> Result<Message, aws_sdk_bedrockruntime::error::BuildError> {
    Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text(text))
        .build()
}

/// The policies of `assessment` that acted (blocked or masked), by name.
fn policies_fired(assessment: &GuardrailAssessment) -> Vec<String> {
    let acted = |action: &str| action != "NONE";
    let mut out = Vec::new();
    if let Some(p) = assessment.content_policy() {
        out.extend(
            p.filters()
                .iter()
                .filter(|f| acted(f.action().as_str()))
                .map(|f| format!("content filter {}", f.r#type().as_str())),
        );
    }
    if let Some(p) = assessment.topic_policy() {
        out.extend(
            p.topics()
                .iter()
                .filter(|t| acted(t.action().as_str()))
                .map(|t| format!("denied topic {:?}", t.name())),
        );
    }
    if let Some(p) = assessment.word_policy() {
        out.extend(
            p.custom_words()
                .iter()
                .filter(|w| acted(w.action().as_str()))
                .map(|_| "word filter (custom words)".to_owned()),
        );
        out.extend(
            p.managed_word_lists()
                .iter()
                .filter(|w| acted(w.action().as_str()))
                .map(|w| format!("word filter {}", w.r#type().as_str())),
        );
    }
    if let Some(p) = assessment.sensitive_information_policy() {
        out.extend(
            p.pii_entities()
                .iter()
                .filter(|e| acted(e.action().as_str()))
                .map(|e| format!("sensitive information {}", e.r#type().as_str())),
        );
        out.extend(
            p.regexes()
                .iter()
                .filter(|r| acted(r.action().as_str()))
                .map(|r| format!("sensitive information regex {:?}", r.name().unwrap_or(""))),
        );
    }
    if assessment.contextual_grounding_policy().is_some() && out.is_empty() {
        out.push("contextual grounding".to_owned());
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    fn roles_and_blocks(messages: &[Message]) -> Vec<(String, Vec<String>)> {
        messages
            .iter()
            .map(|m| {
                (
                    m.role().as_str().to_owned(),
                    m.content()
                        .iter()
                        .filter_map(|b| b.as_text().ok().cloned())
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn an_empty_answer_is_never_sent_back_as_a_blank_turn() {
        let first = vec![user("<document>".into()).unwrap()];
        let again = reask(first.clone(), "  ", "One word.".into()).unwrap();
        assert_eq!(
            roles_and_blocks(&again),
            [(
                "user".to_owned(),
                vec!["<document>".to_owned(), "One word.".to_owned()]
            )]
        );
        let chatty = reask(first, "Well, it looks like", "One word.".into()).unwrap();
        assert_eq!(
            roles_and_blocks(&chatty),
            [
                ("user".to_owned(), vec!["<document>".to_owned()]),
                (
                    "assistant".to_owned(),
                    vec!["Well, it looks like".to_owned()]
                ),
                ("user".to_owned(), vec!["One word.".to_owned()]),
            ]
        );
    }

    /// A batch record's request reads back as the first turn `classify` sends.
    #[test]
    fn a_staged_request_reads_back_as_its_first_turn() {
        let client = aws_sdk_bedrockruntime::Client::from_conf(
            aws_sdk_bedrockruntime::Config::builder()
                .behavior_version(aws_sdk_bedrockruntime::config::BehaviorVersion::latest())
                .build(),
        );
        let classifier = BedrockClassifier::new(
            client,
            BedrockSettings::new(DEFAULT_MODEL_ID),
            Arc::new(Prompt::new(docsort_schema::Taxonomy::default())),
            100,
            Arc::new(Metrics::default()),
        );
        let text = Extracted::from_text("INVOICE No. 7");
        let body = classifier.converse_body(&text);
        assert_eq!(body["inferenceConfig"]["temperature"], 0.0);
        assert_eq!(body["inferenceConfig"]["maxTokens"], 8);
        assert_eq!(body["system"][0]["text"], classifier.prompt().system());
        let first = first_message(&body).unwrap();
        assert_eq!(
            roles_and_blocks(&[first]),
            [(
                "user".to_owned(),
                vec![classifier.prompt().user_message("INVOICE No. 7", 100)]
            )]
        );
        let mut scan = Extracted::from_text("");
        scan.image = Some(crate::extract::PageImage {
            png: b"\x89PNG fake".to_vec(),
            width: 2,
            height: 3,
        });
        let first = first_message(&classifier.converse_body(&scan)).unwrap();
        let image = first.content()[0].as_image().unwrap();
        assert_eq!(
            image.source().unwrap().as_bytes().unwrap().as_ref(),
            b"\x89PNG fake"
        );
        assert_eq!(
            first.content()[1].as_text().unwrap(),
            &classifier.prompt().image_message()
        );
        assert!(first_message(&serde_json::json!({"messages": []})).is_none());
    }
}
