"""Thin Dagster wiring, one folder per domain; the logic lives in the plain modules."""
