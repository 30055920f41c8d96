"""`supplybus up | down | status`: the services supplybus runs on.

In embedded mode (no KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL) ``up`` starts a Tansu broker and
an embedded PostgreSQL under SUPPLYBUS_HOME and records them in ``state.json``; ``down`` stops
only what ``up`` started. External services named by the environment are used as they are.
Either way ``up`` applies migrations and the topic catalog. The embedded broker keeps topics
in memory only, so ``up`` after a broker restart re-creates every catalog topic.
"""

from __future__ import annotations

import fcntl
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supplybus.adapters.kafka import wait_for_broker
from supplybus.adapters.postgres import connect
from supplybus.config import Settings, mask_url
from supplybus.errors import ServiceUnavailable
from supplybus.events.topics import load_catalog
from supplybus.ops import embedded, migrate, topic_admin
from supplybus.ops.topic_admin import TopicState


@dataclass
class UpReport:
    """What ``up`` did, for the CLI to print."""

    settings: Settings
    started: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    migrations: list[str] = field(default_factory=list)
    topics: list[TopicState] = field(default_factory=list)


def _home(settings: Settings) -> Path:
    home = settings.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def _state_path(settings: Settings) -> Path:
    return _home(settings) / "state.json"


def read_state(settings: Settings) -> dict[str, Any]:
    try:
        data = json.loads(_state_path(settings).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_state(settings: Settings, state: dict[str, Any]) -> None:
    path = _state_path(settings)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)


@contextmanager
def _locked(settings: Settings) -> Iterator[None]:
    """One `up`/`down` at a time per SUPPLYBUS_HOME."""
    with open(_home(settings) / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def resolve(settings: Settings) -> Settings:
    """Settings with the addresses of running embedded services filled in (starts nothing)."""
    state = read_state(settings)
    broker = state.get("broker") or {}
    bootstrap = None
    if settings.embedded_kafka and broker and embedded.is_broker_process(int(broker["pid"])):
        bootstrap = f"127.0.0.1:{broker['port']}"
    database = None
    if (
        settings.embedded_database
        and state.get("postgres")
        and embedded.postgres_pid(_home(settings))
    ):
        database = str(state["postgres"]["uri"])
    return settings.with_services(bootstrap=bootstrap, database_url=database)


def ensure_up(settings: Settings, *, kafka: bool = True, database: bool = True) -> Settings:
    """Settings pointing at running services; starts the embedded ones needed and not running."""
    resolved = resolve(settings)
    need_kafka = kafka and not resolved.kafka_bootstrap_servers
    need_database = database and not resolved.database_url
    if not (need_kafka or need_database):
        return resolved
    return up(settings, kafka=need_kafka, database=need_database).settings


def up(settings: Settings, *, kafka: bool = True, database: bool = True) -> UpReport:
    """Start what is not running, wait until it answers, migrate, apply the catalog."""
    with _locked(settings):
        state = read_state(settings)
        report = UpReport(settings=settings)
        bootstrap = _up_broker(settings, state, report) if kafka else None
        database_url = _up_postgres(settings, state, report) if database else None
        _write_state(settings, state)
        resolved = resolve(settings).with_services(bootstrap=bootstrap, database_url=database_url)
        report.settings = resolved
        if kafka:
            wait_for_broker(resolved, timeout_s=max(resolved.connect_timeout_s, 15.0))
            report.topics = topic_admin.apply(resolved, load_catalog(resolved.topic_catalog))
        if database:
            report.migrations = [m.path.name for m in migrate.migrate(resolved)]
        return report


def _up_broker(settings: Settings, state: dict[str, Any], report: UpReport) -> str | None:
    if not settings.embedded_kafka:
        return None
    broker = state.get("broker")
    if broker and embedded.is_broker_process(int(broker["pid"])):
        report.already.append("broker")
        return f"127.0.0.1:{broker['port']}"
    port = embedded.choose_port(
        int(broker["port"]) if broker else settings.broker_port,
        explicit=settings.broker_port_explicit,
    )
    proc = embedded.start_broker(_home(settings), port)
    state["broker"] = {"pid": proc.pid, "port": proc.port, "started_at": time.time()}
    report.started.append("broker")
    return proc.bootstrap


def _up_postgres(settings: Settings, state: dict[str, Any], report: UpReport) -> str | None:
    if not settings.embedded_database:
        return None
    home = _home(settings)
    running = embedded.postgres_pid(home) is not None
    uri = embedded.start_postgres(home)
    state["postgres"] = {"pgdata": str(home / "pgdata"), "uri": uri}
    (report.already if running else report.started).append("postgres")
    return uri


def down(settings: Settings) -> list[str]:
    """Stop what `up` started here; return the names of what was stopped."""
    stopped: list[str] = []
    with _locked(settings):
        state = read_state(settings)
        broker = state.pop("broker", None)
        if broker and embedded.is_broker_process(int(broker["pid"])):
            embedded.stop_process(int(broker["pid"]))
            stopped.append("broker")
        if state.pop("postgres", None) is not None and embedded.stop_postgres(_home(settings)):
            stopped.append("postgres")
        _write_state(settings, state)
    return stopped


def status(settings: Settings) -> dict[str, dict[str, Any]]:
    """Each service: mode, address, pid and whether it answers now."""
    resolved = resolve(settings)
    state = read_state(settings)
    broker: dict[str, Any] = {
        "mode": "embedded" if settings.embedded_kafka else "external",
        "address": resolved.kafka_bootstrap_servers,
        "pid": (state.get("broker") or {}).get("pid") if settings.embedded_kafka else None,
    }
    database: dict[str, Any] = {
        "mode": "embedded" if settings.embedded_database else "external",
        "address": mask_url(resolved.database_url) if resolved.database_url else None,
        "pid": embedded.postgres_pid(_home(settings)) if settings.embedded_database else None,
    }
    broker["healthy"], broker["detail"] = _probe_broker(resolved)
    database["healthy"], database["detail"] = _probe_database(resolved)
    return {"broker": broker, "database": database}


def _probe_broker(settings: Settings) -> tuple[bool, str]:
    if settings.kafka_bootstrap_servers is None:
        return False, "not running (run `supplybus up`)"
    try:
        topics = wait_for_broker(settings)
    except ServiceUnavailable as exc:
        return False, str(exc)
    return True, f"{len(topics)} topics"


def _probe_database(settings: Settings) -> tuple[bool, str]:
    if settings.database_url is None:
        return False, "not running (run `supplybus up`)"
    try:
        with connect(settings) as conn:
            version = conn.execute("SHOW server_version").fetchone()
    except ServiceUnavailable as exc:
        return False, str(exc)
    versions = migrate.applied_versions(settings)
    return True, f"PostgreSQL {version[0] if version else '?'}, {len(versions)} migrations"
