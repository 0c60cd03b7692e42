//! A document's text, or why there is none: the PDF header, lopdf's parse,
//! encryption, streams without a usable length, then the page interpreter.

use std::time::Duration;

use docsort_schema::{FailureReason, TextSource};
use serde::{Deserialize, Serialize};

use super::page_image::{self, Fallback, FirstPage, PageImage, MIN_TEXT_CHARS};

/// What a document gives a classifier to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extracted {
    /// The text of the first pages, in page order, up to the budget (the
    /// text layer's, or OCR's); what little there is, with a page image.
    pub text: String,
    /// Pages in the document.
    pub pages: u32,
    /// Where the text came from (the record's `text_source`).
    pub source: TextSource,
    /// The first page as an image, when the text layer was not enough and
    /// the classifier reads images.
    pub image: Option<PageImage>,
}

impl Extracted {
    /// A document given as text (labeled examples, tests): its text layer.
    pub fn from_text(text: impl Into<String>) -> Self {
        Extracted {
            text: text.into(),
            pages: 1,
            source: TextSource::TextLayer,
            image: None,
        }
    }

    /// Characters of text, whitespace not counted (the record's `text_chars`).
    pub fn text_chars(&self) -> u64 {
        self.text.chars().filter(|c| !c.is_whitespace()).count() as u64
    }
}

/// Why a document yielded no text. Each maps to a `failed/<reason>` record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ExtractError {
    #[error("the object does not start with a PDF header")]
    NotPdf,
    #[error("the PDF is password-protected")]
    Encrypted,
    #[error("the PDF cannot be parsed: {0}")]
    Malformed(String),
    #[error("the PDF's {pages} page(s) have no text layer (scanned or image-only)")]
    NoText { pages: u32 },
    #[error(
        "the PDF's text uses fonts without a Unicode mapping ({glyphs} glyphs could not be read)"
    )]
    Undecodable { pages: u32, glyphs: usize },
    #[error("text extraction took longer than {0:?}")]
    Timeout(Duration),
    #[error("text extraction needed more than the {mib} MiB memory ceiling")]
    MemoryLimit { mib: u64 },
    #[error("the first page's image is {width} x {height} pixels, over the {cap}-megapixel cap (a decompression bomb, or a scan far finer than needed)", cap = page_image::MAX_IMAGE_PIXELS / 1_000_000)]
    ImageTooLarge { width: u64, height: u64 },
    #[error("the PDF's {pages} page(s) have no text layer and the first page is blank or near-uniform: there is nothing to read")]
    BlankPage { pages: u32 },
    #[error("the PDF's {pages} page(s) have no text layer and OCR found no readable text on the first page")]
    OcrFoundNothing { pages: u32 },
    #[error("the PDF has no text layer and {tool} is not installed to read its first page: install {package} (for example `apt-get install {package}`), or use the Docker image, which ships it")]
    ToolMissing { tool: String, package: String },
    #[error("{tool} needed more than the extraction memory ceiling to read the first page")]
    ToolMemory { tool: String },
    #[error("the first page could not be read as an image: {0}")]
    Render(String),
}

impl ExtractError {
    /// The failure code stored in the record.
    pub fn reason(&self) -> FailureReason {
        match self {
            ExtractError::NotPdf => FailureReason::NotPdf,
            ExtractError::Encrypted => FailureReason::Encrypted,
            ExtractError::Malformed(_) => FailureReason::Malformed,
            ExtractError::NoText { .. }
            | ExtractError::Undecodable { .. }
            | ExtractError::BlankPage { .. }
            | ExtractError::OcrFoundNothing { .. }
            | ExtractError::ToolMissing { .. } => FailureReason::NoText,
            ExtractError::Render(_) => FailureReason::Malformed,
            ExtractError::Timeout(_) => FailureReason::Timeout,
            ExtractError::MemoryLimit { .. }
            | ExtractError::ImageTooLarge { .. }
            | ExtractError::ToolMemory { .. } => FailureReason::TooLarge,
        }
    }

    /// One sentence for the record's `detail`.
    pub fn detail(&self) -> String {
        let text = self.to_string();
        let mut chars = text.chars();
        let mut out: String = chars
            .next()
            .map(|c| c.to_uppercase().collect())
            .unwrap_or_default();
        out.push_str(chars.as_str());
        if !out.ends_with('.') {
            out.push('.');
        }
        out
    }

    /// Pages seen, when the document could be opened.
    pub fn pages(&self) -> Option<u32> {
        match self {
            ExtractError::NoText { pages }
            | ExtractError::Undecodable { pages, .. }
            | ExtractError::BlankPage { pages }
            | ExtractError::OcrFoundNothing { pages } => Some(*pages),
            _ => None,
        }
    }
}

/// Extracts text page by page until `budget_chars` non-whitespace characters
/// are collected (0 = no budget: the whole document); the text layer only.
pub fn extract(bytes: &[u8], budget_chars: usize) -> Result<Extracted, ExtractError> {
    read(bytes, budget_chars, Fallback::None)
}

