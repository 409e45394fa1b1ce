"""Simulated TIMs: ``python -m tim_drivers.sim --port PTY --profile FILE``."""

from tim_drivers.sim.profile import ChannelProfile, TimProfile, load_profile, parse_profile
from tim_drivers.sim.simulator import TimSimulator

__all__ = ["ChannelProfile", "TimProfile", "TimSimulator", "load_profile", "parse_profile"]
