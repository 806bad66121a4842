"""Deploy template.yaml into the local cloud (stands in for `sam deploy` + CloudFormation).

The SAM template is translated by samtranslator (the library `sam deploy` uses) into
CloudFormation, offline; then each resource is created through the AWS APIs of the moto
server, in dependency order, with Ref / Fn::GetAtt / Fn::Sub / Fn::Join / Fn::If resolved and
DefinitionSubstitutions applied to the state machine, as CloudFormation does. moto's own
CloudFormation is not used: it skips or mis-files several of these resources (see
shared notes/local-cloud-facts.md). What the template says is what gets deployed, so a
change to the template is what the tests test.
"""

from __future__ import annotations

import copy
import io
import json
import secrets
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from rollout_core.domain.arns import build_arn, partition_for_region
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

from cert_rollout.localcloud.lambda_runtime import FunctionSpec

if TYPE_CHECKING:
    from cert_rollout.localcloud.cloud import ServiceName

PSEUDO = ("AWS::Region", "AWS::AccountId", "AWS::StackName", "AWS::Partition", "AWS::URLSuffix", "AWS::NoValue")


class DeployError(Exception):
    """The template could not be deployed into the local cloud (names the resource)."""


class _NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


@dataclass
class Deployment:
    """What was deployed: physical ids, attributes, outputs, function specs, rule patterns."""

    stack_name: str
    region: str
    account_id: str
    parameters: dict[str, str]
    physical: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    resource_types: dict[str, str] = field(default_factory=dict)
    cfn_template: dict[str, Any] = field(default_factory=dict)
    dead_letter_targets: dict[str, str] = field(default_factory=dict)  # function name -> SQS queue ARN
    unevaluated_managed_policies: dict[str, list[str]] = field(default_factory=dict)  # role lid -> AWS managed ARNs
    state_machine_roles: dict[str, str] = field(default_factory=dict)  # state machine ARN -> role ARN

    def function_by_logical_id(self, logical_id: str) -> FunctionSpec:
        for spec in self.functions.values():
            if spec.logical_id == logical_id:
                return spec
        raise KeyError(logical_id)


def translate(template_path: Path, parameters: dict[str, str], region: str = "us-east-1") -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """SAM -> CloudFormation, offline.

    Returns (cfn template, code dirs by function/layer logical id, parameter values).
    """
    root = template_path.parent
    sam = resolve_includes(yaml_parse(template_path.read_text()), root)
    code_dirs: dict[str, str] = {}
    for logical_id, resource in sam.get("Resources", {}).items():
        props = resource.setdefault("Properties", {})
        kind = resource.get("Type")
        if kind == "AWS::Serverless::Function":
            code_dirs[logical_id] = str((root / props["CodeUri"]).resolve())
            props["CodeUri"] = f"s3://local-cloud-artifacts/{logical_id}.zip"
        elif kind == "AWS::Serverless::LayerVersion":
            code_dirs[logical_id] = str((root / props["ContentUri"]).resolve())
            props["ContentUri"] = f"s3://local-cloud-artifacts/{logical_id}.zip"
        elif kind == "AWS::Serverless::StateMachine" and "DefinitionUri" in props:
            definition_path = root / props.pop("DefinitionUri")
            props["Definition"] = json.loads(definition_path.read_text())
    values = {name: str(spec.get("Default", "")) for name, spec in sam.get("Parameters", {}).items()}
    values.update(parameters)
    unknown = set(parameters) - set(sam.get("Parameters", {}))
    if unknown:
        raise DeployError(f"unknown template parameters: {sorted(unknown)}")
    for name, spec in sam.get("Parameters", {}).items():
        check_parameter(name, spec, values[name])
    session = boto3.session.Session(region_name=region, aws_access_key_id="local", aws_secret_access_key="local")
    translator = Translator(None, Parser(), boto_session=session)
    cfn = translator.translate(copy.deepcopy(sam), parameter_values=dict(values), get_managed_policy_map=lambda: {})
    return cfn, code_dirs, values


