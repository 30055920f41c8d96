"""PostgreSQL connections and error translation (psycopg 3)."""

from __future__ import annotations

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
