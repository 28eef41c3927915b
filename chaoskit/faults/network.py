"""Network faults on the kernel path: partition, loss, bandwidth, latency/jitter, disconnect.

Rules and qdiscs are put into each target container's own network namespace (see
:mod:`chaoskit.netns`: nsenter as root on the Docker host, else a NET_ADMIN helper container), so
the images under test need no tools. Every iptables rule carries the comment
``chaoskit:<run_id>:<entry>`` and every qdisc the root handle ``c4a0:``; rollback removes exactly
those. Evidence is read back from the kernel (rule packet counters, qdisc statistics), so a run
never passes on a fault that silently did nothing: ``took_effect`` says whether it bit.

``network.partition`` drops by default (like a real partition, and like Chaos Mesh): connects
hang until their timeout. ``mode: reject`` answers with TCP reset / ICMP unreachable instead, so
connects fail fast.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

import docker.errors
from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from chaoskit import netns, registry
from chaoskit.backends.base import Instance, Selection
from chaoskit.errors import FaultError
from chaoskit.faults.base import Fault, FaultParams
from chaoskit.units import Duration

if TYPE_CHECKING:
    from chaoskit.runner.context import RunContext

Via = Literal["auto", "nsenter", "helper"]

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)\s*$", re.I)
_RATE_SCALE = {
    "bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9,
    "bps": 8, "kbps": 8 * 10**3, "mbps": 8 * 10**6, "gbps": 8 * 10**9,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|k|mb|m|kib|mib)?\s*$", re.I)
_SIZE_SCALE = {None: 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 2**20, "mb": 2**20, "mib": 2**20}


def parse_bitrate(value: Any) -> int:
    """Bits per second from tc-style text: ``8mbit``, ``500kbit``, ``1gbit``; ``kbps`` is *bytes*/s as in tc."""
    if isinstance(value, str):
        m = _RATE.match(value)
        if m:
            bits = int(float(m.group(1)) * _RATE_SCALE[m.group(2).lower()])
            if bits >= 8:
                return bits
    raise ValueError(f"expected a rate like 8mbit, 500kbit or 1gbit, got {value!r}")


def parse_size(value: Any) -> int:
    """Bytes from ``32kb``, ``1mb``, ``1500`` (kb = KiB, as tc counts)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            unit = m.group(2).lower() if m.group(2) else None
            n = int(float(m.group(1)) * _SIZE_SCALE[unit])
            if n > 0:
                return n
    raise ValueError(f"expected a size like 32kb, 1mb or 1500 (bytes), got {value!r}")


BitRate = Annotated[int, BeforeValidator(parse_bitrate)]
Size = Annotated[int, BeforeValidator(parse_size)]


def _netem_missing(name: str, proxy_fault: str) -> str:
    return (
        f"{name}: this kernel has no sch_netem (tc netem unavailable); use the proxy path: "
        f"fault `{proxy_fault}` (built-in TCP fault proxy) — see docs"
    )


# --- resolving services to containers and addresses -------------------------------------------


def _container(inst: Instance) -> Any:
    c = inst.meta.get("container")
    if c is None:
        raise FaultError(
            f"network faults need the compose backend (no container for {inst.name}); "
            "on Kubernetes use the kubernetes network faults"
        )
    return c


def _networks(c: Any) -> dict[str, dict[str, Any]]:
    """Docker network name -> endpoint settings (IPAddress, NetworkID, Aliases...)."""
    return dict(c.attrs.get("NetworkSettings", {}).get("Networks") or {})


def _peer_ips(me: Any, peer: Any) -> list[tuple[str, int]]:
    """The peer's addresses (ip, family 4|6) on the networks both containers are attached to."""
    mine = {s.get("NetworkID") for s in _networks(me).values()}
    ips: set[tuple[str, int]] = set()
    for s in _networks(peer).values():
        if s.get("NetworkID") not in mine:
            continue
        if s.get("IPAddress"):
            ips.add((s["IPAddress"], 4))
        if s.get("GlobalIPv6Address"):
            ips.add((s["GlobalIPv6Address"], 6))
    if not ips:
        raise FaultError(f"{me.name} and {peer.name} share no Docker network: nothing to cut between them")
    return sorted(ips)


