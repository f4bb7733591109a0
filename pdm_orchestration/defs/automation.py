"""Declarative automation: new readings refresh the newest feature windows, new windows the
predictions, new predictions the alerts (each asset's `automation_condition`)."""

import dagster as dg

automation = dg.AutomationConditionSensorDefinition(
    "pdm_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Evaluates the assets' automation conditions (features, predictions, alerts).",
)
