//! docsort's worker: takes S3 keys from SQS, extracts PDF text, asks a model
//! for one category and writes the label to the DynamoDB labels table.
//!
//! One folder per subsystem, each saying what it owns:
//! - [`extract`]: PDF bytes to text, in a bounded child process;
//! - [`classify`]: text to one category (Bedrock, or the embedded local model);
//! - [`pipeline`]: the queue pool, the job processor and the tables;
//! - [`batch`]: the batch backfill through Bedrock batch inference;
//! - [`offline`]: local files and labeled sets, for `classify` and `eval`;
//! - [`events`]: every outcome logged and counted in one place.
//!
//! The `docsort-worker` binary (`main.rs`, `cli.rs`, `commands/`) parses the
//! command line into the settings structs of these modules and calls them.
//! Tests call the same functions with their own clients and a
//! [`tokio_util::sync::CancellationToken`] in place of SIGTERM.

pub mod batch;
pub mod classify;
pub mod events;
pub mod extract;
pub mod offline;
pub mod pipeline;
