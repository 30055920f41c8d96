"""Helpers shared by tests: run the CLI as a user would, wait by condition, read topics."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest
from confluent_kafka import Message

from supplybus.adapters.kafka import read_records
from supplybus.config import Settings
from supplybus.producers.relay import OutboxRelay

T = TypeVar("T")


def cli_env(settings: Settings, home: Path) -> dict[str, str]:
    """The environment that points the CLI at the services and catalog of ``settings``."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers or "",
        "DATABASE_URL": settings.database_url or "",
        "SUPPLYBUS_DB_SCHEMA": settings.db_schema,
        "SUPPLYBUS_TOPIC_CATALOG": str(settings.topic_catalog),
        "SUPPLYBUS_HOME": str(home),
    }


class InProcessCli:
    """`supplybus ARGS` in this process (faster than a subprocess: no interpreter start), with
    the environment of ``cli_env`` set through ``monkeypatch``; returns what ``run_cli`` does."""

    def __init__(
        self,
        settings: Settings,
        home: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        for name in _SERVICE_VARS:
            monkeypatch.delenv(name, raising=False)
        for name, value in cli_env(settings, home).items():
            monkeypatch.setenv(name, value)
        self.capsys = capsys

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        from supplybus.ops.cli import main

        self.capsys.readouterr()
        code = main(list(args))
        captured = self.capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, captured.out, captured.err)


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`supplybus ARGS` in a subprocess, with the environment given (on top of os.environ)."""
    full_env = {k: v for k, v in os.environ.items() if k not in _SERVICE_VARS}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "supplybus.ops.cli", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


_SERVICE_VARS = ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "SUPPLYBUS_HOME")


def wait_for(
    condition: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.1
) -> T:
    """Poll until ``condition()`` is truthy; fail naming ``what`` was missing on timeout."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def read_topics(
    settings: Settings, topics: Mapping[str, int], expect: int, timeout: float = 20
) -> list[Message]:
    """Every record of these topics (name -> partitions): waits up to ``timeout`` until
    ``expect`` arrived, then half a second more, so that a record too many is seen too."""
    return list(read_records(settings, topics, at_least=expect, quiet_s=0.5, timeout_s=timeout))


def read_all(
    settings: Settings, topic: str, partitions: int, expect: int, timeout: float = 20
) -> list[Message]:
    """Every record of one topic; see ``read_topics``."""
    return read_topics(settings, {topic: partitions}, expect, timeout)


def drain_relay(settings: Settings, **options: Any) -> OutboxRelay:
    """Run an outbox relay (as the runner does; ``options`` as OutboxRelay takes them) until
    nothing is pending, then stop it."""
    relay = OutboxRelay(settings, **options)
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,))
    thread.start()
    try:
        wait_for(
            lambda: relay.error or (relay.stats.rounds > 2 and relay.stats.backlog == 0),
            timeout=30,
            what="the outbox drained",
        )
    finally:
        stop.set()
        thread.join(15)
    assert relay.error is None and not thread.is_alive()
    return relay
