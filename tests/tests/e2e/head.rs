//! A custom taxonomy end to end with a trained head: generated PDFs of four
//! kinds of document a team routes by its own codes, `docsort-worker train`
//! on their folders, then `classify --head` on unseen documents, against
//! zero-shot.
//!
//! The codes (`alpha` for purchase orders, ...) say nothing about the
//! documents, so the zero-shot model, which reads the names only, can only
//! guess; the head learns them from four examples each. With self-describing
//! names (`purchase_order`, `payslip`, `timesheet`, `meeting_minutes`) zero-shot
//! and the head both labeled all 16 unseen documents right (2026-12-03), so
//! those would show no difference.

use std::path::{Path, PathBuf};
use std::process::Command;

use docsort_tests::env::worker_exe;
use docsort_worker::offline::samples::text_pdf;

/// Routing codes, in the order of the kinds below.
const CATEGORIES: [&str; 4] = ["alpha", "bravo", "charlie", "delta"];

const TAXONOMY: &str = r#"
[[category]]
name = "alpha"
description = "routed to purchasing: a buyer's order to a supplier"

[[category]]
name = "bravo"
description = "routed to payroll: an employee's pay statement"

[[category]]
name = "charlie"
description = "routed to project control: hours worked per day"

[[category]]
name = "delta"
description = "routed to the board office: the record of a meeting"
"#;

const NAMES: [&str; 8] = [
    "Ana Gutierrez",
    "Robert Klein",
    "Mei Tanaka",
    "Olu Adeyemi",
    "Sara Lindqvist",
    "Tomas Novak",
    "Priya Raman",
    "Jonas Weber",
];

/// The lines of document `i` of category `c`.
fn lines(c: usize, i: usize) -> Vec<String> {
    let name = NAMES[(i * 3 + c) % NAMES.len()];
    let other = NAMES[(i * 5 + c + 1) % NAMES.len()];
    let n = 1000 + i * 37 + c * 11;
    match c {
        0 => vec![
            format!("Order {n}"),
            format!("Vendor: {other} Supplies Ltd."),
            format!("Ship to: {name}, Receiving Dock {}", i % 4 + 1),
            format!("Item A-{n}  qty {}  unit 12.50", i + 3),
            format!("Item B-{}  qty {}  unit 4.20", n + 7, i + 10),
            "Delivery within 14 days. Reference this number on the invoice.".into(),
        ],
        1 => vec![
            format!("Statement for {name}, employee no. {n}"),
            format!("Period: month {} of 2026", i % 12 + 1),
            format!(
                "Gross {}.00  Income tax {}.00  Pension {}.00",
                3000 + i * 40,
                600 + i * 9,
                150 + i
            ),
            format!(
                "Net paid to account ending {}: {}.00",
                n % 10000,
                2250 + i * 30
            ),
        ],
        2 => vec![
            format!("{name} - week {}", i % 52 + 1),
            format!("Mon 8.0  Tue 7.5  Wed 8.0  Thu {}.0  Fri 6.0", i % 3 + 6),
            format!("Project P-{n}: {} h; internal: {} h", 30 + i % 5, 5 + i % 3),
            format!("Approved by {other}"),
        ],
        _ => vec![
            format!("Team sync {n}"),
            format!("Present: {name}, {other}; apologies: none"),
            format!(
                "1. Budget review: agreed to move {} to Q{}",
                5000 + i * 100,
                i % 4 + 1
            ),
            format!("2. Hiring: {other} to draft the role by Friday"),
            "Next meeting in two weeks.".into(),
        ],
    }
}

/// Writes `per` documents of each category into `dir/<category>/`, numbered from `first`.
fn write_set(dir: &Path, first: usize, per: usize) -> Vec<(PathBuf, &'static str)> {
    let mut out = Vec::new();
    for (c, category) in CATEGORIES.iter().enumerate() {
        let folder = dir.join(category);
        std::fs::create_dir_all(&folder).expect("folder");
        for i in first..first + per {
            let path = folder.join(format!("{i:03}.pdf"));
            std::fs::write(&path, text_pdf(&[lines(c, i)])).expect("write pdf");
            out.push((path, *category));
        }
    }
    out
}

fn run(args: &[&str]) -> String {
    run_with(args, &[])
}

