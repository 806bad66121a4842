"""Issue 14: each user mistake is one line naming the field and the rule, exit 2, no traceback;
the help text as an operator reads it. Through the CLI (typer's CliRunner), no local cloud
started: every mistake here is refused before one would be."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cert_rollout.cli import app
from cert_rollout.commands.common import InventoryTable
from cert_rollout.commands.targets import inventory_name

runner = CliRunner()
ARN = "arn:aws:acm:eu-west-1:123456789012:certificate/6f1e2d3c-4b5a-4987-8c6d-5e4f3a2b1c0d"
EXECUTION = "arn:aws:states:eu-west-1:123456789012:execution:sm:run-1"
GOOD_CERT = "certificates: {web: {domain: web.internal.example}}\nsteps: [{renew: web}]\n"


def one_line_error(result, *needles: str) -> str:
    """The command ended with exit 2 and exactly one error line holding every needle, no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert not re.search(r"[\^$]|\\A|\[A-Za-z", lines[0]), f"a regular expression shown: {lines[0]}"
    return lines[0]


def run_scenario(tmp_path: Path, text: str):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return runner.invoke(app, ["local", "run", str(path)])


# --------------------------------------------------------------------------- scenario mistakes


def test_forty_sans_refused_by_acm_quota(tmp_path):
    sans = ", ".join(f"s{i}.internal.example" for i in range(40))
    r = run_scenario(tmp_path, f"certificates: {{web: {{domain: web.internal.example, sans: [{sans}]}}}}\n"
                               "steps: [{renew: web}]\n")
    one_line_error(r, "certificates.web", "41 domain names", "at most 10")


def test_key_algorithm_outside_acm_refused(tmp_path):
    r = run_scenario(tmp_path, GOOD_CERT.replace("web.internal.example}", "web.internal.example, key_algorithm: RSA_1024}"))
    one_line_error(r, "certificates.web", "key_algorithm 'RSA_1024'", "RSA_2048")


def test_wildcard_domain_accepted_and_bad_name_said_in_words(tmp_path):
    r = run_scenario(tmp_path, GOOD_CERT.replace("web.internal.example", "'*.internal.example'")
                     .replace("steps:", "parameters: {ManagedCertificateTag: 'a|b'}\nsteps:"))
    line = one_line_error(r, "ManagedCertificateTag 'a|b'", "letters, digits")
    assert "certificates" not in line  # the wildcard itself is fine
    r = run_scenario(tmp_path, GOOD_CERT.replace("web.internal.example", "'a*.internal.example'"))
    one_line_error(r, "certificates.web.domain", "wildcard is '*.'")


def test_integer_parameter_accepted_constraints_refused(tmp_path):
    from cert_rollout.localcloud.scenario import Scenario

    path = tmp_path / "s.yaml"
    path.write_text("parameters: {CommandTimeoutSeconds: 20, LogRetentionDays: 90}\n" + GOOD_CERT)
    assert Scenario.load(path).parameters == {"CommandTimeoutSeconds": "20", "LogRetentionDays": "90"}
    one_line_error(run_scenario(tmp_path, "parameters: {CommandTimeoutSeconds: 2}\n" + GOOD_CERT),
                   "CommandTimeoutSeconds must be a number from 5 to 3600, got 2")
    one_line_error(run_scenario(tmp_path, "parameters: {LogRetentionDays: 31}\n" + GOOD_CERT),
                   "LogRetentionDays must be one of 30, 90")
    one_line_error(run_scenario(tmp_path, "parameters: {PollIntervalSeconds: soon}\n" + GOOD_CERT),
                   "PollIntervalSeconds must be a number, got 'soon'")


def test_typo_key_names_unknown_and_missing_key(tmp_path):
    r = run_scenario(tmp_path, GOOD_CERT.replace("steps:", "targets: [{targetid: web-1, certificate: web}]\nsteps:"))
    line = one_line_error(r, "targets[0]", "unknown key 'targetid'", "required key 'id' missing")
    assert "paths" not in line


def test_port_rule_in_words(tmp_path):
    r = run_scenario(tmp_path, GOOD_CERT.replace("steps:", "targets: [{id: w, certificate: web, port: 0}]\nsteps:"))
    line = one_line_error(r, "targets[0].port", "port must be 1-65535, got 0")
    assert "int" not in line


@pytest.mark.parametrize("target, needle", [
    ("{id: '-x', certificate: web}", "must be 1-64 letters, digits"),
])
def test_target_id_rule_in_words(tmp_path, target, needle):
    one_line_error(run_scenario(tmp_path, GOOD_CERT.replace("steps:", f"targets: [{target}]\nsteps:")), needle)


def test_inject_error_rules_in_words(tmp_path):
    r = run_scenario(tmp_path, GOOD_CERT.replace("[{renew: web}]",
                                                 "[{inject_error: {operation: GetItem, table: '1x', code: x}}]"))
    one_line_error(r, "inject_error.table", "a letter, then up to 254 letters or digits", "inject_error.code")


