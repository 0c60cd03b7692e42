//! PDF text extraction with honest outcomes: text, or why there is none.
//!
//! Owns everything between a PDF's bytes and its text: parsing (lopdf), the
//! content-stream [`lexer`], the text-state [`interpreter`], fonts and their
//! encodings ([`fonts`], [`encodings`], [`tounicode`], embedded font programs'
//! own maps in [`truetype`]), annotation appearances ([`annotations`]), text
//! layout rules ([`layout`]), the first page as an image or OCR text when
//! there is no usable text ([`page_image`]), and the bounded child process
//! that runs it all ([`isolation`]). It knows nothing of queues,
//! models or tables: it takes bytes and a character budget and returns
//! [`Extracted`] text or an [`ExtractError`] that maps to a failure reason.

mod annotations;
mod document;
mod encodings;
mod fonts;
mod interpreter;
pub mod isolation;
mod layout;
mod lexer;
mod objects;
pub mod page_image;
mod tounicode;
mod truetype;

pub use document::{extract, read, ExtractError, Extracted};
pub use isolation::{
    extract_bounded, peak_rss_kib, run_child, ChildReport, ExtractStats, Isolation, Limits,
};
pub use page_image::{Fallback, PageImage};
