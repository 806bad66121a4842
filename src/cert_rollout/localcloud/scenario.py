"""Scenarios: a declarative run of the rollout on the local cloud, and its JSON report.

Format (YAML):
  name: demo
  parameters: {PollIntervalSeconds: "1"}        # template.yaml parameter overrides
  certificates:
    web: {domain: web.internal.example, sans: [api.internal.example], key_algorithm: RSA_2048}
    wild: {domain: "*.svc.example.internal"}     # a wildcard: its targets name their sni
  targets:
    - {id: web-1, certificate: web, server: embedded, sni: ..., port: ..., fault: stale}
    - {id: wild-1, certificate: wild, sni: a.svc.example.internal}
    - {id: web-2, certificate: web, verifyFrom: node}   # its node probes it, not the Lambda
    - {id: web-3, certificate: web, verifyFrom: node, probeNode: true}   # another node probes it
  steps:
    - renew: web                                  # ACM managed renewal (new key, new serial)
    - fail_renewal: web                           # ACM renewal failed (RenewalSummary FAILED)
    - event: events/eventbridge/health-renewal-completed.json   # AWS puts it on the bus
      certificate: web                            # fills ${CertificateArn} ${Region} ${AccountId}
      wait: true                                  # wait for the execution (default true)
    - input: {certificateArn: ${CertificateArn}, force: true}   # StartExecution by hand
      certificate: web
    - sleep: 2
    - inject_error: {operation: ExportCertificate, code: ThrottlingException, times: 2}
    - restart: web-1                              # start an embedded target's server again, fault cleared
    - stop: 3                                     # StopExecution of the execution step 3 started (ABORTED),
      after_state: InstallTargets                 # once it has entered this state (optional, waits up to 60 s)
    - wait_all: true                              # wait for every execution started so far (wait: false ones)
    - inject_error: {operation: UpdateItem, table: IdempotencyTable, code: ProvisionedThroughputExceededException}
  An event/input step may say `expect: PARTIAL` (any event outcome): `cert-rollout local run`
  exits 0 when every event step ends as expected (default: ROLLED_OUT for a rollout).
"""

from __future__ import annotations

import json
import re
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator
from rollout_core.domain.serials import canonical_serial, parse_serial

from cert_rollout.localcloud.cloud import PROJECT_ROOT, LocalCloud
from cert_rollout.localcloud.pki import KEY_ALGORITHMS
from cert_rollout.localcloud.targets import Fault, LocalTargets
from cert_rollout.validation import StrictKeys, problems

DEFAULT_PARAMETERS = {"PollIntervalSeconds": "1", "VerifyTimeoutSeconds": "6", "CommandTimeoutSeconds": "30",
                      "ProbeTimeoutSeconds": "2"}


class ScenarioError(Exception):
    """The scenario file is invalid (names the field) or a step could not run."""


# ACM's default quota "Domain names per ACM certificate": 10, the DomainName included (adjustable;
# ACM User Guide, Quotas; /work/shared/notes/aws-facts.md). moto refuses more with LimitExceededException.
ACM_NAMES_PER_CERTIFICATE = 10
_TARGET_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_TABLE_LOGICAL_ID = re.compile(r"\A[A-Za-z][A-Za-z0-9]{0,254}\Z")
_ERROR_CODE = re.compile(r"\A[A-Za-z][A-Za-z0-9]{2,63}\Z")
_LABEL = re.compile(r"\A[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")


def certificate_name_problem(name: str, max_length: int = 253) -> str | None:
    """Why ``name`` cannot be an ACM certificate's DomainName or SubjectAlternativeNames entry
    (None when it can). ACM RequestCertificate: a fully qualified DNS name (at least two labels
    of 1-63 letters, digits or hyphens, no hyphen first or last), at most 253 characters (the
    DomainName at most 64: it is the subject CN, RFC 5280 ub-common-name), optionally with
    ``*`` as its whole leftmost label for a wildcard certificate (``*.example.com``); DNS names
    only: a name that looks like an IP address is refused (a client matches an IP only against
    IP SANs, which ACM never issues). The rule is botocore's acm/2015-12-08 DomainNameString
    pattern and the RequestCertificate documentation of DomainName and SubjectAlternativeNames."""
    if not name:
        return "is empty"
    if len(name) > max_length:
        return f"is longer than {max_length} characters"
    labels = name.split(".")
    body = labels[1:] if labels[0] == "*" else labels
    if "*" in ".".join(body):
        return "has a '*' that is not the whole leftmost label: a wildcard is '*.' followed by a DNS name"
    if len(body) < 2:
        return "has fewer than two labels: ACM requests a fully qualified name like www.example.com"
    for label in body:
        if not _LABEL.fullmatch(label):
            return (f"has the label {label!r}: a label is 1-63 letters, digits or hyphens, "
                    "not starting or ending with a hyphen")
    if body[-1].isdigit():
        return ("ends with an all-numeric label: ACM certificates name DNS names only, never an IP address "
                "(an IP written as a DNS SAN matches no client)")
    return None