def _families(c: Any) -> list[int]:
    """4, plus 6 when the container has an IPv6 address anywhere."""
    return [4] + ([6] if any(s.get("GlobalIPv6Address") for s in _networks(c).values()) else [])


def _service_instances(fault: Fault, service: str) -> list[Instance]:
    backend = fault.ctx.backend
    if backend is None:
        raise FaultError(f"{fault.name} needs a target backend (target: in the experiment)")
    found = backend.find(Selection(service=service))
    if not found:
        raise FaultError(
            f"{fault.name}: service {service!r} has no running container in {backend.describe()}"
        )
    for inst in found:
        backend.check_owned(inst)
    return found


# --- the plan: what goes into which namespace (recorded before apply) -------------------------


@dataclass
class NsPlan:
    """Everything for one container's namespace, JSON-able for the fault ledger."""

    container_id: str
    name: str
    service: str
    started_at: str | None
    pid: int | None
    rules: list[dict[str, Any]] = field(default_factory=list)  # {table, chain, args}
    qdiscs: list[dict[str, Any]] = field(default_factory=list)  # {dev, args}

    @classmethod
    def of(cls, inst: Instance) -> NsPlan:
        c = _container(inst)
        st = c.attrs.get("State", {})
        return cls(c.id, c.name, inst.service, st.get("StartedAt"), st.get("Pid") or None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "container_id": self.container_id,
            "name": self.name,
            "service": self.service,
            "started_at": self.started_at,
            "pid": self.pid,
            "rules": self.rules,
            "qdiscs": self.qdiscs,
        }


def _docker(ctx: RunContext | None) -> Any:
    client = getattr(getattr(ctx, "backend", None), "client", None) if ctx is not None else None
    if client is None:
        from chaoskit.backends.compose import docker_client

        client = docker_client()
    return client


def _current(client: Any, plan: dict[str, Any]) -> tuple[Any | None, str | None]:
    """The container if it still runs in the namespace we changed, else (None, why not)."""
    try:
        c = client.containers.get(plan["container_id"])
    except docker.errors.NotFound:
        return None, "container gone: its namespace and our rules went with it"
    st = c.attrs.get("State", {})
    if st.get("Status") != "running":
        return None, f"container {st.get('Status')}: its namespace and our rules are gone"
    if plan.get("started_at") and st.get("StartedAt") != plan["started_at"]:
        return None, "container restarted: new network namespace, nothing of ours in it"
    return c, None


