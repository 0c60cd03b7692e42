//! The interpreter on PDFs the tests build.

use lopdf::{dictionary, Stream};

use super::*;
use crate::extract::encodings::{parse_cid_table, CID_TABLES};

/// A one-page PDF whose page content is `content`, with Helvetica as /F1 and
/// the given Form XObjects (name, content; each may draw /F1 and the others).
fn pdf(content: &str, forms: &[(&str, &str)]) -> Document {
    let helvetica = dictionary! { "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica", "Encoding" => "WinAnsiEncoding" };
    pdf_with(content, forms, |_| helvetica, |_, _| Dictionary::new())
}

/// Like [`pdf`] with `font`'s result as /F1 and page entries from `page_extra`,
/// which gets the document and the resources' id.
fn pdf_with(
    content: &str,
    forms: &[(&str, &str)],
    font: impl FnOnce(&mut Document) -> Dictionary,
    page_extra: impl FnOnce(&mut Document, ObjectId) -> Dictionary,
) -> Document {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font = font(&mut doc);
    let font = doc.add_object(font);
    let form_ids: Vec<(String, ObjectId)> = forms
        .iter()
        .map(|(name, _)| ((*name).to_owned(), doc.new_object_id()))
        .collect();
    let mut xobjects = Dictionary::new();
    for (name, id) in &form_ids {
        xobjects.set(name.as_bytes().to_vec(), Object::Reference(*id));
    }
    let resources = doc
        .add_object(dictionary! { "Font" => dictionary! { "F1" => font }, "XObject" => xobjects });
    for ((_, body), (_, id)) in forms.iter().zip(&form_ids) {
        let dict = dictionary! { "Type" => "XObject", "Subtype" => "Form", "BBox" => vec![0.into(), 0.into(), 600.into(), 800.into()], "Resources" => resources };
        doc.objects.insert(
            *id,
            Object::Stream(Stream::new(dict, body.as_bytes().to_vec())),
        );
    }
    let contents = doc.add_object(Stream::new(dictionary! {}, content.as_bytes().to_vec()));
    let mut page = dictionary! { "Type" => "Page", "Parent" => pages_id, "Contents" => contents, "Resources" => resources };
    for (k, v) in page_extra(&mut doc, resources) {
        page.set(k, v);
    }
    let page = doc.add_object(page);
    doc.objects.insert(pages_id, Object::Dictionary(dictionary! {
        "Type" => "Pages", "Kids" => vec![page.into()], "Count" => 1, "MediaBox" => vec![0.into(), 0.into(), 600.into(), 800.into()],
    }));
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    doc
}

fn text(content: &str, forms: &[(&str, &str)]) -> String {
    extract_pages(&pdf(content, forms), 0)
        .text
        .trim()
        .to_owned()
}

#[test]
fn word_gaps_come_from_positions_not_strings() {
    assert_eq!(
        text("BT /F1 12 Tf 72 700 Td [(Hello) -400 (World)] TJ ET", &[]),
        "Hello World"
    );
    assert_eq!(
        text("BT /F1 12 Tf 72 700 Td [(Hel) -15 (lo)] TJ ET", &[]),
        "Hello"
    );
    assert_eq!(
        text("BT /F1 12 Tf 72 700 Td (Total) Tj 100 0 Td (42) Tj ET", &[]),
        "Total 42"
    );
    assert_eq!(
        text(
            "BT /F1 12 Tf 72 700 Td (first) Tj 0 -20 Td (second) Tj ET",
            &[]
        ),
        "first\nsecond"
    );
    // A word hyphenated across lines is rejoined; a dash before a capital is kept.
    assert_eq!(
        text(
            "BT /F1 12 Tf 72 700 Td (an ef-) Tj 0 -14 Td (ficient way) Tj ET",
            &[]
        ),
        "an efficient way"
    );
    assert_eq!(
        text(
            "BT /F1 12 Tf 72 700 Td (Baden-) Tj 0 -14 Td (Baden) Tj ET",
            &[]
        ),
        "Baden-\nBaden"
    );
}

