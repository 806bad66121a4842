"""IAM enforced on the local cloud (stands in for IAM authorizing every signed request).

Every request moto's server answers passes ``authorize_request`` first (hooked where moto
authorizes a request, BaseResponse._authenticate_and_authorize_normal_action, which moto's
call_action runs for every service but S3). The request's access key (SigV4 Credential scope)
names the principal:

* keys the local cloud issued with STS AssumeRole to a role (a function's execution role, the
  state machine's role, the node role) are evaluated against that role's policies as the
  template created them (inline policies and attached customer managed policies, read from
  moto's IAM backend), plus the target resource's policy (Secrets Manager), by policy.py;
* moto's Step Functions interpreter signs its Lambda calls with the fixed key ``ak``: the local
  cloud maps it to the state machine's role (one state machine per deployment);
* any other key is the operator (the test harness, the CLI, the deployer): not evaluated.

The request context carries what AWS derives from the credentials: aws:PrincipalArn,
aws:PrincipalAccount, aws:RequestedRegion, aws:SecureTransport (false: plain HTTP on
loopback) and, for a node's credentials, ec2:SourceInstanceARN (EC2 ``i-`` nodes) or
ssm:SourceInstanceARN (hybrid ``mi-`` nodes); aws:ResourceTag/* (and secretsmanager:ResourceTag/*)
of an ACM certificate or secret; aws:RequestTag/* and aws:TagKeys of CreateSecret/TagResource;
secretsmanager:BlockPublicPolicy of PutResourcePolicy.
Signatures are not verified. Compiled identity policies are cached per role and dropped on
any IAM or STS request.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from moto.core.exceptions import JsonRESTError, _RESTError

from cert_rollout.localcloud.policy import CompiledPolicy, Evaluation, compile_policy, evaluate

_CREDENTIAL = re.compile(r"Credential=([^/]+)/[^/]+/([^/]+)/([^/]+)/")
#: SigV4 signing names whose IAM service prefix differs.
_PREFIX = {"monitoring": "cloudwatch", "email": "ses"}
#: API operation -> IAM action where the names differ (service authorization reference).
_ACTION = {("lambda", "Invoke"): "InvokeFunction", ("lambda", "GetLayerVersionByArn"): "GetLayerVersion",
           ("lambda", "InvokeAsync"): "InvokeFunction"}
#: Query-protocol services answer with XML errors and these codes.
_QUERY_ERROR = {"sns": "AuthorizationError", "sqs": "AccessDenied", "iam": "AccessDenied", "sts": "AccessDenied",
                "cloudwatch": "AccessDenied"}
#: Actions every principal may call (AWS: "No permissions are required to perform this operation").
_ALWAYS = {"sts:GetCallerIdentity"}
STATES_INTERPRETER_KEY = "ak"  # moto/stepfunctions/parser/asl/utils/boto_client.py


class _AccessDenied(_RESTError):
    code = 403


@dataclass(frozen=True)
class Principal:
    """Who signs with one access key: a role session and what its credentials prove."""

    label: str  # e.g. "function ExportCertificateFunction", "node mi-0123", "state machine"
    role_name: str
    role_arn: str
    session_arn: str
    context: dict[str, tuple[str, ...]] = field(default_factory=dict)  # lowercase key -> values


@dataclass(frozen=True)
class Denial:
    """One request IAM refused (kept for tests and reports)."""

    principal: str
    action: str
    resource: str
    reason: str


@dataclass(frozen=True)
class _Request:
    service: str
    action: str  # service:Action
    resources: tuple[str, ...]
    context: dict[str, tuple[str, ...]]
    resource_policy: str | None
    also_required: tuple[str, ...] = ()  # further actions the same request needs


class IamEnforcer:
    """The principals of one local cloud and the decision for each of their requests."""

    def __init__(self, account_id: str, region: str, partition: str = "aws") -> None:
        self.account_id = account_id
        self.region = region
        self.partition = partition
        self.enabled = True
        self.principals: dict[str, Principal] = {}
        self.denials: list[Denial] = []
        self.evaluated = 0
        # (principal label, action) -> the statements that allowed it ("<policy> statement <sid>")
        self.grants: dict[tuple[str, str], set[str]] = {}
        self._compiled: dict[str, tuple[CompiledPolicy, ...]] = {}
        self._resource_policies: dict[str, CompiledPolicy] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ principals
    def issue(self, sts: Any, role_arn: str, session_name: str, label: str,
              context: dict[str, str] | None = None) -> dict[str, str]:
        """AssumeRole ``role_arn`` (moto's STS through the operator's ``sts`` client) and register
        the session as ``label``; returns AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
        AWS_SESSION_TOKEN for an environment. ``context``: condition keys the credentials prove."""
        answer = sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name[:64], DurationSeconds=43200)
        credentials = answer["Credentials"]
        self.register(credentials["AccessKeyId"], role_arn, answer["AssumedRoleUser"]["Arn"], label, context)
        return {"AWS_ACCESS_KEY_ID": credentials["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
                "AWS_SESSION_TOKEN": credentials["SessionToken"]}

    def register(self, access_key_id: str, role_arn: str, session_arn: str, label: str,
                 context: dict[str, str] | None = None) -> Principal:
        """Requests signed with ``access_key_id`` are ``role_arn``'s session ``session_arn``."""
        keys: dict[str, tuple[str, ...]] = {"aws:principalarn": (role_arn,), "aws:principalaccount": (self.account_id,),
                "aws:requestedregion": (self.region,), "aws:securetransport": ("false",)}
        keys.update({k.lower(): (v,) for k, v in (context or {}).items()})
        principal = Principal(label, role_arn.rsplit("/", 1)[-1], role_arn, session_arn, keys)
        self.principals[access_key_id] = principal
        return principal

    # ------------------------------------------------------------------ policies
    def identity_policies(self, role_name: str) -> tuple[CompiledPolicy, ...]:
        """The role's inline and attached customer managed policies, compiled (cached)."""
        with self._lock:
            cached = self._compiled.get(role_name)
        if cached is not None:
            return cached
        from moto.iam.models import iam_backends

        backend = iam_backends[self.account_id][self.partition]
        role = backend.get_role(role_name)
        compiled = [compile_policy(document, f"{role_name}/{name}") for name, document in role.policies.items()]
        for arn, policy in role.managed_policies.items():
            version = next(v for v in policy.versions if v.is_default)
            compiled.append(compile_policy(version.document, arn.rsplit("/", 1)[-1]))
        result = tuple(compiled)
        with self._lock:
            self._compiled[role_name] = result
        return result

    def _resource_policy(self, text: str) -> CompiledPolicy:
        with self._lock:
            cached = self._resource_policies.get(text)
        if cached is None:
            cached = compile_policy(text, "resource policy", resource_policy=True)
            with self._lock:
                self._resource_policies[text] = cached
        return cached

    def forget_policies(self) -> None:
        """Drop the compiled identity policies (a role or policy may have changed)."""
        with self._lock:
            self._compiled.clear()

    # ------------------------------------------------------------------ decisions
    def decide(self, principal: Principal, action: str, resources: tuple[str, ...],
               context: dict[str, tuple[str, ...]] | None = None,
               resource_policy: str | None = None) -> tuple[Evaluation, str]:
        """(decision, resource) for ``principal`` doing ``action`` on every one of ``resources``:
        the first refusal, else the last allow; records a refusal in ``denials``."""
        identity = self.identity_policies(principal.role_name)
        compiled_resource_policy = self._resource_policy(resource_policy) if resource_policy else None
        ctx = {**principal.context, **(context or {})}
        result, resource = Evaluation("IMPLICIT_DENY", "no resource"), "*"
        reasons: set[str] = set()  # each resource's grant (SendCommand: the document's and each node's)
        for resource in resources:
            result = evaluate(action, resource, identity=identity, resource_policy=compiled_resource_policy,
                              principal_arns=(principal.role_arn, principal.session_arn), context=ctx)
            if not result.allowed:
                with self._lock:
                    self.denials.append(Denial(principal.label, action, resource, result.reason))
                return result, resource
            reasons.add(result.reason)
        with self._lock:
            self.evaluated += 1
            self.grants.setdefault((principal.label, action), set()).update(reasons)
        return result, resource

    def authorize_request(self, response: Any) -> None:
        """Raise the service's access-denied error unless the request's principal may make it.
        ``response``: moto's BaseResponse with the request set up."""
        authorization = str(response.headers.get("Authorization") or response.headers.get("authorization") or "")
        match = _CREDENTIAL.search(authorization)
        if not match:
            return
        access_key, signing_name = match.group(1), match.group(3)
        service = _PREFIX.get(signing_name, signing_name)
        if service in ("iam", "sts"):
            self.forget_policies()
        principal = self.principals.get(access_key)
        if principal is None or not self.enabled:
            return  # the operator
        operation = response._get_action()
        action = f"{service}:{_ACTION.get((service, operation), operation)}"
        if action in _ALWAYS:
            return
        request = _describe(self, service, operation, action, response)
        result, resource = self.decide(principal, action, request.resources, request.context, request.resource_policy)
        for also in request.also_required:
            if not result.allowed:
                break
            action = also
            result, resource = self.decide(principal, also, request.resources, request.context, request.resource_policy)
        if result.allowed:
            return
        why = ("with an explicit deny in " + ("a resource-based policy" if "resource policy" in result.reason
                                               else "an identity-based policy")
               if result.decision == "EXPLICIT_DENY" else "because no identity-based policy allows the "
               f"{action} action")
        message = (f"User: {principal.session_arn} is not authorized to perform: {action} on resource: "
                   f"{resource} {why}")
        if service in _QUERY_ERROR:
            raise _AccessDenied(_QUERY_ERROR[service], message)
        raise JsonRESTError("AccessDeniedException", message)


