# The verbs people type. Each target does its own set-up (scripts/bootstrap.sh is idempotent).
VENV := .venv
PY := $(VENV)/bin/python
SAM_PYENV := $(shell command -v pyenv >/dev/null 2>&1 && pyenv versions --bare 2>/dev/null | grep -E '^3\.(11|12)' | tr '\n' ':' | sed 's/:$$//')

.PHONY: bench setup demo test unit e2e sam lint build validate asl clean

setup:
	@bash scripts/bootstrap.sh

demo: setup  ## the main job: a rollout on the embedded local cloud
	$(VENV)/bin/cert-rollout demo --targets 3 --report reports/demo.json

test: setup  ## everything CI runs
	bash scripts/run_tests.sh

unit: setup
	$(VENV)/bin/pytest tests/unit -q

e2e: setup
	$(VENV)/bin/pytest tests/e2e -q -m e2e

validate: setup
	AWS_DEFAULT_REGION=eu-west-1 PATH=$(VENV)/bin:$$PATH sam validate --lint

build: setup
	PYENV_VERSION=$(SAM_PYENV) PATH=$(VENV)/bin:$$PATH sam build

lint: setup  ## ruff (with complexity <= 12), mypy (strict for the layer), checkov + parliament (security-lint)
	$(VENV)/bin/ruff check layers functions src installer scripts tests
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --config-file layers/core/mypy.ini
	bash scripts/security_lint.sh

asl: setup  ## after editing statemachine/rollout.asl.json: redraw the README diagram
	$(PY) scripts/asl_diagram.py

clean:
	rm -rf .aws-sam reports .pytest_cache

bench: setup  ## one rollout at 1, 10, 100, 1,000 targets: BENCHMARKS.md, bench/results.json
	$(VENV)/bin/cert-rollout bench --sizes 1,10,100,1000

.PHONY: security-lint
security-lint: setup  ## checkov on template.yaml, parliament on every IAM policy SAM makes of it (README, Security review)
	bash scripts/security_lint.sh
