"""Powertools' log_metrics flushes the handler's metrics when it returns and warns "No application
metrics to publish" when there are none: so only a handler whose code adds a metric is decorated
(issue 14: that warning was in every invoke log). add_metric is called in logic/notify.py only,
which the Notify handler runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
METRIC_ADDERS = {"layers/core/rollout_core/logic/notify.py"}
DECORATED = {"notify"}  # functions/notify/app.py runs logic/notify.py


def test_only_notify_logic_adds_metrics():
    adders = {str(p.relative_to(ROOT)) for base in ("layers", "functions") for p in (ROOT / base).rglob("*.py")
              if "add_metric(" in p.read_text()}
    assert adders == METRIC_ADDERS


def test_only_handlers_that_add_metrics_flush_them():
    decorated = {p.parent.name for p in (ROOT / "functions").glob("*/app.py")
                 if re.search(r"^@metrics\.log_metrics", p.read_text(), re.M)}
    assert decorated == DECORATED
    assert "logic.notify import" in (ROOT / "functions/notify/app.py").read_text()
