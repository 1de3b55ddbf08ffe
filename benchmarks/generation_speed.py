"""Sampling speed of the iterate phase: batched with a KV cache, against one row at a time.

Both modes call `cringe_core.generation.generate_completions` with the iterate phase's
settings (4 samples per prompt, temperature 1, top-p 1) on AlpacaEval instructions.
"batched" passes all prompts at once with `--batch-size` rows per `generate` call;
"one at a time" calls it once per (prompt, sample) row with batch size 1. Every row gets
the same seed in both modes, so both produce the same tokens (up to float rounding) and
tokens/s compares equal work. Both use the KV cache; the batched mode also spends time
on rows that stopped early while others in the batch still run.

Run from the repository root:
    .venv/bin/python benchmarks/generation_speed.py --write-readme
Prints a table and writes benchmarks/results/generation_speed.json.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from common import (
    MODEL_ALIAS,
    load_pairs,
    machine_info,
    markdown_table,
    median,
    replace_readme_block,
    synchronize,
    uptime_line,
    write_result,
)

from cringe_core.data.records import Message
from cringe_core.generation import generate_completions, sample_seed
from cringe_core.models.loading import load_policy, load_tokenizer
from cringe_core.spec import GenerationSpec, ModelSpec

GOAL_SPEEDUP = 3.0
SEED = 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=8, help="Instructions sampled for.")
    parser.add_argument("--samples", type=int, default=4, help="Samples per prompt.")
    parser.add_argument("--batch-size", type=int, default=8, help="Rows per batched call.")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="Tokens per sample at most.")
    parser.add_argument("--repeats", type=int, default=2, help="Runs of each mode.")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads value.")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--result-name", default="generation_speed", help="Results file stem.")
    parser.add_argument("--write-readme", action="store_true", help="Update benchmarks/README.md.")
    return parser.parse_args()


def settings_for(args: argparse.Namespace, batch_size: int) -> GenerationSpec:
    return GenerationSpec(
        max_new_tokens=args.max_new_tokens,
        do_sample=True,
        temperature=1.0,
        top_p=1.0,
        batch_size=batch_size,
    )


def run_batched(
    model: Any, tokenizer: Any, prompts: list[list[Message]], args: argparse.Namespace
) -> list[int]:
    completions = generate_completions(
        model,
        tokenizer,
        prompts,
        settings_for(args, args.batch_size),
        samples_per_prompt=args.samples,
        seed=SEED,
        precision=args.precision,
    )
    return [completion.num_tokens for completion in completions]


def run_one_at_a_time(
    model: Any, tokenizer: Any, prompts: list[list[Message]], args: argparse.Namespace
) -> list[int]:
    counts = []
    for prompt_index, prompt in enumerate(prompts):
        for sample_index in range(args.samples):
            # The batched run's seed for this row, so both modes draw the same tokens.
            completions = generate_completions(
                model,
                tokenizer,
                [prompt],
                settings_for(args, 1),
                seeds=[sample_seed(SEED, prompt_index, sample_index)],
                precision=args.precision,
            )
            counts.append(completions[0].num_tokens)
    return counts


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    info = machine_info(device)

    tokenizer = load_tokenizer(MODEL_ALIAS)
    # Judgement rows repeat no instruction; a few are ties, so more rows are read.
    _, records = load_pairs(tokenizer, 4 * args.prompts, max_length=1024)
    prompts = [list(record.prompt) for record in records[: args.prompts]]
    model = load_policy(ModelSpec(name=MODEL_ALIAS), device)
    model.eval()

    # One short untimed call loads kernels and allocator pools for both modes.
    generate_completions(model, tokenizer, prompts[:1], settings_for(args, 1), seeds=[1])

    modes = {"batched": run_batched, "one at a time": run_one_at_a_time}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in modes}
    names = list(modes)
    for repeat in range(args.repeats):
        order = names if repeat % 2 == 0 else names[::-1]
        for name in order:
            print(f"repeat {repeat + 1}/{args.repeats}: {name}", flush=True)
            synchronize(device)
            started = time.perf_counter()
            counts = modes[name](model, tokenizer, prompts, args)
            synchronize(device)
            elapsed_s = time.perf_counter() - started
            runs[name].append({"tokens": sum(counts), "seconds": elapsed_s})

    info["uptime_end"] = uptime_line()
    tokens_per_s = {
        name: median([run["tokens"] / run["seconds"] for run in mode_runs])
        for name, mode_runs in runs.items()
    }
    speedup = tokens_per_s["batched"] / tokens_per_s["one at a time"]
    rows = [
        [name, f"{int(median([r['tokens'] for r in runs[name]]))}", f"{tokens_per_s[name]:.1f}"]
        for name in names
    ]
    table = markdown_table(["mode", "tokens", "tokens/s"], rows)
    verdict = "met" if speedup >= GOAL_SPEEDUP else "not met"
    summary = f"Batched / one at a time: {speedup:.2f}x (goal {GOAL_SPEEDUP:.0f}x: {verdict})."
    settings = {key: value for key, value in vars(args).items() if key != "write_readme"}
    payload = {"machine": info, "settings": settings, "runs": runs, "speedup": speedup}
    path = write_result(args.result_name, payload)
    print(table)
    print(summary)
    print(f"results in {path}")
    if args.write_readme:
        versions = ", ".join(f"{name} {version}" for name, version in info["versions"].items())
        hardware = info.get("gpu") or f"{info['cpu']}, {info['cpu_count']} cores"
        text = (
            f"{info['date']}; {hardware}; {args.threads} threads; {versions}.\n"
            f"{args.prompts} prompts x {args.samples} samples, at most {args.max_new_tokens} new "
            f"tokens, batch size {args.batch_size}, {args.precision}, {args.repeats} runs per "
            f"mode (median).\n"
            f"Load at start: `{info['uptime_start']}`; at end: `{info['uptime_end']}`.\n\n"
            f"{table}\n\n{summary}\n"
        )
        replace_readme_block(args.result_name, text)


if __name__ == "__main__":
    main()
