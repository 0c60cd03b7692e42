//! The Bedrock control plane's batch inference jobs, as a stand-in: Create,
//! Get, List and Stop ModelInvocationJob as the SDK calls them (restJson1,
//! `AWS_ENDPOINT_URL_BEDROCK`), served by the same server as the runtime
//! stand-in ([`crate::bedrock::StandIn`]) and answering each record with the
//! same script.
//!
//! Create checks what Bedrock checks (name, role ARN, token and S3 URI
//! patterns, timeout range, input format) and reads the input from moto's S3:
//! fewer records than the minimum, more than the job quota, a duplicate
//! recordId or a `modelInput` that Converse refuses are refused with
//! Bedrock's `ValidationException` and recorded as refusals (the test fails).
//! The same token returns the same job; the same name with another token is
//! a `ConflictException`.
//!
//! A job advances one step per Get: `Submitted`, then `InProgress`, then its
//! fate ([`Fate`]), writing outputs in Bedrock's layout:
//! `<output>/<job id>/<input file>.out` lines in shuffled order (error
//! records for throttles and unavailability) and `manifest.json.out`. A test
//! can hold every job `InProgress` ([`BatchControl::hold`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::bedrock::{self, error, Reply, Script};

/// How a job ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Every record gets an output line: `Completed`.
    Complete,
    /// Half the records get output lines: `PartiallyCompleted`.
    PartiallyComplete,
    /// No output: `Failed`.
    Fail,
    /// A third of the records get output lines: `Expired`.
    Expire,
    /// A third of the records get output lines: `Stopped`.
    Stop,
}

/// One job as the stand-in keeps it.
#[derive(Debug, Clone)]
pub struct BatchJob {
    pub arn: String,
    pub name: String,
    pub token: String,
    pub model_id: String,
    pub role_arn: String,
    pub input_uri: String,
    pub output_uri: String,
    pub invocation_type: String,
    pub timeout_hours: i64,
    pub status: String,
    pub message: Option<String>,
    /// Records in its input.
    pub records: usize,
    pub fate: Fate,
    pub submitted: chrono::DateTime<chrono::Utc>,
}

/// The control plane's state, shared with the test.
pub struct BatchControl {
    script: Script,
    s3: aws_sdk_s3::Client,
    jobs: Mutex<Vec<BatchJob>>,
    /// Fates of the next jobs created, in order (then `Complete`).
    fates: Mutex<Vec<Fate>>,
    held: AtomicBool,
    creates: AtomicUsize,
    lists: AtomicUsize,
    refusals: Arc<Mutex<Vec<String>>>,
    /// Bedrock's minimum records per job.
    pub min_records: usize,
    /// Bedrock's most records per job.
    pub max_records: usize,
}

impl BatchControl {
    /// A control plane answering records by `script`, reading and writing
    /// moto's S3 with `s3`, recording refusals into `refusals`.
    pub fn new(script: Script, s3: aws_sdk_s3::Client, refusals: Arc<Mutex<Vec<String>>>) -> Self {
        BatchControl {
            script,
            s3,
            jobs: Mutex::default(),
            fates: Mutex::default(),
            held: AtomicBool::new(false),
            creates: AtomicUsize::new(0),
            lists: AtomicUsize::new(0),
            refusals,
            min_records: 100,
            max_records: 50_000,
        }
    }

    /// Every job created so far.
    pub fn jobs(&self) -> Vec<BatchJob> {
        self.jobs.lock().expect("jobs lock").clone()
    }

    /// Create calls that made a new job.
    pub fn creates(&self) -> usize {
        self.creates.load(Ordering::SeqCst)
    }

    /// List calls so far.
    pub fn lists(&self) -> usize {
        self.lists.load(Ordering::SeqCst)
    }

    /// Keeps every job `InProgress` (true) or lets them finish (false).
    pub fn hold(&self, held: bool) {
        self.held.store(held, Ordering::SeqCst);
    }

    /// The next jobs created end this way, in order.
    pub fn set_fates(&self, fates: &[Fate]) {
        *self.fates.lock().expect("fates lock") = fates.to_vec();
    }

