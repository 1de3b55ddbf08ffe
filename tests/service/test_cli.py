"""The service's commands: db upgrade and downgrade, keys create, serve's schema check."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from sqlalchemy import select

from service.cli import main, register
from service.db import Database
from service.models import ApiKey
from service.settings import Settings
from tests.service.conftest import DatabaseFactory


@pytest.fixture
def empty_url(database_factory: DatabaseFactory, monkeypatch: pytest.MonkeyPatch,
              tmp_path: Path) -> str:
    url = database_factory.empty()
    monkeypatch.setenv("CRINGE_DATABASE_URL", url)
    monkeypatch.setenv("CRINGE_DATA_DIR", str(tmp_path))
    return url


def test_register_adds_commands() -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["keys", "create", "--project", "alpha"])
    assert args.project == "alpha"
    assert callable(args.handler)
    assert parser.parse_args(["db", "downgrade", "base"]).revision == "base"
    assert parser.parse_args(["serve", "--port", "9000"]).port == 9000


def test_keys_create_prints_key_once(empty_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade"]) == 0
    assert main(["keys", "create", "--project", "alpha"]) == 0
    secret = capsys.readouterr().out.strip().splitlines()[-1]
    db = Database(Settings())
    with db.read() as session:
        stored = list(session.execute(select(ApiKey.key_hash, ApiKey.prefix)))
    db.dispose()
    assert secret.startswith("ck_")
    assert len(stored) == 1
    assert secret not in {value for row in stored for value in row}


def test_keys_create_refuses_unmigrated(empty_url: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--project", "alpha"]) == 1
    assert "cringe db upgrade" in capsys.readouterr().err


def test_serve_refuses_unmigrated(empty_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve"]) == 1
    assert "run `cringe db upgrade`" in capsys.readouterr().err


def test_db_downgrade_to_base(empty_url: str) -> None:
    assert main(["db", "upgrade"]) == 0
    assert main(["db", "downgrade", "base"]) == 0
    assert main(["keys", "create", "--project", "alpha"]) == 1
