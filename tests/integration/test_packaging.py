"""An operator installs the CLI without the local cloud: `pip install acm-cert-rollout` brings what
targets / check / history / renew / status import, and no moto, samtranslator or SAM CLI; the
local-cloud commands then say in one line what to install (pyproject.toml, the [local] extra).

The install is real (pip's resolver on the package's declared dependencies, into a fresh venv),
without the network: the wheels come from a wheelhouse built from the distributions installed in
this test run's own .venv (cached beside them in .venv/.cache/wheelhouse, so later runs only
rebuild the project's own wheel).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import tomllib
import venv
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
HINT = "pip install 'acm-cert-rollout[local]'"
# What only the [local] extra may bring (the brief of issue 9, part 5): never an operator dependency.
LOCAL_ONLY = {"moto", "aws-sam-translator", "aws-sam-cli", "aws-lambda-powertools", "awscli"}
WHEELHOUSE = Path(sys.prefix) / ".cache" / "wheelhouse"


# --------------------------------------------------------------------------- declared vs pinned


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    """scripts/bootstrap.sh installs constraints.txt; pip installs pyproject's ranges: they agree."""
    pins = _pins()
    declared = [*PYPROJECT["dependencies"], *PYPROJECT["optional-dependencies"]["local"]]
    problems = []
    for text in declared:
        req = Requirement(text)
        pin = pins.get(canonicalize_name(req.name))
        if pin is None:
            problems.append(f"{req.name}: not pinned in constraints.txt")
        elif not req.specifier.contains(pin, prereleases=True):
            problems.append(f"{req.name}: pinned {pin}, declared {req.specifier}")
    assert not problems, problems


def _dist_requires(name: str, extras: frozenset[str]) -> list[Requirement]:
    found = []
    for text in importlib.metadata.requires(name) or []:
        req = Requirement(text)
        marker: Marker | None = req.marker
        if marker is None or any(marker.evaluate({"extra": e}) for e in {"", *extras}):
            found.append(req)
    return found


def operator_closure() -> dict[str, importlib.metadata.Distribution]:
    """Every distribution `pip install acm-cert-rollout` (no extra) installs, by canonical
    name, as installed in this interpreter's environment."""
    todo = [Requirement(r) for r in PYPROJECT["dependencies"]]
    seen: dict[str, set[str]] = {}
    dists: dict[str, importlib.metadata.Distribution] = {}
    while todo:
        req = todo.pop()
        key = canonicalize_name(req.name)
        extras = set(req.extras)
        if key in seen and extras <= seen[key]:
            continue
        seen.setdefault(key, set()).update(extras)
        dists[key] = importlib.metadata.distribution(req.name)
        todo += _dist_requires(req.name, frozenset(seen[key]))
    return dists


def test_operator_dependencies_bring_nothing_of_the_local_cloud() -> None:
    assert not LOCAL_ONLY & set(operator_closure()), "an operator dependency pulls in the local cloud"


def test_cli_import_loads_no_local_cloud_code() -> None:
    """Importing the app (every command module) loads neither cert_rollout.localcloud nor moto,
    samtranslator or powertools: the operator commands start without them."""
    code = ("import sys, cert_rollout.cli, cert_rollout.commands.common;"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('moto', 'samtranslator', 'aws_lambda_powertools', 'awscli') or m.startswith('cert_rollout.localcloud'));"
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --------------------------------------------------------------------------- the wheelhouse


def _wheel_tag(dist: importlib.metadata.Distribution) -> str:
    tags = [line.split(":", 1)[1].strip() for line in (dist.read_text("WHEEL") or "").splitlines()
            if line.startswith("Tag:")]
    if not tags:
        return "py3-none-any"
    parts = [sorted({t.split("-")[i] for t in tags}) for i in range(3)]
    return "-".join(".".join(p) for p in parts)


