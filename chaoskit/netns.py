"""Run commands inside a container's network namespace, and keep track of what chaoskit put there.

Two ways in, chosen by :func:`executor_for`:

- ``NsenterExecutor``: ``nsenter -t PID -n <argv>`` with the *host's* binaries. Needs root on the
  Docker host itself; the container image needs no tools at all.
- ``HelperContainerExecutor``: a helper container from ``chaoskit/nettools`` that shares the
  target's network namespace (``network_mode=container:<id>``, ``NET_ADMIN``), driven through the
  Docker API. Works when we are not root or the engine is remote.

Every iptables rule chaoskit adds carries a comment ``chaoskit:<run_id>:<entry>``; every qdisc a
distinctive root handle (:data:`QDISC_HANDLE`). Rollback removes exactly those and nothing else,
reading the live state back with ``iptables-save`` rather than trusting what we think we added.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

from chaoskit.errors import FaultError

MARKER_PREFIX = "chaoskit:"
# tc qdiscs carry no comment: a root qdisc with this major handle is ours, anything else is not.
QDISC_HANDLE = "c4a0:"
# iptables front-ends that may hold rules in a namespace; we list/delete with all that exist so a
# rule added through one backend (nft or legacy) is never missed by a rollback through the other.
IPTABLES_SAVE_VARIANTS = (
    "iptables-save", "iptables-legacy-save", "iptables-nft-save",
    "ip6tables-save", "ip6tables-legacy-save", "ip6tables-nft-save",
)
TABLES = ("filter", "nat", "mangle", "raw")

# Extra labels put on helper containers (tests add ``chaoskit.test=1``).
EXTRA_HELPER_LABELS: dict[str, str] = {}

Path = Literal["nsenter", "helper"]


class NetnsError(FaultError):
    """A command in a network namespace failed; the message names the path taken and why."""


@dataclass
class ExecResult:
    """Like ``subprocess.CompletedProcess`` but the same for both paths."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return (self.stdout + self.stderr).strip()


def marker(run_id: str, entry: str) -> str:
    """The iptables comment of one fault entry. Only safe characters, so iptables-save keeps it verbatim."""
    safe = re.compile(r"[^A-Za-z0-9_.\-]")
    return f"{MARKER_PREFIX}{safe.sub('-', run_id)}:{safe.sub('-', entry)}"[:250]


def marker_matches(comment: str | None, wanted: str) -> bool:
    """Exact marker, or a prefix when ``wanted`` ends with ':' (``chaoskit:`` = all, ``chaoskit:<run>:`` = a run)."""
    if comment is None:
        return False
    if wanted.endswith(":"):
        return comment.startswith(wanted)
    return comment == wanted


