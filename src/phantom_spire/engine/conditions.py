"""Step conditions and parameter expressions in CEL, the Common Expression Language.

CEL (https://cel.dev) is a small, side-effect-free language with a published specification:
an expression can read the values it is given and call the functions registered here, and
nothing else — no attribute access to Python objects, no imports, no I/O. We evaluate it
with the ``common-expression-language`` package (Rust core, Python bindings); nothing in
this module ever calls Python's ``eval``.

Workflows use it in two places:

* a step's ``when`` condition, e.g. ``steps.score.result.maxRisk >= 70``;
* parameter values written as ``${{ expression }}``, e.g. ``${{ params.sources }}``, which
  become the expression's value; inside a longer string, ``${{ ... }}`` is interpolated.

Besides CEL's standard library, lists get ``max``, ``min`` and ``sum``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import cel

from phantom_spire.errors import SpireError

__all__ = ["ConditionError", "check_expression", "evaluate", "evaluate_condition", "render"]

logger = logging.getLogger(__name__)

_TEMPLATE = re.compile(r"\$\{\{\s*(.+?)\s*\}\}")


class ConditionError(SpireError):
    """A condition or expression does not parse, or cannot be evaluated on its inputs."""

    def __init__(self, expression: str, problem: str) -> None:
        super().__init__(f"expression {expression!r}: {problem}")
        self.expression = expression
        self.problem = problem


def _list_max(values: list[Any]) -> Any:
    return max(values) if values else None


def _list_min(values: list[Any]) -> Any:
    return min(values) if values else None


def _list_sum(values: list[Any]) -> Any:
    return sum(values)


_FUNCTIONS = {"max": _list_max, "min": _list_min, "sum": _list_sum}


@lru_cache(maxsize=1024)
def _compile(expression: str) -> Any:
    try:
        return cel.compile(expression)
    except ValueError as exc:
        raise ConditionError(expression, f"not valid CEL: {_first_line(exc)}") from exc


def check_expression(expression: str) -> None:
    """Raise :class:`ConditionError` unless ``expression`` parses as CEL."""
    _compile(expression)


def evaluate(expression: str, variables: Mapping[str, Any]) -> Any:
    """The value of ``expression`` with ``variables`` in scope.

    Raises:
        ConditionError: If it does not parse, names an unknown variable or fails to evaluate.
    """
    program = _compile(expression)
    context = cel.Context(variables=dict(variables), functions=_FUNCTIONS)
    try:
        return program.execute(context)
    except (RuntimeError, TypeError, ValueError, KeyError, IndexError, ArithmeticError) as exc:
        raise ConditionError(expression, _first_line(exc)) from exc


def evaluate_condition(expression: str, variables: Mapping[str, Any]) -> bool:
    """Evaluate a ``when`` condition; it must give a boolean, not merely a truthy value."""
    value = evaluate(expression, variables)
    if not isinstance(value, bool):
        raise ConditionError(expression, f"gave {value!r}, but a condition must be true or false")
    return value


def render(value: Any, variables: Mapping[str, Any]) -> Any:
    """Replace ``${{ expression }}`` in ``value`` (recursively through lists and dicts).

    A string that is exactly one ``${{ ... }}`` becomes the expression's value, of any type;
    elsewhere each ``${{ ... }}`` is replaced by its value as text.
    """
    if isinstance(value, str):
        whole = _TEMPLATE.fullmatch(value.strip())
        if whole:
            return evaluate(whole.group(1), variables)
        return _TEMPLATE.sub(lambda m: _as_text(evaluate(m.group(1), variables)), value)
    if isinstance(value, list):
        return [render(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: render(v, variables) for k, v in value.items()}
    return value


def expressions_in(value: Any) -> list[str]:
    """Every ``${{ ... }}`` expression inside ``value``, to check them before anything runs."""
    if isinstance(value, str):
        return [m.group(1) for m in _TEMPLATE.finditer(value)]
    if isinstance(value, list):
        return [e for v in value for e in expressions_in(v)]
    if isinstance(value, dict):
        return [e for v in value.values() for e in expressions_in(v)]
    return []


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
