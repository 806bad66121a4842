"""VerifyTarget (logic/verify.py) on the fakes: VERIFIED only when ``probes`` handshakes (default
3) to the endpoint and to each backend all serve the expected serial (compared as integers) with
a chain to the issuing CA's root and the right name; WAITING until the deadline for an old
serial or no connection, then NOT_SERVING (mismatch, failed handshake) or UNREACHABLE; at once
NOT_SERVING with the reason when the new serial is served but a client would refuse it."""

from __future__ import annotations

import datetime as dt
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from rollout_core.domain.serials import canonical_serial
from rollout_core.logic.verify import verify_target
from rollout_core.ports import TargetNotFound
from rollout_core.probe import TargetUnreachable, TlsHandshakeFailed
from rollout_core.settings import VerifySettings

from tests.fakes.world import ARN, World, target, world
from tests.unit.pki_fixtures import pki

SETTINGS = VerifySettings(inventory_table="inventory", verify_timeout_seconds=60, probe_timeout_seconds=1.5)
SINCE = "2026-11-28T06:05:00Z"
STARTED = datetime(2026, 11, 28, 6, 5, tzinfo=UTC)
EARLY, LATE = STARTED + timedelta(seconds=10), STARTED + timedelta(seconds=60)
P = pki()
NEW, OLD = P.served, pki("RSA_2048", label="old").served
NEW_SERIAL = canonical_serial(P.leaf_cert.serial_number)
HOST, PORT = "127.0.0.1", 8443


@pytest.fixture
def w() -> World:
    fakes = world()
    fakes.inventory.add(target("web-1", port=PORT))
    return fakes


def run(w: World, now: datetime, expected: str | None = None):
    return verify_target(ARN, "web-1", expected or NEW_SERIAL, SINCE, P.root_pem, settings=SETTINGS,
                         now=now, inventory=w.inventory, probe=w.probe)


def leaf(sans: list[str]) -> x509.Certificate:
    """A new leaf (same serial as the rollout's) from the same intermediate, for other names."""
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, sans[0])]))
            .issuer_name(P.intermediate_cert.subject).public_key(P.leaf_key.public_key())
            .serial_number(P.leaf_cert.serial_number)
            .not_valid_before(EARLY - dt.timedelta(minutes=5)).not_valid_after(EARLY + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False)
            .sign(P.intermediate_key, P.leaf_cert.signature_hash_algorithm))  # type: ignore[arg-type]


def test_new_serial_served_stably_is_verified(w: World) -> None:
    w.probe.script(HOST, PORT, NEW)
    result = run(w, EARLY)
    assert (result.state, result.servedSerial, result.reason, result.chainLength) == ("VERIFIED", NEW_SERIAL, None, 2)
    assert result.backends is None
    assert w.probe.handshakes() == 3  # Target.probes default
    assert all(args == {"host": HOST, "port": PORT, "sni": "web.internal.example", "timeout": 1.5}
               for _, args in w.probe.calls)


def test_probes_is_the_number_of_handshakes(w: World) -> None:
    w.inventory.add(target("web-1", port=PORT, probes=7))
    w.probe.script(HOST, PORT, NEW)
    assert run(w, EARLY).state == "VERIFIED" and w.probe.handshakes() == 7


def test_serial_compared_as_an_integer_not_as_text(w: World) -> None:
    w.probe.script(HOST, PORT, NEW)
    assert run(w, EARLY, expected=str(P.leaf_cert.serial_number)).state == "VERIFIED"  # decimal, as moto reports it
    assert run(w, EARLY, expected=NEW_SERIAL.upper()).state == "VERIFIED"


def test_an_old_worker_answering_between_new_ones_is_not_verified_yet(w: World) -> None:
    w.probe.script(HOST, PORT, NEW, OLD, NEW)
    result = run(w, EARLY)
    assert (result.state, result.reason) == ("WAITING", "not-serving-new-serial") and w.probe.handshakes() == 2
    assert result.servedSerial == canonical_serial(OLD[0].serial_number)


def test_old_serial_is_waiting_before_the_deadline_and_not_serving_after(w: World) -> None:
    w.probe.script(HOST, PORT, OLD)
    early, late = run(w, EARLY), run(w, LATE)
    assert early.state == "WAITING" and (late.state, late.reason) == ("NOT_SERVING", "not-serving-new-serial")
    assert f"served {canonical_serial(OLD[0].serial_number)}" in late.detail
    assert "(SNI web.internal.example)" in late.detail


def test_unreachable_is_waiting_then_unreachable_not_a_mismatch(w: World) -> None:
    w.probe.script(HOST, PORT, TargetUnreachable(f"{HOST}:{PORT}: timed out", reason="timeout"))
    assert run(w, EARLY).state == "WAITING"
    late = run(w, LATE)
    assert (late.state, late.servedSerial, late.reason) == ("UNREACHABLE", None, "unreachable")
    assert "timed out" in late.detail


def test_a_failing_handshake_ends_not_serving(w: World) -> None:
    w.probe.script(HOST, PORT, TlsHandshakeFailed(f"{HOST}:{PORT}: alert unrecognized_name"))
    assert run(w, EARLY).state == "WAITING"
    late = run(w, LATE)
    assert late.state == "NOT_SERVING" and late.detail.startswith("not-serving-new-serial: TLS handshake failed")


