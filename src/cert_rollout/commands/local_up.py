"""`cert-rollout local up | env | down`: the local cloud as a long-running server on 127.0.0.1,
for trying the operator commands (and the real `aws` CLI) from another terminal.

``local up [--scenario FILE]`` starts the local cloud (moto's threaded server on 127.0.0.1,
``--port`` or a free one) with template.yaml deployed and, from a scenario, its certificates
and targets (its steps are not run: ScenarioRunner.set_up), prints the shell exports that
point boto3 / the AWS CLI / cert-rollout at it and writes them to ``DIR/env`` (DIR:
``--dir``, default ``.local-cloud``). It stays in the foreground until Ctrl-C or SIGTERM;
``--detach`` runs it in the background (its output in ``DIR/log``) and returns once it is up.
Its pid is in ``DIR/pid``; ``local down`` sends it SIGTERM, and it stops everything it started
(target servers, real nginx/HAProxy/Apache/Tomcat, node commands, Lambda workers) before it
exits. ``local env`` prints the exports again: ``eval "$(cert-rollout local env)"``.

The files: ``env`` (``export NAME=VALUE`` lines, sh-quoted), ``stack-outputs.json`` (the
stack's outputs, as --stack-outputs / $CERT_ROLLOUT_STACK_OUTPUTS reads them), ``pid``, ``log``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from cert_rollout.commands.common import require_local
from cert_rollout.processes import process_alive

if TYPE_CHECKING:
    from cert_rollout.localcloud.cloud import LocalCloud

DEFAULT_DIR = Path(".local-cloud")
StateDir = typer.Option(DEFAULT_DIR, "--dir", file_okay=False,
                        help="Directory of the local cloud's env file, stack-outputs.json, pid file and log.")
# Environment variables a credential lookup would prefer to, or mix with, the local cloud's
# exported keys: a session token from elsewhere, a profile (boto3 and the AWS CLI).
UNSET = ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE")


class LocalUpError(Exception):
    """The local cloud cannot be started, found or stopped (the message says why)."""


# --------------------------------------------------------------------------- the environment


def env_name(certificate: str) -> str:
    """The variable holding scenario certificate ``certificate``'s ARN: CERT_ROLLOUT_CERT_<NAME>,
    NAME upper-cased with every character other than a letter or digit as ``_``."""
    return "CERT_ROLLOUT_CERT_" + re.sub(r"[^A-Za-z0-9]", "_", certificate).upper()


def cloud_environment(cloud: LocalCloud, outputs_file: Path, certificates: dict[str, str]) -> dict[str, str]:
    """The variables a second terminal needs: the endpoint, region and the operator's keys
    (LocalCloud.aws_env; the operator's requests are not IAM-evaluated, localcloud/iam.py), no
    pager for the AWS CLI, the stack's name and outputs (each option's environment variable,
    commands/common.py and targets.py / nodes.py), the private CA and each certificate's ARN."""
    assert cloud.deployment
    outputs = cloud.outputs
    env = {**cloud.aws_env(), "AWS_PAGER": "",
           "CERT_ROLLOUT_STACK": cloud.stack_name, "CERT_ROLLOUT_STACK_OUTPUTS": str(outputs_file.resolve()),
           "CERT_ROLLOUT_STATE_MACHINE_ARN": outputs["RolloutStateMachineArn"],
           "CERT_ROLLOUT_INVENTORY_TABLE": outputs["InventoryTableName"],
           "CERT_ROLLOUT_INSTALL_DOCUMENT": outputs["InstallBundleDocumentName"],
           "CERT_ROLLOUT_INSTALLER_LAYER_ARN": outputs["InstallerLayerArn"],
           "CERT_ROLLOUT_MANAGED_TAG": cloud.deployment.parameters.get("ManagedCertificateTag", "managed"),
           "CERT_ROLLOUT_SECRET_PREFIX": cloud.deployment.parameters.get("SecretPrefix", "cert-rollout")}
    if cloud.pca is not None:
        env["CERT_ROLLOUT_PRIVATE_CA_ARN"] = cloud.pca.sub_arn
    for name, arn in certificates.items():
        env[env_name(name)] = arn
    return env


def render_exports(env: dict[str, str]) -> str:
    """``env`` as sh lines: ``unset`` of UNSET, then one ``export NAME=VALUE`` (sh-quoted) each."""
    return f"unset {' '.join(UNSET)}\n" + "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


# --------------------------------------------------------------------------- the pid file