def wheel_from_installed(dist: importlib.metadata.Distribution, wheelhouse: Path) -> Path:
    """Repack an installed distribution (the files its RECORD lists under site-packages) as a
    wheel; scripts outside site-packages are left out (pip regenerates console scripts from
    entry_points.txt)."""
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    path = wheelhouse / f"{name}-{dist.version}-{_wheel_tag(dist)}.whl"
    if path.exists():
        return path
    skip = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
    files = [f for f in dist.files or [] if not str(f).startswith("..") and f.suffix != ".pyc"]
    info_dir = next(f.parts[0] for f in files if f.parts[0].endswith(".dist-info"))
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as whl:
        for f in files:
            if f.parts[0] == info_dir and f.name in skip:
                continue
            data = Path(str(dist.locate_file(f))).read_bytes()
            whl.writestr(str(f), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            writer.writerow([str(f), f"sha256={digest}", len(data)])
        writer.writerow([f"{info_dir}/RECORD", "", ""])
        whl.writestr(f"{info_dir}/RECORD", record.getvalue())
    tmp.rename(path)
    return path


def project_wheel(out: Path) -> Path:
    """The project's own wheel, built (setuptools, no network) from a copy of its sources."""
    src = out / "src-copy"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    src.mkdir()
    shutil.copy2(ROOT / "pyproject.toml", src / "pyproject.toml")
    shutil.copytree(ROOT / "src" / "cert_rollout", src / "src" / "cert_rollout", ignore=ignore)
    shutil.copytree(ROOT / "layers" / "core" / "rollout_core", src / "layers" / "core" / "rollout_core", ignore=ignore)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "-w", str(out / "project"), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return next((out / "project").glob("acm_cert_rollout-*.whl"))


# --------------------------------------------------------------------------- the operator's venv


@pytest.fixture(scope="module")
def operator_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with `pip install --no-index acm-cert-rollout` (no extra) done in it."""
    work = tmp_path_factory.mktemp("packaging")
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    for dist in operator_closure().values():
        wheel_from_installed(dist, WHEELHOUSE)
    wheel = project_wheel(work)
    env_dir = work / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    py = env_dir / "bin" / "python"
    proc = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index",
                           "--find-links", str(WHEELHOUSE), str(wheel)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return env_dir


def run_cli(env_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "AWS_PROFILE")}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="eu-west-1",
               COLUMNS="160")
    return subprocess.run([str(env_dir / "bin" / "cert-rollout"), *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _NotFoundAws(BaseHTTPRequestHandler):
    """Answers every AWS JSON-protocol call (DynamoDB, Step Functions, ACM) with a 400
    ResourceNotFoundException: an error botocore parses and does not retry."""

    def do_POST(self) -> None:  # noqa: N802 - BaseHTTPRequestHandler's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"__type": "ResourceNotFoundException", "message": "no such resource here"}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("x-amzn-RequestId", "local-test")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def not_found_aws() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotFoundAws)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_operator_venv_has_no_local_cloud_packages(operator_venv: Path) -> None:
    code = ("import importlib.util, sys; "
            "found = [m for m in ('moto', 'samtranslator', 'samcli', 'aws_lambda_powertools', 'awscli') "
            "if importlib.util.find_spec(m)]; print(found); sys.exit(1 if found else 0)")
    proc = subprocess.run([str(operator_venv / "bin" / "python"), "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_help_of_the_app_and_of_targets(operator_venv: Path, tmp_path: Path) -> None:
    top = run_cli(operator_venv, "--help", cwd=tmp_path)
    assert top.returncode == 0, top.stderr
    for command in ("demo", "local", "invoke", "check", "rollouts", "history", "renew", "status", "targets", "bench"):
        assert re.search(rf"^\W+{command}\s", top.stdout, re.M), f"{command} missing from --help"
    targets = run_cli(operator_venv, "targets", "--help", cwd=tmp_path)
    assert targets.returncode == 0, targets.stderr
    assert all(sub in targets.stdout for sub in ("add", "list", "remove", "import"))


@pytest.mark.parametrize("args", [
    ["demo"],
    ["local", "run", "scenario.yaml"],
    ["invoke", "ValidateEventFunction", "-e", "event.json"],
    ["bench", "--sizes", "1"],
], ids=["demo", "local-run", "invoke", "bench"])
def test_local_cloud_commands_name_the_extra_in_one_line(operator_venv: Path, tmp_path: Path,
                                                         args: list[str]) -> None:
    (tmp_path / "scenario.yaml").write_text("name: x\n")
    (tmp_path / "event.json").write_text("{}")
    proc = run_cli(operator_venv, *args, cwd=tmp_path)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(lines) == 1 and lines[0].endswith(HINT), lines
    assert "moto" in lines[0]


def test_operator_commands_run_without_the_extra(operator_venv: Path, tmp_path: Path, not_found_aws: str) -> None:
    """Each operator command gets as far as its own named error: the modules it imports when it
    runs (yaml, pydantic, boto3, rollout_core ...) are all installed."""
    bad = tmp_path / "targets.yaml"
    bad.write_text("- {certificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/x', targetId: web-1,"
                   " host: 10.0.0.1, sni: 10.0.0.1, port: 443, server: nginx, instanceId: i-0123456789abcdef0}\n")
    imported = run_cli(operator_venv, "targets", "import", str(bad), "--inventory-table", "t", "--json", cwd=tmp_path)
    assert imported.returncode == 2, imported.stdout + imported.stderr
    assert "nothing imported" in imported.stdout and "forbids IP addresses in SNI" in imported.stdout

    port = _closed_port()
    checked = run_cli(operator_venv, "check", f"127.0.0.1:{port}", "--timeout", "2", "--json", cwd=tmp_path)
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert '"errorType": "TargetUnreachable"' in checked.stdout

    # The inventory commands go through the layer's DynamoInventory (its named AwsError names the call).
    # A missing table is named, with where its name came from (issue 14).
    table = "inventory table 't' (from --inventory-table) not found in this region and account ("
    for args, error in ((["targets", "list", "--inventory-table", "t"], f"{table}Scan: ResourceNotFoundException"),
                        (["status", "--inventory-table", "t"], f"{table}Scan: ResourceNotFoundException"),
                        (["history", "arn:aws:states:eu-west-1:123456789012:execution:sm:x"],
                         "ResourceNotFoundException"),
                        (["rollouts", "web.internal.example", "--state-machine-arn",
                          "arn:aws:states:eu-west-1:123456789012:stateMachine:sm"], "ResourceNotFoundException")):
        proc = run_cli(operator_venv, *args, "--region", "eu-west-1", "--endpoint-url", not_found_aws, "--json",
                       cwd=tmp_path)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        closing = ")" if error.startswith(table) else ""
        assert json.loads(proc.stdout) == {"error": f"{error}: no such resource here{closing}"}
