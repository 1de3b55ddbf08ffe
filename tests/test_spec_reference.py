"""The README's spec reference matches the spec models, and covers every field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from cringe_core.spec import EvaluateJobSpec, IterateJobSpec, RewardModelJobSpec, TrainJobSpec
from cringe_core.spec_reference import END_MARKER, START_MARKER, replace_section, spec_reference

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_reference_is_current() -> None:
    text = README.read_text(encoding="utf-8")
    assert replace_section(text, spec_reference()) == text, (
        "README.md's spec reference is out of date; run "
        "`.venv/bin/cringe spec reference --write README.md`"
    )


@pytest.mark.parametrize("model", [TrainJobSpec, RewardModelJobSpec, EvaluateJobSpec,
                                   IterateJobSpec])
def test_every_top_level_field_listed(model: type[BaseModel]) -> None:
    reference = spec_reference()
    kind = model.model_fields["kind"].default
    section = reference.split(f"#### `kind: {kind}`")[1].split("#### ")[0]
    for name in model.model_fields:
        assert f"| `{name}` |" in section, f"{kind}: field {name} missing"


def test_defaults_and_ranges_rendered() -> None:
    reference = spec_reference()
    assert "| `training.max_steps` | int | `100` | >= 1, <= 10000000 | Optimizer steps. |" in (
        reference
    )
    assert "| `dataset.path` | str | required | length >= 1 |" in reference
    assert "| `loss.temperature` | float | `10.0` | > 0 | (name: pairwise_cringe)" in reference
    assert "| `loss.beta` | float | `0.1` | > 0, <= 100 | (name: dpo)" in reference


def test_replace_section_needs_markers() -> None:
    with pytest.raises(ValueError, match="markers"):
        replace_section("no markers here", "x")
    assert replace_section(f"a {START_MARKER} old {END_MARKER} b", "new\n") == (
        f"a {START_MARKER}\nnew\n{END_MARKER} b"
    )