class _NetnsFault(Fault):
    """Shared machinery: plan in prepare, apply rules/qdiscs, revert from the record alone."""

    reversible = True

    def __init__(self, params: FaultParams, target: Selection | None, ctx: RunContext):
        super().__init__(params, target, ctx)
        # The runner may set ``entry_id`` (its ledger entry) before prepare; else our own id.
        self.entry_id: str = uuid.uuid4().hex[:10]
        self.plans: list[NsPlan] = []

    @property
    def marker(self) -> str:
        return netns.marker(self.ctx.run_id, self.entry_id)

    @property
    def via(self) -> str:
        return getattr(self.params, "via", "auto")

    def _comment(self) -> list[str]:
        return ["-m", "comment", "--comment", self.marker]

    def plan(self) -> list[NsPlan]:
        raise NotImplementedError

    def prepare(self) -> None:
        super().prepare()
        self._path, self._reason = netns.choose_path(None if self.via == "auto" else self.via)
        self.plans = self.plan()
        if not any(p.rules or p.qdiscs for p in self.plans):
            raise FaultError(f"{self.name}: nothing to do (no rule or qdisc planned)")

    def record(self) -> dict[str, Any]:
        return super().record() | {
            "run_id": self.ctx.run_id,
            "entry_id": self.entry_id,
            "marker": self.marker,
            "via": self.via,
            "path": self._reason if hasattr(self, "_reason") else None,
            "namespaces": [p.as_dict() for p in self.plans],
        }

    def _install(self, ex: netns.NetnsExecutor, plan: NsPlan) -> None:
        for r in plan.rules:
            netns.iptables(ex, r["table"], ["-I", r["chain"], "1", *r["args"]], family=r.get("family", 4))
        for q in plan.qdiscs:
            self._add_qdisc(ex, q)

    def _add_qdisc(self, ex: netns.NetnsExecutor, q: dict[str, Any]) -> None:
        existing = netns.root_qdisc(ex, q["dev"])
        if existing and existing["kind"] not in ("noqueue", "pfifo_fast", "fq_codel", "mq", "noop"):
            if existing["handle"] != netns.QDISC_HANDLE:
                raise FaultError(
                    f"{self.name}: {q['dev']} already has a root qdisc ({existing['line']}); "
                    "refusing to replace a qdisc chaoskit did not add"
                )
        ex.run(["tc", "qdisc", "add", "dev", q["dev"], "root", "handle", netns.QDISC_HANDLE, *q["args"]])

    def apply(self) -> dict[str, Any]:
        client = _docker(self.ctx)
        out: list[dict[str, Any]] = []
        done: list[dict[str, Any]] = []
        try:
            for plan in self.plans:
                c, why = _current(client, plan.as_dict())
                if c is None:
                    raise FaultError(f"{self.name}: {plan.name} changed since prepare ({why})")
                ex = netns.executor_for(c, prefer=self._path, client=client)
                try:
                    done.append(plan.as_dict())
                    self._install(ex, plan)
                    present = netns.rules_with_marker(ex, self.marker)
                    if len(present) != len(plan.rules):
                        raise FaultError(
                            f"{self.name}: {plan.name}: {len(plan.rules)} rule(s) added but "
                            f"{len(present)} listed afterwards ({ex.reason})"
                        )
                    out.append(
                        {
                            "container": plan.name,
                            "service": plan.service,
                            "rules": [r.as_dict() for r in present],
                            "qdiscs": [netns.root_qdisc(ex, q["dev"]) for q in plan.qdiscs],
                        }
                    )
                finally:
                    ex.close()
        except Exception as exc:
            # never leave half a fault behind; the runner's revert (idempotent) tries again
            try:
                self.revert_record(self.record() | {"namespaces": done}, self.ctx)
            except Exception as undo:  # noqa: BLE001 - the original error is the one to report
                self.ctx.event("fault.undo_failed", fault=self.name, error=str(undo), cause=str(exc))
            raise
        return {"path": self._reason, "marker": self.marker, "namespaces": out}

    def revert(self) -> dict[str, Any] | None:
        return self.revert_record(self.record(), self.ctx)

    @classmethod
    def revert_record(cls, record: dict[str, Any], ctx: RunContext | None) -> dict[str, Any] | None:
        client = _docker(ctx)
        marker = record["marker"]
        via = record.get("via", "auto")
        out: list[dict[str, Any]] = []
        packets = 0
        errors: list[str] = []
        for plan in record.get("namespaces", []):
            c, why = _current(client, plan)
            item: dict[str, Any] = {"container": plan["name"]}
            if c is None:
                item["result"] = why
                out.append(item)
                continue
            try:
                ex = netns.executor_for(c, prefer=None if via == "auto" else via, client=client)
            except FaultError as exc:
                errors.append(str(exc))
                item["result"] = f"error: {exc}"
                out.append(item)
                continue
            try:
                deleted = netns.delete_marked_rules(ex, marker)
                item["path"] = ex.reason
                item["rules"] = [r.as_dict() for r in deleted]
                packets += sum(r.packets for r in deleted)
                qd = []
                for q in plan.get("qdiscs", []):
                    stats = netns.qdisc_stats(ex, q["dev"])
                    if netns.delete_marked_qdisc(ex, q["dev"]):
                        qd.append({"dev": q["dev"], "stats": stats})
                        packets += stats.get("packets", 0)
                item["qdiscs"] = qd
                item["result"] = "removed"
            except FaultError as exc:
                errors.append(str(exc))
                item["result"] = f"error: {exc}"
            finally:
                ex.close()
            out.append(item)
        if errors:
            raise FaultError(f"{record.get('fault', 'network fault')} revert incomplete: {errors[0]}")
        return {"marker": marker, "namespaces": out, "packets": packets, "took_effect": packets > 0}


