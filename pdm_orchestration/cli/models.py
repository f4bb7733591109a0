"""`pdm-orch models ...`, `pdm-orch predict` and `pdm-orch evaluate cmapss`."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from pdm_orchestration.cli.base import CliError, engine_for, main, pass_settings
from pdm_orchestration.cli.features import _time
from pdm_orchestration.settings import Settings

log = logging.getLogger(__name__)
FAMILY_NAMES = ("rules", "anomaly", "failure_risk", "rul")


def model_store(settings: Settings):
    from pdm_orchestration.models.tracking import ModelStore

    assert settings.mlflow_tracking_uri is not None
    return ModelStore(settings.mlflow_tracking_uri)


def _tracking_errors(fn):
    """Turn the models' own errors into one-line CLI errors."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from pdm_orchestration.models.champion import PromotionRefused
        from pdm_orchestration.models.scoring import ModelMismatch
        from pdm_orchestration.models.tracking import TrackingUnavailable
        from pdm_orchestration.models.training import NotEnoughData

        try:
            return fn(*args, **kwargs)
        except (TrackingUnavailable, PromotionRefused, ModelMismatch, NotEnoughData) as exc:
            raise CliError(str(exc)) from None

    return wrapper


@main.group("models")
def models() -> None:
    """Train, judge and promote the models (tracked in MLFLOW_TRACKING_URI)."""


@models.command("train")
@click.argument("families", nargs=-1, type=click.Choice(FAMILY_NAMES))
@click.option(
    "--window-spec",
    default="60min/10min",
    show_default=True,
    help="Which feature windows to learn from: 60min/10min, 30samples, ...",
)
@click.option(
    "--horizon",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Failure horizon, in hours (time windows) or samples (default: 24 h, or the window).",
)
@click.option(
    "--promote/--no-promote",
    default=True,
    show_default=True,
    help="Judge each new challenger against the champion and promote it when it wins.",
)
@pass_settings
@_tracking_errors
def models_train(
    settings: Settings,
    families: tuple[str, ...],
    window_spec: str,
    horizon: float | None,
    promote: bool,
) -> None:
    """Train FAMILIES (default: all four) on the stored feature windows; log them to MLflow."""
    from pdm_orchestration.features.windows import WindowSpecError
    from pdm_orchestration.models import champion, training

    try:
        configs = [
            training.TrainConfig.for_family(name, window_spec, horizon)
            for name in families or FAMILY_NAMES
        ]
    except WindowSpecError as exc:
        raise CliError(f"--window-spec: {exc}") from None
    store = model_store(settings)
    store.check()
    engine = engine_for(settings)
    trained = 0
    try:
        for config in configs:
            try:
                result = training.train(engine, store, config)
            except training.NotEnoughData as exc:
                click.echo(f"{config.family}: not trained: {exc}")
                continue
            trained += 1
            metrics = ", ".join(
                f"{k} {v:.4g}" for k, v in result.metrics.items() if k not in ("rows",)
            )
            click.echo(
                f"{config.family}: {result.logged.name} version {result.logged.version} "
                f"({result.train_rows} training / {result.validation_rows} validation windows; "
                f"{metrics or 'no validation metric'})"
            )
            click.echo(f"  {result.logged.url}")
            if promote:
                verdict = champion.judge(store, config.family)
                if verdict.passed:
                    champion.promote(store, config.family, verdict.challenger)
                    click.echo(f"  champion now version {verdict.challenger}: {verdict.reason}")
                else:
                    click.echo(f"  stays challenger: {verdict.reason}")
    finally:
        engine.dispose()
    if not trained:
        raise CliError("no model could be trained (see above)")


