"""Proxy faults: the user-space path for latency, jitter, bandwidth and the rest of the
Toxiproxy toxic set, for kernels without ``sch_netem`` (like this one) and for faults the kernel
cannot express at all (slicer, limit_data, reset after N ms).

``proxy.<toxic>`` steers the target (client) containers' connections to ``to: service:port``
through the built-in proxy, transparently: a listener on the host bound to the gateway IP of each
Docker network client and server share, and in each client's namespace
``iptables -t nat -I OUTPUT -p tcp -d SERVER_IP --dport PORT -m comment --comment chaoskit:<run>:<entry>
-j DNAT --to-destination GATEWAY_IP:LISTEN_PORT``. The compose file needs no change. Revert
removes exactly the marked rules, then stops the listeners; after a crash the listeners died
with the runner and ``revert_record`` removes the rules from the ledger record alone.
Only connections opened *after* the rule steer through the proxy: NAT acts on new flows
(conntrack keeps established ones on their direct path).

``toxiproxy.toxic`` / ``toxiproxy.disable`` drive an existing Toxiproxy server in the user's stack
through toxiproxy-python (tested against the built-in proxy's Toxiproxy API).

Evidence: the DNAT rules' packet counters and the proxy's own counters (connections, bytes, and
per toxic: bytes held back, total delay, drops, resets), so ``took_effect`` is read from what
really happened, never assumed.
"""

from __future__ import annotations

import re
import socket
import sys
import threading
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import urlparse

from pydantic import Field, field_validator

from chaoskit import netns, registry
from chaoskit.errors import FaultError
from chaoskit.faults.base import Fault, FaultParams
from chaoskit.faults.network import NsPlan, Via, _container, _docker, _NetnsFault, _networks
from chaoskit.proxy.server import ProxyServer, shared_server
from chaoskit.proxy.toxics import TOXIC_TYPES, Toxic, ToxicError
from chaoskit.units import Duration

if TYPE_CHECKING:
    from chaoskit.backends.base import Instance, Selection
    from chaoskit.runner.context import RunContext

_PROBE = (
    "import socket,sys\n"
    "socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()\n"
)
_TO = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.\-]*):(\d{1,5})$")
PENDING_PORT = 0  # listen port placeholder in the plan until apply starts the listener