class _NetParams(FaultParams):
    via: Via = Field("auto", description="how to enter namespaces: nsenter (root on the host), helper, auto")


def _match(protocol: str | None, ports: list[int] | None) -> list[str]:
    """iptables match args for protocol/ports (multiport matches source *or* destination port)."""
    args: list[str] = []
    if protocol and protocol != "all":
        args += ["-p", protocol]
    if ports:
        args += ["-m", "multiport", "--ports", ",".join(str(p) for p in ports)]
    return args


class _PortsMixin(_NetParams):
    ports: list[Annotated[int, Field(ge=1, le=65535)]] | None = Field(
        None, max_length=15, description="only these ports (either end of the connection)"
    )
    protocol: Literal["tcp", "udp", "all"] | None = Field(
        None, description="tcp, udp or all (default: all; tcp when ports are given)"
    )

    @model_validator(mode="after")
    def _proto(self) -> _PortsMixin:
        if self.ports and self.protocol == "all":
            raise ValueError("ports need protocol tcp or udp")
        if self.ports and self.protocol is None:
            self.protocol = "tcp"
        return self


@registry.faults.register("network.partition")
class Partition(_NetnsFault):
    name = "network.partition"
    summary = "cut traffic between groups of services (iptables in their namespaces)"
    needs_target = False

    class Params(_PortsMixin):
        between: list[list[str]] | None = Field(
            None, description="groups of services; traffic between groups is cut both ways"
        )
        from_: list[str] | None = Field(None, alias="from", description="one-way: from these services")
        to: list[str] | None = Field(None, description="one-way: to these services")
        mode: Literal["drop", "reject"] = Field(
            "drop", description="drop (connects hang, like a real partition) or reject (fail fast)"
        )
        duration: Duration | None = Field(None, description="heal after this long")

        model_config = ConfigDict(extra="forbid", populate_by_name=True)

        @model_validator(mode="after")
        def _shape(self) -> Partition.Params:
            one_way = self.from_ is not None or self.to is not None
            if self.between is not None and one_way:
                raise ValueError("give either between: or from:/to:, not both")
            if self.between is None and not one_way:
                raise ValueError("give between: [[a], [b, c]] or from: [a] and to: [b]")
            if one_way and not (self.from_ and self.to):
                raise ValueError("a one-way partition needs both from: and to: (non-empty)")
            groups = self.between if self.between is not None else [self.from_ or [], self.to or []]
            if len(groups) < 2 or any(not g for g in groups):
                raise ValueError("between: needs at least two non-empty groups of services")
            flat = [s for g in groups for s in g]
            if len(flat) != len(set(flat)):
                raise ValueError("a service may appear in only one group")
            return self

    def _targets(self, peer_ip: str, family: int, direction: Literal["in", "out"]) -> list[list[str]]:
        p = self.params
        addr = ["-s", peer_ip] if direction == "in" else ["-d", peer_ip]
        unreach = "icmp-port-unreachable" if family == 4 else "icmp6-port-unreachable"
        base = addr + _match(p.protocol, p.ports) + self._comment()
        if p.mode == "drop":
            return [base + ["-j", "DROP"]]
        if p.protocol == "tcp":
            return [base + ["-j", "REJECT", "--reject-with", "tcp-reset"]]
        if p.protocol == "udp":
            return [base + ["-j", "REJECT", "--reject-with", unreach]]
        tcp = addr + ["-p", "tcp"] + self._comment() + ["-j", "REJECT", "--reject-with", "tcp-reset"]
        rest = addr + self._comment() + ["-j", "REJECT", "--reject-with", unreach]
        # inserted at position 1 in order, so the last one listed ends up first: tcp must be last
        return [rest, tcp]

    def plan(self) -> list[NsPlan]:
        p = self.params
        symmetric = p.between is not None
        groups = p.between if p.between is not None else [p.from_ or [], p.to or []]
        members = [[i for s in g for i in _service_instances(self, s)] for g in groups]
        self.instances = [i for g in members for i in g]
        plans = {i.id: NsPlan.of(i) for i in self.instances}

        def cut(src: Instance, dst: Instance) -> None:
            """Traffic src -> dst: dropped leaving src and arriving at dst."""
            sc, dc = _container(src), _container(dst)
            for ip, fam in _peer_ips(sc, dc):
                for args in self._targets(ip, fam, "out"):
                    plans[src.id].rules.append({"table": "filter", "chain": "OUTPUT", "args": args, "family": fam})
            for ip, fam in _peer_ips(dc, sc):
                for args in self._targets(ip, fam, "in"):
                    plans[dst.id].rules.append({"table": "filter", "chain": "INPUT", "args": args, "family": fam})

        for gi in range(len(members)):
            for gj in range(gi + 1, len(members)):
                for x in members[gi]:
                    for y in members[gj]:
                        cut(x, y)
                        if symmetric:
                            cut(y, x)
        return [pl for pl in plans.values() if pl.rules]

    @classmethod
    def sweep(cls, containers: list[Any] | None = None) -> dict[str, Any]:
        """``chaoskit rollback --all --sweep``: remove every ``chaoskit:`` rule and ``c4a0:`` root
        qdisc (of all kernel-path network faults) from running compose containers.

        Only marked rules/qdiscs are touched, so a bystander's own rules survive."""
        if containers is None:
            from chaoskit.backends.compose import PROJECT_LABEL, docker_client

            containers = docker_client().containers.list(filters={"label": PROJECT_LABEL})
        removed: dict[str, Any] = {}
        for res in netns.sweep(containers):
            if res.rules or res.qdiscs or res.error:
                removed[res.container] = {"rules": len(res.rules), "qdiscs": res.qdiscs, "error": res.error}
        return {"containers": len(containers), "cleaned": removed}


