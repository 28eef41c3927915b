"""Built-in checkers. Importing this package registers ``ledger`` in ``registry.checkers``
(see chaoskit/checkers/ledger.py for the interface the runner calls)."""

from chaoskit import registry
from chaoskit.checkers.ledger import LedgerChecker, LedgerParams
from chaoskit.checkers.result import CheckResult

registry.checkers.add("ledger", LedgerChecker)

__all__ = ["CheckResult", "LedgerChecker", "LedgerParams"]
