"""The dispatcher's executor on Ray: each attempt is one Ray job (Ray Jobs API).

The submission id is `cringe-<job id>-attempt-<n>`, so a dispatcher that retries a
submit finds the Ray job it already started instead of starting a second one. The Ray
job's entrypoint is `python -m workers.run_attempt`, which runs the spec's kind on the
cluster and reports back to the service with the attempt's token.

Without `RAY_ADDRESS`, `LocalRayHead` starts a head node on 127.0.0.1 with Ray's token
authentication switched on (`RAY_AUTH_MODE=token` and a fresh random token), and stops
it when the service exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from cringe_core.process_env import training_env
from service.executor import Execution, ExecutionState, ExecutorUnavailable, Launch

logger = logging.getLogger(__name__)

SERVICE_URL_ENV = "CRINGE_SERVICE_URL"


def submission_id(job_id: str, attempt: int) -> str:
    return f"cringe-{job_id}-attempt-{attempt}"


_AGENT_PORT_OPTIONS = (
    "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
    "metrics-export-port", "ray-client-server-port",
)


def _free_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class LocalRayHead:
    """A single-node Ray head on loopback, started and stopped by this process."""

    def __init__(self, temp_dir: Path, num_cpus: int | None = None,
                 dashboard_port: int = 8265, token: str | None = None) -> None:
        self.temp_dir = temp_dir
        self.num_cpus = num_cpus
        self.dashboard_port = dashboard_port
        self.token = token or secrets.token_hex(32)
        self.address = f"http://127.0.0.1:{dashboard_port}"

    @property
    def env(self) -> dict[str, str]:
        """Variables every Ray client of this head needs: its auth mode and token."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}

    @property
    def job_env(self) -> dict[str, str]:
        """Variables for the Ray jobs run on this head: the head's own GCS address.

        Ray Train's PlacementGroupCleaner actor (Ray 2.60) finds its cluster by looking
        for Ray instances on the machine. With a second one running, that lookup fails
        ("Found multiple active Ray instances"), so after a cancel the cleaner stays alive
        and never removes the job's placement group. An explicit RAY_ADDRESS avoids it.
        """
        current = self.temp_dir / "ray_current_cluster"
        if not current.exists():
            return {}
        return {"RAY_ADDRESS": current.read_text(encoding="utf-8").strip()}

    def start(self) -> None:
        command = [
            sys.executable, "-m", "ray.scripts.scripts", "start", "--head",
            "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}", "--port=0",
            f"--temp-dir={self.temp_dir}", "--disable-usage-stats",
        ]
        # Ray's agents default to fixed ports (52365 for the job agent). When a second Ray
        # on this machine, or one still stopping, uses them, this head never accepts a
        # job ("No available agent to submit job"). Free ports avoid that.
        command += [f"--{option}={_free_port()}" for option in _AGENT_PORT_OPTIONS]
        if self.num_cpus is not None:
            command.append(f"--num-cpus={self.num_cpus}")
        logger.info("starting a local Ray head: %s", shlex.join(command))
        subprocess.run(command, env={**os.environ, **self.env}, check=True,
                       capture_output=True, timeout=180)

    def stop(self, grace_s: float = 15.0) -> None:
        """Stop this head's processes only; `ray stop` would end every Ray on the machine.

        Every process of the head (GCS, raylet, dashboard, workers) names its temp folder
        on its command line, which tells them from other Ray clusters of this user.
        """
        logger.info("stopping the local Ray head in %s", self.temp_dir)
        pids = self._own_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while pids and time.monotonic() < deadline:
            time.sleep(0.2)
            pids = self._own_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _own_pids(self) -> list[int]:
        marker = str(self.temp_dir).encode()
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                if marker in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue  # ended meanwhile, or not ours to read
        return pids