@models.command("list")
@pass_settings
@_tracking_errors
def models_list(settings: Settings) -> None:
    """Every family's registered versions, aliases and validation metric."""
    from pdm_orchestration.models.families import FAMILIES
    from pdm_orchestration.status import format_table

    store = model_store(settings)
    store.check()
    rows = []
    for name, definition in FAMILIES.items():
        aliases = store.aliases(name)
        by_version: dict[str, list[str]] = {}
        for alias, version in aliases.items():
            by_version.setdefault(str(version), []).append(alias)
        for mv in store.versions(name):
            tags = dict(mv.tags)
            rows.append(
                [
                    store.model_name(name),
                    mv.version,
                    ",".join(sorted(by_version.get(str(mv.version), []))) or "-",
                    tags.get("window_spec", "?"),
                    f"{definition.metric} {tags.get('gate_challenger_value', '-')}",
                    tags.get("validation_status", "not judged"),
                ]
            )
    if not rows:
        click.echo(f"no models in {store.safe_uri}: run `pdm-orch models train`")
        return
    click.echo(
        format_table(["model", "version", "aliases", "windows", "gate metric", "gate"], rows)
    )


@models.command("judge")
@click.argument("family", type=click.Choice(FAMILY_NAMES))
@pass_settings
@_tracking_errors
def models_judge(settings: Settings, family: str) -> None:
    """Compare FAMILY's challenger with its champion on the challenger's validation windows."""
    from pdm_orchestration.models import champion

    verdict = champion.judge(model_store(settings), family)
    state = "passes" if verdict.passed else "fails"
    click.echo(f"{family} challenger {verdict.challenger or '-'} {state}: {verdict.reason}")


@models.command("promote")
@click.argument("family", type=click.Choice(FAMILY_NAMES))
@click.argument("version", required=False)
@click.option("--force", is_flag=True, help="Promote even a version that did not pass the gate.")
@pass_settings
@_tracking_errors
def models_promote(settings: Settings, family: str, version: str | None, force: bool) -> None:
    """Make VERSION (default: the challenger) FAMILY's champion, if it passed the gate."""
    from pdm_orchestration.models import champion

    store = model_store(settings)
    promoted = champion.promote(store, family, version, force=force)
    click.echo(f"{store.model_name(family)}: champion is now version {promoted}")


@main.command("predict")
@click.option("--start", help="Windows ending after this time (ISO, UTC; default: --end - 1 day).")
@click.option("--end", help="... and at or before this one (ISO, UTC; default: now).")
@click.option("--alias", default="champion", show_default=True, help="Which versions score.")
@click.option(
    "--family", "families", multiple=True, type=click.Choice(FAMILY_NAMES), help="Default: all."
)
@pass_settings
@_tracking_errors
def predict(
    settings: Settings,
    start: str | None,
    end: str | None,
    alias: str,
    families: tuple[str, ...],
) -> None:
    """Score the feature windows ending in (START, END] into maintenance_predictions."""
    from pdm_orchestration.features.windows import WindowSpec
    from pdm_orchestration.models import scoring

    until = _time(end, "--end") or datetime.now(UTC)
    since = _time(start, "--start") or until - timedelta(days=1)
    if since >= until:
        raise CliError(f"--start {since.isoformat()} is not before --end {until.isoformat()}")
    store = model_store(settings)
    loaded, notes = scoring.load_models(store, list(families or FAMILY_NAMES), alias)
    for note in notes:
        click.echo(note)
    engine = engine_for(settings)
    try:
        fallback = not loaded
        if fallback:
            click.echo("no model to score with: the built-in rules (the plant file's limits) score")
            loaded = [scoring.builtin_rules(engine, WindowSpec.from_name("60min/10min"))]
        summary = scoring.score(engine, loaded, since, until, fallback=fallback)
    finally:
        engine.dispose()
    click.echo(
        f"{summary.predictions} predictions ({summary.suppressed} suppressed for bad data) "
        f"for windows ending in ({since.isoformat()}, {until.isoformat()}] in "
        f"{summary.seconds:.1f} s"
    )
    for label, count in summary.by_model.items():
        click.echo(f"  {label}: {count}")
    levels = ", ".join(f"{k} {v}" for k, v in sorted(summary.risk_levels.items()))
    if levels:
        click.echo(f"  risk levels: {levels}")
    if summary.devices_without_windows:
        click.echo(f"  no feature windows for: {', '.join(summary.devices_without_windows)}")


