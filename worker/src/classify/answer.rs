//! What a classifier answers, and why it could not: shared by the Bedrock
//! and the local classifier and by their callers.

use aws_sdk_bedrockruntime::error::SdkError;
use aws_sdk_bedrockruntime::operation::converse::ConverseError;
use docsort_schema::retry::Retryable;
use docsort_schema::{AnswerError, FailureReason, Outcome};

use super::local::LocalError;

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
    /// Set when a Bedrock guardrail intervened: which one, and which policy fired.
    pub blocked: Option<String>,
}

impl Classification {
    /// The record's outcome: the label, `failed/blocked` when a guardrail
    /// intervened, or `failed/unparseable_answer`.
    pub fn outcome(&self) -> Outcome {
        if let Some(detail) = &self.blocked {
            return Outcome::failed(FailureReason::Blocked, detail.clone());
        }
        match &self.label {
            Ok(label) => Outcome::Labeled {
                label: label.clone(),
            },
            Err(e) => Outcome::failed(
                FailureReason::UnparseableAnswer,
                format!("The model's answer after one re-ask was not a category: {e}."),
            ),
        }
    }
}

/// The model could not be asked. Never recorded as `failed`: the message stays
/// on the queue for redelivery.
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error("Bedrock Converse failed ({kind:?}) after {attempts} attempt(s)")]
    Model {
        /// Attempts made.
        attempts: u32,
        /// What kind of failure the last attempt was.
        kind: ModelErrorKind,
        #[source]
        source: Box<SdkError<ConverseError>>,
    },
    #[error("Bedrock Converse request could not be built")]
    Build(#[from] aws_sdk_bedrockruntime::error::BuildError),
    #[error("the local model failed")]
    Local(#[from] LocalError),
    #[error("the local model's thread crashed")]
    Crashed(#[source] tokio::task::JoinError),
}

impl Retryable for ClassifyError {
    /// Throttling, timeouts and 5xx may pass; a refused call (unknown model,
    /// access denied, invalid request) or a broken local model will not.
    fn is_retryable(&self) -> bool {
        matches!(self, ClassifyError::Model { kind, .. } if kind.is_retryable())
    }
}

/// Why a Converse call failed, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelErrorKind {
    /// `ThrottlingException`: slow the whole pool down, then retry.
    Throttled,
    /// A 5xx or a model that is busy, not ready or timed out on the service's side.
    Unavailable,
    /// The attempt took longer than its timeout.
    Timeout,
    /// The request could not be sent or its response not read (connection trouble).
    Transport,
    /// The service refused the request (validation, access denied, unknown
    /// model, quota): a configuration problem that no retry fixes.
    Refused,
}

impl ModelErrorKind {
    /// The kind of a Converse SDK error.
    pub fn of(error: &SdkError<ConverseError>) -> Self {
        match error {
            SdkError::ServiceError(se) => match se.err() {
                ConverseError::ThrottlingException(_) => ModelErrorKind::Throttled,
                ConverseError::ServiceUnavailableException(_)
                | ConverseError::InternalServerException(_)
                | ConverseError::ModelTimeoutException(_)
                | ConverseError::ModelNotReadyException(_)
                | ConverseError::ModelErrorException(_) => ModelErrorKind::Unavailable,
                _ if se.raw().status().is_server_error() => ModelErrorKind::Unavailable,
                _ => ModelErrorKind::Refused,
            },
            SdkError::TimeoutError(_) => ModelErrorKind::Timeout,
            SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => ModelErrorKind::Transport,
            _ => ModelErrorKind::Refused,
        }
    }
}

impl Retryable for ModelErrorKind {
    fn is_retryable(&self) -> bool {
        !matches!(self, ModelErrorKind::Refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_bedrockruntime::types::error::{
        AccessDeniedException, ModelTimeoutException, ServiceUnavailableException,
        ThrottlingException, ValidationException,
    };
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    fn service_error(err: ConverseError, status: u16) -> SdkError<ConverseError> {
        let raw = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        SdkError::service_error(err, raw)
    }

    #[test]
    fn throttles_5xx_and_timeouts_are_retried_refusals_are_not() {
        let cases = [
            (
                service_error(
                    ConverseError::ThrottlingException(ThrottlingException::builder().build()),
                    429,
                ),
                ModelErrorKind::Throttled,
            ),
            (
                service_error(
                    ConverseError::ServiceUnavailableException(
                        ServiceUnavailableException::builder().build(),
                    ),
                    503,
                ),
                ModelErrorKind::Unavailable,
            ),
            (
                service_error(
                    ConverseError::ModelTimeoutException(ModelTimeoutException::builder().build()),
                    408,
                ),
                ModelErrorKind::Unavailable,
            ),
            (
                service_error(
                    ConverseError::ValidationException(ValidationException::builder().build()),
                    400,
                ),
                ModelErrorKind::Refused,
            ),
            (
                service_error(
                    ConverseError::AccessDeniedException(AccessDeniedException::builder().build()),
                    403,
                ),
                ModelErrorKind::Refused,
            ),
            (
                SdkError::timeout_error("attempt timed out"),
                ModelErrorKind::Timeout,
            ),
        ];
        for (error, want) in cases {
            let kind = ModelErrorKind::of(&error);
            assert_eq!(kind, want, "{error:?}");
            assert_eq!(kind.is_retryable(), want != ModelErrorKind::Refused);
        }
    }
}
