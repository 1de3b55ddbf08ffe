"""Helpers shared by the side-by-side benchmarks: data, machine facts, matmul peak, output.

The benchmarks run from the repository root, read their data from ../shared/data and
write JSON results to benchmarks/results/. Nothing here asserts on a time.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from cringe_core.data.check import prepare_dataset
from cringe_core.data.readers import read_records
from cringe_core.data.records import PreferenceRecord, TokenizedPair
from cringe_core.process_env import TRAINING_ENV
from cringe_core.spec import DatasetSpec

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT.parent / "shared" / "data"
ANNOTATIONS = DATA / "alpaca-eval-annotations" / "FuseChat-Llama-3.2-3B-Instruct.json.gz"
RESULTS = REPO_ROOT / "benchmarks" / "results"
README = REPO_ROOT / "benchmarks" / "README.md"
MODEL_ALIAS = "smollm2-135m-instruct"
# A few judgement rows have prompts longer than a short max_length; they are dropped.
MAX_INVALID_FRACTION = 0.05


# ---- data ------------------------------------------------------------------------------


def load_pairs(
    tokenizer: Any, rows: int, max_length: int, path: Path = ANNOTATIONS
) -> tuple[list[TokenizedPair], list[PreferenceRecord]]:
    """Return the valid pairs among the first `rows` rows, tokenized, and their records.

    These are the rows our Trainer trains on with the same `max_rows` and
    `MAX_INVALID_FRACTION`. The reader skips rows without a preference, and the check drops
    rows whose prompt alone fills `max_length`. The records let another trainer tokenize
    the same pairs its own way.
    """
    spec = DatasetSpec(path=str(path), max_rows=rows, max_invalid_fraction=MAX_INVALID_FRACTION)
    tokenized, _ = prepare_dataset(spec, tokenizer, max_length)
    pairs = [row for row in tokenized if isinstance(row, TokenizedPair)]
    by_row = {
        record.row: record
        for record in read_records(path, max_rows=rows).records
        if isinstance(record, PreferenceRecord)
    }
    return pairs, [by_row[pair.row] for pair in pairs]


def pair_tokens(pair: TokenizedPair) -> int:
    """Count the non-padding tokens of one pair's two rows (prompt + chosen, prompt + rejected)."""
    return 2 * len(pair.prompt_ids) + len(pair.chosen_ids) + len(pair.rejected_ids)


# ---- machine ---------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return platform.processor() or "unknown CPU"
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else "unknown CPU"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def uptime_line() -> str:
    """Return `uptime`'s output, or the load averages where the command is missing."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{value:.2f}" for value in os.getloadavg())


def machine_info(device: torch.device) -> dict[str, Any]:
    """Describe where and with what the benchmark ran, for the results and the README."""
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "versions": {
            name: _version(name) for name in ("torch", "transformers", "trl", "accelerate")
        },
        "uptime_start": uptime_line(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# ---- FLOPs -----------------------------------------------------------------------------


def matmul_peak_flops(
    dtype: torch.dtype, device: torch.device, size: int = 2048, seconds: float = 3.0
) -> float:
    """Measure the best FLOP/s of a square matmul of `size` in `dtype` over about `seconds`.

    The best of many timed calls, not the mean, approximates what the matrix units can
    do when nothing else interrupts them; a noisy machine still lowers it.
    """
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    flops = 2.0 * size**3
    for _ in range(2):
        torch.matmul(a, b)
    synchronize(device)

    best_s = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        torch.matmul(a, b)
        synchronize(device)
        best_s = min(best_s, time.perf_counter() - started)
    return flops / best_s


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_parameters(model: torch.nn.Module) -> int:
    """Count parameters once each, so a tied embedding and LM head count as one matrix."""
    return sum(parameter.numel() for parameter in model.parameters())


# ---- subprocesses and output -----------------------------------------------------------


def run_child(
    script: Path, arguments: Sequence[str], env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Run `script` in a fresh Python process and return the JSON object it prints last.

    A separate process per measurement keeps one contender's peak memory out of the next.
    `env` replaces the child's whole environment when given.
    """
    completed = subprocess.run(
        [sys.executable, str(script), *arguments],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=None if env is None else dict(env),
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"{script.name} {' '.join(arguments)} failed with exit code "
            f"{completed.returncode}:\n{completed.stderr[-4000:]}"
        )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{script.name} printed no JSON result:\n{completed.stdout[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def child_env(training_env: bool) -> dict[str, str]:
    """This process's environment, with the training processes' variables on or off.

    Our training processes start with `cringe_core.process_env.TRAINING_ENV` (huge pages
    for large CPU tensors, and freed memory kept in the heap). A contender runs with them
    only when `training_env` is true, so a variable set in the shell cannot reach one
    contender and not the other unnoticed.
    """
    env = {name: value for name, value in os.environ.items() if name not in TRAINING_ENV}
    if training_env:
        env.update(TRAINING_ENV)
    return env


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Format rows as a Markdown table; the first column is left aligned, the rest right."""
    align = ["---"] + ["---:"] * (len(headers) - 1)
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_result(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path


def replace_readme_block(marker: str, text: str) -> None:
    """Put `text` between `<!-- marker:start -->` and `<!-- marker:end -->` in the README.

    Raises ValueError when the markers are missing, so a run never appends a second copy.
    """
    content = README.read_text(encoding="utf-8")
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    if start not in content or end not in content:
        raise ValueError(f"{README} has no {start} ... {end} block; add the two markers first")
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    README.write_text(f"{head}{start}\n{text.strip()}\n{end}{tail}", encoding="utf-8")


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2