def test_scenario_models_state_no_pattern():
    """Every rule of the scenario format is said in words by a validator: no regex in any model."""
    from cert_rollout.localcloud.scenario import Scenario

    assert '"pattern"' not in json.dumps(Scenario.model_json_schema())


# --------------------------------------------------------------------------- targets (inventory)


def test_targets_add_port_rule_in_words():
    r = runner.invoke(app, ["targets", "add", "--certificate-arn", ARN, "--id", "w", "--host", "h.example",
                            "--port", "0", "--server", "nginx", "--instance-id", "i-0123456789abcdef0", "--inventory-table", "t"])
    line = one_line_error(r, "port must be an integer 1-65535", "got 0")
    assert "int 0" not in line


def test_targets_import_typo_key_named(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(f"- {{certificateArn: '{ARN}', targetid: w, host: h.example, port: 443, server: nginx, "
                    "instanceId: i-0123456789abcdef0}\n")
    r = runner.invoke(app, ["targets", "import", str(path), "--inventory-table", "t"])
    one_line_error(r, "unknown key 'targetid' (did you mean 'targetId'?)", "required key 'targetId' missing")


# --------------------------------------------------------------------------- AWS set-up


@pytest.fixture
def no_aws(monkeypatch, tmp_path):
    # Every AWS_* variable goes (an earlier test in this process may have set one the credential
    # chain reads, e.g. a container-credentials URI), and boto3's default session with it.
    import os

    import boto3

    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.parametrize("args", [["history", EXECUTION], ["renew", ARN],
                                  ["status", "--inventory-table", "t"], ["targets", "list", "--inventory-table", "t"]])
def test_no_region_is_one_line(no_aws, args):
    one_line_error(runner.invoke(app, args), "no AWS region", "--region", "AWS_DEFAULT_REGION")


def test_no_region_json_stays_json(no_aws):
    r = runner.invoke(app, ["history", EXECUTION, "--json"])
    assert r.exit_code == 2
    assert "AWS_DEFAULT_REGION" in json.loads(r.stdout)["error"]


@pytest.mark.parametrize("args", [["history", EXECUTION], ["renew", ARN], ["targets", "list", "--inventory-table", "t"]])
def test_no_credentials_is_one_line(no_aws, monkeypatch, args):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    # An endpoint nothing listens on: the request is signed (and refused for lack of credentials) first.
    one_line_error(runner.invoke(app, [*args, "--endpoint-url", "http://127.0.0.1:9"]),
                   "no AWS credentials", "AWS_PROFILE", "AWS_ACCESS_KEY_ID")


def test_aws_error_names_the_table_and_its_source():
    from botocore.exceptions import ClientError

    from cert_rollout.commands.common import aws_error

    e = ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "Requested resource not found"}},
                    "Scan")
    text = aws_error(e, "inventory table 'wrong' (from --inventory-table)")
    assert text.startswith("inventory table 'wrong' (from --inventory-table) not found")


@pytest.mark.parametrize("env, needle", [(False, "from --inventory-table"), (True, "from $CERT_ROLLOUT_INVENTORY_TABLE")])
def test_name_source(env, needle):
    probe = typer.Typer()

    @probe.command()
    def show(inventory_table_name: InventoryTable = None) -> None:
        typer.echo(inventory_name(inventory_table_name, None, False)[1])

    r = runner.invoke(probe, [] if env else ["--inventory-table", "t"],
                      env={"CERT_ROLLOUT_INVENTORY_TABLE": "t"} if env else {})
    assert r.stdout.strip() == f"inventory table 't' ({needle})"


# --------------------------------------------------------------------------- help


def help_text(*args: str) -> str:
    r = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    return r.stdout


COMMANDS = [["demo"], ["local", "run"], ["invoke"], ["check"], ["rollouts"], ["history"], ["renew"], ["status"],
            ["targets", "add"], ["targets", "list"], ["targets", "remove"], ["targets", "import"], ["bench"],
            ["local", "up"], ["local", "env"], ["local", "down"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_flags_plain_and_every_option_explained(command):
    text = help_text(*command)
    assert "<bool>" not in text
    assert "{" not in text.split("Options")[0]  # the usage line: no braces
    for line in text.splitlines():
        cells = [c.strip() for c in re.split(r"\s{2,}", line.strip("│ ").strip()) if c.strip()]
        if cells and cells[0].lstrip("* ").startswith("--"):
            has_help = len(cells) > 2 or (len(cells) == 2 and not cells[1].startswith("<"))
            assert has_help, f"{' '.join(command)}: option without help: {line.strip()}"


def test_check_usage_host_port_plain():
    assert "[OPTIONS] HOST:PORT" in help_text("check")


def test_local_run_help_says_where_the_format_is():
    text = help_text("local", "run")
    assert "src/cert_rollout/localcloud/scenario.py" in text and "tests/e2e/scenarios" in text
    assert "--history" in text and "history table" in text


def test_targets_add_marks_embedded_local_only():
    assert "embedded (the local cloud's own test server) on the local cloud only" in help_text("targets", "add")


def test_invoke_help_describes_the_seeded_answer():
    text = help_text("invoke")
    assert "NO_TARGETS" in text and "CertificateNotFound" not in text