    fn refuse(&self, message: String) -> Response {
        self.refusals
            .lock()
            .expect("refusals lock")
            .push(message.clone());
        error(StatusCode::BAD_REQUEST, "ValidationException", &message)
    }
}

/// The control plane's routes.
pub fn routes(control: Arc<BatchControl>) -> Router {
    Router::new()
        .route("/model-invocation-job", post(create))
        .route("/model-invocation-jobs", get(list))
        .route("/model-invocation-job/{id}", get(get_job))
        .route("/model-invocation-job/{id}/stop", post(stop))
        .with_state(control)
}

fn matches_name(s: &str) -> bool {
    // [a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}
    let first_len = s.bytes().take_while(u8::is_ascii_alphanumeric).count();
    (1..=63).contains(&first_len)
        && s.len() <= 127
        && s[first_len..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
}

fn matches_token(s: &str) -> bool {
    // [a-zA-Z0-9]{1,256}(-*[a-zA-Z0-9]){0,256}
    !s.is_empty()
        && s.len() <= 512
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn matches_role(s: &str) -> bool {
    // arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+
    let Some(rest) = s.strip_prefix("arn:aws") else {
        return false;
    };
    let Some((_, rest)) = rest.split_once(":iam::") else {
        return false;
    };
    let Some((account, role)) = rest.split_once(":role/") else {
        return false;
    };
    (account.is_empty() || (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())))
        && !role.is_empty()
}

/// `s3://bucket/prefix` split, when it matches Bedrock's S3 URI pattern.
fn split_s3(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    ok.then(|| (bucket.to_owned(), key.to_owned()))
}

/// The JSONL input files of a job: `(key, lines)`.
async fn read_inputs(
    s3: &aws_sdk_s3::Client,
    uri: &str,
) -> Result<Vec<(String, Vec<Value>)>, String> {
    let (bucket, prefix) = split_s3(uri).ok_or_else(|| format!("bad input S3 URI {uri}"))?;
    let listed = s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix(&prefix)
        .send()
        .await
        .map_err(|e| format!("cannot list the input {uri}: {e}"))?;
    let mut out = Vec::new();
    for key in listed
        .contents()
        .iter()
        .filter_map(|o| o.key())
        .filter(|k| k.ends_with(".jsonl"))
    {
        let body = s3
            .get_object()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| format!("cannot read {key}: {e}"))?
            .body
            .collect()
            .await
            .map_err(|e| format!("cannot read {key}: {e}"))?
            .to_vec();
        let mut lines = Vec::new();
        for (i, line) in body.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let value: Value = serde_json::from_slice(line)
                .map_err(|e| format!("{key} line {}: not JSON ({e})", i + 1))?;
            lines.push(value);
        }
        out.push((key.to_owned(), lines));
    }
    Ok(out)
}

