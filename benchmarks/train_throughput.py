"""Training throughput and peak memory: TRL's DPOTrainer against our dpo and pairwise_cringe.

Every contender trains SmolLM2-135M-Instruct on the same AlpacaEval judgement pairs with
the same batch size, max length, precision and thread count, for `--warmup-steps` and
then `--steps` timed optimizer steps. Each run is a fresh Python process, so its peak
memory (the process's maximum resident set, or CUDA's peak allocation on a GPU) is its
own. The contenders alternate, and the order rotates every repeat.

Contenders:
  trl_dpo              TRL DPOTrainer, sigmoid loss, live reference model (TRL's default)
  trl_dpo_precomputed  the same with precompute_ref_log_probs=True
  dpo                  our Trainer, loss dpo, reference log-probs precomputed (our default)
  dpo_live             our Trainer, loss dpo, live reference model
  pairwise_cringe      our Trainer, loss pairwise_cringe (no reference)

Ours run through `cringe_core.training.trainer.Trainer` (step time as it logs it, which
covers collation and the optimizer step). TRL's step time is the time between the ends
of consecutive steps, which also covers its data loading and bookkeeping. The one-off
costs are reported apart: our reference precompute, and the construction of TRL's
trainer (tokenization, plus its reference precompute when on).

Our runs start with the environment our training processes get
(`cringe_core.process_env`: huge pages for large CPU tensors, and freed memory kept in
glibc's heap). TRL's runs start without it, as TRL is installed, unless
--trl-training-env gives it to them too.

Run from the repository root:
    .venv/bin/python benchmarks/train_throughput.py --write-readme
Prints a table and writes benchmarks/results/train_throughput.json. MFU uses
6 x parameters x tokens per step (plus 2 x parameters x tokens for a live reference)
over a square matmul's FLOP/s measured at the start of the same run.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
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
    count_parameters,
    load_pairs,
    machine_info,
    markdown_table,
    matmul_peak_flops,
    median,
    pair_tokens,
    replace_readme_block,
    run_child,
    uptime_line,
    write_result,
)

CONTENDERS = ("trl_dpo", "trl_dpo_precomputed", "dpo", "dpo_live", "pairwise_cringe")
DEFAULT_CONTENDERS = "trl_dpo,trl_dpo_precomputed,dpo,pairwise_cringe"
LIVE_REFERENCE = {"trl_dpo", "dpo_live"}
BASELINE = "trl_dpo"
LEARNING_RATE = 5e-6
BETA = 0.1
MAX_GRAD_NORM = 1.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=40, help="Data rows read (valid pairs kept).")
    parser.add_argument("--batch-size", type=int, default=2, help="Pairs per optimizer step.")
    parser.add_argument("--max-length", type=int, default=256, help="Tokens per sequence.")
    parser.add_argument("--warmup-steps", type=int, default=3, help="Untimed steps first.")
    parser.add_argument("--steps", type=int, default=5, help="Timed steps per run.")
    parser.add_argument("--repeats", type=int, default=2, help="Runs of every contender.")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads value.")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--contenders", default=DEFAULT_CONTENDERS, help=f"Comma list from {CONTENDERS}."
    )
    parser.add_argument(
        "--trl-training-env",
        action="store_true",
        help="Give TRL's runs the environment our training processes start with.",
    )
    parser.add_argument("--result-name", default="train_throughput", help="Results file stem.")
    parser.add_argument("--write-readme", action="store_true", help="Update benchmarks/README.md.")
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = set(args.contenders.split(",")) - set(CONTENDERS)
    if unknown:
        parser.error(f"--contenders has unknown names {sorted(unknown)}; use {CONTENDERS}")
    return args


def check_enough_pairs(args: argparse.Namespace, num_pairs: int) -> None:
    """Reject runs longer than one epoch, where TRL's last batch could be short."""
    needed = (args.warmup_steps + args.steps) * args.batch_size
    if num_pairs < needed:
        raise SystemExit(
            f"the first {args.rows} rows of {ANNOTATIONS.name} give {num_pairs} valid pairs, "
            f"but {needed} are needed for (--warmup-steps + --steps) x --batch-size; "
            "raise --rows or lower the steps"
        )


