"""A real service process running jobs on a Ray head it starts itself, and a REST client."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ALPACA_EVAL
from tests.workers.service_process import ServiceProcess, free_port

TERMINAL = {"succeeded", "failed", "cancelled"}


def ray_service(data_dir: Path, policy: Path, **env: str) -> ServiceProcess:
    """A service with `CRINGE_EXECUTOR=ray`; the tiny policy and AlpacaEval are data."""
    datasets = data_dir / "datasets"
    datasets.mkdir(parents=True, exist_ok=True)
    shutil.copytree(policy, datasets / "tiny-policy", dirs_exist_ok=True)
    shutil.copy(ALPACA_EVAL / "FuseChat-Llama-3.2-3B-Instruct.json.gz",
                datasets / "alpaca.json.gz")
    service = ServiceProcess(data_dir, extra_env={
        "CRINGE_EXECUTOR": "ray", "CRINGE_RAY_NUM_CPUS": "2",
        "CRINGE_RAY_DASHBOARD_PORT": str(free_port()), "CRINGE_DISPATCH_INTERVAL_S": "0.5",
        "CRINGE_TORCH_THREADS": "1", **env,
    })
    # This process may have pointed Ray elsewhere; the service must start its own head.
    for name in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN"):
        service.env.pop(name, None)
    return service


class Client:
    """The public REST API of a service, with an API key of a fresh project."""

    def __init__(self, service: ServiceProcess) -> None:
        created = subprocess.run(
            [sys.executable, "-m", "service.cli", "keys", "create", "--project", "tests"],
            env=service.env, check=True, capture_output=True, text=True,
        )
        self.http = httpx.Client(base_url=service.url, timeout=30, headers={
            "Authorization": f"Bearer {created.stdout.strip()}"})

    def submit(self, spec: dict[str, Any]) -> str:
        response = self.http.post("/v1/jobs", json={"spec": spec})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.http.get(f"/v1/jobs/{job_id}").json()
        return result

    def all(self, job_id: str, resource: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a list resource, following its cursor."""
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = {**params, **({"cursor": cursor} if cursor else {})}
            page = self.http.get(f"/v1/jobs/{job_id}/{resource}", params=query).json()
            items.extend(page["data"])
            cursor = page.get("next_cursor")
            if not cursor:
                return items

    def wait(self, job_id: str, statuses: set[str], timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if job["status"] in statuses:
                return job
            if job["status"] in TERMINAL or time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} is {job['status']}, waited for "
                                     f"{sorted(statuses)}: {job.get('error')}")
            time.sleep(0.5)


def train_spec(data_dir: Path, max_steps: int, **training: Any) -> dict[str, Any]:
    return {
        "kind": "train", "model": {"name": str(data_dir / "datasets" / "tiny-policy")},
        "dataset": {"path": "alpaca.json.gz", "max_rows": 48, "max_invalid_fraction": 0.9},
        "loss": {"name": "dpo"},
        "training": {"max_steps": max_steps, "batch_size": 2, "micro_batch_size": 1,
                     "max_length": 96, "log_every_steps": 1, "checkpoint_every_steps": 5,
                     **training},
    }


def stop(service: ServiceProcess) -> None:
    """SIGTERM, so the service stops the Ray head it started."""
    if service.process is not None:
        service.process.terminate()
        try:
            service.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            service.kill()
        service.process = None



def training_worker_pids(job_id: str) -> list[int]:
    """PIDs of the Ray Train workers of `job_id`, found by the job id in their environment."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if b"RayTrainWorker" in command and f"CRINGE_JOB_ID={job_id}".encode() in environ:
            pids.append(int(proc.name))
    return pids
