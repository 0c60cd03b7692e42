//! docsort's contracts, shared by the producer, the worker and downstream readers.
//!
//! - [`taxonomy`]: the categories a document can be sorted into.
//! - [`message`]: the queue bodies the worker accepts (docsort jobs, S3 notifications,
//!   SNS-wrapped notifications, EventBridge events).
//! - [`record`]: the labels table item, its DynamoDB conversion and a typed reader.
//! - [`prompt`]: the classification prompt, answer parsing and `prompt_version`.
//!
//! This crate has no AWS SDK and no async runtime, so any Rust app can depend on it.

pub mod message;
pub mod prompt;
pub mod record;
pub mod taxonomy;

pub use message::{Delivery, Job, MessageError, Source};
pub use prompt::{AnswerError, Prompt};
pub use record::{FailureReason, LabelRecord, RecordError, Status};
pub use taxonomy::{Category, Taxonomy, TaxonomyError};
