//! Image-only ("scanned") PDF fixtures that the project builds itself.
//!
//! A page of text is set by [`docsort_worker::offline::samples::text_pdf`] and
//! rasterised with poppler's `pdftoppm` ([`render_text`]), optionally made to
//! look like a scan ([`scanner_like`]), and stored as the only content of a
//! one-page PDF ([`image_pdf`]) in one of the encodings scanners write
//! ([`Storage`]); there is no text layer. [`blank_pdf`] and [`bomb_pdf`] make
//! the two awkward cases: an empty scan and a decompression bomb.
//!
//! Rendering needs poppler-utils (`pdftoppm`); building a PDF from an image
//! needs nothing outside Rust.
//!
//! [`image`] holds the raster side (rendering, the scanner look), [`pdf`] the
//! PDF side (storage encodings, the blank page and the bomb).

mod image;
mod pdf;
#[cfg(test)]
mod tests;

pub use image::{rasterize, render_text, scan_skew_degrees, scanner_like, Gray};
pub use pdf::{blank_pdf, bomb_pdf, image_pdf, Storage};

/// The page size, in points, of the PDFs that `text_pdf` writes (A4).
pub const A4_PT: (f32, f32) = (595.0, 842.0);
