from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest

from supplybus.config import Settings, mask_url, settings_table
from supplybus.errors import ConfigError

NO_FILE = Path("/nonexistent/supplybus.toml")


def test_defaults_use_embedded_services() -> None:
    s = Settings.from_env({}, config_file=Path("/nonexistent/supplybus.toml"))
    assert s.embedded_kafka and s.embedded_database
    assert s.session_timeout_ms == 6000 and s.heartbeat_interval_ms == 500
    assert s.topic_catalog.name == "topics.yaml" and s.topic_catalog.exists()


def test_environment_overrides_file(tmp_path: Path) -> None:
    cfg = tmp_path / "supplybus.toml"
    cfg.write_text('broker_port = 20000\ndb_schema = "from_file"\n')
    s = Settings.from_env({"SUPPLYBUS_DB_SCHEMA": "from_env"}, config_file=cfg)
    assert s.broker_port == 20000 and s.broker_port_explicit
    assert s.db_schema == "from_env"


def test_unknown_key_in_file_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "supplybus.toml"
    cfg.write_text("brokr_port = 1\n")
    with pytest.raises(ConfigError, match="unknown setting.*brokr_port"):
        Settings.from_env({}, config_file=cfg)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SUPPLYBUS_BROKER_PORT": "abc"}, "SUPPLYBUS_BROKER_PORT: expected int, got 'abc'"),
        ({"SUPPLYBUS_BROKER_PORT": "70000"}, "expected 0..65535"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL: expected a postgresql:// URL"),
        ({"SUPPLYBUS_LOG_LEVEL": "LOUD"}, "SUPPLYBUS_LOG_LEVEL"),
        ({"SUPPLYBUS_DB_SCHEMA": "a;drop"}, "SUPPLYBUS_DB_SCHEMA"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env, config_file=Path("/nonexistent.toml"))


def test_mask_url_hides_password() -> None:
    assert mask_url("postgresql://u:s3cret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert mask_url("postgresql://u:p@ss@h/db") == "postgresql://u:***@h/db"
    assert mask_url("postgresql://u@h/db?password=s3cret&sslmode=require") == (
        "postgresql://u@h/db?password=***&sslmode=require"
    )
    assert mask_url("postgresql://u@h/db?host=/tmp/pg") == "postgresql://u@h/db?host=/tmp/pg"


def test_repr_and_str_never_show_a_password() -> None:
    s = Settings(
        database_url="postgresql://sb:s3cret@db:5432/sb?password=s3cret",
        schema_registry_url="https://key:s3cret@registry:8081",
    )
    for shown in (repr(s), str(s), f"{s}", repr([s])):
        assert "s3cret" not in shown
        assert "postgresql://sb:***@db:5432/sb?password=***" in shown
        assert "https://key:***@registry:8081" in shown
    assert s.database_url is not None and "s3cret" in s.database_url  # the value itself is kept


def test_bad_database_url_message_masks_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"DATABASE_URL": "mysql://u:s3cret@h/db"}, config_file=NO_FILE)
    assert "s3cret" not in str(caught.value) and "u:***@h" in str(caught.value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("kafka_leave_group", "maybe", "SUPPLYBUS_KAFKA_LEAVE_GROUP: expected auto, yes or no"),
        ("log_level", "LOUD", "SUPPLYBUS_LOG_LEVEL: expected DEBUG, INFO, WARNING or ERROR"),
        ("dead_letter_retention_days", 0, "SUPPLYBUS_DEAD_LETTER_RETENTION_DAYS: expected a whole"),
        ("prune_interval_s", -1.0, r"SUPPLYBUS_PRUNE_INTERVAL: expected >= 0 seconds \(0: off\)"),
        ("po_alert_after_s", 0.0, "SUPPLYBUS_PO_ALERT_AFTER: expected a number of seconds > 0"),
        ("webhook_max_bytes", 0, "SUPPLYBUS_WEBHOOK_MAX_BYTES: expected a whole number >= 1"),
        ("webhook_max_concurrency", 0, "SUPPLYBUS_WEBHOOK_MAX_CONCURRENCY: expected a whole"),
        ("webhook_tolerance_s", 0.0, "SUPPLYBUS_WEBHOOK_TOLERANCE: expected a number of seconds"),
    ],
)
def test_choices_are_checked_however_settings_are_built(
    field: str, value: str, message: str
) -> None:
    bad: dict[str, Any] = {field: value}  # a value outside the Literal, as from untyped code
    with pytest.raises(ConfigError, match=message):
        Settings(**bad)
    with pytest.raises(ConfigError, match=message):
        replace(Settings(), **bad)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("short-but-secret", None),
        ("a-first-secret-0123, a-second-secret-0123", None),
        (" , ", "got only commas"),
        ("s1-0123456789abcdef,s2-0123456789abcdef,s3-0123456789abcdef", "got 3 secrets"),
        ("a-long-enough-secret-0123,hunter2", r"got a shorter one \(secret 2\)"),
    ],
)
def test_webhook_secrets_are_checked_without_being_shown(raw: str, message: str | None) -> None:
    env = {"SUPPLYBUS_WEBHOOK_SECRETS": raw}
    if message is None:
        s = Settings.from_env(env, config_file=NO_FILE)
        assert s.webhook_secret_list == tuple(p.strip() for p in raw.split(","))
        assert "webhook_secrets='***'" in repr(s)
        assert all(secret not in repr(s) for secret in s.webhook_secret_list)
        return
    with pytest.raises(ConfigError, match=message) as caught:
        Settings.from_env(env, config_file=NO_FILE)
    assert all(p.strip() not in str(caught.value) for p in raw.split(",") if p.strip())


