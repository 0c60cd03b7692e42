//! A Converse-compatible Bedrock Runtime stand-in, scripted per test.
//!
//! It serves `POST /model/{modelId}/converse` on a free loopback port, records
//! every call, and replies what the test's script says: an answer, a throttle
//! (HTTP 429 with `x-amzn-ErrorType: ThrottlingException`), a 503, after an
//! optional delay. The real SDK client talks to it through
//! `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` or an explicit endpoint.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

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
    /// When it arrived.
    pub at: Instant,
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
    /// The inner reply, after a delay.
    After(Duration, Box<Reply>),
}

/// Decides the reply to each call.
pub type Script = Arc<dyn Fn(&Call) -> Reply + Send + Sync>;

struct Shared {
    script: Script,
    calls: Mutex<Vec<Call>>,
}

/// A running stand-in; stops when dropped.
pub struct StandIn {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
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
        let shared = Arc::new(Shared {
            script: Arc::new(script),
            calls: Mutex::default(),
        });
        let app = Router::new()
            .route("/model/{model_id}/converse", post(converse))
            .with_state(shared.clone());
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
            shared,
            server,
        }
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().expect("calls lock").clone()
    }

    /// How many calls so far.
    pub fn call_count(&self) -> usize {
        self.shared.calls.lock().expect("calls lock").len()
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
    let call = Call {
        model_id,
        system: texts(body.get("system")),
        document: turns
            .first()
            .map(|(_, t)| document_of(t))
            .unwrap_or_default(),
        turns,
        inference_config: body.get("inferenceConfig").cloned().unwrap_or(Value::Null),
        at: Instant::now(),
    };
    let mut reply = (shared.script)(&call);
    let input_chars = call.system.len() + call.turns.iter().map(|(_, t)| t.len()).sum::<usize>();
    shared.calls.lock().expect("calls lock").push(call);
    while let Reply::After(delay, inner) = reply {
        tokio::time::sleep(delay).await;
        reply = *inner;
    }
    match reply {
        Reply::Answer(text) => {
            let input_tokens = (input_chars / 4).max(1);
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

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert("x-amzn-ErrorType", kind.parse().expect("valid header"));
    (status, headers, Json(json!({ "message": message }))).into_response()
}
