"""Reference log-probs for DPO and IPO, computed once from the starting policy.

Precomputing them removes the reference model from training: one no-grad pass over the
data before the first step instead of a second forward in every step. The values are
cached next to the run, so a resumed run keeps the log-probs of the *starting* policy.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from cringe_core.data.records import TokenizedPair
from cringe_core.losses.forward import compute_sequence_logps
from cringe_core.training.step import autocast_for, collate

logger = logging.getLogger(__name__)


def precompute_reference_logps(
    model: Any,
    pairs: Sequence[TokenizedPair],
    pad_token_id: int,
    micro_batch_size: int,
    precision: str,
    device: torch.device,
) -> torch.Tensor:
    """Return (R, 2) summed log-probs: column 0 chosen, column 1 rejected, per row."""
    was_training = model.training
    model.eval()
    chunks = []
    for start in range(0, len(pairs), micro_batch_size):
        micro = collate(pairs[start : start + micro_batch_size], pad_token_id, device)
        with autocast_for(precision, device):
            logps = compute_sequence_logps(model, micro.batch)  # (2b,)
        chosen, rejected = logps.float().cpu().chunk(2)  # (b,), (b,)
        chunks.append(torch.stack([chosen, rejected], dim=1))  # (b, 2)
    model.train(was_training)
    return torch.cat(chunks)  # (R, 2)


def load_or_compute(path: Path, compute: Any, num_rows: int) -> torch.Tensor:
    """Read cached reference log-probs when they match the data set, else compute them."""
    if path.exists():
        cached = torch.load(path)
        if cached.shape == (num_rows, 2):
            return cached
        logger.warning("ignoring %s: it has %s rows, the data set %d", path, cached.shape, num_rows)
    logger.info("precomputing reference log-probs for %d pairs", num_rows)
    values = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(values, path)
    return values
