"""Pydantic-free re-implementations of the few model/field validators the fast validator trusts.

The IR generator (``fastir.py``) looks every validator in a core schema up here by
``module:qualname``. A validator is trusted only when its source still hashes to the value pinned
next to its twin below (or when the model calls the very function listed, like ``parse_duration``);
otherwise the IR marks it opaque and such files take the full loader. Each twin accepts only what
the real validator accepts: it raises ``Reject`` whenever it is not sure.
"""

from __future__ import annotations

import re
import signal as _signal
from collections.abc import Callable
from typing import Any

from chaoskit.quantities import parse_duration, parse_rate


class Reject(Exception):
    """Not certainly valid: the full loader decides (and explains)."""


class Obj(dict):
    """A validated model as a dict of field values; ``extra`` holds allowed unknown keys.
    A default the IR could not represent reads as ``Reject``."""

    UNKNOWN: Any = object()

    def __init__(self, fields: dict[str, Any], extra: dict[str, Any]):
        super().__init__(fields)
        self.extra = extra

    def __getitem__(self, key: str) -> Any:
        v = super().__getitem__(key)
        if v is Obj.UNKNOWN:
            raise Reject(key)
        return v


def _require(cond: bool) -> None:
    if not cond:
        raise Reject()


def _one_of_two(a: str, b: str) -> Callable[[Obj], Obj]:
    def check(v: Obj) -> Obj:
        _require((v[a] is None) != (v[b] is None))
        return v

    return check


def _selection(v: Obj) -> Obj:
    _require(sum(v[k] is not None for k in ("mode", "fixed", "percent")) <= 1)
    _require(bool(v["service"] or v["selector"] or v["owner"]))
    return v


def _signal_known(v: Any) -> Any:
    if isinstance(v, int):
        return v
    name = v.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    sig = getattr(_signal, name, None)
    _require(isinstance(sig, int))
    return v


def _regex_compiles(v: str) -> str:
    try:
        re.compile(v)
    except re.error:
        raise Reject() from None
    return v


def _window_ordered(v: Any) -> Any:
    _require(v is None or v[0] <= v[1])
    return v


def _ports_proto(v: Obj) -> Obj:
    _require(not (v["ports"] and v["protocol"] == "all"))
    if v["ports"] and v["protocol"] is None:
        v["protocol"] = "tcp"
    return v


def _partition_shape(v: Obj) -> Obj:
    frm, to, between = v["from_"], v["to"], v["between"]
    one_way = frm is not None or to is not None
    _require(not (between is not None and one_way))
    _require(between is not None or one_way)
    _require(not one_way or bool(frm and to))
    groups = between if between is not None else [frm or [], to or []]
    _require(len(groups) >= 2 and all(groups))
    flat = [s for g in groups for s in g]
    _require(len(flat) == len(set(flat)))
    return v


_TO = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.\-]*):(\d{1,5})$")


def _service_port(v: str) -> str:
    m = _TO.match(v)
    _require(m is not None and 1 <= int(m.group(2)) <= 65535)
    return v


# a strict subset of the URIs libpq parses: no percent-escapes, no query string
_DSN = re.compile(
    r"postgres(?:ql)?://(?:[A-Za-z0-9_.-]+(?::[A-Za-z0-9_.-]*)?@)?[A-Za-z0-9_.-]+(?::\d{1,5})?(?:/[A-Za-z0-9_.-]*)?"
)


def _dsn(v: str) -> str:
    _require(_DSN.fullmatch(v) is not None)
    return v


def _terminate_matcher(v: Obj) -> Obj:
    _require(any(v[k] for k in ("application_name", "user", "database", "client_addr", "query")))
    _require(v["repeat"] is None or v["repeat"] >= 1)
    _require(v["every"] is None or v["every"] > 0)
    return v


def _client_addr(v: str | None) -> str | None:
    if v is None:
        return v
    import ipaddress  # only when a file names an address

    try:
        return str(ipaddress.ip_network(v.strip(), strict=False))
    except ValueError:
        raise Reject() from None