#[test]
fn character_spacing_is_a_gap_after_the_glyph() {
    // A table row drawn by one string: a wide Tc moves each glyph a cell
    // further, and the TJ numbers pull the glyphs of one number back together.
    let row = "BT /F1 1 Tf 6 0 0 6 100 700 Tm 4 Tc \
               [(02) 4000 (,) 4000 (2) 4000 (4) 4000 (81) 4000 (,) 4000 (1) 4000 (3) 4000 (5)] TJ ET";
    assert_eq!(text(row, &[]), "0 2,248 1,135");
    // Slightly tightened or loosened letters stay one word.
    assert_eq!(
        text("BT /F1 12 Tf 72 700 Td -0.2 Tc (Florida) Tj ET", &[]),
        "Florida"
    );
    assert_eq!(
        text("BT /F1 12 Tf 72 700 Td 0.5 Tc (Florida) Tj ET", &[]),
        "Florida"
    );
}

#[test]
fn rotated_text_keeps_its_spaces_and_lines() {
    let rotated = "q 0 1 -1 0 500 100 cm BT /F1 12 Tf 0 0 Td (DOCUMENT) Tj 70 0 Td (NO.) Tj 0 -20 Td (DATE) Tj ET Q";
    assert_eq!(text(rotated, &[]), "DOCUMENT NO.\nDATE");
}

#[test]
fn form_xobjects_are_read_and_cycles_stop() {
    let page = "q 1 0 0 1 0 0 cm /Fm1 Do Q";
    let forms = [
        (
            "Fm1",
            "BT /F1 12 Tf 72 700 Td (inside the form) Tj ET /Fm2 Do",
        ),
        ("Fm2", "/Fm1 Do BT /F1 12 Tf 72 600 Td (nested) Tj ET"),
    ];
    let got = text(page, &forms);
    assert_eq!(got.matches("inside the form").count(), 1, "{got}");
    assert!(got.contains("nested"), "{got}");
}

#[test]
fn extraction_stops_at_the_budget() {
    let lines: String = (0..50)
        .map(|i| format!("(line{i:02} aaaaaaaaaa) Tj 0 -14 Td "))
        .collect();
    let result = extract_pages(&pdf(&format!("BT /F1 12 Tf 72 780 Td {lines} ET"), &[]), 40);
    assert!(
        result.text.contains("line00") && !result.text.contains("line10"),
        "{}",
        result.text
    );
}

#[test]
fn visible_annotation_appearances_are_read() {
    let doc = pdf_with(
        "BT /F1 12 Tf 72 700 Td (Name:) Tj ET",
        &[],
        |_| pdf_font(),
        |doc, resources| {
            let mut appearance = |text: &str| {
                let body = format!("/Tx BMC BT /F1 10 Tf 2 3 Td ({text}) Tj ET EMC");
                let bbox = vec![0.into(), 0.into(), 100.into(), 20.into()];
                doc.add_object(Stream::new(
                    dictionary! { "Subtype" => "Form", "BBox" => bbox, "Resources" => resources },
                    body.into_bytes(),
                ))
            };
            let (alice, secret, on, off) = (
                appearance("Alice"),
                appearance("secret"),
                appearance("Checked"),
                appearance("Unchecked"),
            );
            let rect = |y: i64| vec![150.into(), y.into(), 250.into(), (y + 20).into()];
            let annots = vec![
                Object::Dictionary(
                    dictionary! { "Subtype" => "Widget", "Rect" => rect(695), "AP" => dictionary! { "N" => alice } },
                ),
                // Hidden (flag 2): a viewer does not draw it.
                Object::Dictionary(
                    dictionary! { "Subtype" => "Widget", "F" => 2, "Rect" => rect(600), "AP" => dictionary! { "N" => secret } },
                ),
                // A check box: the appearance of its current state.
                Object::Dictionary(dictionary! {
                    "Subtype" => "Widget", "Rect" => rect(500), "AS" => "On",
                    "AP" => dictionary! { "N" => dictionary! { "On" => on, "Off" => off } },
                }),
            ];
            dictionary! { "Annots" => annots }
        },
    );
    let got = extract_pages(&doc, 0).text;
    assert!(
        got.contains("Name:\nAlice") && got.contains("Checked"),
        "{got}"
    );
    assert!(
        !got.contains("secret") && !got.contains("Unchecked"),
        "{got}"
    );
}

