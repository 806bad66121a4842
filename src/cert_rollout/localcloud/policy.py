"""A small IAM policy evaluator for the local cloud (stands in for IAM's authorization of every
request; moto's own enforcement matches Resource only against "*" for most services, evaluates
Condition only in trust policies and reads no resource policy: moto/iam/access_control.py).

What it evaluates, following the IAM User Guide's "Policy evaluation logic" (same account):
an explicit Deny in the identity policies or the resource policy wins; otherwise an Allow in
the identity policies OR in the resource policy grants; otherwise the request is implicitly
denied. Elements: Effect, Action / NotAction and Resource / NotResource with ``*`` and ``?``
wildcards (actions case-insensitive), Principal of a resource policy (``*``, a role ARN, an
assumed-role session ARN; an account root principal delegates to IAM and grants nothing by
itself), and Condition with the operators String(Not)Equals(IgnoreCase), String(Not)Like,
Arn(Not)Equals, Arn(Not)Like, Bool, Null, the ``IfExists`` suffix and the ForAnyValue: /
ForAllValues: set qualifiers ("IAM JSON policy elements: Condition operators"). Condition
keys compare case-insensitively; a missing key makes a positive operator false and a negated
one true. Not evaluated: policy variables (``${aws:username}``), NotPrincipal, numeric, date,
IP-address and binary operators (a policy using one raises UnsupportedPolicy, so nothing is
silently allowed), permission boundaries, SCPs and session policies.

Compiled policies are plain tuples of precompiled regular expressions; callers cache them
(iam.py caches per principal and per resource-policy text).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

Decision = Literal["ALLOW", "EXPLICIT_DENY", "IMPLICIT_DENY"]
#: Request context: lowercase condition key -> its values (a single-valued key has one).
Context = Mapping[str, Sequence[str]]


class UnsupportedPolicy(ValueError):
    """The policy uses an element or operator this evaluator does not implement (names it)."""


@lru_cache(maxsize=4096)
def _wildcard(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """``*`` (any run of characters, colons included) and ``?`` (one character) as a regex."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{body}$", (re.IGNORECASE | re.DOTALL) if ignore_case else re.DOTALL)


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _arn_like(pattern: str, value: str) -> bool:
    """ArnLike/ArnEquals: the six colon-separated parts compared one by one, each with wildcards
    (the resource part keeps its own colons)."""
    pattern_parts, value_parts = pattern.split(":", 5), value.split(":", 5)
    if len(pattern_parts) != 6 or len(value_parts) != 6:
        return False
    return all(_wildcard(p, False).match(v) is not None for p, v in zip(pattern_parts, value_parts, strict=True))


def _string_match(operator: str, pattern: str, value: str) -> bool:
    """One value against one condition value for the base (non-negated) operator."""
    if operator == "stringequals":
        return pattern == value
    if operator == "stringequalsignorecase":
        return pattern.lower() == value.lower()
    if operator == "stringlike":
        return _wildcard(pattern, False).match(value) is not None
    if operator in ("arnequals", "arnlike"):
        return _arn_like(pattern, value)
    if operator == "bool":
        return pattern.lower() == value.lower()
    raise UnsupportedPolicy(f"condition operator {operator!r} is not evaluated by the local cloud")


_NEGATED = {"stringnotequals": "stringequals", "stringnotequalsignorecase": "stringequalsignorecase",
            "stringnotlike": "stringlike", "arnnotequals": "arnequals", "arnnotlike": "arnlike"}
_POSITIVE = {"stringequals", "stringequalsignorecase", "stringlike", "arnequals", "arnlike", "bool"}


@dataclass(frozen=True)
class _Condition:
    """One (operator, key, values) test of a Condition block."""

    operator: str  # lowercase, without qualifier or IfExists
    qualifier: str  # "", "foranyvalue", "forallvalues"
    if_exists: bool
    key: str  # lowercase
    values: tuple[str, ...]

    def holds(self, context: Context) -> bool:
        present = context.get(self.key)
        if self.operator == "null":
            want_absent = self.values[0].lower() == "true" if self.values else True
            return (not present) == want_absent
        negated = self.operator in _NEGATED
        base = _NEGATED.get(self.operator, self.operator)
        if not present:
            if self.qualifier == "forallvalues":
                return True
            return self.if_exists or (negated and self.qualifier != "foranyvalue")

        def one(value: str) -> bool:
            matched = any(_string_match(base, p, value) for p in self.values)
            return not matched if negated else matched

        if self.qualifier == "forallvalues":
            return all(one(v) for v in present)
        if self.qualifier == "foranyvalue":
            return any(one(v) for v in present)
        if negated:  # single-valued: the value matches none of the condition values
            return all(one(v) for v in present)
        return any(one(v) for v in present)


def _conditions(block: Any) -> tuple[_Condition, ...]:
    if not block:
        return ()
    if not isinstance(block, dict):
        raise UnsupportedPolicy("Condition must be a mapping of operators")
    out: list[_Condition] = []
    for raw_operator, tests in block.items():
        name = str(raw_operator).lower()
        qualifier = ""
        for q in ("foranyvalue:", "forallvalues:"):
            if name.startswith(q):
                qualifier, name = q[:-1], name[len(q):]
        if_exists = name.endswith("ifexists")
        if if_exists:
            name = name[: -len("ifexists")]
        if name not in _POSITIVE and name not in _NEGATED and name != "null":
            raise UnsupportedPolicy(f"condition operator {raw_operator!r} is not evaluated by the local cloud")
        for key, values in dict(tests).items():
            out.append(_Condition(name, qualifier, if_exists, str(key).lower(),
                                  tuple(str(v).lower() if isinstance(v, bool) else str(v) for v in _list(values))))
    return tuple(out)