def resolve_includes(node: Any, root: Path) -> Any:
    """``node`` with every ``Fn::Transform: {Name: AWS::Include, Parameters: {Location: path}}``
    replaced by the YAML/JSON file at ``path`` (relative to ``root``, the template's folder),
    as `sam build`/`sam deploy` upload it and CloudFormation's AWS::Include transform inserts
    it. Raises DeployError for an S3 location or a missing file."""
    if isinstance(node, list):
        return [resolve_includes(v, root) for v in node]
    if not isinstance(node, dict):
        return node
    transform = node.get("Fn::Transform")
    if len(node) == 1 and isinstance(transform, dict) and transform.get("Name") == "AWS::Include":
        location = str(transform.get("Parameters", {}).get("Location", ""))
        if "://" in location:
            raise DeployError(f"AWS::Include {location}: the local cloud reads only files beside the template")
        path = root / location
        if not path.is_file():
            raise DeployError(f"AWS::Include {location}: no such file beside {root}")
        return resolve_includes(yaml_parse(path.read_text()), path.parent)
    return {k: resolve_includes(v, root) for k, v in node.items()}


def layer_zip(folder: Path) -> bytes:
    """A layer's ContentUri folder zipped as `sam deploy` uploads a folder without a build
    method: every file, paths relative to the folder (Python's __pycache__ left out)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                z.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def check_parameter(name: str, spec: dict[str, Any], value: str) -> None:
    """CloudFormation's parameter constraints: Type Number, MinValue/MaxValue, AllowedValues,
    AllowedPattern (whole value). Raises DeployError naming the parameter."""
    import re

    if spec.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            raise DeployError(f"parameter {name}: {value!r} is not a number") from None
        if "MinValue" in spec and number < float(spec["MinValue"]):
            raise DeployError(f"parameter {name}: {value} is below MinValue {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise DeployError(f"parameter {name}: {value} is above MaxValue {spec['MaxValue']}")
    allowed = spec.get("AllowedValues")
    if allowed is not None and value not in [str(a) for a in allowed]:
        raise DeployError(f"parameter {name}: {value!r} is not one of {allowed}")
    pattern = spec.get("AllowedPattern")
    if pattern and not re.fullmatch(pattern, value):
        raise DeployError(f"parameter {name}: {value!r} does not match {pattern}")


class Deployer:
    """Creates the CloudFormation resources through boto3 clients of the local cloud."""

    def __init__(self, client: Callable[[ServiceName], Any], region: str, account_id: str, stack_name: str,
                 layer_dir_for: Callable[[str], str] | None = None) -> None:
        self.client = client
        self.region = region
        self.partition = partition_for_region(region)  # AWS::Partition, and every ARN built here
        self.account_id = account_id
        self.stack_name = stack_name
        self.layer_dir_for = layer_dir_for

    # ------------------------------------------------------------------ intrinsics
    def _resolve(self, value: Any, d: Deployment, conditions: dict[str, bool]) -> Any:
        """``value`` with every intrinsic resolved against deployment ``d`` (parameters, physical
        ids, attributes) and ``conditions``; AWS::NoValue drops a list item or mapping key. A
        one-key mapping whose key is no intrinsic of _INTRINSICS stays a mapping."""
        if isinstance(value, list):
            return [v for v in (self._resolve(v, d, conditions) for v in value) if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            intrinsic = _INTRINSICS.get(key)
            if intrinsic is not None:
                return intrinsic(_Intrinsic(self, d, conditions), arg)
        return {k: v for k, v in ((k, self._resolve(v, d, conditions)) for k, v in value.items()) if v is not _NO_VALUE}

    def _ref(self, name: str, d: Deployment) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        pseudo = {"AWS::Region": self.region, "AWS::AccountId": self.account_id, "AWS::StackName": self.stack_name,
                  "AWS::Partition": self.partition, "AWS::URLSuffix": "amazonaws.com"}
        if name in pseudo:
            return pseudo[name]
        if name in d.parameters:
            return d.parameters[name]
        if name in d.physical:
            return d.physical[name]
        raise DeployError(f"Ref {name}: not deployed yet or unknown")

    def _sub_name(self, name: str, d: Deployment) -> str:
        if "." in name and not name.startswith("AWS::"):
            logical, attr = name.split(".", 1)
            return str(d.attributes[logical][attr])
        return str(self._ref(name, d))

    # ------------------------------------------------------------------ deploy
    def deploy(self, template_path: Path, parameters: dict[str, str] | None = None) -> Deployment:
        cfn, code_dirs, values = translate(template_path, parameters or {}, self.region)
        d = Deployment(stack_name=self.stack_name, region=self.region, account_id=self.account_id,
                       parameters=values, cfn_template=cfn)
        conditions: dict[str, bool] = {}
        for name, expr in cfn.get("Conditions", {}).items():
            conditions[name] = bool(self._resolve(expr, d, conditions))
        resources = cfn["Resources"]
        for logical_id in _dependency_order(resources):
            resource = resources[logical_id]
            if "Condition" in resource and not conditions[resource["Condition"]]:
                continue
            props = self._resolve(copy.deepcopy(resource.get("Properties", {})), d, conditions)
            d.resource_types[logical_id] = resource["Type"]
            handler = getattr(self, "_create_" + resource["Type"].replace("::", "_"), None)
            if handler is None:
                continue  # e.g. AWS::Lambda::Permission: nothing to emulate
            try:
                handler(logical_id, props, d, code_dirs, resource)
            except DeployError:
                raise
            except Exception as e:
                raise DeployError(f"{logical_id} ({resource['Type']}): {e}") from e
        for name, output in cfn.get("Outputs", {}).items():
            d.outputs[name] = str(self._resolve(output["Value"], d, conditions))
        return d

    def _name(self, logical_id: str, limit: int = 64) -> str:
        suffix = secrets.token_hex(4).upper()
        room = limit - len(suffix) - 2
        stack = self.stack_name[: max(1, room // 3)]
        return f"{stack}-{logical_id[: room - len(stack)]}-{suffix}"

    def _arn(self, service: str, resource: str) -> str:
        return build_arn(self.partition, service, self.region, self.account_id, resource)

    def _create_AWS_KMS_Key(self, lid: str, p: dict, d: Deployment, *_: Any) -> None:
        key = self.client("kms").create_key(Description=p.get("Description", ""),
                                            Policy=json.dumps(p.get("KeyPolicy", {})))["KeyMetadata"]
        d.physical[lid] = key["KeyId"]
        d.attributes[lid] = {"Arn": key["Arn"], "KeyId": key["KeyId"]}

    def _create_AWS_KMS_Alias(self, lid: str, p: dict, d: Deployment, *_: Any) -> None:
        self.client("kms").create_alias(AliasName=p["AliasName"], TargetKeyId=p["TargetKeyId"])
        d.physical[lid] = p["AliasName"]

    def _create_AWS_DynamoDB_Table(self, lid: str, p: dict, d: Deployment, *_: Any) -> None:
        name = p.get("TableName") or self._name(lid, 255)
        ddb = self.client("dynamodb")
        kwargs = {k: p[k] for k in ("KeySchema", "AttributeDefinitions", "BillingMode", "GlobalSecondaryIndexes",
                                    "ProvisionedThroughput") if k in p}
        answer = ddb.create_table(TableName=name, **kwargs)["TableDescription"]
        ttl = p.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            ddb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
        d.physical[lid] = name
        d.attributes[lid] = {"Arn": answer["TableArn"], "StreamArn": answer.get("LatestStreamArn", "")}

    def _create_AWS_SNS_Topic(self, lid: str, p: dict, d: Deployment, *_: Any) -> None:
        name = p.get("TopicName") or self._name(lid, 256)
        attributes = {k: str(p[k]) for k in ("DisplayName", "KmsMasterKeyId") if k in p}
        arn = self.client("sns").create_topic(Name=name, Attributes=attributes)["TopicArn"]
        d.physical[lid] = arn
        d.attributes[lid] = {"TopicArn": arn, "TopicName": name}

    def _create_AWS_SNS_Subscription(self, lid: str, p: dict, d: Deployment, *_: Any) -> None:
        arn = self.client("sns").subscribe(TopicArn=p["TopicArn"], Protocol=p["Protocol"],
                                           Endpoint=p["Endpoint"])["SubscriptionArn"]
        d.physical[lid] = arn

    def _create_AWS_IAM_Role(self, lid: str, p: dict, d: Deployment, *_: Any) -> None:
        name = p.get("RoleName") or self._name(lid, 64)
        iam = self.client("iam")
        role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(p["AssumeRolePolicyDocument"]))["Role"]
        for policy in p.get("Policies", []):
            # SAM policy templates emit documents without Version; IAM then assumes 2008-10-17,
            # which moto refuses. Same meaning here (no policy variables), so state it.
            document = {"Version": "2012-10-17", **policy["PolicyDocument"]}
            iam.put_role_policy(RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(document))
        for arn in p.get("ManagedPolicyArns", []):
            if ":iam::aws:policy/" in arn:
                # AWS managed policies (SAM adds AWSLambdaBasicExecutionRole, AWSXrayWriteOnlyAccess)
                # are not loaded into the local cloud (load_aws_managed_policies off): the local
                # Lambda service writes the logs, tracing is off. Named, not evaluated.
                d.unevaluated_managed_policies.setdefault(lid, []).append(arn)
            else:
                iam.attach_role_policy(RoleName=name, PolicyArn=arn)
        d.physical[lid] = name
        d.attributes[lid] = {"Arn": role["Arn"], "RoleId": role["RoleId"]}

    def _create_AWS_IAM_Policy(self, lid: str, p: dict, d: Deployment, *_: Any) -> None:
        """An inline policy put on each of its Roles (Users and Groups: none in this template)."""
        if p.get("Users") or p.get("Groups"):
            raise DeployError(f"{lid}: AWS::IAM::Policy on users or groups is not deployed by the local cloud")
        for role in p.get("Roles", []):
            self.client("iam").put_role_policy(RoleName=role, PolicyName=p["PolicyName"],
                                               PolicyDocument=json.dumps(p["PolicyDocument"]))
        d.physical[lid] = p["PolicyName"]

    def _create_AWS_IAM_ManagedPolicy(self, lid: str, p: dict, d: Deployment, *_: Any) -> None:
        name = p.get("ManagedPolicyName") or self._name(lid, 128)
        arn = self.client("iam").create_policy(PolicyName=name, PolicyDocument=json.dumps(p["PolicyDocument"]),
                                               Description=p.get("Description", ""))["Policy"]["Arn"]
        d.physical[lid] = arn
        d.attributes[lid] = {"PolicyArn": arn}

    def _create_AWS_SSM_Document(self, lid: str, p: dict, d: Deployment, *_: Any) -> None:
        name = p.get("Name") or self._name(lid, 128)
        fmt = p.get("DocumentFormat", "JSON")
        content = p["Content"] if isinstance(p["Content"], str) else json.dumps(p["Content"])
        self.client("ssm").create_document(Name=name, Content=content, DocumentType=p.get("DocumentType", "Command"),
                                           DocumentFormat=fmt)
        d.physical[lid] = name

    def _create_AWS_Logs_LogGroup(self, lid: str, p: dict, d: Deployment, *_: Any) -> None:
        name = p.get("LogGroupName") or self._name(lid, 512)
        logs = self.client("logs")
        logs.create_log_group(logGroupName=name, **({"kmsKeyId": p["KmsKeyId"]} if p.get("KmsKeyId") else {}))
        if p.get("RetentionInDays"):
            logs.put_retention_policy(logGroupName=name, retentionInDays=int(p["RetentionInDays"]))
        d.physical[lid] = name
        d.attributes[lid] = {"Arn": self._arn("logs", f"log-group:{name}:*")}

    def _create_AWS_Lambda_LayerVersion(self, lid: str, p: dict, d: Deployment, code_dirs: dict[str, str], *_: Any) -> None:
        # samtranslator names the version "<SAM logical id><hash>": the longest SAM id it starts with.
        sam_lid = max((k for k in code_dirs if lid.startswith(k)), key=len, default=None)
        if sam_lid is None:
            raise DeployError(f"{lid}: no ContentUri folder")
        source = code_dirs[sam_lid]
        # Published for real: GetLayerVersionByArn answers with this zip's CodeSha256 (and, through
        # patches.py, a download URL served by the local cloud).
        arn = self.client("lambda").publish_layer_version(
            LayerName=p.get("LayerName") or sam_lid, Description=p.get("Description", "")[:256],
            Content={"ZipFile": layer_zip(Path(source))})["LayerVersionArn"]
        d.physical[lid] = arn
        d.attributes[lid] = {"Arn": arn}
        d.attributes.setdefault("_layer_dirs", {})[arn] = source

    def _create_AWS_Lambda_Function(self, lid: str, p: dict, d: Deployment, code_dirs: dict[str, str], *_: Any) -> None:
        name = p.get("FunctionName") or self._name(lid, 64)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as z:
            z.writestr("README.txt", "Code runs from the project folder through the local Lambda runtime.\n")
        env = {k: str(v) for k, v in p.get("Environment", {}).get("Variables", {}).items()}
        answer = self.client("lambda").create_function(
            FunctionName=name, Runtime=p["Runtime"], Role=p["Role"], Handler=p["Handler"],
            Code={"ZipFile": buffer.getvalue()}, Timeout=int(p.get("Timeout", 3)),
            MemorySize=int(p.get("MemorySize", 128)), Environment={"Variables": env},
            Description=p.get("Description", "")[:256],
            TracingConfig=p.get("TracingConfig", {"Mode": "PassThrough"}),
            **({"DeadLetterConfig": p["DeadLetterConfig"]} if p.get("DeadLetterConfig") else {}),
        )
        if p.get("DeadLetterConfig", {}).get("TargetArn"):
            d.dead_letter_targets[name] = p["DeadLetterConfig"]["TargetArn"]
        layer_dirs = [d.attributes.get("_layer_dirs", {})[arn] for arn in p.get("Layers", [])]
        d.functions[name] = FunctionSpec(name=name, logical_id=lid, arn=answer["FunctionArn"], handler=p["Handler"],
                                         code_dir=code_dirs[lid], layer_dirs=layer_dirs, environment=env,
                                         timeout=int(p.get("Timeout", 3)), memory_mb=int(p.get("MemorySize", 128)),
                                         role_arn=p["Role"])
        d.physical[lid] = name
        d.attributes[lid] = {"Arn": answer["FunctionArn"]}

    def _create_AWS_StepFunctions_StateMachine(self, lid: str, p: dict, d: Deployment, *_: Any) -> None:
        name = p.get("StateMachineName") or self._name(lid, 80)
        definition = p.get("DefinitionString") or json.dumps(p["Definition"])
        substitutions = {k: str(v) for k, v in p.get("DefinitionSubstitutions", {}).items()}
        definition = _substitute(definition, lambda n: substitutions[n] if n in substitutions else "${" + n + "}")
        kwargs: dict[str, Any] = {}
        if p.get("TracingConfiguration"):
            kwargs["tracingConfiguration"] = {"enabled": bool(p["TracingConfiguration"].get("Enabled"))}
        arn = self.client("stepfunctions").create_state_machine(
            name=name, definition=definition, roleArn=p["RoleArn"], type=p.get("StateMachineType", "STANDARD"),
            **kwargs)["stateMachineArn"]
        d.state_machine_roles[arn] = p["RoleArn"]
        d.physical[lid] = arn
        d.attributes[lid] = {"Arn": arn, "Name": name}

    def _create_AWS_SQS_Queue(self, lid: str, p: dict, d: Deployment, *_: Any) -> None:
        name = p.get("QueueName") or self._name(lid, 80)
        attributes = {k: str(p[k]) for k in ("MessageRetentionPeriod", "KmsMasterKeyId", "VisibilityTimeout",
                                             "DelaySeconds") if k in p}
        url = self.client("sqs").create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        d.physical[lid] = url
        d.attributes[lid] = {"Arn": self._arn("sqs", name), "QueueName": name, "QueueUrl": url}

    def _create_AWS_CloudWatch_Alarm(self, lid: str, p: dict, d: Deployment, *_: Any) -> None:
        name = p.get("AlarmName") or self._name(lid, 255)
        keys = ("AlarmDescription", "Namespace", "MetricName", "Dimensions", "Statistic", "Period",
                "EvaluationPeriods", "Threshold", "ComparisonOperator", "TreatMissingData", "AlarmActions")
        kwargs = {k: p[k] for k in keys if k in p}
        for k in ("Period", "EvaluationPeriods"):
            if k in kwargs:
                kwargs[k] = int(kwargs[k])
        if "Threshold" in kwargs:
            kwargs["Threshold"] = float(kwargs["Threshold"])
        self.client("cloudwatch").put_metric_alarm(AlarmName=name, **kwargs)
        d.physical[lid] = name
        d.attributes[lid] = {"Arn": self._arn("cloudwatch", f"alarm:{name}")}

    def _create_AWS_Events_Rule(self, lid: str, p: dict, d: Deployment, *_: Any) -> None:
        name = p.get("Name") or self._name(lid, 64)
        events = self.client("events")
        arn = events.put_rule(Name=name, EventPattern=json.dumps(p["EventPattern"]), State=p.get("State", "ENABLED"),
                              Description=p.get("Description", ""))["RuleArn"]
        targets = [{k: t[k] for k in ("Id", "Arn", "RoleArn", "Input", "InputPath", "InputTransformer") if k in t}
                   for t in p.get("Targets", [])]
        events.put_targets(Rule=name, Targets=targets)
        d.physical[lid] = name
        d.attributes[lid] = {"Arn": arn}
        d.rules[name] = {"pattern": p["EventPattern"], "targets": targets, "logical_id": lid}


class _NoValue:
    pass


_NO_VALUE = _NoValue()


def _substitute(text: str, lookup: Callable[[str], Any]) -> str:
    """CloudFormation ${Name} substitution; ${!Literal} stays as ${Literal}."""
    out, i = [], 0
    while True:
        start = text.find("${", i)
        if start < 0:
            out.append(text[i:])
            return "".join(out)
        end = text.find("}", start)
        if end < 0:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:start])
        name = text[start + 2:end]
        out.append("${" + name[1:] + "}" if name.startswith("!") else str(lookup(name)))
        i = end + 1


@dataclass
class _Intrinsic:
    """One intrinsic's context: the deployer, the deployment so far and the stack's conditions."""

    deployer: Deployer
    d: Deployment
    conditions: dict[str, bool]

    def resolve(self, value: Any) -> Any:
        """``value`` resolved in this context (Deployer._resolve)."""
        return self.deployer._resolve(value, self.d, self.conditions)

    def get_att(self, arg: Any) -> Any:
        """Fn::GetAtt ``[logical id, attribute]`` or ``"id.attribute"`` of a deployed resource."""
        logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
        try:
            return self.d.attributes[logical][attr]
        except KeyError:
            raise DeployError(f"Fn::GetAtt {logical}.{attr}: not available") from None

    def sub(self, arg: Any) -> str:
        """Fn::Sub ``text`` or ``[text, variables]``: a variable wins over a parameter, resource or
        attribute of that name (_substitute keeps ``${!x}`` literal)."""
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        variables = {k: self.resolve(v) for k, v in variables.items()}
        return _substitute(text, lambda name: variables[name] if name in variables
                           else self.deployer._sub_name(name, self.d))

    def join(self, arg: Any) -> Any:
        """Fn::Join ``[separator, parts]``."""
        sep, parts = arg
        return sep.join(str(p) for p in self.resolve(parts))

    def if_(self, arg: Any) -> Any:
        """Fn::If ``[condition, value if true, value if false]``."""
        name, yes, no = arg
        return self.resolve(yes if self.conditions[name] else no)

    def select(self, arg: Any) -> Any:
        """Fn::Select ``[index, list]``."""
        index, items = arg
        return self.resolve(items)[int(self.resolve(index))]

    def split(self, arg: Any) -> list[str]:
        """Fn::Split ``[separator, text]``."""
        sep, text = arg
        return str(self.resolve(text)).split(sep)

    def equals(self, arg: Any) -> bool:
        """Fn::Equals ``[a, b]``, compared as strings."""
        a, b = (self.resolve(x) for x in arg)
        return str(a) == str(b)


#: The intrinsics Deployer._resolve handles: name -> (context, argument) -> value.
_INTRINSICS: dict[str, Callable[[_Intrinsic, Any], Any]] = {
    "Ref": lambda c, arg: c.deployer._ref(arg, c.d),
    "Fn::GetAtt": _Intrinsic.get_att,
    "Fn::Sub": _Intrinsic.sub,
    "Fn::Join": _Intrinsic.join,
    "Fn::If": _Intrinsic.if_,
    "Fn::Select": _Intrinsic.select,
    "Fn::Split": _Intrinsic.split,
    "Fn::Equals": _Intrinsic.equals,
    "Fn::Not": lambda c, arg: not c.resolve(arg[0]),
    "Fn::And": lambda c, arg: all(c.resolve(x) for x in arg),
    "Fn::Or": lambda c, arg: any(c.resolve(x) for x in arg),
    "Condition": lambda c, arg: c.conditions[arg],
}


def _sub_references(arg: Any, resources: dict[str, Any]) -> set[str]:
    """Resources a Fn::Sub ``text`` or ``[text, variables]`` names: ``${Id}`` / ``${Id.Attr}`` in
    the text, and whatever the variables' values reference."""
    text = arg if isinstance(arg, str) else arg[0]
    found: set[str] = set()
    for part in text.split("${")[1:]:
        name = part.split("}", 1)[0].split(".", 1)[0]
        if name in resources:
            found.add(name)
    return found | _references(arg if isinstance(arg, str) else arg[1], resources)


