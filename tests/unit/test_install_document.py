"""The install document (documents/install-bundle.ssm.yaml) as deployed: its size with the
largest parameters a command may carry stays 8 KB under SSM's 64 KB quota, template.yaml
brings it in with AWS::Include and ships the installer as InstallerLayer, and the parameters
InstallTarget sends are the ones the document declares (execution and per-subprocess
timeouts from CommandTimeoutSeconds, the layer version's URL and SHA-256)."""

from __future__ import annotations

import base64
import json
import re
import re._parser as sre_parse  # the parser the re module itself uses (Python >= 3.11)
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rollout_core.adapters import installer_source
from rollout_core.domain.command_timeouts import subprocess_timeout_seconds
from rollout_core.logic import commands
from rollout_core.models import Target
from rollout_core.settings import InstallSettings
from samtranslator.yaml_helper import yaml_parse

from cert_rollout.localcloud.nodes import NodeFleet

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
DOCUMENT_LIMIT = 56 * 1024  # issue 9: 8 KB margin under SSM's 64 KB (notes/aws-facts.md)
# 40 KiB since issue 11: each function's own least-privilege statements (per-rollout staged secret,
# export by tag, SendCommand split by document and node, Retain on stateful resources) are
# resources, not program text; still under CloudFormation's 51,200-byte TemplateBody limit.
TEMPLATE_LIMIT = 40 * 1024
LAYER_ARN = "arn:aws:lambda:eu-west-1:123456789012:layer:InstallerLayer:3"
SHA = base64.b64encode(bytes(range(32))).decode()
URL = ("https://awslambda-eu-west-1-layers.s3.eu-west-1.amazonaws.com/snapshots/123456789012/"
       "InstallerLayer-abc?versionId=x&X-Amz-Security-Token=IQo%2Bb3&X-Amz-Expires=600&X-Amz-Signature=f00d")


def template() -> dict[str, Any]:
    return yaml_parse(TEMPLATE.read_text())


def include_location() -> str:
    content = template()["Resources"]["InstallBundleDocument"]["Properties"]["Content"]
    transform = content["Fn::Transform"]
    assert transform["Name"] == "AWS::Include"
    return str(transform["Parameters"]["Location"])


def document() -> dict[str, Any]:
    return yaml_parse((ROOT / include_location()).read_text())


def max_length(spec: dict[str, Any]) -> int:
    """The longest value SSM accepts for one parameter: from allowedValues, else from the
    allowedPattern's length bound. Raises ValueError for a parameter without a bound."""
    if "allowedValues" in spec:
        return max(len(str(v)) for v in spec["allowedValues"])
    pattern = spec.get("allowedPattern")
    if not pattern:
        raise ValueError("no allowedPattern nor allowedValues: no length bound")
    _, longest = sre_parse.parse(pattern).getwidth()
    if longest >= sre_parse.MAXREPEAT or longest > 1_000_000:
        raise ValueError(f"allowedPattern {pattern!r} has no length bound (a * or + repeat)")
    return int(longest)


# --------------------------------------------------------------------------- sizes


def test_max_length_reads_bounds_and_refuses_unbounded_patterns() -> None:
    assert max_length({"allowedPattern": "^[A-Za-z0-9+/=]{1,8000}$"}) == 8000
    assert max_length({"allowedPattern": "^arn:[a-z]{0,3}:x$"}) == len("arn::x") + 3
    assert max_length({"allowedValues": ["install", "rollback"]}) == 8
    for unbounded in ({"allowedPattern": "^arn:aws[a-z-]*:x$"}, {"allowedPattern": "^[0-9]+$"}, {}):
        with pytest.raises(ValueError):
            max_length(unbounded)


def test_deployed_document_with_its_largest_parameters_stays_under_56_kb() -> None:
    doc = document()
    # CloudFormation sends the included document as the Content property: compact JSON.
    content = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    figures = {}
    for name, spec in doc["parameters"].items():
        try:
            longest = max_length(spec)
        except ValueError as e:
            pytest.fail(f"parameter {name}: {e}")
        # SSM pastes the value wherever {{Name}} stands (at least once counted)
        uses = max(1, len(re.findall(r"\{\{\s*" + re.escape(name) + r"\s*\}\}", content.decode())))
        figures[name] = longest * uses
    total = len(content) + sum(figures.values())
    report = (f"document content {len(content):,} bytes + largest parameters "
              f"{sum(figures.values()):,} bytes ({', '.join(f'{k} {v:,}' for k, v in figures.items())}) "
              f"= {total:,} bytes; limit {DOCUMENT_LIMIT:,}")
    print(report)
    assert total <= DOCUMENT_LIMIT, report


