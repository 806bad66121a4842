#!/usr/bin/env bash
# Create .venv (Python 3.12, the Lambda runtime's version, when the machine has it) and
# install the pinned dependencies. Idempotent: does nothing when the pins have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
  for v in 3.12 3.13; do
    if command -v pyenv >/dev/null 2>&1; then
      p=$(pyenv root)/versions/$(pyenv versions --bare 2>/dev/null | grep -E "^${v}(\.|$)" | tail -1)/bin/python${v}
      [ -x "$p" ] && { echo "$p"; return; }
    fi
    if command -v "python${v}" >/dev/null 2>&1 && "python${v}" -V >/dev/null 2>&1; then
      command -v "python${v}"; return
    fi
  done
  echo "bootstrap: python3.12 not found; falling back to $(command -v python3) (the Lambda runtime is python3.12)" >&2
  command -v python3
}

stamp=.venv/.installed-$(cat requirements.in constraints.txt pyproject.toml | sha256sum | cut -c1-16)
if [ -f "$stamp" ]; then exit 0; fi
if [ ! -x .venv/bin/python ]; then
  py=$(find_python)
  echo "bootstrap: creating .venv with $("$py" -V 2>&1)"
  "$py" -m venv .venv
fi
echo "bootstrap: installing pinned dependencies into .venv (first run: about a minute)"
.venv/bin/pip install -q --disable-pip-version-check -r requirements.in -c constraints.txt 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/pip install -q --disable-pip-version-check --no-deps -e . 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import cert_rollout, rollout_core, moto, samtranslator" 
rm -f .venv/.installed-*
touch "$stamp"
