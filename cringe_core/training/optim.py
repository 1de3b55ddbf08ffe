"""AdamW with linear warm-up then linear decay to zero."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR

from cringe_core.spec import TrainingSpec


def build_optimizer(model: torch.nn.Module, training: TrainingSpec) -> torch.optim.AdamW:
    """AdamW over trainable parameters; biases and norm weights get no weight decay."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim < 2 else decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": training.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups, lr=training.learning_rate, betas=training.adam_betas, foreach=True
    )


def warmup_linear_decay(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Return the learning-rate factor for step s: rises to 1 over warm-up, then falls to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        remaining = total_steps - step
        return max(0.0, remaining / max(1, total_steps - warmup_steps))

    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, training: TrainingSpec) -> LambdaLR:
    return LambdaLR(optimizer, warmup_linear_decay(training.warmup_steps, training.max_steps))
