"""Running the Alembic migrations programmatically (what `pdm-orch db ...` calls)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
# Not Alembic's default `alembic_version`: Dagster's and MLflow's stores keep theirs under that
# name, and either may share the database.
VERSION_TABLE = "pdm_schema_version"


class MigrationError(RuntimeError):
    """A migration that cannot be made (an unknown revision, nothing to go back to)."""


def _config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Migrate the database up to `revision`; return the revision it is at afterwards."""
    log.info("upgrading %s to %s", engine.url.render_as_string(hide_password=True), revision)
    try:
        command.upgrade(_config(engine), revision)
    except CommandError as exc:
        raise MigrationError(_one_line(exc)) from None
    return current_revision(engine)


def downgrade(engine: Engine, revision: str = "-1") -> str | None:
    """Migrate the database down to `revision` (`base` removes every table)."""
    log.info("downgrading %s to %s", engine.url.render_as_string(hide_password=True), revision)
    back = re.fullmatch(r"-(\d+)", revision)  # relative: that many migrations back
    at = current_revision(engine) if back else None
    if back and at is None:
        raise MigrationError("nothing to downgrade: the database is at base")
    try:
        command.downgrade(_config(engine), revision)
    except CommandError as exc:
        if back and "didn't produce" in str(exc):
            raise MigrationError(
                f"cannot go back {back[1]} migrations: the database is at {at}"
            ) from None
        raise MigrationError(_one_line(exc)) from None
    return current_revision(engine)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def head_revision() -> str | None:
    """The newest revision this code ships."""
    return _scripts().get_current_head()


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config_without_engine())


def _config_without_engine() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config
