"""A pool of Ray actors that score (prompt, completion) pairs with one reward model.

Each actor loads the reward model once and then scores as many batches as it is sent.
A score is read at the last real token (causal models) or the first token (encoders),
located from the attention mask, so it does not depend on which other completions share
the batch nor on the padding side.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import ray
import torch

from cringe_core.data.records import Message
from cringe_core.models.reward import load_reward_model, load_reward_tokenizer
from cringe_core.reward.inputs import collate_reward_inputs
from cringe_core.reward.scoring import RewardScorer, reward_scores
from cringe_core.spec import JudgeSpec, ModelSpec, ScorerSpec
from workers.ray_train import THREADS_ENV

logger = logging.getLogger(__name__)

PADDING_SIDES = ("right", "left")


def _to_left_padding(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Move each row's trailing pads to its start: (B, T) -> (B, T)."""
    mask = batch["attention_mask"]
    pads = mask.shape[1] - mask.sum(dim=1)  # (B,) trailing pads per row
    width = mask.shape[1]
    # Row b reads its token at (t - pads[b]) mod T, so the pads wrap around to the front.
    source = (torch.arange(width) - pads[:, None]) % width  # (B, T)
    return {key: value.gather(1, source) for key, value in batch.items()}


class RewardScorerActor:
    """One reward model in one Ray actor process."""

    def __init__(self, model_name: str, revision: str | None, max_length: int,
                 batch_size: int) -> None:
        torch.set_num_threads(int(os.environ.get(THREADS_ENV, "1")))
        tokenizer = load_reward_tokenizer(model_name, revision)
        model = load_reward_model(ModelSpec(name=model_name, revision=revision),
                                  tokenizer.pad_token_id)
        self.scorer = RewardScorer(model, tokenizer, max_length=max_length,
                                   batch_size=batch_size, precision="float32")
        logger.info("scorer actor loaded reward model %s", model_name)

    def score(
        self, prompts: Sequence[Sequence[Message]], completions: Sequence[str]
    ) -> list[float]:
        """Score many pairs in length-sorted batches of the configured size."""
        return [float(value) for value in self.scorer.score(prompts, completions)]

    @torch.no_grad()
    def score_one_batch(self, prompts: Sequence[Sequence[Message]], completions: Sequence[str],
                        padding_side: str = "right") -> list[float]:
        """Score the pairs as exactly one padded batch, padded on `padding_side`."""
        if padding_side not in PADDING_SIDES:
            raise ValueError(
                f"padding_side {padding_side!r} is not supported; use 'right' or 'left'"
            )
        inputs = self.scorer.encode(prompts, completions)
        batch = collate_reward_inputs(inputs, self.scorer.tokenizer.pad_token_id)
        if padding_side == "left":
            batch = _to_left_padding(batch)
        self.scorer.model.eval()
        return [float(value) for value in reward_scores(self.scorer.model, batch)]


class ScorerPool:
    """`scorer.num_replicas` scorer actors sharing the work of one scoring phase."""

    def __init__(self, judge: JudgeSpec, scorer: ScorerSpec, num_cpus_per_actor: float = 1.0,
                 name_prefix: str | None = None) -> None:
        remote_actor = ray.remote(num_cpus=num_cpus_per_actor)(RewardScorerActor)
        self.batch_size = scorer.batch_size
        self.actors = []
        for index in range(scorer.num_replicas):
            options: dict[str, Any] = {"max_restarts": 1}
            if name_prefix is not None:
                options["name"] = f"{name_prefix}-scorer-{index}"
            self.actors.append(
                remote_actor.options(**options).remote(
                    judge.name, judge.revision, scorer.max_length, scorer.batch_size
                )
            )

    def score(
        self, prompts: Sequence[Sequence[Message]], completions: Sequence[str]
    ) -> list[float]:
        """Score every pair, spreading batches over the actors; the input order is kept."""
        if len(prompts) != len(completions):
            raise ValueError(
                f"got {len(prompts)} prompts but {len(completions)} completions; pass one "
                "prompt per completion"
            )
        from ray.util import ActorPool

        chunks = [
            (prompts[start : start + self.batch_size], completions[start : start + self.batch_size])
            for start in range(0, len(prompts), self.batch_size)
        ]
        pool = ActorPool(self.actors)
        results = pool.map(lambda actor, chunk: actor.score.remote(*chunk), chunks)
        return [score for chunk_scores in results for score in chunk_scores]

    def shutdown(self) -> None:
        """Kill the actors, so their CPUs (or GPUs) are free for the next phase."""
        for actor in self.actors:
            ray.kill(actor)  # type: ignore[arg-type]
        self.actors = []

    def __enter__(self) -> ScorerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
