"""The IAM statement sweep (issue 11, item 6): every action of every statement of every role the
template creates is taken away in turn, on one deployed local cloud, and a rollout is run again:
it must fail at the step that needs the action (signature: failing state and error, and the
request IAM refused), and any action whose removal changes nothing is listed and must be in
NOT_SHOWN (never requested by the two rollouts) or TOLERATED (refused, outcome unchanged) with
a reason. Slow (one rollout per used action): runs only with
CERT_ROLLOUT_IAM_SWEEP=1.

Cheaper than a redeploy per statement: the deployed roles' policies are edited through IAM
(put_role_policy / create_policy_version; the enforcer drops its compiled policies on any IAM
request) and restored after each run. Two rollouts cover the paths: "ok" (one target that
verifies; the Health event through its rule) and "fails" (a target whose reload fails: rolled
back, execution FAILED, NotifyAbnormalEnd runs). A statement action no request of the two
baseline rollouts was granted by cannot change their outcome when removed (the evaluator
records the statement that allowed each request), so it is listed without a rerun.
"""

from __future__ import annotations

import fnmatch
import json
import os
import time
from dataclasses import dataclass
from typing import Any

import pytest
from rollout_core.domain.staging import EXECUTION_TAG, staged_secret_name, staged_secret_prefix

from cert_rollout.localcloud.scenario import Scenario, ScenarioRunner, StepSpec

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800),
              pytest.mark.skipif(os.environ.get("CERT_ROLLOUT_IAM_SWEEP") != "1",
                                 reason="slow: set CERT_ROLLOUT_IAM_SWEEP=1")]

#: (role logical id, action) patterns whose removal the two rollouts cannot show, and why.
#: Not swept at all: the ENI actions (ec2:CreateNetworkInterface ...) of the probing functions' VpcConfig
#: (ProbeSubnetIds): they come from AWSLambdaVPCAccessExecutionRole, an AWS managed policy the probing
#: roles attach only under ProbesInVpc, which the local cloud neither deploys nor loads (deploy.py; no
#: VPC here); tests/unit/test_template_probe_vpc.py checks the template instead.
NOT_SHOWN: dict[tuple[str, str], str] = {
    ("*", "kms:*"): "moto's Secrets Manager and SQS do not call KMS: kms:ViaService grants are never requested "
                    "locally (policy test: test_local_iam_policy.py evaluates the kms:ViaService condition)",
    ("RolloutStateMachineRole", "logs:*"): "the local cloud does not deliver Step Functions logs to CloudWatch Logs",
    ("RolloutStateMachineRole", "xray:*"): "tracing is off in the local cloud (no X-Ray daemon)",
    ("*", "dynamodb:*"): "SAM's DynamoDB policy templates (and the probing roles' copies of their action sets, "
                         "template.yaml) grant a fixed action set (Scan, BatchGetItem, DescribeTable, ...) wider "
                         "than the calls the code makes; the calls made are swept",
    ("*", "sqs:SendMessage"): "the dead-letter queue: only after an asynchronous invocation failed three times",
    ("CommandCallbackFunctionRole", "ssm:CancelCommand"): "reconcile of a timed-out task only (test_faults.py)",
    ("CommandCallbackFunctionRole", "ssm:GetCommandInvocation"): "reconcile of a timed-out task only",
    ("RolloutStateMachineRole", "lambda:InvokeFunction"): "LambdaInvokePolicy grants function and function:*; "
                                                          "each step's function is swept through its own statement",
    ("ValidateEventFunctionRole", "states:DescribeExecution"): "a duplicate event whose claim holder ended "
                                                               "(test_idempotency_ttl.py)",
    ("ExportCertificateFunctionRole", "secretsmanager:PutSecretValue"): "a retried export whose secret exists "
                                                                        "already (adapters/secrets.py)",
    ("ExportCertificateFunctionRole", "secretsmanager:GetSecretValue"): "keystore password secrets "
        "(<SecretPrefix>/keystores/*): the sweep's targets are PEM files; test_staging_with_fakes.py and "
        "test_installer_keystore_secret.py stage and use them",
    ("CommandCallbackFunctionRole", "states:SendTaskFailure"): "UNUSED: no code path calls it (a failed command "
                                                               "completes its task with SendTaskSuccess); a grant to drop",
    ("RolloutStateMachineAcm*Role", "states:StartExecution"): "the two ACM rules' roles are SAM's same statement as "
                                                              "the Health rule's, swept; their events: test_events.py",
    ("NotifyAbnormalEndFunctionRole", "states:DescribeExecution"): "an execution that ended before Notify ran",
    ("NotifyAbnormalEndFunctionRole", "sns:Publish"): "an execution that ended before Notify ran",
}


