"""The embedded local AWS: moto's threaded server in this process, template.yaml deployed into
it, and the emulations of patches.py (Lambda runs the real handlers, EventBridge routes to
the state machine, SSM nodes run the install document, ACM renews through a private CA).

Nothing here talks to a real AWS endpoint: every client is pointed at 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import boto3
from botocore.config import Config
from rollout_core.domain.arns import build_arn, partition_for_region

from cert_rollout.localcloud import patches
from cert_rollout.localcloud.deploy import Deployer, DeployError, Deployment
from cert_rollout.localcloud.iam import STATES_INTERPRETER_KEY, IamEnforcer
from cert_rollout.localcloud.lambda_runtime import LambdaRuntime
from cert_rollout.localcloud.leaks import SecretRegistry
from cert_rollout.localcloud.nodes import LocalNode, NodeFleet
from cert_rollout.localcloud.pki import LocalPrivateCA
from cert_rollout.sfn import fetch_history

if TYPE_CHECKING:
    from moto.events.utils import EventMessageType

PROJECT_ROOT = Path(__file__).resolve().parents[3]
# The services the local cloud's clients talk to (boto3's client() is typed per service name).
ServiceName = Literal["acm", "acm-pca", "cloudformation", "cloudwatch", "dynamodb", "events", "iam", "kms", "lambda", "logs",
                      "s3", "secretsmanager", "sns", "sqs", "ssm", "stepfunctions", "sts"]
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "localcloud", "AWS_SECRET_ACCESS_KEY": "localcloud"}
NodeFetch = Literal["stdlib", "botocore", "aws-cli", "auto"]  # a local node's CERT_ROLLOUT_FETCH
NodeCredentials = Literal["own", "none", "foreign"]


def node_bin(workdir: str, *, aws_cli: bool = False) -> Path:
    """``<workdir>/bin`` with ``python3`` (a shell script that runs this interpreter) and, with
    ``aws_cli``, ``aws`` (a link to the project's AWS CLI, beside this interpreter). Raises
    FileNotFoundError when the AWS CLI is asked for and not installed."""
    bin_dir = Path(workdir) / "bin"
    bin_dir.mkdir(exist_ok=True)
    python = bin_dir / "python3"
    python.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    python.chmod(0o755)
    if aws_cli:
        aws = Path(sys.executable).parent / "aws"
        if not aws.exists():
            raise FileNotFoundError(f"no AWS CLI at {aws} (pip install awscli)")
        (bin_dir / "aws").unlink(missing_ok=True)
        (bin_dir / "aws").symlink_to(aws)
    return bin_dir
TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LayerDownloads:
    """Lambda's presigned layer URLs (GetLayerVersionByArn Content.Location) on loopback: each
    URL serves one zip for ``valid_seconds`` (Lambda: 10 minutes), then answers 403 like an
    expired presigned S3 URL; an unknown path answers 403 too. Plain HTTP on 127.0.0.1."""

    def __init__(self, valid_seconds: float = 600) -> None:
        self.valid_seconds = valid_seconds
        self._zips: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()
        self._server: Any = None
        self.downloads = 0

    def start(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        downloads = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                body, status = downloads._answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", "application/zip" if status == 200 else "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def presign(self, data: bytes) -> str:
        """A new URL serving ``data`` until it expires."""
        token = uuid.uuid4().hex
        with self._lock:
            self._zips[token] = (data, time.time() + self.valid_seconds)
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/layers/{token}?X-Amz-Expires={int(self.valid_seconds)}"

    def expire(self) -> None:
        """Every URL handed out so far expires now (a command delivered after its URL expired)."""
        with self._lock:
            self._zips = {token: (data, 0.0) for token, (data, _) in self._zips.items()}

    def _answer(self, path: str) -> tuple[bytes, int]:
        token = path.split("?", 1)[0].rsplit("/", 1)[-1]
        with self._lock:
            entry = self._zips.get(token)
            if entry and time.time() <= entry[1]:
                self.downloads += 1
                return entry[0], 200
        reason = "Request has expired" if entry else "Access Denied"
        return f"<Error><Code>AccessDenied</Code><Message>{reason}</Message></Error>".encode(), 403


class LocalCloud:
    """One local AWS account/region with the stack deployed. Use as a context manager."""

    def __init__(self, *, region: str = "eu-west-1", account_id: str = "123456789012",
                 stack_name: str = "cert-rollout-local", parameters: dict[str, str] | None = None,
                 template: Path | None = None, lambda_workers: int = 4, enforce_iam: bool = True,
                 port: int = 0) -> None:
        """``port``: moto's port on 127.0.0.1 (0: a free one, chosen at start)."""
        self.region = region
        self.account_id = account_id
        self.stack_name = stack_name
        self.parameters = parameters or {}
        self.template = template or PROJECT_ROOT / "template.yaml"
        self.port = port
        self.endpoint = ""
        self.server: Any = None
        self.deployment: Deployment | None = None
        self.runtime: LambdaRuntime | None = None
        self.fleet = NodeFleet()
        self.layer_downloads = LayerDownloads()
        self.pca: LocalPrivateCA | None = None
        self.routed: list[dict[str, str]] = []
        self.status_events: list[dict[str, Any]] = []  # Step Functions Execution Status Change, in order
        self.secrets = SecretRegistry()
        self._injected: dict[tuple[str, str], list[str]] = {}
        self.lambda_workers = lambda_workers
        self._clients: dict[str, Any] = {}
        self._sns_queue_url = ""
        self._sns_messages: list[dict[str, Any]] = []
        # IAM enforced on every request of the functions, the state machine, the rules and the
        # nodes (iam.py); the operator's requests (this object's clients) are not evaluated.
        self.iam = IamEnforcer(account_id, region)
        self.iam.enabled = enforce_iam
        self.node_role_arn = ""
        self._rule_credentials: dict[str, Any] = {}
        # set by stop(): an asynchronous invocation still retrying then ends quietly (the
        # functions' runtime and the moto server are going away under it)
        self.stopping = False

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> LocalCloud:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        from moto.core.config import default_user_config
        from moto.server import ThreadedMotoServer

        if patches.ACTIVE["cloud"] is not None:
            raise RuntimeError("a local cloud is already running in this process")
        self.port = self.port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        os.environ["MOTO_PORT"] = str(self.port)  # the Step Functions interpreter calls Lambda here
        default_user_config["lambda"] = {"use_docker": False}
        default_user_config["stepfunctions"] = {"execute_state_machine": True}
        default_user_config.setdefault("iam", {})["load_aws_managed_policies"] = False
        patches.install()
        patches.ACTIVE["cloud"] = self
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        self.layer_downloads.start()
        _quiet_werkzeug()
        self.client("sts").get_caller_identity()  # the server answers
        self.runtime = LambdaRuntime(self.lambda_env(), self._write_logs, self.lambda_workers)
        self.deployment = Deployer(self.client, self.region, self.account_id, self.stack_name).deploy(
            self.template, self.parameters)
        self._issue_credentials()
        for spec in self.deployment.functions.values():
            self.runtime.register(spec)
        self._subscribe_sns_capture()
        self.fleet.emit = self._command_status_event

    def _issue_credentials(self) -> None:
        """Each function runs with its own execution role's session (STS AssumeRole), moto's
        Step Functions interpreter signs as the state machine's role, and the managed nodes get
        a role with the template's TargetNodePolicy attached (the operator attaches it to the
        instance role in AWS; output TargetNodePolicyArn)."""
        assert self.deployment
        sts = self.client("sts")
        for spec in self.deployment.functions.values():
            spec.credentials = self.iam.issue(sts, spec.role_arn, spec.name, f"function {spec.logical_id}")
        roles = sorted(set(self.deployment.state_machine_roles.values()))
        if len(roles) != 1:
            raise DeployError(f"the local cloud runs one state machine role per stack, found {roles}")
        session = build_arn(partition_for_region(self.region), "sts", "", self.account_id,
                            f"assumed-role/{roles[0].rsplit('/', 1)[-1]}/states")
        self.iam.register(STATES_INTERPRETER_KEY, roles[0], session, "state machine")
        policy_arn = self.outputs.get("TargetNodePolicyArn")
        if not policy_arn:
            raise DeployError("template.yaml has no output TargetNodePolicyArn: no policy for the managed nodes")
        iam = self.client("iam")
        trust = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "sts:AssumeRole",
            "Principal": {"Service": ["ec2.amazonaws.com", "ssm.amazonaws.com"]}}]}
        name = f"{self.stack_name}-LocalTargetNodeRole"[:64]
        self.node_role_arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        iam.attach_role_policy(RoleName=name, PolicyArn=policy_arn)

    def credentials_of_role(self, role_arn: str, label: str) -> dict[str, str]:
        """A session of ``role_arn`` for a service acting as it (an EventBridge rule target's
        role); one per role, issued on first use."""
        if role_arn not in self._rule_credentials:
            self._rule_credentials[role_arn] = self.iam.issue(self.client("sts"), role_arn, "events", label)
        return dict(self._rule_credentials[role_arn])

    def role_client(self, service: ServiceName, credentials: dict[str, str]) -> Any:
        """A client of the local cloud signing with ``credentials`` (AWS_ACCESS_KEY_ID, ...)."""
        return boto3.client(service, region_name=self.region, endpoint_url=self.endpoint,
                            aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
                            aws_session_token=credentials["AWS_SESSION_TOKEN"],
                            config=Config(retries={"max_attempts": 1}, read_timeout=120))

    def stop(self) -> None:
        self.stopping = True
        if self.runtime:
            self.runtime.shutdown()
        self.fleet.stop()
        if self.server:
            self.server.stop()
            self.server = None
        self.layer_downloads.stop()
        _reset_moto()
        patches.ACTIVE["cloud"] = None

    # ------------------------------------------------------------------ clients and environments
    def client(self, service: ServiceName) -> Any:
        if service not in self._clients:
            self._clients[service] = boto3.client(
                service, region_name=self.region, endpoint_url=self.endpoint,
                aws_access_key_id="localcloud", aws_secret_access_key="localcloud",
                config=Config(retries={"max_attempts": 2}, read_timeout=120))
        return self._clients[service]

    def aws_env(self) -> dict[str, str]:
        """Environment that points boto3 / the AWS CLI at the local cloud."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region,
                **LOCAL_CREDENTIALS}

    def lambda_env(self) -> dict[str, str]:
        # No X-Ray daemon here: tracing is disabled in the local runtime (Tracer stays in the code).
        return {**self.aws_env(), "AWS_SESSION_TOKEN": "localcloud", "POWERTOOLS_TRACE_DISABLED": "true"}

    def node_env(self, workdir: str, fetch: NodeFetch = "stdlib") -> dict[str, str]:
        """The environment a local node's SSM agent gives its commands: the node's own identity,
        its own installer state directory (lock, journal, backup; /var/lib/cert-rollout on a real
        node) and the installer's test hooks switched on (a scenario fault such as crash-mid-swap
        is then passed once, through CERT_ROLLOUT_FAULT, by nodes.py), and its owner's node policy
        file (CERT_ROLLOUT_NODE_POLICY; /etc/cert-rollout/node-policy.json on a real node).

        PATH is a stock node's: the node's own bin directory (a ``python3`` that runs this
        interpreter) before the system directories, so no ``aws`` unless ``fetch`` is "aws-cli"
        (then the project's AWS CLI is linked there). CERT_ROLLOUT_FETCH is ``fetch`` (default
        stdlib: the standard-library client a node without botocore and the AWS CLI uses; this
        interpreter has botocore, so "auto" would pick botocore). Instance metadata is switched
        off (AWS_EC2_METADATA_DISABLED): a local node never asks this machine's IMDS."""
        bin_dir = node_bin(workdir, aws_cli=fetch == "aws-cli")
        return {"PATH": f"{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME": workdir, "LANG": "C.UTF-8", "CERT_ROLLOUT_STATE_DIR": str(Path(workdir) / "state"),
                "CERT_ROLLOUT_TEST_HOOKS": "1", "CERT_ROLLOUT_NODE_POLICY": str(Path(workdir) / "node-policy.json"),
                "CERT_ROLLOUT_FETCH": fetch, "AWS_EC2_METADATA_DISABLED": "true", **self.aws_env()}

    def add_node(self, instance_id: str, online: bool = True, lose_status_events: int = 0, *,
                 fetch: NodeFetch = "stdlib", credentials: NodeCredentials = "own") -> LocalNode:
        """Register a local managed node; ``lose_status_events`` of its final status events are
        dropped before EventBridge (nodes.py); ``fetch``: its CERT_ROLLOUT_FETCH (node_env).
        ``credentials``: "own" (its instance-role session), "none" (no credentials anywhere: the
        installer's fetch fails bundle-credentials-missing) or "foreign" (a session of the node
        role for an instance that is no target: the staged bundle's policy denies it)."""
        from rollout_core.domain.staging import node_source_arn

        node = LocalNode(instance_id=instance_id, env={}, online=online, lose_status_events=lose_status_events)
        # The node's instance-role session: its requests carry the node's ARN as the condition
        # key AWS adds for that kind of node (ec2:/ssm:SourceInstanceARN, domain/staging.py).
        session_for = instance_id if credentials == "own" else "mi-0" + uuid.uuid4().hex[:16]
        key, arn = node_source_arn(session_for, partition=partition_for_region(self.region), region=self.region,
                                   account=self.account_id)
        issued = self.iam.issue(self.client("sts"), self.node_role_arn, session_for, f"node {session_for}",
                                {key: arn})
        node.env = {**self.node_env(node.workdir, fetch), **issued}
        if credentials == "none":
            for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
                node.env.pop(name, None)
        assert node.env["CERT_ROLLOUT_NODE_POLICY"] == str(node.policy_path)
        self.fleet.register(node)
        return node

    def inject_error(self, service: str, operation: str, code: str, times: int = 1) -> None:
        """Make the next ``times`` calls of ``operation`` answer AWS error ``code`` (e.g.
        ThrottlingException, RequestInProgressException, AccessDeniedException)."""
        with _INJECT_LOCK:
            self._injected.setdefault((service, operation), []).extend([code] * times)

    def take_injected_error(self, service: str, operation: str) -> str | None:
        with _INJECT_LOCK:
            queue = self._injected.get((service, operation))
            return queue.pop(0) if queue else None

    def private_ca(self) -> LocalPrivateCA:
        if self.pca is None:
            managed_tag = self.deployment.parameters.get("ManagedCertificateTag") if self.deployment else None
            self.pca = LocalPrivateCA(self.client, self.region, self.account_id, on_key=self.secrets.key_pems.append,
                                      managed_tag=managed_tag)
        return self.pca

    # ------------------------------------------------------------------ resources of the stack
    @property
    def outputs(self) -> dict[str, str]:
        assert self.deployment
        return self.deployment.outputs

    @property
    def state_machine_arn(self) -> str:
        return self.outputs["RolloutStateMachineArn"]

    def function_name(self, logical_id: str) -> str:
        assert self.deployment
        return self.deployment.function_by_logical_id(logical_id).name

    # ------------------------------------------------------------------ events and executions
    def deliver_event(self, event: dict[str, Any]) -> list[str]:
        """AWS puts ``event`` (aws.health / aws.acm) on the default bus: every rule whose own
        pattern matches routes it to its targets. Returns the execution ARNs started."""
        from moto.events.models import events_backends

        before = len(self.routed)
        bus = events_backends[self.account_id][self.region].describe_event_bus("default")
        for rule in list(bus.rules.values()):
            if rule.state == "ENABLED":
                rule.send_to_targets(cast("EventMessageType", event))
        return [r["executionArn"] for r in self.routed[before:]]

    def invoke_async(self, function_arn: str, event: dict[str, Any]) -> None:
        """Lambda's asynchronous invocation (EventBridge targets): run it on a thread; on an
        error, retry twice with a delay, as Lambda does for asynchronous invocations; when the
        last attempt fails too, send the event to the function's dead-letter queue (its
        DeadLetterConfig) with the message attributes Lambda adds (RequestID, ErrorCode,
        ErrorMessage). Once stop() has begun, a failed attempt ends the invocation: no retry,
        no dead-letter message (the runtime and the moto server are shutting down)."""
        assert self.runtime and self.deployment
        name = function_arn.rsplit(":", 1)[-1]
        payload = json.dumps(event).encode()
        dead_letter_arn = self.deployment.dead_letter_targets.get(name)

        def run() -> None:
            body = b""
            for attempt in range(3):
                body, error = self.runtime.invoke(name, payload)  # type: ignore[union-attr]
                if error is None or self.stopping:
                    return
                if attempt < 2:
                    time.sleep(1 + attempt)
            if dead_letter_arn and not self.stopping:
                try:
                    message = json.loads(body).get("errorMessage", "")
                except ValueError:
                    message = ""
                # Lambda sends to the dead-letter queue with the function's execution role (its
                # sqs:SendMessage, which SAM grants for DeadLetterQueue); the service knows the queue
                # URL from the ARN, so the lookup is the local cloud's own, not the role's.
                url = self.client("sqs").get_queue_url(QueueName=dead_letter_arn.rsplit(":", 1)[-1])["QueueUrl"]
                sqs = self.role_client("sqs", self.runtime.specs[name].credentials)  # type: ignore[union-attr]
                sqs.send_message(QueueUrl=url, MessageBody=payload.decode(), MessageAttributes={
                    "RequestID": {"DataType": "String", "StringValue": str(uuid.uuid4())},
                    "ErrorCode": {"DataType": "Number", "StringValue": "200"},
                    "ErrorMessage": {"DataType": "String", "StringValue": str(message)[:1000] or "Unhandled"},
                })

        threading.Thread(target=run, daemon=True).start()

    def _command_status_event(self, command_id: str, instance_id: str, document_name: str, status: str) -> None:
        """SSM's "EC2 Command Invocation Status-change Notification" on the default bus."""
        self.deliver_event({
            "version": "0", "id": str(uuid.uuid4()),
            "detail-type": "EC2 Command Invocation Status-change Notification", "source": "aws.ssm",
            "account": self.account_id, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": self.region,
            "resources": [build_arn(partition_for_region(self.region), "ec2", self.region, self.account_id,
                                    f"instance/{instance_id}")],
            "detail": {"command-id": command_id, "document-name": document_name, "instance-id": instance_id,
                       "requested-date-time": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                       "status": status},
        })

    def execution_status_event(self, execution: Any) -> None:
        """The "Step Functions Execution Status Change" event of an ended execution (moto's
        parser Execution), as Step Functions sends it (Step Functions Developer Guide,
        "Automating Step Functions event delivery with EventBridge": detail executionArn,
        stateMachineArn, name, status, startDate/stopDate in epoch milliseconds, input, output,
        error, cause), put on the default bus on a thread of its own (delivery is asynchronous)."""
        status = getattr(execution.exec_status, "value", str(execution.exec_status))

        def millis(value: Any) -> int | None:
            return int(value.timestamp() * 1000) if value is not None else None

        def text(value: Any) -> str | None:
            return None if value is None else value if isinstance(value, str) else json.dumps(value)

        event = {
            "version": "0", "id": str(uuid.uuid4()), "detail-type": "Step Functions Execution Status Change",
            "source": "aws.states", "account": self.account_id,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "region": self.region,
            "resources": [execution.exec_arn],
            "detail": {"executionArn": execution.exec_arn, "stateMachineArn": execution.state_machine.arn,
                       "name": execution.name, "status": status, "startDate": millis(execution.start_date),
                       "stopDate": millis(execution.stop_date), "input": text(execution.input_data),
                       "inputDetails": {"included": True}, "output": text(execution.output),
                       "outputDetails": {"included": True} if execution.output is not None else None,
                       "error": text(execution.error), "cause": text(execution.cause)},
        }
        self.status_events.append(event)
        threading.Thread(target=self.deliver_event, args=(event,), daemon=True).start()

    def start_execution_from_rule(self, rule: str, state_machine_arn: str, event: dict[str, Any],
                                  role_arn: str | None = None) -> str | None:
        """EventBridge starting an execution for ``rule`` as the target's role ``role_arn``:
        None (nothing started, the refusal in ``iam.denials``) when that role may not
        states:StartExecution on the state machine, as EventBridge then fails the invocation."""
        from moto.stepfunctions.parser.models import stepfunctions_parser_backends

        if self.iam.enabled:
            if not role_arn:
                return None
            credentials = self.credentials_of_role(role_arn, f"rule {rule}")
            principal = self.iam.principals[credentials["AWS_ACCESS_KEY_ID"]]
            if not self.iam.decide(principal, "states:StartExecution", (state_machine_arn,))[0].allowed:
                return None
        backend = stepfunctions_parser_backends[self.account_id][self.region]
        # EventBridge names the execution itself (a UUID), like the service does.
        execution = backend.start_execution(state_machine_arn, name=str(uuid.uuid4()), execution_input=json.dumps(event))
        return execution.execution_arn

    def start_execution(self, payload: dict[str, Any], name: str | None = None) -> str:
        """StartExecution by hand (a manual request)."""
        kwargs = {"name": name} if name else {}
        return self.client("stepfunctions").start_execution(
            stateMachineArn=self.state_machine_arn, input=json.dumps(payload), **kwargs)["executionArn"]

    def wait_for_execution(self, arn: str, timeout: float = 300,
                           on_event: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Poll until the execution ends (bounded by ``timeout`` seconds); ``on_event`` sees each
        new history event as it appears. Raises TimeoutError naming the execution."""
        sfn = self.client("stepfunctions")
        seen = 0
        deadline = time.time() + timeout
        while True:
            description = sfn.describe_execution(executionArn=arn)
            if on_event:
                events = self.history(arn)
                for event in events[seen:]:
                    on_event(event)
                seen = len(events)
            if description["status"] in TERMINAL:
                return description
            if time.time() > deadline:
                raise TimeoutError(f"execution {arn} still {description['status']} after {timeout:.0f} s")
            time.sleep(0.25)

    def history(self, arn: str) -> list[dict[str, Any]]:
        return fetch_history(self.client("stepfunctions"), arn)

    # ------------------------------------------------------------------ observation (audit, leak checks)
    def _subscribe_sns_capture(self) -> None:
        sqs = self.client("sqs")
        self._sns_queue_url = sqs.create_queue(QueueName="local-cloud-sns-capture")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self._sns_queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.client("sns").subscribe(TopicArn=self.outputs["RolloutTopicArn"], Protocol="sqs", Endpoint=arn)

    def sns_messages(self) -> list[dict[str, Any]]:
        """Every message published to the rollout topic so far (as an SQS subscriber got it)."""
        sqs = self.client("sqs")
        while True:
            page = sqs.receive_message(QueueUrl=self._sns_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = page.get("Messages", [])
            if not messages:
                break
            for m in messages:
                body = json.loads(m["Body"])
                self._sns_messages.append({"MessageId": body.get("MessageId"), "Subject": body.get("Subject"),
                                           "Message": body.get("Message"),
                                           "MessageAttributes": body.get("MessageAttributes", {})})
                sqs.delete_message(QueueUrl=self._sns_queue_url, ReceiptHandle=m["ReceiptHandle"])
        return list(self._sns_messages)

    def _write_logs(self, function_name: str, stream: str, lines: list[str]) -> None:
        from moto.logs.models import logs_backends

        backend = logs_backends[self.account_id][self.region]
        group = f"/aws/lambda/{function_name}"
        with _LOG_LOCK:
            backend.ensure_log_group(group)
            if stream not in backend.groups[group].streams:
                backend.create_log_stream(group, stream)
            now = int(time.time() * 1000)
            backend.put_log_events(group, stream, [{"timestamp": now, "message": line} for line in lines])

    def function_logs(self) -> dict[str, list[str]]:
        """Every log line every function wrote, by log group."""
        from moto.logs.models import logs_backends

        backend = logs_backends[self.account_id][self.region]
        out: dict[str, list[str]] = {}
        with _LOG_LOCK:
            for name, group in backend.groups.items():
                if name.startswith("/aws/lambda/"):
                    out[name] = [e.message for s in group.streams.values() for e in s.events]
        return out

    def ssm_commands(self) -> list[dict[str, Any]]:
        """Every SSM command with its parameters and each invocation's output."""
        from moto.ssm.models import ssm_backends

        backend = ssm_backends[self.account_id][self.region]
        return [{"CommandId": c.command_id, "DocumentName": c.document_name, "Parameters": c.parameters,
                 "Comment": c.comment, "Invocations": [dict(i) for i in c.invocations]} for c in backend._commands]

    def dynamodb_items(self) -> dict[str, list[dict[str, Any]]]:
        ddb = self.client("dynamodb")
        out: dict[str, list[dict[str, Any]]] = {}
        for name in ddb.list_tables()["TableNames"]:
            items: list[dict[str, Any]] = []
            kwargs: dict[str, Any] = {"TableName": name}
            while True:
                page = ddb.scan(**kwargs)
                items.extend(page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
            out[name] = items
        return out


_LOG_LOCK = threading.Lock()
_INJECT_LOCK = threading.Lock()


def _quiet_werkzeug() -> None:
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    # moto's ASL interpreter logs every caught state error at ERROR level; the history has them.
    logging.getLogger("moto.stepfunctions").setLevel(logging.CRITICAL)


def _reset_moto() -> None:
    """Drop every moto backend's state (what POST /moto-api/reset does)."""
    from moto.moto_api import _internal

    _internal.models.moto_api_backend.reset()
