"""`pdm-orch evaluate cmapss DIR`: NASA C-MAPSS run-to-failure data through the real path.

The training file is replayed through the PLC simulator (each engine a device, one cycle per poll,
float32 registers), polled over Modbus TCP into the database; each training engine's last cycle
becomes a failure in `maintenance_events`; feature windows (the last N cycles) are built and the
RUL model is trained by the same code as the `rul_model` asset, logged to MLflow. Then the test
file is replayed the same way and scored by the same code as `maintenance_predictions`, and the
predictions at each test engine's last cycle are compared with the RUL file.

Beside it, the same model configuration runs in memory on the text files (no Modbus, no database):
if the two disagree, the ingestion path distorts the data. Nothing is tuned on the test files.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pdm_orchestration.features.build import build_features
from pdm_orchestration.features.quality import QualityRules, judge
from pdm_orchestration.features.windows import SeriesInfo, WindowSpec, compute_windows
from pdm_orchestration.modbus.replay import (
    CMAPSS_COLUMNS,
    SENSORS,
    SETTINGS,
    DatasetError,
    ReplaySource,
    cmapss_plant,
    engine_name,
    read_cmapss,
    write_plant,
)
from pdm_orchestration.modbus.session import IngestStore, run_session
from pdm_orchestration.modbus.simulator import BackgroundSimulator, PlcSimulator, ValueSource
from pdm_orchestration.models import families, scoring, training
from pdm_orchestration.models.frames import add_age, frame_from_rows
from pdm_orchestration.models.labels import LabelConfig
from pdm_orchestration.models.tracking import CHALLENGER, ModelStore
from pdm_orchestration.plant.config import load_plant
from pdm_orchestration.plant.registry import apply_plant
from pdm_orchestration.storage import migrate
from pdm_orchestration.storage.engine import make_engine
from pdm_orchestration.storage.events import MaintenanceEvent, record_events
from pdm_orchestration.storage.schema import devices, maintenance_predictions, sensor_readings
from pdm_orchestration.storage.spool import Spool

log = logging.getLogger(__name__)

# The 14 sensors that carry FD001's degradation (the others are constant or noise; see the data's
# README): the common choice in the C-MAPSS literature, fixed before any run.
INFORMATIVE = tuple(f"sensor_{i}" for i in (2, 3, 4, 7, 8, 9, 11, 12, 13, 14, 15, 17, 20, 21))
TRAIN_START = datetime(2026, 1, 1, tzinfo=UTC)
TEST_START = datetime(2027, 1, 1, tzinfo=UTC)
CYCLE = timedelta(hours=1)
POLL_INTERVAL_S = 0.02


@dataclass(frozen=True)
class CmapssFiles:
    subset: str  # FD001, ...
    train: Path
    test: Path
    rul: Path


def find_files(folder: Path) -> CmapssFiles:
    """The train, test and RUL files of one C-MAPSS subset in `folder`."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder")
    found: dict[str, dict[str, Path]] = {}
    for path in folder.iterdir():
        match = re.fullmatch(r"(train|test|RUL)_(FD\d{3})\.txt", path.name)
        if match:
            found.setdefault(match.group(2), {})[match.group(1)] = path
    complete = {s: f for s, f in found.items() if set(f) == {"train", "test", "RUL"}}
    if len(complete) != 1:
        what = ", ".join(sorted(complete)) if complete else "none"
        raise DatasetError(
            f"{folder}: expected the train_, test_ and RUL_ files of exactly one C-MAPSS subset "
            f"(FDxxx); complete subsets found: {what}"
        )
    subset, files = next(iter(complete.items()))
    return CmapssFiles(subset, files["train"], files["test"], files["RUL"])


def read_truth(path: Path, units: int) -> np.ndarray:
    try:
        truth = np.loadtxt(path, ndmin=1)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a RUL file ({exc})") from None
    if len(truth) != units:
        raise DatasetError(f"{path}: {len(truth)} values for {units} test engines")
    return truth


@dataclass(frozen=True)
class EvalConfig:
    window: int = 30  # samples (cycles)
    rul_cap: float = 125.0
    sensors: tuple[str, ...] | None = INFORMATIVE  # None: every sensor that varies
    validation_devices: float = 0.2
    port: int = 5090


