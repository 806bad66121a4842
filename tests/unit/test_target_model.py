"""rollout_core.models.Target: an inventory item is checked whole and never coerced.

Every refusal is a pydantic ValidationError whose text names the field and the rule.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from pydantic import ValidationError
from rollout_core.adapters.dynamo import plain
from rollout_core.models import Target, TargetFile

ARN = "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-0000-1111-2222-333344445555"
BASE: dict[str, Any] = {
    "certificateArn": ARN,
    "targetId": "web-1",
    "host": "web.internal.example",
    "port": 443,
    "instanceId": "mi-0123456789abcdef0",
    "server": "nginx",
    "files": [
        {"path": "/etc/nginx/tls/web.fullchain.pem", "content": "fullchain", "mode": "0644"},
        {"path": "/etc/nginx/tls/web.key", "content": "key", "mode": "0600"},
    ],
    "testCommand": ["nginx", "-t"],
    "reloadCommand": ["nginx", "-s", "reload"],
}


def item(**changes: Any) -> dict[str, Any]:
    return {**BASE, **changes}


def files(*specs: dict[str, Any]) -> list[dict[str, Any]]:
    return list(specs)


def refused(data: dict[str, Any], *fragments: str) -> str:
    """Target.model_validate(data) raises ValidationError (only) and its text has every fragment."""
    try:
        Target.model_validate(data)
    except ValidationError as exc:
        text = str(exc)
        for fragment in fragments:
            assert fragment in text, f"{fragment!r} not in:\n{text}"
        return text
    except BaseException as exc:  # noqa: BLE001 - the point: nothing but a ValidationError
        pytest.fail(f"{type(exc).__name__} instead of ValidationError: {str(exc)[:300]}")
    pytest.fail(f"accepted: {data}")


def test_base_item_is_valid() -> None:
    target = Target.model_validate(item())
    assert target.sni == "web.internal.example" and target.port == 443


# --- port: a strict integer -------------------------------------------------------------


@pytest.mark.parametrize("port", [True, False, "443", 443.0, 1.5, Decimal("443"), None, [443]])
def test_port_must_be_a_real_integer(port: Any) -> None:
    refused(item(port=port), "port", "integer 1-65535")


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_port_out_of_range_is_refused(port: int) -> None:
    refused(item(port=port), "port", "65535")


# --- host: an IP address or a DNS name ------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "rule"),
    [
        ("web.example\n", "control character"),
        ("web.example\r\n", "control character"),
        ("\nweb.example", "control character"),
        ("web example", "space"),
        ("256.1.1.1", "all-numeric"),
        ("1.2.3", "all-numeric"),
        ("12345", "all-numeric"),
        ("1.2.3.4.5", "all-numeric"),
        ("999.999.999.999", "all-numeric"),
        ("010.0.0.1", "all-numeric"),  # leading zeros: no IP address (ambiguous octal), no name
        ("-web.example", "label"),
        ("web-.example", "label"),
        ("web..example", "label"),
        (".web.example", "label"),
        ("web_1.example", "label"),
        ("a" * 64 + ".example", "label"),
        ("w\u00e9b.example", "non-ASCII"),
        ("*.example.com", "wildcard"),
        ("", "empty"),
        (("a" * 60 + ".") * 5 + "com", "253"),
    ],
)
def test_host_that_is_neither_ip_nor_dns_name_is_refused(host: str, rule: str) -> None:
    refused(item(host=host), "host", rule)


@pytest.mark.parametrize(
    "host", ["web.internal.example", "web.internal.example.", "localhost", "10.0.0.7", "::1", "fe80::1",
             "1host.example", "a.b-c.d1", "xn--bcher-kva.example", "a" * 63 + ".example"]
)
def test_host_names_and_addresses_are_accepted(host: str) -> None:
    data = item(host=host, sni="web.internal.example")
    assert Target.model_validate(data).host == host


def test_host_of_another_type_is_refused() -> None:
    refused(item(host=["web.example"]), "host")
    refused(item(host=1234), "host")


# --- sni: a DNS host name ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sni", "rule"),
    [
        ("", "empty"),
        ("*.internal.example", "wildcard"),
        ("*", "label"),
        ("web.internal.example.", "label"),  # SNI carries no trailing dot (RFC 6066 s3)
        ("web.internal.example\n", "control character"),
        ("bad_label.example", "label"),
        ("-web.example", "label"),
        ("x" * 64, "label"),
        ("1.2.3", "all-numeric"),
        ("10.0.0.1", "IP address"),
        ("::1", "IP address"),
        ("w\u00e9b.example", "non-ASCII"),
    ],
)
def test_sni_must_be_a_dns_host_name(sni: str, rule: str) -> None:
    refused(item(sni=sni), "sni", rule)


def test_ip_host_may_leave_out_sni_and_then_sends_none() -> None:
    # RFC 6066 s3: no IP in SNI, so an IP host without sni is probed without SNI (the host-name
    # check then matches the IP against the certificate's IP SANs); the sni itself is never an IP.
    for host in ("10.0.0.7", "::1"):
        assert Target.model_validate(item(host=host, sni=None)).sni is None
    assert Target.model_validate(item(host="10.0.0.7", sni="web.internal.example")).sni == "web.internal.example"
    refused(item(host="10.0.0.7", sni="10.0.0.7"), "RFC 6066 section 3 forbids IP addresses in SNI")


def test_probes_and_backends_fields_are_accepted() -> None:
    target = Target.model_validate(item())
    assert (target.probes, target.backends) == (3, None)  # the defaults
    target = Target.model_validate(item(probes=5, backends=["127.0.0.1:9001", "127.0.0.1:9002"]))
    assert (target.probes, target.backends) == (5, ["127.0.0.1:9001", "127.0.0.1:9002"])
    refused(item(probes="5"), "probes")  # strict: never coerced
    refused(item(probes=0), "probes")
    refused(item(probes=21), "probes")


def test_sni_defaults_to_the_host_name_without_trailing_dot() -> None:
    assert Target.model_validate(item(host="web.internal.example.")).sni == "web.internal.example"


# --- identifiers: matched whole -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("targetId", "web-1\n"),
        ("targetId", "-web"),
        ("targetId", "w" * 65),
        ("instanceId", "mi-0123456789abcdef0\n"),
        ("instanceId", "i-0123456789ABCDEF"),
        ("instanceId", "x-01234567"),
        ("certificateArn", ARN + "\n"),
        ("certificateArn", ARN.replace("123456789012", "\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669\u0660\u0661\u0662")),
        ("certificateArn", "arn:aws:iam::123456789012:role/x"),
    ],
)
def test_identifiers_are_matched_whole(field: str, value: str) -> None:
    refused(item(**{field: value}), field)


# --- unknown keys ------------------------------------------------------------------------------


def test_unknown_key_is_refused_with_a_suggestion() -> None:
    text = refused(item(testcommand=["nginx", "-t"]), "unknown field", "'testcommand'", "did you mean 'testCommand'")
    assert "allowed fields" in text


@pytest.mark.parametrize("key", ["paths", "Port", "note", "sni_name"])
def test_any_unknown_target_key_is_refused(key: str) -> None:
    refused(item(**{key: "x"}), "unknown field", repr(key))


def test_unknown_file_key_is_refused() -> None:
    data = item(files=files({"path": "/etc/tls/a.pem", "content": "fullchain", "Mode": "0644"},
                            {"path": "/etc/tls/a.key", "content": "key"}))
    refused(data, "files.0", "unknown field", "'Mode'", "did you mean 'mode'")


def test_non_string_keys_are_refused_without_crashing() -> None:
    data: dict[Any, Any] = item()
    data[(1, 2)] = "x"
    data[10**5000] = "y"
    refused(data, "unknown field")


def test_state_the_rollout_writes_is_accepted() -> None:
    target = Target.model_validate(item(lastDeployedSerial="0f:ac:01", lastDeployedAt="2025-01-01T00:00:00Z",
                                        lastOutcome="VERIFIED"))
    assert (target.lastDeployedSerial, target.lastOutcome) == ("0f:ac:01", "VERIFIED")


def test_dynamodb_item_round_trips_through_plain() -> None:
    """What adapters.dynamo reads: numbers as Decimal, converted by plain() before validation."""
    ser, de = TypeSerializer(), TypeDeserializer()
    written = Target.model_validate(item()).model_dump(exclude_none=True)
    written.update(lastDeployedSerial="0f:ac:01", lastDeployedAt="2025-01-01T00:00:00Z", lastOutcome="VERIFIED")
    raw = {k: de.deserialize(ser.serialize(v)) for k, v in written.items()}
    assert isinstance(raw["port"], Decimal)
    assert Target.model_validate(plain(raw)).port == 443
    refused(raw, "port")  # a Decimal is not silently taken for an int: plain() converts it


def test_local_cloud_inventory_items_are_valid(tmp_path: Any) -> None:
    """The shape src/cert_rollout/localcloud/targets.py and real_servers.py write."""
    python = sys.executable
    embedded = {
        "certificateArn": ARN, "targetId": "web-1", "host": "127.0.0.1", "port": 40123,
        "sni": "web.internal.example", "server": "embedded", "instanceId": "mi-0123456789abcdef0",
        "files": [{"path": str(tmp_path / "fullchain.pem"), "content": "fullchain", "mode": "0644"},
                  {"path": str(tmp_path / "privkey.pem"), "content": "key", "mode": "0600"}],
        "testCommand": [python, "-m", "cert_rollout.localcloud.target_server", "check", "--config",
                        str(tmp_path / "server.json")],
        "reloadCommand": [python, "-m", "cert_rollout.localcloud.target_server", "reload", "--pid-file",
                          str(tmp_path / "server.pid"), "--config", str(tmp_path / "server.json")],
    }
    Target.model_validate(embedded)
    haproxy = {**embedded, "server": "haproxy",
               "files": [{"path": str(tmp_path / "haproxy.pem"), "content": "combined", "mode": "0600"}]}
    Target.model_validate(haproxy)


# --- file paths -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("etc/tls/a.pem", "absolute"),
        ("", "absolute"),
        ("/", "root directory"),
        ("//", "root directory"),
        ("/etc/tls/", "ends with '/'"),
        ("/etc/tls/../a.pem", "'..'"),
        ("/etc/tls/..", "'..'"),
        ("/etc/./tls/a.pem", "'.'"),
        ("/etc/tls/.", "'.'"),
        ("/etc/tls/a.pem\x00", "control"),
        ("/etc/tls/a.pem\n", "control"),
        ("/etc/tls/a\tb.pem", "control"),
        ("/etc/tls/\u202emep.a", "bidi"),
        ("/" + "a" * 1024, "1024"),
    ],
)
def test_bad_file_paths_are_refused(path: str, rule: str) -> None:
    data = item(files=files({"path": path, "content": "fullchain"}, {"path": "/etc/tls/a.key", "content": "key"}))
    refused(data, "files.0.path", rule)


@pytest.mark.parametrize("password_file", ["relative.pass", "/etc/tls/", "/etc/../x.pass", "/x.pass\n", "/"])
def test_bad_password_file_paths_are_refused(password_file: str) -> None:
    data = item(files=files({"path": "/etc/tls/a.p12", "content": "pkcs12", "passwordFile": password_file}))
    refused(data, "files.0.passwordFile")


def test_paths_with_dots_inside_names_are_fine() -> None:
    data = item(files=files({"path": "/etc/tls/..web..pem", "content": "fullchain"},
                            {"path": "/etc/tls/.hidden/a.key", "content": "key"}))
    Target.model_validate(data)


def test_two_files_with_one_path_are_refused() -> None:
    data = item(files=files({"path": "/etc/tls/a.pem", "content": "fullchain"},
                            {"path": "/etc/tls/a.pem", "content": "key"}))
    refused(data, "files[1].path /etc/tls/a.pem is also files[0].path", "own path")
    slashes = item(files=files({"path": "/etc/tls/a.pem", "content": "fullchain"},
                               {"path": "/etc//tls///a.pem", "content": "key"}))
    refused(slashes, "files.1.path", "'//'")  # not canonical (node policy: canonical paths only)


def test_password_file_that_is_another_file_is_refused() -> None:
    data = item(files=files({"path": "/etc/tls/a.pem", "content": "fullchain"},
                            {"path": "/etc/tls/a.key", "content": "encrypted-key", "passwordFile": "/etc/tls/a.pem"}))
    refused(data, "files[1].passwordFile /etc/tls/a.pem is also files[0].path", "file of its own")


def test_default_password_file_that_is_another_file_is_refused() -> None:
    data = item(files=files({"path": "/etc/tls/a.p12", "content": "pkcs12"},
                            {"path": "/etc/tls/a.p12.pass", "content": "chain"}))
    refused(data, "default password file /etc/tls/a.p12.pass", "files[1].path")


def test_two_password_files_with_one_path_are_refused() -> None:
    data = item(files=files(
        {"path": "/etc/tls/a.key", "content": "encrypted-key", "passwordFile": "/etc/tls/pw"},
        {"path": "/etc/tls/b.p12", "content": "pkcs12", "passwordFile": "/etc/tls/pw"}))
    refused(data, "files[1].passwordFile /etc/tls/pw is also files[0].passwordFile")


def test_password_file_equal_to_its_own_file_is_refused() -> None:
    data = item(files=files({"path": "/etc/tls/a.p12", "content": "pkcs12", "passwordFile": "/etc/tls/a.p12"}))
    refused(data, "passwordFile must not be the file's own path")


def test_password_file_and_alias_only_where_they_are_used() -> None:
    refused(item(files=files({"path": "/etc/tls/a.key", "content": "key", "passwordFile": "/etc/tls/a.pass"})),
            "passwordFile is only used by encrypted-key and pkcs12")
    refused(item(files=files({"path": "/etc/tls/a.key", "content": "encrypted-key", "alias": "web"})),
            "alias is the PKCS#12 friendly name")
    refused(item(files=files({"path": "/etc/tls/a.p12", "content": "pkcs12", "alias": "web\n"})), "alias")
    Target.model_validate(item(files=files({"path": "/etc/tls/a.p12", "content": "pkcs12", "alias": "tomcat",
                                            "passwordFile": "/etc/tls/keystore.pass"})))


# --- commands ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "rule"),
    [
        ([], "non-empty list"),
        ([""], "[0] is empty"),
        (["nginx", ""], "[1] is empty"),
        (["nginx\x00", "-t"], "NUL or a newline"),
        (["nginx", "-t\n"], "NUL or a newline"),
        (["nginx", "-t\rx"], "NUL or a newline"),
        ("nginx -t", "list"),
        ([1, 2], "string"),
    ],
)
@pytest.mark.parametrize("field", ["testCommand", "reloadCommand"])
def test_bad_commands_are_refused(field: str, command: Any, rule: str) -> None:
    refused(item(**{field: command}), field, rule)


def test_null_commands_are_allowed_where_the_server_needs_none() -> None:
    Target.model_validate(item(server="java", testCommand=None, reloadCommand=None))
    refused(item(server="generic", reloadCommand=None), "generic target needs a reloadCommand")


# --- file modes ----------------------------------------------------------------------------------------


KEY_CONTENTS = ["key", "combined", "encrypted-key", "pkcs12"]


@pytest.mark.parametrize("content", KEY_CONTENTS)
@pytest.mark.parametrize("mode", ["0600", "0640", "0400", "0440", "600", "0000"])
def test_key_material_modes_within_owner_rw_group_r_are_accepted(content: str, mode: str) -> None:
    Target.model_validate(item(files=files({"path": "/etc/tls/k", "content": content, "mode": mode})))


@pytest.mark.parametrize("content", KEY_CONTENTS)
@pytest.mark.parametrize("mode", ["0644", "0604", "0660", "0700", "0610", "0620", "0641", "0777", "644"])
def test_key_material_modes_beyond_owner_rw_group_r_are_refused(content: str, mode: str) -> None:
    data = item(files=files({"path": "/etc/tls/k", "content": content, "mode": mode}))
    refused(data, "files.0", "file /etc/tls/k", f"({content})", f"mode {mode}", "mode & 0o7137 == 0")


@pytest.mark.parametrize("content", ["fullchain", "leaf", "chain", "key"])
@pytest.mark.parametrize("mode", ["4755", "2644", "1644", "04600", "6600", "7000"])
def test_setuid_setgid_sticky_are_refused_for_every_file(content: str, mode: str) -> None:
    refused(item(files=files({"path": "/etc/tls/f", "content": content, "mode": mode})),
            "files.0.mode", "setuid, setgid and sticky")


@pytest.mark.parametrize("mode", ["0o644", "rw-r--r--", "0888", "64", "000644", "", 420, 0o644, True, None])
def test_mode_must_be_octal_digits_in_a_string(mode: Any) -> None:
    data = item(files=files({"path": "/etc/tls/f", "content": "fullchain", "mode": mode}))
    if mode is None:  # absent or null: the default for the content
        assert Target.model_validate(data).files[0].mode == "0644"
        return
    refused(data, "files.0.mode", "octal digits")


@pytest.mark.parametrize("mode", ["0644", "0444", "0755", "644", "0600"])
def test_certificate_files_may_be_world_readable(mode: str) -> None:
    Target.model_validate(item(files=files({"path": "/etc/tls/f", "content": "fullchain", "mode": mode})))


@pytest.mark.parametrize(("content", "mode"), [("key", "0600"), ("combined", "0600"), ("encrypted-key", "0600"),
                                               ("pkcs12", "0600"), ("fullchain", "0644"), ("leaf", "0644"),
                                               ("chain", "0644")])
def test_default_mode_follows_the_content(content: str, mode: str) -> None:
    assert TargetFile.model_validate({"path": "/etc/tls/f", "content": content}).mode == mode
    assert TargetFile(path="/etc/tls/f", content=content).mode == mode  # type: ignore[arg-type]


def test_install_settings_carry_the_checked_modes() -> None:
    target = Target.model_validate(item(files=files({"path": "/etc/tls/a.pem", "content": "fullchain"},
                                                    {"path": "/etc/tls/a.key", "content": "key"})))
    assert [f["mode"] for f in target.install_settings()["files"]] == ["0644", "0600"]
    assert Target.model_validate(target.model_dump()) == target  # what put_target writes reads back


# --- nothing but ValidationError -------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"files": {"path": "/a"}},
        {"files": [None]},
        {"files": ["/etc/tls/a.pem"]},
        {"host": "x" * 100_000},
        {"sni": "a." * 200_000},
        {"port": 10**5000},
        {"files": [{"path": "/a", "content": "key", "mode": 10**5000}]},
        {"testCommand": [["nested"]]},
    ],
    ids=["files-dict", "file-null", "file-str", "huge-host", "huge-sni", "huge-port", "huge-mode", "nested-command"],
)
def test_hostile_values_end_in_a_validation_error(changes: dict[str, Any]) -> None:
    text = refused(item(**changes))
    assert len(text) < 5000


# --- passwordSecret: a keystore / encrypted-key password kept in Secrets Manager ----------------------


@pytest.mark.parametrize(
    "secret",
    [
        "cert-rollout/keystores/web",
        "cert-rollout/keystores/app_1+v2=x.y@z",
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:cert-rollout/keystores/web-AbCdEf",
        "a" * 512,
    ],
)
def test_password_secret_is_a_secret_name_or_arn(secret: str) -> None:
    for content in ("pkcs12", "encrypted-key"):
        target = Target.model_validate(item(files=files({"path": "/etc/tls/a.p12", "content": content,
                                                          "passwordSecret": secret})))
        assert target.files[0].passwordSecret == secret
        assert target.install_settings()["files"][0]["passwordSecret"] == secret


@pytest.mark.parametrize(
    ("secret", "rule"),
    [
        ("", "1-512"),
        ("a" * 513, "1-512"),
        ("cert-rollout/../other", ".."),
        ("cert rollout/web", "1-512"),
        ("cert-rollout/web\n", "1-512"),
        ("cert-rollout/w\u00e9b", "1-512"),
        ("cert-rollout/web;rm", "1-512"),
        ("-debug", "'-'"),
    ],
)
def test_bad_password_secrets_are_refused(secret: str, rule: str) -> None:
    refused(item(files=files({"path": "/etc/tls/a.p12", "content": "pkcs12", "passwordSecret": secret})),
            "passwordSecret", rule)


def test_password_secret_is_refused_where_no_password_is_used() -> None:
    for content in ("fullchain", "leaf", "chain", "key", "combined"):
        refused(item(files=files({"path": "/etc/tls/a.pem", "content": content,
                                  "passwordSecret": "cert-rollout/keystores/web"})),
                "passwordSecret is only used by encrypted-key and pkcs12")
    refused(item(files=files({"path": "/etc/tls/a.p12", "content": "pkcs12", "passwordSecret": 42})),
            "passwordSecret")


def test_password_secret_without_password_file_has_no_password_path() -> None:
    secret_only = TargetFile.model_validate({"path": "/etc/tls/a.p12", "content": "pkcs12",
                                             "passwordSecret": "cert-rollout/keystores/web"})
    assert secret_only.password_path is None
    # so a file at the would-be default password path is no conflict
    Target.model_validate(item(files=files(
        {"path": "/etc/tls/a.p12", "content": "pkcs12", "passwordSecret": "cert-rollout/keystores/web"},
        {"path": "/etc/tls/a.p12.pass", "content": "chain"})))
    both = TargetFile.model_validate({"path": "/etc/tls/a.p12", "content": "pkcs12", "passwordFile": "/etc/tls/pw",
                                      "passwordSecret": "cert-rollout/keystores/web"})
    assert both.password_path == "/etc/tls/pw"


# --- verification settings: probes and backends -------------------------------------------------


def test_probes_default_to_three_and_must_be_an_integer_1_to_20() -> None:
    assert Target.model_validate(item()).probes == 3
    assert Target.model_validate(item(probes=20)).probes == 20
    for bad in (0, 21, "3", 2.0, True):
        refused(item(probes=bad), "probes")


def test_backends_are_host_port_each_checked() -> None:
    t = Target.model_validate(item(backends=["10.0.0.11:443", "web-b.internal.example:8443", "[fd00::13]:443"]))
    assert t.backend_endpoints() == [("10.0.0.11", 443), ("web-b.internal.example", 8443), ("fd00::13", 443)]
    assert Target.model_validate(item()).backend_endpoints() == []


@pytest.mark.parametrize(
    ("backends", "rule"),
    [
        (["10.0.0.11"], "not host:port"),
        (["10.0.0.11:0"], "port 0 is not in 1-65535"),
        (["10.0.0.11:65536"], "port 65536 is not in 1-65535"),
        (["fd00::13:443"], "not host:port"),
        (["[web.example]:443"], "not host:port"),
        (["[10.0.0.11]:443"], "not an IPv6 address"),
        (["bad_host:443"], "neither an IP address nor a DNS name"),
        (["10.0.0.11:443", "10.0.0.11:443"], "listed twice"),
        (["WEB.example:443", "web.example:443"], "listed twice"),
        ([f"10.0.0.{i}:443" for i in range(33)], "at most 32"),
        ([], "at least one"),
        ([443], "valid string"),
    ],
)
def test_bad_backends_are_refused_by_name(backends: list[Any], rule: str) -> None:
    refused(item(backends=backends), "backends", rule)
