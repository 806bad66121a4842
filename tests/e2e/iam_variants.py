"""Variants of template.yaml with one IAM action taken away, for the tests that show the local
cloud enforces what the template says (test_iam_enforced.py).

A variant is written under a temporary folder as JSON (YAML's superset, read by samtranslator
like the original), beside symbolic links to the project's folders, so relative CodeUri,
DefinitionUri and AWS::Include locations still resolve. The project's files are never written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]


def policy_documents(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """The policy documents a template resource grants: a SAM function's or state machine's
    inline Policies items (not SAM policy templates), an IAM role's inline policies, or an IAM
    policy's PolicyDocument."""
    props = resource.get("Properties", {})
    if resource.get("Type") in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
        return [props["PolicyDocument"]]
    if resource.get("Type") == "AWS::IAM::Role":
        return [p["PolicyDocument"] for p in props.get("Policies", [])]
    policies = props.get("Policies", [])
    return [p for p in policies if isinstance(p, dict) and "Statement" in p] if isinstance(policies, list) else []


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement.get("Action", [])
    return list(actions) if isinstance(actions, list) else [actions]


def without_action(template: dict[str, Any], logical_id: str, action: str) -> int:
    """Remove ``action`` from every Allow statement of resource ``logical_id`` (in place); a
    statement left with no action goes, and so does a policy left with no statement.
    Returns how many statements named it; raises KeyError for an unknown resource and
    LookupError when no statement of that resource names ``action``."""
    resource = template["Resources"][logical_id]
    removed = 0
    for document in policy_documents(resource):
        kept = []
        for statement in document["Statement"]:
            actions = _actions(statement)
            if statement.get("Effect") == "Allow" and action in actions:
                removed += 1
                actions = [a for a in actions if a != action]
                if not actions:
                    continue
                statement = {**statement, "Action": actions}
            kept.append(statement)
        document["Statement"] = kept
    props = resource["Properties"]
    if isinstance(props.get("Policies"), list):
        props["Policies"] = [p for p in props["Policies"] if not (isinstance(p, dict) and (
            p.get("Statement") == [] or p.get("PolicyDocument", {}).get("Statement") == []))]
    if not removed:
        raise LookupError(f"no Allow statement of {logical_id} names {action}")
    return removed


def write_variant(template: dict[str, Any], folder: Path) -> Path:
    """``template`` as ``folder``/template.yaml beside links to the project's folders."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry in ROOT.iterdir():
        if entry.name != "template.yaml" and not entry.name.startswith("."):
            (folder / entry.name).symlink_to(entry)
    path = folder / "template.yaml"
    path.write_text(json.dumps(template, indent=1))
    return path


def project_template() -> dict[str, Any]:
    """template.yaml as samtranslator reads it (short-form intrinsics as their long form)."""
    parsed: dict[str, Any] = yaml_parse((ROOT / "template.yaml").read_text())
    return parsed
