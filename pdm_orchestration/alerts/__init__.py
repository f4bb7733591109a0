"""Alerts from predictions: opened with hysteresis, escalated, resolved; and their notification."""