def _deadlock(v: Obj) -> Obj:
    _require(bool(v["first"].strip() and v["second"].strip()))
    _require(v["deadlocks"] >= 1 and v["poll_every"] > 0)
    return v


_TABLE_MODES = (
    "access share", "row share", "row exclusive", "share update exclusive",
    "share", "share row exclusive", "exclusive", "access exclusive",
)


def _table_mode(v: str) -> str:
    n = " ".join(v.lower().replace("_", " ").replace("-", " ").split())
    n = n.removeprefix("for ")
    if n.endswith(" lock") or n.endswith(" mode"):
        n = n[:-5]
    _require(n in _TABLE_MODES)
    return n


def _slow(v: Obj) -> Obj:
    _require(bool(v["tables"] or v["settings"]))
    _require(not (v["settings"] and not v["role"]) and not (v["reconnect"] and not v["role"]))
    _require(v["tables"] is None or bool(v["tables"]))
    _require(not v["tables"] or 0 < v["stall"] <= v["period"])
    return v


_GUC = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def _guc_names(v: dict[str, Any] | None) -> dict[str, Any] | None:
    _require(all(_GUC.match(k) for k in v or {}))
    return v


def _no_port_forward(v: Any) -> Any:
    _require(v is None)  # a port_forward block is checked by the kubernetes model: full loader
    return v


def _base_url(v: str) -> str:
    _require(v.startswith(("http://", "https://")))
    return v.rstrip("/")


def _positive(v: float) -> float:
    _require(v > 0)
    return v


def _some_ops(v: Obj) -> Obj:
    _require(bool(v["ops"] or v["ops_file"]))
    names = [o["name"] for o in v["ops"]]
    _require(len(set(names)) == len(names))
    return v


def _one_status(v: Any) -> Any:
    return [v] if isinstance(v, int) else v


def _ledger_preset(data: Any, reference: dict[str, Any]) -> Any:
    """``reference`` is the preset's block without invariants, carried in the IR."""
    if isinstance(data, dict) and data.get("preset") == "reference":
        if "invariants" not in data and "invariants_file" not in data:
            found = _find_invariants_file(data.get("_base_dir") or None)
            _require(found is not None)  # else the preset's built-in invariants: not compiled
            reference = {**reference, "invariants_file": found}
        return {**reference, **{k: v for k, v in data.items() if k != "_base_dir"}}
    if isinstance(data, dict) and "_base_dir" in data:
        return {k: v for k, v in data.items() if k != "_base_dir"}
    return data


def _find_invariants_file(base: Any) -> str | None:
    """compose/ledger/invariants.sql next to ``base`` or the working directory, or a parent."""
    import os

    for start in [p for p in (base, os.getcwd()) if p is not None]:
        d = os.path.realpath(start)
        while True:
            cand = os.path.join(d, "compose", "ledger", "invariants.sql")
            if os.path.isfile(cand):
                return cand
            if os.path.dirname(d) == d:
                break
            d = os.path.dirname(d)
    return None


def _listify(v: Any) -> Any:
    return [v] if isinstance(v, dict) else v


def _listify_values(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: [c] if isinstance(c, str) else c for k, c in v.items()}
    return v


def _pow2(v: int | None) -> int | None:
    _require(v is None or (1 <= v <= 1 << 20 and not v & (v - 1)))
    return v


def _history_one_way(v: Obj) -> Obj:
    _require(v["present_once"] is not None or bool(v["table"] and v["id_column"]))
    _require(v["present_once"] is None or "%(id)s" in v["present_once"])
    return v


def _unique_names(v: list[Obj]) -> list[Obj]:
    names = [i["name"] for i in v]
    _require(len(names) == len(set(names)))
    return v


