"""Embed installer/install_bundle.py into template.yaml's SSM document (InstallBundleDocument).

CloudFormation cannot read a local file into an AWS::SSM::Document, so the installer's text
lives in the template between the BEGIN/END INSTALLER markers, generated from the one source
file. tests/unit/test_template.py fails when the two differ. Run after editing the installer:
    .venv/bin/python scripts/embed_installer.py
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
INSTALLER = ROOT / "installer" / "install_bundle.py"
BEGIN = "# BEGIN INSTALLER"
END = "# END INSTALLER"
HEREDOC = "ROLLOUT_INSTALLER_EOF"

PRELUDE = [
    "set -eu",
    "export ROLLOUT_ACTION='{{Action}}'",
    "export ROLLOUT_SECRET_ARN='{{SecretArn}}'",
    "export ROLLOUT_SECRET_VERSION_ID='{{SecretVersionId}}'",
    "export ROLLOUT_TARGET='{{TargetConfig}}'",
    "export ROLLOUT_EXPECTED_SERIAL='{{ExpectedSerial}}'",
    "PYTHON=$(command -v python3 || command -v python || true)",
    'if [ -z "$PYTHON" ]; then echo "python3 is required on the managed node" >&2; exit 13; fi',
    f"\"$PYTHON\" - <<'{HEREDOC}'",
]


def run_command_lines() -> list[str]:
    """The document's runCommand: the prelude, the installer (comment-only and blank lines
    dropped to stay well under SSM's 64 KB document limit), the heredoc end."""
    source = INSTALLER.read_text()
    if "{{" in source:
        sys.exit("installer/install_bundle.py must not contain '{{': SSM would read it as a parameter")
    if HEREDOC in source:
        sys.exit(f"installer/install_bundle.py must not contain {HEREDOC}")
    body = [line.rstrip() for line in source.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
    return PRELUDE + body + [HEREDOC]


def render(template_text: str) -> str:
    match = re.search(rf"^(?P<indent>[ ]*){re.escape(BEGIN)}.*?$\n(?P<body>.*?)^[ ]*{re.escape(END)}[^\n]*$",
                      template_text, flags=re.M | re.S)
    if not match:
        sys.exit(f"template.yaml has no {BEGIN} ... {END} block")
    indent = match.group("indent")
    lines = "".join(f"{indent}- {json.dumps(line)}\n" for line in run_command_lines())
    return template_text[: match.start("body")] + lines + template_text[match.end("body"):]


if __name__ == "__main__":
    TEMPLATE.write_text(render(TEMPLATE.read_text()))
    print(f"embedded {INSTALLER.relative_to(ROOT)} into {TEMPLATE.relative_to(ROOT)}")