def _is_ip(value: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


class CertificateSpec(StrictKeys):
    model_config = ConfigDict(extra="forbid")
    domain: str  # the certificate's DomainName: a DNS name, or a wildcard "*.svc.example.internal"
    sans: list[str] = []
    key_algorithm: str = "RSA_2048"
    # False: not tagged acm-cert-rollout=<ManagedCertificateTag> (ValidateEvent: CertificateNotManaged).
    managed: bool = True

    @field_validator("domain")
    @classmethod
    def _domain_name(cls, value: str) -> str:
        problem = certificate_name_problem(value, max_length=64)
        if problem:
            raise ValueError(f"domain {value!r} is not a certificate name: it {problem}")
        return value

    @field_validator("sans")
    @classmethod
    def _san_names(cls, values: list[str]) -> list[str]:
        for index, value in enumerate(values):
            problem = certificate_name_problem(value)
            if problem:
                raise ValueError(f"sans[{index}] {value!r} is not a certificate name: it {problem}")
        return values

    @property
    def is_wildcard(self) -> bool:
        return self.domain.startswith("*.")

    @model_validator(mode="after")
    def _known_algorithm(self) -> CertificateSpec:
        if self.key_algorithm not in KEY_ALGORITHMS:
            raise ValueError(f"key_algorithm {self.key_algorithm!r} is not a key algorithm of ACM private "
                             f"certificates: one of {', '.join(KEY_ALGORITHMS)}")
        return self

    @model_validator(mode="after")
    def _acm_name_quota(self) -> CertificateSpec:
        names = {self.domain, *self.sans}
        if len(names) > ACM_NAMES_PER_CERTIFICATE:
            raise ValueError(f"sans: the certificate would name {len(names)} domain names (domain and sans), "
                             f"ACM issues at most {ACM_NAMES_PER_CERTIFICATE} per certificate by default "
                             "(quota 'Domain names per ACM certificate')")
        return self


class TargetSpec(StrictKeys):
    # populate_by_name: a scenario dumped by name (verify_from) loads again, as its YAML alias does
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    id: str
    certificate: str
    server: Literal["embedded", "nginx", "haproxy", "apache", "tomcat"] = "embedded"
    sni: str | None = None
    port: int | None = None
    # localcloud/targets.py names and describes each fault (its Fault literal is the one list).
    fault: Fault | None = None
    # "node": the target's own local node probes it after the reload (models.Target.verifyFrom);
    # the Lambda then sends it no handshake.
    verify_from: Literal["lambda", "node"] | None = Field(default=None, alias="verifyFrom")
    # true: a local managed node of its own (no target on it) probes this target instead of the
    # target's node (models.Target.probeNode); needs verifyFrom: node.
    probe_node: bool = Field(default=False, alias="probeNode")
    # Written over the registered inventory item as is (not validated): a misconfigured target.
    inventory_overrides: dict[str, Any] | None = None
    # The node installer's fetch path (CERT_ROLLOUT_FETCH; localcloud/cloud.py node_env): the
    # AWS CLI is on the node's PATH only with aws-cli. Embedded targets only.
    fetch: Literal["stdlib", "botocore", "aws-cli", "auto"] = "stdlib"

    @field_validator("id")
    @classmethod
    def _target_id(cls, value: str) -> str:
        if not _TARGET_ID.fullmatch(value):
            raise ValueError(f"id {value[:80]!r} must be 1-64 letters, digits, '.', '_' or '-', "
                             "starting with a letter or digit")
        return value

    @field_validator("port", mode="before")
    @classmethod
    def _port_number(cls, value: Any) -> Any:
        if value is not None and (type(value) is not int or not 1 <= value <= 65535):  # noqa: E721 - no bool
            raise ValueError(f"port must be 1-65535, got {value!r}"[:120])
        return value

    @model_validator(mode="after")
    def _probe_node_needs_node_verification(self) -> TargetSpec:
        if self.probe_node and self.verify_from != "node":
            raise ValueError(f"target {self.id}: probeNode: true needs verifyFrom: node")
        return self

    @field_validator("sni")
    @classmethod
    def _sni_is_a_host_name(cls, value: str | None) -> str | None:
        if value is not None and "*" in value:
            raise ValueError(f"sni {value!r} is a wildcard: SNI is the literal host name a client sends "
                             "(RFC 6066 section 3), not a certificate pattern")
        if value is not None and _is_ip(value):
            raise ValueError(f"sni {value!r} is an IP address: RFC 6066 section 3 forbids IP addresses in SNI")
        return value


DYNAMODB_OPERATIONS = ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query")


class InjectErrorSpec(StrictKeys):
    """The next ``times`` calls of ``operation`` answer the AWS error ``code``; a DynamoDB
    operation names the ``table`` by its template logical id (e.g. IdempotencyTable). Note the
    SDK's own retries: a Lambda's call is tried 3 times (adapters/aws.py) before it fails."""

    model_config = ConfigDict(extra="forbid")
    operation: Literal["ExportCertificate", "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query"]
    table: str | None = None
    code: str
    times: int = Field(default=1, ge=1, le=20)

    @field_validator("table")
    @classmethod
    def _table_logical_id(cls, value: str | None) -> str | None:
        if value is not None and not _TABLE_LOGICAL_ID.fullmatch(value):
            raise ValueError(f"table {value[:80]!r} must be a template logical id: a letter, then up to 254 "
                             "letters or digits (e.g. IdempotencyTable)")
        return value

    @field_validator("code")
    @classmethod
    def _error_code(cls, value: str) -> str:
        if not _ERROR_CODE.fullmatch(value):
            raise ValueError(f"code {value[:80]!r} must be an AWS error code: a letter, then 2-63 letters or "
                             "digits (e.g. ThrottlingException)")
        return value

    @model_validator(mode="after")
    def _table_for_dynamodb(self) -> InjectErrorSpec:
        if (self.operation in DYNAMODB_OPERATIONS) != (self.table is not None):
            raise ValueError("a DynamoDB operation names its table (template logical id); ExportCertificate does not")
        return self


class StepSpec(StrictKeys):
    model_config = ConfigDict(extra="forbid")
    renew: str | None = None
    fail_renewal: str | None = None
    reason: str | None = None
    event: str | None = None
    input: Any = None
    certificate: str | None = None
    wait: bool = True
    sleep: float | None = Field(default=None, ge=0, le=3600)
    inject_error: InjectErrorSpec | None = None
    restart: str | None = None  # an embedded target's id: its server starts again, fault cleared
    stop: int | None = Field(default=None, ge=1)  # StopExecution of the execution this earlier step started
    after_state: str | None = Field(default=None, min_length=1, max_length=80)  # stop once it entered this state
    wait_all: Literal[True] | None = None
    # The outcome this event step should end with (default: ROLLED_OUT when it rolls out).
    expect: Literal["ROLLED_OUT", "PARTIAL", "FAILED", "SUPERSEDED", "IGNORED", "ALREADY_DEPLOYED", "RENEWAL_FAILED",
                    "EXPIRY_NOTICE", "NO_TARGETS", "REJECTED", "NOT_ROUTED", "EXECUTION_ABORTED",
                    "EXECUTION_TIMED_OUT"] | None = None

    @model_validator(mode="after")
    def _one_action(self) -> StepSpec:
        actions = [a for a in ("renew", "fail_renewal", "event", "input", "sleep", "inject_error", "restart", "stop",
                               "wait_all") if getattr(self, a) is not None]
        if len(actions) != 1:
            raise ValueError("a step has exactly one of renew, fail_renewal, event, input, sleep, inject_error, "
                             f"restart, stop, wait_all (got {actions or 'none'})")
        return self


class Scenario(StrictKeys):
    model_config = ConfigDict(extra="forbid")
    name: str = "scenario"
    parameters: dict[str, str] = {}
    certificates: dict[str, CertificateSpec] = Field(min_length=1)
    targets: list[TargetSpec] = []
    steps: list[StepSpec] = Field(min_length=1)
    base_dir: Path = PROJECT_ROOT

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        for t in self.targets:
            if t.certificate not in self.certificates:
                raise ValueError(f"target {t.id}: unknown certificate {t.certificate!r}")
            domain = self.certificates[t.certificate].domain
            if t.sni is None and self.certificates[t.certificate].is_wildcard:
                raise ValueError(f"target {t.id}: certificate {t.certificate} is the wildcard {domain}, which is "
                                 "no host name to send as SNI: give the target an sni (the host name its "
                                 f"clients use, e.g. a{domain[1:]})")
        for i, s in enumerate(self.steps, 1):
            for ref in (s.renew, s.fail_renewal, s.certificate):
                if ref is not None and ref not in self.certificates:
                    raise ValueError(f"step {i}: unknown certificate {ref!r}")
        ids = [t.id for t in self.targets]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"target ids must be unique: {', '.join(duplicates)} appear more than once")
        return self

    @field_validator("parameters", mode="before")
    @classmethod
    def _template_parameters(cls, value: Any) -> Any:
        """Natural YAML in, CloudFormation's strings out (template_parameter_value), each
        checked against its template.yaml constraints."""
        if not isinstance(value, dict):
            return value
        declared = template_parameter_specs()
        unknown = sorted(str(k) for k in value if k not in declared)
        if unknown:
            raise ValueError(f"{', '.join(unknown)} not in template.yaml (known: {', '.join(sorted(declared))})")
        return {name: template_parameter_value(name, given, declared[name]) for name, given in value.items()}

    @model_validator(mode="after")
    def _parameters_and_payloads(self) -> Scenario:
        for i, s in enumerate(self.steps, 1):
            text = self._payload_text(i, s)
            if text is not None and "${CertificateArn}" in text and s.certificate is None:
                raise ValueError(f"step {i}: uses ${{CertificateArn}} but names no certificate")
        return self

    def _payload_text(self, index: int, step: StepSpec) -> str | None:
        """The text step ``index`` sends (its event file, or its input as JSON), None for other
        steps. Raises ValueError naming the step when the event file is no readable JSON."""
        if step.event is not None:
            try:
                text = self.event_path(step.event).read_text()
                json.loads(text)
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ValueError(f"step {index}: event {step.event}: not a readable JSON file "
                                 f"({type(e).__name__})") from None
            return text
        return json.dumps(step.input) if step.input is not None else None

    @model_validator(mode="after")
    def _restarts(self) -> Scenario:
        servers = {t.id: t.server for t in self.targets}
        for i, s in enumerate(self.steps, 1):
            if s.restart is not None and s.restart not in servers:
                raise ValueError(f"step {i}: restart of unknown target {s.restart!r}")
            if s.restart is not None and servers[s.restart] != "embedded":
                raise ValueError(f"step {i}: restart: only embedded targets can be restarted")
        return self

    @model_validator(mode="after")
    def _stop_steps(self) -> Scenario:
        for i, s in enumerate(self.steps, 1):
            if s.after_state is not None and s.stop is None:
                raise ValueError(f"step {i}: after_state belongs to a stop step")
            if s.stop is not None and not (s.stop < i and (self.steps[s.stop - 1].event is not None
                                                           or self.steps[s.stop - 1].input is not None)):
                raise ValueError(f"step {i}: stop {s.stop} names no earlier event or input step")
        return self

    def event_path(self, event: str) -> Path:
        """An event file: absolute, or relative to the scenario's folder, else to the project."""
        path = Path(event)
        if path.is_absolute():
            return path
        candidates = [self.base_dir / path, PROJECT_ROOT / path]
        return next((c for c in candidates if c.exists()), candidates[0])

    @classmethod
    def load(cls, path: Path) -> Scenario:
        try:
            raw = yaml.safe_load(path.read_text())
        except UnicodeDecodeError:
            raise ScenarioError(f"{path}: not UTF-8 text") from None
        except (OSError, yaml.YAMLError) as e:
            raise ScenarioError(f"{path}: {e}") from None
        if not isinstance(raw, dict):
            raise ScenarioError(f"{path}: a scenario is a YAML mapping")
        try:
            return cls.model_validate({**raw, "base_dir": path.resolve().parent})
        except ValidationError as e:
            raise ScenarioError(f"{path}: {'; '.join(problems(e))}") from None


