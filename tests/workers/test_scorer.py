"""The scorer actor pool: one completion's score ignores its batch and padding side."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray

from cringe_core.spec import JudgeSpec, ScorerSpec
from tests.tiny_models import save_tiny_llama_reward
from workers.scorer import ScorerPool

PROMPT = [{"role": "user", "content": "Name a colour."}]
TARGET = "Blue."
LONGER = [
    "Sunlight scatters off air molecules, and short blue wavelengths scatter the most.",
    "Green is the colour of grass and of most leaves in the summer, thanks to chlorophyll.",
]


@pytest.fixture(scope="module")
def pool(
    ray_cluster: None, tmp_path_factory: pytest.TempPathFactory, tiny_policy_path: Path
) -> ScorerPool:
    folder = save_tiny_llama_reward(tmp_path_factory.mktemp("reward"), tiny_policy_path)
    with ScorerPool(
        JudgeSpec(name=str(folder)), ScorerSpec(num_replicas=2, batch_size=2),
        num_cpus_per_actor=0.5,
    ) as scorers:
        yield scorers


def _one_batch(pool: ScorerPool, completions: list[str], side: str) -> list[float]:
    actor = pool.actors[0]
    return ray.get(actor.score_one_batch.remote([PROMPT] * len(completions), completions, side))


def test_alone_equals_with_longer(pool: ScorerPool) -> None:
    alone = _one_batch(pool, [TARGET], "right")[0]
    mixed = _one_batch(pool, [*LONGER, TARGET], "right")[2]
    assert mixed == pytest.approx(alone, abs=1e-5)


def test_left_equals_right_padding(pool: ScorerPool) -> None:
    right = _one_batch(pool, [*LONGER, TARGET], "right")[2]
    left = _one_batch(pool, [*LONGER, TARGET], "left")[2]
    assert left == pytest.approx(right, abs=1e-5)


def test_pool_keeps_order(pool: ScorerPool) -> None:
    completions = [TARGET, *LONGER, "Red.", "Yellow, like a lemon."]
    pooled = pool.score([PROMPT] * len(completions), completions)
    singles = [_one_batch(pool, [text], "right")[0] for text in completions]
    assert pooled == pytest.approx(singles, abs=1e-5)


def test_scores_differ_between_completions(pool: ScorerPool) -> None:
    scores = _one_batch(pool, [TARGET, *LONGER], "right")
    assert len({round(score, 6) for score in scores}) == 3


def test_bad_padding_side_rejected(pool: ScorerPool) -> None:
    with pytest.raises(ray.exceptions.RayTaskError, match="padding_side 'middle'"):
        _one_batch(pool, [TARGET], "middle")


def test_mismatched_lengths_rejected(pool: ScorerPool) -> None:
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        pool.score([PROMPT, PROMPT], [TARGET])
