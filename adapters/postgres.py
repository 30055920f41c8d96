"""PostgreSQL connections and error classification (psycopg 3).

psycopg maps whole SQLSTATE classes onto one Python class (``OperationalError`` covers 53, 54,
55, 57 and 58), so errors are classified here by SQLSTATE, once, for every caller:

- ``TRANSIENT``: the server or connection, not the work, failed; retry the same work later.
  Connection loss (no SQLSTATE, class 08, 57P01-03), serialization failure 40001, deadlock
  40P01, insufficient resources (class 53: disk full, out of memory, too many connections),
  lock not available 55P03, a read-only transaction 25006 (a failover in progress), a
  statement timeout or cancel 57014 (load), and system I/O errors (class 58).
- ``PROCESSOR``: the processor's SQL or tables are wrong (syntax, an undefined table or
  column, a missing privilege, an unsupported feature): no event is to blame.
- ``EVENT``: the data of the event hit a limit or constraint (class 22 data exceptions,
  class 23 integrity violations including a unique-violation race, 54000 "index row too
  large" for a 9,000-character key): the event is isolated and dead-lettered.
"""

from __future__ import annotations

import enum
from typing import Any

import psycopg

from supplybus.config import Settings, mask_url
from supplybus.errors import ConfigError, DatabaseUnavailable


def database_url(settings: Settings) -> str:
    if settings.database_url is None:
        raise ConfigError("no database: set DATABASE_URL or run `supplybus up` first")
    return settings.database_url


def connect(settings: Settings, *, autocommit: bool = False) -> psycopg.Connection:
    """A connection whose search_path is the supplybus schema.

    Raises DatabaseUnavailable naming the (masked) URL when the server does not answer
    within ``connect_timeout_s``.
    """
    url = database_url(settings)
    try:
        return psycopg.connect(
            url,
            autocommit=autocommit,
            connect_timeout=max(1, int(settings.connect_timeout_s)),
            options=f"-c search_path={settings.db_schema},public",
            application_name="supplybus",
        )
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(
            f"cannot reach PostgreSQL at {mask_url(url)}: {first} "
            "(check DATABASE_URL or run `supplybus up`)"
        ) from exc
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"DATABASE_URL: {exc} (got {mask_url(url)!r})") from exc


class DbFault(enum.Enum):
    """Whose fault a database error is (see the module docstring)."""

    TRANSIENT = "transient"
    PROCESSOR = "processor"
    EVENT = "event"


_TRANSIENT_STATES = frozenset(
    {"40001", "40P01", "55P03", "25006", "57014", "57P01", "57P02", "57P03"}
)
_TRANSIENT_CLASSES = ("08", "53", "58")
_PROCESSOR_CLASSES = ("42", "0A", "3F", "39", "38", "2B", "XX")


def db_fault(exc: BaseException) -> DbFault | None:
    """Classify a psycopg error by its SQLSTATE; ``None`` when ``exc`` is not one."""
    if isinstance(exc, psycopg.InterfaceError):
        return DbFault.TRANSIENT  # the connection is closed or broken
    if not isinstance(exc, psycopg.Error):
        return None
    state = exc.sqlstate
    if state is None:  # no answer from a server: connection failure
        return DbFault.TRANSIENT
    if state in _TRANSIENT_STATES or state.startswith(_TRANSIENT_CLASSES):
        return DbFault.TRANSIENT
    if state.startswith(_PROCESSOR_CLASSES):
        return DbFault.PROCESSOR
    return DbFault.EVENT


def is_transient(exc: BaseException) -> bool:
    """True for a psycopg error that means "try the same work again later"."""
    return db_fault(exc) is DbFault.TRANSIENT


def documents(conn: psycopg.Connection, query: str, *params: Any) -> list[dict[str, Any]]:
    """The rows of ``query`` as JSON-ready dicts by column name: times and dates as ISO text,
    decimals and UUIDs as strings (exact; for read-side CLIs and their --json)."""
    cur = conn.execute(query, params)
    names = [c.name for c in cur.description or ()]
    return [{n: _plain(v) for n, v in zip(names, row, strict=True)} for row in cur.fetchall()]


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str | list | dict):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
