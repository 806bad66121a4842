"""The per-certificate rollout lease (logic/lease.py, adapters/leases.py): one writer per
certificate, the newest request wins, a crashed execution's lease expires.

The rules run on the fake (tests/fakes/leases.py) and, for the conditional writes themselves,
on the DynamoDB adapter against moto's DynamoDB: the same test body for both. The model test
at the end interleaves two or three rollouts of increasing serials at random (steps, clock,
crashes) and checks that no older serial is ever sent to a target after a newer one was."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws
from rollout_core import ports
from rollout_core.adapters.leases import DynamoLeases, lease_key
from rollout_core.contracts import IterationState, LeaseInput, RolloutState, StateError, TargetLine
from rollout_core.domain.serials import canonical_serial
from rollout_core.logic.lease import (
    LeaseNotHeld,
    Superseded,
    acquire_lease,
    fence_target_command,
    release_for_execution,
    release_lease,
    retry_after_seconds,
)
from rollout_core.logic.notify import format_message, notify, rollout_outcome
from rollout_core.logic.outcome import classify
from rollout_core.models import Decision, RolloutOutcome, TargetOutcome
from rollout_core.ports import CertificateDescription, ExportedCertificate
from rollout_core.settings import InstallSettings, LeaseSettings

from tests.fakes import FakeLeases, FakeNotifications, FakeRolloutRecords, FakeStaging

ARN = "arn:aws:acm:eu-west-1:123456789012:certificate/6f1e2d3c-4b5a-4987-8c6d-5e4f3a2b1c0d"
T0 = 1_800_000_000
LEASE_SECONDS = 100
SETTINGS = LeaseSettings(rollout_table="rollouts", lease_seconds=LEASE_SECONDS)
INSTALL = InstallSettings(inventory_table="inventory", rollout_table="rollouts", install_document="CertInstall",
                          installer_layer_arn="arn:aws:lambda:eu-west-1:123456789012:layer:InstallerLayer:1",
                          lease_seconds=LEASE_SECONDS)


def serial(n: int) -> str:
    return canonical_serial(0x5A000000 + n)


def execution_arn(rollout_id: str) -> str:
    return f"arn:aws:states:eu-west-1:123456789012:execution:CertRollout:{rollout_id}"


class CurrentSerial:
    """ACM as the lease logic reads it: DescribeCertificate's current serial, settable (a renewal)."""

    def __init__(self, current: str) -> None:
        self.current = current

    def describe(self, certificate_arn: str) -> CertificateDescription:
        return CertificateDescription(arn=certificate_arn, type="PRIVATE", status="ISSUED", serial=self.current,
                                      domain_name="web.internal.example", not_after=None, renewal_status=None,
                                      renewal_status_reason=None, key_algorithm="RSA_2048")

    def export(self, certificate_arn: str, passphrase: bytes) -> ExportedCertificate:
        raise AssertionError("the lease logic never exports")


def request(rollout_id: str, serial_hex: str, started: int = T0, operation: str = "acquire") -> LeaseInput:
    return LeaseInput(operation=operation, certificateArn=ARN, rolloutId=rollout_id,  # type: ignore[arg-type]
                      executionArn=execution_arn(rollout_id), serial=serial_hex,
                      executionStartTime=datetime.fromtimestamp(started, UTC).isoformat())


@pytest.fixture(params=["fake", "dynamodb"])
def leases(request: pytest.FixtureRequest) -> Iterator[ports.Leases]:
    """The fake, and the DynamoDB adapter on moto's DynamoDB (the rollout table's key schema)."""
    if request.param == "fake":
        yield FakeLeases()
        return
    with mock_aws():
        dynamodb = boto3.resource("dynamodb", region_name="eu-west-1")
        dynamodb.create_table(TableName="rollouts", BillingMode="PAY_PER_REQUEST",
                              AttributeDefinitions=[{"AttributeName": "rolloutId", "AttributeType": "S"},
                                                    {"AttributeName": "targetId", "AttributeType": "S"}],
                              KeySchema=[{"AttributeName": "rolloutId", "KeyType": "HASH"},
                                         {"AttributeName": "targetId", "KeyType": "RANGE"}])
        yield DynamoLeases("rollouts", dynamodb=dynamodb)


