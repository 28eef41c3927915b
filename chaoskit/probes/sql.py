"""SQL probe: one query, its single value or its rows. Numbers stay exact (int / Decimal)."""

from __future__ import annotations

import datetime
import decimal
from typing import Any, Literal

from pydantic import Field

from chaoskit import registry
from chaoskit.errors import ProbeError
from chaoskit.probes.base import PortForward, Probe, ProbeParams
from chaoskit.units import Duration


def jsonable(v: Any) -> Any:
    """JSON-safe without losing money precision: Decimal becomes its exact string."""
    if isinstance(v, decimal.Decimal):
        return int(v) if v == v.to_integral_value() and abs(v) < 2**63 else str(v)
    if isinstance(v, datetime.datetime | datetime.date | datetime.time):
        return v.isoformat()
    if isinstance(v, datetime.timedelta):
        return v.total_seconds()
    if isinstance(v, bytes | memoryview):
        return bytes(v).hex()
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    return v


@registry.probes.register("sql")
class SqlProbe(Probe):
    summary = "one SQL query: value is the single cell (result: value) or the rows (result: rows)"

    class Params(ProbeParams):
        dsn: str
        query: str
        params: dict[str, Any] | list[Any] | None = None
        result: Literal["value", "rows", "auto"] = Field("auto", description="auto: one cell -> value, else rows")
        timeout: Duration = 5.0
        port_forward: PortForward = None

    def __init__(self, params: Any, ctx: Any):
        super().__init__(params, ctx)
        self._conn: Any = None

    def _connection(self, dsn: str | None = None) -> Any:
        import psycopg

        if self._conn is None or self._conn.closed or self._conn.broken:
            p = self.params
            self._conn = psycopg.connect(
                dsn or p.dsn,
                autocommit=True,
                connect_timeout=max(1, int(p.timeout)),
                application_name="chaoskit-probe",
            )
            self._conn.execute(f"set statement_timeout = {int(p.timeout * 1000)}")
        return self._conn

    def read(self) -> Any:
        import psycopg

        p = self.params
        try:
            if p.port_forward:  # a forward lives for one read: no connection is kept across reads
                from chaoskit.errors import TargetError
                from chaoskit.k8s_portforward import forwarded

                try:
                    with forwarded(self.ctx, p.port_forward, p.dsn) as dsn:
                        conn = self._connection(dsn)
                        try:
                            cur = conn.execute(p.query, p.params)
                            rows = cur.fetchall() if cur.description else []
                        finally:
                            self.close()
                except TargetError as exc:
                    raise ProbeError(f"port-forward for the database: {exc}") from None
            else:
                conn = self._connection()
                cur = conn.execute(p.query, p.params)
                rows = cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            self.close()
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ProbeError(f"sql: {msg}") from None
        rows = [list(r) for r in rows]
        if p.result == "rows":
            return jsonable(rows)
        if p.result == "value" or (len(rows) == 1 and len(rows[0]) == 1):
            if not rows:
                return None
            return jsonable(rows[0][0])
        return jsonable(rows)

    def close(self) -> None:
        import psycopg

        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None
