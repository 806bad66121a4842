"""installer/install_bundle.py: one writer per target and a crash-safe change of the target's
set of files (issue 10, items 2 and 3).

- a kill (SIGKILL through the test hook) at every point of an install or rollback leaves the
  complete old set, the complete new set, or a journal that the NEXT command (install or
  rollback) completes or reverts before anything else; no staged file survives it;
- 200 concurrent installer processes with different bundles on one set of files: every run
  ends with a matching cert/key pair on disk and in the backup, and the newest bundle wins;
- the serial guard (by notBefore: ACM private certificate serials are random), ROLLOUT_ALLOW_OLDER;
- the cert/key pair check (RSA, EC P-256/P-384, an EC key without its public key) and a rollback
  that refuses a mismatched backup;
- the lock (lock-timeout), the state directory's ownership/mode check, the test hook's fences.
"""

from __future__ import annotations

import base64
import fcntl
import importlib.util
import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.unit.test_installer import INSTALLER, INSTALLER_PYTHON, Node, py

PK = "PRIVATE KEY"
BASE = datetime(2026, 1, 1, tzinfo=UTC)


def _load_installer():
    spec = importlib.util.spec_from_file_location("_install_bundle_under_test", INSTALLER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ib = _load_installer()


# --------------------------------------------------------------------------- bundles


class CA:
    def __init__(self, name: str = "Test Private CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (x509.CertificateBuilder().subject_name(self.name).issuer_name(self.name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(BASE - timedelta(days=365)).not_valid_after(BASE + timedelta(days=3650))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def issue(self, not_before: datetime, *, key=None, domain: str = "web.internal.example") -> Secret:
        key = key or ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
                .issuer_name(self.name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())  # random, as ACM's private certificates
                .not_valid_before(not_before).not_valid_after(not_before + timedelta(days=395))
                .sign(self.key, hashes.SHA256()))
        return Secret(cert, key, self.pem)


class Secret:
    def __init__(self, cert: x509.Certificate, key, chain: str) -> None:
        self.cert = cert
        self.key = key
        self.leaf_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        self.key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()).decode()
        self.chain = chain
        self.serial = ib.format_serial(cert.serial_number)

    def secret(self) -> dict:
        return {"certificate": self.leaf_pem, "chain": self.chain, "privateKey": self.key_pem,
                "serial": self.serial}


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA()


@pytest.fixture
def node(tmp_path) -> Node:
    return Node(tmp_path)


def files(node: Node) -> list[dict]:
    return [{"path": str(node.ssl / "fullchain.pem"), "content": "fullchain"},
            {"path": str(node.ssl / "privkey.pem"), "content": "key"}]


def live(node: Node) -> tuple[str | None, str | None]:
    """(leaf PEM, key PEM) on disk, None for a missing file."""
    chain, key = node.ssl / "fullchain.pem", node.ssl / "privkey.pem"
    leaf = chain.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n" \
        if chain.exists() else None
    return leaf, key.read_text() if key.exists() else None


def is_set(node: Node, secret: Secret) -> bool:
    return live(node) == (secret.leaf_pem, secret.key_pem)


def assert_matching_pair(leaf_pem: str, key_pem: str) -> None:
    cert = x509.load_pem_x509_certificate(leaf_pem.encode())
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert cert.public_key().public_bytes(serialization.Encoding.DER, spki) == \
        key.public_key().public_bytes(serialization.Encoding.DER, spki)


def no_stray_files(node: Node) -> None:
    """Nothing beside the live files (no staged key), no journal or pre-image in the state dir."""
    assert sorted(p.name for p in node.ssl.iterdir() if p.is_file()) in (
        [], ["fullchain.pem", "privkey.pem"]), sorted(p.name for p in node.ssl.iterdir())
    state = node.state / "web-1"
    if state.exists():
        assert set(p.name for p in state.iterdir()) <= {"lock", "backup.json"}, sorted(p.name for p in state.iterdir())


