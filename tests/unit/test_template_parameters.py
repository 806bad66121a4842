"""Every template parameter reaches the code in the unit its name states (issue 9, part 2).

The test reads template.yaml as `sam deploy` would (samtranslator's YAML loader, the one
src/cert_rollout/localcloud/deploy.py uses; an ``Fn::Transform: AWS::Include`` of a local file
is replaced by that file) and follows EVERY parameter to where it goes:

* the environment of each function (Globals and the function's own ``Environment``, through
  ``!Ref``, ``!Sub`` and the other intrinsics). There the function's settings model (the class
  its ``app.py`` passes to ``load_settings``, layers/core/rollout_core/settings.py) is built from
  that environment with the parameter's Default, MinValue and MaxValue (or each AllowedValue):
  every setting derived from the variable must equal the parameter in the unit its name states
  (``IDEMPOTENCY_TTL_DAYS`` -> ``idempotency_ttl_days`` = days and ``idempotency_ttl_seconds`` =
  days x 86,400), and a value just outside the parameter's bounds must be refused by the model;
* SSM document parameters (their ``default``) and state machine ``DefinitionSubstitutions``
  (the ASL field the placeholder fills);
* a few resource properties AWS itself reads (RESOURCE_PROPERTY_UNITS).

A parameter that reaches none of these, an environment variable no settings field reads, or a
parameter whose unit the rules below cannot determine is a finding that names the parameter.
Map concurrency is also followed from the ASL's ``MaxConcurrencyPath`` back to the parameter:
an inline Map runs at most 40 iterations at once (AWS Step Functions Developer Guide, "Using
Map state in Inline mode"), so the parameter must say 1..40.

The checker is a function over a template dict, so the tests at the end feed it small broken
templates (the bug of issue 9 among them) and show that each kind of drift is reported.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from rollout_core import settings as settings_module
from rollout_core.settings import load_settings
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"

# ------------------------------------------------------------------------------------ unit rules
# Units a name states, by suffix: template parameters and SSM document parameters in CamelCase,
# environment variables in UPPER_SNAKE, settings attributes in lower_snake.
SECONDS_PER = {"seconds": 1, "days": 86400}
CAMEL_UNIT_SUFFIXES = {"Seconds": "seconds", "Days": "days"}
SNAKE_UNIT_SUFFIXES = {"_seconds": "seconds", "_days": "days"}
# A Number parameter named Max<Something> is a count (MaxConcurrency, MaxTargetsPerRollout).
COUNT_PREFIXES = ("Max",)
# Names AWS gives to unit-carrying fields, where the name itself states no unit.
# SSM gives every timeout in seconds (aws:runShellScript timeoutSeconds, SendCommand TimeoutSeconds):
# a document parameter named ...Timeout is in seconds.
SSM_PARAMETER_SUFFIX_UNITS = {"Timeout": "seconds"}
ASL_FIELD_UNITS = {"MaxConcurrency": "count", "MaxAttempts": "count", "Seconds": "seconds",
                   "TimeoutSeconds": "seconds", "HeartbeatSeconds": "seconds", "IntervalSeconds": "seconds"}
# Resource properties that AWS reads (no code of ours): (resource type, property) -> unit.
RESOURCE_PROPERTY_UNITS = {("AWS::Logs::LogGroup", "RetentionInDays"): "days",
                           ("AWS::SNS::Subscription", "Endpoint"): "text",
                           # IAM reads a function's policies: a tag value in a Condition (TargetNodeTag).
                           ("AWS::Serverless::Function", "Policies"): "text",
                           ("AWS::IAM::Role", "Policies"): "text",  # the probing roles (template.yaml)
                           # Lambda places the function's ENIs (ProbeSubnetIds, ProbeSecurityGroupIds).
                           ("AWS::Serverless::Function", "VpcConfig"): "text"}
# Environment variables read by libraries, not by our settings models.
LIBRARY_ENV_PREFIXES = ("POWERTOOLS_",)
# An inline Map runs at most this many iterations at once; a distributed Map up to 10,000.
MAP_CONCURRENCY_LIMIT = {"INLINE": 40, "DISTRIBUTED": 10000}

STACK, REGION, ACCOUNT = "stack", "eu-west-1", "123456789012"
PSEUDO = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::StackName": STACK,
          "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"}


class UnrenderableExpression(Exception):
    """An intrinsic the checker does not evaluate (names it)."""


def parameter_unit(name: str, spec: dict[str, Any]) -> str | None:
    """days | seconds | count | text, from the parameter's name and Type; None when unknown."""
    for suffix, unit in CAMEL_UNIT_SUFFIXES.items():
        if name.endswith(suffix):
            return unit
    if spec.get("Type") in ("String", "CommaDelimitedList"):
        return "text"
    if spec.get("Type") == "Number" and name.startswith(COUNT_PREFIXES):
        return "count"
    return None