class RayExecutor:
    name = "ray"

    def __init__(self, address: str, service_url: str, env: dict[str, str] | None = None,
                 cancel_escalate_s: float = 30.0, job_env: dict[str, str] | None = None) -> None:
        self.address = address
        self.service_url = service_url
        self.env = dict(env or {})
        self.job_env = dict(job_env or {})  # added to every submitted job's environment
        self.cancel_escalate_s = cancel_escalate_s
        self._client: Any = None

    def _jobs(self) -> Any:
        if self._client is None:
            # Ray reads its auth mode and token from the environment when it is first
            # imported, so a process that imported ray earlier must set them itself.
            os.environ.update(self.env)
            from ray.exceptions import AuthenticationError
            from ray.job_submission import JobSubmissionClient

            try:
                self._client = JobSubmissionClient(self.address)
            except AuthenticationError as error:
                raise ExecutorUnavailable(
                    f"Ray at {self.address} rejected this server's credentials: {error}; set "
                    "RAY_AUTH_TOKEN to the cluster's token"
                ) from error
            except (ConnectionError, RuntimeError) as error:
                raise ExecutorUnavailable(f"Ray at {self.address} is unreachable: {error}") \
                    from error
        return self._client

    def submit(self, launch: Launch) -> str:
        handle = submission_id(launch.job_id, launch.attempt)
        client = self._jobs()
        if self._exists(client, handle):
            logger.info("job %s attempt %d: Ray job %s already submitted", launch.job_id,
                        launch.attempt, handle)
            return handle

        folder = launch.output_dir / ".attempts" / str(launch.attempt)
        folder.mkdir(parents=True, exist_ok=True)
        spec_path = folder / "spec.yaml"
        spec_path.write_text(yaml.safe_dump(launch.resolved_spec, sort_keys=False), "utf-8")
        entrypoint = [sys.executable, "-m", "workers.run_attempt", str(spec_path),
                      "--output-dir", str(launch.output_dir)]
        if launch.resume:
            entrypoint.append("--resume")
        env_vars = {
            **training_env(),
            "CRINGE_JOB_ID": launch.job_id,
            "CRINGE_ATTEMPT": str(launch.attempt),
            "CRINGE_WORKER_TOKEN": launch.worker_token,
            SERVICE_URL_ENV: self.service_url,
            **self.job_env,
        }
        try:
            client.submit_job(entrypoint=shlex.join(entrypoint), submission_id=handle,
                              runtime_env={"env_vars": env_vars},
                              metadata={"cringe_job_id": launch.job_id,
                                        "attempt": str(launch.attempt)})
        except RuntimeError as error:
            # Another dispatcher submitted the same attempt between the check and here.
            if "already exists" not in str(error):
                raise ExecutorUnavailable(f"Ray rejected {handle}: {error}") from error
        logger.info("job %s attempt %d: submitted Ray job %s", launch.job_id, launch.attempt,
                    handle)
        return handle

    @staticmethod
    def _exists(client: Any, handle: str) -> bool:
        try:
            client.get_job_info(handle)
        except RuntimeError:
            return False
        return True

    def status(self, handle: str) -> Execution:
        from ray.job_submission import JobStatus

        client = self._jobs()
        try:
            info = client.get_job_info(handle)
        except RuntimeError as error:
            return Execution(ExecutionState.LOST, detail=f"Ray has no job {handle}: {error}")
        if info.status in (JobStatus.PENDING, JobStatus.RUNNING):
            return Execution(ExecutionState.RUNNING)
        if info.status == JobStatus.SUCCEEDED:
            return Execution(ExecutionState.EXITED, exit_code=0)
        detail = info.message or ""
        if info.status == JobStatus.FAILED:
            detail = f"{detail}\n{_tail(client.get_job_logs(handle))}"
        exit_code = getattr(info, "driver_exit_code", None)
        return Execution(ExecutionState.EXITED, exit_code=exit_code if exit_code else 1,
                         detail=detail.strip())

    def cancel(self, handle: str) -> None:
        """Stop the Ray job; Ray kills its driver, actors and placement groups."""
        try:
            self._jobs().stop_job(handle)
        except RuntimeError as error:
            logger.info("Ray job %s not stopped: %s", handle, error)


def _tail(text: str, max_chars: int = 8000) -> str:
    return text[-max_chars:]
