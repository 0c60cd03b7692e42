//! The offline main job: `docsort-worker samples` + `classify` with the
//! embedded model, as `scripts/quickstart` runs it.

use std::collections::HashMap;
use std::process::Command;

use docsort_tests::env::worker_exe;
use docsort_tests::scanned::{blank_pdf, image_pdf, render_text, scanner_like, Storage, A4_PT};

#[test]
fn classify_labels_the_samples_offline_and_writes_jsonl_and_csv() {
    let dir = std::env::temp_dir().join(format!("docsort-samples-{}", std::process::id()));
    let out = Command::new(worker_exe())
        .arg("samples")
        .arg(&dir)
        .output()
        .expect("samples");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jsonl = dir.join("labels.jsonl");
    let csv = dir.join("labels.csv");
    for target in [&jsonl, &csv] {
        let run = Command::new(worker_exe())
            .args(["classify", "--classifier", "local", "--out"])
            .arg(target)
            .arg(&dir)
            .env_remove("DOCSORT_CLASSIFIER")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .expect("classify");
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(stdout.contains("documents: 8"), "{stdout}");
    }
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&jsonl)
        .expect("jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(rows.len(), 8);
    let mut right = 0;
    for row in &rows {
        // Sample files are named after their category: "invoice-....pdf".
        let path = row["path"].as_str().expect("path");
        let want = std::path::Path::new(path)
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split('-').next())
            .expect("name");
        assert_eq!(row["status"], "labeled", "{row}");
        assert_eq!(row["model_id"], "local:qwen2.5-coder-1.5b-instruct-q4_k_m");
        assert_eq!(row["cost_usd"], 0.0);
        assert!(row["input_tokens"].as_u64().unwrap_or(0) > 20);
        if row["label"] == want {
            right += 1;
        }
    }
    assert!(
        right >= 7,
        "the embedded model got {right} of 8 samples right: {rows:?}"
    );
    let csv_text = std::fs::read_to_string(&csv).expect("csv");
    assert_eq!(csv_text.lines().count(), 9, "header and 8 rows");
    assert!(csv_text.starts_with("path,status,label,failure"));
}

/// `classify --out FILE PATHS` with the embedded model, `path` set to
/// `PATH` for the extraction child; the JSONL rows by file name.
fn classify_offline(dir: &std::path::Path, path: &str) -> HashMap<String, serde_json::Value> {
    let out = dir.join("labels.jsonl");
    let run = Command::new(worker_exe())
        .args(["classify", "--classifier", "local", "--out"])
        .arg(&out)
        .arg(dir)
        .env_remove("DOCSORT_CLASSIFIER")
        .env("PATH", path)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("classify");
    assert!(
        run.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    std::fs::read_to_string(&out)
        .expect("jsonl")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line"))
        .map(|row| {
            let name = std::path::Path::new(row["path"].as_str().expect("path"))
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            (name, row)
        })
        .collect()
}

#[test]
fn a_scanned_invoice_is_read_by_ocr_and_labeled_offline() {
    if which("tesseract").is_none() || which("pdftoppm").is_none() {
        eprintln!("*** SKIPPED: tesseract or pdftoppm not found (install tesseract-ocr, tesseract-ocr-eng, poppler-utils; scripts/test does) ***");
        return;
    }
    let dir = std::env::temp_dir().join(format!("docsort-scans-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let page = render_text(
        &[
            "INVOICE".into(),
            "Invoice number: INV-2024-0117        Date: 12 March 2024".into(),
            "Bill to: Northwind Traders Ltd, 12 Harbour Road, Leeds".into(),
            "Description                     Qty    Unit price    Amount".into(),
            "Consulting services, February    10      120.00     1,200.00".into(),
            "Subtotal 1,200.00   VAT 20% 240.00   Total due 1,440.00 GBP".into(),
            "Payment due within 30 days. Bank transfer to IBAN GB29 NWBK 6016".into(),
        ],
        150,
    );
    let scan = scanner_like(&page, 3);
    std::fs::write(
        dir.join("invoice-scan.pdf"),
        image_pdf(&scan, Storage::Jpeg { quality: 75 }, A4_PT, 0),
    )
    .expect("write");
    std::fs::write(dir.join("blank-scan.pdf"), blank_pdf()).expect("write");

    let path = std::env::var("PATH").unwrap_or_default();
    let rows = classify_offline(&dir, &path);
    let invoice = &rows["invoice-scan.pdf"];
    assert_eq!(invoice["status"], "labeled", "{invoice}");
    assert_eq!(invoice["text_source"], "ocr", "{invoice}");
    assert_eq!(invoice["label"], "invoice", "{invoice}");
    assert!(
        invoice["text_chars"].as_u64().unwrap_or(0) > 100,
        "{invoice}"
    );
    let blank = &rows["blank-scan.pdf"];
    assert_eq!(blank["failure"], "no_text", "{blank}");

    // Without tesseract on PATH: no_text, and the detail says what to install.
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let pdftoppm = which("pdftoppm").expect("pdftoppm is on PATH (checked above)");
    let _ = std::fs::remove_file(bin.join("pdftoppm"));
    std::os::unix::fs::symlink(pdftoppm, bin.join("pdftoppm")).expect("symlink");
    std::fs::remove_file(dir.join("blank-scan.pdf")).expect("remove");
    let rows = classify_offline(&dir, &bin.to_string_lossy());
    let invoice = &rows["invoice-scan.pdf"];
    assert_eq!(invoice["failure"], "no_text", "{invoice}");
    let detail = invoice["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("tesseract") && detail.contains("apt-get install tesseract-ocr"),
        "{detail}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Where `tool` is on PATH, if it is.
fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}
