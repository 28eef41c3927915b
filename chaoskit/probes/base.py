"""The probe contract: ``read()`` returns one JSON-able value or raises ProbeError.

A probe never judges; the expectation attached to it does. That keeps probes reusable in
hypotheses, guards, triggers (``when: {sql: ...}``) and the soak monitor alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from chaoskit.runner.context import RunContext


def check_port_forward(v: dict[str, Any] | None) -> dict[str, Any] | None:
    """Validate a ``port_forward:`` block; the kubernetes client is imported only when one is given."""
    if v is None:
        return None
    from chaoskit.k8s_portforward import PortForwardSpec

    return PortForwardSpec.model_validate(v).model_dump(exclude_none=True)


PortForward = Annotated[
    dict[str, Any] | None,
    AfterValidator(check_port_forward),
    Field(description="kubernetes: reach the address through a port-forward {service|pod, port}"),
]


class ProbeParams(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class Probe(ABC):
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Params: ClassVar[type[ProbeParams]] = ProbeParams

    def __init__(self, params: ProbeParams, ctx: RunContext):
        self.params = params
        self.ctx = ctx

    @abstractmethod
    def read(self) -> Any:
        """Read the value. Raise ProbeError when it cannot be read at all."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections held between reads."""