# ---------------------------------------------------------------------- what a request touches
def _arn(enforcer: IamEnforcer, service: str, resource: str, region: str | None = None, account: str | None = None) -> str:
    return (f"arn:{enforcer.partition}:{service}:{enforcer.region if region is None else region}:"
            f"{enforcer.account_id if account is None else account}:{resource}")


def _param(response: Any, name: str) -> Any:
    try:
        value = response._get_param(name)
    except Exception:  # noqa: BLE001 - a body moto cannot parse as this protocol: no such parameter
        value = None
    if value is None:
        value = (response.querystring.get(name) or [None])[0]
    return value


def _tags(raw: Any) -> dict[str, str]:
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    return {str(t.get("Key")): str(t.get("Value", "")) for t in raw or [] if isinstance(t, dict)}


def _request_tag_keys(tags: dict[str, str]) -> dict[str, tuple[str, ...]]:
    keys: dict[str, tuple[str, ...]] = {f"aws:requesttag/{k}".lower(): (v,) for k, v in tags.items()}
    if tags:
        keys["aws:tagkeys"] = tuple(tags)
    return keys


def _secret(enforcer: IamEnforcer, response: Any) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]], str | None]:
    """Secrets Manager: the secret's ARN (or, for CreateSecret, its name with IAM's
    six-character suffix wildcard), its tags and its resource policy."""
    from moto.secretsmanager.models import secretsmanager_backends

    name = _param(response, "SecretId") or _param(response, "Name")
    if not name:
        return ("*",), {}, None
    secret = secretsmanager_backends[enforcer.account_id][enforcer.region].secrets.get(str(name))
    if secret is None:
        arn = str(name) if str(name).startswith("arn:") else _arn(enforcer, "secretsmanager", f"secret:{name}-??????")
        return (arn,), _request_tag_keys(_tags(_param(response, "Tags"))), None
    tags = _tags(getattr(secret, "tags", None))
    context: dict[str, tuple[str, ...]] = {f"{prefix}:resourcetag/{k}".lower(): (v,) for k, v in tags.items()
                                           for prefix in ("aws", "secretsmanager")}
    context.update(_request_tag_keys(_tags(_param(response, "Tags"))))
    block = _param(response, "BlockPublicPolicy")
    if block is not None:  # PutResourcePolicy's request parameter, as the condition key says
        context["secretsmanager:blockpublicpolicy"] = ("true" if block in (True, "true", "True") else "false",)
    policy = getattr(secret, "policy", None)
    return (str(secret.arn),), context, str(policy) if policy else None


