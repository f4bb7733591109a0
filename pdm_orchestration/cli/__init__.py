"""The `pdm-orch` command. Each module of this package adds its commands to `main`."""

from pdm_orchestration.cli import db, features, ingest, plant, simulate  # noqa: F401  (register commands)
from pdm_orchestration.cli.base import main

__all__ = ["main"]
