"""Migrations on the real database: ordered, recorded, idempotent, all-or-nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.errors import MigrationError
from supplybus.ops import migrate


def _tables(settings: Settings) -> set[str]:
    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (settings.db_schema,),
        ).fetchall()
    return {r[0] for r in rows}


def test_migrate_applies_in_order_and_is_idempotent(settings: Settings) -> None:
    applied = migrate.migrate(settings)
    assert [m.version for m in applied] == sorted(m.version for m in migrate.discover())
    assert {"processed_events", "outbox", "dead_letters", "schema_migrations"} <= _tables(settings)
    assert migrate.migrate(settings) == []
    assert migrate.applied_versions(settings) == [m.version for m in applied]


def test_failed_migration_leaves_database_as_it_was(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "0001_good.sql").write_text("CREATE TABLE good (id int);")
    (tmp_path / "0002_bad.sql").write_text(
        "CREATE TABLE half_done (id int);\nINSERT INTO nowhere VALUES (1);"
    )
    with pytest.raises(MigrationError, match="0002_bad.sql failed and was rolled back"):
        migrate.migrate(settings, tmp_path)
    assert "good" in _tables(settings)
    assert "half_done" not in _tables(settings)
    assert migrate.applied_versions(settings) == [1]


def test_editing_an_applied_migration_is_refused(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "0001_x.sql"
    path.write_text("CREATE TABLE x (id int);")
    migrate.migrate(settings, tmp_path)
    path.write_text("CREATE TABLE x (id bigint);")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate.migrate(settings, tmp_path)


def test_badly_named_migration_is_refused(tmp_path: Path) -> None:
    (tmp_path / "first.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="first.sql: expected a name like 0001_"):
        migrate.discover(tmp_path)
