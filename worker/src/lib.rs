//! docsort's worker: takes S3 keys from SQS, extracts PDF text, asks a Bedrock
//! model for one category and writes the label to the DynamoDB labels table.
//!
//! `main.rs` only parses [`config`], sets up logging, builds the AWS clients once
//! and calls [`service::run`]. Tests call the same functions with their own clients
//! and a [`tokio_util::sync::CancellationToken`] in place of SIGTERM.

pub mod aws;
pub mod batch;
pub mod classify;
pub mod config;
pub mod eval;
pub mod extract;
pub mod fetch;
pub mod gate;
pub mod local;
pub mod message;
pub mod metrics;
mod pdflex;
pub mod pdftext;
pub mod pool;
pub mod pricing;
mod qwen2;
pub mod samples;
pub mod service;
pub mod shutdown;
pub mod store;
mod tounicode;
