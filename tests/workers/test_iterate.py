"""Iterate jobs on Ray: every phase leaves its output, and a restart resumes at the first
unfinished phase."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from cringe_core.spec import IterateJobSpec, parse_spec
from tests.conftest import ALPACA_EVAL, SHARED_DATA
from tests.tiny_models import save_tiny_llama_reward
from workers.iterate import IteratePipeline, NullObserver, first_unfinished, round_paths


class Recorder(NullObserver):
    def __init__(self) -> None:
        self.phases: list[tuple[int, str]] = []
        self.iterations: dict[int, dict[str, Any]] = {}
        self.evaluations: dict[int, dict[str, Any]] = {}

    def phase_started(self, round_index: int, phase: str) -> None:
        self.phases.append((round_index, phase))

    def iteration(self, round_index: int, fields: dict[str, Any]) -> None:
        self.iterations[round_index] = fields

    def evaluation(self, round_index: int, results: dict[str, Any], candidate: str) -> None:
        self.evaluations[round_index] = results


def _spec(policy: Path, reward: Path) -> IterateJobSpec:
    spec = parse_spec(
        {
            "kind": "iterate",
            "model": {"name": str(policy)},
            "dataset": {
                "path": str(ALPACA_EVAL / "FuseChat-Llama-3.2-3B-Instruct.json.gz"),
                "max_rows": 12,
                "max_invalid_fraction": 0.9,
            },
            "loss": {"name": "pairwise_cringe", "top_k": 2},
            "training": {"max_steps": 1, "batch_size": 2, "micro_batch_size": 1,
                         "max_length": 96, "learning_rate": 1e-3},
            "rounds": 1,
            "samples_per_prompt": 2,
            "max_prompts": 3,
            "max_new_tokens": 6,
            "reward_model": str(reward),
            "eval_set": {"path": str(SHARED_DATA / "alpaca-farm" / "eval_gpt-3.5-turbo-0301.json"),
                         "max_prompts": 3},
            "evaluation": {"generation": {"max_new_tokens": 6, "max_prompt_length": 64},
                           "bootstrap": {"resamples": 20}},
            "scorer": {"num_replicas": 1, "batch_size": 4, "max_length": 128},
        }
    )
    assert isinstance(spec, IterateJobSpec)
    return spec


@pytest.fixture(scope="module")
def finished_job(
    ray_cluster: None, tiny_policy_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[IterateJobSpec, Path, Recorder, list[dict[str, Any]]]:
    reward = save_tiny_llama_reward(tmp_path_factory.mktemp("reward"), tiny_policy_path)
    spec = _spec(tiny_policy_path, reward)
    output_dir = tmp_path_factory.mktemp("iterate")
    recorder = Recorder()
    summaries = IteratePipeline(spec, output_dir, recorder).run()
    return spec, output_dir, recorder, summaries


def test_every_phase_ran(finished_job: tuple) -> None:
    _, _, recorder, _ = finished_job
    assert recorder.phases == [
        (0, "train"), (0, "evaluate"),
        (1, "generate"), (1, "score"), (1, "pairs"), (1, "train"), (1, "evaluate"),
    ]


def test_samples_record_seeds(finished_job: tuple) -> None:
    _, output_dir, _, _ = finished_job
    rows = [json.loads(line) for line in
            (round_paths(output_dir, 1).scored).read_text().splitlines()]
    assert len(rows) == 3 * 2
    assert all(isinstance(row["seed"], int) for row in rows)
    assert len({row["seed"] for row in rows}) == len(rows)
    assert all(isinstance(row["reward"], float) for row in rows)


def test_pairs_are_best_and_worst(finished_job: tuple) -> None:
    _, output_dir, _, _ = finished_job
    pairs = [json.loads(line) for line in
             (round_paths(output_dir, 1).pairs).read_text().splitlines()]
    assert pairs, "random rewards should separate at least one prompt's two samples"
    assert all(p["chosen_reward"] > p["rejected_reward"] for p in pairs)


def test_round_reports(finished_job: tuple) -> None:
    _, _, recorder, summaries = finished_job
    assert [s["round"] for s in summaries] == [0, 1]
    assert recorder.iterations[1]["pairs_generated"] == 3
    assert 0.0 <= recorder.evaluations[1]["win_rate"] <= 1.0
    assert recorder.evaluations[1]["n"] == 3


def test_restart_resumes_at_train(finished_job: tuple) -> None:
    spec, output_dir, _, _ = finished_job
    paths = round_paths(output_dir, 1)
    shutil.rmtree(paths.evaluation)
    (paths.train / "status.json").unlink()
    shutil.rmtree(paths.model)
    completions_mtime = paths.completions.stat().st_mtime_ns
    assert first_unfinished(spec, output_dir) == (1, "train")

    recorder = Recorder()
    IteratePipeline(spec, output_dir, recorder).run()
    assert recorder.phases == [(1, "train"), (1, "evaluate")]
    assert paths.completions.stat().st_mtime_ns == completions_mtime
    assert first_unfinished(spec, output_dir) is None
