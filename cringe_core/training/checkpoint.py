"""Resumable checkpoints: weights, optimizer, scheduler, RNG state and data position.

Layout of one checkpoint, `checkpoints/step-00000012/`:
  model/               the policy as save_pretrained writes it (loadable on its own)
  optimizer.pt         optimizer and scheduler state dicts
  trainer_state.json   step, rows consumed, seed
  rng.pt               torch, CUDA, numpy and Python RNG states
A checkpoint is written to a hidden staging folder and renamed into place, so a crash
mid-write never leaves a partial checkpoint that a resume would pick up.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

_PREFIX = "step-"


@dataclass(frozen=True)
class TrainerState:
    step: int  # optimizer steps completed
    consumed_rows: int  # position in the data order
    seed: int


def checkpoint_dir(root: Path, step: int) -> Path:
    return root / f"{_PREFIX}{step:08d}"


def latest_checkpoint(root: Path) -> Path | None:
    """Return the checkpoint with the highest step under `root`, or None."""
    if not root.is_dir():
        return None
    steps = [
        path
        for path in root.iterdir()
        if path.is_dir()
        and path.name.startswith(_PREFIX)
        and (path / "trainer_state.json").exists()
    ]
    return max(steps, key=lambda path: int(path.name[len(_PREFIX) :]), default=None)


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    root: Path,
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: TrainerState,
) -> Path:
    """Write a checkpoint atomically and return its folder."""
    target = checkpoint_dir(root, state.step)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
    try:
        model.save_pretrained(staging / "model")
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
            staging / "optimizer.pt",
        )
        torch.save(_rng_state(), staging / "rng.pt")
        (staging / "trainer_state.json").write_text(json.dumps(asdict(state)), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("saved checkpoint %s", target)
    return target


def load_checkpoint(
    path: Path, model: Any, optimizer: torch.optim.Optimizer, scheduler: Any
) -> TrainerState:
    """Restore weights, optimizer, scheduler and RNG state in place; return the position."""
    from safetensors.torch import load_file

    weights: dict[str, torch.Tensor] = {}
    for shard in sorted((path / "model").glob("*.safetensors")):
        weights.update(load_file(shard))
    if hasattr(model, "peft_config"):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, weights)
    else:
        # Tied embeddings are saved once; strict=False lets the tied copy stay shared.
        missing, unexpected = model.load_state_dict(weights, strict=False)
        tied = set(getattr(model, "_tied_weights_keys", None) or [])
        if unexpected or [key for key in missing if key not in tied]:
            raise ValueError(
                f"checkpoint {path} does not match the model: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}; resume with the spec the run started with"
            )

    saved = torch.load(path / "optimizer.pt", weights_only=False)
    # Loading replaces every param group's settings with the saved ones, including the
    # kernel choice. That choice belongs to this machine, not to the run: a checkpoint
    # from a run that used the foreach kernel would otherwise turn the fused one off.
    kernels = [(group.get("fused"), group.get("foreach")) for group in optimizer.param_groups]
    optimizer.load_state_dict(saved["optimizer"])
    for group, (fused, foreach) in zip(optimizer.param_groups, kernels, strict=True):
        group["fused"], group["foreach"] = fused, foreach
    scheduler.load_state_dict(saved["scheduler"])
    _set_rng_state(torch.load(path / "rng.pt", weights_only=False))
    state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    logger.info("resumed from %s at step %d", path, state["step"])
    return TrainerState(**state)
