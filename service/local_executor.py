"""Runs attempts as subprocesses on this machine, for tests and single-machine use.

Each attempt gets a folder `OUTPUT_DIR/.attempts/N/` with its spec, its stdout and
stderr, its handle and, once it ends, its exit code (written by `service.run_wrapper`).
A handle is `PID:START_TICKS:FOLDER`; the process start time from /proc tells a live
attempt from an unrelated process that reused its PID, so re-attaching after a restart
is safe. Linux only, since it reads /proc.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from cringe_core.process_env import training_env
from service.executor import Execution, ExecutionState, Launch

logger = logging.getLogger(__name__)

_HANDLE_FILE = "handle"
_EXIT_FILE = "exit.json"
_CANCEL_FILE = "cancel_requested"


# Kinds the local executor runs, each through a `cringe` command (`cringe train` also runs
# `reward_model` specs). `iterate` needs a Ray cluster for its sampling, scoring and
# training phases, so it is refused at submit unless the service uses the Ray executor.
LOCAL_KINDS = ("train", "reward_model", "evaluate")
# Kinds whose command takes --resume; `cringe eval` starts over instead.
_RESUMABLE_KINDS = ("train", "reward_model")


def attempt_dir(output_dir: Path, attempt: int) -> Path:
    return output_dir / ".attempts" / str(attempt)


def process_start_ticks(pid: int) -> int | None:
    """Start time of a live (not zombie) process in clock ticks since boot, else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; the fields after it are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    state, start_ticks = fields[0], fields[19]
    return None if state in ("Z", "X") else int(start_ticks)


class LocalExecutor:
    name = "local"

    def __init__(self, command: list[str], cancel_grace_s: float = 30.0,
                 eval_command: list[str] | None = None) -> None:
        self.command = command
        # Without its own command, `evaluate` goes through `command` too, whose CLI then
        # names the command that runs it.
        self.commands = {"evaluate": eval_command or command}
        self.cancel_grace_s = cancel_grace_s
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def submit(self, launch: Launch) -> str:
        folder = attempt_dir(launch.output_dir, launch.attempt)
        adopted = self._adopt(folder)
        if adopted is not None:
            logger.info("job %s attempt %d: re-attached to %s", launch.job_id, launch.attempt,
                        adopted)
            return adopted

        folder.mkdir(parents=True, exist_ok=True)
        spec_path = folder / "spec.yaml"
        spec_path.write_text(yaml.safe_dump(launch.resolved_spec, sort_keys=False),
                             encoding="utf-8")
        (folder / _EXIT_FILE).unlink(missing_ok=True)
        argv = [
            part.replace("{spec}", str(spec_path)).replace("{output_dir}",
                                                           str(launch.output_dir))
            for part in self.commands.get(launch.kind, self.command)
        ]
        if launch.resume and launch.kind in _RESUMABLE_KINDS:
            argv.append("--resume")
        wrapper = [sys.executable, "-m", "service.run_wrapper",
                   "--exit-file", str(folder / _EXIT_FILE), "--", *argv]
        env = {
            **os.environ,
            **training_env(),
            "CRINGE_JOB_ID": launch.job_id,
            "CRINGE_ATTEMPT": str(launch.attempt),
            "CRINGE_WORKER_TOKEN": launch.worker_token,
        }
        with (folder / "stdout.log").open("ab") as stdout, \
                (folder / "stderr.log").open("ab") as stderr:
            process = subprocess.Popen(
                wrapper, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                cwd=launch.output_dir, env=env, start_new_session=True,
            )
        self._children[process.pid] = process
        handle = f"{process.pid}:{process_start_ticks(process.pid) or 0}:{folder}"
        (folder / _HANDLE_FILE).write_text(handle, encoding="utf-8")
        logger.info("job %s attempt %d: started pid %d: %s", launch.job_id, launch.attempt,
                    process.pid, " ".join(argv))
        return handle

    def _adopt(self, folder: Path) -> str | None:
        """The handle of this attempt if it already ran or still runs, else None."""
        handle_path = folder / _HANDLE_FILE
        if not handle_path.exists():
            return None
        handle = handle_path.read_text(encoding="utf-8").strip()
        if self.status(handle).state is ExecutionState.LOST:
            return None
        return handle

    def status(self, handle: str) -> Execution:
        pid, start_ticks, folder = _parse(handle)
        child = self._children.get(pid)
        if child is not None and child.poll() is not None:
            self._children.pop(pid, None)  # reaped, so no zombie is left behind
        exit_file = folder / _EXIT_FILE
        if exit_file.exists():
            exit_code = int(json.loads(exit_file.read_text(encoding="utf-8"))["exit_code"])
            detail = _tail(folder / "stderr.log") if exit_code != 0 else None
            return Execution(ExecutionState.EXITED, exit_code=exit_code, detail=detail)
        if process_start_ticks(pid) == start_ticks:
            return Execution(ExecutionState.RUNNING)
        if exit_file.exists():  # it ended between the two checks above
            return self.status(handle)
        return Execution(
            ExecutionState.LOST,
            detail=f"process {pid} is gone and left no exit code (killed, or the machine "
            "restarted)",
        )

    def cancel(self, handle: str) -> None:
        pid, start_ticks, folder = _parse(handle)
        if process_start_ticks(pid) != start_ticks:
            return
        marker = folder / _CANCEL_FILE
        if not marker.exists():
            marker.write_text(str(time.time()), encoding="utf-8")
            self._signal_group(pid, signal.SIGTERM)
            logger.info("sent SIGTERM to attempt process group %d", pid)
            return
        if time.time() - marker.stat().st_mtime > self.cancel_grace_s:
            self._signal_group(pid, signal.SIGKILL)
            logger.warning("attempt process group %d ignored SIGTERM for %.0f s; sent SIGKILL",
                           pid, self.cancel_grace_s)

    @staticmethod
    def _signal_group(pid: int, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signum)


def _parse(handle: str) -> tuple[int, int, Path]:
    pid, start_ticks, folder = handle.split(":", 2)
    return int(pid), int(start_ticks), Path(folder)


def _tail(path: Path, max_bytes: int = 16_384) -> str:
    """The end of a log file, for the error of a failed attempt."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - max_bytes))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