#[test]
fn field_values_stand_in_for_appearances_without_text() {
    let doc = pdf_with(
        "BT /F1 12 Tf 72 700 Td (Name:) Tj ET",
        &[],
        |_| pdf_font(),
        |doc, resources| {
            // What form fillers leave: the value set, the appearance empty.
            let bbox = vec![0.into(), 0.into(), 100.into(), 20.into()];
            let empty = doc.add_object(Stream::new(
                dictionary! { "Subtype" => "Form", "BBox" => bbox, "Resources" => resources },
                b"/Tx BMC EMC".to_vec(),
            ));
            let utf16 = |s: &str| {
                let mut bytes = vec![0xFE, 0xFF];
                bytes.extend(s.encode_utf16().flat_map(u16::to_be_bytes));
                Object::String(bytes, lopdf::StringFormat::Hexadecimal)
            };
            let rect = |y: i64| vec![150.into(), y.into(), 250.into(), (y + 20).into()];
            // A widget of a field (PDFDocEncoding value): it inherits FT and V.
            let field = doc.add_object(dictionary! { "FT" => "Ch", "T" => "City", "V" => Object::String(b"Z\xfcrich".to_vec(), lopdf::StringFormat::Literal) });
            let annots = vec![
                Object::Dictionary(dictionary! {
                    "Subtype" => "Widget", "FT" => "Tx", "V" => utf16("Alice"),
                    "Rect" => rect(695), "AP" => dictionary! { "N" => empty },
                }),
                Object::Dictionary(
                    dictionary! { "Subtype" => "Widget", "Parent" => field, "Rect" => rect(600) },
                ),
                // A check box's value is a state name, not text.
                Object::Dictionary(
                    dictionary! { "Subtype" => "Widget", "FT" => "Btn", "V" => "Yes", "Rect" => rect(500) },
                ),
            ];
            dictionary! { "Annots" => annots }
        },
    );
    let got = extract_pages(&doc, 0).text;
    assert_eq!(got.trim(), "Name:\nAlice\nZürich", "{got}");
}

fn pdf_font() -> Dictionary {
    dictionary! { "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica", "Encoding" => "WinAnsiEncoding" }
}

#[test]
fn legacy_cjk_bytes_in_a_system_font_are_decoded_by_the_font_name() {
    // "宋体" (SimSun) in GBK, not embedded, shown through a one-byte font.
    let simsun = dictionary! {
        "Type" => "Font", "Subtype" => "TrueType", "BaseFont" => Object::Name(vec![0xcb, 0xce, 0xcc, 0xe5]),
        "Encoding" => "WinAnsiEncoding", "FirstChar" => 0, "LastChar" => 255, "Widths" => vec![Object::Integer(500); 256],
    };
    // "中文 PDF" in GBK.
    let content = "BT /F1 12 Tf 72 700 Td <D6D0CEC420504446> Tj ET";
    // One character and a space per string, each string one em further:
    // the overlapped spaces are not word breaks.
    let spaced = "BT /F1 12 Tf 72 700 Td <D6D020> Tj 12 0 Td <CEC420> Tj ET";
    assert_eq!(
        extract_pages(
            &pdf_with(spaced, &[], |_| simsun.clone(), |_, _| Dictionary::new()),
            0
        )
        .text
        .trim(),
        "中文"
    );
    assert_eq!(
        extract_pages(
            &pdf_with(content, &[], |_| simsun.clone(), |_, _| Dictionary::new()),
            0
        )
        .text
        .trim(),
        "中文 PDF"
    );
    // The same bytes in an embedded font are that font's business.
    let mut embedded = simsun;
    embedded.set(
        "FontDescriptor",
        dictionary! { "FontFile2" => Object::Null },
    );
    let got = extract_pages(
        &pdf_with(content, &[], |_| embedded, |_, _| Dictionary::new()),
        0,
    )
    .text;
    assert!(!got.contains("中文"), "{got}");
}

