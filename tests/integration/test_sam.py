"""The template as SAM CLI sees it: `sam validate --lint` passes and `sam build` builds every
function and the core layer (no container: the python3.12 runtime must be on PATH), and its
built template still finds the SSM document (AWS::Include) and the installer layer's folder,
which `sam deploy` uploads as they are."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from samtranslator.yaml_helper import yaml_parse

pytestmark = [pytest.mark.sam, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SAM = VENV_BIN / "sam"
RUNTIME = "python3.12"


def sam_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])
    env["AWS_DEFAULT_REGION"] = "eu-west-1"
    env["SAM_CLI_TELEMETRY"] = "0"
    return env


def run(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def runtime_env() -> dict[str, str]:
    """sam_env() with a working python3.12 on PATH, or skip.

    pyenv's shims only run a version that is active: add the installed 3.12 to
    PYENV_VERSION (notes/local-cloud-facts.md: PYENV_VERSION=3.11.7:3.12.1 worked).
    """
    env = sam_env()
    pyenv = shutil.which("pyenv", path=env["PATH"])
    if pyenv:
        installed = run([pyenv, "versions", "--bare"], env, 30).stdout.split()
        candidates = [v for v in installed if v.startswith("3.12")]
        if candidates:
            active = run([pyenv, "version-name"], env, 30).stdout.strip()
            versions = [v for v in active.split(":") if v and v in installed and v != candidates[-1]]
            env["PYENV_VERSION"] = ":".join(versions + [candidates[-1]])
    python = shutil.which(RUNTIME, path=env["PATH"])
    if not python:
        pytest.skip(f"no {RUNTIME} on PATH nor installed in pyenv: sam build (no container) needs it")
    check = run([python, "--version"], env, 30)
    if check.returncode != 0:
        pytest.skip(f"{python} does not run ({check.stderr.strip()[:200]}): sam build needs {RUNTIME}")
    return env


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return yaml_parse((ROOT / "template.yaml").read_text())


def test_sam_validate_lint_passes() -> None:
    result = run([str(SAM), "validate", "--lint", "--template-file", "template.yaml"], sam_env(), 120)
    assert result.returncode == 0, f"sam validate --lint failed:\n{result.stdout}\n{result.stderr}"
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_sam_validate_lint_passes_with_the_probe_vpc_parameters_set(tmp_path: Path, template: dict[str, Any]) -> None:
    """The template with ProbeSubnetIds/ProbeSecurityGroupIds defaulting to ids (a copy in
    tmp_path beside links to the folders it names): the probing functions' VpcConfig branch
    (tests/unit/test_template_probe_vpc.py checks what it translates to)."""
    vpc = copy.deepcopy(template)
    vpc["Parameters"]["ProbeSubnetIds"]["Default"] = "subnet-0a1b2c3d4e5f60718,subnet-0f1e2d3c4b5a69788"
    vpc["Parameters"]["ProbeSecurityGroupIds"]["Default"] = "sg-0123456789abcdef0"
    for folder in ("functions", "layers", "installer", "documents", "statemachine"):
        (tmp_path / folder).symlink_to(ROOT / folder, target_is_directory=True)
    (tmp_path / "template.json").write_text(json.dumps(vpc, indent=1))
    result = run([str(SAM), "validate", "--lint", "--template-file", str(tmp_path / "template.json")], sam_env(), 120)
    assert result.returncode == 0, f"sam validate --lint failed:\n{result.stdout}\n{result.stderr}"
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_sam_build_builds_every_function_and_the_layer(tmp_path: Path, template: dict[str, Any],
                                                      record_property: Any) -> None:
    env = runtime_env()
    build = tmp_path / "build"
    started = time.monotonic()
    result = run([str(SAM), "build", "--template-file", "template.yaml", "--build-dir", str(build),
                  "--cache-dir", str(tmp_path / "cache")], env, 540)
    seconds = time.monotonic() - started
    record_property("sam_build_seconds", round(seconds, 1))
    print(f"sam build took {seconds:.1f} s")
    assert result.returncode == 0, (
        f"sam build failed after {seconds:.0f} s:\n{result.stdout}\n{result.stderr}")
    assert (build / "template.yaml").is_file()

    resources = template["Resources"]
    functions = {lid: r for lid, r in resources.items() if r["Type"] == "AWS::Serverless::Function"}
    assert functions
    for logical_id, resource in functions.items():
        source = ROOT / resource["Properties"]["CodeUri"]
        built = build / logical_id
        assert (built / "app.py").is_file(), f"{logical_id} not built"
        assert (built / "app.py").read_text() == (source / "app.py").read_text(), logical_id

    layers = [lid for lid, r in resources.items() if r["Type"] == "AWS::Serverless::LayerVersion"
              and r.get("Metadata", {}).get("BuildMethod")]
    assert layers
    for layer in layers:
        site = build / layer / "python"
        source = ROOT / resources[layer]["Properties"]["ContentUri"]
        for py in (source / "rollout_core").rglob("*.py"):
            relative = py.relative_to(source)
            assert (site / relative).is_file(), f"{layer}: {relative} not in the built layer"
        for package in ("aws_lambda_powertools", "cryptography", "pydantic", "pydantic_core"):
            assert (site / package / "__init__.py").is_file(), f"{layer}: {package} not installed"
        pins = [line.split("==") for line in (source / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#")]
        for name, version in pins:
            dist = name.split("[")[0].replace("-", "_")
            assert list(site.glob(f"{dist}-{version}.dist-info")), f"{layer}: {name}=={version} not installed"
        # The Lambda runtime is Linux x86_64: native wheels must match it.
        assert list((site / "cryptography" / "hazmat" / "bindings").glob("_rust.abi3.so"))
        assert list(site.glob("pydantic_core/_pydantic_core.cpython-312-x86_64-linux-gnu.so"))

    # Not built (no BuildMethod): the built template points back at the sources, which
    # `sam deploy` zips (InstallerLayer) and uploads (the AWS::Include location).
    built = yaml_parse((build / "template.yaml").read_text())["Resources"]
    installer = built["InstallerLayer"]["Properties"]["ContentUri"]
    assert (build / installer / "install_bundle.py").resolve() == (ROOT / "installer" / "install_bundle.py").resolve()
    include = built["InstallBundleDocument"]["Properties"]["Content"]["Fn::Transform"]
    assert include["Name"] == "AWS::Include"
    source = resources["InstallBundleDocument"]["Properties"]["Content"]["Fn::Transform"]["Parameters"]["Location"]
    assert (build / include["Parameters"]["Location"]).resolve() == (ROOT / source).resolve()
