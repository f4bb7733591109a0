"""`pdm-orch evaluate cmapss`: run-to-failure data through Modbus, the database and the models."""

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from pdm_orchestration.cli import main
from pdm_orchestration.modbus.replay import DatasetError
from pdm_orchestration.models.evaluate import find_files

MINI = Path(__file__).resolve().parents[1] / "data" / "cmapss-mini"


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_the_replayed_path_agrees_with_the_text_files(
    database: str, tmp_path: Path, clean_env: Path, request: pytest.FixtureRequest
) -> None:
    options = [
        "--workdir",
        str(tmp_path / "work"),
        "--port",
        "5093" if database == "sqlite" else "5094",
    ]
    if database == "postgresql":
        options += ["--database-url", request.getfixturevalue("fresh_pg_url")]
    result = CliRunner().invoke(main, ["evaluate", "cmapss", str(MINI), *options])
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    match = re.fullmatch(
        r"RESULT rmse_capped=(\S+) rmse_raw=(\S+) mae=(\S+) phm08=(\S+) rmse_in_memory_capped=(\S+)",
        last,
    )
    assert match, last
    capped, raw, mae, phm08, in_memory = map(float, match.groups())
    # Through Modbus (float32 registers), the database and the stored features, the model is
    # the same one the text files give in memory.
    assert abs(capped - in_memory) < 0.05
    assert 0 < capped < 60 and raw >= 0 and mae > 0 and phm08 > 0
    assert "6 test engines" in result.output and "8 engines" in result.output
    assert re.search(r"  cycle \d+ of 287\n", result.output)  # progress while it replays
    # Every cycle of every engine once, 24 values each (the repeats of finished engines not
    # counted): the rows of the files, as the database holds them.
    for name, engines in (("train_FD001.txt", 8), ("test_FD001.txt", 6)):
        cycles = sum(1 for line in (MINI / name).read_text().splitlines() if line.strip())
        assert f"  {cycles * 24} readings of {engines} engines stored" in result.output


def test_a_folder_that_is_not_a_cmapss_subset(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="exactly one C-MAPSS subset"):
        find_files(tmp_path)
    for name in ("train_FD001.txt", "test_FD001.txt", "RUL_FD001.txt"):
        shutil.copy(MINI / name, tmp_path / name)
    assert find_files(tmp_path).subset == "FD001"
    (tmp_path / "train_FD002.txt").write_text("")
    assert find_files(tmp_path).subset == "FD001"  # FD002 is incomplete: ignored
    result = CliRunner().invoke(main, ["evaluate", "cmapss", str(tmp_path / "missing")])
    assert result.exit_code != 0 and "not a folder" in result.output
    bad = CliRunner().invoke(
        main, ["evaluate", "cmapss", str(MINI), "--database-url", "mysql://u@127.0.0.1/x"]
    )
    assert bad.exit_code != 0
    assert bad.output.strip().splitlines()[-1].startswith("error: --database-url=mysql://")


def test_evaluate_refuses_a_database_that_holds_a_plant(
    engine, db_url: str, tmp_path: Path
) -> None:
    from pdm_orchestration.plant.config import load_plant
    from pdm_orchestration.plant.registry import apply_plant
    from pdm_orchestration_tests.conftest import EXAMPLE_PLANT

    apply_plant(engine, load_plant(EXAMPLE_PLANT))
    result = CliRunner().invoke(
        main,
        ["evaluate", "cmapss", str(MINI), "--database-url", db_url, "--workdir", str(tmp_path)],
    )
    assert result.exit_code != 0
    assert "device(s) of another plant" in result.output.strip().splitlines()[-1]
    with engine.connect() as conn:  # nothing was deactivated
        assert conn.exec_driver_sql("SELECT count(*) FROM devices WHERE active").scalar() == 12
