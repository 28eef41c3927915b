"""Built-in checkers. Importing this package registers ``ledger`` in ``registry.checkers``."""