async fn create(State(control): State<Arc<BatchControl>>, Json(body): Json<Value>) -> Response {
    let s = |path: &[&str]| {
        path.iter()
            .fold(&body, |v, p| &v[*p])
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    let name = s(&["jobName"]);
    let token = s(&["clientRequestToken"]);
    let role = s(&["roleArn"]);
    let model_id = s(&["modelId"]);
    let input_uri = s(&["inputDataConfig", "s3InputDataConfig", "s3Uri"]);
    let output_uri = s(&["outputDataConfig", "s3OutputDataConfig", "s3Uri"]);
    let invocation_type = body["modelInvocationType"]
        .as_str()
        .unwrap_or("InvokeModel")
        .to_owned();
    let timeout_hours = body["timeoutDurationInHours"].as_i64().unwrap_or(24);
    if !matches_name(&name) {
        return control.refuse(format!("1 validation error detected: Value '{name}' at 'jobName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9]{{1,63}}(-*[a-zA-Z0-9\\+\\-\\.]){{0,63}}"));
    }
    if !token.is_empty() && !matches_token(&token) {
        return control.refuse(format!("1 validation error detected: Value '{token}' at 'clientRequestToken' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9]{{1,256}}(-*[a-zA-Z0-9]){{0,256}}"));
    }
    if !matches_role(&role) {
        return control.refuse(format!("1 validation error detected: Value '{role}' at 'roleArn' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:aws(-[^:]+)?:iam::([0-9]{{12}})?:role/.+"));
    }
    if model_id.is_empty() {
        return control.refuse("1 validation error detected: Value null at 'modelId' failed to satisfy constraint: Member must not be null".into());
    }
    if split_s3(&input_uri).is_none() || split_s3(&output_uri).is_none() {
        return control.refuse(format!("1 validation error detected: the input ({input_uri}) or output ({output_uri}) S3 URI does not match s3://[a-z0-9][\\.\\-a-z0-9]{{1,61}}[a-z0-9](/.*)?"));
    }
    if !(24..=168).contains(&timeout_hours) {
        return control.refuse(format!("1 validation error detected: Value '{timeout_hours}' at 'timeoutDurationInHours' failed to satisfy constraint: Member must have value between 24 and 168"));
    }
    if !matches!(invocation_type.as_str(), "Converse" | "InvokeModel") {
        return control.refuse(format!("1 validation error detected: Value '{invocation_type}' at 'modelInvocationType' failed to satisfy constraint: Member must satisfy enum value set: [Converse, InvokeModel]"));
    }
    if let Some(format) = body["inputDataConfig"]["s3InputDataConfig"]["s3InputFormat"].as_str() {
        if format != "JSONL" {
            return control.refuse(format!("1 validation error detected: Value '{format}' at 'inputDataConfig.s3InputDataConfig.s3InputFormat' failed to satisfy constraint: Member must satisfy enum value set: [JSONL]"));
        }
    }
    {
        let jobs = control.jobs.lock().expect("jobs lock");
        if let Some(job) = jobs.iter().find(|j| !token.is_empty() && j.token == token) {
            return Json(json!({ "jobArn": job.arn })).into_response();
        }
        if jobs.iter().any(|j| j.name == name) {
            return error(
                StatusCode::CONFLICT,
                "ConflictException",
                &format!("A model invocation job with the name {name} already exists."),
            );
        }
    }
    let inputs = match read_inputs(&control.s3, &input_uri).await {
        Ok(inputs) if !inputs.is_empty() => inputs,
        Ok(_) => {
            return control.refuse(format!(
                "No JSONL files were found at the input location {input_uri}."
            ))
        }
        Err(e) => return control.refuse(e),
    };
    let mut ids = std::collections::HashSet::new();
    let mut records = 0;
    for (key, lines) in &inputs {
        for line in lines {
            records += 1;
            let id = line["recordId"].as_str().unwrap_or("").to_owned();
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return control.refuse(format!(
                    "{key}: recordId {id:?} is not an alphanumeric string"
                ));
            }
            if !ids.insert(id.clone()) {
                return control.refuse(format!(
                    "{key}: recordId {id} appears twice in the job's input"
                ));
            }
            if invocation_type == "Converse" {
                if let Err(message) = bedrock::validate(&line["modelInput"]) {
                    return control.refuse(format!("{key} record {id}: {message}"));
                }
            } else {
                return control.refuse(format!("{key} record {id}: an InvokeModel job's modelInput must be the model's own request body, not a Converse request"));
            }
        }
    }
    if records < control.min_records {
        return control.refuse(format!("The number of records in the input ({records}) is less than the minimum number of records per batch inference job ({}).", control.min_records));
    }
    if records > control.max_records {
        return control.refuse(format!("The number of records in the input ({records}) exceeds the maximum number of records per batch inference job ({}).", control.max_records));
    }
    let fate = {
        let mut fates = control.fates.lock().expect("fates lock");
        if fates.is_empty() {
            Fate::Complete
        } else {
            fates.remove(0)
        }
    };
    let mut jobs = control.jobs.lock().expect("jobs lock");
    let id = format!("{:012x}", 0x5ad0_0000_0000u64 + jobs.len() as u64 + 1);
    let arn = format!("arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/{id}");
    jobs.push(BatchJob {
        arn: arn.clone(),
        name,
        token,
        model_id,
        role_arn: role,
        input_uri,
        output_uri,
        invocation_type,
        timeout_hours,
        status: "Submitted".into(),
        message: None,
        records,
        fate,
        submitted: chrono::Utc::now(),
    });
    control.creates.fetch_add(1, Ordering::SeqCst);
    Json(json!({ "jobArn": arn })).into_response()
}