/// [`run`] with these environment variables set.
fn run_with(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(worker_exe())
        .args(args)
        .envs(env.iter().copied())
        .env_remove("DOCSORT_CLASSIFIER")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run docsort-worker");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "docsort-worker {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Share of `truth` whose `classify --out` row has the right label.
fn accuracy(results: &Path, truth: &[(PathBuf, &str)]) -> f64 {
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(results)
        .expect("results")
        .lines()
        .map(|l| serde_json::from_str(l).expect("row"))
        .collect();
    assert_eq!(rows.len(), truth.len());
    let right = truth
        .iter()
        .filter(|(path, category)| {
            rows.iter().any(|r| {
                r["path"].as_str() == Some(path.to_str().expect("utf-8 path"))
                    && r["label"].as_str() == Some(category)
            })
        })
        .count();
    right as f64 / truth.len() as f64
}

#[test]
fn a_head_trained_on_a_custom_taxonomy_beats_zero_shot_on_unseen_documents() {
    let dir = std::env::temp_dir().join(format!("docsort-head-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let taxonomy = dir.join("taxonomy.toml");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(&taxonomy, TAXONOMY).expect("taxonomy");
    let t = taxonomy.to_str().expect("utf-8");
    write_set(&dir.join("train"), 0, 4);
    let unseen = write_set(&dir.join("unseen"), 100, 2);
    let head = dir.join("head.json");

    let examples = dir.join("train");
    let train_with = |out: &Path, extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec![
            "train",
            examples.to_str().expect("utf-8"),
            "--taxonomy",
            t,
            "--folds",
            "3",
            "--out",
            out.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(extra);
        run_with(&args, env)
    };
    let train = |out: &Path, extra: &[&str]| train_with(out, extra, &[]);
    let report = train(&head, &[]);
    assert!(
        report.contains("3-fold nested cross-validation"),
        "{report}"
    );
    assert!(report.contains("confusion"), "{report}");
    let written = std::fs::read_to_string(&head).expect("head");
    assert!(
        written.len() < 1_000_000,
        "the head is {} bytes",
        written.len()
    );
    let parsed: serde_json::Value = serde_json::from_str(&written).expect("head json");
    assert_eq!(
        parsed["fit_for"]["categories"],
        serde_json::json!(CATEGORIES)
    );
    assert_eq!(parsed["training"]["examples"], 16);
    assert!(
        !written.contains("Statement for"),
        "no document text in the head"
    );

    // The same data gives the same head, byte for byte: read again (and kept
    // in a feature cache), there one document at a time with the matrix
    // kernels on two threads (as `classify` reads) instead of one document
    // per core; then from that cache alone, there with the cross-validation
    // repeated over other deals of the examples to the folds (which reports
    // a spread and leaves the head as it is).
    let cache = dir.join("features.jsonl");
    let c = cache.to_str().expect("utf-8");
    for (run_no, expected_hits, extra, env) in [
        (1, 0, vec!["--cache", c], vec![("CANDLE_NUM_THREADS", "2")]),
        (2, 16, vec!["--cache", c, "--deals", "3"], vec![]),
    ] {
        let again = dir.join(format!("again-{run_no}.json"));
        let report = train_with(&again, &extra, &env);
        if !env.is_empty() {
            assert!(report.contains("(1 at a time)"), "{report}");
        }
        assert!(
            report.contains(&format!("({expected_hits} from the cache)")),
            "{report}"
        );
        assert_eq!(
            report.contains("over 3 deals of the sources to the folds"),
            extra.contains(&"--deals"),
            "{report}"
        );
        assert_eq!(std::fs::read(&again).expect("again"), written.as_bytes());
    }

    let with_head = dir.join("with.jsonl");
    let zero_shot = dir.join("zero.jsonl");
    let unseen_dir = dir.join("unseen");
    let u = unseen_dir.to_str().expect("utf-8");
    run(&[
        "classify",
        u,
        "--taxonomy",
        t,
        "--head",
        head.to_str().expect("utf-8"),
        "--out",
        with_head.to_str().expect("utf-8"),
    ]);
    run(&[
        "classify",
        u,
        "--taxonomy",
        t,
        "--no-head",
        "--out",
        zero_shot.to_str().expect("utf-8"),
    ]);
    let (head_acc, zero_acc) = (accuracy(&with_head, &unseen), accuracy(&zero_shot, &unseen));
    println!("custom taxonomy, 8 unseen documents: head {head_acc:.3}, zero-shot {zero_acc:.3}");
    assert!(head_acc >= 0.875, "head {head_acc}");
    assert!(
        head_acc > zero_acc,
        "head {head_acc} vs zero-shot {zero_acc}"
    );

    // A head for another taxonomy is refused with a clear error.
    let out = Command::new(worker_exe())
        .args(["classify", u, "--head", head.to_str().expect("utf-8")])
        .env_remove("DOCSORT_CLASSIFIER")
        .output()
        .expect("classify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("was fitted for the categories alpha, bravo"),
        "{stderr}"
    );

    // Too few examples of a category: refused, by name, before any reading.
    let small = dir.join("small");
    write_set(&small, 0, 2);
    let out = Command::new(worker_exe())
        .args([
            "train",
            small.to_str().expect("utf-8"),
            "--taxonomy",
            t,
            "--out",
        ])
        .arg(dir.join("small.json"))
        .output()
        .expect("train");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("category \"alpha\" has 2 usable example(s)"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).expect("clean up");
}
