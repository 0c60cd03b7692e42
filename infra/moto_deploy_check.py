#!/usr/bin/env python3
"""Deploy infra/docsort.yaml to a moto server and check what it created.

Usage:
    moto_server -H 127.0.0.1 -p 5055 &
    .venv/bin/python infra/moto_deploy_check.py http://127.0.0.1:5055 [--template infra/docsort.yaml] [--param KEY=VALUE ...]

Reference for the Rust end-to-end test. Talks to the given endpoint only, with dummy
credentials, in us-east-1. Exits non-zero if the stack does not reach CREATE_COMPLETE or a
resource named by the outputs is missing or misconfigured.

moto (5.2.x) quirks this script allows for: it silently skips resource types it does not
implement (AWS::SQS::QueuePolicy, AWS::S3::BucketPolicy, AWS::CloudWatch::Alarm,
AWS::ApplicationAutoScaling::*, AWS::Scheduler::*), ignores a bucket's
NotificationConfiguration, and a queue's !Ref is an https://sqs.<region>.amazonaws.com/ URL
(resolve it with GetQueueUrl on the queue name).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import boto3
import yaml

REGION = "us-east-1"
STACK = "docsort-moto"

PARAMETERS = {
    "ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/docsort:test",
    "VpcId": "vpc-12345678",
    "SubnetIds": "subnet-12345678,subnet-87654321",
    "AlarmTopicArn": "arn:aws:sns:us-east-1:123456789012:docsort-alarms",
    "InputPrefix": "inbox/",
    "MaxReceiveCount": "5",
}


class CfnLoader(yaml.SafeLoader):
    """YAML loader that accepts CloudFormation short-form tags (!Ref, !Sub, ...)."""


def _tag(loader: yaml.Loader, _suffix: str, node: yaml.Node):
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


CfnLoader.add_multi_constructor("!", _tag)

failures: list[str] = []


def check(cond: bool, what: str) -> None:
    print(("  ok    " if cond else "  FAIL  ") + what)
    if not cond:
        failures.append(what)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("endpoint", help="moto server URL, e.g. http://127.0.0.1:5055")
    ap.add_argument("--template", default=str(Path(__file__).with_name("docsort.yaml")))
    ap.add_argument("--stack-name", default=STACK)
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="override a parameter")
    args = ap.parse_args()
    params = dict(PARAMETERS)
    for kv in args.param:
        key, _, value = kv.partition("=")
        params[key] = value

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        os.environ.setdefault(k, v)
    os.environ.pop("AWS_PROFILE", None)

    def client(service: str):
        return boto3.client(service, endpoint_url=args.endpoint, region_name=REGION)

    body = Path(args.template).read_text()
    template = yaml.load(body, Loader=CfnLoader)

    cfn = client("cloudformation")
    print(f"creating stack {args.stack_name} from {args.template}")
    cfn.create_stack(
        StackName=args.stack_name,
        TemplateBody=body,
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    deadline = time.time() + 60
    while True:
        stack = cfn.describe_stacks(StackName=args.stack_name)["Stacks"][0]
        status = stack["StackStatus"]
        if not status.endswith("_IN_PROGRESS") or time.time() > deadline:
            break
        time.sleep(0.5)
    print(f"stack status: {status} {stack.get('StackStatusReason', '')}")
    if status != "CREATE_COMPLETE":
        for ev in cfn.describe_stack_events(StackName=args.stack_name)["StackEvents"]:
            if "FAILED" in ev.get("ResourceStatus", ""):
                print(f"  {ev['LogicalResourceId']} {ev['ResourceType']}: {ev.get('ResourceStatusReason')}")
        return 1

    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    print("outputs:")
    print(json.dumps(outputs, indent=2, sort_keys=True))

    created = {
        r["LogicalResourceId"]: r["ResourceType"]
        for r in cfn.list_stack_resources(StackName=args.stack_name)["StackResourceSummaries"]
        if r.get("LogicalResourceId")  # moto lists each skipped resource as an empty entry
    }
    print(f"resources created by moto ({len(created)}):")
    for lid in sorted(created):
        print(f"  {lid:32} {created[lid]}")
    skipped = sorted(
        f"{lid} ({res['Type']})" for lid, res in template["Resources"].items() if lid not in created
    )
    print(f"template resources moto skipped ({len(skipped)}): {', '.join(skipped) or '-'}")

    print("checks:")
    for key in ["BucketName", "QueueUrl", "DlqUrl", "TableName", "TableStreamArn", "ClusterName", "ServiceName"]:
        check(bool(outputs.get(key)), f"output {key} present")

    # -- bucket
    s3 = client("s3")
    bucket = outputs.get("BucketName", "")
    try:
        s3.head_bucket(Bucket=bucket)
        check(True, f"bucket {bucket} exists")
        enc = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
        algo = enc["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
        check(algo == "AES256", f"bucket default encryption AES256 (got {algo})")
        # moto's CloudFormation S3 bucket honours only BucketName, BucketEncryption and Tags:
        # versioning, public access block, lifecycle and notifications are not applied.
        ver = s3.get_bucket_versioning(Bucket=bucket).get("Status")
        print(f"  info  bucket versioning as moto reports it: {ver} (moto ignores VersioningConfiguration)")
    except Exception as e:  # noqa: BLE001 - report any client error as a failure
        check(False, f"bucket {bucket}: {e}")
    try:
        pab = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        print(f"  info  public access block as moto reports it: {pab}")
    except s3.exceptions.ClientError as e:
        print(f"  info  public access block: {e.response['Error']['Code']} (moto ignores PublicAccessBlockConfiguration)")
    try:
        template_bucket = template["Resources"]["InputBucket"]["Properties"]
        check(template_bucket["VersioningConfiguration"]["Status"] == "Enabled", "template: bucket versioning Enabled")
        check(all(template_bucket["PublicAccessBlockConfiguration"].values()), "template: public access fully blocked")
    except Exception as e:  # noqa: BLE001 - report any client error as a failure
        check(False, f"bucket {bucket}: {e}")

    # -- queues (moto's !Ref is an amazonaws URL: resolve by name)
    sqs = client("sqs")

    def resolve(url: str) -> str:
        return sqs.get_queue_url(QueueName=url.rstrip("/").rsplit("/", 1)[-1])["QueueUrl"]

    try:
        dlq_url = resolve(outputs["DlqUrl"])
        dlq = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["All"])["Attributes"]
        check(True, f"DLQ exists at {dlq_url}")
        check(dlq.get("MessageRetentionPeriod") == "1209600", f"DLQ retention 14 days (got {dlq.get('MessageRetentionPeriod')})")
        check(dlq.get("SqsManagedSseEnabled") == "true", f"DLQ SqsManagedSseEnabled (got {dlq.get('SqsManagedSseEnabled')})")

        queue_url = resolve(outputs["QueueUrl"])
        q = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
        check(True, f"work queue exists at {queue_url}")
        check(q.get("VisibilityTimeout") == "120", f"work queue VisibilityTimeout 120 (got {q.get('VisibilityTimeout')})")
        check(q.get("ReceiveMessageWaitTimeSeconds") == "20", f"work queue long polling 20 s (got {q.get('ReceiveMessageWaitTimeSeconds')})")
        check(q.get("SqsManagedSseEnabled") == "true", f"work queue SqsManagedSseEnabled (got {q.get('SqsManagedSseEnabled')})")
        redrive = json.loads(q.get("RedrivePolicy", "{}"))
        check(redrive.get("deadLetterTargetArn") == dlq.get("QueueArn"), f"redrive target is the DLQ ({redrive})")
        check(int(redrive.get("maxReceiveCount", 0)) == 5, f"maxReceiveCount 5 ({redrive})")
    except Exception as e:  # noqa: BLE001
        check(False, f"queues: {e}")

    # -- table
    ddb = client("dynamodb")
    try:
        t = ddb.describe_table(TableName=outputs["TableName"])["Table"]
        check(True, f"table {t['TableName']} exists")
        check(t["KeySchema"] == [{"AttributeName": "uri", "KeyType": "HASH"}], f"key schema uri HASH ({t['KeySchema']})")
        attrs = {a["AttributeName"]: a["AttributeType"] for a in t["AttributeDefinitions"]}
        check(attrs == {"uri": "S", "label": "S", "classified_at": "S"}, f"attribute types ({attrs})")
        gsis = {g["IndexName"]: g for g in t.get("GlobalSecondaryIndexes", [])}
        gsi = gsis.get("label-index")
        check(gsi is not None, f"GSI label-index present ({list(gsis)})")
        if gsi:
            check(
                gsi["KeySchema"] == [
                    {"AttributeName": "label", "KeyType": "HASH"},
                    {"AttributeName": "classified_at", "KeyType": "RANGE"},
                ],
                f"label-index keys label/classified_at ({gsi['KeySchema']})",
            )
            check(gsi["Projection"]["ProjectionType"] == "ALL", f"label-index projection ALL ({gsi['Projection']})")
        billing = t.get("BillingModeSummary", {}).get("BillingMode")
        check(billing == "PAY_PER_REQUEST", f"billing PAY_PER_REQUEST (got {billing})")
        stream = t.get("StreamSpecification", {})
        check(stream.get("StreamViewType") == "NEW_AND_OLD_IMAGES", f"stream NEW_AND_OLD_IMAGES ({stream})")
        check(t.get("LatestStreamArn") == outputs.get("TableStreamArn"), "TableStreamArn output matches the table")
        pitr = ddb.describe_continuous_backups(TableName=t["TableName"])["ContinuousBackupsDescription"]
        pitr_status = pitr.get("PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus")
        print(f"  info  point-in-time recovery as moto reports it: {pitr_status}")
    except Exception as e:  # noqa: BLE001
        check(False, f"table: {e}")

    # -- ECS
    ecs = client("ecs")
    try:
        clusters = ecs.describe_clusters(clusters=[outputs["ClusterName"]])["clusters"]
        check(len(clusters) == 1 and clusters[0]["status"] == "ACTIVE", f"cluster {outputs['ClusterName']} ACTIVE")
        services = ecs.describe_services(cluster=outputs["ClusterName"], services=[outputs["ServiceName"]])["services"]
        check(len(services) == 1, f"service {outputs['ServiceName']} exists")
        families = set(ecs.list_task_definition_families()["families"])
        for fam in (f"{args.stack_name}-worker", f"{args.stack_name}-backfill"):
            check(fam in families, f"task definition family {fam}")
        worker = ecs.describe_task_definition(taskDefinition=f"{args.stack_name}-worker")["taskDefinition"]
        c = worker["containerDefinitions"][0]
        env = {e["name"]: e["value"] for e in c.get("environment", [])}
        print(f"  info  worker command {c.get('command')} env {json.dumps(env, sort_keys=True)}")
        check(c.get("command") == ["docsort-worker", "run"], "worker command docsort-worker run")
        for k in ["DOCSORT_QUEUE_URL", "DOCSORT_TABLE", "DOCSORT_MODEL_ID", "DOCSORT_CONCURRENCY", "DOCSORT_LOG_FORMAT"]:
            check(k in env, f"worker env {k}")
    except Exception as e:  # noqa: BLE001
        check(False, f"ecs: {e}")

    # -- IAM roles
    iam = client("iam")
    for lid in ["TaskExecutionRole", "WorkerTaskRole", "ProducerTaskRole", "BackfillSchedulerRole"]:
        check(created.get(lid) == "AWS::IAM::Role", f"role {lid} created")

    print(f"{len(failures)} check(s) failed" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
