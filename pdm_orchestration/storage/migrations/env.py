"""Alembic environment: migrations run on the engine handed over by `storage.migrate`."""

from __future__ import annotations

from alembic import context

from pdm_orchestration.storage.migrate import VERSION_TABLE
from pdm_orchestration.storage.schema import metadata

config = context.config
engine = config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        version_table=VERSION_TABLE,
    )
    context.run_migrations()
