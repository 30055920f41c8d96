"""Settings: read once from the environment and an optional ``supplybus.toml``.

Each setting is declared once, as a field of ``Settings`` whose metadata names its environment
variable and meaning; the README table (``supplybus settings``) is generated from them.
Precedence: environment variable > ``supplybus.toml`` > default. Unknown keys in the file are
refused by name. Every value is checked in ``Settings.__post_init__``, however it was built.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from supplybus.errors import ConfigError

LeaveGroup = Literal["auto", "yes", "no"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


def shipped_catalog() -> Path:
    """The topic catalog shipped with supplybus (``schemas/topics.yaml``)."""
    spec = importlib.util.find_spec("supplybus.schemas")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("supplybus.schemas is not installed: run `make install`")
    return Path(next(iter(spec.submodule_search_locations))) / "topics.yaml"


def _meta(
    env: str,
    meaning: str,
    *,
    shown: str | None = None,
    secret: bool = False,
    hidden: bool = False,
) -> dict[str, object]:
    """A setting's declaration beside its field: variable, meaning (README), default as shown,
    whether its value may hold a password (masked in ``repr``) and whether it is a secret as a
    whole (``hidden``: ``repr`` shows ``***``)."""
    return {"env": env, "help": meaning, "shown": shown, "secret": secret, "hidden": hidden}


@dataclass(frozen=True, repr=False)
class Settings:
    """Everything supplybus reads from its environment, as plain typed values."""

    home: Path = field(
        default=Path(".supplybus"),
        metadata=_meta("SUPPLYBUS_HOME", "Where embedded services keep data, logs and pids."),
    )
    kafka_bootstrap_servers: str | None = field(
        default=None,
        metadata=_meta(
            "KAFKA_BOOTSTRAP_SERVERS", "Use this Kafka cluster instead of the embedded broker."
        ),
    )
    database_url: str | None = field(
        default=None,
        metadata=_meta(
            "DATABASE_URL", "Use this PostgreSQL instead of the embedded one.", secret=True
        ),
    )
    schema_registry_url: str | None = field(
        default=None,
        metadata=_meta(
            "SCHEMA_REGISTRY_URL",
            "Confluent Schema Registry: switches framing to the Confluent wire format.",
            secret=True,
        ),
    )
    db_schema: str = field(
        default="supplybus",
        metadata=_meta("SUPPLYBUS_DB_SCHEMA", "PostgreSQL schema that holds supplybus tables."),
    )
    broker_port: int = field(
        default=19092,
        metadata=_meta(
            "SUPPLYBUS_BROKER_PORT",
            "Port of the embedded broker; when taken, `up` picks a free one unless set explicitly.",
        ),
    )
    topic_catalog: Path = field(
        default_factory=shipped_catalog,
        metadata=_meta(
            "SUPPLYBUS_TOPIC_CATALOG",
            "The topic catalog file (default: the one shipped in schemas/).",
            shown="(shipped schemas/topics.yaml)",
        ),
    )
    connect_timeout_s: float = field(
        default=10.0,
        metadata=_meta(
            "SUPPLYBUS_CONNECT_TIMEOUT",
            "Seconds to wait for the broker or database before reporting it unreachable.",
        ),
    )
    session_timeout_ms: int = field(
        default=6000,
        metadata=_meta(
            "SUPPLYBUS_KAFKA_SESSION_TIMEOUT_MS",
            "Consumer group session timeout (short: fast joins and crash detection).",
        ),
    )
    heartbeat_interval_ms: int = field(
        default=500,
        metadata=_meta("SUPPLYBUS_KAFKA_HEARTBEAT_MS", "Consumer group heartbeat interval."),
    )
    group_prefix: str = field(
        default="supplybus",
        metadata=_meta(
            "SUPPLYBUS_GROUP_PREFIX", "Prefix of consumer group names: `<prefix>.<processor>`."
        ),
    )
    kafka_leave_group: LeaveGroup = field(
        default="auto",
        metadata=_meta(
            "SUPPLYBUS_KAFKA_LEAVE_GROUP",
            "auto, yes or no: send LeaveGroup on shutdown (auto: yes, except on Tansu; ADR 0004).",
        ),
    )
    log_level: LogLevel = field(
        default="WARNING",
        metadata=_meta("SUPPLYBUS_LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR."),
    )
    ledger_retention_days: int = field(
        default=45,
        metadata=_meta(
            "SUPPLYBUS_LEDGER_RETENTION_DAYS",
            "`db prune` keeps ledger rows this long: at least the longest topic retention "
            "(refused if shorter), plus margin for offset expiry and resends.",
        ),
    )
    outbox_retention_days: int = field(
        default=7,
        metadata=_meta(
            "SUPPLYBUS_OUTBOX_RETENTION_DAYS",
            "`db prune` deletes outbox rows this long after they were sent (never unsent or "
            "parked ones).",
        ),
    )
    dead_letter_retention_days: int = field(
        default=90,
        metadata=_meta(
            "SUPPLYBUS_DEAD_LETTER_RETENTION_DAYS",
            "`db prune` deletes dead letters this long after they were replayed or resolved "
            "(never open or parked ones).",
        ),
    )
    prune_interval_s: float = field(
        default=3600.0,
        metadata=_meta(
            "SUPPLYBUS_PRUNE_INTERVAL",
            "Seconds between the scheduled prunes of `supplybus run` (0: off).",
        ),
    )
    prune_chunk: int = field(
        default=10_000,
        metadata=_meta("SUPPLYBUS_PRUNE_CHUNK", "Rows a prune deletes per transaction."),
    )
    po_outbox_dir: Path | None = field(
        default=None,
        metadata=_meta(
            "SUPPLYBUS_PO_OUTBOX_DIR",
            "The outbound folder of purchase orders (`po dispatch`; docs/outbound-po.md). It "
            "must exist: a missing folder is a target that is down.",
            shown="<SUPPLYBUS_HOME>/outbound/po",
        ),
    )
    po_alert_after_s: float = field(
        default=900.0,
        metadata=_meta(
            "SUPPLYBUS_PO_ALERT_AFTER",
            "Seconds a purchase order may wait for its outbound target before an alert fires.",
        ),
    )
    webhook_secrets: str | None = field(
        default=None,
        metadata=_meta(
            "SUPPLYBUS_WEBHOOK_SECRETS",
            "HMAC-SHA256 secrets of `serve webhook`: one, or two comma-separated while rotating "
            "(each at least 16 characters); never shown (docs/webhook.md).",
            hidden=True,
        ),
    )
    webhook_max_bytes: int = field(
        default=1_048_576,
        metadata=_meta(
            "SUPPLYBUS_WEBHOOK_MAX_BYTES", "Largest webhook body accepted, in bytes (larger: 413)."
        ),
    )
    webhook_max_concurrency: int = field(
        default=16,
        metadata=_meta(
            "SUPPLYBUS_WEBHOOK_MAX_CONCURRENCY",
            "Webhook requests handled at once; more are answered 429.",
        ),
    )
    webhook_tolerance_s: float = field(
        default=300.0,
        metadata=_meta(
            "SUPPLYBUS_WEBHOOK_TOLERANCE",
            "Seconds a webhook's signed timestamp may be away from now (the replay window; "
            "beyond it: 401).",
        ),
    )
    #: Derived, not read: True when the broker port was set, so `up` must not pick another.
    broker_port_explicit: bool = False

    def __post_init__(self) -> None:
        for spec in _settings_fields():
            _check_choice(spec.name, spec.metadata["env"], getattr(self, spec.name))
        if not 0 <= self.broker_port <= 65535:
            raise ConfigError(f"SUPPLYBUS_BROKER_PORT: expected 0..65535, got {self.broker_port}")
        if self.connect_timeout_s <= 0:
            raise ConfigError(
                f"SUPPLYBUS_CONNECT_TIMEOUT: expected > 0, got {self.connect_timeout_s}"
            )
        for name in _AT_LEAST_ONE:
            _at_least_one(name, getattr(self, name))
        if self.prune_interval_s < 0:
            raise ConfigError(
                f"SUPPLYBUS_PRUNE_INTERVAL: expected >= 0 seconds (0: off), "
                f"got {self.prune_interval_s}"
            )
        if not 0 < self.po_alert_after_s < math.inf:
            raise ConfigError(
                f"SUPPLYBUS_PO_ALERT_AFTER: expected a number of seconds > 0, "
                f"got {self.po_alert_after_s}"
            )
        if not 0 < self.webhook_tolerance_s < math.inf:
            raise ConfigError(
                f"SUPPLYBUS_WEBHOOK_TOLERANCE: expected a number of seconds > 0, "
                f"got {self.webhook_tolerance_s}"
            )
        _check_webhook_secrets(self.webhook_secrets)
        if not self.db_schema.isidentifier():
            raise ConfigError(
                f"SUPPLYBUS_DB_SCHEMA: expected an SQL identifier, got {self.db_schema!r}"
            )
        url = self.database_url
        if url is not None and not url.startswith(("postgresql:", "postgres:")):
            raise ConfigError(f"DATABASE_URL: expected a postgresql:// URL, got {mask_url(url)!r}")

    def __repr__(self) -> str:
        """Every field, with passwords in URLs masked (``repr`` ends up in logs)."""
        shown = []
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.metadata.get("hidden") and value is not None:
                value = "***"
            elif spec.metadata.get("secret") and isinstance(value, str):
                value = mask_url(value)
            shown.append(f"{spec.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    @property
    def embedded_kafka(self) -> bool:
        return self.kafka_bootstrap_servers is None

    @property
    def embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def webhook_secret_list(self) -> tuple[str, ...]:
        """The webhook secrets (SUPPLYBUS_WEBHOOK_SECRETS split at commas); any one verifies."""
        return _split_secrets(self.webhook_secrets)

    @property
    def po_outbox(self) -> Path:
        """The outbound PO folder: SUPPLYBUS_PO_OUTBOX_DIR, else <home>/outbound/po."""
        return self.po_outbox_dir or self.home / "outbound" / "po"

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
        for spec in _settings_fields():
            raw = env.get(spec.metadata["env"])
            if raw not in (None, ""):
                values[spec.name] = _convert(spec.name, raw, spec.metadata["env"])
        if "broker_port" in values:
            values["broker_port_explicit"] = True
        return cls(**values)


@functools.cache
def _settings_fields() -> tuple[Field[Any], ...]:
    """The fields read from the environment (those with a variable), in declaration order."""
    return tuple(f for f in fields(Settings) if "env" in f.metadata)


@functools.cache
def _types() -> dict[str, Any]:
    """Each field's type with ``X | None`` unwrapped (``from __future__`` makes them strings)."""
    hints = get_type_hints(Settings, globalns=globals())
    unwrapped = {}
    for name, hint in hints.items():
        if get_origin(hint) in (Union, UnionType):
            hint = next(arg for arg in get_args(hint) if arg is not type(None))
        unwrapped[name] = hint
    return unwrapped


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable TOML file ({exc})") from exc
    known = [f.name for f in _settings_fields()]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; expected some of {', '.join(known)}"
        )
    return {k: _convert(k, v, f"{path}: {k}") for k, v in data.items()}


