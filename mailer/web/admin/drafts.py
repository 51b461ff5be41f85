"""What editors typed, checked by the editors' API's own schemas (`mailer.schemas`), and
pydantic's complaints said in the page's words: the limits are written once, there."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from annotated_types import MaxLen
from pydantic import BaseModel, ValidationError

NO_WORDS: Mapping[str, str] = {}


def _phrase(error: Mapping[str, Any]) -> str:
    ctx = error.get("ctx") or {}
    if error["type"] == "string_too_short" and ctx.get("min_length") == 1:
        return "is required"
    if error["type"] == "string_too_long":
        return f"is longer than {ctx['max_length']} characters"
    if error["type"] in ("too_long", "too_short", "less_than_equal", "greater_than_equal"):
        return f"{error['msg'][0].lower()}{error['msg'][1:]}"
    return str(error["msg"])


def problems(
    exc: ValidationError,
    labels: Mapping[str, str] = NO_WORDS,
    sentences: Mapping[str, str] = NO_WORDS,
    shape: str = "{label}: {phrase}",
    joint: str = "; ",
) -> str:
    """One sentence per complaint: `sentences` by "field type" (e.g. "lists too_short")
    where given, else `shape` filled with the field's label and what is wrong."""
    said = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        top = str(error["loc"][0]) if error["loc"] else ""
        fixed = sentences.get(f"{field} {error['type']}") or sentences.get(f"{top} {error['type']}")
        label = labels.get(field) or labels.get(top) or field.replace("_", " ")
        said.append(fixed or shape.format(label=label, phrase=_phrase(error)))
    return joint.join(said)


def max_length(model: type[BaseModel], field: str) -> int:
    """The longest value `model` takes for `field` (for cutting a preview's query short)."""
    for rule in model.model_fields[field].metadata:
        if isinstance(rule, MaxLen):
            return int(rule.max_length)
    raise LookupError(f"{model.__name__}.{field} has no max_length")
