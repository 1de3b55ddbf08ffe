"""The Ray executor on a token-authenticated local head: idempotent submit and cancel."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.executor import ExecutionState, ExecutorUnavailable, Launch
from tests.conftest import ALPACA_EVAL
from tests.workers.service_process import free_port
from workers.ray_executor import LocalRayHead, RayExecutor, submission_id


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRayHead]:
    # The token this test process's Ray client already uses (set in tests/conftest.py).
    ray_head = LocalRayHead(Path("/tmp") / f"cr{free_port()}", num_cpus=2,
                            dashboard_port=free_port(), token=os.environ["RAY_AUTH_TOKEN"])
    ray_head.start()
    yield ray_head
    ray_head.stop()


def _launch(tmp_path: Path, policy: Path) -> Launch:
    spec = {
        "kind": "train", "model": {"name": str(policy)},
        "dataset": {"path": str(ALPACA_EVAL / "FuseChat-Llama-3.2-3B-Instruct.json.gz"),
                    "max_rows": 24, "max_invalid_fraction": 0.9},
        "training": {"max_steps": 10_000, "batch_size": 2, "micro_batch_size": 1,
                     "max_length": 96},
    }
    return Launch(job_id="job_test1", attempt=1, kind="train", resolved_spec=spec,
                  output_dir=tmp_path, resume=False, worker_token="not-checked")


def _wait(executor: RayExecutor, handle: str, state: ExecutionState, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while executor.status(handle).state is not state:
        assert time.monotonic() < deadline, executor.status(handle)
        time.sleep(1)


# Detached, named actors that Ray Train (seen in Ray 2.60) creates once per cluster with
# get_if_exists and shares with every later run. They hold no CPU. They carry the job id
# of the first run that created them, but belong to no job.
CLUSTER_SINGLETONS = frozenset({"_AutoscalingCoordinatorActor", "TrainStateActor"})


@pytest.mark.slow
def test_submit_twice_then_cancel(
    head: LocalRayHead, tmp_path: Path, tiny_policy_path: Path
) -> None:
    executor = RayExecutor(head.address, "http://127.0.0.1:9", env=head.env,
                           job_env=head.job_env)
    assert set(head.job_env) == {"RAY_ADDRESS"}
    launch = _launch(tmp_path, tiny_policy_path)
    # A fresh head refuses jobs until its job agent is up; the dispatcher retries the same.
    deadline = time.monotonic() + 120
    while True:
        try:
            first = executor.submit(launch)
            break
        except ExecutorUnavailable:
            assert time.monotonic() < deadline
            time.sleep(2)
    second = executor.submit(launch)
    assert first == second == submission_id("job_test1", 1)
    jobs = [job for job in executor._jobs().list_jobs() if job.submission_id == first]
    assert len(jobs) == 1

    from ray.util.state import list_actors, list_placement_groups

    def alive_actors() -> list[str]:
        # The driver's Ray job id exists only once the driver runs, so read it each time.
        job_id = executor._jobs().get_job_info(first).job_id
        actors = list_actors(address=head.address, filters=[("state", "=", "ALIVE")])
        return [a.class_name for a in actors
                if a.job_id == job_id and a.class_name not in CLUSTER_SINGLETONS]

    # Cancel only once the TorchTrainer's workers exist, so there is something to clean up.
    deadline = time.monotonic() + 180
    while not any("RayTrainWorker" in name for name in alive_actors()):
        assert executor.status(first).state is ExecutionState.RUNNING, executor.status(first)
        assert time.monotonic() < deadline, alive_actors()
        time.sleep(1)
    executor.cancel(first)
    _wait(executor, first, ExecutionState.EXITED, 120)

    # Ray Train's detached PlacementGroupCleaner polls the State API until the controller
    # is dead, then removes the placement group and exits, within seconds.
    deadline = time.monotonic() + 60
    while alive_actors() and time.monotonic() < deadline:
        time.sleep(2)
    assert alive_actors() == []
    job_id = executor._jobs().get_job_info(first).job_id
    groups = [g for g in list_placement_groups(address=head.address)
              if g.state != "REMOVED" and g.creator_job_id == job_id]
    assert groups == []


def test_rejected_token_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray.job_submission
    from ray.exceptions import AuthenticationError

    def reject(address: str) -> None:
        raise AuthenticationError(f"invalid token for {address}")

    monkeypatch.setattr(ray.job_submission, "JobSubmissionClient", reject)
    executor = RayExecutor("http://127.0.0.1:9", "http://127.0.0.1:8000")
    with pytest.raises(ExecutorUnavailable, match="set RAY_AUTH_TOKEN"):
        executor._jobs()
