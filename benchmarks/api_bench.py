"""Latency and throughput of the REST service on PostgreSQL, over loopback.

Creates a database of its own, seeds it in bulk (COPY) with `--jobs` jobs and
`--points` metric points, starts `uvicorn service.app:create_app` with `--workers`
processes, and drives each endpoint with `--clients` keep-alive connections:

  GET  /v1/jobs/{id}                     a random seeded job
  GET  /v1/jobs?limit=50                 the first page
  GET  /v1/jobs/{id}/metrics?name=loss&limit=100   a job holding the metric points
  POST /v1/internal/jobs/{id}/metrics    a batch of 100 points, one running job per client

Each endpoint runs closed-loop for `--duration-s`: each client sends its next request as
soon as the response to its last one arrives, which gives the maximum throughput and its
latency. With `--rates R1,R2`, GET /v1/jobs/{id} also runs open-loop at each rate (in
requests per second), with latency measured from each request's scheduled start so that
a stall is not hidden. The requests/s column of such a run counts until the last reply,
so it falls below the rate when the server falls behind.

    python benchmarks/api_bench.py --jobs 10000 --points 1000000 --clients 50

The database is dropped at the end unless `--keep` is given. Prints a Markdown table;
`--write-readme` also puts it in benchmarks/README.md under "API service".
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from service.auth import WORKER_TOKEN_PREFIX, create_api_key, hash_secret, new_secret  # noqa: E402
from service.db import Database  # noqa: E402
from service.ids import new_id  # noqa: E402
from service.migrations import upgrade  # noqa: E402
from service.settings import Settings  # noqa: E402

SPEC = {"kind": "train", "dataset": {"path": "/data/pairs.jsonl"}, "loss": {"name": "dpo"}}
METRIC_NAMES = ("loss", "reward_margin")


@dataclass
class Seeded:
    key: str
    job_ids: list[str]
    metric_job_ids: list[str]
    workers: list[tuple[str, str]]  # (job id, worker token) of running jobs


def seed(admin_url: str, database: str, jobs: int, points: int, clients: int) -> Seeded:
    """Fill the database with COPY: jobs, then metric points spread over 100 jobs."""
    url = admin_url.rsplit("/", 1)[0] + f"/{database}"
    upgrade(url.replace("postgresql://", "postgresql+psycopg://"))
    db = Database(
        Settings(
            database_url=url.replace("postgresql://", "postgresql+psycopg://"),
            dispatcher_enabled=False,
        )
    )
    principal, key = create_api_key(db, "bench")
    db.dispose()

    now = datetime.now(UTC)
    job_ids = [new_id("job") for _ in range(jobs)]
    running = set(job_ids[:clients])
    spec = json.dumps(SPEC)
    with psycopg.connect(url) as connection, connection.cursor() as cursor:
        with cursor.copy(
            "COPY jobs (id, project_id, kind, status, phase, version, attempt, last_event_seq,"
            " spec, resolved_spec, metadata, progress, latest_metrics, created_at, updated_at)"
            " FROM STDIN"
        ) as copy:
            for job_id in job_ids:
                status = "running" if job_id in running else "succeeded"
                copy.write_row(
                    (
                        job_id,
                        principal.project_id,
                        "train",
                        status,
                        "training",
                        3,
                        1,
                        0,
                        spec,
                        spec,
                        "{}",
                        '{"step": 100, "total_steps": 100}',
                        '{"loss": 0.5}',
                        now,
                        now,
                    )
                )
        workers = []
        with cursor.copy(
            "COPY attempts (id, job_id, number, token_hash, executor, resume, metrics_offset,"
            " launched_at) FROM STDIN"
        ) as copy:
            for job_id in job_ids[:clients]:
                token = new_secret(WORKER_TOKEN_PREFIX)
                workers.append((job_id, token))
                copy.write_row(
                    (new_id("att"), job_id, 1, hash_secret(token), "bench", False, 0, now)
                )
        metric_jobs = job_ids[clients : clients + 100]
        per_job = max(1, points // len(metric_jobs))
        steps = per_job // len(METRIC_NAMES)
        with cursor.copy(
            "COPY metric_points (job_id, step, name, iteration, attempt, value) FROM STDIN"
        ) as copy:
            for job_id in metric_jobs:
                for step in range(1, steps + 1):
                    for name in METRIC_NAMES:
                        copy.write_row((job_id, step, name, 0, 1, 1.0 / step))
        connection.commit()
        cursor.execute("ANALYZE")
    return Seeded(key, job_ids, metric_jobs, workers)


class Connection:
    """One keep-alive HTTP/1.1 connection; just enough client to measure a server."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, method: str, path: str, token: str, body: bytes = b"") -> int:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n"
        )
        if body:
            head += "Content-Type: application/json\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        await self.writer.drain()
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return status


@dataclass
class Result:
    name: str
    latencies_s: list[float]
    errors: int
    elapsed_s: float

    def row(self) -> str:
        ordered = sorted(self.latencies_s)
        p50 = statistics.median(ordered) * 1000
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
        rate = len(ordered) / self.elapsed_s
        return (
            f"| {self.name} | {len(ordered)} | {rate:,.0f} | {p50:.1f} | {p99:.1f} | "
            f"{self.errors} |"
        )


