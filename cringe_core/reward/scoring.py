"""Score (prompt, completion) pairs with a reward model, independent of padding.

Where the score is read depends on the architecture:
- Causal classifiers (Llama, Qwen, GPT-2 ... with a `score` head) read the hidden state
  of the last real token, the only one that has seen the whole sequence. The position is
  taken from the attention mask, so it is right for either padding side, and also when
  the pad token occurs in real text (SmolLM2 pads with its end-of-turn token). The
  transformers 5 forward takes the last token that differs from the pad id instead, which
  is wrong in that case, so this module applies the `score` head itself.
  Position ids count real tokens only, so left padding does not shift positions.
- Encoders (BERT, RoBERTa, DeBERTa ...) pool their first token ([CLS]), which attends to
  the whole sequence. They run right padded, since absolute position embeddings and the
  first-token pooling both assume real tokens start at position 0; a left-padded batch is
  moved to right padding first.

NOTE: any classifier without a `score` head is treated as a first-token encoder. One
whose head pools another position (XLNet pools the last token) would be misread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from cringe_core.data.records import Message
from cringe_core.reward.inputs import RewardInput, collate_reward_inputs, encode_reward_inputs
from cringe_core.training.step import autocast_for


def _unwrapped(model: Any) -> Any:
    """Return the transformers model inside a PEFT wrapper (adapters stay in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def reads_last_token(model: Any) -> bool:
    """True for causal classifiers, whose `score` head applies to one token's hidden state."""
    return isinstance(getattr(_unwrapped(model), "score", None), torch.nn.Module)


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Return the position of each row's last real token, for either padding side: (B,)."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)  # (T,)
    return (positions * attention_mask).argmax(dim=1)  # (B,)


def to_right_padding(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Shift each row's real tokens to the start, so padding ends up on the right."""
    mask = batch["attention_mask"]  # (B, T)
    leading_pads = mask.argmax(dim=1)  # (B,) index of the first real token
    if not bool(leading_pads.any()):
        return batch
    width = mask.shape[1]
    # Row b reads its token at (t + leading_pads[b]) mod T: the real tokens move to the
    # front and the leading pads wrap around to the end.
    source = (torch.arange(width, device=mask.device) + leading_pads[:, None]) % width  # (B, T)
    return {key: value.gather(1, source) for key, value in batch.items()}


def reward_scores(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Return one reward per row of a padded batch, left or right padded: (B,).

    `batch` contains `input_ids` and `attention_mask` (B, T), and `token_type_ids` for
    sentence pairs. Gradients flow, so training calls this too.
    """
    mask = batch["attention_mask"]
    if not reads_last_token(model):
        logits = model(**to_right_padding(batch)).logits  # (B, 1)
        return logits[:, 0]

    inner = _unwrapped(model)
    backbone = getattr(inner, inner.base_model_prefix)
    position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)  # (B, T)
    hidden = backbone(
        input_ids=batch["input_ids"],
        attention_mask=mask,
        position_ids=position_ids,
        use_cache=False,
    ).last_hidden_state  # (B, T, H)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    last_hidden = hidden[rows, last_token_index(mask)]  # (B, H)
    return inner.score(last_hidden)[:, 0]  # (B,)


class RewardScorer:
    """A reward model with its tokenizer, scoring many (prompt, completion) pairs."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_length: int,
        batch_size: int = 16,
        precision: str = "auto",
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.precision = precision

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(
        self, prompts: Sequence[Sequence[Message]], completions: Sequence[str]
    ) -> list[RewardInput]:
        return encode_reward_inputs(self.tokenizer, prompts, completions, self.max_length)

    @torch.no_grad()
    def score_inputs(self, inputs: Sequence[RewardInput]) -> torch.Tensor:
        """Score encoded inputs in eval mode (no dropout); returns float32 on the CPU: (N,)."""
        if not inputs:
            return torch.empty(0)
        was_training = self.model.training
        self.model.eval()

        # Batches of similar lengths waste less compute on padding; scores do not depend
        # on batch composition, so the order is restored afterwards.
        order = sorted(range(len(inputs)), key=lambda i: len(inputs[i].input_ids), reverse=True)
        scores = torch.empty(len(inputs))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            batch = collate_reward_inputs([inputs[i] for i in chunk], self.tokenizer.pad_token_id)
            batch = {key: value.to(self.device) for key, value in batch.items()}
            with autocast_for(self.precision, self.device):
                scores[chunk] = reward_scores(self.model, batch).float().cpu()

        self.model.train(was_training)
        return scores

    def score(
        self, prompts: Sequence[Sequence[Message]], completions: Sequence[str]
    ) -> torch.Tensor:
        """Reward of each completion given its prompt: (N,)."""
        return self.score_inputs(self.encode(prompts, completions))
