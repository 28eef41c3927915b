"""Alert rules and where alerts go.

A rule watches one probe. Its ``when`` says what BAD looks like; the rule fires once the bad
condition has held for ``for`` seconds, stays firing (no repeats: a 72-hour soak must not send
thousands of identical messages) and resolves when the condition clears. A reading that could
not be taken leaves a value rule's state unchanged — unknown is neither bad nor good — unless
the rule is ``when: error`` / ``when: failing``, which are about exactly that.

Sinks: the terminal (through the UI), a JSON lines file (flushed per line: it is what a
person tails during the soak), and an optional webhook posted from a background thread so a
slow endpoint never delays the probes.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaoskit.expect import evaluate
from chaoskit.runner.journal import utc_iso
from chaoskit.secrets import Redactor
from chaoskit.soak.config import AlertRule, WebhookSpec


def compact(value: Any, limit: int = 600) -> Any:
    """A value small enough for an alert line: HTTP bodies and headers dropped, long things cut."""
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if k not in ("headers", "body")}
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = json.dumps(str(value))
    if len(text) <= limit:
        return json.loads(text)
    return text[: limit - 3] + "..."


@dataclass
class RuleState:
    rule: AlertRule
    group: str
    bad_since: float | None = None
    firing: dict[str, Any] | None = None
    evaluations: int = 0
    bad: int = 0
    unknown: int = 0
    fired: int = 0
    last_detail: str = ""

    def observe(self, t: float, read_ok: bool, value: Any, probe_ok: bool, detail: str) -> tuple[str, str] | None:
        """Feed one reading. Returns ("fire" | "resolve", detail) on a transition."""
        when = self.rule.when
        self.evaluations += 1
        if when == "error":
            is_bad, why = (not read_ok), (detail if not read_ok else "read ok")
        elif when == "failing":
            is_bad, why = (not probe_ok), detail
        elif not read_ok:
            self.unknown += 1
            self.last_detail = f"unreadable: {detail}"
            return None
        else:
            assert isinstance(when, dict)
            is_bad, why = evaluate(value, when)
        self.last_detail = why
        if is_bad:
            self.bad += 1
            if self.bad_since is None:
                self.bad_since = t
            if self.firing is None and t - self.bad_since >= self.rule.for_:
                return "fire", why
            return None
        self.bad_since = None
        if self.firing is not None:
            return "resolve", why
        return None


class WebhookSender:
    """Posts alerts as JSON from one background thread; failures are counted, never raised."""

    def __init__(self, spec: WebhookSpec, redactor: Redactor):
        import httpx

        self.spec = spec
        self.redactor = redactor
        self.client = httpx.Client(timeout=spec.timeout, headers=spec.headers)
        self.q: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.sent = 0
        self.failed = 0
        self.last_error: str | None = None
        self.thread = threading.Thread(target=self._loop, name="soak-webhook", daemon=True)
        self.thread.start()

    def wants(self, alert: dict[str, Any]) -> bool:
        if alert["status"] == "resolved" and not self.spec.resolved:
            return False
        return alert["severity"] in self.spec.severities

    def send(self, alert: dict[str, Any]) -> None:
        if self.wants(alert):
            self.q.put(alert)

    def _loop(self) -> None:
        import httpx

        while True:
            alert = self.q.get()
            if alert is None:
                return
            sev = alert["severity"].upper()
            verb = "RESOLVED" if alert["status"] == "resolved" else "FIRING"
            body = {
                "text": f"[{sev}] {verb}: {alert['rule']} — {alert.get('detail', '')} ({alert.get('title', 'soak')})",
                "alert": alert,
            }
            try:
                r = self.client.post(self.spec.url, json=body)
                if r.status_code >= 400:
                    raise httpx.HTTPStatusError(f"HTTP {r.status_code}", request=r.request, response=r)
                self.sent += 1
            except httpx.HTTPError as exc:
                self.failed += 1
                self.last_error = self.redactor.text(f"{type(exc).__name__}: {exc}")

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (bounded wait), then stop."""
        self.q.put(None)
        self.thread.join(timeout)
        self.client.close()

    def stats(self) -> dict[str, Any]:
        return {"url": self.redactor.text(self.spec.url), "sent": self.sent, "failed": self.failed,
                "last_error": self.last_error, "pending": self.q.qsize()}


@dataclass
class AlertBook:
    """Every rule's state and every alert raised, shared by the group threads."""

    rules: dict[str, RuleState]
    alerts_path: Path
    redactor: Redactor
    ui: Any
    title: str
    soak_id: str
    webhook: WebhookSender | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.alerts_path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.alerts_path, "a", buffering=1)  # noqa: SIM115 - closed in close()

    def for_probe(self, probe: str) -> list[RuleState]:
        return [r for r in self.rules.values() if r.rule.probe == probe]

    def observe(self, probe: str, t: float, read_ok: bool, value: Any, probe_ok: bool, detail: str) -> None:
        for st in self.for_probe(probe):
            with self._lock:
                change = st.observe(t, read_ok, value, probe_ok, detail)
                if change is None:
                    continue
                kind, why = change
                if kind == "fire":
                    st.fired += 1
                    alert = {
                        "status": "firing",
                        "rule": st.rule.name,
                        "severity": st.rule.severity,
                        "probe": probe,
                        "group": st.group,
                        "message": st.rule.message or st.rule.name,
                        "detail": why,
                        "value": compact(value),
                        "t": round(t, 3),
                        "since_t": round(st.bad_since if st.bad_since is not None else t, 3),
                        "at": utc_iso(),
                        "title": self.title,
                        "soak_id": self.soak_id,
                        "resolved_t": None,
                    }
                    alert = self.redactor(alert)
                    st.firing = alert
                    self.alerts.append(alert)
                    self._emit(alert)
                else:
                    fired = st.firing
                    assert fired is not None
                    st.firing = None
                    fired["resolved_t"] = round(t, 3)
                    fired["duration"] = round(t - fired["since_t"], 3)
                    resolved = {**fired, "status": "resolved", "detail": why, "value": compact(value), "at": utc_iso(),
                                "t": round(t, 3)}
                    self._emit(self.redactor(resolved))

    def _emit(self, alert: dict[str, Any]) -> None:
        self._fh.write(json.dumps(alert, default=str) + "\n")
        show = getattr(self.ui, "alert", None)
        if show is not None:
            show(alert)
        else:
            self.ui.check(f"[{alert['severity']}] {alert['rule']}", alert["status"] == "resolved", alert.get("detail", ""))
        if self.webhook is not None:
            self.webhook.send(alert)

    def close(self) -> None:
        if self.webhook is not None:
            self.webhook.close()
        self._fh.close()

    def counts(self) -> dict[str, int]:
        out = {"critical": 0, "high": 0, "medium": 0}
        for a in self.alerts:
            out[a["severity"]] = out.get(a["severity"], 0) + 1
        return out


def now_offset(t0: float) -> float:
    return time.monotonic() - t0
