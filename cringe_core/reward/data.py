"""Preference pairs for reward-model training: read, pooled, and split by prompt.

The held-out split is by prompt, not by row: several files (such as AlpacaEval judgements
of different systems) share the same prompts, and a pair whose prompt was trained on
would overstate held-out accuracy. A prompt is held out when its rank under a seeded
hash is among the first `eval_fraction` of the distinct prompts, so the split depends
only on the seed and the set of prompts, not on file order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cringe_core.data.defects import DataError
from cringe_core.data.readers import read_records
from cringe_core.data.records import Message, PreferenceRecord
from cringe_core.spec import DatasetSpec

SPLIT_FILE = "split.json"


@dataclass
class PreferenceData:
    records: list[PreferenceRecord]
    report: list[dict[str, Any]] = field(default_factory=list)  # one summary per data set


def read_preference_sets(specs: Sequence[DatasetSpec]) -> PreferenceData:
    """Read every data set and pool its preference pairs.

    Pairs whose chosen and rejected texts are identical carry no preference and are
    dropped. Raises DataError when a file contains binary feedback instead of pairs, or when
    its share of defective rows is above the data set's `max_invalid_fraction`.
    """
    pooled = PreferenceData(records=[])
    for spec in specs:
        result = read_records(
            spec.path, format=spec.format, max_rows=spec.max_rows, split=spec.split
        )
        pairs = [record for record in result.records if isinstance(record, PreferenceRecord)]
        if len(pairs) < len(result.records):
            raise DataError(
                f"dataset {spec.path!r} contains binary feedback (format {result.format!r}); a "
                "reward model trains on preference pairs, so use a file with chosen and "
                "rejected completions"
            )

        checked = result.rows_read - sum(result.skipped.values())
        invalid_fraction = len(result.problems) / max(1, checked)
        if invalid_fraction > spec.max_invalid_fraction:
            first = result.problems[0]
            raise DataError(
                f"dataset {spec.path!r}: {len(result.problems)} of {checked} rows "
                f"({invalid_fraction:.2%}) are invalid, more than dataset.max_invalid_fraction "
                f"= {spec.max_invalid_fraction:g} allows (row {first.row}: {first.defect}, "
                f"{first.detail}). Fix these rows, or raise max_invalid_fraction to drop them"
            )

        kept = [pair for pair in pairs if pair.chosen != pair.rejected]
        pooled.records.extend(kept)
        pooled.report.append(
            {
                "path": spec.path,
                "format": result.format,
                "rows_read": result.rows_read,
                "pairs": len(kept),
                "invalid_rows": len(result.problems),
                "chosen_equals_rejected": len(pairs) - len(kept),
                "skipped": {str(reason): count for reason, count in result.skipped.items()},
            }
        )
    if not pooled.records:
        raise DataError(
            f"no preference pairs left in {[spec.path for spec in specs]}; every row was "
            "skipped, invalid or had chosen equal to rejected"
        )
    return pooled


def prompt_key(prompt: Sequence[Message]) -> str:
    """Identify a prompt by its exact messages, so equal prompts from two files match."""
    return json.dumps(list(prompt), sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True)
class PromptSplit:
    train: list[PreferenceRecord]
    heldout: list[PreferenceRecord]
    heldout_prompts: list[list[Message]]
    train_prompt_count: int


def split_by_prompt(
    records: Sequence[PreferenceRecord], eval_fraction: float, seed: int
) -> PromptSplit:
    """Hold out `round(eval_fraction * prompts)` distinct prompts and every pair they have."""
    prompts: dict[str, list[Message]] = {}
    for record in records:
        prompts.setdefault(prompt_key(record.prompt), record.prompt)

    def rank(key: str) -> str:
        return hashlib.sha256(f"{seed}\n{key}".encode()).hexdigest()

    ordered = sorted(prompts, key=rank)
    heldout_keys = set(ordered[: round(eval_fraction * len(ordered))])
    return PromptSplit(
        train=[r for r in records if prompt_key(r.prompt) not in heldout_keys],
        heldout=[r for r in records if prompt_key(r.prompt) in heldout_keys],
        heldout_prompts=[prompts[key] for key in ordered if key in heldout_keys],
        train_prompt_count=len(ordered) - len(heldout_keys),
    )


def write_split(path: Path, split: PromptSplit) -> None:
    data = {
        "train_prompt_count": split.train_prompt_count,
        "train_pairs": len(split.train),
        "heldout_pairs": len(split.heldout),
        "heldout_prompts": split.heldout_prompts,
    }
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")


def read_heldout_prompt_keys(run_dir: str | Path) -> set[str]:
    """Return the held-out prompt keys that a reward_model run wrote to its split file."""
    path = Path(run_dir) / SPLIT_FILE
    if not path.is_file():
        raise DataError(
            f"{path} not found: heldout_from must name the output folder of a reward_model "
            "run, which writes split.json when it reads its data"
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    return {prompt_key(prompt) for prompt in data["heldout_prompts"]}