# --------------------------------------------------------------------------- port rules


def test_acquire_free_then_held_then_ours_again(leases: ports.Leases) -> None:
    lease = leases.acquire(ARN, "r1", execution_arn("r1"), serial(1), now=T0, duration_seconds=60)
    assert (lease.holder, lease.serial, lease.expires_at, lease.superseded) == ("r1", serial(1), T0 + 60, False)
    with pytest.raises(ports.LeaseHeld) as held:
        leases.acquire(ARN, "r2", execution_arn("r2"), serial(2), now=T0 + 59, duration_seconds=60)
    assert held.value.lease is not None and held.value.lease.holder == "r1"
    assert "r1" in str(held.value) and serial(1) in str(held.value)
    again = leases.acquire(ARN, "r1", execution_arn("r1"), serial(1), now=T0 + 30, duration_seconds=60)
    assert again.holder == "r1" and again.expires_at == T0 + 90


def test_an_expired_lease_is_taken_and_its_mark_cleared(leases: ports.Leases) -> None:
    leases.acquire(ARN, "crashed", execution_arn("crashed"), serial(1), now=T0, duration_seconds=60)
    assert leases.mark_superseded(ARN, "crashed", "r2", serial(2))
    taken = leases.acquire(ARN, "r2", execution_arn("r2"), serial(2), now=T0 + 60, duration_seconds=60)
    assert (taken.holder, taken.serial, taken.superseded) == ("r2", serial(2), False)
    assert leases.renew(ARN, "crashed", now=T0 + 61, duration_seconds=60) is None


def test_renew_mark_and_release_are_the_holders_only(leases: ports.Leases) -> None:
    assert leases.renew(ARN, "r1", now=T0, duration_seconds=60) is None  # no lease: nothing created
    assert leases.get(ARN) is None
    leases.acquire(ARN, "r1", execution_arn("r1"), serial(1), now=T0, duration_seconds=60)
    assert not leases.mark_superseded(ARN, "someone-else", "r2", serial(2))
    assert leases.mark_superseded(ARN, "r1", "r2", serial(2))
    renewed = leases.renew(ARN, "r1", now=T0 + 10, duration_seconds=60)
    assert renewed is not None and renewed.expires_at == T0 + 70
    assert (renewed.superseded_by_rollout, renewed.superseded_by_serial) == ("r2", serial(2))  # mark kept
    assert not leases.release(ARN, "r2")
    assert leases.release(ARN, "r1")
    assert leases.get(ARN) is None
    assert not leases.release(ARN, "r1")


def test_the_dynamodb_item_holds_references_only() -> None:
    with mock_aws():
        dynamodb = boto3.resource("dynamodb", region_name="eu-west-1")
        table = dynamodb.create_table(
            TableName="rollouts", BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "rolloutId", "AttributeType": "S"},
                                  {"AttributeName": "targetId", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "rolloutId", "KeyType": "HASH"},
                       {"AttributeName": "targetId", "KeyType": "RANGE"}])
        DynamoLeases("rollouts", dynamodb=dynamodb).acquire(ARN, "r1", execution_arn("r1"), serial(1), now=T0,
                                                            duration_seconds=60)
        item = table.get_item(Key=lease_key(ARN))["Item"]
    assert item["rolloutId"] == f"lease#{ARN}" and item["expiresAt"] == T0 + 60  # also the table's TTL attribute
    assert set(item) == {"rolloutId", "targetId", "holder", "executionArn", "serial", "acquiredAt", "expiresAt"}


# --------------------------------------------------------------------------- acquire rules


