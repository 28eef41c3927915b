"""Probes read one fact about the system; expectations judge it."""

from chaoskit.probes.base import Probe, ProbeParams

__all__ = ["Probe", "ProbeParams"]