#: (role logical id, action) patterns whose removal was refused at run time (or is granted twice)
#: and still did not change the rollout, and why.
TOLERATED: dict[tuple[str, str], str] = {
    ("NotifyFunctionRole", "dynamodb:PutItem"): "the notification marker: a failure is logged, not raised "
                                                "(logic/notify.py); it matters only if the execution then fails",
    ("InstallTargetFunctionRole", "dynamodb:UpdateItem"): "granted twice: the DynamoDBWritePolicy action set and "
                                                          "the lease statement both allow it on RolloutTable",
}


@dataclass(frozen=True)
class Unit:
    """One action of one statement of one policy of one deployed role."""

    role_lid: str
    role_name: str
    policy: str  # inline policy name, or a managed policy ARN
    index: int  # statement index
    action: str
    compiled_name: str  # the name policy.py reports in a grant ("<role>/<policy>" or the managed name)

    @property
    def key(self) -> tuple[str, str]:
        return self.role_lid, self.action


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    statements = document["Statement"]
    return statements if isinstance(statements, list) else [statements]


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement.get("Action", [])
    return actions if isinstance(actions, list) else [actions]


class Sweep:
    def __init__(self, runner: ScenarioRunner) -> None:
        self.runner = runner
        self.cloud = runner.cloud
        assert self.cloud is not None
        self.iam = self.cloud.client("iam")
        self._orphans = 0  # crashed rollouts' staged secrets planted so far (their names differ)

    # ------------------------------------------------------------------ the roles' statements
    def units(self) -> list[Unit]:
        cloud = self.cloud
        roles = {cloud.deployment.physical[lid]: lid for lid, r in cloud.deployment.cfn_template["Resources"].items()
                 if r["Type"] == "AWS::IAM::Role"}
        roles[cloud.node_role_arn.rsplit("/", 1)[-1]] = "LocalTargetNodeRole"
        out: list[Unit] = []
        for name, lid in sorted(roles.items(), key=lambda r: r[1]):
            for policy in self.iam.list_role_policies(RoleName=name)["PolicyNames"]:
                document = self.iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
                out += self._units_of(lid, name, policy, document, f"{name}/{policy}")
            for attached in self.iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
                out += self._units_of(lid, name, attached["PolicyArn"], self._managed(attached["PolicyArn"])[1],
                                      attached["PolicyArn"].rsplit("/", 1)[-1])
        return out

    @staticmethod
    def _units_of(lid: str, name: str, policy: str, document: dict[str, Any], compiled: str) -> list[Unit]:
        return [Unit(lid, name, policy, i, action, compiled)
                for i, statement in enumerate(_statements(document)) if statement.get("Effect") == "Allow"
                for action in _actions(statement)]

    def _managed(self, arn: str) -> tuple[str, dict[str, Any]]:
        version = self.iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
        return version, self.iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]

    def used(self, unit: Unit, grants: dict[tuple[str, str], set[str]]) -> bool:
        """Did a request of the baseline get its Allow from this unit's statement and action?"""
        sid_reasons = set()
        for (_, action), reasons in grants.items():
            if action.lower() == unit.action.lower() or fnmatch.fnmatch(action.lower(), unit.action.lower()):
                sid_reasons |= reasons
        return any(r.startswith(f"{unit.compiled_name} statement ") and self._sid_matches(unit, r) for r in sid_reasons)

    def _sid_matches(self, unit: Unit, reason: str) -> bool:
        sid = reason.rsplit(" statement ", 1)[1]
        document = (self._managed(unit.policy)[1] if unit.policy.startswith("arn:") else
                    self.iam.get_role_policy(RoleName=unit.role_name, PolicyName=unit.policy)["PolicyDocument"])
        statement = _statements(document)[unit.index]
        return str(statement.get("Sid", unit.index)) == sid

    # ------------------------------------------------------------------ take one away, put it back
    def without(self, unit: Unit) -> Any:
        sweep = self

        class _Edit:
            def __enter__(self) -> None:
                sweep._remove(unit)

            def __exit__(self, *exc: Any) -> None:
                sweep._restore(unit)

        return _Edit()

    def _edited(self, document: dict[str, Any], unit: Unit) -> dict[str, Any]:
        statements = [dict(s) for s in _statements(document)]
        remaining = [a for a in _actions(statements[unit.index]) if a != unit.action]
        if remaining:
            statements[unit.index]["Action"] = remaining
        else:
            statements.pop(unit.index)
        return {**document, "Statement": statements}

    def _remove(self, unit: Unit) -> None:
        if unit.policy.startswith("arn:"):
            version, document = self._managed(unit.policy)
            self._saved = version
            self.iam.create_policy_version(PolicyArn=unit.policy, SetAsDefault=True,
                                           PolicyDocument=json.dumps(self._edited(document, unit)))
            return
        document = self.iam.get_role_policy(RoleName=unit.role_name, PolicyName=unit.policy)["PolicyDocument"]
        self._saved = document
        edited = self._edited(document, unit)
        if edited["Statement"]:
            self.iam.put_role_policy(RoleName=unit.role_name, PolicyName=unit.policy, PolicyDocument=json.dumps(edited))
        else:
            self.iam.delete_role_policy(RoleName=unit.role_name, PolicyName=unit.policy)

    def _restore(self, unit: Unit) -> None:
        if unit.policy.startswith("arn:"):
            edited = self.iam.get_policy(PolicyArn=unit.policy)["Policy"]["DefaultVersionId"]
            self.iam.set_default_policy_version(PolicyArn=unit.policy, VersionId=self._saved)
            self.iam.delete_policy_version(PolicyArn=unit.policy, VersionId=edited)
        else:
            self.iam.put_role_policy(RoleName=unit.role_name, PolicyName=unit.policy,
                                     PolicyDocument=json.dumps(self._saved))

    # ------------------------------------------------------------------ one rollout
    def rollout(self, kind: str) -> dict[str, Any]:
        """Renew the certificate of ``kind`` ("ok" / "fails"), deliver the Health event through its
        rule, wait for the execution and (for a failed one) NotifyAbnormalEnd; the signature."""
        cloud, runner = self.cloud, self.runner
        cloud.iam.grants.clear()
        denials_before = len(cloud.iam.denials)
        abnormal = cloud.function_name("NotifyAbnormalEndFunction")
        invoked_before = cloud.runtime.stats[abnormal].count
        errors_before = cloud.runtime.stats[abnormal].errors
        started = time.monotonic()
        orphan = self._plant_orphan(kind)
        cloud.private_ca().renew(runner.certificate_arns[kind])
        entry, arns = runner._send(0, StepSpec.model_validate(
            {"event": "events/eventbridge/health-renewal-completed.json", "certificate": kind}))
        try:
            runner._finish(entry, arns)
        except TimeoutError:  # e.g. a task token nobody may complete: the execution would wait
            entry.update(outcome="STILL_RUNNING", status="RUNNING", history=cloud.history(arns[-1]))
            cloud.client("stepfunctions").stop_execution(executionArn=arns[-1], error="IamSweep",
                                                         cause="still running after the sweep's bound")
        if entry.get("status") not in (None, "SUCCEEDED", "RUNNING"):
            self._wait_abnormal_end(abnormal, invoked_before, errors_before)
        # a lease the run could not release (or a stopped run held) must not hold the next run
        # back (adapters/leases.py: one item per certificate)
        cloud.client("dynamodb").delete_item(TableName=cloud.deployment.physical["RolloutTable"], Key={
            "rolloutId": {"S": f"lease#{runner.certificate_arns[kind]}"}, "targetId": {"S": "-"}})
        staged_left = self._staged_left(orphan)
        history = entry.get("history") or []
        failed_states = _failed_states(history) or [(_last_state(history), entry.get("outcome") or "", "")]
        return {"outcome": entry.get("outcome"), "status": entry.get("status"),
                "failed": failed_states[:1], "error": entry.get("error"), "seconds": round(time.monotonic() - started, 1),
                "abnormal_end_errors": cloud.runtime.stats[abnormal].errors - errors_before,
                "staged_left": staged_left,
                "denials": sorted({(d.principal, d.action) for d in cloud.iam.denials[denials_before:]}),
                "grants": {k: set(v) for k, v in cloud.iam.grants.items()}}

    def _plant_orphan(self, kind: str) -> str:
        """A staged secret of a rollout that crashed (its tagged execution does not exist): the
        export's sweep must delete it (DeleteSecret, ListSecrets, DescribeExecution)."""
        cloud = self.cloud
        prefix = cloud.deployment.parameters["SecretPrefix"]
        self._orphans += 1
        arn = self.runner.certificate_arns[kind]
        name = staged_secret_name(prefix, arn, f"crashed-{self._orphans}")
        execution = cloud.state_machine_arn.replace(":stateMachine:", ":execution:") + f":crashed-{self._orphans}"
        cloud.client("secretsmanager").create_secret(Name=name, SecretString="{}", Tags=[
            {"Key": EXECUTION_TAG, "Value": execution}])
        return name

    def _staged_left(self, orphan: str) -> int:
        """Staged secrets left after a rollout (the planted orphan and the rollout's own); then
        removed, so the next run starts from none."""
        sm = self.cloud.client("secretsmanager")
        prefix = staged_secret_prefix(self.cloud.deployment.parameters["SecretPrefix"])
        left = [s["Name"] for s in sm.list_secrets(Filters=[{"Key": "name", "Values": [prefix]}])["SecretList"]
                if s["Name"].startswith(prefix)]
        for name in left:
            sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
        return len(left)

    def _wait_abnormal_end(self, name: str, before: int, errors_before: int) -> None:
        deadline = time.time() + 20
        stats = self.cloud.runtime.stats[name]
        while time.time() < deadline and stats.count <= before:
            time.sleep(0.1)
        # a failed asynchronous invocation is retried after 1 s and 2 s (cloud.invoke_async)
        while time.time() < deadline and stats.errors > errors_before and stats.count < before + 3:
            time.sleep(0.1)