class NetnsExecutor(ABC):
    """Runs argv in one container's network namespace."""

    path: Path
    reason: str

    @abstractmethod
    def _run(self, argv: list[str], timeout: float) -> ExecResult: ...

    def run(self, argv: list[str], check: bool = True, timeout: float = 30.0) -> ExecResult:
        res = self._run(argv, timeout)
        if check and res.returncode != 0:
            raise NetnsError(
                f"{shlex.join(argv)} failed (exit {res.returncode}) via {self.reason}: "
                f"{res.output[-500:] or 'no output'}"
            )
        return res

    def has(self, binary: str) -> bool:
        """Whether ``binary`` exists on the side that runs our commands (cached: one exec each)."""
        cache: dict[str, bool] = self.__dict__.setdefault("_has", {})
        if binary not in cache:
            res = self._run(["sh", "-c", f"command -v {shlex.quote(binary)}"], 10.0)
            cache[binary] = res.returncode == 0
        return cache[binary]

    def describe(self) -> dict[str, Any]:
        return {"path": self.path, "reason": self.reason}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (the helper container)."""


class NsenterExecutor(NetnsExecutor):
    """``nsenter -t PID -n``: the host's binaries in the container's network namespace."""

    path: Path = "nsenter"

    def __init__(self, pid: int, reason: str = "path: nsenter (root on the docker host)"):
        self.pid = pid
        self.reason = reason

    def _run(self, argv: list[str], timeout: float) -> ExecResult:
        if not os.path.exists(f"/proc/{self.pid}/ns/net"):
            raise NetnsError(f"process {self.pid} is gone (container stopped?) via {self.reason}")
        cmd = ["nsenter", "-t", str(self.pid), "-n", *argv]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise NetnsError(f"{shlex.join(argv)} timed out after {timeout}s via {self.reason}") from exc
        except OSError as exc:
            raise NetnsError(f"cannot run nsenter via {self.reason}: {exc}") from exc
        return ExecResult(argv, p.returncode, p.stdout, p.stderr)

    def has(self, binary: str) -> bool:
        return shutil.which(binary) is not None


class HelperContainerExecutor(NetnsExecutor):
    """A long-lived helper container sharing the target's network namespace.

    It is started lazily, sleeps (bounded, so a crashed chaoskit leaves nothing behind for long,
    and ``auto_remove`` cleans it up), and every command is a ``docker exec`` in it.
    """

    path: Path = "helper"
    LIFETIME_S = 900

    def __init__(self, container_id: str, client: Any = None, reason: str = "path: helper container"):
        self.container_id = container_id
        self._client = client
        self.reason = reason
        self._helper: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from chaoskit.backends.compose import docker_client

            self._client = docker_client()
        return self._client

    def _ensure(self) -> Any:
        import docker.errors

        if self._helper is not None:
            try:
                self._helper.reload()
                if self._helper.status == "running":
                    return self._helper
            except docker.errors.NotFound:
                pass
        from chaoskit.helper_image import ensure_helper_image

        try:
            image = ensure_helper_image(self.client)
        except FaultError as exc:
            raise NetnsError(f"{exc} ({self.reason})") from exc
        try:
            self._helper = self.client.containers.run(
                image,
                ["sleep", str(self.LIFETIME_S)],
                detach=True,
                auto_remove=True,
                network_mode=f"container:{self.container_id}",
                cap_add=["NET_ADMIN", "NET_RAW"],
                labels={"chaoskit.helper": "1", "chaoskit.helper.target": self.container_id}
                | EXTRA_HELPER_LABELS,
            )
        except docker.errors.DockerException as exc:
            raise NetnsError(f"cannot start the helper container via {self.reason}: {exc}") from exc
        return self._helper

    def _run(self, argv: list[str], timeout: float) -> ExecResult:
        import docker.errors

        helper = self._ensure()
        try:
            code, (out, err) = helper.exec_run(argv, demux=True)
        except docker.errors.DockerException as exc:
            raise NetnsError(f"{shlex.join(argv)} could not run via {self.reason}: {exc}") from exc
        return ExecResult(
            argv, int(code), (out or b"").decode(errors="replace"), (err or b"").decode(errors="replace")
        )

    def close(self) -> None:
        import docker.errors

        if self._helper is not None:
            try:
                self._helper.remove(force=True)
            except docker.errors.DockerException:
                pass
            self._helper = None


def _remote_docker() -> bool:
    host = os.environ.get("DOCKER_HOST", "")
    return not (host == "" or host.startswith("unix://"))


def choose_path(prefer: str | None = None) -> tuple[Path, str]:
    """Which path to take and the one-line reason (it goes into evidence and into errors).

    ``prefer`` (or env ``CHAOSKIT_NETNS_PATH``): ``nsenter``, ``helper`` or None (auto)."""
    prefer = prefer or os.environ.get("CHAOSKIT_NETNS_PATH") or None
    if prefer not in (None, "auto", "nsenter", "helper"):
        raise NetnsError(f"unknown namespace path {prefer!r}: expected nsenter, helper or auto")
    if prefer == "helper":
        return "helper", "path: helper container (asked for)"
    problem = None
    if _remote_docker():
        problem = f"remote DOCKER_HOST={os.environ.get('DOCKER_HOST')}"
    elif os.geteuid() != 0:
        problem = "not root"
    elif shutil.which("nsenter") is None:
        problem = "no nsenter on the docker host"
    if problem is None:
        return "nsenter", "path: nsenter (root on the docker host)"
    if prefer == "nsenter":
        raise NetnsError(f"path: nsenter was asked for but cannot work here ({problem})")
    return "helper", f"path: helper container ({problem})"


def _container_of(obj: Any, client: Any) -> Any:
    """A fresh docker container object from an Instance, a container object or an id."""
    import docker.errors

    if isinstance(obj, str):
        cid = obj
    elif hasattr(obj, "meta") and hasattr(obj, "id"):  # an Instance
        cid = obj.id
    else:
        cid = obj.id
    try:
        return client.containers.get(cid)
    except docker.errors.NotFound as exc:
        raise NetnsError(f"container {cid[:12]} no longer exists") from exc
    except docker.errors.DockerException as exc:
        raise NetnsError(f"cannot inspect container {cid[:12]}: {exc}") from exc


def executor_for(obj: Any, prefer: str | None = None, client: Any = None) -> NetnsExecutor:
    """The executor for an Instance, a docker container object or a container id.

    The container is re-inspected, so a restarted container's new PID (new namespace) is used,
    never a stale cached one that might by now belong to an unrelated process."""
    path, reason = choose_path(prefer)
    if client is None:
        inst_client = getattr(getattr(obj, "backend", None), "client", None)
        if inst_client is None:
            from chaoskit.backends.compose import docker_client

            inst_client = docker_client()
        client = inst_client
    c = _container_of(obj, client)
    state = c.attrs.get("State", {})
    if state.get("Status") != "running":
        raise NetnsError(f"container {c.name} is {state.get('Status')}, not running ({reason})")
    mode = c.attrs.get("HostConfig", {}).get("NetworkMode", "")
    if mode == "host":
        raise NetnsError(f"refusing: container {c.name} uses the host's network namespace")
    if path == "nsenter":
        return NsenterExecutor(int(state["Pid"]), reason)
    return HelperContainerExecutor(c.id, client, reason)


# --- iptables -------------------------------------------------------------------------------


@dataclass
class Rule:
    """One rule as ``iptables-save`` prints it, with where it came from."""

    save_binary: str  # iptables-save / iptables-legacy-save / ...
    table: str
    chain: str
    spec: list[str]  # everything after ``-A CHAIN``
    comment: str | None
    packets: int = 0
    bytes: int = 0

    @property
    def binary(self) -> str:
        return self.save_binary.removesuffix("-save")

    @property
    def family(self) -> int:
        return 6 if self.save_binary.startswith("ip6") else 4

    def key(self) -> str:
        v6 = "v6 " if self.family == 6 else ""
        return f"{v6}{self.table}/{self.chain} {shlex.join(self.spec)}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "binary": self.binary,
            "table": self.table,
            "chain": self.chain,
            "rule": shlex.join(self.spec),
            "comment": self.comment,
            "packets": self.packets,
            "bytes": self.bytes,
        }


_COUNTERS = re.compile(r"^\[(\d+):(\d+)\]\s+")


def parse_iptables_save(text: str, save_binary: str = "iptables-save") -> list[Rule]:
    """Rules from ``iptables-save -c`` output (counters optional)."""
    rules: list[Rule] = []
    table = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            table = line[1:]
            continue
        packets = bytes_ = 0
        m = _COUNTERS.match(line)
        if m:
            packets, bytes_ = int(m.group(1)), int(m.group(2))
            line = line[m.end():]
        if not line.startswith("-A "):
            continue
        try:
            parts = shlex.split(line)
        except ValueError:
            continue
        chain, spec = parts[1], parts[2:]
        comment = None
        for i, tok in enumerate(spec[:-1]):
            if tok == "--comment":
                comment = spec[i + 1]
        rules.append(Rule(save_binary, table, chain, spec, comment, packets, bytes_))
    return rules


_SECTION = "@@chaoskit-save"
# One exec for all backends (the helper path pays ~50 ms per docker exec; nsenter a fork each).
_SAVE_ALL = (
    "for b in " + " ".join(IPTABLES_SAVE_VARIANTS) + "; do "
    "if command -v $b >/dev/null 2>&1; then out=$($b -c 2>/dev/null); rc=$?; "
    "real=$(readlink -f \"$(command -v $b)\" 2>/dev/null || echo $b); "
    f"echo \"{_SECTION} $b $rc $real\"; printf '%s\\n' \"$out\"; fi; done"
)


def _save_outputs(ex: NetnsExecutor) -> list[tuple[str, int, str, str]]:
    """(save binary, exit code, real path of the binary, output) of every variant present."""
    res = ex.run(["sh", "-c", _SAVE_ALL])
    out: list[tuple[str, int, str, str]] = []
    for chunk in res.stdout.split(_SECTION + " ")[1:]:
        head, _, body = chunk.partition("\n")
        parts = head.split(" ", 2)
        name, rc, real = parts[0], parts[1] if len(parts) > 1 else "1", parts[2] if len(parts) > 2 else parts[0]
        out.append((name, int(rc) if rc.isdigit() else 1, real.strip(), body))
    if not out:
        raise NetnsError(f"no iptables-save found ({ex.reason})")
    return out


def all_rules(ex: NetnsExecutor) -> list[Rule]:
    """Every rule in the namespace, from every iptables backend present (deduplicated)."""
    rules: list[Rule] = []
    seen: set[tuple[bool, str, str]] = set()
    for save, rc, real, text in _save_outputs(ex):
        if rc != 0:
            continue  # e.g. the legacy backend's modules are absent: it holds nothing then
        # iptables-save is an alias of nft or legacy: the same multi-binary under another name
        # (xtables-nft-multi dispatches on the name, so the flavour is in the name too)
        flavour = "legacy" if "legacy" in save or "legacy" in real else "nft" if "nft" in save or "nft" in real else save
        key = (save.startswith("ip6"), real, flavour)
        if key in seen:
            continue
        seen.add(key)
        rules.extend(parse_iptables_save(text, save))
    return rules


def iptables(
    ex: NetnsExecutor, table: str, args: list[str], binary: str = "iptables", family: int = 4
) -> ExecResult:
    """``iptables -w -t TABLE ARGS`` in the namespace (``-w``: wait for the xtables lock).

    ``family=6`` uses ip6tables (same backend flavour as ``binary``)."""
    if family == 6 and not binary.startswith("ip6"):
        binary = binary.replace("iptables", "ip6tables", 1)
    return ex.run([binary, "-w", "5", "-t", table, *args])


def rules_with_marker(ex: NetnsExecutor, marker_prefix: str = MARKER_PREFIX) -> list[Rule]:
    return [r for r in all_rules(ex) if marker_matches(r.comment, marker_prefix)]


def counters(ex: NetnsExecutor, marker_: str) -> dict[str, dict[str, int]]:
    """rule -> {packets, bytes} for the rules carrying ``marker_``."""
    return {
        r.key(): {"packets": r.packets, "bytes": r.bytes} for r in rules_with_marker(ex, marker_)
    }


def delete_marked_rules(ex: NetnsExecutor, marker_: str) -> list[Rule]:
    """Delete exactly the rules whose comment matches, each ``-A`` line turned into ``-D``.

    Returns the deleted rules (with their final counters). Raises if any remain afterwards."""
    deleted: list[Rule] = []
    # Several passes: two backends holding the very same rule text list as one until one is gone.
    for _ in range(4):
        found = rules_with_marker(ex, marker_)
        if not found:
            return deleted
        progress = False
        for r in found:
            res = ex.run([r.binary, "-w", "5", "-t", r.table, "-D", r.chain, *r.spec], check=False)
            if res.returncode == 0:
                deleted.append(r)
                progress = True
        if not progress:
            break
    left = rules_with_marker(ex, marker_)
    if left:
        raise NetnsError(
            f"{len(left)} chaoskit rule(s) could not be removed ({ex.reason}): "
            + "; ".join(r.key() for r in left[:3])
        )
    return deleted


# --- tc -------------------------------------------------------------------------------------


def interfaces(ex: NetnsExecutor) -> list[str]:
    """Non-loopback interfaces in the namespace (``eth0@if14`` -> ``eth0``)."""
    out = ex.run(["ip", "-o", "link", "show"]).stdout
    names = []
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            name = parts[1].strip().split("@", 1)[0]
            if name and name != "lo":
                names.append(name)
    return names


def interface_to(ex: NetnsExecutor, ip: str) -> str:
    """The interface the namespace routes ``ip`` through."""
    out = ex.run(["ip", "-o", "route", "get", ip]).stdout
    m = re.search(r"\bdev\s+(\S+)", out)
    if not m:
        raise NetnsError(f"no route to {ip} ({ex.reason})")
    return m.group(1)


def root_qdisc(ex: NetnsExecutor, dev: str) -> dict[str, str] | None:
    """The root qdisc of ``dev`` as {kind, handle, line}, or None."""
    out = ex.run(["tc", "qdisc", "show", "dev", dev]).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0] == "qdisc" and "root" in parts:
            return {"kind": parts[1], "handle": parts[2], "line": line.strip()}
    return None


def qdisc_stats(ex: NetnsExecutor, dev: str) -> dict[str, int]:
    """Sent bytes/packets and drops of the root qdisc (evidence for tc faults)."""
    out = ex.run(["tc", "-s", "qdisc", "show", "dev", dev]).stdout
    m = re.search(r"Sent (\d+) bytes (\d+) pkt \(dropped (\d+), overlimits (\d+)", out)
    if not m:
        return {}
    return {
        "bytes": int(m.group(1)),
        "packets": int(m.group(2)),
        "dropped": int(m.group(3)),
        "overlimits": int(m.group(4)),
    }


def delete_marked_qdisc(ex: NetnsExecutor, dev: str, handle: str = QDISC_HANDLE) -> bool:
    """Remove the root qdisc of ``dev`` only if it carries our handle. True when one was removed."""
    try:
        q = root_qdisc(ex, dev)
    except NetnsError:
        return False  # interface gone: nothing of ours can be left on it
    if q is None or q["handle"] != handle:
        return False
    ex.run(["tc", "qdisc", "del", "dev", dev, "root", "handle", handle])
    return True


# --- sweeping ---------------------------------------------------------------------------------


@dataclass
class SweepResult:
    container: str
    rules: list[dict[str, Any]] = field(default_factory=list)
    qdiscs: list[str] = field(default_factory=list)
    error: str | None = None


def sweep(
    containers: list[Any], marker_prefix: str = MARKER_PREFIX, prefer: str | None = None, client: Any = None
) -> list[SweepResult]:
    """Remove every chaoskit rule (and our root qdiscs) from these containers' namespaces.

    For ``chaoskit rollback --all``: pass the running containers of the target; only rules whose
    comment starts with ``marker_prefix`` and root qdiscs with :data:`QDISC_HANDLE` are touched."""
    out: list[SweepResult] = []
    for c in containers:
        res = SweepResult(getattr(c, "name", str(c)))
        ex: NetnsExecutor | None = None
        try:
            ex = executor_for(c, prefer=prefer, client=client)
            res.rules = [r.as_dict() for r in delete_marked_rules(ex, marker_prefix)]
            res.qdiscs = [d for d in interfaces(ex) if delete_marked_qdisc(ex, d)]
        except FaultError as exc:
            res.error = str(exc)
        finally:
            if ex is not None:
                ex.close()
        out.append(res)
    return out

