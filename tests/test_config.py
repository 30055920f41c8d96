from __future__ import annotations

from pathlib import Path

import pytest

from supplybus.config import Settings, mask_url, settings_table
from supplybus.errors import ConfigError


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
    assert mask_url("postgresql://u@h/db") == "postgresql://u@h/db"


def test_settings_table_lists_every_variable() -> None:
    table = settings_table()
    for var in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "SUPPLYBUS_HOME"):
        assert f"`{var}`" in table


def test_readme_lists_every_setting() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert settings_table() in readme, "README settings table is stale: paste `supplybus settings`"
