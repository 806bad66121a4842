"""The local cloud's emulations, hooked into moto's backends (moto runs in this process, as a
threaded server). Each hook says which AWS behaviour it stands in for; everything else is
moto's. Hooks dispatch to the active LocalCloud, so only one local cloud runs per process.
"""

from __future__ import annotations

import json
from typing import Any

from moto.acm.models import CertBundle
from moto.acm.responses import AWSCertificateManagerResponse
from moto.awslambda.models import LambdaBackend
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.core.common_models import BaseModel  # noqa: F401  (moto import order)
from moto.core.exceptions import JsonRESTError
from moto.core.responses import EmptyResult
from moto.events.models import Rule
from moto.ssm.models import SimpleSystemManagerBackend
from moto.ssm.responses import SimpleSystemManagerResponse
from moto.utilities.arns import parse_arn

ACTIVE: dict[str, Any] = {"cloud": None}
_INSTALLED = False


def _cloud() -> Any:
    return ACTIVE["cloud"]


# -------------------------------------------------------------- Lambda: run the real handler
_orig_lambda_invoke = LambdaBackend.invoke


def _lambda_invoke(self: LambdaBackend, function_name: str, qualifier: str | None, body: Any, headers: Any,
                   response_headers: Any) -> Any:
    cloud = _cloud()
    fn = self.get_function(function_name, qualifier)
    if cloud is None or not cloud.runtime.knows(fn.function_name):
        return _orig_lambda_invoke(self, function_name, qualifier, body, headers, response_headers)
    if headers.get("X-Amz-Invocation-Type") == "Event":
        import threading

        threading.Thread(target=cloud.runtime.invoke, args=(fn.function_name, body), daemon=True).start()
        return b""
    payload, error = cloud.runtime.invoke(fn.function_name, body)
    if error:
        response_headers["x-amz-function-error"] = error
    response_headers["x-amz-executed-version"] = "$LATEST"
    return payload


# -------------------------------------------------------------- Lambda: GetLayerVersionByArn
from moto.awslambda.responses import LambdaResponse  # noqa: E402


def _get_layer_version_by_arn(self: LambdaResponse) -> Any:
    """GetLayerVersionByArn (moto: not implemented): the layer version as GetLayerVersion
    gives it, with Content.Location a download URL of the real zip that expires after 10
    minutes, as Lambda's presigned S3 URL does; served by the local cloud on 127.0.0.1
    (cloud.LayerDownloads), so a local node downloads exactly what was published."""
    arn = self._get_param("Arn") or (self.querystring.get("Arn") or [""])[0]
    version = self.backend.layers_versions_by_arn(arn)
    if version is None:
        raise JsonRESTError("ResourceNotFoundException", f"Layer version {arn} does not exist")
    answer = version.get_layer_version()
    cloud = _cloud()
    if cloud is not None:
        answer["Content"]["Location"] = cloud.layer_downloads.presign(version.code_bytes)
    return json.dumps(answer)


# -------------------------------------------------------------- EventBridge: Step Functions targets
_orig_send_to_targets = Rule.send_to_targets


def _send_to_targets(self: Rule, original_event: Any, transform_input: bool = True) -> None:
    """EventBridge delivering a matched event to a state machine target: StartExecution with
    the event as input (moto raises NotImplementedError for this target type)."""
    other = [t for t in self.targets if parse_arn(t["Arn"]).service not in ("states", "lambda")]
    mine = [t for t in self.targets if parse_arn(t["Arn"]).service in ("states", "lambda")]
    if other:
        saved = self.targets
        self.targets = other
        try:
            _orig_send_to_targets(self, original_event, transform_input)
        finally:
            self.targets = saved
    if not mine or not self.event_pattern.matches_event(original_event):
        return
    cloud = _cloud()
    for target in mine:
        event = dict(original_event)
        if target.get("InputPath") or target.get("InputTransformer") or target.get("Input"):
            raise NotImplementedError("local cloud: only whole-event input to state machine and Lambda targets")
        if parse_arn(target["Arn"]).service == "lambda":
            # EventBridge invokes Lambda asynchronously (InvocationType Event).
            cloud.invoke_async(target["Arn"], event)
            continue
        execution = cloud.start_execution_from_rule(self.name, target["Arn"], event, target.get("RoleArn"))
        if execution is None:
            continue  # the rule's role may not start it (cloud.iam.denials says why)
        cloud.routed.append({"rule": self.name, "target": target["Arn"], "executionArn": execution})


# -------------------------------------------------------------- SSM: nodes really run documents
_orig_send_command = SimpleSystemManagerBackend.send_command


