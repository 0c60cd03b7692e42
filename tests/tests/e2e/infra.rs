//! infra/: the template lints and scans clean, deploys to moto's
//! CloudFormation, and the pipeline runs on the resources it creates.

use std::path::{Path, PathBuf};
use std::process::Command;

use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};
use aws_sdk_s3::types::{
    Event, FilterRule, FilterRuleName, NotificationConfiguration, NotificationConfigurationFilter,
    QueueConfiguration, S3KeyFilter,
};
use docsort_schema::{Source, Status};
use docsort_tests::env::{queue_arn, sdk_config, unique, TestEnv};
use docsort_tests::{moto, wait};

use crate::common::{answer, pdf, wait_for_item, DEADLINE};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tool(venv: &str, name: &str) -> PathBuf {
    let path = root().join(venv).join("bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/test (it installs the pinned tools)",
        path.display()
    );
    path
}

fn run(mut command: Command) -> String {
    let out = command.current_dir(root()).output().expect("run tool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{command:?} failed:\n{text}");
    text
}

#[test]
fn template_passes_cfn_lint() {
    let mut lint = Command::new(tool(".venv", "cfn-lint"));
    lint.arg("infra/docsort.yaml");
    run(lint);
}

#[test]
fn template_and_dockerfile_pass_checkov() {
    for (file, framework) in [
        ("infra/docsort.yaml", "cloudformation"),
        ("Dockerfile", "dockerfile"),
    ] {
        // Offline: no guideline download, no version check; in a network namespace
        // with no interfaces where this machine allows it, so nothing can leave.
        let mut scan = if Command::new("unshare")
            .args(["-n", "true"])
            .status()
            .is_ok_and(|s| s.success())
        {
            let mut c = Command::new("unshare");
            c.arg("-n").arg(tool(".venv-checkov", "checkov"));
            c
        } else {
            Command::new(tool(".venv-checkov", "checkov"))
        };
        scan.args([
            "-f",
            file,
            "--framework",
            framework,
            "--compact",
            "--quiet",
            "--skip-download",
        ])
        .env("BC_SKIP_MAPPING", "TRUE")
        .env("CKV_SKIP_PACKAGE_UPDATE_CHECK", "TRUE");
        let report = run(scan);
        assert!(
            !report.contains("Failed checks: ") || report.contains("Failed checks: 0"),
            "{file}:\n{report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stack_deploys_to_moto_and_the_pipeline_runs_on_its_resources() {
    let sdk = sdk_config(&moto::shared().endpoint).await;
    let cfn = aws_sdk_cloudformation::Client::new(&sdk);
    let template = std::fs::read_to_string(root().join("infra/docsort.yaml")).expect("template");
    let example: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(root().join("infra/parameters.example.json")).expect("parameters"),
    )
    .expect("json");
    let stack = unique("docsort-stack");
    let bucket = unique("docsort-input");
    let parameters = example.iter().map(|p| {
        let key = p["ParameterKey"].as_str().expect("key");
        let value = if key == "BucketName" {
            bucket.as_str()
        } else {
            p["ParameterValue"].as_str().expect("value")
        };
        Parameter::builder()
            .parameter_key(key)
            .parameter_value(value)
            .build()
    });
    cfn.create_stack()
        .stack_name(&stack)
        .template_body(template)
        .set_parameters(Some(parameters.collect()))
        .capabilities(Capability::CapabilityNamedIam)
        .send()
        .await
        .expect("create stack");
    let outputs = wait::until("the stack to be created", DEADLINE, || async {
        let out = cfn
            .describe_stacks()
            .stack_name(&stack)
            .send()
            .await
            .expect("describe stack");
        let s = out.stacks()[0].clone();
        match s.stack_status() {
            Some(StackStatus::CreateComplete) => Some(s.outputs().to_vec()),
            Some(StackStatus::CreateInProgress) => None,
            other => panic!("stack ended {other:?}: {:?}", s.stack_status_reason()),
        }
    })
    .await;
    let output = |name: &str| {
        outputs
            .iter()
            .find(|o| o.output_key() == Some(name))
            .and_then(|o| o.output_value())
            .unwrap_or_else(|| panic!("output {name}"))
            .to_owned()
    };
    for name in [
        "BucketName",
        "QueueUrl",
        "DlqUrl",
        "TableName",
        "StateTableName",
        "ClusterName",
        "ServiceName",
        "BatchRoleArn",
        "BatchStaging",
        "BatchBackfillTaskDefinitionArn",
    ] {
        assert!(!output(name).is_empty(), "{name}");
    }
    // moto returns amazonaws.com queue URLs from !Ref: resolve them by name.
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let resolve = |url: String| {
        let sqs = sqs.clone();
        async move {
            let name = url.rsplit('/').next().expect("queue name").to_owned();
            sqs.get_queue_url()
                .queue_name(name)
                .send()
                .await
                .expect("queue by name")
                .queue_url
                .expect("url")
        }
    };
    let queue_url = resolve(output("QueueUrl")).await;
    let dlq_url = resolve(output("DlqUrl")).await;
    assert_eq!(output("BucketName"), bucket);
    let env = TestEnv::attach(
        bucket,
        queue_url,
        dlq_url,
        output("TableName"),
        output("StateTableName"),
        |_| answer("invoice"),
    )
    .await;

    // The template's bucket notification is real, but moto ignores a bucket's
    // NotificationConfiguration in CloudFormation: apply the same rule by API.
    let prefix = example
        .iter()
        .find(|p| p["ParameterKey"] == "InputPrefix")
        .and_then(|p| p["ParameterValue"].as_str())
        .unwrap_or("");
    let rule =
        |name: FilterRuleName, value: &str| FilterRule::builder().name(name).value(value).build();
    env.s3
        .put_bucket_notification_configuration()
        .bucket(&env.bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(queue_arn(&env.sqs, &env.queue_url).await)
                        .events(Event::S3ObjectCreated)
                        .filter(
                            NotificationConfigurationFilter::builder()
                                .key(
                                    S3KeyFilter::builder()
                                        .filter_rules(rule(FilterRuleName::Prefix, prefix))
                                        .filter_rules(rule(FilterRuleName::Suffix, ".pdf"))
                                        .build(),
                                )
                                .build(),
                        )
                        .build()
                        .expect("queue configuration"),
                )
                .build(),
        )
        .send()
        .await
        .expect("bucket notification");

    let worker = env.start_worker().await;
    let key = format!("{prefix}2026/invoice 7.pdf");
    env.put(&key, pdf(&["INVOICE 7", "Total due 99.00 EUR"]))
        .await;
    let item = wait_for_item(&env, &key).await;
    let run = worker.stop().await;
    assert_eq!(
        (item.status(), item.label(), item.source),
        (Status::Labeled, Some("invoice"), Source::S3Event)
    );
    assert_eq!(run.labeled, 1);
    // The stack's labels table holds the record only; the lease came and went
    // in the stack's state table.
    assert_eq!(env.items().await.len(), 1);
    assert_eq!(env.leases().await, 0);
}
