"""AdamW with linear warm-up then linear decay to zero."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR

from cringe_core.spec import TrainingSpec

# Devices where torch's fused AdamW kernel runs; elsewhere the foreach kernel is used.
_FUSED_DEVICE_TYPES = frozenset({"cpu", "cuda"})


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
    # The fused kernel updates each parameter in one pass with no temporaries. On the
    # 2-core CPU it took 0.06 s per SmolLM2-135M step against 0.33 s for the foreach
    # kernel, whose temporaries (a square root of every second moment, among others)
    # also added about 530 MB to the peak resident memory.
    fused = all(parameter.device.type in _FUSED_DEVICE_TYPES for parameter in decay + no_decay)
    return torch.optim.AdamW(
        groups,
        lr=training.learning_rate,
        betas=training.adam_betas,
        fused=fused or None,
        foreach=None if fused else True,
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