class _ProxyParams(FaultParams):
    to: str = Field(..., description="service:port the target containers connect to")
    stream: Literal["upstream", "downstream"] = Field(
        "downstream", description="downstream: server -> client; upstream: client -> server"
    )
    toxicity: float = Field(1.0, ge=0, le=1, description="probability per connection (0 = none)")
    network: str | None = Field(None, description="only this shared Docker network (default: all)")
    via: Via = Field("auto", description="how to enter namespaces: nsenter, helper or auto")
    reset_existing: bool = Field(
        False,
        description="abort the clients' open connections to service:port (ss -K) so they "
        "reconnect through the proxy; NAT only steers new connections",
    )
    duration: Duration | None = Field(None, description="revert after this long")

    @field_validator("to")
    @classmethod
    def _service_port(cls, v: str) -> str:
        m = _TO.match(v)
        if not m or not 1 <= int(m.group(2)) <= 65535:
            raise ValueError(f"expected service:port like db:5432, got {v!r}")
        return v

    @property
    def service(self) -> str:
        return self.to.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.to.rsplit(":", 1)[1])


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class _ProxyFault(_NetnsFault):
    """Listener per (server container, shared network) + DNAT per (client, server, network)."""

    toxic_type: ClassVar[str] = ""
    params: _ProxyParams

    def __init__(self, params: FaultParams, target: Selection | None, ctx: RunContext):
        super().__init__(params, target, ctx)
        # one per (server container, network): server, network, server_ip, gateway,
        # listen_port, proxy (the listener's name in the engine)
        self.routes: list[dict[str, Any]] = []
        self.engine: ProxyServer | None = None

    def toxic_attributes(self) -> dict[str, float]:
        return {}

    def toxic(self) -> Toxic:
        return Toxic.from_json(
            {
                "name": f"{self.toxic_type}_{self.params.stream}",
                "type": self.toxic_type,
                "stream": self.params.stream,
                "toxicity": self.params.toxicity,
                "attributes": self.toxic_attributes(),
            }
        )

    def prepare(self) -> None:
        try:
            self.toxic()  # bad attribute values fail before anything is touched
        except ToxicError as exc:
            raise FaultError(f"{self.name}: {exc}") from None
        super().prepare()
        self._check_reachable()

    def _check_reachable(self) -> None:
        """Each client namespace must reach the host on the gateway, or steering would black-hole
        its connections: probe with a throwaway listener (the server under test sees nothing)."""
        client = _docker(self.ctx)
        for plan in self.plans:
            gateways = sorted({self.routes[r["route"]]["gateway"] for r in plan.rules})
            ex = netns.executor_for(plan.container_id, prefer=self._path, client=client)
            try:
                py = sys.executable if ex.path == "nsenter" else "python3"
                for gw in gateways:
                    with socket.create_server((gw, 0)) as probe:
                        port = probe.getsockname()[1]
                        res = ex.run([py, "-c", _PROBE, gw, str(port)], check=False, timeout=15)
                    if res.returncode != 0:
                        raise FaultError(
                            f"{self.name}: {plan.name} cannot reach the host at {gw} (the proxy "
                            f"listens there): {res.output[-200:] or 'no output'} — a host firewall "
                            f"dropping INPUT from Docker bridges? ({ex.reason})"
                        )
            finally:
                ex.close()

    def _servers(self) -> list[Instance]:
        backend = self.ctx.backend
        assert backend is not None
        from chaoskit.backends.base import Selection

        found = backend.find(Selection(service=self.params.service, mode="all"))
        if not found:
            raise FaultError(
                f"{self.name}: service {self.params.service!r} has no running container "
                f"in {backend.describe()}"
            )
        for inst in found:
            backend.check_owned(inst)
        return found

    def plan(self) -> list[NsPlan]:
        servers = self._servers()
        index: dict[tuple[str, str], int] = {}  # (server id, network) -> route
        plans: list[NsPlan] = []
        self.routes = []
        for client in self.instances:
            cnets = {s.get("NetworkID") for s in _networks(_container(client)).values()}
            plan = NsPlan.of(client)
            for server in servers:
                for net, s in sorted(_networks(_container(server)).items()):
                    if s.get("NetworkID") not in cnets or not s.get("IPAddress"):
                        continue
                    if self.params.network is not None and net != self.params.network:
                        continue
                    if not s.get("Gateway"):
                        continue  # internal network: the host cannot be reached from it
                    key = (server.id, net)
                    if key not in index:
                        index[key] = len(self.routes)
                        self.routes.append(
                            {
                                "server": server.name,
                                "network": net,
                                "server_ip": s["IPAddress"],
                                "gateway": s["Gateway"],
                                "listen_port": PENDING_PORT,
                            }
                        )
                    route = index[key]
                    plan.rules.append(
                        {
                            "table": "nat",
                            "chain": "OUTPUT",
                            "args": self._dnat_args(self.routes[route]),
                            "route": route,
                        }
                    )
            if not plan.rules:
                raise FaultError(
                    f"{self.name}: {client.name} shares no Docker network (with a gateway) with "
                    f"service {self.params.service!r}"
                    + (f" on network {self.params.network!r}" if self.params.network else "")
                )
            plans.append(plan)
        return plans

    def _dnat_args(self, route: dict[str, Any]) -> list[str]:
        return [
            "-p", "tcp", "-d", route["server_ip"], "--dport", str(self.params.port),
            *self._comment(),
            "-j", "DNAT", "--to-destination", f"{route['gateway']}:{route['listen_port']}",
        ]  # fmt: skip

    def _proxy_name(self, i: int) -> str:
        return f"{self.marker}:{i}"

    def record(self) -> dict[str, Any]:
        return super().record() | {"routes": self.routes, "to": self.params.to}

    def apply(self) -> dict[str, Any]:
        self.engine = shared_server(self.ctx.seed)
        started: list[str] = []
        try:
            for i, route in enumerate(self.routes):
                name = self._proxy_name(i)
                info = self.engine.create_proxy(
                    name, f"{route['gateway']}:0", f"{route['server_ip']}:{self.params.port}"
                )
                started.append(name)
                route["proxy"] = name
                route["listen_port"] = int(info["listen"].rsplit(":", 1)[1])
                self.engine.add_toxic(name, self.toxic())
            # the plan's DNAT targets now know their listen ports
            for plan in self.plans:
                for rule in plan.rules:
                    rule["args"] = self._dnat_args(self.routes[rule["route"]])
            evidence = super().apply()
        except Exception:
            for name in started:
                self._stop(name)
            raise
        if self.params.reset_existing:
            try:
                evidence["reset_existing"] = self._reset_existing()
            except Exception:
                self.revert()  # never leave half a fault behind
                raise
        evidence["proxies"] = [self.engine.evidence(n) for n in started]
        evidence["toxic"] = self.toxic().to_json()
        return evidence

    def _reset_existing(self) -> list[dict[str, Any]]:
        """Abort the clients' established connections to the server (``ss -K``), so they
        reconnect through the proxy: NAT only steers new flows."""
        client = _docker(self.ctx)
        out = []
        for plan in self.plans:
            ex = netns.executor_for(plan.container_id, prefer=self._path, client=client)
            try:
                killed = 0
                for ip in sorted({self.routes[r["route"]]["server_ip"] for r in plan.rules}):
                    res = ex.run(
                        ["ss", "-K", "-t", "-n", "dst", ip, "dport", "=", str(self.params.port)],
                        check=False,
                    )
                    if res.returncode != 0:
                        raise FaultError(
                            f"{self.name}: reset_existing: ss -K failed in {plan.name}: "
                            f"{res.output[-200:]} (kernel without INET_DIAG_DESTROY?)"
                        )
                    killed += sum(1 for ln in res.stdout.splitlines()[1:] if ln.strip())
                out.append({"container": plan.name, "connections_reset": killed})
            finally:
                ex.close()
        return out

    def _stop(self, name: str) -> dict[str, Any] | None:
        if self.engine is None:
            return None
        try:
            ev = self.engine.evidence(name)
            self.engine.delete_proxy(name)
            return ev
        except ToxicError:
            return None  # already gone: revert is idempotent

    def revert(self) -> dict[str, Any] | None:
        # Rules first, so no new connection is steered to a listener about to close. If removing
        # them fails, the listeners stay up: steered clients keep working until the rollback.
        result = self.revert_record(self.record(), self.ctx) or {}
        proxies = [ev for r in self.routes if "proxy" in r and (ev := self._stop(r["proxy"]))]
        if proxies:
            result["proxies"] = proxies
            acted = any(
                t["chunks"] or t["closes"] or t["resets"]
                for ev in proxies
                for t in ev["toxics"].values()
            )
            result["toxic_took_effect"] = acted
            result["took_effect"] = bool(result.get("took_effect")) and acted
            result["bytes_delayed"] = sum(
                t["bytes"] for ev in proxies for t in ev["toxics"].values()
            )
            if not result["took_effect"]:
                self.ctx.event(
                    "fault.no_effect",
                    fault=self.name,
                    reason="no connection passed through the proxy's toxic"
                    if result.get("packets")
                    else "no packet matched the DNAT rule (no new connection to "
                    f"{self.params.to} from the target)",
                )
        return result


