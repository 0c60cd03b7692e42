//! docsort's contracts, shared by the producer, the worker and downstream readers.
//!
//! - [`taxonomy`]: the categories a document can be sorted into.
//! - [`message`]: the queue bodies the worker accepts (docsort jobs, S3 notifications,
//!   SNS-wrapped notifications, EventBridge events).
//! - [`record`]: the labels table item, its DynamoDB conversion and a typed reader.
//! - [`prompt`]: the classification prompt, answer parsing and the label version.
//! - [`retry`]: the one backoff policy the producer and the worker retry with.
//!
//! This crate has no AWS SDK and no async runtime, so any Rust app can depend on it.

pub mod message;
pub mod prompt;
pub mod record;
pub mod retry;
pub mod taxonomy;

pub use message::{Delivery, Job, MessageError};
pub use prompt::{AnswerError, Prompt};
pub use record::{FailureReason, LabelRecord, Outcome, RecordError, Source, Status, TextSource};
pub use taxonomy::{Category, Taxonomy, TaxonomyError};