def test_a_newer_request_marks_the_holder_superseded_and_waits(leases: ports.Leases) -> None:
    acm = CurrentSerial(serial(1))
    first = acquire_lease(request("r1", serial(1)), settings=SETTINGS, leases=leases, certificates=acm, now=T0)
    assert first.state == "ACQUIRED" and first.holder == "r1"
    acm.current = serial(2)  # ACM renewed
    second = acquire_lease(request("r2", serial(2), started=T0 + 2), settings=SETTINGS, leases=leases,
                           certificates=acm, now=T0 + 10)
    assert (second.state, second.holder, second.holderSerial) == ("WAITING", "r1", serial(1))
    assert 1 <= second.retryAfterSeconds <= 30
    held = leases.get(ARN)
    assert held is not None and (held.superseded_by_rollout, held.superseded_by_serial) == ("r2", serial(2))
    # The holder installs on no further target, but may still restore one it changed.
    with pytest.raises(Superseded, match=rf"superseded by serial {serial(2)} \(rollout r2\)"):
        fence_target_command("install", ARN, "r1", settings=INSTALL, leases=leases, now=T0 + 11)
    assert fence_target_command("rollback", ARN, "r1", settings=INSTALL, leases=leases, now=T0 + 12).holder == "r1"
    assert release_lease(request("r1", serial(1), operation="release"), leases=leases).released
    third = acquire_lease(request("r2", serial(2), started=T0 + 2), settings=SETTINGS, leases=leases,
                          certificates=acm, now=T0 + 20)
    assert third.state == "ACQUIRED"
    assert fence_target_command("install", ARN, "r2", settings=INSTALL, leases=leases, now=T0 + 21).holder == "r2"


def test_a_forced_redeploy_of_the_same_serial_takes_the_lease_like_any_rollout(leases: ports.Leases) -> None:
    acm = CurrentSerial(serial(1))
    acquire_lease(request("r1", serial(1)), settings=SETTINGS, leases=leases, certificates=acm, now=T0)
    forced = acquire_lease(request("force", serial(1)), settings=SETTINGS, leases=leases, certificates=acm,
                           now=T0 + 5)
    assert forced.state == "WAITING"
    with pytest.raises(Superseded):
        fence_target_command("install", ARN, "r1", settings=INSTALL, leases=leases, now=T0 + 6)


def test_a_stale_serial_is_exported_again_and_takes_no_lease(leases: ports.Leases) -> None:
    acm = CurrentSerial(serial(2))
    result = acquire_lease(request("r1", serial(1)), settings=SETTINGS, leases=leases, certificates=acm, now=T0)
    assert (result.state, result.currentSerial, result.serial) == ("STALE", serial(2), serial(1))
    assert leases.get(ARN) is None


def test_serials_compare_as_integers() -> None:
    acm = CurrentSerial("00:" + serial(1))  # a leading zero byte: the same serial
    result = acquire_lease(request("r1", serial(1)), settings=SETTINGS, leases=FakeLeases(), certificates=acm, now=T0)
    assert result.state == "ACQUIRED"


def test_a_crashed_holders_lease_expires_and_the_next_rollout_proceeds(leases: ports.Leases) -> None:
    acm = CurrentSerial(serial(1))
    acquire_lease(request("crashed", serial(1)), settings=SETTINGS, leases=leases, certificates=acm, now=T0)
    waiting = acquire_lease(request("r2", serial(1), started=T0 + 1), settings=SETTINGS, leases=leases,
                            certificates=acm, now=T0 + 50)
    assert waiting.state == "WAITING" and waiting.retryAfterSeconds <= LEASE_SECONDS - 50 + 1
    later = acquire_lease(request("r2", serial(1), started=T0 + 1), settings=SETTINGS, leases=leases,
                          certificates=acm, now=T0 + LEASE_SECONDS)
    assert later.state == "ACQUIRED"
    with pytest.raises(Superseded, match="holds the lease"):  # the crashed one, should it wake up
        fence_target_command("install", ARN, "crashed", settings=INSTALL, leases=leases, now=T0 + LEASE_SECONDS + 1)


def test_the_wait_is_bounded(leases: ports.Leases) -> None:
    acm = CurrentSerial(serial(1))
    acquire_lease(request("r1", serial(1)), settings=SETTINGS, leases=leases, certificates=acm, now=T0)
    leases.renew(ARN, "r1", now=T0 + SETTINGS.max_wait_seconds, duration_seconds=LEASE_SECONDS)
    result = acquire_lease(request("r2", serial(1), started=T0), settings=SETTINGS, leases=leases, certificates=acm,
                           now=T0 + SETTINGS.max_wait_seconds + 1)
    assert result.state == "GAVE_UP" and result.detail and "r1" in result.detail