def snake_unit(name: str) -> str | None:
    """The unit a snake_case (or UPPER_SNAKE) name states, None when it states none."""
    for suffix, unit in SNAKE_UNIT_SUFFIXES.items():
        if name.lower().endswith(suffix):
            return unit
    return None


def camel_unit(name: str, table: dict[str, str], suffixes: dict[str, str] | None = None) -> str | None:
    """The unit of an AWS field name: the explicit table first, then a CamelCase suffix."""
    if name in table:
        return table[name]
    for suffix, unit in {**CAMEL_UNIT_SUFFIXES, **(suffixes or {})}.items():
        if name.endswith(suffix):
            return unit
    return None


def units_agree(parameter: str, carrier: str | None) -> bool:
    """Does a carrier with unit ``carrier`` (None: the name states no time unit) carry a
    parameter of unit ``parameter`` unchanged? Counts and text go where no time unit is named."""
    if parameter in SECONDS_PER:
        return carrier == parameter
    return carrier in (None, "count", "text")


def camel_to_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# ------------------------------------------------------------------------------ template reading
def load_template(path: Path) -> dict[str, Any]:
    """template.yaml as a dict (CloudFormation short tags become Fn:: forms), AWS::Include resolved."""
    return resolve_includes(yaml_parse(path.read_text()), path.parent)


def resolve_includes(node: Any, base: Path) -> Any:
    """Replace each ``Fn::Transform: {Name: AWS::Include, Parameters: {Location: file}}`` by the
    file's content (YAML or JSON), merged with the keys beside it, as CloudFormation does.
    Raises FileNotFoundError naming the file, ValueError for a Location that is not a local file."""
    if isinstance(node, list):
        return [resolve_includes(v, base) for v in node]
    if not isinstance(node, dict):
        return node
    transform = node.get("Fn::Transform")
    if transform is not None:
        transforms = transform if isinstance(transform, list) else [transform]
        merged = {k: v for k, v in node.items() if k != "Fn::Transform"}
        for t in transforms:
            if t.get("Name") != "AWS::Include":
                continue
            location = str(t["Parameters"]["Location"])
            if "://" in location:
                raise ValueError(f"AWS::Include of {location}: only a file in this repository can be followed")
            included = yaml_parse((base / location).read_text())
            if not isinstance(included, dict):
                return resolve_includes(included, base)
            merged.update(included)
        node = merged
    return {k: resolve_includes(v, base) for k, v in node.items()}


def referenced_names(expr: Any) -> set[str]:
    """Every name an expression refers to: Ref, GetAtt's resource, ${Name} of Fn::Sub."""
    if isinstance(expr, list):
        return set().union(*(referenced_names(v) for v in expr)) if expr else set()
    if not isinstance(expr, dict):
        return set()
    if set(expr) == {"Ref"}:
        return {str(expr["Ref"])}
    if set(expr) == {"Fn::GetAtt"}:
        arg = expr["Fn::GetAtt"]
        return {arg[0] if isinstance(arg, list) else str(arg).split(".", 1)[0]}
    if set(expr) == {"Fn::Sub"}:
        arg = expr["Fn::Sub"]
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        names = {m.split(".", 1)[0] for m in re.findall(r"\$\{(?!!)([^}]+)\}", text)} - set(variables)
        return names | referenced_names(list(variables.values()))
    return referenced_names(list(expr.values()))


