"""VerifyTarget (logic/verify.py) on the fakes: VERIFIED only when three handshakes in a row
show the expected serial (compared as integers), WAITING until the deadline, then
NOT_SERVING (mismatch, failed handshake) or UNREACHABLE (no connection)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rollout_core.domain.serials import canonical_serial
from rollout_core.logic.verify import STABLE_PROBES, verify_target
from rollout_core.ports import TargetNotFound
from rollout_core.probe import TargetUnreachable, TlsHandshakeFailed
from rollout_core.settings import VerifySettings

from tests.fakes.world import ARN, World, target, world
from tests.unit.pki_fixtures import pki

SETTINGS = VerifySettings(inventory_table="inventory", verify_timeout_seconds=60, probe_timeout_seconds=1.5)
SINCE = "2026-11-28T06:05:00Z"
STARTED = datetime(2026, 11, 28, 6, 5, tzinfo=UTC)
EARLY, LATE = STARTED + timedelta(seconds=10), STARTED + timedelta(seconds=60)
NEW, OLD = pki().leaf_cert, pki("RSA_2048", label="old").leaf_cert
HOST, PORT = "127.0.0.1", 8443


@pytest.fixture
def w() -> World:
    fakes = world()
    fakes.inventory.add(target("web-1", port=PORT))
    return fakes


def run(w: World, now: datetime, expected: str | None = None):
    return verify_target(ARN, "web-1", expected or canonical_serial(NEW.serial_number), SINCE, settings=SETTINGS,
                         now=now, inventory=w.inventory, probe=w.probe)


def test_new_serial_served_stably_is_verified(w: World) -> None:
    w.probe.script(HOST, PORT, NEW)
    result = run(w, EARLY)
    assert (result.state, result.servedSerial) == ("VERIFIED", canonical_serial(NEW.serial_number))
    assert len(w.probe.calls) == STABLE_PROBES
    assert all(args == {"host": HOST, "port": PORT, "sni": "web.internal.example", "timeout": 1.5}
               for _, args in w.probe.calls)


def test_serial_compared_as_an_integer_not_as_text(w: World) -> None:
    w.probe.script(HOST, PORT, NEW)
    assert run(w, EARLY, expected=str(NEW.serial_number)).state == "VERIFIED"  # decimal, as moto reports it
    assert run(w, EARLY, expected=canonical_serial(NEW.serial_number).upper()).state == "VERIFIED"


def test_an_old_worker_answering_between_new_ones_is_not_verified_yet(w: World) -> None:
    w.probe.script(HOST, PORT, NEW, OLD, NEW)
    result = run(w, EARLY)
    assert result.state == "WAITING" and len(w.probe.calls) == 2
    assert result.servedSerial == canonical_serial(OLD.serial_number)


def test_old_serial_is_waiting_before_the_deadline_and_not_serving_after(w: World) -> None:
    w.probe.script(HOST, PORT, OLD)
    early, late = run(w, EARLY), run(w, LATE)
    assert early.state == "WAITING" and late.state == "NOT_SERVING"
    assert f"served {canonical_serial(OLD.serial_number)} (SNI web.internal.example)" in late.detail


def test_unreachable_is_waiting_then_unreachable_not_a_mismatch(w: World) -> None:
    w.probe.script(HOST, PORT, TargetUnreachable(f"{HOST}:{PORT}: timed out", reason="timeout"))
    assert run(w, EARLY).state == "WAITING"
    late = run(w, LATE)
    assert (late.state, late.servedSerial) == ("UNREACHABLE", None)
    assert "timed out" in late.detail


def test_a_failing_handshake_ends_not_serving(w: World) -> None:
    w.probe.script(HOST, PORT, TlsHandshakeFailed(f"{HOST}:{PORT}: alert unrecognized_name"))
    late = run(w, LATE)
    assert late.state == "NOT_SERVING" and late.detail.startswith("TLS handshake failed")


def test_a_target_removed_meanwhile_is_target_not_found(w: World) -> None:
    w.inventory.delete(ARN, "web-1")
    with pytest.raises(TargetNotFound):
        run(w, EARLY)
    assert w.probe.calls == []
