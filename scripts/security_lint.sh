#!/usr/bin/env bash
# `make security-lint`: the template as a security reviewer lints it, offline.
#   1. checkov on template.yaml (CloudFormation/SAM checks); any failed check fails the run.
#      Findings accepted for one resource are skipped next to it (Metadata: checkov: skip: ...
#      comment); those accepted for every function in .checkov.yaml (skip-check, a reason each).
#      scripts/check_async_dlq.py keeps what the global CKV_AWS_116 skip gives up: every
#      asynchronously invoked function has an encrypted, alarmed dead-letter queue.
#   2. parliament on every IAM policy of the template as SAM translates it
#      (scripts/iam_policies.py extract, in .venv), findings minus the entries of
#      scripts/parliament_allowlist.yaml (each with its reason) fail the run.
#   3. The gate has teeth: checkov on a copy of the template with one skip removed, and with
#      .checkov.yaml minus one skip-check id, and parliament with the allowlist minus one entry,
#      must each FAIL.
# The linters live in .venv-lint (created here on first use from requirements-lint.in +
# constraints-lint.txt; idempotent like scripts/bootstrap.sh), apart from the pins of .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-eu-west-1} AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-testing} \
  AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-testing}
TEMPLATE=${1:-template.yaml}
ALLOWLIST=scripts/parliament_allowlist.yaml
CHECKOV_CONFIG=.checkov.yaml
LINT=.venv-lint

stamp=$LINT/.installed-$(cat requirements-lint.in constraints-lint.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  if [ ! -x $LINT/bin/python ]; then
    py=$(.venv/bin/python -c "import sys; print(sys._base_executable)")  # .venv's interpreter (bootstrap.sh)
    echo "security-lint: creating $LINT with $("$py" -V 2>&1)"
    "$py" -m venv $LINT
  fi
  echo "security-lint: installing checkov and parliament into $LINT (first run: about two minutes)"
  $LINT/bin/pip install -q --disable-pip-version-check -r requirements-lint.in -c constraints-lint.txt 2>&1 \
    | grep -v "^WARNING: Location" || true
  $LINT/bin/python -W ignore -c "import checkov, parliament"
  rm -f $LINT/.installed-*
  touch "$stamp"
fi

root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run_checkov() {  # $1: template file, $2: checkov config; prints checkov's failed checks (none when it passes)
  # In a directory of their own: checkov also reads a .checkov.yaml of the working directory.
  rm -rf "$work/checkov" && mkdir "$work/checkov" && cp "$1" "$work/checkov/template.yaml"
  cp "$2" "$work/checkov/.checkov.yaml"
  (cd "$work/checkov" && BC_SKIP_MAPPING=TRUE "$root/$LINT/bin/checkov" -f template.yaml --config-file .checkov.yaml \
     --framework cloudformation --compact --quiet --skip-download 2>&1)
}
run_parliament() {  # $1: template file, $2: allowlist
  rm -rf "$work/policies"
  .venv/bin/python scripts/iam_policies.py extract "$1" "$work/policies" >/dev/null
  $LINT/bin/python -W ignore scripts/iam_policies.py check "$work/policies" "$2"
}

status=0
echo "security-lint: checkov -f $TEMPLATE --framework cloudformation (skips: $CHECKOV_CONFIG and the template)"
run_checkov "$TEMPLATE" "$CHECKOV_CONFIG" || status=1
echo "security-lint: every asynchronously invoked function has an encrypted, alarmed dead-letter queue"
.venv/bin/python scripts/check_async_dlq.py "$TEMPLATE" || status=1
echo "security-lint: parliament on every IAM policy of $TEMPLATE (translated by SAM)"
run_parliament "$TEMPLATE" "$ALLOWLIST" || status=1
if [ "$status" != 0 ]; then
  echo "security-lint: FAILED (fix each finding, or accept it with a reason: README, Security review)"
  exit 1
fi

# The gate fails when a finding is introduced: one checkov skip made void (its id renamed) in
# the template, then in .checkov.yaml; one allowlist entry left out.
sed '0,/- id: CKV_/s//- id: VOID_CKV_/' "$TEMPLATE" > "$work/template.yaml"
if cmp -s "$TEMPLATE" "$work/template.yaml" || run_checkov "$work/template.yaml" "$CHECKOV_CONFIG" >/dev/null; then
  echo "security-lint: FAILED: checkov passed a copy of $TEMPLATE with one skip removed"; exit 1
fi
sed '0,/- CKV_/s//- VOID_CKV_/' "$CHECKOV_CONFIG" > "$work/checkov-config.yaml"
if cmp -s "$CHECKOV_CONFIG" "$work/checkov-config.yaml" \
   || run_checkov "$TEMPLATE" "$work/checkov-config.yaml" >/dev/null; then
  echo "security-lint: FAILED: checkov passed with one skip-check of $CHECKOV_CONFIG removed"; exit 1
fi
.venv/bin/python -c 'import sys, yaml; entries = yaml.safe_load(open(sys.argv[1])); yaml.safe_dump(entries[1:], open(sys.argv[2], "w"))' \
  "$ALLOWLIST" "$work/allowlist.yaml"
if run_parliament "$TEMPLATE" "$work/allowlist.yaml" >/dev/null; then
  echo "security-lint: FAILED: parliament passed with the first allowlist entry removed"; exit 1
fi
echo "security-lint: passed; and fails with one checkov skip (template or $CHECKOV_CONFIG) or one allowlist entry removed"
