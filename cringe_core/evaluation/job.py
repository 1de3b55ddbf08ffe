"""Run an `evaluate` job: generate, judge against references, count wins, write results.

Output folder:
  resolved_spec.json   the spec with every default filled in
  results.json         win rates with intervals, lengths, repeat@3, preference accuracy,
                       and the paired comparison when `compare_with` is set
  completions.jsonl    one line per prompt and candidate: completion, reference, rewards,
                       outcome, and the seed that regenerates a sampled completion
  status.json          state and error
"""

from __future__ import annotations

import gc
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cringe_core.data.defects import DataError
from cringe_core.data.prompts import read_prompts
from cringe_core.data.records import PromptRecord, TokenizedPair
from cringe_core.evaluation.text_metrics import mean_length, mean_repeat_at_n
from cringe_core.evaluation.win_rate import outcomes, paired_comparison, win_rate
from cringe_core.generation import Completion, generate_completions
from cringe_core.models.loading import load_policy, load_tokenizer
from cringe_core.models.reward import load_reward_model, load_reward_tokenizer
from cringe_core.reward.data import prompt_key, read_heldout_prompt_keys
from cringe_core.reward.scoring import RewardScorer
from cringe_core.spec import EvaluateJobSpec, ModelSpec, PolicyReference, resolve

logger = logging.getLogger(__name__)


@dataclass
class CandidateRun:
    """One candidate's completions and judgements, prompt by prompt."""

    model: str
    completions: list[Completion]
    rewards: np.ndarray  # (n,)
    outcome: np.ndarray  # (n,) 1 win, 0.5 tie, 0 loss
    summary: dict[str, Any]


def select_prompts(spec: EvaluateJobSpec) -> list[PromptRecord]:
    """Read the evaluation set, keep the prompts held out by `heldout_from`, then the first N."""
    records = read_prompts(spec.eval_set.path)
    if spec.eval_set.heldout_from is not None:
        heldout = read_heldout_prompt_keys(spec.eval_set.heldout_from)
        records = [record for record in records if prompt_key(record.prompt) in heldout]
        if not records:
            raise DataError(
                f"none of the prompts in {spec.eval_set.path!r} is among the held-out prompts "
                f"of {spec.eval_set.heldout_from!r}; evaluate the data set that run held out "
                "prompts from, or remove eval_set.heldout_from"
            )
    if spec.eval_set.max_prompts is not None:
        records = records[: spec.eval_set.max_prompts]
    if not records:
        raise DataError(f"evaluation set {spec.eval_set.path!r} has no prompts")
    return records


def eval_set_references(spec: EvaluateJobSpec, records: Sequence[PromptRecord]) -> list[str]:
    """Return the reference answers of the evaluation set; every prompt needs one."""
    missing = [record.row for record in records if not record.reference]
    if missing:
        raise DataError(
            f"{len(missing)} prompt(s) of {spec.eval_set.path!r} have no reference answer "
            f"(rows {missing[:10]}); add an 'output' (AlpacaFarm rows) or 'reference' field, "
            "or set reference: {source: policy, model: {name: ...}} to generate references"
        )
    return [record.reference for record in records if record.reference]


def _load(model_spec: ModelSpec, device: torch.device) -> tuple[Any, Any]:
    return load_policy(model_spec, device), load_tokenizer(model_spec.name, model_spec.revision)


def _generate(
    spec: EvaluateJobSpec,
    name: str,
    model: Any,
    tokenizer: Any,
    records: Sequence[PromptRecord],
) -> list[Completion]:
    started = time.perf_counter()
    completions = generate_completions(
        model,
        tokenizer,
        [record.prompt for record in records],
        spec.generation,
        seed=spec.seed,
        precision=spec.precision,
    )
    logger.info(
        "generated %d completions with %s in %.1f s",
        len(completions),
        name,
        time.perf_counter() - started,
    )
    return completions


def _preference_accuracy(
    spec: EvaluateJobSpec, model: Any, tokenizer: Any
) -> dict[str, Any] | None:
    if spec.preference_data is None:
        return None
    from cringe_core.data.check import prepare_dataset
    from cringe_core.evaluation.policy_preference import policy_preference

    rows, _ = prepare_dataset(spec.preference_data, tokenizer, spec.preference_max_length)
    pairs = [row for row in rows if isinstance(row, TokenizedPair)]
    if len(pairs) < len(rows):
        raise DataError(
            f"preference_data {spec.preference_data.path!r} contains binary feedback; "
            "preference accuracy needs pairs with chosen and rejected completions"
        )
    result = policy_preference(model, pairs, tokenizer.pad_token_id)
    return {"pairs": len(pairs), "accuracy": result.accuracy, "mean_margin": result.mean_margin}