@dataclass
class EvalResult:
    subset: str
    rmse_capped: float
    rmse_raw: float
    mae: float
    phm08: float
    rmse_in_memory_capped: float
    rmse_in_memory_raw: float
    validation: dict[str, float]
    model: str
    version: str
    run_url: str
    readings: int
    engines_scored: int
    seconds: dict[str, float] = field(default_factory=dict)

    def result_line(self) -> str:
        return (
            f"RESULT rmse_capped={self.rmse_capped:.2f} rmse_raw={self.rmse_raw:.2f} "
            f"mae={self.mae:.2f} phm08={self.phm08:.0f} "
            f"rmse_in_memory_capped={self.rmse_in_memory_capped:.2f}"
        )


def train_config(subset: str, config: EvalConfig) -> training.TrainConfig:
    """The RUL model of an evaluation: what both the database and the in-memory path train."""
    return training.TrainConfig(
        family="rul",
        window_spec=f"{config.window}samples",
        sensors=config.sensors,
        labels=LabelConfig(
            horizon=float(config.window),
            rul_cap=config.rul_cap,
            validation_devices=config.validation_devices,
            validation_time=0.0,  # every engine starts at cycle 1: split by engine only
        ),
        # Validate on held-out engines, then fit the final model on every training engine, as
        # C-MAPSS results are reported (the test files are the hold-out).
        refit_on_all=True,
    )


def evaluate(
    folder: Path,
    workdir: Path,
    *,
    database_url: str | None = None,
    mlflow_uri: str | None = None,
    config: EvalConfig | None = None,
    say: Callable[[str], None] = log.info,
) -> EvalResult:
    """Run the whole evaluation (see the module docstring); `say` reports progress."""
    config = config or EvalConfig()
    files = find_files(folder)
    train_frame, test_frame = read_cmapss(files.train), read_cmapss(files.test)
    truth = read_truth(files.rul, test_frame["unit"].nunique())
    fresh = database_url is None
    if fresh:
        shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(database_url or f"sqlite:///{workdir / 'cmapss.db'}")
    store = ModelStore(
        mlflow_uri or f"sqlite:///{workdir / 'mlflow.db'}",
        experiment=f"cmapss-{files.subset.lower()}",
        prefix=f"cmapss_{files.subset.lower()}",
    )
    store.check()
    seconds: dict[str, float] = {}
    spec = WindowSpec.of_samples(config.window)
    try:
        migrate.upgrade(engine)
        _own_database(engine, files.subset)
        clock = _Clock(seconds)
        with clock("replay_train"):
            say(f"replaying {files.train.name} ({train_frame['unit'].nunique()} engines) ...")
            train_names, readings = _replay(
                engine, train_frame, f"{files.subset}_train", TRAIN_START, workdir, config, say
            )
        last = train_frame.groupby("unit")["cycle"].max()
        record_events(
            engine,
            [
                MaintenanceEvent(
                    train_names[unit],
                    TRAIN_START + int(cycle) * CYCLE,
                    "failure",
                    "engine",
                    f"C-MAPSS {files.subset}: last recorded cycle {int(cycle)}",
                    source="c-mapss",
                )
                for unit, cycle in last.items()
            ],
        )
        with clock("features_train"):
            build_features(
                engine,
                spec,
                TRAIN_START,
                TRAIN_START + int(last.max()) * CYCLE,
                default_interval_s=CYCLE.total_seconds(),
            )
        with clock("train"):
            say("training the RUL model ...")
            trained = training.train(
                engine, store, train_config(files.subset, config), tags={"evaluation": "cmapss"}
            )
        with clock("replay_test"):
            say(f"replaying {files.test.name} ({test_frame['unit'].nunique()} engines) ...")
            test_names, test_readings = _replay(
                engine, test_frame, f"{files.subset}_test", TEST_START, workdir, config, say
            )
        test_end = TEST_START + int(test_frame["cycle"].max()) * CYCLE
        with clock("features_test"):
            build_features(
                engine, spec, TEST_START, test_end, default_interval_s=CYCLE.total_seconds()
            )
        with clock("score"):
            model = store.load("rul", alias=CHALLENGER)
            assert model is not None
            scoring.score(engine, [model], TEST_START, test_end)
            predicted = _last_predictions(engine, model.name, model.version, test_names)
        with clock("in_memory"):
            say("the same model in memory, from the text files ...")
            reference = in_memory_predictions(train_frame, test_frame, files.subset, config)
    finally:
        engine.dispose()
    units = sorted(test_frame["unit"].unique())
    through = np.array([predicted.get(test_names[u], np.nan) for u in units])
    if np.isnan(through).any():
        missing = [test_names[u] for u, v in zip(units, through, strict=True) if np.isnan(v)]
        raise RuntimeError(f"no prediction at the last cycle of: {', '.join(missing[:10])}")
    capped = np.minimum(truth, config.rul_cap)
    raw = families.rul_errors(through, truth)
    memory = reference.reindex(units).to_numpy()
    return EvalResult(
        subset=files.subset,
        rmse_capped=families.rul_errors(through, capped)["rmse"],
        rmse_raw=raw["rmse"],
        mae=raw["mae"],
        phm08=raw["phm08"],
        rmse_in_memory_capped=families.rul_errors(memory, capped)["rmse"],
        rmse_in_memory_raw=families.rul_errors(memory, truth)["rmse"],
        validation=trained.metrics,
        model=trained.logged.name,
        version=trained.logged.version,
        run_url=trained.logged.url,
        readings=readings + test_readings,
        engines_scored=len(units),
        seconds=seconds,
    )


