//! Regression checks of the text extractor on real-world corpus files: one per
//! mechanism (Form XObjects, rotated pages, glyph names, CJK CMaps and CID
//! tables, right-to-left text, annotations, font programs' own encodings),
//! honest failures, and word recall against pdftotext.

use docsort_schema::FailureReason;
use docsort_tests::{corpus, recall, scenarios};
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
        // A ToUnicode CMap lopdf's parser rejects (docsort reads its own).
        ("manual_book/pdfcpu__BuildingWebappsWithGo.pdf", &["Go Makes Things Simple", "The net/http package"]),
        // Built-in encodings of embedded CFF fonts (TeX math: γ); words hyphenated across lines.
        ("paper/samplefile__GeoTopo-komprimiert.pdf", &["Abbildung γ : [0, 1] → X"]),
        ("paper/unstructur__multi-column-2p.pdf", &["relies on efficient passage retrieval"]),
        // Annotation appearances (a free-text comment, a signature stamp).
        ("pdfjs_bug_large/pdfjs__issue17069.pdf", &["text comment", "E-SIGNED by tt tt"]),
        // GBK bytes shown through a non-embedded font named 宋体 (SimSun).
        ("nonlatin/pdfjs__XiaoBiaoSong.pdf", &["关于红军作战的原则"]),
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
    // Identity-encoded Japanese fonts without ToUnicode need the Adobe-Japan1
    // CID table from poppler-data, a system package.
    if std::path::Path::new("/usr/share/poppler/cidToUnicode/Adobe-Japan1").is_file()
        || std::env::var_os("DOCSORT_CID_TO_UNICODE").is_some()
    {
        let text = text_of(&dir, "slides/pdfminersi__nlp2004slides.pdf");
        assert!(
            text.contains("コンパラブルな新聞記事からの"),
            "{}",
            &text[..text.len().min(1500)]
        );
    } else {
        eprintln!("\n*** SKIPPED part: poppler-data is not installed, so CID fonts without ToUnicode were not checked. ***\n");
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
    // Measured 185 of 241 at the time of writing; a drop means a regression.
    assert!(
        with_text >= 180,
        "only {with_text} of {} corpus files yield text",
        files.len()
    );
}

/// Files where pdftotext finds 20 words or more and docsort reports success
/// with less than half of them, each checked by hand:
const KNOWN_LOW_RECALL: &[(&str, &str)] = &[
    // Identity-H fonts without ToUnicode: pdftotext prints glyph ids as letters
    // (garbage); docsort reads the English labels through the embedded fonts'
    // cmap tables, while the Arabic contextual forms no cmap reaches stay unread.
    (
        "nonlatin/pdfjs__ThuluthFeatures.pdf",
        "pdftotext prints glyph ids",
    ),
    // The reference is wrong: pdftotext prints the GBK bytes as Latin-1
    // mojibake; docsort decodes the Chinese text (unit test
    // `legacy_cjk_bytes_in_a_system_font_are_decoded_by_the_font_name`).
    (
        "nonlatin/pdfjs__XiaoBiaoSong.pdf",
        "pdftotext's text is mojibake",
    ),
    // Pages 2-23 use embedded fonts with no Unicode information at all (glyph
    // names g1..g486, no ToUnicode): pdftotext turns glyph numbers into Latin
    // Extended letters (ǡ, ǥ), docsort counts them as undecodable. Page 1 reads.
    (
        "paper/pdfjs__TAMReview.pdf",
        "fonts without any Unicode information",
    ),
];

/// The benchmark's quality targets over the whole corpus, against pdftotext
/// (poppler): median word recall >= 0.99, 10th percentile >= 0.95 (0.971
/// measured), and no silent failure beyond [`KNOWN_LOW_RECALL`], where
/// pdftotext's own text is wrong (see the README). No timing. Needs `pdftotext`.
#[test]
fn word_recall_against_pdftotext() {
    let Some(dir) = corpus::dir() else { return };
    if !recall::pdftotext_available() {
        eprintln!("\n*** SKIPPED: pdftotext not found (install poppler-utils); recall thresholds were not checked. ***\n");
        return;
    }
    let files = scenarios::walk(&dir);
    // pdftotext is slow on a few files: one reference process per core.
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    let scored: Vec<(String, f64)> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(files.len().div_ceil(workers))
            .map(|chunk| {
                let dir = &dir;
                s.spawn(move || {
                    let mut out = Vec::new();
                    for path in chunk {
                        let (Some(reference), _) = recall::pdftotext(path) else {
                            continue;
                        };
                        let reference = recall::words(&reference);
                        let count: usize = reference.values().sum();
                        if count < recall::MIN_REFERENCE_WORDS {
                            continue;
                        }
                        let name = path.strip_prefix(dir).unwrap_or(path).display().to_string();
                        let bytes = std::fs::read(path).expect("read corpus file");
                        let recall = match extract(&bytes, 0) {
                            Ok(x) => {
                                recall::overlap(&recall::words(&x.text), &reference) as f64
                                    / count as f64
                            }
                            // A reported failure is not silent, but it scores zero.
                            Err(_) => f64::NAN,
                        };
                        out.push((name, recall));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("recall worker panicked"))
            .collect()
    });
    let silent: Vec<&(String, f64)> = scored.iter().filter(|(_, r)| *r < 0.5).collect();
    let unexpected: Vec<_> = silent
        .iter()
        .filter(|(name, _)| !KNOWN_LOW_RECALL.iter().any(|(k, _)| k == name))
        .collect();
    assert!(
        unexpected.is_empty(),
        "silent failures (success with < half of pdftotext's words): {unexpected:?}"
    );
    let mut recalls: Vec<f64> = scored
        .iter()
        .map(|(_, r)| if r.is_nan() { 0.0 } else { *r })
        .collect();
    let (median, p10) = (
        recall::percentile(&mut recalls, 0.5),
        recall::percentile(&mut recalls, 0.1),
    );
    eprintln!(
        "word recall vs pdftotext over {} files: median {median:.3}, p10 {p10:.3}",
        recalls.len()
    );
    assert!(
        recalls.len() >= 130,
        "only {} corpus files scored",
        recalls.len()
    );
    assert!(median >= 0.99, "median recall {median:.3} < 0.99");
    assert!(p10 >= 0.95, "10th percentile recall {p10:.3} < 0.95");
}
