"""Settings: read once from the environment and an optional ``supplybus.toml``.

Precedence: environment variable > ``supplybus.toml`` > default. Unknown keys in the file are
refused by name. The table in the README is generated from ``FIELDS`` below.
"""

from __future__ import annotations

import importlib.util
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from supplybus.errors import ConfigError


@dataclass(frozen=True)
class Field:
    """One setting: its environment variable, its key in supplybus.toml, and its meaning."""

    name: str
    env: str
    kind: type
    help: str


FIELDS: tuple[Field, ...] = (
    Field("home", "SUPPLYBUS_HOME", Path, "Where embedded services keep data, logs and pids."),
    Field(
        "kafka_bootstrap_servers",
        "KAFKA_BOOTSTRAP_SERVERS",
        str,
        "Use this Kafka cluster instead of the embedded broker.",
    ),
    Field("database_url", "DATABASE_URL", str, "Use this PostgreSQL instead of the embedded one."),
    Field(
        "schema_registry_url",
        "SCHEMA_REGISTRY_URL",
        str,
        "Confluent Schema Registry: switches framing to the Confluent wire format.",
    ),
    Field(
        "db_schema", "SUPPLYBUS_DB_SCHEMA", str, "PostgreSQL schema that holds supplybus tables."
    ),
    Field(
        "broker_port",
        "SUPPLYBUS_BROKER_PORT",
        int,
        "Port of the embedded broker; when taken, `up` picks a free one unless set explicitly.",
    ),
    Field(
        "topic_catalog",
        "SUPPLYBUS_TOPIC_CATALOG",
        Path,
        "The topic catalog file (default: the one shipped in schemas/).",
    ),
    Field(
        "connect_timeout_s",
        "SUPPLYBUS_CONNECT_TIMEOUT",
        float,
        "Seconds to wait for the broker or database before reporting it unreachable.",
    ),
    Field(
        "session_timeout_ms",
        "SUPPLYBUS_KAFKA_SESSION_TIMEOUT_MS",
        int,
        "Consumer group session timeout (short: fast joins and crash detection).",
    ),
    Field(
        "heartbeat_interval_ms",
        "SUPPLYBUS_KAFKA_HEARTBEAT_MS",
        int,
        "Consumer group heartbeat interval.",
    ),
    Field(
        "group_prefix",
        "SUPPLYBUS_GROUP_PREFIX",
        str,
        "Prefix of consumer group names: `<prefix>.<processor>`.",
    ),
    Field(
        "kafka_leave_group",
        "SUPPLYBUS_KAFKA_LEAVE_GROUP",
        str,
        "auto, yes or no: send LeaveGroup on shutdown (auto: yes, except on Tansu; ADR 0004).",
    ),
    Field("log_level", "SUPPLYBUS_LOG_LEVEL", str, "DEBUG, INFO, WARNING or ERROR."),
)


def shipped_catalog() -> Path:
    """The topic catalog shipped with supplybus (``schemas/topics.yaml``)."""
    spec = importlib.util.find_spec("supplybus.schemas")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("supplybus.schemas is not installed: run `make install`")
    return Path(next(iter(spec.submodule_search_locations))) / "topics.yaml"


@dataclass(frozen=True)
class Settings:
    """Everything supplybus reads from its environment, as plain typed values."""

    home: Path = Path(".supplybus")
    kafka_bootstrap_servers: str | None = None
    database_url: str | None = None
    schema_registry_url: str | None = None
    db_schema: str = "supplybus"
    broker_port: int = 19092
    broker_port_explicit: bool = False
    topic_catalog: Path = field(default_factory=shipped_catalog)
    connect_timeout_s: float = 10.0
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 500
    group_prefix: str = "supplybus"
    kafka_leave_group: str = "auto"
    log_level: str = "WARNING"

    @property
    def embedded_kafka(self) -> bool:
        return self.kafka_bootstrap_servers is None

    @property
    def embedded_database(self) -> bool:
        return self.database_url is None

    def with_services(self, *, bootstrap: str | None, database_url: str | None) -> Settings:
        """A copy pointing at resolved service addresses (used once embedded ones run)."""
        return replace(
            self,
            kafka_bootstrap_servers=bootstrap or self.kafka_bootstrap_servers,
            database_url=database_url or self.database_url,
        )

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, config_file: Path | None = None
    ) -> Settings:
        """Read settings; ``SUPPLYBUS_CONFIG`` names the file, else ./supplybus.toml if present."""
        env = os.environ if environ is None else environ
        path = config_file or Path(env.get("SUPPLYBUS_CONFIG", "supplybus.toml"))
        values: dict[str, Any] = {}
        if path.exists():
            values.update(_read_toml(path))
        elif "SUPPLYBUS_CONFIG" in env:
            raise ConfigError(f"SUPPLYBUS_CONFIG: file {path} does not exist")
        for spec in FIELDS:
            raw = env.get(spec.env)
            if raw not in (None, ""):
                values[spec.name] = _convert(spec, raw, spec.env)
        if "broker_port" in values:
            values["broker_port_explicit"] = True
        settings = cls(**values)
        _check(settings)
        return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable TOML file ({exc})") from exc
    known = {f.name: f for f in FIELDS}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; expected some of {', '.join(known)}"
        )
    return {k: _convert(known[k], v, f"{path}: {k}") for k, v in data.items()}


def _convert(spec: Field, raw: object, where: str) -> object:
    try:
        if spec.kind is Path:
            return Path(str(raw))
        if spec.kind is int:
            return int(str(raw))
        if spec.kind is float:
            return float(str(raw))
        return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected {spec.kind.__name__}, got {raw!r}") from None


def _check(s: Settings) -> None:
    if not 0 <= s.broker_port <= 65535:
        raise ConfigError(f"SUPPLYBUS_BROKER_PORT: expected 0..65535, got {s.broker_port}")
    if s.connect_timeout_s <= 0:
        raise ConfigError(f"SUPPLYBUS_CONNECT_TIMEOUT: expected > 0, got {s.connect_timeout_s}")
    if s.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(
            f"SUPPLYBUS_LOG_LEVEL: expected DEBUG, INFO, WARNING or ERROR, got {s.log_level!r}"
        )
    if s.kafka_leave_group not in ("auto", "yes", "no"):
        raise ConfigError(
            f"SUPPLYBUS_KAFKA_LEAVE_GROUP: expected auto, yes or no, got {s.kafka_leave_group!r}"
        )
    if not s.db_schema.isidentifier():
        raise ConfigError(f"SUPPLYBUS_DB_SCHEMA: expected an SQL identifier, got {s.db_schema!r}")
    if s.database_url is not None and not s.database_url.startswith(("postgresql:", "postgres:")):
        raise ConfigError(
            f"DATABASE_URL: expected a postgresql:// URL, got {mask_url(s.database_url)!r}"
        )


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def settings_table() -> str:
    """The settings as a Markdown table (for the README)."""
    defaults = {f.name: f.default for f in fields(Settings) if not callable(f.default)}
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for spec in FIELDS:
        default = defaults.get(spec.name)
        shown = "(shipped schemas/topics.yaml)" if spec.name == "topic_catalog" else default
        rows.append(f"| `{spec.env}` | {'' if shown is None else f'`{shown}`'} | {spec.help} |")
    return "\n".join(rows)
