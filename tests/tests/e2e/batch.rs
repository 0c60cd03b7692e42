//! `docsort-worker batch` as a child process, on moto and the Bedrock
//! stand-in's runtime and control plane: a full run, kills while waiting and
//! during ingestion, error records and jobs that end early, and a run below
//! the job minimum.

use std::collections::{HashMap, HashSet};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use docsort_tests::bedrock::{Call, Reply};
use docsort_tests::bedrock_batch::Fate;
use docsort_tests::env::{worker_exe, TestEnv, MODEL_ID};
use docsort_tests::wait;
use docsort_worker::classify::pricing::price_for;
use tokio::process::{Child, Command};
use tokio::task::JoinSet;

use crate::common::pdf;

const LABELS: [&str; 8] = [
    "invoice", "receipt", "contract", "resume", "letter", "form", "report", "manual",
];
const ROLE: &str = "arn:aws:iam::123456789012:role/docsort-batch";

fn key(i: usize) -> String {
    format!("docs/{i:04}.pdf")
}

/// The document number a call is about (`DOC-0042`).
fn number(call: &Call) -> Option<usize> {
    let at = call.document.find("DOC-")?;
    call.document[at + 4..].get(..4)?.parse().ok()
}

/// The right answer for document `i`.
fn label(i: usize) -> &'static str {
    LABELS[i % LABELS.len()]
}

/// Answers each document's label.
fn right(call: &Call) -> Reply {
    Reply::Answer(number(call).map_or("banana", label).to_owned())
}

/// An environment whose staging bucket is `<bucket>-stage`, with `n` documents under `docs/`.
async fn batch_env(
    name: &str,
    n: usize,
    script: impl Fn(&Call) -> Reply + Send + Sync + 'static,
) -> (TestEnv, String) {
    let env = TestEnv::new(name, script).await;
    let stage = format!("{}-stage", env.bucket);
    env.s3
        .create_bucket()
        .bucket(&stage)
        .send()
        .await
        .expect("create staging bucket");
    let mut uploads = JoinSet::new();
    for i in 0..n {
        let (s3, bucket) = (env.s3.clone(), env.bucket.clone());
        uploads.spawn(async move {
            s3.put_object()
                .bucket(bucket)
                .key(key(i))
                .body(pdf(&["Batch test document", &format!("Reference DOC-{i:04}")]).into())
                .send()
                .await
                .expect("put object");
        });
    }
    while let Some(done) = uploads.join_next().await {
        done.expect("upload");
    }
    (env, stage)
}