@dataclass
class Renderer:
    """Evaluates intrinsics the way CloudFormation would, with chosen parameter values and
    made-up physical ids for resources (names, ARNs in the resource's service)."""

    template: dict[str, Any]
    values: dict[str, str]

    def render(self, expr: Any) -> Any:
        if isinstance(expr, list):
            return [self.render(v) for v in expr]
        if not isinstance(expr, dict):
            return expr if isinstance(expr, str) else json.dumps(expr) if isinstance(expr, bool) else str(expr)
        if len(expr) != 1 or not next(iter(expr)).startswith(("Fn::", "Ref", "Condition")):
            return {k: self.render(v) for k, v in expr.items()}
        (key, arg), = expr.items()
        handler: Callable[[Any], Any] | None = {
            "Ref": self._ref, "Fn::GetAtt": self._get_att, "Fn::Sub": self._sub,
            "Fn::Join": lambda a: a[0].join(str(p) for p in self.render(a[1])),
            "Fn::If": lambda a: self.render(a[1] if self.condition(a[0]) else a[2]),
        }.get(key)
        if handler is None:
            raise UnrenderableExpression(f"{key} is not evaluated by this test")
        return handler(arg)

    def condition(self, name: str) -> bool:
        return bool(self._truth(self.template.get("Conditions", {})[name]))

    def _truth(self, expr: Any) -> Any:
        (key, arg), = expr.items()
        if key == "Fn::Equals":
            return str(self.render(arg[0])) == str(self.render(arg[1]))
        if key == "Fn::Not":
            return not self._truth(arg[0])
        if key == "Fn::And":
            return all(self._truth(a) for a in arg)
        if key == "Fn::Or":
            return any(self._truth(a) for a in arg)
        if key == "Condition":
            return self.condition(arg)
        raise UnrenderableExpression(f"condition {key} is not evaluated by this test")

    def _ref(self, name: str) -> str:
        if name == "AWS::NoValue":  # drops the property in CloudFormation; here an empty text
            return ""
        if name in self.values:
            return self.values[name]
        if name in PSEUDO:
            return PSEUDO[name]
        resource = self.template.get("Resources", {}).get(name)
        if resource is None:
            raise UnrenderableExpression(f"Ref {name}: no such parameter or resource")
        if resource.get("Type") in ("AWS::SNS::Topic", "AWS::Serverless::StateMachine",
                                    "AWS::StepFunctions::StateMachine", "AWS::IAM::ManagedPolicy"):
            return self._arn(name, resource)
        if resource.get("Type") in ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"):
            return f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{name}:1"  # Ref of a layer: its version ARN
        return f"{STACK}-{name}-0A1B2C3D"

    def _get_att(self, arg: Any) -> str:
        name, attribute = arg if isinstance(arg, list) else str(arg).split(".", 1)
        resource = self.template.get("Resources", {}).get(name)
        if resource is None:
            raise UnrenderableExpression(f"Fn::GetAtt {name}.{attribute}: no such resource")
        return self._arn(name, resource) if attribute == "Arn" else f"{STACK}-{name}-{attribute}"

    def _arn(self, name: str, resource: dict[str, Any]) -> str:
        service = resource["Type"].split("::")[1].lower()
        service = {"serverless": "lambda", "stepfunctions": "states"}.get(service, service)
        if resource["Type"].endswith("::StateMachine"):  # arn:aws:states:<region>:<account>:stateMachine:<name>
            return f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{STACK}-{name}"
        return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{STACK}-{name}"

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        rendered = {k: str(self.render(v)) for k, v in variables.items()}

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in rendered:
                return rendered[name]
            if "." in name and not name.startswith("AWS::"):
                return self._get_att(name)
            return self._ref(name)

        return re.sub(r"\$\{([^}]+)\}", one, text)


# --------------------------------------------------------------------------------- the checker
@dataclass(frozen=True)
class Function:
    """One function of the template: its merged environment and its settings model."""

    logical_id: str
    environment: dict[str, Any]
    own_variables: frozenset[str]
    settings: type[BaseModel] | None


def settings_model_of(code_dir: Path) -> type[BaseModel] | None:
    """The model ``app.py`` in ``code_dir`` passes to ``load_settings(...)``; failing that, the one
    settings model it imports from rollout_core.settings; None when neither."""
    app = code_dir / "app.py"
    if not app.is_file():
        return None
    tree = ast.parse(app.read_text())
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "load_settings"
                and node.args and isinstance(node.args[0], ast.Name)):
            return getattr(settings_module, node.args[0].id)  # type: ignore[no-any-return]
    imported = {getattr(settings_module, alias.name, None) for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module == "rollout_core.settings"
                for alias in node.names}
    models = [m for m in imported if isinstance(m, type) and issubclass(m, BaseModel)]
    return models[0] if len(models) == 1 else None


def functions_of(template: dict[str, Any], root: Path) -> list[Function]:
    """Every AWS::Serverless::Function with Globals' environment merged under its own."""
    globals_env = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    out = []
    for lid, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties", {})
        own = props.get("Environment", {}).get("Variables", {})
        out.append(Function(lid, {**globals_env, **own}, frozenset(own),
                            settings_model_of(root / str(props.get("CodeUri", "")))))
    return out


def candidate_values(spec: dict[str, Any]) -> list[str]:
    """The values a parameter is checked with: Default, MinValue, MaxValue, every AllowedValue."""
    values = [spec[k] for k in ("Default", "MinValue", "MaxValue") if k in spec]
    values += list(spec.get("AllowedValues", []))
    return list(dict.fromkeys(_cfn_string(v) for v in values))


def outside_values(spec: dict[str, Any]) -> list[str]:
    """Values just outside a Number parameter's MinValue/MaxValue (what the model must refuse):
    one and a half unit beyond each bound (CloudFormation's Number takes fractions)."""
    if spec.get("Type") != "Number":
        return []
    out = []
    if "MinValue" in spec:
        out += [_cfn_string(float(spec["MinValue"]) - step) for step in (1, 0.5)]
    if "MaxValue" in spec:
        out += [_cfn_string(float(spec["MaxValue"]) + step) for step in (0.5, 1)]
    return out


