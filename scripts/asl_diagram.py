"""Draw statemachine/rollout.asl.json as a Mermaid flowchart in README.md (between the
<!-- BEGIN STATE MACHINE --> / <!-- END STATE MACHINE --> markers).

The ASL file is the source (edited by hand or in Workflow Studio); run this after changing it
(`make asl`). tests/unit/test_statemachine.py fails while the README's diagram is stale."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASL = ROOT / "statemachine" / "rollout.asl.json"
README = ROOT / "README.md"


def edges(states: dict, prefix: str = "") -> list[str]:
    lines: list[str] = []
    for name, state in states.items():
        node = prefix + name.replace("?", "")
        shape = {"Choice": "{%s}", "Succeed": "([%s])", "Fail": "[[%s]]", "Wait": "[/%s/]", "Map": "[[%s]]"}
        lines.append(f"    {node}" + (shape.get(state["Type"], "[%s]") % name))
        for target in [state.get("Next"), state.get("Default"), *[c["Next"] for c in state.get("Choices", [])]]:
            if target:
                lines.append(f"    {node} --> {prefix}{target.replace('?', '')}")
        for catch in state.get("Catch", []):
            lines.append(f"    {node} -. {'/'.join(catch['ErrorEquals'])} .-> {prefix}{catch['Next'].replace('?', '')}")
        if state["Type"] == "Map":
            inner = state["ItemProcessor"]
            lines.append(f"    subgraph {node}Iteration[each target, in parallel]")
            lines += edges(inner["States"], prefix="t_")
            lines.append("    end")
            lines.append(f"    {node} --> t_{inner['StartAt']}")
    return lines


def render() -> str:
    asl = json.loads(ASL.read_text())
    body = "\n".join(["```mermaid", "flowchart TD", *edges(asl["States"]), "```"])
    return body


MARKERS = re.compile(r"(<!-- BEGIN STATE MACHINE -->\n).*?(<!-- END STATE MACHINE -->)", re.S)


def update(readme: str) -> str:
    """``readme`` with the diagram between the markers redrawn from the ASL file.
    Raises ValueError when the markers are missing."""
    if not MARKERS.search(readme):
        raise ValueError("README.md has no <!-- BEGIN STATE MACHINE --> ... <!-- END STATE MACHINE --> block")
    return MARKERS.sub(lambda m: m.group(1) + render() + "\n" + m.group(2), readme)


if __name__ == "__main__":
    README.write_text(update(README.read_text()))
    print("README.md state machine diagram updated")