def test_template_holds_resources_not_a_program() -> None:
    size = len(TEMPLATE.read_bytes())
    print(f"template.yaml {size:,} bytes; limit {TEMPLATE_LIMIT:,}")
    assert size <= TEMPLATE_LIMIT, f"template.yaml is {size:,} bytes, above {TEMPLATE_LIMIT:,}"
    assert "import " not in TEMPLATE.read_text(), "template.yaml embeds code again"


# --------------------------------------------------------------------------- wiring


def test_template_includes_the_document_file_and_ships_the_installer_as_a_layer() -> None:
    location = include_location()
    assert not location.startswith(("/", "s3://")) and (ROOT / location).is_file()
    resources = template()["Resources"]
    layer = resources["InstallerLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert (ROOT / layer["Properties"]["ContentUri"] / "install_bundle.py").is_file()
    install = resources["InstallTargetFunction"]["Properties"]
    assert install["Environment"]["Variables"]["INSTALLER_LAYER_ARN"] == {"Ref": "InstallerLayer"}
    role = resources["InstallTargetFunctionRole"]["Properties"]  # its own role (template.yaml "probing roles")
    assert install["Role"] == {"Fn::GetAtt": ["InstallTargetFunctionRole", "Arn"]}
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    grants = [s for s in statements if s.get("Action") == "lambda:GetLayerVersion"]
    assert grants and all(s["Resource"] == {"Ref": "InstallerLayer"} for s in grants)


def test_document_parameters_are_quoted_safely_in_the_script() -> None:
    doc = document()
    script = "\n".join(doc["mainSteps"][0]["inputs"]["runCommand"])
    for name, spec in doc["parameters"].items():
        assert f"'{{{{{name}}}}}'" in script or name == "ExecutionTimeout", name
        if "allowedPattern" in spec:
            for bad in ("'", "{", "}", " ", "\n", "$", "`", '"', ";"):
                assert not re.fullmatch(spec["allowedPattern"], "a" + bad + "a"), (name, bad)


def test_every_placeholder_in_the_document_is_a_declared_parameter() -> None:
    doc = document()
    text = json.dumps(doc)
    used = set(re.findall(r"\{\{\s*([A-Za-z0-9_.:-]+)\s*\}\}", text))
    assert used == set(doc["parameters"]), "SSM substitutes every {{Name}}: " + str(used ^ set(doc["parameters"]))


def test_bootstrap_exit_codes_are_the_ones_installer_source_names() -> None:
    script = "\n".join(document()["mainSteps"][0]["inputs"]["runCommand"])
    match = re.search(r"EXIT_UNAVAILABLE, EXIT_CHECKSUM = (\d+), (\d+)", script)
    assert match
    assert {int(match[1]): "installer-unavailable",
                                                   int(match[2]): "installer-checksum-mismatch"} == installer_source.BOOTSTRAP_FAILURES


# --------------------------------------------------------------------------- timeouts


def test_subprocess_timeout_leaves_time_to_restore_after_a_failed_reload() -> None:
    for execution in range(5, 3601):
        each = subprocess_timeout_seconds(execution)
        assert each >= 1
        # download + secret fetch before the swap, test + reload + reload after restore after it
        assert 5 * each <= execution, execution
    assert subprocess_timeout_seconds(600) == 120
    for bad in (4, 3601, 0):
        with pytest.raises(ValueError):
            subprocess_timeout_seconds(bad)


# --------------------------------------------------------------------------- what InstallTarget sends


class FakeLambda:
    def __init__(self, location: str = URL, sha256: str = SHA) -> None:
        self.calls: list[str] = []
        self.location, self.sha256 = location, sha256

    def get_layer_version_by_arn(self, Arn: str) -> dict[str, Any]:  # noqa: N803 (boto3's name)
        self.calls.append(Arn)
        return {"LayerVersionArn": Arn, "Content": {"Location": self.location, "CodeSha256": self.sha256}}


@pytest.fixture
def sent() -> Iterator[tuple[Any, Any]]:
    """The fakes of tests/fakes with one target, and the real LayerInstallerSource on a fake
    Lambda client (its answer is what the document parameters carry)."""
    from tests.fakes.world import world

    installer_source.forget_cached()
    w = world()
    w.inventory.add(Target.model_validate({
        "certificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/abc", "targetId": "web-1",
        "host": "127.0.0.1", "port": 8443, "sni": "web.internal.example", "server": "generic",
        "instanceId": "i-0123456789abcdef0",
        "files": [{"path": "/etc/ssl/web/fullchain.pem", "content": "fullchain"}],
        "reloadCommand": ["systemctl", "reload", "web"]}))
    yield w, installer_source.LayerInstallerSource(FakeLambda())
    installer_source.forget_cached()


def settings(timeout: int) -> InstallSettings:
    return InstallSettings(inventory_table="inv", rollout_table="rol", install_document="doc-1",
                           installer_layer_arn=LAYER_ARN, command_timeout_seconds=timeout)


@pytest.mark.parametrize("timeout", [5, 60, 600, 3600])
def test_install_target_sends_every_document_parameter_with_the_stacks_timeouts(
        sent: tuple[Any, Any], timeout: int) -> None:
    w, installer = sent
    commands.send_target_command(
        "rollback", "arn:aws:acm:eu-west-1:123456789012:certificate/abc", "web-1", "r-1", "0f:ac",
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:cert-rollout/abc-AbCdEf",
        "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111", settings=settings(timeout), inventory=w.inventory,
        commands=w.commands, waiting_tasks=w.waiting_tasks, probe=w.probe, installer=installer)
    [(_, args)] = [c for c in w.commands.calls if c[0] == "send"]
    params = dict(args)["parameters"]
    assert params["ExecutionTimeout"] == str(timeout)
    assert params["CommandTimeout"] == str(max(1, timeout // 5))
    assert (params["InstallerUrl"], params["InstallerSha256"]) == (URL, SHA)
    # exactly the document's parameters, each valid as SSM checks it; AllowOlderSerial (default
    # empty) is sent only for an operator's manual request naming a serial
    values = NodeFleet.validate_parameters(document(), {k: [v] for k, v in params.items()})
    assert set(values) == set(document()["parameters"])
    assert set(params) | {"AllowOlderSerial"} == set(document()["parameters"])
    assert values["AllowOlderSerial"] == params.get("AllowOlderSerial", "")


def test_installer_url_is_reused_for_a_minute_then_asked_again() -> None:
    installer_source.forget_cached()
    fake, now = FakeLambda(), [1000.0]
    first = installer_source.installer_package(LAYER_ARN, lambda_client=fake, clock=lambda: now[0])
    now[0] += installer_source.REUSE_SECONDS - 1
    assert installer_source.installer_package(LAYER_ARN, lambda_client=fake, clock=lambda: now[0]) == first
    assert len(fake.calls) == 1
    now[0] += 2
    again = installer_source.installer_package(LAYER_ARN, lambda_client=fake, clock=lambda: now[0])
    assert len(fake.calls) == 2 and again.expires_at == now[0] + 600
    installer_source.forget_cached()


@pytest.mark.parametrize("location,sha256,named", [
    ("s3://", SHA, "Content.Location"),
    ("https://x.example/a b", SHA, "Content.Location"),
    (URL, "", "CodeSha256"),
    (URL, "abc=", "CodeSha256"),
])
def test_unusable_layer_answer_is_a_named_error(location: str, sha256: str, named: str) -> None:
    installer_source.forget_cached()
    with pytest.raises(installer_source.InstallerUnavailable, match=named):
        installer_source.installer_package(LAYER_ARN, lambda_client=FakeLambda(location, sha256))
    with pytest.raises(ValueError, match="layer version ARN"):
        installer_source.installer_package("arn:aws:lambda:eu-west-1:123456789012:layer:InstallerLayer")


def test_throttled_get_layer_version_is_the_transient_named_error() -> None:
    from botocore.exceptions import ClientError
    from rollout_core.adapters.errors import AwsThrottled

    class Throttled:
        def get_layer_version_by_arn(self, Arn: str) -> dict[str, Any]:  # noqa: N803
            raise ClientError({"Error": {"Code": "TooManyRequestsException", "Message": "slow down"}},
                              "GetLayerVersionByArn")

    installer_source.forget_cached()
    with pytest.raises(AwsThrottled):
        installer_source.installer_package(LAYER_ARN, lambda_client=Throttled())
