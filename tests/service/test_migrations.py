"""Alembic: upgrade on an empty database, down and up again, and models equal migrations."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from service.app import SchemaNotCurrent, check_schema, create_app
from service.db import Database, make_engine
from service.migrations import downgrade, schema_state, upgrade
from service.models import Base
from service.settings import Settings
from tests.service.conftest import DatabaseFactory


def differences(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_empty_database(database_factory: DatabaseFactory) -> None:
    url = database_factory.empty()
    upgrade(url)
    assert tables(url) >= set(Base.metadata.tables)
    assert differences(url) == []


def test_downgrade_and_upgrade_again(database_factory: DatabaseFactory) -> None:
    url = database_factory.empty()
    upgrade(url)
    downgrade(url, "base")
    assert tables(url) <= {"alembic_version"}
    upgrade(url)
    assert differences(url) == []


def test_app_refuses_unmigrated_schema(database_factory: DatabaseFactory,
                                       tmp_path: Path) -> None:
    settings = Settings(database_url=database_factory.empty(), data_dir=tmp_path,
                        dispatcher_enabled=False)
    db = Database(settings)
    with pytest.raises(SchemaNotCurrent, match="cringe db upgrade"):
        check_schema(db)
    assert not schema_state(db.engine).is_current
    db.dispose()

    from fastapi.testclient import TestClient

    with pytest.raises(SchemaNotCurrent), TestClient(create_app(settings)):
        pass
