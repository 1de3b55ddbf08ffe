"""Builds the executor `CRINGE_EXECUTOR` names, and what it needs started and stopped.

`local` needs nothing. `ray` connects to `RAY_ADDRESS` when it is set; otherwise this
process starts a single-node Ray head on 127.0.0.1 with token authentication and stops
it when the service exits. The head's address and token are kept in
`DATA_DIR/ray-head.json` (readable by this user only) while it runs, so a service that
was killed and restarted re-attaches to the head its running attempts live on instead of
starting a second one. Ray reads `RAY_AUTH_MODE` and `RAY_AUTH_TOKEN` when it is
first imported, so they are put in this process's environment before anything here
imports ray.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from service.executor import Executor
from service.local_executor import LocalExecutor
from service.settings import Settings
from workers.ray_executor import LocalRayHead, RayExecutor  # imports ray only when used

logger = logging.getLogger(__name__)

DEFAULT_SERVICE_URL = "http://127.0.0.1:8000"
HEAD_FILE = "ray-head.json"


@dataclass
class RunningExecutor:
    executor: Executor
    stop: Callable[[], None]


def start_executor(settings: Settings) -> RunningExecutor:
    """Return the configured executor, starting a local Ray head first if it needs one."""
    if settings.executor == "local":
        local = LocalExecutor(settings.job_command, settings.cancel_grace_s,
                              eval_command=settings.eval_command)
        return RunningExecutor(local, lambda: None)
    return _start_ray(settings)


def _start_ray(settings: Settings) -> RunningExecutor:
    service_url = settings.service_url or DEFAULT_SERVICE_URL
    address = os.environ.get("RAY_ADDRESS", "")
    if address:
        # The cluster's operator configures its authentication; this process only
        # passes on what its own environment holds.
        logger.info("Ray executor: using the Ray cluster at %s", address)
        return RunningExecutor(RayExecutor(address, service_url), lambda: None)

    head_file = settings.data_dir / HEAD_FILE
    head = _running_head(head_file)
    if head is None:
        # A short folder: Ray's socket paths under it must stay within the 107-byte limit.
        temp_dir = Path(tempfile.mkdtemp(prefix="cringe-ray-", dir="/tmp"))
        head = LocalRayHead(temp_dir, settings.ray_num_cpus, settings.ray_dashboard_port)
        os.environ.update(head.env)  # before the first import of ray in this process
        head.start()
        _save_head(head_file, head)
        logger.info("Ray executor: started a local Ray head at %s (temp dir %s)",
                    head.address, temp_dir)
    else:
        os.environ.update(head.env)
        logger.info("Ray executor: re-attached to the local Ray head at %s", head.address)
    executor = RayExecutor(head.address, service_url, env=head.env,
                           cancel_escalate_s=settings.cancel_grace_s, job_env=head.job_env)

    def stop() -> None:
        head.stop()
        head_file.unlink(missing_ok=True)

    return RunningExecutor(executor, stop)


def _save_head(path: Path, head: LocalRayHead) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump({"temp_dir": str(head.temp_dir), "dashboard_port": head.dashboard_port,
                   "token": head.token}, handle)


def _running_head(path: Path) -> LocalRayHead | None:
    """The head a killed predecessor left running, if its file is there and it answers."""
    if not path.exists():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    head = LocalRayHead(Path(saved["temp_dir"]), dashboard_port=int(saved["dashboard_port"]))
    head.token = saved["token"]
    try:
        # Any answer, even a refusal without the token, means the head is up.
        httpx.get(f"{head.address}/api/version", timeout=5)
    except httpx.TransportError:
        logger.info("the Ray head recorded in %s is gone; starting a new one", path)
        path.unlink(missing_ok=True)
        return None
    return head
