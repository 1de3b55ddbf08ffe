"""A Markdown reference of every job spec field, its type, default, range and meaning.

It is generated from the pydantic models in `cringe_core.spec`, so the README's copy is
checked against the code by a test instead of kept by hand.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterator
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from cringe_core.spec import (
    EvaluateJobSpec,
    IterateJobSpec,
    RewardModelJobSpec,
    TrainJobSpec,
)

START_MARKER = "<!-- spec-reference:start -->"
END_MARKER = "<!-- spec-reference:end -->"
_KINDS: tuple[type[BaseModel], ...] = (
    TrainJobSpec, RewardModelJobSpec, EvaluateJobSpec, IterateJobSpec
)
_BOUNDS = (
    (annotated_types.Ge, "ge", ">="), (annotated_types.Gt, "gt", ">"),
    (annotated_types.Le, "le", "<="), (annotated_types.Lt, "lt", "<"),
    (annotated_types.MinLen, "min_length", "length >="),
    (annotated_types.MaxLen, "max_length", "length <="),
)


def _members(annotation: Any) -> tuple[Any, ...]:
    """The alternatives of a union (`X | Y`, `Optional[X]`), or the annotation alone."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _type_name(annotation: Any) -> str:
    models = [member for member in _members(annotation) if _is_model(member)]
    names = []
    if len(models) > 1:
        tag_field = _tag_of(models[0]).split(":")[0]
        names.append(f"object ({tag_field}: one of below)")
    for member in _members(annotation):
        if _is_model(member) and len(models) > 1:
            continue
        origin = typing.get_origin(member)
        if member is type(None):
            names.append("null")
        elif origin is Literal:
            names.extend(json.dumps(value) for value in typing.get_args(member))
        elif origin in (list, tuple):
            inner = ", ".join(_type_name(arg) for arg in typing.get_args(member) if arg != ...)
            names.append(f"{origin.__name__}[{inner}]")
        elif _is_model(member):
            names.append("object")
        else:
            names.append(getattr(member, "__name__", str(member)))
    return " \\| ".join(names)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        tag = _tag_of(type(value))
        return f"`{{{tag}}}`" if ":" in tag else "see below"
    return f"`{json.dumps(value)}`"


def _range(field: FieldInfo) -> str:
    parts = []
    for constraint in field.metadata:
        for kind, attribute, symbol in _BOUNDS:
            if isinstance(constraint, kind):
                parts.append(f"{symbol} {getattr(constraint, attribute)}")
    return ", ".join(parts)


def _rows(model: type[BaseModel], prefix: str, when: str) -> Iterator[tuple[str, ...]]:
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        description = (field.description or "").replace("|", "\\|")
        if when:
            description = f"({when}) {description}".strip()
        yield (f"`{path}`", _type_name(field.annotation), _default(field), _range(field),
               description)

        nested = [member for member in _members(field.annotation) if _is_model(member)]
        for member in nested:
            # A tagged union (`loss`, `reference`) lists each alternative's fields apart.
            tag = _tag_of(member) if len(nested) > 1 else ""
            yield from _rows(member, f"{path}.", tag)
        for member in _members(field.annotation):
            items = typing.get_args(member) if typing.get_origin(member) is list else ()
            for item in items:
                if _is_model(item) and item not in nested:
                    yield from _rows(item, f"{path}[].", when)


def _tag_of(model: type[BaseModel]) -> str:
    for name, field in model.model_fields.items():
        if typing.get_origin(field.annotation) is Literal:
            return f"{name}: {typing.get_args(field.annotation)[0]}"
    return f"as {model.__name__}"


def spec_reference() -> str:
    """Render the reference: one table per job kind."""
    sections = [
        "Generated from `cringe_core/spec.py` by `cringe spec reference`; a test checks that "
        "this copy matches the code. A field marked (name: X) applies when that tag is set.",
    ]
    for model in _KINDS:
        kind = model.model_fields["kind"].default
        lines = [f"#### `kind: {kind}`", "",
                 "| field | type | default | range | description |", "|---|---|---|---|---|"]
        lines.extend("| " + " | ".join(row) + " |" for row in _rows(model, "", ""))
        sections.append("\n".join(lines))
    return "\n\n".join(sections) + "\n"


def replace_section(document: str, section: str) -> str:
    """Put `section` between the reference markers of `document`."""
    start, end = document.find(START_MARKER), document.find(END_MARKER)
    if start < 0 or end < start:
        raise ValueError(f"markers {START_MARKER} and {END_MARKER} not found in order; add "
                         "them where the reference belongs")
    return document[: start + len(START_MARKER)] + "\n" + section + document[end:]
