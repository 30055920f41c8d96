"""Versioned SQL migrations: ``ops/migrations/NNNN_name.sql``, applied in order, recorded.

Each migration runs in its own transaction together with its row in ``schema_migrations``,
so a failed one leaves the database as it was. An advisory lock keeps two migrators apart.
A migration edited after it was applied is refused (its checksum changed).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.errors import MigrationError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_ID = 0x5B05  # advisory lock key shared by every supplybus migrator


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path}: expected a name like 0001_description.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{directory}: two migrations share a version number")
    return found


def migrate(settings: Settings, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply every pending migration; return the ones applied now."""
    applied_now: list[Migration] = []
    with connect(settings) as conn:
        schema = sql.Identifier(settings.db_schema)
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.commit()
        for migration in discover(directory):
            if _apply_one(conn, migration):
                applied_now.append(migration)
    return applied_now


def _apply_one(conn: psycopg.Connection, migration: Migration) -> bool:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (_LOCK_ID,))
        row = conn.execute(
            "SELECT checksum FROM schema_migrations WHERE version = %s", (migration.version,)
        ).fetchone()
        if row is not None:
            if row[0] != migration.checksum:
                raise MigrationError(
                    f"{migration.path.name}: changed after it was applied "
                    "(add a new migration instead of editing an applied one)"
                )
            return False
        try:
            conn.execute(migration.path.read_text().encode())
        except psycopg.Error as exc:
            raise MigrationError(
                f"{migration.path.name} failed and was rolled back: {str(exc).strip()}"
            ) from exc
        conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
            (migration.version, migration.name, migration.checksum),
        )
    return True


def applied_versions(settings: Settings) -> list[int]:
    with connect(settings) as conn:
        try:
            rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version")
            return [int(r[0]) for r in rows.fetchall()]
        except psycopg.errors.UndefinedTable:
            return []
