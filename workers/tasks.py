"""Ray tasks for the single-process phases: sampling, evaluation, reward-model training.

Each runs in a Ray worker process, so the job's driver stays light and the phases use
the cluster's CPUs or GPUs like the training workers do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import ray
import torch

from workers.ray_train import THREADS_ENV


def _set_threads() -> None:
    torch.set_num_threads(int(os.environ.get(THREADS_ENV, "1")))


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@ray.remote(num_cpus=1)
def generate_task(
    model_name: str,
    prompts: list[list[dict[str, Any]]],
    settings: dict[str, Any],
    samples_per_prompt: int,
    seed: int,
) -> list[dict[str, Any]]:
    """Sample `samples_per_prompt` completions per prompt; rows record their seeds."""
    from cringe_core.generation import generate_completions
    from cringe_core.models.loading import load_policy, load_tokenizer
    from cringe_core.spec import GenerationSpec, ModelSpec

    _set_threads()
    device = _device()
    tokenizer = load_tokenizer(model_name, None)
    model = load_policy(ModelSpec(name=model_name), device)
    model.eval()
    completions = generate_completions(
        model, tokenizer, prompts, GenerationSpec(**settings),  # type: ignore[arg-type]
        samples_per_prompt=samples_per_prompt, seed=seed,
    )
    return [
        {
            "prompt_index": c.prompt_index,
            "sample_index": c.sample_index,
            "prompt": prompts[c.prompt_index],
            "text": c.text,
            "num_tokens": c.num_tokens,
            "finished": c.finished,
            "seed": c.seed,
        }
        for c in completions
    ]


@ray.remote(num_cpus=1)
def evaluate_task(spec: dict[str, Any], output_dir: str) -> dict[str, Any]:
    """Run an evaluate spec (win rate against references) and write its files."""
    from cringe_core.evaluation.job import evaluate
    from cringe_core.spec import EvaluateJobSpec

    _set_threads()
    return evaluate(EvaluateJobSpec.model_validate(spec), Path(output_dir), _device())


@ray.remote(num_cpus=1)
def train_reward_model_task(spec: dict[str, Any], output_dir: str, resume: bool = True) -> str:
    """Train a reward model with the Bradley-Terry loss; return its model folder."""
    from cringe_core.reward.trainer import RewardTrainer
    from cringe_core.spec import RewardModelJobSpec

    _set_threads()
    trainer = RewardTrainer(RewardModelJobSpec.model_validate(spec), Path(output_dir),
                            _device(), show_progress=False)
    return str(trainer.run(resume=resume).model_dir)
