"""One optimizer step: micro-batches, global normalizers, backward, clipping, update.

The loss of every micro-batch is divided by a count taken over the whole global batch
(all micro-batches on all data-parallel ranks), so the summed gradients equal those of
one big batch, however the batch is split.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from cringe_core.data.collate import collate_examples, collate_pairs
from cringe_core.data.records import TokenizedExample, TokenizedPair
from cringe_core.losses import LossInputs
from cringe_core.losses.forward import compute_sequence_logps, concatenated_forward
from cringe_core.losses.registry import LossDefinition

AllReduce = Callable[[torch.Tensor], torch.Tensor]  # sums a tensor over all ranks
Row = TokenizedPair | TokenizedExample


@dataclass
class MicroBatch:
    batch: dict[str, torch.Tensor]
    num_pairs: int | None  # None for binary-feedback rows
    rows: int
    reference_logps: torch.Tensor | None  # (N,) precomputed, or None


def collate(rows: Sequence[Row], pad_token_id: int, device: torch.device) -> MicroBatch:
    """Pad a list of tokenized rows into one batch on `device`."""
    if isinstance(rows[0], TokenizedPair):
        batch = collate_pairs(list(rows), pad_token_id)  # type: ignore[arg-type]
        num_pairs: int | None = len(rows)
    else:
        batch = collate_examples(list(rows), pad_token_id)  # type: ignore[arg-type]
        num_pairs = None
    batch = {key: value.to(device) for key, value in batch.items()}
    return MicroBatch(batch=batch, num_pairs=num_pairs, rows=len(rows), reference_logps=None)


def local_normalizer(loss: LossDefinition, micro: MicroBatch) -> torch.Tensor:
    """Count the loss's unit (tokens or pairs) in a micro-batch without a forward pass."""
    labels = micro.batch["labels"][:, 1:]  # (N, T-1), aligned with shifted logits
    inputs = LossInputs(
        logits=torch.empty(0),
        labels=labels,
        mask=labels != -100,
        num_pairs=micro.num_pairs,
        is_good=micro.batch.get("is_good"),
    )
    return loss.normalizer(inputs).to(torch.float64)


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bfloat16 autocast when asked for, or on 'auto' where the device supports it.

    'auto' keeps float32 on CPUs: bfloat16 autocast there is slower on processors
    without bfloat16 matrix units.
    """
    use_bf16 = precision == "bfloat16" or (
        precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()
    )
    if use_bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class StepSettings:
    loss: LossDefinition
    loss_spec: Any
    precision: str
    max_grad_norm: float | None
    world_size: int = 1
    all_reduce: AllReduce | None = None
    # Called after each micro-batch's loss and after its backward pass, where a step
    # uses the most memory (the heap guard reads the bytes in use there).
    memory_probe: Callable[[], None] | None = None


def train_step(
    model: Any,
    micro_batches: list[MicroBatch],
    settings: StepSettings,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    generator_for: Callable[[int], torch.Generator],
    reference_model: Any = None,
) -> dict[str, float]:
    """Run one optimizer step over this rank's micro-batches; return averaged metrics."""
    device = micro_batches[0].batch["input_ids"].device
    normalizer = torch.stack(
        [local_normalizer(settings.loss, micro) for micro in micro_batches]
    ).sum()
    if settings.all_reduce is not None:
        normalizer = settings.all_reduce(normalizer)
    normalizer = normalizer.clamp(min=1).to(device)

    totals: dict[str, float] = {}
    rows = 0
    for index, micro in enumerate(micro_batches):
        if settings.loss.needs_reference and micro.reference_logps is None:
            micro.reference_logps = compute_sequence_logps(reference_model, micro.batch)

        # DDP averages gradients over ranks; the loss is already divided by the global
        # count, so scaling by world size turns that average back into the sum.
        last = index == len(micro_batches) - 1
        sync = (
            contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
        )
        with sync:
            with autocast_for(settings.precision, device):
                inputs = concatenated_forward(model, micro.batch, micro.num_pairs)
            inputs.reference_logps = micro.reference_logps
            output = settings.loss.compute(
                inputs, settings.loss_spec, normalizer, generator_for(index)
            )
            if settings.memory_probe is not None:
                settings.memory_probe()
            (output.loss * settings.world_size).backward()
            if settings.memory_probe is not None:
                settings.memory_probe()

        rows += micro.rows
        for name, value in output.metrics.items():
            totals[name] = totals.get(name, 0.0) + float(value) * micro.rows
        totals["loss_sum"] = totals.get("loss_sum", 0.0) + float(output.loss.detach())

    grad_norm = _clip(model, settings.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)

    metrics = {name: value / rows for name, value in totals.items() if name != "loss_sum"}
    # The step's loss is the sum of the normalized micro-batch losses, not their mean.
    metrics["loss"] = totals["loss_sum"]
    metrics["grad_norm"] = grad_norm
    metrics["normalizer"] = float(normalizer)
    return _reduce_metrics(metrics, settings)


def _clip(model: Any, max_grad_norm: float | None) -> float:
    parameters = [p for p in model.parameters() if p.grad is not None]
    if not parameters:
        return 0.0
    limit = max_grad_norm if max_grad_norm is not None else float("inf")
    return float(torch.nn.utils.clip_grad_norm_(parameters, limit))


def _reduce_metrics(metrics: dict[str, float], settings: StepSettings) -> dict[str, float]:
    """Average per-rank metrics over ranks (the loss is summed, being already normalized)."""
    if settings.all_reduce is None or settings.world_size == 1:
        return metrics
    names = sorted(metrics)
    values = torch.tensor([metrics[name] for name in names], dtype=torch.float64)
    summed = settings.all_reduce(values)
    reduced = {}
    for name, total in zip(names, summed.tolist(), strict=True):
        same_on_every_rank = name in ("grad_norm", "normalizer")
        if name == "loss":
            reduced[name] = total
        elif same_on_every_rank:
            reduced[name] = metrics[name]
        else:
            reduced[name] = total / settings.world_size
    return reduced
