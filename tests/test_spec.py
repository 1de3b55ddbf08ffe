"""The job spec: defaults written once, every error listed with its field path."""

from __future__ import annotations

from pathlib import Path

import pytest

from cringe_core.spec import SpecError, load_spec_file, parse_spec, resolve

MINIMAL = {"dataset": {"path": "pairs.jsonl"}}


def _problems(data: object) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(data)
    return {p["param"]: p["message"] for p in caught.value.problems}


def test_defaults_match_method() -> None:
    loss = resolve(parse_spec(MINIMAL))["loss"]
    assert loss == {
        "name": "pairwise_cringe",
        "margin_bias": -10.0,
        "temperature": 10.0,
        "alpha": 1.0,
        "top_k": 5,
        "margin": "sum",
        "detach_gate": False,
    }


def test_dpo_defaults() -> None:
    loss = resolve(parse_spec({**MINIMAL, "loss": {"name": "dpo"}}))["loss"]
    assert loss == {"name": "dpo", "beta": 0.1, "reference": "precomputed"}


def test_all_problems_listed_at_once() -> None:
    problems = _problems(
        {
            "dataset": {"path": ""},
            "loss": {"name": "dpo", "beta": -1, "top_k": 3},
            "training": {"learning_rate": 0},
            "colour": "red",
        }
    )
    assert set(problems) == {
        "/dataset/path",
        "/loss/beta",
        "/loss/top_k",
        "/training/learning_rate",
        "/colour",
    }


def test_field_of_another_loss_rejected() -> None:
    problems = _problems({**MINIMAL, "loss": {"name": "dpo", "margin_bias": -5}})
    assert "unknown field 'margin_bias'" in problems["/loss/margin_bias"]


def test_unknown_loss_lists_known_names() -> None:
    problems = _problems({**MINIMAL, "loss": {"name": "orpo"}})
    message = problems["/loss/name"]
    assert "'orpo'" in message
    assert "'pairwise_cringe'" in message


def test_out_of_range_shows_value_and_range() -> None:
    problems = _problems({**MINIMAL, "loss": {"name": "pairwise_cringe", "temperature": 0}})
    assert "greater than 0" in problems["/loss/temperature"]
    assert "got 0" in problems["/loss/temperature"]


def test_missing_dataset_reported() -> None:
    problems = _problems({})
    assert problems["/dataset"] == "missing required field; add it"


def test_micro_batch_must_divide_batch() -> None:
    problems = _problems({**MINIMAL, "training": {"batch_size": 6, "micro_batch_size": 4}})
    assert "must divide batch_size 6" in problems["/training"]


def test_non_mapping_rejected() -> None:
    problems = _problems(["not", "a", "mapping"])
    assert "mapping" in problems["/"]


def test_yaml_file_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("dataset: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec_file(broken)
