"""The entrypoint of one attempt's Ray job: run the spec's kind, report back, exit.

Reads the job id, attempt, worker token and service URL from the environment the Ray
executor sets. Exit code 0 means the attempt succeeded; the failure is reported to the
service before a non-zero exit.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from cringe_core.spec import (
    EvaluateJobSpec,
    IterateJobSpec,
    RewardModelJobSpec,
    TrainJobSpec,
    load_spec_file,
)
from workers.logs import stamped
from workers.progress_tail import ProgressTail
from workers.report_client import ReportClient

log = stamped(__name__)


class RestObserver:
    """Forwards the iterate pipeline's progress to the service."""

    def __init__(self, client: ReportClient) -> None:
        self.client = client

    def phase_started(self, round_index: int, phase: str) -> None:
        self.client.status("running", phase=phase, round_index=round_index)
        self.client.iteration(round_index, {"phase": phase})

    def iteration(self, round_index: int, fields: dict[str, Any]) -> None:
        self.client.iteration(round_index, fields)

    def training(self, round_index: int, run_dir: Path, total_steps: int) -> ProgressTail:
        return ProgressTail(self.client, run_dir, total_steps, round_index=round_index)

    def evaluation(self, round_index: int, results: dict[str, Any], candidate: str) -> None:
        low, high = results["interval"]
        self.client.evaluation({
            "round": round_index, "candidate": candidate, "reference": "eval_set",
            "judge": "reward_model", "n": results["n"], "wins": results["wins"],
            "ties": results["ties"], "losses": results["losses"],
            "win_rate": results["win_rate"], "ci_low": low, "ci_high": high,
        })


def run(spec: Any, output_dir: Path, resume: bool, client: ReportClient) -> None:
    import ray

    from workers.iterate import IteratePipeline
    from workers.ray_train import fit_train_job
    from workers.tasks import evaluate_task, train_reward_model_task

    ray.init(address="auto", configure_logging=False)
    client.status("running", phase=spec.kind)
    if isinstance(spec, TrainJobSpec):
        total_steps = spec.training.max_steps
        with ProgressTail(client, output_dir, total_steps):
            fit_train_job(spec, output_dir, resume=resume)
        client.checkpoint(total_steps, "model", str(output_dir / "model"))
    elif isinstance(spec, IterateJobSpec):
        IteratePipeline(spec, output_dir, RestObserver(client)).run()
    elif isinstance(spec, RewardModelJobSpec):
        ray.get(train_reward_model_task.remote(spec.model_dump(mode="json"), str(output_dir),
                                               resume))
    elif isinstance(spec, EvaluateJobSpec):
        ray.get(evaluate_task.remote(spec.model_dump(mode="json"), str(output_dir)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one attempt of a cringe job on Ray.")
    parser.add_argument("spec", type=Path, help="the resolved job spec (YAML)")
    parser.add_argument("--output-dir", type=Path, required=True, help="the job's folder")
    parser.add_argument("--resume", action="store_true", help="continue from checkpoints")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    client = ReportClient(os.environ["CRINGE_SERVICE_URL"], os.environ["CRINGE_JOB_ID"],
                          int(os.environ["CRINGE_ATTEMPT"]), os.environ["CRINGE_WORKER_TOKEN"])
    try:
        run(load_spec_file(args.spec), args.output_dir, args.resume, client)
    except Exception as error:  # every failure is reported, then the attempt exits 1
        log.error("attempt failed: %s", error)
        traceback.print_exc()
        client.status("failed", error={"code": "job_failed", "message": str(error)[:8000]})
        client.close()
        return 1
    client.status("succeeded")
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