# module:qualname -> (twin, pin, helpers): pin is a sha256 prefix of the real validator's source
# and of its helpers' (functions, regexes, constants), or None when the model calls this very
# function. Regenerate pins with ``python -m chaoskit.experiment.fastir --pins`` after reviewing
# that each twin still matches its validator.
CHECKS: dict[str, tuple[Callable[[Any], Any], str | None, tuple[str, ...]]] = {
    "chaoskit.quantities:parse_duration": (parse_duration, None, ()),
    "chaoskit.quantities:parse_rate": (parse_rate, None, ()),
    "chaoskit.experiment.model:Target._exactly_one": (_one_of_two("compose", "kubernetes"), "92fa80549f36e294", ()),
    "chaoskit.experiment.model:FaultStep._one_name": (_one_of_two("fault", "action"), "a0094df352e4addc", ()),
    "chaoskit.backends.base:Selection._one_way": (_selection, "529e7476ed48eee9", ()),
    "chaoskit.faults.container:Kill.Params._known": (_signal_known, "87559a33017101f0", ("chaoskit.faults.container:signal_number",)),
    "chaoskit.triggers.log:LogTrigger.Params._compiles": (_regex_compiles, "aa6d19fbbd9f92d0", ()),
    "chaoskit.triggers.timed:At.Params._ordered": (_window_ordered, "e5eb0d91925eb858", ()),
    "chaoskit.faults.network:_PortsMixin._proto": (_ports_proto, "336c5caf58896705", ()),
    "chaoskit.faults.network:Partition.Params._shape": (_partition_shape, "cb84990f40684a32", ()),
    "chaoskit.faults.proxy:_ProxyParams._service_port": (_service_port, "45c250b195ec5a72", ("chaoskit.faults.proxy:_TO",)),
    "chaoskit.faults.db.common:DbParams._dsn_ok": (_dsn, "7b284d97f70c7f38", ("chaoskit.faults.db.common:check_dsn",)),
    "chaoskit.faults.db.terminate:TerminateParams._some_matcher": (_terminate_matcher, "1adfc0a29b6bee19", ()),
    "chaoskit.faults.db.terminate:TerminateParams._addr": (_client_addr, "6f6d220ca46ee8e4", ()),
    "chaoskit.faults.db.deadlock:DeadlockParams._check": (_deadlock, "7b4a898e87f14c18", ()),
    "chaoskit.faults.db.slow:SlowParams._check": (_slow, "e46ee44ccb5a977b", ()),
    "chaoskit.faults.db.slow:SlowParams._mode": (_table_mode, "49edd20fcea7f334", ("chaoskit.faults.db.lock:table_mode", "chaoskit.faults.db.lock:_norm", "chaoskit.faults.db.lock:TABLE_MODES")),
    "chaoskit.faults.db.slow:SlowParams._names": (_guc_names, "29918ca2b6157624", ("chaoskit.faults.db.slow:_GUC",)),
    "chaoskit.probes.base:check_port_forward": (_no_port_forward, "624431f3695be7eb", ()),
    "chaoskit.workload.http:Params._url": (_base_url, "d930c9874d2511df", ()),
    "chaoskit.workload.http:Params._positive": (_positive, "372201a15e7143b9", ()),
    "chaoskit.workload.http:Params._some_ops": (_some_ops, "ba0011e826ee415b", ()),
    "chaoskit.workload.http:OpTemplate._one_status": (_one_status, "3da7defc29baa278", ()),
    "chaoskit.checkers.ledger:LedgerParams._preset": (_ledger_preset, "4a809cf4ea5da94f", ("chaoskit.checkers.presets:reference", "chaoskit.checkers.presets:find_invariants_file")),
    "chaoskit.checkers.ledger:LedgerParams._listify": (_listify, "aa047ec310d8d75b", ()),
    "chaoskit.checkers.ledger:LedgerParams._unique": (_unique_names, "54562b1c927ab28b", ()),
    "chaoskit.checkers.snapshot:SnapshotSpec._listify": (_listify_values, "c0d1d3430d0179cc", ()),
    "chaoskit.checkers.snapshot:SnapshotSpec._pow2": (_pow2, "c9d28e6d81acb2f9", ()),
    "chaoskit.checkers.history:HistorySpec._one_way": (_history_one_way, "24e36344c31d60f0", ()),
}
