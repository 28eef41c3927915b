"""PostgreSQL faults: db.lock, db.terminate, db.deadlock, db.slow, db.exhaust.

Importing this package registers them all (it is listed in ``registry._BUILTINS``).
"""

from chaoskit.faults.db.common import DbFault, DbParams
from chaoskit.faults.db.deadlock import DbDeadlock
from chaoskit.faults.db.exhaust import DbExhaust
from chaoskit.faults.db.lock import DbLock
from chaoskit.faults.db.slow import DbSlow
from chaoskit.faults.db.terminate import DbTerminate

__all__ = ["DbDeadlock", "DbExhaust", "DbFault", "DbLock", "DbParams", "DbSlow", "DbTerminate"]