async def run_load(
    name: str,
    port: int,
    clients: int,
    duration_s: float,
    make_request: object,
    rate: float | None = None,
) -> Result:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration_s

    async def client(index: int) -> None:
        nonlocal errors
        connection = Connection("127.0.0.1", port)
        await connection.open()
        interval = clients / rate if rate else 0.0
        scheduled = time.perf_counter() + random.random() * interval
        sequence = 0
        while True:
            if rate:
                await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            start = scheduled if rate else time.perf_counter()
            if start > deadline:
                break
            method, path, token, body = make_request(index, sequence)  # type: ignore[operator]
            status = await connection.request(method, path, token, body)
            latencies.append(time.perf_counter() - start)
            errors += status >= 400
            sequence += 1
            scheduled += interval
        connection.writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return Result(name, latencies, errors, time.perf_counter() - started)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(url: str, workers: int, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CRINGE_DATABASE_URL": url,
        "CRINGE_DISPATCHER_ENABLED": "false",
        "CRINGE_DB_POOL_SIZE": "20",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "service.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=REPO_ROOT,
        env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                time.sleep(1.0)  # let every worker finish its start-up
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("the server did not start within 60 s")


def benchmark(args: argparse.Namespace, seeded: Seeded, port: int) -> list[Result]:
    key = seeded.key
    metric_steps: dict[int, int] = {}

    def get_job(_: int, __: int) -> tuple[str, str, str, bytes]:
        return "GET", f"/v1/jobs/{random.choice(seeded.job_ids)}", key, b""

    def list_jobs(_: int, __: int) -> tuple[str, str, str, bytes]:
        return "GET", "/v1/jobs?limit=50", key, b""

    def get_metrics(_: int, __: int) -> tuple[str, str, str, bytes]:
        job_id = random.choice(seeded.metric_job_ids)
        return "GET", f"/v1/jobs/{job_id}/metrics?name=loss&limit=100", key, b""

    def post_metrics(index: int, sequence: int) -> tuple[str, str, str, bytes]:
        job_id, token = seeded.workers[index % len(seeded.workers)]
        first = metric_steps.get(index, 0) + 1
        metric_steps[index] = first + 49
        points = [
            {"name": name, "step": step, "value": 0.1}
            for step in range(first, first + 50)
            for name in METRIC_NAMES
        ]
        body = json.dumps({"points": points}).encode()
        return "POST", f"/v1/internal/jobs/{job_id}/metrics", token, body

    plans: list[tuple[str, Any, float | None]] = [
        ("GET /v1/jobs/{id}", get_job, None),
        *[(f"GET /v1/jobs/{{id}} at a fixed {rate:,.0f} req/s", get_job, rate)
          for rate in args.rates],
        ("GET /v1/jobs?limit=50", list_jobs, None),
        ("GET /v1/jobs/{id}/metrics?name=loss&limit=100", get_metrics, None),
        # Writes go last: the rows they add leave PostgreSQL autovacuum work that would
        # compete for the CPU with the runs after them.
        ("POST /v1/internal/jobs/{id}/metrics (100 points)", post_metrics, None),
    ]
    # The load generator is Python too: freezing its start-up objects keeps its own
    # garbage collection pauses out of the latencies it measures.
    gc.collect()
    gc.freeze()
    results = []
    for name, make, rate in plans:
        if rate is None:
            asyncio.run(run_load(name, port, args.clients, 2.0, make))  # warm-up
        results.append(
            asyncio.run(run_load(name, port, args.clients, args.duration_s, make, rate=rate))
        )
        print(results[-1].row(), flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--admin-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="a database on the server to connect to for CREATE DATABASE",
    )
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--duration-s", type=float, default=15.0, help="per endpoint")
    parser.add_argument(
        "--rates",
        type=lambda text: [float(r) for r in text.split(",") if r.strip()],
        default=[400.0, 700.0, 1000.0],
        help="comma-separated fixed request rates of open-loop GET /v1/jobs/{id} runs",
    )
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args()

    database = f"cringe_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    server = None
    try:
        started = time.perf_counter()
        seeded = seed(args.admin_url, database, args.jobs, args.points, args.clients)
        seed_s = time.perf_counter() - started
        print(f"seeded {args.jobs:,} jobs and {args.points:,} points in {seed_s:.1f} s", flush=True)
        port = free_port()
        url = args.admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        server = start_server(f"{url}/{database}", args.workers, port)
        header = (
            "| endpoint | requests | requests/s | p50 ms | p99 ms | errors |\n"
            "|---|---:|---:|---:|---:|---:|"
        )
        print(header, flush=True)
        results = benchmark(args, seeded, port)
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        if not args.keep:
            with psycopg.connect(args.admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    table = "\n".join([header, *(result.row() for result in results)])
    settings_line = (
        f"{args.jobs:,} jobs, {args.points:,} metric points, {args.clients} "
        f"clients, {args.workers} uvicorn workers, {args.duration_s:g} s per "
        f"endpoint; seeding took {seed_s:.0f} s."
    )
    print(f"\n{settings_line}\n\n{table}")
    if args.write_readme:
        write_readme(settings_line, table)
    return 0


def write_readme(settings_line: str, table: str) -> None:
    path = REPO_ROOT / "benchmarks" / "README.md"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    marker_start, marker_end = "<!-- api-bench:start -->", "<!-- api-bench:end -->"
    block = f"{marker_start}\n{settings_line}\n\n{table}\n{marker_end}"
    if marker_start in text:
        before, rest = text.split(marker_start, 1)
        text = before + block + rest.split(marker_end, 1)[1]
    else:
        text = text.rstrip() + f"\n\n## API service\n\n{block}\n"
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
