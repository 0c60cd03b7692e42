//! Regression checks of the text extractor on real-world corpus files, one per
//! mechanism: Form XObjects, rotated pages, unknown glyph names in Differences,
//! predefined CJK CMaps, right-to-left text, honest failures.

use docsort_schema::FailureReason;
use docsort_tests::{corpus, scenarios};
use docsort_worker::extract::extract;

fn text_of(dir: &std::path::Path, file: &str) -> String {
    let bytes = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    match extract(&bytes, 0) {
        Ok(x) => x.text,
        Err(e) => panic!("{file}: {e}"),
    }
}

#[test]
fn each_mechanism_reads_its_corpus_file() {
    let Some(dir) = corpus::dir() else { return };
    let cases: &[(&str, &[&str])] = &[
        // Text only inside Form XObjects (lopdf's extract_text returns nothing).
        ("contract/OpenContra__EtonPharmaceuticalsInc_20191114_10-Q_EX-10.1_11893941_EX-10.1_Development_Agreement_ZrZJLLv.pdf", &["Exhibit 10.1", "competitively harmful"]),
        // A page rotated by the CTM: word spaces come from positions along the baseline.
        ("report/pdfplumber__senate-expenditures.pdf", &["DOCUMENT NO.", "PAYEE NAME"]),
        // Differences with glyph names like "g18" and ".notdef" must not spoil the font.
        ("paper/pdfjs__TAMReview.pdf", &["Technology Acceptance Model", "User acceptance of technology"]),
        // Predefined CMaps: Shift-JIS and EUC-JP codes.
        ("nonlatin/pdfjs__90ms_rksj_h_sample.pdf", &["Hello ASCII", "日本語テスト"]),
        ("nonlatin/pdfjs__noembed-eucjp.pdf", &["あいうえお"]),
        // Right-to-left text comes out in logical order.
        ("nonlatin/pdfcpu__UserFont_Arabic.pdf", &["معظم المغامرات المسجلة"]),
        // Justified lines with tight word gaps keep their spaces.
        ("resume_letter/AwesomeCV__resume.pdf", &["infrastructure operations, and security engineering"]),
    ];
    for (file, phrases) in cases {
        let text = text_of(&dir, file);
        for phrase in *phrases {
            assert!(
                text.contains(phrase),
                "{file}: {phrase:?} not in:\n{}",
                &text[..text.len().min(1500)]
            );
        }
    }
}

#[test]
fn failures_are_honest_and_nothing_crashes() {
    let Some(dir) = corpus::dir() else { return };
    let bytes = std::fs::read(dir.join("encrypted/pypdf__r4-user-password.pdf")).expect("read");
    assert_eq!(
        extract(&bytes, 0).map_err(|e| e.reason()).err(),
        Some(FailureReason::Encrypted)
    );
    let mut with_text = 0;
    let files = scenarios::walk(&dir);
    for path in &files {
        let bytes = std::fs::read(path).expect("read corpus file");
        // Runs in-process: a panic here fails the test (the worker would contain it in a child).
        if extract(&bytes, 0).is_ok() {
            with_text += 1;
        }
    }
    // Measured 181 of 241 at the time of writing; a drop means a regression.
    assert!(
        with_text >= 175,
        "only {with_text} of {} corpus files yield text",
        files.len()
    );
}