def template_parameter_specs() -> dict[str, dict[str, Any]]:
    """template.yaml's Parameters: {name: its declaration (Type, MinValue, AllowedValues, ...)}."""
    from samtranslator.yaml_helper import yaml_parse

    return dict(yaml_parse((PROJECT_ROOT / "template.yaml").read_text()).get("Parameters", {}))


def template_parameters() -> set[str]:
    """The parameter names template.yaml declares."""
    return set(template_parameter_specs())


def template_parameter_value(name: str, value: Any, spec: dict[str, Any]) -> str:
    """``value`` as written in a scenario (YAML number, boolean, string, or a list for a
    CommaDelimitedList) as the string CloudFormation passes, refused (ValueError naming
    ``name`` and the rule in words) only where the declaration ``spec`` refuses it: a Number
    that is not a number or is outside MinValue-MaxValue, a value not in AllowedValues, a String
    outside MinLength-MaxLength or not matching AllowedPattern (said by the parameter's
    ConstraintDescription, as CloudFormation does). CloudFormation User Guide, "Parameters"."""
    kind = spec.get("Type", "String")
    if isinstance(value, list) and kind.startswith(("CommaDelimitedList", "List<")):
        value = ",".join(str(v) for v in value)
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float, str)):
        text = str(value)
    else:
        raise ValueError(f"{name}: a parameter is a number, a boolean or text, not a {type(value).__name__}")
    if kind == "Number":
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{name} must be a number, got {text[:60]!r}") from None
        low, high = spec.get("MinValue"), spec.get("MaxValue")
        if isinstance(value, bool) or (low is not None and number < float(low)) or (
                high is not None and number > float(high)):
            raise ValueError(f"{name} must be a number from {low if low is not None else 'any'} to "
                             f"{high if high is not None else 'any'}, got {text[:60]}")
    allowed = spec.get("AllowedValues")
    if allowed is not None and not any(text == str(a) or (kind == "Number" and float(text) == float(a))
                                       for a in allowed):
        raise ValueError(f"{name} must be one of {', '.join(str(a) for a in allowed)}, got {text[:60]}")
    if kind == "String":
        low, high = spec.get("MinLength"), spec.get("MaxLength")
        if (low is not None and len(text) < int(low)) or (high is not None and len(text) > int(high)):
            raise ValueError(f"{name} must be {low or 0}-{high or 'any'} characters long, got {len(text)}")
        pattern = spec.get("AllowedPattern")
        if pattern is not None and not re.fullmatch(pattern, text):
            rule = spec.get("ConstraintDescription") or "the form template.yaml allows"
            raise ValueError(f"{name} {text[:60]!r} must be {rule}")
    return text


