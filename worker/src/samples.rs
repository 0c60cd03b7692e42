//! Writes small text PDFs: the quickstart's sample documents and test fixtures.

use lopdf::content::{Content, Operation};
use lopdf::{dictionary, Document, Object, Stream};

/// A PDF with one page per entry of `pages`, each a list of text lines set in
/// Helvetica (WinAnsi encoding; characters outside Latin-1 become `?`).
pub fn text_pdf(pages: &[Vec<String>]) -> Vec<u8> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "Type1",
        "BaseFont" => "Helvetica",
        "Encoding" => "WinAnsiEncoding",
    });
    let resources_id = doc.add_object(dictionary! { "Font" => dictionary! { "F1" => font_id } });
    let mut kids = Vec::new();
    for lines in pages {
        let mut ops = vec![
            Operation::new("BT", vec![]),
            Operation::new("Tf", vec!["F1".into(), 11.into()]),
            Operation::new("TL", vec![14.into()]),
            Operation::new("Td", vec![56.into(), 780.into()]),
        ];
        for line in lines {
            let bytes: Vec<u8> = line.chars().map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')).collect();
            ops.push(Operation::new("Tj", vec![Object::String(bytes, lopdf::StringFormat::Literal)]));
            ops.push(Operation::new("T*", vec![]));
        }
        ops.push(Operation::new("ET", vec![]));
        let content = Content { operations: ops }.encode().expect("content of text operators always encodes");
        let content_id = doc.add_object(Stream::new(dictionary! {}, content));
        kids.push(Object::Reference(doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "Contents" => content_id,
        })));
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => kids,
            "Count" => count,
            "Resources" => resources_id,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
    let mut out = Vec::new();
    doc.save_to(&mut out).expect("writing to a Vec cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::{extract, ExtractError};

    fn page(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| (*l).to_owned()).collect()
    }

    #[test]
    fn written_pdfs_extract_back() {
        let pdf = text_pdf(&[page(&["INVOICE No. 2026-17", "Total due: 120.00 EUR"]), page(&["Page two"])]);
        let x = extract(&pdf, 0).unwrap();
        assert_eq!(x.pages, 2);
        assert!(x.text.contains("INVOICE No. 2026-17"), "{:?}", x.text);
        assert!(x.text.contains("Page two"));
    }

    #[test]
    fn outcomes_are_honest() {
        assert_eq!(extract(b"hello, not a pdf", 0), Err(ExtractError::NotPdf));
        assert!(matches!(extract(b"%PDF-1.4\n garbage", 0), Err(ExtractError::Malformed(_))));
        let empty = text_pdf(&[vec![]]);
        assert_eq!(extract(&empty, 0), Err(ExtractError::NoText { pages: 1 }));
    }

    #[test]
    fn extraction_stops_at_the_budget() {
        let pages: Vec<Vec<String>> = (0..20).map(|i| vec![format!("page {i} ") + &"word ".repeat(40)]).collect();
        let pdf = text_pdf(&pages);
        let x = extract(&pdf, 300).unwrap();
        assert_eq!(x.pages, 20);
        assert!(x.text.contains("page 1 ") && !x.text.contains("page 5 "), "{}", x.text.len());
    }
}