def _cfn_string(value: Any) -> str:
    """A parameter value as CloudFormation passes it on (a string; 5.0 -> "5")."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def build_settings(function: Function, renderer: Renderer) -> BaseModel:
    """``load_settings(model)`` with exactly the function's rendered environment in os.environ.
    Raises pydantic ValidationError as the function's cold start would."""
    assert function.settings is not None
    with pytest.MonkeyPatch.context() as mp:
        for field in function.settings.model_fields:
            mp.delenv(field.upper(), raising=False)
        for name, expr in function.environment.items():
            mp.setenv(name, str(renderer.render(expr)))
        return load_settings(function.settings)


def derived_settings(model: BaseModel, variable: str) -> dict[str, Any]:
    """Every attribute of the settings derived from ``variable``: the field itself and its
    stem in each unit (``IDEMPOTENCY_TTL_DAYS`` -> idempotency_ttl_days, idempotency_ttl_seconds)."""
    field = variable.lower()
    unit = snake_unit(field)
    names = [field]
    if unit is not None:
        stem = field[: -len(unit) - 1]
        names += [f"{stem}_{u}" for u in SECONDS_PER if u != unit]
    return {n: getattr(model, n) for n in names if hasattr(model, n)}


def expected_in(name: str, value: str, parameter_unit_: str) -> float | str:
    """The value a setting called ``name`` must have when the parameter (in its unit) is ``value``."""
    if parameter_unit_ == "text":
        return value
    unit = snake_unit(name)
    factor = SECONDS_PER[parameter_unit_] / SECONDS_PER[unit] if unit and parameter_unit_ in SECONDS_PER else 1
    return float(value) * factor


