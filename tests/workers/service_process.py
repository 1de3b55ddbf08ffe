"""A real service process on a loopback port, that a test can kill and start again."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import SHARED_DATA


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServiceProcess:
    """`python -m service.cli serve` with a SQLite database under `data_dir`."""

    def __init__(self, data_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        datasets = data_dir / "datasets"
        datasets.mkdir(parents=True, exist_ok=True)
        shutil.copy(SHARED_DATA / "hh-rlhf" / "harmless-base-test.jsonl.gz",
                    datasets / "pairs.jsonl.gz")
        self.env = {**os.environ, "CRINGE_DATA_DIR": str(data_dir), **(extra_env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        subprocess.run([sys.executable, "-m", "service.cli", "db", "upgrade"], env=self.env,
                       check=True, capture_output=True)

    def start(self, *args: str) -> None:
        log = (self.data_dir / "service.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(self.port), *args],
            env=self.env, stdout=log, stderr=log,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError(f"the service did not start; see {self.data_dir / 'service.log'}")

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
            self.process = None

    def settings(self) -> Any:
        from service.settings import Settings

        return Settings(data_dir=self.data_dir)
