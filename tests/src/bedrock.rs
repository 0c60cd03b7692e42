//! A Converse-compatible Bedrock Runtime stand-in, scripted per test.
//!
//! It serves `POST /model/{modelId}/converse` on a free loopback port, records
//! every call, and replies what the test's script says: an answer, a throttle
//! (HTTP 429 with `x-amzn-ErrorType: ThrottlingException`), a 503, after an
//! optional delay. The real SDK client talks to it through
//! `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` or an explicit endpoint.
//!
//! Before the script is asked, a request is checked as Bedrock checks it
//! ([`validate`]): what Bedrock refuses gets the same HTTP 400
//! `ValidationException` and wording, is recorded in [`StandIn::refusals`],
//! and never reaches the script. A [`crate::env::TestEnv`] fails its test
//! when its stand-in refused anything, so a green test means every call
//! would have been accepted on AWS.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::bedrock_batch::BatchControl;

/// One Converse request as the stand-in saw it.
#[derive(Debug, Clone)]
pub struct Call {
    /// The model id from the path (decoded).
    pub model_id: String,
    /// The system prompt.
    pub system: String,
    /// `(role, text)` of each message, in order.
    pub turns: Vec<(String, String)>,
    /// The document text between the first user turn's delimiters.
    pub document: String,
    /// `inferenceConfig` as sent.
    pub inference_config: Value,
    /// The image blocks of the first user turn, decoded.
    pub images: Vec<SeenImage>,
    /// `guardrailConfig` as sent (`Null` without one).
    pub guardrail: Value,
    /// When it arrived.
    pub at: Instant,
}

/// An image block as the stand-in received it (already validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenImage {
    /// `png`, `jpeg`, `gif` or `webp`.
    pub format: String,
    /// Decoded size in bytes.
    pub bytes: usize,
    /// Pixel width.
    pub width: u32,
    /// Pixel height.
    pub height: u32,
}

impl SeenImage {
    /// Input tokens Claude bills for this image: about width x height / 750.
    pub fn tokens(&self) -> usize {
        (self.width as usize * self.height as usize).div_ceil(750)
    }
}

/// What the stand-in answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A successful response whose text is this.
    Answer(String),
    /// HTTP 429 ThrottlingException.
    Throttle,
    /// HTTP 503 ServiceUnavailableException.
    Unavailable,
    /// The request's guardrail intervenes (`stopReason: guardrail_intervened`),
    /// its trace naming this content filter type (e.g. `PROMPT_ATTACK`). A
    /// request without a guardrail cannot be intervened on: that is recorded
    /// as a fidelity error and fails the test.
    Intervene(String),
    /// The inner reply, after a delay.
    After(Duration, Box<Reply>),
}

/// Decides the reply to each call.
pub type Script = Arc<dyn Fn(&Call) -> Reply + Send + Sync>;

struct Shared {
    script: Script,
    calls: Mutex<Vec<Call>>,
    refusals: Arc<Mutex<Vec<String>>>,
}

/// A running stand-in; stops when dropped.
pub struct StandIn {
    /// `http://127.0.0.1:PORT`: Bedrock Runtime and the control plane's batch jobs.
    pub endpoint: String,
    /// The batch inference jobs (control plane).
    pub batch: Arc<BatchControl>,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl StandIn {
    /// Starts a stand-in that replies by `script`.
    pub async fn start(script: impl Fn(&Call) -> Reply + Send + Sync + 'static) -> StandIn {
        let script: Script = Arc::new(script);
        let refusals = Arc::new(Mutex::default());
        let shared = Arc::new(Shared {
            script: script.clone(),
            calls: Mutex::default(),
            refusals: refusals.clone(),
        });
        let moto = crate::env::sdk_config(&crate::moto::shared().endpoint).await;
        let batch = Arc::new(BatchControl::new(
            script,
            docsort_worker::pipeline::aws::s3_client(&moto),
            refusals,
        ));
        let app = Router::new()
            .route("/model/{model_id}/converse", post(converse))
            .with_state(shared.clone())
            .merge(crate::bedrock_batch::routes(batch.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let endpoint = format!("http://{}", listener.local_addr().expect("bound address"));
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("stand-in server runs");
        });
        StandIn {
            endpoint,
            batch,
            shared,
            server,
        }
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().expect("calls lock").clone()
    }

    /// How many calls so far (refused ones not counted).
    pub fn call_count(&self) -> usize {
        self.shared.calls.lock().expect("calls lock").len()
    }

    /// The `ValidationException` messages of every refused request so far.
    pub fn refusals(&self) -> Vec<String> {
        self.shared.refusals.lock().expect("refusals lock").clone()
    }
}

/// The label the "hash" script answers for a document: a stable function of
/// its text, so a test can tell which document got which answer.
pub fn label_for(document: &str) -> &'static str {
    const LABELS: [&str; 8] = [
        "invoice", "receipt", "contract", "resume", "letter", "form", "report", "manual",
    ];
    let hash = document.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    LABELS[(hash % 8) as usize]
}