@registry.faults.register("network.loss")
class Loss(_NetnsFault):
    name = "network.loss"
    summary = "drop a percentage of packets at random (iptables statistic match)"

    class Params(_PortsMixin):
        percent: float = Field(..., gt=0, le=100, description="per-packet drop probability, in percent")
        to: list[str] | None = Field(None, description="only traffic to/from these services")
        direction: Literal["egress", "ingress", "both"] = Field(
            "egress", description="which packets of the target: sent (like tc netem), received, or both"
        )
        duration: Duration | None = Field(None, description="stop dropping after this long")

    def plan(self) -> list[NsPlan]:
        p = self.params
        peers = [i for s in (p.to or []) for i in _service_instances(self, s)]
        prob = f"{p.percent / 100:.6f}"
        stat = ["-m", "statistic", "--mode", "random", "--probability", prob]
        match = _match(p.protocol, p.ports)
        plans = []
        for inst in self.instances:
            plan = NsPlan.of(inst)
            c = _container(inst)
            addrs: list[tuple[str | None, int]]
            if peers:
                addrs = sorted({a for peer in peers for a in _peer_ips(c, _container(peer))})
            else:
                addrs = [(None, fam) for fam in _families(c)]
            for ip, fam in addrs:
                if p.direction in ("egress", "both"):
                    addr = ["-d", ip] if ip else ["!", "-o", "lo"]
                    plan.rules.append({"table": "filter", "chain": "OUTPUT", "family": fam,
                                       "args": addr + match + stat + self._comment() + ["-j", "DROP"]})
                if p.direction in ("ingress", "both"):
                    addr = ["-s", ip] if ip else ["!", "-i", "lo"]
                    plan.rules.append({"table": "filter", "chain": "INPUT", "family": fam,
                                       "args": addr + match + stat + self._comment() + ["-j", "DROP"]})
            plans.append(plan)
        return plans