@pytest.mark.parametrize(("waited", "expires_in", "expected"), [
    (0, 100, 1), (8, 100, 2), (400, 100, 30), (400, 3, 4), (400, -5, 30), (40, 0, 1)])
def test_retry_after_grows_with_the_wait_and_stops_at_the_holders_expiry(waited: int, expires_in: int,
                                                                        expected: int) -> None:
    assert retry_after_seconds(waited, expires_in) == expected


def test_fence_without_any_lease_is_lease_not_held(leases: ports.Leases) -> None:
    with pytest.raises(LeaseNotHeld):
        fence_target_command("install", ARN, "r1", settings=INSTALL, leases=leases, now=T0)


def test_release_for_execution_releases_only_that_executions_lease(leases: ports.Leases) -> None:
    leases.acquire(ARN, "r1", execution_arn("r1"), serial(1), now=T0, duration_seconds=60)
    assert not release_for_execution(execution_arn("r2"), ARN, leases=leases)
    assert release_for_execution(execution_arn("r1"), ARN, leases=leases)
    assert leases.get(ARN) is None
    assert not release_for_execution(execution_arn("r1"), ARN, leases=leases)


# --------------------------------------------------------------------------- outcome and notification


def iteration(error: str, cause: str) -> IterationState:
    return IterationState(targetId="web-2", certificateArn=ARN, rolloutId="r1", expectedSerial=serial(1),
                          secretArn="arn:aws:secretsmanager:eu-west-1:123456789012:secret:x", secretVersionId="v",
                          taskTimeoutSeconds=120, trustAnchor="-----BEGIN CERTIFICATE-----\n", error=StateError(Error=error, Cause=cause))


def test_a_superseded_install_is_a_superseded_target_naming_the_serial() -> None:
    cause = '{"errorType": "Superseded", "errorMessage": "superseded by serial 5a:00:00:02 (rollout r2), ..."}'
    outcome, reason, detail = classify(iteration("Superseded", cause))
    assert (outcome, reason) == (TargetOutcome.SUPERSEDED, "superseded")
    assert detail and detail.startswith("superseded by serial 5a:00:00:02 (rollout r2)")
    assert classify(iteration("LeaseNotHeld", '{"errorMessage": "x"}'))[:2] == (TargetOutcome.FAILED, "lease-not-held")


def line(target_id: str, outcome: TargetOutcome) -> TargetLine:
    return TargetLine(targetId=target_id, outcome=outcome)


@pytest.mark.parametrize(("outcomes", "expected"), [
    ([TargetOutcome.VERIFIED, TargetOutcome.SUPERSEDED], RolloutOutcome.SUPERSEDED),
    ([TargetOutcome.SUPERSEDED, TargetOutcome.SUPERSEDED], RolloutOutcome.SUPERSEDED),
    ([TargetOutcome.VERIFIED, TargetOutcome.SUPERSEDED, TargetOutcome.FAILED], RolloutOutcome.PARTIAL),
    ([TargetOutcome.SUPERSEDED, TargetOutcome.ROLLED_BACK], RolloutOutcome.FAILED),
    ([TargetOutcome.VERIFIED, TargetOutcome.VERIFIED], RolloutOutcome.ROLLED_OUT),
])
def test_superseded_targets_are_neither_verified_nor_failed(outcomes: list[TargetOutcome],
                                                            expected: RolloutOutcome) -> None:
    assert rollout_outcome([line(f"t{i}", o) for i, o in enumerate(outcomes)]) == expected