/// [`extract`], then, when the first pages have no text layer or fewer than
/// [`MIN_TEXT_CHARS`] characters, the first page as `fallback` says: an
/// image for the model, or OCR text. A short text layer is kept when the
/// page image cannot help (blank, tool missing).
pub fn read(
    bytes: &[u8],
    budget_chars: usize,
    fallback: Fallback,
) -> Result<Extracted, ExtractError> {
    let doc = load(bytes)?;
    let text = text_layer(&doc, budget_chars);
    let pages = match &text {
        _ if fallback == Fallback::None => return text,
        Ok(x) if x.text_chars() >= MIN_TEXT_CHARS => return text,
        Ok(x) => x.pages,
        Err(ExtractError::NoText { pages } | ExtractError::Undecodable { pages, .. }) => *pages,
        Err(_) => return text,
    };
    let short_text = text.as_ref().ok().map(|x| x.text.clone());
    match (
        page_image::read_first_page(&doc, bytes, fallback, pages),
        short_text,
    ) {
        (Ok(FirstPage::Image(image)), text) => Ok(Extracted {
            text: text.unwrap_or_default(),
            pages,
            source: TextSource::PageImage,
            image: Some(image),
        }),
        (Ok(FirstPage::Text(text)), _) => Ok(Extracted {
            text,
            pages,
            source: TextSource::Ocr,
            image: None,
        }),
        (Err(e), Some(_)) => {
            tracing::debug!(error = %e, "the first page cannot be read as an image; the short text layer is used");
            text
        }
        (Err(e), None) => Err(e),
    }
}

/// The parsed document, or why it cannot be read.
fn load(bytes: &[u8]) -> Result<lopdf::Document, ExtractError> {
    let head = &bytes[..bytes.len().min(1024)];
    if !head.windows(5).any(|w| w == b"%PDF-") {
        return Err(ExtractError::NotPdf);
    }
    let mut doc = lopdf::Document::load_mem(bytes).map_err(|e| match e {
        lopdf::Error::InvalidPassword
        | lopdf::Error::Decryption(_)
        | lopdf::Error::AlreadyEncrypted => ExtractError::Encrypted,
        other => ExtractError::Malformed(other.to_string()),
    })?;
    if doc.is_encrypted() {
        return Err(ExtractError::Encrypted);
    }
    recover_unsized_streams(&mut doc, bytes);
    Ok(doc)
}

/// The text layer of the first pages, up to the budget.
fn text_layer(doc: &lopdf::Document, budget_chars: usize) -> Result<Extracted, ExtractError> {
    let result = super::interpreter::extract_pages(doc, budget_chars);
    if result.pages == 0 {
        // No page to look at: a broken file, not a scan for an OCR queue.
        return Err(ExtractError::Malformed(
            result
                .first_error
                .unwrap_or_else(|| "the page tree has no readable pages".into()),
        ));
    }
    if !result.text.chars().any(|c| !c.is_whitespace()) {
        return Err(match (result.undecodable, result.first_error) {
            (0, Some(e)) => ExtractError::Malformed(e),
            (0, None) => ExtractError::NoText {
                pages: result.pages,
            },
            (glyphs, _) => ExtractError::Undecodable {
                pages: result.pages,
                glyphs,
            },
        });
    }
    Ok(Extracted {
        text: result.text,
        pages: result.pages,
        source: TextSource::TextLayer,
        image: None,
    })
}

/// Reads the data of streams whose `Length` lopdf could not resolve (a
/// reference to a missing object, or to the stream itself) up to their
/// `endstream` keyword, as poppler and pdf.js do; lopdf leaves them empty.
fn recover_unsized_streams(doc: &mut lopdf::Document, bytes: &[u8]) {
    const END: &[u8] = b"endstream";
    for object in doc.objects.values_mut() {
        let lopdf::Object::Stream(stream) = object else {
            continue;
        };
        let Some(start) = stream.start_position.filter(|_| stream.content.is_empty()) else {
            continue;
        };
        let Some(data) = bytes.get(start..) else {
            continue;
        };
        if let Some(end) = data.windows(END.len()).position(|w| w == END) {
            let data = &data[..end];
            let data = data.strip_suffix(b"\n").unwrap_or(data);
            let data = data.strip_suffix(b"\r").unwrap_or(data);
            tracing::debug!(
                start,
                len = data.len(),
                "stream without a usable Length read to endstream"
            );
            stream.set_content(data.to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-page PDF with a correct cross-reference table whose content
    /// stream's `Length` is `length` (written as given).
    fn pdf_with_content_length(length: &str, content: &str) -> Vec<u8> {
        let objects = [
            "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
            "<< /Type /Pages /Kids [3 0 R] /Count 1 /MediaBox [0 0 600 800] >>".to_owned(),
            "<< /Type /Page /Parent 2 0 R /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>"
                .to_owned(),
            format!("<< /Length {length} >>\nstream\n{content}\nendstream"),
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
        ];
        let mut pdf = b"%PDF-1.4\n".to_vec();
        let mut offsets = Vec::new();
        for (i, body) in objects.iter().enumerate() {
            offsets.push(pdf.len());
            pdf.extend(format!("{} 0 obj\n{body}\nendobj\n", i + 1).bytes());
        }
        let xref = pdf.len();
        pdf.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).bytes());
        for offset in offsets {
            pdf.extend(format!("{offset:010} 00000 n \n").bytes());
        }
        pdf.extend(
            format!(
                "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
                objects.len() + 1
            )
            .bytes(),
        );
        pdf
    }

    #[test]
    fn a_stream_whose_length_cannot_be_resolved_is_read_to_endstream() {
        let content = "BT /F1 12 Tf 72 700 Td (recovered text) Tj ET";
        let good = extract(
            &pdf_with_content_length(&content.len().to_string(), content),
            0,
        );
        assert_eq!(
            good.map(|x| x.text.trim().to_owned()),
            Ok("recovered text".to_owned())
        );
        // The Length refers to the stream itself (a fuzzed file), or to no object.
        for length in ["4 0 R", "9 0 R"] {
            let got = extract(&pdf_with_content_length(length, content), 0);
            assert_eq!(
                got.map(|x| x.text.trim().to_owned()),
                Ok("recovered text".to_owned()),
                "Length {length}"
            );
        }
    }
}