class _QdiscFault(_NetnsFault):
    """Faults that put one root qdisc on the target's interfaces (egress only, as tc shapes)."""

    def _devices(self, inst: Instance) -> list[str]:
        p = self.params
        dev = getattr(p, "interface", None)
        if dev:
            return [dev]
        c = _container(inst)
        ex = netns.executor_for(c, prefer=self._path, client=_docker(self.ctx))
        try:
            peers = [i for s in (getattr(p, "to", None) or []) for i in _service_instances(self, s)]
            if peers:
                return sorted({netns.interface_to(ex, ip) for peer in peers
                               for ip, _fam in _peer_ips(c, _container(peer))})
            return netns.interfaces(ex)
        finally:
            ex.close()

    def qdisc_args(self) -> list[str]:
        raise NotImplementedError

    def plan(self) -> list[NsPlan]:
        plans = []
        for inst in self.instances:
            plan = NsPlan.of(inst)
            plan.qdiscs = [{"dev": d, "args": self.qdisc_args()} for d in self._devices(inst)]
            plans.append(plan)
        return plans

    def apply(self) -> dict[str, Any]:
        ev = super().apply()
        ev["qdisc_handle"] = netns.QDISC_HANDLE
        return ev


class _ShapeParams(_NetParams):
    interface: str | None = Field(None, description="interface inside the container (default: all but lo)")
    to: list[str] | None = Field(None, description="shape the interface(s) facing these services")
    duration: Duration | None = Field(None, description="remove after this long")


@registry.faults.register("network.bandwidth")
class Bandwidth(_QdiscFault):
    name = "network.bandwidth"
    summary = "limit egress bandwidth of the target (tc tbf)"

    class Params(_ShapeParams):
        rate: BitRate = Field(..., description="e.g. 8mbit, 512kbit")
        burst: Size | None = Field(None, description="bucket size, e.g. 32kb (default: 10 ms at rate, min 16kb)")
        latency: Duration = Field(0.1, description="longest a packet may wait in the queue")

    def qdisc_args(self) -> list[str]:
        p = self.params
        burst = p.burst or max(p.rate // 8 // 100, 16384)
        return ["tbf", "rate", f"{p.rate}bit", "burst", str(burst), "latency",
                f"{max(1, round(p.latency * 1000))}ms"]


class _NetemFault(_QdiscFault):
    proxy_fault = "proxy.latency"

    def _add_qdisc(self, ex: netns.NetnsExecutor, q: dict[str, Any]) -> None:
        try:
            super()._add_qdisc(ex, q)
        except netns.NetnsError as exc:
            text = str(exc)
            if "qdisc kind is unknown" in text or "Unknown qdisc" in text:
                raise FaultError(_netem_missing(self.name, self.proxy_fault)) from None
            raise


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}ms"


@registry.faults.register("network.latency")
class Latency(_NetemFault):
    name = "network.latency"
    summary = "delay egress packets of the target (tc netem; kernels without sch_netem: use proxy.latency)"

    class Params(_ShapeParams):
        delay: Duration = Field(..., description="added delay, e.g. 200ms")
        jitter: Duration | None = Field(None, description="random variation, e.g. 50ms")
        correlation: float | None = Field(None, ge=0, le=100, description="jitter correlation, percent")

    def qdisc_args(self) -> list[str]:
        p = self.params
        args = ["netem", "delay", _ms(p.delay)]
        if p.jitter:
            args.append(_ms(p.jitter))
            if p.correlation is not None:
                args.append(f"{p.correlation}%")
        return args


@registry.faults.register("network.jitter")
class Jitter(_NetemFault):
    name = "network.jitter"
    summary = "vary the delay of egress packets (tc netem; kernels without sch_netem: use proxy.jitter)"
    proxy_fault = "proxy.jitter"

    class Params(_ShapeParams):
        jitter: Duration = Field(..., gt=0, description="random variation, e.g. 50ms")
        delay: Duration = Field(0.0, description="base delay the jitter varies around")
        correlation: float | None = Field(None, ge=0, le=100, description="percent")
        distribution: Literal["normal", "pareto", "paretonormal", "uniform"] = "uniform"

    def qdisc_args(self) -> list[str]:
        p = self.params
        args = ["netem", "delay", _ms(max(p.delay, p.jitter)), _ms(p.jitter)]
        if p.correlation is not None:
            args.append(f"{p.correlation}%")
        if p.distribution != "uniform":
            args += ["distribution", p.distribution]
        return args


