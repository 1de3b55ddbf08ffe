"""Model FLOPs utilization of our training step, in float32 and in bfloat16.

Achieved FLOP/s is 6 x parameters x trained tokens per second (forward and backward;
a live reference model adds 2 x parameters x tokens), counting non-padding tokens and
leaving out attention's own FLOPs. It is divided by the FLOP/s of a square matmul in
the same dtype, measured in this run before and after the training runs (the higher of
the two is kept, because other load on the machine can only lower it).

Our training step runs the LM head only at completion tokens, so the 6 x parameters
count overstates the work it does at prompt tokens. The table also gives the MFU of the
work done: 6 x (parameters - head parameters) per token plus 6 x head parameters per
completion token.

Training runs are the child processes of train_throughput.py, with the environment our
training processes start with; the two precisions alternate, the order rotating every
repeat.

Run from the repository root:
    .venv/bin/python benchmarks/mfu.py --write-readme
Prints a table and writes benchmarks/results/mfu.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from common import (
    child_env,
    machine_info,
    markdown_table,
    matmul_peak_flops,
    median,
    replace_readme_block,
    run_child,
    uptime_line,
    write_result,
)
from train_throughput import LIVE_REFERENCE, child_arguments

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}
GOAL_FLOAT32 = 0.60


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--loss", choices=("pairwise_cringe", "dpo", "dpo_live"), default="pairwise_cringe"
    )
    parser.add_argument("--rows", type=int, default=40, help="Data rows read (valid pairs kept).")
    parser.add_argument("--batch-size", type=int, default=2, help="Pairs per optimizer step.")
    parser.add_argument("--max-length", type=int, default=256, help="Tokens per sequence.")
    parser.add_argument("--warmup-steps", type=int, default=2, help="Untimed steps first.")
    parser.add_argument("--steps", type=int, default=4, help="Timed steps per run.")
    # On a shared machine one run's MFU moved by 5 points from hour to hour, so the table
    # gives the median of several runs and their range.
    parser.add_argument("--repeats", type=int, default=3, help="Runs of every precision.")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads value.")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--matmul-size", type=int, default=2048, help="Side of the square matmul.")
    parser.add_argument("--result-name", default="mfu", help="Results file stem.")
    parser.add_argument("--write-readme", action="store_true", help="Update benchmarks/README.md.")
    return parser.parse_args()


def measure_peaks(device: torch.device, size: int) -> dict[str, float]:
    return {name: matmul_peak_flops(dtype, device, size=size) for name, dtype in PRECISIONS.items()}


def work_done_flops(run: dict[str, Any], flops_per_token: int) -> float:
    """FLOP/s of the work the step does, with the LM head only at completion tokens.

    A live reference model also runs its head only at completion tokens.
    """
    body = run["parameters"] - run["head_parameters"]
    work = body * run["tokens"] + run["head_parameters"] * run["completion_tokens"]
    return float(flops_per_token * work) / sum(run["step_times_s"])


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    info = machine_info(device)
    peaks_before = measure_peaks(device, args.matmul_size)

    script = Path(__file__).resolve().parent / "train_throughput.py"
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in PRECISIONS}
    names = list(PRECISIONS)
    for repeat in range(args.repeats):
        order = names if repeat % 2 == 0 else names[::-1]
        for precision in order:
            print(f"repeat {repeat + 1}/{args.repeats}: {precision}", flush=True)
            child = argparse.Namespace(**vars(args), precision=precision)
            arguments = child_arguments(child, args.loss)
            runs[precision].append(run_child(script, arguments, child_env(training_env=True)))

    peaks_after = measure_peaks(device, args.matmul_size)
    peaks = {name: max(peaks_before[name], peaks_after[name]) for name in PRECISIONS}
    info["uptime_end"] = uptime_line()
    flops_per_token = 6 + (2 if args.loss in LIVE_REFERENCE else 0)

    summary: dict[str, dict[str, Any]] = {}
    rows = []
    for precision, precision_runs in runs.items():
        run_tokens_per_s = [run["tokens"] / sum(run["step_times_s"]) for run in precision_runs]
        tokens_per_s = median(run_tokens_per_s)
        flops_per_trained_token = flops_per_token * precision_runs[0]["parameters"]
        achieved = flops_per_trained_token * tokens_per_s
        mfu = achieved / peaks[precision]
        run_mfus = [flops_per_trained_token * rate / peaks[precision] for rate in run_tokens_per_s]
        done_flops_per_s = median([work_done_flops(run, flops_per_token) for run in precision_runs])
        summary[precision] = {
            "tokens_per_s": tokens_per_s,
            "achieved_flops": achieved,
            "matmul_peak_flops": peaks[precision],
            "matmul_peak_before_after": [peaks_before[precision], peaks_after[precision]],
            "mfu": mfu,
            "mfu_of_each_run": run_mfus,
            "work_done_flops": done_flops_per_s,
            "work_done_mfu": done_flops_per_s / peaks[precision],
            "runs": precision_runs,
        }
        goal = (
            f"{'met' if mfu >= GOAL_FLOAT32 else 'not met'} (60%)" if precision == "float32" else ""
        )
        rows.append([
            precision,
            f"{tokens_per_s:.0f}",
            f"{achieved / 1e9:.1f}",
            f"{peaks[precision] / 1e9:.1f}",
            f"{100 * mfu:.1f}%",
            f"{100 * min(run_mfus):.1f} to {100 * max(run_mfus):.1f}%",
            goal,
            f"{100 * done_flops_per_s / peaks[precision]:.1f}%",
        ])  # fmt: skip

    headers = [
        "precision", "tokens/s", "achieved GFLOP/s", "matmul peak GFLOP/s", "MFU",
        "MFU of each run", "goal",
        "MFU of work done",
    ]  # fmt: skip
    table = markdown_table(headers, rows)
    settings = {key: value for key, value in vars(args).items() if key != "write_readme"}
    path = write_result(
        args.result_name, {"machine": info, "settings": settings, "precisions": summary}
    )
    print(table)
    print(f"results in {path}")
    if args.write_readme:
        versions = ", ".join(f"{name} {version}" for name, version in info["versions"].items())
        hardware = info.get("gpu") or f"{info['cpu']}, {info['cpu_count']} cores"
        text = (
            f"{info['date']}; {hardware}; {args.threads} threads; {versions}.\n"
            f"Loss {args.loss}, {args.batch_size} pairs per step, max length {args.max_length}, "
            f"{args.warmup_steps} warm-up + {args.steps} timed steps, {args.repeats} run(s) per "
            f"precision (MFU and tokens/s are their median); matmul {args.matmul_size} x "
            f"{args.matmul_size}.\n"
            f"Load at start: `{info['uptime_start']}`; at end: `{info['uptime_end']}`.\n\n{table}\n"
        )
        replace_readme_block(args.result_name, text)


if __name__ == "__main__":
    main()
