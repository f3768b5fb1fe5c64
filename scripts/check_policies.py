#!/usr/bin/env python3
"""The quarantine bucket's policy, evaluated: moto enforces no bucket policy, so the policy
document itself is rendered from template.yaml and each request a person or function could
make is put to it by a small evaluator of IAM's rules for the conditions the template uses
(an explicit Deny wins; Not-operators match a missing key; ForAnyValue needs one match).

Run with the SAM virtualenv's python (scripts/test.sh does): it reads the template with
cfn-lint's YAML loader, which understands the short intrinsic forms (!GetAtt, !Sub, ...).
With --write-identity-policies DIR it also writes every function's own inline policy,
rendered, as DIR/<function>-<n>.json, for a linter (scripts/test.sh runs parliament on them).

    .venv-sam/bin/python scripts/check_policies.py [template.yaml] [--write-identity-policies DIR]
"""

import json
import os

import fnmatch
import re
import sys

from cfnlint.decode import decode

ACCOUNT = "111122223333"
OPERATOR = f"arn:aws:iam::{ACCOUNT}:role/ops"
UPLOADER = f"arn:aws:iam::{ACCOUNT}:role/uploader"
DASHBOARD = f"arn:aws:iam::{ACCOUNT}:role/sluice-DashboardFunctionRole"


def role(name):
    return f"arn:aws:iam::{ACCOUNT}:role/sluice-{name}"


SANITIZER = role("SanitizerFunctionRole")
LISTENER = role("ListenerFunctionRole")


NO_VALUE = object()


def drop_no_value(node):
    """The rendered node without what AWS::NoValue removed."""
    if isinstance(node, list):
        return [drop_no_value(n) for n in node if n is not NO_VALUE]
    if isinstance(node, dict):
        return {k: drop_no_value(v) for k, v in node.items() if v is not NO_VALUE}
    return node


