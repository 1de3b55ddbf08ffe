"""The one registry of losses, keyed by the `name` tag of each loss spec.

Help text, validation and tests read `LOSSES`; no other module keeps a list of loss names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from cringe_core.losses import binary_cringe, dpo, ipo, pairwise_cringe, sft
from cringe_core.losses.base import LossInputs, LossOutput
from cringe_core.spec import BinaryCringeSpec, DpoSpec, IpoSpec, PairwiseCringeSpec, SftSpec

# compute(inputs, spec, normalizer, generator): `normalizer` is the global count of the
# loss's unit (summed `normalizer(inputs)` over micro-batches and workers).
ComputeFn = Callable[[LossInputs, Any, torch.Tensor, torch.Generator | None], LossOutput]
NormalizerFn = Callable[[LossInputs], torch.Tensor]

DATA_KINDS = frozenset({"pairs", "binary"})


@dataclass(frozen=True)
class LossDefinition:
    """A loss: its spec type, its compute and normalizer functions, and what it needs."""

    name: str  # the spec's `name` tag
    spec_type: type[Any]
    compute: ComputeFn
    normalizer: NormalizerFn  # this micro-batch's local count of the unit the loss divides by
    needs_reference: bool  # needs inputs.reference_logps from a frozen reference model
    data_kinds: frozenset[str]  # subset of DATA_KINDS the loss trains on

    def __post_init__(self) -> None:
        unknown = self.data_kinds - DATA_KINDS
        if unknown or not self.data_kinds:
            raise ValueError(
                f"loss {self.name!r} has data_kinds {sorted(self.data_kinds)}; "
                f"give a non-empty subset of {sorted(DATA_KINDS)}"
            )


def _define(
    spec_type: type[Any],
    compute: ComputeFn,
    normalizer: NormalizerFn,
    needs_reference: bool,
    data_kinds: frozenset[str],
) -> LossDefinition:
    name: str = spec_type.model_fields["name"].default
    return LossDefinition(name, spec_type, compute, normalizer, needs_reference, data_kinds)


_PAIRS = frozenset({"pairs"})
_PAIRS_AND_BINARY = frozenset({"pairs", "binary"})

LOSSES: dict[str, LossDefinition] = {
    definition.name: definition
    for definition in (
        _define(
            PairwiseCringeSpec,
            pairwise_cringe.compute,
            pairwise_cringe.normalizer,
            needs_reference=False,
            data_kinds=_PAIRS,
        ),
        _define(
            BinaryCringeSpec,
            binary_cringe.compute,
            binary_cringe.normalizer,
            needs_reference=False,
            data_kinds=_PAIRS_AND_BINARY,
        ),
        _define(DpoSpec, dpo.compute, dpo.normalizer, needs_reference=True, data_kinds=_PAIRS),
        _define(IpoSpec, ipo.compute, ipo.normalizer, needs_reference=True, data_kinds=_PAIRS),
        _define(
            SftSpec,
            sft.compute,
            sft.normalizer,
            needs_reference=False,
            data_kinds=_PAIRS_AND_BINARY,
        ),
    )
}


def get_loss(name: str) -> LossDefinition:
    """Look up a loss by its spec name; raise ValueError listing the known names."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(
            f"unknown loss {name!r}; expected one of {', '.join(sorted(LOSSES))}"
        ) from None
