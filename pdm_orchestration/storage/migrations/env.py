"""Alembic environment: migrations run on the engine handed over by `storage.migrate`."""

from __future__ import annotations

from alembic import context

from pdm_orchestration.storage.migrate import VERSION_TABLE
from pdm_orchestration.storage.schema import metadata

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # SQLite changes a table by copying it: with foreign keys enforced, dropping the old copy
        # would fire ON DELETE SET NULL in the tables that refer to it. (A PRAGMA outside a
        # transaction; it takes no effect inside one.)
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
    with connection.begin():
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=sqlite,
            compare_type=True,
            version_table=VERSION_TABLE,
        )
        context.run_migrations()
    if sqlite:
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()
