"""HTTP probe: status, headers, body, parsed JSON and latency of one request."""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from pydantic import Field

from chaoskit import registry
from chaoskit.errors import ProbeError
from chaoskit.probes.base import PortForward, Probe, ProbeParams
from chaoskit.units import Duration


@registry.probes.register("http")
class HttpProbe(Probe):
    summary = "one HTTP request: value {status, json, body, latency_ms, headers}"

    class Params(ProbeParams):
        url: str
        method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
        headers: dict[str, str] = Field(default_factory=dict)
        json_body: Any = Field(None, alias="json")
        body: str | None = None
        timeout: Duration = 5.0
        verify_tls: bool = True
        port_forward: PortForward = None

    def __init__(self, params: Any, ctx: Any):
        super().__init__(params, ctx)
        self._client: Any = None

    def read(self) -> dict[str, Any]:
        import httpx

        p = self.params
        if p.port_forward:
            from chaoskit.errors import TargetError
            from chaoskit.k8s_portforward import forwarded

            try:
                with forwarded(self.ctx, p.port_forward, p.url) as url:
                    with httpx.Client(timeout=p.timeout, verify=p.verify_tls) as client:
                        return self._request(client, url)
            except TargetError as exc:
                raise ProbeError(f"port-forward for {p.url}: {exc}") from None
        if self._client is None:
            self._client = httpx.Client(timeout=p.timeout, verify=p.verify_tls)
        return self._request(self._client, p.url)

    def _request(self, client: Any, url: str) -> dict[str, Any]:
        import httpx

        p = self.params
        t0 = time.perf_counter()
        try:
            resp = client.request(p.method, url, headers=p.headers, json=p.json_body, content=p.body)
        except httpx.HTTPError as exc:
            raise ProbeError(f"{p.method} {p.url}: {type(exc).__name__}: {exc}") from None
        latency = (time.perf_counter() - t0) * 1000
        text = resp.text
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        return {
            "status": resp.status_code,
            "json": parsed,
            "body": text[:4096],
            "latency_ms": round(latency, 3),
            "headers": dict(resp.headers),
        }

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
