"""Redaction: passwords in DSNs and URLs, ``secret:`` vars, tokens. Applied to every journal,
report and log line chaoskit writes."""

from __future__ import annotations

import re
from typing import Any

_URL_PASS = re.compile(r"(?P<pre>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?P<post>@)", re.I)
_KV_PASS = re.compile(r"(?P<pre>\b(?:password|passwd|pwd|token|secret)\s*=\s*)(?P<pw>[^\s&;]+)", re.I)
MASK = "***"


# A password learnt from a DSN is also masked wherever it appears on its own, but only when it
# is long enough not to be an ordinary word of the stack ("ledger" would turn "ledger-api" into
# "***-api"); inside URLs and key=value pairs it is always masked by the patterns above.
MIN_IMPLICIT = 8


class Redactor:
    def __init__(self, secrets: list[str] | None = None):
        """``secrets``: values the user marked secret; masked wherever they appear."""
        self._secrets: set[str] = {s for s in (secrets or []) if s and len(s) >= 3}

    def add(self, value: str, explicit: bool = False) -> None:
        if value and len(value) >= (3 if explicit else MIN_IMPLICIT):
            self._secrets.add(value)

    def learn(self, obj: Any) -> None:
        """Remember the passwords of every URL / DSN in ``obj`` (the run's variables), so they are
        masked wherever else they turn up, not only inside the URL."""
        if isinstance(obj, str):
            for m in _URL_PASS.finditer(obj):
                self.add(m.group("pw"))
        elif isinstance(obj, dict):
            for v in obj.values():
                self.learn(v)
        elif isinstance(obj, list | tuple):
            for v in obj:
                self.learn(v)

    def text(self, s: str) -> str:
        s = _URL_PASS.sub(lambda m: m.group("pre") + MASK + m.group("post"), s)
        s = _KV_PASS.sub(lambda m: m.group("pre") + MASK, s)
        for secret in sorted(self._secrets, key=len, reverse=True):
            s = s.replace(secret, MASK)
        return s

    def __call__(self, obj: Any) -> Any:
        """Deep-redact any JSON-able structure."""
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            return {
                k: (MASK if isinstance(k, str) and k.lower() in {"password", "token", "secret"} else self(v))
                for k, v in obj.items()
            }
        if isinstance(obj, list | tuple):
            return [self(v) for v in obj]
        return obj