fn find(control: &BatchControl, id: &str) -> Option<BatchJob> {
    control
        .jobs
        .lock()
        .expect("jobs lock")
        .iter()
        .find(|j| j.arn == id || j.arn.ends_with(&format!("/{id}")))
        .cloned()
}

fn describe(job: &BatchJob) -> Value {
    let t = |d: chrono::DateTime<chrono::Utc>| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    json!({
        "jobArn": job.arn,
        "jobName": job.name,
        "modelId": job.model_id,
        "clientRequestToken": job.token,
        "roleArn": job.role_arn,
        "status": job.status,
        "message": job.message,
        "submitTime": t(job.submitted),
        "lastModifiedTime": t(chrono::Utc::now()),
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": job.input_uri, "s3InputFormat": "JSONL"}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": job.output_uri}},
        "timeoutDurationInHours": job.timeout_hours,
        "jobExpirationTime": t(job.submitted + chrono::Duration::hours(job.timeout_hours)),
        "modelInvocationType": job.invocation_type,
    })
}

async fn get_job(State(control): State<Arc<BatchControl>>, Path(id): Path<String>) -> Response {
    let Some(job) = find(&control, &id) else {
        return error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("The specified job {id} does not exist."),
        );
    };
    let next = match job.status.as_str() {
        "Submitted" => Ok(Some(("InProgress", None))),
        "Stopping" => finish(&control, &job, Fate::Stop).await,
        "InProgress" if !control.held.load(Ordering::SeqCst) => {
            finish(&control, &job, job.fate).await
        }
        _ => Ok(None),
    };
    let next = match next {
        Ok(next) => next,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerException",
                &e,
            )
        }
    };
    let mut jobs = control.jobs.lock().expect("jobs lock");
    let Some(stored) = jobs.iter_mut().find(|j| j.arn == job.arn) else {
        return error(StatusCode::NOT_FOUND, "ResourceNotFoundException", "gone");
    };
    if let Some((status, message)) = next {
        stored.status = status.into();
        stored.message = message.map(str::to_owned);
    }
    Json(describe(stored)).into_response()
}

/// Ends `job` as `fate` says, writing the outputs it leaves: its new
/// status and message.
async fn finish(
    control: &BatchControl,
    job: &BatchJob,
    fate: Fate,
) -> Result<Option<(&'static str, Option<&'static str>)>, String> {
    let (status, share, message) = match fate {
        Fate::Complete => ("Completed", 1.0, None),
        Fate::PartiallyComplete => ("PartiallyCompleted", 0.5, None),
        Fate::Fail => ("Failed", 0.0, Some("Internal error: the job failed.")),
        Fate::Expire => ("Expired", 1.0 / 3.0, Some("The job timed out.")),
        Fate::Stop => ("Stopped", 1.0 / 3.0, Some("The job was stopped.")),
    };
    write_outputs(control, job, share).await?;
    Ok(Some((status, message)))
}