class Render:
    """Resolves the intrinsic functions the policies use, for one set of parameters."""

    def __init__(self, template, params):
        self.template = template
        self.params = params

    def arn(self, resource):
        kind = self.template["Resources"].get(resource, {}).get("Type", "")
        if resource.endswith("Role") or kind == "AWS::IAM::Role":
            return role(resource)
        if kind == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{resource.lower()}"
        service, prefix = {
            "AWS::SQS::Queue": ("sqs", ""),
            "AWS::SNS::Topic": ("sns", ""),
            "AWS::Events::EventBus": ("events", "event-bus/"),
            "AWS::Events::ApiDestination": ("events", "api-destination/"),
            "AWS::Events::Connection": ("events", "connection/"),
            "AWS::Serverless::Function": ("lambda", "function:"),
        }.get(kind, ("cloudformation", "resource/"))
        return f"arn:aws:{service}:us-east-1:{ACCOUNT}:{prefix}{resource}"

    def ref(self, name):
        if name == "AWS::NoValue":
            return NO_VALUE
        if name == "AWS::Partition":
            return "aws"
        if name in self.params:
            return self.params[name]
        if name == "AWS::AccountId":
            return ACCOUNT
        if name in ("AWS::Region",):
            return "us-east-1"
        return name.lower()

    def condition(self, name):
        return self.value(self.template["Conditions"][name])

    def value(self, node):
        if isinstance(node, list):
            return [self.value(n) for n in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                resource, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                if attribute != "Arn":
                    # A secret's ARN, a resource id: a stand-in of the right shape.
                    if attribute.endswith("SecretArn"):
                        return f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:{resource.lower()}-AbCdEf"
                    return f"{resource.lower()}-id"
                return self.arn(resource)
            if key == "Fn::Sub":
                return re.sub(r"\$\{([^}]+)\}", lambda m: self.sub(m.group(1)), arg)
            if key == "Fn::If":
                cond, yes, no = arg
                return self.value(yes if self.condition(cond) else no)
            if key == "Fn::Join":
                sep, items = arg
                items = self.value(items)
                flat = []
                for item in items:
                    flat.extend(item if isinstance(item, list) else [item])
                return sep.join(flat)
            if key == "Fn::Split":
                sep, text = arg
                return [t for t in self.value(text).split(sep)]
            if key == "Fn::Equals":
                a, b = self.value(arg)
                return a == b
            if key == "Fn::Not":
                return not self.value(arg[0])
            if key == "Condition":
                return self.condition(arg)
        return {k: self.value(v) for k, v in node.items()}

    def sub(self, name):
        if name.endswith(".Arn"):
            return self.arn(name[: -len(".Arn")])
        if "." in name:
            return self.value({"Fn::GetAtt": name})
        value = self.ref(name)
        return value if isinstance(value, str) else ",".join(value)


def as_list(x):
    return x if isinstance(x, list) else [x]


def matches(pattern, value):
    return fnmatch.fnmatchcase(value, pattern)


def condition_holds(operator, key, wanted, context):
    wanted = as_list(wanted)
    have = context.get(key)
    if operator.startswith("ForAnyValue:"):
        op = operator.split(":", 1)[1]
        return have is not None and any(condition_holds(op, key, wanted, {key: v}) for v in as_list(have))
    negated = "Not" in operator
    base = operator.replace("Not", "")
    if have is None:
        return negated
    values = as_list(have)
    if base == "Bool":
        hit = any(str(v).lower() == str(w).lower() for v in values for w in wanted)
    elif base in ("StringEquals", "ArnEquals"):
        hit = any(v == w for v in values for w in wanted)
    elif base in ("StringLike", "ArnLike"):
        hit = any(matches(w, v) for v in values for w in wanted)
    else:
        raise SystemExit(f"the evaluator does not know the condition operator {operator}")
    return hit != negated


def statement_applies(statement, request):
    if not any(matches(a, request["action"]) for a in as_list(statement["Action"])):
        return False
    if not any(matches(r, request["resource"]) for r in as_list(statement["Resource"])):
        return False
    principal = statement.get("Principal")
    if principal != "*" and request["principal"] not in as_list(principal.get("AWS", [])):
        return False
    context = dict(request.get("context", {}))
    context.setdefault("aws:PrincipalArn", request["principal"])
    context.setdefault("aws:SecureTransport", "true")
    for operator, keys in statement.get("Condition", {}).items():
        for key, wanted in keys.items():
            if not condition_holds(operator, key, wanted, context):
                return False
    return True


def decide(policy, request):
    """'Deny' (an explicit deny), or 'Allow' (not denied: the caller's own policy decides)."""
    for statement in policy["Statement"]:
        if statement["Effect"] == "Deny" and statement_applies(statement, request):
            return "Deny", statement.get("Sid", "?")
    return "Allow", None


CASES = [
    # (what, principal, action, context, expected)
    ("an uploader putting sluice-verdict=accepted at upload", UPLOADER, "s3:PutObject",
     {"s3:RequestObjectTagKeys": ["team", "sluice-verdict"]}, "Deny"),
    ("an uploader tagging sluice-verdict=accepted afterwards", UPLOADER, "s3:PutObjectTagging",
     {"s3:RequestObjectTagKeys": ["sluice-verdict"]}, "Deny"),
    ("an uploader removing the tags the sanitizer set", UPLOADER, "s3:DeleteObjectTagging", {}, "Deny"),
    ("an uploader's own tags at upload", UPLOADER, "s3:PutObject",
     {"s3:RequestObjectTagKeys": ["team", "project"]}, "Allow"),
    ("an upload without tags", UPLOADER, "s3:PutObject", {}, "Allow"),
    ("an uploader's own tags afterwards", UPLOADER, "s3:PutObjectTagging",
     {"s3:RequestObjectTagKeys": ["team"]}, "Allow"),
    ("the sanitizer setting its verdict", SANITIZER, "s3:PutObjectTagging",
     {"s3:RequestObjectTagKeys": ["sluice-verdict", "sluice-file-id"]}, "Allow"),
    ("the listener's copy with its tags", LISTENER, "s3:PutObject",
     {"s3:RequestObjectTagKeys": ["sluice-site"]}, "Allow"),
    ("a GET of an untagged object by the dashboard", DASHBOARD, "s3:GetObject", {}, "Deny"),
    ("a GET of an untagged object by an uploader", UPLOADER, "s3:GetObject", {}, "Deny"),
    ("a GET of a rejected object by an uploader", UPLOADER, "s3:GetObject",
     {"s3:ExistingObjectTag/sluice-verdict": "rejected"}, "Deny"),
    ("the sanitizer reading an untagged object", SANITIZER, "s3:GetObject", {}, "Allow"),
    ("the listener heading an untagged object", LISTENER, "s3:GetObject", {}, "Allow"),
    ("an operator's HEAD of a rejected object", OPERATOR, "s3:GetObject",
     {"s3:ExistingObjectTag/sluice-verdict": "rejected"}, "Allow"),
    ("an operator's copy of a rejected object's version", OPERATOR, "s3:GetObjectVersion",
     {"s3:ExistingObjectTag/sluice-verdict": "rejected"}, "Allow"),
    ("the dashboard's GET of an accepted object", DASHBOARD, "s3:GetObject",
     {"s3:ExistingObjectTag/sluice-verdict": "accepted"}, "Allow"),
    ("a request without TLS, even the sanitizer's", SANITIZER, "s3:GetObject",
     {"aws:SecureTransport": "false"}, "Deny"),
]


def write_identity_policies(template, directory):
    """Each function's inline policies (SAM's named policy templates are AWS's), rendered for a
    stack with its own database, a config bucket and operators named."""
    render = Render(template, {
        "ConfigWriterArns": [f"arn:aws:iam::{ACCOUNT}:role/config-writer"],
        "OperatorPrincipalArns": [OPERATOR],
        "DatabaseSecretArn": "",
        "DatabaseHost": "",
        "NotifyEmail": "",
        "NotifyWebhookUrl": "",
        "AlarmTopicArn": "",
    })
    os.makedirs(directory, exist_ok=True)
    written = 0
    for name, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        for n, policy in enumerate(resource["Properties"].get("Policies", [])):
            if not isinstance(policy, dict) or "Statement" not in policy:
                continue
            document = drop_no_value(render.value(policy))
            with open(os.path.join(directory, f"{name}-{n}.json"), "w", encoding="utf-8") as f:
                json.dump(document, f, indent=2)
            written += 1
    print(f"identity policies: {written} written to {directory}")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    path = args[0] if args else "template.yaml"
    template, problems = decode(path)
    if template is None:
        raise SystemExit(f"{path}: {problems}")
    if "--write-identity-policies" in sys.argv:
        write_identity_policies(template, sys.argv[sys.argv.index("--write-identity-policies") + 1])
    check(path)


def check(path):
    template, problems = decode(path)
    if template is None:
        raise SystemExit(f"{path}: {problems}")
    failures = []
    for operators, cases in ((OPERATOR, CASES), ("", [c for c in CASES if c[1] != OPERATOR])):
        render = Render(template, {"OperatorPrincipalArns": [operators] if operators else [""]})
        policy = render.value(template["Resources"]["QuarantineBucketPolicy"]["Properties"]["PolicyDocument"])
        for what, principal, action, context, expected in cases:
            request = {
                "principal": principal,
                "action": action,
                "resource": "arn:aws:s3:::quarantinebucket/incoming/orders/2026/12/07/x-orders.csv",
                "context": context,
            }
            got, sid = decide(policy, request)
            said = f"{what}: {got}" + (f" ({sid})" if sid else "")
            if got != expected:
                failures.append(f"{said}, expected {expected}")
        # With no operator named, an operator is an uploader like any other.
        if not operators:
            got, _ = decide(policy, {"principal": OPERATOR, "action": "s3:GetObject",
                                     "resource": "arn:aws:s3:::quarantinebucket/incoming/a.csv",
                                     "context": {"s3:ExistingObjectTag/sluice-verdict": "rejected"}})
            if got != "Deny":
                failures.append("with no OperatorPrincipalArns, a rejected object is still open to an operator")
    for failure in failures:
        print(f"quarantine bucket policy: {failure}", file=sys.stderr)
    failures += config_bucket(template)
    if failures:
        raise SystemExit(1)
    print(f"quarantine bucket policy: {len(CASES)} requests decided as expected, with and without operators")
    print(f"config bucket policy: {len(CONFIG_CASES)} requests decided as expected")


WRITER = f"arn:aws:iam::{ACCOUNT}:role/config-writer"

CONFIG_CASES = [
    ("the named writer putting a new config", WRITER, "s3:PutObject", "Allow"),
    ("an operator who is not a writer putting one", OPERATOR, "s3:PutObject", "Deny"),
    ("the sanitizer (it only reads) putting one", SANITIZER, "s3:PutObject", "Deny"),
    ("anyone else deleting an old version", UPLOADER, "s3:DeleteObjectVersion", "Deny"),
    ("the sanitizer reading it", SANITIZER, "s3:GetObject", "Allow"),
    ("the listener reading a version of it", LISTENER, "s3:GetObjectVersion", "Allow"),
]


def config_bucket(template):
    """The config bucket's policy with one writer named: only the writer may change it."""
    render = Render(template, {"ConfigWriterArns": [WRITER], "OperatorPrincipalArns": [""]})
    policy = render.value(template["Resources"]["ConfigBucketPolicy"]["Properties"]["PolicyDocument"])
    failures = []
    for what, principal, action, expected in CONFIG_CASES:
        request = {"principal": principal, "action": action,
                   "resource": "arn:aws:s3:::configbucket/pipelines.toml", "context": {}}
        got, sid = decide(policy, request)
        if got != expected:
            failures.append(f"config bucket policy: {what}: {got} ({sid}), expected {expected}")
    for failure in failures:
        print(failure, file=sys.stderr)
    return failures


if __name__ == "__main__":
    main()
