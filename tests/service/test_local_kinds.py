"""The local executor runs each job kind through its own command."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from service.executor import ExecutionState, Launch
from service.local_executor import LocalExecutor

# Writes its arguments to OUTPUT_DIR/<name>, so a test can see which command ran and how.
_RECORD = ("import sys, pathlib; "
           "pathlib.Path(sys.argv[2], sys.argv[3]).write_text(' '.join(sys.argv[1:]))")


def _command(name: str) -> list[str]:
    return [sys.executable, "-c", _RECORD, "{spec}", "{output_dir}", name]


def _run(tmp_path: Path, kind: str, resume: bool) -> LocalExecutor:
    executor = LocalExecutor(_command("train"), eval_command=_command("eval"))
    launch = Launch(job_id="job_kinds", attempt=2 if resume else 1, kind=kind,
                    resolved_spec={"kind": kind}, output_dir=tmp_path, resume=resume,
                    worker_token="unused")
    handle = executor.submit(launch)
    deadline = time.monotonic() + 30
    while executor.status(handle).state is ExecutionState.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return executor


def test_evaluate_runs_eval_command(tmp_path: Path) -> None:
    _run(tmp_path, "evaluate", resume=False)
    assert (tmp_path / "eval").exists()


def test_evaluate_resume_not_passed(tmp_path: Path) -> None:
    _run(tmp_path, "evaluate", resume=True)
    assert "--resume" not in (tmp_path / "eval").read_text()


def test_reward_model_runs_train_command(tmp_path: Path) -> None:
    _run(tmp_path, "reward_model", resume=True)
    assert (tmp_path / "train").read_text().endswith("--resume")
