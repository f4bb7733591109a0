"""Every notebook runs top to bottom, and is kept in git without outputs."""

from datetime import timedelta
from pathlib import Path

import nbclient
import nbformat
import pytest

from pdm_orchestration_tests.conftest import PROJECT_ROOT

NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS


def exploration_database(folder: Path) -> str:
    """A plant with a known history, trained models and their predictions (what the device
    exploration notebook reads)."""
    from pdm_orchestration.models import champion, scoring, training
    from pdm_orchestration.models.tracking import ModelStore
    from pdm_orchestration.storage import migrate
    from pdm_orchestration.storage.engine import make_engine
    from pdm_orchestration_tests.models.history import DAYS, T0, seed_history

    url = f"sqlite:///{folder / 'exploration.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    seed_history(engine, folder)
    store = ModelStore(f"sqlite:///{folder / 'mlflow.db'}")
    for family in ("rul", "anomaly"):
        training.train(engine, store, training.TrainConfig.for_family(family))
        champion.promote(store, family, force=True)
    models, _ = scoring.load_models(store, ["rul", "anomaly"], "champion")
    scoring.score(engine, models, T0, T0 + timedelta(days=DAYS))
    engine.dispose()
    return url


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stripped_and_runs(
    path: Path, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if path.name == "device_exploration.ipynb":
        monkeypatch.setenv("PDM_NOTEBOOK_DATABASE_URL", exploration_database(clean_env))
    notebook = nbformat.read(path, as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code_cells)
    client = nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, when one fails
    text = "\n".join(output.get("text", "") for cell in code_cells for output in cell.outputs)
    assert "Traceback" not in text
    if path.name == "plant_register_map.ipynb":
        assert "second apply: 0 changes" in text
        assert "after the edit: 1 changes (points versioned 1)" in text
        images = [o for c in code_cells for o in c.outputs if "image/png" in o.get("data", {})]
        assert images, "the register layout plot was not drawn"
    if path.name == "device_exploration.ipynb":
        assert "readings of 3 sensors" in text and "12 maintenance events" not in text
        assert "4 maintenance events" in text  # two failures, two repairs
        assert "feature windows of 60min/10min" in text
        assert "predictions from 2 models" in text
        images = [o for c in code_cells for o in c.outputs if "image/png" in o.get("data", {})]
        assert len(images) == 3, "readings, features and predictions are each plotted"
