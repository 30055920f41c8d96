"""Whose fault a failure is: the runtime's one classification of every exception.

- ``TRANSIENT``: the database, the broker or a service the handler calls is unavailable; the
  same batch is retried with backoff, consumption paused, order kept.
- ``PROCESSOR``: the processor's code or tables are broken (no event is to blame); nothing is
  committed and the lane stops.
- ``EVENT``: this record can never succeed as it is; it is isolated and dead-lettered.

Deliberate choices: a handler that raises ``TransientError``, ``ConnectionError`` or
``TimeoutError`` (its own network call failed) asks for a retry; PostgreSQL errors are
classified by SQLSTATE in ``supplybus.adapters.postgres`` (a statement timeout is load, hence
transient; a unique-violation race is the event's, hence dead-lettered after isolation); any
other exception from a handler is blamed on the event it was applying when isolated, and the
dead-letter budget (``budget.py``) stops a processor whose bug blames every event.
"""

from __future__ import annotations

import enum

from supplybus.adapters.postgres import DbFault, db_fault
from supplybus.errors import PermanentError, ProcessorError, TransientError


class Fault(enum.Enum):
    TRANSIENT = "transient"
    PROCESSOR = "processor"
    EVENT = "event"


_FROM_DB = {
    DbFault.TRANSIENT: Fault.TRANSIENT,
    DbFault.PROCESSOR: Fault.PROCESSOR,
    DbFault.EVENT: Fault.EVENT,
}


def fault_of(exc: BaseException) -> Fault:
    """Classify ``exc`` (see the module docstring)."""
    if isinstance(exc, TransientError | ConnectionError | TimeoutError):
        return Fault.TRANSIENT
    if isinstance(exc, ProcessorError):
        return Fault.PROCESSOR
    if isinstance(exc, PermanentError):
        return Fault.EVENT
    found = db_fault(exc)
    return _FROM_DB[found] if found is not None else Fault.EVENT


def is_transient(exc: BaseException) -> bool:
    return fault_of(exc) is Fault.TRANSIENT


def blames_event(exc: BaseException) -> bool:
    """True when the error itself says the event is bad (not only "it failed on this one")."""
    return isinstance(exc, PermanentError) or db_fault(exc) is DbFault.EVENT
