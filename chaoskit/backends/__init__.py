"""Target backends: find the instances of a stack and act on them."""

from chaoskit.backends.base import Backend, Instance, Selection, select_instances

__all__ = ["Backend", "Instance", "Selection", "select_instances"]
