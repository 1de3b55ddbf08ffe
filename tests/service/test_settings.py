"""Settings from CRINGE_* variables, and the schema check's advice."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import text

from service.db import make_engine
from service.migrations import schema_state
from service.settings import Settings
from tests.service.conftest import Api, DatabaseFactory, assert_error


def test_lists_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRINGE_DATA_ROOTS", "/data/a:/data/b")
    monkeypatch.setenv("CRINGE_MODELS", "tiny, other/model")
    settings = Settings()
    assert settings.data_roots == [Path("/data/a"), Path("/data/b")]
    assert settings.models == ["tiny", "other/model"]


def test_defaults_under_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path / 'cringe.db'}"
    assert settings.data_roots == [tmp_path / "datasets"]
    assert settings.output_root == tmp_path / "runs"


def test_job_command_needs_placeholders() -> None:
    with pytest.raises(ValidationError, match="lacks"):
        Settings(job_command=["cringe", "train"])


def test_in_memory_sqlite_rejected() -> None:
    with pytest.raises(ValueError, match="in-memory"):
        make_engine("sqlite://")


def test_newer_schema_named(database_factory: DatabaseFactory) -> None:
    url = database_factory.migrated()
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    state = schema_state(engine)
    engine.dispose()
    assert not state.is_current
    assert "does not know" in state.describe()


def test_local_executor_refuses_iterate(make_api: Callable[..., Api]) -> None:
    api = make_api(dispatcher_enabled=False)
    response = api.client.post("/v1/jobs", json={"spec": {"kind": "iterate"}},
                               headers=api.headers)
    body = assert_error(response, 422, "unsupported_kind")
    assert "CRINGE_EXECUTOR=ray" in body["message"]


def test_executor_setting_rejects_unknown() -> None:
    with pytest.raises(ValidationError, match="executor"):
        Settings(executor="kubernetes")  # type: ignore[arg-type]
