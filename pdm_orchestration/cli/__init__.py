"""The `pdm-orch` command. Each module of this package adds its commands to `main`."""

from pdm_orchestration.cli import (  # noqa: F401  (register commands)
    alerts,
    db,
    demo,
    dev,
    features,
    ingest,
    models,
    plant,
    simulate,
)
from pdm_orchestration.cli.base import main

__all__ = ["main"]
