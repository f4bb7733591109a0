"""A plant with a known history in a migrated database, and a local MLflow store."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from pdm_orchestration.models.tracking import ModelStore
from pdm_orchestration_tests.models.history import seed_history


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    """A fresh MLflow tracking store (SQLite) with its artifacts beside it."""
    return ModelStore(f"sqlite:///{tmp_path / 'mlflow.db'}")


@pytest.fixture
def history(engine: Engine, tmp_path: Path) -> Iterator[Engine]:
    """The database of `engine` holding the six pumps' three days, features built."""
    seed_history(engine, tmp_path)
    yield engine
