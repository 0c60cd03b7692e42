//! The Bedrock control plane: creates a batch inference job once (found by
//! its name before creating, and created with an idempotency token), and
//! reads its status.

use aws_sdk_bedrock::error::{DisplayErrorContext, SdkError};
use aws_sdk_bedrock::operation::create_model_invocation_job::CreateModelInvocationJobError;
use aws_sdk_bedrock::operation::get_model_invocation_job::GetModelInvocationJobError;
use aws_sdk_bedrock::operation::list_model_invocation_jobs::ListModelInvocationJobsError;
use aws_sdk_bedrock::types::{
    ModelInvocationJobInputDataConfig, ModelInvocationJobOutputDataConfig,
    ModelInvocationJobS3InputDataConfig, ModelInvocationJobS3OutputDataConfig,
    ModelInvocationJobStatus, ModelInvocationType, S3InputFormat,
};

/// A control-plane call failed.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error("cannot create batch inference job {name}: {message}")]
    Create {
        name: String,
        message: String,
        #[source]
        source: Box<SdkError<CreateModelInvocationJobError>>,
    },
    #[error("cannot read batch inference job {arn}")]
    Get {
        arn: String,
        #[source]
        source: Box<SdkError<GetModelInvocationJobError>>,
    },
    #[error("cannot list batch inference jobs named {name}")]
    List {
        name: String,
        #[source]
        source: Box<SdkError<ListModelInvocationJobsError>>,
    },
    #[error("Bedrock built no request: {0}")]
    Build(#[from] aws_sdk_bedrock::error::BuildError),
}

impl JobsError {
    /// Bedrock refused the request itself (access denied, no such job,
    /// invalid input): trying again cannot help. Throttling, server errors
    /// and timeouts are not refusals.
    pub fn is_refusal(&self) -> bool {
        fn refused<E: aws_sdk_bedrock::error::ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
            match e {
                SdkError::ServiceError(se) => matches!(
                    se.err().code(),
                    Some(
                        "AccessDeniedException"
                            | "ResourceNotFoundException"
                            | "ValidationException"
                    )
                ),
                _ => false,
            }
        }
        match self {
            JobsError::Create { source, .. } => refused(source),
            JobsError::Get { source, .. } => refused(source),
            JobsError::List { source, .. } => refused(source),
            JobsError::Build(_) => true,
        }
    }
}

/// What a create attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// The job exists (created now, or found from an earlier attempt): its ARN.
    Job(String),
    /// The account's concurrent-job quota (or the API's rate) is reached:
    /// try again after other jobs finish.
    NotNow(String),
}

/// Where a job reads and writes, and as which model and role.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// Job name, unique per run and job (`docsort-<run id>-job-0001`).
    pub name: String,
    /// `s3://` folder of the job's input files.
    pub input_uri: String,
    /// `s3://` folder Bedrock writes `<job id>/...` under.
    pub output_uri: String,
    /// The model.
    pub model_id: String,
    /// The batch service role.
    pub role_arn: String,
    /// Hours before Bedrock stops the job (24 to 168).
    pub timeout_hours: i32,
}

/// A job's status, as docsort acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Submitted, validating, scheduled, in progress or stopping.
    Running,
    /// Every record has an output line (some may be error records).
    Completed,
    /// Finished with some records unprocessed (`PartiallyCompleted`,
    /// `Failed`, `Stopped`, `Expired`): what has no output goes on-demand.
    Ended,
}

impl Phase {
    /// How docsort treats a Bedrock job status.
    pub fn of(status: &ModelInvocationJobStatus) -> Phase {
        match status {
            ModelInvocationJobStatus::Completed => Phase::Completed,
            ModelInvocationJobStatus::PartiallyCompleted
            | ModelInvocationJobStatus::Failed
            | ModelInvocationJobStatus::Stopped
            | ModelInvocationJobStatus::Expired => Phase::Ended,
            _ => Phase::Running,
        }
    }
}

