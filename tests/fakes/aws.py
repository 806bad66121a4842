"""Fakes of the AWS-backed ports (rollout_core/ports.py): ACM, the staged bundle, SSM Run
Command, the waiting-task records, Step Functions task callbacks, SNS, the rollout records and
the rollout claims. Each says which adapter (rollout_core/adapters/) it stands in for."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from rollout_core.adapters.errors import AwsError, AwsPermanentError, AwsRequestInProgress
from rollout_core.domain.managed import DEFAULT_MANAGED_TAG, MANAGED_TAG_KEY
from rollout_core.domain.serials import canonical_serial
from rollout_core.domain.staging import EXECUTION_TAG
from rollout_core.ports import (
    CertificateDescription,
    CertificateNotFound,
    ExecutionDescription,
    ExportedCertificate,
    InstallerPackage,
    InvocationNotFound,
    NodeNotManaged,
    NotificationMarker,
    StagedEntry,
    StagedSecret,
    WaitingTask,
)

from tests.fakes.recording import Recording
from tests.unit.pki_fixtures import Pki, to_pem

REGION, ACCOUNT = "eu-west-1", "123456789012"


class FakeCertificates(Recording):
    """ACM (adapters/acm.py AcmCertificates) holding certificates of tests/unit/pki_fixtures.py.

    ``add`` registers a certificate ARN with its PKI and what DescribeCertificate says about
    it; export encrypts the PKI's leaf key with the caller's passphrase, as ACM does
    (encrypted PKCS#8). ``export_key`` replaces the exported key (a mismatching key);
    ``export_errors`` are raised, one per export call, before exporting.
    """

    def __init__(self) -> None:
        super().__init__()
        self.certificates: dict[str, dict[str, Any]] = {}
        self.export_errors: list[AwsError] = []

    def add(self, arn: str, pki: Pki, *, type: str = "PRIVATE", status: str = "ISSUED",  # noqa: A002 (ACM's name)
            renewal_status: str | None = "SUCCESS", renewal_status_reason: str | None = None,
            export_key: Any | None = None, chain_pem: str | None = None,
            tags: dict[str, str] | None = None) -> None:
        """``tags`` default: tagged as managed by a deployment with the default ManagedCertificateTag."""
        self.certificates[arn] = {"pki": pki, "type": type, "status": status, "renewal_status": renewal_status,
                                  "renewal_status_reason": renewal_status_reason, "export_key": export_key,
                                  "chain_pem": chain_pem,
                                  "tags": {MANAGED_TAG_KEY: DEFAULT_MANAGED_TAG} if tags is None else dict(tags)}

    def tags(self, certificate_arn: str) -> dict[str, str]:
        self._record("tags", certificate_arn=certificate_arn)
        entry = self.certificates.get(certificate_arn)
        if entry is None:
            raise CertificateNotFound(f"ACM has no certificate {certificate_arn}")
        return dict(entry["tags"])

    def serial(self, arn: str) -> str:
        """The canonical serial of the certificate's leaf."""
        return canonical_serial(self.certificates[arn]["pki"].leaf_cert.serial_number)

    def describe(self, certificate_arn: str) -> CertificateDescription:
        self._record("describe", certificate_arn=certificate_arn)
        entry = self.certificates.get(certificate_arn)
        if entry is None:
            raise CertificateNotFound(f"ACM has no certificate {certificate_arn}")
        leaf = entry["pki"].leaf_cert
        return CertificateDescription(
            arn=certificate_arn, type=entry["type"], status=entry["status"], serial=self.serial(certificate_arn),
            domain_name=leaf.subject.rfc4514_string().split("CN=", 1)[-1].split(",", 1)[0],
            not_after=leaf.not_valid_after_utc, renewal_status=entry["renewal_status"],
            renewal_status_reason=entry["renewal_status_reason"], key_algorithm=entry["pki"].algorithm)

    def export(self, certificate_arn: str, passphrase: bytes) -> ExportedCertificate:
        self._record("export", certificate_arn=certificate_arn, passphrase=passphrase)
        if self.export_errors:
            raise self.export_errors.pop(0)
        entry = self.certificates.get(certificate_arn)
        if entry is None:
            raise AwsPermanentError("ExportCertificate", "ResourceNotFoundException", certificate_arn)
        pki: Pki = entry["pki"]
        if entry["export_key"] is not None:
            from cryptography.hazmat.primitives import serialization

            key = entry["export_key"].private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.BestAvailableEncryption(passphrase)).decode()
        else:
            key = pki.encrypted_key_pem(passphrase)
        return ExportedCertificate(certificate=to_pem(pki.leaf_cert),
                                   chain=entry["chain_pem"] if entry["chain_pem"] is not None else pki.chain_pem,
                                   encrypted_private_key=key)

    def passphrases(self) -> list[bytes]:
        """Every passphrase an export was called with."""
        return [args["passphrase"] for op, args in self.calls if op == "export"]


