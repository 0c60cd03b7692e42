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
            let bytes: Vec<u8> = line
                .chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                .collect();
            ops.push(Operation::new(
                "Tj",
                vec![Object::String(bytes, lopdf::StringFormat::Literal)],
            ));
            ops.push(Operation::new("T*", vec![]));
        }
        ops.push(Operation::new("ET", vec![]));
        let content = Content { operations: ops }
            .encode()
            .expect("content of text operators always encodes");
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

/// The quickstart's sample documents: one per default category, written for
/// this project: `(file name, lines)`.
pub const SAMPLES: &[(&str, &[&str])] = &[
    ("invoice-northwind-2026-031.pdf", &[
        "Northwind Office Supplies GmbH",
        "Hafenstrasse 12, 20457 Hamburg, VAT ID DE298765432",
        "INVOICE",
        "Invoice no. 2026-031        Date: 12 November 2026        Customer no. 10442",
        "Bill to: Keller & Partner Architects, Lindenallee 3, 50968 Cologne",
        "Item                         Qty   Unit price   Amount",
        "A4 copy paper, 5 reams        10        24.90   249.00",
        "Ergonomic desk chair           2       189.00   378.00",
        "Net total 627.00 EUR   VAT 19% 119.13 EUR   Amount due 746.13 EUR",
        "Payment due within 14 days to IBAN DE44 2005 0550 1234 5678 90.",
    ]),
    ("receipt-corner-bakery.pdf", &[
        "THE CORNER BAKERY",
        "88 Mill Street, Bristol",
        "25/11/2026 08:14   Till 2   Served by: Priya",
        "2 x Flat white            6.40",
        "1 x Cinnamon bun          2.95",
        "TOTAL                     9.35",
        "CARD PAYMENT  Contactless Visa ****1127   APPROVED",
        "Thank you for your visit! Keep this receipt for returns.",
    ]),
    ("contract-website-services.pdf", &[
        "WEBSITE DEVELOPMENT SERVICES AGREEMENT",
        "This Agreement is made on 2 November 2026 between Bluebird Studio Ltd (the Developer)",
        "and Riverside Dental Clinic (the Client).",
        "1. Scope of work. The Developer shall design and build the website described in Schedule 1.",
        "2. Fees. The Client shall pay GBP 6,400 in two instalments as set out in Schedule 2.",
        "3. Intellectual property. On full payment all rights in the deliverables pass to the Client.",
        "4. Termination. Either party may terminate this Agreement with 30 days' written notice.",
        "Signed by the parties on the date first written above.",
    ]),
    ("resume-elena-rossi.pdf", &[
        "ELENA ROSSI",
        "Data Analyst | Milan, Italy | elena.rossi@example.com | linkedin.com/in/elenarossi",
        "PROFILE  Analyst with five years of experience in retail analytics and forecasting.",
        "EXPERIENCE",
        "2022 - today  Senior Data Analyst, Esselunga S.p.A.: demand forecasting, dashboards",
        "2020 - 2022   Junior Analyst, Nielsen Italy: market share reports",
        "EDUCATION  MSc Statistics, Universita Bocconi, 2020",
        "SKILLS  SQL, Python, Power BI, time-series models. Languages: Italian, English, Spanish",
    ]),
    ("letter-library-thanks.pdf", &[
        "Greenhill Public Library",
        "4 Market Square, Greenhill",
        "20 November 2026",
        "Dear Mr Thompson,",
        "Thank you very much for donating your collection of local history books to the library.",
        "They will be catalogued this winter and made available to readers in the spring.",
        "We are truly grateful for your generosity.",
        "Yours sincerely,",
        "Margaret Hale, Head Librarian",
    ]),
    ("form-club-membership.pdf", &[
        "RIVERSIDE TENNIS CLUB - MEMBERSHIP APPLICATION FORM",
        "Please complete in block capitals and return to the club office.",
        "Surname: ____________________   First name(s): ____________________",
        "Date of birth: __ / __ / ____   Telephone: ____________________",
        "Membership type (tick one):  [ ] Adult   [ ] Junior   [ ] Family   [ ] Senior",
        "Have you been a member before?  [ ] Yes   [ ] No",
        "Emergency contact name and number: ______________________________",
        "Signature: ____________________   Date: ____________",
    ]),
    ("report-cycling-survey-2026.pdf", &[
        "Urban Cycling Survey 2026 - Summary Report",
        "Executive summary",
        "Between March and June 2026 we surveyed 2,314 residents about their travel habits.",
        "Key findings: 38% cycle at least once a week, up from 29% in 2023;",
        "safety at junctions remains the main barrier (61% of non-cyclists).",
        "Figure 1 shows weekly cycling by district; Table 2 lists trips by purpose.",
        "Recommendations: protected junctions on the ring road and secure parking at stations.",
    ]),
    ("manual-coffee-grinder.pdf", &[
        "Model CG-40 Burr Coffee Grinder - Instruction Manual",
        "Contents: 1 Safety  2 Parts  3 First use  4 Grinding  5 Cleaning  6 Troubleshooting",
        "1 Safety: unplug the grinder before cleaning. Do not immerse the base in water.",
        "3 First use: wash the bean hopper, fit it on the base and turn it clockwise to lock.",
        "4 Grinding: choose a setting from 1 (espresso) to 40 (French press) and press start.",
        "6 Troubleshooting: if the motor stops, let it cool for 20 minutes and empty the chamber.",
    ]),
];

/// Writes [`SAMPLES`] into `dir` as PDFs; returns their paths.
pub fn write_samples(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    SAMPLES
        .iter()
        .map(|(name, lines)| {
            let path = dir.join(name);
            std::fs::write(
                &path,
                text_pdf(&[lines.iter().map(|l| (*l).to_owned()).collect()]),
            )?;
            Ok(path)
        })
        .collect()
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
        let pdf = text_pdf(&[
            page(&["INVOICE No. 2026-17", "Total due: 120.00 EUR"]),
            page(&["Page two"]),
        ]);
        let x = extract(&pdf, 0).unwrap();
        assert_eq!(x.pages, 2);
        assert!(x.text.contains("INVOICE No. 2026-17"), "{:?}", x.text);
        assert!(x.text.contains("Page two"));
    }

    #[test]
    fn outcomes_are_honest() {
        assert_eq!(extract(b"hello, not a pdf", 0), Err(ExtractError::NotPdf));
        assert!(matches!(
            extract(b"%PDF-1.4\n garbage", 0),
            Err(ExtractError::Malformed(_))
        ));
        let empty = text_pdf(&[vec![]]);
        assert_eq!(extract(&empty, 0), Err(ExtractError::NoText { pages: 1 }));
    }

    #[test]
    fn extraction_stops_at_the_budget() {
        let pages: Vec<Vec<String>> = (0..20)
            .map(|i| vec![format!("page {i} ") + &"word ".repeat(40)])
            .collect();
        let pdf = text_pdf(&pages);
        let x = extract(&pdf, 300).unwrap();
        assert_eq!(x.pages, 20);
        assert!(
            x.text.contains("page 1 ") && !x.text.contains("page 5 "),
            "{}",
            x.text.len()
        );
    }
}
