//! The offline main job: `docsort-worker samples` + `classify` with the
//! embedded model, as `scripts/quickstart` runs it.

use std::process::Command;

use docsort_tests::env::worker_exe;

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