def test_the_notification_names_the_superseding_serial_and_the_exported_serial() -> None:
    records = FakeRolloutRecords()
    base = {"rolloutId": "r1", "certificateArn": ARN, "expectedSerial": serial(3), "recordedAt": "2027-01-01T00:00:00",
            "expiresAt": T0}
    records.put({**base, "targetId": "web-1", "outcome": "VERIFIED", "servedSerialAfter": serial(3)})
    records.put({**base, "targetId": "web-2", "outcome": "SUPERSEDED", "reason": "superseded",
                 "detail": f"superseded by serial {serial(4)} (rollout r2), which installs on this target next"})
    rollout = RolloutState(decision=Decision.ROLLOUT, rolloutId="r1", certificateArn=ARN, serial=serial(2),
                           targetIds=["web-1", "web-2"], domainName="web.internal.example")
    notifications = FakeNotifications()
    result = notify(rollout, records=records, notifications=notifications, staging=FakeStaging(),
                    secret_prefix="acm-cert-rollout")
    assert (result.outcome, result.verified, result.superseded, result.failed) == (RolloutOutcome.SUPERSEDED, 1, 1, 0)
    assert result.expectedSerial == serial(3)  # the exported serial the targets got, not ValidateEvent's
    [message] = notifications.messages
    assert message["subject"].startswith("[SUPERSEDED] web.internal.example: 1/2 targets serve " + serial(3))
    assert f"web-2  SUPERSEDED (superseded): superseded by serial {serial(4)}" in message["message"]
    assert "1 verified, 0 rolled back, 0 failed, 1 superseded, of 2" in message["message"]
    assert "manual redeploy" not in message["message"]  # nothing for the operator to fix


def test_a_lease_that_was_never_acquired_is_a_failed_rollout_with_nothing_installed() -> None:
    rollout = RolloutState(decision=Decision.LEASE_FAILED, rolloutId="r2", certificateArn=ARN, serial=serial(1),
                           reason="the lease was still held by rollout r1", domainName="web.internal.example")
    subject, body = format_message(RolloutOutcome.FAILED, rollout, [])
    assert subject == "[FAILED] web.internal.example: lease not acquired, nothing installed"
    assert "still held by rollout r1" in body and "Nothing was installed" in body
    result = notify(rollout, records=FakeRolloutRecords(), notifications=FakeNotifications(), staging=FakeStaging(),
                    secret_prefix="acm-cert-rollout")
    assert result.outcome == RolloutOutcome.FAILED


# --------------------------------------------------------------------------- the model test


COMMAND_SECONDS = 10  # how long a command runs on the node: well inside one lease (LeaseSettings.safe_lease_seconds)


@dataclass
class Rollout:
    """One execution, step by step as the state machine runs it (targets one at a time)."""

    rollout_id: str
    started: int
    phase: str = "export"  # export -> acquire -> install <-> command -> release -> done | crashed
    serial: str | None = None
    next_attempt: int = 0
    target: int = 0
    outcomes: dict[str, str] = field(default_factory=dict)


@dataclass
class World:
    acm: CurrentSerial
    leases: FakeLeases
    targets: list[str]
    now: int = T0
    renewals: int = 1
    sent: list[tuple[int, str, str, int]] = field(default_factory=list)  # (time, rollout, target, serial rank)
    in_flight: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # rollout -> (target, rank, ends at)
    served: dict[str, int] = field(default_factory=dict)  # target -> serial rank it serves
    overlaps: list[str] = field(default_factory=list)

    def rank(self, serial_hex: str) -> int:
        return next(n for n in range(1, self.renewals + 1) if serial(n) == serial_hex)

    def finish_commands(self, until: int, rollouts: list[Rollout]) -> None:
        """The nodes finish every command due by ``until`` (a crashed execution's too)."""
        for rid, (target, rank, ends) in list(self.in_flight.items()):
            if ends <= until:
                assert rank >= self.served.get(target, 0), f"{target} went back from {self.served[target]} to {rank}"
                self.served[target] = rank
                del self.in_flight[rid]
                for r in rollouts:
                    if r.rollout_id == rid and r.phase == "command":
                        r.phase = "install" if r.target < len(self.targets) else "release"


