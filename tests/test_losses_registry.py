"""The loss registry covers every loss spec, read from the spec union itself."""

from __future__ import annotations

import typing

import pytest
import torch
from pydantic import BaseModel

from cringe_core.losses import LOSSES, LossDefinition, LossInputs, get_loss
from cringe_core.losses.registry import DATA_KINDS
from cringe_core.spec import LossSpec


def spec_types() -> list[type[BaseModel]]:
    union, _field = typing.get_args(LossSpec)  # Annotated[Union[...], Field(...)]
    return list(typing.get_args(union))


def test_every_spec_type_registered() -> None:
    types = spec_types()
    assert len(types) >= 5
    for spec_type in types:
        name = spec_type.model_fields["name"].default
        assert name in LOSSES, name
        assert LOSSES[name].spec_type is spec_type
        assert LOSSES[name].name == name


def test_no_entry_without_spec_type() -> None:
    names = {spec_type.model_fields["name"].default for spec_type in spec_types()}
    assert set(LOSSES) == names


def test_get_loss_returns_entry() -> None:
    for name, definition in LOSSES.items():
        assert get_loss(name) is definition


def test_get_loss_unknown_lists_known_names() -> None:
    with pytest.raises(ValueError, match="unknown loss 'cringe'") as caught:
        get_loss("cringe")
    for name in LOSSES:
        assert name in str(caught.value)


def test_needs_reference_matches_reference_field() -> None:
    # DPO and IPO carry a `reference` setting; no other loss reads a reference model.
    for name, definition in LOSSES.items():
        assert definition.needs_reference == ("reference" in definition.spec_type.model_fields), (
            name
        )


def test_data_kinds_valid() -> None:
    for name, definition in LOSSES.items():
        assert definition.data_kinds, name
        assert definition.data_kinds <= DATA_KINDS, name


def test_definition_rejects_unknown_data_kind() -> None:
    sft = LOSSES["sft"]
    with pytest.raises(ValueError, match="data_kinds"):
        LossDefinition(
            "sft", sft.spec_type, sft.compute, sft.normalizer, False, frozenset({"triples"})
        )


def test_definition_frozen() -> None:
    with pytest.raises(AttributeError):
        LOSSES["dpo"].needs_reference = False  # type: ignore[misc]


def test_compute_accepts_default_spec() -> None:
    # Each entry's compute takes an instance of its own spec type.
    logits = torch.randn(2, 3, 8, dtype=torch.float64)
    inputs = LossInputs(
        logits,
        torch.zeros(2, 3, dtype=torch.long),
        torch.ones(2, 3, dtype=torch.bool),
        1,
        reference_logps=torch.zeros(2, dtype=torch.float64),
    )
    for name, definition in LOSSES.items():
        output = definition.compute(
            inputs, definition.spec_type(), definition.normalizer(inputs), None
        )
        assert torch.isfinite(output.loss), name