def test_the_new_leaf_without_its_intermediate_is_chain_invalid_at_once(w: World) -> None:
    w.probe.script(HOST, PORT, P.leaf_cert)  # leaf only
    result = run(w, EARLY)  # long before the deadline: waiting cannot fix it
    assert (result.state, result.reason, result.chainLength) == ("NOT_SERVING", "chain-invalid", 1)
    assert "the server sent 1 certificate" in result.detail and "neither sent nor a trust anchor" in result.detail
    assert w.probe.handshakes() == 1


def test_a_wildcard_two_labels_short_is_a_hostname_mismatch_at_once(w: World) -> None:
    w.inventory.add(target("web-1", port=PORT, sni="a.b.svc.example.internal"))
    w.probe.script(HOST, PORT, (leaf(["*.svc.example.internal"]), P.intermediate_cert))
    result = run(w, EARLY)
    assert (result.state, result.reason) == ("NOT_SERVING", "hostname-mismatch")
    assert "*.svc.example.internal" in result.detail


def test_a_wildcard_one_label_deep_is_verified(w: World) -> None:
    w.inventory.add(target("web-1", port=PORT, sni="a.svc.example.internal"))
    w.probe.script(HOST, PORT, (leaf(["*.svc.example.internal"]), P.intermediate_cert))
    assert run(w, EARLY).state == "VERIFIED"


def test_an_ip_target_without_sni_is_checked_against_ip_sans(w: World) -> None:
    w.inventory.add(target("web-1", port=PORT, sni=None))  # host 127.0.0.1: no SNI sent
    w.probe.script(HOST, PORT, NEW)  # the fixture leaf has DNS SANs only
    result = run(w, EARLY)
    assert (result.state, result.reason) == ("NOT_SERVING", "hostname-mismatch")
    assert w.probe.calls[0][1]["sni"] is None and "IP address" in result.detail


def test_a_chain_to_another_root_is_chain_invalid(w: World) -> None:
    w.probe.script(HOST, PORT, NEW)
    other = pki("RSA_2048", label="other")
    result = verify_target(ARN, "web-1", NEW_SERIAL, SINCE, other.root_pem, settings=SETTINGS, now=EARLY,
                           inventory=w.inventory, probe=w.probe)
    assert (result.state, result.reason) == ("NOT_SERVING", "chain-invalid")


def test_an_expired_leaf_is_expired(w: World) -> None:
    w.probe.script(HOST, PORT, NEW)
    result = run(w, P.leaf_cert.not_valid_after_utc + timedelta(days=1))
    assert (result.state, result.reason) == ("NOT_SERVING", "expired")


def test_every_backend_is_probed_and_a_stale_one_is_named(w: World) -> None:
    w.inventory.add(target("web-1", port=PORT, backends=["10.0.0.11:443", "10.0.0.12:443", "[fd00::13]:443"]))
    w.probe.script(HOST, PORT, NEW)
    w.probe.script("10.0.0.11", 443, NEW)
    w.probe.script("10.0.0.12", 443, OLD)  # never reloaded
    w.probe.script("fd00::13", 443, NEW)
    early, late = run(w, EARLY), run(w, LATE)
    assert early.state == "WAITING"
    assert (late.state, late.reason) == ("NOT_SERVING", "not-serving-new-serial")
    stale = canonical_serial(OLD[0].serial_number)
    assert f"backend 10.0.0.12:443 not-serving-new-serial (served {stale})" in late.detail
    assert [(b.endpoint, b.passed, b.servedSerial) for b in late.backends or []] == [
        ("10.0.0.11:443", True, NEW_SERIAL), ("10.0.0.12:443", False, stale), ("[fd00::13]:443", True, NEW_SERIAL)]
    assert late.servedSerial == NEW_SERIAL  # the load-balanced address itself served the new one
    assert all(args["sni"] == "web.internal.example" for _, args in w.probe.calls)  # the target's SNI everywhere
    # per verification: 3 handshakes to the endpoint and to each passing backend, 1 to the stale one
    assert w.probe.handshakes("10.0.0.12", 443) == 2 and w.probe.handshakes("10.0.0.11", 443) == 6


def test_all_backends_serving_is_verified(w: World) -> None:
    w.inventory.add(target("web-1", port=PORT, backends=["10.0.0.11:443", "10.0.0.12:443"]))
    for host, port in ((HOST, PORT), ("10.0.0.11", 443), ("10.0.0.12", 443)):
        w.probe.script(host, port, NEW)
    result = run(w, EARLY)
    assert result.state == "VERIFIED" and [b.passed for b in result.backends or []] == [True, True]
    assert w.probe.handshakes() == 9


def test_a_backend_with_a_broken_chain_ends_at_once(w: World) -> None:
    w.inventory.add(target("web-1", port=PORT, backends=["10.0.0.11:443"]))
    w.probe.script(HOST, PORT, NEW)
    w.probe.script("10.0.0.11", 443, P.leaf_cert)
    result = run(w, EARLY)
    assert (result.state, result.reason) == ("NOT_SERVING", "chain-invalid")
    assert result.detail.startswith("backend 10.0.0.11:443 chain-invalid")


def test_a_target_removed_meanwhile_is_target_not_found(w: World) -> None:
    w.inventory.delete(ARN, "web-1")
    with pytest.raises(TargetNotFound):
        run(w, EARLY)
    assert w.probe.calls == []
