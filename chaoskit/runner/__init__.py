"""The runner: phases, guaranteed rollback, the journal and the on-disk fault ledger."""