def demo_scenario(targets: int = 3) -> Scenario:
    """The demo: one certificate with two SANs on N targets, renewed, Health event sent."""
    return Scenario.model_validate({
        "name": "demo",
        "certificates": {"web": {"domain": "web.internal.example", "sans": ["api.internal.example"],
                                 "key_algorithm": "RSA_2048"}},
        "targets": [{"id": f"web-{i}", "certificate": "web"} for i in range(1, targets + 1)],
        "steps": [{"renew": "web"},
                  {"event": "events/eventbridge/health-renewal-completed.json", "certificate": "web"}],
    })


def fill_placeholders(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("${" + key + "}", value)
    return text


def state_outputs(history: list[dict[str, Any]], state: str) -> list[dict[str, Any]]:
    """Outputs of every exit of ``state`` (parsed JSON), in order."""
    out = []
    for e in history:
        details = e.get("stateExitedEventDetails")
        if details and details.get("name") == state:
            try:
                out.append(json.loads(details.get("output") or "{}"))
            except json.JSONDecodeError:
                pass
    return out


def event_outcome(status: str, history: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """(outcome, notification or rollout decision) of one execution."""
    notified = state_outputs(history, "Notify")
    if notified and "notification" in notified[-1]:
        return notified[-1]["notification"]["outcome"], notified[-1]["notification"]
    if status in ("ABORTED", "TIMED_OUT"):  # notified by NotifyAbnormalEnd (logic/abnormal_end.py)
        return f"EXECUTION_{status}", {}
    validated = state_outputs(history, "ValidateEvent")
    if validated and "rollout" in validated[-1]:
        return validated[-1]["rollout"]["decision"], validated[-1]["rollout"]
    return ("FAILED" if status != "SUCCEEDED" else "UNKNOWN"), {}


class ScenarioRunner:
    """Runs a Scenario on a fresh LocalCloud and builds the report."""

    def __init__(self, scenario: Scenario, *, on_event: Callable[[str, dict[str, Any]], None] | None = None,
                 on_step: Callable[[str], None] | None = None, workdir: Path | None = None,
                 execution_timeout: float = 600, lambda_workers: int = 4, template: Path | None = None) -> None:
        self.scenario = scenario
        self.template = template  # None: the project's template.yaml
        self.on_event = on_event
        self.on_step = on_step or (lambda _m: None)
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="cert-rollout-"))
        self.execution_timeout = execution_timeout
        self.lambda_workers = lambda_workers
        self.cloud: LocalCloud | None = None
        self.targets: LocalTargets | None = None
        self.certificate_arns: dict[str, str] = {}

    def run(self, keep_running: bool = False) -> dict[str, Any]:
        self._start_cloud()
        try:
            return self._run()
        finally:
            if not keep_running:
                self.close()

    def _start_cloud(self, port: int = 0) -> None:
        params = {**DEFAULT_PARAMETERS, **self.scenario.parameters}
        self.cloud = LocalCloud(parameters=params, lambda_workers=self.lambda_workers, template=self.template,
                                port=port)
        self.on_step("starting the local cloud and deploying template.yaml")
        self.cloud.start()

    def set_up(self, port: int = 0) -> LocalCloud:
        """The scenario's world without its steps (`cert-rollout local up`): the local cloud
        started (moto on 127.0.0.1:``port``, 0: a free port) with template.yaml deployed, every
        certificate requested and every target serving, registered in the inventory. The caller
        ends it with close(). Raises ScenarioError, DeployError (and closes what it started)."""
        self._start_cloud(port)
        assert self.cloud
        try:
            self._request_certificates()
            self._start_targets()
        except BaseException:
            self.close()
            raise
        return self.cloud

    def _request_certificates(self) -> None:
        """Every scenario certificate, issued by the local private CA (self.certificate_arns)."""
        assert self.cloud
        pca = self.cloud.private_ca()
        for name, spec in self.scenario.certificates.items():
            self.certificate_arns[name] = pca.request_certificate(spec.domain, spec.sans, spec.key_algorithm,
                                                                  managed=spec.managed)
            # serial first: printed wrapped at spaces, it and the ARN each keep a line of 100 columns
            self.on_step(f"certificate {name} ({spec.key_algorithm}): serial {self._serial(self.certificate_arns[name])}, "
                         f"{self.certificate_arns[name]}")

    def close(self) -> None:
        if self.targets:
            self.targets.stop()
        if self.cloud:
            self.cloud.stop()

    def _serial(self, arn: str) -> str:
        assert self.cloud
        raw = self.cloud.client("acm").describe_certificate(CertificateArn=arn)["Certificate"]["Serial"]
        return canonical_serial(parse_serial(raw))

    def _run(self) -> dict[str, Any]:
        cloud = self.cloud
        assert cloud
        started = time.time()
        self._request_certificates()
        self._start_targets()
        report: dict[str, Any] = {
            "scenario": self.scenario.name, "region": cloud.region, "account": cloud.account_id,
            "stateMachineArn": cloud.state_machine_arn, "parameters": cloud.deployment.parameters if cloud.deployment else {},
            "certificates": {n: {"arn": a, "serial_initial": self._serial(a)} for n, a in self.certificate_arns.items()},
            "events": [],
        }
        self._run_steps(report)
        return self._finish_report(report, started)

    def _start_targets(self) -> None:
        """Every scenario target: an embedded TLS server or a real one (nginx, HAProxy, Apache, Tomcat), in the inventory."""
        cloud = self.cloud
        assert cloud
        self.targets = LocalTargets(cloud, self.workdir)
        for t in self.scenario.targets:
            spec = self.scenario.certificates[t.certificate]
            if t.server != "embedded":
                from cert_rollout.localcloud import real_servers

                try:
                    target = real_servers.add(self.targets, t.server, t.id, self.certificate_arns[t.certificate],
                                              t.sni or spec.domain, port=t.port, fault=t.fault)
                except real_servers.RealServerError as e:
                    raise ScenarioError(f"target {t.id}: {e}") from None
            else:
                target = self.targets.add_embedded(t.id, self.certificate_arns[t.certificate],
                                                   t.sni or spec.domain, port=t.port, fault=t.fault, fetch=t.fetch)
            probe_node = self._add_probe_node() if t.probe_node else None
            if t.verify_from or t.inventory_overrides:
                target.inventory_item.update({"verifyFrom": t.verify_from} if t.verify_from else {})
                target.inventory_item.update({"probeNode": probe_node} if probe_node else {})
                target.inventory_item.update(t.inventory_overrides or {})
                self.targets.register(target)
            self.on_step(f"target {t.id}: {target.endpoint} SNI {target.sni} on node {target.instance_id}"
                         + (f" (fault: {t.fault})" if t.fault else "")
                         + (f", backends {', '.join(target.backends)}" if target.backends else "")
                         + (f" (verified from {t.verify_from})" if t.verify_from else "")
                         + (f", probed from node {probe_node}" if probe_node else ""))

    def _add_probe_node(self) -> str:
        """A managed node with no target of its own (a probe node): the node role's session like
        every local node; the staged bundle's policy names only the targets' nodes."""
        assert self.cloud
        instance_id = "mi-" + secrets.token_hex(8) + "b"
        self.cloud.add_node(instance_id)
        return instance_id

    def _run_steps(self, report: dict[str, Any]) -> None:
        """Every step in order; executions started with ``wait: false`` are finished at the end
        (or by a wait_all step). Adds each event step's entry to ``report["events"]``."""
        assert self.cloud
        pending: list[tuple[int, dict[str, Any], list[str]]] = []
        started_by: dict[int, list[str]] = {}
        for index, step in enumerate(self.scenario.steps, 1):
            if step.sleep is not None or step.inject_error is not None or step.restart is not None:
                self._environment_step(step)
            elif step.stop is not None or step.wait_all:
                self._control(index, step, started_by, pending)
            elif step.renew:
                self.cloud.private_ca().renew(self.certificate_arns[step.renew])
                self.on_step(f"ACM renewed {step.renew}: new serial {self._serial(self.certificate_arns[step.renew])}")
            elif step.fail_renewal:
                self.cloud.private_ca().fail_renewal(self.certificate_arns[step.fail_renewal], step.reason or "PCA_ACCESS_DENIED")
                self.on_step(f"ACM renewal of {step.fail_renewal} failed ({step.reason or 'PCA_ACCESS_DENIED'})")
            else:
                entry, arns = self._send(index, step)
                started_by[index] = arns
                report["events"].append(entry)
                if step.wait:
                    self._finish(entry, arns)
                else:
                    pending.append((index, entry, arns))
        for _, entry, arns in pending:
            self._finish(entry, arns)

    def _finish_report(self, report: dict[str, Any], started: float) -> dict[str, Any]:
        """The certificates' final serials, the SNS messages and the wall time (seconds since ``started``)."""
        cloud = self.cloud
        assert cloud
        for name, arn in self.certificate_arns.items():
            report["certificates"][name]["serial_final"] = self._serial(arn)
        report["sns_messages"] = cloud.sns_messages()
        report["wall_seconds"] = round(time.time() - started, 3)
        return report

    def _environment_step(self, step: StepSpec) -> None:
        """A step that changes the world, not the rollout: sleep, inject_error, restart."""
        cloud = self.cloud
        assert cloud
        if step.sleep is not None:
            time.sleep(step.sleep)
        elif step.inject_error is not None:
            self._inject(step.inject_error)
        elif step.restart is not None:
            assert self.targets
            self.targets.restart(step.restart)
            self.on_step(f"target {step.restart}: server started again (fault cleared)")

    def _control(self, index: int, step: StepSpec, started_by: dict[int, list[str]],
                 pending: list[tuple[int, dict[str, Any], list[str]]]) -> None:
        """A stop step (StopExecution of what an earlier step started, once it entered
        ``after_state``) or a wait_all step (finish every pending execution, emptying ``pending``)."""
        assert self.cloud
        while step.wait_all and pending:
            self._finish(*pending.pop(0)[1:])
        for arn in started_by.get(step.stop, []) if step.stop is not None else []:
            if step.after_state:
                self._wait_for_state(arn, step.after_state, index)
            self.cloud.client("stepfunctions").stop_execution(executionArn=arn, error="ScenarioStop",
                                                              cause=f"stopped by scenario step {index}")
            self.on_step(f"StopExecution {arn.rsplit(':', 1)[-1]} (started by step {step.stop})")

    def _wait_for_state(self, arn: str, state: str, index: int, timeout: float = 60) -> None:
        """Wait until the execution ``arn`` has entered ``state`` (polls its history)."""
        assert self.cloud
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e.get("stateEnteredEventDetails", {}).get("name") == state for e in self.cloud.history(arn)):
                return
            time.sleep(0.2)
        raise ScenarioError(f"step {index}: execution {arn.rsplit(':', 1)[-1]} did not enter {state} "
                            f"within {timeout:.0f} s")

    def _inject(self, injected: InjectErrorSpec) -> None:
        cloud = self.cloud
        assert cloud and cloud.deployment
        if injected.table is not None:
            table = cloud.deployment.physical.get(injected.table)
            if cloud.deployment.resource_types.get(injected.table) != "AWS::DynamoDB::Table" or not table:
                raise ScenarioError(f"inject_error: {injected.table} is not a DynamoDB table of the template")
            cloud.inject_error("dynamodb", f"{injected.operation}:{table}", injected.code, injected.times)
            self.on_step(f"the next {injected.times} {injected.operation} call(s) on {injected.table} "
                         f"answer {injected.code}")
            return
        cloud.inject_error("acm", injected.operation, injected.code, injected.times)
        self.on_step(f"the next {injected.times} {injected.operation} call(s) answer {injected.code}")

    def _send(self, index: int, step: StepSpec) -> tuple[dict[str, Any], list[str]]:
        cloud = self.cloud
        assert cloud
        values = {"Region": cloud.region, "AccountId": cloud.account_id}
        if step.certificate:
            values["CertificateArn"] = self.certificate_arns[step.certificate]
        entry: dict[str, Any] = {"step": index, "certificate": step.certificate, "expect": step.expect}
        if step.event is not None:
            path = self.scenario.event_path(step.event)
            try:
                event = json.loads(fill_placeholders(path.read_text(), values))
            except (OSError, json.JSONDecodeError) as e:
                raise ScenarioError(f"step {index}: event {step.event}: {e}") from None
            entry["event"] = step.event
            arns = cloud.deliver_event(event)
            self.on_step(f"event {path.name} delivered: {len(arns)} execution(s) started by the rule")
        else:
            payload = json.loads(fill_placeholders(json.dumps(step.input), values))
            entry["input"] = payload
            arns = [cloud.start_execution(payload)]
            self.on_step(f"StartExecution with {json.dumps(payload)[:120]}")
        entry["executionArns"] = arns
        return entry, arns

    def _finish(self, entry: dict[str, Any], arns: list[str]) -> None:
        cloud = self.cloud
        assert cloud
        if not arns:
            entry.update(status=None, outcome="NOT_ROUTED", targets=[], history=[])
            return
        arn = arns[-1]
        on_event = self.on_event
        callback = (lambda e: on_event(arn, e)) if on_event else None
        description = cloud.wait_for_execution(arn, timeout=self.execution_timeout, on_event=callback)
        history = cloud.history(arn)
        outcome, detail = event_outcome(description["status"], history)
        validated = state_outputs(history, "ValidateEvent")
        rollout = validated[-1].get("rollout", {}) if validated else {}
        exported = state_outputs(history, "ExportCertificate")
        expected = (exported[-1].get("export", {}).get("serial") if exported else None) or rollout.get("serial")
        rollout_id = arn.rsplit(":", 1)[-1]
        records = self._records(rollout_id)
        entry.update(
            executionArn=arn, status=description["status"], outcome=outcome,
            decision=rollout.get("decision"), expected_serial=expected,
            error=_failure(history),
            targets=[{
                "id": r["targetId"], "endpoint": r.get("endpoint"), "outcome": r.get("outcome"),
                "reason": r.get("reason"), "detail": r.get("detail"),
                "served_serial_before": r.get("servedSerialBefore"), "served_serial_after": r.get("servedSerialAfter"),
                "restore_attempted": bool(r.get("restoreAttempted")), "restore_result": r.get("restoreResult"),
            } for r in records],
            notification={k: detail.get(k) for k in ("outcome", "messageId", "verified", "rolledBack", "failed",
                                                     "targetCount") if k in detail},
            history=history,
        )

    def _records(self, rollout_id: str) -> list[dict[str, Any]]:
        cloud = self.cloud
        assert cloud
        from boto3.dynamodb.types import TypeDeserializer

        des = TypeDeserializer()
        table = cloud.deployment.physical["RolloutTable"] if cloud.deployment else ""
        items = cloud.client("dynamodb").query(
            TableName=table, KeyConditionExpression="rolloutId = :r",
            ExpressionAttributeValues={":r": {"S": rollout_id}})["Items"]
        return sorted(({k: des.deserialize(v) for k, v in i.items()} for i in items), key=lambda r: r["targetId"])