# ---- one contender, in its own process ---------------------------------------------------


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_ours(args: argparse.Namespace, device: torch.device, workdir: Path) -> dict[str, Any]:
    """Train with our Trainer and read the step times it logged."""
    from cringe_core.models.loading import load_policy, load_tokenizer
    from cringe_core.spec import ModelSpec, TrainJobSpec
    from cringe_core.training import reference
    from cringe_core.training.data_order import DataOrder
    from cringe_core.training.trainer import Trainer

    loss: dict[str, Any] = {"name": "pairwise_cringe"}
    if args.child in ("dpo", "dpo_live"):
        loss = {
            "name": "dpo",
            "beta": BETA,
            "reference": "live" if args.child == "dpo_live" else "precomputed",
        }
    total_steps = args.warmup_steps + args.steps
    spec = TrainJobSpec.model_validate(
        {
            "dataset": {
                "path": str(ANNOTATIONS),
                "max_rows": args.rows,
                "max_invalid_fraction": MAX_INVALID_FRACTION,
            },
            "loss": loss,
            "training": {
                "max_steps": total_steps,
                "batch_size": args.batch_size,
                "micro_batch_size": args.batch_size,
                "learning_rate": LEARNING_RATE,
                "max_grad_norm": MAX_GRAD_NORM,
                "max_length": args.max_length,
                "precision": args.precision,
                "log_every_steps": 1,
            },
        }
    )
    tokenizer = load_tokenizer(MODEL_ALIAS)
    pairs, _ = load_pairs(tokenizer, args.rows, args.max_length)
    check_enough_pairs(args, len(pairs))

    # The reference precompute is a one-off cost and is timed apart. The trainer then finds
    # the file written here, as a resumed run finds its cached log-probs.
    precompute_s = None
    if args.child == "dpo":
        policy = load_policy(ModelSpec(name=MODEL_ALIAS), device)
        started = time.perf_counter()
        reference.load_or_compute(
            workdir / "reference_logps.pt",
            lambda: reference.precompute_reference_logps(
                policy, pairs, tokenizer.pad_token_id, args.batch_size, args.precision, device
            ),
            len(pairs),
        )
        precompute_s = time.perf_counter() - started
        del policy
        gc.collect()

    # Peak memory is read at the end of the last step, before the trainer saves its
    # checkpoint and final model, which TRL is configured not to do.
    peak: dict[str, int] = {}

    def record_peak(step: int) -> bool:
        if step == total_steps:
            peak["bytes"] = peak_memory_bytes(device)
        return False

    trainer = Trainer(spec, workdir, device=device, show_progress=False)
    trainer.run(should_stop=record_peak)
    logged = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    step_times_s = [entry["metrics"]["step_time_s"] for entry in logged][args.warmup_steps :]

    order = DataOrder(len(pairs), spec.seed)
    step_rows = [order.take(args.batch_size) for _ in range(total_steps)][args.warmup_steps :]
    head = trainer.model.get_output_embeddings()
    return {
        "step_times_s": step_times_s,
        "tokens": sum(pair_tokens(pairs[i]) for rows in step_rows for i in rows),
        # Our LM head runs only at completion tokens; mfu.py counts the work done with these.
        "completion_tokens": sum(
            len(pairs[i].chosen_ids) + len(pairs[i].rejected_ids)
            for rows in step_rows
            for i in rows
        ),
        "head_parameters": head.weight.numel(),
        "setup_s": precompute_s,
        "parameters": count_parameters(trainer.model),
        "pairs_available": len(pairs),
        "peak_memory_bytes": peak["bytes"],
    }