fn batch_command(env: &TestEnv, stage: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(worker_exe());
    command
        .arg("batch")
        .args([
            "--bucket",
            &env.bucket,
            "--prefix",
            "docs/",
            "--role-arn",
            ROLE,
            "--staging",
            &format!("s3://{stage}/batch/"),
            "--poll-secs",
            "0.2",
            "--max-poll-secs",
            "1",
            "--table",
            &env.table,
            "--queue-url",
            &env.queue_url,
            "--model-id",
            MODEL_ID,
            "--max-text-chars",
            "2000",
            "--concurrency",
            "4",
        ])
        .args(extra)
        .envs(env.child_env())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Runs `docsort-worker batch` to its end; fails the test unless it succeeds.
async fn run_batch(env: &TestEnv, stage: &str, extra: &[&str]) -> String {
    let out: Output = tokio::time::timeout(
        Duration::from_secs(300),
        batch_command(env, stage, extra).output(),
    )
    .await
    .expect("batch finishes within 5 minutes")
    .expect("run docsort-worker batch");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "docsort-worker batch failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn spawn_batch(env: &TestEnv, stage: &str, extra: &[&str]) -> Child {
    batch_command(env, stage, extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start docsort-worker batch")
}

/// Runs the pool until `n` documents have a label and returns the items:
/// what the batch run sent on-demand, labeled.
async fn drain_queue(env: &TestEnv, n: usize) -> HashMap<String, docsort_schema::LabelRecord> {
    let worker = env.start_worker().await;
    wait::until(
        "every document labeled",
        Duration::from_secs(240),
        || async {
            (env.items()
                .await
                .values()
                .filter(|r| r.label().is_some())
                .count()
                == n)
                .then_some(())
        },
    )
    .await;
    worker.stop().await;
    env.items().await
}

/// The number after `what ` in a summary line (`staged 42`).
fn count(summary: &str, what: &str) -> u64 {
    summary
        .split(&format!("{what} "))
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {what:?} count in {summary:?}"))
}

/// Keys under `prefix` in `bucket`.
async fn keys(env: &TestEnv, bucket: &str, prefix: &str) -> Vec<String> {
    let out = env
        .s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .expect("list");
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

/// Every record key in the input files of every job, with how often it was staged.
async fn staged_keys(env: &TestEnv, stage: &str) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for key in keys(env, stage, "batch/").await {
        if !key.contains("/manifest/") {
            continue;
        }
        let body = env
            .s3
            .get_object()
            .bucket(stage)
            .key(&key)
            .send()
            .await
            .expect("get manifest")
            .body
            .collect()
            .await
            .expect("manifest body")
            .to_vec();
        for line in String::from_utf8_lossy(&body).lines() {
            let entry: serde_json::Value = serde_json::from_str(line).expect("manifest line");
            *seen
                .entry(entry["key"].as_str().expect("key").to_owned())
                .or_default() += 1;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_run_labels_every_new_document_at_half_price_and_pays_once() {
    const N: usize = 150;
    let (env, stage) = batch_env("batch-full", N, right).await;
    let stdout = run_batch(
        &env,
        &stage,
        &["--file-records", "40", "--metrics-namespace", "DocsortTest"],
    )
    .await;
    let (metric_lines, summary): (Vec<&str>, Vec<&str>) =
        stdout.lines().partition(|l| l.starts_with('{'));
    let summary = summary.join("\n");
    assert_eq!(count(&summary, "staged"), N as u64, "{summary}");
    assert_eq!(count(&summary, "jobs created"), 1, "{summary}");
    assert_eq!(count(&summary, "on-demand"), 0, "{summary}");

    let jobs = env.bedrock.batch.jobs();
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!((job.records, job.status.as_str()), (N, "Completed"));
    assert_eq!(job.invocation_type, "Converse");
    assert_eq!(job.role_arn, ROLE);
    // Four input files of at most 40 records, each key staged once.
    let inputs: Vec<String> = keys(&env, &stage, "batch/")
        .await
        .into_iter()
        .filter(|k| k.contains("/input/") && k.ends_with(".jsonl"))
        .collect();
    assert_eq!(inputs.len(), 4, "{inputs:?}");
    let staged = staged_keys(&env, &stage).await;
    assert_eq!(staged.len(), N);
    assert!(staged.values().all(|&n| n == 1));

    // Every label is right (the outputs came back shuffled), names the job,
    // and costs the batch price: half of on-demand for the same tokens.
    let on_demand = price_for(MODEL_ID).expect("price");
    let items = env.items().await;
    assert_eq!(items.len(), N);
    for i in 0..N {
        let item = &items[&key(i)];
        assert_eq!(item.label(), Some(label(i)), "{}", key(i));
        assert_eq!(item.batch_job.as_deref(), Some(job.arn.as_str()));
        assert_eq!(item.prompt_version, env.label_version());
        assert!(item.input_tokens > 100, "{item:?}");
        let full = on_demand.cost(item.input_tokens, item.output_tokens);
        let cost = item.cost_usd.expect("cost");
        assert!((cost - full * 0.5).abs() < 1e-12, "{cost} vs {full}");
        assert!(cost <= 0.55 * full);
    }
    assert_eq!(env.bedrock.call_count(), 0, "no on-demand call");
    assert_eq!(env.depth(&env.queue_url).await, (0, 0));
    // One metric line for the one job: what it labeled and cost, as the pool reports it.
    assert_eq!(metric_lines.len(), 1, "{metric_lines:?}");
    let line: serde_json::Value = serde_json::from_str(metric_lines[0]).expect("EMF line");
    assert_eq!(
        line["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "DocsortTest"
    );
    assert_eq!(line["DocumentsLabeled"], N as f64);
    let spent: f64 = items.values().filter_map(|r| r.cost_usd).sum();
    let reported = line["ModelCostUsd"].as_f64().expect("ModelCostUsd");
    assert!((reported - spent).abs() < 1e-9, "{reported} vs {spent}");
    // The run is finished: its state moved into its own folder.
    let state = keys(&env, &stage, "batch/").await;
    assert_eq!(
        state.iter().filter(|k| k.ends_with("run.json")).count(),
        1,
        "{state:?}"
    );
    assert!(!state
        .iter()
        .any(|k| k.matches('/').count() == 2 && k.ends_with("/run.json")));

    // The next night: nothing is new, nothing is staged or paid.
    let again = run_batch(&env, &stage, &[]).await;
    assert_eq!(count(&again, "selected"), 0, "{again}");
    assert_eq!(env.bedrock.batch.creates(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_while_waiting_it_resumes_the_same_job_and_creates_no_second() {
    const N: usize = 120;
    let (env, stage) = batch_env("batch-wait", N, right).await;
    env.bedrock.batch.hold(true);
    let mut first = spawn_batch(&env, &stage, &[]);
    wait::until(
        "the job to be in progress",
        Duration::from_secs(120),
        || async {
            let jobs = env.bedrock.batch.jobs();
            (jobs.len() == 1 && jobs[0].status == "InProgress").then_some(())
        },
    )
    .await;
    first.start_kill().expect("SIGKILL batch");
    first.wait().await.expect("killed batch exits");

    // A kill between CreateModelInvocationJob and saving its ARN: the saved
    // state has no ARN, so the resumed run must find the job by its name.
    let state_key = keys(&env, &stage, "batch/")
        .await
        .into_iter()
        .find(|k| k.ends_with("/run.json"))
        .expect("the unfinished run's state");
    let body = env
        .s3
        .get_object()
        .bucket(&stage)
        .key(&state_key)
        .send()
        .await
        .expect("get state")
        .body
        .collect()
        .await
        .expect("state body")
        .to_vec();
    let mut state: serde_json::Value = serde_json::from_slice(&body).expect("state json");
    assert_eq!(state["ingested"], true);
    state["jobs"][0]["arn"] = serde_json::Value::Null;
    env.s3
        .put_object()
        .bucket(&stage)
        .key(&state_key)
        .body(serde_json::to_vec(&state).expect("json").into())
        .send()
        .await
        .expect("put state");

    // Another label version must not take the unfinished run over.
    let other = batch_command(&env, &stage, &["--max-text-chars", "3000"])
        .output()
        .await
        .expect("run batch");
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert!(!other.status.success());
    assert!(
        stderr.contains("an unfinished batch run of this prefix") && stderr.contains(&state_key),
        "{stderr}"
    );

    let lists_before = env.bedrock.batch.lists();
    let resumed = spawn_batch(&env, &stage, &[]);
    wait::until(
        "the resumed run to look the job up",
        Duration::from_secs(60),
        || async { (env.bedrock.batch.lists() > lists_before).then_some(()) },
    )
    .await;
    env.bedrock.batch.hold(false);
    let out = tokio::time::timeout(Duration::from_secs(120), resumed.wait_with_output())
        .await
        .expect("resumed run ends")
        .expect("resumed run");
    assert!(out.status.success(), "{}", out.status);

    assert_eq!(env.bedrock.batch.creates(), 1, "no second job");
    let arn = env.bedrock.batch.jobs()[0].arn.clone();
    let items = env.items().await;
    assert_eq!(items.len(), N);
    for i in 0..N {
        let item = &items[&key(i)];
        assert_eq!(item.label(), Some(label(i)));
        assert_eq!(item.batch_job.as_deref(), Some(arn.as_str()));
        assert_eq!(item.attempts, 1);
    }
    assert_eq!(env.bedrock.call_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_during_ingestion_it_stages_the_rest_and_nothing_twice() {
    const N: usize = 240;
    let (env, stage) = batch_env("batch-ingest", N, right).await;
    let mut first = spawn_batch(
        &env,
        &stage,
        &["--file-records", "10", "--concurrency", "1"],
    );
    wait::until("two staged chunks", Duration::from_secs(120), || async {
        let manifests = keys(&env, &stage, "batch/")
            .await
            .into_iter()
            .filter(|k| k.contains("/manifest/"))
            .count();
        (manifests >= 2).then_some(())
    })
    .await;
    first.start_kill().expect("SIGKILL batch");
    first.wait().await.expect("killed batch exits");
    assert_eq!(env.bedrock.batch.creates(), 0, "killed before any job");
    let staged_before: usize = staged_keys(&env, &stage).await.values().sum();
    assert!((20..N).contains(&staged_before), "{staged_before}");

    let summary = run_batch(&env, &stage, &["--file-records", "10"]).await;
    // The resumed run took over what was staged and extracted only the rest.
    assert_eq!(
        count(&summary, "interrupted run"),
        staged_before as u64,
        "{summary}"
    );
    assert_eq!(
        count(&summary, "staged") as usize,
        N - staged_before,
        "{summary}"
    );
    let staged = staged_keys(&env, &stage).await;
    assert_eq!(staged.len(), N);
    assert!(staged.values().all(|&n| n == 1), "a document staged twice");
    assert_eq!(env.bedrock.batch.creates(), 1);
    assert_eq!(env.bedrock.batch.jobs()[0].records, N);
    let items = env.items().await;
    assert_eq!(items.len(), N);
    assert!((0..N).all(|i| items[&key(i)].label() == Some(label(i))));
    assert_eq!(env.bedrock.call_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_folder_is_submitted_during_ingestion_and_once_after_a_kill() {
    const N: usize = 250;
    let (env, stage) = batch_env("batch-early", N, right).await;
    env.bedrock.batch.hold(true);
    let extra = ["--max-records", "100", "--concurrency", "1"];
    let mut first = spawn_batch(&env, &stage, &extra);
    wait::until(
        "the first job, created during ingestion",
        Duration::from_secs(120),
        || async { (env.bedrock.batch.creates() == 1).then_some(()) },
    )
    .await;
    first.start_kill().expect("SIGKILL batch");
    first.wait().await.expect("killed batch exits");
    let staged_at_kill: usize = staged_keys(&env, &stage).await.values().sum();
    assert!(
        staged_at_kill < N,
        "killed during ingestion ({staged_at_kill} staged)"
    );

    env.bedrock.batch.hold(false);
    let summary = run_batch(&env, &stage, &extra).await;
    // 100 + 100 in two jobs, the last 50 below the minimum: on-demand.
    let jobs = env.bedrock.batch.jobs();
    assert_eq!(
        jobs.iter().map(|j| j.records).collect::<Vec<_>>(),
        [100, 100]
    );
    assert_eq!(count(&summary, "jobs created"), 1, "{summary}");
    assert_eq!(count(&summary, "below the job minimum"), 50, "{summary}");
    let staged = staged_keys(&env, &stage).await;
    assert_eq!(staged.len(), N);
    assert!(staged.values().all(|&n| n == 1), "a document staged twice");
    let items = drain_queue(&env, N).await;
    assert!((0..N).all(|i| items[&key(i)].label() == Some(label(i))));
    assert_eq!(
        items.values().filter(|r| r.batch_job.is_some()).count(),
        200
    );
    assert_eq!(env.bedrock.call_count(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn error_records_and_jobs_that_end_early_are_labeled_on_demand() {
    const N: usize = 300;
    // First sight of a document ending in 3: throttled (an error record);
    // ending in 7: no category. Seen again (the re-ask, or on-demand): the
    // right label.
    let seen: Arc<Mutex<HashSet<usize>>> = Arc::default();
    let first_sight = seen.clone();
    let (env, stage) = batch_env("batch-errors", N, move |call| {
        let Some(i) = number(call) else {
            return Reply::Answer("banana".into());
        };
        if first_sight.lock().unwrap().insert(i) {
            match i % 10 {
                3 => return Reply::Throttle,
                7 => return Reply::Answer("banana".into()),
                _ => {}
            }
        }
        Reply::Answer(label(i).to_owned())
    })
    .await;
    env.bedrock
        .batch
        .set_fates(&[Fate::Complete, Fate::Fail, Fate::Expire]);
    let summary = run_batch(&env, &stage, &["--max-records", "100"]).await;
    let jobs = env.bedrock.batch.jobs();
    let statuses: Vec<&str> = jobs.iter().map(|j| j.status.as_str()).collect();
    assert_eq!(statuses, ["Completed", "Failed", "Expired"]);
    assert!(jobs.iter().all(|j| j.records == 100));

    let in_batch = seen.lock().unwrap().clone();
    assert_eq!(
        in_batch.len(),
        100 + 33,
        "the completed job and a third of the expired one"
    );
    let errors = in_batch.iter().filter(|i| *i % 10 == 3).count() as u64;
    let unparseable = in_batch.iter().filter(|i| *i % 10 == 7).count() as u64;
    assert_eq!(count(&summary, "error records"), errors, "{summary}");
    assert_eq!(count(&summary, "re-asked"), unparseable, "{summary}");
    assert_eq!(count(&summary, "failed after the re-ask"), 0, "{summary}");
    assert_eq!(count(&summary, "unprocessed"), 100 + 67, "{summary}");
    let on_demand = count(&summary, "on-demand");
    assert_eq!(on_demand, errors + 167, "{summary}");
    // The batch run's own model calls: one re-ask per answer that was no category.
    let reasks = env.bedrock.calls();
    assert_eq!(reasks.len() as u64, unparseable);
    for call in &reasks {
        let i = number(call).expect("a re-ask is about a document");
        assert_eq!(i % 10, 7);
        let roles: Vec<&str> = call.turns.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(
            roles,
            ["user", "assistant", "user"],
            "the batch answer, then the re-ask"
        );
        assert_eq!(call.turns[1].1, "banana");
    }

    // The pool labels what went on-demand.
    let items = drain_queue(&env, N).await;
    let by_batch = items.values().filter(|r| r.batch_job.is_some()).count() as u64;
    assert_eq!(by_batch + on_demand, N as u64);
    // One call per on-demand document, and one more for those first seen
    // on-demand that were throttled (retried) or answered no category (re-asked).
    let first_seen_on_demand = (0..N)
        .filter(|i| !in_batch.contains(i) && matches!(i % 10, 3 | 7))
        .count() as u64;
    assert_eq!(
        env.bedrock.call_count() as u64,
        unparseable + on_demand + first_seen_on_demand
    );
    for i in 0..N {
        let item = &items[&key(i)];
        assert_eq!(item.label(), Some(label(i)), "{}", key(i));
        if let Some(job) = &item.batch_job {
            assert!(in_batch.contains(&i) && i % 10 != 3);
            assert_ne!(job, &jobs[1].arn, "the failed job labeled nothing");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn below_the_job_minimum_documents_go_on_demand() {
    const N: usize = 30;
    let (env, stage) = batch_env("batch-small", N, right).await;
    let summary = run_batch(&env, &stage, &[]).await;
    assert_eq!(
        count(&summary, "below the job minimum"),
        N as u64,
        "{summary}"
    );
    assert_eq!(count(&summary, "jobs created"), 0, "{summary}");
    assert!(
        env.bedrock.batch.jobs().is_empty(),
        "no job below the minimum"
    );
    let items = drain_queue(&env, N).await;
    assert!((0..N)
        .all(|i| items[&key(i)].label() == Some(label(i)) && items[&key(i)].batch_job.is_none()));
    assert_eq!(env.bedrock.call_count(), N);
}