class ParameterChecker:
    """Follows each template parameter to its sinks and collects findings (one line each,
    starting with the parameter's name)."""

    def __init__(self, template: dict[str, Any], root: Path) -> None:
        self.template = template
        self.root = root
        self.parameters: dict[str, dict[str, Any]] = template.get("Parameters", {})
        self.defaults = {n: _cfn_string(s.get("Default", "")) for n, s in self.parameters.items()}
        self.functions = functions_of(template, root)
        self.findings: list[str] = []

    # -------------------------------------------------------------- entry point
    def check(self) -> list[str]:
        for name, spec in self.parameters.items():
            self.check_parameter(name, spec)
        self.check_map_concurrency()
        return self.findings

    def check_parameter(self, name: str, spec: dict[str, Any]) -> None:
        unit = parameter_unit(name, spec)
        if unit is None:
            self.findings.append(f"{name}: the test cannot determine its unit (a name ending in Seconds or "
                                 "Days, Max<Something> for a count of a Number, or Type String)")
            return
        if spec.get("Type") == "Number" and not ({"MinValue", "MaxValue"} <= set(spec) or "AllowedValues" in spec):
            self.findings.append(f"{name}: a Number parameter needs MinValue and MaxValue (or AllowedValues)")
        sinks = (self.check_environments(name, spec, unit) + self.check_documents(name, spec, unit)
                 + self.check_substitutions(name, spec, unit) + self.check_resource_properties(name, spec, unit))
        if sinks == 0:
            self.findings.append(f"{name}: reaches no code (no function environment, SSM document parameter, "
                                 "DefinitionSubstitution or property in RESOURCE_PROPERTY_UNITS)")

    def renderer(self, name: str, value: str) -> Renderer:
        return Renderer(self.template, {**self.defaults, name: value})

    def _carries_exactly(self, name: str, expr: Any, value: str, where: str, unit: str) -> bool:
        """Does ``expr`` render to the parameter's value itself (text may be embedded)?"""
        try:
            rendered = self.renderer(name, value).render(expr)
        except UnrenderableExpression as e:
            self.findings.append(f"{name}: {where}: {e}")
            return False
        if unit != "text" and rendered != value:
            self.findings.append(f"{name}: {where} is {rendered!r} when {name} is {value!r}: "
                                 "it must carry the parameter itself, unconverted")
            return False
        return True

    # -------------------------------------------------------------- function environments
    def check_environments(self, name: str, spec: dict[str, Any], unit: str) -> int:
        sinks = 0
        for function in self.functions:
            for variable, expr in function.environment.items():
                if name in referenced_names(expr):
                    sinks += 1
                    self.check_variable(name, spec, unit, function, variable, expr)
        return sinks

    def check_variable(self, name: str, spec: dict[str, Any], unit: str, function: Function,
                       variable: str, expr: Any) -> None:
        where = f"{function.logical_id} environment {variable}"
        if not units_agree(unit, snake_unit(variable)):
            self.findings.append(f"{name}: {where}: the variable's name states {snake_unit(variable) or 'no unit'}, "
                                 f"the parameter is in {unit}")
            return
        model = function.settings
        if model is None or variable.lower() not in model.model_fields:
            if variable in function.own_variables or not self._read_by_another(variable):
                self.findings.append(f"{name}: {where}: no settings field reads it "
                                     f"({model.__name__ if model else 'no load_settings in app.py'})")
            return
        for value in candidate_values(spec):
            if self._carries_exactly(name, expr, value, where, unit):
                self.check_derived(name, unit, function, variable, value)
        for value in outside_values(spec):
            self.check_refused(name, function, variable, value)
        self.check_pattern(name, spec, model, variable)

    def _read_by_another(self, variable: str) -> bool:
        return any(f.settings is not None and variable.lower() in f.settings.model_fields for f in self.functions)

    def check_derived(self, name: str, unit: str, function: Function, variable: str, value: str) -> None:
        where = f"{function.logical_id} environment {variable}"
        try:
            model = build_settings(function, self.renderer(name, value))
        except ValidationError as e:
            self.findings.append(f"{name}={value} (within the template's bounds): {where}: the settings refuse it: "
                                 f"{e.errors(include_url=False)[0]['msg']}")
            return
        for attribute, actual in derived_settings(model, variable).items():
            expected = expected_in(attribute, value, unit)
            same = actual == expected if unit == "text" else float(actual) == expected
            if not same:
                self.findings.append(f"{name}={value} ({unit}): {function.logical_id} settings {attribute} is {actual!r}, "
                                     f"expected {expected!r}")

    def check_refused(self, name: str, function: Function, variable: str, value: str) -> None:
        try:
            build_settings(function, self.renderer(name, value))
        except ValidationError as e:
            if any(variable.lower() in map(str, err["loc"]) for err in e.errors()):
                return
        self.findings.append(f"{name}={value} is outside the template's bounds but {function.logical_id}'s "
                             f"settings accept it for {variable}: the bounds disagree")

    def check_pattern(self, name: str, spec: dict[str, Any], model: type[BaseModel], variable: str) -> None:
        allowed = spec.get("AllowedPattern")
        patterns = [getattr(m, "pattern", None) for m in model.model_fields[variable.lower()].metadata]
        patterns = [p for p in patterns if p]
        if allowed and patterns and patterns != [allowed]:
            self.findings.append(f"{name}: AllowedPattern {allowed!r} but {model.__name__}.{variable.lower()} "
                                 f"has pattern {patterns[0]!r}")

    # -------------------------------------------------------------- SSM documents
    def check_documents(self, name: str, spec: dict[str, Any], unit: str) -> int:
        sinks = 0
        for lid, resource in self.template.get("Resources", {}).items():
            if resource.get("Type") != "AWS::SSM::Document":
                continue
            content = resource.get("Properties", {}).get("Content", {})
            if name not in referenced_names(content):
                continue
            for parameter, definition in (content.get("parameters") or {}).items():
                if name in referenced_names(definition.get("default")):
                    sinks += 1
                    self.check_document_parameter(name, spec, unit, lid, parameter, definition)
            outside = {k: v for k, v in content.items() if k != "parameters"}
            if name in referenced_names(outside):
                self.findings.append(f"{name}: reaches the text of SSM document {lid} outside a document parameter's "
                                     "default: the test cannot determine its unit")
        return sinks

    def check_document_parameter(self, name: str, spec: dict[str, Any], unit: str, lid: str, parameter: str,
                                 definition: dict[str, Any]) -> None:
        where = f"SSM document {lid} parameter {parameter} default"
        carrier = camel_unit(parameter, {}, SSM_PARAMETER_SUFFIX_UNITS)
        if not units_agree(unit, carrier):
            self.findings.append(f"{name}: {where}: {parameter} is in {carrier or 'no unit'}, the parameter in {unit}")
            return
        pattern = definition.get("allowedPattern")
        for value in candidate_values(spec):
            if self._carries_exactly(name, definition["default"], value, where, unit) and pattern:
                rendered = str(self.renderer(name, value).render(definition["default"]))
                if not re.search(pattern, rendered):
                    self.findings.append(f"{name}={value}: {where} {rendered!r} does not match its allowedPattern")

    # -------------------------------------------------------------- state machines
    def check_substitutions(self, name: str, spec: dict[str, Any], unit: str) -> int:
        sinks = 0
        for lid, resource in self.template.get("Resources", {}).items():
            props = resource.get("Properties", {})
            for key, expr in (props.get("DefinitionSubstitutions") or {}).items():
                if name not in referenced_names(expr):
                    continue
                sinks += 1
                fields = list(asl_fields_holding(self.definition_of(props), "${" + key + "}"))
                if not fields:
                    self.findings.append(f"{name}: {lid} DefinitionSubstitutions {key} is used nowhere in the ASL")
                for state, field, state_body in fields:
                    self.check_asl_field(name, spec, unit, lid, key, expr, state, field, state_body)
        return sinks

    def definition_of(self, props: dict[str, Any]) -> dict[str, Any]:
        if "DefinitionUri" in props:
            return json.loads((self.root / str(props["DefinitionUri"])).read_text())  # type: ignore[no-any-return]
        return props.get("Definition", {})  # type: ignore[no-any-return]

    def check_asl_field(self, name: str, spec: dict[str, Any], unit: str, lid: str, key: str, expr: Any,
                        state: str, field: str, state_body: dict[str, Any]) -> None:
        where = f"{lid} state {state} {field} (DefinitionSubstitutions {key})"
        carrier = camel_unit(field, ASL_FIELD_UNITS)
        if not units_agree(unit, carrier):
            self.findings.append(f"{name}: {where}: {field} is in {carrier or 'no unit'}, the parameter in {unit}")
            return
        for value in candidate_values(spec):
            self._carries_exactly(name, expr, value, where, unit)
        if field == "MaxConcurrency" and state_body.get("Type") == "Map":
            self.check_map_bounds(name, spec, state, state_body)

    # -------------------------------------------------------------- other resources
    def check_resource_properties(self, name: str, spec: dict[str, Any], unit: str) -> int:
        sinks = 0
        for lid, resource in self.template.get("Resources", {}).items():
            for prop, expr in resource.get("Properties", {}).items():
                sink_unit = RESOURCE_PROPERTY_UNITS.get((resource.get("Type"), prop))
                if sink_unit is None or name not in referenced_names(expr):
                    continue
                sinks += 1
                where = f"{lid} {prop}"
                if not units_agree(unit, sink_unit):
                    self.findings.append(f"{name}: {where} is in {sink_unit}, the parameter in {unit}")
                    continue
                for value in candidate_values(spec):
                    self._carries_exactly(name, expr, value, where, unit)
        return sinks

    # -------------------------------------------------------------- Map concurrency
    def check_map_concurrency(self) -> None:
        """Follow each Map's MaxConcurrencyPath back to the parameter that sets it."""
        for lid, resource in self.template.get("Resources", {}).items():
            props = resource.get("Properties", {})
            if resource.get("Type") not in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"):
                continue
            definition = self.definition_of(props)
            states = dict(all_states(definition))
            for state, body in states.items():
                if body.get("Type") == "Map" and "MaxConcurrencyPath" in body:
                    self.follow_concurrency_path(lid, props, states, state, body)
                elif body.get("Type") == "Map" and isinstance(body.get("MaxConcurrency"), int):
                    self.check_map_literal(lid, state, body)

    def check_map_literal(self, lid: str, state: str, body: dict[str, Any]) -> None:
        limit = MAP_CONCURRENCY_LIMIT[map_mode(body)]
        if not 1 <= body["MaxConcurrency"] <= limit:
            self.findings.append(f"{lid} state {state}: MaxConcurrency {body['MaxConcurrency']} is not 1..{limit}")

    def follow_concurrency_path(self, lid: str, props: dict[str, Any], states: dict[str, dict[str, Any]],
                                state: str, body: dict[str, Any]) -> None:
        path = body["MaxConcurrencyPath"]
        where = f"{lid} state {state} MaxConcurrencyPath {path}"
        parameter = self.parameter_behind(props, states, path)
        if isinstance(parameter, str) and parameter in self.parameters:
            self.check_map_bounds(parameter, self.parameters[parameter], state, body)
        else:
            self.findings.append(f"{where}: cannot follow it to a template parameter ({parameter})")

    def parameter_behind(self, props: dict[str, Any], states: dict[str, dict[str, Any]], path: str) -> str:
        """The template parameter whose value a task result at ``path`` carries, or why not found:
        path -> the Task whose ResultPath holds it -> its ResultSelector -> the Lambda payload field
        -> the function (DefinitionSubstitutions) -> its settings field -> its environment."""
        # the innermost ResultPath holding ``path`` wins ($.rollout over $)
        for task in sorted(states.values(), key=lambda t: -len(str(t.get("ResultPath", "")))):
            result_path = str(task.get("ResultPath", ""))
            if task.get("Type") != "Task" or not path.startswith(result_path + "."):
                continue
            rest = path[len(result_path) + 1:].split(".")
            selector = task.get("ResultSelector")
            if selector is not None and f"{rest[0]}.$" not in selector:
                continue
            payload_field = str(selector[f"{rest[0]}.$"]).rpartition(".")[2] if selector is not None else rest[-1]
            function = task.get("Parameters", {}).get("FunctionName") or task.get("Resource", "")
            function_key = str(function).removeprefix("${").removesuffix("}")
            target = referenced_names((props.get("DefinitionSubstitutions") or {}).get(function_key))
            for function in self.functions:
                if function.logical_id in target and function.settings is not None:
                    variable = camel_to_snake(payload_field).upper()
                    names = referenced_names(function.environment.get(variable)) & set(self.parameters)
                    return names.pop() if len(names) == 1 else f"{function.logical_id} {variable} carries {names or 'none'}"
            return f"function {function_key} not found"
        return f"no Task whose result holds {path}"

    def check_map_bounds(self, name: str, spec: dict[str, Any], state: str, body: dict[str, Any]) -> None:
        mode = map_mode(body)
        limit = MAP_CONCURRENCY_LIMIT[mode]
        if float(spec.get("MinValue", 0)) < 1:
            self.findings.append(f"{name}: MinValue {spec.get('MinValue', 'none')} lets the {mode} Map {state} run "
                                 f"'without limit', which is {limit}: the least is 1")
        if float(spec.get("MaxValue", float("inf"))) > limit:
            self.findings.append(f"{name}: MaxValue {spec.get('MaxValue', 'none')} is above what the {mode} Map "
                                 f"{state} honours ({limit})")