def run_trl(args: argparse.Namespace, device: torch.device, workdir: Path) -> dict[str, Any]:
    """Train with TRL's DPOTrainer and time the gaps between its step ends."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from cringe_core.models.loading import load_tokenizer, resolve_model_path

    tokenizer = load_tokenizer(MODEL_ALIAS)
    pairs, records = load_pairs(tokenizer, args.rows, args.max_length)
    check_enough_pairs(args, len(pairs))
    dataset = Dataset.from_list(
        [
            {
                "prompt": [dict(message) for message in record.prompt],
                "chosen": [{"role": "assistant", "content": record.chosen}],
                "rejected": [{"role": "assistant", "content": record.rejected}],
            }
            for record in records
        ]
    )
    model: Any = AutoModelForCausalLM.from_pretrained(
        resolve_model_path(MODEL_ALIAS), dtype=torch.float32
    )
    model.to(device)

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.ends_s: list[float] = []
            self.peak_memory_bytes = 0

        def on_step_end(self, *_: Any, **__: Any) -> None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            self.ends_s.append(time.perf_counter())
            self.peak_memory_bytes = peak_memory_bytes(device)

    total_steps = args.warmup_steps + args.steps
    config = DPOConfig(
        output_dir=str(workdir),
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=1,
        max_steps=total_steps,
        learning_rate=LEARNING_RATE,
        max_grad_norm=MAX_GRAD_NORM,
        weight_decay=0.0,
        optim="adamw_torch",
        beta=BETA,
        max_length=args.max_length,
        precompute_ref_log_probs=args.child == "trl_dpo_precomputed",
        train_sampling_strategy="sequential",
        bf16=args.precision == "bfloat16",
        use_cpu=device.type == "cpu",
        logging_strategy="no",
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    clock = StepClock()
    started = time.perf_counter()
    trainer = DPOTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[clock],
    )
    setup_s = time.perf_counter() - started
    trainer.train()

    ends = clock.ends_s
    step_times_s = [ends[i] - ends[i - 1] for i in range(args.warmup_steps, total_steps)]
    # The sampler is sequential, so step k trains rows [k*B, (k+1)*B); the collator cuts
    # each sequence at max_length.
    rows: Any = trainer.train_dataset
    measured = range(args.warmup_steps * args.batch_size, total_steps * args.batch_size)
    tokens = 0
    for index in measured:
        prompt = len(rows[index]["prompt_ids"])
        for side in ("chosen_ids", "rejected_ids"):
            tokens += min(prompt + len(rows[index][side]), args.max_length)
    return {
        "step_times_s": step_times_s,
        "tokens": tokens,
        "setup_s": setup_s,
        "parameters": count_parameters(model),
        "pairs_available": len(pairs),
        "peak_memory_bytes": clock.peak_memory_bytes,
    }


def child_main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory(prefix=f"bench-{args.child}-") as folder:
        runner = run_trl if args.child.startswith("trl") else run_ours
        result = runner(args, device, Path(folder))
    print(json.dumps(result))


# ---- the side-by-side run ----------------------------------------------------------------


def child_arguments(args: argparse.Namespace, contender: str) -> list[str]:
    return [
        "--child", contender,
        "--rows", str(args.rows),
        "--batch-size", str(args.batch_size),
        "--max-length", str(args.max_length),
        "--warmup-steps", str(args.warmup_steps),
        "--steps", str(args.steps),
        "--threads", str(args.threads),
        "--precision", args.precision,
        "--device", args.device,
    ]  # fmt: skip


def summarize(
    contender: str, runs: list[dict[str, Any]], args: argparse.Namespace, peak_flops: float
) -> dict[str, Any]:
    """Median throughput over the repeats, and the highest peak memory seen."""
    pairs_per_s = [
        args.batch_size * len(run["step_times_s"]) / sum(run["step_times_s"]) for run in runs
    ]
    tokens_per_s = [run["tokens"] / sum(run["step_times_s"]) for run in runs]
    flops_per_token = 6 + (2 if contender in LIVE_REFERENCE else 0)
    parameters = runs[0]["parameters"]
    setups = [run["setup_s"] for run in runs if run["setup_s"] is not None]
    return {
        "pairs_per_s": median(pairs_per_s),
        "pairs_per_s_runs": pairs_per_s,
        "tokens_per_s": median(tokens_per_s),
        "peak_memory_bytes": max(run["peak_memory_bytes"] for run in runs),
        "setup_s": median(setups) if setups else None,
        "mfu": flops_per_token * parameters * median(tokens_per_s) / peak_flops,
        "parameters": parameters,
        "runs": runs,
    }


def format_table(summary: dict[str, dict[str, Any]], memory_label: str) -> str:
    baseline = summary.get(BASELINE)
    rows = []
    for name, result in summary.items():
        ratio = "n/a"
        memory_ratio = "n/a"
        if baseline is not None:
            ratio = f"{result['pairs_per_s'] / baseline['pairs_per_s']:.2f}x"
            memory_ratio = f"{result['peak_memory_bytes'] / baseline['peak_memory_bytes']:.2f}x"
        setup = "" if result["setup_s"] is None else f"{result['setup_s']:.1f}"
        rows.append(
            [
                name,
                f"{result['pairs_per_s']:.3f}",
                f"{result['tokens_per_s']:.0f}",
                ratio,
                f"{result['peak_memory_bytes'] / 2**20:.0f}",
                memory_ratio,
                f"{100 * result['mfu']:.1f}%",
                setup,
            ]
        )
    headers = [
        "contender", "pairs/s", "tokens/s", f"pairs/s vs {BASELINE}",
        f"peak {memory_label} MiB", "memory vs trl_dpo", "MFU", "one-off s",
    ]  # fmt: skip
    return markdown_table(headers, rows)


def main() -> None:
    args = parse_args()
    if args.child:
        child_main(args)
        return

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    info = machine_info(device)
    dtype = torch.bfloat16 if args.precision == "bfloat16" else torch.float32
    peak_before = matmul_peak_flops(dtype, device)
    contenders = args.contenders.split(",")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}

    script = Path(__file__).resolve()
    for repeat in range(args.repeats):
        shift = repeat % len(contenders)
        for name in contenders[shift:] + contenders[:shift]:
            print(f"repeat {repeat + 1}/{args.repeats}: {name}", flush=True)
            with_env = not name.startswith("trl") or args.trl_training_env
            result = run_child(script, child_arguments(args, name), child_env(with_env))
            result["training_env"] = with_env
            runs[name].append(result)

    info["uptime_end"] = uptime_line()
    # Other load on the machine lowers a measured peak, so the higher of two is kept.
    peak_flops = max(peak_before, matmul_peak_flops(dtype, device))
    summary = {name: summarize(name, runs[name], args, peak_flops) for name in contenders}
    memory_label = "CUDA allocated" if device.type == "cuda" else "RSS"
    table = format_table(summary, memory_label)
    settings = {
        key: value for key, value in vars(args).items() if key not in ("child", "write_readme")
    }
    payload = {
        "machine": info,
        "settings": settings,
        "matmul_peak_flops": peak_flops,
        "contenders": summary,
    }
    path = write_result(args.result_name, payload)
    print(table)
    print(f"matmul peak {peak_flops / 1e9:.1f} GFLOP/s ({args.precision}); results in {path}")
    if args.write_readme:
        replace_readme_block(args.result_name, describe_run(info, args, peak_flops, table))


def describe_run(
    info: dict[str, Any], args: argparse.Namespace, peak_flops: float, table: str
) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in info["versions"].items())
    hardware = info.get("gpu") or f"{info['cpu']}, {info['cpu_count']} cores"
    return (
        f"{info['date']}; {hardware}; {args.threads} threads; {versions}.\n"
        f"{args.batch_size} pairs per step, max length {args.max_length}, {args.precision}, "
        f"{args.warmup_steps} warm-up + {args.steps} timed steps, {args.repeats} runs each "
        f"(median). Matmul peak {peak_flops / 1e9:.1f} GFLOP/s. Training processes' "
        f"environment (huge pages, freed memory kept): ours on, "
        f"TRL {'on' if args.trl_training_env else 'off'}.\n"
        f"Load at start: `{info['uptime_start']}`; at end: `{info['uptime_end']}`.\n\n{table}\n"
    )


if __name__ == "__main__":
    main()
