"""Modbus TCP: register planning, decoding, polling, and the PLC simulator."""
