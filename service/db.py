"""Engine and sessions, with the per-backend settings that concurrency depends on.

SQLite: WAL so readers never block the writer, foreign keys on, and write transactions
opened with BEGIN IMMEDIATE. A deferred transaction that reads and then writes fails at
once with "database is locked" when another writer got in between, while IMMEDIATE takes
the write lock up front and waits up to the busy timeout for it.
PostgreSQL: READ COMMITTED; races on a job are settled by compare-and-set on `version`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from service.settings import Settings

SQLITE_BUSY_TIMEOUT_S = 30.0
_WRITE_OPTION = "cringe_write"


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide where transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        write = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def make_engine(url: str, pool_size: int = 10, autocommit: bool = False) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        parsed_db = parsed.database or ""
        if parsed_db in ("", ":memory:"):
            raise ValueError(
                f"database_url {url!r} is an in-memory SQLite database, which each connection "
                "sees empty; give a file path such as sqlite:////var/lib/cringe/cringe.db"
            )
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}
        )
        _configure_sqlite(engine)
        return engine
    # No pre-ping: it costs a round trip per request. After the server restarts, the first
    # request on a dead connection fails with a 503 and SQLAlchemy discards the pool.
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_timeout=10,
                         **options)


class Database:
    """The engine plus two session factories: plain reads and write transactions."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or make_engine(settings.database_url, settings.db_pool_size)
        self.is_postgresql = self.engine.dialect.name == "postgresql"
        writer = self.engine.execution_options(**{_WRITE_OPTION: True})
        self.read_engine = self.engine
        if self.is_postgresql:
            # Each statement of a READ COMMITTED transaction gets its own snapshot anyway,
            # so reads lose nothing without BEGIN and COMMIT, and save two round trips.
            # A pool of their own keeps those connections in autocommit for good.
            self.read_engine = make_engine(settings.database_url, settings.db_pool_size,
                                           autocommit=True)
        self._read = sessionmaker(self.read_engine, expire_on_commit=False)
        self._write = sessionmaker(writer, expire_on_commit=False)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """Open a write transaction that commits on success and rolls back on any exception."""
        with self._write() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()


def insert_or_ignore(session: Session, table: Any) -> Any:
    """Return an INSERT that can take `.on_conflict_do_nothing()`, for the session's backend."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)