/// The text between `<document>\n` and `\n</document>` of a user message.
pub fn document_of(user_message: &str) -> String {
    user_message
        .split_once("<document>\n")
        .and_then(|(_, rest)| rest.rsplit_once("\n</document>"))
        .map(|(doc, _)| doc.to_owned())
        .unwrap_or_default()
}

fn texts(blocks: Option<&Value>) -> String {
    blocks
        .and_then(Value::as_array)
        .map(|b| {
            b.iter()
                .filter_map(|c| c.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

async fn converse(
    State(shared): State<Arc<Shared>>,
    Path(model_id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    if let Err(message) = validate(&body) {
        shared
            .refusals
            .lock()
            .expect("refusals lock")
            .push(message.clone());
        return error(StatusCode::BAD_REQUEST, "ValidationException", &message);
    }
    let call = call_of(&model_id, &body, Instant::now());
    let mut reply = (shared.script)(&call);
    let input_tokens = input_tokens(&call);
    let guarded = !call.guardrail.is_null();
    shared.calls.lock().expect("calls lock").push(call);
    while let Reply::After(delay, inner) = reply {
        tokio::time::sleep(delay).await;
        reply = *inner;
    }
    match reply {
        Reply::Intervene(filter) if guarded => {
            let input_tokens = input_tokens.max(1);
            Json(json!({
                "output": {"message": {"role": "assistant", "content": [{"text": "Sorry, the model cannot answer this question."}]}},
                "stopReason": "guardrail_intervened",
                "usage": {"inputTokens": input_tokens, "outputTokens": 0, "totalTokens": input_tokens},
                "metrics": {"latencyMs": 1},
                "trace": {"guardrail": {"inputAssessment": {"stand-in-guardrail": {
                    "contentPolicy": {"filters": [{"type": filter, "confidence": "HIGH", "filterStrength": "HIGH", "action": "BLOCKED", "detected": true}]},
                    "invocationMetrics": {"guardrailProcessingLatency": 1, "usage": {"contentPolicyUnits": 1, "topicPolicyUnits": 0, "wordPolicyUnits": 0, "sensitiveInformationPolicyUnits": 0, "sensitiveInformationPolicyFreeUnits": 0, "contextualGroundingPolicyUnits": 0}}
                }}}}
            }))
            .into_response()
        }
        Reply::Intervene(_) => {
            let message = "the script asked for a guardrail intervention on a call without guardrailConfig: Bedrock cannot do that".to_owned();
            shared
                .refusals
                .lock()
                .expect("refusals lock")
                .push(message.clone());
            error(StatusCode::BAD_REQUEST, "ValidationException", &message)
        }
        Reply::Answer(text) => {
            let input_tokens = input_tokens.max(1);
            let output_tokens = text.split_whitespace().count().max(1);
            Json(json!({
                "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                "stopReason": "end_turn",
                "usage": {"inputTokens": input_tokens, "outputTokens": output_tokens, "totalTokens": input_tokens + output_tokens},
                "metrics": {"latencyMs": 1}
            }))
            .into_response()
        }
        Reply::Throttle => error(
            StatusCode::TOO_MANY_REQUESTS,
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
        ),
        Reply::Unavailable => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableException",
            "Service unavailable.",
        ),
        Reply::After(..) => unreachable!("delays are unwrapped above"),
    }
}

/// The call a Converse request body makes (already validated).
pub fn call_of(model_id: &str, body: &Value, at: Instant) -> Call {
    let turns: Vec<(String, String)> = body["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|msg| {
                    (
                        msg["role"].as_str().unwrap_or("").to_owned(),
                        texts(msg.get("content")),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let images = body["messages"][0]["content"]
        .as_array()
        .map(|blocks| blocks.iter().filter_map(seen_image).collect())
        .unwrap_or_default();
    Call {
        model_id: model_id.to_owned(),
        system: texts(body.get("system")),
        document: turns
            .first()
            .map(|(_, t)| document_of(t))
            .unwrap_or_default(),
        turns,
        inference_config: body.get("inferenceConfig").cloned().unwrap_or(Value::Null),
        images,
        guardrail: body.get("guardrailConfig").cloned().unwrap_or(Value::Null),
        at,
    }
}

/// Input tokens the stand-in bills a call: a token per 4 characters of
/// text, and width x height / 750 per image.
pub fn input_tokens(call: &Call) -> usize {
    (call.system.len() + call.turns.iter().map(|(_, t)| t.len()).sum::<usize>()) / 4
        + call.images.iter().map(SeenImage::tokens).sum::<usize>()
}

/// An AWS JSON error response: the type in `x-amzn-ErrorType`, the message in the body.
pub(crate) fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert("x-amzn-ErrorType", kind.parse().expect("valid header"));
    (status, headers, Json(json!({ "message": message }))).into_response()
}

/// Bedrock's checks of a Converse request body (Claude 4.5 models), with its
/// wording: `Err` is the `ValidationException` message.
pub fn validate(body: &Value) -> Result<(), String> {
    let messages = body["messages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if messages.is_empty() {
        return Err("A conversation must start with a user message. Try again with a conversation that starts with a user message.".into());
    }
    let mut previous: Option<&str> = None;
    for (i, message) in messages.iter().enumerate() {
        let role = message["role"].as_str().unwrap_or("");
        if i == 0 && role != "user" {
            return Err("A conversation must start with a user message. Try again with a conversation that starts with a user message.".into());
        }
        if previous == Some(role) {
            return Err("A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.".into());
        }
        previous = Some(role);
        let content = message["content"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if content.is_empty() {
            return Err(format!(
                "The content field in the Message object at messages.{i} is empty. Add a ContentBlock object to the content field and try again."
            ));
        }
        for (j, block) in content.iter().enumerate() {
            check_block(block, &format!("messages.{i}.content.{j}"))?;
        }
    }
    if let Some(system) = body.get("system").and_then(Value::as_array) {
        for (j, block) in system.iter().enumerate() {
            if block
                .get("text")
                .and_then(Value::as_str)
                .is_some_and(|t| t.trim().is_empty())
            {
                return Err(format!(
                    "The text field in the SystemContentBlock object at system.{j} is blank. Add text to the text field, and try again."
                ));
            }
        }
    }
    if let Some(guardrail) = body.get("guardrailConfig") {
        check_guardrail(guardrail)?;
    }
    let config = &body["inferenceConfig"];
    if let Some(max) = config.get("maxTokens") {
        match max.as_i64() {
            Some(n) if (1..=64_000).contains(&n) => {}
            _ => {
                return Err(format!(
                    "The maximum tokens you requested exceeds the model limit of 64000. Try again with a maximum tokens value that is lower than 64000. (got {max})"
                ))
            }
        }
    }
    if let Some(t) = config.get("temperature") {
        match t.as_f64() {
            Some(t) if (0.0..=1.0).contains(&t) => {}
            _ => return Err(format!("temperature: range: 0..1 (got {t})")),
        }
        if config.get("topP").is_some() {
            return Err("`temperature` and `top_p` cannot both be specified for this model. Please use only one.".into());
        }
    }
    Ok(())
}

/// `guardrailConfig`: an identifier, a version (`DRAFT` or a number) and a
/// known trace setting.
fn check_guardrail(guardrail: &Value) -> Result<(), String> {
    let id = guardrail["guardrailIdentifier"].as_str().unwrap_or("");
    if id.is_empty() || id.len() > 2048 {
        return Err("1 validation error detected: Value at 'guardrailConfig.guardrailIdentifier' failed to satisfy constraint: Member must satisfy regular expression pattern: (([a-z0-9]+)|(arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:guardrail/[a-z0-9]+))".into());
    }
    let version = guardrail["guardrailVersion"].as_str().unwrap_or("");
    let numbered =
        !version.is_empty() && version.len() <= 8 && version.bytes().all(|b| b.is_ascii_digit());
    if version != "DRAFT" && !numbered {
        return Err("1 validation error detected: Value at 'guardrailConfig.guardrailVersion' failed to satisfy constraint: Member must satisfy regular expression pattern: (([1-9][0-9]{0,7})|(DRAFT))".into());
    }
    match guardrail.get("trace").map(Value::as_str) {
        None | Some(Some("enabled" | "disabled" | "enabled_full")) => Ok(()),
        Some(other) => Err(format!(
            "1 validation error detected: Value '{}' at 'guardrailConfig.trace' failed to satisfy constraint: Member must satisfy enum value set: [enabled, disabled, enabled_full]",
            other.unwrap_or("")
        )),
    }
}

/// An image block that passed [`validate`], as the script sees it.
fn seen_image(block: &Value) -> Option<SeenImage> {
    let image = block.get("image")?;
    let format = image["format"].as_str()?.to_owned();
    let bytes = aws_smithy_types::base64::decode(image["source"]["bytes"].as_str()?).ok()?;
    let (width, height) = match format.as_str() {
        "png" => png_dimensions(&bytes)?,
        "jpeg" => jpeg_dimensions(&bytes)?,
        _ => (0, 0),
    };
    Some(SeenImage {
        format,
        bytes: bytes.len(),
        width,
        height,
    })
}

/// One content block: blank text and bad images are refused.
fn check_block(block: &Value, at: &str) -> Result<(), String> {
    if let Some(text) = block.get("text").and_then(Value::as_str) {
        if text.trim().is_empty() {
            return Err(format!(
                "The text field in the ContentBlock object at {at} is blank. Add text to the text field, and try again."
            ));
        }
    }
    if let Some(image) = block.get("image") {
        check_image(image, at)?;
    }
    Ok(())
}

/// An image block: base64 bytes of the declared format, at most 3.75 MB and
/// 8,000 px on each side.
fn check_image(image: &Value, at: &str) -> Result<(), String> {
    let format = image["format"].as_str().unwrap_or("");
    let encoded = image["source"]["bytes"].as_str().unwrap_or("");
    let bytes = aws_smithy_types::base64::decode(encoded)
        .map_err(|_| format!("The image at {at} is not valid base64."))?;
    if bytes.len() > 3_750_000 {
        return Err(format!(
            "The image at {at} exceeds the maximum image size of 3.75 MB ({} bytes).",
            bytes.len()
        ));
    }
    let dimensions = match format {
        "png" if bytes.starts_with(b"\x89PNG\r\n\x1a\n") => png_dimensions(&bytes),
        "jpeg" if bytes.starts_with(&[0xff, 0xd8]) => jpeg_dimensions(&bytes),
        "gif" if bytes.starts_with(b"GIF8") => bytes.get(6..10).map(|d| {
            (
                u32::from(u16::from_le_bytes([d[0], d[1]])),
                u32::from(u16::from_le_bytes([d[2], d[3]])),
            )
        }),
        "webp" if bytes.get(8..12) == Some(b"WEBP") => Some((1, 1)),
        _ => None,
    };
    let Some((width, height)) = dimensions else {
        return Err(format!(
            "The image at {at} could not be processed: its bytes are not a valid {format} image. Check the image format and try again."
        ));
    };
    if width > 8000 || height > 8000 {
        return Err(format!(
            "The image at {at} is {width}x{height} pixels; images can be at most 8000 pixels on each side."
        ));
    }
    Ok(())
}

fn png_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    let ihdr = bytes.get(12..24)?;
    (&ihdr[..4] == b"IHDR").then(|| {
        (
            u32::from_be_bytes([ihdr[4], ihdr[5], ihdr[6], ihdr[7]]),
            u32::from_be_bytes([ihdr[8], ihdr[9], ihdr[10], ihdr[11]]),
        )
    })
}

/// Width and height from a JPEG's first start-of-frame segment.
fn jpeg_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    let mut i = 2;
    while i + 9 < bytes.len() {
        if bytes[i] != 0xff {
            return None;
        }
        let marker = bytes[i + 1];
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        if matches!(marker, 0xc0..=0xcf) && !matches!(marker, 0xc4 | 0xc8 | 0xcc) {
            let h = u32::from(u16::from_be_bytes([bytes[i + 5], bytes[i + 6]]));
            let w = u32::from(u16::from_be_bytes([bytes[i + 7], bytes[i + 8]]));
            return Some((w, h));
        }
        i += 2 + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::validate;
    use serde_json::json;

    fn body(messages: serde_json::Value) -> serde_json::Value {
        json!({"messages": messages, "system": [{"text": "Sort."}], "inferenceConfig": {"maxTokens": 8, "temperature": 0.0}})
    }

    fn user(text: &str) -> serde_json::Value {
        json!({"role": "user", "content": [{"text": text}]})
    }

    fn assistant(text: &str) -> serde_json::Value {
        json!({"role": "assistant", "content": [{"text": text}]})
    }

    #[test]
    fn what_bedrock_accepts_passes() {
        assert_eq!(validate(&body(json!([user("doc")]))), Ok(()));
        assert_eq!(
            validate(&body(json!([
                user("doc"),
                assistant("Banana"),
                user("Again")
            ]))),
            Ok(())
        );
        let two_blocks =
            json!([{"role": "user", "content": [{"text": "doc"}, {"text": "One word."}]}]);
        assert_eq!(validate(&body(two_blocks)), Ok(()));
        let guarded = json!({"messages": [user("doc")], "guardrailConfig": {"guardrailIdentifier": "gr1", "guardrailVersion": "DRAFT", "trace": "enabled"}});
        assert_eq!(validate(&guarded), Ok(()));
    }

    #[test]
    fn what_bedrock_refuses_is_refused_with_its_wording() {
        let blank = validate(&body(json!([user("doc"), assistant(" "), user("Again")])));
        assert_eq!(
            blank.unwrap_err(),
            "The text field in the ContentBlock object at messages.1.content.0 is blank. Add text to the text field, and try again."
        );
        let refused = [
            body(json!([])),
            body(json!([assistant("hi"), user("doc")])),
            body(json!([user("a"), user("b")])),
            body(json!([{"role": "user", "content": []}])),
            json!({"messages": [user("doc")], "system": [{"text": ""}]}),
            json!({"messages": [user("doc")], "inferenceConfig": {"maxTokens": 0}}),
            json!({"messages": [user("doc")], "inferenceConfig": {"maxTokens": 64001}}),
            json!({"messages": [user("doc")], "inferenceConfig": {"temperature": 1.5}}),
            json!({"messages": [user("doc")], "inferenceConfig": {"temperature": 0.0, "topP": 0.9}}),
            body(
                json!([{"role": "user", "content": [{"image": {"format": "png", "source": {"bytes": "not base64!"}}}]}]),
            ),
            body(
                json!([{"role": "user", "content": [{"image": {"format": "png", "source": {"bytes": "/9j/4AAQ"}}}]}]),
            ),
            json!({"messages": [user("doc")], "guardrailConfig": {"guardrailIdentifier": "gr1", "guardrailVersion": "v1"}}),
            json!({"messages": [user("doc")], "guardrailConfig": {"guardrailVersion": "1"}}),
            json!({"messages": [user("doc")], "guardrailConfig": {"guardrailIdentifier": "gr1", "guardrailVersion": "DRAFT", "trace": "on"}}),
        ];
        for b in refused {
            assert!(validate(&b).is_err(), "{b}");
        }
    }
}
