"""Fixtures of the service tests: both databases, a data root, apps and live servers.

Every database test runs twice, on SQLite (a file) and on the PostgreSQL server at
127.0.0.1:5432. Each test session creates its own uniquely named PostgreSQL databases
and drops them at the end, so parallel runs do not collide. PostgreSQL being down fails
its tests when CI is set, and skips them with the reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.app import create_app
from service.auth import Principal, create_api_key
from service.db import Database
from service.executor import Executor
from service.migrations import upgrade
from service.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
HH_PAIRS = SHARED_DATA / "hh-rlhf" / "harmless-base-test.jsonl.gz"
FAKE_JOB = Path(__file__).resolve().parent / "fake_job.py"
POSTGRES_HOST = "127.0.0.1"
POSTGRES_PORT = 5432


def _postgres_admin_url(database: str = "test") -> str:
    user = os.environ.get("CRINGE_TEST_POSTGRES_USER", "postgres")
    return f"postgresql+psycopg://{user}@{POSTGRES_HOST}:{POSTGRES_PORT}/{database}"


def _postgres_problem() -> str | None:
    import psycopg

    try:
        with psycopg.connect(_postgres_admin_url().replace("+psycopg", ""), connect_timeout=3):
            return None
    except psycopg.Error as error:
        return str(error).strip()


class DatabaseFactory:
    """Fresh databases of one backend, migrated or empty.

    SQLite: a file each (a migrated one is a copy of a template). PostgreSQL: one database
    per test session holding a schema per fresh database, selected with search_path, so
    the session ends with a single DROP DATABASE.
    """

    def __init__(self, backend: str, workdir: Path) -> None:
        self.backend = backend
        self.workdir = workdir
        self.name = f"cringe_test_{uuid.uuid4().hex[:10]}"
        self._count = 0
        if backend == "postgresql":
            self._admin(f'CREATE DATABASE "{self.name}"')
        else:
            upgrade(self._sqlite_url("template"))

    def _sqlite_url(self, name: str) -> str:
        return f"sqlite:///{self.workdir / (name + '.db')}"

    def empty(self) -> str:
        self._count += 1
        if self.backend == "sqlite":
            return self._sqlite_url(f"db{self._count}")
        schema = f"s{self._count}"
        self._admin(f'CREATE SCHEMA "{schema}"', database=self.name)
        return _postgres_admin_url(self.name) + f"?options=-csearch_path%3D{schema}"

    def migrated(self) -> str:
        if self.backend == "sqlite":
            self._count += 1
            target = self.workdir / f"db{self._count}.db"
            shutil.copyfile(self.workdir / "template.db", target)
            return f"sqlite:///{target}"
        url = self.empty()
        upgrade(url)
        return url

    def _admin(self, statement: str, database: str = "test") -> None:
        import psycopg

        url = _postgres_admin_url(database).replace("+psycopg", "")
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(statement)

    def drop_all(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_factory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DatabaseFactory]:
    backend = request.param
    if backend == "postgresql":
        problem = _postgres_problem()
        if problem is not None:
            message = (f"PostgreSQL at {POSTGRES_HOST}:{POSTGRES_PORT} is not reachable "
                       f"({problem}); start it (.ci/run does) to run these tests")
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
    factory = DatabaseFactory(backend, tmp_path_factory.mktemp(f"db-{backend}"))
    yield factory
    if backend == "postgresql":
        factory.drop_all()


@pytest.fixture(scope="session")
def shared_database_url(database_factory: DatabaseFactory) -> str:
    """One migrated database per backend for tests that stay inside their own project."""
    return database_factory.migrated()


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with one file of each defect, next to the real data set."""
    root = tmp_path_factory.mktemp("data-root")
    shutil.copyfile(HH_PAIRS, root / "pairs.jsonl.gz")
    (root / "empty.jsonl").write_bytes(b"")
    (root / "blank.jsonl").write_text("  \n\n", encoding="utf-8")
    (root / "table.csv").write_text("prompt,chosen,rejected\n", encoding="utf-8")
    (root / "prose.jsonl").write_text("hello, not json\n", encoding="utf-8")
    (root / "truncated.jsonl.gz").write_bytes(HH_PAIRS.read_bytes()[:64])
    (root / "folder.jsonl").mkdir()
    (root / "models" / "tiny-policy").mkdir(parents=True)
    outside = tmp_path_factory.mktemp("outside-root") / "secret.jsonl"
    outside.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n', encoding="utf-8")
    (root / "link.jsonl").symlink_to(outside)
    return root


def make_settings(database_url: str, data_root: Path, workdir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "data_dir": workdir,
        "data_roots": [data_root],
        "dispatcher_enabled": False,
        "dispatch_interval_s": 0.05,
        "sse_poll_interval_s": 0.05,
        "db_pool_size": 4,
        "job_command": fake_job_command(),
        "gc_freeze": False,  # this process builds hundreds of apps
    }
    values.update(overrides)
    return Settings(**values)


def fake_job_command(*extra: str) -> list[str]:
    return [sys.executable, str(FAKE_JOB), "{spec}", "--output-dir", "{output_dir}", *extra]


@dataclass
class Api:
    """An app with its test client and an API key of a project of its own."""

    app: FastAPI
    client: TestClient
    settings: Settings
    db: Database
    principal: Principal
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def new_key(self, project: str | None = None) -> tuple[Principal, str]:
        return create_api_key(self.db, project or f"project-{uuid.uuid4().hex[:8]}")

    def submit(self, spec: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        body = {"spec": spec or {"dataset": {"path": "pairs.jsonl.gz"}}}
        response = self.client.post("/v1/jobs", json=body, headers=self.headers, **kwargs)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result


@pytest.fixture
def make_api(
    shared_database_url: str, data_root: Path, tmp_path: Path
) -> Iterator[Callable[..., Api]]:
    clients: list[TestClient] = []

    def build(database_url: str | None = None, executor: Executor | None = None,
              **overrides: Any) -> Api:
        settings = make_settings(database_url or shared_database_url, data_root, tmp_path,
                                 **overrides)
        app = create_app(settings, executor=executor)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        db: Database = app.state.db
        principal, key = create_api_key(db, f"project-{uuid.uuid4().hex[:12]}")
        return Api(app, client, settings, db, principal, key)

    yield build
    for client in reversed(clients):
        client.__exit__(None, None, None)


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api()


class LiveServer:
    """The app served by uvicorn on a free loopback port, in a thread of this process."""

    def __init__(self, settings: Settings, executor: Executor | None = None) -> None:
        self.app = create_app(settings, executor=executor)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning",
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the live server did not start")
            time.sleep(0.02)
        return self

    @property
    def url(self) -> str:
        socket = self.server.servers[0].sockets[0]
        host, port = socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def wait_for(condition: Callable[[], Any], timeout_s: float = 20.0, what: str = "",
             interval_s: float = 0.05,
             describe_timeout: Callable[[], str] | None = None) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout_s`.

    `describe_timeout`, when given, is called on a timeout and its text is added to the
    failure message.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"; {describe_timeout()}" if describe_timeout is not None else ""
            pytest.fail(f"timed out after {timeout_s} s waiting for {what or condition}{detail}")
        time.sleep(interval_s)


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """Check the status, the envelope and its code, and that no traceback leaked."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert error["code"] == code, error
    assert set(error) == {"code", "message", "param", "details", "request_id"}
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    assert 'File "' not in response.text
    return error