def _is_local_up(pid: int) -> bool:
    """Is ``pid`` a `cert-rollout local up` (not another process that reused the pid)?"""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return process_alive(pid)
    text = b" ".join(args)
    return b"cert_rollout" in text or b"cert-rollout" in text


def running_pid(state_dir: Path) -> int | None:
    """The pid in ``state_dir``/pid when that process is alive and a `local up`; else None."""
    try:
        pid = int((state_dir / "pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if process_alive(pid) and _is_local_up(pid) else None


# --------------------------------------------------------------------------- up


def serve(scenario_path: Path | None, port: int, state_dir: Path, env_file: Path,
          announce: Any = print) -> None:
    """Run the local cloud in this process until SIGTERM or SIGINT: write ``state_dir``/pid,
    start it (with ``scenario_path``'s certificates and targets), write ``env_file`` and
    ``state_dir``/stack-outputs.json, ``announce`` the exports; on the signal stop everything
    and remove the pid and env files. Raises LocalUpError when one is already up, ScenarioError
    / DeployError when the scenario or the template cannot be set up."""
    from cert_rollout.localcloud.cloud import LocalCloud
    from cert_rollout.localcloud.scenario import DEFAULT_PARAMETERS, Scenario, ScenarioRunner

    state_dir.mkdir(parents=True, exist_ok=True)
    other = running_pid(state_dir)
    if other is not None and other != os.getpid():
        raise LocalUpError(f"a local cloud is already up (pid {other}, {state_dir}/pid): "
                           "stop it first with cert-rollout local down")
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    pid_file = state_dir / "pid"
    _write_atomically(pid_file, f"{os.getpid()}\n")
    runner: ScenarioRunner | None = None
    cloud: LocalCloud | None = None
    try:
        if scenario_path is not None:
            prepared = ScenarioRunner(Scenario.load(scenario_path), workdir=state_dir.resolve() / "work",
                                      on_step=lambda m: print(f"> {m}", file=sys.stderr, flush=True))
            cloud = prepared.set_up(port)  # closes what it started when it fails
            runner = prepared
            certificates = dict(runner.certificate_arns)
        else:
            cloud = LocalCloud(parameters=dict(DEFAULT_PARAMETERS), port=port)
            print("> starting the local cloud and deploying template.yaml", file=sys.stderr, flush=True)
            cloud.start()
            cloud.private_ca()  # RenewCertificate and the certificates requested through it need it
            certificates = {}
        outputs_file = state_dir / "stack-outputs.json"
        _write_atomically(outputs_file, json.dumps(cloud.outputs, indent=2) + "\n")
        exports = render_exports(cloud_environment(cloud, outputs_file, certificates))
        _write_atomically(env_file, exports)
        announce(exports)
        print(f"local cloud up at {cloud.endpoint} (pid {os.getpid()}); in another terminal: "
              f"eval \"$(cert-rollout local env --dir {shlex.quote(str(state_dir))})\" or "
              f"source {shlex.quote(str(env_file))}; stop it with Ctrl-C or cert-rollout local down",
              file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
        print("stopping the local cloud", file=sys.stderr, flush=True)
    finally:
        if runner is not None:
            runner.close()
        elif cloud is not None:
            cloud.stop()
        env_file.unlink(missing_ok=True)
        if running_pid(state_dir) in (None, os.getpid()):
            pid_file.unlink(missing_ok=True)
        for s, handler in previous.items():
            signal.signal(s, handler)


def detach(argv: list[str], state_dir: Path, env_file: Path, timeout: float) -> str:
    """Start `cert-rollout local up` (``argv``: its options, without --detach) in a new session
    in the background, its output in ``state_dir``/log; wait (bounded by ``timeout`` seconds)
    until it has written ``env_file``. Returns the exports. Raises LocalUpError with the log's
    last lines when it ends first, or on the timeout (after stopping it)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    other = running_pid(state_dir)
    if other is not None:
        raise LocalUpError(f"a local cloud is already up (pid {other}, {state_dir}/pid): "
                           "stop it first with cert-rollout local down")
    env_file.unlink(missing_ok=True)
    log = state_dir / "log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cert_rollout.cli", "local", "up", *argv],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + timeout
    while not env_file.exists():
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise LocalUpError(f"local up ended with exit {proc.returncode} before it was up "
                               f"({log}): {' | '.join(tail) or 'no output'}")
        if time.monotonic() > deadline:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            raise LocalUpError(f"local up was not up after {timeout:.0f} s: stopped it (log {log})")
        time.sleep(0.2)
    return env_file.read_text()


def stop_local_cloud(state_dir: Path, timeout: float) -> int | None:
    """SIGTERM to the `local up` of ``state_dir``/pid, then wait (bounded by ``timeout``) until
    it has stopped what it started and exited; after the timeout SIGKILL its process group
    (a detached one leads its own session). Returns the pid stopped, None when none was up
    (a stale pid file is removed). Raises LocalUpError when it is still alive after SIGKILL."""
    pid = running_pid(state_dir)
    if pid is None:
        (state_dir / "pid").unlink(missing_ok=True)
        return None
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if process_alive(pid):
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
    except ProcessLookupError:
        pass  # it ended meanwhile
    if process_alive(pid):
        raise LocalUpError(f"local up (pid {pid}) is still alive after SIGTERM and SIGKILL")
    (state_dir / "pid").unlink(missing_ok=True)
    return pid


# --------------------------------------------------------------------------- the commands


def local_up(
    scenario: Path | None = typer.Option(None, "--scenario", exists=True, dir_okay=False,
                                         help="Scenario YAML whose certificates and targets are set up (its steps "
                                              "are not run); format: top of src/cert_rollout/localcloud/scenario.py."),
    port: int = typer.Option(0, "--port", min=0, max=65535,
                             help="Port of the local cloud's endpoint on 127.0.0.1 (default: a free port)."),
    state_dir: Path = StateDir,
    env_file: Path | None = typer.Option(None, "--env-file", dir_okay=False,
                                         help="Where to write the exports (default: DIR/env)."),
    detached: bool = typer.Option(False, "--detach", help="Run in the background (output in DIR/log, pid in "
                                                          "DIR/pid); return once it is up."),
    timeout: float = typer.Option(300.0, "--timeout", min=1, help="Seconds --detach waits for it to be up."),
) -> None:
    """Start the local cloud and keep it up: template.yaml deployed, the scenario's certificates
    and targets set up. Prints the shell exports for another terminal (also in DIR/env:
    `eval "$(cert-rollout local env)"`); stays in the foreground until Ctrl-C, SIGTERM or
    `cert-rollout local down`. Exit 2 when it cannot start."""
    require_local("local up")
    from cert_rollout.localcloud.deploy import DeployError
    from cert_rollout.localcloud.scenario import ScenarioError

    target = env_file or state_dir / "env"
    try:
        if detached:
            argv = ["--port", str(port), "--dir", str(state_dir), "--env-file", str(target)]
            argv += ["--scenario", str(scenario)] if scenario else []
            typer.echo(detach(argv, state_dir, target, timeout), nl=False)
            typer.echo(f"local cloud up in the background (pid {running_pid(state_dir)}, log {state_dir}/log); "
                       "stop it with cert-rollout local down", err=True)
            return
        serve(scenario, port, state_dir, target, announce=lambda text: typer.echo(text, nl=False))
    except (LocalUpError, ScenarioError, DeployError, OSError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None


def local_env(state_dir: Path = StateDir,
              env_file: Path | None = typer.Option(None, "--env-file", dir_okay=False,
                                                   help="The exports file (default: DIR/env).")) -> None:
    """Print the running local cloud's shell exports: `eval "$(cert-rollout local env)"`.
    Exit 1 when no local cloud is up."""
    path = env_file or state_dir / "env"
    if running_pid(state_dir) is None or not path.exists():
        typer.echo(f"error: no local cloud is up ({state_dir}/pid): start one with cert-rollout local up", err=True)
        raise typer.Exit(1)
    typer.echo(path.read_text(), nl=False)


def local_down(state_dir: Path = StateDir,
               timeout: float = typer.Option(120.0, "--timeout", min=1,
                                             help="Seconds to wait for it to stop before SIGKILL.")) -> None:
    """Stop the local cloud `local up` started (SIGTERM to DIR/pid; it stops its target servers,
    nodes and Lambda workers, then exits). Exit 0 also when none was up."""
    try:
        pid = stop_local_cloud(state_dir, timeout)
    except (LocalUpError, OSError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo("no local cloud was up" if pid is None else f"local cloud stopped (pid {pid})", err=True)


def register(app: typer.Typer) -> None:
    """Add ``up``, ``env`` and ``down`` to the ``local`` group."""
    app.command("up")(local_up)
    app.command("env")(local_env)
    app.command("down")(local_down)