def _convert(name: str, raw: object, where: str) -> object:
    """The raw text (or TOML value) as the field's type; choices match case-insensitively."""
    kind = _types()[name]
    if get_origin(kind) is Literal:
        text = str(raw)
        return next((c for c in get_args(kind) if c.casefold() == text.casefold()), text)
    try:
        return kind(str(raw)) if kind in (Path, int, float) else str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected {kind.__name__}, got {raw!r}") from None


def _check_choice(name: str, env: str, value: object) -> None:
    kind = _types()[name]
    if get_origin(kind) is Literal and value not in get_args(kind):
        choices = get_args(kind)
        expected = ", ".join(choices[:-1]) + f" or {choices[-1]}"
        raise ConfigError(f"{env}: expected {expected}, got {value!r}")


_AT_LEAST_ONE = (
    "ledger_retention_days",
    "outbox_retention_days",
    "dead_letter_retention_days",
    "prune_chunk",
    "webhook_max_bytes",
    "webhook_max_concurrency",
)


def _at_least_one(name: str, value: int) -> None:
    if value < 1:
        env = next(f.metadata["env"] for f in _settings_fields() if f.name == name)
        raise ConfigError(f"{env}: expected a whole number >= 1, got {value}")


_MIN_SECRET = 16


def _split_secrets(raw: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (raw or "").split(",") if part.strip())