def step(world: World, r: Rollout) -> None:
    """Advance one rollout by one state (each Lambda call is one atomic step)."""
    if r.phase == "export":  # ExportCertificate exports ACM's current serial
        r.serial, r.phase = world.acm.current, "acquire"
    elif r.phase == "acquire" and world.now >= r.next_attempt:
        assert r.serial is not None
        result = acquire_lease(request(r.rollout_id, r.serial, started=r.started), settings=SETTINGS,
                               leases=world.leases, certificates=world.acm, now=world.now)
        if result.state == "ACQUIRED":
            r.phase = "install"
        elif result.state == "STALE":
            r.phase = "export"
        elif result.state == "WAITING":
            r.next_attempt = world.now + result.retryAfterSeconds
        else:
            r.phase = "done"
    elif r.phase == "install":
        target = world.targets[r.target]
        r.target += 1
        r.phase = "install" if r.target < len(world.targets) else "release"
        try:
            fence_target_command("install", ARN, r.rollout_id, settings=INSTALL, leases=world.leases, now=world.now)
        except (Superseded, LeaseNotHeld) as e:
            r.outcomes[target] = type(e).__name__
            return
        # The fence and SendCommand are one Lambda invocation; the command then runs on the node.
        assert r.serial is not None
        others = [rid for rid in world.in_flight if rid != r.rollout_id]
        if others:
            world.overlaps.append(f"{r.rollout_id} sent to {target} while {others} had a command running")
        world.sent.append((world.now, r.rollout_id, target, world.rank(r.serial)))
        world.in_flight[r.rollout_id] = (target, world.rank(r.serial), world.now + COMMAND_SECONDS)
        r.outcomes[target], r.phase = "sent", "command"
    elif r.phase == "release":
        world.leases.release(ARN, r.rollout_id)
        r.phase = "done"


def run_model(seed: int, rollout_count: int, crashes: bool) -> tuple[World, list[Rollout]]:
    rng = random.Random(seed)
    world = World(acm=CurrentSerial(serial(1)), leases=FakeLeases(), targets=[f"t{i}" for i in range(4)])
    rollouts = [Rollout("r1", world.now)]
    for _ in range(5000):
        live = [r for r in rollouts if r.phase not in ("done", "crashed")]
        if not live and not world.in_flight and len(rollouts) == rollout_count:
            break
        choice = rng.random()
        if len(rollouts) < rollout_count and choice < 0.08:  # ACM renews; its event starts a rollout
            world.renewals += 1
            world.acm.current = serial(world.renewals)
            rollouts.append(Rollout(f"r{len(rollouts) + 1}", world.now))
        elif choice < 0.25 or not live:
            world.now += rng.randint(1, LEASE_SECONDS // 4)
            world.finish_commands(world.now, rollouts)
        elif crashes and choice < 0.27 and rng.random() < 0.3:
            rng.choice(live).phase = "crashed"  # aborted execution: its lease is never released
        else:
            step(world, rng.choice(live))
    else:
        raise AssertionError(f"seed {seed}: the rollouts did not finish: {rollouts}")
    return world, rollouts


@pytest.mark.parametrize("rollout_count", [2, 3])
@pytest.mark.parametrize("crashes", [False, True], ids=["no-crash", "crashes"])
def test_model_no_older_serial_is_sent_after_a_newer_one(rollout_count: int, crashes: bool) -> None:
    superseded_runs = 0
    for seed in range(300):
        world, rollouts = run_model(seed, rollout_count, crashes)
        ranks = [rank for _, _, _, rank in world.sent]
        assert ranks == sorted(ranks), f"seed {seed}: an older serial was sent after a newer one: {world.sent}"
        assert not world.overlaps, f"seed {seed}: two writers at once: {world.overlaps}"
        for rid in {rid for _, rid, _, _ in world.sent}:  # one writer at a time: a rollout's sends are contiguous
            positions = [i for i, (_, r, _, _) in enumerate(world.sent) if r == rid]
            assert positions == list(range(positions[0], positions[-1] + 1)), f"seed {seed}: interleaved {world.sent}"
        superseded_runs += any("Superseded" in r.outcomes.values() for r in rollouts)
        if not crashes:  # liveness: the newest serial ends on every target
            assert world.served == dict.fromkeys(world.targets, world.renewals), f"seed {seed}: {world.served}"
    assert superseded_runs > 10, "the interleavings never superseded a rollout: the test would prove little"


def test_model_the_lease_is_free_at_the_end_without_crashes() -> None:
    for seed in range(50):
        world, _ = run_model(seed, 3, crashes=False)
        assert world.leases.leases == {}, f"seed {seed}: {world.leases.leases}"
