"""Deleting or replacing the stack keeps what holds or protects data (issue 11, item 7): every
KMS key, DynamoDB table and log group of template.yaml has DeletionPolicy and
UpdateReplacePolicy Retain, and the README's "Deleting the stack" names each of them."""

from __future__ import annotations

from pathlib import Path

from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
RETAINED_TYPES = ("AWS::KMS::Key", "AWS::DynamoDB::Table", "AWS::Logs::LogGroup")
# How the README names each retained resource (logical id -> words of the section).
README_NAMES = {"KeyMaterialKey": "KeyMaterialKey", "OperationsKey": "OperationsKey",
                "InventoryTable": "inventory", "RolloutTable": "rollout", "IdempotencyTable": "idempotency",
                "RolloutStateMachineLogs": "/aws/vendedlogs/states/<stack>-rollout"}


def test_keys_tables_and_log_groups_are_retained() -> None:
    resources = yaml_parse((ROOT / "template.yaml").read_text())["Resources"]
    retained = {lid: r for lid, r in resources.items() if r["Type"] in RETAINED_TYPES}
    assert set(retained) == set(README_NAMES), "a retained resource was added or removed: update README_NAMES"
    wrong = [lid for lid, r in retained.items()
             if r.get("DeletionPolicy") != "Retain" or r.get("UpdateReplacePolicy") != "Retain"]
    assert not wrong, f"without DeletionPolicy/UpdateReplacePolicy Retain: {wrong}"


def test_the_readme_says_what_stays_and_how_to_remove_it() -> None:
    section = (ROOT / "README.md").read_text().split("### Deleting the stack", 1)[1].split("\n#", 1)[0]
    missing = [name for name in README_NAMES.values() if name not in section]
    assert not missing, f'README "Deleting the stack" does not name {missing}'
    for command in ("schedule-key-deletion", "delete-table", "delete-log-group", "delete-secret"):
        assert command in section, command
