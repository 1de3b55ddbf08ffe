"""Turn scored samples into preference pairs, and read and write the phase files.

Every phase file is JSON lines, written to a temporary name and renamed into place, so
its existence means the phase finished; a crash mid-write leaves no file and the phase
runs again on resume.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write rows atomically: a reader sees the whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.partial")
    with staging.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(staging, path)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.partial")
    staging.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(staging, path)


def best_worst_pairs(
    scored: Sequence[dict[str, Any]], min_reward_gap: float
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Keep (best, worst) per prompt when `reward(best) - reward(worst) >= min_reward_gap`.

    `scored` rows carry `prompt_index`, `prompt`, `text` and `reward`. A prompt whose
    samples all score the same gives no pair, whatever the gap, since a tie carries no
    preference. Returns the pairs and reward statistics over all samples.
    """
    by_prompt: dict[int, list[dict[str, Any]]] = {}
    for row in scored:
        by_prompt.setdefault(int(row["prompt_index"]), []).append(row)

    pairs = []
    for prompt_index in sorted(by_prompt):
        samples = by_prompt[prompt_index]
        # max/min keep the first of equal rewards, so the choice is deterministic.
        best = max(samples, key=lambda row: row["reward"])
        worst = min(samples, key=lambda row: row["reward"])
        gap = best["reward"] - worst["reward"]
        if gap <= 0 or gap < min_reward_gap:
            continue
        pairs.append(
            {
                "prompt": best["prompt"],
                "chosen": best["text"],
                "rejected": worst["text"],
                "prompt_index": prompt_index,
                "chosen_reward": best["reward"],
                "rejected_reward": worst["reward"],
                "chosen_seed": best.get("seed"),
                "rejected_seed": worst.get("seed"),
            }
        )

    rewards = np.array([row["reward"] for row in scored], dtype=np.float64)
    gaps = np.array([p["chosen_reward"] - p["rejected_reward"] for p in pairs], dtype=np.float64)
    stats = {
        "samples": float(len(rewards)),
        "reward_mean": float(rewards.mean()) if len(rewards) else 0.0,
        "reward_std": float(rewards.std()) if len(rewards) else 0.0,
        "reward_min": float(rewards.min()) if len(rewards) else 0.0,
        "reward_max": float(rewards.max()) if len(rewards) else 0.0,
        "gap_mean": float(gaps.mean()) if len(gaps) else 0.0,
    }
    return pairs, stats
