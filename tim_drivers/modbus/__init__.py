"""Modbus legacy devices: register codec, device profiles, read planner (all pure)."""
