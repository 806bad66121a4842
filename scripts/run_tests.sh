#!/usr/bin/env bash
# The test command (make test): set-up, then unit, integration (SAM) and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# nginx, HAProxy, Apache, Tomcat and openssl for the real-server end-to-end tests (Debian packages, as root).
bash scripts/install_servers.sh
export AWS_DEFAULT_REGION=eu-west-1
# Tests never reach AWS: no credentials from the machine, and every client points at 127.0.0.1.
unset AWS_PROFILE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
# the IAM statement sweep (tests/e2e/test_iam_statement_sweep.py, about 4 minutes) runs in CI too
export CERT_ROLLOUT_IAM_SWEEP="${CERT_ROLLOUT_IAM_SWEEP:-1}"
mkdir -p reports
.venv/bin/pytest tests -q -p no:cacheprovider --timeout=900 "$@"