def test_choices_are_read_case_insensitively_as_their_canonical_spelling(tmp_path: Path) -> None:
    cfg = tmp_path / "supplybus.toml"
    cfg.write_text('kafka_leave_group = "YES"\n')
    s = Settings.from_env({"SUPPLYBUS_LOG_LEVEL": "info"}, config_file=cfg)
    assert (s.log_level, s.kafka_leave_group) == ("INFO", "yes")


def test_every_declared_setting_is_read_from_its_variable() -> None:
    values = {
        "SUPPLYBUS_HOME": "/srv/sb",
        "KAFKA_BOOTSTRAP_SERVERS": "k:9092",
        "DATABASE_URL": "postgresql://h/db",
        "SCHEMA_REGISTRY_URL": "http://sr:8081",
        "SUPPLYBUS_DB_SCHEMA": "other",
        "SUPPLYBUS_BROKER_PORT": "1234",
        "SUPPLYBUS_TOPIC_CATALOG": "/srv/topics.yaml",
        "SUPPLYBUS_CONNECT_TIMEOUT": "2.5",
        "SUPPLYBUS_KAFKA_SESSION_TIMEOUT_MS": "7000",
        "SUPPLYBUS_KAFKA_HEARTBEAT_MS": "700",
        "SUPPLYBUS_GROUP_PREFIX": "grp",
        "SUPPLYBUS_KAFKA_LEAVE_GROUP": "no",
        "SUPPLYBUS_LOG_LEVEL": "DEBUG",
        "SUPPLYBUS_LEDGER_RETENTION_DAYS": "60",
        "SUPPLYBUS_OUTBOX_RETENTION_DAYS": "3",
        "SUPPLYBUS_DEAD_LETTER_RETENTION_DAYS": "30",
        "SUPPLYBUS_PRUNE_INTERVAL": "0",
        "SUPPLYBUS_PRUNE_CHUNK": "500",
        "SUPPLYBUS_PO_OUTBOX_DIR": "/srv/po",
        "SUPPLYBUS_PO_ALERT_AFTER": "60",
        "SUPPLYBUS_WEBHOOK_SECRETS": "old-secret-0123456789,new-secret-0123456789",
        "SUPPLYBUS_WEBHOOK_MAX_BYTES": "4096",
        "SUPPLYBUS_WEBHOOK_MAX_CONCURRENCY": "4",
        "SUPPLYBUS_WEBHOOK_TOLERANCE": "60",
    }
    table = settings_table()
    assert [line.split("`")[1] for line in table.splitlines()[2:]] == list(values)
    read, default = Settings.from_env(values, config_file=NO_FILE), Settings()
    unchanged = [
        f.name for f in fields(Settings) if getattr(read, f.name) == getattr(default, f.name)
    ]
    assert unchanged == [], f"not read from their variables: {unchanged}"


def test_settings_table_lists_every_variable() -> None:
    table = settings_table()
    for var in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "SUPPLYBUS_HOME"):
        assert f"`{var}`" in table


def test_readme_lists_every_setting() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert settings_table() in readme, "README settings table is stale: paste `supplybus settings`"
