"""Alembic, driven from code: upgrade, downgrade and the "is the schema current" check.

The migration scripts live in `alembic/` at the repository root, next to `alembic.ini`,
so the `alembic` command works there too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "alembic"
UPGRADE_COMMAND = "cringe db upgrade"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser treats % as interpolation; a password may contain one.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


@dataclass(frozen=True)
class SchemaState:
    current: str | None
    head: str | None
    current_is_known: bool = True  # False when a newer server migrated the database

    @property
    def is_current(self) -> bool:
        return self.current is not None and self.current == self.head

    def describe(self) -> str:
        if self.is_current:
            return f"database schema is at the latest migration ({self.head})"
        found = self.current or "empty (no migrations applied)"
        if not self.current_is_known:
            return (
                f"database schema is at migration {self.current}, which this server does not "
                f"know (its latest is {self.head}); run a server version that has it"
            )
        return (
            f"database schema is {found}, but this server needs migration {self.head}; "
            f"run `{UPGRADE_COMMAND}` with the same CRINGE_DATABASE_URL, then start again"
        )


def schema_state(engine: Engine) -> SchemaState:
    """Compare the revision stamped in the database with the newest migration script."""
    script = ScriptDirectory.from_config(alembic_config(str(engine.url)))
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    known = {revision.revision for revision in script.walk_revisions()}
    return SchemaState(current=current, head=script.get_current_head(),
                       current_is_known=current is None or current in known)