@registry.faults.register("proxy.latency")
class ProxyLatency(_ProxyFault):
    name = "proxy.latency"
    summary = "add latency (and jitter) to TCP connections to service:port, via the proxy"
    toxic_type = "latency"

    class Params(_ProxyParams):
        latency: Duration = Field(..., description="added delay per chunk, e.g. 200ms")
        jitter: Duration = Field(0.0, description="uniform +/- variation, e.g. 20ms")

    def toxic_attributes(self) -> dict[str, float]:
        return {"latency": _ms(self.params.latency), "jitter": _ms(self.params.jitter)}  # type: ignore[attr-defined]


@registry.faults.register("proxy.jitter")
class ProxyJitter(ProxyLatency):
    name = "proxy.jitter"
    summary = "latency with jitter (same as proxy.latency; jitter is required here)"

    class Params(_ProxyParams):
        jitter: Duration = Field(..., description="uniform +/- variation, e.g. 50ms")
        latency: Duration = Field(0.0, description="base delay, e.g. 100ms")


@registry.faults.register("proxy.bandwidth")
class ProxyBandwidth(_ProxyFault):
    name = "proxy.bandwidth"
    summary = "limit throughput of TCP connections to service:port (KB/s, KB = 1000 bytes)"
    toxic_type = "bandwidth"

    class Params(_ProxyParams):
        rate: int = Field(..., gt=0, description="KB/s (1000 bytes/s), as Toxiproxy")

    def toxic_attributes(self) -> dict[str, float]:
        return {"rate": self.params.rate}  # type: ignore[attr-defined]