def _check_webhook_secrets(raw: str | None) -> None:
    """One or two secrets of at least 16 characters; the message never shows a secret."""
    secrets = _split_secrets(raw)
    expected = (
        f"SUPPLYBUS_WEBHOOK_SECRETS: expected one or two comma-separated secrets of at "
        f"least {_MIN_SECRET} characters"
    )
    if raw is not None and raw.strip() and not secrets:
        raise ConfigError(f"{expected}, got only commas")
    if len(secrets) > 2:
        raise ConfigError(f"{expected}, got {len(secrets)} secrets")
    short = [n for n, s in enumerate(secrets, start=1) if len(s) < _MIN_SECRET]
    if short:
        raise ConfigError(f"{expected}, got a shorter one (secret {short[0]})")


def mask_url(url: str) -> str:
    """The URL with its password (user info or ``password=`` parameter) replaced by ***."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    has_param = any(k.lower() == "password" for k, _ in query)
    if parts.password is None and not has_param:
        return url
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}"
    if has_param:
        masked = [(k, "***" if k.lower() == "password" else v) for k, v in query]
        parts = parts._replace(query=urlencode(masked, safe="*/"))
    return urlunsplit(parts._replace(netloc=netloc))


def settings_table() -> str:
    """The settings as a Markdown table (for the README and `supplybus settings`)."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for spec in _settings_fields():
        meta = spec.metadata
        shown = meta["shown"] or spec.default
        cell = "" if shown is None else f"`{shown}`"
        rows.append(f"| `{meta['env']}` | {cell} | {meta['help']} |")
    return "\n".join(rows)