/// Writes the outputs of the first `share` of the job's records (every
/// input file's `.out`, lines shuffled) and `manifest.json.out`.
async fn write_outputs(control: &BatchControl, job: &BatchJob, share: f64) -> Result<(), String> {
    let inputs = read_inputs(&control.s3, &job.input_uri).await?;
    let (out_bucket, out_prefix) = split_s3(&job.output_uri).ok_or("bad output URI")?;
    let out_prefix = match out_prefix.trim_end_matches('/') {
        "" => String::new(),
        p => format!("{p}/"),
    };
    let job_id = job.arn.rsplit('/').next().unwrap_or("");
    let total: usize = inputs.iter().map(|(_, l)| l.len()).sum();
    let processed = (total as f64 * share).floor() as usize;
    let (mut seen, mut errors, mut input_tokens, mut output_tokens) = (0, 0, 0u64, 0u64);
    for (key, lines) in inputs {
        let mut out_lines = Vec::new();
        for line in lines {
            if seen >= processed {
                break;
            }
            seen += 1;
            let input = &line["modelInput"];
            let call = bedrock::call_of(&job.model_id, input, Instant::now());
            let tokens = bedrock::input_tokens(&call);
            let mut reply = (control.script)(&call);
            while let Reply::After(_, inner) = reply {
                reply = *inner;
            }
            let mut out = json!({"recordId": line["recordId"], "modelInput": input});
            match reply {
                Reply::Answer(text) => {
                    let output = text.split_whitespace().count().max(1);
                    input_tokens += tokens as u64;
                    output_tokens += output as u64;
                    out["modelOutput"] = json!({
                        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                        "stopReason": "end_turn",
                        "usage": {"inputTokens": tokens, "outputTokens": output, "totalTokens": tokens + output},
                        "metrics": {"latencyMs": 1}
                    });
                }
                Reply::Throttle => {
                    errors += 1;
                    out["error"] = json!({"errorCode": 429, "errorMessage": "Too many requests, please wait before trying again."});
                }
                Reply::Unavailable => {
                    errors += 1;
                    out["error"] =
                        json!({"errorCode": 503, "errorMessage": "Service unavailable."});
                }
                Reply::Intervene(_) | Reply::After(..) => {
                    return Err(
                        "a batch record cannot be intervened on (batch jobs take no guardrail)"
                            .into(),
                    );
                }
            }
            out_lines.push(out);
        }
        if out_lines.is_empty() {
            continue;
        }
        // Output order is not input order.
        out_lines.sort_by_key(|l| {
            l["recordId"]
                .as_str()
                .unwrap_or("")
                .bytes()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                })
        });
        let file = key.rsplit('/').next().unwrap_or("input.jsonl");
        let mut body = Vec::new();
        for l in &out_lines {
            serde_json::to_writer(&mut body, l).map_err(|e| e.to_string())?;
            body.push(b'\n');
        }
        put(
            &control.s3,
            &out_bucket,
            &format!("{out_prefix}{job_id}/{file}.out"),
            body,
        )
        .await?;
    }
    let manifest = json!({
        "totalRecordCount": total,
        "processedRecordCount": processed,
        "successRecordCount": processed - errors,
        "errorRecordCount": errors,
        "inputTokenCount": input_tokens,
        "outputTokenCount": output_tokens,
    });
    put(
        &control.s3,
        &out_bucket,
        &format!("{out_prefix}{job_id}/manifest.json.out"),
        manifest.to_string().into_bytes(),
    )
    .await
}

async fn put(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
) -> Result<(), String> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(body.into())
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot write s3://{bucket}/{key}: {e}"))
}

async fn list(
    State(control): State<Arc<BatchControl>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    control.lists.fetch_add(1, Ordering::SeqCst);
    let name = query.get("nameContains").cloned().unwrap_or_default();
    let status = query.get("statusEquals");
    let summaries: Vec<Value> = control
        .jobs()
        .iter()
        .filter(|j| j.name.contains(&name) && status.is_none_or(|s| *s == j.status))
        .map(describe)
        .collect();
    Json(json!({ "invocationJobSummaries": summaries })).into_response()
}

async fn stop(State(control): State<Arc<BatchControl>>, Path(id): Path<String>) -> Response {
    let mut jobs = control.jobs.lock().expect("jobs lock");
    let Some(job) = jobs
        .iter_mut()
        .find(|j| j.arn == id || j.arn.ends_with(&format!("/{id}")))
    else {
        return error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("The specified job {id} does not exist."),
        );
    };
    if !matches!(
        job.status.as_str(),
        "Submitted" | "InProgress" | "Validating" | "Scheduled"
    ) {
        return error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            &format!("The job is {} and cannot be stopped.", job.status),
        );
    }
    job.status = "Stopping".into();
    Json(json!({})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bedrock_patterns() {
        assert!(matches_name("docsort-20261203t130000-1a2b3c4d-job-0001"));
        assert!(!matches_name("-leading"));
        assert!(!matches_name("has space"));
        assert!(matches_token("20261203t130000-1a2b3c4d-job-0001"));
        assert!(!matches_token("trailing-"));
        assert!(matches_role("arn:aws:iam::123456789012:role/docsort-batch"));
        assert!(!matches_role("arn:aws:iam::123:role/x"));
        assert!(!matches_role("docsort-batch"));
        assert_eq!(
            split_s3("s3://staging-bucket/batch/"),
            Some(("staging-bucket".into(), "batch/".into()))
        );
        assert_eq!(split_s3("s3://B/x"), None);
    }
}