@dataclass(frozen=True)
class _Statement:
    effect: str  # "Allow" | "Deny"
    actions: tuple[re.Pattern[str], ...]
    not_action: bool
    resources: tuple[re.Pattern[str], ...]
    not_resource: bool
    principals: tuple[str, ...] | None  # None: an identity policy statement (no Principal)
    conditions: tuple[_Condition, ...]
    sid: str

    def applies(self, action: str, resource: str, principal_arns: Sequence[str], context: Context) -> bool:
        action_hit = any(p.match(action) for p in self.actions)
        if action_hit == self.not_action:
            return False
        if self.resources or self.not_resource:
            resource_hit = any(p.match(resource) for p in self.resources)
            if resource_hit == self.not_resource:
                return False
        if self.principals is not None and not self._principal_hit(principal_arns):
            return False
        return all(c.holds(context) for c in self.conditions)

    def _principal_hit(self, principal_arns: Sequence[str]) -> bool:
        assert self.principals is not None
        for p in self.principals:
            if p == "*":
                return True
            if p.endswith(":root") or re.fullmatch(r"\d{12}", p):
                # An account principal: for Deny it covers every principal of the account; for
                # Allow it delegates to the account's IAM policies and grants nothing itself.
                if self.effect == "Deny":
                    return True
                continue
            if p in principal_arns:
                return True
        return False


def _principals(raw: Any) -> tuple[str, ...]:
    if raw == "*":
        return ("*",)
    if not isinstance(raw, dict):
        raise UnsupportedPolicy(f"Principal {raw!r} is not evaluated by the local cloud")
    out: list[str] = []
    for kind, values in raw.items():
        if kind == "AWS":
            out += [str(v) for v in _list(values)]
        # Service and Federated principals never sign the local cloud's requests: no match.
    return tuple(out)


@dataclass(frozen=True)
class CompiledPolicy:
    """One policy document ready for evaluation (statements in order)."""

    statements: tuple[_Statement, ...]
    name: str


def compile_policy(document: Mapping[str, Any] | str, name: str = "", *, resource_policy: bool = False) -> CompiledPolicy:
    """Compile one policy document (dict or JSON text) named ``name`` (for messages).

    ``resource_policy``: statements carry a Principal (required); identity policy statements
    must not. Raises UnsupportedPolicy for NotPrincipal, a missing Effect, an unknown operator
    or a policy variable (``${...}``) in Resource or Condition.
    """
    doc = json.loads(document) if isinstance(document, str) else document
    statements: list[_Statement] = []
    for i, raw in enumerate(_list(doc.get("Statement", []))):
        if "NotPrincipal" in raw:
            raise UnsupportedPolicy(f"{name}: NotPrincipal is not evaluated by the local cloud")
        effect = raw.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise UnsupportedPolicy(f"{name}: statement {i} has Effect {effect!r}")
        not_action = "NotAction" in raw
        not_resource = "NotResource" in raw
        actions = [str(a) for a in _list(raw.get("NotAction" if not_action else "Action", []))]
        resources = [str(r) for r in _list(raw.get("NotResource" if not_resource else "Resource", []))]
        if any("${" in r for r in resources) or "${" in json.dumps(raw.get("Condition", {})):
            raise UnsupportedPolicy(f"{name}: policy variables are not evaluated by the local cloud")
        principals = _principals(raw["Principal"]) if resource_policy and "Principal" in raw else None
        if resource_policy and principals is None:
            raise UnsupportedPolicy(f"{name}: a resource policy statement needs a Principal")
        statements.append(_Statement(
            effect=effect, actions=tuple(_wildcard(a, True) for a in actions), not_action=not_action,
            resources=tuple(_wildcard(r, False) for r in resources), not_resource=not_resource,
            principals=principals, conditions=_conditions(raw.get("Condition")), sid=str(raw.get("Sid", i))))
    return CompiledPolicy(tuple(statements), name)


@dataclass(frozen=True)
class Evaluation:
    """The decision for one (action, resource) and which statement made it."""

    decision: Decision
    reason: str  # "<policy name> statement <sid>", or "no statement allows it"

    @property
    def allowed(self) -> bool:
        return self.decision == "ALLOW"


def evaluate(action: str, resource: str, *, identity: Iterable[CompiledPolicy],
             resource_policy: CompiledPolicy | None = None, principal_arns: Sequence[str] = (),
             context: Context | None = None) -> Evaluation:
    """IAM's decision for ``action`` (``service:Action``) on ``resource`` (an ARN or ``*``).

    ``identity``: the principal's compiled identity policies; ``resource_policy``: the target
    resource's policy, if any (same account); ``principal_arns``: the role ARN and the session
    ARN the request is signed as; ``context``: condition keys (lowercase) -> values.
    Explicit Deny anywhere wins; else an Allow in either grants; else implicit deny.
    """
    ctx = context or {}
    allow: str | None = None
    policies: list[tuple[CompiledPolicy, tuple[str, ...]]] = [(p, ()) for p in identity]
    if resource_policy is not None:
        policies.append((resource_policy, tuple(principal_arns)))
    for policy, arns in policies:
        for statement in policy.statements:
            if not statement.applies(action, resource, arns, ctx):
                continue
            if statement.effect == "Deny":
                return Evaluation("EXPLICIT_DENY", f"{policy.name} statement {statement.sid}")
            allow = allow or f"{policy.name} statement {statement.sid}"
    if allow:
        return Evaluation("ALLOW", allow)
    return Evaluation("IMPLICIT_DENY", "no statement allows it")
