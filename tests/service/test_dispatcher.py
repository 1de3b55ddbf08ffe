"""The dispatcher with the local executor, running the fake job command for real."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from service.dispatcher import Dispatcher, RetryPolicy, failure_of
from service.executor import Execution, ExecutionState, ExecutorUnavailable, Launch
from service.local_executor import LocalExecutor
from service.models import Attempt
from service.states import JobEvent
from tests.service.conftest import Api, DatabaseFactory, fake_job_command, wait_for


@pytest.fixture
def isolated(make_api: Any, database_factory: DatabaseFactory, tmp_path: Path) -> Any:
    """Build an app on a database of its own, so its dispatcher finds only this test's jobs."""

    def build(*job_args: str, **overrides: Any) -> tuple[Api, Dispatcher]:
        api = make_api(database_url=database_factory.migrated(),
                       job_command=fake_job_command("--runs-log", str(tmp_path / "runs.log"),
                                                    *job_args), **overrides)
        executor = LocalExecutor(api.settings.job_command, cancel_grace_s=1.0)
        return api, Dispatcher(api.db, api.settings, executor)

    return build


def run_until(dispatcher: Dispatcher, api: Api, job_id: str, statuses: set[str],
              timeout_s: float = 30.0) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        dispatcher.tick()
        job: dict[str, Any] = api.client.get(f"/v1/jobs/{job_id}", headers=api.headers).json()
        return job if job["status"] in statuses else None

    result: dict[str, Any] = wait_for(reached, timeout_s, f"job {job_id} to reach {statuses}")
    return result


def get_list(api: Api, job_id: str, resource: str) -> list[dict[str, Any]]:
    response = api.client.get(f"/v1/jobs/{job_id}/{resource}", headers=api.headers)
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def test_job_runs_to_success(isolated: Any) -> None:
    api, dispatcher = isolated("--steps", "4", "--checkpoint-every", "2")
    job = api.submit()
    done = run_until(dispatcher, api, job["id"], {"succeeded", "failed"})
    metrics = get_list(api, job["id"], "metrics")
    checkpoints = get_list(api, job["id"], "checkpoints")
    events = [e["type"] for e in get_list(api, job["id"], "events")]
    assert done["status"] == "succeeded"
    assert done["is_terminal"] is True
    assert done["progress"]["step"] == 4
    assert done["latest_metrics"] == {"loss": 0.25, "accuracy": 1.0}
    assert done["started_at"] is not None and done["finished_at"] is not None
    assert len(metrics) == 8
    assert {(p["name"], p["step"]) for p in metrics} == {
        (name, step) for name in ("loss", "accuracy") for step in range(1, 5)}
    assert [(c["kind"], c["step"]) for c in checkpoints] == [
        ("resumable", 2), ("resumable", 4), ("model", 4)]
    assert events[:4] == ["job_created", "validation_passed", "attempt_started",
                          "checkpoint_saved"]
    assert events[-1] == "attempt_succeeded"


def test_bad_data_fails_with_rows(isolated: Any) -> None:
    api, dispatcher = isolated("--exit-code", "2")
    job = api.submit()
    done = run_until(dispatcher, api, job["id"], {"succeeded", "failed"})
    assert done["status"] == "failed"
    assert done["error"]["code"] == "invalid_input"
    assert "row 3: missing field 'rejected'" in done["error"]["message"]
    assert "row 7" in done["error"]["message"]
    assert done["phase"] == "validating"


def test_crash_error_has_no_traceback(isolated: Any) -> None:
    api, dispatcher = isolated("--exit-code", "1")
    job = api.submit()
    done = run_until(dispatcher, api, job["id"], {"succeeded", "failed"})
    assert done["error"]["code"] == "job_failed"
    assert "RuntimeError: CUDA out of memory" in done["error"]["message"]
    assert "Traceback" not in done["error"]["message"]
    assert 'File "' not in done["error"]["message"]


def test_cancel_stops_running_job(isolated: Any) -> None:
    api, dispatcher = isolated("--steps", "400", "--delay", "0.05")
    job = api.submit()
    run_until(dispatcher, api, job["id"], {"running"})
    wait_for(lambda: dispatcher.tick() or get_list(api, job["id"], "metrics"), 20, "metrics")
    response = api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.headers)
    done = run_until(dispatcher, api, job["id"], {"cancelled", "succeeded", "failed"})
    with api.db.read() as session:
        attempt = session.execute(select(Attempt).where(Attempt.job_id == job["id"])).scalar_one()
    assert response.json()["status"] == "cancelling"
    assert done["status"] == "cancelled"
    assert done["progress"]["step"] < 400
    assert attempt.exit_code == -signal.SIGTERM


