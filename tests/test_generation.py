"""Generation: batched greedy equals one prompt at a time; seeds make sampling reproducible."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from cringe_core.generation import Completion, generate_completions, sample_seed
from cringe_core.spec import GenerationSpec, SpecError, parse_spec

PROMPTS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "Write a long poem about the sea, the sky and the wind."}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "2 + 2?"}],
    [{"role": "user", "content": "Name three colours."}],
]
GREEDY = GenerationSpec(max_new_tokens=12, batch_size=4)
SAMPLED = GenerationSpec(max_new_tokens=8, batch_size=3, do_sample=True, top_p=0.9)


@pytest.fixture(scope="module")
def tiny(tiny_policy_path: Path) -> tuple[Any, Any]:
    model = AutoModelForCausalLM.from_pretrained(tiny_policy_path)
    return model, AutoTokenizer.from_pretrained(tiny_policy_path)


def test_batched_greedy_equals_one_at_a_time(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    batched = generate_completions(model, tokenizer, PROMPTS, GREEDY)
    for index, prompt in enumerate(PROMPTS):
        alone = generate_completions(model, tokenizer, [prompt], GREEDY)[0]
        assert batched[index].token_ids == alone.token_ids, f"prompt {index}"


def test_greedy_completions_in_prompt_order(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    completions = generate_completions(model, tokenizer, PROMPTS, GREEDY)
    assert [c.prompt_index for c in completions] == [0, 1, 2, 3]
    assert all(c.seed is None for c in completions)


def test_token_counts_and_text(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    for completion in generate_completions(model, tokenizer, PROMPTS, GREEDY):
        assert completion.num_tokens == len(completion.token_ids)
        assert completion.num_tokens <= GREEDY.max_new_tokens
        # A completion cut at max_new_tokens has all of them; a finished one stopped early.
        assert completion.finished or completion.num_tokens == GREEDY.max_new_tokens
        assert completion.text == tokenizer.decode(completion.token_ids, skip_special_tokens=True)


@pytest.fixture(scope="module")
def sampled(tiny: tuple[Any, Any]) -> list[Completion]:
    model, tokenizer = tiny
    return generate_completions(model, tokenizer, PROMPTS, SAMPLED, samples_per_prompt=2, seed=5)


def test_sampling_reproducible_with_seed(tiny: tuple[Any, Any], sampled: list[Completion]) -> None:
    model, tokenizer = tiny
    again = generate_completions(model, tokenizer, PROMPTS, SAMPLED, samples_per_prompt=2, seed=5)
    assert [c.token_ids for c in again] == [c.token_ids for c in sampled]
    assert [c.seed for c in again] == [c.seed for c in sampled]


def test_samples_differ_across_seeds(tiny: tuple[Any, Any], sampled: list[Completion]) -> None:
    model, tokenizer = tiny
    other = generate_completions(model, tokenizer, PROMPTS, SAMPLED, samples_per_prompt=2, seed=6)
    assert [c.token_ids for c in other] != [c.token_ids for c in sampled]
    assert sampled[0].token_ids != sampled[1].token_ids  # two samples of one prompt


def test_recorded_seed_regenerates_completion_alone(
    tiny: tuple[Any, Any], sampled: list[Completion]
) -> None:
    model, tokenizer = tiny
    target = sampled[5]  # prompt 2, sample 1, drawn in a batch of three rows
    assert (target.prompt_index, target.sample_index) == (2, 1)
    assert target.seed == sample_seed(5, 2, 1)
    alone = GenerationSpec(max_new_tokens=8, batch_size=1, do_sample=True, top_p=0.9)
    redone = generate_completions(model, tokenizer, [PROMPTS[2]], alone, seeds=[target.seed])
    assert redone[0].token_ids == target.token_ids


def test_greedy_with_several_samples_rejected(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="do_sample"):
        generate_completions(model, tokenizer, PROMPTS, GREEDY, samples_per_prompt=2)


def test_seed_list_of_wrong_length_rejected(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="one seed per row"):
        generate_completions(model, tokenizer, PROMPTS, SAMPLED, seeds=[1, 2])


def test_long_prompt_keeps_its_end(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    settings = GenerationSpec(max_new_tokens=4, max_prompt_length=16)
    long_prompt = [{"role": "user", "content": " ".join(["word"] * 200)}]
    completions = generate_completions(model, tokenizer, [long_prompt], settings)
    assert completions[0].num_tokens <= 4


def test_temperature_without_sampling_rejected() -> None:
    spec = {
        "kind": "evaluate",
        "eval_set": {"path": "prompts.json"},
        "judge": {"name": "judge"},
        "generation": {"temperature": 0.7},
    }
    with pytest.raises(SpecError, match="only apply when do_sample is true"):
        parse_spec(spec)


def test_tokenizer_without_pad_rejected(tiny_policy_path: Path, tiny: tuple[Any, Any]) -> None:
    model, _ = tiny
    tokenizer = AutoTokenizer.from_pretrained(tiny_policy_path)
    tokenizer.pad_token = None
    with pytest.raises(ValueError, match="no pad token"):
        generate_completions(model, tokenizer, PROMPTS, GREEDY)
