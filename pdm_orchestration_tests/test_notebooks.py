"""Every notebook runs top to bottom, and is kept in git without outputs."""

from pathlib import Path

import nbclient
import nbformat
import pytest

from pdm_orchestration_tests.conftest import PROJECT_ROOT

NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stripped_and_runs(path: Path, clean_env: Path) -> None:
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
