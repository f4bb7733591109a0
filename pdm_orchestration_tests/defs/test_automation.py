"""Automation: readings refresh features, features predictions, predictions alerts; retraining weekly."""

import dagster as dg

from pdm_orchestration.definitions import defs

DEFS = defs()


def test_the_automation_sensor_and_the_weekly_retraining_run_by_default() -> None:
    sensor = DEFS.resolve_sensor_def("pdm_automation")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    weekly = DEFS.resolve_schedule_def("retrain_models_weekly")
    assert weekly.cron_schedule == "0 3 * * 1"
    assert weekly.default_status == dg.DefaultScheduleStatus.RUNNING
    assert weekly.job_name == "retrain_models"
    webhook = DEFS.resolve_sensor_def("alert_webhook_sensor")
    assert webhook.default_status == dg.DefaultSensorStatus.RUNNING


def test_new_readings_flow_down_to_the_alerts() -> None:
    names = {"plc_readings", "feature_windows", "maintenance_predictions", "device_alerts"}
    graph = [
        a
        for a in DEFS.resolve_asset_graph().assets_defs
        if a.keys and {k.to_user_string() for k in a.keys} <= names
    ]
    with dg.instance_for_test() as instance:
        # Nothing has happened: nothing is requested.
        first = dg.evaluate_automation_conditions(defs=graph, instance=instance)
        assert first.total_requested == 0
        # The collector (or a session) stores readings: the newest feature hour and its
        # predictions are requested together (one run, in order); the alerts once they exist.
        instance.report_runless_asset_event(dg.AssetMaterialization("plc_readings"))
        second = dg.evaluate_automation_conditions(
            defs=graph, instance=instance, cursor=first.cursor
        )
        for name in ("feature_windows", "maintenance_predictions"):
            assert second.get_num_requested(dg.AssetKey(name)) == 1, name
        assert second.get_num_requested(dg.AssetKey("device_alerts")) == 0
        partitions = DEFS.resolve_assets_def("feature_windows").partitions_def
        for name in ("feature_windows", "maintenance_predictions"):
            instance.report_runless_asset_event(
                dg.AssetMaterialization(name, partition=partitions.get_last_partition_key())
            )
        judged = dg.evaluate_automation_conditions(
            defs=graph, instance=instance, cursor=second.cursor
        )
        assert judged.get_num_requested(dg.AssetKey("device_alerts")) == 1
        assert judged.total_requested == 1  # though most hours were never scored
        instance.report_runless_asset_event(dg.AssetMaterialization("device_alerts"))
        quiet = dg.evaluate_automation_conditions(
            defs=graph, instance=instance, cursor=judged.cursor
        )
        assert quiet.total_requested == 0
        # Windows rebuilt by hand (a backfill of the newest hour): predictions and alerts follow.
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                "feature_windows", partition=partitions.get_last_partition_key()
            )
        )
        third = dg.evaluate_automation_conditions(
            defs=graph, instance=instance, cursor=quiet.cursor
        )
        assert third.get_num_requested(dg.AssetKey("feature_windows")) == 0
        assert third.get_num_requested(dg.AssetKey("maintenance_predictions")) == 1