@registry.faults.register("proxy.slow_close")
class ProxySlowClose(_ProxyFault):
    name = "proxy.slow_close"
    summary = "delay the close (FIN) of TCP connections to service:port"
    toxic_type = "slow_close"

    class Params(_ProxyParams):
        delay: Duration = Field(..., description="how long the close is held back")

    def toxic_attributes(self) -> dict[str, float]:
        return {"delay": _ms(self.params.delay)}  # type: ignore[attr-defined]


@registry.faults.register("proxy.timeout")
class ProxyTimeout(_ProxyFault):
    name = "proxy.timeout"
    summary = "swallow all data, close after timeout (0 = hold forever)"
    toxic_type = "timeout"

    class Params(_ProxyParams):
        timeout: Duration = Field(0.0, description="close after this long; 0 = never")

    def toxic_attributes(self) -> dict[str, float]:
        return {"timeout": _ms(self.params.timeout)}  # type: ignore[attr-defined]


@registry.faults.register("proxy.reset_peer")
class ProxyResetPeer(_ProxyFault):
    name = "proxy.reset_peer"
    summary = "TCP RST the connection on its next data (after timeout)"
    toxic_type = "reset_peer"

    class Params(_ProxyParams):
        timeout: Duration = Field(0.0, description="wait this long after the first data, then RST")

    def toxic_attributes(self) -> dict[str, float]:
        return {"timeout": _ms(self.params.timeout)}  # type: ignore[attr-defined]


@registry.faults.register("proxy.slicer")
class ProxySlicer(_ProxyFault):
    name = "proxy.slicer"
    summary = "cut data into small slices with a delay between them"
    toxic_type = "slicer"

    class Params(_ProxyParams):
        average_size: int = Field(..., gt=0, description="bytes per slice on average")
        size_variation: int = Field(0, ge=0, description="+/- bytes")
        delay: Duration = Field(0.0, description="between slices, e.g. 1ms or 500us")

    def toxic_attributes(self) -> dict[str, float]:
        p = self.params
        return {
            "average_size": p.average_size,  # type: ignore[attr-defined]
            "size_variation": p.size_variation,  # type: ignore[attr-defined]
            "delay": round(p.delay * 1e6),  # type: ignore[attr-defined]  # Toxiproxy: µs
        }


@registry.faults.register("proxy.limit_data")
class ProxyLimitData(_ProxyFault):
    name = "proxy.limit_data"
    summary = "close each connection after N bytes"
    toxic_type = "limit_data"

    class Params(_ProxyParams):
        bytes: int = Field(..., gt=0, description="bytes let through per connection")

    def toxic_attributes(self) -> dict[str, float]:
        return {"bytes": self.params.bytes}  # type: ignore[attr-defined]


# --- toxiproxy.*: an existing Toxiproxy server, through toxiproxy-python -------------------------

_TP_LOCK = threading.Lock()  # toxiproxy-python keeps host/port in class attributes


def _api_hostport(api: str) -> tuple[str, int]:
    u = urlparse(api if "://" in api else f"http://{api}")
    if u.scheme != "http" or not u.hostname:
        raise ValueError(f"expected api: http://host:8474, got {api!r}")
    return u.hostname, u.port or 8474


