"""The same training work as a plain process and on 1 and 2 Ray Train workers; scorer
throughput with 1 and 2 reward-model actors.

Training: SmolLM2-135M-Instruct with `pairwise_cringe` on the first AlpacaEval judgement
pairs, the same spec (steps, global batch, max length, float32) for every contender.
Each contender runs in a fresh Python process, so Ray's start-up is inside its wall time:

- `plain`: `Trainer.run()` in the process, with 2 torch threads.
- `ray_1`: `fit_train_job` on a new local Ray instance, 1 worker with 2 threads.
- `ray_2`: the same with 2 DDP workers (gloo) of 1 thread each.

"loop s" sums the timed optimizer steps (`step_time_s` in metrics.jsonl); "fixed s" is
wall time minus loop time: imports, Ray start, worker group, model load, data checks.

Scoring: `ScorerPool` with the MiniLM reward model scores the same (prompt, completion)
pairs with 1 and 2 replicas of 1 CPU each, timed after a warm-up call that loads the model
in every actor.

    .venv/bin/python benchmarks/ray_scaling.py [--steps 8] [--repeats 1] [--write-readme]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from common import (
    ANNOTATIONS,
    MAX_INVALID_FRACTION,
    MODEL_ALIAS,
    child_env,
    machine_info,
    markdown_table,
    median,
    replace_readme_block,
    run_child,
    write_result,
)

CONTENDERS = {"plain": (1, 2), "ray_1": (1, 2), "ray_2": (2, 1)}  # workers, threads each
SCORER_PAIRS = 256


def train_spec(steps: int) -> dict[str, Any]:
    return {
        "kind": "train",
        "model": {"name": MODEL_ALIAS},
        "dataset": {"path": str(ANNOTATIONS), "max_rows": 128,
                    "max_invalid_fraction": MAX_INVALID_FRACTION},
        "loss": {"name": "pairwise_cringe"},
        "training": {"max_steps": steps, "batch_size": 4, "micro_batch_size": 2,
                     "max_length": 256, "precision": "float32", "learning_rate": 1e-6},
        "seed": 0,
    }


def _start_ray(threads: int) -> None:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             configure_logging=False, log_to_driver=False,
             runtime_env={"env_vars": {"CRINGE_TORCH_THREADS": str(threads)}})


def run_training(name: str, steps: int) -> dict[str, Any]:
    """Train once as contender `name` in this process; return its timings."""
    started = time.perf_counter()
    from cringe_core.spec import parse_spec

    workers, threads = CONTENDERS[name]
    spec_data = train_spec(steps)
    spec_data["scaling"] = {"num_workers": workers}
    spec = parse_spec(spec_data)
    output_dir = Path(tempfile.mkdtemp(prefix=f"ray-scaling-{name}-"))
    if name == "plain":
        from cringe_core.training.trainer import Trainer

        torch.set_num_threads(threads)
        Trainer(spec, output_dir, show_progress=False).run()
    else:
        import ray

        from workers.ray_train import fit_train_job

        os.environ["CRINGE_TORCH_THREADS"] = str(threads)
        _start_ray(threads)
        try:
            fit_train_job(spec, output_dir, run_name=name)  # type: ignore[arg-type]
        finally:
            ray.shutdown()
    wall_s = time.perf_counter() - started

    records = [json.loads(line) for line in
               (output_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    loop_s = sum(record["metrics"]["step_time_s"] for record in records)
    return {"contender": name, "workers": workers, "threads_per_worker": threads,
            "steps": len(records), "wall_s": wall_s, "loop_s": loop_s,
            "fixed_s": wall_s - loop_s, "final_loss": records[-1]["metrics"]["loss"]}


def run_scoring(replicas: int) -> dict[str, Any]:
    """Score SCORER_PAIRS pairs with `replicas` actors in this process; return the rate."""
    import ray

    from cringe_core.data.readers import read_records
    from cringe_core.data.records import PreferenceRecord
    from cringe_core.spec import JudgeSpec, ScorerSpec
    from workers.scorer import ScorerPool

    records = [record for record in read_records(ANNOTATIONS, max_rows=SCORER_PAIRS).records
               if isinstance(record, PreferenceRecord)]
    prompts = [record.prompt for record in records for _ in range(2)]
    completions = [text for record in records for text in (record.chosen, record.rejected)]
    prompts, completions = prompts[:SCORER_PAIRS], completions[:SCORER_PAIRS]

    _start_ray(1)
    try:
        started = time.perf_counter()
        pool = ScorerPool(JudgeSpec(name="minilm-l6-v2"),
                          ScorerSpec(num_replicas=replicas, batch_size=16, max_length=256))
        pool.score(prompts[: 16 * replicas], completions[: 16 * replicas])  # loads every actor
        ready_s = time.perf_counter() - started
        started = time.perf_counter()
        scores = pool.score(prompts, completions)
        elapsed_s = time.perf_counter() - started
        pool.shutdown()
    finally:
        ray.shutdown()
    return {"replicas": replicas, "pairs": len(scores), "seconds": elapsed_s,
            "pairs_per_s": len(scores) / elapsed_s, "start_s": ready_s}


def _training_rows(results: list[dict[str, Any]]) -> tuple[list[list[str]], dict[str, Any]]:
    summary: dict[str, Any] = {}
    for name in CONTENDERS:
        runs = [run for run in results if run["contender"] == name]
        summary[name] = {key: median([run[key] for run in runs])
                         for key in ("wall_s", "loop_s", "fixed_s")}
    plain = summary["plain"]
    rows = [
        [name, str(CONTENDERS[name][0]), str(CONTENDERS[name][1]), f"{values['wall_s']:.1f}",
         f"{values['loop_s']:.1f}", f"{values['fixed_s']:.1f}",
         f"{values['wall_s'] / plain['wall_s']:.2f}", f"{values['loop_s'] / plain['loop_s']:.2f}"]
        for name, values in summary.items()
    ]
    return rows, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per contender")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each contender")
    parser.add_argument("--contender", choices=[*CONTENDERS, "score_1", "score_2"],
                        help=argparse.SUPPRESS)  # one measurement, run in a child process
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args()

    if args.contender is not None:
        if args.contender.startswith("score_"):
            result = run_scoring(int(args.contender.removeprefix("score_")))
        else:
            result = run_training(args.contender, args.steps)
        print(json.dumps(result))
        return 0

    script = Path(__file__)
    training = []
    for repeat in range(args.repeats):
        order = list(CONTENDERS)
        order = order[repeat % len(order):] + order[: repeat % len(order)]
        for name in order:
            # Every contender starts with the training processes' memory settings, as
            # `cringe train` and the Ray Train workers do.
            arguments = ["--contender", name, "--steps", str(args.steps)]
            training.append(run_child(script, arguments, child_env(training_env=True)))
            print(f"  {name}: {training[-1]['wall_s']:.1f} s wall", file=sys.stderr, flush=True)
    scoring = [run_child(script, ["--contender", f"score_{n}"]) for n in (1, 2)]

    rows, summary = _training_rows(training)
    train_table = markdown_table(
        ["contender", "workers", "threads each", "wall s", "loop s", "fixed s",
         "wall / plain", "loop / plain"], rows)
    score_table = markdown_table(
        ["scorer replicas", "pairs", "pairs/s", "ratio to 1", "start s"],
        [[str(run["replicas"]), str(run["pairs"]), f"{run['pairs_per_s']:.1f}",
          f"{run['pairs_per_s'] / scoring[0]['pairs_per_s']:.2f}", f"{run['start_s']:.1f}"]
         for run in scoring])
    info = machine_info(torch.device("cpu"))
    info["versions"]["ray"] = importlib.metadata.version("ray")
    header = (f"{info['date']}; {info['cpu']}; {args.steps} steps of 4 pairs, max length 256, "
              f"float32; median of {args.repeats} run(s).")
    text = f"{header}\n\n{train_table}\n\n{score_table}\n"
    print(text)
    write_result("ray_scaling", {"machine": info, "steps": args.steps, "training": training,
                                 "summary": summary, "scoring": scoring})
    if args.write_readme:
        replace_readme_block("ray_scaling", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
