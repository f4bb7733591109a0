"""Hourly time partitions; the current hour is included so it can be refreshed while it fills."""

import dagster as dg

# ~17,500 partitions by the end of 2026: far below what Dagster handles well (device is a column).
HOURLY = dg.HourlyPartitionsDefinition(start_date="2025-01-01-00:00", end_offset=1)