/// A job's status and Bedrock's message about it.
#[derive(Debug, Clone)]
pub struct JobStatus {
    /// e.g. `InProgress`.
    pub status: ModelInvocationJobStatus,
    /// Why it failed or stopped, when Bedrock says.
    pub message: Option<String>,
}

/// The job named `spec.name` if it exists, else a new one.
pub async fn create(
    client: &aws_sdk_bedrock::Client,
    spec: &JobSpec,
    token: &str,
) -> Result<Created, JobsError> {
    if let Some(arn) = find(client, &spec.name).await? {
        tracing::info!(job = %spec.name, %arn, "batch job found from an earlier attempt");
        return Ok(Created::Job(arn));
    }
    let input = ModelInvocationJobInputDataConfig::S3InputDataConfig(
        ModelInvocationJobS3InputDataConfig::builder()
            .s3_uri(&spec.input_uri)
            .s3_input_format(S3InputFormat::Jsonl)
            .build()?,
    );
    let output = ModelInvocationJobOutputDataConfig::S3OutputDataConfig(
        ModelInvocationJobS3OutputDataConfig::builder()
            .s3_uri(&spec.output_uri)
            .build()?,
    );
    let result = client
        .create_model_invocation_job()
        .job_name(&spec.name)
        .client_request_token(token)
        .role_arn(&spec.role_arn)
        .model_id(&spec.model_id)
        .model_invocation_type(ModelInvocationType::Converse)
        .input_data_config(input)
        .output_data_config(output)
        .timeout_duration_in_hours(spec.timeout_hours)
        .send()
        .await;
    match result {
        Ok(out) => Ok(Created::Job(out.job_arn().to_owned())),
        Err(SdkError::ServiceError(e))
            if e.err().is_service_quota_exceeded_exception()
                || e.err().is_throttling_exception() =>
        {
            Ok(Created::NotNow(
                e.err().meta().message().unwrap_or("").to_owned(),
            ))
        }
        Err(e) => Err(JobsError::Create {
            name: spec.name.clone(),
            message: DisplayErrorContext(&e).to_string(),
            source: Box::new(e),
        }),
    }
}

/// The ARN of the job named exactly `name`, if one exists.
async fn find(client: &aws_sdk_bedrock::Client, name: &str) -> Result<Option<String>, JobsError> {
    let mut pages = client
        .list_model_invocation_jobs()
        .name_contains(name)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| JobsError::List {
            name: name.to_owned(),
            source: Box::new(e),
        })?;
        if let Some(job) = page
            .invocation_job_summaries()
            .iter()
            .find(|j| j.job_name() == name)
        {
            return Ok(Some(job.job_arn().to_owned()));
        }
    }
    Ok(None)
}

/// The job's status.
pub async fn status(client: &aws_sdk_bedrock::Client, arn: &str) -> Result<JobStatus, JobsError> {
    let out = client
        .get_model_invocation_job()
        .job_identifier(arn)
        .send()
        .await
        .map_err(|e| JobsError::Get {
            arn: arn.to_owned(),
            source: Box::new(e),
        })?;
    Ok(JobStatus {
        status: out
            .status()
            .cloned()
            .unwrap_or(ModelInvocationJobStatus::Submitted),
        message: out.message().map(str::to_owned),
    })
}

/// The job id in an ARN (`...:model-invocation-job/<id>`): the folder
/// Bedrock writes the job's outputs under.
pub fn job_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_phases() {
        use ModelInvocationJobStatus as S;
        for s in [
            S::Submitted,
            S::Validating,
            S::Scheduled,
            S::InProgress,
            S::Stopping,
        ] {
            assert_eq!(Phase::of(&s), Phase::Running, "{s:?}");
        }
        assert_eq!(Phase::of(&S::Completed), Phase::Completed);
        for s in [S::PartiallyCompleted, S::Failed, S::Stopped, S::Expired] {
            assert_eq!(Phase::of(&s), Phase::Ended, "{s:?}");
        }
        assert_eq!(
            job_id("arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abc123def456"),
            "abc123def456"
        );
    }
}