def run_candidate(
    spec: EvaluateJobSpec,
    model_spec: ModelSpec,
    records: Sequence[PromptRecord],
    reference_rewards: np.ndarray,
    scorer: RewardScorer,
    device: torch.device,
) -> CandidateRun:
    """Generate with one candidate, judge each completion and summarize."""
    model, tokenizer = _load(model_spec, device)
    # Preference accuracy first, so that unusable preference data fails before generation.
    preference = _preference_accuracy(spec, model, tokenizer)
    completions = _generate(spec, model_spec.name, model, tokenizer, records)
    del model
    gc.collect()

    prompts = [record.prompt for record in records]
    rewards = scorer.score(prompts, [c.text for c in completions]).numpy().astype(np.float64)
    outcome = outcomes(rewards, reference_rewards, spec.tie_epsilon)
    token_ids = [c.token_ids for c in completions]
    result = win_rate(outcome, spec.bootstrap.resamples, spec.bootstrap.confidence, spec.seed)
    summary = {
        "model": model_spec.name,
        **result.to_dict(),
        "mean_reward": float(rewards.mean()),
        "mean_reference_reward": float(reference_rewards.mean()),
        "mean_length_tokens": mean_length(token_ids),
        "repeat_at_3": mean_repeat_at_n(token_ids, 3),
        "finished_fraction": sum(c.finished for c in completions) / len(completions),
        "preference": preference,
    }
    return CandidateRun(model_spec.name, completions, rewards, outcome, summary)


def _reference_texts(
    spec: EvaluateJobSpec, records: Sequence[PromptRecord], device: torch.device
) -> tuple[list[str], dict[str, Any]]:
    if isinstance(spec.reference, PolicyReference):
        model, tokenizer = _load(spec.reference.model, device)
        completions = _generate(spec, spec.reference.model.name, model, tokenizer, records)
        del model
        gc.collect()
        texts = [completion.text for completion in completions]
        return texts, {"source": "policy", "model": spec.reference.model.name}
    return eval_set_references(spec, records), {"source": "eval_set", "path": spec.eval_set.path}


def write_status(output_dir: Path, state: str, error: str | None = None) -> None:
    status: dict[str, Any] = {"state": state}
    if error is not None:
        status["error"] = error
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "status.json").write_text(json.dumps(status, indent=2), "utf-8")


def evaluate(spec: EvaluateJobSpec, output_dir: Path, device: torch.device) -> dict[str, Any]:
    """Run the whole evaluation, write its files, and return the results."""
    started = time.perf_counter()
    write_status(output_dir, "running")
    records = select_prompts(spec)
    references, reference_info = _reference_texts(spec, records, device)

    judge_tokenizer = load_reward_tokenizer(spec.judge.name, spec.judge.revision)
    judge = load_reward_model(
        ModelSpec(name=spec.judge.name, revision=spec.judge.revision),
        judge_tokenizer.pad_token_id,
        device,
    )
    scorer = RewardScorer(
        judge, judge_tokenizer, spec.judge.max_length, spec.judge.batch_size, spec.precision
    )
    prompts = [record.prompt for record in records]
    reference_rewards = scorer.score(prompts, references).numpy().astype(np.float64)

    candidates = [spec.model] + ([spec.compare_with] if spec.compare_with else [])
    runs = [
        run_candidate(spec, candidate, records, reference_rewards, scorer, device)
        for candidate in candidates
    ]
    comparison = None
    if len(runs) == 2:
        comparison = paired_comparison(
            runs[0].outcome,
            runs[1].outcome,
            spec.bootstrap.resamples,
            spec.bootstrap.confidence,
            spec.seed,
        ).to_dict()

    results = {
        "eval_set": {"path": spec.eval_set.path, "prompts": len(records)},
        "reference": reference_info,
        "judge": spec.judge.name,
        "tie_epsilon": spec.tie_epsilon,
        "candidates": [run.summary for run in runs],
        "comparison": comparison,
        "time_s": time.perf_counter() - started,
    }
    write_outputs(output_dir, spec, results, records, references, reference_rewards, runs)
    write_status(output_dir, "succeeded")
    return results


def write_outputs(
    output_dir: Path,
    spec: EvaluateJobSpec,
    results: dict[str, Any],
    records: Sequence[PromptRecord],
    references: Sequence[str],
    reference_rewards: np.ndarray,
    runs: Sequence[CandidateRun],
) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "resolved_spec.json").write_text(json.dumps(resolve(spec), indent=2), "utf-8")
    (output_dir / "results.json").write_text(json.dumps(results, indent=2), "utf-8")
    with (output_dir / "completions.jsonl").open("w", encoding="utf-8") as handle:
        for run in runs:
            for index, record in enumerate(records):
                completion = run.completions[index]
                line = {
                    "model": run.model,
                    "row": record.row,
                    "prompt": record.prompt,
                    "completion": completion.text,
                    "num_tokens": completion.num_tokens,
                    "finished": completion.finished,
                    "seed": completion.seed,
                    "reference": references[index],
                    "reward": float(run.rewards[index]),
                    "reference_reward": float(reference_rewards[index]),
                    "outcome": float(run.outcome[index]),
                }
                handle.write(json.dumps(line, ensure_ascii=False) + "\n")
