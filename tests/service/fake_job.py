"""A stand-in for `cringe train SPEC --output-dir DIR [--resume]`, for executor tests.

Writes the same files as the real command: status.json, metrics.jsonl (one line per
step), a resumable checkpoint every `--checkpoint-every` steps, and model/ at the end.
`--exit-code 2` imitates rejected data, `--exit-code 1` a crash with a traceback.
Each start appends a line to `--runs-log`, so a test can count how often it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml


def write_status(output_dir: Path, state: str, step: int, max_steps: int) -> None:
    staging = output_dir / "status.json.tmp"
    staging.write_text(json.dumps({"state": state, "step": step, "max_steps": max_steps}))
    os.replace(staging, output_dir / "status.json")


def latest_checkpoint_step(output_dir: Path) -> int:
    root = output_dir / "checkpoints"
    steps = [int(p.name[5:]) for p in root.glob("step-*") if (p / "trainer_state.json").exists()]
    return max(steps, default=0)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("spec")
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds per step")
    parser.add_argument("--checkpoint-every", type=int, default=2)
    parser.add_argument("--exit-code", type=int, default=0)
    parser.add_argument("--runs-log", type=Path)
    args = parser.parse_args()

    spec = yaml.safe_load(Path(args.spec).read_text())
    output_dir: Path = args.output_dir
    if args.runs_log:
        with args.runs_log.open("a") as log:
            log.write(f"{os.getpid()} resume={args.resume} kind={spec['kind']}\n")
    write_status(output_dir, "validating", 0, args.steps)
    if args.exit_code == 2:
        print("error: data set pairs.jsonl has 2 invalid rows of 5:", file=sys.stderr)
        print("  row 3: missing field 'rejected'", file=sys.stderr)
        print("  row 7: chosen and rejected are identical", file=sys.stderr)
        return 2
    if args.exit_code == 1:
        print("Traceback (most recent call last):", file=sys.stderr)
        print('  File "trainer.py", line 1, in run', file=sys.stderr)
        print("RuntimeError: CUDA out of memory", file=sys.stderr)
        return 1

    start = latest_checkpoint_step(output_dir) if args.resume else 0
    metrics_path = output_dir / "metrics.jsonl"
    if metrics_path.exists():  # like the real trainer: drop lines past the checkpoint
        kept = [line for line in metrics_path.read_text().splitlines()
                if line and json.loads(line)["step"] <= start]
        metrics_path.write_text("".join(line + "\n" for line in kept))
    write_status(output_dir, "running", start, args.steps)
    for step in range(start + 1, args.steps + 1):
        time.sleep(args.delay)
        record = {"step": step, "metrics": {"loss": 1.0 / step, "accuracy": step / args.steps},
                  "time": datetime.now(UTC).isoformat()}
        with metrics_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if step % args.checkpoint_every == 0:
            folder = output_dir / "checkpoints" / f"step-{step:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "trainer_state.json").write_text(json.dumps({"step": step}))
            write_status(output_dir, "running", step, args.steps)
    (output_dir / "model").mkdir(exist_ok=True)
    (output_dir / "model" / "weights.bin").write_bytes(b"\0" * 128)
    write_status(output_dir, "succeeded", args.steps, args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
