"""Data-parallel training on Ray Train: splitting the batch over workers changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cringe_core.spec import TrainJobSpec, parse_spec
from cringe_core.training.trainer import Trainer
from tests.conftest import ALPACA_EVAL
from workers.ray_train import PARALLEL_CHECK_FILE, fit_train_job

LEARNING_RATE = 1e-2


def _spec(model: Path, num_workers: int) -> TrainJobSpec:
    spec = parse_spec(
        {
            "model": {"name": str(model)},
            "dataset": {
                "path": str(ALPACA_EVAL / "FuseChat-Llama-3.2-3B-Instruct.json.gz"),
                "max_rows": 24,
                "max_invalid_fraction": 0.9,
            },
            "loss": {"name": "dpo"},
            "training": {
                "max_steps": 1,
                "batch_size": 4,
                "micro_batch_size": 1,
                "learning_rate": LEARNING_RATE,
                "max_length": 96,
            },
            "scaling": {"num_workers": num_workers},
            "seed": 3,
        }
    )
    assert isinstance(spec, TrainJobSpec)
    return spec


@pytest.fixture(scope="module")
def one_and_two_workers(
    ray_cluster: None, tiny_policy_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[int, Path]:
    # One worker is the plain in-process trainer: a one-worker Ray Train run executes the
    # same code at world size 1 and would only add Ray's start-up time to the suite.
    one = tmp_path_factory.mktemp("workers-1")
    Trainer(_spec(tiny_policy_path, 1), one, device=torch.device("cpu")).run()
    two = tmp_path_factory.mktemp("workers-2")
    fit_train_job(_spec(tiny_policy_path, 2), two)
    return {1: one, 2: two}


def test_two_workers_equal_one(one_and_two_workers: dict[int, Path]) -> None:
    one = load_file(one_and_two_workers[1] / "model" / "model.safetensors")
    two = load_file(one_and_two_workers[2] / "model" / "model.safetensors")
    assert one.keys() == two.keys()
    # Adam's first step moves each weight by about the learning rate times the sign of its
    # gradient. A weight whose gradient is near Adam's epsilon (1e-8) turns the rounding
    # differences of summing over two ranks into moves of a few 1e-6 (5.9e-6 seen on one
    # CPU). The tolerance is a thousandth of the learning rate, far below a real step.
    atol = 1e-3 * LEARNING_RATE
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=atol, msg=name)


def test_step_changed_parameters(
    one_and_two_workers: dict[int, Path], tiny_policy_path: Path
) -> None:
    before = load_file(tiny_policy_path / "model.safetensors")
    after = load_file(one_and_two_workers[2] / "model" / "model.safetensors")
    moved = max(float((after[name] - before[name]).abs().max()) for name in before)
    assert moved > 1e-4


def test_ranks_hold_same_parameters(one_and_two_workers: dict[int, Path]) -> None:
    check = json.loads((one_and_two_workers[2] / PARALLEL_CHECK_FILE).read_text())
    assert len(check["parameter_digests"]) == 2
    assert len(set(check["parameter_digests"])) == 1


def test_metrics_match(one_and_two_workers: dict[int, Path]) -> None:
    lines = {
        n: json.loads((one_and_two_workers[n] / "metrics.jsonl").read_text().splitlines()[-1])
        for n in (1, 2)
    }
    lines = {n: line["metrics"] for n, line in lines.items()}
    assert lines[2]["loss"] == pytest.approx(lines[1]["loss"], rel=1e-5)
    assert lines[2]["normalizer"] == lines[1]["normalizer"]
    # Adam's first step hides a gradient's scale, so the norm checks it.
    assert lines[2]["grad_norm"] == pytest.approx(lines[1]["grad_norm"], rel=1e-5)
