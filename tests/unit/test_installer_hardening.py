"""installer/install_bundle.py hardening: key file modes, partial staged files, key fragments
in command output, unreadable serials, parameter validation, directory targets."""

from __future__ import annotations

import json
import resource
import shutil

import pytest
from rollout_core.probe import format_serial_hex

from tests.unit.test_installer import node, pki, py  # noqa: F401 - fixtures

KEY_RULE = "key files must not be readable by others: mode & 0o7137 must be 0"


def _body(pem: str) -> str:
    return "".join(ln for ln in pem.splitlines() if ln and not ln.startswith("-----") and ":" not in ln)


def _leaked_windows(text: str, secret: str) -> list[str]:
    return [secret[i:i + 16] for i in range(len(secret) - 15) if secret[i:i + 16] in text]


def _untouched(node, before: dict) -> None:
    assert {p.name: p.read_bytes() for p in node.ssl.iterdir()} == before
    assert not node.aws_args.exists()  # refused before the secret was even fetched


# --------------------------------------------------------------------------- 1. key file modes


@pytest.mark.parametrize("content", ["key", "combined", "encrypted-key", "pkcs12"])
@pytest.mark.parametrize("mode", ["0644", "0666", "0777", "4777", "0604", "0700", "0660", "0610", "2640"])
def test_key_file_readable_by_others_is_refused_before_anything(node, pki, content, mode):
    node.put_secret(pki["new"])
    path = node.ssl / "secret.pem"
    path.write_text("old\n")
    before = {p.name: p.read_bytes() for p in node.ssl.iterdir()}
    code, result = node.run("install", node.target([{"path": str(path), "content": content, "mode": mode}]))
    assert code == 2, result
    assert (result["status"], result["stage"]) == ("failed", "write")
    assert str(path) in result["error"] and KEY_RULE in result["error"]
    _untouched(node, before)


@pytest.mark.parametrize("mode", ["0600", "0640", "0400", "0440"])
def test_allowed_key_file_modes_are_written(node, pki, mode):
    import stat

    node.put_secret(pki["new"])
    path = node.ssl / "privkey.pem"
    code, result = node.run("install", node.target([{"path": str(path), "content": "key", "mode": mode}]))
    assert code == 0, result
    assert stat.S_IMODE(path.stat().st_mode) == int(mode, 8)


@pytest.mark.parametrize("mode", ["4755", "2644", "1644", "6444", 0o4644])
def test_setuid_setgid_sticky_is_refused_for_any_file(node, pki, mode):
    node.put_secret(pki["new"])
    path = node.ssl / "fullchain.pem"
    code, result = node.run("install", node.target([{"path": str(path), "content": "fullchain", "mode": mode}]))
    assert code == 2, result
    assert result["stage"] == "write"
    assert str(path) in result["error"] and "setuid" in result["error"]
    _untouched(node, {})


# --------------------------------------------------------------------------- 2. partial staged files


