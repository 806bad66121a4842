"""What every fake shares: a log of the calls it received."""

from __future__ import annotations

import json
from typing import Any


class Recording:
    """``calls`` is [(operation, {argument: value})], in call order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _record(self, operation: str, **arguments: Any) -> None:
        self.calls.append((operation, arguments))

    def operations(self) -> list[str]:
        """The operations called, in order."""
        return [op for op, _ in self.calls]

    def state(self) -> Any:
        """What the fake holds besides its calls (overridden where a fake stores things)."""
        return None


def recorded_text(*fakes: Recording) -> str:
    """Every call and stored state of ``fakes`` as one JSON text (bytes and odd values as repr)."""
    return json.dumps([{"fake": type(f).__name__, "calls": f.calls, "state": f.state()} for f in fakes],
                      default=repr)