class EvaluationError(ValueError):
    """The evaluation cannot run where it was pointed (the message says why)."""


def _own_database(engine: Engine, subset: str) -> None:
    """The evaluation applies plants of its own, which deactivate every other device: it needs a
    database of its own (or one it used before)."""
    with engine.connect() as connection:
        names = connection.execute(sa.select(devices.c.name)).scalars().all()
    foreign = [n for n in names if not n.startswith((f"{subset}_train_", f"{subset}_test_"))]
    if foreign:
        raise EvaluationError(
            f"the database holds {len(foreign)} device(s) of another plant (first: {foreign[0]}): "
            "the evaluation would deactivate them; give it an empty database"
        )


class _Clock:
    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds = seconds

    def __call__(self, name: str):
        import contextlib
        import time

        @contextlib.contextmanager
        def timed():
            began = time.perf_counter()
            try:
                yield
            finally:
                self.seconds[name] = round(time.perf_counter() - began, 1)

        return timed()


class _Renamed(ValueSource):
    """A replay source under the evaluation's device names."""

    def __init__(self, source: ReplaySource, names: dict[str, str]) -> None:
        self.source = source
        self.original = {new: old for old, new in names.items()}

    def values(self, device: str, kind: str, first: int, last: int) -> dict[str, float | str]:
        return self.source.values(self.original[device], kind, first, last)


def _replay(
    engine: Engine,
    frame: pd.DataFrame,
    prefix: str,
    start: datetime,
    workdir: Path,
    config: EvalConfig,
    say: Callable[[str], None],
) -> tuple[dict[int, str], int]:
    """Serve `frame` from the simulator and poll it into the database until every engine has
    served its last cycle; returns the device name of each unit and the readings written."""
    units = sorted(frame["unit"].unique())
    names = {int(u): f"{prefix}_{int(u):03d}" for u in units}
    plant_dict = cmapss_plant(frame, port=config.port, name=prefix.lower())
    by_old = {engine_name(u): names[u] for u in units}
    for device in plant_dict["devices"]:
        device["id"] = by_old[device["id"]]
    for point in plant_dict["points"]:
        point["device"] = by_old[point["device"]]
    path = workdir / f"{prefix}.yaml"
    write_plant(plant_dict, path, Path(f"{prefix} (evaluation)"))
    plant = load_plant(path)
    apply_plant(engine, plant)
    source = ReplaySource(frame, start=start, cycle_seconds=CYCLE.total_seconds())
    cycles = int(frame["cycle"].max())
    simulator = PlcSimulator(plant, _Renamed(source, by_old))
    spool = Spool(workdir / "spool" / f"{prefix}.sqlite3")
    try:
        store = IngestStore(engine, plant, spool)
        with BackgroundSimulator(simulator):

            async def session():
                stop = asyncio.Event()

                async def watch() -> None:
                    shown = 0
                    while not source.finished:
                        await asyncio.sleep(0.05)
                        done = max(e.position for e in source.engines.values()) + 1
                        if done >= shown + 50:
                            shown = done - done % 50
                            say(f"  cycle {shown} of {cycles}")
                    stop.set()

                watcher = asyncio.create_task(watch())
                try:
                    return await run_session(
                        plant, store, duration_s=None, interval_s=POLL_INTERVAL_S, stop=stop
                    )
                finally:
                    watcher.cancel()

            result = _run_in_thread(session)
        if result.store.spooled or result.spool_pending:
            store.flush_spool()
        expected = len(frame) * len(SETTINGS + SENSORS)  # the clock point is not stored
        # Rows in the table, not rows sent: an engine past its last cycle serves that cycle again
        # until all are done, and the unique key absorbs the repeats.
        with engine.connect() as conn:
            written = conn.execute(
                sa.select(sa.func.count())
                .select_from(
                    sensor_readings.join(devices, devices.c.id == sensor_readings.c.device_id)
                )
                .where(devices.c.name.in_(list(names.values())))
            ).scalar_one()
        if written != expected:
            raise RuntimeError(
                f"replay of {prefix}: {written} readings stored, {expected} expected "
                f"({result.poll.bad_readings} not good)"
            )
        say(f"  {written} readings of {len(units)} engines stored ({result.summary()})")
    finally:
        spool.close()
    return names, written