def _fsize_limit(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_partial_staged_file_is_removed_and_named(node, pki):
    new = pki["new"]
    node.put_secret(new)
    key, combined = node.ssl / "privkey.pem", node.ssl / "haproxy.pem"
    size = len(new.leaf_pem + "".join(new.chain_pems) + new.key_pem)
    limit = size - 100  # the write stops inside the key block
    assert len(new.key_pem) < limit
    files = [{"path": str(key), "content": "key"}, {"path": str(combined), "content": "combined"}]
    code, result = node.run("install", node.target(files), preexec_fn=_fsize_limit(limit))
    assert code == 12, result
    assert (result["status"], result["stage"]) == ("failed", "write")
    assert str(combined) in result["error"] and "File too large" in result["error"]
    assert ": : " not in result["error"]
    assert list(node.ssl.iterdir()) == []  # neither the partial nor the complete staged file is left


# --------------------------------------------------------------------------- 3. key fragments


def test_key_fragments_in_command_output_are_redacted(node, pki):
    node.put_secret(pki["new"])
    key = node.ssl / "privkey.pem"
    body = _body(pki["new"].key_pem)
    # like `head -c 300 key.pem | tail -c 200`, a joined slice, a slice glued to other text
    leak = py(f"import sys; d = open({str(key)!r}).read(); b = ''.join(l for l in d.splitlines() if '-' not in l); "
              "print('configuration loaded'); print(d[41:241]); print(b[20:90]); "
              "sys.stderr.write('value=' + b[70:95] + ' end\\n'); sys.exit(1)")
    code, result = node.run("install", node.target([{"path": str(key), "content": "key"}], test=leak))
    assert code == 10, result
    assert "configuration loaded" in result["serverOutput"]
    assert "[redacted]" in result["serverOutput"] and "[redacted]" in result["error"]
    assert _leaked_windows(json.dumps(result), body) == []


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_encrypted_key_and_password_fragments_are_redacted(node, pki):
    node.put_secret(pki["new"])
    key, pw = node.ssl / "k.pem", node.ssl / "k.pass"
    leak = py(f"import sys; e = open({str(key)!r}).read(); p = open({str(pw)!r}).read().strip(); "
              "print(e[60:200]); sys.stderr.write('pw ' + p[3:30] + '\\n'); sys.exit(1)")
    files = [{"path": str(key), "content": "encrypted-key", "passwordFile": str(pw)}]
    code, result = node.run("install", node.target(files, test=leak))
    assert code == 10, result
    text = json.dumps(result)
    assert "[redacted]" in result["serverOutput"]
    assert "pw [redacted]" in result["serverOutput"]
    # no 16-character hex run (password fragment) and no long base64 run survives
    import re

    assert not re.search(r"pw [0-9a-f]{16,}", text)
    body_runs = [r for r in re.findall(r"[A-Za-z0-9+/=]{16,}", result["serverOutput"])]
    assert body_runs == [], body_runs


# --------------------------------------------------------------------------- 4. unreadable serial


def test_unreadable_serial_fails_closed_when_a_serial_is_expected(node, pki):
    secret = pki["new"].secret()
    secret["certificate"] = "-----BEGIN CERTIFICATE-----\nZ2FyYmFnZSBnYXJiYWdlIGdhcmJhZ2U=\n-----END CERTIFICATE-----\n"
    node.put_secret(secret)
    code, result = node.run("install", node.target([{"path": str(node.ssl / "leaf.pem"), "content": "leaf"}]),
                            expected_serial=format_serial_hex(pki["new"].serial))
    assert code == 12, result
    assert (result["status"], result["stage"]) == ("failed", "write")
    assert "cannot read the leaf's serial" in result["error"]
    assert list(node.ssl.iterdir()) == []


# --------------------------------------------------------------------------- 5./6. parameters


@pytest.mark.parametrize("mode", [["0644"], {"octal": "0644"}, True, 420.5, "rw-r--r--", "0o7777777"])
def test_malformed_mode_is_a_parameter_error(node, pki, mode):
    node.put_secret(pki["new"])
    code, result = node.run("install", node.target([{"path": str(node.ssl / "c.pem"), "content": "leaf",
                                                     "mode": mode}]))
    assert code == 2, result
    assert result["stage"] == "write" and "files[0].mode" in result["error"]
    _untouched(node, {})


@pytest.mark.parametrize("timeout", ["inf", "1e10", "abc", "0", "-5", "1.5", "86401", "nan"])
@pytest.mark.parametrize("action", ["install", "rollback"])
def test_invalid_command_timeout_is_a_parameter_error(node, pki, timeout, action):
    node.put_secret(pki["new"])
    code, result = node.run(action, node.target([{"path": str(node.ssl / "c.pem"), "content": "leaf"}]),
                            extra_env={"ROLLOUT_COMMAND_TIMEOUT": timeout})
    assert code == 2, result
    assert result["stage"] == ("write" if action == "install" else "rollback")
    assert "ROLLOUT_COMMAND_TIMEOUT" in result["error"] and "internal error" not in result["error"]
    _untouched(node, {})


def test_largest_command_timeout_is_accepted(node, pki):
    node.put_secret(pki["new"])
    code, result = node.run("install", node.target([{"path": str(node.ssl / "c.pem"), "content": "leaf"}],
                                                   test=py("pass")),
                            extra_env={"ROLLOUT_COMMAND_TIMEOUT": "86400"})
    assert code == 0, result


@pytest.mark.parametrize("serial", ["12345678", "0x1f2e", "1F:2E", "1f2e3d", "1:2e", "1f:2e:", "00:1f", "1f 2e"])
def test_expected_serial_must_be_canonical_colon_hex(node, pki, serial):
    node.put_secret(pki["new"])
    code, result = node.run("install", node.target([{"path": str(node.ssl / "c.pem"), "content": "leaf"}]),
                            expected_serial=serial)
    assert code == 2, result
    assert "ROLLOUT_EXPECTED_SERIAL" in result["error"]
    _untouched(node, {})


# --------------------------------------------------------------------------- 7. directory targets


def test_directory_target_is_refused_up_front(node, pki):
    node.put_secret(pki["new"])
    (node.ssl / "privkey.pem").mkdir()
    chain = node.ssl / "fullchain.pem"
    chain.write_text("old chain\n")
    files = [{"path": str(chain), "content": "fullchain"}, {"path": str(node.ssl / "privkey.pem"), "content": "key"}]
    code, result = node.run("install", node.target(files))
    assert code == 12, result
    assert (result["status"], result["stage"]) == ("failed", "write")
    assert str(node.ssl / "privkey.pem") in result["error"] and "directory" in result["error"]
    assert ".rollout-" not in result["error"]
    assert sorted(p.name for p in node.ssl.iterdir()) == ["fullchain.pem", "privkey.pem"]
    assert chain.read_text() == "old chain\n"
