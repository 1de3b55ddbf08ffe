"""Reward scores: independent of padding side and batch, read at the last real token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from cringe_core.models.loading import ModelNotFoundError
from cringe_core.models.reward import (
    MINILM_ALIAS,
    load_reward_model,
    load_reward_tokenizer,
    resolve_reward_model_path,
)
from cringe_core.reward.inputs import RewardInput
from cringe_core.reward.scoring import RewardScorer, reward_scores, to_right_padding
from cringe_core.spec import ModelSpec
from tests.tiny_models import save_tiny_bert_reward, save_tiny_llama_reward

PROMPTS = [
    [{"role": "user", "content": "Name a colour."}],
    [{"role": "user", "content": "Explain in detail why the sky looks blue on a clear day."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
]
COMPLETIONS = [
    "Blue.",
    "Sunlight scatters off air molecules, and short blue wavelengths scatter the most.",
    "Hello! How can I help?",
]


@pytest.fixture(scope="module")
def bert_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_bert_reward(tmp_path_factory.mktemp("tiny-bert-reward"))


@pytest.fixture(scope="module")
def llama_path(tmp_path_factory: pytest.TempPathFactory, tiny_policy_path: Path) -> Path:
    return save_tiny_llama_reward(tmp_path_factory.mktemp("tiny-llama-reward"), tiny_policy_path)


def _scorer(path: Path | str, batch_size: int = 16, max_length: int = 128) -> RewardScorer:
    tokenizer = load_reward_tokenizer(str(path))
    model = load_reward_model(ModelSpec(name=str(path)), tokenizer.pad_token_id)
    return RewardScorer(model, tokenizer, max_length=max_length, batch_size=batch_size)


def _padded(scorer: RewardScorer, inputs: list[RewardInput], side: str) -> dict[str, Any]:
    """Pad with the tokenizer itself, as a user handing in a batch would."""
    rows = [
        {"input_ids": item.input_ids}
        | ({"token_type_ids": item.token_type_ids} if item.token_type_ids else {})
        for item in inputs
    ]
    scorer.tokenizer.padding_side = side
    batch = scorer.tokenizer.pad(rows, padding=True, return_tensors="pt")
    return dict(batch)


@torch.no_grad()
def _alone(scorer: RewardScorer, inputs: list[RewardInput]) -> torch.Tensor:
    scores = []
    for item in inputs:
        batch = _padded(scorer, [item], "right")
        scores.append(reward_scores(scorer.model.eval(), batch))
    return torch.cat(scores)


@pytest.mark.parametrize("architecture", ["bert", "llama"])
@pytest.mark.parametrize("side", ["left", "right"])
@torch.no_grad()
def test_padding_side_leaves_scores_unchanged(
    architecture: str, side: str, request: pytest.FixtureRequest
) -> None:
    scorer = _scorer(request.getfixturevalue(f"{architecture}_path"))
    inputs = scorer.encode(PROMPTS, COMPLETIONS)
    batch = _padded(scorer, inputs, side)
    assert bool((batch["attention_mask"] == 0).any())  # the batch really is padded
    padded_scores = reward_scores(scorer.model.eval(), batch)
    torch.testing.assert_close(padded_scores, _alone(scorer, inputs), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("architecture", ["bert", "llama"])
def test_batch_composition_leaves_scores_unchanged(
    architecture: str, request: pytest.FixtureRequest
) -> None:
    path = request.getfixturevalue(f"{architecture}_path")
    one_by_one = _scorer(path, batch_size=1).score(PROMPTS, COMPLETIONS)
    together = _scorer(path, batch_size=3).score(PROMPTS, COMPLETIONS)
    reordered = _scorer(path, batch_size=2).score(PROMPTS[::-1], COMPLETIONS[::-1]).flip(0)
    torch.testing.assert_close(together, one_by_one, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(reordered, one_by_one, atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_causal_score_read_at_last_real_token(llama_path: Path) -> None:
    # The sequence ends with the pad id itself (SmolLM2's pad token is its end-of-turn
    # token), the case where looking for the last non-pad id would read the wrong token.
    scorer = _scorer(llama_path)
    model = scorer.model.eval()
    pad = scorer.tokenizer.pad_token_id
    short = [11, 12, 13, pad]
    long = [21, 22, 23, 24, 25, 26]
    batch = {
        "input_ids": torch.tensor([[*short, pad, pad], long]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 0, 0], [1] * 6]),
    }
    hidden = model.model(input_ids=torch.tensor([short])).last_hidden_state  # (1, 4, H)
    expected = model.score(hidden[:, -1])[:, 0]  # (1,)
    torch.testing.assert_close(reward_scores(model, batch)[:1], expected, atol=1e-5, rtol=1e-4)


def test_left_padding_moved_to_the_right() -> None:
    batch = {
        "input_ids": torch.tensor([[0, 0, 5, 6], [7, 8, 9, 1]]),
        "attention_mask": torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]]),
    }
    moved = to_right_padding(batch)
    assert moved["input_ids"].tolist() == [[5, 6, 0, 0], [7, 8, 9, 1]]
    assert moved["attention_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]


def test_sentence_pair_truncated_to_max_length(bert_path: Path) -> None:
    scorer = _scorer(bert_path, max_length=24)
    inputs = scorer.encode([PROMPTS[1]], [" ".join(["word"] * 100)])
    assert len(inputs[0].input_ids) == 24
    assert inputs[0].token_type_ids is not None
    assert 0 in inputs[0].token_type_ids  # the prompt segment survived the cut


def test_chat_input_keeps_half_for_the_completion(llama_path: Path) -> None:
    scorer = _scorer(llama_path, max_length=40)
    long_prompt = [{"role": "user", "content": " ".join(["question"] * 100)}]
    inputs = scorer.encode([long_prompt], [" ".join(["answer"] * 100)])
    assert len(inputs[0].input_ids) == 40
    assert "question" not in scorer.tokenizer.decode(inputs[0].input_ids[-20:])
    assert "answer" not in scorer.tokenizer.decode(inputs[0].input_ids[:20])


def test_encode_rejects_mismatched_lengths(bert_path: Path) -> None:
    with pytest.raises(ValueError, match="one completion per prompt"):
        _scorer(bert_path).encode(PROMPTS, COMPLETIONS[:2])


def test_multi_label_classifier_rejected(tmp_path: Path) -> None:
    save_tiny_bert_reward(tmp_path)
    config = BertConfig.from_pretrained(tmp_path)
    config.num_labels = 2
    BertForSequenceClassification(config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="num_labels = 2"):
        load_reward_model(ModelSpec(name=str(tmp_path)), pad_token_id=0)


def test_unknown_reward_model_named(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="minilm-l6-v2"):
        load_reward_tokenizer(str(tmp_path / "missing"))


def test_minilm_alias_loads_with_one_output() -> None:
    # The real 22M-parameter backbone: a new one-output head on the packaged encoder.
    assert (Path(resolve_reward_model_path(MINILM_ALIAS)) / "model.safetensors").is_file()
    scorer = _scorer(MINILM_ALIAS)
    assert type(scorer.model).__name__ == "BertForSequenceClassification"
    assert scorer.model.config.num_labels == 1
    scores = scorer.score(PROMPTS, COMPLETIONS)
    assert scores.shape == (3,)
    scorer.batch_size = 1  # the same model: each load draws a new random head
    alone = scorer.score(PROMPTS, COMPLETIONS)
    torch.testing.assert_close(scores, alone, atol=1e-5, rtol=1e-4)