def _certificate(enforcer: IamEnforcer, response: Any) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    from moto.acm.models import acm_backends

    arn = _param(response, "CertificateArn")
    if not arn:
        return ("*",), {}
    try:
        bundle = acm_backends[enforcer.account_id][enforcer.region].get_certificate(str(arn))
        tags = _tags(dict(bundle.tags))
    except Exception:  # noqa: BLE001 - unknown certificate: ACM answers that after authorization
        tags = {}
    return (str(arn),), {f"aws:resourcetag/{k}".lower(): (v,) for k, v in tags.items()}


def _dynamodb(enforcer: IamEnforcer, response: Any) -> tuple[str, ...]:
    tables: list[str] = []
    name = _param(response, "TableName")
    if name:
        index = _param(response, "IndexName")
        tables.append(f"table/{name}" + (f"/index/{index}" if index else ""))
    for batch in ("RequestItems", "TransactItems"):
        items = _param(response, batch)
        if isinstance(items, dict):
            tables += [f"table/{t}" for t in items]
        elif isinstance(items, list):
            for item in items:
                for op in item.values():
                    if isinstance(op, dict) and op.get("TableName"):
                        tables.append(f"table/{op['TableName']}")
    return tuple(_arn(enforcer, "dynamodb", t) for t in dict.fromkeys(tables)) or ("*",)


