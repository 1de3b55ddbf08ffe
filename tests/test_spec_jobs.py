"""The reward_model and evaluate job specs: defaults, the kind tag and their errors."""

from __future__ import annotations

import pytest

from cringe_core.spec import (
    EvaluateJobSpec,
    RewardModelJobSpec,
    SpecError,
    TrainJobSpec,
    parse_spec,
    resolve,
)

REWARD = {"kind": "reward_model", "dataset": [{"path": "pairs.jsonl"}]}
EVALUATE = {"kind": "evaluate", "eval_set": {"path": "eval.json"}, "judge": {"name": "judge"}}


def _problems(data: dict) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(data)
    return {p["param"]: p["message"] for p in caught.value.problems}


def test_kind_selects_the_spec_class() -> None:
    assert isinstance(parse_spec(REWARD), RewardModelJobSpec)
    assert isinstance(parse_spec(EVALUATE), EvaluateJobSpec)
    assert isinstance(parse_spec({"dataset": {"path": "p.jsonl"}}), TrainJobSpec)


def test_reward_defaults() -> None:
    resolved = resolve(parse_spec(REWARD))
    assert resolved["model"]["name"] == "minilm-l6-v2"
    assert resolved["training"]["max_length"] == 256
    assert resolved["training"]["learning_rate"] == 3e-5
    assert resolved["training"]["batch_size"] == 16
    assert resolved["eval_fraction"] == 0.1


def test_reward_training_keeps_policy_validation() -> None:
    spec = {**REWARD, "training": {"batch_size": 6, "micro_batch_size": 4}}
    assert "must divide batch_size 6" in _problems(spec)["/training"]


def test_evaluate_defaults_match_method() -> None:
    resolved = resolve(parse_spec(EVALUATE))
    assert resolved["tie_epsilon"] == 0.0
    assert resolved["bootstrap"] == {"resamples": 1000, "confidence": 0.95}
    assert resolved["generation"]["do_sample"] is False
    assert resolved["reference"] == {"source": "eval_set"}
    assert resolved["model"]["name"] == "smollm2-135m-instruct"


def test_evaluate_requires_judge_and_eval_set() -> None:
    problems = _problems({"kind": "evaluate"})
    assert problems["/judge"] == "missing required field; add it"
    assert problems["/eval_set"] == "missing required field; add it"


def test_unknown_kind_lists_kinds() -> None:
    message = _problems({"kind": "distill"})["/kind"]
    assert "'distill'" in message
    assert "'reward_model'" in message
    assert "'evaluate'" in message


def test_unknown_reference_source_lists_sources() -> None:
    message = _problems({**EVALUATE, "reference": {"source": "gpt4"}})["/reference/source"]
    assert "'eval_set'" in message
    assert "'policy'" in message


def test_policy_reference_field_path() -> None:
    spec = {**EVALUATE, "reference": {"source": "policy", "model": {"name": ""}}}
    assert "/reference/model/name" in _problems(spec)


def test_field_of_other_reference_rejected() -> None:
    spec = {**EVALUATE, "reference": {"source": "eval_set", "model": {"name": "m"}}}
    assert "unknown field 'model'" in _problems(spec)["/reference/model"]


def test_lora_on_evaluated_model_rejected() -> None:
    spec = {**EVALUATE, "compare_with": {"name": "other", "lora": {}}}
    message = _problems(spec)["/"]
    assert "compare_with" in message
    assert "lora is a training setting" in message


def test_sampling_settings_without_sampling_rejected() -> None:
    spec = {**EVALUATE, "generation": {"top_p": 0.9}}
    assert "do_sample" in _problems(spec)["/generation"]


def test_sampling_settings_with_sampling_accepted() -> None:
    spec = parse_spec({**EVALUATE, "generation": {"do_sample": True, "top_p": 0.9}})
    assert isinstance(spec, EvaluateJobSpec)
    assert spec.generation.top_p == 0.9


def test_eval_fraction_must_leave_training_prompts() -> None:
    assert "less than 1" in _problems({**REWARD, "eval_fraction": 1.0})["/eval_fraction"]


def test_reward_dataset_list_needs_an_entry() -> None:
    assert "/dataset" in _problems({**REWARD, "dataset": []})
