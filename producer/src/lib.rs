//! docsort's producer: puts S3 PDF keys on the work queue.
//!
//! - [`backfill`]: list a bucket prefix and enqueue the PDFs that need a label
//!   (compared with the labels table page by page);
//! - [`enqueue`]: send jobs in batches of 10, retrying partial failures.

pub mod backfill;
pub mod enqueue;

pub use enqueue::{EnqueueSummary, Sender};