def _send_command(self: SimpleSystemManagerBackend, **kwargs: Any) -> Any:
    from cert_rollout.localcloud.nodes import InvalidParameters

    cloud = _cloud()
    if cloud is None:
        return _orig_send_command(self, **kwargs)
    instance_ids = kwargs.get("instance_ids") or []
    for instance_id in instance_ids:
        if instance_id not in cloud.fleet.nodes:
            raise JsonRESTError("InvalidInstanceId", f"Instances [[{instance_id}]] not in a valid state for account {self.account_id}")
    document = json.loads(self.get_document(kwargs["document_name"], "", "", "JSON")["Content"])
    try:
        values = cloud.fleet.validate_parameters(document, kwargs.get("parameters") or {})
    except InvalidParameters as e:
        raise JsonRESTError("InvalidParameters", str(e)) from None
    command = _orig_send_command(self, **kwargs)
    command.status, command.status_details = "Pending", "Pending"
    for invocation in command.invocations:
        cloud.fleet.start(command.command_id, invocation["InstanceId"], document, values, invocation,
                          delivery_timeout=float(command.timeout_seconds))
    return command


def _cancel_command_backend(self: SimpleSystemManagerBackend, command_id: str, instance_ids: list[str]) -> None:
    command = self.get_command_by_id(command_id)
    cloud = _cloud()
    for invocation in command.invocations:
        if not instance_ids or invocation["InstanceId"] in instance_ids:
            cloud.fleet.cancel(command_id, invocation["InstanceId"], invocation)


def _cancel_command_response(self: SimpleSystemManagerResponse) -> Any:
    _cancel_command_backend(self.ssm_backend, self._get_param("CommandId"), self._get_param("InstanceIds", []))
    return EmptyResult()


def _describe_instance_information(self: SimpleSystemManagerResponse) -> Any:
    """DescribeInstanceInformation (moto: not implemented): the local managed nodes, PingStatus
    Online, or ConnectionLost for a node whose agent is offline (fault agent-offline), filtered by
    the InstanceIds filter when given; one page (the local fleet is small)."""
    cloud = _cloud()
    wanted: set[str] | None = None
    for f in self._get_param("Filters") or []:
        if f.get("Key") == "InstanceIds":
            wanted = set(f.get("Values") or [])
    for iid in self._get_param("InstanceInformationFilterList") or []:
        if iid.get("key") == "InstanceIds":
            wanted = set(iid.get("valueSet") or [])
    nodes = cloud.fleet.nodes.values() if cloud is not None else []
    listed = [{"InstanceId": n.instance_id, "PingStatus": "Online" if n.online else "ConnectionLost",
               "PlatformType": "Linux", "PlatformName": "local", "AgentVersion": "local-cloud",
               "ResourceType": "ManagedInstance" if n.instance_id.startswith("mi-") else "EC2Instance"}
              for n in nodes if wanted is None or n.instance_id in wanted]
    return json.dumps({"InstanceInformationList": sorted(listed, key=lambda i: i["InstanceId"])})


# -------------------------------------------------------------- ACM: renewal summary, RenewCertificate
_orig_describe = CertBundle.describe


def _describe(self: CertBundle) -> dict[str, Any]:
    result = _orig_describe(self)
    # Set on the bundle by cert_rollout/localcloud/pki.py (moto's CertBundle has no such fields).
    key_algorithm = getattr(self, "_local_key_algorithm", None)
    renewal = getattr(self, "_local_renewal", None)
    if key_algorithm:
        cert = result["Certificate"]
        cert["KeyAlgorithm"] = key_algorithm
        cert["RenewalEligibility"] = "ELIGIBLE"
        if renewal:
            cert["RenewalSummary"] = dict(renewal)
    return result


def _renew_certificate(self: AWSCertificateManagerResponse) -> Any:
    """RenewCertificate (moto: not implemented): the local private CA reissues the certificate
    (new key, new serial, same ARN), then AWS Health's AWS_ACM_RENEWAL_STATE_CHANGE and ACM's
    "ACM Certificate Available" events go on the default bus, after the call returns
    (renewal_events.py), where the template's rules start the rollout."""
    from cert_rollout.localcloud import renewal_events

    arn = self._get_param("CertificateArn")
    cloud = _cloud()
    if cloud is None or cloud.pca is None:
        raise JsonRESTError("ValidationException", "RenewCertificate needs the local private CA")
    bundle = self.acm_backend.get_certificate(arn)
    if bundle.type != "PRIVATE" or not getattr(bundle, "_local_key_algorithm", None):
        raise JsonRESTError("ValidationException", f"Certificate {arn} is not a private certificate eligible for renewal")
    cloud.pca.renew(arn)
    renewal_events.deliver_later(renewal_events.renewal_events(bundle, cloud.region, cloud.account_id),
                                 lambda event: None if cloud.stopping else cloud.deliver_event(event))
    return EmptyResult()


# -------------------------------------------------------------- ACM export: remember what must never leak
from moto.acm.models import AWSCertificateManagerBackend  # noqa: E402

_orig_export = AWSCertificateManagerBackend.export_certificate


def _export_certificate(self: AWSCertificateManagerBackend, certificate_arn: str, passphrase: str) -> Any:
    """ExportCertificate as moto does it, plus: refuse what AWS refuses (moto accepts '#', '$',
    '%' and short passphrases), record the passphrase for the leak check, and answer with an
    injected error when a scenario asked for one (cloud.inject_error)."""
    import base64

    cloud = _cloud()
    if cloud is not None:
        injected = cloud.take_injected_error("acm", "ExportCertificate")
        if injected:
            raise JsonRESTError(injected, f"{injected} (injected by the local cloud)")
    raw = base64.standard_b64decode(passphrase)
    if len(raw) < 4 or len(raw) > 128 or any(c in raw for c in b"#$%") or not raw.isascii():
        raise JsonRESTError("ValidationException", "Passphrase must be 4-128 ASCII characters without #, $ or %")
    answer = _orig_export(self, certificate_arn, passphrase)
    if cloud is not None:
        cloud.secrets.passphrases.append(raw)
    return answer


