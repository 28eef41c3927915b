"""What every backend provides. Faults talk to instances through this, never to Docker directly
unless they are backend-specific (network faults need a network namespace, for example)."""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from chaoskit.errors import TargetError


class Selection(BaseModel):
    """Which instances of a service a step hits. ``mode: one`` picks with the run's seeded RNG."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    service: str | None = Field(None, description="compose service name")
    selector: dict[str, str] | None = Field(None, description="label selector (kubernetes)")
    owner: str | None = Field(None, description="deployment/statefulset name (kubernetes)")
    container: str | None = Field(None, description="container name inside a pod (kubernetes)")
    mode: Literal["one", "all"] | None = Field(None, description="one (seeded random) or all")
    fixed: int | None = Field(None, ge=1, description="exactly N instances (seeded)")
    percent: float | None = Field(None, gt=0, le=100, description="P percent of instances, at least one")
    limit: int | None = Field(None, ge=1, description="never hit more than this many")
    instances: list[str] | None = Field(
        None, description="exact instance names (set by replay; overrides random choice)"
    )

    @model_validator(mode="after")
    def _one_way(self) -> Selection:
        if sum(x is not None for x in (self.mode, self.fixed, self.percent)) > 1:
            raise ValueError("give only one of mode, fixed, percent")
        if not (self.service or self.selector or self.owner):
            raise ValueError("give service (compose) or selector/owner (kubernetes)")
        return self


@dataclass
class Instance:
    """One container (compose) or pod (kubernetes) of the target."""

    id: str
    name: str
    service: str
    backend: Backend
    pid: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"id": self.id[:12], "name": self.name, "service": self.service}


def select_instances(found: list[Instance], sel: Selection, rng: random.Random) -> list[Instance]:
    """Apply the selection mode and limit. Sorting first makes a seeded choice reproducible."""
    found = sorted(found, key=lambda i: i.name)
    if sel.instances is not None:
        wanted = set(sel.instances)
        chosen = [i for i in found if i.name in wanted]
        missing = wanted - {i.name for i in chosen}
        if missing:
            raise TargetError(f"replayed instances no longer exist: {sorted(missing)}")
        return chosen
    if not found:
        return []
    if sel.fixed is not None:
        n = min(sel.fixed, len(found))
    elif sel.percent is not None:
        n = max(1, math.floor(len(found) * sel.percent / 100))
    elif sel.mode == "all":
        n = len(found)
    else:  # "one" is the default: the smallest blast radius
        n = 1
    if sel.limit is not None:
        n = min(n, sel.limit)
    if n >= len(found):
        return found
    return sorted(rng.sample(found, n), key=lambda i: i.name)


class Backend(ABC):
    """A stack chaoskit may touch. ``owns`` is the blast-radius guard every fault relies on."""

    kind: str = "base"

    @abstractmethod
    def find(self, sel: Selection, running: bool | None = True) -> list[Instance]:
        """Instances matching ``sel`` inside this target (project / namespace) only.

        ``running``: True only running ones, False only stopped ones, None all."""

    def resolve(
        self, sel: Selection, rng: random.Random, running: bool | None = True
    ) -> list[Instance]:
        found = self.find(sel, running=running)
        chosen = select_instances(found, sel, rng)
        if not chosen:
            raise TargetError(f"target {sel.model_dump(exclude_none=True)} matched nothing in {self.describe()}")
        for inst in chosen:
            self.check_owned(inst)
        return chosen

    @abstractmethod
    def owns(self, inst: Instance) -> bool:
        """True when ``inst`` belongs to this target. Faults refuse anything else."""

    def check_owned(self, inst: Instance) -> None:
        if not self.owns(inst):
            raise TargetError(f"refusing to touch {inst.name}: not part of {self.describe()}")

    @abstractmethod
    def describe(self) -> str: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