class FakeStaging(Recording):
    """Secrets Manager staging (adapters/secrets.py SecretsManagerStaging): one secret per name,
    created without a value, then a resource policy, then versions. The secret strings are kept
    in ``secrets`` (the one place key material is expected), never in ``calls``. ``errors``:
    {operation: [AwsError, ...]} raised one per call of that operation. As Secrets Manager,
    PutSecretValue on a secret that does not exist fails (ResourceNotFoundException)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[str, list[str]] = {}
        self.kms_keys: dict[str, str] = {}
        self.policies: dict[str, dict[str, Any]] = {}
        self.tags: dict[str, dict[str, str]] = {}
        self.errors: dict[str, list[AwsError]] = {}

    def _raise_planned(self, operation: str) -> None:
        if self.errors.get(operation):
            raise self.errors[operation].pop(0)

    def _arn(self, name: str) -> str:
        return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf"

    def create_empty(self, name: str, *, kms_key_id: str, description: str, tags: Mapping[str, str]) -> bool:
        self._record("create_empty", name=name, kms_key_id=kms_key_id, description=description, tags=dict(tags))
        self._raise_planned("create_empty")
        if name in self.secrets:
            return False
        self.secrets[name] = []
        self.kms_keys[name] = kms_key_id
        self.tags[name] = dict(tags)
        return True

    def put_policy(self, name: str, policy: Mapping[str, Any]) -> None:
        self._record("put_policy", name=name, policy=copy.deepcopy(dict(policy)))
        self._raise_planned("put_policy")
        if name not in self.secrets:
            raise AwsPermanentError("PutResourcePolicy", "ResourceNotFoundException", name)
        self.policies[name] = copy.deepcopy(dict(policy))

    def put_value(self, name: str, secret_string: str) -> StagedSecret:
        self._record("put_value", name=name)
        self._raise_planned("put_value")
        if name not in self.secrets:
            raise AwsPermanentError("PutSecretValue", "ResourceNotFoundException", name)
        self.secrets[name].append(secret_string)
        return StagedSecret(arn=self._arn(name), version_id=f"version-{len(self.secrets[name])}")

    def delete(self, name: str) -> bool:
        self._record("delete", name=name)
        self._raise_planned("delete")
        existed = name in self.secrets
        for store in (self.secrets, self.kms_keys, self.policies, self.tags):
            store.pop(name, None)  # type: ignore[attr-defined]
        return existed

    def list_staged(self, name_prefix: str) -> list[StagedEntry]:
        self._record("list_staged", name_prefix=name_prefix)
        self._raise_planned("list_staged")
        return [StagedEntry(name=n, arn=self._arn(n), execution_arn=self.tags.get(n, {}).get(EXECUTION_TAG))
                for n in sorted(self.secrets) if n.startswith(name_prefix)]

    def latest(self, name: str) -> dict[str, Any]:
        """The last staged version of ``name``, parsed."""
        return dict(json.loads(self.secrets[name][-1]))

    def only_name(self) -> str:
        """The one staged secret's name (AssertionError when there are none or several)."""
        (name,) = self.secrets
        return name


class FakeKeystorePasswords(Recording):
    """Keystore password secrets (adapters/secrets.py SecretsManagerKeystorePasswords):
    ``passwords`` {secret id: password}; an unknown id raises ResourceNotFoundException;
    ``errors`` {secret id: AwsError} raised instead."""

    def __init__(self) -> None:
        super().__init__()
        self.passwords: dict[str, str] = {}
        self.errors: dict[str, AwsError] = {}

    def read(self, secret_id: str) -> str:
        self._record("read", secret_id=secret_id)
        if secret_id in self.errors:
            raise self.errors[secret_id]
        if secret_id not in self.passwords:
            raise AwsPermanentError("GetSecretValue", "ResourceNotFoundException", secret_id)
        return self.passwords[secret_id]


