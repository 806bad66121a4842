"""Validation messages for people: each problem one line naming the field (``targets[0].port``)
and the rule in words, never a regular expression or a Python type name.

``StrictKeys`` is the base of the scenario models (cert_rollout.localcloud.scenario): an unknown
key is named with the closest known one, and a missing required key is named, before any field
is checked (so a typo such as ``targetid:`` is reported as the unknown and the missing key, not
as whatever rule the misspelt value would break). ``problems`` turns a pydantic ValidationError
into those lines.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError, model_validator

# pydantic error types whose own message states the rule in words, rewritten only to name what
# was given; string_pattern_mismatch would show the regex: it is replaced by a rule-less text
# (the scenario models say their rules in words in validators, tests/unit/test_validation_text.py).
_WORDS = {
    "missing": "is required but missing",
    "extra_forbidden": "is not a known key",
    "string_pattern_mismatch": "does not have the form this field needs",
}


def _keys(model: type[BaseModel]) -> set[str]:
    """Every key ``model`` accepts in a file: its field names and their aliases."""
    return {name for name in model.model_fields} | {f.alias for f in model.model_fields.values() if f.alias}


def key_problem(model: type[BaseModel], data: Any, required: tuple[str, ...] | None = None) -> str | None:
    """Why the keys of the mapping ``data`` do not fit ``model`` (unknown keys, each with the
    closest known key, and missing required keys: ``required``, else the model's), None when
    they fit or ``data`` is no mapping."""
    if not isinstance(data, dict):
        return None
    known = _keys(model)
    unknown = sorted(str(k) for k in data if k not in known)
    missing = sorted(f.alias or n for n, f in model.model_fields.items()
                     if (f.is_required() if required is None else n in required)
                     and n not in data and (f.alias is None or f.alias not in data))
    parts = []
    for key in unknown[:10]:
        guess = next(iter(difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)), None)
        lowered = {k.lower(): k for k in known}.get(key.lower())
        guess = lowered or guess
        parts.append(f"unknown key {key!r}" + (f" (did you mean {guess!r}?)" if guess else ""))
    if missing:
        parts.append(f"required key{'s' if len(missing) > 1 else ''} {', '.join(repr(m) for m in missing)} missing")
    if not parts:
        return None
    return "; ".join(parts) + f" (known keys: {', '.join(sorted(known))})"


class StrictKeys(BaseModel):
    """A model whose file form is checked key by key first (key_problem): unknown and missing
    keys are one named problem, before any value is validated."""

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        problem = key_problem(cls, data)
        if problem:
            raise ValueError(problem)
        return data


def location(loc: tuple[int | str, ...]) -> str:
    """``("targets", 0, "port")`` as ``targets[0].port``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def problems(error: ValidationError, root: str = "scenario") -> list[str]:
    """One line per problem of ``error``: ``field: rule in words`` (``root`` when the problem
    is the whole document's). pydantic's "Value error, " prefix and regular expressions are
    never shown."""
    lines = []
    for item in error.errors(include_url=False):
        where = location(tuple(item.get("loc", ()))) or root
        kind = item.get("type", "")
        message = str(item.get("msg", ""))
        if kind == "value_error":
            message = message.removeprefix("Value error, ")
        elif kind in _WORDS:
            message = _WORDS[kind]
        elif "input" in item and isinstance(item["input"], (int, float, str, bool)) and kind != "missing":
            message = f"{message[:1].lower()}{message[1:]} (got {item['input']!r})"
        lines.append(f"{where}: {message}")
    return lines
