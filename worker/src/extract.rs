//! PDF text extraction with honest outcomes: text, or why there is none.
//!
//! Runs on the blocking pool (CPU work) under a wall-time cap; see
//! [`extract_bounded`].

use std::time::Duration;

use docsort_schema::FailureReason;

/// Text extracted from a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// The text of the first pages, in page order, up to the budget.
    pub text: String,
    /// Pages in the document.
    pub pages: u32,
}

/// Why a document yielded no text. Each maps to a `failed/<reason>` record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    #[error("the object does not start with a PDF header")]
    NotPdf,
    #[error("the PDF is password-protected")]
    Encrypted,
    #[error("the PDF cannot be parsed: {0}")]
    Malformed(String),
    #[error("the PDF's {pages} page(s) have no text layer (scanned or image-only)")]
    NoText { pages: u32 },
    #[error("text extraction took longer than {0:?}")]
    Timeout(Duration),
}

impl ExtractError {
    /// The failure code stored in the record.
    pub fn reason(&self) -> FailureReason {
        match self {
            ExtractError::NotPdf => FailureReason::NotPdf,
            ExtractError::Encrypted => FailureReason::Encrypted,
            ExtractError::Malformed(_) => FailureReason::Malformed,
            ExtractError::NoText { .. } => FailureReason::NoText,
            ExtractError::Timeout(_) => FailureReason::Timeout,
        }
    }

    /// Pages seen, when the document could be opened.
    pub fn pages(&self) -> Option<u32> {
        match self {
            ExtractError::NoText { pages } => Some(*pages),
            _ => None,
        }
    }
}

/// Extracts text page by page until `budget_chars` non-whitespace characters
/// are collected (0 = no budget: the whole document).
pub fn extract(bytes: &[u8], budget_chars: usize) -> Result<Extracted, ExtractError> {
    let head = &bytes[..bytes.len().min(1024)];
    if !head.windows(5).any(|w| w == b"%PDF-") {
        return Err(ExtractError::NotPdf);
    }
    let doc = lopdf::Document::load_mem(bytes).map_err(|e| match e {
        lopdf::Error::InvalidPassword | lopdf::Error::Decryption(_) | lopdf::Error::AlreadyEncrypted => {
            ExtractError::Encrypted
        }
        other => ExtractError::Malformed(other.to_string()),
    })?;
    if doc.is_encrypted() {
        return Err(ExtractError::Encrypted);
    }
    let pages = doc.get_pages();
    let page_count = u32::try_from(pages.len()).unwrap_or(u32::MAX);
    let mut text = String::new();
    let mut seen = 0usize;
    let mut first_error = None;
    for &number in pages.keys() {
        for chunk in doc.extract_text_chunks(&[number]) {
            match chunk {
                Ok(t) => {
                    seen += t.chars().filter(|c| !c.is_whitespace()).count();
                    text.push_str(&t);
                }
                Err(e) => {
                    first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        text.push('\n');
        if budget_chars > 0 && seen >= budget_chars {
            break;
        }
    }
    if seen == 0 {
        return Err(match first_error {
            Some(e) => ExtractError::Malformed(e),
            None => ExtractError::NoText { pages: page_count },
        });
    }
    Ok(Extracted { text, pages: page_count })
}

/// [`extract`] on the blocking pool, abandoned after `timeout`; a parser panic
/// becomes `Malformed`.
pub async fn extract_bounded(bytes: Vec<u8>, budget_chars: usize, timeout: Duration) -> Result<Extracted, ExtractError> {
    let task = tokio::task::spawn_blocking(move || extract(&bytes, budget_chars));
    match tokio::time::timeout(timeout, task).await {
        Err(_) => Err(ExtractError::Timeout(timeout)),
        Ok(Err(join)) => Err(ExtractError::Malformed(format!("the parser crashed: {join}"))),
        Ok(Ok(result)) => result,
    }
}