#[test]
fn identity_cid_fonts_without_to_unicode_use_the_collection_table() {
    // The process's Korea1 table, as poppler-data's file would give it: CID 1 = 한, 2 = 국.
    let table = parse_cid_table("0000\nd55c\nad6d\n");
    assert_eq!(table, ['\0', '한', '국']);
    let _ = CID_TABLES[3].set(Some(table));
    let font = dictionary! {
        "Type" => "Font", "Subtype" => "Type0", "BaseFont" => "Batang", "Encoding" => "Identity-H",
        "DescendantFonts" => vec![Object::Dictionary(dictionary! {
            "Type" => "Font", "Subtype" => "CIDFontType2", "BaseFont" => "Batang", "DW" => 1000,
            "CIDSystemInfo" => dictionary! { "Registry" => Object::string_literal("Adobe"), "Ordering" => Object::string_literal("Korea1"), "Supplement" => 0 },
        })],
    };
    let doc = pdf_with(
        "BT /F1 12 Tf 72 700 Td <00010002> Tj ET",
        &[],
        |_| font,
        |_, _| Dictionary::new(),
    );
    assert_eq!(extract_pages(&doc, 0).text.trim(), "한국");
}

#[test]
fn vertical_writing_keeps_a_column_on_one_line() {
    // UniJIS-UCS2-V: codes are UTF-16BE, glyphs go down the page; the next column is a new line.
    let font = dictionary! {
        "Type" => "Font", "Subtype" => "Type0", "BaseFont" => "Ryumin-Light", "Encoding" => "UniJIS-UCS2-V",
        "DescendantFonts" => vec![Object::Dictionary(dictionary! {
            "Type" => "Font", "Subtype" => "CIDFontType0", "BaseFont" => "Ryumin-Light",
            "CIDSystemInfo" => dictionary! { "Registry" => Object::string_literal("Adobe"), "Ordering" => Object::string_literal("Japan1"), "Supplement" => 2 },
        })],
    };
    let content = "BT /F1 12 Tf 300 700 Td <65E5672C> Tj -20 0 Td <8A9E> Tj ET";
    assert_eq!(
        extract_pages(
            &pdf_with(content, &[], |_| font, |_, _| Dictionary::new()),
            0
        )
        .text
        .trim(),
        "日本\n語"
    );
}

#[test]
fn an_embedded_type1_fonts_own_encoding_is_the_base() {
    // A TeX-style math font: no /Encoding in the PDF, the program's clear text says code 65 is gamma.
    let program = b"%!PS-AdobeFont-1.0: CMMI10\n/FontName /CMMI10 def\n/Encoding 256 array\n0 1 255 {1 index exch /.notdef put} for\n\
dup 65 /gamma put\ndup 66 /alpha put\nreadonly def\ncurrentdict end\ncurrentfile eexec\n\x8f\x01\x02";
    let cmmi = |doc: &mut Document| {
        let file = doc.add_object(Stream::new(
            dictionary! { "Length1" => 120 },
            program.to_vec(),
        ));
        dictionary! {
            "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "CMMI10",
            "FontDescriptor" => dictionary! { "Type" => "FontDescriptor", "FontName" => "CMMI10", "Flags" => 4, "FontFile" => file },
        }
    };
    let doc = pdf_with("BT /F1 12 Tf 72 700 Td (AB) Tj ET", &[], cmmi, |_, _| {
        Dictionary::new()
    });
    assert_eq!(extract_pages(&doc, 0).text.trim(), "γα");
}

#[test]
fn ligatures_are_spelled_out() {
    assert_eq!(plain_letters("\u{fb01}"), "fi");
    assert_eq!(plain_letters("e\u{fb03}\u{1}cient"), "efficient");
}

#[test]
fn right_to_left_lines_come_out_in_logical_order() {
    assert_eq!(visual_to_logical("םולש 2026 abc"), "abc 2026 שלום");
}