# -------------------------------------------------------------- Step Functions: execution names
from moto.stepfunctions.parser.models import StepFunctionsParserBackend  # noqa: E402

_orig_start_execution = StepFunctionsParserBackend.start_execution


def _start_execution(self: Any, state_machine_arn: str, name: Any = None, execution_input: Any = None,
                     trace_header: Any = None) -> Any:
    """StartExecution without a name: AWS names the execution with a UUID (moto leaves None)."""
    import uuid

    return _orig_start_execution(self, state_machine_arn, name or str(uuid.uuid4()), execution_input, trace_header)


# -------------------------------------------------------------- DynamoDB: one request at a time
from moto.dynamodb.responses import DynamoHandler  # noqa: E402

_orig_dynamo_call = DynamoHandler.call_action
_DYNAMO_LOCK = __import__("threading").Lock()


def _dynamo_call_action(self: Any) -> Any:
    """DynamoDB serializes per item; moto's tables are plain dicts that a concurrent PutItem can
    change under a running Query ("dictionary changed size during iteration", seen at 1,000
    targets). The local cloud runs DynamoDB requests one at a time. A scenario's injected error
    for (operation, table) answers as DynamoDB does (HTTP 400, its JSON error type)."""
    cloud = _cloud()
    if cloud is not None:
        operation = str(self.headers.get("X-Amz-Target", "")).rsplit(".", 1)[-1]
        try:
            table = str(json.loads(self.body or "{}").get("TableName", ""))
        except ValueError:
            table = ""
        injected = cloud.take_injected_error("dynamodb", f"{operation}:{table}")
        if injected:
            body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{injected}",
                               "message": f"{injected} (injected by the local cloud)"})
            return 400, {"Content-Type": "application/x-amz-json-1.0"}, body
    with _DYNAMO_LOCK:
        return _orig_dynamo_call(self)


# -------------------------------------------------------------- Step Functions: status-change events
from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication  # noqa: E402

_orig_terminated = BaseExecutionWorkerCommunication.terminated


def _terminated(self: Any) -> None:
    """Step Functions emits "Step Functions Execution Status Change" to EventBridge when an
    execution ends (notes aws-facts.md; moto does not): after moto records the end, the local
    cloud puts that event on the default bus (cloud.execution_status_event)."""
    _orig_terminated(self)
    cloud = _cloud()
    if cloud is not None:
        cloud.execution_status_event(self.execution)


# -------------------------------------------------------------- IAM: every request authorized
from moto.core.responses import BaseResponse  # noqa: E402

_orig_authorize = BaseResponse._authenticate_and_authorize_normal_action


def _authorize(self: Any, resource: str = "*") -> None:
    """IAM authorizing the request (iam.py): where moto would run its own IAM check (off: its
    INITIAL_NO_AUTH_ACTION_COUNT stays infinite), the local cloud's enforcer decides."""
    cloud = _cloud()
    if cloud is not None:
        cloud.iam.authorize_request(self)
    _orig_authorize(self, resource)


def install() -> None:
    """Hook the emulations into moto (idempotent)."""
    global _INSTALLED
    if _INSTALLED:
        return
    LambdaBackend.invoke = _lambda_invoke  # type: ignore[method-assign]
    LambdaSimpleBackend.invoke = _lambda_invoke  # type: ignore[method-assign]
    LambdaResponse.get_layer_version_by_arn = _get_layer_version_by_arn  # type: ignore[attr-defined]
    Rule.send_to_targets = _send_to_targets  # type: ignore[method-assign]
    SimpleSystemManagerBackend.send_command = _send_command  # type: ignore[method-assign, assignment]
    SimpleSystemManagerBackend.cancel_command = _cancel_command_backend  # type: ignore[attr-defined]
    SimpleSystemManagerResponse.cancel_command = _cancel_command_response  # type: ignore[attr-defined]
    SimpleSystemManagerResponse.describe_instance_information = _describe_instance_information  # type: ignore[attr-defined]
    CertBundle.describe = _describe  # type: ignore[method-assign]
    StepFunctionsParserBackend.start_execution = _start_execution  # type: ignore[method-assign]
    DynamoHandler.call_action = _dynamo_call_action  # type: ignore[method-assign]
    BaseExecutionWorkerCommunication.terminated = _terminated  # type: ignore[method-assign]
    AWSCertificateManagerResponse.renew_certificate = _renew_certificate  # type: ignore[attr-defined]
    AWSCertificateManagerBackend.export_certificate = _export_certificate  # type: ignore[method-assign]
    BaseResponse._authenticate_and_authorize_normal_action = _authorize  # type: ignore[method-assign]
    _INSTALLED = True
