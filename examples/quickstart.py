"""Run `examples/iterate.yaml` through the service, end to end, on this machine.

Starts `cringe serve` on 127.0.0.1 with a SQLite database in a new folder and the Ray
executor (which starts a local, token-authenticated Ray head), creates an API key,
submits the job over REST, follows it to the end and prints each round's win rate with
its confidence interval. Run from the repository root:

    python examples/quickstart.py [--spec examples/iterate.yaml] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
TERMINAL = ("succeeded", "failed", "cancelled")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _absolute_paths(node: Any) -> Any:
    """Resolve every relative `path` of the spec against the repository root."""
    if isinstance(node, dict):
        return {key: (str((REPO_ROOT / value).resolve())
                      if key == "path" and isinstance(value, str) and not Path(value).is_absolute()
                      else _absolute_paths(value))
                for key, value in node.items()}
    if isinstance(node, list):
        return [_absolute_paths(value) for value in node]
    return node


def _start_server(data_dir: Path, port: int) -> tuple[subprocess.Popen[bytes], str, str]:
    """Start the server; return it, an API key and its URL."""
    env = {**os.environ, "CRINGE_DATA_DIR": str(data_dir), "CRINGE_EXECUTOR": "ray",
           "CRINGE_DATA_ROOTS": str(SHARED_DATA.resolve()),
           "CRINGE_RAY_DASHBOARD_PORT": str(_free_port())}
    env.pop("RAY_ADDRESS", None)  # a head of its own, not a cluster this shell points at
    cli = [sys.executable, "-m", "service.cli"]
    subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True)
    key = subprocess.run([*cli, "keys", "create", "--project", "quickstart"], env=env,
                         check=True, capture_output=True, text=True).stdout.strip()
    log = (data_dir / "service.log").open("ab")
    server = subprocess.Popen([*cli, "serve", "--port", str(port)], env=env, stdout=log,
                              stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300  # the Ray head starts before the server answers
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited; see {data_dir / 'service.log'}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return server, key, url
        except httpx.TransportError:
            time.sleep(1)
    raise SystemExit(f"the server did not respond within 300 s; see {data_dir / 'service.log'}")


def _follow(client: httpx.Client, job_id: str, timeout_s: float) -> dict[str, Any]:
    last = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        shown = (job["status"], job.get("phase"), (job.get("progress") or {}).get("round"))
        if shown != last:
            print(f"  {time.strftime('%H:%M:%S')} status {shown[0]}, phase {shown[1]}, "
                  f"round {shown[2]}", flush=True)
            last = shown
        if job["status"] in TERMINAL:
            return job
        time.sleep(2)
    raise SystemExit(f"job {job_id} did not finish within {timeout_s:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=REPO_ROOT / "examples" / "iterate.yaml")
    parser.add_argument("--data-dir", type=Path, help="service folder (default: a new one)")
    parser.add_argument("--timeout-s", type=float, default=3600)
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="cringe-quickstart-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    spec = _absolute_paths(yaml.safe_load(args.spec.read_text(encoding="utf-8")))

    started = time.monotonic()
    server, key, url = _start_server(data_dir, _free_port())
    print(f"server up in {time.monotonic() - started:.0f} s (folder {data_dir})")
    try:
        with httpx.Client(base_url=url, timeout=30,
                          headers={"Authorization": f"Bearer {key}"}) as client:
            response = client.post("/v1/jobs", json={"spec": spec})
            if response.status_code != 201:
                raise SystemExit(f"submit failed with HTTP {response.status_code}: {response.text}")
            job_id = response.json()["id"]
            print(f"submitted {job_id}")
            job = _follow(client, job_id, args.timeout_s)
            evaluations = client.get(f"/v1/jobs/{job_id}/evaluations").json()["data"]
    finally:
        server.send_signal(signal.SIGTERM)  # the server stops its Ray head on the way out
        server.wait(timeout=120)
    print(f"job {job['status']} after {time.monotonic() - started:.0f} s in all")
    if job["status"] != "succeeded":
        print(f"error: {job.get('error')}", file=sys.stderr)
        return 1
    print("round  win rate  interval          n")
    for row in sorted(evaluations, key=lambda e: e["round"] or 0):
        print(f"{row['round']:>5}  {row['win_rate']:8.3f}  [{row['ci_low']:.3f}, "
              f"{row['ci_high']:.3f}]  {row['n']:>4}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
