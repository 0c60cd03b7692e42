//! docsort's producer: puts S3 PDF keys on the work queue, and reads the
//! labels table out for downstream teams.
//!
//! - [`backfill`]: list a bucket prefix and enqueue the PDFs that need a label
//!   (compared with the labels table page by page);
//! - [`enqueue`]: send jobs in batches of 10, retrying partial failures;
//! - [`table`]: the labels table out to downstream teams: report and export.

pub mod backfill;
pub mod enqueue;
pub mod table;

pub use enqueue::{EnqueueSummary, Sender};