class FakeCommands(Recording):
    """SSM Run Command (adapters/ssm.py SsmCommands). ``send`` records the command and answers
    command ids cmd-0001, cmd-0002, ...; an invocation is InvocationDoesNotExist until ``finish``
    scripts its final status. Nodes in ``unmanaged`` refuse commands (NodeNotManaged)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: dict[str, dict[str, Any]] = {}
        self.invocations: dict[str, dict[str, Any]] = {}
        self.unmanaged: set[str] = set()
        self.cancelled: set[str] = set()
        self._ids = itertools.count(1)

    def send(self, document: str, instance_id: str, parameters: Mapping[str, str], *,
             timeout_seconds: int, comment: str) -> str:
        self._record("send", document=document, instance_id=instance_id, parameters=dict(parameters),
                     timeout_seconds=timeout_seconds, comment=comment)
        if instance_id in self.unmanaged:
            raise NodeNotManaged(f"{instance_id}: Instances [[{instance_id}]] not in a valid state for account")
        command_id = f"cmd-{next(self._ids):04d}"
        self.sent[command_id] = {"document": document, "instance_id": instance_id, "parameters": dict(parameters),
                                 "timeout_seconds": timeout_seconds, "comment": comment[:100]}
        return command_id

    def finish(self, command_id: str, status: str, *, status_details: str | None = None, response_code: int = 0,
               stdout: str = "", stderr: str = "") -> None:
        """Script GetCommandInvocation's answer for a sent command."""
        sent = self.sent[command_id]
        self.invocations[command_id] = {
            "CommandId": command_id, "InstanceId": sent["instance_id"], "Comment": sent["comment"],
            "DocumentName": sent["document"], "Status": status, "StatusDetails": status_details or status,
            "ResponseCode": response_code, "StandardOutputContent": stdout, "StandardErrorContent": stderr,
        }

    def invocation(self, command_id: str, instance_id: str) -> dict[str, Any]:
        self._record("invocation", command_id=command_id, instance_id=instance_id)
        if command_id not in self.sent:
            raise AwsPermanentError("GetCommandInvocation", "InvalidCommandId", command_id)
        if command_id not in self.invocations:
            raise InvocationNotFound(command_id)
        return copy.deepcopy(self.invocations[command_id])

    def cancel(self, command_id: str, instance_id: str) -> None:
        """Cancel a sent command: its invocation answers Cancelled from now on (SSM ends it
        asynchronously; here at once)."""
        self._record("cancel", command_id=command_id, instance_id=instance_id)
        if command_id not in self.sent:
            raise AwsPermanentError("CancelCommand", "InvalidCommandId", command_id)
        self.cancelled.add(command_id)
        self.finish(command_id, "Cancelled", status_details="Cancelled", response_code=-1)


class FakeWaitingTasks(Recording):
    """Waiting-task records (adapters/dynamo.py DynamoWaitingTasks); context stored as JSON, as
    the adapter does, so a context that is not JSON fails here too."""

    def __init__(self) -> None:
        super().__init__()
        self.records: dict[str, dict[str, Any]] = {}

    def state(self) -> Any:
        return self.records

    def remember(self, key: str, task_token: str, context: Mapping[str, Any], *, ttl_seconds: int) -> None:
        self._record("remember", key=key, task_token=task_token, context=dict(context), ttl_seconds=ttl_seconds)
        self.records[key] = {"taskToken": task_token, "context": json.dumps(dict(context)),
                             "ttlSeconds": ttl_seconds}

    def attach_command(self, key: str, command_id: str, instance_id: str) -> None:
        self._record("attach_command", key=key, command_id=command_id, instance_id=instance_id)
        if key in self.records:
            self.records[key].update(commandId=command_id, instanceId=instance_id)

    def find(self, key: str) -> WaitingTask | None:
        self._record("find", key=key)
        record = self.records.get(key)
        if record is None:
            return None
        return WaitingTask(task_token=record["taskToken"], context=json.loads(record["context"]),
                           command_id=record.get("commandId"), instance_id=record.get("instanceId"))


class FakeCallbacks(Recording):
    """Step Functions SendTaskSuccess (adapters/stepfunctions.py StepFunctionsCallbacks);
    tokens in ``gone`` belong to tasks that no longer wait (answer False)."""

    def __init__(self) -> None:
        super().__init__()
        self.succeeded: list[tuple[str, dict[str, Any]]] = []
        self.gone: set[str] = set()

    def succeed(self, task_token: str, output: Mapping[str, Any]) -> bool:
        self._record("succeed", task_token=task_token, output=dict(output))
        if task_token in self.gone:
            return False
        self.succeeded.append((task_token, json.loads(json.dumps(dict(output)))))
        return True


