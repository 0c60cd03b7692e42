//! Lists a bucket prefix and enqueues every PDF.

use docsort_schema::{Job, Source};
use indicatif::ProgressBar;

use crate::enqueue::{EnqueueSummary, Sender};

/// Listing the bucket failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot list s3://{bucket}/{prefix}")]
pub struct ListError {
    bucket: String,
    prefix: String,
    #[source]
    source: Box<
        aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Error>,
    >,
}

/// Whether a key names a PDF (by its extension, any case).
pub fn is_pdf_key(key: &str) -> bool {
    key.len() >= 4 && key.as_bytes()[key.len() - 4..].eq_ignore_ascii_case(b".pdf")
}

/// Lists `bucket` under `prefix` page by page and sends a job per PDF (none
/// when `sender` is `None`: a dry run).
pub async fn backfill(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    sender: Option<&Sender>,
    progress: &ProgressBar,
) -> Result<EnqueueSummary, ListError> {
    let mut summary = EnqueueSummary::default();
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| ListError {
            bucket: bucket.into(),
            prefix: prefix.into(),
            source: Box::new(e),
        })?;
        let jobs: Vec<Job> = page
            .contents()
            .iter()
            .filter_map(|o| {
                let key = o.key().filter(|k| is_pdf_key(k))?;
                let mut job = Job::new(bucket, key, Source::Backfill);
                job.etag = o.e_tag().map(|e| e.trim_matches('"').to_owned());
                Some(job)
            })
            .collect();
        summary.listed += jobs.len() as u64;
        progress.inc_length(jobs.len() as u64);
        match sender {
            Some(sender) => {
                let sent = sender.send_all(jobs, progress).await;
                summary.enqueued += sent.enqueued;
                summary.failed += sent.failed;
            }
            None => progress.inc(jobs.len() as u64),
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pdf_keys_match_any_case() {
        for yes in ["a.pdf", "dir/B.PDF", "x.Pdf"] {
            assert!(super::is_pdf_key(yes));
        }
        for no in ["a.pdfx", "pdf", "a.txt", "dir/pdf/", "é.pd"] {
            assert!(!super::is_pdf_key(no));
        }
    }
}