def _last_state(history: list[dict[str, Any]]) -> str:
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if e.get("stateEnteredEventDetails")]
    return entered[-1] if entered else "-"


def _failed_states(history: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(state, error, cause head) of each TaskFailed / LambdaFunctionFailed, in order."""
    by_id = {e["id"]: e for e in history}
    out = []
    for e in history:
        details = e.get("taskFailedEventDetails") or e.get("lambdaFunctionFailedEventDetails")
        if not details:
            continue
        cur, state = e, "?"
        while cur is not None:
            entered = cur.get("stateEnteredEventDetails")
            if entered:
                state = entered["name"]
                break
            cur = by_id.get(cur.get("previousEventId"))
        out.append((state, details.get("error", ""), (details.get("cause") or "")[:160]))
    return out


def _not_shown_reason(unit: Unit) -> str | None:
    for (role, action), reason in NOT_SHOWN.items():
        if fnmatch.fnmatch(unit.role_lid, role) and fnmatch.fnmatch(unit.action, action):
            return reason
    return None


def _scenario() -> Scenario:
    return Scenario.model_validate({
        "name": "iam-sweep",
        # short bounds: a removed permission fails a step fast, or its task times out fast
        "parameters": {"PollIntervalSeconds": "1", "VerifyTimeoutSeconds": "5", "CommandTimeoutSeconds": "20"},
        "certificates": {"ok": {"domain": "ok.internal.example", "key_algorithm": "EC_prime256v1"},
                         "fails": {"domain": "fails.internal.example", "key_algorithm": "EC_prime256v1"}},
        "targets": [{"id": "ok-1", "certificate": "ok"},
                    {"id": "fails-1", "certificate": "fails", "fault": "reload-fails"}],
        "steps": [{"sleep": 0}],  # the rollouts are run by the sweep itself
    })


def test_every_statement_action_is_needed_by_the_step_that_uses_it_or_named_with_a_reason():
    started = time.monotonic()
    runner = ScenarioRunner(_scenario(), execution_timeout=30)
    try:
        runner.run(keep_running=True)
        sweep = Sweep(runner)
        baseline = {kind: sweep.rollout(kind) for kind in ("ok", "fails")}
        assert baseline["ok"]["outcome"] == "ROLLED_OUT", baseline["ok"]
        assert baseline["fails"]["status"] == "FAILED", baseline["fails"]
        assert not baseline["ok"]["denials"] and not baseline["fails"]["denials"], baseline
        # the planted crashed rollout's staging is swept, the rollout's own deleted at its end
        assert baseline["ok"]["staged_left"] == baseline["fails"]["staged_left"] == 0, baseline
        units = sweep.units()
        assert units
        print(f"\nbaseline: ok {baseline['ok']['seconds']} s, fails {baseline['fails']['seconds']} s, "
              f"{len(units)} statement actions", flush=True)
        shown: list[str] = []
        unused: list[Unit] = []
        tolerated: list[str] = []
        for unit in units:
            kinds = [k for k in ("ok", "fails") if sweep.used(unit, baseline[k]["grants"])]
            if not kinds:
                unused.append(unit)
                continue
            kind = kinds[0]
            with sweep.without(unit):
                result = sweep.rollout(kind)
                if not any(d[1].lower() == unit.action.lower() for d in result["denials"]):
                    # warm environments cache what a cold start asks (the installer's URL and
                    # SHA-256): once more from cold starts
                    sweep.cloud.runtime.shutdown()
                    result = sweep.rollout(kind)
            changed = (result["outcome"], result["failed"], result["abnormal_end_errors"] > 0,
                       result["staged_left"]) != \
                      (baseline[kind]["outcome"], baseline[kind]["failed"], False, 0)
            denied = [d for d in result["denials"] if d[1].lower() == unit.action.lower()]
            line = (f"{unit.role_lid} {unit.action} [{kind}]: {result['outcome']} at {result['failed']} "
                    f"staged left {result['staged_left']} "
                    f"denied {denied}")
            print(f"  {result['seconds']:5.1f} s {line}", flush=True)
            if denied and changed:
                shown.append(line)
            else:
                tolerated.append(line)
        elapsed = time.monotonic() - started
    finally:
        runner.close()
    print(f"\nIAM sweep: {len(units)} statement actions, {len(shown)} shown needed, {len(unused)} unused by "
          f"the two rollouts, {elapsed:.0f} s")
    for line in shown:
        print("  needed:", line)
    unexplained = [f"{u.role_lid} {u.action}" for u in unused if _not_shown_reason(u) is None]
    unexplained += [t for t in tolerated
                    if not any(fnmatch.fnmatch(t.split(" ")[0], r) and fnmatch.fnmatch(t.split(" ")[1], a)
                               for r, a in TOLERATED)]
    for u in unused:
        print("  not shown:", u.role_lid, u.action, "-", _not_shown_reason(u))
    for t in tolerated:
        print("  denied but tolerated:", t)
    assert not unexplained, "removal changed nothing (add a reason to NOT_SHOWN or drop the grant):\n" + \
        "\n".join(unexplained)
