"""The experiment model. Plugin-specific keys (a fault's, probe's or trigger's own params) are
validated by the plugin's own ``Params`` model in ``load.py``; these models hold the shared shape."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from chaoskit.backends.base import Selection
from chaoskit.units import Duration


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class _Open(BaseModel):
    """Shared keys plus the plugin's own keys (kept in ``model_extra`` and validated later)."""

    model_config = ConfigDict(extra="allow", defer_build=True)


class ComposeTarget(_Strict):
    file: str | None = Field(None, description="compose file, relative to the experiment file")
    project: str | None = Field(None, description="compose project name (default: the file's directory name)")
    up: bool = Field(False, description="bring the stack up (build + up -d + wait healthy) before the run")
    down: bool = Field(False, description="tear the stack down after the run")


class KubernetesTarget(_Strict):
    namespace: str
    context: str | None = None
    kubeconfig: str | None = None


class Target(_Strict):
    compose: ComposeTarget | None = None
    kubernetes: KubernetesTarget | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Target:
        if (self.compose is None) == (self.kubernetes is None):
            raise ValueError("give exactly one of compose or kubernetes")
        return self


class ProbeSpec(_Open):
    """A probe with an expectation: a hypothesis entry, a guard, or a probe step."""

    name: str | None = None
    probe: str = Field(description="probe name, see `chaoskit list`")
    expect: dict[str, Any] | None = Field(None, description="expectation; omitted: the probe must only read")
    within: Duration | None = Field(None, description="eventually: retry until it holds or this passes")
    interval: Duration = Field(0.25, description="retry / polling interval")
    during: bool = Field(False, description="also check continuously during the method")


class FaultStep(_Open):
    fault: str | None = Field(None, description="fault name, see `chaoskit list`")
    action: str | None = Field(None, description="same registry as fault; reads better in rollbacks")
    name: str | None = None
    id: str | None = Field(None, description="stable step id (journal, replay); default: position")
    target: Selection | None = None
    when: dict[str, Any] | None = Field(None, description="trigger: after, at, log, sql, http; within")
    repeat: int | None = Field(None, ge=1, description="fire this many times")
    every: Duration | None = Field(None, description="interval between repeats")

    @model_validator(mode="after")
    def _one_name(self) -> FaultStep:
        if (self.fault is None) == (self.action is None):
            raise ValueError("give exactly one of fault or action")
        return self

    @property
    def kind_name(self) -> str:
        return self.fault or self.action or ""


class WaitUntil(_Strict):
    until: Literal["hypothesis"] = "hypothesis"
    timeout: Duration = 60.0
    interval: Duration = 0.2


class WaitStep(_Strict):
    wait: Duration | WaitUntil
    name: str | None = None
    id: str | None = None


class PauseStep(_Strict):
    pause: Duration
    name: str | None = None
    id: str | None = None


class ParallelStep(_Strict):
    parallel: list[Any] = Field(description="branches; each a step or a list of steps")
    name: str | None = None
    id: str | None = None


class Settings(_Strict):
    continuous_interval: Duration = Field(1.0, description="interval of during/guard checks")
    require_fault_evidence: bool = Field(True, description="fail a fault step whose evidence says it did nothing")


class ExperimentSpec(_Strict):
    chaoskit: Literal[1] = Field(description="format version")
    title: str
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    seed: int | None = None
    target: Target | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    settings: Settings = Field(default_factory=Settings)
    hypothesis: list[ProbeSpec] = Field(default_factory=list)
    guards: list[ProbeSpec] = Field(default_factory=list)
    workload: dict[str, Any] | None = None
    method: list[Any] = Field(default_factory=list)
    verify: dict[str, Any] | None = None
    rollbacks: list[FaultStep] = Field(default_factory=list)

