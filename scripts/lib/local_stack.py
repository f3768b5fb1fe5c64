#!/usr/bin/env python3
"""Makes the template's buckets, queues and secret in moto server, as template.yaml makes them
in AWS (names fixed, settings the same where moto keeps them), and writes the environment the
`sluice` commands and the Lambda binaries read. Used by scripts/local-stack.sh; boto3 comes
with moto in .venv.

    local_stack.py ENDPOINT STATE_DIR DATABASE_URL API_URL
"""
import json
import os
import re
import sys
import urllib.parse

import boto3

endpoint, state, database_url, api_url = sys.argv[1:5]
session = dict(endpoint_url=endpoint, region_name="us-east-1",
               aws_access_key_id="test", aws_secret_access_key="test")
s3 = boto3.client("s3", **session)
sqs = boto3.client("sqs", **session)
secrets = boto3.client("secretsmanager", **session)

BUCKETS = {"quarantine": "sluice-quarantine", "clean": "sluice-clean", "drop": "sluice-drop"}
# Visibility at least 6x the consumer's timeout (template: 900, 900, 120 s); five deliveries.
QUEUES = {"sanitize": 5400, "transform": 5400, "forward": 720}
MAX_RECEIVES = 5

for bucket in BUCKETS.values():
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [{
        "ID": "abort-incomplete-uploads", "Status": "Enabled", "Filter": {"Prefix": ""},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]})
# Asked for as in AWS; moto does not keep it (sluice doctor says so).
s3.put_bucket_notification_configuration(
    Bucket=BUCKETS["quarantine"],
    NotificationConfiguration={"EventBridgeConfiguration": {}})


def queue(name, attributes=None):
    url = sqs.create_queue(QueueName=name, Attributes=attributes or {})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


urls = {}
for name, visibility in QUEUES.items():
    dlq_url, dlq_arn = queue(f"sluice-{name}-dlq")
    url, _ = queue(f"sluice-{name}", {
        "VisibilityTimeout": str(visibility),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                     "maxReceiveCount": MAX_RECEIVES})})
    urls[name] = url
    urls[f"{name}_dlq"] = dlq_url
urls["object_events_dlq"], _ = queue("sluice-object-events-dlq")

try:
    secrets.create_secret(Name="sluice/ops-api", SecretString=json.dumps({"api_key": "local-key"}))
except secrets.exceptions.ResourceExistsException:
    pass

# The repository's config with every endpoint on the local example API.
with open("pipelines.toml", encoding="utf-8") as f:
    config = f.read()
# The example API is on this machine: a private address, so each dataset lists its host.
api_host = urllib.parse.urlsplit(api_url).hostname
config = re.sub(
    r'(?m)^endpoint = "https://[^/"]+([^"]*)"$',
    lambda m: f'endpoint = "{api_url}{m.group(1)}"\nallow_private_hosts = ["{api_host}"]',
    config,
)
with open(os.path.join(state, "pipelines.toml"), "w", encoding="utf-8") as f:
    f.write(config)

env = {
    "AWS_ENDPOINT_URL": endpoint,
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "SLUICE_S3_PATH_STYLE": "true",
    "DATABASE_URL": database_url,
    "SLUICE_CONFIG": os.path.join(os.path.abspath(state), "pipelines.toml"),
    "SLUICE_QUARANTINE_BUCKET": BUCKETS["quarantine"],
    "SLUICE_CLEAN_BUCKET": BUCKETS["clean"],
    "SLUICE_DROP_BUCKET": BUCKETS["drop"],
    "SLUICE_SANITIZE_QUEUE_URL": urls["sanitize"],
    "SLUICE_TRANSFORM_QUEUE_URL": urls["transform"],
    "SLUICE_FORWARD_QUEUE_URL": urls["forward"],
    "SLUICE_OBJECT_DLQ_URLS": f'{urls["sanitize_dlq"]},{urls["object_events_dlq"]}',
    "SLUICE_DLQ_URLS": ",".join(urls[f"{q}_dlq"] for q in QUEUES),
    "SLUICE_MAX_RECEIVE_COUNT": str(MAX_RECEIVES),
    "SLUICE_RETRY_BASE_SECONDS": "2",
    "ORDERS_API_TOKEN": "local-token",
    "SLUICE_UPLOADED_BY": os.environ.get("USER") or "local",
}
with open(os.path.join(state, "env"), "w", encoding="utf-8") as f:
    f.write("# Written by scripts/local-stack.sh up: `. target/local-stack/env`\n")
    for k, v in env.items():
        f.write(f"export {k}='{v}'\n")
for name, url in urls.items():
    print(f"  queue {name:<18} {url}")
for name, bucket in BUCKETS.items():
    print(f"  bucket {name:<17} {bucket}")