def _run_in_thread(factory):
    """Run an asyncio coroutine to completion in a thread of its own (the caller may already be
    inside an event loop, as Dagster's or a notebook's)."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["result"] = asyncio.run(factory())
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="pdm-evaluate-session")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]


def _last_predictions(
    engine: Engine, model_name: str, version: str, names: dict[int, str]
) -> dict[str, float]:
    """RUL at each device's last scored window."""
    p, d = maintenance_predictions.c, devices.c
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(d.name, p.window_end, p.rul_estimate)
            .join(devices, d.id == p.device_id)
            .where(p.model_name == model_name, p.model_version == version)
            .where(d.name.in_(list(names.values())))
            .order_by(d.name, p.window_end)
        ).all()
    out: dict[str, float] = {}
    for name, _, rul in rows:
        out[name] = np.nan if rul is None else float(rul)
    return out


def in_memory_predictions(
    train_frame: pd.DataFrame, test_frame: pd.DataFrame, subset: str, config: EvalConfig
) -> pd.Series:
    """RUL at each test unit's last cycle from the text files alone, by the same feature,
    data-quality, label and training code, without Modbus or a database. Values are taken at the
    precision the replayed registers declare (float32), so both paths see the same numbers."""
    spec = WindowSpec.of_samples(config.window)
    cfg = train_config(subset, config)
    rules = QualityRules()

    def model_frame(frame: pd.DataFrame, start: datetime) -> pd.DataFrame:
        long = frame.melt(
            id_vars=["unit", "cycle"],
            value_vars=[c for c in CMAPSS_COLUMNS if c not in ("unit", "cycle")],
            var_name="sensor",
            value_name="value",
        )
        long["value"] = long["value"].astype(np.float32).astype(np.float64)
        long["device_id"] = long["unit"].astype(np.int64)
        long["ts"] = pd.Timestamp(start) + pd.to_timedelta(long["cycle"], unit="h")
        long["quality"] = "good"
        long["register_map_id"] = 1.0
        end = start + int(frame["cycle"].max() + 1) * CYCLE
        rows = compute_windows(long, spec, start, end, SeriesInfo({}, {}, {}, set())).rows
        names = {int(u): f"unit_{int(u):03d}" for u in frame["unit"].unique()}
        return frame_from_rows(rows, names, flags=judge(rows, rules, by_samples=True))

    no_events = pd.DataFrame(columns=["device_id", "device", "event_time", "kind"])
    train_rows = add_age(model_frame(train_frame, TRAIN_START), no_events, spec)
    last = train_frame.groupby("unit")["cycle"].max()
    events = pd.DataFrame(
        {
            "device_id": last.index.astype(np.int64),
            "device": [f"unit_{int(u):03d}" for u in last.index],
            "event_time": [pd.Timestamp(TRAIN_START) + int(c) * CYCLE for c in last.to_numpy()],
            "kind": "failure",
        }
    )
    data = training.assemble(train_rows, events, cfg)
    fitted = training.fit(data)
    test_rows = add_age(model_frame(test_frame, TEST_START), no_events, spec)
    final = test_rows.sort_values("window_end").groupby("device_id").tail(1)
    outputs = families.predict(
        "rul",
        fitted.pipeline,
        final[fitted.columns].reset_index(drop=True),
        cfg.risk,
        cfg.labels.horizon,
    )
    return pd.Series(outputs.rul_estimate, index=final["device_id"].to_numpy()).sort_index()