@main.group("evaluate")
def evaluate() -> None:
    """Prove the pipeline on public run-to-failure data."""


@evaluate.command("cmapss")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option(
    "--workdir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the evaluation's database, MLflow store and plant files go "
    "(default: PDM_HOME/evaluate/cmapss; emptied first).",
)
@click.option("--database-url", default=None, help="Use this database instead (e.g. PostgreSQL).")
@click.option("--mlflow-uri", default=None, help="Use this MLflow tracking store instead.")
@click.option("--port", type=click.IntRange(1, 65535), default=5090, show_default=True)
@click.option("--window", type=click.IntRange(2, 1000), default=30, show_default=True)
@click.option(
    "--sensors",
    type=click.Choice(["informative", "all"]),
    default="informative",
    show_default=True,
    help="The 14 sensors that carry FD001's degradation, or every sensor that varies.",
)
@pass_settings
@_tracking_errors
def evaluate_cmapss(
    settings: Settings,
    folder: Path,
    workdir: Path | None,
    database_url: str | None,
    mlflow_uri: str | None,
    port: int,
    window: int,
    sensors: str,
) -> None:
    """Replay a C-MAPSS subset (train_FDxxx, test_FDxxx, RUL_FDxxx in FOLDER) through Modbus,
    the database, the feature and model code; print RMSE, MAE and the PHM08 score."""
    from pdm_orchestration.modbus.replay import DatasetError
    from pdm_orchestration.models.evaluate import INFORMATIVE, EvalConfig, EvaluationError
    from pdm_orchestration.models.evaluate import evaluate as run

    if database_url is not None:  # the same one-line errors as DATABASE_URL gets
        from pdm_orchestration.settings import SettingsError, load_settings

        try:
            engine_for(load_settings(database_url=database_url)).dispose()
        except SettingsError as exc:
            raise CliError(str(exc).replace("DATABASE_URL", "--database-url")) from None
        except CliError as exc:
            raise CliError(exc.message.replace("DATABASE_URL", "--database-url")) from None
    config = EvalConfig(
        window=window, sensors=INFORMATIVE if sensors == "informative" else None, port=port
    )
    try:
        result = run(
            folder,
            workdir or settings.pdm_home / "evaluate" / "cmapss",
            database_url=database_url,
            mlflow_uri=mlflow_uri,
            config=config,
            say=click.echo,
        )
    except (DatasetError, EvaluationError) as exc:
        raise CliError(str(exc)) from None
    click.echo(
        f"{result.subset}: {result.engines_scored} test engines, {result.readings} readings "
        f"through Modbus; model {result.model} version {result.version} ({result.run_url})"
    )
    validation = result.validation
    if "rmse" in validation:
        click.echo(
            f"validation on held-out training engines (all windows): RMSE "
            f"{validation['rmse']:.2f}, MAE {validation['mae']:.2f}"
        )
    click.echo(f"test, at each engine's last cycle (truth capped at {config.rul_cap:g}):")
    click.echo(
        f"  RMSE capped {result.rmse_capped:.2f}, raw {result.rmse_raw:.2f}; MAE "
        f"{result.mae:.2f}; PHM08 score {result.phm08:.0f}"
    )
    click.echo(
        f"  in memory from the text files: RMSE capped {result.rmse_in_memory_capped:.2f}, raw "
        f"{result.rmse_in_memory_raw:.2f} (difference "
        f"{abs(result.rmse_capped - result.rmse_in_memory_capped):.3f})"
    )
    click.echo("  seconds: " + ", ".join(f"{k} {v:g}" for k, v in result.seconds.items()))
    click.echo(result.result_line())