@registry.faults.register("network.disconnect")
class Disconnect(Fault):
    name = "network.disconnect"
    summary = "detach containers from a Docker network (or all of theirs) and reattach them"

    class Params(FaultParams):
        network: str | None = Field(None, description="Docker network name (default: every network)")
        duration: Duration | None = Field(None, description="reconnect after this long")

    def prepare(self) -> None:
        super().prepare()
        self._plan: list[dict[str, Any]] = []
        for inst in self.instances:
            c = _container(inst)
            mode = c.attrs.get("HostConfig", {}).get("NetworkMode", "")
            if mode in ("host", "none") or mode.startswith("container:"):
                raise FaultError(f"network.disconnect: {c.name} uses network mode {mode!r}: nothing to detach")
            nets = _networks(c)
            if self.params.network is not None:
                if self.params.network not in nets:
                    raise FaultError(
                        f"network.disconnect: {c.name} is not attached to network "
                        f"{self.params.network!r} (it is on: {', '.join(sorted(nets)) or 'none'})"
                    )
                nets = {self.params.network: nets[self.params.network]}
            if not nets:
                raise FaultError(f"network.disconnect: {c.name} is attached to no network")
            short = c.id[:12]
            self._plan.append(
                {
                    "container_id": c.id,
                    "name": c.name,
                    "networks": [
                        {
                            "name": n,
                            "id": s.get("NetworkID"),
                            "aliases": [a for a in (s.get("Aliases") or []) if a != short],
                            "ipv4": (s.get("IPAMConfig") or {}).get("IPv4Address") or s.get("IPAddress"),
                            "ipv6": (s.get("IPAMConfig") or {}).get("IPv6Address") or None,
                        }
                        for n, s in sorted(nets.items())
                    ],
                }
            )

    def record(self) -> dict[str, Any]:
        return super().record() | {"containers": self._plan}

    def apply(self) -> dict[str, Any]:
        client = _docker(self.ctx)
        out = []
        try:
            for item in self._plan:
                c = client.containers.get(item["container_id"])
                for n in item["networks"]:
                    client.networks.get(n["id"] or n["name"]).disconnect(c)
                c.reload()
                left = sorted(_networks(c))
                gone = [n["name"] for n in item["networks"] if n["name"] not in left]
                out.append({"container": item["name"], "disconnected": gone, "still_on": left})
        except docker.errors.APIError as exc:
            self.revert_record(self.record(), self.ctx)
            raise FaultError(f"network.disconnect failed: {exc.explanation or exc}") from None
        took = all(len(o["disconnected"]) == len(i["networks"]) for o, i in zip(out, self._plan, strict=True))
        return {"containers": out, "took_effect": took}

    @classmethod
    def revert_record(cls, record: dict[str, Any], ctx: RunContext | None) -> dict[str, Any] | None:
        client = _docker(ctx)
        out = []
        errors = []
        for item in record.get("containers", []):
            try:
                c = client.containers.get(item["container_id"])
            except docker.errors.NotFound:
                out.append({"container": item["name"], "result": "container gone"})
                continue
            for n in item["networks"]:
                if n["name"] in _networks(c):
                    out.append({"container": item["name"], "network": n["name"], "result": "already attached"})
                    continue
                try:
                    net = client.networks.get(n["id"] or n["name"])
                except docker.errors.NotFound:
                    errors.append(f"network {n['name']} no longer exists")
                    continue
                kw: dict[str, Any] = {"aliases": n["aliases"] or None}
                result = "reattached, same address"
                try:
                    net.connect(c, ipv4_address=n["ipv4"], ipv6_address=n["ipv6"], **kw)
                except docker.errors.APIError:
                    # Docker keeps fixed addresses only on user-configured subnets; fall back
                    try:
                        net.connect(c, **kw)
                    except docker.errors.APIError as exc:
                        errors.append(f"{item['name']} -> {n['name']}: {exc.explanation or exc}")
                        continue
                    result = "reattached, new address"
                c.reload()
                got = _networks(c).get(n["name"], {}).get("IPAddress")
                if got != n["ipv4"]:
                    result = "reattached, new address"
                out.append({"container": item["name"], "network": n["name"], "result": result, "ip": got})
        if errors:
            raise FaultError(f"network.disconnect revert incomplete: {errors[0]}")
        return {"containers": out}