def step_as_expected(entry: dict[str, Any]) -> bool:
    """Did this event step end as the scenario expects (``expect``, else ROLLED_OUT for a rollout)?"""
    if not entry.get("status") and entry.get("outcome") != "NOT_ROUTED":
        return False
    if entry.get("expect"):
        return entry["outcome"] == entry["expect"]
    return entry.get("decision") != "ROLLOUT" or entry["outcome"] == "ROLLED_OUT"


def _failure(history: list[dict[str, Any]]) -> dict[str, str] | None:
    for e in reversed(history):
        details = e.get("executionFailedEventDetails")
        if details:
            return {"error": details.get("error", ""), "cause": details.get("cause", "")}
    return None


def attach_sns_messages(report: dict[str, Any]) -> None:
    """Give each event entry the SNS messages published about its execution: Notify's (matched by
    MessageId) and NotifyAbnormalEnd's (matched by their rolloutId attribute)."""
    messages = report.get("sns_messages", [])
    by_id = {m["MessageId"]: m for m in messages}
    for entry in report["events"]:
        message_id = (entry.get("notification") or {}).get("messageId")
        found = [by_id[message_id]] if message_id in by_id else []
        rollout_id = str(entry.get("executionArn") or "").rsplit(":", 1)[-1]
        found += [m for m in messages if m not in found and rollout_id
                  and (m.get("MessageAttributes") or {}).get("rolloutId", {}).get("Value") == rollout_id
                  and (m.get("MessageAttributes") or {}).get("outcome", {}).get("Value", "").startswith("EXECUTION_")]
        entry["sns_messages"] = found
