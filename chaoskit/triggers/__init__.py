"""Triggers decide *when* a fault fires: after a delay, at a seeded random time, on the Nth
matching log line, or when a polled SQL/HTTP condition becomes true."""

from chaoskit.triggers import log, poll, timed  # noqa: F401 - register the built-ins
from chaoskit.triggers.base import Firing, Trigger

__all__ = ["Firing", "Trigger"]