class _ToxiproxyParams(FaultParams):
    api: str = Field("http://127.0.0.1:8474", description="Toxiproxy API, http://host:8474")
    proxy: str = Field(..., description="name of the proxy on that server")
    duration: Duration | None = Field(None, description="revert after this long")

    @field_validator("api")
    @classmethod
    def _api(cls, v: str) -> str:
        _api_hostport(v)
        return v


def _toxiproxy(api: str) -> Any:
    """A toxiproxy-python client pointed at ``api`` (call with _TP_LOCK held)."""
    try:
        from toxiproxy import Toxiproxy
    except ImportError:  # pragma: no cover - an optional dependency
        raise FaultError(
            "toxiproxy.* faults need toxiproxy-python (pip install toxiproxy-python)"
        ) from None
    tp = Toxiproxy()
    tp.update_api_consumer(*_api_hostport(api))
    return tp


def _tp_call(what: str, api: str, fn: Any) -> Any:
    import requests
    from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

    try:
        return fn()
    except requests.RequestException as exc:
        raise FaultError(f"{what}: cannot reach Toxiproxy at {api}: {type(exc).__name__}") from None
    except (InvalidToxic, NotFound, ProxyExists) as exc:
        detail = exc.args[0] if exc.args else ""
        if isinstance(detail, bytes):
            detail = detail.decode(errors="replace").strip()
        raise FaultError(f"{what}: Toxiproxy at {api} refused: {detail}") from None


def _get_proxy(tp: Any, name: str, api: str, what: str) -> Any:
    proxy = tp.get_proxy(name)
    if proxy is None:
        have = ", ".join(sorted(tp.proxies())) or "none"
        raise FaultError(f"{what}: no proxy {name!r} on Toxiproxy at {api} (have: {have})")
    return proxy


def _stats(api: str, proxy: str) -> dict[str, Any] | None:
    """The built-in proxy's counters (GET /proxies/{name}/stats); None on a real Toxiproxy."""
    import httpx

    try:
        r = httpx.get(f"{api.rstrip('/')}/proxies/{proxy}/stats", timeout=5)
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 else None


