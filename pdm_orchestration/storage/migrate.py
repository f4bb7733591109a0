"""Running the Alembic migrations programmatically (what `pdm-orch db ...` calls)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
# Not Alembic's default `alembic_version`: Dagster's and MLflow's stores keep theirs under that
# name, and either may share the database.
VERSION_TABLE = "pdm_schema_version"


def _config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Migrate the database up to `revision`; return the revision it is at afterwards."""
    log.info("upgrading %s to %s", engine.url.render_as_string(hide_password=True), revision)
    command.upgrade(_config(engine), revision)
    return current_revision(engine)


def downgrade(engine: Engine, revision: str = "-1") -> str | None:
    """Migrate the database down to `revision` (`base` removes every table)."""
    log.info("downgrading %s to %s", engine.url.render_as_string(hide_password=True), revision)
    command.downgrade(_config(engine), revision)
    return current_revision(engine)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def head_revision() -> str | None:
    """The newest revision this code ships."""
    return ScriptDirectory.from_config(_config_without_engine()).get_current_head()


def _config_without_engine() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config