class UnreachableExecutor:
    name = "unreachable"

    def submit(self, launch: Launch) -> str:
        raise ExecutorUnavailable("cannot connect to the cluster at 127.0.0.1:1")

    def status(self, handle: str) -> Execution:
        raise AssertionError("nothing was submitted")

    def cancel(self, handle: str) -> None:
        raise AssertionError("nothing was submitted")


def test_unreachable_executor_keeps_job_queued(isolated: Any) -> None:
    api, _ = isolated()
    dispatcher = Dispatcher(api.db, api.settings, UnreachableExecutor())
    job = api.submit()
    for _ in range(3):
        dispatcher.tick()
    current = api.client.get(f"/v1/jobs/{job['id']}", headers=api.headers).json()
    assert current["status"] == "queued"
    assert current["attempt"] == 0


def test_data_removed_before_queueing(isolated: Any, data_root: Path) -> None:
    api, dispatcher = isolated()
    doomed = data_root / "doomed.jsonl"
    doomed.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n', encoding="utf-8")
    job = api.submit({"dataset": {"path": "doomed.jsonl"}})
    doomed.unlink()
    done = run_until(dispatcher, api, job["id"], {"failed", "queued", "running"})
    assert done["status"] == "failed"
    assert done["error"]["code"] == "invalid_input"
    assert "not found" in done["error"]["message"]


class CountingExecutor:
    """Records every submit; attempts run until the test ends."""

    name = "counting"

    def __init__(self) -> None:
        self.submitted: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def submit(self, launch: Launch) -> str:
        with self.lock:
            self.submitted.append((launch.job_id, launch.attempt))
        return f"{launch.job_id}/{launch.attempt}"

    def status(self, handle: str) -> Execution:
        return Execution(ExecutionState.RUNNING)

    def cancel(self, handle: str) -> None:
        pass


def test_two_dispatchers_never_share_a_job(isolated: Any) -> None:
    api, _ = isolated(max_running_jobs=100)
    jobs = [api.submit()["id"] for _ in range(12)]
    executor = CountingExecutor()
    dispatchers = [Dispatcher(api.db, api.settings, executor) for _ in range(2)]
    dispatchers[0].validate_pending()
    barrier = threading.Barrier(2)

    def claim_all(dispatcher: Dispatcher) -> None:
        barrier.wait()
        dispatcher.start_queued()

    threads = [threading.Thread(target=claim_all, args=(d,)) for d in dispatchers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(executor.submitted) == sorted((job_id, 1) for job_id in jobs)


def test_capacity_limits_running_jobs(isolated: Any) -> None:
    api, _ = isolated(max_running_jobs=2)
    for _ in range(3):
        api.submit()
    executor = CountingExecutor()
    dispatcher = Dispatcher(api.db, api.settings, executor)
    dispatcher.tick()
    dispatcher.tick()
    assert len(executor.submitted) == 2


def test_retry_policy() -> None:
    policy = RetryPolicy(max_infra_retries=1)
    assert policy.event_after_lost(1) is JobEvent.ATTEMPT_LOST
    assert policy.event_after_lost(2) is JobEvent.ATTEMPT_FAILED
    assert RetryPolicy(0).event_after_lost(1) is JobEvent.ATTEMPT_FAILED


def test_failure_of_bad_input_keeps_rows() -> None:
    stderr = "loading\nerror: 2 invalid rows\n  row 3: empty chosen\n"
    failure = failure_of(2, stderr)
    assert failure["code"] == "invalid_input"
    assert failure["message"] == "error: 2 invalid rows\n  row 3: empty chosen"


def test_local_executor_reports_lost_process(tmp_path: Path) -> None:
    executor = LocalExecutor(["sleep", "30", "{spec}", "{output_dir}"])
    launch = Launch(job_id="job_x", attempt=1, kind="train", resolved_spec={"kind": "train"},
                    output_dir=tmp_path, resume=False, worker_token="cw_x")
    handle = executor.submit(launch)
    pid = int(handle.split(":")[0])
    assert executor.status(handle).state is ExecutionState.RUNNING
    assert executor.submit(launch) == handle  # the same attempt is adopted, not started twice
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: executor.status(handle).state is ExecutionState.LOST, 10, "lost state")
    assert "left no exit code" in (executor.status(handle).detail or "")