def killed_run(node: Node, action: str, target: dict, fault: str, **kw) -> subprocess.CompletedProcess:
    env = node.env(action, target, extra_env={"CERT_ROLLOUT_TEST_HOOKS": "1", "CERT_ROLLOUT_FAULT": fault},
                   **kw)
    proc = subprocess.run([INSTALLER_PYTHON, str(INSTALLER)], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    assert "ROLLOUT_RESULT" not in proc.stdout  # killed: no result line
    assert PK not in proc.stdout + proc.stderr
    return proc


def recorder(node: Node, name: str) -> list[str]:
    return py(f"open({str(node.tmp / name)!r}, 'a').write('x')")


def count(node: Node, name: str) -> int:
    path = node.tmp / name
    return len(path.read_text()) if path.exists() else 0


# --------------------------------------------------------------------------- kill points

INSTALL_POINTS = ["after-journal-install", "after-stage-rename", "after-rename-1", "after-rename-2",
                  "before-reload", "after-reload", "in-commit-install"]


@pytest.fixture
def two_installed(node: Node, ca: CA) -> dict:
    """A target where bundle A was installed over bundle O (backup = O), and bundle B ready."""
    o, a, b = (ca.issue(BASE + timedelta(days=d)) for d in (0, 30, 60))
    for s in (o, a):
        node.put_secret(s.secret())
        assert node.run("install", node.target(files(node)))[0] == 0
    node.put_secret(b.secret())
    return {"O": o, "A": a, "B": b}


@pytest.mark.parametrize("point", INSTALL_POINTS)
def test_kill_during_install_then_next_install_recovers_first(node: Node, two_installed: dict, point: str) -> None:
    a, b = two_installed["A"], two_installed["B"]
    target = node.target(files(node), test=recorder(node, "tests"), reload=recorder(node, "reloads"))
    killed_run(node, "install", target, "crash-" + point)
    journal = node.state / "web-1" / "journal.json"
    # on disk: the complete old set, the complete new set, or a journal naming the change
    assert is_set(node, a) or is_set(node, b) or journal.exists()
    if point == "after-rename-1":
        assert journal.exists() and live(node) == (b.leaf_pem, a.key_pem)  # the half-done swap
        assert [p.name for p in node.ssl.iterdir() if ".rollout-" in p.name]  # B's staged key beside

    code, result = node.run("install", target, expected_serial=b.serial)
    assert code == 0, result
    recovered = result.get("recovered")
    assert recovered is not None and recovered["txn"], result
    assert recovered["result"] == "reverted", recovered
    assert recovered["pairCheck"] == "ok" and recovered["reload-after-recovery"] == "ok"
    assert recovered["serial"] == b.serial and recovered["action"] == "install"
    assert is_set(node, b)
    assert_matching_pair(*live(node))
    backup = node.backup()
    # one generation: the set before the install that committed last (A)
    assert backup[str(node.ssl / "privkey.pem")].decode() == a.key_pem
    assert backup[str(node.ssl / "fullchain.pem")].decode().startswith(a.leaf_pem)
    no_stray_files(node)


@pytest.mark.parametrize("point", ["after-rename-1", "after-rename-2", "before-reload", "after-reload"])
def test_kill_during_install_then_rollback_restores_the_old_set_and_stops_there(
        node: Node, two_installed: dict, point: str) -> None:
    a, b = two_installed["A"], two_installed["B"]
    target = node.target(files(node), reload=recorder(node, "reloads"))
    killed_run(node, "install", target, "crash-" + point)
    code, result = node.run("rollback", target, expected_serial=b.serial)
    assert code == 0, result
    assert result["recovered"]["result"] == "reverted"
    assert is_set(node, a)  # the set before B's install, not O (the older backup generation)
    assert count(node, "reloads") >= 1  # the server re-reads what is on disk
    no_stray_files(node)


def test_kill_before_any_rename_then_rollback_of_that_serial_changes_nothing(node: Node, two_installed: dict) -> None:
    a, b = two_installed["A"], two_installed["B"]
    killed_run(node, "install", node.target(files(node)), "crash-after-stage-rename")
    code, result = node.run("rollback", node.target(files(node)), expected_serial=b.serial)
    assert code == 0, result
    assert result["recovered"]["result"] == "reverted"
    assert is_set(node, a)
    no_stray_files(node)


@pytest.mark.parametrize("point", ["after-journal-rollback", "after-stage-restore", "after-restore-1",
                                   "in-commit-rollback"])
def test_kill_during_rollback_then_next_rollback_completes(node: Node, two_installed: dict, point: str) -> None:
    o, a = two_installed["O"], two_installed["A"]
    target = node.target(files(node))
    killed_run(node, "rollback", target, "crash-" + point, expected_serial=a.serial)
    assert is_set(node, o) or is_set(node, a) or (node.state / "web-1" / "journal.json").exists()
    code, result = node.run("rollback", target, expected_serial=a.serial)
    assert code == 0, result
    assert is_set(node, o)
    assert_matching_pair(*live(node))
    no_stray_files(node)


def test_a_kill_during_the_recovery_itself_is_recovered_by_the_command_after(node: Node, two_installed: dict) -> None:
    a, b = two_installed["A"], two_installed["B"]
    target = node.target(files(node))
    killed_run(node, "install", target, "crash-after-rename-1")
    killed_run(node, "install", target, "crash-after-revert-1")  # killed while putting A back
    assert (node.state / "web-1" / "journal.json").exists()
    code, result = node.run("rollback", target, expected_serial=b.serial)
    assert code == 0 and result["recovered"]["result"] == "reverted", result
    assert is_set(node, a)
    no_stray_files(node)


def test_a_legacy_staged_key_beside_the_file_is_removed_by_the_next_command(node: Node, ca: CA) -> None:
    s = ca.issue(BASE)
    leftover = node.ssl / "privkey.pem.rollout-new"
    leftover.write_text(s.key_pem)
    node.put_secret(s.secret())
    assert node.run("install", node.target(files(node)))[0] == 0
    assert not leftover.exists()


# --------------------------------------------------------------------------- concurrency

FAST_AWS = "#!/bin/sh\ncat \"$FAKE_SECRET_FILE\"\n"


@pytest.mark.timeout(120)
def test_200_concurrent_installs_each_end_with_a_matching_pair_and_the_newest_wins(node: Node, ca: CA) -> None:
    (node.bin / "aws").write_text(FAST_AWS)
    runs = 200
    secrets = [ca.issue(BASE + timedelta(minutes=i)) for i in range(runs)]
    order = list(range(runs))
    random.Random(10).shuffle(order)
    target = node.target(files(node))
    for i in order:
        (node.tmp / f"secret-{i}.json").write_text(json.dumps(secrets[i].secret()))
    # one shell starts every run at once (cheap forks), each with its own bundle
    launcher = "".join(f'FAKE_SECRET_FILE="$D/secret-{i}.json" "$PY" -S "$INSTALLER" >"$D/out-{i}" 2>/dev/null &\n'
                       for i in order) + "wait\n"
    env = {**node.env("install", target), "D": str(node.tmp), "PY": INSTALLER_PYTHON, "INSTALLER": str(INSTALLER)}
    started, cpu = time.monotonic(), _children_cpu()
    subprocess.run(["/bin/sh", "-c", launcher], env=env, check=True, timeout=110)
    outcomes: dict[str, int] = {}
    for i in order:
        out = (node.tmp / f"out-{i}").read_text()
        result = json.loads(out.splitlines()[-1][len("ROLLOUT_RESULT "):])
        assert result["exitCode"] in (0, 17), result  # ok, or refused as older than what was installed
        assert result.get("reason") in (None, "older-than-installed"), result
        outcomes[result["status"]] = outcomes.get(result["status"], 0) + 1
    elapsed = time.monotonic() - started
    assert outcomes.get("ok", 0) >= 1
    leaf, key = live(node)
    assert leaf and key
    assert_matching_pair(leaf, key)
    assert (leaf, key) == (secrets[-1].leaf_pem, secrets[-1].key_pem)  # the newest notBefore wins
    backup = node.backup()
    old_leaf = backup[str(node.ssl / "fullchain.pem")]
    old_key = backup[str(node.ssl / "privkey.pem")]
    if old_leaf is not None or old_key is not None:  # the first install's backup is "absent"
        assert old_leaf and old_key
        assert_matching_pair(old_leaf.decode().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n",
                             old_key.decode())
    no_stray_files(node)
    print(f"200 concurrent installer runs: {outcomes} in {elapsed:.1f} s ({_children_cpu() - cpu:.1f} CPU s)")


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def test_lock_held_by_another_command_times_out_with_a_named_error(node: Node, ca: CA) -> None:
    s = ca.issue(BASE)
    node.put_secret(s.secret())
    state = node.state / "web-1"
    state.mkdir(parents=True, mode=0o700)
    os.chmod(node.state, 0o700)
    with open(state / "lock", "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        started = time.monotonic()
        code, result = node.run("install", node.target(files(node)), extra_env={"ROLLOUT_COMMAND_TIMEOUT": "1"})
        waited = time.monotonic() - started
    assert code == 16, result
    assert result["reason"] == "lock-timeout" and "nothing changed" in result["error"]
    assert 1.0 <= waited < 10
    assert list(node.ssl.iterdir()) == []


def test_a_state_directory_others_can_write_is_refused(node: Node, ca: CA) -> None:
    node.put_secret(ca.issue(BASE).secret())
    (node.state / "web-1").mkdir(parents=True)
    os.chmod(node.state / "web-1", 0o777)
    code, result = node.run("install", node.target(files(node)))
    assert code == 18 and result["reason"] == "state-dir-unsafe", result
    assert list(node.ssl.iterdir()) == []


def test_state_directory_is_created_0700(node: Node, ca: CA) -> None:
    node.put_secret(ca.issue(BASE).secret())
    assert node.run("install", node.target(files(node)))[0] == 0
    assert stat.S_IMODE((node.state / "web-1").stat().st_mode) == 0o700
    assert stat.S_IMODE(node.state.stat().st_mode) == 0o700


# --------------------------------------------------------------------------- the test hook's fences


@pytest.mark.parametrize("env", [
    {"CERT_ROLLOUT_FAULT": "crash-after-rename-1"},                                 # no hooks flag
    {"CERT_ROLLOUT_TEST_HOOKS": "1", "ROLLOUT_FAULT": "crash-after-rename-1"},      # a ROLLOUT_* name
    {"CERT_ROLLOUT_TEST_HOOKS": "1", "CERT_ROLLOUT_FAULT": "crash-after-rename-1",
     "CERT_ROLLOUT_STATE_DIR": ""},                                                 # default state dir
])
def test_the_fault_hook_is_not_honoured_outside_tests(node: Node, ca: CA, env: dict, monkeypatch) -> None:
    s = ca.issue(BASE)
    node.put_secret(s.secret())
    if env.get("CERT_ROLLOUT_STATE_DIR") == "":
        # the default /var/lib/cert-rollout must not be touched by a test: check the rule itself
        monkeypatch.setenv("CERT_ROLLOUT_TEST_HOOKS", "1")
        monkeypatch.setenv("CERT_ROLLOUT_FAULT", "crash-x")
        monkeypatch.delenv("CERT_ROLLOUT_STATE_DIR", raising=False)
        ib._fault("x")  # returns: not killed
        return
    code, result = node.run("install", node.target(files(node)), extra_env=env)
    assert code == 0, result
    assert is_set(node, s)


def test_the_document_exports_no_hook_or_state_variable() -> None:
    document = (Path(INSTALLER).parents[1] / "documents" / "install-bundle.ssm.yaml").read_text()
    assert "CERT_ROLLOUT_" not in document


# --------------------------------------------------------------------------- serial guard


def test_an_older_certificate_of_the_same_lineage_is_refused(node: Node, ca: CA) -> None:
    older, newer = ca.issue(BASE), ca.issue(BASE + timedelta(days=60))
    node.put_secret(newer.secret())
    assert node.run("install", node.target(files(node)))[0] == 0
    node.put_secret(older.secret())
    code, result = node.run("install", node.target(files(node)))
    assert code == 17, result
    assert result["reason"] == "older-than-installed" and result["stage"] == "write"
    assert older.serial in result["error"] and newer.serial in result["error"]
    assert result["previousSerial"] == newer.serial
    assert is_set(node, newer)
    # the operator's manual request naming exactly that serial passes; another serial does not
    other = ca.issue(BASE + timedelta(days=1))
    code, result = node.run("install", node.target(files(node)), extra_env={"ROLLOUT_ALLOW_OLDER": other.serial})
    assert code == 17, result
    code, result = node.run("install", node.target(files(node)), extra_env={"ROLLOUT_ALLOW_OLDER": older.serial})
    assert code == 0, result
    assert is_set(node, older)


def test_same_certificate_again_and_another_lineage_pass_the_guard(node: Node, ca: CA) -> None:
    newer = ca.issue(BASE + timedelta(days=60))
    node.put_secret(newer.secret())
    assert node.run("install", node.target(files(node)))[0] == 0
    assert node.run("install", node.target(files(node)))[0] == 0  # the same certificate
    other_name = ca.issue(BASE, domain="other.internal.example")
    node.put_secret(other_name.secret())
    assert node.run("install", node.target(files(node)))[0] == 0  # the target moved to another certificate
    assert is_set(node, other_name)


def test_a_bad_allow_older_value_is_refused(node: Node, ca: CA) -> None:
    node.put_secret(ca.issue(BASE).secret())
    code, result = node.run("install", node.target(files(node)), extra_env={"ROLLOUT_ALLOW_OLDER": "0x12"})
    assert code == 2 and "ROLLOUT_ALLOW_OLDER" in result["error"]


def test_a_random_serial_lower_than_the_installed_one_is_not_older() -> None:
    ca = CA()
    first, renewal = ca.issue(BASE), ca.issue(BASE + timedelta(days=300))
    a, b = ib.cert_info(first.leaf_pem.strip()), ib.cert_info(renewal.leaf_pem.strip())
    assert a.not_before < b.not_before and a.issuer == b.issuer and a.subject == b.subject
    assert a.serial == first.cert.serial_number and b.serial == renewal.cert.serial_number
    assert b.not_before == (BASE + timedelta(days=300)).strftime("%Y%m%d%H%M%S")


# --------------------------------------------------------------------------- pair check


def _ec_without_public_key(key: ec.EllipticCurvePrivateKey, curve_oid: bytes) -> str:
    """SEC 1 ECPrivateKey DER {version 1, privateKey, [0] curve} with NO [1] publicKey."""
    def tlv(tag: int, body: bytes) -> bytes:
        n = len(body)
        length = bytes([n]) if n < 128 else bytes([0x81, n])
        return bytes([tag]) + length + body
    size = (key.curve.key_size + 7) // 8
    d = key.private_numbers().private_value.to_bytes(size, "big")
    der = tlv(0x30, tlv(0x02, b"\x01") + tlv(0x04, d) + tlv(0xA0, tlv(0x06, curve_oid)))
    body = base64.b64encode(der).decode()
    return f"-----BEGIN EC {PK}-----\n" + "\n".join(body[i:i + 64] for i in range(0, len(body), 64)) \
        + f"\n-----END EC {PK}-----"


@pytest.mark.parametrize("make_key", [
    lambda: rsa.generate_private_key(65537, 2048),
    lambda: ec.generate_private_key(ec.SECP256R1()),
    lambda: ec.generate_private_key(ec.SECP384R1()),
], ids=["rsa-2048", "ec-p256", "ec-p384"])
def test_pair_check_by_public_key(make_key) -> None:
    ca = CA()
    s, other = ca.issue(BASE, key=make_key()), ca.issue(BASE, key=make_key())
    leaf = s.leaf_pem.strip()
    assert ib.pair_problem(leaf, s.key_pem.strip()) is None
    assert "does not match" in ib.pair_problem(leaf, other.key_pem.strip())
    for fmt in (serialization.PrivateFormat.TraditionalOpenSSL,):  # "RSA/EC PRIVATE KEY" forms too
        traditional = s.key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()
        assert ib.pair_problem(leaf, traditional.strip()) is None
        assert ib.pair_problem(other.leaf_pem.strip(), traditional.strip()) is not None


@pytest.mark.parametrize("curve,oid", [(ec.SECP256R1(), "2a8648ce3d030107"), (ec.SECP384R1(), "2b81040022")])
def test_an_ec_key_without_its_public_key_is_checked_by_computing_it(curve, oid) -> None:
    ca = CA()
    s = ca.issue(BASE, key=ec.generate_private_key(curve))
    bare = _ec_without_public_key(s.key, bytes.fromhex(oid))
    numbers = s.key.public_key().public_numbers()
    assert ib.ec_public_point(bytes.fromhex(oid), s.key.private_numbers().private_value) == (numbers.x, numbers.y)
    assert ib.pair_problem(s.leaf_pem.strip(), bare) is None
    assert ib.pair_problem(ca.issue(BASE, key=ec.generate_private_key(curve)).leaf_pem.strip(), bare) is not None


def test_rollback_refuses_a_mismatched_backup_and_leaves_the_current_files(node: Node, ca: CA) -> None:
    x, y = ca.issue(BASE, domain="x.internal.example"), ca.issue(BASE, domain="y.internal.example")
    (node.ssl / "fullchain.pem").write_text(x.leaf_pem + x.chain)  # what an old installer's race left:
    (node.ssl / "privkey.pem").write_text(y.key_pem)               # certificate X with key Y
    new = ca.issue(BASE + timedelta(days=60))
    node.put_secret(new.secret())
    assert node.run("install", node.target(files(node)))[0] == 0
    code, result = node.run("rollback", node.target(files(node), reload=recorder(node, "reloads")),
                            expected_serial=new.serial)
    assert code == 20, result
    assert result["reason"] == "backup-key-mismatch" and "left as they are" in result["error"]
    assert is_set(node, new)
    assert count(node, "reloads") == 0


def test_rollback_of_a_serial_that_is_not_installed_changes_nothing(node: Node, ca: CA) -> None:
    a, b = ca.issue(BASE), ca.issue(BASE + timedelta(days=1))
    for s in (a, b):
        node.put_secret(s.secret())
        assert node.run("install", node.target(files(node)))[0] == 0
    code, result = node.run("rollback", node.target(files(node)), expected_serial=a.serial)
    assert code == 0 and result["nothingToRollBack"] is True, result
    assert is_set(node, b)
    code, result = node.run("rollback", node.target(files(node)), expected_serial=b.serial)
    assert code == 0 and not result.get("nothingToRollBack"), result
    assert is_set(node, a)
    # the one generation was used: a second rollback of b finds b not installed
    code, result = node.run("rollback", node.target(files(node)), expected_serial=b.serial)
    assert code == 0 and result["nothingToRollBack"] is True


def test_a_killed_installer_never_leaves_a_key_outside_the_key_paths(node: Node, ca: CA) -> None:
    old = ca.issue(BASE)
    node.put_secret(old.secret())
    assert node.run("install", node.target(files(node)))[0] == 0
    new = ca.issue(BASE + timedelta(days=1))
    node.put_secret(new.secret())
    killed_run(node, "install", node.target(files(node)), "crash-after-rename-1")
    code, result = node.run("install", node.target(files(node)))
    assert code == 0, result
    key_paths = {str(node.ssl / "privkey.pem")}
    backup = node.state / "web-1" / "backup.json"
    for path in list(node.ssl.rglob("*")) + list(node.state.rglob("*")):
        if path.is_file() and path != backup and str(path) not in key_paths:
            text = path.read_text(errors="replace")
            assert PK not in text and base64.b64encode(new.key_pem.encode()).decode()[:40] not in text, path
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert base64.b64encode(old.key_pem.encode()).decode() in backup.read_text()  # one generation: old's
    assert sys.executable  # the installer ran with the node's python


# --------------------------------------------------------------------------- encrypted keys, keystores

needs_openssl = pytest.mark.skipif(__import__("shutil").which("openssl") is None, reason="openssl is not installed")


def _encrypted(secret: Secret, password: bytes) -> bytes:
    return secret.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.BestAvailableEncryption(password))


@needs_openssl
def test_rollback_refuses_a_backup_whose_encrypted_key_is_not_the_certificates(node: Node, ca: CA) -> None:
    x, y = ca.issue(BASE, domain="x.internal.example"), ca.issue(BASE, domain="y.internal.example")
    chain, key, pw = node.ssl / "fullchain.pem", node.ssl / "privkey.enc.pem", node.ssl / "privkey.pass"
    chain.write_text(x.leaf_pem + x.chain)
    key.write_bytes(_encrypted(y, b"operator password"))  # certificate X, key Y
    pw.write_text("operator password\n")
    enc_files = [{"path": str(chain), "content": "fullchain"},
                 {"path": str(key), "content": "encrypted-key", "passwordFile": str(pw)}]
    new = ca.issue(BASE + timedelta(days=60))
    node.put_secret(new.secret())
    code, result = node.run("install", node.target(enc_files))
    assert code == 0, result  # the new pair is read back with openssl and its new password
    code, result = node.run("rollback", node.target(enc_files), expected_serial=new.serial)
    assert code == 20 and result["reason"] == "backup-key-mismatch", result
    assert chain.read_text().startswith(new.leaf_pem)


@needs_openssl
def test_encrypted_key_and_keystore_pairs_are_read_with_openssl_and_their_password(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.serialization import pkcs12

    ca = CA()
    x, y = ca.issue(BASE), ca.issue(BASE)
    enc = ib.Target({"targetId": "t", "files": [
        {"path": str(tmp_path / "c.pem"), "content": "fullchain"},
        {"path": str(tmp_path / "k.pem"), "content": "encrypted-key", "passwordFile": str(tmp_path / "k.pass")}]})
    data = {str(tmp_path / "c.pem"): x.leaf_pem.encode(), str(tmp_path / "k.pem"): _encrypted(x, b"pw-1"),
            str(tmp_path / "k.pass"): b"pw-1\n"}
    assert ib.live_pair_problem(enc, data) is None
    assert "does not match" in ib.live_pair_problem(enc, {**data, str(tmp_path / "k.pem"): _encrypted(y, b"pw-1")})
    assert "cannot be read" in ib.live_pair_problem(enc, {**data, str(tmp_path / "k.pass"): b"wrong\n"})
    store = ib.Target({"targetId": "t", "files": [
        {"path": str(tmp_path / "s.p12"), "content": "pkcs12", "passwordFile": str(tmp_path / "s.pass")}]})
    (tmp_path / "s.pass").write_text("store-pw\n")  # the operator's keystore password file, on disk
    algorithm = serialization.BestAvailableEncryption(b"store-pw")
    good = pkcs12.serialize_key_and_certificates(b"t", x.key, x.cert, None, algorithm)
    assert ib.live_pair_problem(store, {str(tmp_path / "s.p12"): good}) is None
    # a keystore with another certificate in the set: compared with the first certificate file
    both = ib.Target({"targetId": "t", "files": [{"path": str(tmp_path / "c.pem"), "content": "leaf"},
                                                 *[{"path": f.path, "content": f.content, "passwordFile": f.password_file}
                                                   for f in store.files]]})
    assert "does not match" in ib.live_pair_problem(both, {str(tmp_path / "c.pem"): y.leaf_pem.encode(),
                                                           str(tmp_path / "s.p12"): good})
    (tmp_path / "s.pass").write_text("wrong\n")
    assert "cannot be read" in ib.live_pair_problem(store, {str(tmp_path / "s.p12"): good})  # (openssl refuses)
