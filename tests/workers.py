"""Processor runners as separate processes (`supplybus run ...`), for crash and stop tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path

import pytest

from supplybus.config import Settings

FAST_GROUPS = {"SUPPLYBUS_KAFKA_SESSION_TIMEOUT_MS": "3000", "SUPPLYBUS_KAFKA_HEARTBEAT_MS": "300"}


def fresh_group(settings: Settings) -> Settings:
    """The settings with a consumer group prefix of their own and fast group timeouts."""
    return replace(
        settings,
        group_prefix=f"g{uuid.uuid4().hex[:8]}",
        session_timeout_ms=3000,
        heartbeat_interval_ms=300,
    )


class Worker:
    """`supplybus run PROCESSOR [ARGS]` as a separate process (default: keyed_sums)."""

    def __init__(
        self,
        settings: Settings,
        log_dir: Path,
        name: str,
        *,
        args: tuple[str, ...] = ("tests.processors:keyed_sums",),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.log = log_dir / f"{name}.log"
        self.args = args
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers or "",
            "DATABASE_URL": settings.database_url or "",
            "SUPPLYBUS_DB_SCHEMA": settings.db_schema,
            "SUPPLYBUS_TOPIC_CATALOG": str(settings.topic_catalog),
            "SUPPLYBUS_GROUP_PREFIX": settings.group_prefix,
            "SUPPLYBUS_HOME": str(log_dir / "home"),
            "SUPPLYBUS_LOG_LEVEL": "INFO",
            **FAST_GROUPS,
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "supplybus.ops.cli", "run", *self.args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).parent.parent,
            )

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        """SIGTERM; the worker must finish its batch and exit within 10 s."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(15)
        assert time.monotonic() - started < 10, "SIGTERM took more than 10 s"
        return code

    def ensure_dead(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


WorkerFactory = Callable[..., Worker]


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[WorkerFactory]:
    started: list[Worker] = []

    def make(
        settings: Settings,
        name: str,
        *,
        args: tuple[str, ...] = ("tests.processors:keyed_sums",),
        env: Mapping[str, str] | None = None,
    ) -> Worker:
        worker = Worker(settings, tmp_path, name, args=args, env=env)
        started.append(worker)
        return worker

    yield make
    for worker in started:
        worker.ensure_dead()
