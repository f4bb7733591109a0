"""pdm-orchestration: predictive maintenance from PLC registers, orchestrated by Dagster."""

__version__ = "0.1.0"