@registry.faults.register("toxiproxy.toxic")
class ToxiproxyToxic(Fault):
    name = "toxiproxy.toxic"
    summary = "add a toxic of any type to a proxy on an existing Toxiproxy server"
    needs_target = False

    class Params(_ToxiproxyParams):
        type: str = Field(..., description=f"one of {', '.join(sorted(TOXIC_TYPES))}")
        toxic_name: str | None = Field(None, description="default: chaoskit_<run>_<entry>")
        stream: Literal["upstream", "downstream"] = "downstream"
        toxicity: float = Field(1.0, ge=0, le=1)
        attributes: dict[str, float] = Field(default_factory=dict)

        @field_validator("type")
        @classmethod
        def _type(cls, v: str) -> str:
            if v not in TOXIC_TYPES:
                raise ValueError(
                    f"unknown toxic type {v!r}: one of {', '.join(sorted(TOXIC_TYPES))}"
                )
            return v

    params: Params

    def __init__(self, params: FaultParams, target: Selection | None, ctx: RunContext):
        super().__init__(params, target, ctx)
        import uuid

        self.entry_id = uuid.uuid4().hex[:10]

    @property
    def toxic_name(self) -> str:
        if self.params.toxic_name:
            return self.params.toxic_name
        return re.sub(r"[^A-Za-z0-9_.\-]", "-", f"chaoskit_{self.ctx.run_id}_{self.entry_id}")

    def prepare(self) -> None:
        try:
            Toxic.from_json(self._body())
        except ToxicError as exc:
            raise FaultError(f"{self.name}: {exc}") from None

    def _body(self) -> dict[str, Any]:
        p = self.params
        return {
            "name": self.toxic_name,
            "type": p.type,
            "stream": p.stream,
            "toxicity": p.toxicity,
            "attributes": p.attributes,
        }

    def record(self) -> dict[str, Any]:
        return {
            "fault": self.name,
            "params": self.params.model_dump(mode="json"),
            "api": self.params.api,
            "proxy": self.params.proxy,
            "toxic": self.toxic_name,
        }

    def apply(self) -> dict[str, Any]:
        p = self.params
        with _TP_LOCK:
            tp = _toxiproxy(p.api)
            proxy = _tp_call(self.name, p.api, lambda: _get_proxy(tp, p.proxy, p.api, self.name))
            body = self._body()
            _tp_call(self.name, p.api, lambda: proxy.add_toxic(**body))
            toxics = _tp_call(self.name, p.api, proxy.toxics)
        if self.toxic_name not in toxics:
            raise FaultError(f"{self.name}: toxic {self.toxic_name} not listed after adding it")
        t = toxics[self.toxic_name]
        return {
            "api": p.api,
            "proxy": p.proxy,
            "toxic": {"name": t.name, "type": t.type, "stream": t.stream,
                      "toxicity": t.toxicity, "attributes": t.attributes},
        }  # fmt: skip

    @classmethod
    def revert_record(cls, record: dict[str, Any], ctx: RunContext | None) -> dict[str, Any] | None:
        from toxiproxy.exceptions import NotFound

        api, name, toxic = record["api"], record["proxy"], record["toxic"]
        stats = _stats(api, name)
        with _TP_LOCK:
            tp = _toxiproxy(api)
            proxy = _tp_call(cls.name, api, lambda: tp.get_proxy(name))
            if proxy is None:
                return {"result": f"proxy {name} is gone: nothing to remove"}
            try:
                _tp_call(cls.name, api, lambda: proxy.destroy_toxic(toxic))
            except FaultError as exc:
                if "not found" not in str(exc):
                    raise
            except NotFound:
                pass
            left = _tp_call(cls.name, api, proxy.toxics)
        if toxic in left:
            raise FaultError(f"{cls.name}: toxic {toxic} still on proxy {name} after removal")
        out: dict[str, Any] = {"result": "removed", "proxy": name, "toxic": toxic}
        if stats is not None and toxic in stats.get("toxics", {}):
            t = stats["toxics"][toxic]
            out["stats"] = t
            out["took_effect"] = bool(t["chunks"] or t["closes"] or t["resets"])
        return out


@registry.faults.register("toxiproxy.disable")
class ToxiproxyDisable(Fault):
    name = "toxiproxy.disable"
    summary = "disable a proxy on an existing Toxiproxy server (drops its connections)"
    needs_target = False

    Params = _ToxiproxyParams
    params: _ToxiproxyParams

    def prepare(self) -> None:
        pass

    def record(self) -> dict[str, Any]:
        return {
            "fault": self.name,
            "params": self.params.model_dump(mode="json"),
            "api": self.params.api,
            "proxy": self.params.proxy,
        }

    def apply(self) -> dict[str, Any]:
        p = self.params
        with _TP_LOCK:
            tp = _toxiproxy(p.api)
            proxy = _tp_call(self.name, p.api, lambda: _get_proxy(tp, p.proxy, p.api, self.name))
            _tp_call(self.name, p.api, proxy.disable)
            after = _tp_call(self.name, p.api, lambda: tp.get_proxy(p.proxy))
        if after is None or after.enabled:
            raise FaultError(f"{self.name}: proxy {p.proxy} still enabled after disabling it")
        return {"api": p.api, "proxy": p.proxy, "enabled": after.enabled, "took_effect": True}

    @classmethod
    def revert_record(cls, record: dict[str, Any], ctx: RunContext | None) -> dict[str, Any] | None:
        api, name = record["api"], record["proxy"]
        with _TP_LOCK:
            tp = _toxiproxy(api)
            proxy = _tp_call(cls.name, api, lambda: tp.get_proxy(name))
            if proxy is None:
                return {"result": f"proxy {name} is gone: nothing to enable"}
            _tp_call(cls.name, api, proxy.enable)
            after = _tp_call(cls.name, api, lambda: tp.get_proxy(name))
        if after is None or not after.enabled:
            raise FaultError(f"{cls.name}: proxy {name} not enabled again")
        return {"result": "enabled", "proxy": name, "enabled": True}