class FakeNotifications(Recording):
    """The SNS topic (adapters/sns.py SnsNotifications): ``messages`` as published."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[dict[str, Any]] = []

    def publish(self, subject: str, message: str, attributes: Mapping[str, str]) -> str:
        self._record("publish", subject=subject, message=message, attributes=dict(attributes))
        self.messages.append({"subject": subject, "message": message, "attributes": dict(attributes)})
        return f"message-{len(self.messages)}"


class FakeRolloutRecords(Recording):
    """The rollout records (adapters/dynamo.py DynamoRolloutRecords): None values dropped,
    records keyed (rolloutId, targetId), a put replaces."""

    def __init__(self) -> None:
        super().__init__()
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        self.markers: dict[str, NotificationMarker] = {}
        self.fail_next: dict[str, AwsError] = {}

    def state(self) -> Any:
        return list(self.records.values())

    def put(self, record: Mapping[str, Any]) -> None:
        self._record("put", record=dict(record))
        item = {k: v for k, v in record.items() if v is not None}
        json.dumps(item)  # DynamoDB takes JSON-like values only
        self.records[(item["rolloutId"], item["targetId"])] = item

    def list(self, rollout_id: str) -> list[dict[str, Any]]:
        self._record("list", rollout_id=rollout_id)
        return [copy.deepcopy(r) for (rid, _), r in sorted(self.records.items()) if rid == rollout_id]

    # Notification markers (kept apart from the outcome records, as the adapter keys them apart).
    # ``fail_next`` maps an operation name to an AwsError its next call raises.

    def _maybe_fail(self, operation: str) -> None:
        error = self.fail_next.pop(operation, None)
        if error is not None:
            raise error

    def mark_notified(self, rollout_id: str, *, by: str, outcome: str, message_id: str) -> None:
        self._record("mark_notified", rollout_id=rollout_id, by=by, outcome=outcome, message_id=message_id)
        self._maybe_fail("mark_notified")
        self.markers[rollout_id] = NotificationMarker(rollout_id, by, outcome, message_id)

    def claim_notification(self, rollout_id: str, *, by: str, outcome: str) -> bool:
        self._record("claim_notification", rollout_id=rollout_id, by=by, outcome=outcome)
        self._maybe_fail("claim_notification")
        if rollout_id in self.markers:
            return False
        self.markers[rollout_id] = NotificationMarker(rollout_id, by, outcome, None)
        return True

    def forget_notification(self, rollout_id: str) -> None:
        self._record("forget_notification", rollout_id=rollout_id)
        self.markers.pop(rollout_id, None)

    def notification(self, rollout_id: str) -> NotificationMarker | None:
        self._record("notification", rollout_id=rollout_id)
        return self.markers.get(rollout_id)


class FakeClaims(Recording):
    """The idempotent claim (adapters/claims.py PowertoolsClaims): the first rollout id per
    (certificate ARN, serial) wins; pairs in ``in_progress`` raise AwsRequestInProgress (as the
    adapter does after waiting for another caller's claim)."""

    def __init__(self) -> None:
        super().__init__()
        self.claims: dict[tuple[str, str], tuple[str, datetime]] = {}
        self.in_progress: set[tuple[str, str]] = set()

    def claim(self, certificate_arn: str, serial: str, rollout_id: str) -> str:
        self._record("claim", certificate_arn=certificate_arn, serial=serial, rollout_id=rollout_id)
        if (certificate_arn, serial) in self.in_progress:
            raise AwsRequestInProgress("ClaimRollout", "IdempotencyAlreadyInProgress", "claim in progress")
        holder, _ = self.claims.setdefault((certificate_arn, serial), (rollout_id, datetime.now(UTC)))
        return holder

    def release(self, certificate_arn: str, serial: str, rollout_id: str) -> bool:
        self._record("release", certificate_arn=certificate_arn, serial=serial, rollout_id=rollout_id)
        held = self.claims.get((certificate_arn, serial))
        if held is None or held[0] != rollout_id:
            return False
        del self.claims[(certificate_arn, serial)]
        return True


class FakeExecutions(Recording):
    """Step Functions DescribeExecution (adapters/stepfunctions.py StepFunctionsExecutions):
    ``executions`` by ARN; an unknown ARN is None (ExecutionDoesNotExist)."""

    def __init__(self) -> None:
        super().__init__()
        self.executions: dict[str, ExecutionDescription] = {}

    def add(self, execution_arn: str, status: str, execution_input: Any = None, *, error: str | None = None,
            cause: str | None = None) -> None:
        self.executions[execution_arn] = ExecutionDescription(
            execution_arn=execution_arn, name=execution_arn.rsplit(":", 1)[-1], status=status,
            input=execution_input, error=error, cause=cause)

    def describe(self, execution_arn: str) -> ExecutionDescription | None:
        self._record("describe", execution_arn=execution_arn)
        return self.executions.get(execution_arn)


class FakeInstallerSource(Recording):
    """The installer's download (adapters/installer_source.py LayerInstallerSource): one fixed
    loopback URL and SHA-256 per layer version ARN."""

    def package(self, layer_version_arn: str) -> InstallerPackage:
        self._record("package", layer_version_arn=layer_version_arn)
        return InstallerPackage(layer_version_arn=layer_version_arn,
                                url="http://127.0.0.1:9/installer/" + layer_version_arn.rsplit(":", 2)[-2] + ".zip",
                                sha256="47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", expires_at=4102444800.0)
