"""Every ARN is in the deployment's partition (issue 11, item 7).

The state machine's Resource ARNs enter through the Partition DefinitionSubstitution
(template.yaml, ``!Ref AWS::Partition``); the code builds ARNs with rollout_core.domain.arns
from the region or an ARN it has. A literal ``arn:aws:`` (the commercial partition written in)
fails here when it appears in template.yaml, the ASL, the SSM documents, or any string of the
code that is not a docstring (docstrings are documented examples; comments are not code).
Regular expressions that accept every partition (``arn:aws[a-z-]*:``) do not contain it."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
from rollout_core.domain.arns import InvalidArn, build_arn, partition_for_region, partition_of
from samtranslator.yaml_helper import yaml_parse

from cert_rollout.localcloud.deploy import Deployer, Deployment, _substitute

ROOT = Path(__file__).resolve().parents[2]
LITERAL = "arn:aws:"
CODE_DIRS = ("layers", "functions", "src", "installer", "scripts")
TEXT_FILES = ("template.yaml", "statemachine/rollout.asl.json")


def docstring_nodes(tree: ast.AST) -> set[int]:
    """ids of the Constant nodes that are docstrings (module, class, function)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def literal_arns_in_code(path: Path, root: Path = ROOT) -> list[str]:
    """``path:line`` (relative to ``root``) of each string constant (f-string parts included)
    holding ``arn:aws:``, docstrings excepted."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = docstring_nodes(tree)
    return [f"{path.relative_to(root)}:{node.lineno}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and LITERAL in node.value
            and id(node) not in docstrings]


def code_files() -> list[Path]:
    return sorted(p for d in CODE_DIRS for p in (ROOT / d).rglob("*.py")
                  if ".venv" not in p.parts and "__pycache__" not in p.parts)


def test_no_literal_aws_partition_in_code() -> None:
    files = code_files()
    assert len(files) > 50  # the walk found the code
    found = [hit for path in files for hit in literal_arns_in_code(path)]
    assert not found, f"ARNs with a literal aws partition (use rollout_core.domain.arns.build_arn): {found}"


def test_no_literal_aws_partition_in_template_asl_or_documents() -> None:
    paths = [ROOT / p for p in TEXT_FILES] + sorted((ROOT / "documents").glob("*"))
    found = [f"{p.relative_to(ROOT)}:{n}" for p in paths
             for n, line in enumerate(p.read_text().splitlines(), 1) if LITERAL in line]
    assert not found, f"use ${{AWS::Partition}} (template) or ${{Partition}} (ASL): {found}"


def test_the_check_finds_a_planted_literal(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text('"""Docstring example: arn:aws:acm:eu-west-1:123456789012:certificate/x."""\n'
                       'ok = r"^arn:aws[a-z-]*:sns:"\n'
                       'def f(region: str) -> str:\n'
                       '    """arn:aws:states:::lambda:invoke in a docstring is an example."""\n'
                       '    return f"arn:aws:sns:{region}:123456789012:topic"\n')
    assert literal_arns_in_code(planted, tmp_path) == ["planted.py:5"]


def template() -> dict[str, Any]:
    return yaml_parse((ROOT / "template.yaml").read_text())  # type: ignore[no-any-return]


def test_every_state_machine_resource_arn_uses_the_partition_substitution() -> None:
    machine = template()["Resources"]["RolloutStateMachine"]["Properties"]
    assert machine["DefinitionSubstitutions"]["Partition"] == {"Ref": "AWS::Partition"}
    text = (ROOT / "statemachine/rollout.asl.json").read_text()
    resources = re.findall(r'"Resource": "([^"]+)"', text)
    assert resources, "no Task Resource found in the ASL"
    assert all(r.startswith("arn:${Partition}:") for r in resources), resources


@pytest.mark.parametrize(("region", "partition"), [
    ("eu-west-1", "aws"), ("us-east-1", "aws"), ("ap-southeast-2", "aws"), ("cn-north-1", "aws-cn"),
    ("cn-northwest-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov"), ("us-iso-east-1", "aws-iso"),
    ("us-isob-east-1", "aws-iso-b"), ("eu-isoe-west-1", "aws-iso-e"), ("eusc-de-east-1", "aws-eusc"),
])
def test_the_local_cloud_substitutes_the_partition_of_its_region(region: str, partition: str) -> None:
    assert partition_for_region(region) == partition
    deployer = Deployer(lambda _: None, region, "123456789012", "stack")
    d = Deployment(stack_name="stack", region=region, account_id="123456789012", parameters={})
    assert deployer._ref("AWS::Partition", d) == partition
    machine = template()["Resources"]["RolloutStateMachine"]["Properties"]
    substitutions = {k: str(deployer._resolve(v, d, {})) if k == "Partition" else "fn"
                     for k, v in machine["DefinitionSubstitutions"].items()}
    definition = json.loads(_substitute((ROOT / "statemachine/rollout.asl.json").read_text(),
                                        lambda n: substitutions.get(n, "${" + n + "}")))
    text = json.dumps(definition)
    assert "${Partition}" not in text
    # every Lambda task of the ASL file (plain and .waitForTaskToken), each with the region's partition
    tasks = (ROOT / "statemachine/rollout.asl.json").read_text().count('"arn:${Partition}:states:::lambda:invoke')
    assert tasks >= 12 and text.count(f'"arn:{partition}:states:::lambda:invoke') == tasks
    assert deployer._arn("sqs", "q") == f"arn:{partition}:sqs:{region}:123456789012:q"


def test_partition_of_an_arn() -> None:
    assert partition_of("arn:aws-cn:acm:cn-north-1:123456789012:certificate/abc") == "aws-cn"
    assert partition_of("arn:aws:states:eu-west-1:123456789012:execution:m:e") == "aws"
    for bad in ("", "aws:acm", "arn:gcp:acm:x", "arn:aws"):
        with pytest.raises(InvalidArn):
            partition_of(bad)


def test_build_arn() -> None:
    assert build_arn("aws-us-gov", "ec2", "us-gov-west-1", "123456789012", "instance/i-0abc") == \
        "arn:aws-us-gov:ec2:us-gov-west-1:123456789012:instance/i-0abc"
    assert build_arn("aws", "acm-pca", "", "", "template/RootCACertificate/V1") == \
        "arn:aws:acm-pca:::template/RootCACertificate/V1"
    for args in (("gcp", "ec2", "eu-west-1", "123456789012", "x"), ("aws", "EC2", "eu-west-1", "123456789012", "x"),
                 ("aws", "ec2", "Europe", "123456789012", "x"), ("aws", "ec2", "eu-west-1", "12", "x"),
                 ("aws", "ec2", "eu-west-1", "123456789012", "")):
        with pytest.raises(InvalidArn):
            build_arn(*args)
    with pytest.raises(InvalidArn):
        partition_for_region("not a region")
