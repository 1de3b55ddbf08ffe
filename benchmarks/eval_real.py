"""Real-data evaluation: a reward model on AlpacaEval judgements, then a win rate with it.

1. Trains the MiniLM reward model (alias minilm-l6-v2) with the Bradley-Terry loss on
   four AlpacaEval 2 judgement files, for one epoch, holding out 15% of the instructions;
   reports its accuracy on the held-out instructions next to two simple baselines
   (always prefer the gpt4_1106_preview reference answer; prefer the longer answer).
2. Generates greedy completions of SmolLM2-135M-Instruct for 50 of the held-out
   instructions of the AlpacaFarm evaluation set and judges them with that reward model
   against the set's gpt-3.5-turbo-0301 reference answers: wins, ties, losses, win rate
   and 95% bootstrap interval.

Run from the repository root (the data folder is ../shared/data):
    .venv/bin/python benchmarks/eval_real.py
Prints a table and writes benchmarks/results/eval_real.json; the runs themselves go to
runs/eval_real/. `--steps`, `--prompts` and `--max-new-tokens` shorten a trial run, and
`--max-length` sets the reward model's tokens per (prompt, answer) (default 256).
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from cringe_core.data.messages import user_prompt
from cringe_core.evaluation.job import evaluate
from cringe_core.evaluation.report import format_evaluation, format_reward_training
from cringe_core.evaluation.reward_preference import reward_preference
from cringe_core.models.reward import load_reward_model, load_reward_tokenizer
from cringe_core.reward.data import (
    prompt_key,
    read_heldout_prompt_keys,
    read_preference_sets,
    split_by_prompt,
)
from cringe_core.reward.scoring import RewardScorer
from cringe_core.reward.trainer import RewardTrainer
from cringe_core.spec import EvaluateJobSpec, ModelSpec, RewardModelJobSpec, parse_spec

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT.parent / "shared" / "data"
ANNOTATIONS = [
    "FuseChat-Llama-3.2-3B-Instruct.json.gz",
    "FuseChat-Llama-3.2-1B-Instruct.json.gz",
    "claude-2.json.gz",
    "Mixtral-8x7B-Instruct-v0.1_concise.json.gz",
]
EVAL_SET = DATA / "alpaca-farm" / "eval_gpt-3.5-turbo-0301.json"
EVAL_FRACTION = 0.15
BATCH_SIZE = 16

logger = logging.getLogger("eval_real")


def reward_spec(max_steps: int, max_length: int) -> RewardModelJobSpec:
    spec = parse_spec(
        {
            "kind": "reward_model",
            "model": {"name": "minilm-l6-v2"},
            "dataset": [{"path": str(DATA / "alpaca-eval-annotations" / n)} for n in ANNOTATIONS],
            "training": {
                "max_steps": max_steps,
                "batch_size": BATCH_SIZE,
                "micro_batch_size": BATCH_SIZE,
                "learning_rate": 5e-5,
                "warmup_steps": 10,
                "max_length": max_length,
                # bfloat16 autocast: about 1.5-2x faster than float32 for this encoder on
                # the AVX512-BF16 CPUs this was run on (measured on 16 x 256-token rows).
                "precision": "bfloat16",
                "checkpoint_every_steps": 25,
                "log_every_steps": 5,
            },
            "eval_fraction": EVAL_FRACTION,
            "seed": 0,
        }
    )
    assert isinstance(spec, RewardModelJobSpec)
    return spec


def one_epoch_steps() -> int:
    """Steps that pass over every training pair once, given the split the job will make."""
    spec = reward_spec(1, 256)
    records = read_preference_sets(spec.dataset).records
    train = split_by_prompt(records, spec.eval_fraction, spec.seed).train
    return math.ceil(len(train) / BATCH_SIZE)


def heldout_baselines(run_dir: Path) -> dict[str, Any]:
    """Accuracy of two rules on the held-out pairs, read from the raw judgement files."""
    heldout = read_heldout_prompt_keys(run_dir)
    pairs = reference_wins = longer_wins = 0
    for name in ANNOTATIONS:
        with gzip.open(DATA / "alpaca-eval-annotations" / name, "rt", encoding="utf-8") as f:
            rows = json.load(f)
        for row in rows:
            preference = row.get("preference")
            if preference is None or preference == 1.5:
                continue
            if prompt_key(user_prompt(row["instruction"])) not in heldout:
                continue
            if row["output_1"] == row["output_2"]:
                continue
            reference_preferred = preference < 1.5
            pairs += 1
            reference_wins += reference_preferred
            longer_is_reference = len(row["output_1"]) >= len(row["output_2"])
            longer_wins += longer_is_reference == reference_preferred
    return {
        "pairs": pairs,
        "prefer_reference_accuracy": reference_wins / pairs,
        "prefer_longer_accuracy": longer_wins / pairs,
    }


def heldout_by_length(run_dir: Path, spec: RewardModelJobSpec) -> dict[str, Any]:
    """Accuracy of the saved reward model on held-out pairs, split by the longer side.

    The judge of these files prefers the longer answer in most pairs, so a reward model
    can score well by rewarding length; accuracy on the pairs whose chosen answer is the
    shorter one shows how much it does.
    """
    records = read_preference_sets(spec.dataset).records
    heldout = split_by_prompt(records, spec.eval_fraction, spec.seed).heldout
    tokenizer = load_reward_tokenizer(str(run_dir / "model"))
    model = load_reward_model(ModelSpec(name=str(run_dir / "model")), tokenizer.pad_token_id)
    scorer = RewardScorer(model, tokenizer, spec.training.max_length, 32, "bfloat16")
    margins = reward_preference(scorer, heldout).margins

    groups: dict[str, list[bool]] = {"chosen_longer": [], "chosen_shorter": []}
    for pair, margin in zip(heldout, margins.tolist(), strict=True):
        group = "chosen_longer" if len(pair.chosen) >= len(pair.rejected) else "chosen_shorter"
        groups[group].append(margin > 0)
    return {
        name: {"pairs": len(hits), "accuracy": sum(hits) / max(1, len(hits))}
        for name, hits in groups.items()
    }


def train_reward_model(run_dir: Path, steps: int, max_length: int) -> dict[str, Any]:
    spec = reward_spec(steps, max_length)
    started = time.perf_counter()
    result = RewardTrainer(spec, run_dir, device=torch.device("cpu"), show_progress=False).run()
    elapsed_s = time.perf_counter() - started
    print(format_reward_training(result.steps, str(result.model_dir), result.heldout))
    split = json.loads((run_dir / "split.json").read_text(encoding="utf-8"))
    return {
        "files": ANNOTATIONS,
        "backbone": spec.model.name,
        "steps": result.steps,
        "batch_size": BATCH_SIZE,
        "max_length": max_length,
        "learning_rate": spec.training.learning_rate,
        "train_pairs": split["train_pairs"],
        "train_prompts": split["train_prompt_count"],
        "heldout": result.heldout,
        "baselines": heldout_baselines(run_dir),
        "time_s": elapsed_s,
    }


def win_rate_run(
    run_dir: Path, output_dir: Path, prompts: int, max_new_tokens: int, max_length: int
) -> dict[str, Any]:
    spec = parse_spec(
        {
            "kind": "evaluate",
            "model": {"name": "smollm2-135m-instruct"},
            "eval_set": {
                "path": str(EVAL_SET),
                "max_prompts": prompts,
                "heldout_from": str(run_dir),
            },
            "reference": {"source": "eval_set"},
            "judge": {"name": str(run_dir / "model"), "max_length": max_length},
            "generation": {"max_new_tokens": max_new_tokens, "batch_size": 10},
            "seed": 0,
        }
    )
    assert isinstance(spec, EvaluateJobSpec)
    results = evaluate(spec, output_dir, torch.device("cpu"))
    print(format_evaluation(results))
    lines = (output_dir / "completions.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    results["mean_completion_chars"] = sum(len(r["completion"]) for r in rows) / len(rows)
    results["mean_reference_chars"] = sum(len(r["reference"]) for r in rows) / len(rows)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, help="reward-model steps (default: one epoch)")
    parser.add_argument("--prompts", type=int, default=50, help="held-out prompts evaluated")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="tokens per completion")
    parser.add_argument("--output-dir", default=str(REPO_ROOT / "runs" / "eval_real"))
    parser.add_argument(
        "--results", default=str(REPO_ROOT / "benchmarks" / "results" / "eval_real.json")
    )
    parser.add_argument("--max-length", type=int, default=256, help="reward-model tokens")
    parser.add_argument("--skip-training", action="store_true", help="reuse the reward run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("transformers").setLevel(logging.ERROR)

    output = Path(args.output_dir)
    run_dir = output / "reward_model"
    machine = {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": os.getloadavg(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
    if args.skip_training:
        previous = json.loads(Path(args.results).read_text(encoding="utf-8"))
        reward = previous["reward_model"]
    else:
        reward = train_reward_model(run_dir, args.steps or one_epoch_steps(), args.max_length)
    reward["heldout_by_length"] = heldout_by_length(run_dir, reward_spec(1, args.max_length))
    print(f"held-out accuracy by the longer side: {reward['heldout_by_length']}")

    started = time.perf_counter()
    evaluation = win_rate_run(
        run_dir, output / "win_rate", args.prompts, args.max_new_tokens, args.max_length
    )
    evaluation["time_s"] = time.perf_counter() - started
    evaluation["max_new_tokens"] = args.max_new_tokens

    results = {"machine": machine, "reward_model": reward, "win_rate": evaluation}
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