def map_mode(body: dict[str, Any]) -> str:
    processor = body.get("ItemProcessor", {}).get("ProcessorConfig", {})
    return str(processor.get("Mode", "INLINE"))


def all_states(definition: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state of an ASL definition, nested Map/Parallel states included."""
    for name, body in definition.get("States", {}).items():
        yield name, body
        for inner in (body.get("ItemProcessor"), body.get("Iterator"), *body.get("Branches", [])):
            if inner:
                yield from all_states(inner)


def asl_fields_holding(definition: dict[str, Any], placeholder: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(state, field, state body) of every field of a state whose value contains ``placeholder``."""
    def walk(node: Any, state: str, body: dict[str, Any], field: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
        if isinstance(node, dict):
            for k, v in node.items():
                yield from walk(v, state, body, k)
        elif isinstance(node, list):
            for v in node:
                yield from walk(v, state, body, field)
        elif isinstance(node, str) and placeholder in node:
            yield state, field.removesuffix(".$"), body

    for name, body in all_states(definition):
        shallow = {k: v for k, v in body.items() if k not in ("ItemProcessor", "Iterator", "Branches")}
        yield from walk(shallow, name, body, "")


def check_template(template: dict[str, Any], root: Path = ROOT) -> list[str]:
    """All findings for ``template`` (code and ASL files read under ``root``)."""
    return ParameterChecker(template, root).check()


# ------------------------------------------------------------------------------------- the tests
@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


def test_every_template_parameter_reaches_the_code_in_the_unit_its_name_states(template: dict[str, Any]) -> None:
    assert template["Parameters"], "template.yaml declares no parameters"
    findings = check_template(template)
    assert findings == [], "\n".join(findings)


def test_every_function_variable_is_read_by_its_settings(template: dict[str, Any]) -> None:
    """A function's own environment variable that its settings model does not read is dead
    configuration (or read around the model, deep in a request): name it."""
    unread = [f"{f.logical_id} {v}" for f in functions_of(template, ROOT) for v in sorted(f.own_variables)
              if not v.startswith(LIBRARY_ENV_PREFIXES)
              and (f.settings is None or v.lower() not in f.settings.model_fields)]
    assert unread == []


def test_idempotency_claim_lives_as_many_days_as_the_parameter_says(template: dict[str, Any]) -> None:
    """The bug of issue 9: 400 days reached Powertools as 400 seconds; 1 day was refused."""
    [validate] = [f for f in functions_of(template, ROOT) if f.logical_id == "ValidateEventFunction"]
    for days in ("1", "400"):
        model = build_settings(validate, Renderer(template, {
            **{n: _cfn_string(s.get("Default", "")) for n, s in template["Parameters"].items()},
            "IdempotencyTtlDays": days}))
        assert model.idempotency_ttl_seconds == int(days) * 86400  # type: ignore[attr-defined]


# ---- the checker finds each kind of drift (small templates built from the real one)
def _mutated(template: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    copy = json.loads(json.dumps(template))
    change(copy)
    return copy


def _validate_env(t: dict[str, Any]) -> dict[str, Any]:
    return t["Resources"]["ValidateEventFunction"]["Properties"]["Environment"]["Variables"]  # type: ignore[no-any-return]


def test_days_passed_as_seconds_is_found(template: dict[str, Any]) -> None:
    def days_as_seconds(t: dict[str, Any]) -> None:
        env = _validate_env(t)
        del env["IDEMPOTENCY_TTL_DAYS"]
        env["IDEMPOTENCY_TTL_SECONDS"] = {"Fn::Sub": ["${Seconds}", {"Seconds": {"Ref": "IdempotencyTtlDays"}}]}

    findings = check_template(_mutated(template, days_as_seconds))
    assert any(f.startswith("IdempotencyTtlDays: ValidateEventFunction environment IDEMPOTENCY_TTL_SECONDS: "
                            "the variable's name states seconds, the parameter is in days") for f in findings), findings


def test_a_variable_no_settings_field_reads_is_found(template: dict[str, Any]) -> None:
    def unread(t: dict[str, Any]) -> None:
        t["Resources"]["NotifyFunction"]["Properties"]["Environment"]["Variables"]["VERIFY_TIMEOUT_SECONDS"] = {
            "Ref": "VerifyTimeoutSeconds"}

    findings = check_template(_mutated(template, unread))
    assert findings == ["VerifyTimeoutSeconds: NotifyFunction environment VERIFY_TIMEOUT_SECONDS: no settings "
                        "field reads it (NotifySettings)"]


def test_a_parameter_that_reaches_nothing_or_has_no_unit_is_found(template: dict[str, Any]) -> None:
    def add(t: dict[str, Any]) -> None:
        t["Parameters"]["UnusedSeconds"] = {"Type": "Number", "Default": 3, "MinValue": 1, "MaxValue": 9}
        t["Parameters"]["RetryBudget"] = {"Type": "Number", "Default": 3, "MinValue": 1, "MaxValue": 9}

    findings = check_template(_mutated(template, add))
    assert [f.split(":")[0] for f in findings] == ["UnusedSeconds", "RetryBudget"], findings
    assert "reaches no code" in findings[0] and "cannot determine its unit" in findings[1]


def test_bounds_that_disagree_with_the_settings_are_found(template: dict[str, Any]) -> None:
    def widen(t: dict[str, Any]) -> None:
        t["Parameters"]["CommandTimeoutSeconds"]["MaxValue"] = 7200
        t["Parameters"]["MaxConcurrency"].update(MinValue=0, MaxValue=1000)

    findings = check_template(_mutated(template, widen))
    assert any(f.startswith("CommandTimeoutSeconds=7200 (within the template's bounds): ValidateEventFunction")
               for f in findings), findings
    assert any(f.startswith("MaxConcurrency: MaxValue 1000 is above what the INLINE Map InstallTargets honours (40)")
               for f in findings), findings
    assert any(f.startswith("MaxConcurrency: MinValue 0 lets the INLINE Map") for f in findings), findings


def test_an_included_document_parameter_is_followed(template: dict[str, Any], tmp_path: Path) -> None:
    """A document in its own file (Fn::Transform AWS::Include) whose parameter default carries a
    template parameter: the unit of the document parameter is checked."""
    (tmp_path / "document.yaml").write_text(
        "schemaVersion: '2.2'\n"
        "parameters:\n"
        "  ExecutionTimeout: {type: String, default: {'Fn::Sub': '${CommandTimeoutSeconds}'}, "
        "allowedPattern: '^[0-9]{1,5}$'}\n"
        "  CommandTimeoutDays: {type: String, default: {'Ref': CommandTimeoutSeconds}}\n"
        "mainSteps: []\n")
    raw = _mutated(template, lambda t: t["Resources"]["InstallBundleDocument"]["Properties"].update(
        Content={"Fn::Transform": {"Name": "AWS::Include", "Parameters": {"Location": "document.yaml"}}}))
    findings = check_template(resolve_includes(raw, tmp_path))
    assert findings == ["CommandTimeoutSeconds: SSM document InstallBundleDocument parameter CommandTimeoutDays "
                        "default: CommandTimeoutDays is in days, the parameter in seconds"], findings


def test_a_definition_substitution_is_followed_to_its_asl_field(template: dict[str, Any], tmp_path: Path) -> None:
    asl = json.loads((ROOT / "statemachine" / "rollout.asl.json").read_text())
    [(wait_name, _, wait)] = list(asl_fields_holding(asl, "$.verify.pollIntervalSeconds"))
    wait["TimeoutSeconds"] = "${Poll}"  # a field in seconds, filled with a count
    (tmp_path / "statemachine").mkdir()
    (tmp_path / "statemachine" / "rollout.asl.json").write_text(json.dumps(asl))
    for function in ("validate_event", "export_certificate", "install_target", "command_callback",
                     "verify_target", "record_outcome", "notify"):
        (tmp_path / "functions" / function).mkdir(parents=True)
        (tmp_path / "functions" / function / "app.py").write_text((ROOT / "functions" / function / "app.py").read_text())

    def substitute(t: dict[str, Any]) -> None:
        t["Resources"]["RolloutStateMachine"]["Properties"]["DefinitionSubstitutions"]["Poll"] = {
            "Ref": "MaxTargetsPerRollout"}

    findings = check_template(_mutated(template, substitute), tmp_path)
    assert [f for f in findings if "DefinitionSubstitutions" in f] == [
        f"MaxTargetsPerRollout: RolloutStateMachine state {wait_name} TimeoutSeconds (DefinitionSubstitutions "
        "Poll): TimeoutSeconds is in seconds, the parameter in count"], findings