def _references(value: Any, resources: dict[str, Any]) -> set[str]:
    """Logical ids of ``resources`` that ``value`` (a property tree) reaches by Ref, Fn::GetAtt
    or Fn::Sub, at any depth."""
    found: set[str] = set()
    if isinstance(value, list):
        for v in value:
            found |= _references(v, resources)
    elif isinstance(value, dict):
        for k, v in value.items():
            if k == "Ref" and isinstance(v, str) and v in resources:
                found.add(v)
            elif k == "Fn::GetAtt":
                target = v[0] if isinstance(v, list) else v.split(".", 1)[0]
                if target in resources:
                    found.add(target)
            elif k == "Fn::Sub":
                found |= _sub_references(v, resources)
            else:
                found |= _references(v, resources)
    return found


def _depends_on(resource: dict[str, Any]) -> set[str]:
    """The logical ids of a resource's DependsOn (a name or a list of names)."""
    depends_on = resource.get("DependsOn")
    if isinstance(depends_on, list):
        return set(depends_on)
    return {depends_on} if depends_on else set()


def _dependency_order(resources: dict[str, Any]) -> list[str]:
    """Logical ids of ``resources`` so that each comes after every resource it references or
    DependsOn (depth first, by sorted name). Raises DeployError naming a circular dependency."""
    graph = {lid: _references(r.get("Properties", {}), resources) | _depends_on(r)
             for lid, r in resources.items()}
    order: list[str] = []
    seen: set[str] = set()

    def visit(lid: str, path: tuple[str, ...]) -> None:
        if lid in seen:
            return
        if lid in path:
            raise DeployError(f"circular dependency: {' -> '.join(path + (lid,))}")
        for dep in sorted(graph[lid]):
            visit(dep, path + (lid,))
        seen.add(lid)
        order.append(lid)

    for lid in sorted(resources):
        visit(lid, ())
    return order