def _ssm(enforcer: IamEnforcer, operation: str, response: Any) -> tuple[str, ...]:
    if operation != "SendCommand":
        return ("*",)  # GetCommandInvocation, CancelCommand, List*: no resource-level permissions
    document = str(_param(response, "DocumentName") or "")
    owner = "" if document.startswith("AWS-") else enforcer.account_id
    resources = [document if document.startswith("arn:") else _arn(enforcer, "ssm", f"document/{document}", account=owner)]
    for instance in _param(response, "InstanceIds") or []:
        resources.append(_arn(enforcer, "ec2", f"instance/{instance}") if str(instance).startswith("i-")
                         else _arn(enforcer, "ssm", f"managed-instance/{instance}"))
    return tuple(resources)


def _lambda(enforcer: IamEnforcer, operation: str, response: Any) -> tuple[str, ...]:
    if operation == "GetLayerVersionByArn":
        arn = _param(response, "Arn")
        return (str(arn),) if arn else ("*",)
    match = re.search(r"/functions/([^/]+)", str(response.path))
    if not match:
        return ("*",)
    from urllib.parse import unquote

    name = unquote(match.group(1))
    return (name if name.startswith("arn:") else _arn(enforcer, "lambda", f"function:{name}"),)


def _states(response: Any) -> tuple[str, ...]:
    for key in ("executionArn", "stateMachineArn", "activityArn"):
        value = _param(response, key)
        if value:
            return (str(value),)
    return ("*",)  # SendTaskSuccess/Failure/Heartbeat: no resource type


_SIMPLE: dict[str, Callable[[Any], tuple[str, ...]]] = {
    "states": _states,
    "sns": lambda r: (str(_param(r, "TopicArn") or _param(r, "TargetArn") or "*"),),
    "kms": lambda r: (str(_param(r, "KeyId") or "*"),),
}


def _describe(enforcer: IamEnforcer, service: str, operation: str, action: str, response: Any) -> _Request:
    """The resources ``action`` touches, the context keys the request adds, and the target's
    resource policy. A service or action not listed here is evaluated against Resource "*"
    (a statement scoped to an ARN then does not match: the request fails closed)."""
    context: dict[str, tuple[str, ...]] = {}
    policy: str | None = None
    if service == "secretsmanager":
        resources, context, policy = _secret(enforcer, response)
    elif service == "acm":
        resources, context = _certificate(enforcer, response)
    elif service == "dynamodb":
        resources = _dynamodb(enforcer, response)
    elif service == "ssm":
        resources = _ssm(enforcer, operation, response)
    elif service == "lambda":
        resources = _lambda(enforcer, operation, response)
    elif service == "sqs":
        url = str(_param(response, "QueueUrl") or "")
        resources = (_arn(enforcer, "sqs", url.rstrip("/").rsplit("/", 1)[-1]),) if url else ("*",)
    elif service in _SIMPLE:
        resources = _SIMPLE[service](response)
    else:
        resources = ("*",)
    also: tuple[str, ...] = ()
    if action == "secretsmanager:CreateSecret" and _param(response, "Tags"):
        # Secrets Manager API reference, CreateSecret: "To add tags to the secret, you also need
        # secretsmanager:TagResource".
        also = ("secretsmanager:TagResource",)
    return _Request(service, action, resources, context, policy, also)
