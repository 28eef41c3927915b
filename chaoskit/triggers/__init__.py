"""Triggers decide *when* a fault fires: after a delay, at a seeded random time, on the Nth
matching log line, or when a polled SQL/HTTP condition becomes true.

The built-ins live in ``timed``, ``log`` and ``poll``; the registry imports each on first use."""

from chaoskit.triggers.base import Firing, Trigger

__all__ = ["Firing", "Trigger"]
